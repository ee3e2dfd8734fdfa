"""The model in use: which one to load (the one remembered, the open conversation's own, one picked in Models
or opened from a folder), what happens when it loads or fails to, and the names every model choice offers.

`ModelInUse` asks `RequestController.load` and follows its answers. It says what the window should show
through its signals: the banner's problems (`problem`, an app.notice.Problem), a status line, the model
that loaded (`ready`) or the one still in use after a failure (`kept`), and the names of the models there
are (`names`); app.shell.window connects them to the views.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from app.engine_link.requests import RequestController
from app.engine_link.worker import ModelInfo
from app.finetune.runs import finished_runs
from app.models.servers import parse_remote, remote_name
from app.models.view import ModelsView
from app.notice import Problem, in_window_terms
from app.settings import AppSettings
from engine.errors import EngineError
from engine.store.local import embedded_name, is_embedded, local_models

LOAD_KINDS = ("model", "fallback", "server")  # the banner's kinds for a model that could not be loaded


class ModelInUse(QObject):
    status = Signal(str, int)  # a message for the status bar, shown for so many milliseconds
    problem = Signal(object)  # an app.notice.Problem for the banner
    ready = Signal(object)  # the ModelInfo of the model that just loaded
    kept = Signal(object)  # a load failed: the ModelInfo still in use (None: none is)
    changed = Signal()  # a load was asked for, or ended: what depends on a model being there follows
    names = Signal(list)  # the names of the models there are, for the model choices

    def __init__(self, settings: AppSettings, requests: RequestController, models: ModelsView, save_settings,
                 parent: QWidget):
        """`save_settings`: writes the settings file (the window's, which says in the banner when it cannot)."""
        super().__init__(parent)
        self.settings, self.requests, self.models = settings, requests, models
        self._save_settings = save_settings
        self.loading: str | None = None  # the model being loaded (None: the embedded one)
        self.loaded: str | None = None  # the model in use, as it was asked for
        self._at_start = True  # a remembered model that fails now falls back to the embedded one
        self._opening: str | None = None  # a folder opened with File > Open model folder… (listed once loaded)
        self._after_reply: str | None = None  # a conversation's model, loaded once the reply elsewhere ends
        self._started = False  # the first model has been asked for
        self._start_model: str | None = settings.model  # the last one used, or the open conversation's own

    def start(self) -> None:
        """Load the first model: the one the conversation opened at start is written with, else the last used."""
        self._started = True
        self.load(self._start_model)

    def load(self, model: str | None) -> None:
        """Load `model` (a folder or name; None: the embedded one; a remote model's name, app.models.servers); the settings
        remember it once it has loaded."""
        self.loading = model
        remote = parse_remote(model)
        key = self.settings.servers.get(remote[1], {}).get("key", "") if remote else ""
        self.requests.load(self.loading, self.settings.device, self.settings.precision, self.settings.threads, key)
        self.changed.emit()

    def use(self, folder: str | None) -> None:
        """Switch to another model; if it cannot be loaded, the current one stays (and stays remembered)."""
        self.requests.stop()
        self._at_start = False
        self._opening = None
        self.load(folder)

    def reload(self) -> None:
        """The device or precision changed: the model in use again, loaded with them."""
        self.load(self.loaded if self.requests.model is not None else self.settings.model)

    def choose_folder(self) -> None:
        """File > Open model folder…: a folder of a GPT-2 model, used now and listed in Models once it loads."""
        folder = QFileDialog.getExistingDirectory(self.parent(), "Open a GPT-2 model folder")
        if folder:
            self.use(folder)
            self._opening = folder

    def list_names(self) -> None:
        """The model choices offer the models on this computer, the fine-tuned ones and the servers' models."""
        remote = [remote_name(model, url) for url, entry in self.settings.servers.items() for model in entry["models"]]
        try:
            trained = [run.model_name for run in finished_runs()]
            names = [m.name for m in local_models()] + trained + remote
        except (OSError, EngineError):
            names = remote
        self.names.emit(names)

    def trained(self) -> None:
        """A fine-tuning run finished: its model joins Models and the model choices."""
        self.models.refresh()
        self.list_names()

    def servers_changed(self, servers: dict) -> None:
        self.settings.servers = servers
        self._save_settings()
        self.list_names()

    def removed(self, names: list) -> None:
        """Models went in Models (deleted, forgotten, their server forgotten): the one in use gives way to the
        embedded model, remembered as such for the next start."""
        self.list_names()
        in_use = self.loaded if self.requests.model is not None else self.loading
        folder_gone = in_use is not None and os.sep in in_use and not Path(in_use).is_dir()  # a deleted download
        if in_use in names or (folder_gone and parse_remote(in_use) is None):
            self.use(None)
            self.status.emit(f"{in_use} is gone, so {embedded_name()} answers now.", 8000)

    def conversation_model(self, name: str) -> None:
        """The open conversation is written with `name`: load it unless it is the one in use. While a reply is
        being written elsewhere, it is loaded when that reply ends (switching would stop it)."""
        if not name:  # none of its own: the model in use stays (and one waiting for another chat is not wanted)
            self._after_reply = None
            return
        wanted = None if is_embedded(name) else name
        if not self._started:  # the conversation opened at start: the first model loaded is its own
            self._start_model = wanted
            return
        if wanted == (self.loading if self.requests.model is None else self.loaded):
            self._after_reply = None
            return
        if self.requests.active is not None:
            self._after_reply = name
            self.status.emit(f"This conversation is written with {name}: it loads when the reply being written ends.",
                             8000)
            return
        self.use(wanted)

    def reply_ended(self) -> None:
        """A reply ended: a conversation's model that waited for it loads now."""
        if self._after_reply is not None and self.requests.active is None:
            name, self._after_reply = self._after_reply, None
            self.conversation_model(name)

    def on_loaded(self, info: ModelInfo) -> None:
        fallback = self._at_start and self.loading is None and self.settings.model is not None
        self._at_start = False
        if not fallback:
            for kind in LOAD_KINDS:
                self.problem.emit(Problem("", kind))
            if self.settings.model != self.loading:
                self.settings.model = self.loading
                self._save_settings()
        self.loaded = self.loading
        if self._opening is not None and self._opening == self.loading:  # Ctrl+O: listed from now on
            self._opening = None
            listed = self.models.remember_folder(self.loaded)
            if listed is not None:
                self.list_names()
                self.status.emit(f"{listed} is listed in Models now, and in each chat's model choice.", 8000)
        self.models.set_active(self._listed_name(self.loading))
        self.ready.emit(info)
        self.changed.emit()

    def on_load_failed(self, message: str) -> None:
        wanted = self.loading or embedded_name()
        current = self.requests.model  # still loaded: the engine keeps it when another fails
        message = in_window_terms(message)
        self._opening = None
        # A server that cannot be reached is not helped by another folder ("server": no "Open model folder…").
        kind = "server" if parse_remote(self.loading) is not None else "model"
        if current is not None:
            self.problem.emit(Problem(f"{wanted} could not be loaded: {message} Still using {current.name}.", kind))
        elif self._at_start and self.loading is not None:
            self.problem.emit(Problem(f"The model you used last time, {wanted}, could not be loaded: {message} "
                                      f"Using the embedded model, {embedded_name()}, instead.",
                                      "fallback" if kind == "model" else kind))
            self.load(None)
            return
        else:
            self.problem.emit(Problem(f"The model could not be loaded: {message}", kind))
        self.kept.emit(current)
        self.changed.emit()

    def is_embedded(self) -> bool:
        """Whether the model asked for last is the embedded one."""
        return is_embedded(self.loading)

    def _listed_name(self, model: str | None) -> str:
        """The name Models lists `model` by (a folder of a listed model: that model's name)."""
        if is_embedded(model):
            return embedded_name()
        if parse_remote(model) is None and Path(model).is_dir():
            folder = Path(model).resolve()
            return next((m.name for m in local_models() if m.folder.resolve() == folder), model)
        return model

"""The main window: conversations on the left, a chat or notebook in the middle, settings in a dock.

It builds the views and wires them to the open conversation (app.chat.conversations) and to the engine
(app.engine_link.requests); its own are the menus, the status bar, the banner, the tabs and the saved layout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QFrame, QInputDialog, QMainWindow, QMessageBox,
                               QScrollArea, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout, QWidget)

from app.chat.conversations import ConversationController
from app.chat.page import ChatPage
from app.chat.sidebar import Sidebar
from app.chat.titles import title_from
from app.engine_link.requests import ActiveRequest, RequestController
from app.engine_link.worker import ModelInfo
from app.finetune.runs import finished_runs
from app.finetune.view import FinetuneView
from app.history.errors import HistoryError
from app.history.store import History
from app.history.transfer import HistoryFileError, format_for, import_file, write_export
from app.models.servers import parse_remote, remote_name
from app.models.view import ModelsView
from app.notebook.page import NotebookPage
from app.notice import in_window_terms
from app.probe.analysis_view import AnalysisView
from app.probe.probabilities import COLOUR_BLIND, GLTR, PROBABILITY, RANKS, Colouring
from app.server.panel import ServerPanel
from app.settings import AppSettings
from app.shell.actions import build_menus
from app.shell.appearance import apply_font, next_size, sized_font
from app.shell.banner import Banner
from app.shell.settings_panel import SettingsPanel
from app.shell.status_bar import StatusBar
from app.tasks.view import TasksView
from engine.core.device import cuda_available
from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import EngineError, StorageError
from engine.paths import user_templates_dir
from engine.store.local import embedded_name, is_embedded, local_models

CHAT_MIN_WIDTH = 400  # the chat column, so that the window works from 800x500 up with the settings shown
DOCK_WIDTH = (150, 300)  # the settings dock's narrowest and widest (its fields shrink to fit)
EXPORT_MARKDOWN, EXPORT_JSON = "Markdown, to read (*.md)", "JSON, to import again (*.json)"
NOT_SAVED = " This session's conversations will not be saved to it."  # after why the history is not the file

if TYPE_CHECKING:
    from engine.inference.generate import Done
    from engine.inference.scoring import OptionScore


class MainWindow(QMainWindow):
    def __init__(self, history: History, settings: AppSettings, settings_path: Path | None,
                 history_problem: str | None = None, settings_problem: str | None = None):
        """`settings_path` None: the settings are not saved this session (a file there could not be used, nor
        moved aside). `history_problem`, `settings_problem`: why the history is one in memory, what was wrong
        with the settings file (app.main: history.open_history, AppSettings.open), for the banner."""
        super().__init__()
        self.history = history
        self.settings = settings
        self.settings_path = settings_path
        self._hub_checked = False
        self._loading: str | None = None  # the model being loaded (None: the embedded one)
        self._loaded: str | None = None  # the model in use, as it was asked for
        self._at_start = True  # a remembered model that fails now falls back to the embedded one
        self._opening: str | None = None  # a folder opened with File > Open model folder… (listed once loaded)
        self.setWindowTitle("gpt2-desktop")

        self._model_after_reply: str | None = None  # a conversation's model, loaded once the reply elsewhere ends
        self._started = False  # the first model has been asked for
        self.requests = RequestController(self)
        self._build_widgets()
        self._list_models()
        self.chat.set_welcome(not self.settings.welcome_dismissed)
        if self.settings.text_size:
            apply_font(self, sized_font(self.settings.text_size))
        self._connect()
        self._build_menus()
        self._restore_layout()
        self.colouring_changed(save=False)
        if history_problem:
            self.banner.show_message(history_problem + NOT_SAVED, kind="history")
        if settings_problem:
            self.banner.show_message(settings_problem, kind="settings")
        self.conversations.refresh()
        self._start_model: str | None = self.settings.model  # the last one used, or the open conversation's own
        self.conversations.start(self.settings.mode)  # a person opens the app and types: it lands in the message box
        self._started = True
        self.load_model(self._start_model)
        if self.finetune.resume_offer and self.banner.isHidden():  # the app was closed mid-training
            self.banner.show_message(self.finetune.resume_offer, kind="finetune")  # said until the run is taken up
        self.finetune.offer_taken.connect(lambda: self.banner.hide_kind("finetune"))

    @property
    def model_info(self) -> ModelInfo | None:
        """The loaded model; None while one is loading or when none could be."""
        return self.requests.model

    @property
    def active(self) -> ActiveRequest | None:
        """The request the engine is answering, if any."""
        return self.requests.active

    # construction

    def _build_widgets(self) -> None:
        self.sidebar, self.banner = Sidebar(), Banner()
        self.chat, self.notebook, self.pages = ChatPage(), NotebookPage(), QStackedWidget()
        self.pages.addWidget(self.chat)
        self.pages.addWidget(self.notebook)
        self.conversations = ConversationController(self.history, self.settings, self.requests, self.sidebar,
                                                    self.chat, self.notebook, self.pages, self)
        self.pages.setMinimumWidth(CHAT_MIN_WIDTH)  # the dock and the list give way first
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 6, 4, 6)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(self.pages, 1)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setHandleWidth(4)  # (with larger text every pixel counts at 800 wide)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([240, 760])
        self.tasks = TasksView(user_templates_dir())
        self.models = ModelsView()
        self.models.set_servers(self.settings.servers)
        self.tabs = QTabWidget(documentMode=True)
        self.tabs.addTab(self.splitter, "Conversations")
        self.tabs.addTab(self.tasks, "Tasks")
        self.tabs.addTab(self.models, "Models")
        self.server = ServerPanel()
        self.tabs.addTab(self.server, "Server")
        self.analysis = AnalysisView()
        self.tabs.addTab(self.analysis, "Analyse")
        self.finetune = FinetuneView()
        self.tabs.addTab(self.finetune, "Fine-tune")
        self.setCentralWidget(self.tabs)

        self.settings_panel = SettingsPanel(self.settings, cuda_available(), os.cpu_count() or 1)
        self.settings_dock = QDockWidget("Settings", self)
        self.settings_dock.setObjectName("settings")
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)  # a low window scrolls the fields
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(self.settings_panel)
        scroll.setMinimumWidth(DOCK_WIDTH[0])
        scroll.setMaximumWidth(DOCK_WIDTH[1])
        self.settings_dock.setWidget(scroll)
        self.addDockWidget(Qt.RightDockWidgetArea, self.settings_dock)
        self.settings_dock.hide()
        self.status_bar = StatusBar()
        self.setStatusBar(self.status_bar)

    def _connect(self) -> None:
        conversations, requests = self.conversations, self.requests
        requests.loading.connect(self.status_bar.show_loading)
        requests.loaded.connect(self._on_loaded)
        requests.load_failed.connect(self._on_load_failed)
        requests.started.connect(self._on_started)
        requests.tokens.connect(self._on_tokens)
        requests.finished.connect(self._on_finished)
        requests.failed.connect(self._on_failed)
        requests.chosen.connect(self._on_chosen)
        requests.progress.connect(lambda _request, done, total: self.analysis.show_progress(done, total))
        requests.analysed.connect(self._on_analysed)
        conversations.status.connect(self.status_bar.showMessage)
        conversations.problem.connect(self._history_problem)
        conversations.changed.connect(self._conversation_changed)
        self.sidebar.selected.connect(self._selected_in_list)
        self.sidebar.typed.connect(self._typed_in_list)
        self.sidebar.new_chat.connect(conversations.new_chat)
        self.sidebar.new_notebook.connect(conversations.new_notebook)
        self.sidebar.search_changed.connect(lambda _text: conversations.refresh())
        self.sidebar.rename_requested.connect(self.ask_rename)
        self.sidebar.delete_requested.connect(self.ask_delete)
        self.banner.open_model_requested.connect(self.choose_model_folder)
        self.chat.send_requested.connect(conversations.send)
        self.chat.stop_requested.connect(requests.stop)
        self.chat.message_action.connect(conversations.message_action)
        self.chat.edit_last_requested.connect(conversations.edit_last)
        self.chat.alternative_picked.connect(conversations.pick_alternative)
        self.notebook.alternative_picked.connect(conversations.pick_notebook_alternative)
        self.chat.draft_due.connect(conversations.store_draft)
        self.chat.count_due.connect(conversations.count_draft)
        self.chat.model_chosen.connect(conversations.choose_model)
        self.chat.preset_chosen.connect(conversations.choose_preset)
        self.chat.preamble_changed.connect(conversations.store_preamble)
        self.notebook.model_chosen.connect(lambda name: conversations.choose_model(name, "notebook"))
        self.notebook.preset_chosen.connect(lambda name: conversations.choose_preset(name, "notebook"))
        conversations.model_wanted.connect(self._conversation_model)
        self.chat.models_requested.connect(lambda: self.tabs.setCurrentWidget(self.models))
        self.chat.welcome_dismissed.connect(self._welcome_dismissed)
        self.notebook.continue_requested.connect(conversations.continue_notebook)
        self.notebook.stop_requested.connect(requests.stop)
        self.notebook.autosave_due.connect(conversations.store_document)
        self.notebook.analyse_requested.connect(self.analyse_text)
        self.notebook.suggest_requested.connect(self._suggest)
        requests.suggested.connect(self._on_suggested)
        self.analysis.analyse_requested.connect(self._run_analysis)
        self.analysis.cancel_requested.connect(requests.stop)
        self.tasks.run_generate.connect(self._run_task)
        self.tasks.run_choose.connect(self._run_choice)
        self.tasks.stop_requested.connect(requests.stop)
        self.tasks.open_in_notebook.connect(self.notebook_from_text)
        self.tasks.use_in_chat.connect(self.chat_from_text)
        self.models.use_requested.connect(self.use_model_name)
        self.models.servers_changed.connect(self._servers_changed)
        self.models.models_removed.connect(self._models_removed)
        self.finetune.models_changed.connect(self._trained)
        self.finetune.use_requested.connect(self.use_model_name)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.settings_panel.sampling_changed.connect(self._store_settings)
        self.settings_panel.device_changed.connect(self._device_changed)

    def _build_menus(self) -> None:
        build_menus(self)  # from app.shell.actions' table, which Help > Keyboard shortcuts lists too
        for act, on in ((self.probabilities_action, self.settings.probabilities),
                        (self.by_probability_action, self.settings.colour_by == PROBABILITY),
                        (self.colour_blind_action, self.settings.colour_palette == COLOUR_BLIND)):
            act.setChecked(on)
        QShortcut(QKeySequence("Escape"), self, activated=self.escape)

    def _restore_layout(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        else:
            self.resize(QSize(1100, 720))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))
        if self.settings.splitter_state:
            self.splitter.restoreState(QByteArray.fromBase64(self.settings.splitter_state.encode()))

    # model

    def load_model(self, model: str | None) -> None:
        """Load `model` (a folder or name; None: the embedded one; a remote model's name, app.models.servers); the settings
        remember it once it has loaded."""
        self._loading = model
        remote = parse_remote(model)
        key = self.settings.servers.get(remote[1], {}).get("key", "") if remote else ""
        self.requests.load(self._loading, self.settings.device, self.settings.precision, self.settings.threads, key)
        self._update_buttons()

    def use_model(self, folder: str | None) -> None:
        """Switch to another model; if it cannot be loaded, the current one stays (and stays remembered)."""
        self.requests.stop()
        self._at_start = False
        self._opening = None
        self.load_model(folder)

    def use_model_name(self, name: str) -> None:
        """From the Models view: a model name ("" for the embedded one) becomes the active model."""
        self.use_model(name or None)
        self.tabs.setCurrentIndex(0)

    def _list_models(self) -> None:
        """The chat's model choice offers the models on this computer."""
        remote = [remote_name(model, url) for url, entry in self.settings.servers.items() for model in entry["models"]]
        try:
            trained = [run.model_name for run in finished_runs()]
            names = [m.name for m in local_models()] + trained + remote
        except (OSError, EngineError):
            names = remote
        self.chat.set_model_choices(names)
        self.notebook.set_model_choices(names)

    def _trained(self) -> None:
        """A fine-tuning run finished: its model joins Models and the chat's model choice."""
        self.models.refresh()
        self._list_models()

    def _servers_changed(self, servers: dict) -> None:
        self.settings.servers = servers
        self._save_settings()
        self._list_models()

    def _models_removed(self, names: list) -> None:
        """Models went in Models (deleted, forgotten, their server forgotten): no conversation keeps them as its
        own, and the one in use gives way to the embedded model, remembered as such for the next start."""
        self.conversations.forget_models(names)
        self._list_models()
        in_use = self._loaded if self.model_info is not None else self._loading
        folder_gone = in_use is not None and os.sep in in_use and not Path(in_use).is_dir()  # a deleted download
        if in_use in names or (folder_gone and parse_remote(in_use) is None):
            self.use_model(None)
            self.status_bar.showMessage(f"{in_use} is gone, so {embedded_name()} answers now.", 8000)

    def _listed_name(self, model: str | None) -> str:
        """The name Models lists `model` by (a folder of a listed model: that model's name)."""
        if is_embedded(model):
            return embedded_name()
        if parse_remote(model) is None and Path(model).is_dir():
            folder = Path(model).resolve()
            return next((m.name for m in local_models() if m.folder.resolve() == folder), model)
        return model

    def _conversation_model(self, name: str) -> None:
        """The open conversation is written with `name`: load it unless it is the one in use. While a reply is
        being written elsewhere, it is loaded when that reply ends (switching would stop it)."""
        if not name:  # none of its own: the model in use stays (and one waiting for another chat is not wanted)
            self._model_after_reply = None
            return
        wanted = None if is_embedded(name) else name
        if not self._started:  # the conversation opened at start: the first model loaded is its own
            self._start_model = wanted
            return
        if wanted == (self._loading if self.model_info is None else self._loaded):
            self._model_after_reply = None
            return
        if self.active is not None:
            self._model_after_reply = name
            self.status_bar.showMessage(f"This conversation is written with {name}: it loads when the reply being "
                                        "written ends.", 8000)
            return
        self.use_model(wanted)

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.splitter:
            self._list_models()  # a model may have been downloaded, imported or removed meanwhile
        if self.tabs.widget(index) is self.finetune and self.finetune.state not in self.finetune.BUSY:
            self.finetune.refresh_bases()
        if self.tabs.widget(index) is self.models and not self._hub_checked:
            self._hub_checked = True
            self.models.check_hub()

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a GPT-2 model folder")
        if folder:
            self.use_model(folder)
            self._opening = folder

    def _on_loaded(self, info: ModelInfo) -> None:
        fallback = self._at_start and self._loading is None and self.settings.model is not None
        self._at_start = False
        if not fallback:
            for kind in ("model", "fallback", "server"):
                self.banner.hide_kind(kind)
            if self.settings.model != self._loading:
                self.settings.model = self._loading
                self._save_settings()
        self._loaded = self._loading
        if self._opening is not None and self._opening == self._loading:  # Ctrl+O: listed from now on
            self._opening = None
            listed = self.models.remember_folder(self._loaded)
            if listed is not None:
                self._list_models()
                self.status_bar.showMessage(f"{listed} is listed in Models now, and in each chat's model choice.",
                                            8000)
        self.status_bar.show_model(info)
        self.models.set_active(self._listed_name(self._loading))
        self.chat.set_welcome_model(info.name, is_embedded(self._loading), info.server)
        self.server.set_model(self._loaded, info.precision)
        try:  # a remote model's tokenizer is on its server: no token counts here
            tokenizer = None if info.server else GPT2Tokenizer.from_folder(info.folder)
        except EngineError:
            tokenizer = None
        self.tasks.set_model(tokenizer, info.context_window)
        self.settings_panel.set_model(info.name, info.context_window)
        self.conversations.tokenizer = tokenizer
        self.conversations.count_draft()
        self._show_context()
        self._update_buttons()

    def _selected_in_list(self, conversation_id: int) -> None:
        # The keyboard stays in the list (Delete, F2, the arrows work there); what is typed goes on to the page.
        self.conversations.open(conversation_id, focus=not self.sidebar.list.hasFocus())

    def _typed_in_list(self, text: str) -> None:
        self.conversations.focus_page()
        target = self.chat.composer if self.pages.currentWidget() is self.chat else self.notebook.editor
        if not target.isReadOnly():
            target.insertPlainText(text)

    def _show_context(self) -> None:
        self.status_bar.show_context(self.conversations.context_tokens())

    def _welcome_dismissed(self) -> None:
        self.settings.welcome_dismissed = True
        self._save_settings()

    def _conversation_changed(self) -> None:
        self.banner.keep_for(self.conversations.current_id)  # a reply that failed elsewhere is not this one's
        self.status_bar.clear_reply()
        self._show_context()
        self.conversations.count_draft()

    def _history_problem(self, message: str) -> None:
        """The history failed: a write that did not happen (a full disk), or a file found damaged only now and
        left alone from here on (its conversations are gone from the list; the session goes on in memory)."""
        self.banner.show_message(message + (NOT_SAVED if self.history.detached is not None else ""), kind="history")

    def _on_load_failed(self, message: str) -> None:
        wanted = self._loading or embedded_name()
        current = self.requests.model  # still loaded: the engine keeps it when another fails
        message = in_window_terms(message)
        self._opening = None
        # A server that cannot be reached is not helped by another folder ("server": no "Open model folder…").
        kind = "server" if parse_remote(self._loading) is not None else "model"
        if current is not None:
            self.status_bar.show_model(current)
            self._show_context()
            self.banner.show_message(f"{wanted} could not be loaded: {message} Still using {current.name}.",
                                     kind=kind)
        elif self._at_start and self._loading is not None:
            self.banner.show_message(f"The model you used last time, {wanted}, could not be loaded: {message} "
                                     f"Using the embedded model, {embedded_name()}, instead.",
                                     kind="fallback" if kind == "model" else kind)
            self.load_model(None)
            return
        else:
            self.status_bar.show_no_model()
            self.banner.show_message(f"The model could not be loaded: {message}", kind=kind)
        self._update_buttons()

    # conversations

    def ask_rename(self) -> None:
        conv = self.conversations.current()
        if conv is None:
            return
        dialog = QInputDialog(self, windowTitle="Rename conversation", labelText="Title:", textValue=conv.title)
        room = dialog.fontMetrics().horizontalAdvance(conv.title + "MMMMMM")  # the whole title, and room to type
        dialog.resize(max(dialog.sizeHint().width(), 360, min(room, max(400, self.width() * 3 // 4))),
                      dialog.sizeHint().height())
        if dialog.exec() and dialog.textValue().strip():
            self.conversations.rename(conv.id, dialog.textValue().strip())

    def ask_delete(self) -> None:
        conv = self.conversations.current()
        if conv is None:
            return
        answer = QMessageBox.question(self, "Delete conversation", f"Delete “{conv.title}” and all its messages?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)  # Enter keeps it
        if answer == QMessageBox.Yes:
            self.conversations.delete(conv.id)

    def export_conversation(self) -> None:
        conv = self.conversations.current()
        if conv is None:
            self.status_bar.showMessage("No conversation is open to export.", 5000)
            return
        self._export(title_from(conv.title).replace("/", "-").replace("…", ""), conv.id)

    def export_all(self) -> None:
        self._export("conversations", None)

    def _export(self, name: str, conversation_id: int | None) -> None:
        """Ask where (Markdown to read, JSON to import elsewhere) and write the export there."""
        self.conversations.store_document()
        self.conversations.store_draft()
        path, chosen = QFileDialog.getSaveFileName(self, "Export conversation" if conversation_id else
                                                   "Export all conversations", str(self._files_folder() / f"{name}.md"),
                                                   f"{EXPORT_MARKDOWN};;{EXPORT_JSON}")
        self.conversations.focus_page()
        if not path:
            return
        self._remember_folder(path)
        if not Path(path).suffix:
            path += ".json" if chosen == EXPORT_JSON else ".md"
        try:
            count = write_export(self.history, Path(path), format_for(path), conversation_id)
        except HistoryFileError as exc:
            self.banner.show_message(f"Nothing was exported: {exc}")
            return
        except HistoryError as exc:
            self.conversations.history_failed(HistoryError(f"Nothing was exported: {exc}"))
            return
        self.status_bar.showMessage(f"Exported {count} conversation{'s' if count != 1 else ''} to {Path(path).name}",
                                    8000)

    def import_conversations(self) -> None:
        """Add the conversations of an exported JSON file; nothing already here is changed."""
        path, _chosen = QFileDialog.getOpenFileName(self, "Import conversations", str(self._files_folder()),
                                                    EXPORT_JSON)
        self.conversations.focus_page()
        if not path:
            return
        self._remember_folder(path)
        try:
            added = import_file(self.history, Path(path))
        except HistoryFileError as exc:
            self.banner.show_message(f"Nothing was imported: {exc}")
            return
        except HistoryError as exc:  # a full disk: the history is as it was
            self.conversations.history_failed(HistoryError(f"Nothing was imported: {exc}"))
            return
        self.conversations.refresh()
        if added:
            self.conversations.open(added[-1])
        self.status_bar.showMessage(f"Imported {len(added)} conversation{'s' if len(added) != 1 else ''} "
                                    f"from {Path(path).name}", 8000)

    def _files_folder(self) -> Path:
        """Where the File menu's export and import dialogs open: the folder of the last one, else the home folder."""
        folder = Path(self.settings.files_folder) if self.settings.files_folder else Path.home()
        return folder if folder.is_dir() else Path.home()

    def _remember_folder(self, path: str) -> None:
        if self.settings.files_folder != str(Path(path).parent):
            self.settings.files_folder = str(Path(path).parent)
            self._save_settings()

    def notebook_from_text(self, text: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.conversations.new_notebook()
        self.notebook.set_document(text)
        self.conversations.store_document()

    def chat_from_text(self, text: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.conversations.new_chat()
        self.chat.set_draft(text)

    # tasks

    def _run_task(self, prompt: str, task_settings: dict) -> None:
        if not self._ready_for_task():
            return
        self.tasks.set_running(True)
        self.requests.generate("task", prompt, {**self.settings.sampling(), **task_settings})

    def _run_choice(self, context: str, options: list, normalise: bool) -> None:
        if not self._ready_for_task():
            return
        self.tasks.set_running(True)
        self.requests.choose(context, options, normalise)

    def _ready_for_task(self) -> bool:
        problem = self.requests.why_not_ready()
        if problem:
            self.tasks.say(problem, error=True)
        return problem is None

    # suggestions

    def _suggest(self, prompt: str) -> None:
        """Ctrl+Space in the notebook: three short sampled continuations from the cursor."""
        problem = self.requests.why_not_ready()
        if problem:
            self.status_bar.showMessage(problem, 5000)
            return
        self.status_bar.showMessage("Suggesting…")  # until they come
        self.requests.suggest(prompt or "\n", {**self.settings.sampling(), "stop": []})

    def _on_suggested(self, _request: ActiveRequest, texts: list) -> None:
        self.status_bar.set_busy(False)
        self.status_bar.clearMessage()
        self._update_buttons()
        if texts:
            self.notebook.show_suggestions(texts)
        else:
            self.status_bar.showMessage("The model had nothing to suggest here.", 5000)

    # analysis

    def analyse_text(self, text: str) -> None:
        """Open the Analyse tab on `text` and analyse it (the notebook's Analyse)."""
        self.tabs.setCurrentWidget(self.analysis)
        self.analysis.set_text(text)
        self._run_analysis(text)

    def _run_analysis(self, text: str) -> None:
        problem = self.requests.why_not_ready()
        if problem:
            self.analysis.say(problem, error=True)
            return
        self.analysis.set_running(True, text)
        self.requests.analyse(text)

    def _on_analysed(self, _request: ActiveRequest, analysis) -> None:
        self.status_bar.set_busy(False)
        if analysis is None:
            self.analysis.show_cancelled()
        else:
            self.analysis.show_analysis(analysis)
        self._update_buttons()

    # what the engine sends back

    def _on_started(self, request: ActiveRequest) -> None:
        """The last reply's figures go; a reply written into the open conversation has its context counted live."""
        here = request.kind in ("chat", "notebook") and request.conversation_id == self.conversations.current_id
        self.status_bar.begin_request(self.conversations.context_tokens() if here else None)
        self._update_buttons()

    def escape(self) -> None:
        if self.active is not None:
            self.requests.stop()
        else:
            self.chat.cancel_edit()

    def _on_tokens(self, active: ActiveRequest, text: str) -> None:
        if active.detached:
            return
        self.status_bar.show_progress(active)
        if active.kind == "chat":
            self.chat.append(text)
        elif active.kind == "task":
            self.tasks.append_output(text)
        else:
            self.notebook.append(text)

    def _on_finished(self, active: ActiveRequest, done: Done) -> None:
        if active.kind == "task":
            self.tasks.set_running(False)
            self.tasks.show_done(done)
        else:
            self.conversations.save_reply(active, done.text, done.stop_reason.value, done.context_tokens)
        if active.detached:  # it went on in another conversation than the one shown: its figures are not this one's
            self.status_bar.set_busy(False)
        else:
            self.status_bar.show_reply(done, {"chat": "conversation", "notebook": "text"}.get(active.kind, "prompt"))
        if active.kind != "task" and not active.detached:
            self._show_context()  # the same figure as when the conversation is opened again
            self.conversations.count_draft()
        self._update_buttons()
        if self._model_after_reply is not None and self.active is None:
            name, self._model_after_reply = self._model_after_reply, None
            self._conversation_model(name)

    def _on_chosen(self, _request: ActiveRequest, scores: list[OptionScore]) -> None:
        self.status_bar.set_busy(False)
        self.tasks.set_running(False)
        self.tasks.show_scores(scores)
        self._update_buttons()

    def _on_failed(self, request: ActiveRequest, message: str) -> None:
        if request.kind == "analysis":
            self.analysis.set_running(False)
            self.analysis.say(message, error=True)
            self.status_bar.set_busy(False)
            self._update_buttons()
            return
        if request.kind in ("chat", "notebook") and request.text.strip():
            self.conversations.save_reply(request, request.text, "interrupted")  # what came is kept, and marked
        self.conversations.forget_failed()
        self._show_context()  # not the last finished reply's figure
        self.tasks.set_running(False)
        self.status_bar.set_busy(False)
        if request.kind == "suggest":
            self.status_bar.clearMessage()  # "Suggesting…"
        self.banner.show_message(f"Generation failed: {in_window_terms(message)}", kind="generation",
                                 conversation=request.conversation_id if not request.detached else None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        generating, ready = self.active is not None, self.model_info is not None
        self.chat.set_state(generating, ready)
        self.notebook.set_state(generating, ready)
        self.notebook.analyse_button.setEnabled(ready and not generating)
        self.settings_panel.set_engine_editable(not generating)

    # settings and lifetime

    def change_text_size(self, step: int) -> None:
        """Ctrl+= / Ctrl+- make all the window's text a point larger or smaller (0: the system's size again)."""
        self.settings.text_size = next_size(self.settings.text_size, step) if step else 0
        apply_font(self, sized_font(self.settings.text_size))
        self._save_settings()
        if step:
            self.status_bar.showMessage(f"Text size {self.font().pointSize()} pt (Ctrl+0: as the system's)", 3000)

    def set_probabilities(self, on: bool, by: str | None = None, palette: str | None = None) -> None:
        """View > Probabilities (Ctrl+Shift+P): colour replies and continuations by what the model predicted."""
        self.probabilities_action.setChecked(on)
        if by is not None:
            self.by_probability_action.setChecked(by == PROBABILITY)
        if palette is not None:
            self.colour_blind_action.setChecked(palette == COLOUR_BLIND)
        self.colouring_changed()

    def colouring_changed(self, _checked: bool = False, save: bool = True) -> None:
        self.settings.probabilities = self.probabilities_action.isChecked()
        self.settings.colour_by = PROBABILITY if self.by_probability_action.isChecked() else RANKS
        self.settings.colour_palette = COLOUR_BLIND if self.colour_blind_action.isChecked() else GLTR
        colouring = Colouring(self.settings.colour_by, self.settings.colour_palette)
        self.conversations.set_colouring(colouring if self.settings.probabilities else None)
        self.analysis.set_colouring(colouring)
        if save:
            self._save_settings()

    def toggle_settings(self) -> None:
        """Ctrl+, shows the settings with the keyboard in their first field, or hides them and it goes back."""
        shown = not self.settings_dock.isVisible()
        self.settings_dock.setVisible(shown)
        if shown:
            self.settings_panel.focus_first()
        elif self.tabs.currentWidget() is self.splitter:
            self.conversations.focus_page()

    def show_analysis(self) -> None:
        """Ctrl+5: the Analyse tab, with the keyboard in its text box."""
        self.tabs.setCurrentWidget(self.analysis)
        self.analysis.input.setFocus()

    def _store_settings(self) -> None:
        self.settings_panel.store(self.settings)
        self._save_settings()

    def _device_changed(self) -> None:
        self._store_settings()
        self.load_model(self._loaded if self.model_info is not None else self.settings.model)

    def _save_settings(self, at_exit: bool = False) -> None:
        """Write the settings file; if the disk refuses, say so in the banner (at exit: one line on stderr)."""
        if self.settings_path is None:  # a file there could not be used nor moved aside: the banner said so
            return
        try:
            self.settings.save(self.settings_path)
        except StorageError as exc:
            if at_exit:
                print(f"gpt2-desktop: {exc}", file=sys.stderr)
            else:
                self.banner.show_message(f"{exc} The settings changed meanwhile apply until you quit.",
                                         kind="saving")
            return
        self.banner.hide_kind("saving")

    def show_tab(self, page: QWidget) -> None:
        """Bring a tab to the front, with the keyboard in it (its `focus_first`, where it has one)."""
        self.tabs.setCurrentWidget(page)
        focus = getattr(page, "focus_first", None)
        if focus is not None:
            focus()
        elif page is self.splitter:
            self.conversations.focus_page()

    def show_shortcuts(self) -> None:
        from app.shell.shortcuts_page import ShortcutsPage

        ShortcutsPage(self).exec()

    def show_about(self) -> None:
        from app.version import version

        QMessageBox.about(self, "About gpt2-desktop",
                          f"<b>gpt2-desktop {version()}</b><p>Runs GPT-2-family language models on this computer.</p>")

    def closeEvent(self, event) -> None:
        """Stop a streaming reply, keep what it wrote, and end the engine thread cleanly (a fine-tuning run under
        way: once the person has said to quit)."""
        if not self.finetune.may_close():
            event.ignore()
            return
        self.conversations.store_document()
        self.conversations.keep_unsent()
        self.chat.stop_counting()
        active = self.requests.shutdown()
        if active is not None and active.kind in ("chat", "notebook"):
            self.conversations.save_reply(active, active.text, "cancelled")
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self.settings.splitter_state = bytes(self.splitter.saveState().toBase64()).decode()
        self._save_settings(at_exit=True)
        self.models.shutdown()
        self.server.shutdown()
        self.analysis.shutdown()
        self.finetune.shutdown()  # a run pauses (checkpoint saved); the next start offers to resume it
        super().closeEvent(event)

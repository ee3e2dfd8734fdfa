"""The engine's Qt adapter: a QObject that lives on its own QThread and talks only through signals.

What it sends back are frozen dataclasses: a `ModelInfo` once a model is loaded, the engine's own
`Done` at the end of a generation and its `OptionScore`s for a choice.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from app.finetune_runs import resolve as resolve_trained
from app.servers import parse_remote
from engine import Done, EngineError, Generator, SamplingSettings, load_model
from engine.core.device import set_threads
from engine.inference.chat import chat_style

EMIT_INTERVAL_S = 0.02  # tokens are batched so that a fast model cannot flood the GUI thread


@dataclass(frozen=True)
class ModelInfo:
    """The model the engine has loaded."""

    name: str
    folder: Path
    device: str
    precision: str
    context_window: int
    chat_style: str  # how a conversation is written as a prompt (engine.inference.chat)
    server: str = ""  # a remote model's server address ("" for a local model; device is then "remote")


class _CancelFlag:
    """Cancels one request: `is_set()` turns true once the window has cancelled that request or a later one."""

    def __init__(self, worker: "EngineWorker", request_id: int):
        self.worker, self.request_id = worker, request_id

    def is_set(self) -> bool:
        return self.worker.cancelled_upto >= self.request_id


class EngineWorker(QObject):
    loading = Signal(str)
    loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)
    tokens = Signal(int, str, int)  # request id, text, how many tokens it holds
    finished = Signal(int, object)  # request id, the engine's Done
    failed = Signal(int, str)
    chosen = Signal(int, object)  # request id, the engine's OptionScores in option order

    def __init__(self):
        super().__init__()
        self.generator: Generator | None = None
        self.cancelled_upto = 0  # written by the GUI thread (a plain int store), read here

    def cancel(self, request_id: int) -> None:
        """Called directly from the GUI thread: takes effect within one token step."""
        self.cancelled_upto = max(self.cancelled_upto, request_id)

    @Slot(str, str, str, int, str)
    def load(self, model: str, device: str, precision: str, threads: int, api_key: str = "") -> None:
        """Load a model, or reach a remote one (its name as app.servers writes it, with its server's key); the
        current one stays in use until the new one is ready, and after a failure."""
        self.loading.emit(model or "embedded model")
        remote = parse_remote(model)
        try:
            if remote is not None:
                self._reach(*remote, api_key)
                return
            set_threads(threads or None)
            trained = resolve_trained(model)  # "BASE + NAME": a run of the Fine-tune view
            if trained is not None:
                base, adapter, folder = trained
                loaded = load_model(folder or base, device=device, precision=precision, adapter=adapter)
            else:
                loaded = load_model(model or None, device=device, precision=precision)
        except EngineError as exc:
            self.load_failed.emit(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app stays usable
            traceback.print_exc()
            self.load_failed.emit(f"Unexpected error while loading the model: {exc}")
            return
        self.generator = Generator(loaded)
        self.loaded.emit(ModelInfo(name=loaded.name, folder=Path(loaded.folder), device=loaded.device,
                                   precision=loaded.precision, context_window=loaded.context_window,
                                   chat_style=chat_style(loaded.name)))

    def _reach(self, model: str, url: str, api_key: str) -> None:
        from engine.inference.remote import RemoteEngine, RemoteServer

        engine = RemoteEngine(RemoteServer(url, model=model, api_key=api_key or None))
        window = engine.context_window()
        self.generator = engine
        self.loaded.emit(ModelInfo(name=model, folder=Path(), device="remote", precision="server",
                                   context_window=window, chat_style=chat_style(model), server=engine.url))

    @Slot(int, str, dict)
    def generate(self, request_id: int, prompt: str, settings: dict) -> None:
        if self.generator is None:
            self.failed.emit(request_id, "No model is loaded.")
            return
        try:
            sampling = SamplingSettings(**settings).validate()
            pending, count, last_emit = "", 0, time.monotonic()
            for event in self.generator.stream(prompt, sampling, _CancelFlag(self, request_id)):
                if isinstance(event, Done):
                    if pending:
                        self.tokens.emit(request_id, pending, count)
                    self.finished.emit(request_id, event)
                    return
                pending += event.text
                count += 1
                now = time.monotonic()
                if now - last_emit >= EMIT_INTERVAL_S:
                    self.tokens.emit(request_id, pending, count)
                    pending, count, last_emit = "", 0, now
        except EngineError as exc:
            if pending:  # what a remote server wrote before it went away is kept
                self.tokens.emit(request_id, pending, count)
            self.failed.emit(request_id, str(exc))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.failed.emit(request_id, f"Unexpected error during generation: {exc}")

    @Slot(int, str, list, bool)
    def choose(self, request_id: int, context: str, options: list, normalise: bool) -> None:
        if self.generator is None:
            self.failed.emit(request_id, "No model is loaded.")
            return
        from engine.inference.scoring import choose

        try:
            if isinstance(self.generator, Generator):
                scores, _best = choose(self.generator.loaded, context, list(options), normalise=normalise)
            else:  # a remote engine scores on its server
                scores, _best = self.generator.choose(context, list(options), normalise=normalise)
        except EngineError as exc:
            self.failed.emit(request_id, str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.failed.emit(request_id, f"Unexpected error while scoring: {exc}")
            return
        self.chosen.emit(request_id, scores)

"""The engine's one client on the GUI thread: its thread and worker, and the request it is answering.

Requests are numbered; only the active one's signals get through (a stopped request's last tokens,
arriving after a new one began, are dropped here). Stopping is one int store on the worker, read
by the engine thread between two tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, Signal

from app.engine_link.worker import EngineWorker, ModelInfo

if TYPE_CHECKING:
    from app.probe.token_data import ReplyTokens
    from engine.inference.generate import Done
    from engine.inference.scoring import OptionScore

Kind = Literal["chat", "notebook", "task", "choice", "analysis", "suggest"]


@dataclass
class ActiveRequest:
    """The request the engine is answering; `text` grows as its tokens arrive."""

    request_id: int
    kind: Kind
    settings: dict  # as sent to the engine, kept with the reply
    conversation_id: int | None = None  # chat and notebook requests write into a conversation
    text: str = ""
    detached: bool = False  # the user moved to another conversation; the reply is still saved
    reply_after: int | None = None  # a chat reply: the message it answers (a new version if it had a reply)
    tokens: int = 0  # written so far
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None  # when the first arrived (time.monotonic)
    token_data: ReplyTokens | None = None  # what the model predicted at each token (chat and notebook), at the end
    token_blob: bytes | None = None  # ... as stored (encoded on the engine thread)
    prefix: str = ""  # text put before what the engine writes (an alternative picked in a reply), not in `text`
    replaces: int | None = None  # the reply (or continuation) this one is a new version of

    def tokens_per_second(self) -> float:
        """The speed so far: the tokens after the first, over the time since the first arrived."""
        elapsed = time.monotonic() - self.first_token if self.first_token is not None else 0.0
        return (self.tokens - 1) / elapsed if self.tokens > 1 and elapsed > 0 else 0.0


class RequestController(QObject):
    loading = Signal(str)  # the model's name
    loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)
    started = Signal(object)  # ActiveRequest, just sent to the engine
    tokens = Signal(object, str)  # ActiveRequest, the text that just arrived
    finished = Signal(object, object)  # ActiveRequest (no longer active), the engine's Done
    failed = Signal(object, str)  # ActiveRequest (no longer active), message
    chosen = Signal(object, object)  # ActiveRequest (no longer active), list of the engine's OptionScores
    suggested = Signal(object, list)  # ActiveRequest (no longer active), short continuations
    progress = Signal(object, int, int)  # ActiveRequest (an analysis), tokens done, tokens in all
    analysed = Signal(object, object)  # ActiveRequest (no longer active), TextAnalysis (None: cancelled)

    _load = Signal(str, str, str, int, str)  # queued to the worker on the engine thread
    _generate = Signal(int, str, dict, object)
    _choose = Signal(int, str, list, bool)
    _analyse = Signal(int, str)
    _suggest = Signal(int, str, dict, int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.model: ModelInfo | None = None  # None while loading, or when no model could be loaded
        self._previous: ModelInfo | None = None  # the model the engine keeps while another one loads
        self.active: ActiveRequest | None = None
        self._last_id = 0
        self._closing = False  # shut down: what still arrives ends nothing
        self.engine_thread = QThread(self)
        self.engine_thread.setObjectName("engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.engine_thread)
        self.engine_thread.finished.connect(self.worker.deleteLater)
        self._load.connect(self.worker.load)
        self._generate.connect(self.worker.generate)
        self._choose.connect(self.worker.choose)
        self._analyse.connect(self.worker.analyse)
        self._suggest.connect(self.worker.suggest)
        self.worker.loading.connect(self.loading)
        self.worker.loaded.connect(self._on_loaded)
        self.worker.load_failed.connect(self._on_load_failed)
        self.worker.tokens.connect(self._on_tokens)
        self.worker.finished.connect(self._on_finished)
        self.worker.details.connect(self._on_details)
        self.worker.failed.connect(self._on_failed)
        self.worker.chosen.connect(self._on_chosen)
        self.worker.progress.connect(self._on_progress)
        self.worker.suggested.connect(self._on_suggested)
        self.worker.analysed.connect(self._on_analysed)
        self.engine_thread.start()

    def load(self, model: str | None, device: str, precision: str, threads: int, api_key: str = "") -> None:
        """Load a model (a folder or name; None for the embedded one; a remote model's name with its server's
        `api_key`); `loaded` or `load_failed` follows.
        The engine keeps the current model until the new one has loaded: if it fails, `model` is the
        current one again when `load_failed` arrives."""
        self._previous, self.model = self.model or self._previous, None
        self._load.emit(model or "", device, precision, threads, api_key)

    def why_not_ready(self) -> str | None:
        """Why a new request cannot start now, or None when it can."""
        if self.model is None:
            return "No model is loaded yet (File > Open model folder…, or the Models tab)."
        if self.active is not None:
            return "The model is still writing; stop it first (Esc)."
        return None

    def generate(self, kind: Kind, prompt: str, settings: dict, conversation_id: int | None = None,
                 top_logprobs: int = 0, prefix: ReplyTokens | None = None) -> ActiveRequest:
        """Start writing after `prompt` (and the tokens of `prefix`, as if already written); `tokens` follow,
        then `finished` or `failed`. With `top_logprobs`, the request's `token_data` (the prefix's tokens, then
        the ones written) is set before `finished`."""
        request = self._begin(kind, settings, conversation_id)
        if prefix is not None:
            request.prefix = prefix.text()
        options = {"top_logprobs": top_logprobs, "prefix": prefix}
        self._generate.emit(request.request_id, prompt, settings, options)
        return request

    def choose(self, context: str, options: list[str], normalise: bool) -> ActiveRequest:
        """Score each option after `context`; `chosen` or `failed` follows."""
        request = self._begin("choice", {"normalise": normalise})
        self._choose.emit(request.request_id, context, list(options), normalise)
        return request

    def analyse(self, text: str) -> ActiveRequest:
        """Score every token of `text`; `progress` follows, then `analysed` or `failed`."""
        request = self._begin("analysis", {})
        self._analyse.emit(request.request_id, text)
        return request

    def suggest(self, prompt: str, settings: dict, count: int = 3) -> ActiveRequest:
        """`count` short sampled continuations of `prompt`; `suggested` or `failed` follows."""
        request = self._begin("suggest", settings)
        self._suggest.emit(request.request_id, prompt, settings, count)
        return request

    def stop(self) -> None:
        """Ask the engine to end the active request; it finishes (stop reason "cancelled") within a token."""
        if self.active is not None:
            self.worker.cancel(self.active.request_id)

    def shutdown(self) -> ActiveRequest | None:
        """Stop and forget the active request and end the engine thread; returns that request, if any, with all
        it wrote and (if asked for) its token data: what the engine sent before it stopped is taken in, though
        nothing more is emitted but its last `tokens`."""
        active = self.active
        if active is not None:
            self.worker.cancel(active.request_id)
        self.engine_thread.quit()
        self.engine_thread.wait(5000)
        self._closing = True
        QCoreApplication.sendPostedEvents(self, QEvent.MetaCall)  # the worker's last signals, queued to us
        self.active = None
        return active

    def _begin(self, kind: Kind, settings: dict, conversation_id: int | None = None) -> ActiveRequest:
        if self.active is not None:
            raise RuntimeError("the engine is still answering another request")
        self._last_id += 1
        self.active = ActiveRequest(self._last_id, kind, settings, conversation_id)
        self.started.emit(self.active)
        return self.active

    def _take(self, request_id: int) -> ActiveRequest | None:
        """The active request if `request_id` is it, no longer active; None for a stale signal (and after
        shutdown, which hands the request over itself)."""
        active = self.active
        if active is None or active.request_id != request_id or self._closing:
            return None
        self.active = None
        return active

    def _on_loaded(self, info: ModelInfo) -> None:
        if self._closing:
            return
        self.model, self._previous = info, None
        self.loaded.emit(info)

    def _on_load_failed(self, message: str) -> None:
        if self._closing:
            return
        self.model, self._previous = self._previous, None
        self.load_failed.emit(message)

    def _on_tokens(self, request_id: int, text: str, count: int) -> None:
        active = self.active
        if active is not None and active.request_id == request_id:
            active.text += text
            active.first_token = active.first_token or time.monotonic()
            active.tokens += count
            self.tokens.emit(active, text)

    def _on_finished(self, request_id: int, done: Done) -> None:
        if (active := self._take(request_id)) is not None:
            self.finished.emit(active, done)

    def _on_details(self, request_id: int, data: ReplyTokens, blob: bytes) -> None:
        if self.active is not None and self.active.request_id == request_id:
            self.active.token_data, self.active.token_blob = data, blob

    def _on_failed(self, request_id: int, message: str) -> None:
        if (active := self._take(request_id)) is not None:
            self.failed.emit(active, message)

    def _on_chosen(self, request_id: int, scores: list[OptionScore]) -> None:
        if (active := self._take(request_id)) is not None:
            self.chosen.emit(active, scores)

    def _on_progress(self, request_id: int, done: int, total: int) -> None:
        if self.active is not None and self.active.request_id == request_id:
            self.progress.emit(self.active, done, total)

    def _on_analysed(self, request_id: int, analysis) -> None:
        if (active := self._take(request_id)) is not None:
            self.analysed.emit(active, analysis)

    def _on_suggested(self, request_id: int, texts: list) -> None:
        if (active := self._take(request_id)) is not None:
            self.suggested.emit(active, texts)

"""The engine's Qt adapter: a QObject that lives on its own QThread and talks only through signals.

What it sends back are frozen dataclasses: a `ModelInfo` once a model is loaded, the engine's own
`Done` at the end of a generation (after it, with `top_logprobs`, the reply's `ReplyTokens`: each
token's probability, rank and alternatives) and its `OptionScore`s for a choice.
"""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from app.finetune.runs import resolve as resolve_trained
from app.models.servers import parse_remote, remote_name
from engine import Done, EngineError, Generator, SamplingSettings, load_model
from engine.core.device import set_threads
from engine.store.local import embedded_name
from app.probe.token_data import ReplyTokens, TextAnalysis
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

    @property
    def writer(self) -> str:
        """The name a reply is headed and kept with: a remote model's names its server ("tiny @ http://...")."""
        return remote_name(self.name, self.server) if self.server else self.name


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
    details = Signal(int, object, bytes)  # request id, ReplyTokens and its stored form (just before `finished`)
    failed = Signal(int, str)
    chosen = Signal(int, object)  # request id, the engine's OptionScores in option order
    suggested = Signal(int, list)  # request id, short continuations
    progress = Signal(int, int, int)  # request id, tokens analysed so far, tokens in all
    analysed = Signal(int, object)  # request id, the text's TextAnalysis (None: cancelled)

    def __init__(self):
        super().__init__()
        self.generator: Generator | None = None
        self.cancelled_upto = 0  # written by the GUI thread (a plain int store), read here

    def cancel(self, request_id: int) -> None:
        """Called directly from the GUI thread: takes effect within one token step."""
        self.cancelled_upto = max(self.cancelled_upto, request_id)

    @contextmanager
    def _failures_sent(self, request_id: int, doing: str):
        """Runs a request's body: an EngineError ends it with `failed` and its own message, anything else with
        "Unexpected error <doing>: ..." (its traceback printed); the app stays usable either way."""
        try:
            yield
        except EngineError as exc:
            self.failed.emit(request_id, str(exc))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.failed.emit(request_id, f"Unexpected error {doing}: {exc}")

    @Slot(str, str, str, int, str)
    def load(self, model: str, device: str, precision: str, threads: int, api_key: str = "") -> None:
        """Load a model, or reach a remote one (its name as app.models.servers writes it, with its server's key); the
        current one stays in use until the new one is ready, and after a failure."""
        self.loading.emit(model or embedded_name())
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
        # A fine-tuned model goes by the name it is listed by ("tales-7m + my letters"), not its folders'.
        name = model if trained is not None else loaded.name
        self.loaded.emit(ModelInfo(name=name, folder=Path(loaded.folder), device=loaded.device,
                                   precision=loaded.precision, context_window=loaded.context_window,
                                   chat_style=chat_style(loaded.name)))

    def _reach(self, model: str, url: str, api_key: str) -> None:
        from engine.inference.remote import RemoteEngine, RemoteServer

        engine = RemoteEngine(RemoteServer(url, model=model, api_key=api_key or None))
        window = engine.context_window()
        self.generator = engine
        self.loaded.emit(ModelInfo(name=model, folder=Path(), device="remote", precision="server",
                                   context_window=window, chat_style=chat_style(model), server=engine.url))

    @Slot(int, str, dict, object)
    def generate(self, request_id: int, prompt: str, settings: dict, options: dict) -> None:
        """Write after `prompt`. `options`: `top_logprobs` (each token's rank and that many alternatives, sent
        as ReplyTokens with the end, encoded here: not on the GUI thread), `prefix` (ReplyTokens put after the
        prompt, as if already written; they begin the ReplyTokens sent)."""
        if self.generator is None:
            self.failed.emit(request_id, "No model is loaded.")
            return
        pending, count = "", 0
        remote = not isinstance(self.generator, Generator)
        with self._failures_sent(request_id, "during generation"):
            try:
                sampling = SamplingSettings(**settings).validate()
                # A remote server's tokens come without ids: no probability view for them.
                top = 0 if remote else int(options.get("top_logprobs", 0))
                prefix = options.get("prefix")
                if remote and prefix is not None:
                    raise EngineError("Continuing from an alternative needs a model on this computer.")
                if prefix is not None and len(prefix):
                    prompt = self.generator.encode_prompt(prompt) + list(prefix.ids)
                data = ReplyTokens(k=top) + prefix if prefix is not None else ReplyTokens(k=top)
                pending, count, last_emit = "", 0, time.monotonic()
                for event in self.generator.stream(prompt, sampling, _CancelFlag(self, request_id), top_logprobs=top):
                    if isinstance(event, Done):
                        if pending:
                            self.tokens.emit(request_id, pending, count)
                        if top:
                            self.details.emit(request_id, data, data.encode())
                        self.finished.emit(request_id, event)
                        return
                    if top:
                        data.add(event.token, event.text, event.logprob, event.rank,
                                 [(a.token, a.text, a.logprob) for a in event.top])
                    pending += event.text
                    count += 1
                    now = time.monotonic()
                    if now - last_emit >= EMIT_INTERVAL_S:
                        self.tokens.emit(request_id, pending, count)
                        pending, count, last_emit = "", 0, now
            except EngineError:
                if pending:  # what a remote server wrote before it went away is kept
                    self.tokens.emit(request_id, pending, count)
                raise

    @Slot(int, str, list, bool)
    def choose(self, request_id: int, context: str, options: list, normalise: bool) -> None:
        if self.generator is None:
            self.failed.emit(request_id, "No model is loaded.")
            return
        from engine.inference.scoring import choose

        with self._failures_sent(request_id, "while scoring"):
            if isinstance(self.generator, Generator):
                scores, _best = choose(self.generator.loaded, context, list(options), normalise=normalise)
            else:  # a remote engine scores on its server
                scores, _best = self.generator.choose(context, list(options), normalise=normalise)
            self.chosen.emit(request_id, scores)

    @Slot(int, str, dict, int)
    def suggest(self, request_id: int, prompt: str, settings: dict, count: int) -> None:
        """`count` short sampled continuations of `prompt` (the prompt is prefilled once: the others reuse its
        cache), different ones first; `suggested` with them."""
        if self.generator is None:
            self.failed.emit(request_id, "No model is loaded.")
            return
        if not isinstance(self.generator, Generator):
            self.failed.emit(request_id, "Suggestions need a model on this computer.")
            return
        with self._failures_sent(request_id, "while suggesting"):
            seed = settings.get("seed")
            base = seed if seed is not None else int(time.time() * 1000) % 2**31
            texts: list[str] = []
            for i in range(count * 2):  # a few more tries if two come out the same
                sampling = SamplingSettings(**{**settings, "max_new_tokens": SUGGESTION_TOKENS, "stop": ["\n"],
                                               "temperature": max(settings.get("temperature", 1.0),
                                                                  SUGGESTION_TEMPERATURE),
                                               "seed": base + i}).validate()
                done = [e for e in self.generator.stream(prompt, sampling, _CancelFlag(self, request_id))][-1]
                if done.stop_reason == "cancelled":
                    break
                if done.text.strip() and done.text not in texts:
                    texts.append(done.text)
                if len(texts) == count:
                    break
            self.suggested.emit(request_id, texts)

    @Slot(int, str)
    def analyse(self, request_id: int, text: str) -> None:
        """Score every token of `text` (window by window, `progress` after each) with its rank and top
        alternatives, as GLTR does; `analysed` with its TextAnalysis (worked out here, not on the GUI thread), or
        None once the window cancelled it."""
        if self.generator is None:
            self.failed.emit(request_id, "No model is loaded.")
            return
        if not isinstance(self.generator, Generator):
            self.failed.emit(request_id, "Analysing here needs a model on this computer (for a server's model: "
                                         "gpt2-desktop analyse --remote URL).")
            return
        from engine.core.tokenizer import StreamDecoder
        from engine.inference.analysis import Cancelled, cancellable
        from engine.inference.scoring import normalise_newlines, score_ids

        with self._failures_sent(request_id, "while analysing"):
            loaded, cancel = self.generator.loaded, _CancelFlag(self, request_id)
            text, line_endings = normalise_newlines(text)  # as training reads text
            ids = _encode_in_pieces(loaded.tokenizer, text)
            if not ids:
                self.failed.emit(request_id, "There is no text to analyse.")
                return
            data, decoder, done = ReplyTokens(), StreamDecoder(loaded.tokenizer), 0
            self.progress.emit(request_id, 0, len(ids))
            try:
                with cancellable(loaded, cancel.is_set):  # Cancel stops within a layer, not at the window's end
                    for batch in score_ids(loaded, ids, top_logprobs=data.k):
                        if cancel.is_set():
                            raise Cancelled
                        for score in batch:
                            data.add(score.token, decoder.push(score.token), score.logprob, score.rank,
                                     [(a.token, a.text, a.logprob) for a in score.top])
                        done += len(batch)
                        self.progress.emit(request_id, done, len(ids))
            except Cancelled:
                self.analysed.emit(request_id, None)
                return
            if data.pieces:
                data.pieces[-1] += decoder.flush()
            self.analysed.emit(request_id, TextAnalysis.of(data, loaded.name, line_endings))


SUGGESTION_TOKENS = 8  # a suggestion is a few words: up to a new line or this many tokens
SUGGESTION_TEMPERATURE = 0.7  # at least: three suggestions at temperature 0 would be one


ENCODE_PIECE = 2000  # characters: the tokenizer holds the interpreter while it encodes (the GUI thread waits)


def _encode_in_pieces(tokenizer, text: str) -> list[int]:
    """`tokenizer.encode(text)`, a piece at a time so that the GUI thread gets its turns. Each piece ends before
    a space that follows a non-space and precedes one: GPT-2's pre-tokenizer always begins a new word there,
    so the ids are the same as in one go."""
    ids, start = [], 0
    while start < len(text):
        end = start + ENCODE_PIECE
        while end < len(text) and not (text[end] == " " and not text[end - 1].isspace()
                                        and end + 1 < len(text) and not text[end + 1].isspace()):
            end += 1
        ids += tokenizer.encode(text[start:end])
        start = end
    return ids

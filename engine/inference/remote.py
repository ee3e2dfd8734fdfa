"""A remote engine: any OpenAI-compatible server (vLLM, TGI, llama.cpp's server, another gpt2-desktop)
behind the same surface as a local model — `stream` yields TokenEvents then a Done, `score_text`,
`perplexity`, `choose` and `analyse` give the same results types — over HTTP.

The server's tokenizer counts. Where the server tokenizes (`POST /tokenize`: vLLM, llama.cpp's server and
ours), a prompt that does not fit the model's window with the reply loses its oldest tokens and the reply
is capped, as the local engine does, and text is scored as the local engine scores it: after
<|endoftext|>, window by window, with the same stride, as token ids (so each token's id is known). Where it
does not, the window comes from `/v1/models` (vLLM's and our `max_model_len`, llama.cpp's `n_ctx_train`)
or from the first refusal for context length, whose numbers say how much to leave out; text is scored as
one prompt, its first token context only.

Scores come from vLLM's `prompt_logprobs` where the server gives them (ids, ranks, alternatives: what
`analyse` needs), else from `echo` with `logprobs`; a server that gives neither is named as such. Busy
servers (429, 503) are retried with back-off; a wrong key, an unknown model, a server that cannot be
reached or goes away mid-reply are each a `RemoteError` with a plain message (mid-reply, with the text
written so far). The wire's shapes are read in `engine.inference.remote_wire`.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Callable, Iterator
from urllib.parse import urlsplit

from engine.core.tokenizer import ENDOFTEXT
from engine.errors import RemoteError, SettingsError
from engine.inference import remote_wire as wire
from engine.inference.analysis import Analysis, gather, summarise
from engine.inference.generate import Done, StopReason, TokenEvent
from engine.inference.predictions import check_top_logprobs
from engine.inference.scoring import OptionScore, Perplexity, TokenScore, spans
from engine.inference.settings import SamplingSettings

RETRIES = 3  # after a 429 or 503, with back-off 1, 2, 4 s (or what Retry-After says, up to 10 s)
UNKNOWN = wire.UNKNOWN  # the id of a token the server named only by its text
REFITS = 3  # requests refused for context length, each followed by a shorter one, before giving up
EXTRAS = ("return_tokens_as_token_ids", "stream_options", "logprobs")  # asked of a stream where the server takes them


@dataclass(frozen=True)
class RemoteServer:
    url: str  # the API's base, e.g. http://gpu-box:8000/v1
    model: str | None = None  # None: the first the server lists
    api_key: str | None = None
    timeout: float = 120.0  # seconds without a byte from the server

    @staticmethod
    def base(url: str) -> str:
        """`url` as the API's base: a scheme and a host are needed; `/v1` is added when no path is given."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RemoteError(f"'{url}' is not a server address: give one like http://127.0.0.1:8080/v1.")
        path = parts.path.rstrip("/") or "/v1"
        return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass(frozen=True)
class _Fit:
    """A prompt as it is sent: what is left of it, how many tokens may follow, and what was left out."""

    prompt: str | list[int]
    max_tokens: int
    ids: list[int] | None = None  # the whole prompt's token ids, when the server tokenized it
    total: int | None = None  # the whole prompt's tokens, when known
    truncated: int = 0  # tokens left out from its start (known exactly with `ids`)


class RemoteEngine:
    def __init__(self, server: RemoteServer, listing_only: bool = False):
        self.url = RemoteServer.base(server.url)
        self.root = self.url.removesuffix("/v1")  # where vLLM and llama.cpp's server answer /tokenize
        self.server = server
        self.name = server.model or ("" if listing_only else self._first_model())
        # What the server was found to do, learnt once each (None: not asked yet).
        self._window: int | None = None  # the model's window (0: not listed)
        self._tokenizes: bool | None = None
        self._start: list[int] | None = None  # the token text is scored after ([]: none)
        self._prompt_logprobs: bool | None = None  # gives vLLM's prompt_logprobs
        self._extras = True  # takes the stream's extra fields (token ids, usage)
        self._room = 0  # tokens a scoring window leaves for a completion (1 where max_tokens 0 is refused)

    @classmethod
    def list_models(cls, url: str, api_key: str | None = None) -> tuple[str, list[str]]:
        """(the server's API address, the ids of the models it serves); RemoteError if it cannot say."""
        engine = cls(RemoteServer(url, api_key=api_key), listing_only=True)
        models = engine.models()
        if not models:
            raise RemoteError(f"{engine.url} answers but lists no models.")
        return engine.url, models

    # HTTP

    def _open(self, path: str, body: dict | None = None, root: bool = False):
        """The response to one request (to the API's base, or with `root` to the server's root), after
        retries on 429/503; errors as RemoteError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.server.api_key:
            headers["Authorization"] = f"Bearer {self.server.api_key}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request((self.root if root else self.url) + path, data=data, headers=headers)
            try:
                return urllib.request.urlopen(request, timeout=self.server.timeout)
            except urllib.error.HTTPError as exc:
                message, detail = _error_of(exc)
                if exc.code in (429, 503) and attempt < RETRIES:
                    time.sleep(_retry_after(exc, attempt))
                    continue
                raise self._refused(exc.code, message, detail) from None
            except urllib.error.URLError as exc:
                raise RemoteError(f"Cannot reach {self.url}: {getattr(exc, 'reason', exc)}. Is the server "
                                  "running, and is the address right?") from None
            except (TimeoutError, OSError) as exc:
                raise RemoteError(f"{self.url} did not answer within {self.server.timeout:g} s ({exc}).") from None
        raise AssertionError("unreachable")

    def _refused(self, status: int, message: str, detail: dict) -> RemoteError:
        if status == 401:
            text = (f"{self.url} refused the API key (401 Unauthorized): give the right one with --api-key or "
                    f"OPENAI_API_KEY. The server said: {message}")
        elif status == 404:
            text = f"{self.url} has no such model or endpoint (404): {message}"
        elif status in (429, 503):
            text = f"{self.url} is busy ({status}) and stayed busy after {RETRIES} retries: {message}"
        elif status >= 500:
            text = f"{self.url} failed ({status}): {message}"
        else:
            text = f"{self.url} refused the request ({status}): {message}"
        return RemoteError(text, status=status, detail=detail)

    def _post(self, path: str, body: dict, root: bool = False) -> dict:
        with self._open(path, body, root) as response:
            return wire.json_object(response.read(), self.url)

    def _cards(self) -> list[dict]:
        with self._open("/models") as response:
            return [m for m in wire.json_object(response.read(), self.url).get("data", []) if isinstance(m, dict)]

    def _first_model(self) -> str:
        cards = self._cards()
        if not cards or not isinstance(cards[0].get("id"), str):
            raise RemoteError(f"{self.url} lists no models; name one with --remote-model.")
        self.name = cards[0]["id"]
        self._learn_window(cards)
        return self.name

    def models(self) -> list[str]:
        return [m["id"] for m in self._cards() if isinstance(m.get("id"), str)]

    def context_window(self, default: int = 1024) -> int:
        """The model's window: as the server lists it (vLLM's and our `max_model_len`, llama.cpp's
        `n_ctx_train`) or, once one was refused for context length, as the refusal said; else `default`.
        Names the model if the server does not list it."""
        if self._window is None:
            cards = self._cards()
            if self._learn_window(cards) is None:
                listed = ", ".join(str(m.get("id")) for m in cards) or "none"
                raise RemoteError(f"{self.url} does not serve '{self.name}' (it lists: {listed}).")
        return self._window or default

    def _learn_window(self, cards: list[dict]) -> int | None:
        """The window the model's card lists (0: none), kept; None when the server does not list the model."""
        card = next((m for m in cards if m.get("id") == self.name), None)
        if card is None:
            return None
        meta = card.get("meta") if isinstance(card.get("meta"), dict) else {}
        value = card.get("max_model_len") or card.get("context_length") or meta.get("n_ctx_train")
        self._window = value if isinstance(value, int) and value > 0 else 0
        return self._window

    def _known_window(self) -> int:
        """The window as far as it is known (0: not), without naming a model the server does not list (the
        request itself then says what the server thinks of it)."""
        if self._window is None:
            self._learn_window(self._cards())
        return self._window or 0

    def tokenize(self, text: str) -> list[int] | None:
        """`text` as the server's tokenizer makes it (`POST /tokenize`, in vLLM's shape, or llama.cpp's);
        None where the server does not tokenize."""
        if self._tokenizes is False:
            return None
        for body in ({"model": self.name, "prompt": text}, {"content": text}):
            try:
                tokens = self._post("/tokenize", body, root=True).get("tokens")
            except RemoteError as exc:
                if exc.status in (0, 401, 429, 503):  # unreachable, the key, busy: said as it is
                    raise
                tokens = None
            if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens) and (tokens or not text):
                self._tokenizes = True
                return tokens
        self._tokenizes = False
        return None

    # generation

    def _body(self, prompt: str | list[int], settings: SamplingSettings) -> dict:
        body = {"model": self.name, "prompt": prompt, "max_tokens": settings.max_new_tokens,
                "temperature": settings.temperature, "top_p": settings.top_p}
        # Fields outside OpenAI's own list go only when they do something (vLLM and llama.cpp take them).
        extras = {"top_k": settings.top_k if settings.temperature > 0 else 0, "min_p": settings.min_p,
                  "repetition_penalty": settings.repetition_penalty}
        off = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
        body |= {k: v for k, v in extras.items() if v != off[k]}
        if settings.seed is not None:
            body["seed"] = settings.seed
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.presence_penalty:
            body["presence_penalty"] = settings.presence_penalty
        if settings.frequency_penalty:
            body["frequency_penalty"] = settings.frequency_penalty
        if settings.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in settings.logit_bias}
        return body

    def _fit(self, prompt: str | list[int], max_new: int, window: int) -> _Fit:
        """The prompt and reply fitted to `window` (0: not known) as the local engine fits them: a prompt too
        long for the window and the reply's start (up to a quarter of the window) loses its oldest tokens,
        and the reply gets what the window leaves."""
        ids = list(prompt) if isinstance(prompt, list) else self.tokenize(prompt)
        if ids is None:
            return _Fit(prompt, max_new)
        if not window or len(ids) + max_new <= window:
            return _Fit(prompt, max_new, ids, len(ids))
        cut = max(0, len(ids) - (window - min(max_new, max(1, window // 4))))
        kept = ids[cut:]
        return _Fit(kept if cut else prompt, min(max_new, window - len(kept)), ids, len(ids), cut)

    def _refit(self, fit: _Fit, max_new: int, window: int, prompt_tokens: int) -> _Fit | None:
        """After a refusal that said the window and the prompt's tokens: a prompt that fits (None: none will).
        Without the server's token ids, text is cut from its start in proportion, a little more than needed."""
        self._window = window
        if fit.ids is not None:
            refit = self._fit(fit.ids, max_new, window)
            return refit if (refit.truncated, refit.max_tokens) != (fit.truncated, fit.max_tokens) else None
        room = window - prompt_tokens
        total = fit.total if fit.total is not None else prompt_tokens
        if room >= min(max_new, max(1, window // 4)):
            return replace(fit, max_tokens=min(max_new, room), total=total) if room < fit.max_tokens else None
        if not isinstance(fit.prompt, str) or not fit.prompt:
            return None
        keep = window - min(max_new, max(1, window // 4))
        chars = int(len(fit.prompt) * keep / prompt_tokens * 0.9)
        return _Fit(fit.prompt[len(fit.prompt) - chars:] if chars > 0 else "", min(max_new, keep), None, total, 0)

    def _start_stream(self, fit: _Fit, settings: SamplingSettings, top_logprobs: int):
        """The streamed response to the fitted prompt, and the fit that was sent: a refusal for context length
        is answered with a shorter prompt, one of the extra fields with a request without them."""
        for _ in range(REFITS + 1):
            body = self._body(fit.prompt, replace(settings, max_new_tokens=fit.max_tokens)) | {"stream": True}
            if top_logprobs:
                body["logprobs"] = top_logprobs
            if self._extras:
                # Each token's id (vLLM's field; with alternatives their texts matter more) and the usage.
                body["stream_options"] = {"include_usage": True}
                if not top_logprobs:
                    body |= {"logprobs": 0, "return_tokens_as_token_ids": True}
            try:
                return self._open("/completions", body), fit
            except RemoteError as exc:
                limits = wire.context_limits(exc)
                if limits is None and exc.status == 400 and self._extras and any(f in str(exc) for f in EXTRAS):
                    self._extras = False  # a server that refuses what it does not know: ask plainly
                    continue
                refit = self._refit(fit, settings.max_new_tokens, *limits) if limits else None
                if refit is None:
                    raise
                fit = refit
        raise RemoteError(f"{self.url} refused every shorter prompt too; shorten the prompt or lower max "
                          "new tokens.")

    def stream(self, prompt: str | list[int], settings: SamplingSettings, cancel: threading.Event | None = None,
               top_logprobs: int = 0) -> Iterator[TokenEvent | Done]:
        """As `Generator.stream`, from the server's streamed answer."""
        settings.validate()
        check_top_logprobs(top_logprobs)
        started = time.perf_counter()
        window = self._known_window()
        response, fit = self._start_stream(self._fit(prompt, settings.max_new_tokens, window), settings,
                                           top_logprobs)
        first = last = None
        text, ids, events, finish, usage = "", [], 0, None, {}
        try:
            for data in wire.events(response):
                if cancel is not None and cancel.is_set():
                    finish = StopReason.CANCELLED
                    break
                if data == "[DONE]":
                    break
                chunk = wire.json_object(data.encode(), self.url)
                if "error" in chunk:
                    raise RemoteError(f"{self.url} stopped with an error: {wire.error_of(chunk)[0]}", partial=text)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    for event in wire.token_events(choice, top_logprobs):
                        last = time.perf_counter()
                        first = first or last
                        text += event.text
                        ids.append(event.token)
                        events += 1
                        yield event
                    if choice.get("finish_reason"):
                        finish = StopReason.LENGTH if choice["finish_reason"] == "length" else StopReason.STOP
        except (OSError, ValueError) as exc:  # the connection broke (ValueError: a cut chunk)
            raise RemoteError(f"{self.url} went away mid-reply ({exc}); the text so far is kept.",
                              partial=text) from None
        finally:
            response.close()
        if finish is None:
            raise RemoteError(f"{self.url} went away mid-reply (the answer stopped before its end); the text so far "
                              "is kept.", partial=text)
        yield self._done(text, ids, events, finish, usage, fit, settings, started, first, last)

    def _done(self, text: str, ids: list[int], events: int, finish: StopReason, usage: dict, fit: _Fit,
              settings: SamplingSettings, started: float, first: float | None, last: float | None) -> Done:
        """The Done of a streamed reply: the usage the server counted where it sent it, else what came."""
        written = usage.get("completion_tokens")
        written = written if isinstance(written, int) and finish != StopReason.CANCELLED else events
        if len(ids) != written or UNKNOWN in ids:
            ids = [UNKNOWN] * written
        sent = usage.get("prompt_tokens")
        if not isinstance(sent, int):
            sent = len(fit.prompt) if isinstance(fit.prompt, list) else (fit.total or 0) - fit.truncated
        total = fit.total if fit.total is not None else sent
        elapsed = (last - first) if first and last else 0.0
        return Done(text=text, token_ids=ids, prompt_tokens=total, stop_reason=finish,
                    time_to_first_token_ms=round(((first or time.perf_counter()) - started) * 1000, 2),
                    tokens_per_second=round((written - 1) / elapsed, 2) if written > 1 and elapsed > 0 else 0.0,
                    truncated_prompt_tokens=max(0, total - sent), seed=settings.seed, context_tokens=sent + written,
                    context_window=self._window or 0)

    # scoring, from the prompt's own log-probabilities

    def _start_ids(self) -> list[int]:
        """What a text is scored after, as the local engine does: <|endoftext|>, where the server's tokenizer
        makes it one token (a GPT-2); else nothing (a tokenizer that adds its own start token has it)."""
        if self._start is None:
            ids = self.tokenize(ENDOFTEXT)
            self._start = ids if ids is not None and len(ids) == 1 else []
        return self._start

    def _prompt_scores(self, ids: list[int], k: int) -> list[TokenScore]:
        """The server's scores of ids[1:], the prompt sent as token ids: vLLM's `prompt_logprobs` (ids, ranks,
        alternatives) where it gives them, else echo's log-probabilities (ranks only among the alternatives)."""
        window = self.context_window()
        body = {"model": self.name, "prompt": ids, "max_tokens": 0 if len(ids) >= window else 1, "temperature": 0}
        if self._prompt_logprobs is not False:
            try:
                answer = self._post("/completions", body | {"prompt_logprobs": k})
            except RemoteError as exc:
                if exc.status != 400 or "prompt_logprobs" not in str(exc):
                    raise
                self._prompt_logprobs = False
            else:
                entries = ((answer.get("choices") or [{}])[0]).get("prompt_logprobs")
                self._prompt_logprobs = isinstance(entries, list) and len(entries) == len(ids)
                if self._prompt_logprobs:
                    return wire.prompt_scores(entries, ids, k)
        return self._echo(body | {"echo": True, "logprobs": max(1, k)}, ids, k)

    def _echo(self, body: dict, ids: list[int] | None, k: int) -> list[TokenScore]:
        try:
            answer = self._post("/completions", body)
        except RemoteError as exc:
            if "echo" in str(exc) or "logprobs" in str(exc):
                raise RemoteError(f"{self.url} does not give the log-probabilities of a prompt (echo with "
                                  f"logprobs), which scoring and choosing need. The server said: {exc}") from None
            raise
        choice = (answer.get("choices") or [{}])[0]
        lp = choice.get("logprobs") or {}
        if ids is not None:
            prompt_tokens = len(ids)
        else:
            prompt_tokens = (answer.get("usage") or {}).get("prompt_tokens")
            if not isinstance(prompt_tokens, int):  # the tokens that start before the prompt's end
                offsets, text = lp.get("text_offset") or [], body["prompt"]
                prompt_tokens = sum(1 for o in offsets if o < len(text)) if offsets else len(lp.get("tokens") or [])
        try:
            return wire.echo_scores(lp, ids, prompt_tokens, k)
        except RemoteError:
            raise RemoteError(f"{self.url} did not send the prompt's log-probabilities with echo; it cannot "
                              "score.") from None

    def score_ids(self, ids: list[int], top_logprobs: int = 0) -> Iterator[list[TokenScore]]:
        """As the local `score_ids`: TokenScores for `ids` after the start token, window by window with the
        local stride (a server that will not write 0 tokens after a prompt gets windows one token shorter)."""
        seq = self._start_ids() + list(ids)
        yielded = False
        while True:
            window = self.context_window() - self._room
            try:
                for ctx_start, first, end in spans(len(seq), window):
                    scores = self._prompt_scores(seq[ctx_start:end], top_logprobs)
                    yield scores[first - 1 - ctx_start:end - 1 - ctx_start]
                    yielded = True
                return
            except RemoteError as exc:  # a full first window with max_tokens 0 refused: one token shorter
                if exc.status != 400 or self._room or yielded or len(seq) < window:
                    raise
                self._room = 1

    def _scores(self, text: str, top_logprobs: int) -> list[TokenScore] | None:
        """Every token of `text`, as the local engine scores them; None where the server does not tokenize."""
        ids = self.tokenize(text)
        if ids is None:
            return None
        return [score for batch in self.score_ids(ids, top_logprobs) for score in batch]

    def score_text(self, text: str, top_logprobs: int = 0) -> list[TokenScore]:
        check_top_logprobs(top_logprobs)
        scores = self._scores(text, top_logprobs)
        if scores is not None:
            return scores
        try:  # one prompt, as text: its first token has no score
            return self._echo({"model": self.name, "prompt": text, "max_tokens": 1, "temperature": 0,
                               "echo": True, "logprobs": max(1, top_logprobs)}, None, top_logprobs)
        except RemoteError as exc:
            if wire.context_limits(exc) is None:
                raise
            raise RemoteError(f"{exc} ({self.url} does not tokenize, so a text longer than the model's window "
                              "cannot be scored window by window there.)") from None

    def perplexity(self, text: str) -> Perplexity:
        scores = self._scores(text, 0)
        if scores is None:
            scores = self.score_text(text)
        return Perplexity(tokens=len(scores), bytes=len(text.encode("utf-8")), nll=-sum(s.logprob for s in scores))

    def analyse(self, text: str, surprising: int = 10, progress: Callable[[int, int], None] | None = None,
                cancelled: Callable[[], bool] | None = None) -> Analysis:
        """As the local `analyse`, from the server's ranks (vLLM's `prompt_logprobs`)."""
        ids = self.tokenize(text)
        if ids is None:
            raise RemoteError(f"{self.url} does not tokenize (POST /tokenize), which analysing a text needs.")
        if not ids:
            raise SettingsError("There is no text to analyse.")
        scores = gather(self.score_ids(ids, top_logprobs=1), len(ids), progress, cancelled)
        if any(s.rank is None for s in scores):
            raise RemoteError(f"{self.url} does not give each token's rank (vLLM's prompt_logprobs), which "
                              "analysing a text needs.")
        return summarise(text, scores, surprising, lambda i: "".join(s.text for s in scores[max(0, i - 24):i]))

    def choose(self, context: str, options: list[str], normalise: bool = False) -> tuple[list[OptionScore], int]:
        """Each option's log-likelihood after the context, as the local `choose` works it out (the context and
        each option tokenized apart, cut to the window); by text where the server does not tokenize."""
        context_ids = self.tokenize(context)
        totals, lengths = [], []
        for option in options:
            if context_ids is None:
                picked = self._option_by_text(context, option)
            else:
                picked = self._option_by_ids(context_ids or self._start_ids(), option)
            totals.append(sum(picked))
            lengths.append(len(picked))
        ranking = [t / n if normalise else t for t, n in zip(totals, lengths)]
        top = max(ranking)
        weights = [math.exp(r - top) for r in ranking]
        scores = [OptionScore(o, t, n, w / sum(weights)) for o, t, n, w in zip(options, totals, lengths, weights)]
        return scores, ranking.index(top)

    def _option_by_ids(self, context_ids: list[int], option: str) -> list[float]:
        option_ids = self.tokenize(option) or []
        if not option_ids:
            raise SettingsError("An option cannot be empty.")
        window = self.context_window()
        ids = (context_ids + option_ids)[-window:]
        first = len(ids) - len(option_ids)
        if first < 1 and len(option_ids) < window:
            raise SettingsError("Choosing needs a context before the options.")
        if first < 1:
            raise SettingsError(f"The option {option[:40]!r} alone fills the model's {window}-token window.")
        return [s.logprob for s in self._prompt_scores(ids, 0)[first - 1:]]

    def _option_by_text(self, context: str, option: str) -> list[float]:
        """The tokens of context + option that start at or after the context's end (the scored tokens follow
        the first one, in order)."""
        text = context + option
        scores = self._echo({"model": self.name, "prompt": text, "max_tokens": 1, "temperature": 0, "echo": True,
                             "logprobs": 1}, None, 0)
        offset, picked = len(text) - sum(len(s.text) for s in scores), []
        for s in scores:
            if offset >= len(context):
                picked.append(s.logprob)
            offset += len(s.text)
        if not picked:
            raise RemoteError(f"The option {option[:40]!r} gave no tokens of its own to score.")
        return picked


def _error_of(exc: urllib.error.HTTPError) -> tuple[str, dict]:
    try:
        return wire.error_of(json.loads(exc.read() or b"{}"))
    except (ValueError, OSError, AttributeError):
        return exc.reason or f"HTTP {exc.code}", {}


def _retry_after(exc: urllib.error.HTTPError, attempt: int) -> float:
    try:
        return min(10.0, max(0.0, float(exc.headers.get("Retry-After", ""))))
    except ValueError:
        return float(2**attempt)

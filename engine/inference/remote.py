"""A remote engine: any OpenAI-compatible server (vLLM, TGI, llama.cpp's server, another gpt2-desktop)
behind the same surface as a local model — `stream` yields TokenEvents then a Done, `score_text`,
`perplexity` and `choose` give the same results types — over HTTP.

Scoring and choosing need the prompt's own log-probabilities (`echo` with `logprobs`); a server that
does not give them is named as such. Busy servers (429, 503) are retried with back-off; a wrong key,
an unknown model, a server that cannot be reached or goes away mid-reply are each an `RemoteError`
with a plain message (mid-reply, with the text written so far). Token ids are not part of OpenAI's
answers: remote events carry -1 as their id.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

from engine.errors import RemoteError
from engine.inference.generate import Done, StopReason, TokenEvent
from engine.inference.predictions import Alternative, check_top_logprobs
from engine.inference.scoring import OptionScore, Perplexity, TokenScore
from engine.inference.settings import SamplingSettings

RETRIES = 3  # after a 429 or 503, with back-off 1, 2, 4 s (or what Retry-After says, up to 10 s)
UNKNOWN = -1  # the token id of a remote token


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


class RemoteEngine:
    def __init__(self, server: RemoteServer, listing_only: bool = False):
        self.url = RemoteServer.base(server.url)
        self.server = server
        self.name = server.model or ("" if listing_only else self._first_model())

    @classmethod
    def list_models(cls, url: str, api_key: str | None = None) -> tuple[str, list[str]]:
        """(the server's API address, the ids of the models it serves); RemoteError if it cannot say."""
        engine = cls(RemoteServer(url, api_key=api_key), listing_only=True)
        models = engine.models()
        if not models:
            raise RemoteError(f"{engine.url} answers but lists no models.")
        return engine.url, models

    # HTTP

    def _open(self, path: str, body: dict | None = None):
        """The response to one request, after retries on 429/503; errors as RemoteError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.server.api_key:
            headers["Authorization"] = f"Bearer {self.server.api_key}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request(self.url + path, data=data, headers=headers)
            try:
                return urllib.request.urlopen(request, timeout=self.server.timeout)
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if exc.code in (429, 503) and attempt < RETRIES:
                    time.sleep(_retry_after(exc, attempt))
                    continue
                raise self._refused(exc.code, message) from None
            except urllib.error.URLError as exc:
                raise RemoteError(f"Cannot reach {self.url}: {getattr(exc, 'reason', exc)}. Is the server "
                                  "running, and is the address right?") from None
            except (TimeoutError, OSError) as exc:
                raise RemoteError(f"{self.url} did not answer within {self.server.timeout:g} s ({exc}).") from None
        raise AssertionError("unreachable")

    def _refused(self, status: int, message: str) -> RemoteError:
        if status == 401:
            return RemoteError(f"{self.url} refused the API key (401 Unauthorized): give the right one with "
                               f"--api-key or OPENAI_API_KEY. The server said: {message}")
        if status == 404:
            return RemoteError(f"{self.url} has no such model or endpoint (404): {message}")
        if status in (429, 503):
            return RemoteError(f"{self.url} is busy ({status}) and stayed busy after {RETRIES} retries: {message}")
        if status >= 500:
            return RemoteError(f"{self.url} failed ({status}): {message}")
        return RemoteError(f"{self.url} refused the request ({status}): {message}")

    def _post(self, path: str, body: dict) -> dict:
        with self._open(path, body) as response:
            return _json(response.read(), self.url)

    def _first_model(self) -> str:
        with self._open("/models") as response:
            listing = _json(response.read(), self.url)
        models = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
        if not models or not isinstance(models[0], str):
            raise RemoteError(f"{self.url} lists no models; name one with --remote-model.")
        return models[0]

    def models(self) -> list[str]:
        with self._open("/models") as response:
            return [m["id"] for m in _json(response.read(), self.url).get("data", []) if "id" in m]

    def context_window(self, default: int = 1024) -> int:
        """The model's window as the server lists it (vLLM's and ours: `max_model_len`), else `default`;
        names the model if the server does not list it."""
        with self._open("/models") as response:
            cards = [m for m in _json(response.read(), self.url).get("data", []) if isinstance(m, dict)]
        card = next((m for m in cards if m.get("id") == self.name), None)
        if card is None:
            listed = ", ".join(str(m.get("id")) for m in cards) or "none"
            raise RemoteError(f"{self.url} does not serve '{self.name}' (it lists: {listed}).")
        value = card.get("max_model_len") or card.get("context_length")
        return value if isinstance(value, int) and value > 0 else default

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

    def stream(self, prompt: str | list[int], settings: SamplingSettings, cancel: threading.Event | None = None,
               top_logprobs: int = 0) -> Iterator[TokenEvent | Done]:
        """As `Generator.stream`, from the server's streamed answer."""
        settings.validate()
        check_top_logprobs(top_logprobs)
        body = self._body(prompt, settings) | {"stream": True}
        if top_logprobs:
            body["logprobs"] = top_logprobs
        started = time.perf_counter()
        first = last = None
        text, tokens, finish, usage = "", 0, None, {}
        response = self._open("/completions", body)
        try:
            for data in _events(response):
                if cancel is not None and cancel.is_set():
                    finish = StopReason.CANCELLED
                    break
                if data == "[DONE]":
                    break
                chunk = _json(data.encode(), self.url)
                if "error" in chunk:
                    raise RemoteError(f"{self.url} stopped with an error: {_message(chunk)}", partial=text)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    for event in _token_events(choice, top_logprobs):
                        last = time.perf_counter()
                        first = first or last
                        text += event.text
                        tokens += 1
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
                              "is kept.",
                              partial=text)
        elapsed = (last - first) if first and last else 0.0
        yield Done(text=text, token_ids=[], prompt_tokens=int(usage.get("prompt_tokens", 0)), stop_reason=finish,
                   time_to_first_token_ms=round(((first or time.perf_counter()) - started) * 1000, 2),
                   tokens_per_second=round((tokens - 1) / elapsed, 2) if tokens > 1 and elapsed > 0 else 0.0)

    # scoring, from the prompt's own log-probabilities

    def _echo(self, text: str, top_logprobs: int) -> list[TokenScore]:
        """Every token of `text` after the first, with its log-probability (the first has none: nothing
        comes before it)."""
        body = {"model": self.name, "prompt": text, "max_tokens": 1, "temperature": 0, "echo": True,
                "logprobs": max(1, top_logprobs)}
        try:
            answer = self._post("/completions", body)
        except RemoteError as exc:
            if "echo" in str(exc) or "logprobs" in str(exc):
                raise RemoteError(f"{self.url} does not give the log-probabilities of a prompt (echo with "
                                  f"logprobs), which scoring and choosing need. The server said: {exc}") from None
            raise
        choice = (answer.get("choices") or [{}])[0]
        lp = choice.get("logprobs") or {}
        words, values, tops = lp.get("tokens"), lp.get("token_logprobs"), lp.get("top_logprobs") or []
        offsets = lp.get("text_offset") or []
        if not words or not values or len(words) != len(values):
            raise RemoteError(f"{self.url} did not send the prompt's log-probabilities with echo; it cannot score.")
        prompt_tokens = (answer.get("usage") or {}).get("prompt_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = sum(1 for o in offsets if o < len(text)) if offsets else len(words) - 1
        scores = []
        for i in range(1, min(prompt_tokens, len(words))):
            if values[i] is None:
                continue
            top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
            alternatives = tuple(Alternative(UNKNOWN, k, float(v)) for k, v in
                                 sorted(top.items(), key=lambda kv: -kv[1])[:top_logprobs])
            rank = 1 + sum(a.logprob > values[i] for a in alternatives) if top_logprobs and any(
                a.text == words[i] for a in alternatives) else None
            scores.append(TokenScore(UNKNOWN, words[i], float(values[i]), rank, alternatives))
        return scores

    def score_text(self, text: str, top_logprobs: int = 0) -> list[TokenScore]:
        check_top_logprobs(top_logprobs)
        return self._echo(text, top_logprobs)

    def perplexity(self, text: str) -> Perplexity:
        scores = self._echo(text, 0)
        return Perplexity(tokens=len(scores), bytes=len(text.encode("utf-8")), nll=-sum(s.logprob for s in scores))

    def choose(self, context: str, options: list[str], normalise: bool = False) -> tuple[list[OptionScore], int]:
        """Each option's log-likelihood after the context: the tokens of context + option that start at or
        after the context's end."""
        totals, lengths = [], []
        for option in options:
            scores = self._echo(context + option, 0)
            text, offset, picked = context + option, 0, []
            # A token's place: the scored tokens follow the first one, in order.
            first = len(text) - sum(len(s.text) for s in scores)
            offset = first
            for s in scores:
                if offset >= len(context):
                    picked.append(s.logprob)
                offset += len(s.text)
            if not picked:
                raise RemoteError(f"The option {option[:40]!r} gave no tokens of its own to score.")
            totals.append(sum(picked))
            lengths.append(len(picked))
        ranking = [t / n if normalise else t for t, n in zip(totals, lengths)]
        top = max(ranking)
        weights = [math.exp(r - top) for r in ranking]
        scores = [OptionScore(o, t, n, w / sum(weights)) for o, t, n, w in zip(options, totals, lengths, weights)]
        return scores, ranking.index(top)


# the wire

def _events(response) -> Iterator[str]:
    """The `data:` payloads of a server-sent event stream, as they arrive."""
    for raw in response:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            yield line[5:].strip()


def _token_events(choice: dict, top_logprobs: int) -> list[TokenEvent]:
    """One streamed choice delta as token events: one per token when log-probabilities came with it."""
    text = choice.get("text") or ""
    lp = choice.get("logprobs") or {}
    words, values = lp.get("tokens") or [], lp.get("token_logprobs") or []
    if not words:
        return [TokenEvent(UNKNOWN, text, math.nan)] if text else []
    tops = lp.get("top_logprobs") or [None] * len(words)
    events = []
    for i, (word, value) in enumerate(zip(words, values)):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        alternatives = tuple(Alternative(UNKNOWN, k, float(v)) for k, v in
                             sorted(top.items(), key=lambda kv: -kv[1])[:top_logprobs])
        logprob = math.nan if value is None else float(value)
        rank = (1 + sum(a.logprob > logprob for a in alternatives)) if any(a.text == word for a in alternatives) \
            else None
        events.append(TokenEvent(UNKNOWN, text if i == len(words) - 1 else "", logprob, rank, alternatives))
    return events


def _json(data: bytes, url: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise RemoteError(f"{url} answered with something that is not JSON: {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise RemoteError(f"{url} answered with JSON that is not an object: {data[:120]!r}")
    return value


def _message(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body.get("message") or body.get("detail") or body)[:300]


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return _message(json.loads(exc.read() or b"{}"))
    except (ValueError, OSError):
        return exc.reason or f"HTTP {exc.code}"


def _retry_after(exc: urllib.error.HTTPError, attempt: int) -> float:
    try:
        return min(10.0, max(0.0, float(exc.headers.get("Retry-After", ""))))
    except ValueError:
        return float(2**attempt)

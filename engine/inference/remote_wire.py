"""What OpenAI-compatible servers send back, read into the engine's own types: no HTTP here (that is
`engine.inference.remote`), only the shapes of answers and refusals.

Token ids: a server names a token by its text, unless it was asked for ids (vLLM's and our
`return_tokens_as_token_ids`: "token_id:464"), or the prompt was token ids (then their order says which).
A token whose id is not known carries UNKNOWN (-1).
"""

from __future__ import annotations

import json
import math
import re
from typing import Iterator

from engine.errors import RemoteError
from engine.inference.generate import TokenEvent
from engine.inference.predictions import Alternative
from engine.inference.scoring import TokenScore

UNKNOWN = -1  # the id of a token the server named only by its text
_ID = re.compile(r"token_id:(\d+)$")


def token_id(word: str) -> int:
    """The id in a token named "token_id:464", else UNKNOWN."""
    found = _ID.match(word) if isinstance(word, str) else None
    return int(found[1]) if found else UNKNOWN


# streamed generation

def events(response) -> Iterator[str]:
    """The `data:` payloads of a server-sent event stream, as they arrive."""
    for raw in response:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            yield line[5:].strip()


def _alternatives(top, k: int) -> tuple[Alternative, ...]:
    """The k likeliest of a `top_logprobs` object ({token: logprob}), likeliest first."""
    if not isinstance(top, dict) or not k:
        return ()
    ranked = sorted(top.items(), key=lambda kv: -kv[1])[:k]
    return tuple(Alternative(token_id(word), "" if token_id(word) != UNKNOWN else word, float(value))
                 for word, value in ranked)


def token_events(choice: dict, top_logprobs: int) -> list[TokenEvent]:
    """One streamed choice delta as token events: one per token when log-probabilities came with it (the
    delta's text goes with its last token)."""
    text = choice.get("text") or ""
    lp = choice.get("logprobs") or {}
    words, values = lp.get("tokens") or [], lp.get("token_logprobs") or []
    if not words:
        return [TokenEvent(UNKNOWN, text, math.nan)] if text else []
    tops = lp.get("top_logprobs") or [None] * len(words)
    out = []
    for i, (word, value) in enumerate(zip(words, values)):
        alternatives = _alternatives(tops[i] if i < len(tops) else None, top_logprobs)
        logprob = math.nan if value is None else float(value)
        rank = (1 + sum(a.logprob > logprob for a in alternatives)) \
            if any(a.text == word for a in alternatives) else None
        out.append(TokenEvent(token_id(word), text if i == len(words) - 1 else "", logprob, rank, alternatives))
    return out


# a prompt's own log-probabilities

def prompt_scores(entries: list, ids: list[int], k: int) -> list[TokenScore]:
    """The scores of ids[1:] from vLLM's `prompt_logprobs` (None, then per token {id: {"logprob", "rank",
    "decoded_token"}}): the token's own, its rank when `k` asks for alternatives, and the k likeliest."""
    scores = []
    for token, entry in zip(ids[1:], entries[1:]):
        if not isinstance(entry, dict) or not isinstance(entry.get(str(token)), dict):
            raise RemoteError("The server's prompt_logprobs do not name the prompt's own tokens.")
        own = entry[str(token)]
        top = sorted(((int(key), value) for key, value in entry.items()
                      if isinstance(value, dict) and isinstance(value.get("rank"), int) and value["rank"] <= k),
                     key=lambda kv: kv[1]["rank"])[:k]
        alternatives = tuple(Alternative(t, str(v.get("decoded_token") or ""), float(v["logprob"])) for t, v in top)
        rank = own.get("rank") if k and isinstance(own.get("rank"), int) else None
        scores.append(TokenScore(token, str(own.get("decoded_token") or ""), float(own["logprob"]), rank,
                                 alternatives))
    return scores


def echo_scores(logprobs: dict, ids: list[int] | None, prompt_tokens: int, k: int) -> list[TokenScore]:
    """The scores of the prompt's tokens after the first from `echo`'s log-probabilities (prompt tokens first,
    then what was written); `ids`: the prompt's token ids, when it was sent as ids. Ranks are known only for
    a token among the k alternatives."""
    words, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    tops = logprobs.get("top_logprobs") or []
    if not words or not values or len(words) != len(values) or len(words) < prompt_tokens:
        # (llama.cpp's server, for one, answers echo with the written tokens' log-probabilities only)
        raise RemoteError("The server did not send the prompt's log-probabilities with echo; it cannot score.")
    scores = []
    for i in range(1, min(prompt_tokens, len(words))):
        if values[i] is None:
            continue
        alternatives = _alternatives(tops[i] if i < len(tops) else None, k)
        rank = 1 + sum(a.logprob > values[i] for a in alternatives) \
            if any(a.text == words[i] for a in alternatives) else None
        token = ids[i] if ids is not None and i < len(ids) else UNKNOWN
        scores.append(TokenScore(token, words[i], float(values[i]), rank, alternatives))
    return scores


# refusals

def json_object(data: bytes, url: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise RemoteError(f"{url} answered with something that is not JSON: {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise RemoteError(f"{url} answered with JSON that is not an object: {data[:120]!r}")
    return value


def error_of(body: dict) -> tuple[str, dict]:
    """(the message, the error object) of an error answer: OpenAI's {"error": {...}} or a plainer one."""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error), error
    return str(error or body.get("message") or body.get("detail") or body)[:300], body


_WINDOW = re.compile(r"maximum context length is (\d+)")
_PROMPT = re.compile(r"(\d+) in the (?:prompt|messages)|(\d+) in your prompt|has (\d+) input tokens"
                     r"|requested (\d+) tokens in the (?:prompt|messages)")


def context_limits(error: RemoteError) -> tuple[int, int] | None:
    """(the model's window, the prompt's tokens) from a refusal for context length, as our server, vLLM and
    OpenAI say it ("maximum context length is 128 tokens ... (120 in the prompt, 600 for the completion)") or
    llama.cpp's server gives it (`n_ctx`, `n_prompt_tokens`); None for any other refusal."""
    if error.status != 400:
        return None
    detail = error.detail
    if isinstance(detail.get("n_ctx"), int) and isinstance(detail.get("n_prompt_tokens"), int):
        return detail["n_ctx"], detail["n_prompt_tokens"]
    message = str(detail.get("message") or error)
    window, prompt = _WINDOW.search(message), _PROMPT.search(message)
    if window is None or prompt is None:
        return None
    return int(window[1]), int(next(group for group in prompt.groups() if group))

"""OpenAI's wire format for completions and chat completions: request bodies checked field by field
into plain requests, and answers shaped as OpenAI's (and vLLM's) clients expect them.

No HTTP and no torch here: `engine.tooling.server` reads bodies and runs the engine; this module says
what a body means and what the answer looks like. Every mistake in a body is an `ApiError` that names
the field, answered with a 4xx in OpenAI's `{"error": {...}}` shape.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

from engine.inference.predictions import MAX_TOP_LOGPROBS
from engine.inference.settings import SamplingSettings

MAX_N = 8  # choices per prompt
MAX_PROMPTS = 256  # prompts in one completions request (lm-evaluation-harness sends batches)
MAX_STOPS = 8
MAX_LOGIT_BIAS = 300


class ApiError(Exception):
    """A request the server answers with an error status, in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"'{param}' {message}", param=param, code="invalid_value")


def shown(text: str) -> str:
    """`text` as an answer can carry it: a lone surrogate (JSON's "\\ud800", no character of its own) written
    as its escape, since UTF-8 cannot encode it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(value: str, name: str) -> str:
    """`value` if it is text UTF-8 can carry (the tokenizer and the answer both need that)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad_char = value[exc.start]
        raise bad(name, f"holds a lone surrogate (\\u{ord(bad_char):04x}), which is not a character: "
                        "send valid Unicode text.") from None
    return value


# the fields, one checker per kind of value

_MISSING = object()


def _number(body: dict, name: str, default, lo: float, hi: float, lo_open: bool = False):
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                           and not math.isfinite(value)):
        raise bad(name, f"must be a number, got {_short(value)}.")
    # Python compares an int with a float exactly, so an integer past float's range (10**400) is refused here
    # instead of overflowing in float().
    if value < lo or value > hi or (lo_open and value == lo):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise bad(name, f"must be in {interval}, got {_short(value)}.")
    return float(value)


def _integer(body: dict, name: str, default, lo: int, hi: int):
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(name, f"must be an integer, got {_short(value)}.")
    if not lo <= value <= hi:
        raise bad(name, f"must be from {lo} to {hi}, got {_short(value)}.")
    return value


def _boolean(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise bad(name, f"must be true or false, got {_short(value)}.")
    return value


def _short(value) -> str:
    """A value as an error message quotes it: its repr, cut to 60 characters (a 4,000-digit number or a
    megabyte of text is not repeated back)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _stops(body: dict) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop", "must be a string or a list of strings.")
    if len(stops) > MAX_STOPS:
        raise bad("stop", f"takes at most {MAX_STOPS} sequences, got {len(stops)}.")
    if any(not s for s in stops):
        raise bad("stop", "cannot hold an empty string.")
    return tuple(_text(s, "stop") for s in stops)


def _logit_bias(body: dict, vocab_size: int) -> tuple[tuple[int, float], ...]:
    value = body.get("logit_bias")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise bad("logit_bias", "must be an object mapping token ids to biases.")
    if len(value) > MAX_LOGIT_BIAS:
        raise bad("logit_bias", f"takes at most {MAX_LOGIT_BIAS} tokens, got {len(value)}.")
    pairs = []
    for key, bias in value.items():
        # Digits only: int() would also take " 5 ", "+5", "5_0" and full-width or Arabic-Indic digits.
        if not (key.isascii() and key.isdigit() and len(key) <= 12):
            raise bad("logit_bias", f"keys must be token ids written in digits, got {_short(key)}.")
        token = int(key)
        if not 0 <= token < vocab_size:
            raise bad("logit_bias", f"token id {token} is outside the vocabulary (0 to {vocab_size - 1}).")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise bad("logit_bias", f"biases must be numbers from -100 to 100, got {_short(bias)} for {key}.")
        pairs.append((token, float(bias)))
    return tuple(pairs)


def _refuse(body: dict, names: tuple[str, ...], what: str) -> None:
    for name in names:
        if body.get(name) not in (None, [], {}, ""):
            raise ApiError(400, f"'{name}' is not supported by this server ({what}).", param=name,
                           code="unsupported_parameter")


def _only_known(body: dict, known: set[str]) -> None:
    unknown = sorted(shown(name)[:100] for name in set(body) - known)
    if unknown:
        raise ApiError(400, f"Unrecognized request argument supplied: {', '.join(unknown[:10])}.", param=unknown[0],
                       code="unrecognized_argument")


# the requests

COMMON = {"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
          "presence_penalty", "frequency_penalty", "logit_bias", "user", "top_k", "min_p", "repetition_penalty"}
# vLLM's extras: `return_tokens_as_token_ids` (tokens named "token_id:464"), `prompt_logprobs` (each prompt
# token's log-probability, rank and likeliest alternatives, by token id).
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "echo", "suffix", "best_of", "return_tokens_as_token_ids",
                              "prompt_logprobs"}
CHAT_FIELDS = COMMON | {"messages", "logprobs", "top_logprobs", "max_completion_tokens", "tools", "tool_choice",
                        "functions", "function_call", "response_format", "parallel_tool_calls", "modalities",
                        "audio", "prediction"}


@dataclass(frozen=True)
class Sampling:
    """What a request asks of each choice: the engine's settings, `n`, streaming and log-probabilities."""

    settings: SamplingSettings  # max_new_tokens here is the request's max_tokens (0 allowed for echo)
    max_tokens: int | None  # None: as many as the model's window leaves (chat's default)
    n: int
    stream: bool
    include_usage: bool
    user: str | None


@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompts: list[str | list[int]]  # text, or token ids
    sampling: Sampling
    logprobs: int | None  # None: no log-probabilities; k: the chosen token's and the k likeliest
    echo: bool
    token_ids: bool = False  # return_tokens_as_token_ids
    prompt_logprobs: int | None = None  # None: none; k: each prompt token's, with the k likeliest there


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: list[tuple[str, str]]  # (role, content)
    sampling: Sampling
    logprobs: bool
    top_logprobs: int


def _model(body: dict) -> str | None:
    value = body.get("model")
    if value is not None and not isinstance(value, str):
        raise bad("model", "must be a string.")
    return value if value is None else _text(value, "model")


def _sampling(body: dict, vocab_size: int, max_tokens_default: int | None, max_tokens_name: str = "max_tokens",
              min_tokens: int = 1) -> Sampling:
    max_tokens = _integer(body, max_tokens_name, max_tokens_default, min_tokens, 1_000_000)
    n = _integer(body, "n", 1, 1, MAX_N)
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage",
                                                                                    "continuous_usage_stats"}):
        raise bad("stream_options", "takes only {\"include_usage\": true|false}.")
    if options is not None and not stream:
        raise bad("stream_options", "is only allowed when 'stream' is true.")
    for name in ("include_usage", "continuous_usage_stats"):
        if (options or {}).get(name) is not None and not isinstance(options[name], bool):
            raise bad(f"stream_options.{name}", f"must be true or false, got {_short(options[name])}.")
    include_usage = bool((options or {}).get("include_usage"))
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise bad("user", "must be a string of at most 256 characters.")
    if user is not None:
        _text(user, "user")
    top_k = _integer(body, "top_k", 0, -1, vocab_size)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad("seed", f"must be an integer, got {seed!r}.")
    settings = SamplingSettings(
        max_new_tokens=max(1, max_tokens or 1),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=max(0, top_k),  # -1 is "off" in vLLM's API, 0 in ours
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, 10.0, lo_open=True),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        logit_bias=_logit_bias(body, vocab_size),
        seed=None if seed is None else seed % 2**63,  # OpenAI takes any integer
        stop=_stops(body),
    )
    return Sampling(settings, max_tokens, n, stream, include_usage, user)


def _prompts(value, vocab_size: int) -> list[str | list[int]]:
    def ids(item) -> list[int]:
        if not item:
            raise bad("prompt", "cannot hold an empty list of token ids.")
        for token in item:
            if isinstance(token, bool) or not isinstance(token, int):
                raise bad("prompt", f"token ids must be integers, got {token!r}.")
            if not 0 <= token < vocab_size:
                raise bad("prompt", f"token id {token} is outside the vocabulary (0 to {vocab_size - 1}).")
        return list(item)

    if value is None:
        raise bad("prompt", "is required.")
    if isinstance(value, str):
        return [_text(value, "prompt")]
    if not isinstance(value, list) or not value:
        raise bad("prompt", "must be a string, a list of strings, a list of token ids or a list of lists of "
                            "token ids, and not empty.")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [ids(value)]  # one prompt, as long as the window allows
    if len(value) > MAX_PROMPTS:
        raise bad("prompt", f"takes at most {MAX_PROMPTS} prompts in one request, got {len(value)}.")
    if all(isinstance(item, str) for item in value):
        return [_text(item, "prompt") for item in value]
    if all(isinstance(item, list) for item in value):
        return [ids(item) for item in value]
    raise bad("prompt", "must not mix strings, token ids and lists of token ids.")


def parse_completion(body: dict, vocab_size: int) -> CompletionRequest:
    _only_known(body, COMPLETION_FIELDS)
    _refuse(body, ("suffix",), "GPT-2 continues text; it does not fill in between")
    echo = _boolean(body, "echo", False)
    sampling = _sampling(body, vocab_size, 16, min_tokens=0)
    prompt_logprobs = _integer(body, "prompt_logprobs", None, 0, MAX_TOP_LOGPROBS)
    if sampling.max_tokens == 0 and not echo and prompt_logprobs is None:
        raise bad("max_tokens", "must be at least 1 (0 is allowed only with 'echo' or 'prompt_logprobs').")
    best_of = _integer(body, "best_of", None, 1, MAX_N)
    if best_of is not None and best_of != sampling.n:
        raise ApiError(400, f"'best_of' other than 'n' is not supported (best_of {best_of}, n {sampling.n}).",
                       param="best_of", code="unsupported_parameter")
    logprobs = _integer(body, "logprobs", None, 0, MAX_TOP_LOGPROBS)
    if prompt_logprobs is not None and sampling.stream:
        raise bad("prompt_logprobs", "is given only when 'stream' is false.")
    return CompletionRequest(_model(body), _prompts(body.get("prompt"), vocab_size), sampling, logprobs, echo,
                             _boolean(body, "return_tokens_as_token_ids", False), prompt_logprobs)


@dataclass(frozen=True)
class TokenizeRequest:
    model: str | None
    prompt: str


def parse_tokenize(body: dict) -> TokenizeRequest:
    """vLLM's `POST /tokenize` body: {"model", "prompt", "add_special_tokens"} (GPT-2 adds none)."""
    _only_known(body, {"model", "prompt", "add_special_tokens"})
    if not isinstance(body.get("prompt"), str):
        raise bad("prompt", "must be a string.")
    _boolean(body, "add_special_tokens", True)
    return TokenizeRequest(_model(body), body["prompt"])


def _content(message: dict, i: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return _text(content, f"messages[{i}].content")
    if isinstance(content, list):  # parts: only text ones
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"messages[{i}].content", "parts must be {\"type\": \"text\", \"text\": ...}; this "
                                                   "model reads text only.")
            texts.append(_text(part["text"], f"messages[{i}].content"))
        return "".join(texts)
    raise bad(f"messages[{i}].content", "must be a string or a list of text parts.")


ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def parse_chat(body: dict, vocab_size: int) -> ChatRequest:
    _only_known(body, CHAT_FIELDS)
    _refuse(body, ("tools", "tool_choice", "functions", "function_call", "audio", "prediction"),
            "GPT-2 cannot call tools or speak")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise ApiError(400, "'response_format' other than {\"type\": \"text\"} is not supported by this server.",
                       param="response_format", code="unsupported_parameter")
    if body.get("modalities") not in (None, ["text"]):
        raise ApiError(400, "'modalities' other than [\"text\"] is not supported by this server.",
                       param="modalities", code="unsupported_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "must be a non-empty list of {\"role\", \"content\"} objects.")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or message["role"] not in ROLES:
            raise bad(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}.")
        turns.append((ROLES[message["role"]], _content(message, i)))
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    sampling = _sampling(body, vocab_size, None, max_tokens_name=name)
    logprobs = _boolean(body, "logprobs", False)
    top = _integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    if top and not logprobs:
        raise bad("top_logprobs", "needs 'logprobs' set to true.")
    return ChatRequest(_model(body), turns, sampling, logprobs, top)


# the answers

@dataclass
class TokenInfo:
    """One token as an answer's log-probabilities show it."""

    text: str
    logprob: float | None
    top: dict[str, float] = field(default_factory=dict)
    bytes: list[int] = field(default_factory=list)


def token_text(data: bytes) -> str:
    """A token's text, or OpenAI's `bytes:\\xe2\\x80` form when it is part of a character."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


def completion_logprobs(tokens: list[TokenInfo], offset: int) -> dict:
    """The `logprobs` object of a completion choice; `offset` is where the first token's text starts."""
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.text)
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [t.top if t.logprob is not None else None for t in tokens], "text_offset": offsets}


def chat_logprobs(tokens: list[TokenInfo]) -> dict:
    return {"content": [{"token": t.text, "logprob": t.logprob, "bytes": t.bytes,
                         "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode("utf-8"))}
                                          for k, v in t.top.items()]} for t in tokens],
            "refusal": None}


def ranked(logprob: float, rank: int, text: str) -> dict:
    """One token of vLLM's `prompt_logprobs`."""
    return {"logprob": logprob, "rank": rank, "decoded_token": text}


def finish_reason(stop_reason: str) -> str:
    return "length" if stop_reason == "length" else "stop"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict:
    """`cached_tokens`: prompt tokens the prompt cache spared from being run again."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def envelope(kind: str, request_id: str, model: str, choices: list[dict], **extra) -> dict:
    return {"id": request_id, "object": kind, "created": int(time.time()), "model": model, "choices": choices,
            **extra}

"""Generated request bodies against a real `gpt2-desktop serve` process: whatever a client sends to
/v1/completions or /v1/chat/completions, the answer is never a 500, every 4xx is in OpenAI's error shape
(a stream's error event too), and the server still answers /health afterwards.

GPT2_DESKTOP_FUZZ_EXAMPLES raises the number of bodies per test (300 by default, seconds); the examples are
derived, not random, so a run is the same every time.
"""

from __future__ import annotations

import http.client
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.tooling.openai_api import CHAT_FIELDS, COMPLETION_FIELDS, ROLES
from tests.helpers import running_server

EXAMPLES = int(os.environ.get("GPT2_DESKTOP_FUZZ_EXAMPLES", "300"))
VOCAB = 50257

# Values of every JSON kind, with the edges: huge and negative integers, floats past their range (the
# server's parser reads 1e400 as inf), NaN, lone surrogates, long strings.
edges = st.sampled_from([0, -1, 1, 2, 10**309, -(10**309), 2**63, 2**64 + 1, 1e-300, 5e-324, -0.0, 1e308,
                         float("inf"), float("-inf"), float("nan"), "", " 5 ", "５", "\ud800", "a\udfffb",
                         "<|endoftext|>", "x" * 5000, True, False, None, [], {}])
text = st.text(max_size=40) | st.text(st.characters(), max_size=10) | st.sampled_from(["\ud800", "é", "\x00"])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text | edges
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=12)


def mostly(usual, rare):
    """`usual` about seven times in eight, else `rare` (one_of would draw each about as often)."""
    return st.integers(0, 15).flatmap(lambda i: rare if i in (3, 11) else usual)


# Values a field plausibly holds, so that many bodies get past the checks and generate.
small = st.integers(0, 6)
token_ids = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8)
plausible = {
    "prompt": text | st.lists(text, max_size=3) | token_ids | st.lists(token_ids, min_size=1, max_size=2),
    "messages": st.lists(st.fixed_dictionaries(
        {"role": mostly(st.sampled_from(sorted(ROLES)), json_values),
         "content": text | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2)}),
        min_size=1, max_size=3),
    "max_tokens": small, "max_completion_tokens": small, "n": st.integers(1, 3), "logprobs": st.integers(0, 5)
    | st.booleans(), "top_logprobs": st.integers(0, 5), "echo": st.booleans(), "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values}),
    "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "min_p": st.floats(0, 1), "top_k": st.integers(-1, 60),
    "repetition_penalty": st.floats(0, 10), "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2), "seed": st.integers(), "stop": text | st.lists(text, max_size=3),
    "logit_bias": st.dictionaries(st.integers(0, VOCAB + 5).map(str) | text, st.floats(-100, 100) | json_values,
                                  max_size=3),
    "model": st.sampled_from(["tiny", "gpt-4", None]) | text, "user": text,
}


# Fields the server refuses whenever they hold something: drawn less often than the others.
REFUSED = {"suffix", "best_of", "tools", "tool_choice", "functions", "function_call", "audio", "prediction",
           "response_format", "modalities", "parallel_tool_calls"}


def bodies(fields: set[str], required: str):
    """Objects of known fields, most with plausible values (so that many get past the checks and generate),
    now and then a field the server refuses or one it does not know."""
    def value(name):  # mostly a plausible value where there is one
        return mostly(plausible[name], json_values) if name in plausible else json_values

    chosen = st.lists(st.sampled_from(sorted(fields - REFUSED)), max_size=6, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: value(k) for k in keys}))
    odd = mostly(st.just({}), st.sampled_from(sorted(fields & REFUSED)).flatmap(
        lambda name: st.fixed_dictionaries({name: json_values})) | st.dictionaries(text, json_values, min_size=1,
                                                                                   max_size=1))
    # Generation stays short: a max_tokens is given unless the draw chose one of its own.
    return st.tuples(value(required), chosen, st.integers(1, 5), odd).map(
        lambda t: {required: t[0], **({} if {"max_tokens", "max_completion_tokens"} & set(t[1]) else
                                      {"max_tokens": t[2]}), **t[1], **t[3]})


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("fuzz")) as proc:
        host, port = proc.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
        proc.address = (host, int(port))
        yield proc


def exchange(server, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*server.address, timeout=120)
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def check(status: int, data: bytes) -> None:
    assert status < 500, (status, data[:500])
    if status >= 400:
        error = json.loads(data)["error"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str), data
        return
    assert status == 200, (status, data[:500])
    if data.startswith(b"data: "):  # a stream: every event is JSON, and an error event has the shape
        events = [line[6:] for line in data.decode().splitlines() if line.startswith("data: ")]
        for event in events:
            if event != "[DONE]":
                chunk = json.loads(event)
                if "error" in chunk:
                    assert set(chunk["error"]) == {"message", "type", "param", "code"}, chunk
    else:
        assert json.loads(data)["usage"]["total_tokens"] >= 0


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(body=bodies(COMPLETION_FIELDS, "prompt"))
def test_completions_never_fail(server, body):
    check(*exchange(server, "/v1/completions", json.dumps(body).encode()))


@FUZZ
@given(body=bodies(CHAT_FIELDS, "messages"))
def test_chat_completions_never_fail(server, body):
    check(*exchange(server, "/v1/chat/completions", json.dumps(body).encode()))


@FUZZ
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()[:300]))
def test_any_bytes_never_fail(server, raw):
    for path in ("/v1/completions", "/v1/chat/completions"):
        check(*exchange(server, path, raw))


def test_the_server_still_answers_afterwards(server):
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    assert server.poll() is None

"""`gpt2-desktop serve` as other programs meet it: a real server process on 127.0.0.1, the official
`openai` client, raw HTTP for what a client library would never send, transformers as the oracle."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
import torch

from tests.helpers import cli, running_server


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("serve")) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


def raw(server, path: str, body: bytes | None = None, method: str | None = None, headers=None):
    """(status, parsed JSON) of one HTTP request, whatever its status."""
    request = urllib.request.Request(server.base_url.removesuffix("/v1") + path, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(server, path: str, payload: dict, **kw):
    return raw(server, path, json.dumps(payload).encode(), **kw)


def hf_logprobs(model, ids: list[int]) -> list[float]:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[i - 1, t]) for i, t in enumerate(ids) if i > 0]


# the endpoints

def test_models_and_health(client, server, tiny_model_dir):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    status, health = raw(server, "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "tiny"


def test_greedy_completion_equals_the_command_line(client, tiny_model_dir):
    prompt = "The little fox ran into the"
    answer = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0)
    done = json.loads(cli("generate", "--model", str(tiny_model_dir), "--prompt", prompt, "--max-new-tokens", "12",
                          "--temperature", "0", "--json").stdout.splitlines()[-1])
    assert answer.choices[0].text == done["text"]
    assert answer.usage.completion_tokens == len(done["token_ids"])
    assert answer.usage.prompt_tokens == done["prompt_tokens"]
    assert answer.choices[0].finish_reason == ("length" if done["stop_reason"] == "length" else "stop")


def test_streamed_deltas_join_to_the_whole_answer(client):
    args = dict(model="tiny", prompt="Once upon a time", max_tokens=20, temperature=1.0, seed=7, stop=["\n\n"])
    whole = client.completions.create(**args).choices[0].text
    chunks = list(client.completions.create(stream=True, **args))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert chunks[-1].usage.completion_tokens >= 1


def test_echo_logprobs_of_token_id_prompts_equal_transformers(client, tiny_hf):
    """What lm-evaluation-harness's `local-completions` sends: token-id batches, echo, logprobs 1."""
    batch = [[464, 1310, 21831, 4966, 656], [7454, 2402, 257, 640, 11, 612, 373]]
    answer = client.completions.create(model="tiny", prompt=batch, echo=True, logprobs=1, max_tokens=1,
                                       temperature=0)
    assert len(answer.choices) == 2
    for ids, choice in zip(batch, answer.choices):
        lp = choice.logprobs
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        expected = hf_logprobs(tiny_hf, ids)
        assert lp.token_logprobs[1:len(ids)] == pytest.approx(expected, abs=1e-3)
        assert len(lp.tokens) == len(ids) + 1  # the prompt, then the one generated token
        greedy = max(lp.top_logprobs[len(ids)].items(), key=lambda kv: kv[1])[0]
        assert lp.tokens[-1] == greedy  # temperature 0 takes the likeliest
        assert lp.text_offset[0] == 0 and choice.text.startswith(lp.tokens[0])
    zero = client.completions.create(model="tiny", prompt=batch[0], echo=True, logprobs=0, max_tokens=0)
    assert zero.usage.completion_tokens == 0
    assert zero.choices[0].logprobs.token_logprobs[1:] == pytest.approx(hf_logprobs(tiny_hf, batch[0]), abs=1e-3)


def test_tokenize_as_vllm_answers_it(server, tiny):
    text = "Hello <|endoftext|> wörld"
    code, answer = post(server, "/tokenize", {"model": "tiny", "prompt": text, "add_special_tokens": True})
    assert code == 200 and answer == {"count": len(tiny.tokenizer.encode(text)), "max_model_len": 128,
                                      "tokens": tiny.tokenizer.encode(text)}
    assert tiny.tokenizer.eos_id in answer["tokens"]  # <|endoftext|> is one token, as the completions see it
    assert post(server, "/tokenize", {"prompt": ""})[1]["tokens"] == []
    for body, status, param in [({"prompt": 3}, 400, "prompt"), ({"content": "x"}, 400, "content"),
                                ({"prompt": "x", "model": "gpt-4"}, 404, "model")]:
        code, answer = post(server, "/tokenize", body)
        assert code == status and answer["error"]["param"] == param


def test_vllms_token_ids_and_prompt_logprobs(server, client, tiny_hf, tiny):
    """vLLM's extra fields: `prompt_logprobs` (each prompt token's log-probability, rank and likeliest
    alternatives, by id) and `return_tokens_as_token_ids` (tokens named "token_id:464")."""
    ids = [50256, 464, 1310, 21831, 4966, 656]
    code, answer = post(server, "/v1/completions", {"prompt": ids, "max_tokens": 0, "prompt_logprobs": 3})
    assert code == 200
    entries = answer["choices"][0]["prompt_logprobs"]
    assert entries[0] is None and len(entries) == len(ids)
    with torch.no_grad():
        logp = torch.log_softmax(tiny_hf(torch.tensor([ids])).logits[0].float(), dim=-1)
    for i, entry in enumerate(entries[1:], 1):
        own = entry[str(ids[i])]
        assert own["logprob"] == pytest.approx(float(logp[i - 1, ids[i]]), abs=1e-3)
        assert own["rank"] == 1 + int((logp[i - 1] > logp[i - 1, ids[i]]).sum())
        top = [int(t) for t in torch.topk(logp[i - 1], 3).indices]
        assert sorted((v["rank"], int(k)) for k, v in entry.items() if v["rank"] <= 3) == list(enumerate(top, 1))
    assert post(server, "/v1/completions", {"prompt": ids, "max_tokens": 0})[0] == 400  # 0 needs echo or these
    assert post(server, "/v1/completions", {"prompt": ids, "prompt_logprobs": 1, "stream": True})[0] == 400
    plain = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0, logprobs=1)
    named = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0, logprobs=1,
                                      extra_body={"return_tokens_as_token_ids": True})
    assert named.choices[0].text == plain.choices[0].text
    tokens = named.choices[0].logprobs.tokens
    assert all(t.startswith("token_id:") for t in tokens) and len(tokens) == 4
    assert [list(top)[0] for top in named.choices[0].logprobs.top_logprobs] == tokens  # greedy: the likeliest
    assert tiny.tokenizer.decode([int(t.removeprefix("token_id:")) for t in tokens]) == plain.choices[0].text


def test_a_token_id_prompt_is_one_prompt_however_long(wide_model_dir, tmp_path):
    """300 token ids are one prompt of 300 tokens (a remote engine sends a long conversation so), not 300
    prompts over the limit of 256 in one request."""
    with running_server(wide_model_dir, tmp_path) as wide:
        code, answer = post(wide, "/v1/completions", {"prompt": [464, 1310] * 150, "max_tokens": 1})
        assert code == 200 and answer["usage"]["prompt_tokens"] == 300 and len(answer["choices"]) == 1
        code, answer = post(wide, "/v1/completions", {"prompt": ["a"] * 257, "max_tokens": 1})
        assert code == 400 and "at most 256 prompts" in answer["error"]["message"]


def test_prompts_n_seed_stop_and_biases(client):
    answer = client.completions.create(model="tiny", prompt=["A cat", "A dog"], n=2, max_tokens=8, seed=3,
                                       temperature=1.0)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    again = client.completions.create(model="tiny", prompt=["A cat", "A dog"], n=2, max_tokens=8, seed=3,
                                      temperature=1.0)
    assert [c.text for c in again.choices] == [c.text for c in answer.choices]
    assert answer.usage.prompt_tokens == 4  # each prompt counted once, whatever n
    forced = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0,
                                       logit_bias={"1820": 100})
    assert forced.choices[0].text == "my" * 3  # token 1820 is "my"
    stopped = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0,
                                        logit_bias={"1820": 100}, stop=["ym"])
    assert stopped.choices[0].text == "m" and stopped.choices[0].finish_reason == "stop"
    penalised = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, temperature=0,
                                          frequency_penalty=2, presence_penalty=2, logit_bias={"1820": 2.5},
                                          extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.1})
    assert penalised.usage.completion_tokens == 6


def test_chat_completions(client):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there"}]
    answer = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, seed=1, logprobs=True,
                                            top_logprobs=3)
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert len(choice.logprobs.content) == answer.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 for t in choice.logprobs.content)
    streamed = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, seed=1,
                                                   stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == choice.message.content
    assert streamed[-1].choices == [] and streamed[-1].usage.total_tokens == answer.usage.total_tokens
    # The same conversation again: the prompt cache spares all of it but the last token.
    assert streamed[-1].usage.prompt_tokens_details.cached_tokens == answer.usage.prompt_tokens - 1


# what a client must not be able to do

BAD = [
    ({"prompt": "x", "temperature": -1}, 400, "temperature"),
    ({"prompt": "x", "top_p": 1.5}, 400, "top_p"),
    ({"prompt": "x", "max_tokens": "10"}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": [50257]}, 400, "prompt"),
    ({"prompt": [[1, 2], []]}, 400, "prompt"),
    ({"prompt": [1, "a"]}, 400, "prompt"),
    ({"prompt": "x", "max_tokens": 500}, 400, "max_tokens"),
    ({"prompt": "x", "suffix": "y"}, 400, "suffix"),
    ({"prompt": "x", "best_of": 3}, 400, "best_of"),
    ({"prompt": "x", "n": 1000}, 400, "n"),
    ({"prompt": "x", "logprobs": 21}, 400, "logprobs"),
    ({"prompt": "x", "logit_bias": {"99999999": 1}}, 400, "logit_bias"),
    ({"prompt": "x", "stop": ["a", ""]}, 400, "stop"),
    ({"prompt": "x", "frobnicate": 1}, 400, "frobnicate"),
    ({"prompt": "x", "model": "gpt-4"}, 404, "model"),
]


@pytest.mark.parametrize("body, status, param", BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)])
def test_bad_completion_requests_are_named(server, body, status, param):
    code, answer = post(server, "/v1/completions", body)
    assert code == status
    error = answer["error"]
    assert error["param"] == param and param in error["message"] and error["type"]


def test_bad_chat_requests_and_bodies(server):
    chat = [({"messages": []}, "messages"), ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
            ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs")]
    for body, param in chat:
        code, answer = post(server, "/v1/chat/completions", body)
        assert (code, answer["error"]["param"]) == (400, param)
    assert raw(server, "/v1/completions", b'{"prompt": "x",')[0] == 400
    assert raw(server, "/v1/completions", b'["a list"]')[0] == 400
    assert raw(server, "/v1/completions", b"[" * 100000 + b"]" * 100000)[0] == 400
    assert raw(server, "/v1/completions", b"\xff\xfe garbage")[0] == 400
    host, port = server.base_url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/v1/completions")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(9 * 2**20))
    connection.endheaders(b"{")  # the server answers from the header, without reading 9 MiB
    assert connection.getresponse().status == 413
    connection.close()
    assert raw(server, "/v1/nothing-here")[0] == 404
    assert raw(server, "/v1/completions")[0] == 405
    code, answer = raw(server, "/v1/models/gpt-4")
    assert code == 404 and answer["error"]["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="temperature"):
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0).completions.create(
            model="tiny", prompt="x", temperature=3)


# under load

def test_eight_requests_at_once_and_health_while_busy(client, server):
    results = [None] * 8

    def one(i):
        results[i] = client.completions.create(model="tiny", prompt=f"Story {i}:", max_tokens=40, seed=i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    status, health = raw(server, "/health")  # answered while the engine works through the queue
    assert status == 200
    for t in threads:
        t.join(300)
    assert all(r is not None and r.usage.completion_tokens == 40 for r in results)


def test_a_client_that_goes_away_is_cancelled(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        stream = client.completions.create(model="tiny", prompt="Again and again", max_tokens=100000, stream=True)
        next(iter(stream))
        stream.close()
        deadline = time.time() + 10
        while raw(server, "/health")[1]["busy"] and time.time() < deadline:
            time.sleep(0.05)
        assert not raw(server, "/health")[1]["busy"]


def test_a_full_queue_answers_429(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide", "--queue", "1") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        running = client.completions.create(model="tiny", prompt="a", max_tokens=100000, stream=True)
        next(iter(running))
        waiting = client.completions.create(model="tiny", prompt="b", max_tokens=100000, stream=True)
        deadline = time.time() + 10
        while raw(server, "/health")[1]["waiting"] < 1 and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError):
            client.completions.create(model="tiny", prompt="c", max_tokens=5)
        assert raw(server, "/v1/models")[0] == 200
        running.close()
        waiting.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
        assert "Traceback" not in server.stderr.read()


# security

def test_api_key(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--api-key", "s3cret") as server:
        for key in ("wrong", None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            code, answer = raw(server, "/v1/models", headers=headers)
            assert code == 401 and "key" in answer["error"]["message"].lower()
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.base_url, api_key="s3cret", max_retries=0)
        assert good.completions.create(model="tiny", prompt="x", max_tokens=2).usage.completion_tokens == 2
        assert raw(server, "/health")[0] == 200
        assert post(server, "/tokenize", {"prompt": "x"})[0] == 401


def test_no_other_host_without_a_key_and_no_cors_unless_asked(server):
    result = cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2 and "--api-key" in result.stderr and "Traceback" not in result.stderr
    request = urllib.request.Request(server.base_url + "/models", headers={"Origin": "https://evil.example"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "access-control-allow-origin" not in {k.lower() for k in response.headers}

"""--remote: the command line on an OpenAI-compatible server instead of a local model, tested against
our own `serve` (a real process on 127.0.0.1), whose answers must be the local model's own; transformers is
the oracle for the log-probabilities. `plain_server` puts a plainer server in front of ours (no /tokenize,
none of vLLM's extra fields), for what the engine does where a server offers less."""

from __future__ import annotations

import http.server
import json
import math
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import openai
import pytest
import torch

from tests.helpers import CLI, cli, running_server


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("remote")) as proc:
        yield proc


def lines(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def same(remote, local, path="") -> None:
    """The two answers are equal, numbers to within float32's rounding across two processes."""
    if isinstance(local, float):
        assert isinstance(remote, (int, float)) and math.isclose(remote, local, rel_tol=1e-5, abs_tol=1e-4), path
    elif isinstance(local, dict):
        assert remote.keys() == local.keys(), path
        for key in local:
            same(remote[key], local[key], f"{path}.{key}")
    elif isinstance(local, list):
        assert len(remote) == len(local), path
        for i, (a, b) in enumerate(zip(remote, local)):
            same(a, b, f"{path}[{i}]")
    else:
        assert remote == local, path


def test_generate_on_a_server_writes_what_the_local_model_writes(served, tiny_model_dir):
    args = ["--prompt", "The little fox ran into the", "--max-new-tokens", "10", "--temperature", "0", "--json"]
    everything = lines(cli("generate", "--model", str(tiny_model_dir), *args))
    local = everything[-1]
    remote = lines(cli("generate", "--remote", served.base_url, *args))
    assert remote[-1]["done"] and remote[-1]["text"] == local["text"]
    assert remote[-1]["stop_reason"] == ("length" if local["stop_reason"] == "length" else "stop")
    assert "".join(t["text"] for t in remote[:-1]) == local["text"]
    # Each token with its id and log-probability, as the local model gives them; the summary's counts too.
    same(remote[:-1], everything[:-1])
    assert remote[-1]["token_ids"] == local["token_ids"] and remote[-1]["prompt_tokens"] == local["prompt_tokens"]
    plain = cli("generate", "--remote", served.base_url.removesuffix("/v1"), "--remote-model", "tiny", *args[:-1])
    assert plain.returncode == 0 and plain.stdout.strip() == local["text"].strip()


def test_alternatives_and_scores_come_through(served, tiny_hf, tiny):
    tokens = lines(cli("generate", "--remote", served.base_url, "--prompt", "Once upon", "--max-new-tokens", "4",
                       "--temperature", "0", "--json", "--top-logprobs", "3"))[:-1]
    assert len(tokens) == 4
    for t in tokens:
        # With alternatives the server names tokens by their text (their ids would leave the alternatives'
        # texts unknown).
        assert t["token"] is None and len(t["top"]) == 3 and t["rank"] == 1  # greedy: the likeliest
        assert t["top"][0]["logprob"] == pytest.approx(t["logprob"], abs=1e-5)
    text = "The little fox ran into the wood"
    scored = lines(cli("score", "--remote", served.base_url, "--text", text, "--json"))[0]["tokens"]
    ids = tiny.tokenizer.encode(text)
    with torch.no_grad():  # every token, after <|endoftext|>, as the local model scores it
        logp = torch.log_softmax(tiny_hf(torch.tensor([[tiny.tokenizer.eos_id] + ids])).logits[0], -1)
    expected = [float(logp[i, t]) for i, t in enumerate(ids)]
    assert [s["logprob"] for s in scored] == pytest.approx(expected, abs=1e-3)
    assert [s["token"] for s in scored] == ids
    ppl = lines(cli("perplexity", "--remote", served.base_url, "--file", str(_write(text)), "--json"))[0]
    assert ppl["tokens"] == len(ids) and ppl["nll"] == pytest.approx(-sum(expected), abs=1e-2)


def test_scores_perplexity_choices_and_analysis_on_a_server_equal_the_local_models(served, tiny_model_dir,
                                                                                  tmp_path):
    """The same numbers for the same model and text, here and through the server: each token after
    <|endoftext|>, with its id, rank and alternatives; a text longer than the window (128 tokens) window by
    window with the same stride."""
    long = tmp_path / "long.txt"
    long.write_text("The little fox ran into the wood, and the old king saw him go. " * 20)  # about 300 tokens
    commands = [  # each command once, on the long text where a window is at stake
        ["score", "--text", " king", "--top-logprobs", "3", "--json"],
        ["score", "--text", long.read_text(), "--json"],
        ["perplexity", "--file", str(long), "--json"],
        ["analyse", "--file", str(long), "--json"],
        ["choose", "--prompt", long.read_text(), "--option", " wood", "--option", " old king", "--json"],
    ]
    for command in commands:
        local = lines(cli(*command, "--model", str(tiny_model_dir)))
        remote = lines(cli(*command, "--remote", served.base_url))
        same(remote, local, command[0])
    assert lines(cli("perplexity", "--file", str(long), "--json", "--model", str(tiny_model_dir)))[0]["tokens"] > 256


def test_a_generation_longer_than_the_servers_window_is_fitted_to_it(served, tiny_model_dir, tmp_path):
    """The server refuses a prompt and reply longer than its window (128 tokens): the prompt's oldest tokens
    are left out as the local model leaves them out, and the reply ends where the window is full."""
    short = cli("generate", "--remote", served.base_url, "--prompt", "Once upon a time", "--max-new-tokens", "600",
                "--temperature", "0", "--json")
    done = lines(short)[-1]
    assert done["stop_reason"] == "length" and len(done["token_ids"]) == 128 - done["prompt_tokens"]
    assert f"left room for {128 - done['prompt_tokens']} new tokens" in short.stderr
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("The little fox ran into the wood, and the old king saw him go. " * 20)
    args = ["--prompt-file", str(prompt), "--max-new-tokens", "40", "--temperature", "0", "--json"]
    local = lines(cli("generate", "--model", str(tiny_model_dir), *args))[-1]
    remote = lines(cli("generate", "--remote", served.base_url, *args))[-1]
    # Both keep the last 96 tokens (three quarters of the window); the server then writes what the window
    # leaves, the same tokens as the local model's first ones (it slides on past them).
    assert remote["truncated_prompt_tokens"] == local["truncated_prompt_tokens"] == local["prompt_tokens"] - 96
    assert remote["prompt_tokens"] == local["prompt_tokens"]
    assert remote["token_ids"] == local["token_ids"][:32] and remote["stop_reason"] == "length"


@pytest.mark.parametrize("status, detail, limits", [
    (400, {"message": "This model's maximum context length is 128 tokens. However, you requested 601 tokens (1 in "
                      "the prompt, 600 for the completion). Please shorten the prompt or lower 'max_tokens'."},
     (128, 1)),  # ours
    (400, {"message": "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens "
                      "(2000 in the messages, 100 in the completion). Please reduce the length of the messages or "
                      "completion.", "type": "BadRequestError"}, (2048, 2000)),  # vLLM
    (400, {"message": "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context "
                      "length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778)."},
     (4096, 2778)),  # vLLM, later
    (400, {"message": "This model's maximum context length is 4097 tokens, however you requested 4162 tokens (162 in "
                      "your prompt; 4000 for the completion). Please reduce your prompt; or completion length."},
     (4097, 162)),  # OpenAI
    (400, {"code": 400, "message": "the request exceeds the available context size, try increasing it",
           "type": "exceed_context_size_error", "n_prompt_tokens": 1234, "n_ctx": 512}, (512, 1234)),  # llama.cpp
    (400, {"message": "'temperature' must be in [0, 2], got 3."}, None),
    (404, {"message": "This model's maximum context length is 128 tokens (1 in the prompt)"}, None),
])
def test_refusals_for_context_length_are_read(status, detail, limits):
    from engine.errors import RemoteError
    from engine.inference.remote_wire import context_limits

    assert context_limits(RemoteError("refused", status=status, detail=detail)) == limits


def test_an_echo_without_the_prompts_log_probabilities_is_not_a_score():
    """llama.cpp's server answers echo with the written token's log-probability only: that is said, not read
    as a text with nothing to score."""
    from engine.errors import RemoteError
    from engine.inference.remote_wire import echo_scores

    written_only = {"tokens": [" the"], "token_logprobs": [-1.5], "top_logprobs": [{" the": -1.5}]}
    with pytest.raises(RemoteError, match="log-probabilities"):
        echo_scores(written_only, [7454, 2402, 257], 3, 0)
    whole = {"tokens": ["Once", " upon", " a", " the"], "token_logprobs": [None, -2.0, -1.0, -1.5]}
    assert [(s.token, s.logprob) for s in echo_scores(whole, [7454, 2402, 257], 3, 0)] == [(2402, -2.0), (257, -1.0)]


@contextmanager
def plain_server(base_url: str):
    """A plainer OpenAI-compatible server in front of ours, on a thread: no /tokenize (404), and vLLM's extra
    fields refused as OpenAI refuses a field it does not know; anything else passed on as it is, a streamed
    answer as it streams. Its `base_url` ends in /v1."""
    upstream = base_url.removesuffix("/v1")
    extras = ("return_tokens_as_token_ids", "prompt_logprobs", "stream_options")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.pass_on(None)

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/tokenize":
                return self.answer(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
            refused = [name for name in extras if name in json.loads(data or b"{}")]
            if refused:
                return self.answer(400, {"error": {"message": "Unrecognized request argument supplied: "
                                                              + ", ".join(refused), "type": "invalid_request_error"}})
            self.pass_on(data)

        def pass_on(self, data: bytes | None) -> None:
            request = urllib.request.Request(upstream + self.path, data=data, method=self.command,
                                             headers={"Content-Type": "application/json"})
            try:
                response = urllib.request.urlopen(request, timeout=120)
            except urllib.error.HTTPError as exc:
                response = exc
            with response:
                self.send_response(response.status)
                self.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
                self.end_headers()  # no length: the answer ends when the connection closes (HTTP/1.0)
                for line in response:
                    self.wfile.write(line)
                    self.wfile.flush()

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        proxy.base_url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_server_that_does_not_tokenize_is_fitted_from_its_refusals(served, tiny_model_dir, tmp_path):
    """No /tokenize: the window and the prompt's length come from the server's refusal for context length, and
    the prompt loses its start in proportion; text is scored as one prompt, its first token context only."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("The little fox ran into the wood, and the old king saw him go. " * 20)
    with plain_server(served.base_url) as plain:
        short = cli("generate", "--remote", plain.base_url, "--prompt", "Once upon a time", "--max-new-tokens",
                    "600", "--temperature", "0", "--json")
        done = lines(short)[-1]
        assert done["stop_reason"] == "length" and len(done["token_ids"]) == 128 - done["prompt_tokens"]
        assert all(t["token"] is None for t in lines(short)[:-1])  # no ids from this server
        long = lines(cli("generate", "--remote", plain.base_url, *["--prompt-file", str(prompt)],
                         "--max-new-tokens", "40", "--temperature", "0", "--json"))[-1]
        local = lines(cli("generate", "--model", str(tiny_model_dir), "--prompt-file", str(prompt),
                          "--max-new-tokens", "1", "--json"))[-1]
        assert long["prompt_tokens"] == local["prompt_tokens"]  # as the refusal counted it
        assert long["truncated_prompt_tokens"] >= local["prompt_tokens"] - 96 and long["token_ids"]
        scored = lines(cli("score", "--remote", plain.base_url, "--text", "Once upon a time", "--json"))[0]
        assert len(scored["tokens"]) == 3  # "Once" is context only
        too_long = cli("perplexity", "--remote", plain.base_url, "--file", str(prompt))
        assert too_long.returncode == 2 and "does not tokenize" in too_long.stderr
        assert "Traceback" not in too_long.stderr


def _write(text: str):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "text.txt"
    path.write_text(text)
    return path


def test_choose_on_a_server_agrees_with_the_local_model(served, tiny_model_dir):
    args = ["--prompt", "The cat sat on the", "--option", " mat", "--option", " moon", "--option", " dog", "--json"]
    local = lines(cli("choose", "--model", str(tiny_model_dir), *args))[0]
    remote = lines(cli("choose", "--remote", served.base_url, *args))[0]
    assert remote["best"] == local["best"]
    for a, b in zip(remote["options"], local["options"]):
        assert a["logprob"] == pytest.approx(b["logprob"], abs=1e-3)


def test_mistakes_are_named(served, tiny_model_dir, tmp_path):
    unreachable = cli("generate", "--remote", "http://127.0.0.1:9/v1", "--prompt", "x")
    assert unreachable.returncode == 2 and "Cannot reach" in unreachable.stderr
    wrong_model = cli("generate", "--remote", served.base_url, "--remote-model", "gpt-9", "--prompt", "x")
    assert wrong_model.returncode == 2 and "404" in wrong_model.stderr and "gpt-9" in wrong_model.stderr
    assert cli("generate", "--remote", "ftp://x", "--prompt", "x").returncode == 2
    both = cli("generate", "--remote", served.base_url, "--model", str(tiny_model_dir), "--prompt", "x")
    assert both.returncode == 2 and "--remote-model" in both.stderr
    with running_server(tiny_model_dir, tmp_path, "--api-key", "k1") as locked:
        refused = cli("generate", "--remote", locked.base_url, "--api-key", "nope", "--prompt", "x")
        assert refused.returncode == 2 and "API key (401" in refused.stderr
        ok = cli("generate", "--remote", locked.base_url, "--api-key", "k1", "--prompt", "x", "--max-new-tokens", "2")
        assert ok.returncode == 0
    for result in (unreachable, wrong_model, both, refused):
        assert "Traceback" not in result.stderr


def test_a_server_that_goes_away_mid_reply_keeps_the_partial_text(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide") as server:
        client = subprocess.Popen([CLI, "generate", "--remote", server.base_url, "--prompt", "Again",
                                   "--max-new-tokens", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        first = client.stdout.read(20)  # it is writing
        server.send_signal(signal.SIGKILL)
        rest, err = client.communicate(timeout=30)
    assert client.returncode == 2 and "mid-reply" in err and "Traceback" not in err
    assert len(first + rest) >= 20


def test_a_busy_server_is_retried(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide", "--queue", "1") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        running = client.completions.create(model="tiny", prompt="a", max_tokens=100000, stream=True)
        next(iter(running))
        waiting = client.completions.create(model="tiny", prompt="b", max_tokens=100000, stream=True)
        time.sleep(0.3)
        threading.Timer(1.5, lambda: (running.close(), waiting.close())).start()
        started = time.perf_counter()
        result = cli("generate", "--remote", server.base_url, "--prompt", "c", "--max-new-tokens", "3")
        assert result.returncode == 0, result.stderr
        assert time.perf_counter() - started > 1.0  # it waited for the queue to free, and did not give up


def _llama_server():
    """llama.cpp's server: on PATH, or built by `make bench-llama`; None where neither is."""
    import shutil
    from pathlib import Path

    from engine.tooling import llama_cpp

    built = llama_cpp.tool("llama-server")
    return shutil.which("llama-server") or (str(built) if built.exists() else None), Path(llama_cpp.ROOT)


def test_against_llama_cpps_server(tiny_model_dir, tmp_path):
    """The same client against llama.cpp's `llama-server`, where it is installed, serving the GGUF file our
    own `export --gguf` wrote (so a model made here runs in llama.cpp)."""
    import socket

    server, _root = _llama_server()
    if server is None:
        pytest.skip("llama.cpp's llama-server is not installed here (make bench-llama builds it)")
    gguf = tmp_path / "tiny.gguf"
    exported = cli("export", "--model", str(tiny_model_dir), "--gguf", str(gguf), "--type", "f16")
    assert exported.returncode == 0, exported.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "-m", str(gguf), "--port", str(port), "-c", "128", "-t", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 60
        result = None
        while time.time() < deadline:
            result = cli("generate", "--remote", url, "--prompt", "Once upon a time", "--max-new-tokens", "5",
                         "--temperature", "0", "--json")
            if result.returncode == 0:
                break
            time.sleep(1)
        done = lines(result)[-1]
        assert done["done"] and done["stop_reason"] in ("length", "stop")
        scored = cli("score", "--remote", url, "--text", "Once upon a time")
        # llama.cpp's server gives no prompt log-probabilities: said plainly, or scores when a version does.
        assert scored.returncode == 0 or "log-probabilities" in scored.stderr
        assert "Traceback" not in scored.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)

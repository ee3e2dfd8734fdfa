"""--remote: the command line on an OpenAI-compatible server instead of a local model, tested against
our own `serve` (a real process on 127.0.0.1); transformers is the oracle for the log-probabilities."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

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


def test_generate_on_a_server_writes_what_the_local_model_writes(served, tiny_model_dir):
    args = ["--prompt", "The little fox ran into the", "--max-new-tokens", "10", "--temperature", "0", "--json"]
    local = lines(cli("generate", "--model", str(tiny_model_dir), *args))[-1]
    remote = lines(cli("generate", "--remote", served.base_url, *args))
    assert remote[-1]["done"] and remote[-1]["text"] == local["text"]
    assert remote[-1]["stop_reason"] == ("length" if local["stop_reason"] == "length" else "stop")
    assert "".join(t["text"] for t in remote[:-1]) == local["text"]
    plain = cli("generate", "--remote", served.base_url.removesuffix("/v1"), "--remote-model", "tiny", *args[:-1])
    assert plain.returncode == 0 and plain.stdout.strip() == local["text"].strip()


def test_alternatives_and_scores_come_through(served, tiny_hf, tiny):
    tokens = lines(cli("generate", "--remote", served.base_url, "--prompt", "Once upon", "--max-new-tokens", "4",
                       "--temperature", "0", "--json", "--top-logprobs", "3"))[:-1]
    assert len(tokens) == 4
    for t in tokens:
        assert t["token"] is None and len(t["top"]) == 3 and t["rank"] == 1  # greedy: the likeliest
        assert t["top"][0]["logprob"] == pytest.approx(t["logprob"], abs=1e-5)
    text = "The little fox ran into the wood"
    scored = lines(cli("score", "--remote", served.base_url, "--text", text, "--json"))[0]["tokens"]
    ids = tiny.tokenizer.encode(text)
    with torch.no_grad():
        logp = torch.log_softmax(tiny_hf(torch.tensor([ids])).logits[0], -1)
    expected = [float(logp[i - 1, t]) for i, t in enumerate(ids) if i > 0]  # the first token has no score
    assert [s["logprob"] for s in scored] == pytest.approx(expected, abs=1e-3)
    ppl = lines(cli("perplexity", "--remote", served.base_url, "--file", str(_write(text)), "--json"))[0]
    assert ppl["tokens"] == len(ids) - 1 and ppl["nll"] == pytest.approx(-sum(expected), abs=1e-2)


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

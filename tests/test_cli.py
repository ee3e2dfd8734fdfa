"""The command-line contract of DESIGN.md, run as a real process."""

import json
import math

import pytest
import torch

from tests.helpers import cli

DONE_KEYS = {"done", "text", "token_ids", "prompt_tokens", "stop_reason", "time_to_first_token_ms",
             "tokens_per_second"}


def json_lines(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_generate_json_stream(tiny_model_dir, tiny):
    lines = json_lines(cli("generate", "--model", str(tiny_model_dir), "--prompt", "Once upon a time",
                           "--temperature", "0", "--max-new-tokens", "12", "--json"))
    tokens, done = lines[:-1], lines[-1]
    assert set(done) == DONE_KEYS and done["done"] is True
    assert len(tokens) == 12 and all(set(t) == {"token", "text", "logprob"} for t in tokens)
    assert [t["token"] for t in tokens] == done["token_ids"]
    assert "".join(t["text"] for t in tokens) == done["text"]
    assert all(t["logprob"] <= 0 for t in tokens)
    assert done["prompt_tokens"] == len(tiny.tokenizer.encode("Once upon a time"))
    assert done["stop_reason"] == "length"
    assert done["time_to_first_token_ms"] > 0 and done["tokens_per_second"] > 0
    from engine import Generator, SamplingSettings

    expected = list(Generator(tiny).stream("Once upon a time", SamplingSettings(temperature=0, max_new_tokens=12)))
    assert done["token_ids"] == expected[-1].token_ids


def test_generate_plain_text_and_stop(tiny_model_dir):
    full = json_lines(cli("generate", "--model", str(tiny_model_dir), "--prompt", "Hello", "--temperature", "0",
                          "--max-new-tokens", "20", "--json"))[-1]["text"]
    stop = full[5:8]
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt", "Hello", "--temperature", "0",
                 "--max-new-tokens", "20", "--stop", stop)
    assert result.returncode == 0
    assert result.stdout == full[: full.index(stop)] + "\n"


def test_generate_seeded_sampling_is_repeatable(tiny_model_dir):
    args = ["generate", "--model", str(tiny_model_dir), "--prompt", "Hi", "--seed", "7", "--max-new-tokens", "10",
            "--temperature", "1.0", "--top-p", "0.9", "--json"]
    assert json_lines(cli(*args))[-1]["token_ids"] == json_lines(cli(*args))[-1]["token_ids"]


def test_generate_reports_truncated_prompt(tiny_model_dir, tmp_path):
    prompt = tmp_path / "long.txt"
    prompt.write_text("word" + " word" * 199)  # 200 tokens, window 128
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt-file", str(prompt), "--max-new-tokens", "3",
                 "--temperature", "0", "--json")
    done = json_lines(result)[-1]
    assert done["truncated_prompt_tokens"] == 200 - 96
    assert "left out" in result.stderr


def test_score_matches_transformers(tiny_model_dir, tiny_hf):
    text = "The cat sat on the mat."
    out = json_lines(cli("score", "--model", str(tiny_model_dir), "--text", text, "--json"))[0]
    ids = [t["token"] for t in out["tokens"]]
    with torch.no_grad():
        logp = torch.log_softmax(tiny_hf(torch.tensor([[50256] + ids])).logits[0], -1)
    expected = [float(logp[i, t]) for i, t in enumerate(ids)]
    assert [t["logprob"] for t in out["tokens"]] == pytest.approx(expected, abs=1e-4)
    assert out["logprob"] == pytest.approx(sum(expected), abs=1e-3)


@pytest.mark.parametrize("repeats", [3, 60])  # within one window, and past it (overlapping windows)
def test_perplexity_matches_transformers(tiny_model_dir, tiny_hf, tmp_path, repeats):
    text = "Once upon a time, a fox met a crow. " * repeats
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    out = json_lines(cli("perplexity", "--model", str(tiny_model_dir), "--file", str(path), "--json"))[0]
    assert set(out) == {"tokens", "bytes", "nll", "ppl", "bits_per_byte"}
    from transformers import GPT2TokenizerFast

    ids = GPT2TokenizerFast.from_pretrained(tiny_model_dir).encode(text)
    seq = [50256] + ids
    window, stride = 128, 64
    nll, scored = 0.0, 0
    while scored < len(ids):  # the same overlapping-window scheme, computed with transformers
        end = min(len(seq), scored + 1 + (stride if scored else window - 1))
        start = max(0, end - window)
        with torch.no_grad():
            logp = torch.log_softmax(tiny_hf(torch.tensor([seq[start:end]])).logits[0], -1)
        for j in range(scored + 1, end):
            nll -= float(logp[j - 1 - start, seq[j]])
        scored = end - 1
    assert out["tokens"] == len(ids)
    assert out["bytes"] == len(text.encode("utf-8"))
    assert out["nll"] == pytest.approx(nll, rel=1e-5)
    assert out["ppl"] == pytest.approx(math.exp(nll / len(ids)), rel=1e-5)
    assert out["bits_per_byte"] == pytest.approx(nll / math.log(2) / len(text.encode()), rel=1e-5)


def test_perplexity_of_empty_file_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    result = cli("perplexity", "--model", str(tiny_model_dir), "--file", str(tmp_path / "empty.txt"))
    assert result.returncode == 2 and "empty" in result.stderr


def test_bench_reports_both_engines_and_ratios(tiny_model_dir):
    result = cli("bench", "--model", str(tiny_model_dir), "--against", "transformers", "--dtype", "float32",
                 "--prompt-tokens", "8", "--new-tokens", "8", "--prefill-tokens", "32", "--repeats", "1", "--json",
                 timeout=300)
    report = json_lines(result)[0]
    for engine in (report["ours"]["float32"], report["transformers"]):
        assert engine["decode_tok_s"] > 0
        assert engine["prefill_ms"] > 0 and engine["ttft_ms"] > 0
        assert engine["peak_rss_mb"] > 50
    assert report["ratios"]["float32"]["decode_speedup"] == pytest.approx(
        report["ours"]["float32"]["decode_tok_s"] / report["transformers"]["decode_tok_s"])


def test_bench_brief_measures_only_load_memory_and_decode(tiny_model_dir, tmp_path, monkeypatch):
    from engine.tooling.bench import format_brief

    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))  # the prepared int8 copy goes there
    result = cli("bench", "--model", str(tiny_model_dir), "--brief", "--dtype", "int8", "--threads", "1",
                 "--prompt-tokens", "8", "--new-tokens", "8", "--repeats", "1", "--json", timeout=300)
    report = json_lines(result)[0]
    assert report["brief"] is True
    assert report["measured"] == {"ours": ["load_s", "peak_rss_mb", "decode_tok_s"]}
    ours = report["ours"]["int8"]
    assert ours["decode_tok_s"] > 0 and ours["load_s"] > 0 and ours["peak_rss_mb"] > 50
    assert set(ours) == {"decode_tok_s", "load_s", "peak_rss_mb", "decoder", "threads"}
    assert not {"transformers", "ratios", "read_gb_s", "startup_s", "quality", "busy", "llama.cpp",
                "prefill_tokens"} & set(report)
    assert "prefill" in report["not_measured"] and "transformers" in report["not_measured"]
    text = format_brief(report)
    assert "measured only load time, peak RSS and decode speed" in text and "not measured: transformers" in text


def test_bench_brief_refuses_what_it_does_not_measure(tiny_model_dir):
    result = cli("bench", "--model", str(tiny_model_dir), "--brief", "--against", "transformers")
    assert result.returncode == 2 and "--brief" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["generate", "--prompt-file"], ["perplexity", "--file"], ["analyse", "--file"]])
def test_a_device_or_endless_file_is_refused_at_once(tiny_model_dir, command):
    """`--prompt-file /dev/zero` read without bound; now the first zero byte refuses it."""
    result = cli(command[0], "--model", str(tiny_model_dir), command[1], "/dev/zero", timeout=30)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "/dev/zero looks like a binary file" in result.stderr


def test_a_prompt_file_larger_than_any_prompt_is_refused(tiny_model_dir, tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"The fox ran. " * ((17 << 20) // 13 + 1))
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt-file", str(big))
    assert result.returncode == 2 and "is larger than 16 MiB, more than a prompt can be" in result.stderr


# one form for every error, and the small things a new user met (issue 18)

ONE_FORM = r"^gpt2-desktop( [a-z-]+)?: \S"


@pytest.mark.parametrize("args,fragment", [
    (["generate", "--temperature", "warm", "--prompt", "x"], "gpt2-desktop generate: argument --temperature"),
    (["perplexity", "--file", "/no/such/file.txt"], "gpt2-desktop perplexity: No such file: /no/such/file.txt"),
    (["generate", "--prompt", "x", "--var", "a=b"], "gpt2-desktop generate: --var is only used with --template"),
    (["choose", "--prompt", "x", "--option", "a"], "gpt2-desktop choose: give at least two --option values"),
    (["generate", "--model", "/no/such/model", "--prompt", "x"], "gpt2-desktop generate: "),
    (["templates", "show"], "gpt2-desktop templates: name a template"),
    (["history", "import", "/no/such/export.json"], "gpt2-desktop history: /no/such/export.json could not be read"),
    (["frobnicate"], "gpt2-desktop: argument command: invalid choice: 'frobnicate'"),
    ([], None),
])
def test_every_error_is_one_line_in_one_form(tmp_path, args, fragment):
    import re

    if not args:  # no command opens the window; a bare option is the command line's
        args = ["--model", "x"]
    result = cli(*args, env={"GPT2_DESKTOP_DATA_DIR": str(tmp_path / "data"),
                             "GPT2_DESKTOP_CONFIG_DIR": str(tmp_path / "config")})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert re.match(ONE_FORM, lines[0]) and "error:" not in lines[0], lines[0]
    assert fragment is None or lines[0].startswith(fragment), lines[0]


def test_help_lists_history_among_the_commands():
    out = cli("--help").stdout
    commands = out[out.index("{") + 1:out.index("}")].split(",")
    assert "history" in commands and "generate" in commands
    assert any(line.split()[:1] == ["history"] and "conversations" in line for line in out.splitlines())


def test_more_threads_than_cpus_are_said_and_capped_and_none_is_refused(tiny_model_dir):
    from engine.tooling.cli import available_cpus

    cpus = available_cpus()
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt", "Hi", "--max-new-tokens", "2",
                 "--threads", str(cpus + 997))
    assert result.returncode == 0, result.stderr
    assert f"note: --threads {cpus + 997} is more than the {cpus} CPU" in result.stderr
    assert f"using {cpus}." in result.stderr
    refused = cli("generate", "--model", str(tiny_model_dir), "--prompt", "Hi", "--threads", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "gpt2-desktop generate: --threads takes 1 or more, got 0"


def letters(folder) -> str:
    path = folder / "letters.txt"
    path.write_text("".join(f"Dear friend, this is letter number {n}. The garden is green and the river runs "
                            f"slowly by the old mill.\n\n" for n in range(120)), encoding="utf-8")
    return str(path)


def test_train_says_no_validation_yet_instead_of_nan(tmp_path, tiny_model_dir):
    result = cli("train", "--out", str(tmp_path / "run"), "--init", str(tiny_model_dir), "--data", letters(tmp_path),
                 "--steps", "3", "--eval-every", "3", "--context", "32", "--batch-size", "2", "--eval-batches", "1",
                 "--lora", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stderr.splitlines() if " step " in line]
    assert "step 1/3" in steps[0] and "val not measured yet" in steps[0]
    assert "nan" not in result.stderr.lower()
    assert "step 3/3" in steps[-1] and "bits/byte" in steps[-1]


def test_a_pause_during_an_evaluation_keeps_that_steps_point_on_the_curves(tmp_path, tiny_model_dir):
    """SIGTERM (the window's Pause) mostly lands in an evaluation here (one after every step, each much longer
    than the step): the checkpoint then holds a step whose log line, its point on the curves, was not written
    yet. It is written before the checkpoint; before, a resumed run never had that point."""
    import os
    import signal
    import subprocess
    import time

    from tests.helpers import CLI

    run = tmp_path / "run"
    proc = subprocess.Popen([CLI, "train", "--out", str(run), "--init", str(tiny_model_dir), "--data",
                             letters(tmp_path), "--steps", "1000", "--eval-every", "1", "--context", "32",
                             "--batch-size", "2", "--eval-batches", "100", "--lora", "2", "--autocast", "off"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stderr:
            if "step 1/1000" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == list(range(1, state["step"] + 1))  # the checkpoint's step too
    assert math.isfinite(logged[-1]["val_loss"]) and logged[-1]["val_loss"] == state["val_loss"]


def test_an_exported_folder_is_readable_as_its_other_files_are(tmp_path, tiny_model_dir):
    import stat

    out = tmp_path / "exported"
    result = cli("export", "--model", str(tiny_model_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in out.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] and modes["config.json"] & 0o044, modes


def test_windows_line_endings_are_scored_as_train_reads_them_and_said(tiny_model_dir, tmp_path):
    text = "The keeper wrote in his book.\nThe storm came over the sea.\n\nAnd the ships were late.\n" * 20
    unix, windows, old_mac = tmp_path / "unix.txt", tmp_path / "windows.txt", tmp_path / "mac.txt"
    unix.write_bytes(text.encode())
    windows.write_bytes(text.replace("\n", "\r\n").encode())
    old_mac.write_bytes(text.replace("\n", "\r").encode())
    for command, endings in (("perplexity", (windows, old_mac)), ("analyse", (windows,))):
        plain = cli(command, "--model", str(tiny_model_dir), "--file", str(unix), "--json")
        assert plain.returncode == 0 and "line endings" not in plain.stderr, plain.stderr
        for path in endings:
            result = cli(command, "--model", str(tiny_model_dir), "--file", str(path), "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == json.loads(plain.stdout)  # the same figures, the same keys
            notes = [line for line in result.stderr.splitlines() if "line endings" in line]
            assert len(notes) == 1 and notes[0].startswith(f"note: {path} has Windows (CR LF) or old Mac (CR)")
            assert f"its {text.count(chr(10))} line breaks were scored as plain LF" in notes[0]
        if command == "perplexity":
            assert set(json.loads(result.stdout)) == {"tokens", "bytes", "nll", "ppl", "bits_per_byte"}

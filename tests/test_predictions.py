"""Ranks and alternatives (GLTR's view of a text) equal what transformers' logits give; the command
line's --top-logprobs and `analyse`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine import Generator, SamplingSettings, SettingsError, load_model
from engine.inference.analysis import BUCKET_NAMES, analyse, bucket_of
from engine.inference.scoring import perplexity, score_text
from tests.helpers import cli

TEXT = "The little fox ran over the hill, and the children laughed at the moon."


def hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    """transformers' log-probabilities [len(ids), vocab] of the token after each prefix."""
    with torch.no_grad():
        return torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), dim=-1)


TIE = 1e-5  # two implementations' sums differ by about this much; tokens closer than it may swap places


def assert_matches(token: int, logprob: float, rank: int, top, row: torch.Tensor, k: int) -> None:
    """Our rank, alternatives and log-probability of a token against transformers' row. Ranks and the order of
    alternatives are exact but for tokens whose log-probabilities are within TIE of each other (random
    124M-shaped weights give tens of thousands of near-ties), which either may order either way."""
    here = float(row[token])
    assert int((row > here + TIE).sum()) + 1 <= rank <= int((row > here - TIE).sum()) + 1
    values, ids = torch.topk(row, k)
    assert [a.logprob for a in top] == pytest.approx(values.tolist(), abs=1e-4)
    for a, expected in zip(top, ids.tolist()):
        assert a.token == expected or abs(float(row[a.token]) - float(row[expected])) < TIE
    assert logprob == pytest.approx(here, abs=1e-4)


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_generated_ranks_and_alternatives_equal_transformers(tiny, tiny_hf, temperature):
    prompt = tiny.tokenizer.encode("Once upon a time")
    settings = SamplingSettings(temperature=temperature, top_k=0, max_new_tokens=24, seed=3)
    events = list(Generator(tiny).stream(prompt, settings, top_logprobs=7))
    done, tokens = events[-1], events[:-1]
    rows = hf_logprobs(tiny_hf, prompt + done.token_ids)
    for i, event in enumerate(tokens):
        assert_matches(event.token, event.logprob, event.rank, event.top, rows[len(prompt) - 1 + i], 7)
        assert all(a.text == tiny.tokenizer.decode([a.token]) for a in event.top)
        if temperature == 0:
            assert event.top[0].token == event.token and event.rank == 1
    if temperature:
        assert any(e.rank > 1 for e in tokens)  # sampling does pick unlikely tokens, and says so


def test_without_top_logprobs_events_carry_none(tiny):
    event = next(iter(Generator(tiny).stream("Hello", SamplingSettings(max_new_tokens=1))))
    assert event.rank is None and event.top == ()


@pytest.mark.parametrize("k", [-1, 21, 2.5])
def test_top_logprobs_out_of_range_is_refused(tiny, k):
    with pytest.raises(SettingsError, match="top-logprobs"):
        next(iter(Generator(tiny).stream("Hello", SamplingSettings(), top_logprobs=k)))


def test_scored_ranks_and_alternatives_equal_transformers(tiny, tiny_hf):
    ids = tiny.tokenizer.encode(TEXT)
    rows = hf_logprobs(tiny_hf, [tiny.tokenizer.eos_id] + ids)
    scores = score_text(tiny, TEXT, top_logprobs=20)
    assert [s.token for s in scores] == ids
    for i, s in enumerate(scores):
        assert_matches(s.token, s.logprob, s.rank, s.top, rows[i], 20)


@pytest.mark.slow
def test_124m_ranks_and_alternatives_equal_transformers(model_124m_dir):
    from transformers import GPT2LMHeadModel

    ours = load_model(model_124m_dir, device="cpu")
    hf = GPT2LMHeadModel.from_pretrained(model_124m_dir).eval()
    ids = ours.tokenizer.encode(TEXT)
    rows = hf_logprobs(hf, [ours.tokenizer.eos_id] + ids)
    for i, s in enumerate(score_text(ours, TEXT, top_logprobs=10)):
        assert_matches(s.token, s.logprob, s.rank, s.top, rows[i], 10)
    prompt = ids[:6]
    events = list(Generator(ours).stream(prompt, SamplingSettings(temperature=0, max_new_tokens=8), top_logprobs=5))
    rows = hf_logprobs(hf, prompt + events[-1].token_ids)
    for i, event in enumerate(events[:-1]):
        assert_matches(event.token, event.logprob, event.rank, event.top, rows[len(prompt) - 1 + i], 5)
        assert event.top[0].token == event.token


def test_buckets_are_gltrs():
    assert [bucket_of(r) for r in (1, 10, 11, 100, 101, 1000, 1001, 50000)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_analysis_counts_every_token_once_and_agrees_with_perplexity(tiny):
    text = TEXT * 12  # longer than the tiny model's 128-token window: scored in several windows
    seen = []
    result = analyse(tiny, text, surprising=5, progress=lambda done, total: seen.append((done, total)))
    assert result.tokens == len(tiny.tokenizer.encode(text)) == sum(result.buckets)
    assert len(seen) > 1 and seen[-1] == (result.tokens, result.tokens)
    assert result.bits_per_byte == pytest.approx(perplexity(tiny, text).bits_per_byte, rel=1e-6)
    logprobs = [s.logprob for s in result.surprising]
    assert len(logprobs) == 5 and logprobs == sorted(logprobs)
    assert min(s.logprob for s in score_text(tiny, text)) == pytest.approx(logprobs[0])


def test_analysis_can_be_cancelled(tiny):
    with pytest.raises(SettingsError, match="cancelled"):
        analyse(tiny, TEXT * 12, cancelled=lambda: True)


def test_cli_generate_and_score_with_top_logprobs(tiny_model_dir):
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt", "Hello", "--max-new-tokens", "4",
                 "--temperature", "0", "--json", "--top-logprobs", "3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    for line in lines[:-1]:
        assert set(line) == {"token", "text", "logprob", "rank", "top"}
        assert line["rank"] == 1 and line["top"][0]["token"] == line["token"] and len(line["top"]) == 3
        assert set(line["top"][0]) == {"token", "text", "logprob"}
    assert lines[-1]["done"] is True
    result = cli("score", "--model", str(tiny_model_dir), "--text", TEXT, "--json", "--top-logprobs", "2")
    assert result.returncode == 0, result.stderr
    tokens = json.loads(result.stdout)["tokens"]
    assert all(len(t["top"]) == 2 and t["rank"] >= 1 for t in tokens)
    plain = json.loads(cli("score", "--model", str(tiny_model_dir), "--text", TEXT, "--json").stdout)["tokens"]
    assert all(set(t) == {"token", "text", "logprob"} for t in plain)


def test_cli_refuses_too_many_alternatives(tiny_model_dir):
    result = cli("score", "--model", str(tiny_model_dir), "--text", TEXT, "--top-logprobs", "21")
    assert result.returncode == 2 and "top-logprobs" in result.stderr and "Traceback" not in result.stderr


def test_cli_analyse(tiny_model_dir, tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(TEXT * 3, encoding="utf-8")
    result = cli("analyse", "--model", str(tiny_model_dir), "--file", str(path), "--json", "--surprising", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["buckets"]) == list(BUCKET_NAMES) and sum(report["buckets"].values()) == report["tokens"]
    assert math.isfinite(report["bits_per_byte"]) and len(report["surprising"]) == 4
    text = cli("analyse", "--model", str(tiny_model_dir), "--file", str(path))
    assert text.returncode == 0 and "top 10" in text.stdout and "bits per byte" in text.stdout
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    result = cli("analyse", "--model", str(tiny_model_dir), "--file", str(empty))
    assert result.returncode == 2 and "nothing to analyse" in result.stderr

"""Log-probabilities of given text: per-token scores and corpus perplexity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from engine.core.loader import LoadedModel, not_a_number
from engine.errors import SettingsError
from engine.inference.predictions import Alternative, check_top_logprobs, ranks, top_alternatives


@dataclass(frozen=True)
class TokenScore:
    token: int
    text: str
    logprob: float
    rank: int | None = None  # with top_logprobs: 1 = the model's likeliest token there
    top: tuple[Alternative, ...] = ()  # with top_logprobs: the likeliest tokens there, likeliest first


@dataclass(frozen=True)
class Perplexity:
    tokens: int
    bytes: int
    nll: float  # total negative log-likelihood in nats

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes if self.bytes else float("nan")

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "bytes": self.bytes, "nll": self.nll, "ppl": self.ppl,
                "bits_per_byte": self.bits_per_byte}


def _logprobs(loaded: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """Log-probabilities [T, vocab] after each token of `ids` [1, T]; a NaN or an infinite logit comes from the
    weights (see loader.not_a_number). The last row's sum tells: a NaN or an infinity anywhere in the window
    reaches the last position through attention, and makes the sum one."""
    logits = loaded.model(ids).float()
    if not math.isfinite(float(logits[0, -1].sum())):
        raise not_a_number(loaded)
    return torch.log_softmax(logits, dim=-1)[0]


def spans(length: int, window: int, stride: int | None = None) -> Iterator[tuple[int, int, int]]:
    """How a sequence of `length` tokens, the first of them context only, is scored window by window: for
    each window (where it starts, the first token it scores, where it ends), all indices into the sequence.

    A sequence longer than the window is scored in overlapping windows: each window after the first
    re-reads `window - stride` earlier tokens as context and scores `stride` new ones (the remote engine
    scores the same windows on its server).
    """
    stride = stride or max(1, window // 2)
    done = 0
    while done < length - 1:
        first = done + 1  # the next token to score
        end = min(length, first + (stride if done else window - 1))
        yield max(0, end - window), first, end
        done = end - 1


def _windows(loaded: LoadedModel, ids: list[int], stride: int | None, bos: bool = True):
    """(log-probabilities [n, vocab], targets [n]) for every token of `ids` after <|endoftext|>, window by
    window (`spans`); with `bos` False, for every token after the first, conditioned on the tokens before it
    only."""
    start = loaded.tokenizer.eos_id if loaded.tokenizer.eos_id is not None else 0
    seq = ([start] if bos else []) + list(ids)
    for ctx_start, first, end in spans(len(seq), loaded.context_window, stride):
        chunk = torch.tensor([seq[ctx_start:end]], device=loaded.device)
        logp = _logprobs(loaded, chunk)
        yield logp[first - 1 - ctx_start : end - 1 - ctx_start], torch.tensor(seq[first:end], device=loaded.device)


@torch.inference_mode()
def token_logprobs(loaded: LoadedModel, ids: list[int], stride: int | None = None) -> list[float]:
    """log p(ids[i] | <|endoftext|>, ids[:i]) for every i."""
    out: list[float] = []
    for logp, targets in _windows(loaded, ids, stride):
        out.extend(logp.gather(1, targets[:, None])[:, 0].tolist())
    return out


@torch.inference_mode()
def predictions(loaded: LoadedModel, ids: list[int]) -> tuple[list[float], list[int]]:
    """Per token of `ids`: its log-probability, and the model's most likely token in its place."""
    logprobs: list[float] = []
    top1: list[int] = []
    for logp, targets in _windows(loaded, ids, None):
        logprobs.extend(logp.gather(1, targets[:, None])[:, 0].tolist())
        top1.extend(logp.argmax(dim=1).tolist())
    return logprobs, top1


@torch.inference_mode()
def score_ids(loaded: LoadedModel, ids: list[int], top_logprobs: int = 0, stride: int | None = None,
              bos: bool = True):
    """TokenScores for `ids`, window by window (an iterator: long texts report progress as they go).
    With `bos` False the first token is context only, not scored (as OpenAI's `echo` does)."""
    check_top_logprobs(top_logprobs)
    decode = loaded.tokenizer.decode
    for logp, targets in _windows(loaded, ids, stride, bos):
        picked = logp.gather(1, targets[:, None])[:, 0].tolist()
        if not top_logprobs:
            yield [TokenScore(i, decode([i]), lp) for i, lp in zip(targets.tolist(), picked)]
            continue
        rank = ranks(logp, targets).tolist()
        top = top_alternatives(logp, top_logprobs, loaded.tokenizer)
        yield [TokenScore(i, decode([i]), lp, r, alt) for i, lp, r, alt in zip(targets.tolist(), picked, rank, top)]


def score_text(loaded: LoadedModel, text: str, top_logprobs: int = 0) -> list[TokenScore]:
    """Every token of `text`, with its log-probability after <|endoftext|> and the tokens before it."""
    return [score for batch in score_ids(loaded, loaded.tokenizer.encode(text), top_logprobs) for score in batch]


def normalise_newlines(text: str) -> tuple[str, int]:
    """`text` with Windows (CR LF) and old Mac (CR) line endings as plain LF, as training reads text, and how many
    line endings were changed. Scored literally, every CR is a token of its own that costs the model many nats:
    a text's bits per byte would depend on the editor that saved it."""
    changed = text.count("\r")
    if not changed:
        return text, 0
    return text.replace("\r\n", "\n").replace("\r", "\n"), changed


def perplexity(loaded: LoadedModel, text: str) -> Perplexity:
    ids = loaded.tokenizer.encode(text)
    nll = -sum(token_logprobs(loaded, ids))
    return Perplexity(tokens=len(ids), bytes=len(text.encode("utf-8")), nll=nll)


@dataclass(frozen=True)
class OptionScore:
    text: str
    logprob: float  # total log-probability of the option's tokens after the context
    tokens: int
    prob: float  # among the options, from the ranking score


@torch.inference_mode()
def choose(loaded: LoadedModel, context: str, options: list[str], normalise: bool = False) -> tuple[list[OptionScore], int]:
    """Score each option by the log-likelihood of its tokens after the context (the first GPT paper's
    multiple-choice transformation). `normalise` ranks by log-likelihood per token instead of in total."""
    tokenizer = loaded.tokenizer
    window = loaded.context_window
    bos = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    context_ids = tokenizer.encode(context) or [bos]
    totals, lengths = [], []
    for option in options:
        option_ids = tokenizer.encode(option)
        if not option_ids:
            raise SettingsError("An option cannot be empty.")
        ids = (context_ids + option_ids)[-window:]
        first = len(ids) - len(option_ids)  # index of the option's first token
        if first < 1:
            raise SettingsError(f"The option {option[:40]!r} alone fills the model's {window}-token window.")
        logp = _logprobs(loaded, torch.tensor([ids], device=loaded.device))
        picked = logp[torch.arange(first - 1, len(ids) - 1), torch.tensor(option_ids, device=loaded.device)]
        totals.append(float(picked.sum()))
        lengths.append(len(option_ids))
    ranking = torch.tensor([t / n if normalise else t for t, n in zip(totals, lengths)], dtype=torch.float64)
    probs = torch.softmax(ranking, dim=0).tolist()
    scores = [OptionScore(o, t, n, p) for o, t, n, p in zip(options, totals, lengths, probs)]
    return scores, int(torch.argmax(ranking))

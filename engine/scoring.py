"""Log-probabilities of given text: per-token scores and corpus perplexity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.loader import LoadedModel


@dataclass(frozen=True)
class TokenScore:
    token: int
    text: str
    logprob: float


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


@torch.inference_mode()
def token_logprobs(loaded: LoadedModel, ids: list[int], stride: int | None = None) -> list[float]:
    """log p(ids[i] | <|endoftext|>, ids[:i]) for every i.

    Text longer than the context window is scored in overlapping windows: each window after
    the first re-reads `window - stride` earlier tokens as context and scores `stride` new ones.
    """
    window = loaded.config.n_positions
    stride = stride or max(1, window // 2)
    bos = loaded.tokenizer.eos_id if loaded.tokenizer.eos_id is not None else 0
    seq = [bos] + list(ids)
    out: list[float] = []
    while len(out) < len(ids):
        first = len(out) + 1  # index in seq of the next token to score
        end = min(len(seq), first + (stride if out else window - 1))
        ctx_start = max(0, end - window)
        chunk = torch.tensor([seq[ctx_start:end]], device=loaded.device)
        logp = torch.log_softmax(loaded.model(chunk).float(), dim=-1)[0]
        rows = torch.arange(first - 1 - ctx_start, end - 1 - ctx_start, device=loaded.device)
        targets = torch.tensor(seq[first:end], device=loaded.device)
        out.extend(logp[rows, targets].tolist())
    return out


def score_text(loaded: LoadedModel, text: str) -> list[TokenScore]:
    ids = loaded.tokenizer.encode(text)
    logprobs = token_logprobs(loaded, ids)
    return [TokenScore(i, loaded.tokenizer.decode([i]), lp) for i, lp in zip(ids, logprobs)]


def perplexity(loaded: LoadedModel, text: str) -> Perplexity:
    ids = loaded.tokenizer.encode(text)
    nll = -sum(token_logprobs(loaded, ids))
    return Perplexity(tokens=len(ids), bytes=len(text.encode("utf-8")), nll=nll)

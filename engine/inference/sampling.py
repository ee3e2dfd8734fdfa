"""The small functions that turn logits into the next token (settings: engine.inference.settings)."""

from __future__ import annotations

import torch

from engine.inference.settings import SamplingSettings


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty, as transformers applies it: shrink the logits of tokens already in the text."""
    picked = logits.gather(-1, seen)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(-1, seen, picked)


def apply_openai_penalties(logits: torch.Tensor, counts: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """OpenAI's presence and frequency penalties: `counts` [vocab] is how often each token was written."""
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def apply_logit_bias(logits: torch.Tensor, bias: tuple[tuple[int, float], ...]) -> torch.Tensor:
    ids = torch.tensor([token for token, _ in bias], dtype=torch.long)
    return logits.index_add(-1, ids, torch.tensor([b for _, b in bias], dtype=logits.dtype))


def logits_to_probs(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, then top-p, then min-p, on a [vocab] float32 logit vector."""
    logits = logits / settings.temperature
    if settings.top_k and settings.top_k < logits.shape[-1]:
        kth = torch.topk(logits, settings.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest set whose mass reaches top_p (always at least the top token).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= settings.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum()
    if settings.min_p > 0:
        probs = probs.masked_fill(probs < settings.min_p * probs.max(), 0.0)
        probs = probs / probs.sum()
    return probs


def sample(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> int:
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    probs = logits_to_probs(logits, settings)
    return int(torch.multinomial(probs, 1, generator=generator))

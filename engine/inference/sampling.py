"""The small functions that turn logits into the next token (settings: engine.inference.settings)."""

from __future__ import annotations

import torch

from engine.inference.settings import SamplingSettings


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty, as transformers applies it: shrink the logits of tokens already in the text."""
    picked = logits.gather(-1, seen)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(-1, seen, picked)


def logits_to_probs(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, then top-p, on a [vocab] float32 logit vector."""
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
    return probs


def sample(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> int:
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    probs = logits_to_probs(logits, settings)
    return int(torch.multinomial(probs, 1, generator=generator))

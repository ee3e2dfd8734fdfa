"""The small functions that turn logits into the next token (settings: engine.inference.settings)."""

from __future__ import annotations

import torch

from engine.inference.settings import SamplingSettings

# float32's largest value and its smallest normal one: what keeps a tiny temperature or penalty (1e-300 passes
# validation, as it should: it is a positive number) from turning logits into inf or nan.
_LARGEST = torch.finfo(torch.float32).max
_TINY = torch.finfo(torch.float32).tiny


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty, as transformers applies it: shrink the logits of tokens already in the text.

    Worked in float64 and rounded back, which gives float32's own results (both operations are correctly
    rounded) for every penalty float32 can hold; a tiny one would overflow the quotient, which is held at
    float32's largest value instead of becoming inf (or nan, for a logit of 0)."""
    picked = logits.gather(-1, seen).double()
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(-1, seen, picked.clamp(-_LARGEST, _LARGEST).to(logits.dtype))


def apply_openai_penalties(logits: torch.Tensor, counts: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """OpenAI's presence and frequency penalties: `counts` [vocab] is how often each token was written."""
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def apply_logit_bias(logits: torch.Tensor, bias: tuple[tuple[int, float], ...]) -> torch.Tensor:
    ids = torch.tensor([token for token, _ in bias], dtype=torch.long)
    return logits.index_add(-1, ids, torch.tensor([b for _, b in bias], dtype=logits.dtype))


def logits_to_probs(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, then top-p, then min-p, on a [vocab] float32 logit vector.

    The temperature divides each logit's distance below the largest (softmax does not change), so a tiny
    one sends those distances to -inf, a probability of 0, and never to inf or nan; below float32's smallest
    normal number every temperature gives that same greedy answer."""
    logits = (logits - logits.max()) / max(settings.temperature, _TINY)
    if settings.top_k and settings.top_k < logits.shape[-1]:
        kth = torch.topk(logits, settings.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest set whose mass reaches top_p (always at least the top token).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= settings.top_p
        outside[0] = False  # a top_p below float32's precision would drop the top token too
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

"""Sampling settings and the two small functions that turn logits into the next token."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from engine.errors import SettingsError


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 128
    temperature: float = 0.8  # 0 means greedy decoding
    top_k: int = 40  # 0 disables top-k
    top_p: float = 1.0  # 1 disables nucleus sampling
    repetition_penalty: float = 1.0  # 1 disables it
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> "SamplingSettings":
        def bad(name: str, rule: str, value) -> SettingsError:
            return SettingsError(f"{name} {rule}, got {value!r}.")

        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise bad("max-new-tokens", "must be at least 1", self.max_new_tokens)
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise bad("temperature", "must be 0 (greedy) or a positive number", self.temperature)
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top-k", "must be 0 (off) or a positive whole number", self.top_k)
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise bad("top-p", "must be in (0, 1]", self.top_p)
        if not math.isfinite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise bad("repetition-penalty", "must be a positive number (1 is off)", self.repetition_penalty)
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise bad("seed", "must be a whole number from 0 to 2**63-1", self.seed)
        if any(not s for s in self.stop):
            raise SettingsError("A stop sequence cannot be empty.")
        return self


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

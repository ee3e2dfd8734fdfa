"""Sampling presets a conversation can keep: named sets of sampling values laid over the settings panel's
(max new tokens, the seed and the stop sequences stay the panel's). Their defaults are the engine's
(SamplingSettings); `values_text` says what a preset sets, to show beside the choice."""

from __future__ import annotations

from engine.inference.settings import SamplingSettings

_DEFAULT = SamplingSettings.default
SET = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
SHORT = {"temperature": "temperature", "top_k": "top-k", "top_p": "top-p", "min_p": "min-p",
         "repetition_penalty": "repetition penalty", "presence_penalty": "presence penalty",
         "frequency_penalty": "frequency penalty"}
ALWAYS_SHOWN = ("temperature", "top_k", "top_p", "repetition_penalty")

_BALANCED = {name: _DEFAULT(name) for name in SET}
PRESETS: dict[str, dict] = {
    "Precise": {**_BALANCED, "temperature": 0.3, "top_k": 20, "repetition_penalty": 1.1},
    "Balanced": _BALANCED,
    "Creative": {**_BALANCED, "temperature": 1.1, "top_k": 0, "top_p": 0.95},
}
DESCRIPTIONS = {
    "Precise": "likelier words, fewer surprises",
    "Balanced": "the engine's defaults",
    "Creative": "more varied, more often off the point",
}


def values_text(preset: str) -> str:
    """What a preset sets, to show beside the choice: "temperature 0.3 · top-k 20 · top-p 1 · repetition penalty
    1.1" (min-p and the presence and frequency penalties only when they are not off)."""
    values = PRESETS[preset]
    shown = [f"{SHORT[name]} {'off' if name == 'top_k' and values[name] == 0 else f'{values[name]:g}'}"
             for name in SET if name in ALWAYS_SHOWN or values[name] != 0]
    return " · ".join(shown)


def sampling_for(preset: str | None, panel: dict) -> dict:
    """The sampling values a reply uses: the panel's, with the preset's over them (an unknown preset: none)."""
    return {**panel, **PRESETS.get(preset or "", {})}

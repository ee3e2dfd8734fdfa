"""Sampling presets a conversation can keep: named sets of sampling values laid over the settings panel's
(max new tokens and the seed stay the panel's). Their defaults are the engine's (SamplingSettings)."""

from __future__ import annotations

from engine.inference.settings import SamplingSettings

_DEFAULT = SamplingSettings.default

PRESETS: dict[str, dict] = {
    "Precise": {"temperature": 0.3, "top_k": 20, "top_p": 1.0, "repetition_penalty": 1.1},
    "Balanced": {name: _DEFAULT(name) for name in ("temperature", "top_k", "top_p", "repetition_penalty")},
    "Creative": {"temperature": 1.1, "top_k": 0, "top_p": 0.95, "repetition_penalty": 1.0},
}
DESCRIPTIONS = {
    "Precise": "temperature 0.3, top-k 20, repetition penalty 1.1: likelier words, fewer surprises",
    "Balanced": "the engine's defaults",
    "Creative": "temperature 1.1, top-p 0.95: more varied, more often off the point",
}


def sampling_for(preset: str | None, panel: dict) -> dict:
    """The sampling values a reply uses: the panel's, with the preset's over them (an unknown preset: none)."""
    return {**panel, **PRESETS.get(preset or "", {})}

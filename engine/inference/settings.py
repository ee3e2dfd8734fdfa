"""Sampling settings: the one place their defaults, limits and help texts are written.

The command line's flags and help, the window's settings panel and the server read them from here.
No torch: `gpt2-desktop --help` imports this.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields

from engine.errors import SettingsError


def _setting(default, kind: type, help: str, limits: tuple[float, float] | None = None):
    """A setting's default, type, help and, for those that have them, its least and greatest values."""
    return field(default=default, metadata={"type": kind, "help": help, "limits": limits})


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = _setting(128, int, "how many tokens to write at most")
    temperature: float = _setting(0.8, float, "0 is greedy decoding; higher is more varied")
    top_k: int = _setting(40, int, "sample among the k likeliest tokens; 0 turns top-k off")
    top_p: float = _setting(1.0, float, "sample among the likeliest tokens holding this much probability; 1 turns it off")
    repetition_penalty: float = _setting(1.0, float, "shrink the scores of tokens already in the text; 1 turns it off")
    min_p: float = _setting(0.0, float, "drop tokens less likely than this share of the likeliest one's probability; "
                                         "0 turns it off", limits=(0.0, 1.0))
    presence_penalty: float = _setting(0.0, float, "subtract this from the score of every token already written "
                                                    "(-2 to 2, as OpenAI's API); 0 turns it off", limits=(-2.0, 2.0))
    frequency_penalty: float = _setting(0.0, float, "subtract this times how often a token was already written "
                                                     "(-2 to 2, as OpenAI's API); 0 turns it off", limits=(-2.0, 2.0))
    seed: int | None = _setting(None, int, "the same seed and settings give the same text")
    stop: tuple[str, ...] = field(default_factory=tuple, metadata={"type": str, "help": "stop before any of these texts"})
    # (token id, bias) pairs added to those tokens' scores before sampling, as OpenAI's `logit_bias`.
    logit_bias: tuple[tuple[int, float], ...] = field(default_factory=tuple, metadata={
        "type": float, "help": "added to the scores of given tokens before sampling (-100 to 100)"})

    # settings that take one value each (the command line makes a flag of each)
    SCALARS = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "min_p",
               "presence_penalty", "frequency_penalty", "seed")

    @classmethod
    def default(cls, name: str):
        """The default of one setting, by field name."""
        f = cls.__dataclass_fields__[name]
        return f.default_factory() if f.default is MISSING else f.default

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of one setting, with its default."""
        f = cls.__dataclass_fields__[name]
        default = cls.default(name)
        return f.metadata["help"] + ("" if default in (None, ()) else f" (default {default})")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def limits(cls, name: str) -> tuple[float, float] | None:
        """The least and greatest value of a setting that has both (min-p, the presence and frequency penalties)."""
        return cls.__dataclass_fields__[name].metadata.get("limits")

    @classmethod
    def kind(cls, name: str) -> type:
        """The type of one setting's value (of each item, for `stop`)."""
        return cls.__dataclass_fields__[name].metadata["type"]

    def validate(self) -> SamplingSettings:
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
        lo, hi = self.limits("min_p")
        if not math.isfinite(self.min_p) or not lo <= self.min_p <= hi:
            raise bad("min-p", f"must be from {lo:g} (off) to {hi:g}", self.min_p)
        for name in ("presence_penalty", "frequency_penalty"):
            value, (lo, hi) = getattr(self, name), self.limits(name)
            if not math.isfinite(value) or not lo <= value <= hi:
                raise bad(name.replace("_", "-"), f"must be from {lo:g} to {hi:g}", value)
        for token, bias in self.logit_bias:
            if not isinstance(token, int) or token < 0:
                raise bad("logit-bias", "takes token ids (whole numbers from 0)", token)
            if not math.isfinite(bias) or not -100 <= bias <= 100:
                raise bad("logit-bias", "takes biases from -100 to 100", bias)
        if any(not s for s in self.stop):
            raise SettingsError("A stop sequence cannot be empty.")
        return self

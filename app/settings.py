"""The user's settings, as JSON in the platformdirs config folder.

Sampling defaults come from the engine's SamplingSettings and the precision names from its
registry (engine.core.precisions): nothing here repeats them.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from app.servers import clean_servers
from engine.core import precisions
from engine.files import write_atomic
from engine.inference.settings import SamplingSettings

_DEFAULT = SamplingSettings.default
SAMPLING = ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens", "seed")
DEVICES = ("auto", "cpu", "cuda")
MODES = ("chat", "notebook")
RENAMED = {"dtype": "precision"}  # keys written by earlier versions -> today's names


@dataclass
class AppSettings:
    temperature: float = _DEFAULT("temperature")
    top_k: int = _DEFAULT("top_k")
    top_p: float = _DEFAULT("top_p")
    repetition_penalty: float = _DEFAULT("repetition_penalty")
    max_new_tokens: int = _DEFAULT("max_new_tokens")
    seed: int | None = _DEFAULT("seed")
    device: str = "auto"
    precision: str = precisions.AUTO  # of the weights: a name from engine.core.precisions, or auto
    threads: int = 0  # 0: one per physical core
    model: str | None = None  # None: the embedded model
    mode: str = "chat"
    welcome_dismissed: bool = False  # the first-run panel in an empty chat
    text_size: int = 0  # points (View > Larger / Smaller text); 0: the system's
    # Remote servers (Models > Add server…): {address: {"key": API key or "", "models": [ids it listed]}}
    servers: dict = field(default_factory=dict)
    probabilities: bool = False  # View > Probabilities: replies coloured by what the model predicted
    colour_by: str = "ranks"  # ... by GLTR's rank buckets, or "probability"
    colour_palette: str = "gltr"  # ... in GLTR's colours, or "colour-blind"
    window_geometry: str = ""
    window_state: str = ""
    splitter_state: str = ""

    def sampling(self) -> dict:
        return {k: getattr(self, k) for k in SAMPLING}

    @classmethod
    def load(cls, path: Path) -> AppSettings:
        """Settings from `path`. Unknown keys, values of the wrong type and impossible choices are
        dropped (their defaults apply); a broken file gives the defaults."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        for old, new in RENAMED.items():
            if old in raw:
                raw.setdefault(new, raw.pop(old))
        hints = typing.get_type_hints(cls)
        values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw and _fits(raw[f.name], hints[f.name])}
        choices = {"precision": precisions.CHOICES, "device": DEVICES, "mode": MODES,
                   "colour_by": ("ranks", "probability"), "colour_palette": ("gltr", "colour-blind")}
        for key, allowed in choices.items():
            if key in values and values[key] not in allowed:
                del values[key]
        if "servers" in values:
            values["servers"] = clean_servers(values["servers"])
        return cls(**values)

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file."""
        # It may hold API keys (servers): this account's alone.
        write_atomic(path, json.dumps(asdict(self), indent=2), mode=0o600 if self.servers else None,
                     what="the settings")


def _fits(value, hint) -> bool:
    """Whether a JSON value has the declared type (`int | None`, `float`, `str`, ...); bools are not numbers,
    and an int is a fine float."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and (int in allowed or float in allowed):
        return True
    return any(t not in (int, type(None)) and isinstance(value, t) for t in allowed)

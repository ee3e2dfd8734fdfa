"""The user's settings, as JSON in the platformdirs config folder.

Sampling defaults come from the engine's SamplingSettings and the precision names from its
registry (engine.core.precisions): nothing here repeats them.

A file that cannot be used at all (not JSON, not an object, not readable) is moved aside at start
(`settings.json.broken-<time>`, engine.files.set_aside) and the defaults apply; the next save writes a fresh
file beside the kept copy. If it cannot be moved aside, nothing is written over it this session. A file
that reads keeps its good values; the ones dropped are named (`SettingsFile.problem`).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from app.models.servers import clean_servers
from engine.core import precisions
from engine.errors import StorageError
from engine.files import set_aside, write_atomic
from engine.inference.settings import SamplingSettings

_DEFAULT = SamplingSettings.default
SAMPLING = ("temperature", "top_k", "top_p", "repetition_penalty", "min_p", "presence_penalty", "frequency_penalty",
            "max_new_tokens", "seed", "stop")
# The least and greatest value the window takes for each number: the engine's own limits where it has both ends
# (SamplingSettings.limits), else what a person would set here (the engine takes any temperature from 0 up).
LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0), "top_k": (0, 1000), "top_p": (0.01, 1.0), "repetition_penalty": (0.5, 3.0),
    **{name: SamplingSettings.limits(name) for name in ("min_p", "presence_penalty", "frequency_penalty")},
    "max_new_tokens": (1, 1 << 20), "seed": (0, 2**31 - 1),
}
DEVICES = ("auto", "cpu", "cuda")
MODES = ("chat", "notebook")
RENAMED = {"dtype": "precision"}  # keys written by earlier versions -> today's names
TEXT_SIZES = (7, 40)  # the smallest and largest text size in points (0: the system's)


@dataclass
class AppSettings:
    temperature: float = _DEFAULT("temperature")
    top_k: int = _DEFAULT("top_k")
    top_p: float = _DEFAULT("top_p")
    repetition_penalty: float = _DEFAULT("repetition_penalty")
    max_new_tokens: int = _DEFAULT("max_new_tokens")
    seed: int | None = _DEFAULT("seed")
    min_p: float = _DEFAULT("min_p")
    presence_penalty: float = _DEFAULT("presence_penalty")
    frequency_penalty: float = _DEFAULT("frequency_penalty")
    stop: list = field(default_factory=list)  # stop sequences: a reply ends before any of these texts
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
    files_folder: str = ""  # where the last export or import was (File menu); "": the home folder
    window_geometry: str = ""
    window_state: str = ""
    splitter_state: str = ""

    def sampling(self) -> dict:
        return {k: list(getattr(self, k)) if k == "stop" else getattr(self, k) for k in SAMPLING}

    @classmethod
    def load(cls, path: Path) -> AppSettings:
        """Settings from `path`. Unknown keys, values of the wrong type and impossible choices are
        dropped (their defaults apply); a broken file gives the defaults. Nothing is changed on disk."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        return cls.from_json(raw)[0] if isinstance(raw, dict) else cls()

    @classmethod
    def open(cls, path: Path) -> SettingsFile:
        """The settings to start with: `load`'s, and what to tell the person about the file. One that cannot be
        used at all is moved aside (kept, never written over); if that fails, this session does not save."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return SettingsFile(cls(), path)
        except (OSError, UnicodeDecodeError) as exc:
            why = f"it cannot be read ({getattr(exc, 'strerror', None) or exc})"
        else:
            try:
                raw = json.loads(text)
                why = None if isinstance(raw, dict) else "it does not hold a JSON object"
            except ValueError as exc:
                why = f"it is not valid JSON: {exc}"
        if why is None:
            settings, dropped = cls.from_json(raw)
            return SettingsFile(settings, path, f"Some settings in {path} could not be used, so their defaults "
                                                f"apply: {', '.join(dropped)}." if dropped else None)
        try:
            kept = set_aside(path)
        except StorageError as exc:
            return SettingsFile(cls(), None, f"{path} could not be used ({why}) and the defaults apply. {exc} "
                                             "This session's settings will not be saved, so that it stays as it is.")
        return SettingsFile(cls(), path, f"{path} could not be used ({why}); it was kept beside it as {kept.name}, "
                                         "and the defaults apply.")

    @classmethod
    def from_json(cls, raw: dict) -> tuple[AppSettings, list[str]]:
        """Settings from a JSON object, and the names of those whose values could not be used (their defaults
        apply). Unknown keys are left out without a word (a newer version may write them)."""
        raw = dict(raw)
        for old, new in RENAMED.items():
            if old in raw:
                raw.setdefault(new, raw.pop(old))
        hints = typing.get_type_hints(cls)
        known = [f.name for f in fields(cls) if f.name in raw]
        values = {name: raw[name] for name in known if _fits(raw[name], hints[name])}
        choices = {"precision": precisions.CHOICES, "device": DEVICES, "mode": MODES,
                   "colour_by": ("ranks", "probability"), "colour_palette": ("gltr", "colour-blind")}
        for key, allowed in choices.items():
            if key in values and values[key] not in allowed:
                del values[key]
        if "text_size" in values:  # a size a person could read, or the system's
            size = values["text_size"]
            values["text_size"] = 0 if size <= 0 else min(max(size, TEXT_SIZES[0]), TEXT_SIZES[1])
        if "stop" in values and not all(isinstance(s, str) and s for s in values["stop"]):
            del values["stop"]  # stop sequences are texts, none empty
        for name, (lo, hi) in LIMITS.items():  # a number the window cannot show (nor the engine take, often)
            if name in values and values[name] is not None and not lo <= values[name] <= hi:
                del values[name]
        dropped = [name for name in known if name not in values]
        if "servers" in values:
            values["servers"] = clean_servers(values["servers"])
            if len(values["servers"]) != len(raw["servers"]):
                dropped.append("servers (an entry that is not a server)")
        return cls(**values), dropped

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file."""
        # It may hold API keys (servers): this account's alone.
        write_atomic(path, json.dumps(asdict(self), indent=2), mode=0o600 if self.servers else None,
                     what="the settings")


@dataclass(frozen=True)
class SettingsFile:
    """What `AppSettings.open` found: the settings, where to save them (None: nowhere this session, as the
    file could not be used and not be moved aside either) and what to say about the file (None: nothing)."""

    settings: AppSettings
    path: Path | None
    problem: str | None = None


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

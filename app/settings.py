"""The user's settings, as JSON in the platformdirs config folder."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path


DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")


@dataclass
class AppSettings:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    max_new_tokens: int = 200
    seed: int | None = None
    device: str = "auto"
    dtype: str = "auto"  # weight precision: auto, float32, float16, bfloat16 or int8
    threads: int = 0  # 0: one per physical core
    model: str | None = None  # None: the embedded model
    mode: str = "chat"
    window_geometry: str = ""
    window_state: str = ""
    splitter_state: str = ""

    def sampling(self) -> dict:
        return {k: getattr(self, k) for k in ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens",
                                              "seed")}

    @classmethod
    def load(cls, path: Path) -> "AppSettings":
        """Settings from `path`; unknown keys are ignored and a broken file gives the defaults."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        types = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        values = {}
        for key, value in raw.items() if isinstance(raw, dict) else ():
            expected = types.get(key)
            if expected is None:
                continue
            if expected is type(None):  # optional fields: seed (int) and model (str)
                ok = value is None or isinstance(value, (int, str)) and not isinstance(value, bool)
            elif expected is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if ok:
                values[key] = value
        if values.get("dtype") not in (None, *DTYPES):
            del values["dtype"]
        return cls(**values)

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)

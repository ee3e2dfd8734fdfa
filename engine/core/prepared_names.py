"""Where prepared reduced-precision copies live and how they are named, without torch: the model list
shows their size and removing a model removes them, and neither should wait for torch to load."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from engine.paths import data_dir


def prepared_dir() -> Path:
    return data_dir() / "prepared"


def model_stem(folder: Path, mode: str) -> str:
    """What every copy of one model folder in one mode is named with: `<name>-<folder hash>-<mode>`."""
    name = re.sub(r"[^A-Za-z0-9._]+", "_", folder.name).strip("_.") or "model"
    where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return f"{name}-{where}-{mode}"


def copies_of(folder: Path) -> list[Path]:
    """Every prepared copy of the model in `folder`, in any precision: what removing the model removes too."""
    where = prepared_dir()
    if not where.is_dir():
        return []
    prefix = model_stem(folder, "")  # "<name>-<folder hash>-"
    return sorted(p for p in where.iterdir() if p.name.startswith(prefix) and p.suffix == ".safetensors")

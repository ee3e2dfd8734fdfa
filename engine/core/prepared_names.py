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


def merged_copies(made_from: Path) -> list[Path]:
    """The merged copies (`<prepared>/merged/`: a base with an adapter merged in, see prepared.merged_folder)
    made from `made_from`, a base model's folder or an adapter's, as their weights' metadata says: what
    removing that model or adapter removes too."""
    from safetensors import SafetensorError, safe_open  # reads the header only; no torch

    root = prepared_dir() / "merged"
    if not root.is_dir():
        return []
    wanted = str(Path(made_from).resolve())
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, OSError):
            continue
        if wanted in (str(Path(metadata[key]).resolve()) for key in ("base", "adapter") if metadata.get(key)):
            found.append(folder)
    return found

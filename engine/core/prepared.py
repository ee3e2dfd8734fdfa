"""Reduced-precision copies of models, prepared once and kept beside the user's models.

Converting a checkpoint to float16, bfloat16 or int8 reads every float32 weight and takes seconds;
the result is saved as safetensors in `<data dir>/prepared/` and memory-mapped on later starts.
A copy is named after its source: the folder, and the size and modification time of its config and
weight files, so it is rebuilt when any of them changes, and older copies of the same model in the
same mode are removed then. Only safetensors are written and read: nothing here is pickled.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from engine.core.checkpoint import check_state, read_state_dict
from engine.core.config import GPTConfig
from engine.errors import ModelLoadError
from engine.paths import data_dir
from engine.core.forms import prepare_state, stored_is_tied

FORMAT = "3"  # bump when prepare_state's output changes (3: int8 in blocks of 32)


def prepared_dir() -> Path:
    return data_dir() / "prepared"


def _model_stem(folder: Path, mode: str) -> str:
    """What every copy of one model folder in one mode is named with: `<name>-<folder hash>-<mode>`."""
    name = re.sub(r"[^A-Za-z0-9._]+", "_", folder.name).strip("_.") or "model"
    where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return f"{name}-{where}-{mode}"


def _source_key(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    for path in [folder / "config.json", *files]:
        stat = path.stat()
        digest.update(f"\0{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def prepared_path(folder: Path, files: list[Path], mode: str) -> Path:
    return prepared_dir() / f"{_model_stem(folder, mode)}-{_source_key(folder, files)}.safetensors"


def _read(path: Path) -> Mapping[str, torch.Tensor]:
    """Every tensor memory-mapped: the models use them in place, so pages are read as they are touched."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelLoadError(f"The prepared copy {path.name} is unreadable ({exc}).") from None


def _write(path: Path, tensors: dict[str, torch.Tensor], mode: str, source: Path) -> None:
    """Write atomically (a crash leaves no half file under the final name) and drop stale copies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "mode": mode, "source": str(source)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    stem = path.name.rsplit("-", 1)[0]  # the same model folder and mode, older sources
    for old in path.parent.glob(f"{stem}-*.safetensors"):
        if old != path:
            old.unlink(missing_ok=True)


@dataclass
class Prepared:
    config: GPTConfig
    tensors: Mapping[str, torch.Tensor]
    path: Path | None  # None: the copy could not be saved, so it was made in memory only
    built: bool  # made now (False: read from disk)


def load_prepared(folder: Path, config: GPTConfig, files: list[Path], mode: str) -> Prepared:
    """The model's weights in a reduced `mode`, from the saved copy, or made now and saved."""
    path = prepared_path(folder, files, mode)
    if path.is_file():
        try:
            tensors = _read(path)
            config = replace(config, tie_word_embeddings=stored_is_tied(tensors))
            return Prepared(config, tensors, path, built=False)
        except ModelLoadError:
            path.unlink(missing_ok=True)  # a damaged copy is made again from the source
    config, state = check_state(config, read_state_dict(files))
    tensors = prepare_state(config, state, mode)
    del state
    try:
        _write(path, tensors, mode, folder)
    except OSError:
        return Prepared(config, tensors, None, built=True)
    del tensors
    return Prepared(config, _read(path), path, built=True)

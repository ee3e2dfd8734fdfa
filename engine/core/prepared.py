"""Reduced-precision copies of models, prepared once and kept beside the user's models.

Converting a checkpoint to float16, bfloat16 or int8 reads every float32 weight and takes seconds;
the result is saved as safetensors in `<data dir>/prepared/` and memory-mapped on later starts.
A copy is named after its source: the folder, and the size and modification time of its config and
weight files, so it is rebuilt when any of them changes, and older copies of the same model in the
same mode are removed then. Only safetensors are written and read: nothing here is pickled.

A model with a LoRA adapter is prepared the same way, one step earlier: the adapter is merged into a
float32 copy of the base, kept as a model folder in `<data dir>/prepared/merged/` and named after the
base (as above) and the adapter (a hash of its files); every precision is then made from that folder,
merged first and quantised after, and decoding runs as fast as without an adapter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from engine.core.adapters import Adapter, check_adapter, merge_into
from engine.core.checkpoint import check_finite, check_state, read_state_dict
from engine.core.config import GPTConfig, load_config
from engine.errors import ModelLoadError
from engine.files import disk_problem
from engine.core.forms import prepare_state, stored_is_tied
from engine.core.prepared_names import model_stem as _model_stem
from engine.core.prepared_names import prepared_dir

FORMAT = "5"  # bump when prepare_state's output changes (3: int8 in blocks of 32; 4: rows interleaved by 8;
#                5: int4's embedding and head in 4 bits)


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
    note: str | None = None  # why it could not be saved, for a person


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
    check_finite(files)  # preparing reads every weight anyway: one with a NaN is refused, not made into a copy
    config, state = check_state(config, read_state_dict(files))
    tensors = prepare_state(config, state, mode)
    del state
    try:
        _write(path, tensors, mode, folder)
    except (OSError, SafetensorError) as exc:  # (safetensors reports a full disk as its own error)
        note = (f"The {mode} copy of {folder.name} could not be kept: {disk_problem(path.parent, exc)}; it was made "
                "in memory for this run and will be made again next time.")
        return Prepared(config, tensors, None, built=True, note=note)
    del tensors
    return Prepared(config, _read(path), path, built=True)


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "generation_config.json", "config.json")


def merged_folder(folder: Path, files: list[Path], adapter: Adapter) -> Path:
    """A model folder with the adapter merged into the base's weights (float32): made once, kept in
    `<data dir>/prepared/merged/`, and made again when the base's files change."""
    root = prepared_dir() / "merged"
    stem = f"{_model_stem(folder, 'lora')}-{adapter.digest[:12]}"
    path = root / f"{stem}-{_source_key(folder, files)}"
    if (path / "model.safetensors").is_file():
        return path
    config = load_config(folder)
    check_adapter(adapter, config, folder.name)
    config, state = check_state(config, read_state_dict(files))
    merged = merge_into(state, adapter)
    tensors = {("lm_head.weight" if name == "lm_head" else f"transformer.{name}"): t.contiguous()
               for name, t in merged.items()}
    tmp = root / f"{path.name}.{os.getpid()}.partial"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, tmp / name)
        save_file(tensors, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "base": str(folder), "adapter": str(adapter.folder)})
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        if (path / "model.safetensors").is_file():  # another process made the same copy first
            return path
        raise ModelLoadError(f"Cannot write the merged copy of {folder.name} with the adapter {adapter.name}: "
                             f"{disk_problem(root, exc)}; free some space there.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.glob(f"{stem}-*"):  # the same base and adapter, older base files
        if old != path and not old.name.endswith(".partial"):
            for copy in prepared_dir().glob(f"{_model_stem(old, '*')}-*.safetensors"):
                copy.unlink(missing_ok=True)
            shutil.rmtree(old, ignore_errors=True)
    return path

"""Weights from safetensors files (single or sharded) into the engine's GPT module.

Only safetensors are read: a pickle checkpoint can run code when loaded, so it is refused (see
engine.core.layout, which finds the files and checks their names, shapes and dtypes from the headers).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from engine.core.config import GPTConfig
from engine.core.layout import TensorInfo, check_layout, engine_name, weight_files
from engine.core.model import GPT
from engine.errors import ModelLoadError, first_line

__all__ = ["build_model", "check_finite", "check_state", "read_state_dict", "transposed_copies", "weight_files"]

DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}  # safetensors' names


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for name in f.keys():
                    target = engine_name(name)
                    if target is not None:
                        state[target] = f.get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is unreadable or truncated ({first_line(exc)}). "
                                 "Download or copy it again.") from None
    return state


def transposed_copies(files: list[Path], names: set[str]) -> dict[str, torch.Tensor]:
    """Contiguous transposed copies of the tensors `names` (engine names), each read through a memory
    map of its own that is closed before the next is read: peak memory grows by one tensor at a time,
    not by every source page the copies were made from."""
    out: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                wanted = [name for name in f.keys() if engine_name(name) in names]
            for name in wanted:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    source = f.get_tensor(name)
                out[engine_name(name)] = source.t().contiguous()
                del source
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is unreadable or truncated ({first_line(exc)}). "
                                 "Download or copy it again.") from None
    return out


def check_state(config: GPTConfig, state: dict[str, torch.Tensor],
                source: str = "The checkpoint") -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """Check every name, shape and dtype against the config (see layout.check_layout); drop an output head
    that repeats the embedding.

    Returns the config with `tie_word_embeddings` set to what the weights really are."""
    layout = {name: TensorInfo(source, DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape))
              for name, t in state.items()}
    check_layout(config, layout, source)
    head, wte = state.get("lm_head"), state["wte.weight"]
    tied = head is None or torch.equal(head, wte)
    if tied:
        state.pop("lm_head", None)
    return replace(config, tie_word_embeddings=tied), state


def _nonfinite(tensor: torch.Tensor) -> str | None:
    """What is wrong with `tensor`'s values, if anything: it holds NaN, or infinite values. Their sum tells in one
    pass that allocates nothing: a NaN or an infinity makes it one, so a finite sum clears them all; only a sum
    that is not finite needs the values looked at one by one (huge finite ones can overflow it)."""
    if not tensor.is_floating_point() or math.isfinite(float(tensor.sum(dtype=torch.float32))):
        return None
    if bool(tensor.isnan().any()):
        return "NaN"
    return None if bool(tensor.isfinite().all()) else "infinite values"


def check_finite(files: list[Path]) -> None:
    """Refuse weights holding a NaN or an infinity, naming the file and the first such weight. Each tensor is
    read through a memory map of its own, closed before the next: this reads every weight once, so it runs
    where that is paid anyway (a reduced copy being prepared) or once (`models import`), never on every load."""
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                names = list(f.keys())
            for name in names:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    found = _nonfinite(f.get_tensor(name))
                if found:
                    raise ModelLoadError(f"{path.name}: the weights contain {found} (first in '{engine_name(name)}'); "
                                         "the file is damaged: download or copy it again.")
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is unreadable or truncated ({first_line(exc)}). "
                                 "Download or copy it again.") from None


def build_model(config: GPTConfig, state: dict[str, torch.Tensor], dtype: torch.dtype, device: str) -> GPT:
    """A GPT with the checkpoint's weights, after checking every name and shape against the config."""
    config, state = check_state(config, state)
    with torch.device("meta"):
        model = GPT(config)
    state = {name: t.to(device=device, dtype=dtype) for name, t in state.items()}
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False)

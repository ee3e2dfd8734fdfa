"""Where the model runs and in what precision."""

from __future__ import annotations

import torch

from engine.errors import SettingsError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu or auto.")
    if name not in ("cpu", "cuda"):
        raise SettingsError(f"Unknown device {name!r}; choose auto, cpu or cuda.")
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """float32 on the CPU and float16 on CUDA unless asked otherwise."""
    if name == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    if name == "int8":
        raise SettingsError("--dtype int8 is not available yet; use float32, float16 or bfloat16.")
    if name not in DTYPES:
        raise SettingsError(f"Unknown dtype {name!r}; choose auto, float32, float16 or bfloat16.")
    return DTYPES[name]


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise SettingsError(f"threads must be at least 1, got {threads}.")
    torch.set_num_threads(threads)

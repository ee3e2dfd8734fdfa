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


def resolve_precision(name: str, device: str) -> str:
    """The weights' precision: float32 on the CPU and float16 on CUDA unless asked otherwise."""
    if name == "auto":
        return "float16" if device == "cuda" else "float32"
    if name not in ("float32", "float16", "bfloat16", "int8"):
        raise SettingsError(f"Unknown dtype {name!r}; choose auto, float32, float16, bfloat16 or int8.")
    if device == "cuda" and name == "int8":
        raise SettingsError("--dtype int8 runs on the CPU only; on CUDA use float16 (the default) or bfloat16.")
    return name


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share a core's memory bandwidth and vector units, so decoding
    gains nothing from them). Linux reads the topology; elsewhere, the logical count."""
    import glob
    import os

    cores = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/core_cpus_list") or glob.glob(
            "/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list"):
        try:
            with open(path, encoding="ascii") as f:
                cores.add(f.read().strip())
        except OSError:
            pass
    return len(cores) or os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads (None: one per physical core); returns the number in use."""
    if threads is None:
        threads = physical_cores()
    if threads < 1:
        raise SettingsError(f"threads must be at least 1, got {threads}.")
    torch.set_num_threads(threads)
    return threads

"""Where the model runs: the device and the number of CPU threads (precisions: engine.core.precisions)."""

from __future__ import annotations

import torch

from engine.errors import SettingsError

def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU here."""
    return torch.cuda.is_available()


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu or auto.")
    if name not in ("cpu", "cuda"):
        raise SettingsError(f"Unknown device {name!r}; choose auto, cpu or cuda.")
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


def native_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), as Linux reports it."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags

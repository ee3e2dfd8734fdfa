"""The registry of precision modes: every form the weights can take, in one table.

The command line (`--dtype`), the bench, the window's settings and the loader read this table;
none of them spells a mode's name. A mode is a row here; its stored form and the module that
multiplies by it are its `Form` in engine.core.forms, and its decoding kernel is a kind in
engine/core/csrc/gpt2_step.c. Adding a mode touches those three places and their tests.

This module imports nothing heavy, so `gpt2-desktop --help` can list the modes without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import SettingsError

AUTO = "auto"
_DEVICE_NAMES = {"cpu": "CPU", "cuda": "CUDA"}


@dataclass(frozen=True)
class Precision:
    name: str
    bytes_per_weight: float  # of the big matrices (projections, token embedding, output head), scales included
    summary: str  # one line for --help and the window's tooltip
    devices: tuple[str, ...]  # where it runs
    cpu_flags: tuple[str, ...]  # what the CPU must have for the compiled step's kernel (else PyTorch, slower)
    prepared: bool  # on the CPU, a copy in this form is made once and kept in the data folder
    torch_dtype: str | None  # the torch dtype of a plain PyTorch model in this mode (CUDA); None: CPU only
    # On the CPU with the compiled step: prompts of up to this many new tokens go through it one token at a
    # time, which costs less than PyTorch's batched path there (it widens reduced weights to float32 first).
    step_prefill: int = 1


PRECISIONS: tuple[Precision, ...] = (
    Precision("float32", 4, "the checkpoint's weights, exact", ("cpu", "cuda"), ("avx2", "fma"), False, "float32"),
    Precision("float16", 2, "half the bytes, near exact; the default on CUDA", ("cpu", "cuda"),
              ("avx2", "fma", "f16c"), True, "float16", step_prefill=12),
    Precision("bfloat16", 2, "half the bytes; inputs rounded to bfloat16", ("cpu", "cuda"), ("avx2", "fma"), True,
              "bfloat16"),
    Precision("int8", 1 + 2 / 32, "a quarter of the bytes; weights and inputs in 8-bit blocks of 32, integer "
              "dot products; CPU only", ("cpu",), ("avx2", "fma", "f16c"), True, None, step_prefill=32),
    Precision("int4", 0.5 + 2 / 32, "an eighth of the bytes: 4-bit blocks of 32 (the embedding and head "
              "too), integer dot products; CPU only", ("cpu",), ("avx2", "fma", "f16c"),
              True, None, step_prefill=32),
)

NAMES: tuple[str, ...] = tuple(p.name for p in PRECISIONS)
REFERENCE = "float32"  # exact: the mode the others are measured against
CHOICES: tuple[str, ...] = (AUTO, *NAMES)  # what --dtype and the window's Precision box offer
PREPARED: tuple[str, ...] = tuple(p.name for p in PRECISIONS if p.prepared)


def get(name: str) -> Precision:
    for precision in PRECISIONS:
        if precision.name == name:
            return precision
    raise SettingsError(f"Unknown dtype {name!r}; choose {', '.join(CHOICES[:-1])} or {CHOICES[-1]}.")


def default_for(device: str) -> str:
    """What `auto` means: float16 on CUDA, float32 on the CPU."""
    return "float16" if device == "cuda" else "float32"


def resolve(name: str, device: str) -> str:
    """The weights' precision for `device` ("cpu" or "cuda"), `auto` resolved; refuses what cannot run there."""
    if name == AUTO:
        return default_for(device)
    precision = get(name)
    if device not in precision.devices:
        where = " or ".join(_DEVICE_NAMES[d] for d in precision.devices)
        others = [p.name for p in PRECISIONS if device in p.devices and p.name != default_for(device)]
        raise SettingsError(f"--dtype {name} runs on the {where} only; on {_DEVICE_NAMES[device]} use "
                            f"{default_for(device)} (the default) or {' or '.join(others)}.")
    return name


def help_text() -> str:
    """The modes, one clause each, for --help."""
    return "; ".join(f"{p.name}: {p.summary}" for p in PRECISIONS)

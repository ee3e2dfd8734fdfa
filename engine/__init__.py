"""The gpt2-desktop engine: load GPT-2 model folders, generate, score. Knows nothing of Qt.

Four layers, each a subpackage that imports only the ones before it:

- `engine.core`: the model — config, network and KV cache, checkpoints, tokenizer, precision modes,
  the compiled CPU step, the CUDA graph.
- `engine.inference`: using a loaded model — generation stream, sampling settings, scoring, chat
  formats, prompt templates.
- `engine.store`: models on this computer and on the Hugging Face Hub.
- `engine.tooling`: the command line, training, exports, the benchmark.

`engine.errors` (every exception type) and `engine.paths` (the user's folders) sit beside them and
import nothing of the engine. The names below are the public surface; they are imported on first
use, so that importing `engine.errors` or the command line's help does not load torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.core.loader import LoadedModel

_PUBLIC = {
    "Done": "engine.inference.generate",
    "Generator": "engine.inference.generate",
    "StopReason": "engine.inference.generate",
    "TokenEvent": "engine.inference.generate",
    "SamplingSettings": "engine.inference.settings",
    "LoadedModel": "engine.core.loader",
    "EngineError": "engine.errors",
    "ModelLoadError": "engine.errors",
    "SettingsError": "engine.errors",
}

__all__ = [*_PUBLIC, "load_model"]


def load_model(model: str | Path | None = None, device: str = "auto", precision: str = "auto",
               adapter: str | Path | None = None) -> LoadedModel:
    """Load a model — a folder, a downloaded model's name, or None for the embedded model — onto a
    device ("auto", "cpu", "cuda") in a precision (see engine.core.precisions), ready to generate.

    `adapter`: a LoRA adapter folder in PEFT's format (or a training run holding adapter/), merged into
    the model's weights. With no model named, the base is the one the adapter was trained on."""
    from engine.core.loader import load_folder
    from engine.store.local import resolve_base, resolve_model

    if adapter is None:
        folder, name = resolve_model(model)
        return load_folder(folder, name, device=device, precision=precision)
    folder, name = resolve_base(model, Path(adapter))
    return load_folder(folder, name, device=device, precision=precision, adapter=Path(adapter))


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")

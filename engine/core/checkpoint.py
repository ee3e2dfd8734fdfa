"""Weights from safetensors files (single or sharded) into the engine's GPT module.

Only safetensors are read: a pickle checkpoint can run code when loaded, so it is refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from engine.core.config import GPTConfig, read_json
from engine.errors import ModelLoadError
from engine.core.model import GPT

PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers in old checkpoints


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder, in shard order."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no 'weight_map'.")
        files = [folder / name for name in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelLoadError(f"Shards listed in {index.name} are missing: {', '.join(missing)}.")
        return files
    pickles = [name for name in PICKLE_NAMES if (folder / name).is_file()]
    if pickles:
        raise ModelLoadError(
            f"{folder} has only a PyTorch pickle checkpoint ({pickles[0]}). gpt2-desktop reads safetensors "
            "only, because loading a pickle can run code; convert it to model.safetensors first."
        )
    raise ModelLoadError(f"No model.safetensors (or model.safetensors.index.json) in {folder}.")


def _engine_name(name: str) -> str | None:
    """Map a checkpoint tensor name to the engine's, or None for tensors the engine ignores."""
    if name.startswith("transformer."):
        name = name[len("transformer.") :]
    if name.endswith(SKIPPED_SUFFIXES):
        return None
    if name == "lm_head.weight":
        return "lm_head"
    return name


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for name in f.keys():
                    target = _engine_name(name)
                    if target is not None:
                        state[target] = f.get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is unreadable or truncated ({exc}). Download or copy it again.") from None
    return state


def transposed_copies(files: list[Path], names: set[str]) -> dict[str, torch.Tensor]:
    """Contiguous transposed copies of the tensors `names` (engine names), each read through a memory
    map of its own that is closed before the next is read: peak memory grows by one tensor at a time,
    not by every source page the copies were made from."""
    out: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                wanted = [name for name in f.keys() if _engine_name(name) in names]
            for name in wanted:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    source = f.get_tensor(name)
                out[_engine_name(name)] = source.t().contiguous()
                del source
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is unreadable or truncated ({exc}). Download or copy it again.") from None
    return out


def check_state(config: GPTConfig, state: dict[str, torch.Tensor]) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """Check every name and shape against the config; drop an output head that repeats the embedding.

    Returns the config with `tie_word_embeddings` set to what the weights really are."""
    head = state.get("lm_head")
    wte = state.get("wte.weight")
    tied = head is None or (wte is not None and head.shape == wte.shape and torch.equal(head, wte))
    if tied:
        state.pop("lm_head", None)
    config = replace(config, tie_word_embeddings=tied)
    with torch.device("meta"):
        model = GPT(config)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    missing = [name for name in expected if name not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(f"The checkpoint lacks weights the config calls for: {shown}.")
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise ModelLoadError(
            f"The checkpoint has weights a GPT-2 with this config does not use: {', '.join(unexpected[:5])}."
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ModelLoadError(
                f"Weight '{name}' has shape {list(state[name].shape)} but config.json implies {list(shape)}; "
                "the weights and config.json do not belong together."
            )
    return config, state


def build_model(config: GPTConfig, state: dict[str, torch.Tensor], dtype: torch.dtype, device: str) -> GPT:
    """A GPT with the checkpoint's weights, after checking every name and shape against the config."""
    config, state = check_state(config, state)
    with torch.device("meta"):
        model = GPT(config)
    state = {name: t.to(device=device, dtype=dtype) for name, t in state.items()}
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False)

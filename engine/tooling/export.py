"""Write a model as a Hugging Face GPT-2 folder that this engine and transformers both load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.core.model import GPT
from engine.core.tokenizer import GPT2Tokenizer


def hf_state_dict(model: GPT, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Weights under transformers' GPT2LMHeadModel names; a tied head is stored once, as wte."""
    state = {}
    for name, tensor in model.state_dict().items():
        key = "lm_head.weight" if name == "lm_head" else f"transformer.{name}"
        state[key] = tensor.detach().to("cpu", dtype).contiguous()
    return state


def export_model(model: GPT, tokenizer: GPT2Tokenizer, folder: Path, card: str | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Write config.json, generation_config.json, model.safetensors, tokenizer.json (and README.md).

    The folder is written beside its final place and moved in at the end, so an interrupted
    export never leaves a half-written model behind.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = model.config.to_dict()
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": model.config.bos_token_id, "eos_token_id": model.config.eos_token_id}
    (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    save_file(hf_state_dict(model, dtype), tmp / "model.safetensors", metadata={"format": "pt"})
    tokenizer.backend.save(str(tmp / "tokenizer.json"))
    if card:
        (tmp / "README.md").write_text(card)
    replace_folder(tmp, folder)
    return folder


def replace_folder(new: Path, folder: Path) -> None:
    """Put a fully written folder in place of another; at every moment one complete copy exists."""
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)

"""GPT-2 hyper-parameters, read from a Hugging Face `config.json` and checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelLoadError

ACTIVATIONS = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu", "relu"}


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256

    @property
    def parameters(self) -> int:
        """How many weights the model has (the tied head counted once)."""
        C, inner = self.n_embd, self.n_inner or 4 * self.n_embd
        block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * inner + inner) + (inner * C + C)
        head = 0 if self.tie_word_embeddings else self.vocab_size * C
        return self.vocab_size * C + self.n_positions * C + self.n_layer * block + 2 * C + head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return self.n_inner or 4 * self.n_embd

    def to_dict(self) -> dict:
        """The fields `transformers.GPT2Config` understands, for writing `config.json`."""
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": self.n_inner,
            "activation_function": self.activation_function,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
        }


def _positive_int(raw: dict, key: str, default: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelLoadError(f"config.json: '{key}' must be a positive integer, got {value!r}.")
    return value


def _token_id(value) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) else None


def parse_config(raw: dict) -> GPTConfig:
    """Check a config dict and keep what the engine uses; refuse what it cannot run."""
    model_type = raw.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ModelLoadError(
            f"config.json: 'model_type' is {model_type!r}; only GPT-2 family models ('gpt2') are supported."
        )
    if raw.get("add_cross_attention"):
        raise ModelLoadError("config.json: 'add_cross_attention' is true; encoder-decoder GPT-2 models are not supported.")
    activation = raw.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ModelLoadError(
            f"config.json: 'activation_function' is {activation!r}; supported: {', '.join(sorted(ACTIVATIONS))}."
        )
    n_embd = _positive_int(raw, "n_embd", 768)
    n_head = _positive_int(raw, "n_head", 12)
    if n_embd % n_head:
        raise ModelLoadError(f"config.json: 'n_embd' ({n_embd}) is not divisible by 'n_head' ({n_head}).")
    n_inner = raw.get("n_inner")
    if n_inner is not None:
        n_inner = _positive_int(raw, "n_inner", 0)
    return GPTConfig(
        vocab_size=_positive_int(raw, "vocab_size", 50257),
        n_positions=_positive_int(raw, "n_positions", raw.get("n_ctx", 1024)),
        n_embd=n_embd,
        n_layer=_positive_int(raw, "n_layer", 12),
        n_head=n_head,
        n_inner=n_inner,
        activation_function=activation,
        layer_norm_epsilon=float(raw.get("layer_norm_epsilon", 1e-5)),
        scale_attn_weights=bool(raw.get("scale_attn_weights", True)),
        scale_attn_by_inverse_layer_idx=bool(raw.get("scale_attn_by_inverse_layer_idx", False)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)),
        bos_token_id=_token_id(raw.get("bos_token_id", 50256)),
        eos_token_id=_token_id(raw.get("eos_token_id", 50256)),
    )


def read_json(path: Path) -> dict:
    """Read a JSON object from a model folder, with a clear error for a missing or broken file."""
    if not path.is_file():
        raise ModelLoadError(f"{path.name} is missing from the model folder {path.parent}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object.")
    return data


def load_config(folder: Path) -> GPTConfig:
    return parse_config(read_json(folder / "config.json"))

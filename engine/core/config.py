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


# The largest value each size may take: far above any GPT-2-family model, and small enough that what is
# sized by them (the list of weights the config calls for, their shapes) stays small until the weights
# themselves are checked against it.
LIMITS = {"vocab_size": 1 << 22, "n_positions": 1 << 20, "n_ctx": 1 << 20, "n_embd": 1 << 16, "n_head": 1 << 16,
          "n_layer": 1 << 14, "n_inner": 1 << 18}


def shown(value: object, width: int = 60) -> str:
    """A value read from a JSON file as a short one-line repr (of at most `width` characters), whatever its size
    or depth."""
    text = repr(value) if isinstance(value, str) else _outline(value, depth=2)
    return text if len(text) <= width else text[: width - 3] + "..."


def _outline(value: object, depth: int) -> str:
    """repr, lists and dicts shown `depth` levels deep and four items long."""
    if isinstance(value, (list, dict)):
        items = value[:4] if isinstance(value, list) else list(value.items())[:4]
        if not depth:
            inner = "..." if value else ""
        else:
            inner = ", ".join(_outline(item, depth - 1) if isinstance(value, list)
                              else f"{_outline(item[0], 0)}: {_outline(item[1], depth - 1)}" for item in items)
            inner += ", ..." if len(value) > 4 else ""
        return f"[{inner}]" if isinstance(value, list) else f"{{{inner}}}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 80:
        return f"a {int(value.bit_length() * 0.30103) + 1}-digit number"  # repr refuses past 4,300 digits
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _size(raw: dict, key: str, default: int) -> int:
    value, limit = raw.get(key, default), LIMITS[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
        raise ModelLoadError(f"config.json: '{key}' must be a whole number from 1 to {limit:,}, got {shown(value)}.")
    return value


def _flag(raw: dict, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ModelLoadError(f"config.json: '{key}' must be true or false, got {shown(value)}.")
    return value


def token_ids(value: object, file: str, key: str) -> list[int]:
    """A token id field (`eos_token_id`, ...): null, a token id, or a list of them; [] for null."""
    values = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ModelLoadError(f"{file}: '{key}' must be a token id (a whole number from 0) or a list of them, "
                             f"got {shown(value)}.")
    return values


def _epsilon(raw: dict) -> float:
    value = raw.get("layer_norm_epsilon", 1e-5)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ModelLoadError(f"config.json: 'layer_norm_epsilon' must be a small positive number, got {shown(value)}.")
    return float(value)


def parse_config(raw: dict) -> GPTConfig:
    """Check a config dict and keep what the engine uses; refuse what it cannot run, naming the field."""
    model_type = raw.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ModelLoadError(
            f"config.json: 'model_type' is {shown(model_type)}; only GPT-2 family models ('gpt2') are supported."
        )
    if raw.get("add_cross_attention"):
        raise ModelLoadError("config.json: 'add_cross_attention' is true; encoder-decoder GPT-2 models are not supported.")
    activation = raw.get("activation_function", "gelu_new")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ModelLoadError(
            f"config.json: 'activation_function' is {shown(activation)}; supported: {', '.join(sorted(ACTIVATIONS))}."
        )
    n_embd = _size(raw, "n_embd", 768)
    n_head = _size(raw, "n_head", 12)
    if n_embd % n_head:
        raise ModelLoadError(f"config.json: 'n_embd' ({n_embd}) is not divisible by 'n_head' ({n_head}).")
    # Older configs name the context window n_ctx only.
    window = "n_positions" if "n_positions" in raw or "n_ctx" not in raw else "n_ctx"
    return GPTConfig(
        vocab_size=_size(raw, "vocab_size", 50257),
        n_positions=_size(raw, window, 1024),
        n_embd=n_embd,
        n_layer=_size(raw, "n_layer", 12),
        n_head=n_head,
        n_inner=None if raw.get("n_inner") is None else _size(raw, "n_inner", 0),
        activation_function=activation,
        layer_norm_epsilon=_epsilon(raw),
        scale_attn_weights=_flag(raw, "scale_attn_weights", True),
        scale_attn_by_inverse_layer_idx=_flag(raw, "scale_attn_by_inverse_layer_idx", False),
        tie_word_embeddings=_flag(raw, "tie_word_embeddings", True),
        bos_token_id=next(iter(token_ids(raw.get("bos_token_id", 50256), "config.json", "bos_token_id")), None),
        eos_token_id=next(iter(token_ids(raw.get("eos_token_id", 50256), "config.json", "eos_token_id")), None),
    )


def read_json(path: Path) -> dict:
    """Read a JSON object from a model folder, with a clear error for a missing or broken file."""
    if not path.is_file():
        raise ModelLoadError(f"{path.name} is missing from the model folder {path.parent}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8, a number too long to read
        raise ModelLoadError(f"{path} is not valid JSON ({exc}).") from None
    except RecursionError:
        raise ModelLoadError(f"{path} is nested too deeply to be a model's JSON file.") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object.")
    return data


def load_config(folder: Path) -> GPTConfig:
    return parse_config(read_json(folder / "config.json"))

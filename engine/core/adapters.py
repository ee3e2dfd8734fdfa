"""LoRA adapters in PEFT's own format: read, check against a base, merge into its weights, write.

An adapter folder holds `adapter_config.json` and `adapter_model.safetensors`, exactly as PEFT
saves one for transformers' `GPT2LMHeadModel`: a pair of matrices per adapted projection, named
`base_model.model.transformer.h.<i>.<attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj>.lora_A.weight`
(A: [rank, in]) and `...lora_B.weight` (B: [out, rank]). GPT-2's projections are Conv1D, stored
[in, out], so PEFT marks the adapter `fan_in_fan_out` and the merged weight is

    W[in, out] + (B @ A).T * alpha / rank        (alpha / sqrt(rank) with use_rslora)

Adapters written here also carry the base's shape in the safetensors metadata (PEFT ignores it), so a
base with another vocabulary is named as the mismatch; for adapters made elsewhere, the matrices'
shapes are checked against the base.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from engine.core.config import GPTConfig
from engine.errors import ModelLoadError
from engine.files import give_usual_mode

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model.transformer."
# What --lora-targets names, and the projections (engine module names' suffixes) each stands for.
TARGETS = {"attn": ("attn.c_attn", "attn.c_proj"), "mlp": ("mlp.c_fc", "mlp.c_proj")}
PROJECTIONS = tuple(p for group in TARGETS.values() for p in group)
# The base's shape, written into the safetensors metadata of the adapters made here.
BASE_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")
_TENSOR = re.compile(r"^h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.lora_([AB])\.weight$")


@dataclass(frozen=True)
class LoraConfig:
    """The settings of one LoRA adapter (the part of PEFT's LoraConfig this engine uses)."""

    rank: int
    alpha: float
    dropout: float = 0.0
    targets: tuple[str, ...] = PROJECTIONS  # projection suffixes, e.g. "attn.c_attn"
    base_model: str | None = None  # PEFT's base_model_name_or_path
    use_rslora: bool = False
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)

    def to_peft(self) -> dict:
        """adapter_config.json as PEFT writes it (the fields PEFT reads to rebuild the adapter)."""
        return {
            "alpha_pattern": {},
            "auto_mapping": None,
            "base_model_name_or_path": self.base_model,
            "bias": "none",
            "fan_in_fan_out": True,
            "inference_mode": True,
            "init_lora_weights": True,
            "layers_pattern": None,
            "layers_to_transform": None,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "modules_to_save": None,
            "peft_type": "LORA",
            "r": self.rank,
            "rank_pattern": {},
            "revision": None,
            "target_modules": list(self.targets),
            "task_type": "CAUSAL_LM",
            "use_dora": False,
            "use_rslora": self.use_rslora,
        }


def target_projections(targets: str) -> tuple[str, ...]:
    """`attn,mlp` (--lora-targets) -> the projections they name, or a ValueError naming the unknown part."""
    names = [t.strip() for t in targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise ValueError(f"--lora-targets takes a comma-separated list of {', '.join(TARGETS)}; got {targets!r}.")
    return tuple(p for group in TARGETS for p in TARGETS[group] if group in names)


def peft_name(engine_name: str) -> str:
    """`h.0.attn.c_attn.lora_A` -> `base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`."""
    return f"{PEFT_PREFIX}{engine_name}.weight"


@dataclass
class Adapter:
    folder: Path
    config: LoraConfig
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "h.0.attn.c_attn" -> (A [r, in], B [out, r])
    base_shape: dict[str, int | None] | None  # the base it was made on, where the file says
    digest: str  # of both files' bytes: names a merged copy

    @property
    def name(self) -> str:
        folder = self.folder.parent if self.folder.name == "adapter" else self.folder
        return folder.name

    def scaling_of(self, module: str) -> float:
        """alpha / rank for one projection, with PEFT's per-module alpha and the pair's own rank."""
        rank = self.pairs[module][0].shape[0]
        alpha = self.config.alpha
        for key, value in self.config.alpha_pattern.items():
            if re.match(rf"(.*\.)?({key})$", f"transformer.{module}"):
                alpha = value
        return alpha / (math.sqrt(rank) if self.config.use_rslora else rank)


def adapter_folder(path: Path) -> Path:
    """The folder holding adapter_config.json: `path` itself, or a training run's `adapter/`."""
    path = Path(path).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / "adapter" / CONFIG_FILE).is_file():
        return path / "adapter"
    if not path.exists():
        raise ModelLoadError(f"No adapter at {path}.")
    raise ModelLoadError(f"{path} is not an adapter: it has no {CONFIG_FILE} (nor adapter/{CONFIG_FILE}).")


def _config_from_peft(raw: dict, where: Path) -> LoraConfig:
    """PEFT's adapter_config.json -> LoraConfig, refusing what this engine cannot apply."""
    if raw.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"{where} is a {raw.get('peft_type')} adapter; only LoRA adapters can be applied.")
    refusals = [
        (raw.get("use_dora"), "it uses DoRA"),
        (raw.get("bias", "none") != "none", f"it trains biases (bias={raw.get('bias')!r})"),
        (raw.get("lora_bias"), "it has LoRA biases"),
        (raw.get("modules_to_save"), f"it replaces whole modules ({raw.get('modules_to_save')})"),
        (raw.get("layer_replication"), "it replicates layers"),
        (raw.get("fan_in_fan_out") is False and raw.get("target_modules"),
         "it is not marked fan_in_fan_out, which GPT-2's Conv1D projections need"),
    ]
    for refused, why in refusals:
        if refused:
            raise ModelLoadError(f"The adapter in {where} cannot be applied: {why}.")
    rank, alpha = raw.get("r"), raw.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ModelLoadError(f"{where / CONFIG_FILE}: 'r' must be a positive integer, got {rank!r}.")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise ModelLoadError(f"{where / CONFIG_FILE}: 'lora_alpha' must be a number, got {alpha!r}.")
    targets = raw.get("target_modules") or []
    return LoraConfig(rank=rank, alpha=float(alpha), dropout=float(raw.get("lora_dropout") or 0.0),
                      targets=tuple(targets) if isinstance(targets, list) else (str(targets),),
                      base_model=raw.get("base_model_name_or_path"), use_rslora=bool(raw.get("use_rslora")),
                      alpha_pattern=dict(raw.get("alpha_pattern") or {}))


def read_adapter(path: Path) -> Adapter:
    """An adapter folder (or a run folder with adapter/), every tensor named and shaped as PEFT's LoRA."""
    folder = adapter_folder(path)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"The adapter in {folder} has no {WEIGHTS_FILE}.")
    try:
        raw_config = (folder / CONFIG_FILE).read_bytes()
        raw = json.loads(raw_config)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE} is unreadable ({exc}).") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{folder / CONFIG_FILE} is not a JSON object.")
    config = _config_from_peft(raw, folder)
    digest = hashlib.sha256(raw_config)
    tensors: dict[str, torch.Tensor] = {}
    try:
        digest.update(weights.read_bytes())
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelLoadError(f"{weights} is unreadable or truncated ({exc}).") from None
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name = key.removeprefix(PEFT_PREFIX) if key.startswith(PEFT_PREFIX) else key
        match = _TENSOR.match(name)
        if not match:
            raise ModelLoadError(
                f"The adapter in {folder} has a tensor this engine cannot apply to GPT-2: {key} "
                "(LoRA on the attention and MLP projections is supported)."
            )
        module = f"h.{match[1]}.{match[2]}"
        halves.setdefault(module, {})[match[3]] = tensor.float()
    if not halves:
        raise ModelLoadError(f"The adapter in {folder} holds no LoRA weights.")
    pairs = {}
    for module, half in sorted(halves.items()):
        if set(half) != {"A", "B"}:
            missing = "lora_B" if "A" in half else "lora_A"
            raise ModelLoadError(f"The adapter in {folder} lacks {PEFT_PREFIX}{module}.{missing}.weight.")
        a, b = half["A"], half["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise ModelLoadError(f"The adapter in {folder} has LoRA matrices of shapes {list(a.shape)} and "
                                 f"{list(b.shape)} for {module}, which do not multiply.")
        pairs[module] = (a, b)
    base_shape = None
    if "gpt2_desktop.base" in metadata:
        try:
            base_shape = json.loads(metadata["gpt2_desktop.base"])
        except ValueError:
            base_shape = None
    return Adapter(folder, config, pairs, base_shape, digest.hexdigest())


def _describe_base(shape: dict) -> str:
    return (f"{shape.get('n_layer')} layers, {shape.get('n_embd')} wide, a {shape.get('vocab_size')}-token "
            f"vocabulary")


def check_adapter(adapter: Adapter, config: GPTConfig, base_name: str) -> None:
    """Refuse an adapter made for another base, naming the mismatch."""
    made_on = f" (made on {adapter.config.base_model})" if adapter.config.base_model else ""
    if adapter.base_shape:
        ours = {name: getattr(config, name) for name in BASE_FIELDS}
        differ = [name for name in BASE_FIELDS if name in adapter.base_shape and adapter.base_shape[name] != ours[name]]
        if differ:
            what = ", ".join(f"{name} {adapter.base_shape[name]} vs {ours[name]}" for name in differ)
            raise ModelLoadError(
                f"The adapter {adapter.name}{made_on} does not fit {base_name}: it was trained on a base with "
                f"{_describe_base(adapter.base_shape)}; this one has {_describe_base(ours)} ({what})."
            )
    for module, (a, b) in adapter.pairs.items():
        layer, projection = int(module.split(".")[1]), module.split(".", 2)[2]
        if layer >= config.n_layer:
            raise ModelLoadError(f"The adapter {adapter.name}{made_on} adapts {module}, but {base_name} has only "
                                 f"{config.n_layer} layers: it was made for another base model.")
        n_in, n_out = _projection_shape(config, projection)
        if a.shape[1] != n_in or b.shape[0] != n_out:
            raise ModelLoadError(
                f"The adapter {adapter.name}{made_on} does not fit {base_name}: its {module} maps "
                f"{a.shape[1]} -> {b.shape[0]} features, the base's maps {n_in} -> {n_out} "
                "(it was made for another base model shape)."
            )


def _projection_shape(config: GPTConfig, projection: str) -> tuple[int, int]:
    c, inner = config.n_embd, config.inner_dim
    return {"attn.c_attn": (c, 3 * c), "attn.c_proj": (c, c), "mlp.c_fc": (c, inner), "mlp.c_proj": (inner, c)}[projection]


def delta(adapter: Adapter, module: str) -> torch.Tensor:
    """What the adapter adds to one Conv1D weight, [in, out]."""
    a, b = adapter.pairs[module]
    return (b @ a).t() * adapter.scaling_of(module)


def merge_into(state: dict[str, torch.Tensor], adapter: Adapter) -> dict[str, torch.Tensor]:
    """The base's weights (engine names, see checkpoint.read_state_dict) with the adapter added, float32.
    Only the adapted projections are new tensors; the rest are the base's own."""
    merged = dict(state)
    for module in adapter.pairs:
        name = f"{module}.weight"
        if name not in state:
            raise ModelLoadError(f"The base model has no {name} for the adapter {adapter.name} to change.")
        merged[name] = state[name].float() + delta(adapter, module)
    return merged


def write_adapter(folder: Path, config: LoraConfig, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  base: GPTConfig, card: str | None = None) -> Path:
    """Write an adapter folder in PEFT's format. The folder is written beside its final place and moved in
    when complete, so an interruption or a full disk never leaves a half-written adapter behind."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.partial")
    tensors = {}
    for module, (a, b) in pairs.items():
        tensors[peft_name(f"{module}.lora_A")] = a.detach().to("cpu", torch.float32).contiguous()
        tensors[peft_name(f"{module}.lora_B")] = b.detach().to("cpu", torch.float32).contiguous()
    metadata = {"format": "pt", "gpt2_desktop.base": json.dumps({name: getattr(base, name) for name in BASE_FIELDS})}
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata=metadata)
        give_usual_mode(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_peft(), indent=2) + "\n", encoding="utf-8")
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        old = folder.with_name(f"{folder.name}.old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder

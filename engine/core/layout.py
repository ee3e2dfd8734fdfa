"""A model folder checked as far as it can be without reading a weight, and without torch: config.json,
the tokenizer (against config.json's vocab_size), generation_config.json, the weight files (a sharded
index's entries among them) and, from the safetensors headers, every weight's name, shape and dtype
against what config.json calls for.

The loader runs `checked_folder` before it reads any weight; `models import` runs the same check (and
scans the values, see checkpoint.check_finite), so a folder it lists is one that loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from engine.core.config import GPTConfig, load_config, read_json, shown, token_ids
from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import ModelLoadError, first_line

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers in old checkpoints
FLOAT_DTYPES = ("F32", "F16", "BF16")  # what the weights may be stored as (safetensors' names)
BLOCK = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
         "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
         "mlp.c_proj.bias")


@dataclass(frozen=True)
class TensorInfo:
    file: str  # the name of the file holding it, for messages
    dtype: str  # as safetensors names it: F32, F16, BF16, I8, F64, ...
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CheckedFolder:
    """What a model folder holds, checked: everything the loader needs but the weights' values."""

    config: GPTConfig
    tokenizer: GPT2Tokenizer
    files: list[Path]  # the safetensors files, in shard order
    eos_ids: frozenset[int]  # every id that ends a reply: config.json's, generation_config.json's, the tokenizer's


def checked_folder(folder: Path) -> CheckedFolder:
    """Check a model folder without reading its weights; a ModelLoadError names the file and what is wrong."""
    config = load_config(folder)
    tokenizer = GPT2Tokenizer.from_folder(folder, vocab_size=config.vocab_size)
    eos = eos_ids(folder, config, tokenizer)
    files = weight_files(folder)
    check_layout(config, read_layout(files), files[0].name if len(files) == 1 else f"The shards listed in {INDEX}")
    return CheckedFolder(config, tokenizer, files, eos)


def eos_ids(folder: Path, config: GPTConfig, tokenizer: GPT2Tokenizer) -> frozenset[int]:
    ids = {config.eos_token_id, tokenizer.eos_id}
    path = folder / "generation_config.json"
    if path.is_file():
        ids.update(token_ids(read_json(path).get("eos_token_id"), path.name, "eos_token_id"))
    return frozenset(i for i in ids if i is not None)


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder, in shard order; a sharded index's entries must name files
    inside the folder."""
    single, index = folder / SINGLE, folder / INDEX
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no 'weight_map'.")
        for value in weight_map.values():
            if not isinstance(value, str):
                raise ModelLoadError(f"{INDEX} in {folder}: every 'weight_map' entry must name a file, "
                                     f"got {shown(value)}.")
        names = list(dict.fromkeys(weight_map.values()))
        for name in names:
            if not _inside(name):
                raise ModelLoadError(f"{INDEX} in {folder} names {shown(name, width=200)}, which is not a file "
                                     "inside the model folder; the weights must be in the folder itself.")
        files = [folder / name for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelLoadError(f"Shards listed in {INDEX} are missing: {', '.join(missing)}.")
        return files
    pickles = [name for name in PICKLE_NAMES if (folder / name).is_file()]
    if pickles:
        raise ModelLoadError(
            f"{folder} has only a PyTorch pickle checkpoint ({pickles[0]}). gpt2-desktop reads safetensors "
            "only, because loading a pickle can run code; convert it to model.safetensors first."
        )
    raise ModelLoadError(f"No {SINGLE} (or {INDEX}) in {folder}.")


def _inside(name: str) -> bool:
    """A relative path that stays inside the folder it is read from (symbolic links are the folder's own
    business: the Hugging Face cache links every file to a blob outside its snapshot folder)."""
    path = PurePosixPath(name)
    return bool(name) and "\\" not in name and not path.is_absolute() and ".." not in path.parts


def engine_name(name: str) -> str | None:
    """Map a checkpoint tensor name to the engine's, or None for tensors the engine ignores."""
    if name.startswith("transformer."):
        name = name[len("transformer.") :]
    if name.endswith(SKIPPED_SUFFIXES):
        return None
    if name == "lm_head.weight":
        return "lm_head"
    return name


def read_layout(files: list[Path]) -> dict[str, TensorInfo]:
    """Every weight's file, dtype and shape (engine names), from the safetensors headers alone."""
    from safetensors import SafetensorError, safe_open

    layout: dict[str, TensorInfo] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="np") as f:
                for name in f.keys():
                    target = engine_name(name)
                    if target is not None:
                        info = f.get_slice(name)
                        layout[target] = TensorInfo(path.name, info.get_dtype(), tuple(info.get_shape()))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name} is unreadable or truncated ({first_line(exc)}). "
                                 "Download or copy it again.") from None
    return layout


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The engine name and shape of every parameter engine.core.model's GPT has with `config`, layer by layer (a
    Conv1D weight is [in, out])."""
    C, inner, vocab = config.n_embd, config.inner_dim, config.vocab_size
    block = ((C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, inner), (inner,), (inner, C), (C,))
    shapes = {"wte.weight": (vocab, C), "wpe.weight": (config.n_positions, C)}
    for i in range(config.n_layer):
        shapes.update({f"h.{i}.{name}": shape for name, shape in zip(BLOCK, block)})
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,)})
    if not config.tie_word_embeddings:
        shapes["lm_head"] = (vocab, C)
    return shapes


def check_layout(config: GPTConfig, layout: Mapping[str, TensorInfo], source: str) -> None:
    """Every weight config.json calls for is there, none other, each of the right shape and a float dtype. An
    output head (lm_head) is optional: without one, the token embedding is the head. `source` names the files
    for a weight that is missing."""
    expected = expected_shapes(replace(config, tie_word_embeddings="lm_head" not in layout))
    missing = [name for name in expected if name not in layout]
    if missing:
        more = f" and {len(missing) - 5:,} more" if len(missing) > 5 else ""
        raise ModelLoadError(f"{source} lacks weights config.json calls for: {', '.join(missing[:5])}{more}.")
    for name, info in layout.items():
        if name not in expected:
            raise ModelLoadError(f"{info.file} has a weight a GPT-2 with this config.json does not use: "
                                 f"{shown(name, width=80)}.")
    for name, shape in expected.items():
        info = layout[name]
        if info.shape != shape:
            raise ModelLoadError(
                f"{info.file}: weight '{name}' has shape {list(info.shape)} but config.json implies {list(shape)}; "
                "the weights and config.json do not belong together."
            )
        if info.dtype not in FLOAT_DTYPES:
            raise ModelLoadError(f"{info.file}: weight '{name}' is stored as {info.dtype}; the weights must be "
                                 f"float32, float16 or bfloat16 ({', '.join(FLOAT_DTYPES)}).")

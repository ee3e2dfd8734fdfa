"""Write a model for other tools: a Hugging Face GPT-2 folder that this engine and transformers both
load, or one GGUF file in the layout llama.cpp's GPT-2 loader reads (and so LM Studio and Ollama),
either with a LoRA adapter merged in.

GGUF, as llama.cpp's convert_hf_to_gguf.py writes a GPT2LMHeadModel: architecture "gpt2", the
projections transposed to [out, in] (GGUF's rows are outputs, as in nn.Linear), 1-D tensors and the
position embedding in float32, the other matrices in f16 or q8_0, and GPT-2's byte-level BPE
(tokens, their types, merges, end-of-text ids) as the tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.core.adapters import check_adapter, merge_into, read_adapter
from engine.core.checkpoint import build_model, read_state_dict, weight_files
from engine.core.config import load_config
from engine.core.model import GPT
from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import SettingsError
from engine.store.local import resolve_base, resolve_model

GGUF_TYPES = ("f16", "q8_0")


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
    # safetensors writes through a private temporary file (mode 0600): readable as the folder's other files are
    os.chmod(tmp / "model.safetensors", stat.S_IMODE((tmp / "config.json").stat().st_mode))
    (tmp / "tokenizer.json").write_text(tokenizer.backend.to_str(), encoding="utf-8")  # (save() hides OSError)
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


def load_for_export(model: str | Path | None, adapter: Path | None) -> tuple[GPT, GPT2Tokenizer, str]:
    """The model in float32, with the adapter merged in when one is given, its tokenizer and a name."""
    folder, name = resolve_base(model, adapter) if adapter is not None else resolve_model(model)
    config = load_config(folder)
    tokenizer = GPT2Tokenizer.from_folder(folder)
    state = read_state_dict(weight_files(folder))
    if adapter is not None:
        lora = read_adapter(adapter)
        check_adapter(lora, config, folder.name)
        state = merge_into(state, lora)
        name = f"{name} + {lora.name}"
    return build_model(config, state, torch.float32, "cpu"), tokenizer, name


def gguf_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under llama.cpp's GPT-2 names (gguf.TENSOR_NAMES), projections [out, in]."""
    import gguf

    names = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR
    out = {
        names[T.TOKEN_EMBD] + ".weight": model.wte.weight,
        names[T.POS_EMBD] + ".weight": model.wpe.weight,
        names[T.OUTPUT_NORM] + ".weight": model.ln_f.weight,
        names[T.OUTPUT_NORM] + ".bias": model.ln_f.bias,
    }
    if model.lm_head is not None:  # a tied head is the token embedding, which llama.cpp reuses itself
        out[names[T.OUTPUT] + ".weight"] = model.lm_head
    for i, block in enumerate(model.h):
        parts = {T.ATTN_NORM: block.ln_1, T.ATTN_QKV: block.attn.c_attn, T.ATTN_OUT: block.attn.c_proj,
                 T.FFN_NORM: block.ln_2, T.FFN_UP: block.mlp.c_fc, T.FFN_DOWN: block.mlp.c_proj}
        for kind, module in parts.items():
            prefix = names[kind].format(bid=i)
            weight = module.weight if kind in (T.ATTN_NORM, T.FFN_NORM) else module.weight.t()  # Conv1D: [in, out]
            out[f"{prefix}.weight"] = weight
            out[f"{prefix}.bias"] = module.bias
    return {name: t.detach().float().contiguous() for name, t in out.items()}


def _vocabulary(tokenizer: GPT2Tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens by id (padded to the model's vocab_size), their GGUF token types (added special tokens are
    CONTROL, other added ones USER_DEFINED), as convert_hf_to_gguf.py does, and the merges as "a b"."""
    import gguf

    backend = tokenizer.backend
    by_id = {i: t for t, i in backend.get_vocab(with_added_tokens=True).items()}
    added = {t.content: t.special for t in backend.get_added_tokens_decoder().values()}
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            if token not in added:
                types.append(gguf.TokenType.NORMAL)
            else:
                types.append(gguf.TokenType.CONTROL if added[token] else gguf.TokenType.USER_DEFINED)
    merges = json.loads(backend.to_str())["model"].get("merges") or []
    return tokens, types, [m if isinstance(m, str) else " ".join(m) for m in merges]


def export_gguf(model: GPT, tokenizer: GPT2Tokenizer, path: Path, kind: str = "f16", name: str = "gpt2") -> Path:
    """Write one GGUF file (written beside its final name and moved in when complete)."""
    import gguf
    import numpy as np

    if kind not in GGUF_TYPES:
        raise SettingsError(f"--type takes {' or '.join(GGUF_TYPES)}, got {kind!r}.")
    config = model.config
    if tokenizer.vocab_size > config.vocab_size:
        raise SettingsError(f"The tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}.")
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind]
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    try:
        writer.add_type("model")
        writer.add_name(name)
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.inner_dim)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tokens, types, merges = _vocabulary(tokenizer, config.vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_id
        bos = config.bos_token_id if config.bos_token_id is not None else eos
        if bos is not None:
            writer.add_bos_token_id(bos)
        if eos is not None:
            writer.add_eos_token_id(eos)
        position = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.POS_EMBD] + ".weight"
        for tensor_name, tensor in gguf_tensors(model).items():
            data = tensor.numpy()
            if data.ndim == 1 or tensor_name == position:
                writer.add_tensor(tensor_name, data.astype(np.float32))
            elif kind == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
                quantised = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(tensor_name, quantised, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:  # f16, or a row too short for q8_0's 32-value blocks (as convert_hf_to_gguf.py falls back)
                writer.add_tensor(tensor_name, data.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except OSError as exc:
        raise SettingsError(f"Cannot write {path} ({exc.strerror or exc}).") from None
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return path

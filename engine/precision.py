"""Precision modes on the CPU: the forms the weights take, and the small modules that multiply by them.

Decoding one token reads every weight once, so on a CPU its speed is set by how many bytes the
weights take and how fast a kernel streams them. Each mode changes only the big matrices — the four
projections of every block, the token embedding and the output head; layer norms, biases and
position embeddings stay float32, and so do the activations between products.

- float32: the checkpoint's weights, exact. Only the output head is stored [in, vocab], because one
  row times that matrix streams memory faster than F.linear over [vocab, in]; the tied token
  embedding reads its rows from the same tensor, so nothing is stored twice.
- float16: half-precision weights multiplied by fbgemm's fp16 kernel (float32 activations).
- bfloat16: bfloat16 weights; each product rounds its input row to bfloat16.
- int8: symmetric per-output-channel int8 weights with float32 scales, multiplied by fbgemm's
  dynamically quantised linear, which quantises each input row to 8 bits on the fly (7 without
  VNNI). Those 8-bit activations, not the int8 weights, are most of int8's error: with float32
  activations the same weights agree with float32 on ~99% of next tokens, but PyTorch has no fast
  weight-only int8 kernel for x86 CPUs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import GPTConfig
from engine.errors import ModelLoadError, SettingsError
from engine.model import GPT

MODES = ("float32", "float16", "bfloat16", "int8")
REDUCED = ("float16", "bfloat16", "int8")
PROJECTIONS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def fbgemm_available() -> bool:
    """Whether this PyTorch has the x86 quantised kernels (fbgemm) the float16 and int8 modes use."""
    return any(engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm"))


def check_cpu_mode(mode: str) -> None:
    if mode in ("float16", "int8") and not fbgemm_available():
        raise SettingsError(
            f"--dtype {mode} on the CPU needs PyTorch's x86 quantised kernels (fbgemm), which this computer's "
            "PyTorch lacks; use bfloat16 or float32."
        )


def projection_names(config: GPTConfig) -> list[str]:
    return [f"h.{i}.{p}" for i in range(config.n_layer) for p in PROJECTIONS]


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of `weight` [out, in] as int8 in [-127, 127] and one float32 scale per row."""
    weight = weight.float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def _matrix_entries(prefix: str, weight: torch.Tensor, mode: str) -> dict[str, torch.Tensor]:
    """`weight` is [out, in]."""
    if mode == "int8":
        q, scale = quantize_int8(weight)
        return {f"{prefix}.qweight": q, f"{prefix}.scale": scale}
    return {f"{prefix}.weight16": weight.to(HALF[mode]).contiguous()}


def prepare_state(config: GPTConfig, state: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
    """The stored form of a checked checkpoint (engine names, see checkpoint.check_state) in a reduced mode.

    Matrices are stored [out, in]; everything else stays float32."""
    projections = {f"{name}.weight" for name in projection_names(config)}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name in projections:  # Conv1D weights are [in, out]
            out.update(_matrix_entries(name.removesuffix(".weight"), tensor.t(), mode))
        elif name in ("wte.weight", "lm_head"):
            out.update(_matrix_entries(name.removesuffix(".weight"), tensor, mode))
        else:
            out[name] = tensor.float().contiguous()
    return out


def _has_vnni() -> bool:
    """Whether the CPU multiplies int8 with VNNI (no 16-bit saturation), as Linux reports it."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# 8-bit activations where VNNI adds int8 products into 32 bits; 7-bit elsewhere, so that AVX2's
# 16-bit multiply-add cannot saturate.
REDUCE_RANGE = not _has_vnni()


class Int8Linear(nn.Module):
    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        zero_points = torch.zeros(qweight.shape[0], dtype=torch.long)
        q = torch._make_per_channel_quantized_tensor(qweight, scale.double(), zero_points, 0)
        self.packed = torch.ops.quantized.linear_prepack(q, bias)
        self.weight_bytes = qweight.numel() + scale.numel() * 4  # what one product reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.shape[-1]), self.packed, REDUCE_RANGE)
        return y.view(*x.shape[:-1], -1)


class Float16Linear(nn.Module):
    # fbgemm packs from a float32 copy; packing a big matrix (the output head) in slices of rows
    # keeps that passing copy small, so float16 peaks well below float32 in memory.
    ROWS_PER_PACK = 8192

    def __init__(self, weight16: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.packed = []
        for start in range(0, weight16.shape[0], self.ROWS_PER_PACK):
            rows = slice(start, start + self.ROWS_PER_PACK)
            part_bias = bias[rows] if bias is not None else None
            self.packed.append(torch.ops.quantized.linear_prepack_fp16(weight16[rows].float(), part_bias))
        self.weight_bytes = weight16.numel() * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        parts = [torch.ops.quantized.linear_dynamic_fp16(rows, packed) for packed in self.packed]
        y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return y.view(*x.shape[:-1], -1)


class BFloat16Linear(nn.Module):
    def __init__(self, weight16: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight = weight16  # [out, in]
        self.bias = bias
        self.weight_bytes = weight16.numel() * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(self.weight.dtype)
        # One row (decoding): a matrix-vector product is the fastest bfloat16 kernel for it.
        y = torch.mv(self.weight, rows[0]).unsqueeze(0) if rows.shape[0] == 1 else F.linear(rows, self.weight)
        y = y.float()
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], -1)


class RowEmbedding(nn.Module):
    """Token embedding from a reduced matrix [vocab, n_embd] (and per-row scales for int8)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None = None):
        super().__init__()
        self.weight = weight
        self.scale = scale

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        rows = self.weight[idx].float()
        return rows * self.scale[idx].unsqueeze(-1) if self.scale is not None else rows


class TransposedHead(nn.Module):
    """float32 output head stored [n_embd, vocab]: logits = hidden @ weight_t."""

    def __init__(self, weight_t: torch.Tensor):
        super().__init__()
        self.weight_t = weight_t
        self.weight_bytes = weight_t.numel() * weight_t.element_size()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.weight_t


class ColumnEmbedding(nn.Module):
    """The tied token embedding, read as columns of the transposed head."""

    def __init__(self, weight_t: torch.Tensor):
        super().__init__()
        self.weight_t = weight_t

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight_t.index_select(1, idx.reshape(-1)).t().reshape(*idx.shape, -1)


def use_transposed_head(model: GPT) -> GPT:
    """float32 on the CPU: the output head as [n_embd, vocab] (the tied embedding reads from it too)."""
    if model.lm_head is not None:
        model.head = TransposedHead(model.lm_head.detach().t().contiguous())
        model.lm_head = None
    else:
        weight_t = model.wte.weight.detach().t().contiguous()
        model.wte = ColumnEmbedding(weight_t)
        model.head = TransposedHead(weight_t)
    return model


def _linear(stored: dict[str, torch.Tensor], prefix: str, mode: str, bias: torch.Tensor | None) -> nn.Module:
    if mode == "int8":
        return Int8Linear(stored[f"{prefix}.qweight"], stored[f"{prefix}.scale"], bias)
    if mode == "float16":
        return Float16Linear(stored[f"{prefix}.weight16"], bias)
    return BFloat16Linear(stored[f"{prefix}.weight16"], bias)


def _embedding(stored: dict[str, torch.Tensor], mode: str) -> RowEmbedding:
    if mode == "int8":
        return RowEmbedding(stored["wte.qweight"], stored["wte.scale"])
    return RowEmbedding(stored["wte.weight16"])


def stored_is_tied(stored: dict[str, torch.Tensor]) -> bool:
    return not any(name.startswith("lm_head.") for name in stored)


def build_reduced_model(config: GPTConfig, stored: Mapping[str, torch.Tensor], mode: str) -> GPT:
    """A GPT on the CPU whose matrices are in `mode`, from tensors made by prepare_state (each read once)."""
    projections = projection_names(config)
    try:
        with torch.device("meta"):
            model = GPT(config)
        with warnings.catch_warnings():  # PyTorch marks its quantised tensor constructors as deprecated
            warnings.simplefilter("ignore")
            for name in projections:
                parent, attr = name.rsplit(".", 1)
                setattr(model.get_submodule(parent), attr, _linear(stored, name, mode, stored[f"{name}.bias"]))
            model.wte = _embedding(stored, mode)
            model.head = _linear(stored, "wte" if config.tie_word_embeddings else "lm_head", mode, None)
        model.lm_head = None
        matrices = {*projections, "wte", "lm_head"}
        rest = {name: stored[name] for name in stored
                if name.rsplit(".", 1)[0] not in matrices and name.rsplit(".", 1)[-1] in ("weight", "bias")}
        model.load_state_dict(rest, strict=False, assign=True)
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"The prepared {mode} weights are incomplete ({exc}).") from None
    on_meta = [name for name, p in model.named_parameters() if p.is_meta]
    if on_meta:
        raise ModelLoadError(f"The prepared {mode} weights lack {', '.join(on_meta[:3])}.")
    return model.eval().requires_grad_(False)


def decode_weight_bytes(model: GPT) -> int:
    """Bytes of weights one decoding step reads: every projection and the output head (the embedding
    lookup, layer norms and biases are too small to count)."""
    total = 0
    for module in model.modules():
        if hasattr(module, "weight_bytes"):
            total += module.weight_bytes
        elif module.__class__.__name__ == "Conv1D":
            total += module.weight.numel() * module.weight.element_size()
    if model.head is None:
        head = model.lm_head if model.lm_head is not None else model.wte.weight
        total += head.numel() * head.element_size()
    return total

"""The forms the weights take in each precision mode (engine.core.precisions) on the CPU, and the
small modules that multiply by them.

Decoding one token reads every weight once, so on a CPU its speed is set by how many bytes the
weights take and how fast a kernel streams them. Each mode changes only the big matrices — the four
projections of every block, the token embedding and the output head; layer norms, biases and
position embeddings stay float32, and so do the activations between products.

- float32: the checkpoint's weights, exact. With the compiled step (engine.core.native) every projection
  is copied to [out, in] and the head is the embedding itself, [vocab, in]: contiguous rows stream
  fastest. Without it, the output head is stored [in, vocab], which PyTorch streams faster than
  F.linear over [vocab, in], and the tied embedding reads its columns, so nothing is stored twice.
- float16: half-precision weights, float32 activations.
- bfloat16: bfloat16 weights; each product rounds its input row to bfloat16.
- int8: int8 weights with one float16 scale per block of 32 weights of a row (llama.cpp's q8_0); each
  product quantises its input the same way, per block of 32 (see Int8Linear).
- int4: every matrix's weights in 4 bits with one float16 scale per block of 32 (llama.cpp's q4_0), the
  tied token embedding and output head too; inputs quantised to 8 bits per block of 32 (Int4Linear).

The int8 and int4 forms store rows interleaved in groups of 8 (see interleave): the layout the compiled
step's integer kernels multiply 8 rows at a time from, one row per vector lane.

The modules here compute a batch of rows (a prompt) with PyTorch. Decoding one token goes through
engine.core.native's compiled step where it is built, which reads these modules' tensors as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.core import precisions
from engine.core.config import GPTConfig
from engine.core.model import GPT, Conv1D
from engine.errors import ModelLoadError

PROJECTIONS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def projection_names(config: GPTConfig) -> list[str]:
    return [f"h.{i}.{p}" for i in range(config.n_layer) for p in PROJECTIONS]


QBLOCK = 32  # values per scale in the int8 and int4 forms, weights and inputs alike
GROUP = 8  # rows interleaved together in the int8 and int4 forms


def interleave(values: torch.Tensor) -> torch.Tensor:
    """Per-row bytes of blocks [rows, nb, 4 * chunks] as the int8 and int4 forms store them: rows in groups
    of 8 (the last padded with zero rows), and within a group and a block, four bytes of each row in turn,
    [groups, nb, chunks, 8, 4], flattened to [groups, nb * chunks * 32]."""
    rows, nb, width = values.shape
    groups = -(-rows // GROUP)
    padded = torch.cat([values, values.new_zeros(groups * GROUP - rows, nb, width)])
    out = padded.view(groups, GROUP, nb, width // 4, 4).permute(0, 2, 3, 1, 4)
    return out.reshape(groups, -1).contiguous()


def deinterleave(stored: torch.Tensor, rows: int) -> torch.Tensor:
    """The inverse of interleave: [groups, nb * chunks * 32] as [rows, nb, 4 * chunks]."""
    groups = stored.shape[0]
    per_block = stored.shape[1] // (GROUP * 4)  # nb * chunks
    blocks = stored.view(groups, per_block, GROUP, 4).permute(0, 2, 1, 3).reshape(groups * GROUP, per_block * 4)
    return blocks[:rows]


def interleave_scales(scale: torch.Tensor) -> torch.Tensor:
    """Block scales [rows, nb] as [groups, nb * 8]: the 8 rows of a group side by side for each block."""
    rows, nb = scale.shape
    groups = -(-rows // GROUP)
    padded = torch.cat([scale, scale.new_zeros(groups * GROUP - rows, nb)])
    return padded.view(groups, GROUP, nb).transpose(1, 2).reshape(groups, nb * GROUP).contiguous()


def deinterleave_scales(stored: torch.Tensor, rows: int) -> torch.Tensor:
    groups = stored.shape[0]
    return stored.view(groups, -1, GROUP).transpose(1, 2).reshape(groups * GROUP, -1)[:rows]


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """x [..., n] as [..., ceil(n / 32), 32] float32, zeros after the last value."""
    x = x.float()
    n = x.shape[-1]
    padded = -(-n // QBLOCK) * QBLOCK
    return F.pad(x, (0, padded - n)).view(*x.shape[:-1], padded // QBLOCK, QBLOCK)


def _round_blocks(blocks: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """round(x / d) in [-127, 127] for blocks [..., nb, 32] and their scales d [..., nb]; 0 where d is 0."""
    d = d.unsqueeze(-1)
    return torch.where(d > 0, torch.round(blocks / torch.where(d > 0, d, 1)), 0).clamp(-127, 127)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of `weight` [out, in] in blocks of 32: int8 in [-127, 127] (zeros past `in`) and one float16 scale
    per block, nb = ceil(in / 32) blocks a row; a weight is q * scale. Returned interleaved (see interleave):
    [groups, nb * 256] and [groups, nb * 8]."""
    blocks = _blocks(weight)
    scale = (blocks.abs().amax(dim=-1) / 127).to(torch.float16)
    q = _round_blocks(blocks, scale.float()).to(torch.int8)
    return interleave(q), interleave_scales(scale)


def quantize_input(x: torch.Tensor) -> torch.Tensor:
    """Rows of activations [..., n] quantised as the compiled step does before an int8 product, and
    dequantised: per block of 32, d = max|x| / 127 and x -> round(x / d) * d; [..., nb * 32]."""
    blocks = _blocks(x)
    d = blocks.abs().amax(dim=-1) / 127
    return (_round_blocks(blocks, d) * d.unsqueeze(-1)).flatten(-2)


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of `weight` [out, in] in 4-bit blocks of 32 as llama.cpp's q4_0: per block, d = the weight of largest
    magnitude / -8 (float16) and q = round(w / d) + 8 in [0, 15]; byte j of a block holds q[j] in its low
    nibble and q[j + 16] in its high one. Returned interleaved (see interleave): uint8 [groups, nb * 128] and
    the scales [groups, nb * 8]."""
    blocks = _blocks(weight)
    extreme = blocks.gather(-1, blocks.abs().argmax(dim=-1, keepdim=True)).squeeze(-1)
    scale = (extreme / -8).to(torch.float16)
    d = scale.float().unsqueeze(-1)
    q = (torch.where(d != 0, torch.round(blocks / torch.where(d != 0, d, 1)), 0) + 8).clamp(0, 15).to(torch.uint8)
    packed = q[..., : QBLOCK // 2] | (q[..., QBLOCK // 2 :] << 4)
    return interleave(packed), interleave_scales(scale)


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, rows: int) -> torch.Tensor:
    """The first `rows` rows of 4-bit blocks and their scales (as quantize_int4 returns them) as float32
    [rows, nb * 32]."""
    return _dequantize_rows(_unpack_int4(deinterleave(packed, rows)), deinterleave_scales(scale, rows))


def _unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Rows of 4-bit bytes [n, nb * 16] (see quantize_int4) as their weights, int8 [n, nb * 32] in [-8, 7]."""
    blocks = packed.reshape(packed.shape[0], -1, QBLOCK // 2)
    return (torch.cat([blocks & 15, blocks >> 4], dim=-1).to(torch.int8) - 8).view(packed.shape[0], -1)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, rows: int) -> torch.Tensor:
    """The first `rows` rows of int8 blocks and their scales (as quantize_int8 returns them) as float32
    [rows, nb * 32]."""
    return _dequantize_rows(deinterleave(q, rows), deinterleave_scales(scale, rows))


def _dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 rows [n, nb * 32] and their block scales [n, nb] as float32 [n, nb * 32]."""
    return (q.float().view(q.shape[0], -1, QBLOCK) * scale.float().unsqueeze(-1)).view(q.shape[0], -1)


def prepare_state(config: GPTConfig, state: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
    """The stored form of a checked checkpoint (engine names, see checkpoint.check_state) in a reduced mode.

    Matrices are stored [out, in]; everything else stays float32."""
    projections = {f"{name}.weight" for name in projection_names(config)}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name in projections:  # Conv1D weights are [in, out]
            out.update(_stored(FORMS[mode], name.removesuffix(".weight"), tensor.t()))
        elif name in ("wte.weight", "lm_head"):
            out.update(_stored(FORMS[mode].for_vocab(), name.removesuffix(".weight"), tensor))
        else:
            out[name] = tensor.float().contiguous()
    return out


class RowLinear(nn.Module):
    """A weight stored [out, in] and an optional float32 bias. The forms below differ only in how they
    multiply a batch of rows; the compiled decoding step (engine.core.native) reads the tensors as they are."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.weight_bytes = weight.numel() * weight.element_size()  # what one product reads


class _BlockLinear(nn.Module):
    """Weights quantised in blocks of 32 with one scale per block; the input quantised to 8 bits per block of
    32 (quantize_input), then multiplied in float32 with the weights as `dequantize` gives them back."""

    dequantize = None  # (qweight, scale, out) -> float32 weights [out, in]
    # The compiled library's (matvec, dequantize) for a module: one input row through the integer kernels,
    # and the float32 weights for a batch, each None where it cannot. engine.core.native sets them (it reads
    # this module's classes, so this module does not import it); without them, PyTorch computes the same.
    compiled: tuple[Callable, Callable] | None = None

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, out_features: int):
        super().__init__()
        self.qweight = qweight
        self.scale = scale
        self.bias = bias
        self.out_features = out_features
        self.weight_bytes = qweight.numel() + scale.numel() * scale.element_size()  # what one product reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        matvec, dequantize = self.compiled or (lambda module, row: None, lambda module: None)
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] == 1:  # one row (the head after a prompt): the integer kernels, no float32 copy
            y = matvec(self, _blocks(flat[0]).flatten())
            if y is not None:
                return y.view(*x.shape[:-1], -1)
        weights = dequantize(self)  # the same values as `dequantize`, several times faster
        if weights is None:
            weights = self.dequantize(self.qweight, self.scale, self.out_features)
        y = F.linear(quantize_input(flat), weights, self.bias)
        return y.view(*x.shape[:-1], -1)


class Int8Linear(_BlockLinear):
    """int8 weights in blocks of 32 with one float16 scale per block, rows interleaved by 8 (see
    quantize_int8). The input is quantised per block of 32 too (quantize_input): the compiled decoding
    step multiplies the two with integer instructions; here the same values are multiplied in float32.

    A block holds its own scale, so GPT-2's few activation channels hundreds of times larger than the
    rest cost precision only in the block of 32 they sit in."""

    dequantize = staticmethod(dequantize_int8)


class Int4Linear(_BlockLinear):
    """4-bit weights in blocks of 32 with one float16 scale per block, rows interleaved by 8 (see
    quantize_int4); the input is quantised to 8 bits per block of 32 (quantize_input), as for Int8Linear."""

    dequantize = staticmethod(dequantize_int4)


class Float16Linear(RowLinear):
    """float16 weights, float32 activations. Decoding multiplies the float16 weights directly
    (engine.core.native); a batch of rows widens them to float32 one matrix at a time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.reshape(-1, x.shape[-1]), self.weight.float(), self.bias)
        return y.view(*x.shape[:-1], -1)


class BFloat16Linear(RowLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(self.weight.dtype)
        # One row (decoding): a matrix-vector product is the fastest bfloat16 kernel for it.
        y = torch.mv(self.weight, rows[0]).unsqueeze(0) if rows.shape[0] == 1 else F.linear(rows, self.weight)
        y = y.float()
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], -1)


class RowEmbedding(nn.Module):
    """Token embedding from a reduced matrix [vocab, n_embd] (int8 or int4: blocks and their scales as
    quantize_int8 or quantize_int4 return them)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None = None, width: int | None = None):
        super().__init__()
        self.weight = weight
        self.scale = scale
        self.width = weight.shape[1] if width is None else width  # n_embd

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        flat = idx.reshape(-1)
        if self.scale is None:
            rows = self.weight[flat].float()
        else:  # token t is row t % 8 of group t // 8
            group, row = flat // GROUP, flat % GROUP
            q = self.weight.view(self.weight.shape[0], -1, GROUP, 4)[group, :, row, :].reshape(len(flat), -1)
            if self.weight.dtype == torch.uint8:  # 4-bit: two weights a byte
                q = _unpack_int4(q)
            scale = self.scale.view(self.scale.shape[0], -1, GROUP)[group, :, row]
            rows = _dequantize_rows(q, scale)
        return rows[:, : self.width].reshape(*idx.shape, self.width)


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
    """float32 on the CPU, decoding in PyTorch: the output head as [n_embd, vocab] (the tied embedding
    reads from it too), which PyTorch streams faster than F.linear over [vocab, n_embd]."""
    if model.lm_head is not None:
        model.head = TransposedHead(model.lm_head.detach().t().contiguous())
        model.lm_head = None
    else:
        weight_t = model.wte.weight.detach().t().contiguous()
        model.wte = ColumnEmbedding(weight_t)
        model.head = TransposedHead(weight_t)
    return model


class Float32Linear(RowLinear):
    """float32 weights stored [out, in]: each output is one contiguous row's dot product with the input,
    which is how the compiled decoding step (engine.core.native) streams a matrix fastest."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def use_row_layout(model: GPT, rows: Mapping[str, torch.Tensor]) -> GPT:
    """float32 on the CPU, decoding in engine.core.native: every projection as [out, in] (`rows` holds them,
    already transposed, by checkpoint name); the head is the embedding itself, [vocab, n_embd]."""
    for name in projection_names(model.config):
        model.set_submodule(name, Float32Linear(rows[f"{name}.weight"], model.get_submodule(name).bias))
    return model


def stored_is_tied(stored: dict[str, torch.Tensor]) -> bool:
    return not any(name.startswith("lm_head.") for name in stored)


def build_reduced_model(config: GPTConfig, stored: Mapping[str, torch.Tensor], mode: str) -> GPT:
    """A GPT on the CPU whose matrices are in `mode`, from tensors made by prepare_state (each read once)."""
    projections = projection_names(config)
    form = FORMS[mode]
    try:
        with torch.device("meta"):
            model = GPT(config)
        for name in projections:
            bias = stored[f"{name}.bias"]
            model.set_submodule(name, form.linear(_entries(stored, name), bias, bias.shape[0]))
        vocab = form.for_vocab()
        model.wte = vocab.embedding(_entries(stored, "wte"), config.n_embd)
        model.head = vocab.linear(_entries(stored, "wte" if config.tie_word_embeddings else "lm_head"), None,
                                  config.vocab_size)
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
        elif isinstance(module, Conv1D):
            total += module.weight.numel() * module.weight.element_size()
    if model.head is None:
        head = model.lm_head if model.lm_head is not None else model.wte.weight
        total += head.numel() * head.element_size()
    return total


# Each prepared precision mode: how a weight matrix [out, in] is stored (tensor suffix -> tensor), and
# the modules that multiply by those stored tensors and look rows up in them.


@dataclass(frozen=True)
class Form:
    store: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    linear: Callable[[Mapping[str, torch.Tensor], torch.Tensor | None, int], nn.Module]  # (stored, bias, out)
    embedding: Callable[[Mapping[str, torch.Tensor], int], nn.Module]  # (stored, n_embd)
    vocab: Form | None = None  # the token embedding's and output head's form, where it is another

    def for_vocab(self) -> Form:
        return self.vocab or self


def _int8_store(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    q, scale = quantize_int8(weight)
    return {"qweight": q, "scale": scale}


def _int4_store(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    q, scale = quantize_int4(weight)
    return {"qweight4": q, "scale": scale}


INT8 = Form(store=_int8_store,
            linear=lambda s, bias, out: Int8Linear(s["qweight"], s["scale"], bias, out),
            embedding=lambda s, width: RowEmbedding(s["qweight"], s["scale"], width))

FORMS: dict[str, Form] = {
    "float16": Form(store=lambda w: {"weight16": w.to(torch.float16).contiguous()},
                    linear=lambda s, bias, out: Float16Linear(s["weight16"], bias),
                    embedding=lambda s, width: RowEmbedding(s["weight16"])),
    "bfloat16": Form(store=lambda w: {"weight16": w.to(torch.bfloat16).contiguous()},
                     linear=lambda s, bias, out: BFloat16Linear(s["weight16"], bias),
                     embedding=lambda s, width: RowEmbedding(s["weight16"])),
    "int8": INT8,
    # The tied embedding and head in 4 bits too: over the validation books, 89.08% top-1 agreement with
    # float32 and +0.34% bits per byte (an 8-bit head: 93.76% and +0.10%), and the 124M shape decodes
    # ~20% faster (69 MB read a token instead of 89), which takes it past llama.cpp's q4_0 (whose head is
    # 6-bit q6_K) by the 1.2x this project aims for, where an 8-bit head fell short (1.12x).
    "int4": Form(store=_int4_store,
                 linear=lambda s, bias, out: Int4Linear(s["qweight4"], s["scale"], bias, out),
                 embedding=lambda s, width: RowEmbedding(s["qweight4"], s["scale"], width)),
}
if set(FORMS) != set(precisions.PREPARED):
    raise ImportError("engine.core.forms.FORMS must have a Form for every prepared mode in engine.core.precisions")


def _stored(form: Form, prefix: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{suffix}": tensor for suffix, tensor in form.store(weight).items()}


def _entries(stored: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The stored tensors of one matrix, by suffix (`qweight`, `scale`, ...)."""
    start = prefix + "."
    return {name[len(start):]: tensor for name, tensor in stored.items() if name.startswith(start)}

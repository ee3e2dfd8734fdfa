"""The compiled decoding step (engine/core/csrc/gpt2_step.c): one call per token on the CPU, batch 1.

The library is plain C, built by `python -m engine.core.native build` (which `make` runs) into
engine/core/_gpt2_step.so and loaded through ctypes, which releases the GIL for the call. The step runs
on the calling thread and torch.get_num_threads()-1 helper threads of the library's own, which share
the work chunk by chunk rather than meeting at barriers, so a core taken by another program costs its
share of the work and no more (the OpenMP barriers it used before waited a time slice each).

Where the library is missing, cannot load, was built from a gpt2_step.c that this file does not match
(its ABI version, or its structs' sizes and offsets, which it reports), or the CPU lacks AVX2/FMA/F16C,
`NativeDecoder.for_model` returns None and decoding stays in PyTorch: same results, slower.
GPT2_DESKTOP_NATIVE=0 forces that. The integer kernels are chosen at run time by what the CPU has;
GPT2_DESKTOP_CPU=avx2 (or another name of kernel_sets()) forces a set.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from engine.core import forms
from engine.core.model import Conv1D

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "csrc" / "gpt2_step.c"
LIBRARY = HERE / "_gpt2_step.so"
CFLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-pthread", "-mavx2", "-mfma", "-mf16c", "-fno-math-errno"]
ABI_VERSION = 8  # gpt2_step.c's GPT2_ABI_VERSION

F32_COLS, F32_ROWS, F16_ROWS, BF16_ROWS, Q8_BLOCKS, Q4_BLOCKS = range(6)
ACTIVATIONS = {"gelu_new": 0, "gelu_pytorch_tanh": 0, "gelu_fast": 0, "gelu": 1, "relu": 2}


# Mirrors of gpt2_step.c's structs, field for field; `library()` checks them against the library's own
# sizes and offsets. C = n_embd, V = vocab; every pointer is the data_ptr() of a contiguous CPU tensor.
class Mat(ctypes.Structure):
    """One product y = x W (+ bias), n_in floats to n_out."""

    _fields_ = [
        ("kind", ctypes.c_int32),  # how w is stored: F32_COLS, F32_ROWS, F16_ROWS, BF16_ROWS, Q8_BLOCKS or Q4_BLOCKS
        ("n_in", ctypes.c_int32),  # input width
        ("n_out", ctypes.c_int32),  # output width
        ("round_bf16", ctypes.c_int32),  # 1: round the input to bfloat16 before multiplying, else 0
        ("w", ctypes.c_void_p),  # (n_out, n_in) rows, (n_in, n_out) for F32_COLS, (n_out, nb * 32) int8 for Q8_BLOCKS
        ("scale", ctypes.c_void_p),  # (n_out, nb) float16 for Q8_BLOCKS and Q4_BLOCKS, one per block of 32; else None
        ("bias", ctypes.c_void_p),  # (n_out,) float32, or None
    ]


class Layer(ctypes.Structure):
    _fields_ = [
        ("ln1_w", ctypes.c_void_p),  # (C,) float32, the layer norm before attention
        ("ln1_b", ctypes.c_void_p),  # (C,)
        ("ln2_w", ctypes.c_void_p),  # (C,) the layer norm before the MLP
        ("ln2_b", ctypes.c_void_p),  # (C,)
        ("qkv", Mat),  # C -> 3C: query, key and value
        ("attn_proj", Mat),  # C -> C
        ("fc", Mat),  # C -> n_inner, followed by the activation
        ("mlp_proj", Mat),  # n_inner -> C
        ("attn_scale", ctypes.c_float),  # multiplies q.k before the softmax
    ]


class Model(ctypes.Structure):
    _fields_ = [
        ("n_layer", ctypes.c_int32),  # the length of `layers`
        ("n_head", ctypes.c_int32),  # H: a head is C / H wide
        ("n_embd", ctypes.c_int32),  # C
        ("n_inner", ctypes.c_int32),  # the MLP's hidden width
        ("vocab", ctypes.c_int32),  # V
        ("activation", ctypes.c_int32),  # the MLP's, a value of ACTIVATIONS
        ("eps", ctypes.c_float),  # the layer norms' epsilon
        ("wte", Mat),  # C -> V, the token embedding as the tied head's matrix (see describe_embedding)
        ("wpe", ctypes.c_void_p),  # (n_positions, C) float32, the position embedding
        ("lnf_w", ctypes.c_void_p),  # (C,) float32, the final layer norm
        ("lnf_b", ctypes.c_void_p),  # (C,)
        ("head", Mat),  # C -> V: the logits
        ("layers", ctypes.POINTER(Layer)),  # (n_layer,)
    ]


def build(output: Path = LIBRARY, compiler: str | None = None, source: Path = SOURCE) -> Path:
    """Compile `source` into `output`; raises RuntimeError with the compiler's message if it fails."""
    cc = compiler or os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc or cc) found")
    tmp = output.with_suffix(".so.tmp")
    proc = subprocess.run([cc, *CFLAGS, str(source), "-o", str(tmp), "-lm"], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{cc} failed:\n{proc.stderr.strip()}")
    os.replace(tmp, output)
    return output


def cpu_supported() -> bool:
    """AVX2 with FMA and F16C, which every x86-64 CPU with AVX2 has; PyTorch checks the first."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled step, or None where decoding stays in PyTorch: switched off, no AVX2, not built, or
    built from a source that does not match this file (which it says on stderr)."""
    if os.environ.get("GPT2_DESKTOP_NATIVE", "1") == "0" or not cpu_supported():
        return None
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return _refuse(path, f"cannot load it ({exc})")
    version = lib.gpt2_abi_version()
    if version != ABI_VERSION:
        rebuild = "rebuild it: python -m engine.core.native build"
        return _refuse(path, f"ABI version {version}, expected {ABI_VERSION} ({rebuild})")
    mismatch = _layout_mismatch(lib)
    if mismatch is not None:
        return _refuse(path, f"its structs do not match native.py's ({mismatch})")
    lib.gpt2_step.restype = ctypes.c_int
    lib.gpt2_step.argtypes = [ctypes.POINTER(Model), ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                              ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int]
    lib.gpt2_workspace_floats.restype = ctypes.c_longlong
    lib.gpt2_workspace_floats.argtypes = [ctypes.POINTER(Model), ctypes.c_int, ctypes.c_int]
    lib.gpt2_wait_idle.restype = None
    lib.gpt2_wait_idle.argtypes = []
    lib.gpt2_use_kernels.restype = ctypes.c_int
    lib.gpt2_use_kernels.argtypes = [ctypes.c_char_p]
    lib.gpt2_kernels.restype = ctypes.c_char_p
    lib.gpt2_kernels.argtypes = []
    lib.gpt2_kernel_sets.restype = None
    lib.gpt2_kernel_sets.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.gpt2_dequantize.restype = ctypes.c_int
    lib.gpt2_dequantize.argtypes = [ctypes.POINTER(Mat), ctypes.c_void_p]
    lib.gpt2_matvec.restype = ctypes.c_int
    lib.gpt2_matvec.argtypes = [ctypes.POINTER(Mat), ctypes.c_void_p, ctypes.c_void_p]
    wanted = os.environ.get("GPT2_DESKTOP_CPU", "auto")
    if lib.gpt2_use_kernels(wanted.encode()) != 0:
        lib.gpt2_use_kernels(b"auto")
        print(f"gpt2-desktop: GPT2_DESKTOP_CPU={wanted} is not one of this CPU's kernel sets "
              f"({', '.join(_kernel_sets(lib))}); using {lib.gpt2_kernels().decode()}", file=sys.stderr)
    return lib


def _kernel_sets(lib: ctypes.CDLL) -> list[str]:
    out = ctypes.create_string_buffer(256)
    lib.gpt2_kernel_sets(out, len(out))
    return out.value.decode().split()


def kernel_sets() -> list[str]:
    """The compiled step's kernel sets this CPU can run, best first (the integer dot products of the int8
    mode per instruction set, and "reference": plain C); [] without the library."""
    lib = library()
    return _kernel_sets(lib) if lib is not None else []


def use_kernels(name: str) -> None:
    """Decode with the kernel set `name` from now on ("auto": the best this CPU runs; GPT2_DESKTOP_CPU
    sets it at load)."""
    lib = library()
    if lib is None or lib.gpt2_use_kernels(name.encode()) != 0:
        raise ValueError(f"no kernel set {name!r} on this CPU; it has {', '.join(kernel_sets()) or 'none'}")


def kernels() -> str | None:
    """The kernel set in use, or None without the library."""
    lib = library()
    return lib.gpt2_kernels().decode() if lib is not None else None


def _refuse(path: Path, why: str) -> None:
    print(f"gpt2-desktop: {path.name}: {why}; decoding stays in PyTorch", file=sys.stderr)
    return None


def struct_layout() -> list[tuple[str, int]]:
    """What the library's gpt2_struct_layout must report, named: for Mat, Layer and Model in turn, the
    struct's size, then the offset and size of each field in declaration order."""
    layout = []
    for struct in (Mat, Layer, Model):
        layout.append((f"sizeof({struct.__name__})", ctypes.sizeof(struct)))
        for name, _ in struct._fields_:
            field = getattr(struct, name)
            layout += [(f"{struct.__name__}.{name}'s offset", field.offset),
                       (f"{struct.__name__}.{name}'s size", field.size)]
    return layout


def library_struct_layout(lib: ctypes.CDLL) -> list[int]:
    """What the library's gpt2_struct_layout reports: the values of struct_layout(), as it was compiled."""
    lib.gpt2_struct_layout.restype = ctypes.c_int
    lib.gpt2_struct_layout.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
    count = lib.gpt2_struct_layout(None, 0)
    values = (ctypes.c_int64 * count)()
    lib.gpt2_struct_layout(values, count)
    return list(values)


def _layout_mismatch(lib: ctypes.CDLL) -> str | None:
    """The first size or offset where the library and the ctypes mirrors above differ, or None."""
    ours, theirs = struct_layout(), library_struct_layout(lib)
    for (what, expected), got in zip(ours, theirs):
        if got != expected:
            return f"{what} is {got} in the library, {expected} here"
    if len(ours) != len(theirs):
        return f"the library reports {len(theirs)} sizes and offsets, native.py has {len(ours)}"
    return None


def _library_path() -> Path | None:
    # A frozen app (PyInstaller) keeps it beside the engine package's other files.
    for candidate in (LIBRARY, Path(getattr(sys, "_MEIPASS", HERE)) / "engine" / "core" / LIBRARY.name):
        if candidate.is_file():
            return candidate
    return None


def available() -> bool:
    return library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _Unsupported(Exception):
    pass


def _checked(t: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous():
        raise _Unsupported(f"{tuple(t.shape)} {t.dtype} on {t.device}")
    if shape is not None and tuple(t.shape) != shape:
        raise _Unsupported(f"shape {tuple(t.shape)}, expected {shape}")
    return t


def _blocks(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, n_out: int, n_in: int,
            bytes_per_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An int8 or int4 form's tensors, checked against the shapes forms.interleave gives them."""
    blocks, groups = -(-n_in // forms.QBLOCK), -(-n_out // forms.GROUP)
    return (_checked(q, dtype, (groups, blocks * forms.GROUP * bytes_per_block)),
            _checked(scale, torch.float16, (groups, blocks * forms.GROUP)))


def describe_matrix(module: nn.Module, n_in: int, n_out: int, keep: list) -> Mat:
    """The Mat for one product module of engine.core.model or engine.core.forms (hidden [n_in] -> [n_out])."""
    bias = getattr(module, "bias", None)
    if bias is not None:
        keep.append(_checked(bias, torch.float32, (n_out,)))
    scale = None
    round_bf16 = 0
    if isinstance(module, Conv1D):
        kind, w = F32_COLS, _checked(module.weight, torch.float32, (n_in, n_out))
    elif isinstance(module, forms.Float32Linear):
        kind, w = F32_ROWS, _checked(module.weight, torch.float32, (n_out, n_in))
    elif isinstance(module, forms.TransposedHead):
        kind, w = F32_COLS, _checked(module.weight_t, torch.float32, (n_in, n_out))
    elif isinstance(module, forms.Float16Linear):
        kind, w = F16_ROWS, _checked(module.weight, torch.float16, (n_out, n_in))
    elif isinstance(module, forms.BFloat16Linear):
        kind, w, round_bf16 = BF16_ROWS, _checked(module.weight, torch.bfloat16, (n_out, n_in)), 1
    elif isinstance(module, forms.Int8Linear):
        kind, w, scale = Q8_BLOCKS, *_blocks(module.qweight, module.scale, torch.int8, n_out, n_in, forms.QBLOCK)
    elif isinstance(module, forms.Int4Linear):
        kind, w, scale = Q4_BLOCKS, *_blocks(module.qweight, module.scale, torch.uint8, n_out, n_in, forms.QBLOCK // 2)
    else:
        raise _Unsupported(type(module).__name__)
    keep += [w, scale]
    return Mat(kind, n_in, n_out, round_bf16, w.data_ptr(), _ptr(scale), _ptr(bias))


def describe_embedding(module: nn.Module, vocab: int, n_embd: int, keep: list) -> Mat:
    """The Mat for the token embedding, as the tied head's matrix (n_embd -> vocab): the step reads the
    token's row of [vocab, n_embd], or its column of [n_embd, vocab] for F32_COLS."""
    scale = None
    if isinstance(module, forms.ColumnEmbedding):
        kind, w = F32_COLS, _checked(module.weight_t, torch.float32, (n_embd, vocab))
    elif isinstance(module, nn.Embedding):
        kind, w = F32_ROWS, _checked(module.weight, torch.float32, (vocab, n_embd))
    elif isinstance(module, forms.RowEmbedding):
        w = module.weight
        kind = {torch.float16: F16_ROWS, torch.bfloat16: BF16_ROWS, torch.int8: Q8_BLOCKS,
                torch.uint8: Q4_BLOCKS}.get(w.dtype)
        if kind is None:
            raise _Unsupported(f"embedding of {w.dtype}")
        if kind == Q8_BLOCKS:
            w, scale = _blocks(w, module.scale, torch.int8, vocab, n_embd, forms.QBLOCK)
        elif kind == Q4_BLOCKS:
            w, scale = _blocks(w, module.scale, torch.uint8, vocab, n_embd, forms.QBLOCK // 2)
        else:
            _checked(w, w.dtype, (vocab, n_embd))
    else:
        raise _Unsupported(type(module).__name__)
    keep += [w, scale]
    return Mat(kind, n_embd, vocab, 0, w.data_ptr(), _ptr(scale), None)


_scratch = threading.local()  # each thread's float32 buffer for dequantize


def _block_mat(module: nn.Module) -> tuple[Mat, int] | None:
    lib = library()
    if lib is None:
        return None
    width = module.scale.shape[1] // forms.GROUP * forms.QBLOCK  # nb * 32: inputs are padded to whole blocks
    return describe_matrix(module, width, module.out_features, []), width


def dequantize(module: nn.Module) -> torch.Tensor | None:
    """An int8 or int4 form's weights as float32 [out, nb * 32], as forms.dequantize_int8/int4 give them but
    in one pass of compiled code, into a buffer this thread reuses (valid until its next call: fresh memory
    costs a page fault per 4 KiB, more than the pass itself); None where the library is not built."""
    described = _block_mat(module)
    if described is None:
        return None
    mat, width = described
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.numel() < module.out_features * width:
        buffer = _scratch.buffer = torch.empty(module.out_features * width)
    out = buffer[: module.out_features * width].view(module.out_features, width)
    return out if library().gpt2_dequantize(ctypes.byref(mat), out.data_ptr()) == 0 else None


def matvec(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """An int8 or int4 form times one input row x [nb * 32] (bias included), by the compiled step's kernels
    on this thread; None where the library is not built."""
    described = _block_mat(module)
    if described is None:
        return None
    mat, width = described
    x = _checked(x.contiguous(), torch.float32, (width,))
    y = torch.empty(module.out_features)
    return y if library().gpt2_matvec(ctypes.byref(mat), x.data_ptr(), y.data_ptr()) == 0 else None


forms._BlockLinear.compiled = (matvec, dequantize)


class NativeDecoder:
    """Decodes one token at a time through the compiled step, reading the model's own tensors."""

    def __init__(self, lib: ctypes.CDLL, model: nn.Module):
        config = model.config
        C, inner, vocab = config.n_embd, config.inner_dim, config.vocab_size
        keep: list = []

        def vec(t: torch.Tensor, *shape: int) -> int:
            keep.append(_checked(t, torch.float32, shape))
            return t.data_ptr()

        layers = (Layer * config.n_layer)()
        for i, block in enumerate(model.h):
            attn, mlp = block.attn, block.mlp
            layers[i] = Layer(
                vec(block.ln_1.weight, C), vec(block.ln_1.bias, C), vec(block.ln_2.weight, C), vec(block.ln_2.bias, C),
                describe_matrix(attn.c_attn, C, 3 * C, keep), describe_matrix(attn.c_proj, C, C, keep),
                describe_matrix(mlp.c_fc, C, inner, keep), describe_matrix(mlp.c_proj, inner, C, keep),
                float(attn.scale),
            )
        if model.head is not None:
            head = describe_matrix(model.head, C, vocab, keep)
        else:  # a float32 model without engine.core.forms's forms: F.linear over [vocab, n_embd]
            weight = model.lm_head if model.lm_head is not None else model.wte.weight
            keep.append(_checked(weight, torch.float32, (vocab, C)))
            head = Mat(F32_ROWS, C, vocab, 0, weight.data_ptr(), None, None)
        if config.activation_function not in ACTIVATIONS:
            raise _Unsupported(config.activation_function)
        self.desc = Model(
            config.n_layer, config.n_head, C, inner, vocab, ACTIVATIONS[config.activation_function],
            float(config.layer_norm_epsilon), describe_embedding(model.wte, vocab, C, keep),
            vec(model.wpe.weight, config.n_positions, C),
            vec(model.ln_f.weight, C), vec(model.ln_f.bias, C), head, layers,
        )
        self._keep = (keep, layers)
        self.lib = lib
        self.vocab = vocab
        self._work: torch.Tensor | None = None
        self._work_key: tuple[int, int] | None = None
        # The caches and workspace of the last step: a helper thread of the step that the OS took off its
        # core may still read them after the step returns (see gpt2_step), so they are kept alive here
        # and let go only after gpt2_wait_idle.
        self._held: tuple[torch.Tensor, ...] = ()
        # What the step computed beside the logits it returned last (see `summary`).
        self._last: torch.Tensor | None = None
        self._argmax, self._logsumexp = ctypes.c_int32(), ctypes.c_float()

    @classmethod
    def for_model(cls, model: nn.Module) -> NativeDecoder | None:
        """A decoder for `model` on the CPU, or None where the compiled step cannot run it."""
        lib = library()
        if lib is None:
            return None
        try:
            return cls(lib, model)
        except _Unsupported:
            return None

    def __del__(self):
        if getattr(self, "_held", ()):
            self.lib.gpt2_wait_idle()  # before the model's tensors, caches and workspace can be freed

    def step(self, token: int, pos: int, cache) -> torch.Tensor:
        """Logits [vocab] (float32) for `token` at `pos`, given a cache holding positions 0..pos-1."""
        k, v = cache.k, cache.v
        if k.dtype != torch.float32 or k.shape[1] != 1 or not (k.is_contiguous() and v.is_contiguous()):
            raise ValueError("the compiled step needs a float32, batch-1, contiguous cache")
        threads = torch.get_num_threads()
        key = (threads, cache.length)
        if self._work_key != key:
            floats = self.lib.gpt2_workspace_floats(ctypes.byref(self.desc), threads, cache.length)
            self.lib.gpt2_wait_idle()
            self._work = torch.empty(floats, dtype=torch.float32)
            self._work_key = key
        held = (k, v, self._work)
        if any(a is not b for a, b in zip(held, self._held)):
            self.lib.gpt2_wait_idle()
        self._held = held
        logits = torch.empty(self.vocab, dtype=torch.float32)
        rc = self.lib.gpt2_step(ctypes.byref(self.desc), token, pos, k.data_ptr(), v.data_ptr(), cache.length,
                                logits.data_ptr(), ctypes.byref(self._argmax), ctypes.byref(self._logsumexp),
                                self._work.data_ptr(), threads)
        if rc != 0:
            self._last = None
            raise ValueError(f"token {token} at position {pos} is outside the model or its cache")
        self._last = logits
        return logits

    def summary(self, logits: torch.Tensor) -> tuple[int, float] | None:
        """(argmax, logsumexp) of `logits` if they are what the last step returned, else None: the step computes
        them across its threads, where torch.argmax and log_softmax cost a pass each over the vocabulary."""
        if logits is not self._last:
            return None
        return self._argmax.value, self._logsumexp.value


def main(argv: list[str]) -> int:
    if argv[:1] != ["build"]:
        print("usage: python -m engine.core.native build", file=sys.stderr)
        return 2
    try:
        path = build()
    except RuntimeError as exc:
        # Not fatal: the app decodes in PyTorch without it, only slower.
        print(f"engine.core.native: not built ({exc}); decoding will use PyTorch only", file=sys.stderr)
        return 0
    print(f"engine.core.native: built {path.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

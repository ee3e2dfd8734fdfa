"""The compiled decoding step (engine.core.native) against the PyTorch model it reads: logits, the KV cache
it writes, whole generations, and every weight form, shape and activation the engine loads."""

import ctypes
import os
import shutil
import subprocess
import sys

import pytest
import torch

from engine import SamplingSettings, load_model
from engine.core import forms, native
from engine.inference.generate import Generator
from engine.core.precisions import NAMES as MODES
from tests.helpers import make_model_folder

pytestmark = pytest.mark.skipif(not native.cpu_supported(), reason="the compiled step needs an x86-64 CPU with AVX2")

# Largest logit difference from PyTorch's own step, in units of the logits' standard deviation.
# float32 and float16 compute the same products in another order; bfloat16 differs also because
# PyTorch rounds those products' outputs to bfloat16 and the compiled step does not. int8 computes the
# same quantised products both ways (one step alone agrees to ~1e-5), but an input value that sits at a
# rounding boundary of its block's 8-bit grid may land on either side of it, and that grows over steps.
TOLERANCE = {"float32": 1e-5, "float16": 1e-5, "bfloat16": 0.05, "int8": 0.1, "int4": 0.1}


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))


def test_the_library_is_built_and_loads():
    # `make` builds it; a missing library would silently make every CPU decode slow.
    assert native.LIBRARY.is_file(), "run `python -m engine.core.native build`"
    assert native.available()


def test_the_library_reports_the_struct_layout_of_the_ctypes_mirrors():
    # What gpt2_step.c was compiled with, against Mat, Layer and Model in native.py: each struct's size,
    # then each field's offset and size.
    lib = native.library()
    assert lib is not None and lib.gpt2_abi_version() == native.ABI_VERSION
    expected = []
    for struct in (native.Mat, native.Layer, native.Model):
        expected.append(ctypes.sizeof(struct))
        for name, _ in struct._fields_:
            expected += [getattr(struct, name).offset, getattr(struct, name).size]
    assert native.library_struct_layout(lib) == expected
    assert [value for _, value in native.struct_layout()] == expected


@pytest.fixture
def load_library(monkeypatch):
    """load_library(path): native.library() for the library at `path`; the real one again afterwards."""
    def load(path):
        monkeypatch.setattr(native, "LIBRARY", path)
        native.library.cache_clear()
        return native.library()

    yield load
    monkeypatch.undo()
    native.library.cache_clear()


def test_a_library_with_other_structs_is_refused_and_says_why(tmp_path, load_library, capsys, tiny):
    # Mat's n_in and n_out swapped in the C: the same sizes, other offsets.
    source = native.SOURCE.read_text()
    assert source.count("int32_t n_in;") == 1 and source.count("int32_t n_out;") == 1
    swapped = source.replace("int32_t n_in;", "@").replace("int32_t n_out;", "int32_t n_in;")
    (tmp_path / "swapped.c").write_text(swapped.replace("@", "int32_t n_out;"))
    built = native.build(tmp_path / "swapped.so", source=tmp_path / "swapped.c")
    assert load_library(built) is None
    assert native.NativeDecoder.for_model(tiny.model) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "swapped.so" in err and "Mat.n_in's offset is 8 in the library, 4 here" in err
    assert "decoding stays in PyTorch" in err


def test_ctypes_mirrors_that_differ_from_the_library_are_refused(load_library, capsys, monkeypatch):
    # attn_scale declared double in Python: Layer's size and every offset still agree, the field's size does not.
    real = native.Layer
    fields = [(name, ctypes.c_double if name == "attn_scale" else kind) for name, kind in real._fields_]
    monkeypatch.setattr(native, "Layer", type("Layer", (ctypes.Structure,), {"_fields_": fields}))
    assert ctypes.sizeof(native.Layer) == ctypes.sizeof(real)
    assert load_library(native.LIBRARY) is None
    err = capsys.readouterr().err
    assert "Layer.attn_scale's size is 4 in the library, 8 here" in err and "decoding stays in PyTorch" in err


def test_a_library_of_another_abi_version_is_refused(load_library, capsys, monkeypatch):
    monkeypatch.setattr(native, "ABI_VERSION", native.ABI_VERSION + 1)
    assert load_library(native.LIBRARY) is None
    assert f"ABI version {native.ABI_VERSION - 1}, expected {native.ABI_VERSION}" in capsys.readouterr().err


def compare_steps(loaded, ids: list[int], steps: int, threads: int | None = None):
    """Prefill ids[:-steps] into two caches, then decode the rest with PyTorch and with the compiled
    step; returns the worst logit difference (in logit standard deviations) and cache difference."""
    model = loaded.model
    decoder = native.NativeDecoder.for_model(model)
    assert decoder is not None
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            theirs, ours = model.new_cache(1, 128), model.new_cache(1, 128)
            prefix = torch.tensor([ids[:-steps]])
            model(prefix, theirs, 0, last_only=True)
            model(prefix, ours, 0, last_only=True)
            worst = 0.0
            for pos in range(len(ids) - steps, len(ids)):
                ref = model(torch.tensor([[ids[pos]]]), theirs, pos)[0, -1]
                got = decoder.step(ids[pos], pos, ours)
                worst = max(worst, float((got - ref).abs().max() / ref.std()))
            n = len(ids)
            cache = max(float((theirs.k[..., :n, :] - ours.k[..., :n, :]).abs().max()),
                        float((theirs.v[..., :n, :] - ours.v[..., :n, :]).abs().max()))
    finally:
        torch.set_num_threads(before)
    return worst, cache


@pytest.mark.parametrize("mode", MODES)
def test_step_matches_pytorch_on_the_embedded_model(mode):
    loaded = load_model(None, device="cpu", precision=mode)
    ids = loaded.tokenizer.encode("Once upon a time there was a little fox who lived by the river, and every day")
    worst, cache = compare_steps(loaded, ids, steps=8)
    assert worst < TOLERANCE[mode], worst
    assert cache < 0.05, cache


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [
    dict(n_embd=40, n_head=5, n_layer=2, n_positions=128),  # widths that are not multiples of 32
    dict(n_embd=64, n_head=2, n_layer=1, n_positions=128, activation_function="gelu", tie_word_embeddings=False),
    dict(n_embd=48, n_head=3, n_layer=2, n_positions=128, activation_function="relu", scale_attn_weights=False,
         scale_attn_by_inverse_layer_idx=True),
], ids=["odd-widths", "gelu-untied", "relu-unscaled"])
def test_step_matches_pytorch_for_other_shapes(mode, shape, tmp_path):
    folder = make_model_folder(tmp_path / "m", seed=3, **shape)
    loaded = load_model(folder, device="cpu", precision=mode)
    ids = torch.randint(0, 50257, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    worst, cache = compare_steps(loaded, ids, steps=6)
    assert worst < TOLERANCE[mode] * 5, worst


@pytest.mark.parametrize("kernel_set", native.kernel_sets() or ["none"])
def test_every_kernel_set_this_cpu_runs_matches_pytorch(kernel_set):
    # Each instruction set's integer dot products (and the plain C reference) against PyTorch's step.
    if kernel_set == "none":
        pytest.skip("the library is not built")
    ids = "Once upon a time there was a little fox who lived by the river, and every day"
    native.use_kernels(kernel_set)
    try:
        assert native.kernels() == kernel_set
        for mode in ("int8", "int4"):
            loaded = load_model(None, device="cpu", precision=mode)
            worst, cache = compare_steps(loaded, loaded.tokenizer.encode(ids), steps=8)
            assert worst < TOLERANCE[mode], (mode, worst)
            assert cache < 0.05, (mode, cache)
    finally:
        native.use_kernels("auto")


def test_the_kernel_sets_give_the_same_logits():
    # The integer block sums are exact in every set, and every set, the plain C reference included, scales
    # and adds them with the same float32 operations in the same order: the same bits.
    ids = list(range(700, 716))
    for mode in ("int8", "int4"):
        loaded = load_model(None, device="cpu", precision=mode)
        decoder = native.NativeDecoder.for_model(loaded.model)
        logits = {}
        try:
            for kernel_set in native.kernel_sets():
                native.use_kernels(kernel_set)
                cache = loaded.model.new_cache(1, 32)
                with torch.inference_mode():
                    logits[kernel_set] = torch.stack([decoder.step(t, pos, cache) for pos, t in enumerate(ids)])
        finally:
            native.use_kernels("auto")
        reference = logits.pop("reference")
        assert logits and all(torch.equal(got, reference) for got in logits.values()), mode


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump")
def test_one_build_runs_on_any_avx2_cpu():
    # AVX-512 instructions (zmm registers, mask registers, the upper 16 vector registers, VNNI's dot
    # products) appear only in the kernels chosen at run time by what the CPU reports, never in code every
    # CPU runs.
    import re

    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(native.LIBRARY)], capture_output=True,
                             text=True, check=True).stdout
    function, users = None, set()
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if header:
            function = header.group(1)
        elif re.search(r"zmm|%k[0-7]|[xy]mm(1[6-9]|2[0-9]|3[01])\b|vpdpbusd", line):
            users.add(function)
    assert users and all("avx512" in name for name in users), users


def test_an_environment_variable_forces_a_kernel_set():
    code = "from engine.core import native; print(native.kernels(), ' '.join(native.kernel_sets()))"
    run = lambda value: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       env={**os.environ, "GPT2_DESKTOP_CPU": value})
    forced = run("avx2")
    assert forced.stdout.split()[0] == "avx2" and forced.stderr == ""
    best = run("auto").stdout.split()
    assert best[0] == best[1]  # auto: the first, best, set this CPU runs
    unknown = run("sse2")
    assert unknown.stdout.split()[0] == best[0]
    assert "GPT2_DESKTOP_CPU=sse2 is not one of this CPU's kernel sets" in unknown.stderr


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_any_thread_count_gives_the_same_logits(threads):
    loaded = load_model(None, device="cpu", precision="int8")
    ids = list(range(300, 340))
    worst, _ = compare_steps(loaded, ids, steps=3, threads=threads)
    assert worst < TOLERANCE["int8"], worst


@pytest.mark.parametrize("mode", MODES)
def test_generation_through_the_step_equals_pytorch_generation(mode, tiny_model_dir):
    loaded = load_model(tiny_model_dir, device="cpu", precision=mode)
    settings = SamplingSettings(temperature=0.8, top_k=40, seed=7, max_new_tokens=40)
    fast, plain = Generator(loaded), Generator(loaded, native=False)
    assert fast.native is not None and plain.native is None
    a = list(fast.stream("The river", settings))[-1]
    b = list(plain.stream("The river", settings))[-1]
    if mode in ("float32", "float16"):
        assert a.token_ids == b.token_ids
    else:  # sampled from logits that differ by bfloat16 roundings: mostly, not always, the same
        same = sum(x == y for x, y in zip(a.token_ids, b.token_ids))
        assert same >= len(b.token_ids) // 2, (a.token_ids, b.token_ids)


def test_float32_logits_are_the_same_bits_with_any_thread_count():
    # Threads share a product chunk by chunk, and whichever thread computes a chunk runs the same code on
    # the same numbers: the logits do not depend on the thread count, nor on which thread did what.
    loaded = load_model(None, device="cpu", precision="float32")
    decoder = native.NativeDecoder.for_model(loaded.model)
    ids = list(range(500, 520))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 2):
            torch.set_num_threads(threads)
            cache = loaded.model.new_cache(1, 64)
            with torch.inference_mode():
                results.append(torch.stack([decoder.step(t, pos, cache) for pos, t in enumerate(ids)]))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert torch.equal(other, results[0])


def test_window_slides_through_the_step(tiny_model_dir):
    # 128-position window: generating past it rebuilds the cache with PyTorch, then decodes on.
    loaded = load_model(tiny_model_dir, device="cpu")
    settings = SamplingSettings(temperature=0, max_new_tokens=200)
    a = list(Generator(loaded).stream("Hello", settings))[-1]
    b = list(Generator(loaded, native=False).stream("Hello", settings))[-1]
    assert len(a.token_ids) == 200 or a.stop_reason == "eos"
    assert a.token_ids == b.token_ids


def test_out_of_range_token_or_position_is_refused(tiny):
    decoder = native.NativeDecoder.for_model(tiny.model)
    cache = tiny.model.new_cache(1, 16)
    with pytest.raises(ValueError):
        decoder.step(tiny.config.vocab_size, 0, cache)
    with pytest.raises(ValueError):
        decoder.step(1, 16, cache)


def test_can_be_switched_off():
    code = "from engine.core import native; print(native.available())"
    env = {**os.environ, "GPT2_DESKTOP_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_failed_build_says_why_and_keeps_the_library(tmp_path):
    with pytest.raises(RuntimeError, match="failed"):
        native.build(tmp_path / "x.so", compiler="false")
    assert not (tmp_path / "x.so").exists()


def built_directly(folder):
    from engine.core.checkpoint import build_model, read_state_dict, weight_files
    from engine.core.config import load_config

    return build_model(load_config(folder), read_state_dict(weight_files(folder)), torch.float32, "cpu")


@pytest.mark.parametrize("layout", ["checkpoint", "transposed-head"])
def test_step_reads_float32_models_in_the_pytorch_layouts(layout, tiny_model_dir):
    # Conv1D [in, out] projections; the head as F.linear over the embedding, or stored [in, vocab].
    from types import SimpleNamespace

    from engine.core.forms import use_transposed_head

    net = built_directly(tiny_model_dir)
    if layout == "transposed-head":
        use_transposed_head(net)
    ids = list(range(1000, 1030))
    worst, cache = compare_steps(SimpleNamespace(model=net), ids, steps=5)
    assert worst < TOLERANCE["float32"], worst


@pytest.fixture
def without_library(monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_NATIVE", "0")
    native.library.cache_clear()
    yield
    monkeypatch.undo()
    native.library.cache_clear()


def test_without_the_library_decoding_stays_in_pytorch_with_the_same_tokens(tiny_model_dir, without_library):
    from engine.core.forms import Float32Linear, TransposedHead

    plain = load_model(tiny_model_dir, device="cpu")
    assert isinstance(plain.model.head, TransposedHead) and Generator(plain).native is None
    settings = SamplingSettings(temperature=0, max_new_tokens=30)
    expected = list(Generator(plain).stream("Hello there", settings))[-1].token_ids
    native.library.cache_clear()
    os.environ.pop("GPT2_DESKTOP_NATIVE")
    fast = load_model(tiny_model_dir, device="cpu")
    assert isinstance(fast.model.h[0].mlp.c_fc, Float32Linear) and Generator(fast).native is not None
    assert list(Generator(fast).stream("Hello there", settings))[-1].token_ids == expected


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_the_step_gives_the_argmax_and_logsumexp_of_its_logits(mode):
    # Greedy decoding and each token's log-probability read these instead of a pass over the vocabulary.
    loaded = load_model(None, device="cpu", precision=mode)
    decoder = native.NativeDecoder.for_model(loaded.model)
    cache = loaded.model.new_cache()
    with torch.inference_mode():
        for pos, token in enumerate(loaded.tokenizer.encode("Once upon a time there was a fox")):
            logits = decoder.step(token, pos, cache)
            argmax, logsumexp = decoder.summary(logits)
            assert argmax == int(torch.argmax(logits))
            assert abs(logsumexp - float(torch.logsumexp(logits, 0))) < 1e-4
            assert decoder.summary(logits.clone()) is None  # only for the logits it returned


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_one_row_and_a_batch_through_the_compiled_library_match_pytorch(mode):
    # PyTorch's path for int8/int4 (a prompt, the head after it) calls the library for one row (its integer
    # kernels) and for a batch's float32 weights: the same values as forms' own dequantisation.
    loaded = load_model(None, device="cpu", precision=mode)
    for module in (loaded.model.head, loaded.model.h[0].mlp.c_fc):
        weights = module.dequantize(module.qweight, module.scale, module.out_features)
        assert torch.equal(native.dequantize(module), weights)
        x = torch.randn(weights.shape[1], generator=torch.Generator().manual_seed(0))
        want = torch.nn.functional.linear(forms.quantize_input(x[None]), weights, module.bias)[0]
        got = native.matvec(module, x)
        assert float((got - want).abs().max() / want.std()) < 1e-4

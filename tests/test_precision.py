"""Precision modes: every one generates, reduced ones stay within their documented error of float32,
prepared copies are reused and rebuilt when the source changes, and threads default to the cores."""

import json
import os
import subprocess
import sys

import pytest
import torch

from engine import SamplingSettings, load_model
from engine.core.device import physical_cores, set_threads
from engine.errors import SettingsError
from engine.inference.generate import Generator
from engine.store.local import embedded_model_folder
from engine.core.forms import decode_weight_bytes
from engine.core.precisions import NAMES as MODES, PREPARED as REDUCED

# Documented error against float32 on the embedded model over its model card's text:
# the largest logit difference in units of the logits' standard deviation, and top-1 agreement.
MAX_ERROR = {"float16": 0.01, "bfloat16": 0.15, "int8": 0.3, "int4": 1.8}
MIN_AGREEMENT = {"float16": 0.995, "bfloat16": 0.96, "int8": 0.95, "int4": 0.85}


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def card_ids(loaded) -> list[int]:
    text = (embedded_model_folder() / "README.md").read_text(encoding="utf-8")
    return loaded.tokenizer.encode(text)[: loaded.config.n_positions]


@pytest.mark.parametrize("mode", MODES)
def test_every_precision_generates(mode, tiny_model_dir):
    loaded = load_model(tiny_model_dir, device="cpu", precision=mode)
    assert loaded.precision == mode
    done = list(Generator(loaded).stream("Hello", SamplingSettings(temperature=0, max_new_tokens=12)))[-1]
    assert done.stop_reason in ("length", "eos") and len(done.token_ids) >= 1


@pytest.mark.parametrize("mode", REDUCED)
def test_reduced_logits_stay_within_their_documented_error(mode):
    reference = load_model(None, device="cpu", precision="float32")
    reduced = load_model(None, device="cpu", precision=mode)
    ids = torch.tensor([card_ids(reference)])
    with torch.inference_mode():
        ref, out = reference.model(ids), reduced.model(ids)
    error = float((out - ref).abs().max() / ref.std())
    agreement = float((out.argmax(-1) == ref.argmax(-1)).float().mean())
    assert error < MAX_ERROR[mode], error
    assert agreement >= MIN_AGREEMENT[mode], agreement
    assert error > 0  # the weights really are in another precision


def test_reduced_precisions_read_fewer_weight_bytes(tiny_model_dir):
    sizes = {m: decode_weight_bytes(load_model(tiny_model_dir, device="cpu", precision=m).model) for m in MODES}
    assert sizes["float16"] == sizes["bfloat16"] == sizes["float32"] // 2
    assert sizes["int8"] < sizes["float32"] // 3
    assert sizes["int4"] < sizes["int8"]


def test_prepared_copy_is_reused_then_rebuilt_when_the_source_changes(tmp_path, tiny_model_dir, data_dir):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    first = load_model(folder, device="cpu", precision="int8")
    assert first.prepared_now and first.prepared_path.parent == data_dir / "prepared"
    stamp = first.prepared_path.stat().st_mtime_ns

    again = load_model(folder, device="cpu", precision="int8")
    assert not again.prepared_now and again.prepared_path == first.prepared_path
    assert again.prepared_path.stat().st_mtime_ns == stamp

    weights = folder / "model.safetensors"
    os.utime(weights, ns=(stamp + 10**9, stamp + 10**9))  # the source was replaced
    changed = load_model(folder, device="cpu", precision="int8")
    assert changed.prepared_now and changed.prepared_path != first.prepared_path
    assert not first.prepared_path.exists()  # the stale copy is gone
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        assert torch.equal(changed.model(ids), again.model(ids))


def test_damaged_prepared_copy_is_made_again(tiny_model_dir):
    first = load_model(tiny_model_dir, device="cpu", precision="float16")
    first.prepared_path.write_bytes(first.prepared_path.read_bytes()[:1000])
    again = load_model(tiny_model_dir, device="cpu", precision="float16")
    assert again.prepared_now
    done = list(Generator(again).stream("Hi", SamplingSettings(temperature=0, max_new_tokens=4)))[-1]
    assert done.token_ids


def test_prepared_copy_holds_only_safetensors(tiny_model_dir, data_dir):
    load_model(tiny_model_dir, device="cpu", precision="int8")
    files = list((data_dir / "prepared").iterdir())
    assert files and all(f.suffix == ".safetensors" for f in files)


def test_int8_on_cuda_and_unknown_precisions_are_refused():
    with pytest.raises(SettingsError, match="int8"):
        from engine.core.precisions import resolve

        resolve("int8", "cuda")
    with pytest.raises(SettingsError, match="Unknown dtype"):
        resolve("int3", "cpu")


def test_threads_default_to_physical_cores():
    before = torch.get_num_threads()
    try:
        assert set_threads(None) == physical_cores() == torch.get_num_threads()
        assert set_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(SettingsError):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_cli_generate_in_int8_json(tiny_model_dir, data_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "app.main", "generate", "--model", str(tiny_model_dir), "--prompt", "Hi",
         "--max-new-tokens", "5", "--temperature", "0", "--dtype", "int8", "--threads", "1", "--json"],
        capture_output=True, text=True, env={**os.environ, "GPT2_DESKTOP_DATA_DIR": str(data_dir)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done["done"] and len(done["token_ids"]) == 5 and done["tokens_per_second"] > 0


def test_bench_reports_bandwidth_startup_and_quality(tiny_model_dir, data_dir, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text((embedded_model_folder() / "README.md").read_text(encoding="utf-8")[:3000], encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "app.main", "bench", "--model", str(tiny_model_dir), "--against", "none",
         "--dtype", "int8", "--new-tokens", "8", "--prefill-tokens", "32", "--repeats", "1", "--threads", "1",
         "--quality-text", str(text), "--json"],
        capture_output=True, text=True, env={**os.environ, "GPT2_DESKTOP_DATA_DIR": str(data_dir)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = report["ours"]["int8"]
    assert ours["decode_tok_s"] > 0 and ours["weight_gb_s"] > 0 and ours["peak_rss_mb"] > 0
    assert report["read_gb_s"] > 0
    assert set(report["startup_s"]) == {"embedded float32", "tiny int8"}
    quality = report["quality"]["int8"]
    assert 50 < quality["top1_agreement_pct"] <= 100 and abs(quality["bpb_change_pct"]) < 10


def test_fixed_shape_decode_step_equals_the_ordinary_one(tiny):
    """GPT.decode_static (what a CUDA graph captures) gives the ordinary cached step's logits."""
    model = tiny.model
    ids = [5, 17, 300, 42, 7, 99]
    with torch.inference_mode():
        ordinary = model.new_cache(1, 32)
        static = model.new_cache(1, 32, zeroed=True)
        model(torch.tensor([ids[:2]]), ordinary, 0)
        model(torch.tensor([ids[:2]]), static, 0)
        for pos in range(2, len(ids)):
            expected = model(torch.tensor([[ids[pos]]]), ordinary, pos)[0, -1]
            got = model.decode_static(torch.tensor([[ids[pos]]]), static, torch.tensor([pos]))[0, -1]
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_decoding_gives_the_same_tokens(tiny_model_dir):
    assert load_model(tiny_model_dir, device="cuda").precision == "float16"  # the CUDA default
    loaded = load_model(tiny_model_dir, device="cuda", precision="float32")  # exact enough to compare tokens
    greedy = SamplingSettings(temperature=0, max_new_tokens=40)
    graphed = Generator(loaded)
    plain = Generator(loaded, cuda_graph=False)
    first = list(graphed.stream("Hello there", greedy))[-1]
    assert graphed._graphed is not None  # the graph was captured and used
    assert first.token_ids == list(plain.stream("Hello there", greedy))[-1].token_ids
    assert list(graphed.stream("Hello there", greedy))[-1].token_ids == first.token_ids  # replayed again


def test_prepared_copy_missing_a_tensor_is_made_again(tiny_model_dir):
    from safetensors.torch import load_file, save_file

    first = load_model(tiny_model_dir, device="cpu", precision="int8")
    tensors = load_file(first.prepared_path)
    del tensors["h.1.mlp.c_fc.qweight"]
    save_file(tensors, first.prepared_path)
    again = load_model(tiny_model_dir, device="cpu", precision="int8")
    assert again.prepared_now and again.prepared_path == first.prepared_path


def test_two_folders_with_the_same_name_keep_their_own_copies(tmp_path, tiny_model_dir):
    import shutil

    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    shutil.copytree(tiny_model_dir, a)
    shutil.copytree(tiny_model_dir, b)
    first = load_model(a, device="cpu", precision="bfloat16")
    load_model(b, device="cpu", precision="bfloat16")
    assert not load_model(a, device="cpu", precision="bfloat16").prepared_now
    assert first.prepared_path.exists()

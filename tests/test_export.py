"""Exports: a merged Hugging Face folder that transformers loads, and GGUF files laid out as llama.cpp's
GPT-2 loader expects (read back with the gguf package's own reader)."""

import json

import numpy as np
import pytest
import torch

from engine import load_model
from engine.tooling.train import TrainSettings, train
from tests.helpers import TINY, cli, make_model_folder
from tests.helpers import story_text

gguf = pytest.importorskip("gguf")


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path_factory.getbasetemp() / "export-data"))


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_dir):
    text = tmp_path_factory.mktemp("text") / "mine.txt"
    text.write_text(story_text(200, seed=3), encoding="utf-8")
    return train(tmp_path_factory.mktemp("lora") / "run",
                 TrainSettings(data=str(text), init=str(tiny_model_dir), steps=6, context_window=32, batch_size=4,
                               eval_every=6, eval_batches=1, warmup=1, lr=1e-2, min_lr=1e-3, lora=4),
                 say=lambda m: None)


@pytest.fixture(scope="module")
def gguf_f16(tmp_path_factory, tiny_model_dir):
    path = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    result = cli("export", "--model", str(tiny_model_dir), "--gguf", str(path))
    assert result.returncode == 0, result.stderr
    return gguf.GGUFReader(str(path))


def field(reader, key):
    return reader.fields[key].contents()


def hf_weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_merged_folder_loads_in_transformers_with_the_adapters_logits(adapter, tiny_model_dir, tmp_path):
    from transformers import GPT2LMHeadModel

    out = tmp_path / "merged"
    result = cli("export", "--model", str(tiny_model_dir), "--adapter", str(adapter), "--out", str(out))
    assert result.returncode == 0, result.stderr
    ids = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = GPT2LMHeadModel.from_pretrained(out).eval()(ids).logits
        ours = load_model(tiny_model_dir, device="cpu", precision="float32", adapter=adapter).model(ids)
        base = load_model(tiny_model_dir, device="cpu", precision="float32").model(ids)
    assert torch.allclose(theirs, ours, atol=1e-4, rtol=1e-5)
    assert (theirs - base).abs().max() > 1e-3
    assert load_model(out, device="cpu").tokenizer.encode("The fox") == load_model(tiny_model_dir).tokenizer.encode("The fox")


def test_gguf_metadata_is_what_llama_cpp_reads(gguf_f16):
    r = gguf_f16
    assert field(r, "general.architecture") == "gpt2"
    assert field(r, "gpt2.context_length") == TINY["n_positions"]
    assert field(r, "gpt2.embedding_length") == TINY["n_embd"]
    assert field(r, "gpt2.feed_forward_length") == 4 * TINY["n_embd"]
    assert field(r, "gpt2.block_count") == TINY["n_layer"]
    assert field(r, "gpt2.attention.head_count") == TINY["n_head"]
    assert field(r, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16


def test_gguf_tokenizer_is_gpt2s(gguf_f16, tiny_model_dir):
    r = gguf_f16
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = field(r, "tokenizer.ggml.tokens")
    vocab = json.loads((tiny_model_dir / "vocab.json").read_text())
    assert len(tokens) == 50257 and all(tokens[i] == t for t, i in list(vocab.items())[:2000])
    types = field(r, "tokenizer.ggml.token_type")
    assert types[50256] == gguf.TokenType.CONTROL and types[464] == gguf.TokenType.NORMAL
    merges = field(r, "tokenizer.ggml.merges")
    lines = [line for line in (tiny_model_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#version")]
    assert merges[:100] == lines[:100] and len(merges) == len(lines)
    assert field(r, "tokenizer.ggml.bos_token_id") == 50256 and field(r, "tokenizer.ggml.eos_token_id") == 50256


def expected_gguf_names(n_layer: int, with_output: bool = False) -> set[str]:
    names = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias"}
    for i in range(n_layer):
        for part in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"):
            names |= {f"blk.{i}.{part}.weight", f"blk.{i}.{part}.bias"}
    return names | ({"output.weight"} if with_output else set())


def test_gguf_f16_tensors_have_llama_cpp_names_shapes_and_values(gguf_f16, tiny_model_dir):
    tensors = {t.name: t for t in gguf_f16.tensors}
    assert set(tensors) == expected_gguf_names(TINY["n_layer"])
    hf = hf_weights(tiny_model_dir)
    C = TINY["n_embd"]
    pairs = {"token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
             "output_norm.bias": "transformer.ln_f.bias"}
    for i in range(TINY["n_layer"]):
        pairs |= {f"blk.{i}.attn_qkv.weight": f"transformer.h.{i}.attn.c_attn.weight",
                  f"blk.{i}.attn_qkv.bias": f"transformer.h.{i}.attn.c_attn.bias",
                  f"blk.{i}.attn_output.weight": f"transformer.h.{i}.attn.c_proj.weight",
                  f"blk.{i}.ffn_up.weight": f"transformer.h.{i}.mlp.c_fc.weight",
                  f"blk.{i}.ffn_down.weight": f"transformer.h.{i}.mlp.c_proj.weight",
                  f"blk.{i}.attn_norm.weight": f"transformer.h.{i}.ln_1.weight"}
    for name, source in pairs.items():
        t, w = tensors[name], hf[source]
        if w.dim() == 2 and name != "token_embd.weight" and name != "position_embd.weight":
            w = w.t()  # Conv1D [in, out] -> GGUF rows are outputs
        # The reader gives ggml's order (innermost first): [in, out] for a matrix stored [out, in].
        assert list(t.shape) == list(reversed(w.shape)), name
        if w.dim() == 1 or name == "position_embd.weight":
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, name
            assert np.array_equal(np.asarray(t.data).reshape(w.shape), w.numpy()), name
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.F16, name
            assert np.array_equal(np.asarray(t.data).reshape(w.shape), w.numpy().astype(np.float16)), name
    assert list(tensors["blk.0.ffn_up.weight"].shape) == [C, 4 * C]


def test_gguf_q8_0_with_an_adapter(adapter, tiny_model_dir, tmp_path):
    from gguf.quants import dequantize

    path = tmp_path / "tiny-q8.gguf"
    result = cli("export", "--adapter", str(adapter), "--gguf", str(path), "--type", "q8_0")
    assert result.returncode == 0, result.stderr
    r = gguf.GGUFReader(str(path))
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    tensors = {t.name: t for t in r.tensors}
    assert tensors["position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    qkv = tensors["blk.1.attn_qkv.weight"]
    assert qkv.tensor_type == gguf.GGMLQuantizationType.Q8_0
    merged = tmp_path / "merged"
    assert cli("export", "--adapter", str(adapter), "--out", str(merged)).returncode == 0
    w = hf_weights(merged)["transformer.h.1.attn.c_attn.weight"].t().numpy()
    values = dequantize(np.asarray(qkv.data), gguf.GGMLQuantizationType.Q8_0).reshape(w.shape)
    assert np.abs(values - w).max() <= np.abs(w).max() / 127 + 1e-6
    assert not (hf_weights(tiny_model_dir)["transformer.h.1.attn.c_attn.weight"].t().numpy() == w).all()


def test_an_untied_head_is_written_as_output(tmp_path):
    folder = make_model_folder(tmp_path / "untied", tie_word_embeddings=False, **TINY)
    path = tmp_path / "untied.gguf"
    assert cli("export", "--model", str(folder), "--gguf", str(path)).returncode == 0
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert names == expected_gguf_names(TINY["n_layer"], with_output=True)


def test_export_refuses_to_overwrite_and_says_so_in_one_line(gguf_f16, tiny_model_dir, tmp_path):
    existing = tmp_path / "there.gguf"
    existing.write_bytes(b"x")
    result = cli("export", "--model", str(tiny_model_dir), "--gguf", str(existing))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and existing.read_bytes() == b"x"
    result = cli("export", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--type", "q8_0")
    assert result.returncode == 2 and "--type is for --gguf" in result.stderr
    assert not list(tmp_path.glob("*.partial"))

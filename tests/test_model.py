"""The engine's GPT-2 against transformers' GPT2LMHeadModel on the same weights."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers import make_model_folder
from engine import Generator, SamplingSettings, load_model

PROMPTS = ["Once upon a time there was a little fox who", "The quick brown fox 🙂 jumps over the lazy dog."]


def greedy(loaded, prompt_ids, n):
    events = list(Generator(loaded).stream(prompt_ids, SamplingSettings(temperature=0, max_new_tokens=n)))
    return events[-1].token_ids


def hf_greedy(hf, prompt_ids, n):
    out = hf.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=n, pad_token_id=50256)
    return out[0, len(prompt_ids) :].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tiny_logits_match_transformers(tiny, tiny_hf, prompt):
    ids = torch.tensor([tiny.tokenizer.encode(prompt)])
    with torch.no_grad():
        expected = tiny_hf(ids).logits
    assert torch.allclose(tiny.model(ids), expected, atol=1e-4, rtol=0)


def test_tiny_greedy_64_tokens_match_transformers(tiny, tiny_hf):
    ids = tiny.tokenizer.encode(PROMPTS[0])
    assert greedy(tiny, ids, 64) == hf_greedy(tiny_hf, ids, 64)


def test_cached_decoding_equals_full_recomputation(tiny):
    ids = tiny.tokenizer.encode(PROMPTS[1])
    full = tiny.model(torch.tensor([ids]))[0]
    cache = tiny.model.new_cache()
    prefix = 5
    stepped = [tiny.model(torch.tensor([ids[:prefix]]), cache, 0)[0]]
    for pos in range(prefix, len(ids)):
        stepped.append(tiny.model(torch.tensor([[ids[pos]]]), cache, pos)[0])
    assert torch.allclose(torch.cat(stepped), full, atol=1e-5, rtol=0)


def test_chunk_after_cached_prefix_equals_full(tiny):
    ids = tiny.tokenizer.encode(PROMPTS[0])
    full = tiny.model(torch.tensor([ids]))[0]
    cache = tiny.model.new_cache()
    first = tiny.model(torch.tensor([ids[:4]]), cache, 0)[0]
    rest = tiny.model(torch.tensor([ids[4:]]), cache, 4)[0]
    assert torch.allclose(torch.cat([first, rest]), full, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_124m_logits_and_greedy_match_transformers(model_124m_dir):
    from transformers import GPT2LMHeadModel

    ours = load_model(model_124m_dir, device="cpu")
    hf = GPT2LMHeadModel.from_pretrained(model_124m_dir).eval()
    ids = ours.tokenizer.encode(PROMPTS[0])
    with torch.no_grad():
        expected = hf(torch.tensor([ids])).logits
    assert torch.allclose(ours.model(torch.tensor([ids])), expected, atol=1e-4, rtol=0)
    assert greedy(ours, ids, 64) == hf_greedy(hf, ids, 64)


# gpt2, gpt2-medium, gpt2-large, gpt2-xl (distilgpt2 and DialoGPT share these widths); one layer each
# keeps the test small while exercising every width and head count.
SHAPES = {
    "gpt2": dict(n_embd=768, n_head=12),
    "gpt2-medium": dict(n_embd=1024, n_head=16),
    "gpt2-large": dict(n_embd=1280, n_head=20),
    "gpt2-xl": dict(n_embd=1600, n_head=25),
}


@pytest.mark.parametrize("name", SHAPES)
def test_every_gpt2_family_width_loads_and_matches(tmp_path, name):
    from transformers import GPT2LMHeadModel

    folder = make_model_folder(tmp_path / name, n_layer=1, n_positions=128, **SHAPES[name])
    ours = load_model(folder, device="cpu")
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.tensor([ours.tokenizer.encode(PROMPTS[1])])
    with torch.no_grad():
        expected = hf(ids).logits
    assert torch.allclose(ours.model(ids), expected, atol=1e-4, rtol=0)


def _compare_with_hf(folder, hf_folder=None):
    from transformers import GPT2LMHeadModel

    ours = load_model(folder, device="cpu")
    hf = GPT2LMHeadModel.from_pretrained(hf_folder or folder).eval()
    ids = torch.tensor([ours.tokenizer.encode(PROMPTS[0])])
    with torch.no_grad():
        expected = hf(ids).logits
    assert torch.allclose(ours.model(ids), expected, atol=1e-4, rtol=0)


def test_names_without_transformer_prefix_and_mask_buffers(tmp_path, tiny_model_dir):
    """The layout of the original openai-community/gpt2 safetensors: bare names, attn.bias buffers, no lm_head."""
    state = load_file(tiny_model_dir / "model.safetensors")
    bare = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    n_pos = json.loads((tiny_model_dir / "config.json").read_text())["n_positions"]
    for i in range(2):
        bare[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, n_pos, n_pos))
    folder = tmp_path / "bare"
    folder.mkdir()
    save_file(bare, folder / "model.safetensors")
    for name in ("config.json", "vocab.json", "merges.txt"):
        (folder / name).write_bytes((tiny_model_dir / name).read_bytes())
    _compare_with_hf(folder, hf_folder=tiny_model_dir)


def test_sharded_safetensors(tmp_path):
    from transformers import GPT2LMHeadModel

    folder = make_model_folder(tmp_path / "src", n_embd=32, n_layer=2, n_head=4, n_positions=64)
    GPT2LMHeadModel.from_pretrained(folder).save_pretrained(tmp_path / "sharded", max_shard_size="1MB")
    sharded = tmp_path / "sharded"
    assert (sharded / "model.safetensors.index.json").is_file()
    for name in ("vocab.json", "merges.txt"):
        (sharded / name).write_bytes((folder / name).read_bytes())
    _compare_with_hf(sharded)


def test_untied_output_head(tmp_path):
    folder = make_model_folder(tmp_path / "untied", n_embd=32, n_layer=2, n_head=4, n_positions=64,
                               tie_word_embeddings=False)
    assert "lm_head.weight" in load_file(folder / "model.safetensors")
    assert not load_model(folder).config.tie_word_embeddings
    _compare_with_hf(folder)


def test_tokenizer_json_only_folder(tmp_path):
    folder = make_model_folder(tmp_path / "tj", tokenizer_json=True, n_embd=32, n_layer=1, n_head=4, n_positions=64)
    assert not (folder / "vocab.json").exists()
    _compare_with_hf(folder)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_generates_close_logits(tiny_model_dir, tiny, dtype):
    reduced = load_model(tiny_model_dir, device="cpu", precision=dtype)
    ids = torch.tensor([tiny.tokenizer.encode(PROMPTS[0])])
    ref = torch.log_softmax(tiny.model(ids), -1)
    got = torch.log_softmax(reduced.model(ids).float(), -1)
    assert (got - ref).abs().max() < 0.5  # 16-bit rounding of weights and activations
    done = list(Generator(reduced).stream("Hello", SamplingSettings(max_new_tokens=8, seed=1)))[-1]
    assert len(done.token_ids) >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_float16_greedy_is_close_to_cpu(tiny_model_dir, tiny):
    gpu = load_model(tiny_model_dir, device="auto")
    assert gpu.device == "cuda" and gpu.dtype == torch.float16
    ids = tiny.tokenizer.encode(PROMPTS[0])
    logits = gpu.model(torch.tensor([ids], device="cuda")).float().cpu()
    assert torch.allclose(torch.log_softmax(logits, -1), torch.log_softmax(tiny.model(torch.tensor([ids])), -1), atol=0.1)
    assert len(greedy(gpu, ids, 16)) == 16

"""The model shipped in assets/: found through importlib.resources, small, and writing English."""

import re

from engine import Generator, SamplingSettings, load_model
from engine.store.local import embedded_model_folder
from tests.helpers import cli


def test_embedded_model_is_shipped_small_and_documented():
    folder = embedded_model_folder()
    assert folder is not None
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size <= 40 * 1024 * 1024
    card = (folder / "README.md").read_text()
    for fact in ("Parameters", "Tokenizer", "Tokens seen", "bits per byte", "gzip -9", "xz -9", "Licence"):
        assert fact in card


def test_embedded_model_is_the_default_and_writes_words():
    loaded = load_model()
    assert loaded.folder == embedded_model_folder()
    done = list(Generator(loaded).stream("Once upon a time", SamplingSettings(temperature=0, max_new_tokens=40)))[-1]
    words = re.findall(r"[A-Za-z']+", done.text)
    assert len(words) >= 15
    common = {"the", "and", "a", "to", "of", "was", "he", "she", "in", "it", "that", "there", "they", "her", "his"}
    assert sum(w.lower() in common for w in words) >= 4, done.text


def test_embedded_model_loads_in_transformers():
    import torch
    from transformers import GPT2LMHeadModel

    loaded = load_model()
    hf = GPT2LMHeadModel.from_pretrained(loaded.folder).eval()
    ids = torch.tensor([loaded.tokenizer.encode("The fox and the crow")])
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids), hf(ids).logits, atol=1e-4)


def test_cli_without_model_uses_the_embedded_one():
    result = cli("generate", "--prompt", "Once upon a time", "--max-new-tokens", "60")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) >= 20


def test_version_comes_from_the_package():
    from importlib.metadata import version

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"gpt2-desktop {version('gpt2-desktop')}"

"""One name for each model everywhere: the embedded model is tales-7m in `models list`, `models remove`, the
names of models fine-tuned from it, the export's README and GGUF `general.name`; "embedded" is still taken
for it. Through the installed command, on a fresh data folder."""

from __future__ import annotations

import json

import pytest

from engine import load_model
from engine.store.local import embedded_model_folder, find_local, local_models, resolve_model
from engine.tooling.train import TrainSettings, train
from tests.helpers import cli
from tests.helpers import story_text

NAME = "tales-7m"


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    env = {"GPT2_DESKTOP_DATA_DIR": str(tmp_path / "data"), "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="module")
def embedded_adapter(tmp_path_factory):
    """A LoRA run on the embedded model, trained in a few steps, as the Fine-tune view starts one (--init embedded,
    the name earlier versions wrote)."""
    text = tmp_path_factory.mktemp("text") / "letters.txt"
    text.write_text(story_text(120, seed=5), encoding="utf-8")
    run = tmp_path_factory.mktemp("lora") / "letters"
    train(run, TrainSettings(data=str(text), init="embedded", steps=2, context_window=32, batch_size=2,
                             eval_every=2, eval_batches=1, warmup=1, lr=1e-3, min_lr=1e-4, lora=2),
          device="cpu", say=lambda m: None)
    return run


def test_the_embedded_model_is_listed_and_loaded_as_tales_7m_and_embedded_is_still_taken(fresh):
    assert embedded_model_folder().name == NAME
    assert [m.name for m in local_models() if m.kind == "embedded"] == [NAME]
    assert find_local("embedded") == find_local(NAME)
    assert resolve_model("embedded") == resolve_model(NAME) == resolve_model(None) == (embedded_model_folder(), NAME)
    listing = cli("models", "list", env=fresh)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines() if line.startswith("  ")]
    assert [row[0] for row in rows if "embedded" in row[1:2]] == [NAME]
    assert not any(row[0] == "embedded" for row in rows)
    for name in (NAME, "embedded"):
        gone = cli("generate", "--model", name, "--prompt", "Once", "--max-new-tokens", "2", env=fresh)
        assert gone.returncode == 0, gone.stderr


@pytest.mark.parametrize("name", [NAME, "embedded"])
def test_models_remove_tales_7m_says_it_is_part_of_the_app(fresh, name):
    result = cli("models", "remove", name, "--yes", env=fresh)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert f"{NAME} is the embedded model" in result.stderr and "part of the app" in result.stderr
    assert "No model named" not in result.stderr
    assert embedded_model_folder() is not None


def test_a_name_that_is_not_a_model_here_is_not_called_a_folder(fresh):
    result = cli("generate", "--model", "tales-7m + wiggily", "--prompt", "Hi", env=fresh)
    assert result.returncode == 2 and "No model named tales-7m + wiggily" in result.stderr, result.stderr
    assert "No model folder" not in result.stderr


def test_a_fine_tune_of_the_embedded_model_goes_by_tales_7m_plus_its_name(fresh, embedded_adapter, tmp_path):
    config = json.loads((embedded_adapter / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == NAME  # a name this and later copies find, not "embedded"
    assert load_model(adapter=embedded_adapter, device="cpu").name == f"{NAME} + letters"
    assert load_model("embedded", adapter=embedded_adapter, device="cpu").name == f"{NAME} + letters"
    out = tmp_path / "merged"
    folder = cli("export", "--model", "embedded", "--adapter", str(embedded_adapter), "--out", str(out), env=fresh)
    assert folder.returncode == 0, folder.stderr
    assert f"{NAME} + letters, exported" in (out / "README.md").read_text()
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "letters.gguf"
    written = cli("export", "--adapter", str(embedded_adapter), "--gguf", str(path), env=fresh)
    assert written.returncode == 0, written.stderr
    assert gguf.GGUFReader(str(path)).fields["general.name"].contents() == f"{NAME} + letters"

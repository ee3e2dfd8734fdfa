"""Training: corpus cleaning, export through transformers, resume, learning, fine-tuning."""

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from engine import load_model
from engine.tooling.corpus import load_documents, normalise, split_documents, strip_gutenberg
from engine.tooling.train import TrainSettings, train
from tests.helpers import CLI, story_text


def book(title: str, body: str, marker: str = "*** ") -> str:
    return (f"\ufeffThe Project Gutenberg eBook of {title}\r\n\r\nlicence text\r\n"
            f"{marker}START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\r\n"
            f"{body.replace(chr(10), chr(13) + chr(10))}\r\n"
            f"{marker}END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\r\nfooter licence\r\n")


TINY_TRAIN = dict(vocab_size=300, n_layer=2, n_embd=32, n_head=4, context_window=32, batch_size=4, eval_every=10,
                  eval_batches=2, checkpoint_every=5, warmup=5, lr=3e-3, min_lr=3e-4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        marker = "***" if i == 3 else "*** "  # some books have no space after the asterisks
        (folder / f"{100 + i}.txt").write_text(book(f"Book {i}", story_text(80, seed=i), marker), encoding="utf-8")
    return folder


def test_gutenberg_header_and_footer_are_stripped(corpus):
    docs = load_documents(corpus)
    assert len(docs) == 4
    for d in docs:
        assert "licence" not in d.text and "START OF" not in d.text and "END OF" not in d.text
        assert "\r" not in d.text and "\ufeff" not in d.text
        assert d.text.startswith("The fox saw")


def test_paragraphs_are_unwrapped():
    assert normalise("one\r\ntwo\r\n\r\n\r\nthree\n  four  \n") == "one two\n\nthree four"
    assert strip_gutenberg("no markers here") == "no markers here"


def test_split_keeps_books_whole(corpus):
    docs = load_documents(corpus)
    train_docs, val_docs = split_documents(docs)
    assert val_docs and train_docs
    assert {d.name for d in train_docs}.isdisjoint({d.name for d in val_docs})
    assert sorted(d.name for d in train_docs + val_docs) == sorted(d.name for d in docs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    run = tmp_path_factory.mktemp("run") / "tiny"
    model = train(run, TrainSettings(data=str(corpus), steps=60, **TINY_TRAIN), say=lambda m: None)
    return run, model


def test_training_lowers_validation_loss(trained):
    run, _ = trained
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [entry["val_loss"] for entry in log if entry["step"] % 10 == 0 and entry["val_loss"] == entry["val_loss"]]
    assert len(vals) >= 5
    assert vals[-1] < vals[0] - 0.5


def test_export_round_trips_through_transformers(trained):
    from transformers import GPT2LMHeadModel

    _, folder = trained
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                                   "generation_config.json", "README.md"}
    ours = load_model(folder)
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.tensor([ours.tokenizer.encode("The fox saw the crow")])
    with torch.no_grad():
        assert torch.allclose(ours.model(ids), hf(ids).logits, atol=1e-4)
    assert ours.eos_ids == {0}


def test_resume_continues_with_identical_data_order(tmp_path, corpus):
    settings = TrainSettings(data=str(corpus), steps=12, **TINY_TRAIN)
    straight = train(tmp_path / "straight", settings, say=lambda m: None)
    assert train(tmp_path / "paused", settings, say=lambda m: None, pause_at=7) is None
    state = json.loads((tmp_path / "paused" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 7
    resumed = train(tmp_path / "paused", None, resume=True, say=lambda m: None)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_existing_run_is_not_overwritten(trained, corpus):
    from engine import SettingsError

    run, _ = trained
    with pytest.raises(SettingsError, match="--resume"):
        train(run, TrainSettings(data=str(corpus), steps=5, **TINY_TRAIN), say=lambda m: None)


def test_fine_tune_on_a_user_file_through_the_cli(trained, tmp_path):
    _, base = trained
    text = tmp_path / "mine.txt"
    text.write_text(story_text(200, seed=42).replace("fox", "badger"), encoding="utf-8")
    run = tmp_path / "ft"
    result = subprocess.run([CLI, "train", "--out", str(run), "--init", str(base), "--data", str(text), "--steps", "15",
                             "--batch-size", "4", "--eval-every", "5", "--eval-batches", "1", "--warmup", "3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    settings = json.loads((run / "settings.json").read_text())
    assert settings["warmup"] == 3 and settings["lr"] == 3e-4  # what was given stays; the rest is gentler
    tuned = load_model(run / "model")
    assert tuned.config.n_embd == 32 and tuned.tokenizer.encode("badger") == load_model(base).tokenizer.encode("badger")
    assert "step 15/15" in result.stderr


def test_train_cli_refuses_missing_data(tmp_path):
    result = subprocess.run([CLI, "train", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "nothing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "No training text" in result.stderr


def test_killed_training_saves_a_checkpoint_and_resumes(tmp_path, corpus):
    import signal
    import time

    run = tmp_path / "killed"
    args = [CLI, "train", "--out", str(run), "--data", str(corpus), "--steps", "100000", "--vocab-size", "300",
            "--n-layer", "1", "--n-embd", "32", "--n-head", "4", "--context", "32", "--batch-size", "2",
            "--checkpoint-every", "100000", "--eval-every", "100000"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "log.jsonl").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    step = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    assert step >= 10
    result = subprocess.run([CLI, "train", "--out", str(run), "--resume", "--data", str(corpus), "--steps",
                             str(step + 3)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resuming at step {step}" in result.stderr
    assert (run / "model" / "model.safetensors").is_file()

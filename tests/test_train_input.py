"""Training on bad input: empty, binary and non-UTF-8 files named (with the byte offset), text shorter
than one context window; nothing half-written is left behind (full disks: tests/test_train_recovery.py)."""

import pytest

from engine.errors import SettingsError
from engine.tooling.train import TrainSettings, train
from tests.helpers import cli
from tests.helpers import story_text

FAST = dict(context_window=32, batch_size=4, eval_every=5, eval_batches=1, checkpoint_every=5, warmup=2, lr=1e-2,
            min_lr=1e-3, lora=2)


def refused(tmp_path, tiny_model_dir, data, match):
    run = tmp_path / "run"
    with pytest.raises(SettingsError, match=match):
        train(run, TrainSettings(data=str(data), init=str(tiny_model_dir), steps=2, **FAST), say=lambda m: None)
    assert not run.exists()


def test_an_empty_file_is_named(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    refused(tmp_path, tiny_model_dir, empty, f"{empty} has no text")


def test_an_empty_file_in_a_folder_is_named(tmp_path, tiny_model_dir):
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text(story_text(100), encoding="utf-8")
    (books / "b.txt").write_text("\n\n  \n", encoding="utf-8")
    refused(tmp_path, tiny_model_dir, books, "b.txt has no text")


def test_a_binary_file_is_named_with_the_offset(tmp_path, tiny_model_dir):
    binary = tmp_path / "picture.txt"
    binary.write_bytes(b"GIF89a" + bytes(range(256)))
    refused(tmp_path, tiny_model_dir, binary, r"picture.txt looks like a binary file.*zero byte at offset 6")


def test_a_non_utf8_file_is_named_with_the_offset(tmp_path, tiny_model_dir):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"\xef\xbb\xbfna" + "caf\u00e9".encode("latin-1"))  # a byte-order mark, then Latin-1
    refused(tmp_path, tiny_model_dir, latin1, r"latin1.txt is not UTF-8 text: byte 0xe9 at offset 8")


def test_text_shorter_than_a_context_window_is_refused(tmp_path, tiny_model_dir):
    short = tmp_path / "short.txt"
    short.write_text("The fox saw the crow. " * 3, encoding="utf-8")
    refused(tmp_path, tiny_model_dir, short, "Too little text to train with a 32-token context")


def test_bad_text_through_the_cli_is_one_line_and_exit_2(tmp_path, tiny_model_dir):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9".encode("latin-1"))
    run = tmp_path / "run"
    result = cli("train", "--out", str(run), "--init", str(tiny_model_dir), "--data", str(latin1), "--lora", "4")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "byte 0xe9 at offset 3" in result.stderr and not run.exists()

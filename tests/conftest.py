"""Fixtures: real model folders written by transformers (random weights), loaded once per session; the
user's folders in tmp_path (`dirs`) and the real window on them (`open_window`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import GPT2_124M, TINY, make_model_folder

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models") / "tiny", **TINY)


@pytest.fixture(scope="session")
def wide_model_dir(tmp_path_factory) -> Path:
    """The tiny model with a 4,096-token window: for replies longer than tiny's 128 tokens."""
    return make_model_folder(tmp_path_factory.mktemp("models") / "tiny-wide", **{**TINY, "n_positions": 4096})


@pytest.fixture(scope="session")
def model_124m_dir(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models") / "gpt2-124M", **GPT2_124M)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    from engine import load_model

    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_hf(tiny_model_dir):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPT2_DESKTOP_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


@pytest.fixture
def show_window(qtbot):
    """`show(window, history, wait=True)`: the window shown and, unless not `wait`, its model loaded; at the
    test's end it is closed and its history with it."""
    windows = []

    def show(window, history, wait=True):
        qtbot.addWidget(window)
        window.show()
        windows.append((window, history))
        if wait:
            qtbot.waitUntil(lambda: window.model_info is not None, timeout=20000)
        return window

    yield show
    for window, history in windows:
        if window.isVisible():
            window.close()
        history.close()


@pytest.fixture
def open_window(show_window, dirs, tiny_model_dir, wide_model_dir):
    """A window on the tiny model (a 128-token window; `wide=True`: the same with 4,096, for longer replies,
    since max new tokens is bounded by the model's window)."""
    from app.history.store import History
    from app.settings import AppSettings
    from app.shell.window import MainWindow

    def make(model=str(tiny_model_dir), wait=True, wide=False, **settings):
        model = str(wide_model_dir) if wide else model
        history = History(dirs / "data" / "history.sqlite3")
        s = AppSettings(model=model, **{"temperature": 0.0, "max_new_tokens": 20, **settings})
        return show_window(MainWindow(history, s, dirs / "config" / "settings.json"), history, wait)

    return make

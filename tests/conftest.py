"""Fixtures: real model folders written by transformers (random weights), loaded once per session."""

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

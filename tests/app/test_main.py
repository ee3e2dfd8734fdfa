"""The entry point's own flags: --version from pyproject.toml, --self-test on the embedded model, the icon."""

import tomllib
from pathlib import Path

from app.identity import window_icon
from app.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_pyprojects(capsys):
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gpt2-desktop {expected}"


def test_self_test_opens_the_window_and_writes_a_reply(qapp, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPT2_DESKTOP_CONFIG_DIR", str(tmp_path / "config"))
    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert "self-test: window shown" in out and "model tales-7m" in out and out.rstrip().endswith("self-test: ok")
    assert not (tmp_path / "data").exists() and not (tmp_path / "config").exists()  # the user's files untouched


def test_window_icon_has_every_size(qapp):
    sizes = {size.width() for size in window_icon().availableSizes()}
    assert {16, 32, 48, 64, 128, 256} <= sizes

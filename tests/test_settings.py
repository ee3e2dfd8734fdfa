"""settings.json: a broken or hand-edited file never stops the window; old keys are migrated; the
defaults and choices are the engine's own (SamplingSettings, the precision registry)."""

from __future__ import annotations

import json

import pytest

from app.settings import AppSettings
from app.settings_panel import SettingsPanel
from engine.core import precisions
from engine.inference.settings import SamplingSettings


def test_defaults_are_the_engines():
    settings = AppSettings()
    engine = SamplingSettings()
    assert settings.sampling() == {k: getattr(engine, k) for k in settings.sampling()}
    assert settings.precision == precisions.AUTO


@pytest.mark.parametrize("bad", [
    {"seed": "7"}, {"seed": 7.5}, {"top_k": "40"}, {"top_k": True}, {"temperature": "hot"},
    {"max_new_tokens": None}, {"model": 3}, {"precision": "int3"}, {"device": "tpu"}, {"mode": 1},
    {"threads": [2]}, {"window_state": None},
])
def test_a_value_of_the_wrong_type_or_an_unknown_choice_gives_its_default(tmp_path, qtbot, bad):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"temperature": 1.25, **bad}))
    loaded = AppSettings.load(path)
    key = next(iter(bad))
    assert getattr(loaded, key) == getattr(AppSettings(), key)
    if key != "temperature":
        assert loaded.temperature == 1.25  # the rest of the file is kept
    panel = SettingsPanel(loaded, cuda_available=False, cpu_count=2)  # what raised at start-up before
    qtbot.addWidget(panel)
    again = AppSettings()
    panel.store(again)
    assert again.sampling() == loaded.sampling()


def test_whole_numbers_are_fine_floats_and_seed_may_be_null(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"temperature": 1, "seed": None, "top_k": 7}))
    loaded = AppSettings.load(path)
    assert loaded.temperature == 1 and loaded.seed is None and loaded.top_k == 7


def test_the_old_dtype_key_is_read_as_precision(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"dtype": "int8", "top_k": 3}))
    loaded = AppSettings.load(path)
    assert loaded.precision == "int8" and loaded.top_k == 3
    loaded.save(path)
    saved = json.loads(path.read_text())
    assert saved["precision"] == "int8" and "dtype" not in saved
    path.write_text(json.dumps({"dtype": "int8", "precision": "float16"}))  # the new key wins
    assert AppSettings.load(path).precision == "float16"


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '"a string"', "null"])
def test_a_broken_file_gives_the_defaults(tmp_path, text):
    path = tmp_path / "settings.json"
    path.write_text(text)
    assert AppSettings.load(path) == AppSettings()


def test_the_precision_box_offers_the_registry(qtbot):
    panel = SettingsPanel(AppSettings(), cuda_available=False, cpu_count=2)
    qtbot.addWidget(panel)
    settings = AppSettings()
    for name in precisions.CHOICES:
        panel.load(AppSettings(precision=name))
        panel.store(settings)
        assert settings.precision == name


def test_servers_are_kept_cleaned_and_their_keys_private(tmp_path):
    import json
    import stat

    from app.settings import AppSettings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"servers": {
        "http://gpu:8000/v1": {"key": "k", "models": ["gpt2", 3]},
        "file:///etc": {"key": "", "models": []},  # not a server address: dropped
        "http://other/v1": "not an entry"}}))
    settings = AppSettings.load(path)
    assert settings.servers == {"http://gpu:8000/v1": {"key": "k", "models": ["gpt2"]}}
    settings.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds API keys
    assert AppSettings.load(path).servers == settings.servers

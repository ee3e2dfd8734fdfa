"""settings.json: a broken or hand-edited file never stops the window; old keys are migrated; the
defaults and choices are the engine's own (SamplingSettings, the precision registry)."""

from __future__ import annotations

import json

import pytest

from app.settings import AppSettings
from app.shell.settings_panel import SettingsPanel
from engine.core import precisions
from engine.inference.settings import SamplingSettings


def test_defaults_are_the_engines():
    settings = AppSettings()
    engine = SamplingSettings()
    assert settings.sampling() == {k: list(getattr(engine, k)) if k == "stop" else getattr(engine, k)
                                   for k in settings.sampling()}
    assert set(settings.sampling()) == set(SamplingSettings.names()) - {"logit_bias"}  # every one the window has
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


# AppSettings.open: what the window starts with, and what its banner says about the file.

@pytest.mark.parametrize("write", [
    lambda path: path.write_text('{"temperature": 1.25, "servers": {"http://gpu/v1": {"key": "sk", "models": []}},}'),
    lambda path: path.write_text("[1, 2]"),
    lambda path: path.write_text(""),
    lambda path: path.write_bytes(b'{"model": "caf\xe9"}'),
    lambda path: path.mkdir(),  # unreadable as a file (permissions do not stop root)
], ids=["a trailing comma", "not an object", "empty", "not UTF-8", "a folder"])
def test_a_file_that_cannot_be_used_is_moved_aside_and_a_fresh_one_written_beside_it(tmp_path, write):
    path = tmp_path / "settings.json"
    write(path)
    original = path.read_bytes() if path.is_file() else None
    opened = AppSettings.open(path)
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.broken-")]
    assert opened.settings == AppSettings() and opened.path == path
    assert str(path) in opened.problem and kept.name in opened.problem and "\n" not in opened.problem
    assert not path.exists() and (original is None or kept.read_bytes() == original)
    opened.settings.save(opened.path)
    assert AppSettings.load(path) == AppSettings() and (original is None or kept.read_bytes() == original)


def test_a_missing_file_is_no_problem(tmp_path):
    opened = AppSettings.open(tmp_path / "settings.json")
    assert opened == type(opened)(AppSettings(), tmp_path / "settings.json", None)


def test_bad_values_are_named_and_the_good_ones_kept_in_place(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"temperature": "hot", "top_k": 5, "device": "tpu", "from_a_newer_version": 1,
                                "servers": {"http://gpu/v1": {"key": "sk-secret", "models": []},
                                            "ftp://x": {"key": "sk-other"}}}))
    before = path.read_text()
    opened = AppSettings.open(path)
    assert opened.settings.top_k == 5 and opened.settings.temperature == AppSettings().temperature
    assert opened.settings.servers == {"http://gpu/v1": {"key": "sk-secret", "models": []}}
    assert "temperature, device, servers" in opened.problem and "from_a_newer_version" not in opened.problem
    assert "sk-" not in opened.problem  # names, never values (an API key could be one)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["settings.json"]


@pytest.mark.parametrize("size, becomes", [(100000, 40), (41, 40), (3, 7), (12, 12), (0, 0), (-5, 0)])
def test_the_text_size_is_kept_to_sizes_a_person_can_read(tmp_path, size, becomes):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"text_size": size}))
    assert AppSettings.load(path).text_size == becomes == AppSettings.open(path).settings.text_size


def test_a_broken_file_on_a_read_only_disk_is_left_as_it_is_and_not_saved_over(tmp_path):
    from tests.helpers import remount_read_only, small_disk

    with small_disk(tmp_path / "config", "64k") as config:
        (config / "settings.json").write_text("{,")
        remount_read_only(config)
        opened = AppSettings.open(config / "settings.json")
        assert opened.path is None and opened.settings == AppSettings()
        assert f"{config} is on a read-only disk" in opened.problem and "will not be saved" in opened.problem
        assert (config / "settings.json").read_text() == "{,"

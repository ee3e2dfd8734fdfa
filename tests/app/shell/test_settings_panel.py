"""The settings dock (app.shell.settings_panel): values persist across a restart, the precision reloads the
model, each clamped field says its range, the presets' values are shown, the rows stay together."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.settings import AppSettings
from engine.inference.settings import SamplingSettings
from tests.helpers import choose, type_and_send, wait_idle


# 11: settings


def type_into(qtbot, box, text):
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key_Tab)


def test_settings_persist_across_restart(qtbot, open_window, dirs):
    window = open_window()
    window.settings_panel.temperature.setValue(1.25)
    window.settings_panel.top_k.setValue(7)
    saved = json.loads((dirs / "config" / "settings.json").read_text())
    assert saved["temperature"] == 1.25 and saved["top_k"] == 7
    window.close()
    loaded = AppSettings.load(dirs / "config" / "settings.json")
    assert loaded.temperature == 1.25 and loaded.top_k == 7 and loaded.window_geometry


def test_precision_setting_reloads_the_model_and_persists(qtbot, open_window, dirs):
    window = open_window()
    assert window.status_bar.device_label.text().endswith("float32")
    window.settings_panel.precision.setCurrentText("int8")
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.precision == "int8", timeout=20000)
    assert window.status_bar.device_label.text().endswith("int8")
    assert any((dirs / "data" / "prepared").glob("*-int8-*.safetensors"))
    type_and_send(qtbot, window, "Hello in int8")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    assert reply.role == "assistant" and reply.stop_reason in ("length", "eos", "stop")
    assert json.loads((dirs / "config" / "settings.json").read_text())["precision"] == "int8"


def test_max_new_tokens_is_bounded_by_the_model_and_says_why(qtbot, open_window, dirs):
    window = open_window(max_new_tokens=1000)  # more than tiny's 128-token window
    panel = window.settings_panel
    assert panel.max_new_tokens.maximum() == 128 and panel.max_new_tokens.value() == 128
    assert "was 1,000" in panel.note_of("max_new_tokens") and "tiny" in panel.note_of("max_new_tokens")
    assert window.settings.max_new_tokens == 128
    window.toggle_settings()
    box = panel.max_new_tokens
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, "99999")
    assert box.text() == "99999"  # not cut to 999 while typing
    qtbot.keyClick(box, Qt.Key_Return)
    note = panel.note_of("max_new_tokens")
    assert box.value() == 128 and "Max new tokens takes 1 to 128" in note and "99999 is more, so it is 128" in note
    assert "context window" in note and panel.notes[box].isVisibleTo(window)
    top_k = panel.top_k
    top_k.setFocus()
    top_k.selectAll()
    qtbot.keyClicks(top_k, "5000")
    qtbot.keyClick(top_k, Qt.Key_Return)
    assert top_k.value() == 1000
    assert "Top-k takes 0 (off) to 1,000: 5000 is more, so it is 1,000" in panel.note_of("top_k")


def test_every_clamped_field_says_so_under_it_naming_its_range(qtbot, open_window):
    window = open_window()
    window.toggle_settings()
    panel = window.settings_panel
    type_into(qtbot, panel.temperature, "9")
    assert panel.temperature.value() == 2.0
    assert panel.note_of("temperature") == "Temperature takes 0.00 to 2.00: 9 is more, so it is 2.00."
    assert panel.notes[panel.temperature].isVisibleTo(window)
    type_into(qtbot, panel.top_p, "0")
    assert panel.top_p.value() == 0.01
    assert panel.note_of("top_p") == "Top-p takes 0.01 to 1.00: 0 is less, so it is 0.01."
    type_into(qtbot, panel.presence_penalty, "-7")
    assert panel.presence_penalty.value() == -2.0 and "Presence penalty takes -2.00 to 2.00" in panel.note_of(
        "presence_penalty")
    assert window.settings.temperature == 2.0 and window.settings.presence_penalty == -2.0


def test_stop_sequences_min_p_and_the_penalties_are_in_the_window_with_the_engines_ranges(qtbot, open_window, dirs):
    window = open_window()
    panel = window.settings_panel
    for name in ("min_p", "presence_penalty", "frequency_penalty"):
        box = getattr(panel, name)
        assert (box.minimum(), box.maximum()) == SamplingSettings.limits(name)
        assert box.toolTip() == SamplingSettings.help(name)
    panel.min_p.setValue(0.05)
    panel.presence_penalty.setValue(0.5)
    panel.frequency_penalty.setValue(-0.5)
    panel.stop.setPlainText("The End\n\\n\\n")
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    used = window.history.messages(window.conversations.current_id)[-1].settings
    assert used["min_p"] == 0.05 and used["presence_penalty"] == 0.5 and used["frequency_penalty"] == -0.5
    assert "The End" in used["stop"] and "\n\n" in used["stop"]  # the panel's,
    assert "\nUser:" in used["stop"]  # and the turns'
    window.close()
    again = AppSettings.load(dirs / "config" / "settings.json")
    assert again.stop == ["The End", "\n\n"] and again.min_p == 0.05


def test_a_presets_values_are_shown_beside_it(qtbot, open_window):
    window = open_window()
    values = window.chat.options.preset_values
    assert not values.isVisibleTo(window)  # the settings panel's: they are there
    choose(window.chat.options.preset, "Precise")
    assert values.isVisibleTo(window) and "temperature 0.3" in values.text() and "top-k 20" in values.text()
    assert window.history.conversation(window.conversations.current_id).preset == "Precise"
    choose(window.chat.options.preset, "Creative")
    assert "temperature 1.1" in values.text() and "top-p 0.95" in values.text()
    choose(window.chat.options.preset, "")
    assert not values.isVisibleTo(window)


# 17: the keyboard


def test_ctrl_comma_puts_the_keyboard_in_the_settings_and_ctrl_5_in_analyses_text(qtbot, open_window):
    window = open_window()
    window.chat.composer.setFocus()
    qtbot.keyClick(window, Qt.Key_Comma, Qt.ControlModifier)
    assert window.settings_dock.isVisible()
    assert window.settings_panel.isAncestorOf(QApplication.focusWidget()), QApplication.focusWidget()
    qtbot.keyClick(window, Qt.Key_Comma, Qt.ControlModifier)
    assert not window.settings_dock.isVisible() and window.chat.composer.hasFocus()
    qtbot.keyClick(window, Qt.Key_5, Qt.ControlModifier)
    assert window.tabs.currentWidget() is window.analysis and window.analysis.input.hasFocus()


def test_a_tall_settings_panel_keeps_its_rows_together(qtbot, open_window):
    """At 720 pixels the rows were spread out, 250 pixels between Stop sequences and Device."""
    window = open_window(model=None)
    window.resize(1100, 720)
    if not window.settings_panel.isVisible():
        window.toggle_settings()
    qtbot.waitUntil(lambda: window.settings_panel.height() > 600, timeout=3000)
    panel = window.settings_panel
    panel.layout().activate()
    stop_bottom = panel.stop.mapTo(panel, panel.stop.rect().bottomLeft()).y()
    device_top = panel.device.mapTo(panel, panel.device.rect().topLeft()).y()
    assert device_top - stop_bottom < 4 * panel.device.height()  # the Engine heading between, no gulf

"""Rough edges a new user met on a first start (trial on fresh data folders, keyboard first): the real window,
offscreen, on the tiny model and a real SQLite file."""

from PySide6.QtCore import Qt

from tests.helpers import type_and_send, wait_idle


def test_the_edit_hint_says_the_old_message_and_reply_are_kept(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    window.conversations.edit_last()
    hint = window.chat.edit_hint.text()
    assert window.chat.edit_hint.isVisibleTo(window)
    assert "replaces" not in hint and "kept" in hint and "Esc" in hint


def test_a_notebook_longer_than_the_window_is_called_a_text_and_the_whole_message_shows(qtbot, open_window):
    window = open_window()
    window.resize(800, 500)
    window.conversations.new_notebook()
    window.notebook.editor.setPlainText("The fox and the crow met the old king by the river. " * 20)  # > 128 tokens
    qtbot.keyClick(window.notebook.editor, Qt.Key_Return, Qt.ControlModifier)
    wait_idle(qtbot, window)
    bar = window.status_bar
    message = bar.currentMessage()
    assert message.startswith("The text is longer than the model's window: its first ") and "conversation" not in message
    bar.layout().activate()
    shown = [label for label in bar.fields.values() if label.isVisible()]
    room = min(label.geometry().x() for label in shown)  # the passing message is written left of the fields
    assert bar.fontMetrics().horizontalAdvance(message) < room
    assert bar.model_label.isVisible()  # the model's name stays
    bar.clearMessage()
    assert bar.context_label.isVisible()  # the figures come back once the message has gone


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

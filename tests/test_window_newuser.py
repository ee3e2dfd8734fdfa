"""Rough edges a new user met on a first start (trial on fresh data folders, keyboard first): the real window,
offscreen, on the tiny model and a real SQLite file."""

from PySide6.QtCore import Qt

from tests.test_window import dirs, open_window, type_and_send, wait_idle  # noqa: F401 - fixtures


def test_the_edit_hint_says_the_old_message_and_reply_are_kept(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    window.conversations.edit_last()
    hint = window.chat.edit_hint.text()
    assert window.chat.edit_hint.isVisibleTo(window)
    assert "replaces" not in hint and "kept" in hint and "Esc" in hint

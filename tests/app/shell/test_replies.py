"""The engine's answers in the window (app.shell.replies): a failed reply is said in its own conversation only,
and suggesting is said while it lasts."""

from __future__ import annotations

from tests.helpers import type_and_send, wait_idle


def test_a_failed_reply_is_said_in_its_own_conversation_only(qtbot, open_window):
    window = open_window()
    window.settings.top_p = 0.0  # the engine refuses it: the reply fails
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    failed_in = window.conversations.current_id
    assert "Generation failed" in window.banner.label.text() and window.banner.isVisibleTo(window)
    window.conversations.new_chat()
    assert not window.banner.isVisibleTo(window)
    window.conversations.open(failed_in)
    assert not window.banner.isVisibleTo(window)


def test_suggesting_is_said_while_it_lasts(qtbot, open_window):
    window = open_window()
    window.conversations.new_notebook()
    window.notebook.set_document("Once upon a time")
    window.replies.suggest("Once upon a time")
    assert window.status_bar.currentMessage() == "Suggesting…"
    wait_idle(qtbot, window)
    assert window.status_bar.currentMessage() != "Suggesting…"

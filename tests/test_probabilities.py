"""The window's view of what the model predicted (issue 15, window items): token data kept with each reply,
tokens coloured by rank or probability, a card with the alternatives on hover, picking an alternative,
analysing a text."""

import sqlite3
import statistics
import time

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer

from app.token_data import TOP, ReplyTokens
from tests.test_window import dirs, open_window, type_and_send, wait_idle  # noqa: F401 - fixtures


def stored_tokens(window, message_id):
    blob = window.history.tokens([message_id]).get(message_id)
    return ReplyTokens.decode(blob) if blob else None


def test_each_reply_and_continuation_keeps_its_tokens_ranks_and_alternatives(qtbot, open_window):
    window = open_window(max_new_tokens=30)
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    data = stored_tokens(window, reply.id)
    assert data is not None and len(data) == 30 and data.text().strip() == reply.content
    assert all(len(t.top) == TOP and t.rank >= 1 for t in data.tokens)
    assert all(t.token == t.top[0].token and t.rank == 1 for t in data.tokens)  # greedy: the likeliest, each time
    window.conversations.new_notebook()
    window.notebook.editor.setPlainText("Once upon a time")
    window.conversations.continue_notebook()
    wait_idle(qtbot, window)
    continuation = window.history.messages(window.conversations.current_id)[-1]
    data = stored_tokens(window, continuation.id)
    assert data is not None and data.text() == continuation.content
    assert window.notebook.document() == "Once upon a time" + continuation.content

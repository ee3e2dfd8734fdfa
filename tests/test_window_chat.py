"""The chat, the conversation list and the notebook as new users met them (trial on fresh data folders): the real
window, offscreen, on the tiny model and a real SQLite file."""

from PySide6.QtCore import Qt

from tests.test_window import dirs, open_window, type_and_send, wait_idle  # noqa: F401 - fixtures


def row_of(window, conversation_id):
    """The conversation list's row showing a conversation."""
    rows = window.sidebar.list
    return next(i for i in range(rows.count()) if rows.item(i).data(Qt.UserRole) == conversation_id)


def click_row(qtbot, window, conversation_id):
    rows = window.sidebar.list
    qtbot.mouseClick(rows.viewport(), Qt.LeftButton,
                     pos=rows.visualItemRect(rows.item(row_of(window, conversation_id))).center())


# item 4: an edit in progress is kept like a draft

def test_an_edit_left_half_written_is_kept_across_switching_and_a_restart(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    chat = window.conversations.current_id
    window.conversations.new_chat()
    other = window.conversations.current_id
    click_row(qtbot, window, chat)
    qtbot.keyClicks(window.chat.composer, "an unsent thought")
    first = window.history.messages(chat)[0]
    window.conversations.message_action("edit", first.id)
    qtbot.keyClicks(window.chat.composer, ", put better")
    click_row(qtbot, window, other)
    assert window.chat.editing_id is None and window.chat.draft() == ""
    click_row(qtbot, window, chat)  # back: still editing, with what was typed
    assert window.chat.editing_id == first.id and window.chat.draft() == "First question, put better"
    assert window.chat.edit_hint.isVisibleTo(window)
    window.close()
    again = open_window()
    again.conversations.open(chat)  # and after a restart
    assert again.chat.editing_id == first.id and again.chat.draft() == "First question, put better"
    assert again.chat.edit_hint.isVisibleTo(again)
    qtbot.keyClick(again, Qt.Key_Escape)  # Esc: the unsent message set aside comes back, and the edit is over
    assert again.chat.editing_id is None and again.chat.draft() == "an unsent thought"
    again.close()
    third = open_window()
    third.conversations.open(chat)
    assert third.chat.editing_id is None and third.chat.draft() == "an unsent thought"

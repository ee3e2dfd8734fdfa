"""Drafts: what is typed and not sent, or an edit half written, belongs to its conversation and survives
switching, Esc and a restart (app.chat.conversations, app.chat.composer)."""


from PySide6.QtCore import Qt

from tests.helpers import click_row, type_and_send, wait_idle


def test_an_unsent_draft_survives_edit_esc_and_resend(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    qtbot.keyClicks(window.chat.composer, "half-written thought")
    first_user = window.history.messages(window.conversations.current_id)[0]
    window.conversations.message_action("edit", first_user.id)
    assert window.chat.draft() == "First question"
    qtbot.keyClick(window, Qt.Key_Escape)  # Esc cancels the edit: the draft comes back
    assert window.chat.draft() == "half-written thought" and not window.chat.edit_hint.isVisibleTo(window)
    window.conversations.message_action("edit", first_user.id)
    window.chat.composer.clear()
    type_and_send(qtbot, window, "Better question")
    wait_idle(qtbot, window)
    assert window.history.messages(window.conversations.current_id)[0].content == "Better question"
    assert window.chat.draft() == "half-written thought"  # sending the edit brought it back too


def test_drafts_belong_to_their_conversation_and_survive_a_restart(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "About foxes")
    wait_idle(qtbot, window)
    fox = window.conversations.current_id
    qtbot.keyClicks(window.chat.composer, "foxes are")
    window.conversations.new_chat()
    assert window.chat.draft() == ""  # a new chat has its own, empty message box
    qtbot.keyClicks(window.chat.composer, "crows are")
    crow = window.conversations.current_id
    window.conversations.open(fox)
    assert window.chat.draft() == "foxes are"
    window.conversations.open(crow)
    assert window.chat.draft() == "crows are"
    window.close()  # and Ctrl+Q keeps them
    again = open_window()
    again.conversations.open(fox)
    assert again.chat.draft() == "foxes are"
    assert again.history.conversation(crow).draft == "crows are"


def test_a_draft_typed_before_any_conversation_is_kept_on_quit(qtbot, open_window):
    window = open_window()
    qtbot.keyClicks(window.chat.composer, "an idea for later")
    window.close()
    [conv] = window.history.conversations()
    assert conv.draft == "an idea for later" and conv.title == "an idea for later"


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

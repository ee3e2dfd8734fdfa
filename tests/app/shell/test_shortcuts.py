"""The window's commands from one table (app.shell.actions): every shortcut unique, each listed on Help > Keyboard
shortcuts, and the commands the trial missed reachable from the keyboard: regenerate, continue, retry, edit the
last message, copy the reply, next and previous conversation."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication

from app.shell.actions import menu_shortcuts, MENUS
from app.shell.shortcuts_page import ShortcutsPage, all_shortcuts
from tests.helpers import type_and_send, wait_idle


def every_key() -> list[str]:
    return [QKeySequence(k).toString() for rows in MENUS.values() for row in rows if row for k in row.keys]


def press(qtbot, window, key, modifiers=Qt.NoModifier) -> None:
    """A key as a person presses it: to the widget with the keyboard focus (the message box, say)."""
    qtbot.keyClick(QApplication.focusWidget() or window, key, modifiers)


def test_keyboard_shortcuts(qtbot, open_window):
    window = open_window()
    qtbot.keyClick(window, Qt.Key_Comma, Qt.ControlModifier)
    assert window.settings_dock.isVisible()
    qtbot.keyClick(window, Qt.Key_F, Qt.ControlModifier)
    assert window.sidebar.search.hasFocus()


def test_no_two_commands_share_a_shortcut():
    keys = every_key()
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_the_shortcuts_page_lists_every_menu_shortcut_and_the_views_own_keys(qtbot):
    page = ShortcutsPage()
    qtbot.addWidget(page)
    listed = page.visible_rows()
    assert listed == all_shortcuts()
    commands = {(menu, command) for menu, command, _keys in menu_shortcuts()}
    assert {(where, what) for where, _keys, what in listed} >= commands
    assert ("Conversation", "Regenerate the last reply") in commands
    assert any(where == "Probabilities" and "Alt+Left" in keys for where, keys, _ in listed)
    assert any(where == "Message box" and keys == "Enter" for where, keys, _ in listed)
    qtbot.keyClicks(page.filter, "regenerate")
    assert [row[2] for row in page.visible_rows()] == ["Regenerate the last reply"]
    qtbot.keyClick(page, Qt.Key_Escape)  # the first Esc clears the search
    assert len(page.visible_rows()) == len(listed)


def test_f1_opens_the_shortcuts_page(qtbot, open_window):
    window = open_window()
    seen = []

    def look():
        page = QApplication.activeModalWidget()
        seen.append(page)
        page.close()

    QTimer.singleShot(300, look)
    qtbot.keyClick(window, Qt.Key_F1)
    assert isinstance(seen[0], ShortcutsPage) and seen[0].table.rowCount() == len(all_shortcuts())


def test_the_keyboard_regenerates_copies_edits_and_moves_between_conversations(qtbot, open_window):
    window = open_window(temperature=1.0, seed=1)
    type_and_send(qtbot, window, "About foxes")
    wait_idle(qtbot, window)
    fox = window.conversations.current_id
    first = window.history.messages(fox)[-1]
    press(qtbot, window, Qt.Key_R, Qt.ControlModifier)  # regenerate
    wait_idle(qtbot, window)
    reply = window.history.messages(fox)[-1]
    assert reply.id != first.id and window.history.versions(reply) == [first.id, reply.id]
    press(qtbot, window, Qt.Key_C, Qt.ControlModifier | Qt.ShiftModifier)  # copy the last reply
    assert QGuiApplication.clipboard().text() == reply.content
    press(qtbot, window, Qt.Key_E, Qt.ControlModifier | Qt.ShiftModifier)  # edit the last message
    assert window.chat.composer.toPlainText() == "About foxes"
    press(qtbot, window, Qt.Key_Escape)
    press(qtbot, window, Qt.Key_N, Qt.ControlModifier)
    type_and_send(qtbot, window, "About crows")
    wait_idle(qtbot, window)
    crow = window.conversations.current_id
    press(qtbot, window, Qt.Key_Tab, Qt.ControlModifier)  # the list is newest first: the fox chat is next
    assert window.conversations.current_id == fox
    press(qtbot, window, Qt.Key_Backtab, Qt.ControlModifier | Qt.ShiftModifier)
    assert window.conversations.current_id == crow


def test_ctrl_shift_enter_continues_a_reply_cut_at_the_length_limit(qtbot, open_window):
    window = open_window(max_new_tokens=4, wide=True)
    type_and_send(qtbot, window, "Tell me a story")
    wait_idle(qtbot, window)
    conversation = window.conversations.current_id
    cut = window.history.messages(conversation)[-1]
    assert cut.stop_reason == "length"
    press(qtbot, window, Qt.Key_Return, Qt.ControlModifier | Qt.ShiftModifier)
    wait_idle(qtbot, window)
    longer = window.history.messages(conversation)[-1]
    assert longer.id != cut.id and longer.content.startswith(cut.content) and len(longer.content) > len(cut.content)


def test_a_search_that_finds_nothing_says_so(qtbot):
    page = ShortcutsPage()
    qtbot.addWidget(page)
    page.show()
    qtbot.keyClicks(page.filter, "hello")
    assert page.visible_rows() == [] and page.nothing.isVisible()
    assert page.nothing.text() == "No shortcut or command has “hello” in it."
    page.filter.clear()
    qtbot.keyClicks(page.filter, "token")
    assert page.visible_rows() and not page.nothing.isVisible()

"""The conversation list (app.chat.sidebar): switching, renaming, deleting and searching, the highlight and the
marks of where the model writes, a reply going on in the background, Ctrl+N, and a conversation opened again
after a restart."""


from PySide6.QtCore import Qt

from app.history.store import History
from tests.helpers import at_end, click_row, long_conversation, order, row_of, type_and_send, wait_idle


def match_pixels(widget):
    """How many pixels of a widget are painted in the search's match colour."""
    from PySide6.QtGui import QColor

    import app.chat.sidebar

    image, want = widget.grab().toImage(), QColor(getattr(app.chat.sidebar, "MATCH_COLOUR", "#f2d13a"))
    return sum(1 for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
               if abs(image.pixelColor(x, y).red() - want.red()) < 12
               and abs(image.pixelColor(x, y).green() - want.green()) < 12
               and abs(image.pixelColor(x, y).blue() - want.blue()) < 12)


def test_switch_conversations_rename_delete_and_search(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "About foxes")
    wait_idle(qtbot, window)
    fox_id = window.conversations.current_id
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert window.conversations.current_id != fox_id
    type_and_send(qtbot, window, "About crows")
    wait_idle(qtbot, window)
    crow_id = window.conversations.current_id
    assert window.sidebar.list.count() == 2
    window.sidebar.list.setCurrentRow(1)  # most recent first: the fox chat is second
    assert window.conversations.current_id == fox_id and "About foxes" in window.chat.transcript.toPlainText()
    window.conversations.rename(fox_id, "Fox talk")
    assert any("Fox talk" in window.sidebar.list.item(i).text() for i in range(2))
    window.sidebar.search.setText("crows")
    assert window.sidebar.list.count() == 1
    window.sidebar.search.clear()
    window.conversations.delete(crow_id)
    assert [c.id for c in window.history.conversations()] == [fox_id]


def test_a_reply_goes_on_in_the_background_when_another_conversation_is_opened(qtbot, open_window):
    window = open_window(max_new_tokens=300, wide=True)
    type_and_send(qtbot, window, "About foxes")
    wait_idle(qtbot, window)
    fox_id = window.conversations.current_id
    window.conversations.new_chat()
    type_and_send(qtbot, window, "About crows")
    crow_id = window.conversations.current_id
    qtbot.waitUntil(lambda: len(window.active.text) > 5, timeout=20000)
    window.sidebar.list.setCurrentRow(1)  # the fox chat, while the crow reply streams
    assert window.conversations.current_id == fox_id and "About crows" not in window.chat.transcript.toPlainText()
    window.sidebar.list.setCurrentRow(0)  # back: the reply so far is there, and goes on
    assert window.conversations.current_id == crow_id
    wait_idle(qtbot, window)
    reply = window.history.messages(crow_id)[-1]
    assert reply.role == "assistant" and reply.stop_reason != "cancelled"  # it was not stopped
    assert reply.content and reply.content in window.chat.transcript.toPlainText()


def test_delete_in_the_conversation_list_and_typing_there_goes_to_the_message_box(qtbot, open_window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    window = open_window()
    window.activateWindow()
    type_and_send(qtbot, window, "First")
    wait_idle(qtbot, window)
    first = window.conversations.current_id
    window.conversations.new_chat()
    type_and_send(qtbot, window, "Second")
    wait_idle(qtbot, window)
    item = window.sidebar.list.item(1)  # the first chat
    qtbot.mouseClick(window.sidebar.list.viewport(), Qt.LeftButton,
                     pos=window.sidebar.list.visualItemRect(item).center())
    assert window.conversations.current_id == first
    qtbot.keyClicks(window.sidebar.list, "Hi")  # typing lands in the message box
    assert window.chat.draft() == "Hi" and window.chat.composer.hasFocus()
    second = window.sidebar.list.item(0)  # click the other chat, then Delete: it is the one deleted
    qtbot.mouseClick(window.sidebar.list.viewport(), Qt.LeftButton,
                     pos=window.sidebar.list.visualItemRect(second).center())
    assert window.sidebar.list.hasFocus()
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args) or QMessageBox.Yes)
    qtbot.keyClick(window.sidebar.list, Qt.Key_Delete)
    assert asked and [c.id for c in window.history.conversations()] == [first]
    assert window.conversations.current_id == first
    assert window.chat.draft() == "Hi"  # nothing typed was erased: its draft came back with it


def test_conversation_is_restored_after_restart(qtbot, open_window, dirs):
    window = open_window()
    type_and_send(qtbot, window, "Remember me")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1].content
    window.close()
    again = open_window()
    assert again.sidebar.list.count() == 1
    assert "Remember me" in again.chat.transcript.toPlainText()
    assert reply in again.chat.transcript.toPlainText()


def test_opening_a_conversation_lands_exactly_at_its_end(qtbot, open_window, dirs):
    history = History(dirs / "data" / "history.sqlite3")
    long_conversation(history)
    history.close()
    window = open_window()  # opened at start, before the window had its size
    qtbot.wait(50)
    assert at_end(window.chat.transcript)
    first, second = long_conversation(window.history), long_conversation(window.history, turns=20)
    view = window.chat.transcript
    for conv in (first, second, first):
        window.conversations.open(conv)
        qtbot.wait(50)  # let the layout finish growing: the view stays at the end meanwhile
        assert at_end(view)


def test_the_highlight_stays_on_the_conversation_opened_when_the_list_reorders(qtbot, open_window):
    window = open_window()
    book = window.history.create_conversation("A notebook", "notebook")
    second = window.history.create_conversation("Second", "chat")
    first = window.history.create_conversation("First", "chat")
    window.conversations.refresh()
    assert order(window) == [first, second, book]
    click_row(qtbot, window, book)
    qtbot.keyClicks(window.notebook.editor, "An edit")  # changed: leaving it puts it at the top
    click_row(qtbot, window, second)
    rows = window.sidebar.list
    assert order(window) == [book, first, second] and window.conversations.current_id == second
    assert [item.data(Qt.UserRole) for item in rows.selectedItems()] == [second]
    assert rows.currentItem().data(Qt.UserRole) == second


def test_the_list_marks_where_the_model_writes_and_a_send_elsewhere_says_where(qtbot, open_window):
    window = open_window(max_new_tokens=2000, wide=True)
    type_and_send(qtbot, window, "About foxes")
    fox = window.conversations.current_id
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 5, timeout=20000)
    rows = window.sidebar.list
    assert rows.item(row_of(window, fox)).text() == "✎ About foxes"
    window.conversations.new_chat()
    assert rows.item(row_of(window, fox)).text() == "✎ About foxes"  # in the background too
    assert "writing" in rows.item(row_of(window, fox)).data(Qt.AccessibleTextRole)
    type_and_send(qtbot, window, "About crows")
    message = window.status_bar.currentMessage()
    assert "“About foxes”" in message and "Esc" in message
    assert window.chat.draft() == "About crows"  # nothing typed is lost
    qtbot.keyClick(window, Qt.Key_Escape)
    wait_idle(qtbot, window)
    assert rows.item(row_of(window, fox)).text() == "About foxes"


def test_search_highlights_matches_says_when_none_and_esc_clears_it(qtbot, open_window):
    window = open_window()
    fox = window.history.create_conversation("Foxes", "chat")
    window.history.add_message(fox, "user", "And then the old crow sat on a branch and sang")
    book = window.history.create_conversation("Lighthouse", "notebook")
    window.history.set_document(book, "The keeper counted the ships.")
    window.conversations.refresh()
    sidebar = window.sidebar
    sidebar.focus_search()
    assert match_pixels(sidebar.list) == 0
    qtbot.keyClicks(sidebar.search, "crow")
    assert order(window) == [fox]
    assert "crow" in sidebar.list.item(0).data(Qt.AccessibleTextRole)  # where it matched, said too
    assert match_pixels(sidebar.list) > 20  # and the match shown highlighted
    qtbot.keyClicks(sidebar.search, "zzz")
    assert order(window) == [] and sidebar.no_match.isVisibleTo(window)
    assert "crowzzz" in sidebar.no_match.text()
    qtbot.keyClick(sidebar.search, Qt.Key_Escape)
    assert sidebar.search.text() == "" and not sidebar.no_match.isVisibleTo(window)
    assert set(order(window)) == {fox, book} and match_pixels(sidebar.list) == 0


def test_ctrl_n_twice_makes_one_new_chat(qtbot, open_window):
    window = open_window()
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert [c.title for c in window.history.conversations()] == ["New chat"]
    assert window.chat.composer.hasFocus() or not window.isActiveWindow()
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier | Qt.ShiftModifier)
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier | Qt.ShiftModifier)
    assert sorted(c.title for c in window.history.conversations()) == ["New chat", "Notebook"]
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    qtbot.keyClicks(window.chat.composer, "a thought")  # a chat with something in it is not empty any more
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert sorted(c.title for c in window.history.conversations()) == ["New chat", "New chat", "Notebook"]


def test_a_message_typed_before_any_chat_is_kept_when_ctrl_n_opens_one(qtbot, open_window):
    window = open_window()
    qtbot.keyClicks(window.chat.composer, "an idea for later")
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert window.chat.draft() == ""
    kept = [c for c in window.history.conversations() if c.draft]
    assert [(c.title, c.draft) for c in kept] == [("an idea for later", "an idea for later")]

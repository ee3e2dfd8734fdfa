"""The chat, the conversation list and the notebook as new users met them (trial on fresh data folders): the real
window, offscreen, on the tiny model and a real SQLite file."""

from PySide6.QtCore import Qt

from app.probe.probabilities import percent
from tests.helpers import type_and_send, wait_idle


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


def stored_tokens(window, message_id):
    from app.probe.token_data import ReplyTokens

    blob = window.history.tokens([message_id]).get(message_id)
    return ReplyTokens.decode(blob) if blob else None


def link_span(view, href):
    """Where a link of the transcript is: its first and last position."""
    places, block = [], view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == href:
                places += [fragment.position(), fragment.position() + fragment.length()]
            it += 1
        block = block.next()
    return min(places), max(places)


def click_link(qtbot, view, href):
    """Click a link of the transcript (scrolled into view first), as a person does."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QTextCursor

    start, end = link_span(view, href)
    cursor = QTextCursor(view.document())
    cursor.setPosition((start + end) // 2)
    view.setTextCursor(cursor)
    view.ensureCursorVisible()
    rect = view.cursorRect(cursor)
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=QPoint(rect.x(), rect.center().y()))


# item 7: Continue and Retry

def test_a_reply_cut_at_the_length_limit_has_continue_which_goes_on_from_its_end(qtbot, open_window):
    window = open_window(max_new_tokens=12, probabilities=True)
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    conv = window.conversations.current_id
    old = window.history.messages(conv)[-1]
    assert old.stop_reason == "length"
    view = window.chat.transcript
    assert "Cut at the length limit" in view.toPlainText() and "Continue ›" in view.toPlainText()
    click_link(qtbot, view, f"continue:{old.id}")
    assert window.active is not None
    assert "Continue ›" not in view.toPlainText()  # not while it is being written
    wait_idle(qtbot, window)
    new = window.history.messages(conv)[-1]
    assert new.id != old.id and window.history.versions(new) == [old.id, new.id]  # the old text is a version
    assert new.content.startswith(old.content) and len(new.content) > len(old.content)
    old_data, new_data = stored_tokens(window, old.id), stored_tokens(window, new.id)
    assert list(new_data.ids[:len(old_data)]) == list(old_data.ids) and len(new_data) == len(old_data) + 12
    assert "‹ 2/2 ›" in view.toPlainText().replace("\xa0", " ")
    window.conversations.continue_reply()  # the same for the last reply, from a menu
    wait_idle(qtbot, window)
    longest = window.history.messages(conv)[-1]
    assert longest.content.startswith(new.content) and len(window.history.versions(longest)) == 3
    window.conversations.message_action("older", longest.id)
    window.conversations.message_action("older", new.id)
    assert window.history.messages(conv)[-1].id == old.id  # the first text is there still


def test_continue_goes_on_from_a_reply_whose_tokens_were_not_kept(qtbot, open_window):
    window = open_window(max_new_tokens=8)
    conv = window.history.create_conversation("Old chat", "chat")
    window.history.add_message(conv, "user", "Tell me a story")
    old = window.history.add_message(conv, "assistant", "Once upon a time there was a fox", model="tiny",
                                     stop_reason="length")
    window.conversations.open(conv)
    window.conversations.continue_reply(old)
    wait_idle(qtbot, window)
    new = window.history.messages(conv)[-1]
    assert new.id != old and new.content.startswith("Once upon a time there was a fox")
    assert len(new.content) > len("Once upon a time there was a fox")


def test_a_message_left_without_a_reply_has_retry(qtbot, open_window):
    window = open_window()
    conv = window.history.create_conversation("Cut off", "chat")  # as a kill -9 mid-reply leaves it
    asked = window.history.add_message(conv, "user", "Are you there?")
    window.conversations.open(conv)
    view = window.chat.transcript
    assert "No reply came to this message." in view.toPlainText() and "Retry ›" in view.toPlainText()
    click_link(qtbot, view, f"retry:{asked}")
    assert window.active is not None and "Retry ›" not in view.toPlainText()
    wait_idle(qtbot, window)
    messages = window.history.messages(conv)
    assert [(m.role, m.id == asked) for m in messages] == [("user", True), ("assistant", False)]
    assert "Retry ›" not in view.toPlainText() and messages[1].content in view.toPlainText()
    window.conversations.retry()  # nothing left to retry: said, and nothing sent
    assert window.active is None and "Regenerate" in window.status_bar.currentMessage()


def test_a_failed_send_leaves_retry_and_the_message_is_sent_again_without_typing_it(qtbot, open_window):
    window = open_window()
    window.requests.worker.generator = None  # the engine cannot answer: the request fails
    type_and_send(qtbot, window, "Hello?")
    qtbot.waitUntil(lambda: window.active is None, timeout=5000)
    conv = window.conversations.current_id
    assert [m.role for m in window.history.messages(conv)] == ["user"]
    assert "Retry ›" in window.chat.transcript.toPlainText() and window.chat.draft() == ""
    window.model.use(str(window.model_info.folder))
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=20000)
    window.conversations.retry()
    wait_idle(qtbot, window)
    assert [m.role for m in window.history.messages(conv)] == ["user", "assistant"]


def test_the_menu_actions_act_on_the_last_reply(qtbot, open_window):
    from PySide6.QtGui import QGuiApplication

    window = open_window(temperature=1.0, seed=1)
    type_and_send(qtbot, window, "Hi")
    wait_idle(qtbot, window)
    conv = window.conversations.current_id
    first = window.history.messages(conv)[-1]
    window.conversations.copy_reply()
    assert QGuiApplication.clipboard().text() == first.content
    window.settings_panel.seed.setValue(2)
    window.conversations.regenerate()
    wait_idle(qtbot, window)
    assert window.history.versions(window.history.messages(conv)[-1]) == [first.id, window.history.messages(conv)[-1].id]
    window.conversations.new_chat()
    second = window.conversations.current_id
    window.conversations.next_conversation()  # the list, most recent first: the new chat, then "Hi"
    assert window.conversations.current_id == conv
    window.conversations.previous_conversation()
    assert window.conversations.current_id == second
    window.conversations.previous_conversation()  # from the first row round to the last, as tabs go round
    assert window.conversations.current_id == conv
    window.conversations.next_conversation()
    assert window.conversations.current_id == second


# items 16 and 17: the version arrows

def two_versions(window, long_first=True):
    """A chat whose last reply has two versions, the first long; the second shown."""
    history = window.history
    conv = history.create_conversation("Versions", "chat")
    for i in range(4):
        history.add_message(conv, "user", f"Question {i}: " + "tell me more " * 10)
        history.add_message(conv, "assistant", f"Answer {i}. " + "The fox ran into the wood. " * 20, model="tiny")
    asked = history.add_message(conv, "user", "And the end?")
    old = history.add_message(conv, "assistant", "The long end. " + "The crow flew over the hill. " * 60,
                              model="tiny", after=asked)
    new = history.add_message(conv, "assistant", "A short end.", model="tiny", after=asked)
    window.conversations.open(conv)
    return conv, old, new


def test_the_version_arrows_are_large_enough_to_hit(qtbot, open_window):
    from PySide6.QtGui import QTextCursor

    window = open_window()
    _conv, _old, new = two_versions(window)
    view = window.chat.transcript
    start, end = link_span(view, f"older:{new}")
    left, right = QTextCursor(view.document()), QTextCursor(view.document())
    left.setPosition(start)
    right.setPosition(end)
    width, height = view.cursorRect(right).x() - view.cursorRect(left).x(), view.cursorRect(right).height()
    assert width >= 24 and height >= 24, (width, height)  # the smallest target a pointer should be asked to hit


def test_switching_a_version_keeps_the_view_where_it_was(qtbot, open_window):
    window = open_window()
    _conv, old, new = two_versions(window)
    view = window.chat.transcript
    qtbot.wait(50)
    assert view.verticalScrollBar().value() == view.verticalScrollBar().maximum() > 0  # at the end
    before = view.cursorRect(cursor_at(view, link_span(view, f"older:{new}")[0])).top()
    click_link(qtbot, view, f"older:{new}")
    assert window.history.messages(window.conversations.current_id)[-1].id == old
    qtbot.wait(50)
    after = view.cursorRect(cursor_at(view, link_span(view, f"newer:{old}")[0])).top()
    assert abs(after - before) <= 2, (before, after)  # the arrows clicked are where they were


def cursor_at(view, position):
    from PySide6.QtGui import QTextCursor

    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    return cursor


def test_after_a_version_switch_by_keyboard_the_arrow_keeps_the_focus(qtbot, open_window):
    window = open_window()
    conv, old, new = two_versions(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    view = window.chat.transcript
    view.setFocus()
    for _ in range(60):  # Tab from link to link, as a person does, to the last reply's ‹
        qtbot.keyClick(view, Qt.Key_Tab)
        if view.textCursor().charFormat().anchorHref() == f"older:{new}":
            break
    assert view.textCursor().charFormat().anchorHref() == f"older:{new}"
    qtbot.keyClick(view, Qt.Key_Return)
    assert window.history.messages(conv)[-1].id == old
    assert view.hasFocus() and view.textCursor().hasSelection()  # shown, on the arrow back
    assert view.textCursor().charFormat().anchorHref() == f"newer:{old}"
    qtbot.keyClick(view, Qt.Key_Return)  # and Enter again goes back
    assert window.history.messages(conv)[-1].id == new
    assert view.textCursor().charFormat().anchorHref() == f"older:{new}"


def test_up_in_the_empty_message_box_edits_the_last_message(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    type_and_send(qtbot, window, "Second question")
    wait_idle(qtbot, window)
    second = window.history.messages(window.conversations.current_id)[2]
    qtbot.keyClick(window.chat.composer, Qt.Key_Up)
    assert window.chat.editing_id == second.id and window.chat.draft() == "Second question"
    assert window.chat.edit_hint.isVisibleTo(window)
    qtbot.keyClick(window.chat.composer, Qt.Key_Up)  # in a box with text, Up moves the cursor as before
    assert window.chat.editing_id == second.id and window.chat.draft() == "Second question"


# item 13: the conversation list

def order(window):
    rows = window.sidebar.list
    return [rows.item(i).data(Qt.UserRole) for i in range(rows.count())]


def test_opening_a_notebook_without_editing_it_leaves_the_list_as_it_was(qtbot, open_window):
    window = open_window()
    book = window.history.create_conversation("A notebook", "notebook")
    window.history.set_document(book, "Once upon a time")
    chat = window.history.create_conversation("A chat", "chat")
    window.conversations.refresh()
    assert order(window) == [chat, book]
    click_row(qtbot, window, book)
    click_row(qtbot, window, chat)
    assert order(window) == [chat, book] and window.conversations.current_id == chat


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


def match_pixels(widget):
    """How many pixels of a widget are painted in the search's match colour."""
    from PySide6.QtGui import QColor

    import app.chat.sidebar

    image, want = widget.grab().toImage(), QColor(getattr(app.chat.sidebar, "MATCH_COLOUR", "#f2d13a"))
    return sum(1 for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
               if abs(image.pixelColor(x, y).red() - want.red()) < 12
               and abs(image.pixelColor(x, y).green() - want.green()) < 12
               and abs(image.pixelColor(x, y).blue() - want.blue()) < 12)


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


def answer_dialog(qtbot, answer):
    """Once a modal dialog is up, `answer(dialog)`; what it returned comes in the list returned."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    got = []

    def look():
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(20, look)
            return
        got.append(answer(dialog))

    QTimer.singleShot(0, look)
    return got


def test_the_delete_confirmation_keeps_the_conversation_on_enter(qtbot, open_window):
    from PySide6.QtWidgets import QMessageBox

    window = open_window()
    type_and_send(qtbot, window, "Keep me")
    wait_idle(qtbot, window)
    conv = window.conversations.current_id

    def press_enter(dialog):
        default = dialog.defaultButton() is dialog.button(QMessageBox.No)
        qtbot.keyClick(dialog, Qt.Key_Return)
        return default

    got = answer_dialog(qtbot, press_enter)
    qtbot.keyClick(window.sidebar.list, Qt.Key_Delete)
    assert got == [True] and [c.id for c in window.history.conversations()] == [conv]


def test_the_rename_dialog_shows_the_whole_title(qtbot, open_window):
    from PySide6.QtWidgets import QLineEdit

    window = open_window()
    title = "A story about a fox, a crow and the old dark wood"
    conv = window.history.create_conversation(title, "chat")
    window.conversations.open(conv)

    def rename(dialog):
        field = dialog.findChild(QLineEdit)
        fits = field.width() > field.fontMetrics().horizontalAdvance(title) + 10
        field.setText("Fox and crow")
        dialog.accept()
        return fits

    got = answer_dialog(qtbot, rename)
    window.dialogs.ask_rename()
    assert got == [True] and window.history.conversation(conv).title == "Fox and crow"


# item 14: the notebook

def continued_notebook(qtbot, window, start="Once upon a time"):
    window.conversations.new_notebook()
    window.notebook.editor.setPlainText(start)
    window.conversations.continue_notebook()
    wait_idle(qtbot, window)
    book = window.conversations.current_id
    return book, window.history.messages(book)[-1]


def pick_in_notebook(qtbot, window, message, nth=3, row=1):
    """Pick the `row`th alternative of the `nth` token of a continuation, through its card."""
    from tests.helpers import fragments, hover_token

    from PySide6.QtCore import QPoint

    position, _text, index, _ = [f for f in fragments(window.notebook.editor, message.id) if f[1].strip()][nth]
    qtbot.mouseMove(window.notebook.editor.viewport(), QPoint(1, 1))  # (the mouse may be there from before)
    hover_token(qtbot, window.notebook.editor, position)
    card = window.notebook.hover.card
    qtbot.waitUntil(card.isVisible, timeout=2000)
    qtbot.mouseClick(card.rows[row], Qt.LeftButton)
    wait_idle(qtbot, window)
    return position


def test_one_ctrl_z_takes_back_an_alternative_and_its_continuation(qtbot, open_window):
    window = open_window(max_new_tokens=20, probabilities=True)
    book, old = continued_notebook(qtbot, window)
    before = window.notebook.document()
    pick_in_notebook(qtbot, window, old)
    assert window.notebook.document() != before
    qtbot.keyClick(window.notebook.editor, Qt.Key_Z, Qt.ControlModifier)
    assert window.notebook.document() == before


def test_a_notebooks_colours_survive_a_restart_after_an_alternative_and_after_ctrl_z(qtbot, open_window):
    from tests.helpers import fragments, notebook_colours

    window = open_window(max_new_tokens=20, probabilities=True)
    picked, old = continued_notebook(qtbot, window)
    pick_in_notebook(qtbot, window, old)  # an alternative picked and left so
    new = window.history.messages(picked)[-1]
    undone, first = continued_notebook(qtbot, window, "The lighthouse keeper")
    before = window.notebook.document()
    pick_in_notebook(qtbot, window, first)
    for _ in range(3):  # ... and one taken back: Ctrl+Z until the older text is back
        if window.notebook.document() == before:
            break
        qtbot.keyClick(window.notebook.editor, Qt.Key_Z, Qt.ControlModifier)
    assert window.notebook.document() == before
    window.close()
    again = open_window(probabilities=True)
    again.conversations.open(picked)  # the new continuation coloured, and the old one's words before the cut
    head = "".join(t for _, t, _, _ in fragments(again.notebook.editor, old.id))
    assert head and old.content.startswith(head) and head != old.content
    assert "".join(t for _, t, _, _ in fragments(again.notebook.editor, new.id)) == new.content
    again.conversations.open(undone)  # the older text brought back: coloured again
    assert again.notebook.document() == before
    assert "".join(t for _, t, _, _ in fragments(again.notebook.editor, first.id)) == first.content
    assert notebook_colours(again) and again.notebook.model_text() == first.content


def test_a_notebook_has_its_own_model_and_preset_and_its_card_speaks_of_the_text(qtbot, open_window, wide_model_dir):
    from tests.helpers import fragments, hover_token

    window = open_window(max_new_tokens=20, probabilities=True)
    window.conversations.new_notebook()
    book = window.conversations.current_id
    options = window.notebook.options
    assert options.model.isVisibleTo(window) and not options.preamble_button.isVisibleTo(window)
    window.notebook.model_chosen.emit(str(wide_model_dir))  # as choosing it in the bar above the notebook
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == wide_model_dir,
                    timeout=20000)
    options.preset.setCurrentIndex(options.preset.findData("Precise"))
    options.preset.activated.emit(options.preset.currentIndex())
    conv = window.history.conversation(book)
    assert (conv.model, conv.preset) == (str(wide_model_dir), "Precise")
    window.notebook.editor.setPlainText("The fox")
    window.conversations.continue_notebook()
    wait_idle(qtbot, window)
    reply = window.history.messages(book)[-1]
    assert reply.model == "tiny-wide" and reply.settings["temperature"] == 0.3 and reply.settings["top_k"] == 20
    position = [f for f in fragments(window.notebook.editor, reply.id) if f[1].strip()][1][0]
    hover_token(qtbot, window.notebook.editor, position)
    card = window.notebook.hover.card
    qtbot.waitUntil(card.isVisible, timeout=2000)
    assert "reply" not in card.hint.text() and "Ctrl+Z" in card.hint.text()
    window.conversations.new_chat()
    assert window.chat.options.model.currentData() == ""  # the chat's own choice is apart
    window.conversations.open(book)
    assert options.model.currentData() == str(wide_model_dir) and options.preset.currentData() == "Precise"


def test_a_reply_cut_by_quitting_keeps_its_colours(qtbot, open_window):
    from tests.helpers import fragments

    window = open_window(max_new_tokens=4000, wide=True, probabilities=True)
    type_and_send(qtbot, window, "Tell me a long story")
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 40, timeout=20000)
    conv = window.conversations.current_id
    window.close()
    reply = window.history.messages(conv)[-1]
    assert reply.role == "assistant" and reply.stop_reason == "cancelled"
    data = stored_tokens(window, reply.id)
    assert data is not None and data.text().strip() == reply.content
    again = open_window(wide=True, probabilities=True)
    again.conversations.open(conv)
    assert "".join(t for _, t, _, _ in fragments(again.chat.transcript, reply.id)) == reply.content


# item 5: the keyboard's way to a token's card

def focused():
    from PySide6.QtWidgets import QApplication

    return QApplication.focusWidget()


def test_the_keyboard_goes_from_token_to_token_opens_the_card_and_continues_from_an_alternative(qtbot, open_window):
    from PySide6.QtGui import QAccessible

    window = open_window(max_new_tokens=20, probabilities=True)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    conv = window.conversations.current_id
    old = window.history.messages(conv)[-1]
    data = stored_tokens(window, old.id)
    view, card = window.chat.transcript, window.chat.transcript.hover.card
    assert window.chat.composer.hasFocus()
    qtbot.keyClick(window.chat.composer, Qt.Key_Right, Qt.AltModifier)  # from the message box: the last reply
    assert view.hasFocus()
    shown = [t[3] for t in view.token_cursor.tokens()]  # the reply's tokens that show text
    assert view.token_cursor.key == (old.id, shown[0])
    for _ in range(4):
        qtbot.keyClick(view, Qt.Key_Right, Qt.AltModifier)
    qtbot.keyClick(view, Qt.Key_Left, Qt.AltModifier)
    index = shown[3]
    assert view.token_cursor.key == (old.id, index)
    said = QAccessible.queryAccessibleInterface(view).text(QAccessible.Description)
    token = data.token(index)
    assert f"probability {percent(token.prob)}" in said and f"rank {token.rank}" in said and token.piece.strip() in said
    assert view.extraSelections() and not card.isVisible()  # shown highlighted
    qtbot.keyClick(view, Qt.Key_Return)
    assert card.isVisible() and card.key == (old.id, index)
    assert focused() in card.rows and focused().chosen  # on the model's own choice
    qtbot.keyClick(focused(), Qt.Key_Down)
    assert focused() is card.rows[1]
    qtbot.keyClick(focused(), Qt.Key_Escape)  # Esc closes the card, back on the token
    assert not card.isVisible() and view.hasFocus() and view.token_cursor.key == (old.id, index)
    qtbot.keyClick(view, Qt.Key_Return)
    qtbot.keyClick(focused(), Qt.Key_Down)
    choice = focused().choice
    qtbot.keyClick(focused(), Qt.Key_Return)  # Enter continues from the alternative
    assert window.active is not None
    wait_idle(qtbot, window)
    new = window.history.messages(conv)[-1]
    assert window.history.versions(new) == [old.id, new.id]
    new_data = stored_tokens(window, new.id)
    assert list(new_data.ids[:index]) == list(data.ids[:index]) and new_data.ids[index] == choice.token
    assert view.hasFocus()


def test_in_the_notebook_alt_arrows_reach_the_tokens_and_other_keys_type_as_before(qtbot, open_window):
    window = open_window(max_new_tokens=20, probabilities=True)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    book, old = continued_notebook(qtbot, window)
    editor, card = window.notebook.editor, window.notebook.hover.card
    editor.setFocus()
    editor.moveCursor(editor.textCursor().MoveOperation.End)
    before = window.notebook.document()
    qtbot.keyClick(editor, Qt.Key_Left, Qt.AltModifier)  # from the caret: the token before it
    qtbot.keyClick(editor, Qt.Key_Return)
    assert card.isVisible() and window.notebook.document() == before  # Enter opened the card, wrote nothing
    cursor = window.notebook.token_cursor
    last = cursor.tokens()[-1]
    assert cursor.key == card.key == (old.id, last[3]) and "Ctrl+Z" in card.hint.text()
    qtbot.keyClick(focused(), Qt.Key_Escape)
    qtbot.keyClick(editor, Qt.Key_X)  # another key: the editor's own again
    assert cursor.key is None and not editor.extraSelections() and "x" in window.notebook.document()
    qtbot.keyClick(editor, Qt.Key_Return)
    assert not card.isVisible() and window.notebook.document().count("\n") == before.count("\n") + 1
    qtbot.keyClick(editor, Qt.Key_Z, Qt.ControlModifier)
    qtbot.keyClick(editor, Qt.Key_Z, Qt.ControlModifier)
    assert window.notebook.document() == before
    editor.moveCursor(editor.textCursor().MoveOperation.End)
    qtbot.keyClick(editor, Qt.Key_Left, Qt.AltModifier)
    qtbot.keyClick(editor, Qt.Key_Return)
    qtbot.keyClick(focused(), Qt.Key_Down)
    qtbot.keyClick(focused(), Qt.Key_Return)  # continue from the alternative to the last token
    assert window.active is not None
    wait_idle(qtbot, window)
    assert window.history.versions(window.history.messages(book)[-1])[0] == old.id
    qtbot.keyClick(editor, Qt.Key_Z, Qt.ControlModifier)
    assert window.notebook.document() == before


def test_continuations_are_placed_in_the_texts_order_without_overlapping():
    from app.notebook.page import place

    text = "Once upon a time there was a fox. The fox ran."
    pieces = [" The fox ran.", " there was a fox.", " there was", "absent", " fox"]
    assert place(text, pieces) == [(16, 1), (33, 0)]  # the longer of two at one place; nothing placed twice
    assert place("abab", ["ab", "ab"]) == [(0, 0), (2, 1)]

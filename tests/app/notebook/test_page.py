"""The notebook (app.notebook.page): continuing a text and saving it, the marks of what the model wrote until
edited, Ctrl+Z, alternatives picked from a token's card, its own model and preset, its name from its first words."""


from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from tests.helpers import click_row, focused, order, wait_idle


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


def test_a_notebook_continuation_goes_on_in_the_background_without_doubling_text(qtbot, open_window):
    window = open_window(max_new_tokens=200, wide=True)
    window.conversations.new_chat()
    chat_id = window.conversations.current_id
    window.conversations.new_notebook()
    book_id = window.conversations.current_id
    window.notebook.editor.setPlainText("The fox said")
    window.conversations.continue_notebook()
    qtbot.waitUntil(lambda: len(window.active.text) > 5, timeout=20000)
    window.conversations.open(chat_id)
    wait_idle(qtbot, window)
    reply = window.history.messages(book_id)[-1]
    assert reply.stop_reason != "cancelled"
    assert window.history.conversation(book_id).document == "The fox said" + reply.content
    window.conversations.open(book_id)
    assert window.notebook.document() == "The fox said" + reply.content


def test_notebook_continues_the_document_and_saves_it(qtbot, open_window):
    window = open_window()
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier | Qt.ShiftModifier)
    assert window.pages.currentIndex() == 1
    window.notebook.editor.setPlainText("Once upon a time")
    qtbot.keyClick(window.notebook.editor, Qt.Key_Return, Qt.ControlModifier)
    wait_idle(qtbot, window)
    text = window.notebook.editor.toPlainText()
    assert text.startswith("Once upon a time") and len(text) > len("Once upon a time")
    conv = window.history.conversation(window.conversations.current_id)
    assert conv.mode == "notebook" and conv.document == text
    window.notebook.editor.setPlainText("A different start")
    window.conversations.continue_notebook()
    wait_idle(qtbot, window)
    assert window.notebook.editor.toPlainText().startswith("A different start")
    assert window.history.conversation(window.conversations.current_id).document == window.notebook.editor.toPlainText()
    assert [m.role for m in window.history.messages(window.conversations.current_id)] == ["assistant", "assistant"]


def test_notebook_marks_what_the_model_wrote_until_edited_and_ctrl_z_takes_it_back(qtbot, open_window):
    window = open_window(max_new_tokens=30)
    window.conversations.new_notebook()
    book = window.conversations.current_id
    editor = window.notebook.editor
    qtbot.keyClicks(editor, "Once upon a time")
    qtbot.keyClick(editor, Qt.Key_Return, Qt.ControlModifier)
    wait_idle(qtbot, window)
    reply = window.history.messages(book)[-1].content
    continued = editor.toPlainText()
    written = continued[len("Once upon a time"):]
    assert reply.strip() and window.notebook.model_text() == written and written.startswith(reply)
    assert window.history.conversation(book).title == "Once upon a time"  # named after its first words
    editor.moveCursor(QTextCursor.End)
    qtbot.keyClicks(editor, " mine")  # typed right after the model's text: the person's, not marked
    assert window.notebook.model_text() == written and editor.toPlainText() == continued + " mine"
    qtbot.keyClick(editor, Qt.Key_Z, Qt.ControlModifier)  # my typing goes first ...
    assert editor.toPlainText() == continued
    qtbot.keyClick(editor, Qt.Key_Z, Qt.ControlModifier)  # ... then the whole continuation, in one step
    assert editor.toPlainText() == "Once upon a time"
    window.conversations.store_document()
    window.conversations.new_chat()
    window.history.set_document(book, "Once upon a time" + reply)
    window.conversations.open(book)  # marks come back from the history
    assert window.notebook.model_text() == reply
    editor.setTextCursor(QTextCursor(editor.document()))
    editor.moveCursor(QTextCursor.End)
    editor.moveCursor(QTextCursor.Left)
    qtbot.keyClick(editor, Qt.Key_Backspace)  # an edit inside the model's text: that character is gone ...
    window.conversations.store_document()
    window.conversations.new_chat()
    window.conversations.open(book)
    assert window.notebook.model_text() == ""  # ... and the continuation no longer counts as the model's


def test_a_new_notebook_is_named_after_its_first_words(qtbot, open_window):
    window = open_window()
    window.conversations.new_notebook()
    window.notebook.editor.setPlainText("The lighthouse keeper   counted the ships\nthat passed")
    window.conversations.store_document()
    assert window.history.conversation(window.conversations.current_id).title == \
        "The lighthouse keeper counted the ships that pa…"
    window.conversations.rename(window.conversations.current_id, "Mine")
    window.notebook.editor.setPlainText("Other words")
    window.conversations.store_document()
    assert window.history.conversation(window.conversations.current_id).title == "Mine"  # a name given stays


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

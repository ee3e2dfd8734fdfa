"""Writing in a chat: Enter sends and the reply streams in, Stop keeps what came, regenerate, edit and resend,
continue a cut reply, retry a message left without one, copy, the live token count, the preamble; the real window
(app.chat.conversations, app.chat.page), offscreen, on the tiny model and a real SQLite file."""

import sqlite3

from PySide6.QtCore import QElapsedTimer, Qt

from tests.helpers import click_link, stored_tokens, type_and_send, wait_idle


def test_enter_sends_and_reply_streams_in(qtbot, open_window):
    window = open_window(max_new_tokens=400, wide=True)
    sizes = []
    window.requests.tokens.connect(lambda *_: sizes.append(len(window.chat.transcript.toPlainText())))
    type_and_send(qtbot, window, "Hello there")
    assert window.active is not None and window.chat.send_button.text() == "Stop"
    wait_idle(qtbot, window)
    messages = window.history.messages(window.conversations.current_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "Hello there"
    assert messages[1].content and messages[1].content in window.chat.transcript.toPlainText()
    assert len(sizes) > 1 and sizes == sorted(sizes), "the reply arrives in pieces, growing"
    assert messages[1].model == "tiny-wide" and messages[1].settings["max_new_tokens"] == 400
    assert messages[1].settings["precision"] == "float32" and messages[1].settings["device"] == "cpu"
    assert "threads" in messages[1].settings
    assert window.chat.send_button.text() == "Send"
    assert "/ 4,096" in window.status_bar.context_label.text() and "tok/s" in window.status_bar.speed_label.text()
    assert window.sidebar.list.count() == 1 and "Hello there" in window.sidebar.list.item(0).text()


def test_after_a_restart_a_filled_chat_shows_how_full_it_is(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    window.close()
    again = open_window()
    qtbot.waitUntil(lambda: "—" not in again.status_bar.context_label.text(), timeout=5000)
    assert again.status_bar.context_label.text().startswith("context ")
    assert again.status_bar.context_label.text() != "context 0 / 128"


def test_shift_enter_is_a_new_line(qtbot, open_window):
    window = open_window()
    qtbot.keyClicks(window.chat.composer, "line one")
    qtbot.keyClick(window.chat.composer, Qt.Key_Return, Qt.ShiftModifier)
    qtbot.keyClicks(window.chat.composer, "line two")
    assert window.chat.composer.toPlainText() == "line one\nline two"
    assert window.active is None and window.conversations.current_id is None


def test_stop_keeps_the_partial_reply(qtbot, open_window):
    window = open_window(max_new_tokens=4000, wide=True)
    type_and_send(qtbot, window, "Tell me a long story")
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 20, timeout=10000)
    qtbot.keyClick(window, Qt.Key_Escape)
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    assert reply.role == "assistant" and reply.stop_reason == "cancelled"
    assert len(reply.content) > 10
    assert "stopped" in window.chat.transcript.toPlainText()


def test_regenerate_replaces_the_reply(qtbot, open_window):
    window = open_window(temperature=1.0, seed=1)
    type_and_send(qtbot, window, "Hi")
    wait_idle(qtbot, window)
    first = window.history.messages(window.conversations.current_id)[-1]
    window.settings_panel.seed.setValue(2)
    window.conversations.message_action("regenerate", first.id)
    wait_idle(qtbot, window)
    messages = window.history.messages(window.conversations.current_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].id != first.id and messages[1].settings["seed"] == 2


def test_edit_and_resend_replaces_the_reply(qtbot, open_window):
    window = open_window()
    type_and_send(qtbot, window, "First question")
    wait_idle(qtbot, window)
    type_and_send(qtbot, window, "Second question")
    wait_idle(qtbot, window)
    first_user = window.history.messages(window.conversations.current_id)[0]
    window.conversations.message_action("edit", first_user.id)
    assert window.chat.composer.toPlainText() == "First question" and window.chat.edit_hint.isVisibleTo(window)
    window.chat.composer.clear()
    type_and_send(qtbot, window, "Better question")
    wait_idle(qtbot, window)
    messages = window.history.messages(window.conversations.current_id)
    assert [(m.role, m.id == first_user.id) for m in messages] == [("user", False), ("assistant", False)]
    assert messages[0].content == "Better question"
    assert window.history.versions(messages[0]) == [first_user.id, messages[0].id]  # the first version is kept


def test_edit_and_regenerate_keep_every_version_and_the_turns_after_it(qtbot, open_window):
    window = open_window()
    for text in ("One", "Two", "Three", "Four"):  # a 4-turn chat
        type_and_send(qtbot, window, text)
        wait_idle(qtbot, window)
    conv = window.conversations.current_id
    before = [(m.role, m.content) for m in window.history.messages(conv)]
    third = window.history.messages(conv)[4]
    window.conversations.message_action("edit", third.id)
    window.chat.composer.clear()
    type_and_send(qtbot, window, "Three, again")
    wait_idle(qtbot, window)
    after = window.history.messages(conv)
    assert [m.content for m in after[:5]] == [c for _, c in before[:4]] + ["Three, again"] and len(after) == 6
    assert "‹ 2/2 ›" in window.chat.transcript.toPlainText().replace("\xa0", " ")
    window.conversations.message_action("older", after[4].id)  # the first version, with turn 4 after it
    assert [(m.role, m.content) for m in window.history.messages(conv)] == before
    assert "Four" in window.chat.transcript.toPlainText()
    reply = window.history.messages(conv)[3]  # regenerate the second reply: turns 3 and 4 stay with the old one
    window.conversations.message_action("regenerate", reply.id)
    wait_idle(qtbot, window)
    shown = window.history.messages(conv)
    assert len(shown) == 4 and window.history.versions(shown[3]) == [reply.id, shown[3].id]
    window.conversations.message_action("older", shown[3].id)  # the old reply, and the latest turns after it
    back = window.history.messages(conv)
    assert back[3].id == reply.id and [m.content for m in back[4:5]] == ["Three, again"] and len(back) == 6


def test_copy_puts_the_reply_on_the_clipboard(qtbot, open_window):
    from PySide6.QtGui import QGuiApplication

    window = open_window()
    type_and_send(qtbot, window, "Hi")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    window.conversations.message_action("copy", reply.id)
    assert QGuiApplication.clipboard().text() == reply.content


def test_closing_mid_generation_stops_and_keeps_the_partial_reply(qtbot, open_window, dirs):
    window = open_window(max_new_tokens=4000, wide=True)
    type_and_send(qtbot, window, "Go on and on")
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 20, timeout=10000)
    conversation = window.conversations.current_id
    timer = QElapsedTimer()
    timer.start()
    window.close()
    assert timer.elapsed() < 1000
    assert window.requests.engine_thread.isFinished()
    with sqlite3.connect(dirs / "data" / "history.sqlite3") as db:
        rows = db.execute("SELECT role, stop_reason, length(content) FROM messages WHERE conversation_id = ?",
                          (conversation,)).fetchall()
    assert rows[-1][0] == "assistant" and rows[-1][1] == "cancelled" and rows[-1][2] > 10


def test_a_live_token_count_under_the_message_box_warns_before_turns_are_left_out(qtbot, open_window):
    from engine.core.tokenizer import GPT2Tokenizer

    window = open_window()
    tokenizer = GPT2Tokenizer.from_folder(window.model_info.folder)
    label = window.chat.count_label
    qtbot.keyClicks(window.chat.composer, "Hello there, fox")
    expected = len(tokenizer.encode("Hello there, fox"))
    qtbot.waitUntil(lambda: label.text().startswith(f"{expected} tokens · conversation "), timeout=3000)
    assert label.text().endswith(" / 128") and "left out" not in label.text()
    window.chat.composer.insertPlainText(" and the crow" * 40)  # a long paste: over tiny's 128 tokens
    qtbot.waitUntil(lambda: "the oldest turns will be left out" in label.text(), timeout=3000)
    assert label.property("over") is True
    total = int(label.text().split("conversation ")[1].split(" /")[0].replace(",", ""))
    assert total > 128
    window.chat.composer.clear()
    qtbot.waitUntil(lambda: label.text() == "0 tokens · conversation 0 / 128", timeout=3000)


def test_the_preamble_box_stays_open_while_it_is_written_in(qtbot, open_window):
    window = open_window()
    options = window.chat.options
    qtbot.mouseClick(options.preamble_button, Qt.LeftButton)
    assert options.preamble.isVisibleTo(window) and options.preamble.hasFocus()
    qtbot.keyClicks(options.preamble, "Be brief.")
    qtbot.waitUntil(lambda: window.conversations.current_id is not None, timeout=3000)  # kept: a chat is made
    qtbot.keyClicks(options.preamble, " Be kind.")
    qtbot.waitUntil(lambda: window.history.conversation(window.conversations.current_id).preamble ==
                    "Be brief. Be kind.", timeout=3000)
    assert options.preamble.isVisibleTo(window) and options.preamble_button.text() == "Preamble ✓"
    window.conversations.new_chat()
    assert not options.preamble.isVisibleTo(window) and options.preamble.toPlainText() == ""


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

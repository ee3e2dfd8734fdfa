"""The real window, offscreen, driven through pytest-qt with a real (tiny) model and a real SQLite file."""

import json
import sqlite3
import statistics
import time

import pytest
from PySide6.QtCore import QElapsedTimer, Qt
from PySide6.QtGui import QTextCursor

from app.history.errors import HistoryError
from app.history.store import History
from app.settings import AppSettings
from app.shell.window import MainWindow
from engine.store.local import embedded_model_folder
from tests.helpers import EventLoopGaps, type_and_send, wait_idle


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


def test_the_status_bar_follows_the_reply_and_the_open_conversation(qtbot, open_window):
    window = open_window(max_new_tokens=60)
    live = []
    window.requests.tokens.connect(lambda *_: live.append(window.status_bar.speed_label.text()))
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    assert live and all(" token" in text for text in live)  # it moves while the reply streams
    filled = window.status_bar.context_label.text()
    assert filled.startswith("context ") and not filled.startswith("context 0 ") and "—" not in filled
    window.conversations.new_chat()
    assert window.status_bar.context_label.text() == "context 0 / 128"  # not the previous chat's figure
    assert window.status_bar.speed_label.text() == "" and window.status_bar.ttft_label.text() == ""
    window.sidebar.list.setCurrentRow(1)  # back to the first chat
    assert window.status_bar.context_label.text() == filled


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


def test_copy_puts_the_reply_on_the_clipboard(qtbot, open_window):
    from PySide6.QtGui import QGuiApplication

    window = open_window()
    type_and_send(qtbot, window, "Hi")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    window.conversations.message_action("copy", reply.id)
    assert QGuiApplication.clipboard().text() == reply.content


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


def test_gui_event_loop_never_stalls_during_generation(qtbot, open_window, record_property):
    window = open_window(max_new_tokens=1500, wide=True)
    gaps = EventLoopGaps()
    gaps.start()
    type_and_send(qtbot, window, "Stream for a while")
    gaps.restart()
    wait_idle(qtbot, window, timeout=60000)
    gaps.stop()
    worst = gaps.worst_ms
    record_property("worst_event_loop_gap_ms", worst)
    print(f"\nworst GUI event-loop gap during generation: {worst:.1f} ms over {len(gaps.gaps)} ticks "
          f"(median {gaps.median_ms:.1f} ms)")
    assert worst < 50


def test_appending_a_token_does_not_grow_with_the_transcript(qtbot, open_window):
    window = open_window()
    view = window.chat.transcript
    view.render([])
    view.begin_stream("x " * 2000)

    def time_appends(n=200):
        t0 = time.perf_counter()
        for _ in range(n):
            view.append(" word")
        return (time.perf_counter() - t0) / n

    early = statistics.median(time_appends() for _ in range(3))
    for _ in range(10):
        time_appends()  # 2,000 more tokens
    late = statistics.median(time_appends() for _ in range(3))
    assert late < 3 * early + 20e-6, (early, late)


def test_markdown_code_blocks_are_monospace(qtbot, open_window):
    window = open_window()
    conv = window.history.create_conversation("md", "chat")
    window.history.add_message(conv, "user", "show code")
    window.history.add_message(conv, "assistant", "Here:\n\n```\nprint('hi')\n```\n\nand **bold**")
    window.conversations.open(conv)
    block = window.chat.transcript.document().begin()
    fonts = {}
    while block.isValid():
        fonts[block.text()] = block.charFormat().font().fixedPitch() or block.blockFormat().nonBreakableLines()
        block = block.next()
    assert fonts["print('hi')"] is True
    assert fonts["Here:"] is False
    assert "**" not in window.chat.transcript.toPlainText()


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


@pytest.mark.parametrize("mode", ["chat", "notebook"])
def test_on_the_very_first_start_typing_lands_where_a_person_writes(qtbot, open_window, mode):
    window = open_window(mode=mode)
    window.activateWindow()
    target = window.chat.composer if mode == "chat" else window.notebook.editor
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5000)
    assert target.hasFocus()
    qtbot.keyClicks(window.focusWidget(), "Hello")
    assert "Hello" in target.toPlainText()


def test_a_remembered_model_that_fails_at_start_gives_way_to_the_embedded_one(qtbot, open_window, tmp_path,
                                                                               tiny_model_dir):
    missing = str(tmp_path / "missing")
    window = open_window(model=missing, wait=False)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=20000)
    assert window.model_info.folder == embedded_model_folder()
    text = window.banner.label.text()
    assert window.banner.isVisibleTo(window) and missing in text and "No model folder" in text and "embedded" in text
    assert window.chat.send_button.isEnabled()
    assert window.settings.model == missing  # remembered still: a folder on a drive not mounted today comes back
    window.use_model(str(tiny_model_dir))
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == tiny_model_dir,
                    timeout=20000)
    assert not window.banner.isVisibleTo(window)
    type_and_send(qtbot, window, "Now it works")
    wait_idle(qtbot, window)
    assert window.history.messages(window.conversations.current_id)[-1].role == "assistant"


def test_a_folder_that_fails_to_open_keeps_the_current_model(qtbot, open_window, tmp_path, dirs, tiny_model_dir):
    window = open_window()
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    window.use_model(str(bad))
    qtbot.waitUntil(lambda: window.banner.isVisibleTo(window), timeout=20000)
    text = window.banner.label.text()
    assert str(bad) in text and "config.json" in text and f"Still using {tiny_model_dir.name}" in text
    assert window.model_info is not None and window.model_info.folder == tiny_model_dir
    assert window.status_bar.model_label.text() == tiny_model_dir.name
    type_and_send(qtbot, window, "Still here")
    wait_idle(qtbot, window)
    assert window.history.messages(window.conversations.current_id)[-1].role == "assistant"
    window.close()
    assert AppSettings.load(dirs / "config" / "settings.json").model == str(tiny_model_dir)


def test_settings_persist_across_restart(qtbot, open_window, dirs):
    window = open_window()
    window.settings_panel.temperature.setValue(1.25)
    window.settings_panel.top_k.setValue(7)
    saved = json.loads((dirs / "config" / "settings.json").read_text())
    assert saved["temperature"] == 1.25 and saved["top_k"] == 7
    window.close()
    loaded = AppSettings.load(dirs / "config" / "settings.json")
    assert loaded.temperature == 1.25 and loaded.top_k == 7 and loaded.window_geometry


def test_precision_setting_reloads_the_model_and_persists(qtbot, open_window, dirs):
    window = open_window()
    assert window.status_bar.device_label.text().endswith("float32")
    window.settings_panel.precision.setCurrentText("int8")
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.precision == "int8", timeout=20000)
    assert window.status_bar.device_label.text().endswith("int8")
    assert any((dirs / "data" / "prepared").glob("*-int8-*.safetensors"))
    type_and_send(qtbot, window, "Hello in int8")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    assert reply.role == "assistant" and reply.stop_reason in ("length", "eos", "stop")
    assert json.loads((dirs / "config" / "settings.json").read_text())["precision"] == "int8"


def test_keyboard_shortcuts(qtbot, open_window):
    window = open_window()
    qtbot.keyClick(window, Qt.Key_Comma, Qt.ControlModifier)
    assert window.settings_dock.isVisible()
    qtbot.keyClick(window, Qt.Key_F, Qt.ControlModifier)
    assert window.sidebar.search.hasFocus()


@pytest.mark.parametrize("kind", ["corrupt", "newer"])
def test_unusable_history_file_is_kept_and_reported(qtbot, dirs, kind):
    path = dirs / "history.sqlite3"
    if kind == "corrupt":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE conversations (id INTEGER PRIMARY KEY)")
            db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY)")
            db.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="newer" if kind == "newer" else "not a readable"):
        History(path)
    assert path.read_bytes() == before
    window = MainWindow(History(":memory:"), AppSettings(model=str(dirs / "none")), dirs / "s.json",
                        history_problem="History problem here.")
    qtbot.addWidget(window)
    assert "History problem here." in window.banner.label.text()
    window.close()


def test_settings_file_with_bad_values_gives_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"temperature": "hot", "top_k": 5, "seed": 3, "unknown": 1}))
    s = AppSettings.load(path)
    assert s.temperature == AppSettings().temperature and s.top_k == 5 and s.seed == 3
    path.write_text("{broken")
    assert AppSettings.load(path) == AppSettings()


def test_tasks_generate_template_streams_output(qtbot, open_window):
    window = open_window()
    window.tabs.setCurrentIndex(1)
    tasks = window.tasks
    tasks.select_by_name("Summarise")
    assert list(tasks.fields) == ["article"]
    tasks.set_values({"article": "The fox ran into the wood and hid from the hunters."})
    finished = []
    window.requests.finished.connect(lambda _request, done: finished.append(done))
    qtbot.mouseClick(tasks.run_button, Qt.LeftButton)
    assert tasks.run_button.text() == "Stop"
    wait_idle(qtbot, window)
    assert tasks.run_button.text() == "Run"
    done = finished[-1]
    assert done.token_ids and done.prompt_tokens > 10
    assert tasks.output.toPlainText() == done.text
    assert window.history.conversations() == []  # tasks do not write to the chat history
    assert f"after {len(done.token_ids)} token" in tasks.message.text()  # how it ended is said
    tasks.select_by_name("Translate")
    assert tasks.output.toPlainText() == ""  # the answer was Summarise's, not Translate's


def test_an_empty_task_answer_says_what_happened(qtbot, open_window):
    window = open_window()
    tasks = window.tasks
    tasks.select_by_name("Summarise")
    tasks.set_values({"article": "The fox ran into the wood."})
    finished = []
    window.requests.finished.connect(lambda _request, done: finished.append(done))
    # Every text stops at once: the answer is empty, as when a model's first token is the stop sequence.
    window.tasks.run_generate.disconnect()
    window.tasks.run_generate.connect(lambda prompt, settings: window._run_task(
        prompt, {**settings, "temperature": 0.0,
                 "stop": list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\" \n-ABCDEFGHIJKLMNOPQRSTUVWXYZ")}))
    tasks.run_or_stop()
    wait_idle(qtbot, window)
    assert finished[-1].stop_reason == "stop" and tasks.output.toPlainText().strip() == ""
    assert "wrote nothing to show" in tasks.message.text() and "stop sequence" in tasks.message.text()


def test_tasks_choose_template_shows_probabilities(qtbot, open_window, tiny):
    from engine.inference.scoring import choose

    window = open_window()
    window.tabs.setCurrentIndex(1)
    tasks = window.tasks
    tasks.select_by_name("Multiple choice")
    tasks.set_values({"context": "The glass fell and", "options": "broke\nsang a song\nflew away"})
    tasks.run_or_stop()
    wait_idle(qtbot, window)
    probs = tasks.chart.probabilities()
    assert len(probs) == 3 and abs(sum(probs) - 1) < 0.01
    scores, best = choose(tiny, "The glass fell and", [" broke", " sang a song", " flew away"])
    assert [round(s.prob, 3) for s in scores] == [round(p, 3) for p in probs]
    assert tasks.chart.rows[best][0].text().startswith("★")


def test_tasks_render_errors_are_shown(qtbot, open_window):
    window = open_window()
    tasks = window.tasks
    tasks.select_by_name("Multiple choice")
    tasks.set_values({"context": "Hello", "options": ""})
    tasks.run_or_stop()
    assert "at least one option" in tasks.message.text()
    assert window.active is None


def test_template_editor_import_export_round_trip(qtbot, open_window, dirs, tmp_path):
    from app.tasks.template_editor import TemplateEditor
    from engine.inference.templates import NEW_TEMPLATE, read_template

    window = open_window()
    tasks = window.tasks
    editor = TemplateEditor(NEW_TEMPLATE.replace("My template", "Headline"), tasks.user_folder, None,
                            tasks.tokenizer, tasks.context_window)
    qtbot.addWidget(editor)
    assert "/ 128 tokens" in editor.status.text()
    assert editor.preview.toPlainText() == "A short example value.\n\nTL;DR:"
    editor.source.setPlainText("name = 'Broken'\nprompt = '{nothing}'")
    assert not editor.update_preview() and "nothing" in editor.status.text()
    editor.source.setPlainText(NEW_TEMPLATE.replace("My template", "Headline"))
    editor.save()
    tasks.reload(select="Headline")
    assert tasks.template.name == "Headline" and not tasks.template.builtin
    exported = tmp_path / "headline.toml"
    tasks.export_template(exported)
    tasks.delete_template(tasks.template)
    assert "Headline" not in tasks.templates
    imported = tasks.import_template(exported)
    assert imported.name == "Headline" and tasks.template.name == "Headline"
    assert read_template(exported).prompt == imported.prompt
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'")
    assert tasks.import_template(bad) is None and "could not be imported" in tasks.message.text()


def test_template_opens_in_notebook(qtbot, open_window):
    window = open_window()
    window.tasks.select_by_name("Translate")
    window.tasks.open_in_notebook.emit("English: hi\nFrench:")
    assert window.tabs.currentIndex() == 0 and window.pages.currentIndex() == 1
    assert window.notebook.editor.toPlainText() == "English: hi\nFrench:"
    assert window.history.conversation(window.conversations.current_id).document == "English: hi\nFrench:"


def test_file_menu_exports_and_imports_every_message(qtbot, open_window, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog

    from app.shell.window import EXPORT_JSON, EXPORT_MARKDOWN

    window = open_window()
    window.chat.composer.insertPlainText("Grüße, 狐 🦊")  # (keyClicks takes ASCII only)
    qtbot.keyClick(window.chat.composer, Qt.Key_Return)
    wait_idle(qtbot, window)
    conv = window.conversations.current_id
    reply = window.history.messages(conv)[-1]
    window.conversations.message_action("regenerate", reply.id)  # a second version of the reply
    wait_idle(qtbot, window)
    before = window.history.record(conv)
    actions = {a.text(): a for a in window.menuBar().actions()[0].menu().actions()}
    saved = tmp_path / "chat"  # no suffix: the chosen filter gives it
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(saved), EXPORT_JSON))
    actions["Export conversation…"].trigger()
    assert (tmp_path / "chat.json").exists() and "Exported 1 conversation" in window.status_bar.currentMessage()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(tmp_path / "all.md"), EXPORT_MARKDOWN))
    actions["Export all conversations…"].trigger()
    markdown = (tmp_path / "all.md").read_text(encoding="utf-8")
    assert "Grüße, 狐 🦊" in markdown and "(version 2 of 2)" in markdown
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(tmp_path / "chat.json"), EXPORT_JSON))
    actions["Import conversations…"].trigger()
    assert len(window.history.conversations()) == 2 and window.sidebar.list.count() == 2
    imported = window.conversations.current_id  # the imported copy is open, beside the original
    assert imported != conv
    after = window.history.record(imported)
    assert [(m.role, m.content, m.model, m.settings, m.stop_reason) for m in after.messages] == \
           [(m.role, m.content, m.model, m.settings, m.stop_reason) for m in before.messages]
    assert [m.content for m in window.history.messages(imported)] == [m.content for m in window.history.messages(conv)]
    assert "Grüße, 狐 🦊" in window.chat.transcript.toPlainText()
    assert window.history.record(conv) == before  # the original is untouched
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(tmp_path / "bad.json"), EXPORT_JSON))
    actions["Import conversations…"].trigger()
    assert "Nothing was imported" in window.banner.label.text() and len(window.history.conversations()) == 2


def long_conversation(history, turns=12):
    conv = history.create_conversation("Long", "chat")
    for i in range(turns):
        history.add_message(conv, "user", f"Question {i}: " + "tell me more " * 20)
        history.add_message(conv, "assistant", f"Answer {i}. " + "The fox ran into the wood. " * 30, model="tiny")
    return conv


def at_end(view) -> bool:
    bar = view.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() == bar.maximum()


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


def test_a_view_scrolled_up_stays_put_while_the_reply_streams_and_when_it_ends(qtbot, open_window):
    window = open_window(max_new_tokens=300, wide=True)
    window.conversations.open(long_conversation(window.history))
    view = window.chat.transcript
    type_and_send(qtbot, window, "And then?")
    assert at_end(view)
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 10, timeout=20000)
    view.verticalScrollBar().setValue(200)  # the person scrolls up to read
    assert not view.following()
    wait_idle(qtbot, window)
    qtbot.wait(50)
    assert view.verticalScrollBar().value() == 200  # not moved while streaming, nor when the reply was rendered
    assert window.history.messages(window.conversations.current_id)[-1].role == "assistant"
    view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())  # back at the end: it follows again
    assert view.following()


def test_after_stop_and_a_long_reply_the_view_is_exactly_at_the_end(qtbot, open_window):
    window = open_window(max_new_tokens=4000, wide=True)
    window.conversations.open(long_conversation(window.history))
    view = window.chat.transcript
    type_and_send(qtbot, window, "Tell me a long story")
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 3000, timeout=30000)
    assert at_end(view)  # followed the stream
    qtbot.keyClick(window, Qt.Key_Escape)
    wait_idle(qtbot, window)
    qtbot.wait(50)
    assert at_end(view)
    assert window.history.messages(window.conversations.current_id)[-1].stop_reason == "cancelled"


def test_streamed_text_is_never_cut_mid_sentence(qtbot, open_window):
    window = open_window()
    view = window.chat.transcript
    view.render([])
    view.begin_stream()
    sentence = "The fox ran far into the old dark wood"
    for _ in range(40):
        for word in sentence.split():
            view.append(" " + word)
        view.append(".")
    blocks, block = [], view.document().begin()
    while block.isValid():
        blocks.append(block.text())
        block = block.next()
    streamed = [b for b in blocks if "fox" in b]
    assert len(streamed) > 1  # cut into layout blocks (appending stays cheap) ...
    assert all(b.rstrip().endswith(".") for b in streamed[:-1])  # ... only where a sentence ends


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


def test_max_new_tokens_is_bounded_by_the_model_and_says_why(qtbot, open_window, dirs):
    window = open_window(max_new_tokens=1000)  # more than tiny's 128-token window
    panel = window.settings_panel
    assert panel.max_new_tokens.maximum() == 128 and panel.max_new_tokens.value() == 128
    assert "was 1,000" in panel.note_of("max_new_tokens") and "tiny" in panel.note_of("max_new_tokens")
    assert window.settings.max_new_tokens == 128
    window.toggle_settings()
    box = panel.max_new_tokens
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, "99999")
    assert box.text() == "99999"  # not cut to 999 while typing
    qtbot.keyClick(box, Qt.Key_Return)
    note = panel.note_of("max_new_tokens")
    assert box.value() == 128 and "Max new tokens takes 1 to 128" in note and "99999 is more, so it is 128" in note
    assert "context window" in note and panel.notes[box].isVisibleTo(window)
    top_k = panel.top_k
    top_k.setFocus()
    top_k.selectAll()
    qtbot.keyClicks(top_k, "5000")
    qtbot.keyClick(top_k, Qt.Key_Return)
    assert top_k.value() == 1000
    assert "Top-k takes 0 (off) to 1,000: 5000 is more, so it is 1,000" in panel.note_of("top_k")


def test_the_first_run_panel_says_what_the_model_is_until_dismissed(qtbot, open_window, dirs):
    window = open_window(model=None)  # the embedded model
    chat = window.chat
    assert chat.welcome_shown()
    text = chat.welcome.label.text()
    assert "7 million parameters" in text and "fairy tale" in text and "offline" in text
    qtbot.mouseClick(chat.welcome.get_gpt2, Qt.LeftButton)
    assert window.tabs.currentWidget() is window.models
    window.tabs.setCurrentIndex(0)
    type_and_send(qtbot, window, "Once upon a time")
    assert not chat.welcome_shown()  # a chat with messages has no room for it
    wait_idle(qtbot, window)
    window.conversations.new_chat()
    assert chat.welcome_shown()  # an empty chat again: shown until dismissed
    qtbot.mouseClick(chat.welcome.dismiss, Qt.LeftButton)
    assert not chat.welcome_shown() and chat.composer.hasFocus()
    assert AppSettings.load(dirs / "config" / "settings.json").welcome_dismissed is True
    window.close()
    again = open_window(welcome_dismissed=True)  # as AppSettings.load gives it
    again.conversations.new_chat()
    assert not again.chat.welcome_shown()


@pytest.mark.parametrize("settings_shown", [False, True])
def test_at_800_by_500_the_chat_column_keeps_its_room(qtbot, open_window, settings_shown):
    window = open_window()
    window.settings_dock.setVisible(settings_shown)
    window.resize(800, 500)
    qtbot.waitUntil(lambda: window.width() == 800 and window.height() == 500, timeout=3000)
    qtbot.wait(20)
    assert window.chat.width() >= 400, window.chat.width()
    assert window.minimumSizeHint().width() <= 800
    if settings_shown:
        assert window.settings_dock.width() >= 150 and window.settings_panel.max_new_tokens.isVisibleTo(window)
    window.tabs.setCurrentWidget(window.models)
    about = window.models.table.columnWidth(window.models.table.columnCount() - 1)
    assert about >= 120, about  # the Models view's About column stays readable


def test_error_messages_are_not_link_blue(qtbot, open_window):
    window = open_window()
    tasks = window.tasks
    tasks.select_by_name("Multiple choice")
    tasks.set_values({"context": "Hello", "options": ""})
    tasks.run_or_stop()
    assert tasks.message.property("error") is True and "highlight" not in tasks.message.styleSheet()
    tasks.select_by_name("Summarise")
    assert tasks.message.text() == "" and not tasks.message.property("error")


def test_each_reply_is_headed_by_the_model_that_wrote_it(qtbot, open_window):
    window = open_window()
    conv = window.history.create_conversation("Old", "chat")
    window.history.add_message(conv, "user", "Hi")
    window.history.add_message(conv, "assistant", "Hello from before", model="openai-community/gpt2")
    window.conversations.open(conv)
    heads = []
    window.requests.tokens.connect(lambda *_: heads.append(window.chat.transcript.toPlainText()))
    type_and_send(qtbot, window, "And you?")
    wait_idle(qtbot, window)
    text = window.chat.transcript.toPlainText()
    assert "openai-community/gpt2" in text and "\ntiny" in text and "Assistant" not in text
    assert heads and "tiny" in heads[0].split("And you?")[1]  # the streaming reply is headed by its model too


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


def test_every_control_has_an_accessible_name(qtbot, open_window):
    from PySide6.QtGui import QAccessible
    from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit,
                                   QTextEdit, QWidget)

    window = open_window()
    window.settings_dock.show()
    window.tasks.select_by_name("Multiple choice")  # its form's fields too
    kinds = (QAbstractButton, QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox, QComboBox)
    unnamed = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, kinds) or widget.objectName().startswith("qt_"):
            continue  # Qt's own parts (the table's corner, the menu bar's overflow) are named by Qt
        if isinstance(widget.parent(), (QAbstractSpinBox, QComboBox, QLineEdit)):
            continue  # the inside of a spin box or combo box, a line edit's clear button: the outer one is named
        if isinstance(widget, QComboBox):
            name = widget.accessibleName()  # a screen reader would otherwise read only its current value
        else:
            name = QAccessible.queryAccessibleInterface(widget).text(QAccessible.Name)  # own, text or label
        if not name.strip():
            unnamed.append(f"{type(widget).__name__} in {type(widget.parent()).__name__}")
    assert not unnamed, unnamed


def test_ctrl_plus_and_minus_change_the_text_size_and_it_is_remembered(qtbot, open_window, dirs):
    window = open_window()
    base = window.font().pointSize()
    qtbot.keyClick(window, Qt.Key_Equal, Qt.ControlModifier)
    qtbot.keyClick(window, Qt.Key_Equal, Qt.ControlModifier)
    assert window.font().pointSize() == base + 2
    assert window.chat.transcript.font().pointSize() == base + 2 and window.chat.composer.font().pointSize() == base + 2
    qtbot.keyClick(window, Qt.Key_Minus, Qt.ControlModifier)
    assert window.font().pointSize() == base + 1
    assert AppSettings.load(dirs / "config" / "settings.json").text_size == base + 1
    window.close()
    again = open_window(text_size=base + 1)
    assert again.font().pointSize() == base + 1
    qtbot.keyClick(again, Qt.Key_0, Qt.ControlModifier)
    assert again.font().pointSize() == base and again.settings.text_size == 0


def test_the_palette_follows_the_system_light_or_dark(qapp):
    from PySide6.QtGui import QPalette

    from app.shell.appearance import apply_color_scheme, follow_color_scheme

    app = qapp
    try:
        follow_color_scheme(app)
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # as when the system turns dark
        assert app.palette().color(QPalette.Window).lightness() < 100
        assert app.palette().color(QPalette.Text).lightness() > 200
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert app.palette().color(QPalette.Window).lightness() > 150
    finally:
        apply_color_scheme(app, Qt.ColorScheme.Light)


def test_each_chat_keeps_its_model_preset_and_preamble(qtbot, open_window, tiny_model_dir, wide_model_dir):
    window = open_window()
    chat = window.chat
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    first = window.conversations.current_id
    chat.model_chosen.emit(str(wide_model_dir))  # as choosing it in the bar above the chat
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == wide_model_dir, timeout=20000)
    chat.options.preset.setCurrentIndex(chat.options.preset.findData("Precise"))
    chat.options.preset.activated.emit(chat.options.preset.currentIndex())
    before = window.conversations.context_tokens()
    chat.options.preamble_button.click()
    chat.options.preamble.setPlainText("The assistant is a patient gardener.")
    chat.keep_options()
    conv = window.history.conversation(first)
    assert (conv.model, conv.preset, conv.preamble) == (str(wide_model_dir), "Precise",
                                                        "The assistant is a patient gardener.")
    from engine.core.tokenizer import GPT2Tokenizer
    from engine.inference.chat import Turn, format_chat

    turns = [Turn("system", conv.preamble)] + [Turn(m.role, m.content) for m in window.history.messages(first)]
    expected = len(GPT2Tokenizer.from_folder(wide_model_dir).encode(format_chat(turns, "transcript").text))
    assert window.conversations.context_tokens() == expected != before  # the preamble begins the prompt
    type_and_send(qtbot, window, "And now?")
    wait_idle(qtbot, window)
    reply = window.history.messages(first)[-1]
    assert reply.model == "tiny-wide" and reply.settings["temperature"] == 0.3 and reply.settings["top_k"] == 20

    window.conversations.new_chat()  # a chat of its own: the model in use, the panel's sampling, no preamble
    assert chat.options.model.currentData() == "" and chat.options.preset.currentData() == ""
    assert chat.options.preamble.toPlainText() == ""
    chat.model_chosen.emit(str(tiny_model_dir))
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == tiny_model_dir, timeout=20000)
    second = window.conversations.current_id
    window.conversations.open(first)  # its own model comes back with it
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == wide_model_dir, timeout=20000)
    assert chat.options.preset.currentData() == "Precise" and "gardener" in chat.options.preamble.toPlainText()
    window.conversations.open(second)
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == tiny_model_dir, timeout=20000)
    window.conversations.open(first)
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == wide_model_dir, timeout=20000)
    window.close()
    assert AppSettings.load(window.settings_path).model == str(wide_model_dir)  # the last one used ...
    again = open_window(model=str(wide_model_dir), wait=False)
    qtbot.waitUntil(lambda: again.model_info is not None, timeout=20000)
    assert again.conversations.current_id == second  # ... but the chat opened at start loads its own first
    assert again.model_info.folder == tiny_model_dir


def test_a_conversations_model_waits_for_a_reply_being_written_elsewhere(qtbot, open_window, tiny_model_dir,
                                                                        wide_model_dir):
    window = open_window(max_new_tokens=2000, wide=True)
    other = window.history.create_conversation("Tiny chat", "chat")
    window.history.set_options(other, model=str(tiny_model_dir))
    window.conversations.new_chat()
    type_and_send(qtbot, window, "A long story")
    writing = window.conversations.current_id
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 5, timeout=20000)
    window.conversations.open(other)
    assert window.model_info.folder == wide_model_dir and "loads when the reply" in window.status_bar.currentMessage()
    wait_idle(qtbot, window, timeout=60000)
    assert window.history.messages(writing)[-1].stop_reason != "cancelled"  # not stopped by the switch
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.folder == tiny_model_dir, timeout=20000)


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

"""The model in use (app.shell.model_in_use): one name for each model everywhere, a model that fails at start
or when opened, models removed or forgotten while in use, a folder opened with Ctrl+O, and each conversation
keeping its own model (loaded when a reply elsewhere ends)."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QTimer, Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from app.finetune.runs import TrainingRun, runs_dir, write_run
from app.history.store import History
from app.models.servers import remote_name
from app.settings import AppSettings
from engine.core.prepared_names import prepared_dir
from engine.store.local import embedded_model_folder
from engine.tooling.train import TrainSettings, train
from tests.helpers import running_server, story_text, type_and_send, wait_idle, wait_loaded, EMBEDDED


@pytest.fixture(scope="module")
def lora_on(tmp_path_factory):
    """Trains (once per base) a LoRA adapter of two steps: a run folder to copy into a test's runs folder."""
    made = {}

    def make(base: str):
        if base not in made:
            text = tmp_path_factory.mktemp("text") / "letters.txt"
            text.write_text(story_text(120, seed=7), encoding="utf-8")
            run = tmp_path_factory.mktemp("runs") / "my-letters"
            train(run, TrainSettings(data=str(text), init=base, steps=2, context_window=32, batch_size=2,
                                     eval_every=2, eval_batches=1, warmup=1, lr=1e-3, min_lr=1e-4, lora=2),
                  device="cpu", say=lambda m: None)
            made[base] = run
        return made[base]
    return make


def answer_the_question(answer) -> list[str]:
    """Answers the next message box (with `answer`) once it is open; what it asked is put in the list returned."""
    asked = []

    def look():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            asked.append(box.text())
            box.done(answer)
        else:
            QTimer.singleShot(50, look)
    QTimer.singleShot(50, look)
    return asked


def finished_run(trained, base: str, base_shown: str) -> TrainingRun:
    """A finished run of the Fine-tune view ("my letters" on `base`) in this test's data folder."""
    folder = runs_dir() / "my-letters"
    shutil.copytree(trained, folder)
    run = TrainingRun(folder=folder, name="my letters", base=base, base_shown=base_shown, lora=True, steps=2,
                      args=("--lora", "2"))
    write_run(run)
    return run


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
    window.model.use(str(tiny_model_dir))
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
    window.model.use(str(bad))
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


# 9: one name


def test_the_embedded_model_goes_by_tales_7m_in_the_picker_models_status_bar_and_replies(qtbot, open_window, dirs):
    history = History(dirs / "data" / "history.sqlite3")
    old = history.create_conversation("From an older version", "chat")
    history.set_options(old, model="embedded")  # what the picker kept for it before
    history.close()
    window = open_window(model="embedded")  # settings.json of an older version
    wait_loaded(qtbot, window, embedded_model_folder())
    assert window.status_bar.model_label.text() == EMBEDDED
    box = window.chat.options.model
    names = [box.itemData(i) for i in range(box.count())]
    assert EMBEDDED in names and "embedded" not in names and box.currentData() == EMBEDDED
    row = window.models.row_of(EMBEDDED)
    assert row is not None and window.models.table.item(row, 0).font().bold()
    type_and_send(qtbot, window, "Once upon a time")
    wait_idle(qtbot, window)
    reply = window.history.messages(window.conversations.current_id)[-1]
    assert reply.model == EMBEDDED and f"\n{EMBEDDED}" in window.chat.transcript.toPlainText()


def test_a_fine_tune_of_the_embedded_model_is_tales_7m_plus_its_name_and_removing_it_takes_its_copy(
        qtbot, open_window, dirs, lora_on):
    window = open_window()
    run = finished_run(lora_on("embedded"), base="embedded", base_shown=EMBEDDED)  # as the view wrote it
    name = f"{EMBEDDED} + my letters"
    assert run.model_name == name
    window.finetune.models_changed.emit()  # as when the view finishes a run
    assert window.chat.options.model.findData(name) >= 0 and window.models.row_of(name) is not None
    window.use_model_name(name)
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.name == name, timeout=60000)
    assert window.status_bar.model_label.text() == name  # was "embedded + my-letters"
    merged = list((prepared_dir() / "merged").iterdir())
    assert merged, "loading the adapter made its merged copy"
    window.conversations.choose_model(name)
    conv = window.conversations.current_id
    type_and_send(qtbot, window, "Dear friend")
    wait_idle(qtbot, window)
    assert window.history.messages(conv)[-1].model == name

    shown = answer_the_question(QMessageBox.No)
    window.models.table.selectRow(window.models.row_of(name))
    window.models.ask_remove()
    assert shown and "the copies made to run it" in shown[0], shown
    window.models.remove_run(name)
    assert not run.folder.exists() and not any(p.exists() for p in merged)  # the dialog said so: they go too
    wait_loaded(qtbot, window, embedded_model_folder())
    assert window.status_bar.model_label.text() == EMBEDDED
    assert window.history.conversation(conv).model is None and window.chat.options.model.currentData() == ""
    assert window.chat.options.model.findData(name) < 0
    assert AppSettings.load(dirs / "config" / "settings.json").model is None
    window.close()
    again = open_window(model=None)
    wait_loaded(qtbot, again)
    again.conversations.open(conv)
    qtbot.wait(200)
    assert not again.banner.isVisibleTo(again), again.banner.label.text()  # no "No model folder at tales-7m + …"


# 8: removed or forgotten while in use


def test_a_model_removed_while_in_use_is_named_nowhere_any_more(qtbot, open_window, dirs, tiny_model_dir, tmp_path):
    mine = shutil.copytree(tiny_model_dir, tmp_path / "mine")
    window = open_window()
    window.models.import_folder(str(mine))
    window.use_model_name("mine")
    wait_loaded(qtbot, window, mine)
    window.conversations.choose_model("mine")
    conv = window.conversations.current_id
    assert window.status_bar.model_label.text() == "mine" and window.settings.model == "mine"
    window.models.remove("mine")
    wait_loaded(qtbot, window, embedded_model_folder())
    assert window.status_bar.model_label.text() == EMBEDDED
    assert window.history.conversation(conv).model is None and window.chat.options.model.currentData() == ""
    assert AppSettings.load(dirs / "config" / "settings.json").model is None


def test_a_server_forgotten_while_in_use_leaves_nothing_of_it_in_use(qtbot, open_window, wide_model_dir, tmp_path):
    with running_server(wide_model_dir, tmp_path) as server:
        window = open_window()
        window.models.add_server(server.base_url)
        name = remote_name("tiny-wide", server.base_url)
        qtbot.waitUntil(lambda: window.models.row_of(name) is not None, timeout=20000)
        window.use_model_name(name)
        qtbot.waitUntil(lambda: window.model_info is not None and bool(window.model_info.server), timeout=20000)
        window.conversations.choose_model(name)
        conv = window.conversations.current_id
        window.models.forget_server(server.base_url)
        wait_loaded(qtbot, window, embedded_model_folder())
        assert window.status_bar.model_label.text() == EMBEDDED and not window.model_info.server
        assert window.history.conversation(conv).model is None and window.settings.model is None
        assert window.chat.options.model.findData(name) < 0


def test_a_folder_opened_with_ctrl_o_is_listed_in_models_and_the_picker(qtbot, open_window, tiny_model_dir, tmp_path,
                                                                      monkeypatch):
    opened = shutil.copytree(tiny_model_dir, tmp_path / "opened")
    window = open_window()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(opened))
    qtbot.keyClick(window, Qt.Key_O, Qt.ControlModifier)
    wait_loaded(qtbot, window, opened)
    row = window.models.row_of("opened")
    assert row is not None and window.models.table.item(row, 1).text() == "imported folder"
    assert window.models.table.item(row, 0).font().bold()  # the one in use
    assert window.chat.options.model.findData("opened") >= 0

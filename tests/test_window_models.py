"""What two new users met in the real window on a fresh data folder: one name for each model, models removed or
forgotten while in use, a folder opened with Ctrl+O, the welcome, the Add server dialog, the banner, the settings
panel's fields and notes, the status bar's figures, the layout at 800x500 with larger text, the keyboard, and the
export dialogs' folder. The real window on the tiny model (and the embedded one), a real SQLite file."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QPoint, QTimer, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QFileDialog, QLabel, QLineEdit, QMessageBox

from app.finetune.runs import TrainingRun, runs_dir, write_run
from app.history.store import History
from app.models.servers import remote_name
from app.settings import AppSettings
from engine.core.prepared_names import prepared_dir
from engine.inference.settings import SamplingSettings
from engine.store.local import embedded_model_folder
from engine.tooling.train import TrainSettings, train
from tests.helpers import running_server
from tests.helpers import story_text
from tests.helpers import type_and_send, wait_idle

EMBEDDED = "tales-7m"


def wait_loaded(qtbot, window, folder=None, timeout=30000):
    qtbot.waitUntil(lambda: window.model_info is not None and (folder is None or window.model_info.folder == folder),
                    timeout=timeout)


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


def test_the_welcome_names_the_model_that_answers(qtbot, open_window):
    window = open_window()  # tiny
    text = window.chat.welcome.label.text()
    assert "<b>tiny</b>" in text and "7 million" not in text and "fairy tale" not in text
    window.model.use(None)
    wait_loaded(qtbot, window, embedded_model_folder())
    assert "<b>tales-7m</b>" in window.chat.welcome.label.text() and "7 million" in window.chat.welcome.label.text()


# 7: messages in the window's terms, the Add server dialog, the banner


def test_the_add_server_dialog_keeps_the_address_and_key_when_the_check_fails(qtbot, open_window, tiny_model_dir,
                                                                             tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--api-key", "right") as server:
        window = open_window()

        def fill():  # as a person does: the two fields by their names, then Add
            dialog = QApplication.activeModalWidget()
            fields = {field.accessibleName(): field for field in dialog.findChildren(QLineEdit)}
            fields["Server address"].setText(server.base_url)
            fields["API key"].setText("wrong")
            dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()

        QTimer.singleShot(100, fill)
        window.models.ask_add_server()  # (it waited here for the dialog, which closed whatever the server said)
        dialog = window.models.server_dialog
        qtbot.waitUntil(lambda: dialog is not None and "refused" in dialog.note.text(), timeout=20000)
        assert dialog.isVisible() and dialog.url.text() == server.base_url and dialog.key.text() == "wrong"
        assert "--api-key" not in dialog.note.text() and "API key" in dialog.note.text()
        assert dialog.url.width() >= dialog.url.fontMetrics().horizontalAdvance(server.base_url)
        dialog.key.setText("right")
        dialog.buttons.accepted.emit()
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=20000)
        assert window.models.row_of(remote_name("tiny", server.base_url)) is not None


def test_a_server_that_cannot_be_reached_is_not_offered_a_model_folder(qtbot, open_window):
    url = "http://127.0.0.1:9/v1"  # nothing listens there
    window = open_window(model=remote_name("gpt2-xl", url), servers={url: {"key": "", "models": ["gpt2-xl"]}},
                         wait=False)
    wait_loaded(qtbot, window, embedded_model_folder())
    assert window.banner.isVisibleTo(window) and "Cannot reach" in window.banner.label.text()
    assert not window.banner.open_model.isVisibleTo(window)  # another folder would not help


def test_a_failed_reply_is_said_in_its_own_conversation_only(qtbot, open_window):
    window = open_window()
    window.settings.top_p = 0.0  # the engine refuses it: the reply fails
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    failed_in = window.conversations.current_id
    assert "Generation failed" in window.banner.label.text() and window.banner.isVisibleTo(window)
    window.conversations.new_chat()
    assert not window.banner.isVisibleTo(window)
    window.conversations.open(failed_in)
    assert not window.banner.isVisibleTo(window)


# 11: settings


def type_into(qtbot, box, text):
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key_Tab)


def test_every_clamped_field_says_so_under_it_naming_its_range(qtbot, open_window):
    window = open_window()
    window.toggle_settings()
    panel = window.settings_panel
    type_into(qtbot, panel.temperature, "9")
    assert panel.temperature.value() == 2.0
    assert panel.note_of("temperature") == "Temperature takes 0.00 to 2.00: 9 is more, so it is 2.00."
    assert panel.notes[panel.temperature].isVisibleTo(window)
    type_into(qtbot, panel.top_p, "0")
    assert panel.top_p.value() == 0.01
    assert panel.note_of("top_p") == "Top-p takes 0.01 to 1.00: 0 is less, so it is 0.01."
    type_into(qtbot, panel.presence_penalty, "-7")
    assert panel.presence_penalty.value() == -2.0 and "Presence penalty takes -2.00 to 2.00" in panel.note_of(
        "presence_penalty")
    assert window.settings.temperature == 2.0 and window.settings.presence_penalty == -2.0


def test_stop_sequences_min_p_and_the_penalties_are_in_the_window_with_the_engines_ranges(qtbot, open_window, dirs):
    window = open_window()
    panel = window.settings_panel
    for name in ("min_p", "presence_penalty", "frequency_penalty"):
        box = getattr(panel, name)
        assert (box.minimum(), box.maximum()) == SamplingSettings.limits(name)
        assert box.toolTip() == SamplingSettings.help(name)
    panel.min_p.setValue(0.05)
    panel.presence_penalty.setValue(0.5)
    panel.frequency_penalty.setValue(-0.5)
    panel.stop.setPlainText("The End\n\\n\\n")
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    used = window.history.messages(window.conversations.current_id)[-1].settings
    assert used["min_p"] == 0.05 and used["presence_penalty"] == 0.5 and used["frequency_penalty"] == -0.5
    assert "The End" in used["stop"] and "\n\n" in used["stop"]  # the panel's,
    assert "\nUser:" in used["stop"]  # and the turns'
    window.close()
    again = AppSettings.load(dirs / "config" / "settings.json")
    assert again.stop == ["The End", "\n\n"] and again.min_p == 0.05


def choose(box, data) -> None:
    """Pick the item of a combo box as a person does (its `activated`)."""
    box.setCurrentIndex(box.findData(data))
    box.activated.emit(box.currentIndex())


def test_a_presets_values_are_shown_beside_it(qtbot, open_window):
    window = open_window()
    values = window.chat.options.preset_values
    assert not values.isVisibleTo(window)  # the settings panel's: they are there
    choose(window.chat.options.preset, "Precise")
    assert values.isVisibleTo(window) and "temperature 0.3" in values.text() and "top-k 20" in values.text()
    assert window.history.conversation(window.conversations.current_id).preset == "Precise"
    choose(window.chat.options.preset, "Creative")
    assert "temperature 1.1" in values.text() and "top-p 0.95" in values.text()
    choose(window.chat.options.preset, "")
    assert not values.isVisibleTo(window)


# 12: the status bar


def test_the_status_bar_figures_are_the_requests_own_live_and_written_alike(qtbot, open_window):
    window = open_window(wide=True, max_new_tokens=200)
    bar = window.status_bar
    assert bar.context_label.text() == "context — / 4,096" or bar.context_label.text() == ""
    contexts = []
    window.requests.tokens.connect(lambda *_: contexts.append(bar.context_label.text()))
    type_and_send(qtbot, window, "Tell me a story")
    wait_idle(qtbot, window)
    counts = [int(text.split()[1].replace(",", "")) for text in contexts]
    assert counts and counts[0] > 0 and counts == sorted(counts) and counts[-1] > counts[0], contexts  # live
    assert all(text.endswith("/ 4,096") for text in contexts)
    assert "tok/s" in bar.speed_label.text()
    window.tabs.setCurrentIndex(1)
    window.tasks.select_by_name("Multiple choice")
    window.tasks.set_values({"context": "The glass fell and", "options": "broke\nflew away"})
    window.tasks.run_or_stop()
    assert bar.speed_label.text() == "" and bar.ttft_label.text() == ""  # not the last reply's
    wait_idle(qtbot, window)
    assert bar.speed_label.text() == "" and bar.ttft_label.text() == ""


def test_suggesting_is_said_while_it_lasts(qtbot, open_window):
    window = open_window()
    window.conversations.new_notebook()
    window.notebook.set_document("Once upon a time")
    window.replies.suggest("Once upon a time")
    assert window.status_bar.currentMessage() == "Suggesting…"
    wait_idle(qtbot, window)
    assert window.status_bar.currentMessage() != "Suggesting…"


# 16: layout


def cut_labels(window) -> list[str]:
    """Labels shown narrower than their text (or, wrapping, lower than it needs)."""
    cut = []
    for label in window.findChildren(QLabel):
        if not label.isVisibleTo(window) or not label.text() or label.width() <= 1:
            continue
        if label.wordWrap():
            if label.heightForWidth(label.width()) > label.height() + 1:
                cut.append(label.text())
        elif label.minimumSizeHint().width() > label.width() + 1:
            cut.append(label.text())
    return cut


def test_three_steps_larger_at_800_by_500_keep_the_window_and_every_label_whole(qtbot, open_window):
    window = open_window(model=None)
    wait_loaded(qtbot, window)
    window.toggle_settings()
    window.resize(800, 500)
    qtbot.waitUntil(lambda: window.width() == 800, timeout=3000)
    for _ in range(3):
        qtbot.keyClick(window, Qt.Key_Equal, Qt.ControlModifier)
        qtbot.wait(50)
    assert window.width() == 800 and window.minimumSizeHint().width() <= 800
    assert cut_labels(window) == []
    assert window.status_bar.model_label.text() == EMBEDDED
    size = window.font().pointSize()
    assert window.chat.count_label.font().pointSize() == size  # the token count follows the text size
    assert window.chat.options.preset_values.font().pointSize() == size


def test_analyse_is_whole_at_800_by_500_with_the_settings_open(qtbot, open_window):
    window = open_window()
    window.toggle_settings()
    window.resize(800, 500)
    window.show_analysis()
    qtbot.waitUntil(lambda: window.width() == 800 and window.analysis.isVisible(), timeout=3000)
    qtbot.wait(50)
    button = window.analysis.analyse_button
    right = button.mapTo(window, QPoint(button.width(), 0)).x()
    assert right <= window.settings_dock.mapTo(window, QPoint(0, 0)).x(), right
    assert window.minimumSizeHint().width() <= 800
    limits = window.analysis.limits  # what an analysis can and cannot tell: all of it there (it scrolls), not cut
    assert limits.height() >= limits.heightForWidth(limits.width()), (limits.height(), limits.width())


def contrast(a, b) -> float:
    """WCAG's contrast ratio of two colours (1 to 21)."""
    def luminance(colour):
        def channel(value):
            value /= 255
            return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(colour.red()) + 0.7152 * channel(colour.green()) + 0.0722 * channel(colour.blue())
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def drawn_tokens(view) -> list[tuple]:
    """(the background as drawn, the text's colour) of each coloured token of a text view, read off its pixels."""
    from PySide6.QtGui import QTextCursor

    image = view.viewport().grab().toImage()
    text_colour, base = view.palette().color(QPalette.Text), view.palette().color(QPalette.Base)
    found, block = [], view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment, fmt = it.fragment(), it.fragment().charFormat()
            if fmt.background().style() != Qt.NoBrush:
                cursor = QTextCursor(view.document())
                cursor.setPosition(fragment.position())
                rect = view.cursorRect(cursor)
                cursor.setPosition(fragment.position() + 1)
                right = view.cursorRect(cursor).x()
                if right <= rect.x() + 2:  # (a token that begins where a line wraps is drawn on the next)
                    it += 1
                    continue
                pixels = [image.pixelColor(x, y).name() for x in range(rect.x() + 1, right - 1)
                          for y in (rect.y() + 2, rect.center().y(), rect.bottom() - 1)]
                drawn = QColor(max(set(pixels), key=pixels.count))  # the background: most of the box, not the glyph
                if drawn != base:
                    found.append((drawn, fmt.foreground().color()
                                  if fmt.foreground().style() != Qt.NoBrush else text_colour))
            it += 1
        block = block.next()
    return found


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colour_blind_tokens_read_as_well_as_gltrs_light_or_dark(qtbot, open_window, scheme):
    from app.probe.probabilities import COLOUR_BLIND, GLTR
    from app.shell.appearance import apply_color_scheme

    app = QApplication.instance()
    apply_color_scheme(app, Qt.ColorScheme.Dark if scheme == "dark" else Qt.ColorScheme.Light)
    try:
        window = open_window(model=None)  # the embedded model: its ranks of a story fall in every bucket
        text = ("Once upon a time there was a little girl who lived in a village near the forest. Whenever she went "
                "out, she wore a red riding cloak. The quantum chromodynamics of seventeen zebras.")
        worst = {}
        for palette in (GLTR, COLOUR_BLIND):
            window.set_probabilities(False, palette=palette)
            window.analyse_text(text)
            qtbot.waitUntil(lambda: window.active is None and window.analysis.analysis is not None, timeout=30000)
            qtbot.waitUntil(lambda: len(drawn_tokens(window.analysis.result)) > 20, timeout=10000)
            tokens = drawn_tokens(window.analysis.result)
            assert len({bg.name() for bg, _ in tokens}) >= 3, tokens  # several buckets are there to compare
            worst[palette] = min(contrast(bg, fg) for bg, fg in tokens)
        assert worst[COLOUR_BLIND] >= worst[GLTR], worst  # no black text on dark slate
    finally:
        apply_color_scheme(app, Qt.ColorScheme.Light)


# 17: the keyboard


def test_ctrl_comma_puts_the_keyboard_in_the_settings_and_ctrl_5_in_analyses_text(qtbot, open_window):
    window = open_window()
    window.chat.composer.setFocus()
    qtbot.keyClick(window, Qt.Key_Comma, Qt.ControlModifier)
    assert window.settings_dock.isVisible()
    assert window.settings_panel.isAncestorOf(QApplication.focusWidget()), QApplication.focusWidget()
    qtbot.keyClick(window, Qt.Key_Comma, Qt.ControlModifier)
    assert not window.settings_dock.isVisible() and window.chat.composer.hasFocus()
    qtbot.keyClick(window, Qt.Key_5, Qt.ControlModifier)
    assert window.tabs.currentWidget() is window.analysis and window.analysis.input.hasFocus()


# 18: the export dialogs' folder


def test_export_and_import_dialogs_open_where_the_last_one_was(qtbot, open_window, dirs, monkeypatch, tmp_path):
    from app.chat.dialogs import EXPORT_JSON

    window = open_window()
    type_and_send(qtbot, window, "Hello")
    wait_idle(qtbot, window)
    asked = []
    exports = tmp_path / "exports"
    exports.mkdir()

    def save(_parent, _title, where, _filters):
        asked.append(where)
        return str(exports / "chat.json"), EXPORT_JSON

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save)
    window.dialogs.export_conversation()
    window.dialogs.export_all()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda _p, _t, where, _f: (asked.append(where), ("", ""))[1])
    window.dialogs.import_conversations()
    assert asked[1].startswith(str(exports)) and asked[2] == str(exports), asked
    window.close()
    again = open_window(files_folder=AppSettings.load(dirs / "config" / "settings.json").files_folder)
    again.dialogs.export_all()
    assert asked[3].startswith(str(exports))

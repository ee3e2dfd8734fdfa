"""The Conversation and File menus' dialogs (app.chat.dialogs): rename shows the whole title, delete keeps the
conversation on Enter, export and import every message, and the dialogs open where the last one was."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from app.settings import AppSettings
from tests.helpers import type_and_send, wait_idle


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


def test_file_menu_exports_and_imports_every_message(qtbot, open_window, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog

    from app.chat.dialogs import EXPORT_JSON, EXPORT_MARKDOWN

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

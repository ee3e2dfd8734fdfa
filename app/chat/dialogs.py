"""What the Conversation and File menus ask a person about conversations: a new title, whether to delete one,
where to export to (Markdown to read, JSON to import again) and which file to import.

The files themselves are app.history.transfer's; `ConversationDialogs` asks, calls it and says what came of it
(`status` for the status bar, `problem` for the banner).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

from app.chat.conversations import ConversationController
from app.chat.titles import title_from
from app.history.errors import HistoryError
from app.history.store import History
from app.history.transfer import HistoryFileError, format_for, import_file, write_export
from app.notice import Problem
from app.settings import AppSettings

EXPORT_MARKDOWN, EXPORT_JSON = "Markdown, to read (*.md)", "JSON, to import again (*.json)"


def plural(count: int, noun: str = "conversation") -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


class ConversationDialogs(QObject):
    status = Signal(str, int)  # a message for the status bar, shown for so many milliseconds
    problem = Signal(object)  # an app.notice.Problem for the banner

    def __init__(self, history: History, conversations: ConversationController, settings: AppSettings,
                 save_settings, parent: QWidget):
        """`save_settings`: writes the settings file (the folder of the last export or import is kept there)."""
        super().__init__(parent)
        self.history, self.conversations, self.settings = history, conversations, settings
        self._save_settings = save_settings

    def ask_rename(self) -> None:
        conv = self.conversations.current()
        if conv is None:
            return
        window = self.parent()
        dialog = QInputDialog(window, windowTitle="Rename conversation", labelText="Title:", textValue=conv.title)
        room = dialog.fontMetrics().horizontalAdvance(conv.title + "MMMMMM")  # the whole title, and room to type
        dialog.resize(max(dialog.sizeHint().width(), 360, min(room, max(400, window.width() * 3 // 4))),
                      dialog.sizeHint().height())
        if dialog.exec() and dialog.textValue().strip():
            self.conversations.rename(conv.id, dialog.textValue().strip())

    def ask_delete(self) -> None:
        conv = self.conversations.current()
        if conv is None:
            return
        answer = QMessageBox.question(self.parent(), "Delete conversation",
                                      f"Delete “{conv.title}” and all its messages?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)  # Enter keeps it
        if answer == QMessageBox.Yes:
            self.conversations.delete(conv.id)

    def export_conversation(self) -> None:
        conv = self.conversations.current()
        if conv is None:
            self.status.emit("No conversation is open to export.", 5000)
            return
        self._export(title_from(conv.title).replace("/", "-").replace("…", ""), conv.id)

    def export_all(self) -> None:
        self._export("conversations", None)

    def _export(self, name: str, conversation_id: int | None) -> None:
        """Ask where (Markdown to read, JSON to import elsewhere) and write the export there."""
        self.conversations.store_document()
        self.conversations.store_draft()
        path, chosen = QFileDialog.getSaveFileName(self.parent(), "Export conversation" if conversation_id else
                                                   "Export all conversations", str(self._files_folder() / f"{name}.md"),
                                                   f"{EXPORT_MARKDOWN};;{EXPORT_JSON}")
        self.conversations.focus_page()
        if not path:
            return
        self._remember_folder(path)
        if not Path(path).suffix:
            path += ".json" if chosen == EXPORT_JSON else ".md"
        try:
            count = write_export(self.history, Path(path), format_for(path), conversation_id)
        except HistoryFileError as exc:
            self.problem.emit(Problem(f"Nothing was exported: {exc}"))
            return
        except HistoryError as exc:
            self.conversations.history_failed(HistoryError(f"Nothing was exported: {exc}"))
            return
        self.status.emit(f"Exported {plural(count)} to {Path(path).name}", 8000)

    def import_conversations(self) -> None:
        """Add the conversations of an exported JSON file; nothing already here is changed."""
        path, _chosen = QFileDialog.getOpenFileName(self.parent(), "Import conversations", str(self._files_folder()),
                                                    EXPORT_JSON)
        self.conversations.focus_page()
        if not path:
            return
        self._remember_folder(path)
        try:
            added = import_file(self.history, Path(path))
        except HistoryFileError as exc:
            self.problem.emit(Problem(f"Nothing was imported: {exc}"))
            return
        except HistoryError as exc:  # a full disk: the history is as it was
            self.conversations.history_failed(HistoryError(f"Nothing was imported: {exc}"))
            return
        self.conversations.refresh()
        if added:
            self.conversations.open(added[-1])
        self.status.emit(f"Imported {plural(len(added))} from {Path(path).name}", 8000)

    def _files_folder(self) -> Path:
        """Where the export and import dialogs open: the folder of the last one, else the home folder."""
        folder = Path(self.settings.files_folder) if self.settings.files_folder else Path.home()
        return folder if folder.is_dir() else Path.home()

    def _remember_folder(self, path: str) -> None:
        if self.settings.files_folder != str(Path(path).parent):
            self.settings.files_folder = str(Path(path).parent)
            self._save_settings()

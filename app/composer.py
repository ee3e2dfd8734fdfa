"""The message box: Enter sends, Shift+Enter starts a new line, Up in an empty box edits the last message."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QPlainTextEdit


class Composer(QPlainTextEdit):
    submitted = Signal()
    edit_last = Signal()  # Up while the box is empty: the last message of one's own, to edit

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setPlaceholderText("Message  (Enter to send, Shift+Enter for a new line)")
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and not event.modifiers() & Qt.ShiftModifier:
            self.submitted.emit()
            return
        if event.key() == Qt.Key_Up and not event.modifiers() and not self.toPlainText():
            self.edit_last.emit()
            return
        super().keyPressEvent(event)

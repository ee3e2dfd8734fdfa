"""The message box: Enter sends, Shift+Enter starts a new line, Up in an empty box edits the last message,
Alt+Left / Alt+Right go to the replies' tokens."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QPlainTextEdit

# The message box's own keys (Help > Keyboard shortcuts lists them).
KEYS = (("Enter", "send the message"), ("Shift+Enter", "a new line"), ("Up (in an empty box)", "edit your last message"),
        ("Alt+Left / Alt+Right", "into the last reply's tokens (with Probabilities on)"))


class Composer(QPlainTextEdit):
    submitted = Signal()
    edit_last = Signal()  # Up while the box is empty: the last message of one's own, to edit
    to_tokens = Signal(int)  # Alt+Right (1) / Alt+Left (-1): to the replies' tokens (with Probabilities on)

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
        if event.key() in (Qt.Key_Left, Qt.Key_Right) and event.modifiers() == Qt.AltModifier:
            self.to_tokens.emit(1 if event.key() == Qt.Key_Right else -1)
            return
        super().keyPressEvent(event)

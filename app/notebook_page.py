"""The notebook page: one document the model continues at its end, saved a moment after each edit."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

AUTOSAVE_DELAY_MS = 400


class NotebookPage(QWidget):
    continue_requested = Signal()  # Continue, or Ctrl+Enter
    stop_requested = Signal()  # the same, while the engine is busy
    autosave_due = Signal()  # the user stopped editing a moment ago: time to save the document

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._generating = False
        self._cursor: QTextCursor | None = None  # where a continuation is written
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Write the beginning of a text; the model continues at the end (Ctrl+Enter).")
        self.editor.textChanged.connect(self._edited)
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Ctrl+Enter")
        self.continue_button.clicked.connect(self._continue_or_stop)
        QShortcut(QKeySequence("Ctrl+Return"), self.editor, activated=self._continue_or_stop)
        row = QHBoxLayout()
        row.addWidget(QLabel("Edit anything, then let the model continue from the end."), 1)
        row.addWidget(self.continue_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.editor, 1)
        layout.addLayout(row)
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.autosave_due)

    def _edited(self) -> None:
        if not self._generating:
            self._autosave.start()

    def _continue_or_stop(self) -> None:
        self.stop_requested.emit() if self._generating else self.continue_requested.emit()

    def set_state(self, generating: bool, ready: bool) -> None:
        """`generating`: the engine is busy (the button stops it; edits are saved later); `ready`: a model is loaded."""
        self._generating = generating
        self.continue_button.setText("Stop" if generating else "Continue")
        self.continue_button.setEnabled(generating or ready)

    def cancel_autosave(self) -> None:
        """The document is being saved now: no need to save it again later."""
        self._autosave.stop()

    def document(self) -> str:
        return self.editor.toPlainText()

    def set_document(self, text: str) -> None:
        """Show another document, the cursor at its end (this is not an edit: nothing is autosaved)."""
        self.editor.blockSignals(True)
        self.editor.setPlainText(text)
        self.editor.blockSignals(False)
        self.editor.moveCursor(QTextCursor.End)

    def focus_editor(self) -> None:
        self.editor.setFocus()

    def begin_continuation(self) -> None:
        """The document turns read-only; `append` writes at its end until `end_continuation`."""
        self.editor.setReadOnly(True)
        self._cursor = QTextCursor(self.editor.document())
        self._cursor.movePosition(QTextCursor.End)

    def append(self, text: str) -> None:
        self._cursor.insertText(text)

    def continuing(self) -> bool:
        """Whether the model is writing at the document's end (it is read-only meanwhile)."""
        return self.editor.isReadOnly()

    def end_continuation(self) -> None:
        self.editor.setReadOnly(False)

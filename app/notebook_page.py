"""The notebook page: one document the model continues at its end, saved a moment after each edit."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QPalette, QShortcut, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

AUTOSAVE_DELAY_MS = 400
MODEL_WROTE = QTextFormat.UserProperty + 1  # a char format property: this text came from the model


def model_format(palette: QPalette) -> QTextCharFormat:
    """How text the model wrote looks until it is edited: a faint tint of the highlight colour."""
    fmt = QTextCharFormat()
    tint = QColor(palette.color(QPalette.Highlight))
    tint.setAlpha(38)
    fmt.setBackground(tint)
    fmt.setProperty(MODEL_WROTE, True)
    return fmt


class NotebookPage(QWidget):
    continue_requested = Signal()  # Continue, or Ctrl+Enter
    stop_requested = Signal()  # the same, while the engine is busy
    autosave_due = Signal()  # the user stopped editing a moment ago: time to save the document

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._generating = False
        self._cursor: QTextCursor | None = None  # where a continuation is written
        self.editor = QPlainTextEdit()
        self.editor.setAccessibleName("Notebook text")
        self.editor.setPlaceholderText("Write the beginning of a text; the model continues at the end (Ctrl+Enter).")
        self.editor.textChanged.connect(self._edited)
        # What the person types is theirs, also right after (or inside) the model's text.
        self.editor.cursorPositionChanged.connect(self._type_plain)
        self.editor.installEventFilter(self)
        self._first_piece = False  # the next piece of a continuation starts its undo step
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

    def set_document(self, text: str, model_wrote: list[str] = ()) -> None:
        """Show another document, the cursor at its end (this is not an edit: nothing is autosaved).
        `model_wrote`: the continuations, in order; each found unedited in the text is marked as the model's."""
        self.editor.blockSignals(True)
        self.editor.setPlainText(text)
        document = self.editor.document()
        document.setUndoRedoEnabled(False)  # marking is not an edit to take back
        cursor, start, fmt = QTextCursor(document), 0, model_format(self.palette())
        for piece in model_wrote:
            at = text.find(piece, start) if piece else -1
            if at >= 0:
                cursor.setPosition(at)
                cursor.setPosition(at + len(piece), QTextCursor.KeepAnchor)
                cursor.mergeCharFormat(fmt)
                start = at + len(piece)
        document.setUndoRedoEnabled(True)
        self.editor.blockSignals(False)
        self.editor.moveCursor(QTextCursor.End)

    def model_text(self) -> str:
        """The text still marked as the model's (what it wrote, less what the person has edited)."""
        parts, block = [], self.editor.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.charFormat().boolProperty(MODEL_WROTE):
                    parts.append(fragment.text())
                it += 1
            block = block.next()
        return "".join(parts)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.editor and event.type() == QEvent.KeyPress:
            self._type_plain()
        return super().eventFilter(watched, event)

    def _type_plain(self) -> None:
        cursor = self.editor.textCursor()
        if not cursor.hasSelection() and cursor.charFormat().boolProperty(MODEL_WROTE):
            self.editor.setCurrentCharFormat(QTextCharFormat())

    def focus_editor(self) -> None:
        self.editor.setFocus()

    def begin_continuation(self) -> None:
        """The document turns read-only; `append` writes at its end until `end_continuation`."""
        self.editor.setReadOnly(True)
        self._cursor = QTextCursor(self.editor.document())
        self._cursor.movePosition(QTextCursor.End)
        self._first_piece = True

    def append(self, text: str) -> None:
        """Write a piece of the continuation, marked as the model's; the whole continuation is one undo step."""
        if self._cursor is None or not text:
            return
        if self._first_piece:
            self._cursor.beginEditBlock()
            self._first_piece = False
        else:
            self._cursor.joinPreviousEditBlock()
        self._cursor.insertText(text, model_format(self.palette()))
        self._cursor.endEditBlock()

    def continuing(self) -> bool:
        """Whether the model is writing at the document's end (it is read-only meanwhile)."""
        return self.editor.isReadOnly()

    def end_continuation(self) -> None:
        self.editor.setReadOnly(False)

"""The notebook page: one document the model continues at its end, saved a moment after each edit.

What the model wrote is marked (and, with Probabilities, coloured token by token) until it is edited. Opening a
notebook finds each continuation it ever had in its text (every version: Ctrl+Z may have brought an older one
back), so that the marks and colours survive a restart.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import (QColor, QKeySequence, QPalette, QShortcut, QSyntaxHighlighter, QTextCharFormat, QTextCursor,
                           QTextFormat)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.chat.options import ChatOptions
from app.probe.probabilities import TOKEN_INDEX, TOKEN_MESSAGE, Colouring, Legend, readable_on, token_format
from app.probe.token_cursor import TokenCursor, TokenHover
from app.probe.token_data import ReplyTokens, spans

# The notebook's own keys (Help > Keyboard shortcuts lists them).
KEYS = (("Ctrl+Enter", "continue the text (again: stop)"), ("Ctrl+Space", "suggest three short continuations"),
        ("Up / Down, Enter, Esc", "in the suggestions: choose, write one at the cursor, dismiss"),
        ("Ctrl+Z", "take back a whole continuation"))

AUTOSAVE_DELAY_MS = 400
MODEL_WROTE = QTextFormat.UserProperty + 1  # a char format property: this text came from the model
PICK_HINT = "Click an alternative (or ↑↓ and Enter) to continue from it; Ctrl+Z brings the old text back."


class Continuation(NamedTuple):
    """A text the model wrote into a notebook, as the history keeps it."""

    text: str
    message_id: int | None = None
    tokens: ReplyTokens | None = None  # its kept tokens, if any
    turn: int | None = None  # continuations of the same turn are versions of each other (their parent's id)


def place(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Where the pieces are found in `text`, one after another without overlapping: (position, piece's index),
    in the order of the text; the earliest first, the longer of two at one place. A piece not found is left out."""
    found = [(at, -len(piece), i) for i, piece in enumerate(pieces) if piece and (at := text.find(piece)) >= 0]
    heapq.heapify(found)
    placed, start = [], 0
    while found:
        at, length, i = heapq.heappop(found)
        if at < start:  # overlaps one placed before it: look further on
            if (at := text.find(pieces[i], start)) >= 0:
                heapq.heappush(found, (at, length, i))
            continue
        placed.append((at, i))
        start = at - length
    return placed


def model_format(palette: QPalette) -> QTextCharFormat:
    """How text the model wrote looks until it is edited: a faint tint of the highlight colour."""
    fmt = QTextCharFormat()
    tint = QColor(palette.color(QPalette.Highlight))
    tint.setAlpha(38)
    fmt.setBackground(tint)
    fmt.setProperty(MODEL_WROTE, True)
    return fmt


class TokenHighlighter(QSyntaxHighlighter):
    """Colours the tokens the model wrote by what it predicted, for display only: the document (and its undo
    history) is untouched. Attached while the colouring is on."""

    def __init__(self, page: NotebookPage):
        super().__init__(page)
        self.page = page

    def highlightBlock(self, _text: str) -> None:
        colouring, lookup = self.page.colouring, self.page.token_data.get
        if colouring is None:
            return
        block = self.currentBlock()
        base, it = block.position(), block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            message_id = fmt.property(TOKEN_MESSAGE)
            if message_id is not None and fmt.boolProperty(MODEL_WROTE):
                data = lookup(int(message_id))
                index = int(fmt.property(TOKEN_INDEX))
                if data is not None and 0 <= index < len(data):
                    coloured, colour = QTextCharFormat(), colouring.colour(data, index)
                    coloured.setBackground(colour)
                    coloured.setForeground(readable_on(colour))
                    self.setFormat(fragment.position() - base, fragment.length(), coloured)
            it += 1


class NotebookPage(QWidget):
    continue_requested = Signal()  # Continue, or Ctrl+Enter
    stop_requested = Signal()  # the same, while the engine is busy
    autosave_due = Signal()  # the user stopped editing a moment ago: time to save the document
    alternative_picked = Signal(int, int, object)  # a continuation's id, a token's index, the Choice instead
    analyse_requested = Signal(str)  # Analyse: the whole text, scored token by token (also after edits)
    suggest_requested = Signal(str)  # Ctrl+Space: the text before the cursor, to continue in a few words
    model_chosen = Signal(str)  # for the open notebook: a model's name ("": none of its own)
    preset_chosen = Signal(str)  # for the open notebook: a sampling preset ("": the settings panel's values)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._generating = False
        self.options = ChatOptions(preamble=False)  # its model and preset (the text itself is the prompt)
        self.options.model.setAccessibleName("Model for this notebook")
        self.options.preset.setAccessibleName("Sampling preset for this notebook")
        self.options.model.setToolTip("The model this notebook is continued with; opening the notebook loads it")
        self.options.model_chosen.connect(self.model_chosen)
        self.options.preset_chosen.connect(self.preset_chosen)
        self._cursor: QTextCursor | None = None  # where a continuation is written
        self.editor = QPlainTextEdit()
        self.editor.setAccessibleName("Notebook text")
        self.editor.setPlaceholderText("Write the beginning of a text; the model continues at the end (Ctrl+Enter).")
        self.editor.textChanged.connect(self._edited)
        # What the person types is theirs, also right after (or inside) the model's text.
        self.editor.cursorPositionChanged.connect(self._type_plain)
        self.editor.installEventFilter(self)
        self._first_piece = False  # the next piece of a continuation starts its undo step
        self._join = False  # ... or joins the one before it (the cut for an alternative picked)
        self._start = 0  # where the continuation being written began
        self.colouring: Colouring | None = None
        self.token_data: dict[int, ReplyTokens] = {}  # the kept tokens of the continuations shown, by message id
        self.highlighter = TokenHighlighter(self)
        self.hover = TokenHover(self.editor, self.token_data.get, lambda _message_id: not self._generating, self,
                                pick_hint=PICK_HINT)
        self.hover.card.picked.connect(self.alternative_picked)
        self.token_cursor = TokenCursor(self.editor, self.hover, self)  # Alt+← →: from token to token, Enter: card
        self.legend = Legend()
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Ctrl+Enter")
        self.continue_button.clicked.connect(self._continue_or_stop)
        QShortcut(QKeySequence("Ctrl+Return"), self.editor, activated=self._continue_or_stop)
        QShortcut(QKeySequence("Ctrl+Space"), self.editor, activated=self._ask_suggestions)
        self.suggestions = QListWidget(self.editor.viewport())  # Ctrl+Space's: Up/Down, Enter picks, Esc dismisses
        self.suggestions.setAccessibleName("Suggestions")
        self.suggestions.hide()
        self.suggestions.installEventFilter(self)
        self.suggestions.itemActivated.connect(lambda item: self.use_suggestion(item.text()))
        self.analyse_button = QPushButton("Analyse")
        self.analyse_button.setToolTip("Score every token of this text, edits included (Analyse tab)")
        self.analyse_button.clicked.connect(lambda: self.analyse_requested.emit(self.document()))
        row = QHBoxLayout()
        row.addWidget(QLabel("Edit anything, then let the model continue from the end."), 1)
        row.addWidget(self.analyse_button)
        row.addWidget(self.continue_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.options)
        layout.addWidget(self.legend)
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

    def set_model_choices(self, names: list[str]) -> None:
        """The models a notebook can be continued with (their names, as the engine loads them)."""
        self.options.set_model_choices(names)

    def show_options(self, model: str | None, preset: str | None) -> None:
        """The open notebook's model (None: the one in use) and sampling preset (None: the panel's)."""
        self.options.show_options(model, preset, "")

    def cancel_autosave(self) -> None:
        """The document is being saved now: no need to save it again later."""
        self._autosave.stop()

    def document(self) -> str:
        return self.editor.toPlainText()

    def set_document(self, text: str, continuations: list[Continuation] = ()) -> None:
        """Show another document, the cursor at its end (this is not an edit: nothing is autosaved).
        `continuations`: what the model wrote into it, every version; each found unedited in the text is marked
        as the model's, its tokens (if kept) coloured. Of a version cut for an alternative picked, the part
        before the cut is found too."""
        self.hover.hide()
        self.token_cursor.reset()
        self.token_data.clear()
        self.editor.blockSignals(True)
        self.editor.setPlainText(text)
        document = self.editor.document()
        document.setUndoRedoEnabled(False)  # marking is not an edit to take back
        placed = place(text, [c.text for c in continuations])
        ends = [0] + [at + len(continuations[i].text) for at, i in placed]
        found = {i for _at, i in placed}
        for (at, i), free in zip(placed, ends):
            self._mark(at, continuations[i], continuations[i].tokens)
            for j, other in enumerate(continuations):  # a version cut at `at` for this one: its words before
                if j not in found and other.turn is not None and other.turn == continuations[i].turn:
                    self._mark_head(text, at, free, other)
        document.setUndoRedoEnabled(True)
        self.editor.blockSignals(False)
        self.editor.moveCursor(QTextCursor.End)

    def _mark(self, at: int, continuation: Continuation, data: ReplyTokens | None) -> None:
        """Mark a continuation found at `at` as the model's; with its tokens (`data`, its own or its first ones)."""
        cursor = QTextCursor(self.editor.document())
        length = len(data.text()) if data is not None else len(continuation.text)
        cursor.setPosition(at)
        cursor.setPosition(at + length, QTextCursor.KeepAnchor)
        cursor.mergeCharFormat(model_format(self.palette()))
        full = continuation.tokens
        if data is not None and full is not None and full.text().startswith(data.text()) \
                and full.text() == continuation.text:
            self._mark_tokens(cursor, at, continuation.message_id, data)
            self.token_data[continuation.message_id] = full

    def _mark_head(self, text: str, cut: int, free: int, version: Continuation) -> None:
        """If the text before `cut` (and after `free`) ends with first tokens of `version` (a version cut there
        for an alternative), mark them: as many as are found there."""
        data = version.tokens
        if data is None or data.text() != version.text:
            return
        head, length, found = 0, 0, 0
        for n, piece in enumerate(data.pieces[:-1]):  # a head: never the whole (that would have been placed)
            length += len(piece)
            if piece and cut - length >= free and text[cut - length:cut] == version.text[:length]:
                head, found = n + 1, length
        if head:
            self._mark(cut - found, version, data.prefix(head))

    def _mark_tokens(self, cursor: QTextCursor, at: int, message_id: int, data: ReplyTokens) -> None:
        """Mark each token of a continuation written at `at` with its place (for colours and the hover card)."""
        self.token_data[message_id] = data
        fmt = model_format(self.palette())
        for index, start, end in spans(data):
            cursor.setPosition(at + start)
            cursor.setPosition(at + end, QTextCursor.KeepAnchor)
            cursor.setCharFormat(token_format(message_id, index, None, fmt))

    def mark_continuation(self, message_id: int, data: ReplyTokens) -> None:
        """The continuation just written was saved as `message_id` with these tokens: mark them (part of the
        continuation's undo step)."""
        document = self.editor.document()
        if data.text() != document.toPlainText()[self._start:]:
            return
        cursor = QTextCursor(document)
        cursor.joinPreviousEditBlock()
        self.editor.blockSignals(True)
        self._mark_tokens(cursor, self._start, message_id, data)
        self.editor.blockSignals(False)
        cursor.endEditBlock()
        if self.colouring is not None:
            self.highlighter.rehighlight()

    def token_position(self, message_id: int, index: int) -> int | None:
        """Where a continuation's token begins in the document (None if it is no longer there)."""
        block = self.editor.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fmt = it.fragment().charFormat()
                if fmt.property(TOKEN_MESSAGE) == message_id and fmt.property(TOKEN_INDEX) == index:
                    return it.fragment().position()
                it += 1
            block = block.next()
        return None

    def replace_from(self, position: int, text: str) -> None:
        """Cut the document at `position` and write `text`, as the model's, in place of what followed (one
        undo step: Ctrl+Z brings the old text back)."""
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(position)
        cursor.movePosition(QTextCursor.End, QTextCursor.KeepAnchor)
        cursor.beginEditBlock()
        cursor.removeSelectedText()
        cursor.insertText(text, model_format(self.palette()))
        cursor.endEditBlock()
        self.cancel_autosave()

    def set_colouring(self, colouring: Colouring | None) -> None:
        """Colour the continuations' tokens by what the model predicted (None: the faint tint only)."""
        was, self.colouring = self.colouring, colouring
        self.legend.show_for(colouring)
        self.hover.set_enabled(colouring is not None)
        self.token_cursor.reset()
        if colouring is not None or was is not None:
            self.editor.blockSignals(True)  # colours are not an edit: nothing to save
            self.highlighter.setDocument(self.editor.document() if colouring is not None else None)
            if colouring is not None:
                self.highlighter.rehighlight()
            self.editor.blockSignals(False)

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
        listing = getattr(self, "suggestions", None)  # events come before the list is made
        if listing is not None and watched is listing and event.type() == QEvent.ShortcutOverride \
                and event.key() == Qt.Key_Escape:
            event.accept()  # Esc is the list's (to dismiss it), not the window's Stop
            return True
        if listing is not None and watched is listing and event.type() == QEvent.KeyPress:
            if event.key() == Qt.Key_Escape:
                self.dismiss_suggestions()
                return True
            if event.key() in (Qt.Key_Return, Qt.Key_Enter) and self.suggestions.currentItem() is not None:
                self.use_suggestion(self.suggestions.currentItem().text())
                return True
        if listing is not None and watched is listing and event.type() == QEvent.FocusOut:
            self.suggestions.hide()
        return super().eventFilter(watched, event)

    # suggestions (Ctrl+Space)

    def _ask_suggestions(self) -> None:
        if not self._generating and not self.editor.isReadOnly():
            self.suggest_requested.emit(self.document()[:self.editor.textCursor().position()])

    def show_suggestions(self, texts: list[str]) -> None:
        """A list under the cursor: Up/Down choose, Enter writes the one chosen at the cursor, Esc dismisses."""
        self.suggestions.clear()
        if not texts:
            return
        self.suggestions.addItems(texts)
        self.suggestions.setCurrentRow(0)
        rect = self.editor.cursorRect()
        row = self.suggestions.sizeHintForRow(0)
        width = min(self.editor.viewport().width() - 8,
                    max(200, max(self.suggestions.fontMetrics().horizontalAdvance(t) for t in texts) + 30))
        x = min(rect.x(), self.editor.viewport().width() - width - 4)
        height = row * len(texts) + 6
        y = rect.bottom() + 2 if rect.bottom() + 2 + height < self.editor.viewport().height() else rect.top() - height - 2
        self.suggestions.setGeometry(max(0, x), max(0, y), width, height)
        self.suggestions.show()
        self.suggestions.raise_()
        self.suggestions.setFocus()

    def use_suggestion(self, text: str) -> None:
        """Write a suggestion at the cursor, marked as the model's (one undo step)."""
        self.suggestions.hide()
        self.editor.textCursor().insertText(text, model_format(self.palette()))
        self.editor.setFocus()

    def dismiss_suggestions(self) -> None:
        self.suggestions.hide()
        self.editor.setFocus()

    def _type_plain(self) -> None:
        cursor = self.editor.textCursor()
        if not cursor.hasSelection() and cursor.charFormat().boolProperty(MODEL_WROTE):
            self.editor.setCurrentCharFormat(QTextCharFormat())

    def focus_editor(self) -> None:
        self.editor.setFocus()

    def begin_continuation(self, start: int | None = None) -> None:
        """The document turns read-only; `append` writes at its end until `end_continuation`. `start`: where the
        continuation began, if before the end (an alternative already written by `replace_from`: the cut, the
        alternative and the continuation are then one undo step)."""
        self.hover.hide()
        self.token_cursor.reset()
        self.editor.setReadOnly(True)
        self._cursor = QTextCursor(self.editor.document())
        self._cursor.movePosition(QTextCursor.End)
        self._start = self._cursor.position() if start is None else start
        self._first_piece = True
        self._join = start is not None

    def append(self, text: str) -> None:
        """Write a piece of the continuation, marked as the model's; the whole continuation is one undo step."""
        if self._cursor is None or not text:
            return
        if self._first_piece and not self._join:
            self._cursor.beginEditBlock()
        else:
            self._cursor.joinPreviousEditBlock()
        self._first_piece = False
        self._cursor.insertText(text, model_format(self.palette()))
        self._cursor.endEditBlock()

    def continuing(self) -> bool:
        """Whether the model is writing at the document's end (it is read-only meanwhile)."""
        return self.editor.isReadOnly()

    def end_continuation(self) -> None:
        self.editor.setReadOnly(False)

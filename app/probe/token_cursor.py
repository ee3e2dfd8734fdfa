"""The mouse's and the keyboard's way to the tokens of a text view: `TokenHover` finds the token under the
mouse (from its character format, app.probe.probabilities' TOKEN_MESSAGE and TOKEN_INDEX), asks its view for
the reply's `ReplyTokens` and shows the `TokenCard`. `TokenCursor`: Alt+Right / Alt+Left go from token to token
(each said to a screen reader with its probability), Enter opens the card, Up / Down choose an alternative,
Enter continues from it, Esc closes the card.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import (QAccessible, QAccessibleAnnouncementEvent, QAccessibleEvent, QPalette, QTextCharFormat,
                           QTextCursor)
from PySide6.QtWidgets import QTextEdit

from app.probe.probabilities import TOKEN_INDEX, TOKEN_MESSAGE
from app.probe.token_card import PICK_HINT, TokenCard, spoken
from app.probe.token_data import ReplyTokens

# The keys of the token cursor and the token card (Help > Keyboard shortcuts lists them).
KEYS = (("Alt+Left / Alt+Right", "with Probabilities on: the previous / next token of a reply or the notebook"),
        ("Enter (on a token)", "open its card: its probability, rank and the ten likeliest tokens there"),
        ("Up / Down (in the card)", "choose an alternative"),
        ("Enter or Space (in the card)", "continue from the chosen alternative"), ("Esc (in the card)", "close it"))


def token_at(view, pos: QPoint) -> tuple[int, int, QRect] | None:
    """The token under `pos` (viewport coordinates) of a QTextEdit or QPlainTextEdit: its message id, its
    index and the rectangle of its first character; None over anything else."""
    cursor = view.cursorForPosition(pos)
    rect = view.cursorRect(cursor)
    if abs(pos.y() - rect.center().y()) > rect.height():
        return None  # below the last line, or in a margin
    if pos.x() < rect.x() and cursor.position() > 0:
        cursor.movePosition(QTextCursor.PreviousCharacter)  # the character to the left of the mouse
    probe = QTextCursor(cursor)
    if probe.atBlockEnd():
        return None
    probe.movePosition(QTextCursor.NextCharacter)
    fmt = probe.charFormat()  # the format of the character just passed: the one under the mouse
    message_id = fmt.property(TOKEN_MESSAGE)
    if message_id is None:
        return None
    return int(message_id), int(fmt.property(TOKEN_INDEX)), view.cursorRect(cursor)


class TokenHover(QObject):
    """Shows the card of the token under the mouse in a text view. `lookup(message_id)` gives that reply's
    ReplyTokens (or None); `pickable(message_id)` whether an alternative can be picked there now."""

    def __init__(self, view, lookup: Callable[[int], ReplyTokens | None], pickable: Callable[[int], bool],
                 parent: QObject | None = None, pick_hint: str = PICK_HINT):
        super().__init__(parent or view)
        self.view, self.lookup, self.pickable = view, lookup, pickable
        self.enabled = False
        self.card = TokenCard(view.viewport(), pick_hint)
        self.card.left.connect(self._hide_soon)
        self._hide_timer = QTimer(self, singleShot=True, interval=350)
        self._hide_timer.timeout.connect(self._hide_unless_over_card)
        view.viewport().setMouseTracking(True)
        view.viewport().installEventFilter(self)

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            self.hide()

    def hide(self) -> None:
        self.card.hide()
        self.card.key = None

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if self.enabled and kind == QEvent.MouseMove:
            self.hover(event.position().toPoint())
        elif kind in (QEvent.Leave, QEvent.Wheel):
            self._hide_soon()
        elif kind == QEvent.Hide:  # its tab or page is no longer shown: the card (on the window) goes too
            self.hide()
        return False

    def hover(self, pos: QPoint) -> bool:
        """Show the card of the token at `pos` (viewport coordinates); whether there was one."""
        found = token_at(self.view, pos)
        data = self.lookup(found[0]) if found else None
        if found is None or data is None or not 0 <= found[1] < len(data):
            self._hide_soon()
            return False
        self._hide_timer.stop()
        message_id, index, rect = found
        if self.card.key != (message_id, index) or not self.card.isVisible():
            self.show_card(message_id, index, rect)
        return True

    def show_card(self, message_id: int, index: int, rect: QRect) -> bool:
        """Show the card of a token whose first character is at `rect` (viewport coordinates); whether its
        tokens are known."""
        data = self.lookup(message_id)
        if data is None or not 0 <= index < len(data):
            return False
        self.card.show_token(message_id, index, data.token(index), self.pickable(message_id))
        self._place(rect)
        self.card.show()
        self.card.raise_()
        return True

    def _place(self, token: QRect) -> None:
        """Below the token, or above it where there is no room below, and always whole: the card lies on the
        window, not inside the text view (a short view, as the Analyse tab's, would cut it off)."""
        top = self.view.window()
        if self.card.parentWidget() is not top:
            self.card.setParent(top)
        area, size = top.rect(), self.card.sizeHint()
        at = self.view.viewport().mapTo(top, token.topLeft())
        x = min(max(0, at.x() - 8), max(0, area.width() - size.width()))
        below, above = at.y() + token.height() + 4, at.y() - size.height() - 4
        if below + size.height() <= area.height():
            y = below
        elif above >= 0:
            y = above
        else:  # a window lower than the card: as much of it as fits
            y = max(0, area.height() - size.height())
        self.card.setGeometry(x, y, size.width(), size.height())

    def _hide_soon(self) -> None:
        if self.card.isVisible():
            self._hide_timer.start()

    def _hide_unless_over_card(self) -> None:
        if not self.card.underMouse() and not self.card.has_keyboard():
            self.hide()


class TokenCursor(QObject):
    """The keyboard's way to a text view's tokens while they are shown coloured (`hover.enabled`). Alt+Right /
    Alt+Left move to the next or previous token: it is highlighted, the view's caret goes to it, and its text,
    probability and rank become the view's accessible description and are announced to a screen reader. Enter
    then opens its card (TokenHover's) with the keyboard on the model's choice; Up / Down choose another, Enter
    continues from it, Esc goes back to the token. Any other key, or a click, leaves the tokens."""

    moved = Signal(int, int)  # the message id and index of the token the cursor is on now

    def __init__(self, view, hover: TokenHover, parent: QObject | None = None):
        super().__init__(parent or view)
        self.view, self.hover = view, hover
        self.key: tuple[int, int] | None = None  # the token the cursor is on (None: not on the tokens)
        view.installEventFilter(self)
        view.viewport().installEventFilter(self)
        hover.card.dismissed.connect(self._back_from_card)
        hover.card.stepped.connect(self._step_from_card)
        hover.card.picked.connect(self._picked)

    def tokens(self) -> list[tuple[int, int, int, int]]:
        """(start, end, message id, index) of each token shown whose data is known, in the text's order."""
        out: list[tuple[int, int, int, int]] = []
        block = self.view.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                fmt = fragment.charFormat()
                message_id = fmt.property(TOKEN_MESSAGE)
                if message_id is not None:
                    key = (int(message_id), int(fmt.property(TOKEN_INDEX)))
                    start, end = fragment.position(), fragment.position() + fragment.length()
                    if out and out[-1][2:] == key:  # a token across two fragments (a soft break)
                        out[-1] = (out[-1][0], end, *key)
                    else:
                        data = self.hover.lookup(key[0])
                        if data is not None and 0 <= key[1] < len(data):
                            out.append((start, end, *key))
                it += 1
            block = block.next()
        return out

    def step(self, step: int) -> bool:
        """Move to the next (1) or previous (-1) token; from the caret if the cursor is not on one yet. Whether
        there was a token to go to."""
        if not self.hover.enabled:
            return False
        tokens = self.tokens()
        if not tokens:
            return False
        keys = [t[2:] for t in tokens]
        if self.key in keys:
            at = max(0, min(len(tokens) - 1, keys.index(self.key) + step))
        else:
            caret = self.view.textCursor().position()
            after = [i for i, t in enumerate(tokens) if t[0] >= caret]
            before = [i for i, t in enumerate(tokens) if t[1] <= caret]
            at = (after[0] if after else 0) if step > 0 else (before[-1] if before else len(tokens) - 1)
        self._go(tokens[at])
        return True

    def enter(self, step: int) -> bool:
        """From outside the view (the message box): to the last reply's first token (1) or last token (-1)."""
        if self.key is None and self.hover.enabled and (tokens := self.tokens()):
            last = tokens[-1][2]
            caret = QTextCursor(self.view.document())
            caret.setPosition(next(t[0] for t in tokens if t[2] == last) if step > 0 else tokens[-1][1])
            self.view.setTextCursor(caret)
        return self.step(step)

    def _go(self, token: tuple[int, int, int, int]) -> None:
        start, end, message_id, index = token
        self.key = (message_id, index)
        caret = QTextCursor(self.view.document())
        caret.setPosition(start)
        self.view.setTextCursor(caret)
        self.view.ensureCursorVisible()
        span, look = QTextCursor(self.view.document()), QTextCharFormat()
        span.setPosition(start)
        span.setPosition(end, QTextCursor.KeepAnchor)
        look.setBackground(self.view.palette().color(QPalette.Highlight))
        look.setForeground(self.view.palette().color(QPalette.HighlightedText))
        mark = QTextEdit.ExtraSelection()
        mark.cursor, mark.format = span, look
        self.view.setExtraSelections([mark])
        said = spoken(self.hover.lookup(message_id).token(index)) + ". Enter: its alternatives."
        self.view.setAccessibleDescription(said)
        QAccessible.updateAccessibility(QAccessibleEvent(self.view, QAccessible.DescriptionChanged))
        QAccessible.updateAccessibility(QAccessibleAnnouncementEvent(self.view, said))
        if self.hover.card.isVisible() and self.hover.card.has_keyboard():
            self.open_card()
        self.moved.emit(message_id, index)

    def open_card(self) -> bool:
        """Open the card of the token the cursor is on, the keyboard in it; whether there was one."""
        if self.key is None:
            return False
        caret = QTextCursor(self.view.document())
        found = next((t for t in self.tokens() if t[2:] == self.key), None)
        if found is None:
            return False
        caret.setPosition(found[0])
        if not self.hover.show_card(*self.key, self.view.cursorRect(caret)):
            return False
        self.hover.card.focus_choice()
        return True

    def reset(self) -> None:
        """Off the tokens (the text was laid out again, or the person went on otherwise)."""
        self.key = None
        self.view.setExtraSelections([])

    def _back_from_card(self) -> None:
        self.view.setFocus(Qt.OtherFocusReason)

    def _step_from_card(self, step: int) -> None:
        self.step(step)
        if self.hover.card.isVisible():
            self.open_card()

    def _picked(self, *_picked) -> None:
        """An alternative was picked (and a continuation begun): the keyboard goes back to the text."""
        self.reset()
        self.view.setFocus(Qt.OtherFocusReason)

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind == QEvent.MouseButtonPress:  # (on the viewport) a click: the view's own again
            if self.key is not None:
                self.reset()
            return False
        if kind not in (QEvent.ShortcutOverride, QEvent.KeyPress) or watched is not self.view \
                or not self.hover.enabled:
            return False
        key, modifiers = event.key(), event.modifiers() & ~Qt.KeypadModifier
        ours = (modifiers == Qt.AltModifier and key in (Qt.Key_Left, Qt.Key_Right)) or \
            (self.key is not None and key in (Qt.Key_Return, Qt.Key_Enter) and modifiers == Qt.NoModifier)
        if kind == QEvent.ShortcutOverride:
            if ours:
                event.accept()  # (Alt+Left is also the text browser's Back)
            return False
        if ours and key in (Qt.Key_Left, Qt.Key_Right):
            return self.step(1 if key == Qt.Key_Right else -1) or True
        if ours:
            return self.open_card() or True
        if self.key is not None and key not in (Qt.Key_Alt, Qt.Key_Shift, Qt.Key_Control, Qt.Key_Meta):
            self.reset()  # any other key: the view's own again
        return False

"""The card that a token of a reply shows: its text, its probability and rank, and the alternatives the model
weighed there as bars; click one (or Up / Down and Enter) to continue from it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRect, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QAbstractButton, QApplication, QFrame, QLabel, QVBoxLayout, QWidget

from app.probe.probabilities import percent, shown
from app.probe.token_data import BUCKET_NAMES, Choice, TokenInfo

PICK_HINT = "Click an alternative (or ↑↓ and Enter) to continue from it; this reply stays as a version."


class _AlternativeRow(QAbstractButton):
    """One alternative: its text, a bar as long as its probability, the probability; click to pick it."""

    def __init__(self, choice: Choice, chosen: bool, scale: float, parent=None):
        super().__init__(parent)
        self.choice, self.chosen, self.scale = choice, chosen, scale
        self.setCursor(Qt.PointingHandCursor)
        self.setFocusPolicy(Qt.StrongFocus)  # Up / Down go from row to row, Enter picks
        self.setAccessibleName(f"Use “{choice.text}” ({percent(choice.prob)})")
        self.setToolTip("Continue from here with this token instead")
        self.setFixedHeight(self.fontMetrics().height() + 6)
        self.setMinimumWidth(260)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        rect = self.rect()
        if self.underMouse() or self.hasFocus():
            painter.fillRect(rect, palette.color(QPalette.Highlight).lighter(170) if palette.color(QPalette.Base).lightness() > 128
                             else palette.color(QPalette.Highlight).darker(150))
        if self.hasFocus():  # the keyboard's row, framed
            painter.setPen(palette.color(QPalette.Highlight))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
        text_width = 110
        bar = QRect(text_width + 4, 4, round((rect.width() - text_width - 60) * self.choice.prob / self.scale),
                    rect.height() - 8)
        colour = QColor(palette.color(QPalette.Highlight))
        colour.setAlpha(200 if self.chosen else 110)
        painter.fillRect(bar, colour)
        painter.setPen(palette.color(QPalette.Text))
        font = painter.font()
        font.setBold(self.chosen)
        painter.setFont(font)
        label = self.fontMetrics().elidedText(shown(self.choice.text), Qt.ElideRight, text_width - 6)
        painter.drawText(QRect(4, 0, text_width - 4, rect.height()), Qt.AlignVCenter | Qt.AlignLeft, label)
        painter.drawText(QRect(rect.width() - 56, 0, 52, rect.height()), Qt.AlignVCenter | Qt.AlignRight,
                         percent(self.choice.prob))

    def focusInEvent(self, event) -> None:
        self.update()
        super().focusInEvent(event)

    def focusOutEvent(self, event) -> None:
        self.update()
        super().focusOutEvent(event)

    def enterEvent(self, event) -> None:
        self.update()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self.update()
        super().leaveEvent(event)


CARD_KEYS = (Qt.Key_Up, Qt.Key_Down, Qt.Key_Return, Qt.Key_Enter, Qt.Key_Escape)  # the card's own, with Alt+← →


class TokenCard(QFrame):
    """What the model predicted at one token: the token, its probability and rank, and the alternatives as bars.
    Clicking an alternative (or Enter on it: Up / Down go from one to the next) emits `picked`; Esc `dismissed`;
    Alt+Right / Alt+Left `stepped` (the next or previous token's card, please)."""

    picked = Signal(int, int, object)  # message id, token index, the Choice
    left = Signal()  # the mouse left the card
    dismissed = Signal()  # Esc in the card
    stepped = Signal(int)  # Alt+Right (1) or Alt+Left (-1) in the card

    def __init__(self, parent: QWidget, pick_hint: str = PICK_HINT):
        super().__init__(parent)
        self.pick_hint = pick_hint  # the footer, when an alternative can be picked
        self.setFrameShape(QFrame.StyledPanel)
        self.setAutoFillBackground(True)
        self.setAccessibleName("Token alternatives")
        self.key: tuple[int, int] | None = None
        self.title = QLabel()
        self.title.setTextFormat(Qt.RichText)
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.RichText)
        self.rows: list[_AlternativeRow] = []
        self.box = QVBoxLayout(self)
        self.box.setContentsMargins(8, 6, 8, 6)
        self.box.setSpacing(1)
        self.box.addWidget(self.title)
        self.box.addWidget(self.hint)
        self.setFocusPolicy(Qt.StrongFocus)  # (when no alternative can be picked, the card itself has the keys)
        self.installEventFilter(self)
        self.hide()

    def show_token(self, message_id: int, index: int, token: TokenInfo, pickable: bool) -> None:
        self.key = (message_id, index)
        text = next((c.text for c in token.top if c.token == token.token), token.piece)
        self.title.setText(f"<b>{_escape(shown(text))}</b>"
                           f"&nbsp; p = {percent(token.prob)} · rank {token.rank:,} · {BUCKET_NAMES[token.bucket]}")
        self.setAccessibleDescription(spoken(token))
        for row in self.rows:
            row.deleteLater()
        scale = max((c.prob for c in token.top), default=1.0) or 1.0
        self.rows = [_AlternativeRow(c, c.token == token.token, scale, self) for c in token.top]
        for row in self.rows:
            self.box.insertWidget(self.box.count() - 1, row)
            row.setEnabled(pickable)
            row.installEventFilter(self)
            row.clicked.connect(lambda _checked=False, c=row.choice: self.picked.emit(*self.key, c))
        self.hint.setText(f"<small>{_escape(self.pick_hint)}</small>" if pickable
                          else "<small>The model's likeliest tokens here.</small>")
        self.adjustSize()

    def leaveEvent(self, event) -> None:
        self.left.emit()
        super().leaveEvent(event)

    def focus_choice(self) -> None:
        """The keyboard in the card: on the alternative the model chose (or the first one, or the card itself
        when none can be picked)."""
        rows = [row for row in self.rows if row.isEnabled()]
        chosen = next((row for row in rows if row.chosen), rows[0] if rows else None)
        (chosen or self).setFocus(Qt.OtherFocusReason)

    def has_keyboard(self) -> bool:
        """Whether the keyboard is in the card."""
        focus = QApplication.focusWidget()
        return focus is not None and (focus is self or self.isAncestorOf(focus))

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind not in (QEvent.ShortcutOverride, QEvent.KeyPress) or not (watched is self or watched in self.rows):
            return super().eventFilter(watched, event)
        key, alt = event.key(), bool(event.modifiers() & Qt.AltModifier)
        if alt and key in (Qt.Key_Left, Qt.Key_Right):
            if kind == QEvent.KeyPress:
                self.stepped.emit(1 if key == Qt.Key_Right else -1)
        elif key in CARD_KEYS and not alt:
            if kind == QEvent.KeyPress:
                self._key(watched, key)
        else:
            return super().eventFilter(watched, event)
        event.accept()  # (ShortcutOverride: these keys are the card's, not the window's Esc / Stop)
        return True

    def _key(self, watched, key: int) -> None:
        rows = [row for row in self.rows if row.isEnabled()]
        if key == Qt.Key_Escape:
            self.hide()
            self.dismissed.emit()
        elif key in (Qt.Key_Up, Qt.Key_Down) and rows:
            at = rows.index(watched) if watched in rows else -1
            rows[max(0, min(len(rows) - 1, at + (1 if key == Qt.Key_Down else -1)))].setFocus(Qt.TabFocusReason)
        elif key in (Qt.Key_Return, Qt.Key_Enter) and watched in rows:
            watched.click()


def spoken(token: TokenInfo) -> str:
    """A token as a screen reader says it: its text, how likely the model found it, its rank."""
    text = next((c.text for c in token.top if c.token == token.token), token.piece)
    words = text.strip() or {"\n": "new line", " ": "space", "\t": "tab"}.get(text[:1], "nothing")
    return f"“{words}”: probability {percent(token.prob)}, rank {token.rank:,} ({BUCKET_NAMES[token.bucket]})"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

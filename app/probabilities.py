"""Showing what the model predicted: tokens coloured by rank or probability, a legend, and the card that
hovering over a token shows (its probability, its rank, the alternatives as bars; click one to pick it).

Text views keep, in the character format of each token the model wrote, which reply it belongs to and its
index there (TOKEN_MESSAGE, TOKEN_INDEX); `TokenHover` finds the token under the mouse from that, asks its
view for the reply's `ReplyTokens` and shows the `TokenCard`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPalette, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import QAbstractButton, QFrame, QLabel, QVBoxLayout, QWidget

from app.token_data import BUCKET_NAMES, Choice, ReplyTokens, TokenInfo, soft_breaks, spans  # noqa: F401

TOKEN_MESSAGE = QTextFormat.UserProperty + 2  # a char format property: the message (or analysis) the token is of
TOKEN_INDEX = QTextFormat.UserProperty + 3  # ... and its index there
ANALYSIS = -1  # TOKEN_MESSAGE of an analysed text's tokens

RANKS, PROBABILITY = "ranks", "probability"  # what the colours show
GLTR, COLOUR_BLIND = "gltr", "colour-blind"  # which colours
# GLTR's: green, yellow, red, violet. The colour-blind-safe one is from Paul Tol's "light" scheme, made for text
# laid on colour (viridis's dark end put black text on dark slate): light yellow, mint, light blue, pink.
BUCKET_COLOURS = {GLTR: ("#5fd35f", "#f2d13a", "#f26b5b", "#b38cf0"),
                  COLOUR_BLIND: ("#eedd88", "#44bb99", "#77aadd", "#ffaabb")}
GRADIENT = {GLTR: ("#f26b5b", "#f2d13a", "#5fd35f"), COLOUR_BLIND: ("#77aadd", "#44bb99", "#eedd88")}  # p 0 → 1
ALPHA = 150  # of a token's background: the text stays readable, light or dark


@dataclass(frozen=True)
class Colouring:
    """How tokens are coloured: by GLTR's rank buckets or by probability, in GLTR's colours or colour-blind-safe ones."""

    by: str = RANKS
    palette: str = GLTR

    def colour(self, data: ReplyTokens, index: int) -> QColor:
        if self.by == PROBABILITY:
            colour = _gradient(GRADIENT[self.palette], data.prob(index))
        else:
            colour = QColor(BUCKET_COLOURS[self.palette][data.bucket(index)])
        colour.setAlpha(ALPHA)
        return colour

    def legend(self) -> list[tuple[str, QColor]]:
        """(label, colour) for each step of the legend."""
        if self.by == PROBABILITY:
            return [(f"p {p:.2g}", _gradient(GRADIENT[self.palette], p)) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
        return [(name, QColor(c)) for name, c in zip(BUCKET_NAMES, BUCKET_COLOURS[self.palette])]


def _gradient(stops: tuple[str, ...], p: float) -> QColor:
    p = min(1.0, max(0.0, p)) * (len(stops) - 1)
    i = min(int(p), len(stops) - 2)
    a, b, t = QColor(stops[i]), QColor(stops[i + 1]), p - i
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def readable_on(background: QColor) -> QColor:
    """Black or white, whichever reads better (WCAG's contrast) on `background` as it shows, laid with its alpha over
    the views' base colour: the text on a token of colour-blind mode's dark blue is white, light or dark."""
    base, alpha = QGuiApplication.palette().color(QPalette.Base), background.alphaF()

    def luminance(channel_of) -> float:
        value = (channel_of(background) * alpha + channel_of(base) * (1 - alpha)) / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    shown = (0.2126 * luminance(QColor.red) + 0.7152 * luminance(QColor.green) + 0.0722 * luminance(QColor.blue))
    return QColor("black") if (shown + 0.05) / 0.05 >= 1.05 / (shown + 0.05) else QColor("white")


def block_positions(at: int, cuts: list[int]):
    """Maps an offset in a text written at `at` with a new block begun at each of `cuts` to its position in the
    document: (start of a character, end of a span)."""
    from bisect import bisect_left, bisect_right

    return (lambda offset: at + offset + bisect_right(cuts, offset)), (lambda offset: at + offset + bisect_left(cuts, offset))


def write_broken(cursor: QTextCursor, text: str, cuts: list[int]) -> None:
    """Insert `text` with a new block at each of `cuts` (Qt lays a whole paragraph out at each change: a long
    one is shown broken at its sentence ends, so that colouring it a slice at a time stays cheap)."""
    previous = 0
    for cut in cuts:
        cursor.insertText(text[previous:cut])
        cursor.insertBlock()
        previous = cut
    cursor.insertText(text[previous:])


def token_format(message_id: int, index: int, colour: QColor | None = None,
                 base: QTextCharFormat | None = None) -> QTextCharFormat:
    """The character format of one token: which it is, and its colour (None: uncoloured)."""
    fmt = QTextCharFormat(base) if base is not None else QTextCharFormat()
    fmt.setProperty(TOKEN_MESSAGE, message_id)
    fmt.setProperty(TOKEN_INDEX, index)
    if colour is not None:
        fmt.setBackground(colour)
        fmt.setForeground(readable_on(colour))
    return fmt


def shown(text: str) -> str:
    """A token's text as a person can see it: a leading space as ␣, a new line as ↵."""
    return text.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣") or "∅"


class Legend(QLabel):
    """A line of coloured swatches: what the colours mean."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setTextFormat(Qt.RichText)
        self.setWordWrap(True)  # a narrow window or a large text size: two lines, never a wider window
        self.setAccessibleName("Probability colours")
        self.hide()

    def show_for(self, colouring: Colouring | None) -> None:
        if colouring is None:
            self.hide()
            return
        what = "rank under the model" if colouring.by == RANKS else "probability under the model"
        swatches = " ".join(f'<span style="background-color: rgba({c.red()},{c.green()},{c.blue()},{ALPHA / 255:.2f}); '
                            f'color: {readable_on(QColor(c.red(), c.green(), c.blue(), ALPHA)).name()}">'
                            f"&nbsp;{label}&nbsp;</span>" for label, c in colouring.legend())
        self.setText(f"<small>Colour: {what}&nbsp; {swatches}&nbsp; · hover a token for its alternatives</small>")
        self.show()


class _AlternativeRow(QAbstractButton):
    """One alternative: its text, a bar as long as its probability, the probability; click to pick it."""

    def __init__(self, choice: Choice, chosen: bool, scale: float, parent=None):
        super().__init__(parent)
        self.choice, self.chosen, self.scale = choice, chosen, scale
        self.setCursor(Qt.PointingHandCursor)
        self.setAccessibleName(f"Use “{choice.text}” ({choice.prob:.1%})")
        self.setToolTip("Continue from here with this token instead")
        self.setFixedHeight(self.fontMetrics().height() + 6)
        self.setMinimumWidth(260)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        rect = self.rect()
        if self.underMouse():
            painter.fillRect(rect, palette.color(QPalette.Highlight).lighter(170) if palette.color(QPalette.Base).lightness() > 128
                             else palette.color(QPalette.Highlight).darker(150))
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
                         f"{self.choice.prob:.1%}")

    def enterEvent(self, event) -> None:
        self.update()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self.update()
        super().leaveEvent(event)


class TokenCard(QFrame):
    """What the model predicted at one token: the token, its probability and rank, and the alternatives as bars.
    Clicking an alternative emits `picked`."""

    picked = Signal(int, int, object)  # message id, token index, the Choice
    left = Signal()  # the mouse left the card

    def __init__(self, parent: QWidget):
        super().__init__(parent)
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
        self.hide()

    def show_token(self, message_id: int, index: int, token: TokenInfo, pickable: bool) -> None:
        self.key = (message_id, index)
        text = next((c.text for c in token.top if c.token == token.token), token.piece)
        self.title.setText(f"<b>{_escape(shown(text))}</b>"
                           f"&nbsp; p = {token.prob:.2%} · rank {token.rank:,} · {BUCKET_NAMES[token.bucket]}")
        for row in self.rows:
            row.deleteLater()
        scale = max((c.prob for c in token.top), default=1.0) or 1.0
        self.rows = [_AlternativeRow(c, c.token == token.token, scale, self) for c in token.top]
        for row in self.rows:
            self.box.insertWidget(self.box.count() - 1, row)
            row.setEnabled(pickable)
            row.clicked.connect(lambda _checked=False, c=row.choice: self.picked.emit(*self.key, c))
        self.hint.setText("<small>Click an alternative to continue from it; this reply stays as a version.</small>"
                          if pickable else "<small>The model's likeliest tokens here.</small>")
        self.adjustSize()

    def leaveEvent(self, event) -> None:
        self.left.emit()
        super().leaveEvent(event)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
                 parent: QObject | None = None):
        super().__init__(parent or view)
        self.view, self.lookup, self.pickable = view, lookup, pickable
        self.enabled = False
        self.card = TokenCard(view.viewport())
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
            self.card.show_token(message_id, index, data.token(index), self.pickable(message_id))
            self._place(rect)
            self.card.show()
            self.card.raise_()
        return True

    def _place(self, token: QRect) -> None:
        area = self.view.viewport().rect()
        size = self.card.sizeHint()
        x = min(max(0, token.x() - 8), max(0, area.width() - size.width()))
        y = token.bottom() + 4
        if y + size.height() > area.height() and token.top() - size.height() - 4 >= 0:
            y = token.top() - size.height() - 4  # no room below: above the token
        self.card.setGeometry(x, y, size.width(), size.height())

    def _hide_soon(self) -> None:
        if self.card.isVisible():
            self._hide_timer.start()

    def _hide_unless_over_card(self) -> None:
        if not self.card.underMouse():
            self.hide()

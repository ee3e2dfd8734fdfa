"""Showing what the model predicted: tokens coloured by rank or probability, a legend, and the card that
hovering over a token shows (its probability, its rank, the alternatives as bars; click one to pick it).

Text views keep, in the character format of each token the model wrote, which reply it belongs to and its
index there (TOKEN_MESSAGE, TOKEN_INDEX); `TokenHover` finds the token under the mouse from that, asks its
view for the reply's `ReplyTokens` and shows the `TokenCard`. `TokenCursor` is the keyboard's way to the same
card: Alt+Right / Alt+Left go from token to token (each said to a screen reader with its probability), Enter
opens the card, Up / Down choose an alternative, Enter continues from it, Esc closes the card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import (QAccessible, QAccessibleAnnouncementEvent, QAccessibleEvent, QColor, QGuiApplication,
                           QPainter, QPalette, QTextCharFormat, QTextCursor, QTextFormat)
from PySide6.QtWidgets import QAbstractButton, QApplication, QFrame, QLabel, QTextEdit, QVBoxLayout, QWidget

from app.probe.token_data import BUCKET_NAMES, Choice, ReplyTokens, TokenInfo, soft_breaks, spans  # noqa: F401

# The keys of the token cursor and the token card (Help > Keyboard shortcuts lists them).
KEYS = (("Alt+Left / Alt+Right", "with Probabilities on: the previous / next token of a reply or the notebook"),
        ("Enter (on a token)", "open its card: its probability, rank and the ten likeliest tokens there"),
        ("Up / Down (in the card)", "choose an alternative"),
        ("Enter or Space (in the card)", "continue from the chosen alternative"), ("Esc (in the card)", "close it"))

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
PICK_HINT = "Click an alternative (or ↑↓ and Enter) to continue from it; this reply stays as a version."


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


def percent(p: float) -> str:
    """A probability as a percentage with the digits that tell it apart from zero: 42.0%, 3.1%, 0.27%, 0.0031%,
    and below a ten-thousandth of a percent in powers of ten (2.4e-09%)."""
    value = p * 100
    if value >= 1:
        return f"{value:.1f}%"
    if value >= 1e-4:
        return f"{value:.2g}%"
    return f"{value:.1e}%" if value > 0 else "0%"


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
        self.setText(f"<small>Colour: {what}&nbsp; {swatches}&nbsp; · hover a token, or Alt+← →, for its "
                     "alternatives</small>")
        self.show()


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

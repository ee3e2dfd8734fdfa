"""Showing what the model predicted, in colour: each token by its rank or its probability (`Colouring`), the
legend beside a text, and the character format that keeps, in each token the model wrote, which reply it
belongs to and its index there (TOKEN_MESSAGE, TOKEN_INDEX; app.probe.token_cursor finds tokens by them).

The card a token shows is app.probe.token_card's; the mouse and keyboard that reach it, app.probe.token_cursor's.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import QLabel

from app.probe.token_data import BUCKET_NAMES, ReplyTokens

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

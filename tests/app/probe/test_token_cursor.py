"""The tokens of a reply shown coloured (app.probe.token_cursor, app.probe.token_card): the keyboard goes from
token to token and continues from an alternative, the colours survive a reply cut by quitting, and the
colour-blind-safe colours read as well as GLTR's, light or dark."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.probe.probabilities import percent
from tests.helpers import focused, stored_tokens, type_and_send, wait_idle


def contrast(a, b) -> float:
    """WCAG's contrast ratio of two colours (1 to 21)."""
    def luminance(colour):
        def channel(value):
            value /= 255
            return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(colour.red()) + 0.7152 * channel(colour.green()) + 0.0722 * channel(colour.blue())
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def drawn_tokens(view) -> list[tuple]:
    """(the background as drawn, the text's colour) of each coloured token of a text view, read off its pixels."""
    from PySide6.QtGui import QTextCursor

    image = view.viewport().grab().toImage()
    text_colour, base = view.palette().color(QPalette.Text), view.palette().color(QPalette.Base)
    found, block = [], view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment, fmt = it.fragment(), it.fragment().charFormat()
            if fmt.background().style() != Qt.NoBrush:
                cursor = QTextCursor(view.document())
                cursor.setPosition(fragment.position())
                rect = view.cursorRect(cursor)
                cursor.setPosition(fragment.position() + 1)
                right = view.cursorRect(cursor).x()
                if right <= rect.x() + 2:  # (a token that begins where a line wraps is drawn on the next)
                    it += 1
                    continue
                pixels = [image.pixelColor(x, y).name() for x in range(rect.x() + 1, right - 1)
                          for y in (rect.y() + 2, rect.center().y(), rect.bottom() - 1)]
                drawn = QColor(max(set(pixels), key=pixels.count))  # the background: most of the box, not the glyph
                if drawn != base:
                    found.append((drawn, fmt.foreground().color()
                                  if fmt.foreground().style() != Qt.NoBrush else text_colour))
            it += 1
        block = block.next()
    return found


def test_a_reply_cut_by_quitting_keeps_its_colours(qtbot, open_window):
    from tests.helpers import fragments

    window = open_window(max_new_tokens=4000, wide=True, probabilities=True)
    type_and_send(qtbot, window, "Tell me a long story")
    qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 40, timeout=20000)
    conv = window.conversations.current_id
    window.close()
    reply = window.history.messages(conv)[-1]
    assert reply.role == "assistant" and reply.stop_reason == "cancelled"
    data = stored_tokens(window, reply.id)
    assert data is not None and data.text().strip() == reply.content
    again = open_window(wide=True, probabilities=True)
    again.conversations.open(conv)
    assert "".join(t for _, t, _, _ in fragments(again.chat.transcript, reply.id)) == reply.content


def test_the_keyboard_goes_from_token_to_token_opens_the_card_and_continues_from_an_alternative(qtbot, open_window):
    from PySide6.QtGui import QAccessible

    window = open_window(max_new_tokens=20, probabilities=True)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    conv = window.conversations.current_id
    old = window.history.messages(conv)[-1]
    data = stored_tokens(window, old.id)
    view, card = window.chat.transcript, window.chat.transcript.hover.card
    assert window.chat.composer.hasFocus()
    qtbot.keyClick(window.chat.composer, Qt.Key_Right, Qt.AltModifier)  # from the message box: the last reply
    assert view.hasFocus()
    shown = [t[3] for t in view.token_cursor.tokens()]  # the reply's tokens that show text
    assert view.token_cursor.key == (old.id, shown[0])
    for _ in range(4):
        qtbot.keyClick(view, Qt.Key_Right, Qt.AltModifier)
    qtbot.keyClick(view, Qt.Key_Left, Qt.AltModifier)
    index = shown[3]
    assert view.token_cursor.key == (old.id, index)
    said = QAccessible.queryAccessibleInterface(view).text(QAccessible.Description)
    token = data.token(index)
    assert f"probability {percent(token.prob)}" in said and f"rank {token.rank}" in said and token.piece.strip() in said
    assert view.extraSelections() and not card.isVisible()  # shown highlighted
    qtbot.keyClick(view, Qt.Key_Return)
    assert card.isVisible() and card.key == (old.id, index)
    assert focused() in card.rows and focused().chosen  # on the model's own choice
    qtbot.keyClick(focused(), Qt.Key_Down)
    assert focused() is card.rows[1]
    qtbot.keyClick(focused(), Qt.Key_Escape)  # Esc closes the card, back on the token
    assert not card.isVisible() and view.hasFocus() and view.token_cursor.key == (old.id, index)
    qtbot.keyClick(view, Qt.Key_Return)
    qtbot.keyClick(focused(), Qt.Key_Down)
    choice = focused().choice
    qtbot.keyClick(focused(), Qt.Key_Return)  # Enter continues from the alternative
    assert window.active is not None
    wait_idle(qtbot, window)
    new = window.history.messages(conv)[-1]
    assert window.history.versions(new) == [old.id, new.id]
    new_data = stored_tokens(window, new.id)
    assert list(new_data.ids[:index]) == list(data.ids[:index]) and new_data.ids[index] == choice.token
    assert view.hasFocus()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colour_blind_tokens_read_as_well_as_gltrs_light_or_dark(qtbot, open_window, scheme):
    from app.probe.probabilities import COLOUR_BLIND, GLTR
    from app.shell.appearance import apply_color_scheme

    app = QApplication.instance()
    apply_color_scheme(app, Qt.ColorScheme.Dark if scheme == "dark" else Qt.ColorScheme.Light)
    try:
        window = open_window(model=None)  # the embedded model: its ranks of a story fall in every bucket
        text = ("Once upon a time there was a little girl who lived in a village near the forest. Whenever she went "
                "out, she wore a red riding cloak. The quantum chromodynamics of seventeen zebras.")
        worst = {}
        for palette in (GLTR, COLOUR_BLIND):
            window.set_probabilities(False, palette=palette)
            window.analyse_text(text)
            qtbot.waitUntil(lambda: window.active is None and window.analysis.analysis is not None, timeout=30000)
            qtbot.waitUntil(lambda: len(drawn_tokens(window.analysis.result)) > 20, timeout=10000)
            tokens = drawn_tokens(window.analysis.result)
            assert len({bg.name() for bg, _ in tokens}) >= 3, tokens  # several buckets are there to compare
            worst[palette] = min(contrast(bg, fg) for bg, fg in tokens)
        assert worst[COLOUR_BLIND] >= worst[GLTR], worst  # no black text on dark slate
    finally:
        apply_color_scheme(app, Qt.ColorScheme.Light)

"""The Analyse tab as a new user meets it (issue 15): one Cancel, which stops at once and leaves no results of
an earlier text; a hover card that is whole and shows a probability's digits; which model scored the text;
a text file's Windows line endings read as training reads them, and said; a binary file refused plainly."""

from __future__ import annotations

import math

import pytest
from PySide6.QtWidgets import QPushButton

from engine.errors import SettingsError
from engine.inference.analysis import analyse
from tests.helpers import ANALYSE_TEXT as TEXT
from tests.helpers import fragments, hover_token, wait_idle


def analysed(qtbot, window, text: str):
    view = window.analysis
    view.set_text(text)
    view.analyse_button.click()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: not view.writing(), timeout=10000)
    return view


def test_one_cancel_button_and_a_cancelled_analysis_leaves_no_results_of_the_text_before(qtbot, open_window):
    window = open_window()
    window.tabs.setCurrentWidget(window.analysis)
    view = analysed(qtbot, window, TEXT)
    assert view.result.toPlainText() == TEXT and sum(view.chart.counts) > 0
    view.set_text(TEXT * 300)  # about 10,000 tokens
    seen = []
    window.requests.progress.connect(lambda _r, done, total: seen.append(done))
    view.analyse_button.click()
    qtbot.waitUntil(lambda: len(seen) > 2, timeout=20000)
    cancels = [b for b in view.findChildren(QPushButton) if b.isVisible() and "Cancel" in b.text()]
    assert cancels == [view.analyse_button]  # the Analyse button is Cancel now; no second one beside it
    assert view.result.toPlainText() == "" and view.summary.text() == ""  # TEXT's results are not this text's
    view.analyse_button.click()
    wait_idle(qtbot, window)
    assert not view.running and "cancelled" in view.message.text() and not view.progress.isVisible()
    assert view.result.toPlainText() == "" and view.summary.text() == "" and sum(view.chart.counts) == 0
    assert view.analyse_button.text() == "Analyse" and view.analyse_button.isEnabled()


def test_cancel_stops_between_two_layers_not_at_the_end_of_a_window(tiny):
    """A window of GPT-2 (1,024 tokens) takes seconds on a CPU: Cancel is asked before each layer."""
    ran = []
    hooks = [block.register_forward_hook(lambda *_: ran.append(1)) for block in tiny.model.h]
    try:
        with pytest.raises(SettingsError, match="cancelled"):
            analyse(tiny, " word" * 50, cancelled=lambda: len(ran) >= 1)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(tiny.model.h) > 1 and len(ran) == 1  # the first window's first layer, and no more
    assert analyse(tiny, " word" * 50).tokens == 50  # the checks are gone afterwards


def test_the_card_is_whole_near_the_bottom_and_a_small_probability_keeps_its_digits(qtbot, open_window):
    window = open_window()
    window.tabs.setCurrentWidget(window.analysis)
    view = analysed(qtbot, window, TEXT * 3)
    data = view.analysis.data
    viewport = view.result.viewport()
    low = [(pos, index) for pos, _text, index, _bg in fragments(view.result)
           if data.token(index).prob < 2e-5 and view.result.cursorRect(_cursor(view.result, pos)).bottom()
           < viewport.height()]
    position, index = low[-1]  # the lowest visible line with an unlikely token
    hover_token(qtbot, view.result, position)
    card = view.hover.card
    qtbot.waitUntil(card.isVisible, timeout=2000)
    assert card.key[1] == index
    assert card.visibleRegion().boundingRect() == card.rect(), (card.visibleRegion().boundingRect(), card.rect())
    title = card.title.text()
    shown = float(title.split("p = ")[1].split("%")[0])
    assert shown == pytest.approx(data.token(index).prob * 100, rel=0.05), title  # not "p = 0.00%"


def _cursor(view, position):
    from PySide6.QtGui import QTextCursor

    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    return cursor


def test_the_summary_says_which_model_scored_the_text(qtbot, open_window):
    window = open_window()
    view = analysed(qtbot, window, TEXT)
    assert f"scored by <b>{window.model_info.name}</b>" in view.summary.text()


def test_a_file_with_windows_line_endings_is_scored_as_training_reads_it_and_says_so(qtbot, open_window, tmp_path):
    text = "The keeper wrote in his book.\nThe storm came over the sea.\n\nAnd the ships were late.\n" * 8
    unix, windows = tmp_path / "unix.txt", tmp_path / "windows.txt"
    unix.write_bytes(text.encode())
    windows.write_bytes(text.replace("\n", "\r\n").encode())
    window = open_window()
    view = window.analysis
    view.open_file(unix)
    view.analyse_button.click()
    wait_idle(qtbot, window)
    plain = view.analysis.bits_per_byte
    assert "line endings" not in view.summary.text()
    view.open_file(windows)
    view.analyse_button.click()
    wait_idle(qtbot, window)
    assert view.analysis.bits_per_byte == pytest.approx(plain) and math.isfinite(plain)
    assert f"Windows (CR LF) line endings; its {text.count(chr(10)):,} line breaks" in view.summary.text()


def test_a_binary_file_is_refused_where_it_is_opened(qtbot, open_window, tmp_path):
    photo = tmp_path / "photo.txt"
    photo.write_bytes(b"GIF89a" + bytes(range(256)))
    window = open_window()
    view = window.analysis
    view.set_text("kept")
    view.open_file(photo)
    assert "looks like a binary file" in view.message.text() and view.message.property("error")
    assert view.input.toPlainText() == "kept"

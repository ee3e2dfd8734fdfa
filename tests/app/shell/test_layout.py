"""The window's frame (app.shell.window, status_bar, appearance): the status bar's figures, the layout at
800x500 with larger text and the settings open, the text size, light and dark palettes, error colours and
accessible names."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QLabel

from app.settings import AppSettings
from tests.helpers import type_and_send, wait_idle, wait_loaded, EMBEDDED


# 16: layout


def cut_labels(window) -> list[str]:
    """Labels shown narrower than their text (or, wrapping, lower than it needs)."""
    cut = []
    for label in window.findChildren(QLabel):
        if not label.isVisibleTo(window) or not label.text() or label.width() <= 1:
            continue
        if label.wordWrap():
            if label.heightForWidth(label.width()) > label.height() + 1:
                cut.append(label.text())
        elif label.minimumSizeHint().width() > label.width() + 1:
            cut.append(label.text())
    return cut


def test_the_status_bar_follows_the_reply_and_the_open_conversation(qtbot, open_window):
    window = open_window(max_new_tokens=60)
    live = []
    window.requests.tokens.connect(lambda *_: live.append(window.status_bar.speed_label.text()))
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    assert live and all(" token" in text for text in live)  # it moves while the reply streams
    filled = window.status_bar.context_label.text()
    assert filled.startswith("context ") and not filled.startswith("context 0 ") and "—" not in filled
    window.conversations.new_chat()
    assert window.status_bar.context_label.text() == "context 0 / 128"  # not the previous chat's figure
    assert window.status_bar.speed_label.text() == "" and window.status_bar.ttft_label.text() == ""
    window.sidebar.list.setCurrentRow(1)  # back to the first chat
    assert window.status_bar.context_label.text() == filled


@pytest.mark.parametrize("settings_shown", [False, True])
def test_at_800_by_500_the_chat_column_keeps_its_room(qtbot, open_window, settings_shown):
    window = open_window()
    window.settings_dock.setVisible(settings_shown)
    window.resize(800, 500)
    qtbot.waitUntil(lambda: window.width() == 800 and window.height() == 500, timeout=3000)
    qtbot.wait(20)
    assert window.chat.width() >= 400, window.chat.width()
    assert window.minimumSizeHint().width() <= 800
    if settings_shown:
        assert window.settings_dock.width() >= 150 and window.settings_panel.max_new_tokens.isVisibleTo(window)
    window.tabs.setCurrentWidget(window.models)
    about = window.models.table.columnWidth(window.models.table.columnCount() - 1)
    assert about >= 120, about  # the Models view's About column stays readable


def test_error_messages_are_not_link_blue(qtbot, open_window):
    window = open_window()
    tasks = window.tasks
    tasks.select_by_name("Multiple choice")
    tasks.set_values({"context": "Hello", "options": ""})
    tasks.run_or_stop()
    assert tasks.message.property("error") is True and "highlight" not in tasks.message.styleSheet()
    tasks.select_by_name("Summarise")
    assert tasks.message.text() == "" and not tasks.message.property("error")


def test_every_control_has_an_accessible_name(qtbot, open_window):
    from PySide6.QtGui import QAccessible
    from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit,
                                   QTextEdit, QWidget)

    window = open_window()
    window.settings_dock.show()
    window.tasks.select_by_name("Multiple choice")  # its form's fields too
    kinds = (QAbstractButton, QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox, QComboBox)
    unnamed = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, kinds) or widget.objectName().startswith("qt_"):
            continue  # Qt's own parts (the table's corner, the menu bar's overflow) are named by Qt
        if isinstance(widget.parent(), (QAbstractSpinBox, QComboBox, QLineEdit)):
            continue  # the inside of a spin box or combo box, a line edit's clear button: the outer one is named
        if isinstance(widget, QComboBox):
            name = widget.accessibleName()  # a screen reader would otherwise read only its current value
        else:
            name = QAccessible.queryAccessibleInterface(widget).text(QAccessible.Name)  # own, text or label
        if not name.strip():
            unnamed.append(f"{type(widget).__name__} in {type(widget.parent()).__name__}")
    assert not unnamed, unnamed


def test_ctrl_plus_and_minus_change_the_text_size_and_it_is_remembered(qtbot, open_window, dirs):
    window = open_window()
    base = window.font().pointSize()
    qtbot.keyClick(window, Qt.Key_Equal, Qt.ControlModifier)
    qtbot.keyClick(window, Qt.Key_Equal, Qt.ControlModifier)
    assert window.font().pointSize() == base + 2
    assert window.chat.transcript.font().pointSize() == base + 2 and window.chat.composer.font().pointSize() == base + 2
    qtbot.keyClick(window, Qt.Key_Minus, Qt.ControlModifier)
    assert window.font().pointSize() == base + 1
    assert AppSettings.load(dirs / "config" / "settings.json").text_size == base + 1
    window.close()
    again = open_window(text_size=base + 1)
    assert again.font().pointSize() == base + 1
    qtbot.keyClick(again, Qt.Key_0, Qt.ControlModifier)
    assert again.font().pointSize() == base and again.settings.text_size == 0


def test_the_palette_follows_the_system_light_or_dark(qapp):
    from PySide6.QtGui import QPalette

    from app.shell.appearance import apply_color_scheme, follow_color_scheme

    app = qapp
    try:
        follow_color_scheme(app)
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # as when the system turns dark
        assert app.palette().color(QPalette.Window).lightness() < 100
        assert app.palette().color(QPalette.Text).lightness() > 200
        app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert app.palette().color(QPalette.Window).lightness() > 150
    finally:
        apply_color_scheme(app, Qt.ColorScheme.Light)


# 12: the status bar


def test_the_status_bar_figures_are_the_requests_own_live_and_written_alike(qtbot, open_window):
    window = open_window(wide=True, max_new_tokens=200)
    bar = window.status_bar
    assert bar.context_label.text() == "context — / 4,096" or bar.context_label.text() == ""
    contexts = []
    window.requests.tokens.connect(lambda *_: contexts.append(bar.context_label.text()))
    type_and_send(qtbot, window, "Tell me a story")
    wait_idle(qtbot, window)
    counts = [int(text.split()[1].replace(",", "")) for text in contexts]
    assert counts and counts[0] > 0 and counts == sorted(counts) and counts[-1] > counts[0], contexts  # live
    assert all(text.endswith("/ 4,096") for text in contexts)
    assert "tok/s" in bar.speed_label.text()
    window.tabs.setCurrentIndex(1)
    window.tasks.select_by_name("Multiple choice")
    window.tasks.set_values({"context": "The glass fell and", "options": "broke\nflew away"})
    window.tasks.run_or_stop()
    assert bar.speed_label.text() == "" and bar.ttft_label.text() == ""  # not the last reply's
    wait_idle(qtbot, window)
    assert bar.speed_label.text() == "" and bar.ttft_label.text() == ""


def test_three_steps_larger_at_800_by_500_keep_the_window_and_every_label_whole(qtbot, open_window):
    window = open_window(model=None)
    wait_loaded(qtbot, window)
    window.toggle_settings()
    window.resize(800, 500)
    qtbot.waitUntil(lambda: window.width() == 800, timeout=3000)
    for _ in range(3):
        qtbot.keyClick(window, Qt.Key_Equal, Qt.ControlModifier)
        qtbot.wait(50)
    assert window.width() == 800 and window.minimumSizeHint().width() <= 800
    assert cut_labels(window) == []
    assert window.status_bar.model_label.text() == EMBEDDED
    size = window.font().pointSize()
    assert window.chat.count_label.font().pointSize() == size  # the token count follows the text size
    assert window.chat.options.preset_values.font().pointSize() == size


def test_analyse_is_whole_at_800_by_500_with_the_settings_open(qtbot, open_window):
    window = open_window()
    window.toggle_settings()
    window.resize(800, 500)
    window.show_analysis()
    qtbot.waitUntil(lambda: window.width() == 800 and window.analysis.isVisible(), timeout=3000)
    qtbot.wait(50)
    button = window.analysis.analyse_button
    right = button.mapTo(window, QPoint(button.width(), 0)).x()
    assert right <= window.settings_dock.mapTo(window, QPoint(0, 0)).x(), right
    assert window.minimumSizeHint().width() <= 800
    limits = window.analysis.limits  # what an analysis can and cannot tell: all of it there (it scrolls), not cut
    assert limits.height() >= limits.heightForWidth(limits.width()), (limits.height(), limits.width())

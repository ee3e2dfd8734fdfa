"""How the window looks: light or dark as the system is (Qt 6.5+ reports it), and the text size a person chose
(View > Larger text, Ctrl+= / Ctrl+-, remembered in settings.json)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QWidget

from app.settings import TEXT_SIZES


def dark_palette() -> QPalette:
    """A dark palette for styles that do not make one themselves."""
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 45), QColor(230, 230, 230)
    palette = QPalette(window)
    for role, colour in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                         (QPalette.AlternateBase, window), (QPalette.Text, text), (QPalette.Button, window),
                         (QPalette.ButtonText, text), (QPalette.ToolTipBase, window), (QPalette.ToolTipText, text),
                         (QPalette.Highlight, QColor(42, 130, 218)), (QPalette.HighlightedText, QColor(255, 255, 255)),
                         (QPalette.Link, QColor(110, 170, 255)), (QPalette.PlaceholderText, QColor(150, 150, 150))):
        palette.setColor(role, colour)
    palette.setColor(QPalette.Disabled, QPalette.Text, QColor(130, 130, 130))
    palette.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(130, 130, 130))
    palette.setColor(QPalette.Disabled, QPalette.WindowText, QColor(130, 130, 130))
    return palette


def apply_color_scheme(app: QGuiApplication, scheme: Qt.ColorScheme) -> None:
    """Dark when the system is dark; otherwise the style's own palette (the platform's, light)."""
    app.setPalette(dark_palette() if scheme == Qt.ColorScheme.Dark else QPalette())


def follow_color_scheme(app: QGuiApplication) -> None:
    """Light or dark now, and again whenever the system switches."""
    hints = app.styleHints()
    if hints.colorScheme() == Qt.ColorScheme.Dark:
        apply_color_scheme(app, Qt.ColorScheme.Dark)
    hints.colorSchemeChanged.connect(lambda scheme: apply_color_scheme(app, scheme))


def sized_font(size: int) -> QFont:
    """The application's font at `size` points (0: as the system has it)."""
    font = QFont(QGuiApplication.font())
    if size:
        font.setPointSize(size)
    return font


def apply_font(window: QWidget, font: QFont) -> None:
    """The window's text at `font`, all of it: a widget with a style sheet of its own (the token count under the
    message box, a preset's values) does not take its parent's font, so it is given it too."""
    window.setFont(font)
    for widget in window.findChildren(QWidget):
        if widget.styleSheet():
            widget.setFont(font)


def next_size(current: int, step: int) -> int:
    """The text size after Ctrl+= (step 1) or Ctrl+- (step -1), from `current` (0: the system's); 0 again at the
    system's size."""
    base = QGuiApplication.font().pointSize()
    size = min(max((current or base) + step, TEXT_SIZES[0]), TEXT_SIZES[1])
    return 0 if size == base else size

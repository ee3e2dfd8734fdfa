"""A line that tells a person something: a problem in the error colour, anything else in the text colour
(not the link blue that `palette(highlight)` gives)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

ERROR_COLOUR = "#c0392b"


def say(label: QLabel, text: str, error: bool = False) -> None:
    label.setText(text)
    label.setProperty("error", bool(error and text))
    label.setStyleSheet(f"QLabel {{ color: {ERROR_COLOUR}; }}" if error and text else "")

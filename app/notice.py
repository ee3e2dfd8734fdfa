"""A line that tells a person something: a problem in the error colour, anything else in the text colour
(not the link blue that `palette(highlight)` gives); the engine's command-line advice in the window's terms;
and `Problem`, what every room sends the banner.

A room reports a failure to the banner in one way: a `problem = Signal(object)` that emits a `Problem`, which
app.shell.window connects to `Banner.report`. Within a page, a line beside the control (`say`) does instead.

The colour is the label's palette, not a style sheet: a widget with its own style sheet no longer takes its
parent's font, so a message in the error colour ignored the text size (View > Larger text)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel

ERROR_COLOUR = "#c0392b"

# What the engine tells a command-line user to do, and what the window has for it instead.
WINDOW_TERMS = (
    (re.compile(r"give the right one with --api-key( or OPENAI_API_KEY)?"),
     "enter the right one in the API key field (Models > Add server…)"),
    (re.compile(r"pick another --port"), "choose another port in the Port box (or “any free port”)"),
    (re.compile(r"name one with --remote-model"), "choose one of its models in Models"),
    (re.compile(r"^gpt2-desktop \w+: "), ""),
)


NOT_SAVED = " This session's conversations will not be saved to it."  # after why the history is not the file


@dataclass(frozen=True)
class Problem:
    """A message for the banner (app.shell.banner) about `kind` ("model", "history", "saving", ...); an empty
    `text` says that kind's problem is over. `conversation`: the one it is about (it goes when another opens)."""

    text: str
    kind: str = "info"
    conversation: int | None = None


def in_window_terms(message: str) -> str:
    """`message` with the command line's advice (flags to pass) put as the window's own controls."""
    for pattern, instead in WINDOW_TERMS:
        message = pattern.sub(instead, message)
    return message


def say(label: QLabel, text: str, error: bool = False) -> None:
    label.setText(text)
    label.setProperty("error", bool(error and text))
    if error and text:
        palette = QPalette()  # only the text's colour is this label's own; the rest is inherited
        palette.setColor(QPalette.WindowText, QColor(ERROR_COLOUR))
        label.setPalette(palette)
    else:
        label.setPalette(QPalette())

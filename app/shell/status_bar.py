"""The status bar: passing messages on the left; the model and how the last reply went on the right.

Its figures are named fields (FIELDS, left to right), each a label set by `_set`. A field with no text is
hidden with the line before it. When the window is too narrow for all of them and the passing message, the least
needed go first (KEPT_FIRST, from the end) rather than any being cut (they come back when the message has gone),
and the model's name is shortened with … last; so the status bar never makes the window wider. Numbers are
written as everywhere in the window: 1,024.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QStatusBar, QWidget

from app.engine_link.worker import ModelInfo

if TYPE_CHECKING:
    from app.engine_link.requests import ActiveRequest
    from engine.inference.generate import Done

FIELDS = ("model", "device", "speed", "ttft", "context")  # left to right
KEPT_FIRST = ("model", "context", "speed", "device", "ttft")  # when they do not all fit, the last go first
MESSAGE_ROOM = 160  # what the passing messages keep at least, left of the fields


def number(n: int | float) -> str:
    """A count as the window writes it: 1,024."""
    return f"{round(n):,}"


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.busy = QProgressBar(maximumWidth=120, textVisible=False)
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.addPermanentWidget(self.busy)
        self.fields: dict[str, QLabel] = {}
        self._texts: dict[str, str] = {}  # each field's whole text (a shortened one shows less)
        self._lines: dict[str, QFrame] = {}  # the thin line before each field but the first
        for i, name in enumerate(FIELDS):
            if i:  # so that the fields do not run together
                self._lines[name] = QFrame(frameShape=QFrame.VLine, frameShadow=QFrame.Sunken)
                self.addPermanentWidget(self._lines[name])
            label = QLabel()
            label.setContentsMargins(4, 0, 4, 0)
            label.setMinimumWidth(1)  # its room is decided here (_fit), not by its text
            self.fields[name] = label
            self.addPermanentWidget(label)
        self.model_label, self.device_label = self.fields["model"], self.fields["device"]
        self.speed_label, self.ttft_label = self.fields["speed"], self.fields["ttft"]
        self.context_label = self.fields["context"]
        self.context_window: int | None = None
        self._context_base: int | None = None  # the conversation's tokens when the reply streaming began
        self._set("model", "no model")
        self.messageChanged.connect(lambda _message: self._fit())  # a passing message makes room for itself

    # what is shown

    def set_busy(self, busy: bool) -> None:
        """The moving bar: a model is loading, or the engine is answering."""
        self.busy.setVisible(busy)
        self._fit()

    def show_loading(self, name: str) -> None:
        self.busy.show()
        self._set("model", f"Loading {name}…")
        self._set("device", "")
        self.clear_reply()
        self.showMessage(f"Loading {name}…")

    def show_model(self, info: ModelInfo) -> None:
        self.busy.hide()
        self._set("model", info.name)
        self.model_label.setToolTip(info.server or str(info.folder))
        self._set("device", f"on {info.server}" if info.server else f"{info.device} · {info.precision}")
        self.context_window = info.context_window
        self.showMessage(f"Loaded {info.name}", 3000)

    def show_no_model(self) -> None:
        self.busy.hide()
        self._set("model", "no model")
        self._set("device", "")
        self.context_window = None
        self.clear_reply()
        self._set("context", "")

    def show_context(self, tokens: int | None) -> None:
        """How much of the model's window the open conversation fills (None: nothing to count)."""
        if self.context_window is None:
            self._set("context", "")
        elif tokens is None:
            self._set("context", f"context — / {number(self.context_window)}")
        else:
            self._set("context", f"context {number(min(tokens, self.context_window))} / {number(self.context_window)}")

    def begin_request(self, context_tokens: int | None = None) -> None:
        """A request began: the last reply's figures go (a choice or an analysis has none of its own). For a reply
        written into the open conversation, `context_tokens` is what the conversation held as it began: the
        context figure then grows with the reply."""
        self.busy.show()
        self.clear_reply()
        self._context_base = context_tokens
        if context_tokens is not None:
            self.show_context(context_tokens)

    def show_progress(self, active: ActiveRequest) -> None:
        """While a reply streams: how many tokens so far, how fast, and how full the window is getting."""
        rate = active.tokens_per_second()
        self._set("speed", f"{number(active.tokens)} token{'s' if active.tokens != 1 else ''}"
                           + (f" · {rate:.1f} tok/s" if rate else ""))
        if active.first_token is not None:
            self._set("ttft", f"first token {number((active.first_token - active.started) * 1000)} ms")
        if self._context_base is not None and not active.detached:
            self.show_context(self._context_base + active.tokens)

    def clear_reply(self) -> None:
        """Forget the last reply's figures (another conversation is open, another model, another request)."""
        self._context_base = None
        self._set("speed", "")
        self._set("ttft", "")

    def show_reply(self, done: Done, what: str = "conversation") -> None:
        """Speed, time to the first token and how full the window is, after a reply ended. `what` the prompt was
        made of, for the line that says its start was left out: "conversation", "text" (a notebook's) or "prompt"."""
        self.busy.hide()
        self._context_base = None
        written = len(done.token_ids)
        speed = f" · {done.tokens_per_second:.1f} tok/s" if done.tokens_per_second else ""
        self._set("speed", f"{number(written)} token{'s' if written != 1 else ''}{speed}")
        self._set("ttft", f"first token {number(done.time_to_first_token_ms)} ms" if written else "")
        if done.context_window:  # (a remote server that does not say its window: unknown)
            self._set("context", f"context {number(done.context_tokens)} / {number(done.context_window)}")
        if done.truncated_prompt_tokens:
            self.showMessage(
                f"The {what} is longer than the model's window: its first "
                f"{number(done.truncated_prompt_tokens)} tokens were left out of the prompt.", 8000)

    def text_of(self, name: str) -> str:
        """A field's whole text ("": not shown), even when the window is too narrow to show it."""
        return self._texts.get(name, "")

    # fitting

    def _set(self, name: str, text: str) -> None:
        """A field's text; an empty field is hidden with its line."""
        self._texts[name] = text
        self.fields[name].setText(text)
        self.fields[name].setToolTip(text if name != "model" else self.fields[name].toolTip())
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """Show the fields that fit, in the order of KEPT_FIRST; the model's name shortened if even it does not."""
        message = self.fontMetrics().horizontalAdvance(self.currentMessage()) + 24 if self.currentMessage() else 0
        room = self.width() - max(MESSAGE_ROOM, message)
        room -= self.busy.sizeHint().width() if self.busy.isVisible() else 0
        shown: set[str] = set()
        for name in KEPT_FIRST:
            text = self._texts.get(name, "")
            if not text:
                continue
            label = self.fields[name]
            need = label.fontMetrics().horizontalAdvance(text) + 14 + (8 if name in self._lines else 0)
            if need <= room or name == "model":
                shown.add(name)
                room -= need
        model = self.fields["model"]
        whole = self._texts.get("model", "")
        if room < 0:  # the model's name alone is too long: shortened, its whole name in the tooltip
            width = max(40, model.fontMetrics().horizontalAdvance(whole) + room)
            model.setText(model.fontMetrics().elidedText(whole, Qt.ElideMiddle, width))
        elif model.text() != whole:
            model.setText(whole)
        for name, label in self.fields.items():
            label.setVisible(name in shown)
            if name in self._lines:
                self._lines[name].setVisible(name in shown)

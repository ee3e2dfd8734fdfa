"""The status bar: passing messages on the left; the model and how the last reply went on the right."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QStatusBar, QWidget

from app.worker import ModelInfo

if TYPE_CHECKING:
    from app.requests import ActiveRequest
    from engine.inference.generate import Done


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.busy = QProgressBar(maximumWidth=120, textVisible=False)
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.model_label, self.device_label = QLabel("no model"), QLabel("")
        self.speed_label, self.ttft_label, self.context_label = QLabel(""), QLabel(""), QLabel("")
        self.context_window: int | None = None
        self.addPermanentWidget(self.busy)
        self._lines: dict[QLabel, QFrame] = {}  # the thin line before each field but the first
        for i, label in enumerate((self.model_label, self.device_label, self.speed_label, self.ttft_label,
                                   self.context_label)):
            if i:  # so that the fields do not run together
                self._lines[label] = QFrame(frameShape=QFrame.VLine, frameShadow=QFrame.Sunken)
                self.addPermanentWidget(self._lines[label])
            label.setContentsMargins(4, 0, 4, 0)
            self.addPermanentWidget(label)
            self._set(label, label.text())

    def set_busy(self, busy: bool) -> None:
        """The moving bar: a model is loading, or the engine is answering."""
        self.busy.setVisible(busy)

    def show_loading(self, name: str) -> None:
        self.busy.show()
        self._set(self.model_label, f"Loading {name}…")
        self._set(self.device_label, "")
        self.clear_reply()
        self.showMessage(f"Loading {name}…")

    def show_model(self, info: ModelInfo) -> None:
        self.busy.hide()
        self._set(self.model_label, info.name)
        self.model_label.setToolTip(info.server or str(info.folder))
        self._set(self.device_label, f"on {info.server}" if info.server else f"{info.device} · {info.precision}")
        self.context_window = info.context_window
        self.showMessage(f"Loaded {info.name}", 3000)

    def show_no_model(self) -> None:
        self.busy.hide()
        self._set(self.model_label, "no model")
        self._set(self.device_label, "")
        self.context_window = None
        self.clear_reply()
        self._set(self.context_label, "")

    def show_context(self, tokens: int | None) -> None:
        """How much of the model's window the open conversation fills (None: nothing to count)."""
        if self.context_window is None:
            self._set(self.context_label, "")
        elif tokens is None:
            self._set(self.context_label, f"context — / {self.context_window}")
        else:
            self._set(self.context_label, f"context {min(tokens, self.context_window)} / {self.context_window}")

    def show_progress(self, active: ActiveRequest) -> None:
        """While a reply streams: how many tokens so far, and how fast."""
        rate = active.tokens_per_second()
        self._set(self.speed_label, f"{active.tokens} tokens" + (f" · {rate:.1f} tok/s" if rate else ""))
        if active.first_token is not None:
            self._set(self.ttft_label, f"first token {(active.first_token - active.started) * 1000:.0f} ms")

    def clear_reply(self) -> None:
        """Forget the last reply's figures (another conversation is open, or another model)."""
        self._set(self.speed_label, "")
        self._set(self.ttft_label, "")

    def _set(self, label: QLabel, text: str) -> None:
        """A field's text; an empty field is hidden with its line."""
        label.setText(text)
        label.setVisible(bool(text))
        if label in self._lines:
            self._lines[label].setVisible(bool(text))

    def show_reply(self, done: Done) -> None:
        """Speed, time to the first token and how full the window is, after a reply ended."""
        self.busy.hide()
        written = len(done.token_ids)
        speed = f" · {done.tokens_per_second:.1f} tok/s" if done.tokens_per_second else ""
        self._set(self.speed_label, f"{written} token{'s' if written != 1 else ''}{speed}")
        self._set(self.ttft_label, f"first token {done.time_to_first_token_ms:.0f} ms" if written else "")
        if done.context_window:  # (a remote server that does not say its window: unknown)
            self._set(self.context_label, f"context {done.context_tokens} / {done.context_window}")
        if done.truncated_prompt_tokens:
            self.showMessage(
                f"The conversation is longer than the model's window: its first {done.truncated_prompt_tokens} "
                "tokens were left out of the prompt.", 8000)

"""The status bar: passing messages on the left; the model and how the last reply went on the right."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from app.worker import ModelInfo

if TYPE_CHECKING:
    from engine.inference.generate import Done


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.busy = QProgressBar(maximumWidth=120, textVisible=False)
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.model_label, self.device_label = QLabel("no model"), QLabel("")
        self.speed_label, self.ttft_label, self.context_label = QLabel(""), QLabel(""), QLabel("")
        for widget in (self.busy, self.model_label, self.device_label, self.speed_label, self.ttft_label,
                       self.context_label):
            self.addPermanentWidget(widget)

    def set_busy(self, busy: bool) -> None:
        """The moving bar: a model is loading, or the engine is answering."""
        self.busy.setVisible(busy)

    def show_loading(self, name: str) -> None:
        self.busy.show()
        self.model_label.setText(f"Loading {name}…")
        self.showMessage(f"Loading {name}…")

    def show_model(self, info: ModelInfo) -> None:
        self.busy.hide()
        self.model_label.setText(info.name)
        self.model_label.setToolTip(str(info.folder))
        self.device_label.setText(f"{info.device} · {info.precision}")
        self.context_label.setText(f"context — / {info.context_window}")
        self.showMessage(f"Loaded {info.name}", 3000)

    def show_no_model(self) -> None:
        self.busy.hide()
        self.model_label.setText("no model")
        self.device_label.setText("")

    def show_reply(self, done: Done) -> None:
        """Speed, time to the first token and how full the window is, after a reply ended."""
        self.busy.hide()
        if done.stop_reason != "cancelled" or done.tokens_per_second:
            self.speed_label.setText(f"{done.tokens_per_second:.1f} tok/s")
        self.ttft_label.setText(f"first token {done.time_to_first_token_ms:.0f} ms")
        self.context_label.setText(f"context {done.context_tokens} / {done.context_window}")
        if done.truncated_prompt_tokens:
            self.showMessage(
                f"The conversation is longer than the model's window: its first {done.truncated_prompt_tokens} "
                "tokens were left out of the prompt.", 8000)

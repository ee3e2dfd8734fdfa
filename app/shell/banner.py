"""The banner above the page: problems to act on (open another model) or to dismiss.

Several can stand at once, one line each, by what they are about (`kind`): a history that cannot be saved to,
a settings file set aside and a model that failed to load are all shown, none hiding another. A message of a
kind already shown replaces it; `hide_kind` takes one away when its problem is over, and one about a
conversation (a reply that failed there) goes when another conversation is opened (`keep_for`). "Open model
folder…" is offered only beside a model on this computer that failed to load (MODEL_KINDS), not beside a
server that could not be reached. The text is as tall as it needs up to MAX_LINES lines and scrolls beyond,
so a small window shows part of it, never cuts it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QWidget

from app.notice import Problem

MODEL_KINDS = ("model", "fallback")  # a load failed; the embedded model stands in: "Open model folder…" helps
# (a remote model that failed to load is "server": another folder would not help there)
MAX_LINES = 7  # the most lines of text shown at once


class Banner(QFrame):
    open_model_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.StyledPanel)
        self.setObjectName("banner")
        self._messages: dict[str, str] = {}  # kind -> its text, in the order they came
        self._about: dict[str, int] = {}  # kind -> the conversation its message is about, for those about one
        self.label = QLabel(wordWrap=True, textFormat=Qt.PlainText, textInteractionFlags=Qt.TextSelectableByMouse)
        self.label.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.text = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        self.text.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.text.setWidget(self.label)
        self.open_model = QPushButton("Open model folder…")
        self.open_model.clicked.connect(self.open_model_requested)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.open_model, 0, Qt.AlignTop)
        layout.addWidget(dismiss, 0, Qt.AlignTop)
        self.hide()

    def show_message(self, text: str, kind: str = "info", conversation: int | None = None) -> None:
        """Show `text` as the banner's message about `kind` ("model", "fallback", "server", "history",
        "settings", "generation", "info"), beside those of other kinds; `conversation`: the one it is about
        (it goes when another is opened)."""
        self._messages[kind] = text
        self._about.pop(kind, None)
        if conversation is not None:
            self._about[kind] = conversation
        self._update()

    def report(self, problem: Problem) -> None:
        """What a room sent (its `problem` signal): shown, or, with no text, its kind's message taken away."""
        if problem.text:
            self.show_message(problem.text, problem.kind, problem.conversation)
        else:
            self.hide_kind(problem.kind)

    def hide_kind(self, kind: str) -> None:
        """Take away the message about this kind (a model loaded: its loading problem is over)."""
        self._about.pop(kind, None)
        if self._messages.pop(kind, None) is not None:
            self._update()

    def keep_for(self, conversation: int | None) -> None:
        """Another conversation is open (None: none): the messages about other conversations go."""
        for kind, about in list(self._about.items()):
            if about != conversation:
                self.hide_kind(kind)

    def dismiss(self) -> None:
        self._messages.clear()
        self._about.clear()
        self._update()

    def messages(self) -> dict[str, str]:
        """What is shown, by kind."""
        return dict(self._messages)

    def _update(self) -> None:
        texts = list(self._messages.values())
        self.label.setText(texts[0] if len(texts) == 1 else "\n".join(f"• {text}" for text in texts))
        self.open_model.setVisible(any(kind in MODEL_KINDS for kind in self._messages))
        self.setVisible(bool(texts))
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """As tall as the text at this width, up to MAX_LINES lines (then it scrolls)."""
        width = self.text.viewport().width()
        most = MAX_LINES * self.label.fontMetrics().lineSpacing()
        self.text.setFixedHeight(max(1, min(self.label.heightForWidth(width), most)))

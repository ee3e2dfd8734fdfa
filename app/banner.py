"""The banner above the page: a problem to act on (open another model) or to dismiss."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class Banner(QFrame):
    open_model_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.StyledPanel)
        self.setObjectName("banner")
        self.kind = ""  # what it is about: "model" (a load failed), "fallback" (the embedded model stands in), "info"
        self.label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        open_model = QPushButton("Open model folder…")
        open_model.clicked.connect(self.open_model_requested)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(lambda: self.hide())
        layout = QHBoxLayout(self)
        layout.addWidget(self.label, 1)
        layout.addWidget(open_model)
        layout.addWidget(dismiss)
        self.hide()

    def show_message(self, text: str, kind: str = "info") -> None:
        self.label.setText(text)
        self.kind = kind
        self.show()

    def hide_kind(self, kind: str) -> None:
        """Hide the banner if its message is of this kind (a model loaded: its loading problem is over)."""
        if self.kind == kind:
            self.hide()

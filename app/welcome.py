"""The first-run panel in an empty chat: what the embedded model is, and where to get GPT-2. Shown until dismissed."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

TEXT = ("<b>Welcome.</b> The model answering here is <b>tales-7m</b>, the small model that comes with "
        "gpt2-desktop: 7 million parameters trained on old public-domain children's books, so it writes like an "
        "old fairy tale, not like GPT-2, and it does not know facts. It runs on this computer and works offline: "
        "nothing you write leaves it.<br>For GPT-2 itself (124 million parameters and up), get one in the Models "
        "tab; it is downloaded once, then works offline too.")


class WelcomePanel(QFrame):
    models_requested = Signal()  # "Get GPT-2": the Models tab
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("welcome")
        self.setFrameShape(QFrame.StyledPanel)
        self.label = QLabel(TEXT, wordWrap=True, textFormat=Qt.RichText)
        self.get_gpt2 = QPushButton("Get GPT-2 in the Models tab")
        self.get_gpt2.setAccessibleName("Get GPT-2 in the Models tab")
        self.get_gpt2.clicked.connect(self.models_requested)
        self.dismiss = QPushButton("Dismiss")
        self.dismiss.setAccessibleName("Dismiss the welcome")
        self.dismiss.clicked.connect(self.dismissed)
        buttons = QHBoxLayout()
        buttons.addWidget(self.get_gpt2)
        buttons.addWidget(self.dismiss)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addLayout(buttons)

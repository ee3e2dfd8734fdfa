"""The first-run panel in an empty chat: which model answers here, and where to get GPT-2. Shown until dismissed.

It speaks of the model that answers: the embedded one (what it is and is not), another on this computer, or one
on a server (what is written is sent there). Its text is as tall as it needs where there is room, and scrolls
where there is not (a low window, a large text size), never cut off mid-sentence."""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

TEXT = ("<b>Welcome.</b> The model answering here is <b>tales-7m</b>, the small model that comes with "
        "gpt2-desktop: 7 million parameters trained on old public-domain children's books, so it writes like an "
        "old fairy tale, not like GPT-2, and it does not know facts. It runs on this computer and works offline: "
        "nothing you write leaves it.<br>For GPT-2 itself (124 million parameters and up), get one in the Models "
        "tab; it is downloaded once, then works offline too.")
LOCAL = ("<b>Welcome.</b> The model answering here is <b>{name}</b>. It runs on this computer and works offline: "
         "nothing you write leaves it.<br>The Models tab lists the other models here, GPT-2 to download, and "
         "tales-7m, the small model that comes with gpt2-desktop.")
REMOTE = ("<b>Welcome.</b> The model answering here is <b>{name}</b>, on the server {server}: what you write is "
          "sent there and answered there.<br>The Models tab lists the models on this computer, which work offline, "
          "and GPT-2 to download.")


class _Text(QScrollArea):
    """The welcome's text: as tall as it needs at its width (its height for that width, which the page gives before
    the empty transcript's room), and where even that is not there (a low window, a large text size) at least
    MIN_LINES, and it scrolls: the window is never made taller for it."""

    MIN_LINES = 2

    def __init__(self, label: QLabel):
        super().__init__(widgetResizable=True, frameShape=QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.setWidget(label)
        self.label = label

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.heightForWidth(self.width()))

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        """The text's height at this width less a scroll bar's: then, given it, no scroll bar is needed."""
        margins = self.contentsMargins()
        room = width - margins.left() - margins.right() - self.verticalScrollBar().sizeHint().width()
        return self.label.heightForWidth(max(1, room))

    def minimumSizeHint(self) -> QSize:
        lines = self.MIN_LINES * self.label.fontMetrics().lineSpacing()
        return QSize(super().minimumSizeHint().width(), min(lines, self.sizeHint().height()))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.updateGeometry()  # its height for this width


class WelcomePanel(QFrame):
    models_requested = Signal()  # "Get GPT-2": the Models tab
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("welcome")
        self.setFrameShape(QFrame.StyledPanel)
        self.label = QLabel(TEXT, wordWrap=True, textFormat=Qt.RichText, alignment=Qt.AlignLeft | Qt.AlignTop)
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
        layout.addWidget(_Text(self.label))
        layout.addLayout(buttons)

    def set_model(self, name: str, embedded: bool, server: str = "") -> None:
        """The model that answers: the embedded one, another on this computer, or one on `server`."""
        if embedded:
            self.label.setText(TEXT)
        elif server:
            self.label.setText(REMOTE.format(name=html.escape(name), server=html.escape(server)))
        else:
            self.label.setText(LOCAL.format(name=html.escape(name)))

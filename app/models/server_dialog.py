"""Models > Add server…: the dialog that asks for an OpenAI-compatible server's address and key."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from app.notice import in_window_terms, say


class ServerDialog(QDialog):
    """Models > Add server…: the address and key stay while the server is asked for its models; if it cannot
    list them, why is said here and both stay as typed, to correct."""

    check_requested = Signal(str, str)  # address, key

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add a server")
        self.url = QLineEdit(placeholderText="http://127.0.0.1:8080/v1")
        self.url.setAccessibleName("Server address")
        self.url.setMinimumWidth(self.fontMetrics().horizontalAdvance("https://gpu-box.example.org:8000/v1") + 120)
        self.key = QLineEdit(echoMode=QLineEdit.EchoMode.Password, placeholderText="if the server needs one")
        self.key.setAccessibleName("API key")
        self.note = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.note.setAccessibleName("What the server said")
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Add")
        self.buttons.accepted.connect(self._check)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(QLabel("An OpenAI-compatible server: vLLM or TGI on a GPU machine, llama.cpp's server, "
                           "or gpt2-desktop's own.", wordWrap=True))
        form.addRow("Address", self.url)
        form.addRow("API key", self.key)
        form.addRow(self.note)
        form.addRow(self.buttons)

    def _check(self) -> None:
        url = self.url.text().strip()
        if not url:
            say(self.note, "Give the server's address, e.g. http://127.0.0.1:8080/v1.", error=True)
            return
        say(self.note, f"Asking {url} for its models…")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)
        self.check_requested.emit(url, self.key.text().strip())

    def failed(self, message: str) -> None:
        """The server could not list its models: say why; the address and key stay to be corrected."""
        say(self.note, in_window_terms(message), error=True)
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(True)
        self.adjustSize()  # as tall as what it says now
        self.url.setFocus()

    def added(self) -> None:
        """The server listed its models: the dialog closes, empty for the next one."""
        self.accept()
        self.url.clear()
        self.key.clear()
        say(self.note, "")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(True)

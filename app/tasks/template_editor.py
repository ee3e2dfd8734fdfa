"""Edit a template's TOML with a live preview of the prompt it renders and its token count."""

from __future__ import annotations

import tomllib
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QSplitter, QVBoxLayout

from app.notice import say
from engine.errors import StorageError
from engine.inference.templates import Template, TemplateError, parse_template, render, save_user_template


class TemplateEditor(QDialog):
    def __init__(self, text: str, user_folder: Path, previous: Path | None, tokenizer, context_window: int,
                 parent=None):
        super().__init__(parent)
        self.setWindowTitle("Template editor")
        self.resize(900, 600)
        self.user_folder, self.previous = user_folder, previous
        self.tokenizer, self.context_window = tokenizer, context_window
        self.saved: Template | None = None
        mono = QFontDatabase.systemFont(QFontDatabase.FixedFont)
        self.source = QPlainTextEdit(text)
        self.source.setAccessibleName("Template source")
        self.source.setFont(mono)
        self.preview = QPlainTextEdit(readOnly=True)
        self.preview.setAccessibleName("Prompt preview")
        self.preview.setFont(mono)
        self.status = QLabel(wordWrap=True)
        splitter = QSplitter()
        splitter.addWidget(self.source)
        splitter.addWidget(self.preview)
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("TOML on the left; the prompt it makes from the variables' examples on the right."))
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self._timer = QTimer(self, singleShot=True, interval=250)
        self._timer.timeout.connect(self.update_preview)
        self.source.textChanged.connect(self._timer.start)
        self.update_preview()

    def update_preview(self) -> bool:
        try:
            template = parse_template(tomllib.loads(self.source.toPlainText()))
            rendered = render(template, template.example_values())
        except (TemplateError, tomllib.TOMLDecodeError) as exc:
            say(self.status, f"⚠ {exc}", error=True)
            return False
        self.preview.setPlainText(rendered.text)
        if self.tokenizer is not None:
            tokens = len(self.tokenizer.encode(rendered.text))
            say(self.status, f"{tokens} / {self.context_window} tokens of the model's context window")
        else:
            say(self.status, "Template is valid.")
        return True

    def save(self) -> None:
        try:
            self.saved = save_user_template(self.source.toPlainText(), self.user_folder, self.previous)
        except (TemplateError, StorageError) as exc:
            say(self.status, f"⚠ {exc}", error=True)
            return
        self.accept()

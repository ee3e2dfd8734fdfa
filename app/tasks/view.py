"""The Tasks view: pick a prompt template, fill its fields, run it; choose templates show a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
                               QSplitter, QTextBrowser, QVBoxLayout, QWidget)

from app.notice import say
from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import StorageError
from engine.files import write_atomic
from engine.inference.generate import Done, StopReason
from engine.inference.templates import Template, TemplateError, all_templates, read_template, render, save_user_template

# The Tasks tab's own keys (Help > Keyboard shortcuts lists them).
KEYS = (("Ctrl+Enter", "run the task (again: stop)"),)

if TYPE_CHECKING:
    from engine.inference.scoring import OptionScore


def _visible(text: str) -> str:
    """A stop sequence as a person can read it: newlines and tabs spelled out."""
    return repr(text)[1:-1].join("“”")


class ProbabilityChart(QWidget):
    """One bar per option: its probability, its log-likelihood, the best one marked."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.rows: list[tuple[QLabel, QProgressBar, QLabel]] = []

    def show_scores(self, scores: list[OptionScore]) -> None:
        for widgets in self.rows:
            for w in widgets:
                w.deleteLater()
        self.rows = []
        best = max(range(len(scores)), key=lambda i: scores[i].prob) if scores else -1
        for i, score in enumerate(scores):
            name = QLabel(("★ " if i == best else "") + score.text.strip())
            bar = QProgressBar(minimum=0, maximum=1000, value=round(score.prob * 1000))
            bar.setFormat(f"{score.prob:.1%}")
            detail = QLabel(f"log-likelihood {score.logprob:.2f} over {score.tokens} tokens")
            for col, widget in enumerate((name, bar, detail)):
                self.grid.addWidget(widget, i, col)
            self.rows.append((name, bar, detail))

    def probabilities(self) -> list[float]:
        return [bar.value() / 1000 for _, bar, _ in self.rows]


class TasksView(QWidget):
    run_generate = Signal(str, dict)  # prompt, sampling settings
    run_choose = Signal(str, list, bool)  # context, options, normalise
    stop_requested = Signal()
    open_in_notebook = Signal(str)
    use_in_chat = Signal(str)

    def __init__(self, user_folder: Path, parent=None):
        super().__init__(parent)
        self.user_folder = user_folder
        self.templates: dict[str, Template] = {}
        self.template: Template | None = None
        self.fields: dict[str, QLineEdit | QPlainTextEdit] = {}
        self.tokenizer = None
        self.context_window = 0
        self.running = False

        self.list = QListWidget(accessibleName="Templates")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.ElideRight)
        self.list.currentItemChanged.connect(lambda item, _prev: self.select(item.data(Qt.UserRole) if item else None))
        buttons = QGridLayout()
        self.buttons: dict[str, QPushButton] = {}
        for i, (text, slot) in enumerate([("New…", self.new_template), ("Duplicate", self.duplicate_template),
                                          ("Edit…", self.edit_template), ("Delete", self.ask_delete),
                                          ("Import…", self.ask_import), ("Export…", self.ask_export)]):
            button = self.buttons[text] = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button, i // 2, i % 2)
        self.delete_button = self.buttons["Delete"]
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        left_layout.addWidget(QLabel("<b>Templates</b>"))
        left_layout.addWidget(self.list, 1)
        left_layout.addLayout(buttons)

        self.title = QLabel(wordWrap=True)
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a long label goes above its field, not beside
        self.normalise = QCheckBox("Rank by log-likelihood per token (length-normalised)")
        self.message = QLabel(wordWrap=True)
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Ctrl+Enter")
        self.run_button.clicked.connect(self.run_or_stop)
        notebook = QPushButton("Open in notebook")
        notebook.clicked.connect(lambda: self._emit_rendered(self.open_in_notebook))
        chat = QPushButton("Use as chat message")
        chat.clicked.connect(lambda: self._emit_rendered(self.use_in_chat))
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(notebook)
        row.addWidget(chat)
        row.addStretch(1)
        self.output = QTextBrowser(accessibleName="The model's answer")
        self.output.setPlaceholderText("The model's answer appears here.")
        self.chart = ProbabilityChart()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 6, 6, 6)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.form_host)
        right_layout.addWidget(self.normalise)
        right_layout.addLayout(row)
        right_layout.addWidget(self.message)
        right_layout.addWidget(self.output, 1)
        self.chart_host = QWidget()  # the chart at the top of the space the output would take
        chart_layout = QVBoxLayout(self.chart_host)
        chart_layout.setContentsMargins(0, 0, 0, 0)
        chart_layout.addWidget(self.chart)
        chart_layout.addStretch(1)
        right_layout.addWidget(self.chart_host, 1)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([240, 760])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.run_or_stop)
        self.reload()

    # templates

    def reload(self, select: str | None = None) -> None:
        current = select or (self.template.name if self.template else None)
        self.problems: list[str] = []  # the user's template files that could not be read, and why
        self.templates = all_templates(self.user_folder, self.problems)
        self.list.blockSignals(True)
        self.list.clear()
        for name in sorted(self.templates, key=str.lower):
            item = QListWidgetItem(name + ("" if self.templates[name].builtin else "  (yours)"))
            item.setData(Qt.UserRole, name)
            item.setToolTip(self.templates[name].description)
            self.list.addItem(item)
            if name == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        elif self.list.currentItem() is not None:
            self.select(self.list.currentItem().data(Qt.UserRole))
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            say(self.message, f"Not listed: {self.problems[0]}{more}", error=True)

    def select_by_name(self, name: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == name:
                self.list.setCurrentRow(i)

    def select(self, name: str | None) -> None:
        template = self.templates.get(name) if name else None
        if template is None:
            return
        previous = {k: self._value(w) for k, w in self.fields.items()}
        self.template = template
        self.title.setText(f"<b>{template.name}</b> — {template.description}")
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields = {}
        for var in template.variables:
            widget = QPlainTextEdit() if var.multiline else QLineEdit()
            if var.multiline:
                widget.setMaximumHeight(110)
            widget.setPlaceholderText(var.example)
            self._set_value(widget, previous.get(var.name, var.example))
            self.fields[var.name] = widget
            self.form.addRow(var.label, widget)
        self.delete_button.setEnabled(not template.builtin)
        self.delete_button.setToolTip("Built-in templates cannot be deleted; Edit… makes your own version of it"
                                      if template.builtin else f"Delete {Path(template.source).name}")
        self.normalise.setVisible(template.kind == "choose")
        self.chart_host.setVisible(template.kind == "choose")
        self.output.setVisible(template.kind == "generate")
        self.output.clear()  # the answer was the previous template's
        self.chart.show_scores([])
        say(self.message, "")

    @staticmethod
    def _value(widget) -> str:
        return widget.toPlainText() if isinstance(widget, QPlainTextEdit) else widget.text()

    @staticmethod
    def _set_value(widget, text: str) -> None:
        widget.setPlainText(text) if isinstance(widget, QPlainTextEdit) else widget.setText(text)

    def values(self) -> dict[str, str]:
        return {name: self._value(w) for name, w in self.fields.items()}

    def set_values(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._set_value(self.fields[name], value)

    # running

    def set_model(self, tokenizer: GPT2Tokenizer | None, context_window: int) -> None:
        """The loaded model's tokenizer (to fit prompts to its window; None if it could not be read)."""
        self.tokenizer = tokenizer
        self.context_window = context_window

    def rendered(self, reserve: int = 0):
        """The prompt for the form, fitted to the model's window; errors are shown, not raised."""
        if self.template is None:
            return None
        budget = self.context_window - reserve if self.tokenizer is not None else None
        try:
            result = render(self.template, self.values(), self.tokenizer, budget)
        except TemplateError as exc:
            say(self.message, str(exc), error=True)
            return None
        say(self.message, f"'{result.cut_field}' was shortened by {result.cut_tokens} tokens from its start to fit "
                          "the model's window." if result.cut_tokens else "")
        return result

    def _emit_rendered(self, signal) -> None:
        result = self.rendered()
        if result is not None:
            signal.emit(result.text)

    def run_or_stop(self) -> None:
        if self.running:
            self.stop_requested.emit()
            return
        template = self.template
        if template is None:
            return
        reserve = min(template.max_new_tokens, self.context_window // 4) if template.kind == "generate" else 0
        result = self.rendered(reserve)
        if result is None:
            return
        self.output.clear()
        if template.kind == "choose":
            self.run_choose.emit(result.text, list(result.options), self.normalise.isChecked())
        else:
            settings = {"max_new_tokens": template.max_new_tokens, "stop": list(template.stop), **template.sampling}
            self.run_generate.emit(result.text, settings)

    def say(self, text: str, error: bool = False) -> None:
        """A line above the output: why a run could not start (an error), what was cut to fit, how it ended."""
        say(self.message, text, error)

    def show_scores(self, scores: list[OptionScore]) -> None:
        self.chart.show_scores(scores)

    def set_running(self, running: bool) -> None:
        self.running = running
        self.run_button.setText("Stop" if running else "Run")

    def show_done(self, done: Done) -> None:
        """Say how the answer ended, above all when it shows nothing: an empty answer is not a silent one."""
        n = len(done.token_ids)
        tokens = f"{n} token{'s' if n != 1 else ''}"
        stops = self.template.stop if self.template is not None else ()
        reason = {
            StopReason.STOP: "at the template's stop sequence"
                             + (f" {_visible(stops[0])}" if len(stops) == 1 else f" (one of {', '.join(map(_visible, stops))})"),
            StopReason.EOS: "at the end-of-text token",
            StopReason.LENGTH: "at the template's limit",
            StopReason.CANCELLED: "because you stopped it",
        }[done.stop_reason]
        cut = self.message.text()  # what was shortened to fit, if anything: still worth knowing
        if done.text.strip():
            note = f"The model stopped {reason} after {tokens}."
        else:
            note = (f"The model wrote nothing to show: it stopped {reason} after {tokens}. "
                    "Run it again (sampling differs each time), or change the fields.")
        self.say(f"{cut} {note}" if cut else note)

    def append_output(self, text: str) -> None:
        cursor = self.output.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)

    # template files

    def _editor(self, text: str, previous: Path | None) -> None:
        from app.tasks.template_editor import TemplateEditor

        editor = TemplateEditor(text, self.user_folder, previous, self.tokenizer, self.context_window, self)
        if editor.exec():
            self.reload(select=editor.saved.name)

    def new_template(self) -> None:
        from engine.inference.templates import NEW_TEMPLATE

        self._editor(NEW_TEMPLATE, None)

    def _source_text(self) -> str:
        return Path(self.template.source).read_text(encoding="utf-8")

    def duplicate_template(self) -> None:
        if self.template is None:
            return
        text = self._source_text().replace(f'name = "{self.template.name}"', f'name = "{self.template.name} (copy)"', 1)
        self._editor(text, None)

    def edit_template(self) -> None:
        if self.template is None:
            return
        previous = None if self.template.builtin else Path(self.template.source)
        self._editor(self._source_text(), previous)

    def ask_delete(self) -> None:
        if self.template is None or self.template.builtin:  # (its button is disabled for a built-in)
            return
        answer = QMessageBox.question(self, "Delete template", f"Delete “{self.template.name}” "
                                      f"({Path(self.template.source).name})? This cannot be undone.",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer == QMessageBox.Yes:
            self.delete_template(self.template)

    def delete_template(self, template: Template) -> None:
        Path(template.source).unlink(missing_ok=True)
        self.template = None
        self.reload()

    def ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a template", "", "Templates (*.toml)")
        if path:
            self.import_template(Path(path))

    def import_template(self, path: Path) -> Template | None:
        try:
            saved = save_user_template(path.read_text(encoding="utf-8"), self.user_folder)
        except (TemplateError, StorageError, OSError, UnicodeDecodeError) as exc:
            say(self.message, f"{path.name} could not be imported: {exc}", error=True)
            return None
        self.reload(select=saved.name)
        return saved

    def ask_export(self) -> None:
        if self.template is None:
            return
        from engine.inference.templates import template_slug

        path, _ = QFileDialog.getSaveFileName(self, "Export template", f"{template_slug(self.template.name)}.toml",
                                              "Templates (*.toml)")
        if path:
            self.export_template(Path(path))

    def export_template(self, path: Path) -> None:
        try:
            write_atomic(path, self._source_text())
        except StorageError as exc:
            say(self.message, str(exc), error=True)
            return
        read_template(path)  # what was written reads back

"""The bar above a chat: the model it is written with, its sampling preset and its preamble (a system prompt;
for plain GPT-2 a text placed before the transcript). What is chosen here belongs to the open conversation."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.presets import DESCRIPTIONS, PRESETS

ANY_MODEL = "The model in use"  # the conversation keeps no model of its own
PANEL = "Settings panel"  # no preset: the settings panel's values


class ChatOptions(QWidget):
    model_chosen = Signal(str)  # a model's name ("embedded", a repo id, an imported folder's name); "": none of its own
    preset_chosen = Signal(str)  # a preset's name; "": the settings panel's values
    preamble_changed = Signal(str)  # a moment after the preamble was edited

    def __init__(self, parent: QWidget | None = None, preamble: bool = True):
        """`preamble`: offer one (not for a notebook, whose text is the whole prompt)."""
        super().__init__(parent)
        self.model = QComboBox(accessibleName="Model for this conversation")
        self.model.setToolTip("The model this conversation is written with; opening the conversation loads it")
        self.model.setMinimumContentsLength(12)
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.preset = QComboBox(accessibleName="Sampling preset for this conversation")
        self.preset.addItem(PANEL, "")
        for name in PRESETS:
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, DESCRIPTIONS[name], 3)  # 3: Qt.ToolTipRole
        self.preset.setToolTip("Sampling for this conversation: a preset, or the settings panel's values")
        self.preamble_button = QPushButton("Preamble", checkable=True)
        self.preamble_button.setAccessibleName("Show the preamble")
        self.preamble_button.setToolTip("Text placed before the conversation, e.g. who the assistant is")
        self.preamble = QPlainTextEdit(accessibleName="Preamble")
        self.preamble.setPlaceholderText("Text placed before the conversation (a system prompt), e.g. "
                                         "“The assistant is a patient gardener who answers in short sentences.”")
        self.preamble.setMaximumHeight(70)
        self.preamble.setTabChangesFocus(True)
        self.preamble.hide()
        self._preamble_timer = QTimer(self, singleShot=True, interval=500)
        self._preamble_timer.timeout.connect(lambda: self.preamble_changed.emit(self.preamble.toPlainText()))
        self.preamble.textChanged.connect(self._preamble_timer.start)
        self.preamble_button.toggled.connect(self._show_preamble)
        self.model.activated.connect(lambda i: self.model_chosen.emit(self.model.itemData(i) or ""))
        self.preset.activated.connect(lambda i: self.preset_chosen.emit(self.preset.itemData(i) or ""))
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Model", buddy=self.model))
        row.addWidget(self.model, 1)
        row.addWidget(QLabel("Preset", buddy=self.preset))
        row.addWidget(self.preset)
        row.addWidget(self.preamble_button)
        self.preamble_button.setVisible(preamble)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addLayout(row)
        layout.addWidget(self.preamble)
        self._models: list[str] = []

    def set_model_choices(self, names: list[str]) -> None:
        """The models on this computer, by the names the engine loads them by."""
        self._models = list(names)
        current = self.model.currentData()
        self.model.clear()
        self.model.addItem(ANY_MODEL, "")
        for name in names:
            self.model.addItem(name, name)
        self._select(self.model, current or "")

    def _show_preamble(self, shown: bool) -> None:
        self.preamble.setVisible(shown)
        if shown:
            self.preamble.setFocus()

    def show_options(self, model: str | None, preset: str | None, preamble: str, collapse: bool = True) -> None:
        """Show a conversation's options (this is not a choice: nothing is emitted); `collapse`: hide the preamble
        box (another conversation is shown)."""
        if model and self.model.findData(model) < 0:
            self.model.addItem(model, model)  # a model not on this computer (any more): still shown as chosen
        self._select(self.model, model or "")
        self._select(self.preset, preset or "")
        self._preamble_timer.stop()
        if self.preamble.toPlainText() != preamble:
            self.preamble.blockSignals(True)
            self.preamble.setPlainText(preamble)
            self.preamble.blockSignals(False)
        self.preamble_button.setText("Preamble ✓" if preamble.strip() else "Preamble")
        if collapse:
            self.preamble_button.setChecked(False)

    def flush(self) -> None:
        """An edit of the preamble waiting to be kept is kept now (before another conversation opens)."""
        if self._preamble_timer.isActive():
            self._preamble_timer.stop()
            self.preamble_changed.emit(self.preamble.toPlainText())

    def preamble_kept(self, text: str) -> None:
        self.preamble_button.setText("Preamble ✓" if text.strip() else "Preamble")

    @staticmethod
    def _select(box: QComboBox, data: str) -> None:
        index = box.findData(data)
        box.setCurrentIndex(max(0, index))

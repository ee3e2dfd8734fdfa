"""The bar above a chat: the model it is written with, its sampling preset and its preamble (a system prompt;
for plain GPT-2 a text placed before the transcript). What is chosen here belongs to the open conversation."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (QBoxLayout, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout,
                               QWidget)

from app.chat.presets import DESCRIPTIONS, PRESETS, values_text
from engine.store.local import EMBEDDED_ALIAS, embedded_name

ANY_MODEL = "The model in use"  # the conversation keeps no model of its own
PANEL = "Settings panel"  # no preset: the settings panel's values


class ChatOptions(QWidget):
    model_chosen = Signal(str)  # a model's name ("tales-7m", a repo id, an imported folder's name); "": none of its own
    preset_chosen = Signal(str)  # a preset's name; "": the settings panel's values
    preamble_changed = Signal(str)  # a moment after the preamble was edited

    def __init__(self, parent: QWidget | None = None, preamble: bool = True):
        """`preamble`: offer one (not for a notebook, whose text is the whole prompt)."""
        super().__init__(parent)
        self.model = QComboBox(accessibleName="Model for this conversation")
        self.model.setToolTip("The model this conversation is written with; opening the conversation loads it")
        self.model.setMinimumContentsLength(6)  # narrow: the bar stays one line at 800 wide (a long name is cut)
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.preset = QComboBox(accessibleName="Sampling preset for this conversation")
        self.preset.addItem(PANEL, "")
        for name in PRESETS:
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, f"{values_text(name)}: {DESCRIPTIONS[name]}",
                                    Qt.ToolTipRole)
        self.preset.setToolTip("Sampling for this conversation: a preset, or the settings panel's values")
        self.preset.setMinimumContentsLength(8)
        self.preset.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.preset_values = QLabel(wordWrap=True)  # what the chosen preset sets, under the row
        self.preset_values.setObjectName("preset-values")
        self.preset_values.setAccessibleName("The preset's values")
        self.preset_values.setStyleSheet("QLabel { color: palette(placeholder-text); }")
        self.preset_values.hide()
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
        self.preset.currentIndexChanged.connect(self._show_preset_values)
        self._model_part, self._preset_part = QHBoxLayout(), QHBoxLayout()
        self._model_part.addWidget(QLabel("Model", buddy=self.model))
        self._model_part.addWidget(self.model, 1)
        self._preset_part.addWidget(QLabel("Preset", buddy=self.preset))
        self._preset_part.addWidget(self.preset, 1)
        self._preset_part.addWidget(self.preamble_button)
        self.row = QBoxLayout(QBoxLayout.LeftToRight)  # one line when there is room, else two (_arrange)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.addLayout(self._model_part, 1)
        self.row.addLayout(self._preset_part)
        self.preamble_button.setVisible(preamble)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addLayout(self.row)
        layout.addWidget(self.preset_values)
        layout.addWidget(self.preamble)
        self._models: list[str] = []

    # one line or two

    def minimumSizeHint(self) -> QSize:
        """As narrow as the wider of its two parts (model; preset and preamble), one above the other: a large text
        size never makes the window wider for this bar."""
        hint = super().minimumSizeHint()
        margins = self.layout().contentsMargins()
        narrowest = max(self._model_part.minimumSize().width(), self._preset_part.minimumSize().width())
        return QSize(narrowest + margins.left() + margins.right(), hint.height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange()

    def _arrange(self) -> None:
        both = (self._model_part.minimumSize().width() + self.row.spacing() + self._preset_part.minimumSize().width())
        direction = QBoxLayout.LeftToRight if self.width() >= both else QBoxLayout.TopToBottom
        if self.row.direction() != direction:
            self.row.setDirection(direction)

    def set_model_choices(self, names: list[str]) -> None:
        """The models on this computer, by the names the engine loads them by."""
        self._models = list(names)
        current = self.model.currentData()
        self.model.clear()
        self.model.addItem(ANY_MODEL, "")
        for name in names:
            self.model.addItem(name, name)
        self._select(self.model, current or "")

    def _show_preset_values(self) -> None:
        preset = self.preset.currentData()
        self.preset_values.setText(f"{preset}: {values_text(preset)}; max new tokens, seed and stop sequences as in "
                                   "Settings" if preset else "")
        self.preset_values.setVisible(bool(preset))

    def _show_preamble(self, shown: bool) -> None:
        self.preamble.setVisible(shown)
        if shown:
            self.preamble.setFocus()

    def show_options(self, model: str | None, preset: str | None, preamble: str, collapse: bool = True) -> None:
        """Show a conversation's options (this is not a choice: nothing is emitted); `collapse`: hide the preamble
        box (another conversation is shown)."""
        if model == EMBEDDED_ALIAS:  # the embedded model's older name
            model = embedded_name()
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

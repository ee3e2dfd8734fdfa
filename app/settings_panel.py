"""Sampling and device settings, in a dock beside the conversation."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget

from app.settings import DEVICES, AppSettings
from engine.core import precisions


class _SaysWhy:
    """A number typed beyond the box's maximum is not cut short (typing 99999 into a box that takes at most
    4096 used to leave 999): the box takes its maximum and `limited` says why."""

    why = ""  # after "the most allowed": the reason, e.g. " with gpt2, its context window"

    def _number(self, text: str) -> float | None:
        text = text.strip().removeprefix(self.prefix()).removesuffix(self.suffix()).strip()
        text = text.replace(self.locale().groupSeparator(), "").replace(self.locale().decimalPoint(), ".")
        try:
            return float(text)
        except ValueError:
            return None

    def validate(self, text: str, pos: int):
        state, text_out, pos_out = super().validate(text, pos)
        if state == QValidator.Invalid and (value := self._number(text)) is not None and value > self.maximum():
            return QValidator.Intermediate, text, pos  # keep typing; taken in hand when editing ends
        return state, text_out, pos_out

    def fixup(self, text: str) -> str:
        value = self._number(text)
        if value is not None and value > self.maximum():
            limit = self.textFromValue(self.maximum())
            self.limited.emit(f"{text.strip()} is over the limit, so it is {limit}: the most allowed{self.why or ''}.")
            return limit
        return super().fixup(text)


class BoundedSpinBox(_SaysWhy, QSpinBox):
    limited = Signal(str)  # a typed value was over the maximum: what was done and why


class BoundedDoubleSpinBox(_SaysWhy, QDoubleSpinBox):
    limited = Signal(str)


def _double(lo: float, hi: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = BoundedDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _int(lo: int, hi: int, special: str | None = None) -> QSpinBox:
    box = BoundedSpinBox()
    box.setRange(lo, hi)
    box.setGroupSeparatorShown(hi >= 10000)
    if special:
        box.setSpecialValueText(special)
    return box


MAX_NEW_TOKENS = 1 << 20  # before a model is loaded; then its context window


class SettingsPanel(QWidget):
    sampling_changed = Signal()
    device_changed = Signal()  # device, precision or threads: the model must be reloaded

    def __init__(self, settings: AppSettings, cuda_available: bool, cpu_count: int, parent=None):
        super().__init__(parent)
        self.temperature = _double(0.0, 2.0, 0.05)
        self.temperature.setToolTip("0 is greedy: always the most likely token")
        self.top_k = _int(0, 1000, "off")
        self.top_p = _double(0.01, 1.0, 0.01)
        self.repetition_penalty = _double(0.5, 3.0, 0.05)
        self.max_new_tokens = _int(1, MAX_NEW_TOKENS)
        self.max_new_tokens.why = ""
        self.limit_note = QLabel(wordWrap=True)  # why a value was lowered
        self.limit_note.setObjectName("limit-note")
        self.limit_note.hide()
        self.seed = _int(-1, 2**31 - 1, "random")
        self.seed.setToolTip("The same seed and settings give the same reply")
        self.device = QComboBox(accessibleName="Device")
        self.device.addItems([d for d in DEVICES if d != "cuda" or cuda_available])
        self.precision = QComboBox(accessibleName="Precision")
        self.precision.addItems(precisions.CHOICES)
        self.precision.setToolTip(
            f"Weight precision. auto: {precisions.default_for('cpu')} on the CPU, {precisions.default_for('cuda')} "
            "on CUDA. Smaller ones are faster on the CPU and a little less exact; a copy is prepared the first time.\n"
            + "\n".join(f"{p.name}: {p.summary}" for p in precisions.PRECISIONS))
        self.threads = _int(0, max(1, cpu_count), "auto")
        self.threads.setToolTip("auto: one thread per physical core")
        self.load(settings)
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # narrow: each label above its field
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Repetition penalty", self.repetition_penalty)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("Seed", self.seed)
        form.addRow(QLabel("<b>Engine</b>"))
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("CPU threads", self.threads)
        form.addRow(self.limit_note)
        for box in (self.temperature, self.top_k, self.top_p, self.repetition_penalty, self.max_new_tokens, self.seed):
            box.valueChanged.connect(self.sampling_changed)
        for box in (self.temperature, self.top_k, self.top_p, self.repetition_penalty, self.max_new_tokens,
                    self.seed, self.threads):
            box.limited.connect(self.say_limit)
        self.device.currentTextChanged.connect(self.device_changed)
        self.precision.currentTextChanged.connect(self.device_changed)
        self.threads.valueChanged.connect(self.device_changed)

    def say_limit(self, text: str) -> None:
        self.limit_note.setText(text)
        self.limit_note.setVisible(bool(text))

    def set_model(self, name: str, context_window: int) -> None:
        """Max new tokens can be at most the model's context window (what it sees at once: prompt and reply);
        a setting above it is lowered, and the note says so."""
        before = self.max_new_tokens.value()
        self.max_new_tokens.why = f" with {name}, its context window (prompt and reply together)"
        self.max_new_tokens.setToolTip(f"At most {context_window:,}: the context window of {name}")
        self.max_new_tokens.setMaximum(min(context_window, MAX_NEW_TOKENS))
        if before > self.max_new_tokens.maximum():
            self.say_limit(f"Max new tokens was {before:,}: {name} sees {context_window:,} tokens at once (prompt "
                           f"and reply together), so it is now {self.max_new_tokens.value():,}.")

    def set_engine_editable(self, editable: bool) -> None:
        """Device, precision and threads can change only while the engine is not writing."""
        for box in (self.device, self.precision, self.threads):
            box.setEnabled(editable)

    def load(self, s: AppSettings) -> None:
        self.temperature.setValue(s.temperature)
        self.top_k.setValue(s.top_k)
        self.top_p.setValue(s.top_p)
        self.repetition_penalty.setValue(s.repetition_penalty)
        self.max_new_tokens.setValue(s.max_new_tokens)
        self.seed.setValue(-1 if s.seed is None else s.seed)
        index = self.device.findText(s.device)
        self.device.setCurrentIndex(max(0, index))
        self.precision.setCurrentIndex(max(0, self.precision.findText(s.precision)))
        self.threads.setValue(s.threads)

    def store(self, s: AppSettings) -> None:
        s.temperature = round(self.temperature.value(), 4)
        s.top_k = self.top_k.value()
        s.top_p = round(self.top_p.value(), 4)
        s.repetition_penalty = round(self.repetition_penalty.value(), 4)
        s.max_new_tokens = self.max_new_tokens.value()
        s.seed = None if self.seed.value() < 0 else self.seed.value()
        s.device = self.device.currentText()
        s.precision = self.precision.currentText()
        s.threads = self.threads.value()

"""Sampling and device settings, in a dock beside the conversation.

Each sampling field takes the range in app.settings.LIMITS (the engine's own where it has both ends) and its
help from the engine's SamplingSettings. A number typed outside the range becomes the nearest limit, and a
note under the field says so, naming the field and its range.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QAbstractSpinBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPlainTextEdit,
                               QSpinBox, QVBoxLayout, QWidget)

from app.notice import say
from app.settings import DEVICES, LIMITS, AppSettings
from engine.core import precisions
from engine.inference.settings import SamplingSettings

ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\t", "\\t"))  # how a stop sequence's new line or tab is written


def stops_from_text(text: str) -> list[str]:
    """The stop sequences in the box: one a line, `\\n` a new line, `\\t` a tab, `\\\\` a backslash."""
    stops = []
    for line in text.split("\n"):
        out, i = [], 0
        while i < len(line):
            pair = line[i:i + 2]
            written = next((char for char, escaped in ESCAPES if escaped == pair), None)
            out.append(written if written is not None else line[i])
            i += 2 if written is not None else 1
        if "".join(out):
            stops.append("".join(out))
    return list(dict.fromkeys(stops))


def text_from_stops(stops: list[str]) -> str:
    lines = []
    for stop in stops:
        for char, escaped in ESCAPES:
            stop = stop.replace(char, escaped)
        lines.append(stop)
    return "\n".join(lines)


class _SaysWhy:
    """A number typed outside the box's range is not cut short (typing 99999 into a box that takes at most 4096
    used to leave 999, and 9 in a box of 0 to 2 became 2 without a word): the box takes the nearest limit and
    `limited` says what was done, naming the field and its range."""

    label = ""  # the field's name, as its row shows it
    why = ""  # after the range: the reason for the maximum, e.g. " with gpt2, its context window"

    def _number(self, text: str) -> float | None:
        text = text.strip().removeprefix(self.prefix()).removesuffix(self.suffix()).strip()
        text = text.replace(self.locale().groupSeparator(), "").replace(self.locale().decimalPoint(), ".")
        try:
            return float(text)
        except ValueError:
            return None

    def _outside(self, value: float | None) -> bool:
        return value is not None and not self.minimum() <= value <= self.maximum()

    def validate(self, text: str, pos: int):
        state, text_out, pos_out = super().validate(text, pos)
        if state == QValidator.Invalid and (text.strip() == "-" or self._outside(self._number(text))):
            return QValidator.Intermediate, text, pos  # keep typing; taken in hand when editing ends
        return state, text_out, pos_out

    def fixup(self, text: str) -> str:
        value = self._number(text)
        if self._outside(value):
            over = value > self.maximum()
            limit = self.textFromValue(self.maximum() if over else self.minimum())
            self.limited.emit(f"{self.label} takes {self.range_text()}{self.why or ''}: {text.strip()} is "
                              f"{'more' if over else 'less'}, so it is {limit}.")
            return limit
        return super().fixup(text)

    def range_text(self) -> str:
        low = self.textFromValue(self.minimum())
        special = self.specialValueText()
        return f"{low}{f' ({special})' if special else ''} to {self.textFromValue(self.maximum())}"


class BoundedSpinBox(_SaysWhy, QSpinBox):
    limited = Signal(str)  # a typed value was outside the range: what was done and why


class BoundedDoubleSpinBox(_SaysWhy, QDoubleSpinBox):
    limited = Signal(str)


def _double(name: str, step: float, decimals: int = 2) -> BoundedDoubleSpinBox:
    box = BoundedDoubleSpinBox()
    box.setRange(*LIMITS[name])
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _int(lo: int, hi: int, special: str | None = None) -> BoundedSpinBox:
    box = BoundedSpinBox()
    box.setRange(lo, hi)
    box.setGroupSeparatorShown(True)  # 1,024 here as everywhere in the window
    if special:
        box.setSpecialValueText(special)
    return box


FIELD_WIDTH = 70  # the narrowest a field gets (its values are short: 0.80, 40, 128, random)
MAX_NEW_TOKENS = LIMITS["max_new_tokens"][1]  # before a model is loaded; then its context window
# (field, its label) in the order shown
SAMPLING_ROWS = (("temperature", "Temperature"), ("top_k", "Top-k"), ("top_p", "Top-p"), ("min_p", "Min-p"),
                 ("repetition_penalty", "Repetition penalty"), ("presence_penalty", "Presence penalty"),
                 ("frequency_penalty", "Frequency penalty"), ("max_new_tokens", "Max new tokens"), ("seed", "Seed"))


class SettingsPanel(QWidget):
    sampling_changed = Signal()
    device_changed = Signal()  # device, precision or threads: the model must be reloaded

    def __init__(self, settings: AppSettings, cuda_available: bool, cpu_count: int, parent=None):
        super().__init__(parent)
        self.temperature = _double("temperature", 0.05)
        self.top_k = _int(*LIMITS["top_k"], "off")
        self.top_p = _double("top_p", 0.01)
        self.min_p = _double("min_p", 0.01)
        self.repetition_penalty = _double("repetition_penalty", 0.05)
        self.presence_penalty = _double("presence_penalty", 0.1)
        self.frequency_penalty = _double("frequency_penalty", 0.1)
        self.max_new_tokens = _int(*LIMITS["max_new_tokens"])
        self.seed = _int(-1, LIMITS["seed"][1], "random")
        self.stop = QPlainTextEdit(accessibleName="Stop sequences", tabChangesFocus=True)
        self.stop.setPlaceholderText("one a line; \\n is a new line")
        self.stop.setToolTip("A reply ends before any of these texts (one a line; \\n stands for a new line, \\t for "
                             "a tab). Chats also end at the next speaker's turn.")
        lines = self.stop.fontMetrics().lineSpacing()
        self.stop.setFixedHeight(3 * lines + 12)
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
        self.notes: dict[QWidget, QLabel] = {}  # under each bounded field: why a value was changed
        self._labels: list[QLabel] = []
        self.load(settings)
        self.form = form = QFormLayout()
        outer = QVBoxLayout(self)
        outer.addLayout(form)
        outer.addStretch(1)  # a tall panel keeps its rows together at the top (they spread 250 px apart)
        form.setRowWrapPolicy(QFormLayout.WrapAllRows)  # until its width is known (resizeEvent)
        for name, label in SAMPLING_ROWS:
            box = getattr(self, name)
            box.setToolTip(SamplingSettings.help(name))
            self._add(form, label, box)
        self._add(form, "Stop sequences", self.stop)
        form.addRow(QLabel("<b>Engine</b>"))
        self._add(form, "Device", self.device)
        self._add(form, "Precision", self.precision)
        self._add(form, "CPU threads", self.threads)
        for name, _label in SAMPLING_ROWS:
            getattr(self, name).valueChanged.connect(self.sampling_changed)
        self.stop.textChanged.connect(self.sampling_changed)
        self.device.currentTextChanged.connect(self.device_changed)
        self.precision.currentTextChanged.connect(self.device_changed)
        self.threads.valueChanged.connect(self.device_changed)

    def _add(self, form: QFormLayout, text: str, field: QWidget) -> None:
        """A row: its label (wrapping when the dock is narrow or the text large), the field, and for a number
        box the note under it."""
        label = QLabel(text)
        label.setBuddy(field)
        self._labels.append(label)
        field.setMinimumWidth(FIELD_WIDTH)  # not as wide as its largest value: the dock stays narrow
        form.addRow(label, field)
        if isinstance(field, _SaysWhy):
            field.label = text
            field.setCorrectionMode(QAbstractSpinBox.CorrectToNearestValue)
            note = QLabel(wordWrap=True)
            note.setObjectName("limit-note")
            note.hide()
            form.addRow(note)
            self.notes[field] = note
            field.limited.connect(lambda text, field=field: self.say_limit(field, text))
            field.lineEdit().textEdited.connect(lambda _text, field=field: self.say_limit(field, ""))

    def resizeEvent(self, event) -> None:
        """Labels beside their fields when all fit so, else each above its field; a label never wider than the
        panel (a long one wraps rather than being cut, as "Repetition penalt" was at a large text size)."""
        super().resizeEvent(event)
        form = self.form
        margins = self.layout().contentsMargins()
        room = self.width() - margins.left() - margins.right()
        widths = {label: label.fontMetrics().horizontalAdvance(label.text()) + 2 for label in self._labels}
        beside = max(widths.values()) + form.horizontalSpacing() + FIELD_WIDTH
        policy = QFormLayout.DontWrapRows if beside <= room else QFormLayout.WrapAllRows
        if form.rowWrapPolicy() != policy:
            form.setRowWrapPolicy(policy)
        for label, width in widths.items():
            label.setWordWrap(width > room)  # (a label that wraps is laid out at its narrowest: only when it must)
            label.setMaximumWidth(max(40, room))

    def say_limit(self, field: QWidget, text: str) -> None:
        """Under `field`: why its value is not the one typed ("": nothing to say)."""
        note = self.notes[field]
        say(note, text, error=True)
        note.setVisible(bool(text))

    def note_of(self, name: str) -> str:
        """What the note under a field says ("": none shown)."""
        note = self.notes[getattr(self, name)]
        return note.text() if not note.isHidden() else ""

    def focus_first(self) -> None:
        """The keyboard in the first field (Ctrl+, shows the panel)."""
        self.temperature.setFocus()
        self.temperature.selectAll()

    def set_model(self, name: str, context_window: int) -> None:
        """Max new tokens can be at most the model's context window (what it sees at once: prompt and reply);
        a setting above it is lowered, and the note says so."""
        before = self.max_new_tokens.value()
        self.max_new_tokens.why = f" with {name}, its context window (prompt and reply together)"
        self.max_new_tokens.setToolTip(f"{SamplingSettings.help('max_new_tokens')}; at most {context_window:,}: "
                                       f"the context window of {name}")
        self.max_new_tokens.setMaximum(min(context_window, MAX_NEW_TOKENS))
        if before > self.max_new_tokens.maximum():
            self.say_limit(self.max_new_tokens, f"Max new tokens was {before:,}: {name} sees {context_window:,} "
                                                f"tokens at once (prompt and reply together), so it is now "
                                                f"{self.max_new_tokens.value():,}.")

    def set_engine_editable(self, editable: bool) -> None:
        """Device, precision and threads can change only while the engine is not writing."""
        for box in (self.device, self.precision, self.threads):
            box.setEnabled(editable)

    def load(self, s: AppSettings) -> None:
        for name, _label in SAMPLING_ROWS:
            if name != "seed":
                getattr(self, name).setValue(getattr(s, name))
        self.seed.setValue(-1 if s.seed is None else s.seed)
        if stops_from_text(self.stop.toPlainText()) != list(s.stop):
            self.stop.setPlainText(text_from_stops(list(s.stop)))
        index = self.device.findText(s.device)
        self.device.setCurrentIndex(max(0, index))
        self.precision.setCurrentIndex(max(0, self.precision.findText(s.precision)))
        self.threads.setValue(s.threads)

    def store(self, s: AppSettings) -> None:
        for name, _label in SAMPLING_ROWS:
            box = getattr(self, name)
            if name != "seed":
                setattr(s, name, round(box.value(), 4) if isinstance(box, QDoubleSpinBox) else box.value())
        s.seed = None if self.seed.value() < 0 else self.seed.value()
        s.stop = stops_from_text(self.stop.toPlainText())
        s.device = self.device.currentText()
        s.precision = self.precision.currentText()
        s.threads = self.threads.value()

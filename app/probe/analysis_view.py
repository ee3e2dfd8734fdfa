"""The Analyse view: paste or open a text and see how predictable each of its tokens was for the model, as
GLTR shows it: every token coloured by its rank, the count in each rank bucket, bits per byte, and what this
can and cannot tell about who wrote the text.

The scoring runs on the engine thread (progress and Cancel here); the coloured text is written a slice at a
time, so that a text of 20,000 tokens never holds the window up.
"""

from __future__ import annotations

import gc
import math
from html import escape
from pathlib import Path

from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QPainter, QPalette, QShortcut, QTextCursor
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton,
                               QScrollArea, QSplitter, QVBoxLayout, QWidget)

from app.notice import say
from app.probe.probabilities import ANALYSIS, BUCKET_COLOURS, Colouring, Legend, token_format
from app.probe.token_cursor import TokenHover
from app.probe.token_data import BUCKET_NAMES, TextAnalysis
from engine.errors import EngineError
from engine.inference.analysis import LIMITS
from engine.inference.scoring import normalise_newlines
from engine.tooling.corpus import read_text_file

# The Analyse tab's own keys (Help > Keyboard shortcuts lists them).
KEYS = (("Ctrl+Enter", "analyse the text (again: cancel)"),)

SLICE = 150  # tokens written per turn of the event loop


class BucketChart(QWidget):
    """GLTR's histogram: one bar per rank bucket, its count and share."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.counts: tuple[int, ...] = (0, 0, 0, 0)
        self.colours = BUCKET_COLOURS["gltr"]
        self.setMinimumHeight(4 * (self.fontMetrics().height() + 6))
        self.setAccessibleName("Rank buckets")

    def set_counts(self, counts: tuple[int, ...], colours: tuple[str, ...]) -> None:
        self.counts, self.colours = counts, colours
        self.setAccessibleDescription(", ".join(f"{n}: {c}" for n, c in zip(BUCKET_NAMES, counts)))
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        total = sum(self.counts) or 1
        row = self.fontMetrics().height() + 6
        label_width, number_width = 80, 120
        painter.setPen(self.palette().color(QPalette.Text))
        for i, (name, count) in enumerate(zip(BUCKET_NAMES, self.counts)):
            y = i * row
            painter.drawText(QRect(0, y, label_width, row), Qt.AlignVCenter, name)
            width = round((self.width() - label_width - number_width) * count / total)
            painter.fillRect(QRect(label_width, y + 3, width, row - 6), QColor(self.colours[i]))
            painter.drawText(QRect(self.width() - number_width, y, number_width, row), Qt.AlignVCenter | Qt.AlignRight,
                             f"{count:,} ({count / total:.0%})")


class AnalysisView(QWidget):
    analyse_requested = Signal(str)  # the text
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.analysis: TextAnalysis | None = None
        self.colouring = Colouring()
        self._written = 0
        self._text = ""
        self._file_text, self._file_line_endings = "", 0  # the text of the file last opened, and its CR line endings
        self._line_endings = 0  # ... of the text being analysed, when it is that file's
        self.running = False
        self._collector_paused = False
        self.input = QPlainTextEdit(accessibleName="Text to analyse")
        self.input.setPlaceholderText("Paste a text here (or open a file), then Analyse (Ctrl+Enter): every token is "
                                      "coloured by how likely the model found it.")
        self.open_button = QPushButton("Open file…", clicked=self.ask_open)
        self.analyse_button = QPushButton("Analyse", clicked=self._analyse_or_cancel)
        self.analyse_button.setToolTip("Ctrl+Enter")
        QShortcut(QKeySequence("Ctrl+Return"), self.input, activated=self._analyse_or_cancel)
        self.progress = QProgressBar(accessibleName="Analysis progress")
        self.progress.hide()
        self.result = QPlainTextEdit(accessibleName="Analysed text", readOnly=True)
        self.result.setPlaceholderText("The analysed text appears here, each token coloured by its rank.")
        self.hover = TokenHover(self.result, lambda key: self.analysis.data if key == ANALYSIS and self.analysis else None,
                                lambda _key: False, self)
        self.hover.set_enabled(True)
        self.legend = Legend()
        self.legend.show_for(self.colouring)
        self.chart = BucketChart()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.limits = QLabel(LIMITS)
        self.limits.setWordWrap(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.progress, 2)
        buttons.addWidget(self.analyse_button)
        results = QWidget()
        results_layout = QVBoxLayout(results)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addWidget(self.legend)
        results_layout.addWidget(self.result, 1)
        figures_area = QWidget()  # the chart and the figures: they scroll in a low window, never overlap
        side = QHBoxLayout(figures_area)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.chart, 1, Qt.AlignTop)
        figures = QVBoxLayout()
        figures.addWidget(self.summary)
        figures.addWidget(self.limits)
        figures.addStretch(1)
        side.addLayout(figures, 1)
        figures_scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        figures_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        figures_scroll.setWidget(figures_area)
        figures_scroll.setMinimumHeight(self.chart.minimumHeight())
        results_layout.addWidget(figures_scroll)
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(self.input)
        splitter.addWidget(results)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)
        self._writer = QTimer(self, interval=0)
        self._writer.timeout.connect(self._write_slice)

    def set_colouring(self, colouring: Colouring | None) -> None:
        """The window's colours (an analysis is always coloured: by GLTR's buckets when Probabilities is off)."""
        self.colouring = colouring or Colouring()
        self.legend.show_for(self.colouring)
        if self.analysis is not None and not self.running:
            self.show_analysis(self.analysis)

    # the text

    def set_text(self, text: str) -> None:
        self.input.setPlainText(text)

    def ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a text to analyse", str(Path.home()),
                                              "Text (*.txt *.md);;Any file (*)")
        if path:
            self.open_file(Path(path))

    def open_file(self, path: Path) -> None:
        """Open a UTF-8 text file (a binary one, or one that is not UTF-8, is refused saying where); its Windows
        line endings are read as plain line breaks, as training reads text, and the analysis says so."""
        try:
            text, line_endings = normalise_newlines(read_text_file(path, what="a text to analyse"))
        except EngineError as exc:
            self.say(str(exc), error=True)
            return
        self.set_text(text)
        self._file_text, self._file_line_endings = self.input.toPlainText(), line_endings
        self.say("")

    def _analyse_or_cancel(self) -> None:
        if self.running:
            self.analyse_button.setEnabled(False)  # until the engine has stopped (within one of the model's layers)
            self.analyse_button.setText("Cancelling…")
            self.cancel_requested.emit()
        elif self.input.toPlainText().strip():
            self.analyse_requested.emit(self.input.toPlainText())
        else:
            self.say("Paste or open a text first.", error=True)

    def say(self, text: str, error: bool = False) -> None:
        say(self.message, text, error)
        self.message.setVisible(bool(text))

    # the analysis

    def set_running(self, running: bool, text: str = "") -> None:
        """An analysis of `text` begins (the previous one's results go: they are not this text's), or ends."""
        self.running = running
        self._pause_collector(running)
        self.analyse_button.setText("Cancel" if running else "Analyse")
        self.analyse_button.setEnabled(True)
        self.progress.setVisible(running)
        if running:
            self._writer.stop()
            self._text = text
            self._line_endings = self._file_line_endings if text and text == self._file_text else 0
            self.clear_results()
            self.progress.setRange(0, 0)
            self.say("")

    def clear_results(self) -> None:
        self.analysis = None
        self.hover.hide()
        self.result.clear()
        self.chart.set_counts((0, 0, 0, 0), BUCKET_COLOURS[self.colouring.palette])
        self.summary.setText("")

    def show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done:,} / {total:,} tokens")

    def show_cancelled(self) -> None:
        self.set_running(False)
        self.say("The analysis was cancelled; Analyse (Ctrl+Enter) starts it again.")

    def show_analysis(self, analysis: TextAnalysis) -> None:
        """Show an analysed text: the figures at once, the coloured tokens a slice at a time (a paragraph longer
        than a few sentences is shown broken at its sentence ends: Qt lays out a whole paragraph at each change)."""
        self.set_running(False)
        self.analysis = analysis
        data, counts = analysis.data, analysis.counts
        self.chart.set_counts(counts, BUCKET_COLOURS[self.colouring.palette])
        top10 = counts[0] / len(data) if len(data) else 0.0
        line_endings = analysis.line_endings or self._line_endings
        self.summary.setText(f"<b>{len(data):,} tokens</b>, {analysis.bytes:,} bytes · "
                             f"<b>{analysis.bits_per_byte:.2f} bits per byte</b> · perplexity "
                             f"{math.exp(analysis.nll / max(1, len(data))):,.1f} · {top10:.0%} of the tokens were "
                             f"among the model's 10 likeliest"
                             + (f" · scored by <b>{escape(analysis.model)}</b>" if analysis.model else "")
                             + (f"<br>The text had Windows (CR LF) line endings; its {line_endings:,} line "
                                f"break{'s were' if line_endings != 1 else ' was'} scored as plain line breaks, as "
                                "training reads text." if line_endings else ""))
        self.hover.hide()
        self.result.clear()
        self._text = data.text()
        self._written, self._cut = 0, 0
        self._pause_collector(True)
        self._write_slice()
        if self._written < len(analysis.places):
            self._writer.start()

    def writing(self) -> bool:
        """Whether coloured tokens are still being written."""
        return self._writer.isActive()

    def _write_slice(self) -> None:
        analysis, text = self.analysis, self._text
        data, places, cuts = analysis.data, analysis.places, analysis.cuts
        cursor = QTextCursor(self.result.document())
        cursor.movePosition(QTextCursor.End)
        cursor.beginEditBlock()
        end = min(len(places), self._written + SLICE)
        colour = self.colouring.colour
        for index, start, stop in places[self._written:end]:
            while self._cut < len(cuts) and cuts[self._cut] < stop:  # a new block begins inside (or at) this token
                cut = max(cuts[self._cut], start)
                if cut > start:
                    cursor.insertText(text[start:cut], token_format(ANALYSIS, index, colour(data, index)))
                cursor.insertBlock()
                start = cut
                self._cut += 1
            cursor.insertText(text[start:stop], token_format(ANALYSIS, index, colour(data, index)))
        cursor.endEditBlock()
        self._written = end
        if end >= len(places):
            self._writer.stop()
            self._pause_collector(False)

    def shutdown(self) -> None:
        """The window is closing: stop writing, and let the collector run again."""
        self._writer.stop()
        self.running = False
        self._pause_collector(False)

    def _pause_collector(self, pause: bool) -> None:
        """Python's cycle collector is held back while an analysis runs and is written: its full passes over the
        hundreds of thousands of objects a long text's scores make would stop every thread, the GUI's too, for
        a tenth of a second at a time. Whatever it would have found waits until the text is shown."""
        if pause and not self._collector_paused and gc.isenabled():
            gc.disable()
            self._collector_paused = True
        elif not pause and self._collector_paused and not self.running and not self.writing():
            self._collector_paused = False
            gc.enable()

"""The Fine-tune view: teach a model on this computer your own text. Pick a base, add text files or a folder,
see the tokens and a first guess of the time, choose LoRA (a small adapter, the default) or every weight, and
start. Training is `gpt2-desktop train` run as a process of its own (a QProcess), with a core left for the person;
the view follows its RUN/log.jsonl: training and validation loss curves, tokens per second, time left. Pause
(SIGTERM: it saves a checkpoint), resume (`--resume`, also after the app was closed mid-run) and cancel. The
result is a model named "BASE + NAME" (app.finetune.runs), listed in Models and the chat's model choice."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from PySide6.QtCore import QPointF, QProcess, QProcessEnvironment, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QMessageBox, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from app.finetune.runs import TrainingRun, new_run_folder, runs_dir, unfinished_runs, write_run
from app.notice import say
from app.server.panel import cli_error, plural, serve_command
from engine.errors import EngineError
from engine.files import disk_problem
from engine.store.local import local_models, parameter_count, resolve_model
from engine.tooling.corpus import BOM

EXPORT_FOLDER = "Hugging Face folder (*)"
EXPORT_GGUF = {"GGUF file, 16-bit (*.gguf)": "f16", "GGUF file, 8-bit q8_0: about half the size (*.gguf)": "q8_0"}

BATCH, CONTEXT = 8, 512  # train's defaults: tokens per step = BATCH x min(CONTEXT, the model's context window)
GUESS_FLOPS_PER_THREAD = 15e9  # a first guess of a CPU core's speed, until the run measures its own


def training_threads() -> int:
    """Leave a core for the person."""
    return max(1, (os.cpu_count() or 1) - 1)


def text_bytes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


CHECKED_BYTES = 1 << 20  # of each file, when it is added (train reads all of it at Start)


def text_problem(path: Path) -> str | None:
    """Why `path` (a text file, or a folder of .txt files) cannot be trained on, from the start of each file (as
    `train` would refuse it at Start: binary, not UTF-8, empty); None when it looks like text."""
    if not path.is_dir():
        return _file_problem(path, path.name)
    files = sorted(path.glob("*.txt"))
    if not files:
        return f"{path} has no .txt files."
    return next((problem for f in files if (problem := _file_problem(f, f"{path.name}{os.sep}{f.name}"))), None)


def _file_problem(path: Path, shown: str) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(CHECKED_BYTES)
    except OSError as exc:
        return f"{shown} cannot be read ({exc.strerror or exc})."
    skip = len(BOM) if head.startswith(BOM) else 0
    head = head[skip:]
    zero = head.find(b"\0")
    if zero >= 0:
        return f"{shown} looks like a binary file, not text (a zero byte at offset {skip + zero})."
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not only a character cut at the end of what was read
            return (f"{shown} is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {skip + exc.start}); save it "
                    "as UTF-8.")
        text = head[:exc.start].decode("utf-8")
    if not text.strip():
        return f"{shown} is empty." if not head else f"{shown} holds only blank space."
    return None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60):02d} min"


class LossChart(QWidget):
    """Training loss (every logged step) and validation loss (at each evaluation) against the step."""

    COLOURS = {"train": QColor("#1f77b4"), "val": QColor("#d62728")}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.train_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        self.total_steps = 1
        self.setMinimumHeight(180)
        self.setAccessibleName("Loss curves")

    def clear(self, total_steps: int) -> None:
        self.train_points, self.val_points, self.total_steps = [], [], max(1, total_steps)
        self.update()

    def add(self, step: int, loss: float, val_loss: float) -> None:
        if math.isfinite(loss):
            self.train_points.append((step, loss))
        if math.isfinite(val_loss) and (not self.val_points or self.val_points[-1] != (step, val_loss)) \
                and (not self.val_points or self.val_points[-1][1] != val_loss):
            self.val_points.append((step, val_loss))
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        pal = self.palette()
        area = QRectF(self.rect()).adjusted(44, 10, -10, -24)
        p.setPen(pal.color(pal.ColorRole.Mid))
        p.drawRect(area)
        values = [v for _, v in self.train_points + self.val_points]
        p.setPen(pal.color(pal.ColorRole.Text))
        if not values:
            p.drawText(area, Qt.AlignCenter, "The loss curves appear here once training runs.")
            return
        low, high = min(values), max(values)
        if high - low < 1e-6:
            low, high = low - 0.5, high + 0.5
        p.drawText(QRectF(0, area.top() - 6, 40, 14), Qt.AlignRight, f"{high:.2f}")
        p.drawText(QRectF(0, area.bottom() - 8, 40, 14), Qt.AlignRight, f"{low:.2f}")
        p.drawText(QRectF(area.left(), area.bottom() + 4, area.width() - 190, 16), Qt.AlignRight,
                   f"step {self.total_steps}")
        for n, (key, label) in enumerate((("train", "— training"), ("val", "— validation"))):
            p.setPen(self.COLOURS[key])
            p.drawText(QRectF(area.right() - 180 + 80 * n, area.bottom() + 4, 100, 16), Qt.AlignLeft, label)

        def at(step: int, value: float) -> QPointF:
            return QPointF(area.left() + area.width() * step / self.total_steps,
                           area.bottom() - area.height() * (value - low) / (high - low))

        for key, points in (("train", self.train_points), ("val", self.val_points)):
            if not points:
                continue
            p.setPen(QPen(self.COLOURS[key], 2))
            path = QPainterPath(at(*points[0]))
            for point in points[1:]:
                path.lineTo(at(*point))
            p.drawPath(path)
            for point in points if len(points) < 40 else points[-1:]:
                p.drawEllipse(at(*point), 2.5, 2.5)


class FinetuneView(QWidget):
    models_changed = Signal()  # a run finished or was removed: the model lists change
    use_requested = Signal(str)  # a fine-tuned model's name, to load
    exported = Signal(str, bool)  # where, whether it worked
    offer_taken = Signal()  # the run paused when the app was closed (resume_offer) is resumed, cancelled or set aside

    def __init__(self, parent=None):
        super().__init__(parent)
        self.paths: list[Path] = []
        self.run: TrainingRun | None = None
        self.process: QProcess | None = None
        self.state = "idle"  # idle, training, pausing, paused, cancelling, finished, failed
        self.extra_args: list[str] = []  # more `train` flags (tests: a small context and batch)
        self.tok_s = 0.0
        self._step, self._loss, self._elapsed = 0, math.nan, 0.0  # of the last log line
        self._log_offset = 0
        self._log_file: tuple[int, int] | None = None  # the log read (inode, device): a resumed run writes a new one
        self._errors: list[str] = []

        self.base = QComboBox()
        self.base.setAccessibleName("Base model")
        self.name = QLineEdit("my text")
        self.name.setAccessibleName("Name of the result")
        self.files = QListWidget()
        self.files.setAccessibleName("Training text")
        self.files.setMaximumHeight(90)
        add_files = QPushButton("Add files…")
        add_files.setAccessibleName("Add text files")
        add_files.clicked.connect(self.ask_files)
        add_folder = QPushButton("Add folder…")
        add_folder.setAccessibleName("Add a folder of text files")
        add_folder.clicked.connect(self.ask_folder)
        clear = QPushButton("Clear")
        clear.setAccessibleName("Clear the training text")
        clear.clicked.connect(self.clear_paths)
        self.text_buttons = (add_files, add_folder, clear)
        self._said_about_text = False  # the status line is about the text chosen: Clear takes it away
        self.mode = QComboBox()
        self.mode.addItem("LoRA: a small adapter beside the frozen model (fast, small)", "lora")
        self.mode.addItem("Full: every weight (slower, a whole new model)", "full")
        self.mode.setAccessibleName("Training method")
        self.rank = QSpinBox(minimum=1, maximum=256, value=8)
        self.rank.setAccessibleName("LoRA rank")
        self.steps = QSpinBox(minimum=1, maximum=100000, value=200, singleStep=50)
        self.steps.setAccessibleName("Training steps")
        self.estimate = QLabel("Add some text to see how much it is and how long training takes.", wordWrap=True)
        self.estimate.setAccessibleName("Estimate")
        for field in (self.base, self.mode, self.rank, self.steps):
            signal = field.currentIndexChanged if isinstance(field, QComboBox) else field.valueChanged
            signal.connect(self._update_estimate)
        self.mode.currentIndexChanged.connect(lambda: self.rank.setEnabled(self.mode.currentData() == "lora"
                                                                           and self.state not in self.BUSY))

        self.start_button = QPushButton("Start")
        self.start_button.setAccessibleName("Start training")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setAccessibleName("Pause training")
        self.pause_button.clicked.connect(self.pause)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setAccessibleName("Resume training")
        self.resume_button.clicked.connect(self.resume)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel training")
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button = QPushButton("Use it")
        self.use_button.setAccessibleName("Use the fine-tuned model")
        self.use_button.clicked.connect(lambda: self.run and self.use_requested.emit(self.run.model_name))
        self.export_button = QPushButton("Export…")
        self.export_button.setAccessibleName("Export the fine-tuned model")
        self.export_button.setToolTip("A Hugging Face folder (the adapter merged in), or one .gguf file for "
                                      "llama.cpp, LM Studio and Ollama")
        self.export_button.clicked.connect(self.ask_export)
        self.exporter: QProcess | None = None
        self.chart = LossChart()
        self.progress = QLabel("")
        self.progress.setAccessibleName("Training progress")
        self.status = QLabel("", wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.status.setAccessibleName("Training status")
        self.samples = QLabel("", wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.samples.setAccessibleName("Sample continuations")
        self.sampler: QProcess | None = None
        self._sample_queue: list[tuple[str, list[str]]] = []

        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("Name", self.name)
        text_buttons = QHBoxLayout()
        for button in (add_files, add_folder, clear):
            text_buttons.addWidget(button)
        text_buttons.addStretch(1)
        text_box = QVBoxLayout()
        text_box.addWidget(self.files)
        text_box.addLayout(text_buttons)
        form.addRow("Your text", text_box)
        form.addRow("Method", self.mode)
        form.addRow("LoRA rank", self.rank)
        form.addRow("Steps", self.steps)
        form.addRow("", self.estimate)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.cancel_button, self.use_button,
                       self.export_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        inner = QWidget()  # scrolls in a low window: the window's smallest size stays the other tabs'
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(inner)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.samples)

        self.timer = QTimer(self, interval=500)
        self.timer.timeout.connect(self._read_log)
        self.refresh_bases()
        self._offer_unfinished()
        self._set_state(self.state)

    BUSY = ("training", "pausing", "cancelling")

    # choosing

    def refresh_bases(self) -> None:
        chosen = self.base.currentData()
        self.base.blockSignals(True)
        self.base.clear()
        try:
            models = local_models()
        except (OSError, EngineError):
            models = []
        for m in models:
            shown = m.folder.name if m.kind == "embedded" else m.name
            self.base.addItem(shown, m.name)
        self.base.blockSignals(False)
        if chosen is not None and self.base.findData(chosen) >= 0:
            self.base.setCurrentIndex(self.base.findData(chosen))
        self._update_estimate()

    def add_base(self, model: str, shown: str | None = None) -> None:
        """Offer (and choose) a model folder or name that is not in the local list."""
        if self.base.findData(model) < 0:
            self.base.addItem(shown or Path(model).name, model)
        self.base.setCurrentIndex(self.base.findData(model))

    def ask_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add text files", "", "Text (*.txt *.md);;All files (*)")
        self.add_paths([Path(f) for f in files])

    def ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of .txt files")
        if folder:
            self.add_paths([Path(folder)])

    def add_paths(self, paths: list[Path]) -> None:
        """Add text to learn from; a file that is not text (binary, not UTF-8, empty) is said at once, not added."""
        refused = []
        for path in paths:
            if path in self.paths:
                continue
            problem = text_problem(path)
            if problem is not None:
                refused.append(problem)
                continue
            self.paths.append(path)
            self.files.addItem(f"{path}{os.sep if path.is_dir() else ''}")
        self._update_estimate()
        if refused:
            more = f" (and {plural(len(refused) - 1, 'other file')} not added)" if len(refused) > 1 else ""
            self._say_about_text(f"Not added: {refused[0]}{more}")

    def clear_paths(self) -> None:
        self.paths = []
        self.files.clear()
        self._update_estimate()
        if self._said_about_text or (self.state == "failed" and self.run is None):  # no longer about this text
            self._said_about_text = False
            self._set_state("idle" if self.state == "failed" and self.run is None else self.state, "")

    def _say_about_text(self, message: str) -> None:
        say(self.status, message, error=True)
        self._said_about_text = True

    def tokens_per_step(self) -> int:
        try:
            window = json.loads((resolve_model(self.base.currentData())[0] / "config.json").read_text())
            context = min(CONTEXT, int(window.get("n_positions", CONTEXT)))
        except (OSError, ValueError, EngineError, TypeError):
            context = CONTEXT
        return BATCH * context

    def _update_estimate(self) -> None:
        if not self.paths:
            self.estimate.setText("Add some text to see how much it is and how long training takes.")
            return
        tokens = max(1, text_bytes(self.paths) // 4)
        try:
            params = parameter_count(resolve_model(self.base.currentData())[0]) or 0
        except (EngineError, TypeError):
            params = 0
        step_tokens = self.tokens_per_step()
        flops = (4 if self.mode.currentData() == "lora" else 6) * params * step_tokens * self.steps.value()
        guess = flops / (GUESS_FLOPS_PER_THREAD * training_threads())
        passes = step_tokens * self.steps.value() / max(1, tokens)
        self.estimate.setText(f"About {tokens:,} tokens of text; {self.steps.value()} steps read "
                              f"{step_tokens * self.steps.value():,} tokens ({passes:.1f} times the text)."
                              + (f" Roughly {_duration(guess)} on {training_threads()} "
                                 f"thread{'s' if training_threads() != 1 else ''} (a first guess; "
                                 "measured once it runs)." if params else ""))

    # running

    def start(self) -> None:
        if self.state in self.BUSY:
            return
        base = self.base.currentData()
        if not base:
            self._refuse("Choose a base model first (download one in Models, or use the built-in one).")
            return
        if not self.paths:
            self._refuse("Add some text to learn from first: text files, or a folder of .txt files.")
            return
        missing = [p for p in self.paths if not p.exists()]
        if missing:
            self._refuse(f"{missing[0]} is not there any more; remove it from the list (Clear) and add it again.")
            return
        paused = self.run if self.run is not None and not self.run.finished and self.run.folder.is_dir() else None
        if paused is not None and not self._ask(
                "Start another run?", f"“{paused.model_name}” is paused at step {paused.last_step()} of "
                f"{paused.steps}. Start a new run beside it? The paused one is kept, and offered here again once "
                "the new one ends; Resume continues it instead."):
            return
        self.offer_taken.emit()
        name = self.name.text().strip() or "my text"
        folder = new_run_folder(name)
        lora = self.mode.currentData() == "lora"
        steps = self.steps.value()
        try:
            data = self._gather(folder)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            self._fail(f"Cannot start: {disk_problem(folder.parent, exc)}.")
            return
        args = ["--out", str(folder), "--init", base, "--data", str(data), "--steps", str(steps),
                "--eval-every", str(max(1, steps // 10))] + (["--lora", str(self.rank.value())] if lora else [])
        self.run = TrainingRun(folder=folder, name=name, base=base, base_shown=self.base.currentText(), lora=lora,
                               steps=steps, args=tuple(args + self.extra_args))
        try:
            write_run(self.run)
        except EngineError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            self.run = None
            self._fail(f"Cannot start: {exc}")
            return
        self.chart.clear(steps)
        self.samples.setText("")
        self._log_offset = 0
        self._log_file = None
        self._launch(list(self.run.args))

    def _gather(self, folder: Path) -> Path:
        """One file or folder goes to `train` as it is; several are copied into the run's input/ folder."""
        if len(self.paths) == 1:
            return self.paths[0]
        target = folder / "input"
        target.mkdir(parents=True, exist_ok=True)
        for n, path in enumerate(self.paths):
            for f in (sorted(path.glob("*.txt")) if path.is_dir() else [path]):
                shutil.copyfile(f, target / f"{n:03d}-{f.stem}.txt")
        return target

    def resume(self) -> None:
        if self.run is None or self.state in self.BUSY:
            return
        self.offer_taken.emit()
        if self.run.resumable:
            self._launch(["--out", str(self.run.folder), "--resume"])
        else:  # paused before `train` wrote its settings: start it again
            self._launch(list(self.run.args))

    def _launch(self, args: list[str]) -> None:
        self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardError.connect(self._on_errors)
        self.process.readyReadStandardOutput.connect(lambda: self.process.readAllStandardOutput())
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._errors = []
        self.tok_s = 0.0
        self._set_state("training", f"Training {self.run.model_name} ({'LoRA' if self.run.lora else 'full'}, "
                                    f"{plural(training_threads(), 'thread')})…")
        self.timer.start()
        command = serve_command()
        self.process.start(command[0], command[1:] + ["train"] + args + ["--threads", str(training_threads())])

    def pause(self) -> None:
        """SIGTERM: `train` saves a checkpoint and stops; Resume continues from it."""
        if self.process is not None and self.state == "training":
            self._set_state("pausing", "Pausing: saving a checkpoint…")
            self.process.terminate()

    def cancel(self) -> None:
        """Stop, and delete the run (a paused one too), once the person has said yes."""
        if self.run is None:
            return
        step = self.run.last_step()
        kept = f"its checkpoint at step {step} of {self.run.steps} and " if step else ""
        if not self._ask("Delete this run?", f"Cancel “{self.run.model_name}” and delete {kept}everything it has "
                                             f"learned ({self.run.folder})? This cannot be undone."):
            return
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self._set_state("cancelling", "Cancelling…")
            self.process.kill()
            self.process.waitForFinished(10000)
        shutil.rmtree(self.run.folder, ignore_errors=True)
        name, self.run = self.run.model_name, None
        self.timer.stop()
        self.chart.clear(1)
        self.progress.setText("")
        self._set_state("idle", f"Cancelled {name}; its files are deleted.")
        self.offer_taken.emit()
        self._offer_unfinished(after=f"Cancelled {name}; its files are deleted.")

    def may_close(self) -> bool:
        """Whether the window may close now: while a run trains, once the person has said so (it pauses: a
        checkpoint is saved and the run offered at the next start)."""
        if self.state != "training" or self.run is None:
            return True
        return self._ask("Quit while training?", f"“{self.run.model_name}” is training (step "
                                                 f"{max(self.run.last_step(), self._step)} of {self.run.steps}). Quit "
                                                 "anyway? It pauses: a checkpoint is saved, and Resume continues it "
                                                 "when you open gpt2-desktop again.")

    def _ask(self, title: str, question: str) -> bool:
        """Yes or No, No being the default (the choice that changes nothing)."""
        return QMessageBox.question(self, title, question, QMessageBox.Yes | QMessageBox.No,
                                    QMessageBox.No) == QMessageBox.Yes

    def shutdown(self) -> None:
        """The window closes: a run pauses (checkpoint saved) and is offered again at the next start."""
        if self.exporter is not None and self.exporter.state() != QProcess.ProcessState.NotRunning:
            self.exporter.waitForFinished(120000)  # an export under way is written whole (or not at all)
        if self.sampler is not None and self.sampler.state() != QProcess.ProcessState.NotRunning:
            self._sample_queue, sampler, self.sampler = [], self.sampler, None
            sampler.kill()
            sampler.waitForFinished(5000)
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.state = "pausing"
            self.process.terminate()
            if not self.process.waitForFinished(60000):
                self.process.kill()
                self.process.waitForFinished(5000)

    def _on_errors(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
        self._errors = (self._errors + [line.strip() for line in text.replace("\r", "\n").splitlines()
                                        if line.strip()])[-30:]

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.timer.stop()
            self._fail(f"Training could not be started: {self.process.errorString()}")

    def _on_finished(self, code: int, _status) -> None:
        if self.process is None or self.state == "cancelling":
            return
        self._on_errors()
        self.timer.stop()
        self._read_log()
        run = self.run
        if run is not None and run.finished:
            others = [other for other in unfinished_runs() if other.folder != run.folder]
            waiting = (f" “{others[-1].model_name}” is still paused at step {others[-1].last_step()}: it is offered "
                       "here again at the next start.") if others else ""
            self._set_state("finished", f"{run.model_name} is ready: it is listed in Models and in the chat's "
                                        f"model choice. Press Use it to chat with it.{waiting}")
            self._show_progress_line(run.steps, run.steps)
            self.models_changed.emit()
            self._sample(run)
        elif self.state == "pausing":
            step = run.last_step() if run else 0
            self._set_state("paused", f"Paused at step {step} of {run.steps if run else '?'}; Resume continues "
                                      "from there (also after the app is closed).")
        else:
            reason = cli_error(self._errors, "train") or \
                (self._errors[-1] if self._errors else f"it stopped with exit status {code}")
            self._fail(f"Training stopped: {reason}")
            if run is not None and not run.has_checkpoint:
                shutil.rmtree(run.folder, ignore_errors=True)  # nothing worth keeping: no half-made run
                self.run = None
                self._set_state("failed")  # its buttons without the run

    # export

    def ask_export(self) -> None:
        """Where, and as what: a Hugging Face folder, or one GGUF file in 16 or 8 bits (named .gguf)."""
        path, kind = QFileDialog.getSaveFileName(self, "Export the fine-tuned model", self.run.name if self.run else "",
                                                 ";;".join([EXPORT_FOLDER, *EXPORT_GGUF]))
        if not path:
            return
        gguf_type = EXPORT_GGUF.get(kind) or ("f16" if path.endswith(".gguf") else None)
        if gguf_type is not None and not path.endswith(".gguf"):
            path += ".gguf"
        self.export_to(Path(path), gguf=gguf_type is not None, gguf_type=gguf_type or "f16")

    def export_to(self, target: Path, gguf: bool = False, gguf_type: str = "f16") -> None:
        """`gpt2-desktop export` in a process of its own: a merged Hugging Face folder, or a GGUF file."""
        run = self.run
        if run is None or not run.finished or (self.exporter is not None
                                               and self.exporter.state() != QProcess.ProcessState.NotRunning):
            return
        model = ["--model", run.base, "--adapter", str(run.result)] if run.lora else ["--model", str(run.result)]
        where = ["--gguf", str(target), "--type", gguf_type] if gguf else ["--out", str(target)]
        self.exporter = QProcess(self)
        self.exporter.finished.connect(lambda code, _status: self._exported(target, code))
        say(self.status, f"Exporting {run.model_name} to {target}" + (f" ({gguf_type})…" if gguf else "…"))
        command = serve_command()
        self.exporter.start(command[0], command[1:] + ["export"] + model + where)

    def _exported(self, target: Path, code: int) -> None:
        if code == 0:
            say(self.status, f"Exported to {target}.")
        else:
            err = bytes(self.exporter.readAllStandardError()).decode("utf-8", errors="replace").strip().splitlines()
            reason = cli_error(err, "export") or (err[-1] if err else f"exit status {code}")
            say(self.status, f"The export failed: {reason}", error=True)
        self.exported.emit(str(target), code == 0)

    # a sample continuation before and after

    def _sample_prompt(self) -> str:
        for path in self.paths:
            files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
            for f in files:
                try:
                    text = " ".join(f.read_text(encoding="utf-8", errors="replace")[:400].split())
                except OSError:
                    continue
                if text:
                    return text[:120].rsplit(" ", 1)[0] if len(text) > 120 else text
        return "Once upon a time"

    def _sample(self, run: TrainingRun) -> None:
        """The same start of the person's text continued by the base, then by the result (same seed)."""
        prompt = self._sample_prompt()
        common = ["generate", "--prompt", prompt, "--max-new-tokens", "40", "--seed", "1", "--threads",
                  str(training_threads())]
        after = ["--model", run.base, "--adapter", str(run.result)] if run.lora else ["--model", str(run.result)]
        self._sample_queue = [("Before", common + ["--model", run.base]), ("After", common + after)]
        self._sample_lines = [f"Sample, from “{prompt}”:"]
        self.samples.setText(self._sample_lines[0] + " (writing…)")
        self._next_sample()

    def _next_sample(self) -> None:
        if not self._sample_queue:
            self.sampler = None
            return
        label, args = self._sample_queue.pop(0)
        self.sampler = process = QProcess(self)
        process.finished.connect(lambda code, _status: self._sampled(process, label, code))
        command = serve_command()
        self.sampler.start(command[0], command[1:] + args)

    def _sampled(self, process: QProcess, label: str, code: int) -> None:
        if process is not self.sampler:  # stopped by shutdown
            return
        out = bytes(self.sampler.readAllStandardOutput()).decode("utf-8", errors="replace").strip()
        if code != 0:
            err = bytes(self.sampler.readAllStandardError()).decode("utf-8", errors="replace").strip()
            out = "(could not write one: " + (err.splitlines()[-1] if err else f"exit status {code}") + ")"
        self._sample_lines.append(f"{label}: …{' '.join(out.split())}")
        self.samples.setText("\n".join(self._sample_lines))
        self._next_sample()

    def _read_log(self) -> None:
        """The log's new lines onto the curves. A resumed run first cuts its log back to its checkpoint (a new
        file): then the curves are drawn again from its start, so that no point is skipped or doubled."""
        if self.run is None:
            return
        log = self.run.folder / "log.jsonl"
        try:
            with log.open("rb") as f:
                now = os.fstat(f.fileno())
                if (now.st_ino, now.st_dev) != self._log_file or now.st_size < self._log_offset:
                    self._log_file, self._log_offset = (now.st_ino, now.st_dev), 0
                    self.chart.clear(self.run.steps)
                f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self._show(entry)

    def _show(self, entry: dict) -> None:
        step, steps = int(entry.get("step", 0)), self.run.steps
        self.chart.total_steps = max(steps, step)
        self.chart.add(step, float(entry.get("last_loss", math.nan)), float(entry.get("val_loss", math.nan)))
        self.tok_s = float(entry.get("tok_s", 0.0))
        self._step, self._loss = step, float(entry.get("last_loss", math.nan))
        self._elapsed = float(entry.get("elapsed_s", 0.0))
        self._show_progress_line(step, steps)

    def _show_progress_line(self, step: int, steps: int) -> None:
        done = step >= steps
        left = (steps - step) * self._elapsed / max(1, step)
        self.progress.setText(f"Step {step} of {steps} · loss {self._loss:.3f} · {self.tok_s:,.0f} tokens/s · "
                              + (f"took {_duration(self._elapsed)}" if done else f"about {_duration(left)} left"))

    # unfinished runs

    @property
    def resume_offer(self) -> str:
        """What the window says at start about a run paused when the app was closed ("" when there is none)."""
        if self.state != "paused" or self.run is None:
            return ""
        return (f"Fine-tuning “{self.run.model_name}” is paused at step {self.run.last_step()} of {self.run.steps}: "
                "Resume in the Fine-tune tab (Ctrl+6) continues it.")

    def _offer_unfinished(self, after: str = "") -> None:
        """Show a run left unfinished (the app was closed, or another run was started beside it) with its own
        settings in the form, ready to Resume."""
        runs = unfinished_runs()
        if runs and self.run is None:
            self.run = runs[-1]
            self._show_settings(self.run)
            self._log_offset, self._log_file = 0, None
            self.chart.clear(self.run.steps)
            self._read_log()
            more = f" ({plural(len(runs) - 1, 'other run')} paused too, in {runs_dir()}.)" if len(runs) > 1 else ""
            self._set_state("paused", f"{after + ' ' if after else ''}{self.run.model_name} was paused at step "
                                      f"{self.run.last_step()} of {self.run.steps}. Resume continues it; Cancel "
                                      f"deletes it.{more}")

    def _show_settings(self, run: TrainingRun) -> None:
        """The form shows what `run` was started with (not the defaults)."""
        args = list(run.args)

        def value(flag: str) -> str | None:
            return args[args.index(flag) + 1] if flag in args[:-1] else None

        self.add_base(run.base, run.base_shown)
        self.name.setText(run.name)
        self.mode.setCurrentIndex(self.mode.findData("lora" if run.lora else "full"))
        if run.lora and (rank := value("--lora")) is not None and rank.isdigit():
            self.rank.setValue(int(rank))
        self.steps.setValue(run.steps)
        self.paths, data = [], value("--data")
        self.files.clear()
        if data is not None:
            self.paths.append(Path(data))
            self.files.addItem(f"{data}{os.sep if Path(data).is_dir() else ''}")
        self._update_estimate()

    # showing

    def _fail(self, message: str) -> None:
        self._set_state("failed", message)

    def _refuse(self, message: str) -> None:
        """A Start that cannot be, because of the form: said, and a paused run stays as it was."""
        if self.run is not None and self.state in ("paused", "failed"):
            self._say_about_text(message)
        else:
            self._fail(message)
            self._said_about_text = True

    def _set_state(self, state: str, message: str | None = None) -> None:
        self.state = state
        busy = state in self.BUSY
        for field in (self.base, self.name, self.files, self.mode, self.steps, self.start_button, *self.text_buttons):
            field.setEnabled(not busy)
        self.rank.setEnabled(not busy and self.mode.currentData() == "lora")
        self.pause_button.setEnabled(state == "training")
        # a run that failed after its first checkpoint (a full disk, say) continues from it too
        stuck = state == "failed" and self.run is not None and self.run.has_checkpoint
        self.resume_button.setEnabled(state == "paused" or stuck)
        self.cancel_button.setEnabled(state in ("training", "paused") or stuck)
        self.use_button.setEnabled(state == "finished")
        self.export_button.setEnabled(state == "finished")
        if message is not None:
            say(self.status, message, error=state == "failed")
            self._said_about_text = False

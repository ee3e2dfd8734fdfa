"""The Server switch: serve the window's model to other programs through `gpt2-desktop serve`
(OpenAI's API), run as a process of its own so that neither can stall the other; shows the address to
copy, how many requests it answered (and how many of them were completions: what `/health` calls
"served") and who asked. Its port and whether other computers may connect are kept in
`<config dir>/server.json` (the API key is not written anywhere)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.finetune.runs import resolve as resolve_trained
from app.models.servers import parse_remote
from app.notice import in_window_terms
from engine.errors import StorageError
from engine.files import set_aside, write_atomic
from engine.paths import config_dir
from engine.store.local import embedded_name

DEFAULT_PORT = 8080
COMPLETIONS = ("/v1/completions", "/v1/chat/completions")  # the requests the engine writes for (/health's "served")


def cli_error(lines: list[str], command: str) -> str | None:
    """The last error a `gpt2-desktop COMMAND` process printed (`gpt2-desktop COMMAND: what is wrong`), without
    its prefix; None when it printed none."""
    prefix = f"gpt2-desktop {command}: "
    return next((line.strip()[len(prefix):] for line in reversed(lines) if line.strip().startswith(prefix)), None)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def server_file() -> Path:
    return config_dir() / "server.json"


def read_server_choices(path: Path) -> dict:
    """The port and "let other computers in" last chosen; defaults when there are none. A file that cannot be
    read is set aside (kept beside, never overwritten) and the defaults used."""
    defaults = {"port": DEFAULT_PORT, "others": False}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return defaults
    except (OSError, ValueError):
        data = None
    port, others = (data.get("port"), data.get("others")) if isinstance(data, dict) else (None, None)
    if type(port) is not int or not 0 <= port <= 65535 or type(others) is not bool:
        try:
            set_aside(path)
        except StorageError:
            pass
        return defaults
    return {"port": port, "others": others}


def serve_command() -> list[str]:
    """How to start `gpt2-desktop serve` from here: the frozen app is its own command line."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "app.main"]


class ServerPanel(QWidget):
    state_changed = Signal(str)  # "stopped", "starting", "running" or "failed"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model: str | None = None  # a model name or folder, as the command line takes it
        self.precision = "auto"
        self.served_model: str | None = None
        self.state = "stopped"
        self.url = ""
        self.answered = 0
        self.completions = 0  # of them, completions the engine wrote (/health's "served" counts these)
        self.clients: dict[str, list] = {}  # host -> [requests, last path, last time]
        self._errors: list[str] = []
        self._stopping = False
        self.process: QProcess | None = None

        self.switch = QPushButton("Start serving", checkable=True)
        self.switch.setAccessibleName("Serve the model to other programs")
        self.switch.toggled.connect(self._on_switch)
        self.port = QSpinBox(minimum=0, maximum=65535, value=DEFAULT_PORT)
        self.port.setSpecialValueText("any free port")
        self.port.setAccessibleName("Port")
        self.others = QCheckBox("Let other computers in (needs an API key)")
        self.key = QLineEdit(echoMode=QLineEdit.EchoMode.Password, placeholderText="API key (optional on this computer)")
        self.key.setAccessibleName("API key")
        self.status = QLabel("Not serving.", wordWrap=True)
        self.status.setAccessibleName("Server status")
        self.address = QLineEdit(readOnly=True, placeholderText="the address appears here once it runs")
        self.address.setAccessibleName("Server address")
        self.copy = QPushButton("Copy address", enabled=False)
        self.copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.url))
        self.counts = QLabel("", wordWrap=True)
        self.counts.setAccessibleName("Requests answered")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Client", "Requests", "Last request", "When"])
        header = self.table.horizontalHeader()  # each column as wide as what it shows; the last request gets the rest
        for column in (0, 1, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.table.verticalHeader().hide()
        self.table.setAccessibleName("Clients")

        form = QFormLayout()
        form.addRow("Port", self.port)
        form.addRow("", self.others)
        form.addRow("API key", self.key)
        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        row.addWidget(self.copy)
        layout = QVBoxLayout(self)
        intro = QLabel("Other programs (scripts, editors, evaluation tools, the openai package) can use this "
                       "model as they use OpenAI's API. The server loads its own copy of the model.", wordWrap=True)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.switch)
        layout.addWidget(self.status)
        layout.addLayout(row)
        layout.addWidget(self.counts)
        layout.addWidget(self.table, 1)
        self._chosen = read_server_choices(server_file())  # as last written: only a change is written
        self.port.setValue(self._chosen["port"])
        self.others.setChecked(self._chosen["others"])

    # what the window tells it

    def set_model(self, model: str | None, precision: str) -> None:
        """The window's model (None: the embedded one); a running server keeps its own until restarted."""
        self.model, self.precision = model, precision
        if self.state == "running" and model != self.served_model:
            self._say(f"Serving {self._name(self.served_model)} at {self.url}. The window now uses "
                      f"{self._name(model)}: stop and start again to serve it.")

    def shutdown(self) -> None:
        """Stop the server and wait for it (the window is closing); the port chosen is kept for next time."""
        self._remember()
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self._stopping = True
            self.process.terminate()
            if not self.process.waitForFinished(5000):
                self.process.kill()
                self.process.waitForFinished(2000)

    # the process

    def start(self) -> None:
        if parse_remote(self.model) is not None:
            self._fail("The window uses a model on another server; serving needs a model on this computer "
                       "(choose one in Models, then start again).")
            return
        host = "0.0.0.0" if self.others.isChecked() else "127.0.0.1"
        key = self.key.text().strip()
        if host != "127.0.0.1" and not key:
            self._fail("To let other computers in, set an API key first: anyone who can reach this computer "
                       "could use the model otherwise.")
            return
        self._remember()
        args = serve_command()[1:] + ["serve", "--port", str(self.port.value()), "--host", host, "--log-requests",
                                      "--dtype", self.precision]
        trained = resolve_trained(self.model)  # a Fine-tune view's result: its base with its adapter
        if trained is not None:
            base, adapter, folder = trained
            args += ["--model", str(folder or base)] + (["--adapter", str(adapter)] if adapter else [])
        elif self.model:
            args += ["--model", self.model]
        self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        if key:  # in the environment, not on the command line where other users' `ps` would show it
            env.insert("GPT2_DESKTOP_API_KEY", key)
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self._on_output)
        self.process.readyReadStandardError.connect(self._on_errors)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._errors, self._stopping = [], False
        self.served_model = self.model
        self.answered, self.completions, self.clients = 0, 0, {}
        self._show_clients()
        self._set_state("starting", f"Loading {self._name(self.model)} for the server…")
        self.process.start(serve_command()[0], args)

    def stop(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self._stopping = True
            self.process.terminate()  # SIGTERM: it finishes the answers under way and exits

    def _on_switch(self, on: bool) -> None:
        if on and self.state not in ("starting", "running"):
            self.start()
        elif not on:
            self.stop()

    def _on_output(self) -> None:
        while self.process is not None and self.process.canReadLine():
            line = bytes(self.process.readLine()).decode("utf-8", errors="replace").strip()
            if line.startswith("serving ") and " at " in line:
                self.url = line.split(" at ")[1].split()[0]
                self.address.setText(self.url)
                self.copy.setEnabled(True)
                self._set_state("running", f"Serving {self._name(self.served_model)} at {self.url}")
            elif line.startswith("{"):
                try:
                    request = json.loads(line)["request"]
                except (ValueError, KeyError, TypeError):
                    continue
                self._note(request)

    def _on_errors(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
        self._errors += [line for line in text.splitlines() if line.strip()]
        self._errors = self._errors[-20:]

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._fail(f"The server could not be started: {self.process.errorString()}")

    def _on_finished(self, code: int, status) -> None:
        self._on_errors()
        self.copy.setEnabled(False)
        self.address.clear()
        if self._stopping or code == 0:
            self._set_state("stopped", f"Not serving. It answered {plural(self.answered, 'request')}"
                                       + (f" ({plural(self.completions, 'completion')})." if self.answered else "."))
        else:
            reason = cli_error(self._errors, "serve") or \
                next((e for e in reversed(self._errors) if not e.startswith(" ")), "it stopped unexpectedly")
            self._fail(f"The server stopped: {in_window_terms(reason)}")

    def _remember(self) -> None:
        """Keep the port and whether other computers may connect for the next start (not the key); nothing is
        written while they are as they were."""
        chosen = {"port": self.port.value(), "others": self.others.isChecked()}
        if chosen == self._chosen:
            return
        try:
            write_atomic(server_file(), json.dumps(chosen), what="the server's port")
            self._chosen = chosen
        except StorageError as exc:
            self.counts.setText(str(exc))

    # what it shows

    def _note(self, request: dict) -> None:
        self.answered += 1
        if request.get("method") == "POST" and request.get("path") in COMPLETIONS and request.get("status") == 200:
            self.completions += 1
        host = str(request.get("client", "?")).rsplit(":", 1)[0]
        entry = self.clients.setdefault(host, [0, "", ""])
        entry[0] += 1
        entry[1] = f"{request.get('method', '')} {request.get('path', '')} → {request.get('status', '')}"
        entry[2] = time.strftime("%H:%M:%S")
        self._show_clients()

    def _show_clients(self) -> None:
        self.counts.setText(f"{plural(self.answered, 'request')} answered, from {plural(len(self.clients), 'client')} "
                            f"· {plural(self.completions, 'completion')} written (what /health counts as “served”; "
                            "the others were model lists, health checks or refused)" if self.answered else "")
        self.table.setRowCount(len(self.clients))
        for row, (host, (n, last, when)) in enumerate(sorted(self.clients.items())):
            for column, value in enumerate((host, str(n), last, when)):
                self.table.setItem(row, column, QTableWidgetItem(value))

    def _fail(self, message: str) -> None:
        self._set_state("failed", message)

    def _set_state(self, state: str, message: str) -> None:
        self.state = state
        self._say(message)
        self.switch.blockSignals(True)
        self.switch.setChecked(state in ("starting", "running"))
        self.switch.setText("Stop serving" if state in ("starting", "running") else "Start serving")
        self.switch.blockSignals(False)
        for field in (self.port, self.others, self.key):
            field.setEnabled(state not in ("starting", "running"))
        self.status.setStyleSheet("color: #b00020;" if state == "failed" else "")
        self.state_changed.emit(state)

    def _say(self, message: str) -> None:
        self.status.setText(message)

    @staticmethod
    def _name(model: str | None) -> str:
        """A model as the window names it: the embedded one by its one name (tales-7m), a folder by its own."""
        return os.path.basename(str(model).rstrip("/")) if model else embedded_name()

"""The Models view: what is on this computer, what the Hub offers, downloads with progress, and the models of
remote servers the person added."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QThread, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.finetune.runs import finished_runs, made_to_run, remove_run
from app.models.hub_worker import DownloadWorker
from app.models.server_dialog import ServerDialog
from app.models.servers import parse_remote, remote_name
from app.notice import in_window_terms, say
from engine.errors import EngineError
from engine.store import hub
from engine.store.local import folder_size, import_folder, local_models, parameter_count, prepared_copies, remove_model

SERVER = "server"  # the Where of a remote server's model
FINETUNED = "fine-tuned here"  # the Where of a Fine-tune view's result
COLUMNS = ("Model", "Where", "Parameters", "Download", "On disk", "About")
MODEL_COLUMN = 200  # the Model column's widest (a longer name wraps); About takes the rest
ABOUT_COLUMN = 180  # ... and keeps at least this much while the Model column can give way


def _parameters(n: int | None) -> str:
    if not n:
        return ""
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _size(n: int | None) -> str:
    if not n:
        return ""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _bytes_in(paths: list[Path]) -> int:
    return sum(folder_size(p) if p.is_dir() else p.stat().st_size for p in paths if p.exists())



class ModelsView(QWidget):
    use_requested = Signal(str)  # a model name or folder for the engine to load
    servers_changed = Signal(dict)  # the remote servers, as AppSettings.servers keeps them
    models_removed = Signal(list)  # the names of models removed, forgotten or of a forgotten server
    start_download = Signal(str)
    start_check = Signal()
    start_list_server = Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.active_name: str | None = None
        self.downloading: str | None = None
        self.servers: dict[str, dict] = {}  # address -> {"key", "models"}
        self.server_dialog: ServerDialog | None = None  # open while a server is being added
        self.thread = QThread(self)
        self.thread.setObjectName("downloads")
        self.worker = DownloadWorker()
        self.worker.moveToThread(self.thread)
        self.thread.finished.connect(self.worker.deleteLater)
        self.start_download.connect(self.worker.download)
        self.start_check.connect(self.worker.check_hub)
        self.start_list_server.connect(self.worker.list_server)
        self.worker.server_listed.connect(self._on_server_listed)
        self.worker.server_failed.connect(self._on_server_failed)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.hub_status.connect(self._on_hub_status)
        self.thread.start()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Interactive)  # fitted, up to MODEL_COLUMN: About keeps room
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.Stretch)
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.ElideRight)
        self.table.viewport().installEventFilter(self)  # its width known: fit the columns
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self.use_selected())

        self.use_button = QPushButton("Use")
        self.use_button.clicked.connect(self.use_selected)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(lambda: self.download(self._selected_name()))
        self.remove_button = QPushButton("Remove…")
        self.remove_button.clicked.connect(self.ask_remove)
        import_button = QPushButton("Import folder…")
        import_button.clicked.connect(self.ask_import)
        server_button = QPushButton("Add server…")
        server_button.setToolTip("Use the models of an OpenAI-compatible server: vLLM, llama.cpp's server, "
                                 "another gpt2-desktop")
        server_button.clicked.connect(self.ask_add_server)
        self.repo_edit = QLineEdit(placeholderText="Any GPT-2 model on the Hub, e.g. openai-community/gpt2")
        self.repo_edit.setAccessibleName("Hub repo id to download")
        self.table.setAccessibleName("Models")
        self.repo_edit.returnPressed.connect(lambda: self.download(self.repo_edit.text().strip()))
        get_button = QPushButton("Download")
        get_button.clicked.connect(lambda: self.download(self.repo_edit.text().strip()))
        actions = QHBoxLayout()
        for button in (self.use_button, self.download_button, self.remove_button, import_button, server_button):
            actions.addWidget(button)
        actions.addStretch(1)
        by_id = QHBoxLayout()
        by_id.addWidget(self.repo_edit, 1)
        by_id.addWidget(get_button)

        self.progress = QProgressBar()
        self.progress_label = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.progress_label)
        progress_row.addWidget(self.cancel_button)
        self.progress_host = QWidget()
        self.progress_host.setLayout(progress_row)
        self.progress_host.hide()
        self.message = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)
        layout.addLayout(by_id)
        layout.addWidget(self.progress_host)
        layout.addWidget(self.message)
        self.refresh()

    # listing

    def refresh(self) -> None:
        selected = self._selected_name()
        local = local_models()
        have = {m.name for m in local}
        catalog = {e.repo_id: e for e in hub.CATALOG}
        rows = []
        for m in local:
            entry = catalog.get(m.name)
            where = {"embedded": "built in", "downloaded": "downloaded", "converted": "converted",
                     "imported": "imported folder"}[m.kind]
            about = entry.description if entry else ("The app's own small model: it writes like an old fairy tale, "
                                                     "offline." if m.kind == "embedded" else str(m.folder))
            prepared = sum(p.stat().st_size for p in prepared_copies(m) if p.exists())
            on_disk = _size(m.size_bytes) + (f" + {_size(prepared)} prepared" if prepared else "")
            rows.append((m.name, where, entry.parameters if entry else _parameters(parameter_count(m.folder)),
                         _size(entry.download_bytes) if entry else "", on_disk, about))
        for run in finished_runs():
            about = (f"A LoRA adapter (rank {run.args[run.args.index('--lora') + 1]}) on {run.base_shown}"
                     if run.lora else f"{run.base_shown} with every weight fine-tuned")
            rows.append((run.model_name, FINETUNED, "", "", _size(folder_size(run.folder)),
                         f"{about}, trained here in Fine-tune; {run.folder}"))
        for url, entry in self.servers.items():
            for model in entry["models"]:
                rows.append((remote_name(model, url), SERVER, "", "", "", f"Served by {url}; runs there, not here."))
        for entry in hub.CATALOG:
            if entry.repo_id not in have:
                rows.append((entry.repo_id, "on the Hub", entry.parameters, "~" + _size(entry.download_bytes), "",
                             entry.description))
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, text)  # the name the engine loads it by
                if c == 0 and row[0] == self.active_name:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
            self.table.item(r, 0).setToolTip(row[0])
            self.table.item(r, len(COLUMNS) - 1).setToolTip(row[-1])
            if row[0] == selected:
                self.table.selectRow(r)
        self._fit_columns()
        self._update_buttons()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Resize:
            self._fit_columns()
        return super().eventFilter(watched, event)

    def _fit_columns(self) -> None:
        """The Model column as wide as its names, but About keeps at least ABOUT_COLUMN (long names wrap)."""
        self.table.resizeColumnToContents(0)
        others = sum(self.table.columnWidth(c) for c in range(1, len(COLUMNS) - 1))
        room = self.table.viewport().width() - others - ABOUT_COLUMN
        self.table.setColumnWidth(0, max(90, min(self.table.columnWidth(0), MODEL_COLUMN, room)))
        self.table.resizeRowsToContents()  # About wraps: all of it shows

    def row_of(self, name: str) -> int | None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.UserRole) == name:
                return r
        return None

    def _selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.table.item(rows[0].row(), 0).data(Qt.UserRole) if rows else None

    def _selected_where(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 1).text() if rows else None

    def _update_buttons(self) -> None:
        where = self._selected_where()
        self.use_button.setEnabled(where is not None and where != "on the Hub")
        self.download_button.setEnabled(where == "on the Hub" and self.downloading is None)
        self.remove_button.setEnabled(where not in (None, "on the Hub", "built in"))

    def set_active(self, name: str | None) -> None:
        self.active_name = name
        self.refresh()

    # actions

    def use_selected(self) -> None:
        name, where = self._selected_name(), self._selected_where()
        if name and where != "on the Hub":
            self.use_requested.emit("" if where == "built in" else name)

    def download(self, repo_id: str | None) -> None:
        if not repo_id or self.downloading is not None:
            return
        repo_id = hub.resolve_repo_id(repo_id)  # "gpt2" is openai-community/gpt2
        if repo_id.count("/") != 1:
            say(self.message, f"“{repo_id}” is not a Hub repo id; they look like owner/name.", error=True)
            return
        self.downloading = repo_id
        self.progress.setRange(0, 0)
        self.progress_label.setText(f"Starting {repo_id}…")
        self.progress_host.show()
        say(self.message, "")
        self._update_buttons()
        self.start_download.emit(repo_id)

    def cancel(self) -> None:
        self.worker.cancel_event.set()

    def _on_progress(self, filename: str, done: int, total: int, rate: float) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * done / total) if total else 0)
        eta = (total - done) / rate if rate > 0 else None
        eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s left" if eta is not None else ""
        self.progress_label.setText(f"{self.downloading}: {_size(done) or '0 MB'} / {_size(total)} · "
                                    f"{rate / 1e6:.1f} MB/s · {eta_text}")

    def _download_ended(self) -> None:
        self.downloading = None
        self.progress_host.hide()
        self.refresh()

    def _on_finished(self, repo_id: str, _folder: str) -> None:
        self._download_ended()
        say(self.message, f"{repo_id} is ready. Select it and press Use.")
        row = self.row_of(repo_id)
        if row is not None:
            self.table.selectRow(row)

    def _on_failed(self, repo_id: str, message: str, offline: bool) -> None:
        self._download_ended()
        say(self.message, message, error=True)

    def check_hub(self) -> None:
        self.start_check.emit()

    def _on_hub_status(self, reachable: bool) -> None:
        if not reachable:
            say(self.message, f"The Hugging Face Hub ({hub.endpoint()}) cannot be reached — you seem to be "
                              "offline. Models on this computer keep working; downloads wait until you are online.")

    def ask_remove(self) -> None:
        name = self._selected_name()
        if not name:
            return
        run = next((r for r in finished_runs() if r.model_name == name), None)
        if run is not None:
            made = _bytes_in(made_to_run(run))
            copies = f", and the copies made to run it ({_size(made)}), are" if made else " is"
            if QMessageBox.question(self, "Remove model", f"Delete {name}? Its training run ({run.folder}, "
                                    f"{_size(folder_size(run.folder))}){copies} deleted.") == QMessageBox.Yes:
                self.remove_run(name)
            return
        remote = parse_remote(name)
        if remote is not None:
            if QMessageBox.question(self, "Forget server", f"Forget the server {remote[1]} and its models here? "
                                    "Nothing changes on the server.") == QMessageBox.Yes:
                self.forget_server(remote[1])
            return
        model = next((m for m in local_models() if m.name == name), None)
        if model is None:
            return
        prepared = sum(p.stat().st_size for p in prepared_copies(model) if p.exists())
        copies = f" and its prepared reduced-precision copies ({_size(prepared)})" if prepared else ""
        if model.kind == "imported":
            title, question = "Forget folder", (f"Forget {name}? Its folder stays where it is ({model.folder}); "
                                                 f"it is only taken off this list{copies and ', and' + copies + ' are deleted'}.")
        else:
            title, question = "Remove model", (f"Delete {name} from this computer? Its files ({_size(model.size_bytes)})"
                                                f"{copies} are deleted; you can download it again.")
        if QMessageBox.question(self, title, question) == QMessageBox.Yes:
            self.remove(name)

    def remove(self, name: str) -> None:
        try:
            model = remove_model(name)
        except EngineError as exc:
            say(self.message, str(exc), error=True)
            return
        say(self.message, f"Forgot {model.name}; its folder is untouched." if model.kind == "imported"
            else f"Deleted {model.name}.")
        self.refresh()
        self.models_removed.emit([model.name])

    def remove_run(self, name: str) -> None:
        """Delete a model fine-tuned here: its run and the copies made to run it."""
        run = next((r for r in finished_runs() if r.model_name == name), None)
        if run is None:
            return
        remove_run(run)
        say(self.message, f"Deleted {name}.")
        self.refresh()
        self.models_removed.emit([name])

    def remember_folder(self, folder: str) -> str | None:
        """A folder opened with File > Open model folder… is listed here from then on (Forget takes it off);
        the name it is listed by, or None if the list could not be written."""
        try:
            model = import_folder(Path(folder))
        except EngineError as exc:
            say(self.message, f"{folder} could not be added to this list: {exc}", error=True)
            return None
        self.refresh()
        return model.name

    # remote servers

    def set_servers(self, servers: dict) -> None:
        self.servers = {url: dict(entry) for url, entry in servers.items()}
        self.refresh()

    def ask_add_server(self) -> ServerDialog:
        """The Add server dialog (not waited for: it stays open until the server lists its models, or Cancel)."""
        if self.server_dialog is None:
            self.server_dialog = ServerDialog(self)
            self.server_dialog.check_requested.connect(self.add_server)
        self.server_dialog.open()
        self.server_dialog.url.setFocus()
        return self.server_dialog

    def _adding_in_dialog(self) -> bool:
        return self.server_dialog is not None and self.server_dialog.isVisible()

    def add_server(self, url: str, key: str = "") -> None:
        """Ask the server for its models (off this thread); they are listed once it answers."""
        if not self._adding_in_dialog():
            say(self.message, f"Asking {url} for its models…")
        self.start_list_server.emit(url, key)

    def _on_server_failed(self, _url: str, message: str) -> None:
        if self._adding_in_dialog():
            self.server_dialog.failed(message)
        else:
            say(self.message, in_window_terms(message), error=True)

    def _on_server_listed(self, url: str, key: str, models: list) -> None:
        if self._adding_in_dialog():
            self.server_dialog.added()
        self.servers[url] = {"key": key, "models": list(models)}
        self.refresh()
        self.servers_changed.emit({u: dict(e) for u, e in self.servers.items()})
        say(self.message, f"{url} serves {', '.join(models)}. Select one and press Use.")
        row = self.row_of(remote_name(models[0], url))
        if row is not None:
            self.table.selectRow(row)

    def forget_server(self, url: str) -> None:
        entry = self.servers.pop(url, None)
        self.refresh()
        self.servers_changed.emit({u: dict(e) for u, e in self.servers.items()})
        say(self.message, f"Forgot {url}.")
        if entry is not None:
            self.models_removed.emit([remote_name(model, url) for model in entry["models"]])

    def ask_import(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a GPT-2 model folder")
        if folder:
            self.import_folder(folder)

    def import_folder(self, folder: str) -> None:
        try:
            model = import_folder(Path(folder))
        except EngineError as exc:
            say(self.message, f"{folder} cannot be used: {exc}", error=True)
            return
        say(self.message, f"Imported {model.name}.")
        self.refresh()

    def shutdown(self) -> None:
        self.cancel()
        self.thread.quit()
        self.thread.wait(5000)

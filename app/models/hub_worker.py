"""What the Models view asks off the GUI thread: a download from the Hub (with progress, cancellable), whether
the Hub can be reached, and a remote server's list of models."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal, Slot

from engine.errors import EngineError, HubOffline
from engine.store import hub


class DownloadWorker(QObject):
    """Runs downloads and the reachability check off the GUI thread."""

    progress = Signal(str, int, int, float)  # file, done bytes, total bytes, bytes per second
    finished = Signal(str, str)  # repo id, folder
    failed = Signal(str, str, bool)  # repo id, message, hub unreachable
    hub_status = Signal(bool)
    server_listed = Signal(str, str, list)  # the server's API address, its key, its models' ids
    server_failed = Signal(str, str)  # the address as given, message

    def __init__(self):
        super().__init__()
        self.cancel_event = threading.Event()

    @Slot(str)
    def download(self, repo_id: str) -> None:
        self.cancel_event.clear()
        try:
            folder = hub.download_model(
                repo_id,
                progress=lambda p: self.progress.emit(p.filename, p.done_bytes, p.total_bytes, p.bytes_per_second),
                cancel=self.cancel_event,
            )
        except EngineError as exc:
            self.failed.emit(repo_id, str(exc), isinstance(exc, HubOffline))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the user; the app stays usable
            self.failed.emit(repo_id, f"Unexpected error: {exc}", False)
            return
        self.finished.emit(repo_id, str(folder))

    @Slot(str, str)
    def list_server(self, url: str, key: str) -> None:
        from engine.inference.remote import RemoteEngine

        try:
            address, models = RemoteEngine.list_models(url, key or None)
        except EngineError as exc:
            self.server_failed.emit(url, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the user; the app stays usable
            self.server_failed.emit(url, f"Unexpected error: {exc}")
            return
        self.server_listed.emit(address, key, models)

    @Slot()
    def check_hub(self) -> None:
        self.hub_status.emit(hub.hub_reachable())

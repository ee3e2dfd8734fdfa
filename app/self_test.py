"""`gpt2-desktop --self-test`: open the window on the embedded model, write one short reply, close.

Used to check an installed or frozen build without a person: it exits 0 only when the window was
shown, the embedded model loaded and a reply streamed to its end. It never touches the user's
history or settings (an in-memory history and a throwaway settings file).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

PROMPT = "Once upon a time"
TIMEOUT_S = 180.0


def seconds_since_launch(fallback_start: float) -> float:
    """Seconds since this process started (from /proc on Linux), else since `fallback_start` (perf_counter)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - fallback_start


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    from PySide6.QtCore import QCoreApplication, QEventLoop

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)
    return True


def _exercise(window, problems: list[str], done: list, started: float) -> str | None:
    """Show the window, wait for the model, write one reply; returns what went wrong, or None."""
    window.show()
    if not _wait(lambda: window.isVisible() and window.windowHandle() is not None
                 and window.windowHandle().isExposed(), 30):
        return "the window was not shown"
    print(f"self-test: window shown {seconds_since_launch(started):.2f} s after launch", flush=True)
    if not _wait(lambda: window.model_info is not None or problems, TIMEOUT_S) or problems:
        return problems[0] if problems else "the model did not load"
    print(f"self-test: model {window.model_info.name} on {window.model_info.device} "
          f"loaded {seconds_since_launch(started):.2f} s after launch", flush=True)
    began = time.perf_counter()
    window.chat.composer.setPlainText(PROMPT)
    window.conversations.send()
    if not _wait(lambda: window.active is None or problems, TIMEOUT_S) or problems or not done:
        return problems[0] if problems else "no reply was finished"
    print(f"self-test: reply to {PROMPT!r} in {time.perf_counter() - began:.2f} s ({done[-1].stop_reason}): "
          f"{done[-1].text!r}", flush=True)
    return None


def run_self_test(argv: list[str], started: float) -> int:
    """Returns 0 when the window opened and the embedded model wrote a reply; prints one line per step."""
    from PySide6.QtWidgets import QApplication

    from app.history.store import History
    from app.identity import set_app_identity
    from app.settings import AppSettings
    from app.shell.window import MainWindow
    from app.version import version

    if version() == "unknown":  # the About box and --version read the same metadata
        print("gpt2-desktop --self-test: no package metadata, so no version to show", file=sys.stderr)
        return 1
    print(f"self-test: gpt2-desktop {version()}", flush=True)
    from engine.core import native

    where = "the compiled step" if native.available() else "PyTorch only (the compiled step is not available)"
    print(f"self-test: CPU decoding in {where}", flush=True)
    app = QApplication.instance() or QApplication(argv)
    set_app_identity(app)
    problems: list[str] = []
    done: list = []  # the engine's Done for the reply
    with tempfile.TemporaryDirectory(prefix="gpt2-desktop-self-test-") as tmp:
        history = History(":memory:")
        settings = AppSettings(model=None, temperature=0.0, max_new_tokens=8, seed=0)
        window = MainWindow(history, settings, Path(tmp) / "settings.json")
        window.requests.load_failed.connect(lambda message: problems.append(f"model: {message}"))
        window.requests.failed.connect(lambda _request, message: problems.append(f"generation: {message}"))
        window.requests.finished.connect(lambda _request, result: done.append(result))
        try:
            problem = _exercise(window, problems, done, started)
        finally:
            window.close()
            history.close()
    if problem:
        print(f"gpt2-desktop --self-test: {problem}", file=sys.stderr)
        return 1
    print("self-test: ok", flush=True)
    return 0

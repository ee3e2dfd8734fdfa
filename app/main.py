"""`gpt2-desktop`: with a subcommand, the command line; with none, the window."""

from __future__ import annotations

import sys
import time

_STARTED = time.perf_counter()


def window_icon():
    """The app's icon at every size shipped in assets/icons/ (found with importlib.resources)."""
    from importlib import resources

    from PySide6.QtGui import QIcon

    icon = QIcon()
    folder = resources.files("assets") / "icons"
    for png in sorted(p.name for p in folder.iterdir() if p.name.endswith(".png")):
        icon.addFile(str(folder / png))
    return icon


def set_app_identity(app) -> None:
    """Name, display name and icon of the QApplication, the same for the window and the self-test."""
    app.setApplicationName("gpt2-desktop")
    app.setApplicationDisplayName("gpt2-desktop")
    app.setDesktopFileName("gpt2-desktop")  # Wayland/X11 match the window to the installed .desktop entry
    app.setWindowIcon(window_icon())


def run_app(argv: list[str]) -> int:
    from PySide6.QtWidgets import QApplication

    from app.history import History, HistoryError
    from app.settings import AppSettings
    from engine.paths import config_dir, data_dir
    from app.window import MainWindow

    app = QApplication.instance() or QApplication(argv)
    set_app_identity(app)
    problem = None
    try:
        history = History(data_dir() / "history.sqlite3")
    except HistoryError as exc:
        problem = str(exc)
        history = History(":memory:")
    settings_path = config_dir() / "settings.json"
    window = MainWindow(history, AppSettings.load(settings_path), settings_path, history_problem=problem)
    window.show()
    code = app.exec()
    history.close()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("--version", "-V"):
        from app.version import version

        print(f"gpt2-desktop {version()}")
        return 0
    if argv and argv[0] == "--self-test":
        from app.self_test import run_self_test

        return run_self_test(sys.argv[:1], _STARTED)
    if argv:
        from engine.tooling.cli import main as cli_main

        return cli_main(argv)
    return run_app(sys.argv[:1])


if __name__ == "__main__":
    sys.exit(main())

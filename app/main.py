"""`gpt2-desktop`: with a subcommand, the command line; with none, the window."""

from __future__ import annotations

import sys
import time

_STARTED = time.perf_counter()


def run_app(argv: list[str]) -> int:
    from PySide6.QtWidgets import QApplication

    from app.history.store import open_history
    from app.identity import set_app_identity
    from app.settings import AppSettings
    from app.shell.appearance import follow_color_scheme
    from engine.paths import config_dir, data_dir
    from app.shell.window import MainWindow

    app = QApplication.instance() or QApplication(argv)
    set_app_identity(app)
    follow_color_scheme(app)
    history, history_problem = open_history(data_dir() / "history.sqlite3")  # (one in memory if unusable)
    opened = AppSettings.open(config_dir() / "settings.json")  # (an unusable file set aside)
    window = MainWindow(history, opened.settings, opened.path, history_problem=history_problem,
                        settings_problem=opened.problem)
    window.show()
    code = app.exec()
    history.close()
    return code


def run_history(argv: list[str]) -> int:
    """`gpt2-desktop history ...` (app.history.transfer), its errors in the form of the other commands' (exit 2, one
    line: `gpt2-desktop history: what is wrong`)."""
    import contextlib
    import io

    from app.history.transfer import main as history_main
    from engine.tooling.cli import error_line

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        code = history_main(argv)
    lines = said.getvalue().splitlines()
    if code == 2:
        lines = [error_line("history", line) for line in lines]
    for line in lines:
        print(line, file=sys.stderr)
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
    if argv and argv[0] == "history":  # the window's conversations: app's own, without Qt or torch
        return run_history(argv[1:])
    if argv:
        from engine.tooling.cli import main as cli_main

        return cli_main(argv)
    return run_app(sys.argv[:1])


if __name__ == "__main__":
    sys.exit(main())

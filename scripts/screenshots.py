"""Take the README's screenshots of the real window: chat mid-stream, notebook, settings.

Run under a display (e.g. `xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots.py`);
user data goes to a temporary folder, the PNGs to docs/ (or to the folder given with --out).

    screenshots.py [MODEL] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

DOCS = Path(__file__).resolve().parents[1] / "docs"


def wait(app: QApplication, condition, timeout_s: float = 120) -> None:
    loop_timer = QTimer()
    loop = QEventLoop()
    loop_timer.timeout.connect(lambda: loop.quit() if condition() else None)
    loop_timer.start(20)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    loop_timer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="Take the README's screenshots of the real window.")
    parser.add_argument("model", nargs="?", help="a model folder or name (default: the embedded model)")
    parser.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go (default: docs/)")
    args = parser.parse_args()
    out = args.out
    tmp = Path(tempfile.mkdtemp())
    os.environ["GPT2_DESKTOP_DATA_DIR"] = str(tmp / "data")
    os.environ["GPT2_DESKTOP_CONFIG_DIR"] = str(tmp / "config")
    from app.history.store import History
    from app.settings import AppSettings
    from app.shell.window import MainWindow

    app = QApplication(sys.argv[:1])
    app.setApplicationName("gpt2-desktop")
    history = History(tmp / "data" / "history.sqlite3")
    settings = AppSettings(model=args.model, max_new_tokens=160, seed=7, temperature=0.8)
    window = MainWindow(history, settings, tmp / "config" / "settings.json")
    window.resize(1100, 720)
    window.show()
    wait(app, lambda: window.model_info is not None)
    older = history.create_conversation("A story about a fox", "chat")
    history.add_message(older, "user", "Tell me a story about a fox.")
    history.add_message(older, "assistant", "Once there was a fox who lived at the edge of a wood.")
    window.conversations.refresh()

    window.chat.composer.setPlainText("Once upon a time, in a little house by the sea, there lived")
    window.conversations.send()
    wait(app, lambda: window.active is not None and len(window.active.text) > 180)
    out.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out / "chat-streaming.png"))
    wait(app, lambda: window.active is None)

    window.conversations.new_notebook()
    window.notebook.editor.setPlainText("Chapter One\n\nThe rabbit looked out of the window and saw that the snow had")
    window.conversations.continue_notebook()
    wait(app, lambda: window.active is None)
    window.settings_dock.show()
    app.processEvents()
    window.grab().save(str(out / "notebook-settings.png"))
    window.close()
    history.close()
    print(f"wrote {out / 'chat-streaming.png'} and {out / 'notebook-settings.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

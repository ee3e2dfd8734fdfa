"""Take the README's screenshots of the real window: chat mid-stream, notebook, settings.

Run under a display (e.g. `xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots.py`);
user data goes to a temporary folder, the PNGs to docs/.
"""

from __future__ import annotations

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
    tmp = Path(tempfile.mkdtemp())
    os.environ["GPT2_DESKTOP_DATA_DIR"] = str(tmp / "data")
    os.environ["GPT2_DESKTOP_CONFIG_DIR"] = str(tmp / "config")
    from app.history import History
    from app.settings import AppSettings
    from app.window import MainWindow

    app = QApplication(sys.argv[:1])
    app.setApplicationName("gpt2-desktop")
    history = History(tmp / "data" / "history.sqlite3")
    model = sys.argv[1] if len(sys.argv) > 1 else None
    settings = AppSettings(model=model, max_new_tokens=160, seed=7, temperature=0.8)
    window = MainWindow(history, settings, tmp / "config" / "settings.json")
    window.resize(1100, 720)
    window.show()
    wait(app, lambda: window.model_info is not None)
    older = history.create_conversation("A story about a fox", "chat")
    history.add_message(older, "user", "Tell me a story about a fox.")
    history.add_message(older, "assistant", "Once there was a fox who lived at the edge of a wood.")
    window.refresh_conversations()

    window.composer.setPlainText("Once upon a time, in a little house by the sea, there lived")
    window.send()
    wait(app, lambda: window.active is not None and len(window.active.text) > 180)
    DOCS.mkdir(exist_ok=True)
    window.grab().save(str(DOCS / "chat-streaming.png"))
    wait(app, lambda: window.active is None)

    window.new_notebook()
    window.notebook.setPlainText("Chapter One\n\nThe rabbit looked out of the window and saw that the snow had")
    window.continue_notebook()
    wait(app, lambda: window.active is None)
    window.settings_dock.show()
    app.processEvents()
    window.grab().save(str(DOCS / "notebook-settings.png"))
    window.close()
    history.close()
    print(f"wrote {DOCS / 'chat-streaming.png'} and {DOCS / 'notebook-settings.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

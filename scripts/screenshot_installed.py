"""Screenshot of the installed (frozen) app running on a display: docs/installed-app.png.

    xvfb-run -a -s "-screen 0 1100x720x24" .venv/bin/python scripts/screenshot_installed.py /usr/bin/gpt2-desktop

Starts the given executable with a temporary HOME holding one conversation whose reply the same
executable wrote (`generate`), waits until it has drawn, and grabs the whole screen with Qt.
The app runs as a separate process: what is shown is the installed bundle, not this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtGui import QGuiApplication

from app.history.store import History  # the same schema the installed app reads
from engine.inference.chat import Turn, format_chat

DOCS = Path(__file__).resolve().parents[1] / "docs"
PROMPT = "Tell me a story about a fox who lived by the sea."
SETTLE_S = 15.0  # the window is up and the model loaded well within this on 2 busy cores


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: screenshot_installed.py EXECUTABLE", file=sys.stderr)
        return 2
    executable = sys.argv[1]
    home = Path(tempfile.mkdtemp(prefix="gpt2-desktop-shot-"))
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("GPT2_DESKTOP_DATA_DIR", None)
    env.pop("GPT2_DESKTOP_CONFIG_DIR", None)
    chat = format_chat([Turn("user", PROMPT)], "transcript")  # the prompt the window itself would send
    out = subprocess.run([executable, "generate", "--prompt", chat.text, "--max-new-tokens", "80", "--seed", "3",
                          "--stop", *chat.stop, "--json"], env=env, capture_output=True, text=True, check=True)
    reply = json.loads(out.stdout.strip().splitlines()[-1])["text"].strip()

    history = History(home / ".local/share/gpt2-desktop/history.sqlite3")
    conversation = history.create_conversation("A story about a fox", "chat")
    history.add_message(conversation, "user", PROMPT)
    history.add_message(conversation, "assistant", reply, model="tales-7m")
    history.close()

    app = subprocess.Popen([executable], env=env)
    try:
        time.sleep(SETTLE_S)
        if app.poll() is not None:
            print(f"error: {executable} exited with status {app.returncode}", file=sys.stderr)
            return 1
        qt = QGuiApplication(sys.argv[:1])  # noqa: F841 - grabbing needs a Qt application on the display
        DOCS.mkdir(exist_ok=True)
        target = DOCS / "installed-app.png"
        QGuiApplication.primaryScreen().grabWindow(0).save(str(target))
        print(f"wrote {target} ({target.stat().st_size // 1024} KiB); the app ran with HOME={home}")
    finally:
        app.terminate()
        app.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

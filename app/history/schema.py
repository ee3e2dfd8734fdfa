"""The history file's schema and its versions, and a file opened: `SCHEMA` (today's tables, version
`SCHEMA_VERSION`) and `MIGRATIONS` (the steps from each older version), and `open_file`, which checks a file,
upgrades it and connects to it, or refuses it untouched.

A file written by an earlier version is upgraded in place, never lost: a backup copy is written beside
it first (`history.sqlite3.backup-v1`), then every step from its version to today's runs in one
transaction (see MIGRATIONS). A file that cannot be used is left untouched and opening it raises a
HistoryError that says why: one from a newer version, one that is not a history, and a damaged one —
a page SQLite cannot read (`PRAGMA quick_check`), a version no gpt2-desktop wrote, a column missing from
its version's tables, a row with a value of the wrong kind (a message's settings that are not a JSON
object, a NULL title): every row is read once, as it will be. Text that is not UTF-8 reads with U+FFFD.
An unfinished change left by a crash (a hot `-journal` beside the file) is undone first, as SQLite means
it to be; no read-only look can do that.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from app.history.errors import HistoryError, disk_words, primary, said
from app.history.records import BadValue, check_rows
from engine.files import disk_problem

SCHEMA_VERSION = 6
SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT 'chat' CHECK (mode IN ('chat', 'notebook')),
    document TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    draft TEXT NOT NULL DEFAULT '',  -- the unsent message in its message box (version 2)
    leaf_id INTEGER,  -- the last message of the version shown; the thread is its line of parents (version 3)
    model TEXT,  -- the model this conversation is written with (NULL: the one loaded) (version 4)
    preset TEXT,  -- its sampling preset, a name in app.chat.presets (NULL: the settings panel's values) (version 4)
    preamble TEXT NOT NULL DEFAULT '',  -- text before the conversation: a system prompt (version 4)
    edit_id INTEGER,  -- the user message being edited in its message box, not yet resent (version 6)
    edit_text TEXT NOT NULL DEFAULT ''  -- ... and the edit's text so far (version 6)
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a regenerated reply gets a new id
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    model TEXT,
    settings TEXT,
    stop_reason TEXT,
    parent_id INTEGER REFERENCES messages(id),  -- the message before it; its siblings are its versions (version 3)
    tokens BLOB  -- a reply's tokens, their probabilities, ranks and alternatives (app.probe.token_data; version 5)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
CREATE INDEX messages_by_parent ON messages (parent_id);
"""

# The statements that take a file from version N to N + 1 (0.1.0 wrote version 1).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE conversations ADD COLUMN draft TEXT NOT NULL DEFAULT ''",),
    2: (  # versions: each message points at the one before it; a conversation at the last one shown
        "ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id)",
        "UPDATE messages SET parent_id = (SELECT MAX(p.id) FROM messages p "
        "WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id)",
        "ALTER TABLE conversations ADD COLUMN leaf_id INTEGER",
        "UPDATE conversations SET leaf_id = (SELECT MAX(id) FROM messages WHERE conversation_id = conversations.id)",
        "CREATE INDEX messages_by_parent ON messages (parent_id)",
    ),
    3: (  # each conversation keeps its model, sampling preset and preamble
        "ALTER TABLE conversations ADD COLUMN model TEXT",
        "ALTER TABLE conversations ADD COLUMN preset TEXT",
        "ALTER TABLE conversations ADD COLUMN preamble TEXT NOT NULL DEFAULT ''",
    ),
    4: ("ALTER TABLE messages ADD COLUMN tokens BLOB",),  # what the model predicted at each token of a reply
    5: (  # an edit in progress is kept like a draft
        "ALTER TABLE conversations ADD COLUMN edit_id INTEGER",
        "ALTER TABLE conversations ADD COLUMN edit_text TEXT NOT NULL DEFAULT ''",
    ),
}


def _columns_at(version: int) -> dict[str, set[str]]:
    """The columns each table has in a file of `version`: today's SCHEMA less what the later MIGRATIONS add."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        columns = {table: {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                   for table in ("conversations", "messages")}
    finally:
        db.close()
    for step in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[step]:
            added = re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", statement)
            if added:
                columns[added[1]].discard(added[2])
    return columns


def _text(raw: bytes) -> str:
    """A TEXT value as read: bytes that are not UTF-8 (a damaged sector) read as U+FFFD, not as an error."""
    return raw.decode("utf-8", "replace")


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(target, uri=uri, check_same_thread=False)
    db.text_factory = _text
    return db


def in_memory() -> sqlite3.Connection:
    """A new, empty history of today's version, in memory."""
    db = _connect(":memory:")
    db.execute("PRAGMA foreign_keys = ON")
    db.executescript(SCHEMA)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return db


def open_file(path: Path) -> tuple[sqlite3.Connection, Path | None]:
    """A connection to the history file at `path` (made if there is none, upgraded if it is older) and the backup
    copy this open wrote before upgrading it (None: no upgrade). Raises HistoryError, touching nothing, if it
    cannot be used."""
    existed = path.exists() and path.stat().st_size > 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError(f"{path} cannot be made: {disk_problem(path.parent, exc)}.") from None
    backup = None
    try:
        version = _check_existing(path) if existed else None
        if version is not None and version < SCHEMA_VERSION:
            try:
                backup = _write_backup(path, version)
            except (OSError, sqlite3.DatabaseError) as exc:
                why = (disk_problem(path.parent, exc) if isinstance(exc, OSError) else
                       disk_words(path, exc) or str(exc))
                raise HistoryError(f"{path} needs upgrading, but no backup copy could be written beside it "
                                   f"({why}). It was left untouched.") from None
        db = _connect(str(path))
        db.execute("PRAGMA foreign_keys = ON")
        if version is None:
            with db:
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version < SCHEMA_VERSION:
            _migrate(db, version)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path} could not be opened ({disk_words(path, exc) or said(exc)}).") from None
    return db, backup


def _write_backup(path: Path, version: int) -> Path:
    """A consistent copy of the file as it is, beside it (kept if an earlier attempt already wrote one)."""
    backup = path.with_name(f"{path.name}.backup-v{version}")
    if backup.exists():
        return backup
    tmp = backup.with_name(backup.name + ".tmp")
    source, copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True), None
    try:
        copy = sqlite3.connect(str(tmp))
        source.backup(copy)
        copy.close()
        os.replace(tmp, backup)
    except BaseException:
        if copy is not None:
            copy.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return backup


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Every step from `version` to SCHEMA_VERSION, in one transaction: all of them or none."""
    db.isolation_level = None  # explicit BEGIN/COMMIT: ALTER TABLE is then inside the transaction
    try:
        db.execute("BEGIN IMMEDIATE")
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except sqlite3.DatabaseError:
        db.execute("ROLLBACK")
        raise
    finally:
        db.isolation_level = ""


def _check_existing(path: Path) -> int:
    """The file's schema version, if this version can read it (else HistoryError, the file untouched)."""
    try:
        try:
            return _read_version(path)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_READONLY_ROLLBACK:
                raise
        try:
            _finish_interrupted(path)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path} has a change left unfinished by a crash ({path.name}-journal beside "
                               f"it), which cannot be undone now ({disk_words(path, exc) or said(exc)}). "
                               "It was left untouched.") from None
        return _read_version(path)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # (the latter: SQLite's message, damaged too)
        raise HistoryError(f"{path} is not a readable history file ({said(exc)}). "
                           "It was left untouched.") from None


def _finish_interrupted(path: Path) -> None:
    """A change cut off by a crash left its journal beside the file (a hot journal): SQLite undoes the
    change when a connection that may write first reads the file, which a read-only probe cannot do. Then
    the file is as its last finished change left it."""
    db = sqlite3.connect(str(path))
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        db.close()


def _read_version(path: Path) -> int:
    """The version of a file, read without writing anything; HistoryError if it is not one to open."""
    probe = _connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = probe.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{path} was written by a newer gpt2-desktop (history version {version}; this one reads "
                f"{SCHEMA_VERSION}). It was left untouched; update gpt2-desktop to see it.")
        if not {"conversations", "messages"} <= tables:
            raise HistoryError(f"{path} is not a gpt2-desktop history file. It was left untouched.")
        columns = {table: {r[1] for r in probe.execute(f"PRAGMA table_info({table})")}
                   for table in ("conversations", "messages")}
        if version == 0:  # tables made, version not yet written
            conversations, messages = columns["conversations"], columns["messages"]
            version = (6 if "edit_id" in conversations else 5 if "tokens" in messages
                       else 4 if "preamble" in conversations else 3 if "leaf_id" in conversations
                       else 2 if "draft" in conversations else 1)
        if version < 0:
            raise HistoryError(f"{path} is damaged: its history version is {version}, which no gpt2-desktop "
                               "writes. It was left untouched.")
        for table, wanted in _columns_at(version).items():
            missing = sorted(wanted - columns[table])
            if missing:
                raise HistoryError(f"{path} is damaged: its table {table} has no column {', '.join(missing)} "
                                   f"(history version {version} has). It was left untouched.")
        problem = probe.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":  # e.g. "*** in database main ***\nPage 3: btreeInitPage() returns error code 11"
            problem = " ".join(problem.replace("*** in database main ***", "").split())
            raise HistoryError(f"{path} is damaged ({problem}). It was left untouched.")
        try:
            check_rows(probe, columns)
        except BadValue as exc:
            raise HistoryError(f"{path} is damaged: {exc}. It was left untouched.") from None
        return version
    except sqlite3.DatabaseError as exc:
        if primary(exc) == sqlite3.SQLITE_CORRUPT:
            raise HistoryError(f"{path} is damaged ({said(exc)}). It was left untouched.") from None
        raise
    finally:
        probe.close()

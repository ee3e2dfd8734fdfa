"""Conversation history in SQLite: every finished or stopped reply is one committed transaction.

A file written by an earlier version is upgraded in place, never lost: a backup copy is written beside
it first (`history.sqlite3.backup-v1`), then every step from its version to today's runs in one
transaction (see MIGRATIONS). A file that cannot be used is left untouched and opening it raises a
HistoryError that says why: one from a newer version, one that is not a history, and a damaged one —
a page SQLite cannot read (`PRAGMA quick_check`), a version no gpt2-desktop wrote, a column missing from
its version's tables, a row with a value of the wrong kind (a message's settings that are not a JSON
object, a NULL title): every row is read once, as it will be. Text that is not UTF-8 reads with U+FFFD.
An unfinished change left by a crash (a hot `-journal` beside the file) is undone first, as SQLite means
it to be; no read-only look can do that.

Once open, SQLite's errors come out of every method as a HistoryError too: a full or read-only disk
(`engine.files.disk_problem`; the transaction is rolled back, the file is as it was), or damage found
only now, at a page no earlier query read. Then the file is left alone for good: the history goes on,
empty, in memory (`detached` says why), so a window keeps working without writing into a damaged file.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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

FIRST = 0  # `add_message(after=FIRST)`: a new first message (no message has id 0)

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


class HistoryError(Exception):
    """The history file cannot be used, or cannot be written to now; it has been left exactly as it was."""


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


_DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_ERROR, sqlite3.SQLITE_SCHEMA)


def _primary(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code for an error (its extended code less the detail)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _disk_errno(folder: Path, exc: sqlite3.Error) -> int | None:
    """The system's error number for a SQLite error that is the disk's (full, read-only, failing); None for
    any other."""
    code = _primary(exc)
    if code == sqlite3.SQLITE_FULL:
        return errno.ENOSPC
    if code not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return errno.EROFS
    except OSError:
        pass
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return {sqlite3.SQLITE_IOERR: errno.EIO, sqlite3.SQLITE_READONLY: errno.EACCES}.get(code)


def _said(exc: Exception, limit: int = 200) -> str:
    """SQLite's message on one line, cut short (a damaged schema's message quotes the whole schema)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _BadValue(ValueError):
    """A row holds a value of the wrong kind (a NULL title, settings that are not a JSON object)."""


def _guarded(method):
    """A History method whose SQLite errors come out as a HistoryError saying what is wrong (History._trouble)."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, _BadValue, UnicodeDecodeError) as exc:  # (SQLite's own message, damaged)
            raise self._trouble(exc) from None
    return guarded


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    mode: str
    document: str
    updated_at: str
    draft: str = ""
    created_at: str = ""
    leaf_id: int | None = None  # the last message of the version shown
    model: str | None = None  # the model it is written with (None: the one loaded)
    preset: str | None = None  # its sampling preset (None: the settings panel's values)
    preamble: str = ""  # text before the conversation (a system prompt)
    edit_id: int | None = None  # the user message being edited in the message box (None: no edit in progress)
    edit_text: str = ""  # ... and the edit's text so far


_TEXT_OR_NULL, _ID_OR_NULL = (str, type(None)), (int, type(None))
# The columns read, with the kind of value each holds (SQLite keeps whatever a damaged record says).
_CONVERSATION_KINDS = {"id": int, "title": str, "mode": str, "document": str, "updated_at": str, "draft": str,
                       "created_at": str, "leaf_id": _ID_OR_NULL, "model": _TEXT_OR_NULL, "preset": _TEXT_OR_NULL,
                       "preamble": str, "edit_id": _ID_OR_NULL, "edit_text": str}
_MESSAGE_KINDS = {"id": int, "conversation_id": int, "role": str, "content": str, "created_at": str,
                  "model": _TEXT_OR_NULL, "settings": _TEXT_OR_NULL, "stop_reason": _TEXT_OR_NULL,
                  "parent_id": _ID_OR_NULL}
_CONVERSATION_COLUMNS = ", ".join(_CONVERSATION_KINDS)
OPTIONS = ("model", "preset", "preamble")  # what `History.set_options` changes
_MESSAGE_COLUMNS = ", ".join(_MESSAGE_KINDS)


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    created_at: str
    model: str | None
    settings: dict | None
    stop_reason: str | None
    parent_id: int | None = None  # the message before it (None: the first of its conversation)


@dataclass(frozen=True)
class ConversationRecord:
    """A whole conversation with every version of every message (oldest first): what an export holds and what
    an import adds. Its ids are the ones it had where it came from."""

    conversation: Conversation
    messages: list[Message]


SPEAKERS = {"user": "You", "system": "System"}


def speaker(message: Message) -> str:
    """Who wrote a message, as shown and exported: You, or the name of the model that wrote a reply."""
    if message.role == "assistant":
        return message.model or "Assistant"
    return SPEAKERS.get(message.role, message.role)


def _checked(row: tuple, kinds: dict, what: str) -> tuple:
    """The row, if each of its values is of its column's kind (`kinds`: column -> kind, in the row's order)."""
    for value, (column, kind) in zip(row, kinds.items()):
        if not isinstance(value, kind):
            raise _BadValue(f"the {column} of {what} {row[0]} is {str(value)[:40]!r}")
    return row


def _settings(message_id: int, text: str | None) -> dict | None:
    """A message's settings as stored: a JSON object, or NULL."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _BadValue(f"the settings of message {message_id} are not a JSON object ({text[:40]!r})")
    return value


def _conversation(row) -> Conversation:
    return Conversation(*_checked(row, _CONVERSATION_KINDS, "conversation"))


def _message(row) -> Message:
    _checked(row, _MESSAGE_KINDS, "message")
    return Message(*row[:6], _settings(row[0], row[6]), row[7], row[8])


def _check_rows(db: sqlite3.Connection, columns: dict[str, set[str]]) -> None:
    """Every row of a file, of any version, as it will be read (its token data aside: app.probe.token_data checks
    that); _BadValue for the first that is not."""
    for table, kinds, what in (("conversations", _CONVERSATION_KINDS, "conversation"),
                               ("messages", _MESSAGE_KINDS, "message")):
        present = {column: kind for column, kind in kinds.items() if column in columns[table]}
        for row in db.execute(f"SELECT {', '.join(present)} FROM {table}"):
            _checked(row, present, what)
            if "settings" in present:
                _settings(row[0], row[list(present).index("settings")])


def _text(raw: bytes) -> str:
    """A TEXT value as read: bytes that are not UTF-8 (a damaged sector) read as U+FFFD, not as an error."""
    return raw.decode("utf-8", "replace")


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(target, uri=uri, check_same_thread=False)
    db.text_factory = _text
    return db


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class History:
    def __init__(self, path: Path | str):
        """Open (or create) the history file. Raises HistoryError, touching nothing, if it cannot be used."""
        self.path = path
        self.detached: str | None = None  # why this session no longer uses the file (None: it does)
        self.backup: Path | None = None  # the copy written before this open upgraded the file
        if path == ":memory:":
            self.db = self._memory()
            return
        path = Path(path)
        existed = path.exists() and path.stat().st_size > 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"{path} cannot be made: {disk_problem(path.parent, exc)}.") from None
        try:
            version = self._check_existing(path) if existed else None
            if version is not None and version < SCHEMA_VERSION:
                try:
                    self.backup = self._write_backup(path, version)
                except (OSError, sqlite3.DatabaseError) as exc:
                    why = (disk_problem(path.parent, exc) if isinstance(exc, OSError) else
                           self._disk_words(exc) or str(exc))
                    raise HistoryError(f"{path} needs upgrading, but no backup copy could be written beside it "
                                       f"({why}). It was left untouched.") from None
            self.db = _connect(str(path))
            self.db.execute("PRAGMA foreign_keys = ON")
            if version is None:
                with self.db:
                    self.db.executescript(SCHEMA)
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version < SCHEMA_VERSION:
                self._migrate(version)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path} could not be opened ({self._disk_words(exc) or _said(exc)}).") from None

    @staticmethod
    def _memory() -> sqlite3.Connection:
        db = _connect(":memory:")
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db

    def _disk_words(self, exc: sqlite3.Error) -> str | None:
        """What is wrong with the disk behind a SQLite error, in words (None: not the disk)."""
        folder = Path(self.path).parent
        number = _disk_errno(folder, exc)
        return None if number is None else disk_problem(folder, OSError(number, os.strerror(number)))

    def _trouble(self, exc: Exception) -> HistoryError:
        """The HistoryError for an error of an open history. Damage found now: the file is left alone from here
        on and the history goes on, empty, in memory (`detached`)."""
        if self.detached is not None:
            return HistoryError(f"{self.detached} ({_said(exc)})")
        disk = self._disk_words(exc) if isinstance(exc, sqlite3.Error) else None
        if disk is not None:
            return HistoryError(f"{self.path} cannot be written: {disk}; the history is as it was.")
        if isinstance(exc, sqlite3.DatabaseError) and _primary(exc) not in _DAMAGE:
            return HistoryError(f"{self.path}: {_said(exc)}; the history is as it was.")
        self.detached = f"{self.path} turned out to be damaged ({_said(exc)}). It was left as it is."
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        self.db = self._memory()
        return HistoryError(self.detached)

    @staticmethod
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

    def _migrate(self, version: int) -> None:
        """Every step from `version` to SCHEMA_VERSION, in one transaction: all of them or none."""
        self.db.isolation_level = None  # explicit BEGIN/COMMIT: ALTER TABLE is then inside the transaction
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.isolation_level = ""

    def _check_existing(self, path: Path) -> int:
        """The file's schema version, if this version can read it (else HistoryError, the file untouched)."""
        try:
            try:
                return self._read_version(path)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_READONLY_ROLLBACK:
                    raise
            try:
                self._finish_interrupted(path)
            except sqlite3.DatabaseError as exc:
                raise HistoryError(f"{path} has a change left unfinished by a crash ({path.name}-journal beside "
                                   f"it), which cannot be undone now ({self._disk_words(exc) or _said(exc)}). "
                                   "It was left untouched.") from None
            return self._read_version(path)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # (the latter: SQLite's message, damaged too)
            raise HistoryError(f"{path} is not a readable history file ({_said(exc)}). "
                               "It was left untouched.") from None

    @staticmethod
    def _finish_interrupted(path: Path) -> None:
        """A change cut off by a crash left its journal beside the file (a hot journal): SQLite undoes the
        change when a connection that may write first reads the file, which a read-only probe cannot do. Then
        the file is as its last finished change left it."""
        db = sqlite3.connect(str(path))
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()

    @staticmethod
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
                _check_rows(probe, columns)
            except _BadValue as exc:
                raise HistoryError(f"{path} is damaged: {exc}. It was left untouched.") from None
            return version
        except sqlite3.DatabaseError as exc:
            if _primary(exc) == sqlite3.SQLITE_CORRUPT:
                raise HistoryError(f"{path} is damaged ({_said(exc)}). It was left untouched.") from None
            raise
        finally:
            probe.close()

    def close(self) -> None:
        self.db.close()

    # conversations

    @staticmethod
    def _like(search: str) -> str:
        """A LIKE pattern that finds `search` as it is (its % and _ too)."""
        return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    @_guarded
    def conversations(self, search: str = "") -> list[Conversation]:
        sql = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations"
        args: tuple = ()
        if search:
            pattern = self._like(search)
            sql += (
                " WHERE title LIKE ?1 ESCAPE '\\' OR document LIKE ?1 ESCAPE '\\' OR id IN "
                "(SELECT conversation_id FROM messages WHERE content LIKE ?1 ESCAPE '\\')"
            )
            args = (pattern,)
        rows = self.db.execute(sql + " ORDER BY updated_at DESC, id DESC", args).fetchall()
        return [_conversation(row) for row in rows]

    @_guarded
    def matches(self, search: str) -> dict[int, str]:
        """Where `conversations(search)` found each conversation, if not only in its title: a notebook's text,
        or else the first of its messages (any version) that holds `search`."""
        if not search:
            return {}
        pattern = self._like(search)
        found = dict(self.db.execute("SELECT id, document FROM conversations WHERE document LIKE ? ESCAPE '\\'",
                                     (pattern,)).fetchall())
        for conversation_id, content in self.db.execute(
                "SELECT conversation_id, content FROM messages WHERE content LIKE ? ESCAPE '\\' ORDER BY id",
                (pattern,)):
            found.setdefault(conversation_id, content)
        return found

    @_guarded
    def conversation(self, conversation_id: int) -> Conversation | None:
        row = self.db.execute(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?",
                              (conversation_id,)).fetchone()
        return _conversation(row) if row else None

    @_guarded
    def create_conversation(self, title: str, mode: str = "chat") -> int:
        with self.db:
            now = _now()
            cur = self.db.execute(
                "INSERT INTO conversations (title, mode, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title, mode, now, now),
            )
        return cur.lastrowid

    @_guarded
    def rename_conversation(self, conversation_id: int, title: str) -> None:
        with self.db:
            self.db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    @_guarded
    def delete_conversation(self, conversation_id: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    @_guarded
    def set_document(self, conversation_id: int, text: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE conversations SET document = ?, updated_at = ? WHERE id = ?", (text, _now(), conversation_id)
            )

    @_guarded
    def set_options(self, conversation_id: int, **options) -> None:
        """A conversation's own model, preset or preamble (not a change: its place in the list stays)."""
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise ValueError(f"not a conversation option: {', '.join(sorted(unknown))}")
        with self.db:
            for key, value in options.items():
                self.db.execute(f"UPDATE conversations SET {key} = ? WHERE id = ?", (value, conversation_id))

    @_guarded
    def set_draft(self, conversation_id: int, text: str, edit_id: int | None = None, edit_text: str = "") -> None:
        """The unsent text of a conversation's message box, and the edit of an earlier message in progress there
        (`edit_id`, None: none) with its text so far; not a change: its place in the list stays."""
        with self.db:
            self.db.execute("UPDATE conversations SET draft = ?, edit_id = ?, edit_text = ? WHERE id = ?",
                            (text, edit_id, edit_text if edit_id is not None else "", conversation_id))

    # messages

    @_guarded
    def messages(self, conversation_id: int) -> list[Message]:
        """The conversation as shown: the line of messages that ends at its chosen version (its leaf)."""
        row = self.db.execute("SELECT leaf_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None or row[0] is None:
            return []
        rows = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?",
                               (conversation_id,)).fetchall()
        by_id = {r[0]: r for r in rows}
        thread, at = [], row[0]
        while at in by_id and len(thread) <= len(by_id):
            thread.append(by_id[at])
            at = by_id[at][8]
        return [_message(r) for r in reversed(thread)]

    @_guarded
    def versions(self, message: Message) -> list[int]:
        """The ids of a message's versions (itself and the others written in its place), oldest first."""
        rows = self.db.execute("SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                               (message.conversation_id, message.parent_id)).fetchall()
        return [r[0] for r in rows]

    @_guarded
    def version_places(self, messages: list[Message]) -> dict[int, tuple[int, int]]:
        """For each message of a thread that has several versions: its place among them and how many (1-based).
        One query for the whole conversation."""
        if not messages:
            return {}
        siblings: dict[int | None, list[int]] = {}
        for message_id, parent_id in self.db.execute(
                "SELECT id, parent_id FROM messages WHERE conversation_id = ? ORDER BY id",
                (messages[0].conversation_id,)):
            siblings.setdefault(parent_id, []).append(message_id)
        places = {}
        for message in messages:
            ids = siblings.get(message.parent_id, [])
            if len(ids) > 1 and message.id in ids:
                places[message.id] = (ids.index(message.id) + 1, len(ids))
        return places

    @_guarded
    def show_version(self, conversation_id: int, message_id: int) -> None:
        """Show the version that contains `message_id`, with the turns that followed it (the latest, at each
        turn). Nothing is removed: the other versions stay, with theirs."""
        leaf = message_id
        while (child := self.db.execute("SELECT MAX(id) FROM messages WHERE parent_id = ?", (leaf,)).fetchone()[0]):
            leaf = child
        with self.db:
            self.db.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?", (leaf, conversation_id))

    @_guarded
    def add_message(self, conversation_id: int, role: str, content: str, model: str | None = None,
                    settings: dict | None = None, stop_reason: str | None = None,
                    document: str | None = None, after: int | None = None, tokens: bytes | None = None) -> int:
        """Insert one message (and, for a notebook, its new document) in a single transaction and show it:
        after the last message shown, or `after` another (FIRST: as the first message). A message put where
        one already was becomes a new version of that turn; the old one is kept. `tokens`: a reply's token
        data (app.probe.token_data), read back with `tokens`."""
        with self.db:
            now = _now()
            if after is None:
                after = self.db.execute("SELECT leaf_id FROM conversations WHERE id = ?",
                                        (conversation_id,)).fetchone()[0]
            elif after == FIRST:
                after = None
            cur = self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, model, settings, stop_reason, "
                "parent_id, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, now, model, json.dumps(settings) if settings else None, stop_reason,
                 after, tokens),
            )
            if document is None:
                self.db.execute("UPDATE conversations SET updated_at = ?, leaf_id = ? WHERE id = ?",
                                (now, cur.lastrowid, conversation_id))
            else:
                self.db.execute("UPDATE conversations SET updated_at = ?, leaf_id = ?, document = ? WHERE id = ?",
                                (now, cur.lastrowid, document, conversation_id))
        return cur.lastrowid

    @_guarded
    def tokens(self, message_ids: list[int]) -> dict[int, bytes]:
        """The stored token data of those messages that have it (kept apart from `messages`, which is read
        often and needs none of it)."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self.db.execute(f"SELECT id, tokens FROM messages WHERE id IN ({marks}) AND tokens IS NOT NULL",
                               list(message_ids)).fetchall()
        return {message_id: bytes(blob) for message_id, blob in rows if isinstance(blob, bytes)}

    # whole conversations (export and import)

    @_guarded
    def record(self, conversation_id: int) -> ConversationRecord | None:
        """A conversation with every message it holds, each version included, oldest first."""
        conv = self.conversation(conversation_id)
        if conv is None:
            return None
        rows = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
                               (conversation_id,)).fetchall()
        return ConversationRecord(conv, [_message(r) for r in rows])

    @_guarded
    def add_records(self, records: list[ConversationRecord]) -> list[int]:
        """Add whole conversations (an import), all in one transaction: each gets a new id, and so does each
        message (its parent and the conversation's shown version follow). Nothing already here is changed."""
        new_ids = []
        with self.db:
            for record in records:
                conv = record.conversation
                created = conv.created_at or conv.updated_at or _now()
                cur = self.db.execute(
                    "INSERT INTO conversations (title, mode, document, created_at, updated_at, draft, model, preset, "
                    "preamble) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (conv.title, conv.mode, conv.document, created, conv.updated_at or created, conv.draft,
                     conv.model, conv.preset, conv.preamble))
                conversation_id, ids = cur.lastrowid, {}
                for message in record.messages:  # a parent comes before its children (checked by the reader)
                    cur = self.db.execute(
                        "INSERT INTO messages (conversation_id, role, content, created_at, model, settings, "
                        "stop_reason, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (conversation_id, message.role, message.content, message.created_at or created,
                         message.model, json.dumps(message.settings) if message.settings else None,
                         message.stop_reason, ids.get(message.parent_id)))
                    ids[message.id] = cur.lastrowid
                self.db.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?",
                                (ids.get(conv.leaf_id), conversation_id))
                new_ids.append(conversation_id)
        return new_ids


def open_history(path: Path) -> tuple[History, str | None]:
    """The history at `path`, or, if that file cannot be used, an empty one in memory (nothing is written to the
    file) and why not."""
    try:
        return History(path), None
    except HistoryError as exc:
        return History(":memory:"), str(exc)

"""Conversation history in SQLite: every finished or stopped reply is one committed transaction.

A file written by an earlier version is upgraded in place, never lost: a backup copy is written beside
it first (`history.sqlite3.backup-v1`), then every step from its version to today's runs in one
transaction (see MIGRATIONS). A corrupt file, or one from a newer version, is left untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT 'chat' CHECK (mode IN ('chat', 'notebook')),
    document TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    draft TEXT NOT NULL DEFAULT ''  -- the unsent message in its message box (version 2)
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a regenerated reply gets a new id
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    model TEXT,
    settings TEXT,
    stop_reason TEXT
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
"""

# The statements that take a file from version N to N + 1 (0.1.0 wrote version 1).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE conversations ADD COLUMN draft TEXT NOT NULL DEFAULT ''",),
}


class HistoryError(Exception):
    """The history file cannot be used; it has been left exactly as it was."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    mode: str
    document: str
    updated_at: str
    draft: str = ""


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class History:
    def __init__(self, path: Path | str):
        """Open (or create) the history file. Raises HistoryError, touching nothing, if it is corrupt or newer."""
        self.path = path
        existed = path != ":memory:" and Path(path).exists() and Path(path).stat().st_size > 0
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.backup: Path | None = None  # the copy written before this open upgraded the file
        try:
            version = self._check_existing(Path(path)) if existed else None
            if version is not None and version < SCHEMA_VERSION:
                self.backup = self._write_backup(Path(path), version)
            self.db = sqlite3.connect(str(path), check_same_thread=False)
            self.db.execute("PRAGMA foreign_keys = ON")
            if version is None:
                with self.db:
                    self.db.executescript(SCHEMA)
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version < SCHEMA_VERSION:
                self._migrate(version)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path} could not be opened ({exc}).") from None

    @staticmethod
    def _write_backup(path: Path, version: int) -> Path:
        """A consistent copy of the file as it is, beside it (kept if an earlier attempt already wrote one)."""
        backup = path.with_name(f"{path.name}.backup-v{version}")
        if backup.exists():
            return backup
        tmp = backup.with_name(backup.name + ".tmp")
        source, copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True), sqlite3.connect(str(tmp))
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        os.replace(tmp, backup)
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

    @staticmethod
    def _check_existing(path: Path) -> int:
        """The file's schema version, if this version can read it (else HistoryError, the file untouched)."""
        uri = f"file:{path}?mode=ro"
        try:
            probe = sqlite3.connect(uri, uri=True)
            try:
                version = probe.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if version == 0 and "conversations" in tables:  # tables made, version not yet written
                    columns = {r[1] for r in probe.execute("PRAGMA table_info(conversations)")}
                    version = 2 if "draft" in columns else 1
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path} is not a readable history file ({exc}). It was left untouched.") from None
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{path} was written by a newer gpt2-desktop (history version {version}; this one reads "
                f"{SCHEMA_VERSION}). It was left untouched; update gpt2-desktop to see it."
            )
        if not {"conversations", "messages"} <= tables:
            raise HistoryError(f"{path} is not a gpt2-desktop history file. It was left untouched.")
        return version

    def close(self) -> None:
        self.db.close()

    # conversations

    def conversations(self, search: str = "") -> list[Conversation]:
        sql = "SELECT id, title, mode, document, updated_at, draft FROM conversations"
        args: tuple = ()
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql += (
                " WHERE title LIKE ?1 ESCAPE '\\' OR document LIKE ?1 ESCAPE '\\' OR id IN "
                "(SELECT conversation_id FROM messages WHERE content LIKE ?1 ESCAPE '\\')"
            )
            args = (pattern,)
        rows = self.db.execute(sql + " ORDER BY updated_at DESC, id DESC", args).fetchall()
        return [Conversation(*row) for row in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        row = self.db.execute(
            "SELECT id, title, mode, document, updated_at, draft FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return Conversation(*row) if row else None

    def create_conversation(self, title: str, mode: str = "chat") -> int:
        with self.db:
            now = _now()
            cur = self.db.execute(
                "INSERT INTO conversations (title, mode, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title, mode, now, now),
            )
        return cur.lastrowid

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        with self.db:
            self.db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def set_document(self, conversation_id: int, text: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE conversations SET document = ?, updated_at = ? WHERE id = ?", (text, _now(), conversation_id)
            )

    def set_draft(self, conversation_id: int, text: str) -> None:
        """The unsent text of a conversation's message box (not a change: its place in the list stays)."""
        with self.db:
            self.db.execute("UPDATE conversations SET draft = ? WHERE id = ?", (text, conversation_id))

    # messages

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self.db.execute(
            "SELECT id, conversation_id, role, content, created_at, model, settings, stop_reason FROM messages "
            "WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [Message(*row[:6], json.loads(row[6]) if row[6] else None, row[7]) for row in rows]

    def add_message(self, conversation_id: int, role: str, content: str, model: str | None = None,
                    settings: dict | None = None, stop_reason: str | None = None,
                    document: str | None = None) -> int:
        """Insert one message (and, for a notebook, its new document) in a single transaction."""
        with self.db:
            now = _now()
            cur = self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, model, settings, stop_reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, now, model, json.dumps(settings) if settings else None, stop_reason),
            )
            if document is None:
                self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            else:
                self.db.execute("UPDATE conversations SET updated_at = ?, document = ? WHERE id = ?",
                                (now, document, conversation_id))
        return cur.lastrowid

    def truncate_after(self, conversation_id: int, message_id: int, new_content: str | None = None) -> None:
        """Delete every message after `message_id`; optionally rewrite that message (edit and resend)."""
        with self.db:
            if new_content is not None:
                self.db.execute("UPDATE messages SET content = ? WHERE id = ?", (new_content, message_id))
            self.db.execute("DELETE FROM messages WHERE conversation_id = ? AND id > ?", (conversation_id, message_id))
            self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (_now(), conversation_id))

"""Conversation history in SQLite: every finished or stopped reply is one committed transaction."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT 'chat' CHECK (mode IN ('chat', 'notebook')),
    document TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
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


class HistoryError(Exception):
    """The history file cannot be used; it has been left exactly as it was."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    mode: str
    document: str
    updated_at: str


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
        try:
            if existed:
                self._check_existing(Path(path))
            self.db = sqlite3.connect(str(path), check_same_thread=False)
            self.db.execute("PRAGMA foreign_keys = ON")
            if not existed:
                with self.db:
                    self.db.executescript(SCHEMA)
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path} could not be opened ({exc}).") from None

    @staticmethod
    def _check_existing(path: Path) -> None:
        uri = f"file:{path}?mode=ro"
        try:
            probe = sqlite3.connect(uri, uri=True)
            try:
                version = probe.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type='table'")}
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

    def close(self) -> None:
        self.db.close()

    # conversations

    def conversations(self, search: str = "") -> list[Conversation]:
        sql = "SELECT id, title, mode, document, updated_at FROM conversations"
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
            "SELECT id, title, mode, document, updated_at FROM conversations WHERE id = ?", (conversation_id,)
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

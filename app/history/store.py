"""Conversation history in SQLite, `History`: its reads and writes; every finished or stopped reply is one
committed transaction. Opening the file (made, checked, upgraded, or refused untouched) is app.history.schema's.

Once open, SQLite's errors come out of every method as a HistoryError too: a full or read-only disk
(`engine.files.disk_problem`; the transaction is rolled back, the file is as it was), or damage found
only now, at a page no earlier query read. Then the file is left alone for good: the history goes on,
empty, in memory (`detached` says why), so a window keeps working without writing into a damaged file.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from app.history.errors import DAMAGE, HistoryError, disk_words, primary, said
from app.history.records import (CONVERSATION_COLUMNS, MESSAGE_COLUMNS, BadValue, Conversation, ConversationRecord,
                                 Message, conversation_of, message_of)
from app.history.schema import in_memory, open_file

FIRST = 0  # `add_message(after=FIRST)`: a new first message (no message has id 0)
OPTIONS = ("model", "preset", "preamble")  # what `History.set_options` changes


def _guarded(method):
    """A History method whose SQLite errors come out as a HistoryError saying what is wrong (History._trouble)."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, BadValue, UnicodeDecodeError) as exc:  # (SQLite's own message, damaged)
            raise self._trouble(exc) from None
    return guarded


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class History:
    def __init__(self, path: Path | str):
        """Open (or create) the history file. Raises HistoryError, touching nothing, if it cannot be used."""
        self.path = path
        self.detached: str | None = None  # why this session no longer uses the file (None: it does)
        self.backup: Path | None = None  # the copy written before this open upgraded the file
        if path == ":memory:":
            self.db = in_memory()
            return
        self.db, self.backup = open_file(Path(path))

    def _trouble(self, exc: Exception) -> HistoryError:
        """The HistoryError for an error of an open history. Damage found now: the file is left alone from here
        on and the history goes on, empty, in memory (`detached`)."""
        if self.detached is not None:
            return HistoryError(f"{self.detached} ({said(exc)})")
        disk = disk_words(self.path, exc) if isinstance(exc, sqlite3.Error) else None
        if disk is not None:
            return HistoryError(f"{self.path} cannot be written: {disk}; the history is as it was.")
        if isinstance(exc, sqlite3.DatabaseError) and primary(exc) not in DAMAGE:
            return HistoryError(f"{self.path}: {said(exc)}; the history is as it was.")
        self.detached = f"{self.path} turned out to be damaged ({said(exc)}). It was left as it is."
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        self.db = in_memory()
        return HistoryError(self.detached)

    def close(self) -> None:
        self.db.close()

    # conversations

    @staticmethod
    def _like(search: str) -> str:
        """A LIKE pattern that finds `search` as it is (its % and _ too)."""
        return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    @_guarded
    def conversations(self, search: str = "") -> list[Conversation]:
        sql = f"SELECT {CONVERSATION_COLUMNS} FROM conversations"
        args: tuple = ()
        if search:
            pattern = self._like(search)
            sql += (
                " WHERE title LIKE ?1 ESCAPE '\\' OR document LIKE ?1 ESCAPE '\\' OR id IN "
                "(SELECT conversation_id FROM messages WHERE content LIKE ?1 ESCAPE '\\')"
            )
            args = (pattern,)
        rows = self.db.execute(sql + " ORDER BY updated_at DESC, id DESC", args).fetchall()
        return [conversation_of(row) for row in rows]

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
        row = self.db.execute(f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?",
                              (conversation_id,)).fetchone()
        return conversation_of(row) if row else None

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
        rows = self.db.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?",
                               (conversation_id,)).fetchall()
        by_id = {r[0]: r for r in rows}
        thread, at = [], row[0]
        while at in by_id and len(thread) <= len(by_id):
            thread.append(by_id[at])
            at = by_id[at][8]
        return [message_of(r) for r in reversed(thread)]

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
        rows = self.db.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
                               (conversation_id,)).fetchall()
        return ConversationRecord(conv, [message_of(r) for r in rows])

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

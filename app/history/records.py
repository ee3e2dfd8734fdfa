"""What the history holds, as values: `Conversation`, `Message` and `ConversationRecord` (a whole conversation, as
exported and imported), who wrote a message (`speaker`), and a row of the file made into one of them, each value
checked for its kind first (SQLite keeps whatever a damaged record says): `BadValue` for one that is not."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass


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


class BadValue(ValueError):
    """A row holds a value of the wrong kind (a NULL title, settings that are not a JSON object)."""


_TEXT_OR_NULL, _ID_OR_NULL = (str, type(None)), (int, type(None))
# The columns read, with the kind of value each holds (SQLite keeps whatever a damaged record says).
_CONVERSATION_KINDS = {"id": int, "title": str, "mode": str, "document": str, "updated_at": str, "draft": str,
                       "created_at": str, "leaf_id": _ID_OR_NULL, "model": _TEXT_OR_NULL, "preset": _TEXT_OR_NULL,
                       "preamble": str, "edit_id": _ID_OR_NULL, "edit_text": str}
_MESSAGE_KINDS = {"id": int, "conversation_id": int, "role": str, "content": str, "created_at": str,
                  "model": _TEXT_OR_NULL, "settings": _TEXT_OR_NULL, "stop_reason": _TEXT_OR_NULL,
                  "parent_id": _ID_OR_NULL}
CONVERSATION_COLUMNS = ", ".join(_CONVERSATION_KINDS)  # what `conversation_of` reads, in its order
MESSAGE_COLUMNS = ", ".join(_MESSAGE_KINDS)  # what `message_of` reads, in its order


def _checked(row: tuple, kinds: dict, what: str) -> tuple:
    """The row, if each of its values is of its column's kind (`kinds`: column -> kind, in the row's order)."""
    for value, (column, kind) in zip(row, kinds.items()):
        if not isinstance(value, kind):
            raise BadValue(f"the {column} of {what} {row[0]} is {str(value)[:40]!r}")
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
        raise BadValue(f"the settings of message {message_id} are not a JSON object ({text[:40]!r})")
    return value


def conversation_of(row) -> Conversation:
    """A row of CONVERSATION_COLUMNS as a Conversation."""
    return Conversation(*_checked(row, _CONVERSATION_KINDS, "conversation"))


def message_of(row) -> Message:
    """A row of MESSAGE_COLUMNS as a Message."""
    _checked(row, _MESSAGE_KINDS, "message")
    return Message(*row[:6], _settings(row[0], row[6]), row[7], row[8])


def check_rows(db: sqlite3.Connection, columns: dict[str, set[str]]) -> None:
    """Every row of a file, of any version, as it will be read (its token data aside: app.probe.token_data checks
    that); BadValue for the first that is not."""
    for table, kinds, what in (("conversations", _CONVERSATION_KINDS, "conversation"),
                               ("messages", _MESSAGE_KINDS, "message")):
        present = {column: kind for column, kind in kinds.items() if column in columns[table]}
        for row in db.execute(f"SELECT {', '.join(present)} FROM {table}"):
            _checked(row, present, what)
            if "settings" in present:
                _settings(row[0], row[list(present).index("settings")])

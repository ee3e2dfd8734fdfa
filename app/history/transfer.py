"""Conversations out of and into the history: JSON (everything, for another computer or a backup) and
Markdown (the conversation as shown, to read), and `gpt2-desktop history export|import`.

No Qt and no torch here: the command answers at once, and the window's File menu uses the same functions.

The JSON file (FORMAT_VERSION 1), UTF-8, text as written (no escapes):

    {"format": "gpt2-desktop-history", "version": 1, "exported_at": "...", "conversations": [
        {"id": 3, "title": "...", "mode": "chat" | "notebook", "document": "...", "draft": "...",
         "created_at": "...", "updated_at": "...", "leaf_id": 12,
         "model": "gpt2" | null, "preset": "Precise" | null, "preamble": "...",
         "messages": [{"id": 9, "parent_id": null, "role": "user" | "assistant" | "system", "content": "...",
                       "created_at": "...", "model": "gpt2" | null, "settings": {...} | null,
                       "stop_reason": "length" | "stop" | "eos" | "cancelled" | "interrupted" | null}, ...]}]}

A reply's `stop_reason` says why it ended: `length` (max new tokens), `stop` (a stop sequence, or a remote
server's end), `eos` (the model's end of text), `cancelled` (stopped in the window) or `interrupted` (cut short
by a failure: a server that went away mid-reply; its content is what came before). A remote model's replies
name it as `model @ address` (app.models.servers).

Every message of a conversation is there, each version of a turn included: a message's `parent_id` is the
one before it, and messages with the same parent are versions of one turn; `leaf_id` is the last message of
the version shown. Importing adds each conversation with new ids; nothing already in the history changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from app.history.errors import HistoryError
from app.history.records import Conversation, ConversationRecord, Message, speaker
from app.history.store import History
from engine.errors import StorageError
from engine.files import write_atomic

FORMAT = "gpt2-desktop-history"
FORMAT_VERSION = 1
ROLES = ("user", "assistant", "system")
MODES = ("chat", "notebook")


class HistoryFileError(Exception):
    """A file that cannot be imported, or an export that cannot be written; the message says why."""


# JSON

def to_json(records: list[ConversationRecord]) -> str:
    return json.dumps({
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conversations": [_conversation_json(r) for r in records],
    }, ensure_ascii=False, indent=2) + "\n"


def _conversation_json(record: ConversationRecord) -> dict:
    c = record.conversation
    return {"id": c.id, "title": c.title, "mode": c.mode, "document": c.document, "draft": c.draft,
            "created_at": c.created_at, "updated_at": c.updated_at, "leaf_id": c.leaf_id,
            "model": c.model, "preset": c.preset, "preamble": c.preamble,
            "messages": [{"id": m.id, "parent_id": m.parent_id, "role": m.role, "content": m.content,
                          "created_at": m.created_at, "model": m.model, "settings": m.settings,
                          "stop_reason": m.stop_reason} for m in record.messages]}


def from_json(text: str, source: str = "the file") -> list[ConversationRecord]:
    """Read an exported file; HistoryFileError says what is wrong with it (nothing is imported then)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HistoryFileError(f"{source} is not JSON ({exc}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HistoryFileError(f"{source} is not a gpt2-desktop history export (no \"format\": \"{FORMAT}\").")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HistoryFileError(f"{source} is in history export version {version}; this gpt2-desktop reads up to "
                               f"{FORMAT_VERSION}. Update gpt2-desktop to import it.")
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise HistoryFileError(f"{source}: \"conversations\" should be a list.")
    return [_record(c, i, source) for i, c in enumerate(conversations)]


def _record(c, index: int, source: str) -> ConversationRecord:
    where = f"{source}, conversation {index + 1}"

    def field(obj, key, kind, default=None, required=False, what=where):
        value = obj.get(key, default)
        if required and key not in obj:
            raise HistoryFileError(f"{what} has no \"{key}\".")
        if value is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise HistoryFileError(f"{what}: \"{key}\" has the wrong type.")
        return value

    if not isinstance(c, dict):
        raise HistoryFileError(f"{where} is not an object.")
    mode = field(c, "mode", str, "chat")
    if mode not in MODES:
        raise HistoryFileError(f"{where}: mode {mode!r} is not chat or notebook.")
    conversation_id = field(c, "id", int, 0) or 0
    messages, seen = [], set()
    for j, m in enumerate(field(c, "messages", list, [])):
        what = f"{where}, message {j + 1}"
        if not isinstance(m, dict):
            raise HistoryFileError(f"{what} is not an object.")
        role = field(m, "role", str, required=True, what=what)
        if role not in ROLES:
            raise HistoryFileError(f"{what}: role {role!r} is not user, assistant or system.")
        message_id, parent = field(m, "id", int, required=True, what=what), field(m, "parent_id", int, what=what)
        if parent is not None and parent not in seen:
            raise HistoryFileError(f"{what}: its parent_id {parent} is not a message before it.")
        seen.add(message_id)
        messages.append(Message(message_id, conversation_id, role, field(m, "content", str, required=True, what=what),
                                field(m, "created_at", str, "", what=what) or "", field(m, "model", str, what=what),
                                field(m, "settings", dict, what=what), field(m, "stop_reason", str, what=what),
                                parent))
    leaf = field(c, "leaf_id", int)
    if leaf is None and messages:
        leaf = messages[-1].id
    if leaf is not None and leaf not in seen:
        raise HistoryFileError(f"{where}: leaf_id {leaf} is not one of its messages.")
    conversation = Conversation(conversation_id, field(c, "title", str, "Imported") or "Imported", mode,
                                field(c, "document", str, "") or "", field(c, "updated_at", str, "") or "",
                                field(c, "draft", str, "") or "", field(c, "created_at", str, "") or "", leaf,
                                field(c, "model", str), field(c, "preset", str), field(c, "preamble", str, "") or "")
    return ConversationRecord(conversation, messages)


# Markdown

def shown_thread(record: ConversationRecord) -> list[Message]:
    """The messages of the version shown: the line of parents that ends at the conversation's leaf."""
    by_id = {m.id: m for m in record.messages}
    thread, at = [], record.conversation.leaf_id
    while at in by_id and len(thread) <= len(by_id):
        thread.append(by_id[at])
        at = by_id[at].parent_id
    return thread[::-1]


CUT_SHORT = {"cancelled": "stopped", "interrupted": "cut short: the server went away"}  # as the window marks them


def to_markdown(records: list[ConversationRecord]) -> str:
    """The conversations as shown, to read: a heading each, the preamble a chat was written with, then who said
    what (a notebook: its text); a reply that did not end by itself is marked as the window marks it."""
    parts = []
    for record in records:
        c = record.conversation
        lines = [f"# {c.title}", ""]
        if c.mode != "notebook" and c.preamble.strip():
            lines += ["**Preamble:**", "", c.preamble.rstrip("\n"), ""]
        if c.mode == "notebook":
            lines += [c.document.rstrip("\n"), ""]
        else:
            for message in shown_thread(record):
                versions = [m.id for m in record.messages if m.parent_id == message.parent_id]
                note = f" (version {versions.index(message.id) + 1} of {len(versions)})" if len(versions) > 1 else ""
                lines += [f"**{speaker(message)}**{note}:", "", message.content.rstrip("\n"), ""]
                if message.role == "assistant" and message.stop_reason in CUT_SHORT:
                    lines += [f"*({CUT_SHORT[message.stop_reason]})*", ""]
        parts.append("\n".join(lines))
    return "\n---\n\n".join(parts)


# history and files

def records(history: History, conversation_id: int | None = None) -> list[ConversationRecord]:
    """One conversation, or all of them (oldest first, so that an import keeps their order)."""
    if conversation_id is not None:
        record = history.record(conversation_id)
        if record is None:
            raise HistoryFileError(f"There is no conversation {conversation_id} (see the ids with "
                                   "gpt2-desktop history list).")
        return [record]
    return [history.record(c.id) for c in reversed(history.conversations())]


def export_text(history: History, fmt: str, conversation_id: int | None = None) -> str:
    chosen = records(history, conversation_id)
    return to_json(chosen) if fmt == "json" else to_markdown(chosen)


def write_export(history: History, path: Path, fmt: str, conversation_id: int | None = None) -> int:
    """Write an export to `path` (UTF-8, whole or not at all); how many conversations it holds."""
    chosen = records(history, conversation_id)
    try:
        write_atomic(Path(path), to_json(chosen) if fmt == "json" else to_markdown(chosen))
    except StorageError as exc:
        raise HistoryFileError(str(exc)) from None
    return len(chosen)


def import_file(history: History, path: Path) -> list[int]:
    """Add every conversation of an exported JSON file to the history (all or none); their new ids. A history
    that cannot be written to (a full or read-only disk) is left as it was: HistoryError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryFileError(f"{path} could not be read ({getattr(exc, 'strerror', None) or exc}).") from None
    return history.add_records(from_json(text, str(path)))


def format_for(path: str) -> str:
    """The export format a file name asks for: .md and .markdown are Markdown, anything else JSON."""
    return "markdown" if Path(path).suffix.lower() in (".md", ".markdown") else "json"


# the command line

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (as the other commands)
        raise HistoryFileError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpt2-desktop history", description="Export, import and list the window's conversations.")
    sub = parser.add_subparsers(dest="action", parser_class=_Parser)
    e = sub.add_parser("export", help="write conversations as JSON (everything, for import) or Markdown (to read)")
    e.add_argument("--format", choices=["json", "markdown"], default="json")
    e.add_argument("--conversation", type=int, metavar="ID", help="only this conversation (see: history list)")
    e.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (default: standard output)")
    i = sub.add_parser("import", help="add the conversations of an exported JSON file (nothing is overwritten)")
    i.add_argument("file", type=Path)
    sub.add_parser("list", help="the conversations, with their ids")
    return parser


def main(argv: list[str]) -> int:
    from engine.paths import data_dir

    try:
        args = build_parser().parse_args(argv)
        if args.action is None:
            raise HistoryFileError("gpt2-desktop history: name an action: export, import or list (see --help)")
        path = data_dir() / "history.sqlite3"
        history = History(path)
        try:
            if args.action == "export":
                if args.output is None:
                    sys.stdout.buffer.write(export_text(history, args.format, args.conversation).encode("utf-8"))
                    sys.stdout.buffer.flush()
                else:
                    count = write_export(history, args.output, args.format, args.conversation)
                    print(f"Exported {count} conversation{'s' if count != 1 else ''} to {args.output}", file=sys.stderr)
            elif args.action == "import":
                try:
                    added = import_file(history, args.file)
                except HistoryError as exc:
                    raise HistoryFileError(f"Nothing was imported: {exc}") from None
                print(f"Imported {len(added)} conversation{'s' if len(added) != 1 else ''} into {path}")
            else:
                for c in history.conversations():
                    sys.stdout.buffer.write(f"{c.id:6}  {c.mode:8}  {c.updated_at[:16]}  {c.title}\n".encode("utf-8"))
        finally:
            history.close()
    except (HistoryFileError, HistoryError) as exc:  # a damaged history, a full disk: one line, never a traceback
        print(str(exc), file=sys.stderr)
        return 2
    return 0

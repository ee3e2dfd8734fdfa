"""Training text: Project Gutenberg books cleaned into documents, split into train and validation.

A book is never split: validation holds whole books, so the validation loss measures how well
the model writes text it has never seen, not how well it remembers a book's first half.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SettingsError

START = re.compile(r"^\*\*\* ?START OF.*$", re.MULTILINE)
END = re.compile(r"^\*\*\* ?END OF.*$", re.MULTILINE)
VALIDATION_SHARE = 20  # one book in twenty goes to validation


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def normalise(text: str) -> str:
    """Unix line breaks; paragraphs unwrapped onto one line each, separated by a blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = re.split(r"\n\s*\n", text)
    joined = (" ".join(line.strip() for line in p.split("\n") if line.strip()) for p in paragraphs)
    return "\n\n".join(p for p in joined if p)


def strip_gutenberg(text: str) -> str:
    """The body between the `*** START OF` and `*** END OF` lines (the whole text if they are absent)."""
    start, end = START.search(text), END.search(text)
    if start:
        text = text[start.end() : end.start() if end and end.start() > start.end() else len(text)]
    elif end:
        text = text[: end.start()]
    return text


BOM = b"\xef\xbb\xbf"


MAX_TEXT_BYTES = 1 << 30  # what one text file may hold (a training book, a text to score)


def _read_bounded(path: Path, limit: int) -> bytes | int:
    """Up to `limit + 1` bytes of a file, read a MiB at a time; the offset of its first zero byte (after a
    byte-order mark) instead, as soon as one is read: a binary file or a device is refused at once."""
    chunks, size = [], 0
    with open(path, "rb") as f:
        while size <= limit:
            chunk = f.read(min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            zero = chunk.find(b"\0", len(BOM) if size == 0 and chunk.startswith(BOM) else 0)
            if zero >= 0:
                return size + zero
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)


def read_text_file(path: Path, limit: int = MAX_TEXT_BYTES, what: str = "a text file") -> str:
    """A UTF-8 text file (with or without a byte-order mark), or a SettingsError that says what is wrong
    and where: a binary file and a byte that is not UTF-8 are named with their byte offset; a file (or a
    device, such as /dev/zero) larger than `limit` bytes is refused after reading `limit` bytes."""
    try:
        data = _read_bounded(path, limit)
    except FileNotFoundError:
        raise SettingsError(f"No such file: {path}") from None
    except IsADirectoryError:
        raise SettingsError(f"{path} is a folder, not a text file.") from None
    except OSError as exc:
        raise SettingsError(f"Cannot read {path}: {exc.strerror}.") from None
    if isinstance(data, int):
        raise SettingsError(f"{path} looks like a binary file, not text: it has a zero byte at offset {data}.")
    if len(data) > limit:
        raise SettingsError(f"{path} is larger than {limit / 2**20:,.0f} MiB, more than {what} can be; give a "
                            "smaller file.")
    start = len(BOM) if data.startswith(BOM) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        raise SettingsError(f"{path} is not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} is not "
                            "valid UTF-8; save the file as UTF-8 and try again.") from None


def load_documents(source: Path) -> list[Document]:
    """Every .txt file of a folder (sorted by name), or one file, cleaned."""
    if source.is_dir():
        files = sorted(source.glob("*.txt"))
        if not files:
            raise SettingsError(f"No .txt files in {source}.")
    elif source.is_file():
        files = [source]
    else:
        raise SettingsError(f"No training text at {source}.")
    docs = [Document(f.stem, normalise(strip_gutenberg(read_text_file(f)))) for f in files]
    empty = [f for f, d in zip(files, docs) if not d.text]
    if empty:
        shown = ", ".join(str(f) for f in empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
        raise SettingsError(f"{shown} {'has' if len(empty) == 1 else 'have'} no text (empty, or only blank lines or "
                            "a Project Gutenberg header); remove or fill it.")
    return docs


def is_validation(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % VALIDATION_SHARE == 0


def split_documents(docs: list[Document]) -> tuple[list[Document], list[Document]]:
    """Whole documents into train and validation; a single document is split at a paragraph, 90/10."""
    if len(docs) == 1:
        text = docs[0].text
        cut = text.find("\n\n", int(len(text) * 0.9))
        cut = cut if cut > 0 else int(len(text) * 0.9)
        return [Document(docs[0].name, text[:cut])], [Document(docs[0].name + "-validation", text[cut:].strip())]
    val = [d for d in docs if is_validation(d.name)] or docs[-1:]
    train = [d for d in docs if d not in val]
    return train, val

"""What goes wrong with the history file, in words: `HistoryError`, and SQLite's errors read for a person (the disk's
trouble, full, read-only or failing, told apart from damage to the file; SQLite's own message kept to one line)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from engine.files import disk_problem


class HistoryError(Exception):
    """The history file cannot be used, or cannot be written to now; it has been left exactly as it was."""


DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_ERROR, sqlite3.SQLITE_SCHEMA)


def primary(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code for an error (its extended code less the detail)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _disk_errno(folder: Path, exc: sqlite3.Error) -> int | None:
    """The system's error number for a SQLite error that is the disk's (full, read-only, failing); None for
    any other."""
    code = primary(exc)
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


def disk_words(path: Path | str, exc: sqlite3.Error) -> str | None:
    """What is wrong with the disk under the history file `path` behind a SQLite error, in words (None: not the
    disk)."""
    folder = Path(path).parent
    number = _disk_errno(folder, exc)
    return None if number is None else disk_problem(folder, OSError(number, os.strerror(number)))


def said(exc: Exception, limit: int = 200) -> str:
    """SQLite's message on one line, cut short (a damaged schema's message quotes the whole schema)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"

"""Small state files written so that nothing is ever half-written, and what to say when a disk refuses.

`write_atomic` writes a temporary file in the same folder, flushes and fsyncs it, and renames it over
the old one: at every moment the file is either the old one, whole, or the new one, whole. A failure
(a full disk, a read-only folder) leaves the old file as it was and raises a `StorageError` whose one
line names the folder and what is wrong with it (`disk_problem`). `set_aside` moves a file that
cannot be read out of the way (`NAME.broken-<time>`), so that writing a fresh one never destroys it.

No torch, nothing of the engine but its errors: the window's settings and history use this too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from engine.errors import StorageError


def _free(folder: Path) -> str:
    """How much room the disk holding `folder` has left, for a person ("1.2 MB free")."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def _errno(exc: Exception) -> int | None:
    """The system's error number behind an OSError, or behind a library's error that quotes it
    (safetensors says "I/O error: No space left on device (os error 28)")."""
    if isinstance(exc, OSError):
        return exc.errno
    found = re.search(r"os error (\d+)", str(exc))
    return int(found.group(1)) if found else None


def disk_problem(folder: Path, exc: Exception) -> str:
    """What went wrong writing in `folder`, in words: a full disk with its free space, a read-only
    folder, or the system's own message."""
    folder = Path(folder)
    number = _errno(exc)
    if number in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"the disk holding {folder} is full ({_free(folder)})"
    if number in (errno.EROFS, errno.EACCES, errno.EPERM):
        kind = "on a read-only disk" if number == errno.EROFS else "read-only for this account"
        return f"{folder} is {kind}"
    return f"{folder}: {getattr(exc, 'strerror', None) or exc}"


def storage_error(folder: Path, exc: Exception, what: str, kept: str = "") -> StorageError:
    """A `StorageError` for a write into `folder` that failed: '<what>: <the problem>[; <kept>].'"""
    tail = f"; {kept}" if kept else ""
    return StorageError(f"{what}: {disk_problem(folder, exc)}{tail}.")


def write_atomic(path: Path, data: str | bytes, mode: int | None = None, what: str | None = None) -> None:
    """Write `data` (text as UTF-8) to `path` through a temporary file in the same folder, fsynced and
    renamed over the old file. `mode` sets the permissions (0o600 for secrets) before the rename, so the
    file is never readable by others even for a moment; without it the file keeps the old one's, or a new
    one gets what any program's new file gets (0o666 less the umask). On failure the old file stays as it
    was and a `StorageError` says why (`what`: how the message names the file, by default its path)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            mode = _mode_of(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # made 0o600
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as exc:
        raise storage_error(path.parent, exc, f"Cannot save {what or path}",
                            "the previous file is kept as it was" if path.exists() else "") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def give_usual_mode(path: Path) -> None:
    """Give a file a library wrote as 0o600 (safetensors does) the permissions of any new file: 0o666 less
    the umask. For what a person keeps and shares (an adapter, a converted model), not for secrets."""
    os.chmod(path, 0o666 & ~_umask())


def _mode_of(path: Path) -> int:
    """The permissions a rewritten `path` keeps: its own, or for a new file 0o666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux); else set and put
    back at once."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def set_aside(path: Path) -> Path:
    """Move a file that cannot be read to `NAME.broken-<time>` beside it (kept, never overwritten) and
    return where it went; a `StorageError` if it cannot be moved."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.broken-{stamp}-{n}")
    try:
        os.replace(path, target)
    except OSError as exc:
        raise storage_error(path.parent, exc, f"Cannot move the unreadable {path} aside") from None
    return target


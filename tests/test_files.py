"""State files written atomically, on real full and read-only disks (a small tmpfs), and unreadable files
kept aside: nothing a person saved is ever left half-written or overwritten."""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from engine.errors import StorageError
from engine.files import set_aside, write_atomic
from tests.helpers import cli, fill_disk, remount_read_only, small_disk


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, "old")
    write_atomic(path, '{"new": true}')
    assert path.read_text() == '{"new": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_file_gets_the_usual_permissions_and_a_rewritten_one_keeps_its_own(tmp_path):
    """An exported history or template is as readable as any file the person makes (not 0o600, as the
    temporary file it is written through); one they restricted stays restricted."""
    import os

    umask = os.umask(0o022)
    try:
        path = tmp_path / "export.md"
        write_atomic(path, "mine")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        write_atomic(path, "mine, again")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o077)
        write_atomic(tmp_path / "private.json", "{}")
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(umask)


def test_a_secret_file_is_never_readable_by_others(tmp_path):
    path = tmp_path / "settings.json"
    write_atomic(path, "key", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_full_disk_keeps_the_old_file_and_says_where_and_how_much_is_free(tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        path = disk / "imported.json"
        write_atomic(path, json.dumps(["/a", "/b"]))
        fill_disk(disk)
        with pytest.raises(StorageError) as caught:
            write_atomic(path, json.dumps(["/a", "/b", "/c" * 50_000]))
        message = str(caught.value)
        assert f"the disk holding {disk} is full" in message and "free" in message
        assert "previous file is kept" in message and "\n" not in message
        assert json.loads(path.read_text()) == ["/a", "/b"]
        assert sorted(p.name for p in disk.iterdir()) == [".filler", "imported.json"]  # no temporary left


def test_a_read_only_disk_is_named_read_only(tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        write_atomic(disk / "settings.json", "{}")
        remount_read_only(disk)
        with pytest.raises(StorageError, match="read-only"):
            write_atomic(disk / "settings.json", '{"a": 1}')
        assert (disk / "settings.json").read_text() == "{}"


def test_set_aside_keeps_every_broken_copy(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{,")
    first = set_aside(path)
    path.write_text("{,,")
    second = set_aside(path)
    assert first != second and not path.exists()
    assert first.read_text() == "{," and second.read_text() == "{,,"
    assert first.name.startswith("settings.json.broken-")


def test_models_import_on_a_full_disk_forgets_nothing(tmp_path, tiny_model_dir):
    """The trial's case: on a full disk `models import` left imported.json as cut-off JSON, and every
    imported model was forgotten."""
    with small_disk(tmp_path / "data", "256k") as data:
        env = {"GPT2_DESKTOP_DATA_DIR": str(data)}
        first = cli("models", "import", str(tiny_model_dir), env=env)
        assert first.returncode == 0, first.stderr
        registry = data / "models" / "imported.json"
        before = registry.read_text()
        other = shutil.copytree(tiny_model_dir, tmp_path / ("x" * 200))  # a long path: the list grows past the room left
        fill_disk(data)
        second = cli("models", "import", str(other), env=env)
        assert second.returncode == 2
        assert "is full" in second.stderr and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert registry.read_text() == before
        listed = cli("models", "list", env=env)
        assert "tiny" in listed.stdout


def test_an_unreadable_imported_list_is_kept_aside_not_overwritten(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    registry = data / "models" / "imported.json"
    registry.write_text('["/somewhere/mine",')  # cut off
    done = cli("models", "import", str(tiny_model_dir), env={"GPT2_DESKTOP_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    kept = [p for p in (data / "models").iterdir() if p.name.startswith("imported.json.broken-")]
    assert len(kept) == 1 and kept[0].read_text() == '["/somewhere/mine",'
    assert json.loads(registry.read_text()) == [str(tiny_model_dir.resolve())]


def test_a_reduced_copy_that_cannot_be_kept_is_said_and_leaves_nothing(tmp_path, tiny_model_dir):
    """`generate --dtype int8` on a full data disk: it still writes, from a copy made in memory, and says in
    one line why the copy was not kept; no half-written copy is left in prepared/."""
    with small_disk(tmp_path / "data", "64k") as data:
        done = cli("generate", "--model", str(tiny_model_dir), "--prompt", "Once", "--max-new-tokens", "3",
                   "--dtype", "int8", "--temperature", "0", env={"GPT2_DESKTOP_DATA_DIR": str(data)})
        assert done.returncode == 0, done.stderr
        notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
        assert len(notes) == 1 and f"the disk holding {data / 'prepared'} is full" in notes[0], done.stderr
        assert "Traceback" not in done.stderr and done.stdout.strip()
        assert not [p for p in data.rglob("*") if p.is_file()]


def test_a_read_only_data_folder_is_named_read_only(tmp_path, tiny_model_dir):
    with small_disk(tmp_path / "data", "64k") as data:
        remount_read_only(data)
        done = cli("models", "import", str(tiny_model_dir), env={"GPT2_DESKTOP_DATA_DIR": str(data)})
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"{data / 'models'} is on a read-only disk" in done.stderr or \
            f"{data} is on a read-only disk" in done.stderr, done.stderr

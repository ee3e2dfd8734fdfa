"""The window on a damaged history, a damaged settings file and a full or read-only disk: it starts, says in
its banner what is wrong, goes on working, and writes nothing over what it could not use. Opened as
`gpt2-desktop` opens it (app.main: `open_history`, `AppSettings.open`), on real files damaged for real."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from app.history.errors import HistoryError
from app.history.store import History, open_history
from app.settings import AppSettings
from app.shell.window import MainWindow
from tests.helpers import (_garbage_at, fill_disk, remount_read_only, small_disk, type_and_send, wait_idle,
                           write_history, HISTORY_DAMAGE)


@pytest.fixture
def start_window(show_window, dirs, tiny_model_dir):
    """`make(settings=None)`: the window as app.main opens it, on the history file in dirs/data and the settings
    file in dirs/config, whatever state they are in; `settings` given: those instead of the file's (the tiny
    model, greedy, 12 tokens, unless `model` says otherwise)."""

    def make(wait=True, from_file=False, **settings):
        history, history_problem = open_history(dirs / "data" / "history.sqlite3")
        if from_file:
            opened = AppSettings.open(dirs / "config" / "settings.json")
            chosen, path, settings_problem = opened.settings, opened.path, opened.problem
        else:
            chosen = AppSettings(**{"model": str(tiny_model_dir), "temperature": 0.0, "max_new_tokens": 12,
                                    **settings})
            path, settings_problem = dirs / "config" / "settings.json", None
        window = MainWindow(history, chosen, path, history_problem=history_problem,
                            settings_problem=settings_problem)
        return show_window(window, history, wait)

    return make


def history_file(dirs) -> Path:
    """A real history (app.history.store's own, six conversations) where the window looks for it."""
    (dirs / "data").mkdir(parents=True, exist_ok=True)
    return write_history(dirs / "data" / "history.sqlite3")


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def banner(window) -> str:
    return window.banner.label.text() if window.banner.isVisibleTo(window) else ""


# the settings file

BROKEN_SETTINGS = {
    "a trailing comma": lambda path: path.write_text(
        '{\n  "temperature": 1.25,\n'
        '  "servers": {"http://gpu:8000/v1": {"key": "sk-secret", "models": ["gpt2"]}},\n}\n'),
    "not an object": lambda path: path.write_text('["temperature", 1.25]'),
    "unreadable (a folder in its place)": lambda path: (path / "inside").mkdir(parents=True),
    "not UTF-8": lambda path: path.write_bytes(b'{"model": "caf\xe9"}'),
}


@pytest.mark.parametrize("kind", ["corrupt", "newer"])
def test_unusable_history_file_is_kept_and_reported(qtbot, dirs, kind):
    path = dirs / "history.sqlite3"
    if kind == "corrupt":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE conversations (id INTEGER PRIMARY KEY)")
            db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY)")
            db.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="newer" if kind == "newer" else "not a readable"):
        History(path)
    assert path.read_bytes() == before
    window = MainWindow(History(":memory:"), AppSettings(model=str(dirs / "none")), dirs / "s.json",
                        history_problem="History problem here.")
    qtbot.addWidget(window)
    assert "History problem here." in window.banner.label.text()
    window.close()


def test_settings_file_with_bad_values_gives_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"temperature": "hot", "top_k": 5, "seed": 3, "unknown": 1}))
    s = AppSettings.load(path)
    assert s.temperature == AppSettings().temperature and s.top_k == 5 and s.seed == 3
    path.write_text("{broken")
    assert AppSettings.load(path) == AppSettings()


# the history

@pytest.mark.parametrize("how", HISTORY_DAMAGE)
def test_a_damaged_history_is_said_in_the_banner_and_the_session_goes_on_without_touching_it(
        qtbot, start_window, dirs, how):  # noqa: F811
    damage, says = HISTORY_DAMAGE[how]
    path = history_file(dirs)
    damage(path)
    before = digest(path)
    window = start_window()
    assert says in banner(window) and "will not be saved" in banner(window), banner(window)
    assert window.sidebar.list.count() == 0
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    [reply] = [m for m in window.history.messages(window.conversations.current_id) if m.role == "assistant"]
    assert reply.content and reply.content in window.chat.transcript.toPlainText()  # it works, in memory
    window.close()
    assert digest(path) == before
    assert sorted(p.name for p in (dirs / "data").iterdir()) == ["history.sqlite3"]  # no backup-v-1, no journal


def test_a_zero_length_history_is_a_new_one(qtbot, start_window, dirs):  # noqa: F811
    path = dirs / "data" / "history.sqlite3"
    path.parent.mkdir()
    path.touch()
    window = start_window()
    assert banner(window) == ""
    type_and_send(qtbot, window, "Hello there")
    wait_idle(qtbot, window)
    window.close()
    history, problem = open_history(path)
    assert problem is None and [c.title for c in history.conversations()] == ["Hello there"]
    history.close()


def test_damage_found_after_the_start_is_said_and_the_file_is_left_alone_from_then_on(qtbot, start_window,
                                                                                       dirs):  # noqa: F811
    path = history_file(dirs)
    window = start_window()
    assert banner(window) == "" and window.sidebar.list.count() == 6
    window.sidebar.list.setCurrentRow(1)  # a chat (the notebook is the latest)
    _garbage_at(8192)(path)  # page 3 (sqlite_sequence) goes bad: the next message written reads it
    damaged = digest(path)
    type_and_send(qtbot, window, "Hello there")
    assert "turned out to be damaged" in banner(window) and "will not be saved" in banner(window), banner(window)
    assert window.sidebar.list.count() == 0 and window.chat.draft() == "Hello there"  # nothing typed is lost
    type_and_send(qtbot, window, "")  # Enter again: it goes, into this session's history in memory
    wait_idle(qtbot, window)
    assert [m.role for m in window.history.messages(window.conversations.current_id)] == ["user", "assistant"]
    window.close()
    assert digest(path) == damaged
    assert sorted(p.name for p in (dirs / "data").iterdir()) == ["history.sqlite3"]


def test_a_full_disk_is_said_and_what_was_typed_stays(qtbot, start_window, dirs):  # noqa: F811
    with small_disk(dirs / "data", "256k") as data:
        window = start_window()
        type_and_send(qtbot, window, "First")
        wait_idle(qtbot, window)
        fill_disk(data)
        before = digest(data / "history.sqlite3")
        window.chat.composer.insertPlainText("A long question " * 4000)
        type_and_send(qtbot, window, "")
        assert f"the disk holding {data} is full" in banner(window), banner(window)
        assert "will not be saved" not in banner(window)  # the file is sound: the next write may well work
        assert window.chat.draft().startswith("A long question") and window.active is None
        assert digest(data / "history.sqlite3") == before
        window.close()
        assert sorted(p.name for p in data.iterdir()) == [".filler", "history.sqlite3"]


def test_a_damaged_history_and_a_model_that_fails_are_both_in_the_banner(qtbot, start_window, dirs):  # noqa: F811
    path = history_file(dirs)
    HISTORY_DAMAGE["a newer version"][0](path)
    window = start_window(model=str(dirs / "gone"))  # the model used last time is not there any more
    qtbot.waitUntil(lambda: "could not be loaded" in banner(window), timeout=20000)
    text = banner(window)
    assert "newer gpt2-desktop" in text and "will not be saved" in text and "Using the embedded model" in text
    assert window.banner.open_model.isVisibleTo(window)
    window.model.use(None)  # the model's problem is over; the history's is not
    qtbot.waitUntil(lambda: "could not be loaded" not in banner(window), timeout=20000)
    assert "newer gpt2-desktop" in banner(window) and not window.banner.open_model.isVisibleTo(window)


@pytest.mark.parametrize("how", BROKEN_SETTINGS)
def test_a_settings_file_that_cannot_be_used_is_kept_aside_said_and_never_written_over(qtbot, start_window, dirs,
                                                                                        how):  # noqa: F811
    path = dirs / "config" / "settings.json"
    path.parent.mkdir()
    BROKEN_SETTINGS[how](path)
    original = path.read_bytes() if path.is_file() else None
    window = start_window(from_file=True, wait=False)
    [kept] = [p for p in path.parent.iterdir() if p.name.startswith("settings.json.broken-")]
    assert "could not be used" in banner(window) and kept.name in banner(window), banner(window)
    assert window.settings == AppSettings()  # the defaults
    assert original is None or kept.read_bytes() == original
    window.close()
    assert json.loads(path.read_text())["temperature"] == AppSettings().temperature  # a fresh file beside it
    assert original is None or kept.read_bytes() == original
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["settings.json", kept.name])


def test_a_broken_settings_file_that_cannot_be_moved_aside_is_not_written_over(qtbot, start_window,
                                                                                dirs):  # noqa: F811
    with small_disk(dirs / "config", "64k") as config:
        (config / "settings.json").write_text('{"temperature": 1.25,}')
        remount_read_only(config)
        window = start_window(from_file=True, wait=False)
        assert "read-only" in banner(window) and "will not be saved" in banner(window), banner(window)
        window.settings_panel.temperature.setValue(0.5)  # a change: nothing is tried, nothing said
        assert "Cannot save" not in banner(window)
        window.close()
        assert (config / "settings.json").read_text() == '{"temperature": 1.25,}'


@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_settings_on_a_full_or_read_only_disk_are_said_while_running_and_in_one_line_at_exit(
        qtbot, start_window, dirs, capfd, disk):  # noqa: F811
    with small_disk(dirs / "config", "64k") as config:
        AppSettings(temperature=1.25).save(config / "settings.json")
        saved = (config / "settings.json").read_text()
        fill_disk(config) if disk == "full" else remount_read_only(config)
        window = start_window()
        window.settings_panel.temperature.setValue(0.5)
        says = f"the disk holding {config} is full" if disk == "full" else f"{config} is on a read-only disk"
        assert says in banner(window) and "Cannot save the settings" in banner(window), banner(window)
        capfd.readouterr()
        window.close()  # what raised out of closeEvent before
        lines = capfd.readouterr().err.strip().splitlines()
        [line] = [line for line in lines if "settings" in line]
        assert line.startswith("gpt2-desktop: Cannot save the settings: ") and says in line, lines
        assert line.endswith("the previous file is kept as it was.")
        assert (config / "settings.json").read_text() == saved


def test_settings_with_a_few_bad_values_keep_the_good_ones_and_name_the_others(qtbot, start_window,
                                                                                dirs):  # noqa: F811
    path = dirs / "config" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"temperature": "hot", "top_k": 5, "device": "tpu", "text_size": 100000}))
    window = start_window(from_file=True, wait=False)
    assert "could not be used" in banner(window) and "temperature, device" in banner(window), banner(window)
    assert window.settings.top_k == 5 and window.settings.text_size == 40
    assert window.font().pointSize() == 40  # not 100000 points
    assert not any(p.name.startswith("settings.json.broken-") for p in path.parent.iterdir())


def test_three_problems_at_800_by_500_are_all_there_to_read_and_the_window_stays_that_size(qtbot, start_window,
                                                                                           dirs):  # noqa: F811
    from PySide6.QtWidgets import QScrollArea

    HISTORY_DAMAGE["a newer version"][0](history_file(dirs))
    (dirs / "config").mkdir()
    BROKEN_SETTINGS["a trailing comma"](dirs / "config" / "settings.json")
    window = start_window(from_file=True)
    window.resize(800, 500)
    window.model.use(str(dirs / "gone"))
    qtbot.waitUntil(lambda: len(window.banner.messages()) == 3 and window.model_info is not None, timeout=20000)
    qtbot.wait(50)
    label = window.banner.label
    needed, shown = label.heightForWidth(label.width()), label.visibleRegion().boundingRect().height()
    scroll = label.parentWidget().parentWidget()
    assert shown >= needed or isinstance(scroll, QScrollArea) and scroll.verticalScrollBar().maximum() >= needed - shown
    assert window.height() <= 500

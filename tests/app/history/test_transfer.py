"""Export and import of conversations: every message and version comes back, through the command line
(`gpt2-desktop history`) and through the functions the window's File menu uses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.history.store import FIRST, History
from app.history.transfer import from_json, to_json, to_markdown
from tests.helpers import HISTORY_DAMAGE, cli, fill_disk, remount_read_only, small_disk, write_history

SETTINGS = {"temperature": 0.7, "top_k": 40, "max_new_tokens": 64, "stop": ["\nYou:"]}


def fill(history: History) -> None:
    """A chat with an edited question and a regenerated reply (versions), non-ASCII text, and a notebook."""
    chat = history.create_conversation("Füchse und Krähen — 狐", "chat")
    q1 = history.add_message(chat, "user", "Was sagt der Fuchs? 🦊")
    r1 = history.add_message(chat, "assistant", "Ring-ding-ding «ça»", model="gpt2", settings=SETTINGS,
                             stop_reason="eos")
    history.add_message(chat, "user", "Und die Krähe?")
    history.add_message(chat, "assistant", "Krah.", model="tales-7m", settings=SETTINGS, stop_reason="cancelled")
    history.add_message(chat, "assistant", "Ein zweiter Versuch", model="gpt2", settings={**SETTINGS, "seed": 2},
                        stop_reason="length", after=q1)  # regenerated: a second version of reply 1
    history.add_message(chat, "user", "Edited first question ✓", after=FIRST)  # a second version of turn 1
    history.show_version(chat, r1)  # the first version is the one shown
    history.set_draft(chat, "ein Entwurf")
    book = history.create_conversation("Notebook", "notebook")
    history.add_message(book, "assistant", " und so weiter…", model="gpt2", settings=SETTINGS, stop_reason="length",
                        document="Es war einmal und so weiter…")


def comparable(history: History) -> list:
    """Everything a conversation holds, with ids replaced by places (imported ones get new ids)."""
    out = []
    for conv in reversed(history.conversations()):
        record = history.record(conv.id)
        place = {m.id: i for i, m in enumerate(record.messages)}
        out.append((conv.title, conv.mode, conv.document, conv.draft, conv.created_at, conv.updated_at,
                    place.get(conv.leaf_id),
                    [(m.role, m.content, m.created_at, m.model, m.settings, m.stop_reason, place.get(m.parent_id))
                     for m in record.messages]))
    return out


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_json_round_trip_through_the_command_line_keeps_every_message_and_version(data_dir, tmp_path,
                                                                                  monkeypatch):
    history = History(data_dir / "history.sqlite3")
    fill(history)
    expected = comparable(history)
    thread = [m.content for m in history.messages(history.conversations()[-1].id)]
    history.close()
    exported = tmp_path / "all.json"
    result = cli("history", "export", "--format", "json", "--output", str(exported))
    assert result.returncode == 0, result.stderr
    text = exported.read_text(encoding="utf-8")
    assert "Füchse und Krähen — 狐" in text and "🦊" in text  # UTF-8 as written, not \u escapes
    data = json.loads(text)
    assert data["format"] == "gpt2-desktop-history" and data["version"] == 1
    assert len(data["conversations"][0]["messages"]) == 6  # all versions, not only the ones shown

    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "elsewhere"))
    result = cli("history", "import", str(exported))
    assert result.returncode == 0 and "Imported 2 conversations" in result.stdout, result.stderr
    other = History(tmp_path / "elsewhere" / "history.sqlite3")
    assert comparable(other) == expected
    assert [m.content for m in other.messages(other.conversations()[-1].id)] == thread  # the same version shown
    other.close()
    assert cli("history", "import", str(exported)).returncode == 0  # again: added beside, nothing overwritten
    other = History(tmp_path / "elsewhere" / "history.sqlite3")
    assert sorted(map(repr, comparable(other))) == sorted(map(repr, expected + expected))
    assert len({c.id for c in other.conversations()}) == 4
    other.close()


def test_markdown_export_of_one_conversation_to_standard_output(data_dir):
    history = History(data_dir / "history.sqlite3")
    fill(history)
    chat = history.conversations()[-1].id
    history.close()
    result = subprocess.run([sys.executable, "-m", "app.main", "history", "export", "--format", "markdown",
                             "--conversation", str(chat)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode("utf-8")
    assert text.startswith("# Füchse und Krähen — 狐\n")
    assert "**You** (version 1 of 2):\n\nWas sagt der Fuchs? 🦊" in text
    assert "**gpt2** (version 1 of 2):\n\nRing-ding-ding «ça»" in text and "**tales-7m**:\n\nKrah." in text
    assert "Es war einmal" not in text  # only the conversation asked for


def test_markdown_marks_a_reply_that_was_stopped_or_cut_short(tmp_path):
    """As the window marks them: `cancelled` (Stop) and `interrupted` (a server that went away mid-reply)."""
    history = History(tmp_path / "history.sqlite3")
    remote = "gpt2-xl @ http://gpu-box:8000/v1"
    chat = history.create_conversation("From afar", "chat")
    for question, answer, reason in [("Tell me a story", "Once upon", "interrupted"),
                                     ("Go on", "and then", "cancelled"), ("Thanks", "The end.", "eos")]:
        history.add_message(chat, "user", question)
        history.add_message(chat, "assistant", answer, model=remote, stop_reason=reason)
    text = to_markdown([history.record(chat)])
    history.close()
    assert f"**{remote}**:\n\nOnce upon\n\n*(cut short: the server went away)*\n" in text
    assert "and then\n\n*(stopped)*\n" in text
    assert "The end.\n" in text and text.count("*(") == 2


def test_markdown_shows_the_preamble_a_chat_was_written_with(tmp_path):
    history = History(tmp_path / "history.sqlite3")
    chat = history.create_conversation("With a preamble", "chat")
    history.set_options(chat, preamble="You are a pirate.\nSpeak briefly.\n")
    history.add_message(chat, "user", "Hello")
    plain = history.create_conversation("Without", "chat")
    history.add_message(plain, "user", "Hi")
    with_preamble, without = to_markdown([history.record(chat)]), to_markdown([history.record(plain)])
    history.close()
    assert with_preamble.startswith("# With a preamble\n\n**Preamble:**\n\nYou are a pirate.\nSpeak briefly.\n\n**You**:")
    assert "Preamble" not in without


@pytest.mark.parametrize("content, says", [
    ("{broken", "is not JSON"),
    ('{"format": "something else"}', "not a gpt2-desktop history export"),
    ('{"format": "gpt2-desktop-history", "version": 99, "conversations": []}', "version 99"),
    ('{"format": "gpt2-desktop-history", "version": 1, "conversations": [{"messages": [{"id": 1, "role": "robot",'
     ' "content": "x"}]}]}', "role 'robot'"),
    ('{"format": "gpt2-desktop-history", "version": 1, "conversations": [{"messages": [{"id": 2, "parent_id": 1,'
     ' "role": "user", "content": "x"}]}]}', "parent_id 1"),
])
def test_a_file_that_cannot_be_imported_is_refused_with_one_line_and_nothing_added(data_dir, tmp_path, content,
                                                                                   says):
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    result = cli("history", "import", str(bad))
    assert result.returncode == 2 and says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    history = History(data_dir / "history.sqlite3")
    assert history.conversations() == []
    history.close()


def test_command_line_mistakes_exit_2_with_one_line(data_dir):
    for args, says in [(["history"], "name an action"), (["history", "export", "--conversation", "7"],
                                                          "no conversation 7"),
                       (["history", "export", "--format", "pdf"], "invalid choice")]:
        result = cli(*args)
        assert result.returncode == 2 and says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "history" in cli("--help").stdout


def test_the_history_command_loads_neither_qt_nor_torch(data_dir):
    code = ("import sys\nfrom app.main import main\nmain(['history', 'export'])\n"
            "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("[]"), result.stdout[-300:] + result.stderr[-300:]


def test_the_json_reader_takes_what_the_writer_writes(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    fill(history)
    records = [history.record(c.id) for c in history.conversations()]
    assert from_json(to_json(records)) == records
    history.close()


# A damaged history, a full or read-only disk: one line and exit status 2, the history exactly as it was.

def digest(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_file(path, conversations=1, size=100) -> None:
    """An export of `conversations` chats, each with one message of `size` characters."""
    history = History(":memory:")
    for i in range(conversations):
        history.add_message(history.create_conversation(f"Imported {i}"), "user", "x" * size)
    path.write_text(to_json([history.record(c.id) for c in history.conversations()]), encoding="utf-8")
    history.close()


@pytest.mark.parametrize("how", HISTORY_DAMAGE)
def test_every_history_command_on_a_damaged_file_says_so_in_one_line_and_changes_nothing(data_dir, tmp_path, how):
    damage, says = HISTORY_DAMAGE[how]
    data_dir.mkdir()
    path = write_history(data_dir / "history.sqlite3")
    damage(path)
    before = digest(path)
    export_file(tmp_path / "other.json")
    for args in (["export", "--format", "json"], ["import", str(tmp_path / "other.json")], ["list"]):
        result = cli("history", *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr and result.stdout == "", args
    assert digest(path) == before
    assert sorted(p.name for p in data_dir.iterdir()) == ["history.sqlite3"]  # no backup-v-1, no journal


def test_import_on_a_full_disk_names_the_folder_and_its_free_space_and_leaves_the_history_as_it_was(tmp_path):
    with small_disk(tmp_path / "data", "256k") as data:
        env = {"GPT2_DESKTOP_DATA_DIR": str(data)}
        history = History(data / "history.sqlite3")
        history.add_message(history.create_conversation("Mine"), "user", "hello")
        history.close()
        before = digest(data / "history.sqlite3")
        export_file(tmp_path / "big.json", conversations=40, size=20_000)  # 800 kB: more than the disk holds
        result = cli("history", "import", str(tmp_path / "big.json"), env=env)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"the disk holding {data} is full" in result.stderr and "free)" in result.stderr, result.stderr
        assert result.stderr.startswith("gpt2-desktop history: Nothing was imported:") and "Traceback" not in result.stderr
        assert digest(data / "history.sqlite3") == before
        assert sorted(p.name for p in data.iterdir()) == ["history.sqlite3"]  # no journal, no temporary
        listed = cli("history", "list", env=env)
        assert listed.returncode == 0 and listed.stdout.count("\n") == 1 and "Mine" in listed.stdout
        fill_disk(data)  # and an export that does not fit is not left cut off
        exported = cli("history", "export", "--output", str(data / "out.json"), env=env)
        assert exported.returncode == 2 and exported.stderr.count("\n") == 1, exported.stderr
        assert f"the disk holding {data} is full" in exported.stderr
        assert sorted(p.name for p in data.iterdir()) == [".filler", "history.sqlite3"]


def test_import_into_a_read_only_data_folder_says_it_is_read_only(tmp_path):
    with small_disk(tmp_path / "data", "256k") as data:
        env = {"GPT2_DESKTOP_DATA_DIR": str(data)}
        history = History(data / "history.sqlite3")
        history.add_message(history.create_conversation("Mine"), "user", "hello")
        history.close()
        before = digest(data / "history.sqlite3")
        export_file(tmp_path / "other.json")
        remount_read_only(data)
        result = cli("history", "import", str(tmp_path / "other.json"), env=env)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"{data} is on a read-only disk" in result.stderr and "Traceback" not in result.stderr
        assert digest(data / "history.sqlite3") == before
        assert cli("history", "list", env=env).stdout.count("\n") == 1  # reading still works

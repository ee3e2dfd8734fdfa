"""The history on its own (app.history.store, .schema, .records): a real SQLite file in tmp_path, no window."""

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from app.history.errors import HistoryError
from app.history.schema import SCHEMA_VERSION
from app.history.store import History
from tests.helpers import HISTORY_DAMAGE, _garbage_at, fill_disk, remount_read_only, small_disk, write_history


def later():
    """Let the clock move on: changes are stamped to the millisecond."""
    time.sleep(0.005)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data" / "history.sqlite3"


@pytest.fixture
def history(path):
    h = History(path)
    yield h
    h.close()


def test_a_new_file_gets_the_schema_and_its_version(path, history):
    assert path.is_file()  # the missing folder was made
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert history.conversations() == []


def test_an_empty_file_is_a_new_history(tmp_path):
    path = tmp_path / "history.sqlite3"
    path.touch()
    h = History(path)
    assert h.conversations() == []
    h.create_conversation("first")
    h.close()
    assert [c.title for c in History(path).conversations()] == ["first"]


def test_conversations_create_rename_delete(history):
    chat = history.create_conversation("A chat")
    notebook = history.create_conversation("A notebook", "notebook")
    conv = history.conversation(chat)
    assert (conv.id, conv.title, conv.mode, conv.document) == (chat, "A chat", "chat", "")
    assert history.conversation(notebook).mode == "notebook"
    history.rename_conversation(chat, "Renamed")
    assert history.conversation(chat).title == "Renamed"
    history.delete_conversation(chat)
    assert history.conversation(chat) is None
    assert [c.id for c in history.conversations()] == [notebook]


def test_deleting_a_conversation_deletes_its_messages(path, history):
    conv = history.create_conversation("c")
    history.add_message(conv, "user", "hello")
    other = history.create_conversation("other")
    history.add_message(other, "user", "kept")
    history.delete_conversation(conv)
    assert history.messages(conv) == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT content FROM messages").fetchall() == [("kept",)]


def test_most_recently_changed_first(history):
    first = history.create_conversation("first")
    later()
    second = history.create_conversation("second")
    later()
    third = history.create_conversation("third")
    assert [c.id for c in history.conversations()] == [third, second, first]
    later()
    history.add_message(first, "user", "news")
    assert [c.id for c in history.conversations()] == [first, third, second]
    later()
    history.set_document(second, "text")
    assert [c.id for c in history.conversations()] == [second, first, third]


def test_search_looks_at_titles_documents_and_messages(history):
    by_title = history.create_conversation("About foxes")
    by_document = history.create_conversation("Notebook", "notebook")
    history.set_document(by_document, "The fox ran away.")
    by_message = history.create_conversation("Untitled")
    history.add_message(by_message, "assistant", "A FOX, said the crow.")
    history.create_conversation("About crows")
    assert {c.id for c in history.conversations("fox")} == {by_title, by_document, by_message}
    assert history.conversations("badger") == []
    assert len(history.conversations("")) == 4
    assert history.matches("fox") == {by_document: "The fox ran away.", by_message: "A FOX, said the crow."}


def test_search_takes_wildcards_literally(history):
    percent = history.create_conversation("100% sure")
    underscore = history.create_conversation("snake_case")
    backslash = history.create_conversation(r"C:\temp")
    history.create_conversation("plain words")
    assert [c.id for c in history.conversations("%")] == [percent]
    assert [c.id for c in history.conversations("_")] == [underscore]
    assert [c.id for c in history.conversations("\\")] == [backslash]


def test_messages_round_trip_with_model_settings_and_stop_reason(history):
    conv = history.create_conversation("c")
    user = history.add_message(conv, "user", "Hi")
    settings = {"temperature": 0.7, "top_k": 40, "seed": None, "stop": ["\nYou:"]}
    reply = history.add_message(conv, "assistant", "Hello!", model="tiny", settings=settings, stop_reason="stop")
    messages = history.messages(conv)
    assert [m.id for m in messages] == [user, reply]
    assert (messages[0].role, messages[0].content, messages[0].model, messages[0].settings,
            messages[0].stop_reason) == ("user", "Hi", None, None, None)
    assert (messages[1].role, messages[1].content, messages[1].model, messages[1].settings,
            messages[1].stop_reason) == ("assistant", "Hello!", "tiny", settings, "stop")
    assert all(m.conversation_id == conv and m.created_at for m in messages)


def test_a_notebook_reply_and_its_document_are_saved_together(history):
    conv = history.create_conversation("n", "notebook")
    history.set_document(conv, "Once upon")
    history.add_message(conv, "assistant", " a time", model="tiny", stop_reason="length", document="Once upon a time")
    assert history.conversation(conv).document == "Once upon a time"
    assert history.messages(conv)[0].content == " a time"


def test_a_new_version_of_a_turn_keeps_the_old_one_with_the_turns_after_it(history):
    conv = history.create_conversation("c")
    other = history.create_conversation("other")
    q1, a1, q2, a2 = [history.add_message(conv, role, text) for role, text in
                      [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]]
    other_message = history.add_message(other, "user", "elsewhere")
    q2b = history.add_message(conv, "user", "q2, better", after=a1)  # an edit of q2
    a2b = history.add_message(conv, "assistant", "a2, again")
    assert [m.content for m in history.messages(conv)] == ["q1", "a1", "q2, better", "a2, again"]
    shown = history.messages(conv)
    assert history.versions(shown[2]) == [q2, q2b] and history.versions(shown[3]) == [a2b]
    assert history.version_places(shown) == {q2b: (2, 2)}
    history.show_version(conv, q2)  # back to the first version: its reply comes back with it
    assert [m.id for m in history.messages(conv)] == [q1, a1, q2, a2]
    history.show_version(conv, q2b)
    assert [m.id for m in history.messages(conv)] == [q1, a1, q2b, a2b]
    assert [m.id for m in history.messages(other)] == [other_message]


def test_a_first_message_can_have_versions_too(history):
    from app.history.store import FIRST

    conv = history.create_conversation("c")
    q = history.add_message(conv, "user", "hello")
    history.add_message(conv, "assistant", "hi")
    q2 = history.add_message(conv, "user", "good morning", after=FIRST)
    assert [m.content for m in history.messages(conv)] == ["good morning"]
    assert history.versions(history.messages(conv)[0]) == [q, q2]
    history.show_version(conv, q)
    assert [m.content for m in history.messages(conv)] == ["hello", "hi"]


def test_a_regenerated_reply_is_a_version_and_ids_are_never_reused(history):
    conv = history.create_conversation("c")
    question = history.add_message(conv, "user", "q")
    reply = history.add_message(conv, "assistant", "a")
    again = history.add_message(conv, "assistant", "another", after=question)
    assert again > reply and history.versions(history.messages(conv)[1]) == [reply, again]


def test_reopening_the_file_keeps_everything(path):
    h = History(path)
    chat = h.create_conversation("Chat")
    h.add_message(chat, "user", "Remember me")
    h.add_message(chat, "assistant", "I will", model="tiny", settings={"seed": 3}, stop_reason="eos")
    notebook = h.create_conversation("Notes", "notebook")
    h.set_document(notebook, "Some text")
    conversations, messages = h.conversations(), h.messages(chat)
    h.close()
    again = History(path)
    try:
        assert again.conversations() == conversations
        assert again.messages(chat) == messages
        assert again.conversation(notebook).document == "Some text"
    finally:
        again.close()


def _newer_history(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE conversations (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def _other_database(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")


@pytest.mark.parametrize("make, says", [
    (lambda path: path.write_bytes(b"this is not a database" * 100), "not a readable history file"),
    (_newer_history, "newer gpt2-desktop"),
    (_other_database, "not a gpt2-desktop history file"),
])
def test_an_unusable_file_raises_and_is_left_untouched(tmp_path, make, says):
    path = tmp_path / "history.sqlite3"
    make(path)
    before = path.read_bytes()
    with pytest.raises(HistoryError, match=says) as raised:
        History(path)
    assert "left untouched" in str(raised.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3"]  # no journal or WAL beside it


def test_an_in_memory_history_works():
    h = History(":memory:")
    conv = h.create_conversation("c")
    h.add_message(conv, "user", "hi")
    assert [m.content for m in h.messages(conv)] == ["hi"]
    h.close()


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "history-0.1.0.sqlite3"  # written by the 0.1.0 code itself


MESSAGES_0_1_0 = ("SELECT id, conversation_id, role, content, created_at, model, settings, stop_reason FROM messages "
                  "ORDER BY id")


def _rows(path, sql):
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_a_0_1_0_history_is_upgraded_in_place_with_everything_kept(tmp_path):
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(FIXTURE, path)
    conversations_before = _rows(path, "SELECT id, title, mode, document, created_at, updated_at FROM conversations")
    messages_before = _rows(path, MESSAGES_0_1_0)
    assert _rows(path, "PRAGMA user_version") == [(1,)] and len(messages_before) == 7
    h = History(path)
    try:
        assert h.backup == tmp_path / "history.sqlite3.backup-v1"
        assert [c.title for c in h.conversations()] == [c[1] for c in sorted(conversations_before, key=lambda c: (c[5], c[0]), reverse=True)]
        fox = next(c for c in h.conversations() if c.title == "A story about a fox")
        assert [m.content for m in h.messages(fox.id)][0] == "Tell me about the fox 🦊 and the crow."
        assert h.messages(fox.id)[1].settings["top_p"] == 0.95 and h.messages(fox.id)[1].model == "tales-7m"
        notebook = next(c for c in h.conversations() if c.mode == "notebook")
        assert notebook.document.startswith("Chapter One") and fox.draft == ""
        h.set_draft(fox.id, "half a thought")  # what version 2 adds works on the upgraded file
        assert h.conversation(fox.id).draft == "half a thought"
        thread = h.messages(fox.id)  # version 3: the messages, in order, are the thread shown
        assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"]
        assert [h.versions(m) for m in thread] == [[m.id] for m in thread]
        assert (fox.model, fox.preset, fox.preamble) == (None, None, "")  # version 4: its own model and so on
        h.set_options(fox.id, model="gpt2", preset="Precise", preamble="Be brief.")
        assert h.conversation(fox.id).preamble == "Be brief." and h.conversation(fox.id).model == "gpt2"
        assert (fox.edit_id, fox.edit_text) == (None, "")  # version 6: an edit in progress, kept like a draft
        h.set_draft(fox.id, "half a thought", edit_id=thread[0].id, edit_text="Tell me about the crow")
        assert (h.conversation(fox.id).edit_id, h.conversation(fox.id).edit_text) == (thread[0].id,
                                                                                      "Tell me about the crow")
    finally:
        h.close()
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _rows(path, "SELECT id, title, mode, document, created_at, updated_at FROM conversations") == conversations_before
    assert _rows(path, MESSAGES_0_1_0) == messages_before
    backup = tmp_path / "history.sqlite3.backup-v1"  # the file as 0.1.0 left it, beside the upgraded one
    assert _rows(backup, "PRAGMA user_version") == [(1,)] and _rows(backup, MESSAGES_0_1_0) == messages_before
    again = History(path)  # already upgraded: nothing more happens
    again.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3", "history.sqlite3.backup-v1"]


def test_a_failed_upgrade_changes_nothing(tmp_path, monkeypatch):
    import app.history.schema as history_module

    path = tmp_path / "history.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = path.read_bytes()
    broken = ("ALTER TABLE conversations ADD COLUMN draft TEXT NOT NULL DEFAULT ''", "THIS IS NOT SQL")
    monkeypatch.setitem(history_module.MIGRATIONS, 1, broken)
    with pytest.raises(HistoryError):
        History(path)
    assert path.read_bytes() == before  # the first step was rolled back with the second
    assert (tmp_path / "history.sqlite3.backup-v1").is_file()
    monkeypatch.undo()
    h = History(path)  # and the next start upgrades it
    assert h.conversations() and all(c.draft == "" for c in h.conversations())
    h.close()


def test_drafts_are_kept_and_do_not_reorder_the_list(history):
    first = history.create_conversation("first")
    later()
    second = history.create_conversation("second")
    history.set_draft(first, "unsent ✓")
    assert history.conversation(first).draft == "unsent ✓"
    assert [c.id for c in history.conversations()] == [second, first]
    message = history.add_message(second, "user", "old words")
    later()
    third = history.create_conversation("third")
    history.set_draft(second, "unsent", edit_id=message, edit_text="new words")  # an edit in progress too
    conv = history.conversation(second)
    assert (conv.draft, conv.edit_id, conv.edit_text) == ("unsent", message, "new words")
    assert [c.id for c in history.conversations()] == [third, second, first]
    history.set_draft(second, "unsent")
    assert (history.conversation(second).edit_id, history.conversation(second).edit_text) == (None, "")


def test_no_upgrade_without_a_backup(tmp_path, monkeypatch):
    import errno

    import app.history.schema as history_module

    path = tmp_path / "history.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = path.read_bytes()

    def disk_full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(history_module.os, "replace", disk_full)  # the backup's last step fails
    with pytest.raises(HistoryError, match="no backup copy could be written.*is full"):
        History(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3"]  # no half-written copy either


def _v3_file(path):
    """A history as version 3 (conversation versions, no token data) wrote it: the v3 schema, two messages."""
    import app.history.schema as history_module

    import re

    schema = history_module.SCHEMA.replace(
        "parent_id INTEGER REFERENCES messages(id),  -- the message before it; its siblings are its versions "
        "(version 3)\n    tokens BLOB", "parent_id INTEGER REFERENCES messages(id)")
    schema = re.sub(r",  -- the last message[^\n]*\n(?:[^\n]*\(version [46]\)\n)+", "\n", schema)  # no v4, v6 columns
    with sqlite3.connect(path) as db:
        db.executescript(schema)
        db.execute("PRAGMA user_version = 3")
        db.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('v3', 'a', 'a')")
        db.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'hi', 'a')")
        db.execute("INSERT INTO messages (conversation_id, role, content, created_at, parent_id) "
                   "VALUES (1, 'assistant', 'hello', 'a', 1)")
        db.execute("UPDATE conversations SET leaf_id = 2")
    assert "tokens" not in {r[1] for r in _rows(path, "PRAGMA table_info(messages)")}


def test_a_version_3_history_gains_token_data_in_place(tmp_path):
    from app.probe.token_data import Choice, ReplyTokens, TokenInfo

    path = tmp_path / "history.sqlite3"
    _v3_file(path)
    h = History(path)
    try:
        assert h.backup == tmp_path / "history.sqlite3.backup-v3"
        assert [m.content for m in h.messages(1)] == ["hi", "hello"] and h.tokens([1, 2]) == {}
        data = ReplyTokens.of([TokenInfo(7, " there", -0.5, 2, (Choice(3, " here", -0.4), Choice(7, " there", -0.5)))])
        reply = h.add_message(1, "assistant", "there", tokens=data.encode())
        assert ReplyTokens.decode(h.tokens([reply])[reply]) == data
    finally:
        h.close()
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(6,)]


def test_token_data_is_compact_and_round_trips():
    import random

    from app.probe.token_data import Choice, ReplyTokens, TokenInfo

    rng = random.Random(0)
    tokens = []
    for i in range(2000):
        top = tuple(Choice(t, f" w{t}", -j * 0.7 - rng.random()) for j, t in enumerate(rng.sample(range(3000), 10)))
        tokens.append(TokenInfo(top[0].token, " wörd🦊"[: 1 + i % 6], -rng.random() * 9, 1 + i % 1500, top))
    data = ReplyTokens.of(tokens)
    started = time.perf_counter()
    blob = data.encode()
    back = ReplyTokens.decode(blob)
    assert time.perf_counter() - started < 0.1  # on the GUI thread: a reply is saved, a conversation opened
    assert back.text() == data.text() and [t.rank for t in back.tokens] == [t.rank for t in tokens]
    assert [t.token for t in back.tokens] == [t.token for t in tokens]
    assert all(abs(a.logprob - b.logprob) < 1e-5 for a, b in zip(back.tokens, tokens))
    assert all(abs(x.logprob - y.logprob) < 1e-3 and x.token == y.token and x.text == y.text
               for a, b in zip(back.tokens, tokens) for x, y in zip(a.top, b.top))
    assert len(blob) < 2000 * 60, len(blob)  # a reply uses a few thousand distinct tokens
    assert ReplyTokens.decode(b"not token data") is None


# Damaged files: a real history written by History, then damaged as a disk, a crash or a hand would.

@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_history(tmp_path_factory.mktemp("written") / "history.sqlite3")


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def everything(history: History) -> list:
    """Every conversation with every message (what an export reads)."""
    return [history.record(c.id) for c in history.conversations()]


@pytest.mark.parametrize("how", HISTORY_DAMAGE)
def test_a_damaged_file_is_refused_in_one_line_and_left_exactly_as_it_was(written, tmp_path, how):
    damage, says = HISTORY_DAMAGE[how]
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(written, path)
    damage(path)
    before = digest(path)
    with pytest.raises(HistoryError) as raised:
        History(path)
    message = str(raised.value)
    assert says in message and "left untouched" in message and "\n" not in message, message
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3"]  # no backup-v-1, no journal


def test_a_change_cut_off_by_a_crash_is_undone_and_the_history_opens(written, tmp_path):
    """A hot journal beside the file (a crash mid-transaction): SQLite's own recovery puts the file back as its
    last finished change left it. A read-only look cannot do that, and the file was refused at every start."""
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(written, path)
    intact = digest(path)
    crash = ("import os, sqlite3, sys\n"
             "db = sqlite3.connect(sys.argv[1])\n"
             "db.execute('PRAGMA cache_size = 1')\n"  # the change spills into the file before its commit
             "db.execute('BEGIN IMMEDIATE')\n"
             "db.execute(\"UPDATE messages SET content = 'half-written ' || content\")\n"
             "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", crash, str(path)], check=True, timeout=60)
    journal = tmp_path / "history.sqlite3-journal"
    assert journal.is_file() and digest(path) != intact  # cut off halfway: the file holds part of the change
    h = History(path)
    try:
        assert not any(m.content.startswith("half-written") for r in everything(h) for m in r.messages)
        assert len(h.conversations()) == 6
    finally:
        h.close()
    assert digest(path) == intact and not journal.exists()


@pytest.mark.parametrize("offset, use", [
    (8192, lambda h: h.create_conversation("new")),  # page 3: sqlite_sequence, read by the first insert
    (6 * 4096, everything),  # page 7: messages, read by an export
])
def test_damage_found_only_after_opening_leaves_the_file_alone_and_goes_on_in_memory(written, tmp_path, offset, use):
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(written, path)
    h = History(path)  # the file is sound when opened ...
    try:
        _garbage_at(offset)(path)  # ... and a page goes bad meanwhile
        damaged = digest(path)
        with pytest.raises(HistoryError, match="turned out to be damaged") as raised:
            use(h)
        assert "\n" not in str(raised.value) and h.detached == str(raised.value)
        assert h.conversations() == []  # the rest of the session: in memory
        chat = h.create_conversation("after")
        h.add_message(chat, "user", "still works")
        assert [m.content for m in h.messages(chat)] == ["still works"]
    finally:
        h.close()
    assert digest(path) == damaged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3"]


def test_a_full_or_read_only_disk_fails_one_write_in_one_line_and_keeps_the_file(tmp_path):
    with small_disk(tmp_path / "data", "256k") as data:
        h = History(data / "history.sqlite3")
        try:
            chat = h.create_conversation("mine")
            h.add_message(chat, "user", "hi")
            fill_disk(data)
            before = digest(data / "history.sqlite3")
            with pytest.raises(HistoryError) as raised:
                h.add_message(chat, "user", "x" * 300_000)
            message = str(raised.value)
            assert f"the disk holding {data} is full" in message and "free" in message and "\n" not in message
            assert "the history is as it was" in message
            assert digest(data / "history.sqlite3") == before
            assert sorted(p.name for p in data.iterdir()) == [".filler", "history.sqlite3"]
            assert h.detached is None and [m.content for m in h.messages(chat)] == ["hi"]  # still the file
        finally:
            h.close()
        (data / ".filler").unlink()
        remount_read_only(data)
        h = History(data / "history.sqlite3")  # it reads ...
        try:
            assert [m.content for m in h.messages(chat)] == ["hi"]
            with pytest.raises(HistoryError, match=f"{data} is on a read-only disk"):  # ... but cannot be written
                h.add_message(chat, "user", "again")
            assert [m.content for m in h.messages(chat)] == ["hi"] and h.detached is None
        finally:
            h.close()


def test_text_that_is_not_utf_8_reads_with_replacement_characters(written, tmp_path):
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(written, path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE messages SET content = CAST(X'48C3' AS TEXT) WHERE id = 1")  # a cut-off character
    h = History(path)
    try:
        assert h.record(1).messages[0].content == "H\ufffd"
    finally:
        h.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 65535), garbage=st.binary(min_size=1, max_size=600))
def test_any_damage_is_refused_or_read_but_never_an_error_of_another_kind(written, offset, garbage):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.sqlite3"
        shutil.copyfile(written, path)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(garbage)
        before = digest(path)
        try:
            h = History(path)
        except HistoryError as exc:
            assert "\n" not in str(exc)
            assert digest(path) == before and [p.name for p in Path(folder).iterdir()] == ["history.sqlite3"]
            return
        try:
            everything(h)
            h.add_message(h.create_conversation("new"), "user", "hi")
        except HistoryError as exc:
            assert "\n" not in str(exc)
        finally:
            h.close()


def test_a_damaged_schema_is_said_in_one_short_line(tmp_path):
    path = tmp_path / "history.sqlite3"
    History(path).close()
    with sqlite3.connect(path) as db:  # a stray byte in the tables' definition, as a bad sector leaves it
        db.execute("PRAGMA writable_schema = ON")
        db.execute("UPDATE sqlite_master SET sql = replace(sql, 'CHECK (mode', '\"CHECK (mode') "
                   "WHERE name = 'conversations'")
    before = digest(path)
    with pytest.raises(HistoryError, match="damaged") as raised:
        History(path)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 400  # not the whole schema, line by line
    assert digest(path) == before

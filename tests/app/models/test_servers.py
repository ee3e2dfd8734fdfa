"""Remote servers in the window (app.models.servers, app.models.server_dialog): Models > Add server lists a
server's models, Use makes one the chat's model, replies come from it; a server that cannot be reached keeps
what was typed and is not offered a model folder; a long remote conversation leaves its oldest turns out."""

from __future__ import annotations

import re
import signal

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLineEdit

from app.history.transfer import to_markdown
from app.models.servers import remote_name
from engine.store.local import embedded_model_folder
from tests.helpers import running_server, type_and_send, wait_idle, wait_loaded


# 7: messages in the window's terms, the Add server dialog, the banner


def test_the_add_server_dialog_keeps_the_address_and_key_when_the_check_fails(qtbot, open_window, tiny_model_dir,
                                                                             tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--api-key", "right") as server:
        window = open_window()

        def fill():  # as a person does: the two fields by their names, then Add
            dialog = QApplication.activeModalWidget()
            fields = {field.accessibleName(): field for field in dialog.findChildren(QLineEdit)}
            fields["Server address"].setText(server.base_url)
            fields["API key"].setText("wrong")
            dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()

        QTimer.singleShot(100, fill)
        window.models.ask_add_server()  # (it waited here for the dialog, which closed whatever the server said)
        dialog = window.models.server_dialog
        qtbot.waitUntil(lambda: dialog is not None and "refused" in dialog.note.text(), timeout=20000)
        assert dialog.isVisible() and dialog.url.text() == server.base_url and dialog.key.text() == "wrong"
        assert "--api-key" not in dialog.note.text() and "API key" in dialog.note.text()
        assert dialog.url.width() >= dialog.url.fontMetrics().horizontalAdvance(server.base_url)
        dialog.key.setText("right")
        dialog.buttons.accepted.emit()
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=20000)
        assert window.models.row_of(remote_name("tiny", server.base_url)) is not None


def test_a_server_that_cannot_be_reached_is_not_offered_a_model_folder(qtbot, open_window):
    url = "http://127.0.0.1:9/v1"  # nothing listens there
    window = open_window(model=remote_name("gpt2-xl", url), servers={url: {"key": "", "models": ["gpt2-xl"]}},
                         wait=False)
    wait_loaded(qtbot, window, embedded_model_folder())
    assert window.banner.isVisibleTo(window) and "Cannot reach" in window.banner.label.text()
    assert not window.banner.open_model.isVisibleTo(window)  # another folder would not help


def test_a_servers_models_are_listed_used_and_remembered(qtbot, open_window, wide_model_dir, tmp_path):  # noqa: F811
    with running_server(wide_model_dir, tmp_path, "--slide") as server:
        window = open_window(wide=True)
        window.models.add_server("http://127.0.0.1:9/v1")  # nothing listens there
        qtbot.waitUntil(lambda: "Cannot reach" in window.models.message.text(), timeout=20000)
        assert window.models.message.property("error")
        window.models.add_server(server.base_url.removesuffix("/v1"))  # /v1 is added
        name = remote_name("tiny-wide", server.base_url)
        qtbot.waitUntil(lambda: window.models.row_of(name) is not None, timeout=20000)
        assert window.settings.servers[server.base_url]["models"] == ["tiny-wide"]
        window.models.use_selected()
        qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.server == server.base_url,
                        timeout=20000)
        assert window.model_info.context_window == 4096
        assert server.base_url in window.status_bar.device_label.text()
        type_and_send(qtbot, window, "Hello from afar")
        wait_idle(qtbot, window)
        reply = window.history.messages(window.conversations.current_id)[-1]
        assert reply.role == "assistant" and reply.model == name and reply.stop_reason in ("length", "stop")
        assert name in window.chat.transcript.toPlainText()  # the reply is headed with its server too
        assert window.settings.model == name  # remembered, with its server
        # The server goes away while it writes: what came is kept, and marked.
        window.settings.max_new_tokens = 3000
        type_and_send(qtbot, window, "Tell me a long story")
        qtbot.waitUntil(lambda: window.active is not None and len(window.active.text) > 3, timeout=20000)
        server.send_signal(signal.SIGKILL)
        wait_idle(qtbot, window)
        cut = window.history.messages(window.conversations.current_id)[-1]
        assert cut.role == "assistant" and cut.stop_reason == "interrupted" and cut.content
        assert "server went away" in window.chat.transcript.toPlainText()
        assert "went away" in window.banner.label.text()
        assert window.status_bar.context_label.text() == "context — / 4,096"  # not the last whole reply's figure
        exported = to_markdown([window.history.record(window.conversations.current_id)])
        assert f"**{name}**:" in exported and exported.rstrip().endswith("*(cut short: the server went away)*")


def test_a_long_remote_conversation_leaves_its_oldest_turns_out(qtbot, open_window, tiny_model_dir,  # noqa: F811
                                                                 tmp_path):
    """The server (128 tokens, no --slide) refuses a prompt and reply that do not fit its window: the window's
    conversation goes on as with a local model, its oldest tokens left out, and the status bar and the line
    under the message box say what the server counted."""
    with running_server(tiny_model_dir, tmp_path) as server:
        name = remote_name("tiny", server.base_url)
        window = open_window(model=name, max_new_tokens=60)
        assert window.model_info.server == server.base_url and window.model_info.context_window == 128
        assert window.chat.count_label.text() == "Tokens are counted by the server when sent"
        type_and_send(qtbot, window, "Hello there")
        wait_idle(qtbot, window)
        first = window.history.messages(window.conversations.current_id)[-1]
        assert first.role == "assistant" and first.model == name
        bar = window.status_bar
        written = int(bar.speed_label.text().split()[0])
        assert written > 0 and (written == 1 or "tok/s" in bar.speed_label.text())
        assert re.fullmatch(r"first token \d+ ms", bar.ttft_label.text())
        used = re.fullmatch(r"context (\d+) / 128", bar.context_label.text())
        assert used and written < int(used[1]) <= 128
        assert window.chat.count_label.text().endswith(f"the last reply filled {used[1]} / 128")
        for turn in range(3):  # each about 100 tokens: the conversation soon outgrows the window
            type_and_send(qtbot, window, f"Turn {turn}: tell me about the fox and the crow and the old king. " * 7)
            wait_idle(qtbot, window)
            reply = window.history.messages(window.conversations.current_id)[-1]
            assert reply.role == "assistant" and reply.stop_reason in ("length", "stop"), window.banner.label.text()
        assert "Generation failed" not in window.banner.label.text()
        assert "were left out of the prompt" in bar.currentMessage()
        used = re.fullmatch(r"context (\d+) / 128", bar.context_label.text())
        assert used and int(used[1]) <= 128
        window.conversations.new_notebook()  # a notebook's continuation: the same figures
        window.notebook.editor.setPlainText("Once upon a time")
        window.conversations.continue_notebook()
        wait_idle(qtbot, window)
        used = re.fullmatch(r"context (\d+) / 128", bar.context_label.text())
        assert used and int(used[1]) > 4 and re.fullmatch(r"\d+ tokens? .*", bar.speed_label.text())
        assert window.conversations.context_tokens() == int(used[1])
        window.notebook.editor.setPlainText("Another text")  # edited: no longer what the server counted
        window.conversations.store_document()
        assert window.conversations.context_tokens() is None

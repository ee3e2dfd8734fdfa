"""A remote server's models in the window: Models > Add server lists them, Use makes one the chat's model,
replies come from the server, named with it, a server that goes away mid-reply leaves the text written so
far, marked; a conversation longer than the server's window loses its oldest turns as a local one does.
The server is our own `gpt2-desktop serve`, a real process on 127.0.0.1."""

from __future__ import annotations

import re
import signal

from app.history.transfer import to_markdown
from app.models.servers import remote_name
from tests.helpers import running_server
from tests.helpers import type_and_send, wait_idle


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

"""A remote server's models in the window: Models > Add server lists them, Use makes one the chat's model,
replies come from the server, a server that goes away mid-reply leaves the text written so far, marked.
The server is our own `gpt2-desktop serve`, a real process on 127.0.0.1."""

from __future__ import annotations

import signal

from app.servers import remote_name
from tests.helpers import running_server
from tests.test_window import open_window, dirs, type_and_send, wait_idle  # noqa: F401 - fixtures


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
        assert reply.role == "assistant" and reply.model == "tiny-wide" and reply.stop_reason in ("length", "stop")
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

"""The window's Server switch: a real `gpt2-desktop serve` process started and stopped from the panel,
called by the official openai client, its requests and clients counted."""

from __future__ import annotations

import socket

import openai
import pytest

from app.server_panel import ServerPanel


@pytest.fixture
def panel(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    widget = ServerPanel()
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def test_switch_serves_the_model_counts_requests_and_stops(panel, qtbot, tiny_model_dir):
    panel.set_model(str(tiny_model_dir), "float32")
    panel.port.setValue(0)  # any free port
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "running", timeout=60000)
    assert panel.address.text().startswith("http://127.0.0.1:") and panel.copy.isEnabled()
    assert not panel.port.isEnabled()  # fixed while it runs
    client = openai.OpenAI(base_url=panel.url, api_key="x", max_retries=0)
    assert client.completions.create(model="tiny", prompt="Hello", max_tokens=3).usage.completion_tokens == 3
    client.models.list()
    qtbot.waitUntil(lambda: panel.answered == 2, timeout=10000)
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "127.0.0.1"
    assert panel.table.item(0, 1).text() == "2" and "2 requests" in panel.counts.text()
    panel.copy.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == panel.url
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "stopped", timeout=15000)
    assert "answered 2 requests" in panel.status.text() and not panel.copy.isEnabled()


def test_a_taken_port_is_said_plainly(panel, qtbot, tiny_model_dir):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        panel.set_model(str(tiny_model_dir), "float32")
        panel.port.setValue(taken.getsockname()[1])
        panel.switch.click()
        qtbot.waitUntil(lambda: panel.state == "failed", timeout=60000)
    finally:
        taken.close()
    assert "another port" in panel.status.text() and not panel.switch.isChecked()
    assert "--port" not in panel.status.text() and "Port box" in panel.status.text()  # the window's own words
    assert "gpt2-desktop serve:" not in panel.status.text()
    assert panel.port.isEnabled()


def test_other_computers_need_a_key(panel, qtbot):
    panel.others.setChecked(True)
    panel.switch.click()
    assert panel.state == "failed" and "API key" in panel.status.text() and panel.process is None

"""The window's Server switch: a real `gpt2-desktop serve` process started and stopped from the panel,
called by the official openai client, its requests and clients counted."""

from __future__ import annotations

import json
import socket
import urllib.request

import openai
import pytest

from app.server.panel import ServerPanel


@pytest.fixture
def panel(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPT2_DESKTOP_CONFIG_DIR", str(tmp_path / "config"))
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
    qtbot.waitUntil(lambda: panel.answered == 1, timeout=10000)
    assert panel.counts.text().startswith("1 request answered, from 1 client · 1 completion written")
    client.models.list()
    health = json.loads(urllib.request.urlopen(panel.url.removesuffix("/v1") + "/health", timeout=10).read())
    qtbot.waitUntil(lambda: panel.answered == 3, timeout=10000)
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "127.0.0.1"
    assert panel.table.item(0, 1).text() == "3" and panel.completions == health["served"] == 1
    assert panel.counts.text().startswith("3 requests answered, from 1 client · 1 completion written (what "
                                          "/health counts as “served”")
    panel.copy.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == panel.url
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "stopped", timeout=15000)
    assert "It answered 3 requests (1 completion)." in panel.status.text() and not panel.copy.isEnabled()


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


def test_the_port_and_other_computers_are_remembered_for_the_next_start(panel, qtbot, tmp_path):
    panel.port.setValue(8123)
    panel.others.setChecked(True)
    panel.key.setText("a-secret-key")
    panel.shutdown()  # the window closes
    again = ServerPanel()
    qtbot.addWidget(again)
    assert again.port.value() == 8123 and again.others.isChecked() and again.key.text() == ""
    kept = (tmp_path / "config" / "server.json").read_text()
    assert "8123" in kept and "a-secret-key" not in kept  # the key is never written down


def test_an_unreadable_server_file_is_set_aside_and_the_defaults_used(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "server.json").write_text('{"port": "eighty"}')
    widget = ServerPanel()
    qtbot.addWidget(widget)
    assert widget.port.value() == 8080 and not widget.others.isChecked()
    assert [p.name.startswith("server.json.broken-") for p in (tmp_path / "config").iterdir()] == [True]


def test_the_embedded_model_is_served_under_its_one_name(panel, qtbot):
    panel.set_model(None, "float32")  # the window's model is the embedded one
    panel.port.setValue(0)
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "running", timeout=60000)
    assert panel.status.text().startswith("Serving tales-7m at http://127.0.0.1:")
    panel.set_model("openai-community/gpt2", "float32")  # the window moved on: the running server keeps its own
    assert panel.status.text().startswith("Serving tales-7m at ") and "The window now uses gpt2" in panel.status.text()


def test_the_last_request_is_shown_whole_in_its_column(panel, qtbot, tiny_model_dir):
    panel.set_model(str(tiny_model_dir), "float32")
    panel.port.setValue(0)
    panel.resize(800, 400)
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "running", timeout=60000)
    urllib.request.urlopen(panel.url.removesuffix("/v1") + "/health", timeout=10).read()
    qtbot.waitUntil(lambda: panel.answered == 1, timeout=10000)
    last = panel.table.item(0, 2)
    assert last.text() == "GET /health → 200"
    assert panel.table.columnWidth(2) > panel.table.fontMetrics().horizontalAdvance(last.text())

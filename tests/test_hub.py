"""Downloads from a real HTTP server on 127.0.0.1 that answers like the Hugging Face Hub."""

import json
import socket
import threading

import pytest
import torch
from PySide6.QtCore import Qt

from tests.helpers import make_model_folder
from engine import load_model
from engine.errors import DownloadCancelled, HubError, HubOffline
from engine.store.hub import download_model
from engine.store.local import import_folder, local_models, remove_model
from tests.fakehub import FakeHub, repo_from_folder
from tests.helpers import cli

REPO = "acme/tiny-gpt2"


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory):
    # 13 MB of weights: more than one 10 MB download chunk, so a dropped line can be resumed mid-file.
    return make_model_folder(tmp_path_factory.mktemp("hubrepo") / "tiny-gpt2", n_embd=64, n_layer=1, n_head=4,
                             n_positions=64)


@pytest.fixture
def hub(tmp_path, monkeypatch, repo_folder):
    server = FakeHub()
    files = repo_from_folder(repo_folder)
    files["README.md"] = b"# tiny"
    files["flax_model.msgpack"] = b"not needed" * 100
    server.repos[REPO] = files
    url = server.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield server
    server.stop()


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """HF_ENDPOINT pointing at a port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))


def gets(server, filename):
    return [r for r in server.requests if r[0] == "GET" and r[1].endswith("/" + filename)]


def test_download_fetches_only_what_the_engine_needs_and_generates(hub, repo_folder):
    seen = []
    folder = download_model(REPO, progress=seen.append)
    assert not gets(hub, "README.md") and not gets(hub, "flax_model.msgpack")
    assert seen and seen[-1].done_bytes == seen[-1].total_bytes
    loaded = load_model(REPO)
    assert loaded.folder == folder
    ids = torch.tensor([loaded.tokenizer.encode("Hello there")])
    assert torch.allclose(loaded.model(ids), load_model(repo_folder).model(ids))
    assert [m.name for m in local_models() if m.kind == "downloaded"] == [REPO]


def test_dropped_connection_is_resumed_mid_file(hub, repo_folder):
    hub.drop_after[f"{REPO}/model.safetensors"] = 11 * 1024 * 1024
    download_model(REPO)
    ranges = [r[2] for r in gets(hub, "model.safetensors")]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] == f"bytes={10 * 1024 * 1024}-"
    load_model(REPO)


def test_cancelled_download_continues_where_it_stopped(hub):
    cancel = threading.Event()

    def progress(p):
        if p.filename == "model.safetensors":
            cancel.set()

    hub.slow = 0.002
    with pytest.raises(DownloadCancelled):
        download_model(REPO, progress=progress, cancel=cancel)
    hub.slow = 0.0
    before = len(hub.requests)
    download_model(REPO)
    again = [r[1].rsplit("/", 1)[1] for r in hub.requests[before:] if r[0] == "GET" and "/resolve/" in r[1]]
    assert again == ["model.safetensors"]  # finished files are not fetched twice
    load_model(REPO)


def test_corrupted_file_is_detected_and_removed(hub):
    data = hub.repos[REPO]["model.safetensors"]
    hub.served[f"{REPO}/model.safetensors"] = data[:-10] + b"x" * 10
    with pytest.raises(HubError, match="corrupted"):
        download_model(REPO)
    with pytest.raises(Exception):
        load_model(REPO)
    del hub.served[f"{REPO}/model.safetensors"]
    download_model(REPO)
    load_model(REPO)


def test_truncated_file_is_reported(hub):
    data = hub.repos[REPO]["model.safetensors"]
    hub.served[f"{REPO}/model.safetensors"] = data[: len(data) // 2]
    with pytest.raises(HubError, match="truncated"):
        download_model(REPO)


def test_pickle_only_repo_is_converted_once(hub, repo_folder, tmp_path):
    from safetensors.torch import load_file

    files = {k: v for k, v in hub.repos[REPO].items() if k != "model.safetensors"}
    state = load_file(repo_folder / "model.safetensors")
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied, as in old checkpoints
    torch.save(state, tmp_path / "pytorch_model.bin")
    files["pytorch_model.bin"] = (tmp_path / "pytorch_model.bin").read_bytes()
    hub.repos["old/gpt2-pickle"] = files
    folder = download_model("old/gpt2-pickle")
    assert (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").exists()
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == (folder / "config.json").stat().st_mode & 0o777
    ids = torch.tensor([[464, 3290, 318]])
    assert torch.allclose(load_model("old/gpt2-pickle").model(ids), load_model(repo_folder).model(ids))
    assert any(m.name == "old/gpt2-pickle" and m.kind == "converted" for m in local_models())


def test_pickle_that_runs_code_is_refused(hub, tmp_path):
    import collections

    files = {k: v for k, v in hub.repos[REPO].items() if k != "model.safetensors"}
    torch.save({"weights": collections.Counter(a=1)}, tmp_path / "evil.bin")  # not a plain tensor dict
    files["pytorch_model.bin"] = (tmp_path / "evil.bin").read_bytes()
    hub.repos["evil/pickle"] = files
    with pytest.raises(HubError, match="not converted"):
        download_model("evil/pickle")


def one_line(result) -> str:
    """The error's one line, below the download's progress bar if that was drawn (text mode reads each of the bar's
    carriage returns as a line of its own)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    *progress, line = [text for text in result.stderr.splitlines() if text.strip()]
    assert all(p.startswith("[") and " MB/s " in p for p in progress), result.stderr
    assert line.startswith("gpt2-desktop models: "), result.stderr
    return line


def test_pickle_that_would_run_code_is_refused_in_one_line(hub, tmp_path):
    import os

    class RunsCode:
        def __reduce__(self):
            return os.system, ("echo this must not run",)

    files = {k: v for k, v in hub.repos[REPO].items() if k != "model.safetensors"}
    torch.save({"weights": RunsCode()}, tmp_path / "evil.bin")
    files["pytorch_model.bin"] = (tmp_path / "evil.bin").read_bytes()
    hub.repos["evil/code"] = files
    result = cli("models", "download", "evil/code")
    line = one_line(result)
    assert "pytorch_model.bin holds more than tensors (posix.system)" in line and "not converted" in line
    assert "weights_only" not in line and "this must not run" not in result.stdout


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "acme/tiny/gpt2", "acme/..", "acme/tiny--gpt2"])
def test_what_is_not_a_repo_id_is_refused_before_the_hub_is_asked(hub, name):
    line = one_line(cli("models", "download", name))
    assert f"{name!r} is not a Hub repo id" in line and "cannot be reached" not in line
    assert hub.requests == []


def test_unreachable_hub_says_offline_and_local_models_still_work(unreachable_hub, tiny_model_dir):
    with pytest.raises(HubOffline, match="cannot be reached"):
        download_model(REPO)
    import_folder(tiny_model_dir)
    assert load_model("tiny").folder == tiny_model_dir.resolve()
    result = cli("models", "download", REPO)
    assert result.returncode == 2 and "cannot be reached" in result.stderr and "Traceback" not in result.stderr


def test_unknown_repo_is_named(hub):
    with pytest.raises(HubError, match="no model 'nobody/nothing'"):
        download_model("nobody/nothing")


def test_import_validates_and_remove_never_touches_files(hub, tmp_path, tiny_model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "merges.txt").unlink()
    with pytest.raises(Exception, match="tokenizer"):
        import_folder(broken)
    model = import_folder(tiny_model_dir)
    assert any(m.name == "tiny" and m.kind == "imported" for m in local_models())
    remove_model("tiny")
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert not any(m.kind == "imported" for m in local_models())
    with pytest.raises(HubError, match="embedded"):
        remove_model("embedded")
    download_model(REPO)
    remove_model(REPO)
    assert not any(m.kind == "downloaded" for m in local_models())
    assert model.folder == tiny_model_dir.resolve()


def test_cli_models_download_list_remove(hub):
    result = cli("models", "download", REPO)
    assert result.returncode == 0, result.stderr
    assert "MB" in result.stderr and "ETA" in result.stderr
    listing = cli("models", "list")
    assert REPO in listing.stdout and "openai-community/gpt2-medium" in listing.stdout
    generated = cli("generate", "--model", REPO, "--prompt", "Hi", "--max-new-tokens", "3", "--json")
    assert json.loads(generated.stdout.splitlines()[-1])["done"]
    assert cli("models", "remove", REPO).returncode == 2  # no terminal to ask on: needs --yes
    assert cli("models", "remove", REPO, "--yes").returncode == 0
    missing = cli("generate", "--model", REPO, "--prompt", "Hi")
    assert missing.returncode == 2 and "models download" in missing.stderr


def test_gui_download_flow(qtbot, hub, tmp_path, tiny_model_dir):
    from app.history.store import History
    from app.settings import AppSettings
    from app.shell.window import MainWindow

    window = MainWindow(History(":memory:"), AppSettings(model=str(tiny_model_dir)), tmp_path / "settings.json")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=20000)
    view = window.models
    window.tabs.setCurrentIndex(2)
    assert view.row_of("openai-community/gpt2") is not None  # the catalog is listed offline or not
    hub.slow = 0.001
    seen = []
    view.worker.progress.connect(lambda *args: seen.append(args))
    view.repo_edit.setText(REPO)
    qtbot.keyClick(view.repo_edit, Qt.Key_Return)
    assert view.progress_host.isVisibleTo(view)
    qtbot.waitUntil(lambda: view.downloading is None, timeout=60000)
    assert seen and "ready" in view.message.text()
    row = view.row_of(REPO)
    assert view.table.item(row, 1).text() == "downloaded"
    view.table.selectRow(row)
    view.use_selected()
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.name == REPO, timeout=20000)
    assert window.settings.model == REPO
    window.close()


def test_gui_says_when_the_hub_is_unreachable(qtbot, unreachable_hub, tmp_path, tiny_model_dir):
    from app.history.store import History
    from app.settings import AppSettings
    from app.shell.window import MainWindow

    window = MainWindow(History(":memory:"), AppSettings(model=str(tiny_model_dir)), tmp_path / "settings.json")
    qtbot.addWidget(window)
    window.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: "cannot be reached" in window.models.message.text(), timeout=20000)
    window.models.download(REPO)
    qtbot.waitUntil(lambda: window.models.downloading is None, timeout=30000)
    assert "cannot be reached" in window.models.message.text()
    window.close()


def test_models_list_says_what_each_is_and_remove_takes_its_prepared_copies(qtbot, tmp_path, monkeypatch,
                                                                             tiny_model_dir, tiny_hf):
    """Issue 14 item 11: parameters for every model, the embedded model by its name, short names, what Remove does."""
    import shutil

    from app.models.view import ModelsView
    from engine.core.config import load_config
    from engine.core.prepared_names import copies_of
    from engine.store.hub import resolve_repo_id

    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    assert load_config(tiny_model_dir).parameters == sum(p.numel() for p in tiny_hf.parameters())
    assert resolve_repo_id("gpt2") == "openai-community/gpt2"
    assert resolve_repo_id("dialogpt-medium") == "microsoft/DialoGPT-medium"
    assert resolve_repo_id("someone/else") == "someone/else"

    folder = shutil.copytree(tiny_model_dir, tmp_path / "mine")
    import_folder(folder)
    load_model(folder, device="cpu", precision="int8")  # prepares a reduced copy in the data folder
    assert len(copies_of(folder)) == 1
    view = ModelsView()
    qtbot.addWidget(view)
    embedded = view.row_of("tales-7m")
    assert view.table.item(embedded, 0).text() == "tales-7m" and view.table.item(embedded, 2).text() == "7M"
    mine = view.row_of("mine")
    assert view.table.item(mine, 2).text() == "2M" and "prepared" in view.table.item(mine, 4).text()
    view.remove("mine")
    assert copies_of(folder) == [] and (folder / "config.json").exists()  # forgotten; its files stay
    assert "folder is untouched" in view.message.text()
    view.shutdown()

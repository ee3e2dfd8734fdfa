"""Bad model folders and bad command lines: a clear message, never a traceback."""

import json
import shutil

import pytest

from engine import ModelLoadError, load_model
from tests.helpers import cli

@pytest.fixture
def broken(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="No model folder"):
        load_model(tmp_path / "nope")


def test_missing_config(broken):
    (broken / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        load_model(broken)


def test_config_not_json(broken):
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(broken)


def test_missing_weights(broken):
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="No model.safetensors"):
        load_model(broken)


def test_truncated_weights(broken):
    path = broken / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(broken)


def test_garbage_weights(broken):
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(broken)


def test_pickle_only_checkpoint_is_refused(broken):
    (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(broken)


def test_shape_mismatch_names_the_weight(broken):
    edit_config(broken, n_embd=64, n_head=4)
    with pytest.raises(ModelLoadError, match="shape"):
        load_model(broken)


def test_missing_layer_is_named(broken):
    edit_config(broken, n_layer=3)
    with pytest.raises(ModelLoadError, match=r"h\.2\."):
        load_model(broken)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"activation_function": "swish"}, "activation_function"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"model_type": "llama"}, "model_type"),
        ({"n_head": 5}, "n_head"),
        ({"n_layer": 0}, "n_layer"),
    ],
)
def test_unsupported_config_names_the_field(broken, changes, field):
    edit_config(broken, **changes)
    with pytest.raises(ModelLoadError, match=field):
        load_model(broken)


def test_missing_tokenizer(broken):
    (broken / "merges.txt").unlink()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load_model(broken)


def test_cuda_requested_without_gpu(tiny_model_dir):
    import torch

    from engine import SettingsError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SettingsError, match="CUDA"):
        load_model(tiny_model_dir, device="cuda")


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "0"], "top-p"),
        (["--top-p", "1.5"], "top-p"),
        (["--top-k", "-3"], "top-k"),
        (["--max-new-tokens", "0"], "max-new-tokens"),
        (["--temperature", "warm"], "temperature"),
        (["--device", "tpu"], "device"),
    ],
)
def test_cli_bad_settings_exit_2_with_one_line(tiny_model_dir, args, fragment):
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt", "hi", *args)
    assert_one_line_error(result, fragment)


def test_cli_bad_model_folder_exits_2(broken):
    (broken / "model.safetensors").write_bytes(b"junk")
    assert_one_line_error(cli("generate", "--model", str(broken), "--prompt", "hi"), "model.safetensors")


def test_cli_missing_prompt_file_exits_2(tiny_model_dir, tmp_path):
    result = cli("generate", "--model", str(tiny_model_dir), "--prompt-file", str(tmp_path / "none.txt"))
    assert_one_line_error(result, "none.txt")


def test_cli_unknown_command_exits_2():
    assert_one_line_error(cli("fly"), "fly")

"""LoRA adapters: trained here and loaded by PEFT, made by PEFT and loaded here, with the same logits;
merged into every precision; mismatched adapters and impossible settings refused with a message."""

import json
import stat

import pytest
import torch

from engine import ModelLoadError, SettingsError, load_model
from engine.core import precisions
from engine.core.adapters import read_adapter
from engine.tooling.train import TrainSettings, train
from tests.helpers import TINY, cli, make_model_folder
from tests.helpers import story_text

LORA_TRAIN = dict(context_window=32, batch_size=4, eval_every=5, eval_batches=1, checkpoint_every=5, warmup=2,
                  lr=1e-2, min_lr=1e-3, lora=4, lora_alpha=8.0)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "mine.txt"
    path.write_text(story_text(300, seed=7).replace("fox", "badger"), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path_factory.getbasetemp() / "adapter-data"))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir, text_file):
    run = tmp_path_factory.mktemp("lora") / "run"
    adapter = train(run, TrainSettings(data=str(text_file), init=str(tiny_model_dir), steps=20, **LORA_TRAIN),
                    say=lambda m: None)
    return run, adapter


def ids_for_test(n: int = 24) -> torch.Tensor:
    return torch.randint(0, 50257, (2, n), generator=torch.Generator().manual_seed(3))


def peft_logits(base_dir, adapter_dir, ids):
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(base_dir).eval()
    with torch.no_grad():
        return PeftModel.from_pretrained(hf, adapter_dir).eval()(ids).logits


def test_lora_run_writes_peft_files_and_trains_only_the_adapters(lora_run, tiny_model_dir):
    run, adapter = lora_run
    assert adapter == run / "adapter"
    assert {p.name for p in adapter.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    modes = {stat.S_IMODE(p.stat().st_mode) for p in adapter.iterdir()}
    assert len(modes) == 1 and modes != {0o600}  # the weights as readable as the files beside them, to share
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8.0
    assert config["fan_in_fan_out"] is True and config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert sorted(config["target_modules"]) == ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight" in names
    assert len(names) == TINY["n_layer"] * 4 * 2
    # The checkpoint keeps the adapters (and their optimiser moments), not a copy of the frozen base.
    from safetensors.torch import load_file

    assert all(".lora_" in name for name in load_file(run / "checkpoint" / "model.safetensors"))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [e["val_loss"] for e in log if e["val_loss"] == e["val_loss"]]
    assert vals[-1] < vals[0]
    assert not (run / "model").exists()


def test_peft_loads_our_adapter_with_the_same_logits(lora_run, tiny_model_dir):
    _, adapter = lora_run
    ids = ids_for_test()
    ours = load_model(tiny_model_dir, device="cpu", precision="float32", adapter=adapter)
    with torch.no_grad():
        ours_logits = ours.model(ids)
        base_logits = load_model(tiny_model_dir, device="cpu", precision="float32").model(ids)
    theirs = peft_logits(tiny_model_dir, adapter, ids)
    assert (ours_logits - base_logits).abs().max() > 1e-2  # the adapter changes something
    assert torch.allclose(ours_logits, theirs, atol=1e-4, rtol=1e-5)
    assert ours.adapter == adapter and ours.folder == tiny_model_dir and ours.name.endswith("+ run")


@pytest.mark.parametrize("targets", [["c_attn", "c_proj", "c_fc"], ["attn.c_attn"]])
def test_an_adapter_peft_made_loads_here_with_the_same_logits(tiny_model_dir, tmp_path, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel

    torch.manual_seed(11)
    hf = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=3, lora_alpha=5, target_modules=targets, fan_in_fan_out=True, init_lora_weights=False,
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(hf, config).eval()
    peft_model.save_pretrained(tmp_path / "made-by-peft")
    ids = ids_for_test()
    with torch.no_grad():
        theirs = peft_model(ids).logits
    ours = load_model(tiny_model_dir, device="cpu", precision="float32", adapter=tmp_path / "made-by-peft")
    with torch.no_grad():
        assert torch.allclose(ours.model(ids), theirs, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("precision", [p for p in precisions.NAMES if "cpu" in precisions.get(p).devices])
def test_adapter_is_merged_then_quantised_in_every_precision(lora_run, tiny_model_dir, precision):
    _, adapter = lora_run
    ids = ids_for_test(8)
    exact = load_model(tiny_model_dir, device="cpu", precision="float32", adapter=adapter).model(ids)
    first = load_model(tiny_model_dir, device="cpu", precision=precision, adapter=adapter)
    again = load_model(tiny_model_dir, device="cpu", precision=precision, adapter=adapter)
    with torch.no_grad():
        logits = again.model(ids)
    assert first.precision == precision
    if first.prepared_path is not None:  # reduced: the copy is named after the base and the adapter, made once
        assert read_adapter(adapter).digest[:12] in first.prepared_path.name
        assert not again.prepared_now and again.prepared_path == first.prepared_path
    spread = exact.std()
    # 4-bit weights (groups of 32, the head's too) err most: within their documented 1.8 spreads (see
    # test_precision), and close on average.
    bound, mean = (1.8, 0.15) if precision == "int4" else (0.5, 0.1)
    assert (logits - exact).abs().max() < bound * spread
    assert (logits - exact).abs().mean() < mean * spread


def test_generate_with_an_adapter_through_the_cli(lora_run, tiny_model_dir, tmp_path):
    run, _ = lora_run
    args = ["generate", "--prompt", "The badger", "--max-new-tokens", "6", "--temperature", "0", "--json"]
    with_adapter = cli(*args, "--model", str(tiny_model_dir), "--adapter", str(run))
    assert with_adapter.returncode == 0, with_adapter.stderr
    # No --model: the base the adapter names in adapter_config.json.
    named_base = cli(*args, "--adapter", str(run / "adapter"))
    assert named_base.returncode == 0, named_base.stderr
    assert json.loads(with_adapter.stdout.splitlines()[-1])["token_ids"] == \
        json.loads(named_base.stdout.splitlines()[-1])["token_ids"]
    ours = load_model(tiny_model_dir, device="cpu", adapter=run)
    expected = ours.model(torch.tensor([ours.tokenizer.encode("The badger")]))[0, -1].argmax().item()
    assert json.loads(with_adapter.stdout.splitlines()[-1])["token_ids"][0] == expected
    for command in (["score", "--text", "The badger sat"], ["choose", "--prompt", "The", "--option", " badger",
                                                            "--option", " crow", "--json"]):
        result = cli(*command, "--adapter", str(run))
        assert result.returncode == 0, result.stderr
    text = tmp_path / "t.txt"
    text.write_text(story_text(20, seed=1).replace("fox", "badger"), encoding="utf-8")
    with_it = json.loads(cli("perplexity", "--file", str(text), "--json", "--adapter", str(run)).stdout)
    without = json.loads(cli("perplexity", "--file", str(text), "--json", "--model", str(tiny_model_dir)).stdout)
    assert with_it["bits_per_byte"] < without["bits_per_byte"]


def test_an_adapter_for_another_shape_is_refused(lora_run, tmp_path):
    _, adapter = lora_run
    wider = make_model_folder(tmp_path / "wider", n_embd=64, n_layer=2, n_head=4, n_positions=128)
    with pytest.raises(ModelLoadError, match="n_embd 32 vs 64"):
        load_model(wider, device="cpu", adapter=adapter)
    shallower = make_model_folder(tmp_path / "shallow", n_embd=32, n_layer=1, n_head=4, n_positions=128)
    with pytest.raises(ModelLoadError, match="n_layer 2 vs 1"):
        load_model(shallower, device="cpu", adapter=adapter)


def test_an_adapter_for_another_vocabulary_is_refused(lora_run, tmp_path):
    _, adapter = lora_run
    other = make_model_folder(tmp_path / "other-vocab", vocab_size=50300, **TINY)
    with pytest.raises(ModelLoadError, match="vocab_size 50257 vs 50300"):
        load_model(other, device="cpu", adapter=adapter)


def test_a_peft_adapter_for_a_deeper_model_names_the_absent_module(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    deeper = GPT2LMHeadModel(GPT2Config(**{**TINY, "n_layer": 3}))
    config = LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")
    get_peft_model(deeper, config).save_pretrained(tmp_path / "deeper")
    with pytest.raises(ModelLoadError, match=r"adapts h\.2\.attn\.c_attn, but tiny has only 2 layers"):
        load_model(tiny_model_dir, device="cpu", adapter=tmp_path / "deeper")


def test_cli_names_a_missing_base_and_a_missing_adapter(lora_run, tmp_path):
    import shutil

    _, adapter = lora_run
    moved = tmp_path / "adapter"
    shutil.copytree(adapter, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone-base")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    result = cli("score", "--text", "hello", "--adapter", str(moved))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"base model {tmp_path / 'gone-base'}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = cli("score", "--text", "hello", "--adapter", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "No adapter at" in result.stderr


def test_lora_resume_continues_with_identical_adapters(tmp_path, tiny_model_dir, text_file):
    from safetensors.torch import load_file

    settings = TrainSettings(data=str(text_file), init=str(tiny_model_dir), steps=8, **LORA_TRAIN)
    straight = train(tmp_path / "straight", settings, say=lambda m: None)
    assert train(tmp_path / "paused", settings, say=lambda m: None, pause_at=5) is None
    resumed = train(tmp_path / "paused", None, resume=True, say=lambda m: None)
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_lora_targets_choose_the_projections(tmp_path, tiny_model_dir, text_file):
    settings = TrainSettings(data=str(text_file), init=str(tiny_model_dir), steps=2,
                             **{**LORA_TRAIN, "lora_targets": "mlp", "lora_dropout": 0.1})
    adapter = train(tmp_path / "mlp", settings, say=lambda m: None)
    pairs = read_adapter(adapter).pairs
    assert sorted(pairs) == [f"h.{i}.mlp.{p}" for i in range(2) for p in ("c_fc", "c_proj")]


@pytest.mark.parametrize("change, message", [
    (dict(lora=0), "--lora takes the adapters' rank, 1 or more"),
    (dict(lora_alpha=-1.0), "--lora-alpha must be positive"),
    (dict(lora_dropout=1.0), "--lora-dropout is a probability"),
    (dict(lora_dropout=-0.1), "--lora-dropout is a probability"),
    (dict(lora_targets="attn,heads"), "--lora-targets takes"),
    (dict(init=None), "give it with --init MODEL"),
])
def test_impossible_lora_settings_are_refused_before_anything_is_written(tmp_path, tiny_model_dir, text_file,
                                                                        change, message):
    settings = TrainSettings(data=str(text_file), init=str(tiny_model_dir), steps=2, **LORA_TRAIN)
    with pytest.raises(SettingsError, match=message):
        train(tmp_path / "run", TrainSettings(**{**settings.__dict__, **change}), say=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_lora_cli_refuses_rank_zero_in_one_line(tmp_path, tiny_model_dir, text_file):
    result = cli("train", "--out", str(tmp_path / "run"), "--init", str(tiny_model_dir), "--data", str(text_file),
                 "--lora", "0")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--lora takes the adapters' rank" in result.stderr and not (tmp_path / "run").exists()

"""Damaged model folders, each made from a real one with one thing broken: `generate`, `score` and
`models import` refuse every one with exit status 2 and one line that names the file and what is wrong."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import EngineError
from tests.helpers import cli

DEEP = 100_000  # deeper than Python's JSON reader can recurse


def edit_json(folder: Path, name: str, **changes) -> None:
    data = json.loads((folder / name).read_text())
    data.update(changes)
    (folder / name).write_text(json.dumps(data))


def config(**changes):
    return lambda folder: edit_json(folder, "config.json", **changes)


def generation(**changes):
    return lambda folder: edit_json(folder, "generation_config.json", **changes)


def deep_json(name: str):
    return lambda folder: (folder / name).write_text("[" * DEEP + "]" * DEEP)


def deep_field(name: str, field: str):
    def damage(folder: Path) -> None:
        text = (folder / name).read_text()
        data = json.loads(text)
        data.pop(field, None)
        body = json.dumps(data)
        (folder / name).write_text(body[:-1] + f', "{field}": ' + "[" * DEEP + "]" * DEEP + "}")
    return damage


def weights(change):
    """Rewrite model.safetensors with `change(state)` applied to its tensors (checkpoint names)."""
    def damage(folder: Path) -> None:
        state = load_file(folder / "model.safetensors")
        change(state)
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return damage


def set_tensor(name: str, make):
    """`make(the tensor now named so, or None)` in its place."""
    def change(state):
        state[name] = make(state.get(name))
    return change


def planted(value: float, name: str, index: tuple[int, ...]):
    def make(t):
        t = t.clone()
        t[index] = value
        return t
    return set_tensor(name, make)


def sharded(change=None):
    """Split model.safetensors into two shards and an index, then apply `change(weight_map, folder)`."""
    def damage(folder: Path) -> None:
        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        names = sorted(state)
        halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
                  "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
        weight_map = {}
        for file, part in halves.items():
            save_file({n: state[n] for n in part}, folder / file, metadata={"format": "pt"})
            weight_map.update({n: file for n in part})
        if change is not None:
            change(weight_map, folder)
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return damage


def outside_entry(weight_map, folder):
    """Move one shard next to the model folder and point the index there."""
    shutil.move(folder / "model-00002-of-00002.safetensors", folder.parent / "elsewhere.safetensors")
    for name, file in weight_map.items():
        if file == "model-00002-of-00002.safetensors":
            weight_map[name] = "../elsewhere.safetensors"


def absolute_entry(weight_map, folder):
    target = folder.parent / "elsewhere.safetensors"
    shutil.move(folder / "model-00002-of-00002.safetensors", target)
    for name, file in weight_map.items():
        if file == "model-00002-of-00002.safetensors":
            weight_map[name] = str(target)


def number_entry(weight_map, folder):
    weight_map[next(iter(weight_map))] = 2


def sparse_vocab(folder: Path) -> None:
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["Ġfaraway"] = 100_000_000
    (folder / "vocab.json").write_text(json.dumps(vocab))


WTE = "transformer.wte.weight"
FC = "transformer.h.0.mlp.c_fc.weight"

# (id, damage, what the one line must say)
DAMAGES = [
    ("activation-list", config(activation_function=["gelu_new"]), ["config.json", "activation_function"]),
    ("epsilon-text", config(layer_norm_epsilon="abc"), ["config.json", "layer_norm_epsilon"]),
    ("epsilon-list", config(layer_norm_epsilon=[1]), ["config.json", "layer_norm_epsilon"]),
    ("epsilon-nan", config(layer_norm_epsilon=math.nan), ["config.json", "layer_norm_epsilon"]),
    ("epsilon-bool", config(layer_norm_epsilon=True), ["config.json", "layer_norm_epsilon"]),
    ("config-deep", deep_json("config.json"), ["config.json", "nested"]),
    ("config-field-deep", deep_field("config.json", "n_embd"), ["config.json", "nested"]),
    ("config-list", lambda f: (f / "config.json").write_text("[1, 2]"), ["config.json", "object"]),
    ("n_embd-huge", config(n_embd=10**9), ["config.json", "n_embd"]),
    ("n_embd-negative", config(n_embd=-32), ["config.json", "n_embd"]),
    ("n_embd-float", config(n_embd=32.0), ["config.json", "n_embd"]),
    ("n_embd-text", config(n_embd="32"), ["config.json", "n_embd"]),
    ("n_head-zero", config(n_head=0), ["config.json", "n_head"]),
    ("n_head-bool", config(n_head=True), ["config.json", "n_head"]),
    ("n_positions-zero", config(n_positions=0), ["config.json", "n_positions"]),
    ("n_positions-huge", config(n_positions=10**12), ["config.json", "n_positions"]),
    ("vocab_size-zero", config(vocab_size=0), ["config.json", "vocab_size"]),
    ("vocab_size-huge", config(vocab_size=10**15), ["config.json", "vocab_size"]),
    ("n_layer-float", config(n_layer=2.0), ["config.json", "n_layer"]),
    ("n_layer-huge", config(n_layer=10**9), ["config.json", "n_layer"]),
    ("n_inner-text", config(n_inner="wide"), ["config.json", "n_inner"]),
    ("n_inner-negative", config(n_inner=-1), ["config.json", "n_inner"]),
    ("scale-text", config(scale_attn_weights="no"), ["config.json", "scale_attn_weights"]),
    ("tie-text", config(tie_word_embeddings="false"), ["config.json", "tie_word_embeddings"]),
    ("eos-nested", config(eos_token_id=[[1]]), ["config.json", "eos_token_id"]),
    ("bos-text", config(bos_token_id="<s>"), ["config.json", "bos_token_id"]),
    ("generation-eos-nested", generation(eos_token_id=[[1]]), ["generation_config.json", "eos_token_id"]),
    ("generation-eos-text", generation(eos_token_id="<|endoftext|>"), ["generation_config.json", "eos_token_id"]),
    ("generation-deep", deep_json("generation_config.json"), ["generation_config.json", "nested"]),
    ("generation-broken", lambda f: (f / "generation_config.json").write_text("{"), ["generation_config.json", "JSON"]),
    ("n_layer-10000", config(n_layer=10000), ["model.safetensors", "lacks", "h.2."]),
    ("shape-mismatch", config(n_embd=64), ["model.safetensors", "shape", "config.json"]),
    ("extra-weight", weights(set_tensor("transformer.h.7.mlp.c_fc.weight", lambda _: torch.zeros(1))),
     ["model.safetensors", "h.7.mlp.c_fc.weight"]),
    ("head-shape", weights(set_tensor("lm_head.weight", lambda _: torch.zeros(7, 32))),
     ["model.safetensors", "lm_head"]),
    ("tokenizer-larger", config(vocab_size=1000), ["vocab.json", "vocab_size"]),
    ("tokenizer-sparse", sparse_vocab, ["vocab.json", "vocab_size"]),
    ("int8-weight", weights(set_tensor(FC, lambda t: t.to(torch.int8))), ["model.safetensors", "I8", "h.0.mlp.c_fc"]),
    ("float64-weight", weights(set_tensor(FC, lambda t: t.double())), ["model.safetensors", "F64", "h.0.mlp.c_fc"]),
    ("nan-weight", weights(planted(math.nan, FC, (3, 5))), ["model.safetensors", "the weights contain NaN"]),
    ("inf-weight", weights(planted(math.inf, WTE, (290, 7))), ["model.safetensors", "infinite"]),
    ("index-deep", lambda f: (sharded()(f), deep_json("model.safetensors.index.json")(f)),
     ["model.safetensors.index.json", "nested"]),
    ("index-number", sharded(number_entry), ["model.safetensors.index.json", "weight_map"]),
    ("index-outside", sharded(outside_entry), ["model.safetensors.index.json", "../elsewhere.safetensors"]),
    ("index-absolute", sharded(absolute_entry), ["model.safetensors.index.json", "elsewhere.safetensors"]),
]


@pytest.fixture
def damaged(request, tmp_path, tiny_model_dir):
    name, damage, fragments = request.param
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    damage(folder)
    return folder, fragments


def assert_one_line_error(result, fragments):
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def refusal(action) -> EngineError:
    """What `action()` raised: it must be one of the engine's errors (the command line prints those as one
    line and exits 2; anything else would be a traceback)."""
    with pytest.raises(EngineError) as caught:
        action()
    return caught.value


def assert_names(error: EngineError, fragments) -> None:
    message = str(error)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def load_and_step(folder: Path) -> None:
    """What `generate --max-new-tokens 1` does: load the folder and write one token."""
    from engine import Generator, SamplingSettings, load_model

    loaded = load_model(folder, device="cpu")
    list(Generator(loaded).stream("x", SamplingSettings(max_new_tokens=1, temperature=0)))


@pytest.mark.parametrize("damaged", DAMAGES, ids=[d[0] for d in DAMAGES], indirect=True)
def test_loading_and_importing_refuse_with_one_line_naming_the_file(damaged, tmp_path, monkeypatch):
    """Every damage of the table, in this process (a command's start costs seconds: the table runs through the
    command line below only for a few of each kind)."""
    from engine.store.local import import_folder, local_models

    folder, fragments = damaged
    assert_names(refusal(lambda: load_and_step(folder)), fragments)
    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    assert_names(refusal(lambda: import_folder(folder)), fragments)
    assert folder not in [m.folder for m in local_models()]


# Through the command line: one damage of each kind, the NaN and infinity a first step meets, for each command
# that loads a model.
THROUGH_CLI = [d for d in DAMAGES if d[0] in ("epsilon-text", "config-deep", "generation-eos-nested",
                                              "n_layer-10000", "tokenizer-sparse", "float64-weight", "nan-weight",
                                              "index-outside")]


@pytest.mark.parametrize("damaged", THROUGH_CLI, ids=[d[0] for d in THROUGH_CLI], indirect=True)
def test_generate_refuses_with_one_line(damaged):
    folder, fragments = damaged
    assert_one_line_error(cli("generate", "--model", str(folder), "--prompt", "x", "--max-new-tokens", "1"), fragments)


@pytest.mark.parametrize("damaged", THROUGH_CLI[::3], ids=[d[0] for d in THROUGH_CLI[::3]], indirect=True)
def test_score_refuses_with_one_line(damaged):
    folder, fragments = damaged
    assert_one_line_error(cli("score", "--model", str(folder), "--text", "x y"), fragments)


@pytest.mark.parametrize("damaged", THROUGH_CLI[1::3], ids=[d[0] for d in THROUGH_CLI[1::3]], indirect=True)
def test_import_refuses_with_one_line(damaged, tmp_path):
    folder, fragments = damaged
    data = tmp_path / "data"
    result = cli("models", "import", str(folder), env={"GPT2_DESKTOP_DATA_DIR": str(data)})
    assert_one_line_error(result, fragments)
    listed = cli("models", "list", env={"GPT2_DESKTOP_DATA_DIR": str(data)})
    assert str(folder) not in listed.stdout


def test_the_undamaged_copy_generates_scores_and_imports(tmp_path, tiny_model_dir):
    """The table's damages are what fails: the same steps on an undamaged copy and a sharded one pass."""
    for name, damage in (("plain", lambda f: None), ("sharded", sharded())):
        folder = tmp_path / name
        shutil.copytree(tiny_model_dir, folder)
        damage(folder)
        env = {"GPT2_DESKTOP_DATA_DIR": str(tmp_path / "data")}
        for args in (("generate", "--model", str(folder), "--prompt", "x", "--max-new-tokens", "1"),
                     ("score", "--model", str(folder), "--text", "x y"), ("models", "import", str(folder))):
            result = cli(*args, env=env)
            assert result.returncode == 0, (args, result.stderr)


@pytest.fixture
def nan_position(tmp_path, tiny_model_dir):
    """The tiny model with a NaN in the position embedding's row 20: a short prompt does not reach it."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    weights(planted(math.nan, "transformer.wpe.weight", (20, 3)))(folder)
    return folder


@pytest.mark.parametrize("native", [True, False], ids=["compiled-step", "pytorch"])
def test_a_nan_met_mid_reply_stops_it_with_the_damaged_weight_named(nan_position, native):
    from engine import Generator, ModelLoadError, SamplingSettings, TokenEvent, load_model

    loaded = load_model(nan_position, device="cpu")  # a plain load does not read every weight
    events = []
    with pytest.raises(ModelLoadError, match=r"model.safetensors: the weights contain NaN \(first in 'wpe.weight'\)"):
        for event in Generator(loaded, native=native).stream("x", SamplingSettings(temperature=0, max_new_tokens=40)):
            events.append(event)
    assert len(events) == 20 and all(isinstance(e, TokenEvent) for e in events)  # the tokens before position 20


def test_a_reduced_copy_is_not_made_from_weights_with_nan(tmp_path, tiny_model_dir, monkeypatch):
    from engine import ModelLoadError, load_model

    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    weights(planted(math.nan, FC, (3, 5)))(folder)
    with pytest.raises(ModelLoadError, match="the weights contain NaN"):
        load_model(folder, device="cpu", precision="int8")  # at load: preparing the copy reads every weight
    assert not list((tmp_path / "data").rglob("*.safetensors"))


def test_the_shape_check_lists_what_the_network_has():
    """The shapes the check expects, written out, are the parameters engine.core.model's GPT has."""
    from engine.core.config import GPTConfig
    from engine.core.layout import expected_shapes
    from engine.core.model import GPT

    for config in (GPTConfig(n_embd=32, n_head=4, n_layer=3, n_positions=64, vocab_size=100),
                   GPTConfig(n_embd=48, n_head=3, n_layer=1, n_positions=16, vocab_size=70, n_inner=80,
                             tie_word_embeddings=False)):
        with torch.device("meta"):
            model = GPT(config)
        assert expected_shapes(config) == {n: tuple(p.shape) for n, p in model.named_parameters()}


def test_scoring_refuses_a_text_that_reaches_a_nan_weight(nan_position):
    """The check reads the last position's logits only: a NaN met earlier in the window reaches it."""
    from engine import ModelLoadError, load_model
    from engine.inference.scoring import score_text

    loaded = load_model(nan_position, device="cpu")
    assert len(score_text(loaded, "one two three four five")) == 5  # positions 0-5 only
    with pytest.raises(ModelLoadError, match=r"the weights contain NaN \(first in 'wpe.weight'\)"):
        score_text(loaded, " ".join(["word"] * 30))


def test_finite_weights_that_overflow_a_reduced_precision_are_told_apart(tmp_path, tiny_model_dir, monkeypatch):
    """A weight of 1e6 is finite, so the folder is not damaged, but float16 has no such number: generating in it
    says the output overflowed there, not that the file is damaged; float32 runs."""
    from engine import Generator, ModelLoadError, SamplingSettings, load_model

    monkeypatch.setenv("GPT2_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    weights(planted(1e6, FC, (3, 5)))(folder)
    settings = SamplingSettings(temperature=0, max_new_tokens=2)
    assert list(Generator(load_model(folder, device="cpu")).stream("x", settings))[-1].token_ids
    with pytest.raises(ModelLoadError, match=r"is not a number .* overflowed on the way in float16 \(try --dtype"):
        list(Generator(load_model(folder, device="cpu", precision="float16")).stream("x", settings))

"""config.json parsing, fuzzed: any JSON values in the fields the engine reads, nested to any depth, give a
GPTConfig within the limits or a ModelLoadError of one line, never another exception.
GPT2_DESKTOP_FUZZ_EXAMPLES raises the number of examples (300 by default; 3,000 were run once by hand)."""

from __future__ import annotations

import json
import os
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.config import LIMITS, GPTConfig, load_config, parse_config
from engine.errors import ModelLoadError

FIELDS = ("model_type", "add_cross_attention", "activation_function", "vocab_size", "n_positions", "n_ctx", "n_embd",
          "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "scale_attn_weights",
          "scale_attn_by_inverse_layer_idx", "tie_word_embeddings", "bos_token_id", "eos_token_id")
VALID = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 128, "n_embd": 32, "n_layer": 2, "n_head": 4,
         "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
         "bos_token_id": 50256, "eos_token_id": 50256}

scalars = (st.none() | st.booleans() | st.integers(min_value=-3, max_value=70_000) | st.integers()
           | st.floats() | st.text(max_size=12) | st.sampled_from(["gpt2", "gelu_new", "relu", "true", "1e-5"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
# Some fields changed, some left out, the rest valid.
configs = st.fixed_dictionaries({}, optional={name: json_values for name in FIELDS}).flatmap(
    lambda changed: st.sets(st.sampled_from(sorted(VALID))).map(
        lambda dropped: {**{k: v for k, v in VALID.items() if k not in dropped}, **changed}))


def parsed_or_refused(load) -> None:
    try:
        config = load()
    except ModelLoadError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
        return
    assert isinstance(config, GPTConfig)
    for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        value = getattr(config, name)
        assert type(value) is int and 1 <= value <= LIMITS[name]
    assert config.n_embd % config.n_head == 0
    assert math.isfinite(config.layer_norm_epsilon) and config.layer_norm_epsilon > 0


@settings(max_examples=int(os.environ.get("GPT2_DESKTOP_FUZZ_EXAMPLES", 300)), deadline=None)
@given(configs)
def test_any_json_in_the_fields_gives_a_config_or_one_line(raw):
    parsed_or_refused(lambda: parse_config(raw))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzzed")


@settings(max_examples=300, deadline=None)
@given(configs, st.sampled_from(FIELDS), st.integers(0, 5) | st.integers(0, 200_000))
def test_any_nesting_in_the_file_gives_a_config_or_one_line(folder, raw, field, depth):
    """The same through config.json, with one field's value nested `depth` lists deep (past what Python's JSON
    reader can recurse into, too)."""
    body = json.dumps({k: v for k, v in raw.items() if k != field})
    value = "[" * depth + json.dumps(raw.get(field)) + "]" * depth
    (folder / "config.json").write_text(body[:-1] + (", " if len(body) > 2 else "") + f'"{field}": {value}' + "}")
    parsed_or_refused(lambda: load_config(folder))

"""Streaming, sampling, stop sequences, cancellation, sliding window, bad settings."""

import threading
from dataclasses import replace

import pytest
import torch

from tests.helpers import make_model_folder
from engine import Done, Generator, SamplingSettings, SettingsError, load_model
from engine.inference.sampling import apply_repetition_penalty, logits_to_probs

GREEDY = SamplingSettings(temperature=0, max_new_tokens=40)


def run(loaded, prompt, settings=GREEDY, cancel=None):
    events = list(Generator(loaded).stream(prompt, settings, cancel))
    assert isinstance(events[-1], Done)
    return events[:-1], events[-1]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """A real model folder whose greedy output is fixed in advance.

    Blocks write nothing (zero output projections), so the logits at position p are
    ln_f(wte[x] + wpe[p]) @ wte.T; setting wpe[p] to a large multiple of wte[t] makes t the
    greedy choice there. `make(text_or_ids)` returns a model that, after a one-token prompt,
    writes exactly those tokens.
    """
    from safetensors.torch import load_file, save_file

    base = make_model_folder(tmp_path_factory.mktemp("scripted") / "base", n_embd=128, n_layer=1, n_head=4,
                             n_positions=64)
    state = load_file(base / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    state["transformer.wte.weight"] = torch.randn(state["transformer.wte.weight"].shape, generator=gen)
    for name in list(state):
        if "c_proj" in name:
            state[name] = torch.zeros_like(state[name])
    state.pop("lm_head.weight", None)
    count = [0]

    def make(script):
        ids = script if isinstance(script, list) else loaded_tok.encode(script)
        s = dict(state)
        wpe = torch.zeros_like(s["transformer.wpe.weight"])
        for p, t in enumerate(ids):
            wpe[p] = 100 * s["transformer.wte.weight"][t]
        s["transformer.wpe.weight"] = wpe
        count[0] += 1
        folder = base.parent / f"m{count[0]}"
        folder.mkdir()
        save_file(s, folder / "model.safetensors")
        for name in ("config.json", "vocab.json", "merges.txt"):
            (folder / name).write_bytes((base / name).read_bytes())
        return load_model(folder, device="cpu")

    loaded_tok = load_model(base).tokenizer
    return make


def test_scripted_model_writes_its_script(scripted):
    model = scripted("Hello there, world")
    events, done = run(model, "X", SamplingSettings(temperature=0, max_new_tokens=4))
    assert done.text == "Hello there, world" and done.stop_reason == "length"


def test_split_utf8_characters_are_held_back(scripted):
    text = "A 🙂 日本語 👩‍👩‍👧!"
    model = scripted(text)
    n = len(model.tokenizer.encode(text))
    assert any("\ufffd" in model.tokenizer.decode([t]) for t in model.tokenizer.encode(text))
    events, done = run(model, "X", SamplingSettings(temperature=0, max_new_tokens=n))
    assert [e.token for e in events] == model.tokenizer.encode(text)
    assert all("\ufffd" not in e.text for e in events)
    assert "".join(e.text for e in events) == done.text == text


def test_utf8_cut_by_length_limit_keeps_the_replacement_in_final_text(scripted):
    text = "ok 🦊"
    model = scripted(text)
    n = len(model.tokenizer.encode(text)) - 1  # stop inside the emoji's bytes
    events, done = run(model, "X", SamplingSettings(temperature=0, max_new_tokens=n))
    assert "".join(e.text for e in events) == done.text == model.tokenizer.decode(done.token_ids)
    assert done.text.endswith("\ufffd")


def test_stop_sequence_spanning_tokens_is_never_emitted(scripted):
    text = "The cat sat on the mat. THE END of it all"
    model = scripted(text)
    stop = "mat. THE"
    ids = model.tokenizer.encode(text)
    pieces = [model.tokenizer.decode([t]) for t in ids]
    assert stop not in pieces and not any(stop in p for p in pieces)
    events, done = run(model, "X", SamplingSettings(temperature=0, max_new_tokens=40, stop=("zzz", stop)))
    assert done.stop_reason == "stop"
    assert done.text == "The cat sat on the "
    assert "".join(e.text for e in events) == done.text


def test_partial_stop_prefix_is_released_when_it_does_not_complete(scripted):
    text = "a mat. Then a mat again"
    model = scripted(text)
    n = len(model.tokenizer.encode(text))
    events, done = run(model, "X", SamplingSettings(temperature=0, max_new_tokens=n, stop=("mat. THE",)))
    assert done.stop_reason == "length"
    assert "".join(e.text for e in events) == done.text == text


def test_end_of_text_stops_generation(scripted, tiny):
    model = scripted(tiny.tokenizer.encode("Goodbye now") + [50256] + tiny.tokenizer.encode(" more"))
    events, done = run(model, "X")
    assert done.stop_reason == "eos"
    assert done.text == "Goodbye now"
    assert events[-1].token == 50256 and events[-1].text == ""


def test_empty_prompt_starts_from_endoftext(tiny):
    events, done = run(tiny, "", SamplingSettings(temperature=0, max_new_tokens=5))
    _, again = run(tiny, [50256], SamplingSettings(temperature=0, max_new_tokens=5))
    assert done.prompt_tokens == 1
    assert done.token_ids == again.token_ids


def test_same_seed_same_output_and_different_seed_differs(tiny):
    settings = SamplingSettings(temperature=1.0, top_k=0, max_new_tokens=30, seed=1234)
    a = run(tiny, "Once upon a time", settings)[1]
    b = run(tiny, "Once upon a time", settings)[1]
    c = run(tiny, "Once upon a time", SamplingSettings(temperature=1.0, top_k=0, max_new_tokens=30, seed=99))[1]
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 0, 1.0), (1.0, 50, 1.0), (1.3, 0, 0.9), (0.9, 20, 0.8)])
def test_sampling_distribution_matches_transformers_warpers(tiny, temperature, top_k, top_p):
    from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = tiny.model(torch.tensor([tiny.tokenizer.encode("The little fox")]))[0, -1]
    ours = logits_to_probs(logits, SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p))
    scores = TemperatureLogitsWarper(temperature)(None, logits[None].clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(None, scores)
    theirs = torch.softmax(scores, -1)[0]
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert (ours > 0).sum() == (theirs > 0).sum()


def test_min_p_matches_transformers_warper(tiny):
    from transformers.generation import MinPLogitsWarper

    logits = tiny.model(torch.tensor([tiny.tokenizer.encode("The little fox")]))[0, -1]
    ours = logits_to_probs(logits, SamplingSettings(temperature=1.0, top_k=0, min_p=0.05))
    theirs = torch.softmax(MinPLogitsWarper(0.05)(None, logits[None].clone()), -1)[0]
    assert torch.allclose(ours, theirs, atol=1e-6) and 1 < (ours > 0).sum() < 1000


def test_tiny_settings_that_validation_lets_through_sample_safely(tiny):
    """1e-300 is a positive number, as validation wants; float32 holds none that small."""
    logits = tiny.model(torch.tensor([tiny.tokenizer.encode("The little fox")]))[0, -1]
    greedy = int(logits.argmax())
    for settings in (SamplingSettings(temperature=1e-300), SamplingSettings(temperature=1.0, top_p=1e-300),
                     SamplingSettings(temperature=5e-324, top_p=5e-324, top_k=3, min_p=1.0)):
        probs = logits_to_probs(logits, settings.validate())
        assert torch.isfinite(probs).all() and probs[greedy] == 1.0
    seen = torch.tensor([greedy, 7, int(logits.argmin())])
    for penalty in (1e-300, 5e-324, 1e300):
        penalised = apply_repetition_penalty(logits, seen, penalty)
        assert torch.isfinite(penalised).all()
        assert torch.isfinite(logits_to_probs(penalised, SamplingSettings(temperature=1.0))).all()


def test_presence_and_frequency_penalties_and_logit_bias_as_openai_defines_them(tiny):
    """logit[j] -= frequency * count[j] + presence * (count[j] > 0), over the tokens written so far."""
    ids = tiny.tokenizer.encode("Once upon a time")
    settings = SamplingSettings(temperature=0, max_new_tokens=12, presence_penalty=1.5, frequency_penalty=0.7,
                                logit_bias=((11, -100.0), (13, 3.0)))
    _, done = run(tiny, ids, settings)
    context, counts = list(ids), torch.zeros(tiny.config.vocab_size)
    for token in done.token_ids:  # greedy by hand, with the penalties written out
        logits = tiny.model(torch.tensor([context]))[0, -1].float()
        logits = logits - 0.7 * counts - 1.5 * (counts > 0).float()
        logits[11] -= 100
        logits[13] += 3
        assert token == int(logits.argmax())
        counts[token] += 1
        context.append(token)
    assert 11 not in done.token_ids


def test_repetition_penalty_matches_transformers_greedy(tiny, tiny_hf):
    ids = tiny.tokenizer.encode("the the the cat the dog")
    _, done = run(tiny, ids, SamplingSettings(temperature=0, max_new_tokens=30, repetition_penalty=1.5))
    out = tiny_hf.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=30, repetition_penalty=1.5,
                           pad_token_id=50256)
    assert done.token_ids == out[0, len(ids):].tolist()
    from transformers.generation import RepetitionPenaltyLogitsProcessor

    logits = torch.randn(1, 100)
    seen = torch.tensor([[3, 7, 7, 50]])
    expected = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    assert torch.allclose(apply_repetition_penalty(logits[0], seen[0].unique(), 1.3), expected[0])


def test_cancel_from_another_thread_takes_effect_within_one_step(tiny):
    cancel, reached, result = threading.Event(), threading.Event(), {}

    def consume():
        events = []
        for event in Generator(tiny).stream("Once", SamplingSettings(temperature=0, max_new_tokens=100), cancel):
            events.append(event)
            if len(events) == 5:
                reached.set()
                cancel.wait(5)  # hold this step until the other thread has cancelled
        result["events"] = events

    worker = threading.Thread(target=consume)
    worker.start()
    assert reached.wait(10)
    cancel.set()
    worker.join(10)
    events = result["events"]
    assert len(events) == 6, "no token may follow the cancel"
    assert events[-1].stop_reason == "cancelled"
    assert events[-1].text == "".join(e.text for e in events[:-1])
    # The engine is still usable, and unaffected.
    fresh = run(tiny, "Once", SamplingSettings(temperature=0, max_new_tokens=5))[1]
    assert fresh.token_ids == events[-1].token_ids


@pytest.fixture(scope="module")
def short_window(tmp_path_factory):
    folder = make_model_folder(tmp_path_factory.mktemp("win") / "w32", seed=3, n_embd=32, n_layer=2, n_head=4,
                               n_positions=32)
    from transformers import GPT2LMHeadModel

    return load_model(folder), GPT2LMHeadModel.from_pretrained(folder).eval()


def _hf_sliding_greedy(hf, ids, n, window, keep):
    context, out = list(ids), []
    if len(context) > window:
        context = context[-keep:]
    for _ in range(n):
        with torch.no_grad():
            token = int(hf(torch.tensor([context])).logits[0, -1].argmax())
        out.append(token)
        context.append(token)
        if len(context) > window:
            context = context[-keep:]
    return out


def test_generation_slides_past_the_context_window(short_window):
    ours, hf = short_window
    ids = ours.tokenizer.encode("A short start")
    _, done = run(ours, ids, SamplingSettings(temperature=0, max_new_tokens=100))
    assert done.stop_reason == "length" and len(done.token_ids) == 100
    assert done.token_ids == _hf_sliding_greedy(hf, ids, 100, 32, 24)


def test_over_long_prompt_is_left_truncated_and_reported(short_window):
    ours, hf = short_window
    ids = ours.tokenizer.encode("word" + " word" * 49)
    assert len(ids) == 50
    _, done = run(ours, ids, SamplingSettings(temperature=0, max_new_tokens=10))
    assert done.truncated_prompt_tokens == 50 - 24
    assert done.prompt_tokens == 50
    assert done.token_ids == _hf_sliding_greedy(hf, ids, 10, 32, 24)


@pytest.mark.parametrize(
    "settings,field",
    [
        (SamplingSettings(temperature=-0.1), "temperature"),
        (SamplingSettings(temperature=float("nan")), "temperature"),
        (SamplingSettings(top_p=0.0), "top-p"),
        (SamplingSettings(top_p=1.5), "top-p"),
        (SamplingSettings(top_k=-1), "top-k"),
        (SamplingSettings(max_new_tokens=0), "max-new-tokens"),
        (SamplingSettings(repetition_penalty=0), "repetition-penalty"),
        (SamplingSettings(stop=("",)), "stop"),
        (SamplingSettings(min_p=1.5), "min-p"),
        (SamplingSettings(presence_penalty=2.5), "presence-penalty"),
        (SamplingSettings(frequency_penalty=-3), "frequency-penalty"),
        (SamplingSettings(logit_bias=((5, 101.0),)), "logit-bias"),
        (SamplingSettings(logit_bias=((60000, 1.0),)), "logit-bias"),
    ],
)
def test_impossible_settings_are_refused_by_name(tiny, settings, field):
    with pytest.raises(SettingsError, match=field):
        run(tiny, "Hi", settings)


def test_out_of_range_prompt_ids_are_refused(tiny):
    with pytest.raises(SettingsError, match="between 0 and 50256"):
        run(tiny, [1, 2, 50257])


def _chat(generator, turns: int, settings) -> list[tuple[list[int], int]]:
    """A scripted chat: each turn adds a user message and the reply to one prompt. (reply ids, cached) per turn."""
    history, out = [], []
    for turn in range(turns):
        history += [464 + turn, 1310, 21831 + turn, 4966, 656, 262]
        done = list(generator.stream(history, replace(settings, seed=turn)))[-1]
        history += done.token_ids
        out.append((done.token_ids, done.cached_tokens))
    return out


@pytest.mark.parametrize("settings", [SamplingSettings(temperature=0, max_new_tokens=6),
                                      SamplingSettings(temperature=1.0, top_k=0, max_new_tokens=6)],
                         ids=["greedy", "sampled"])
def test_the_prompt_cache_reuses_the_prefix_and_never_changes_the_tokens(tiny, settings):
    cached = _chat(Generator(tiny), 8, settings)
    cold = _chat(Generator(tiny, prompt_cache=False), 8, settings)
    assert [ids for ids, _ in cached] == [ids for ids, _ in cold]
    assert all(n == 0 for _, n in cold)
    assert cached[0][1] == 0 and all(n > 0 for _, n in cached[1:])  # every later turn reuses the last


def test_the_prompt_cache_stays_right_after_a_cancel_a_slide_and_an_abandoned_stream(short_window):
    loaded, _ = short_window
    generator, fresh = Generator(loaded), Generator(loaded, prompt_cache=False)
    greedy = SamplingSettings(temperature=0, max_new_tokens=40)  # past the 32-token window: it slides
    prompts = [[5, 6, 7, 8], [5, 6, 7, 8, 9], [5, 6, 7], [5, 6, 7, 8, 9, 10, 11]]
    stream = generator.stream([5, 6, 7, 8, 9, 10], greedy)
    next(stream), next(stream)
    stream.close()  # a caller that stops reading
    cancel = threading.Event()
    cancel.set()
    list(generator.stream([5, 6], greedy, cancel=cancel))
    for prompt in prompts:
        assert list(generator.stream(prompt, greedy))[-1].token_ids == list(fresh.stream(prompt, greedy))[-1].token_ids


@pytest.mark.parametrize("mode", ["float32", "float16", "int8"])
def test_prompts_short_and_long_prefill_to_the_logits_pytorch_computes(mode):
    # A prompt of up to the mode's step_prefill tokens goes through the compiled step token by token, a
    # longer one through PyTorch's batched path but for its last token; both must land where PyTorch's
    # own forward pass does, and leave the cache ready for the next token.
    from engine.core import native, precisions

    if not native.available():
        pytest.skip("the compiled step is not built")
    loaded = load_model(None, device="cpu", precision=mode)
    generator = Generator(loaded)
    limit = precisions.get(mode).step_prefill
    for n in sorted({1, limit, limit + 1, 3 * limit + 5}):
        ids = list(range(300, 300 + n))
        with torch.inference_mode():
            got = generator.prefill(ids, cache := loaded.model.new_cache())
            want = loaded.model(torch.tensor([ids]), loaded.model.new_cache(), 0)[0, -1]
            after = generator.decode_one_token(7, cache, n)
            want_after = loaded.model(torch.tensor([ids + [7]]), loaded.model.new_cache(), 0)[0, -1]
        tolerance = 1e-4 if mode == "float32" else 0.05
        assert float((got - want).abs().max() / want.std()) < tolerance, (mode, n)
        assert float((after - want_after).abs().max() / want_after.std()) < tolerance, (mode, n)

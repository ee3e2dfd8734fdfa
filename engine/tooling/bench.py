"""`gpt2-desktop bench`: decode speed, prefill time, time to first token and peak memory of every
CPU precision, side by side with transformers (float32) on the same weights, in one run, as ratios;
the weight bandwidth each precision achieves beside the machine's read bandwidth; start-up time from
process start to first token; and, given a text, each reduced precision's quality against float32.
With --brief (for shapes too big to measure in full in reasonable time): per precision only load time,
peak resident memory and decode speed, and llama.cpp's decode speed beside it.

Each engine and precision runs in its own child process so that its peak resident memory is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch

from engine import load_model
from engine.core import precisions
from engine.core.device import physical_cores, set_threads
from engine.core.forms import decode_weight_bytes
from engine.core.hugepages import huge_bytes
from engine.errors import SettingsError, UsageError
from engine.inference.generate import Generator
from engine.inference.scoring import predictions
from engine.inference.settings import SamplingSettings
from engine.store.local import resolve_model
from engine.tooling.corpus import read_text_file


TOP_K = 10  # alternatives per token in the "with top-10" decode


def _prompt(n: int, vocab: int = 50000) -> list[int]:
    return torch.randint(0, min(vocab, 50000), (n,), generator=torch.Generator().manual_seed(n)).tolist()


def _best(values: list[float], higher_is_better: bool) -> float:
    return max(values) if higher_is_better else min(values)


def measure_ours(model: str, precision: str, prompt_tokens: int, new_tokens: int, prefill_tokens: int,
                 repeats: int) -> dict:
    started = time.perf_counter()
    loaded = load_model(model, device="cpu", precision=precision)
    load_s = time.perf_counter() - started
    weight_bytes = decode_weight_bytes(loaded.model)
    vocab = loaded.config.vocab_size
    generator = Generator(loaded, prompt_cache=False)  # every prompt prefilled whole: cold times
    greedy = SamplingSettings(temperature=0, max_new_tokens=new_tokens)
    decode, decode_top, prefill, ttft = [], [], [], []
    list(generator.stream(_prompt(prompt_tokens, vocab), SamplingSettings(temperature=0, max_new_tokens=4)))  # warm-up
    long_prompt = _prompt(prefill_tokens, vocab)
    for _ in range(repeats):
        done = list(generator.stream(_prompt(prompt_tokens, vocab), greedy))[-1]
        decode.append(done.tokens_per_second)
        # The same decode, reporting each token's rank and top-10 alternatives (the probability view).
        done = list(generator.stream(_prompt(prompt_tokens, vocab), greedy, top_logprobs=TOP_K))[-1]
        decode_top.append(done.tokens_per_second)
        with torch.inference_mode():
            t0 = time.perf_counter()
            loaded.model(torch.tensor([long_prompt]), loaded.model.new_cache(), 0, last_only=True)
            prefill.append((time.perf_counter() - t0) * 1000)
        done = list(generator.stream(long_prompt, SamplingSettings(temperature=0, max_new_tokens=1)))[-1]
        ttft.append(done.time_to_first_token_ms)
    rate = _best(decode, True)
    rate_top = _best(decode_top, True)
    chat = {cached: _best([chat_turn_ttft(loaded, cached) for _ in range(repeats)], False) for cached in (True, False)}
    return {"decode_tok_s": rate, "decode_top_tok_s": rate_top, "top_cost": rate / rate_top,
            "prefill_ms": _best(prefill, False), "ttft_ms": _best(ttft, False),
            "chat_ttft_cached_ms": chat[True], "chat_ttft_cold_ms": chat[False],
            "chat_cache_ratio": chat[True] / chat[False],
            "load_s": load_s, "weight_mb_per_token": weight_bytes / 1e6, "weight_gb_s": weight_bytes * rate / 1e9,
            "decoder": "compiled" if generator.native is not None else "pytorch"}


CHAT_TURNS, USER_TOKENS, REPLY_TOKENS = 10, 24, 24


def chat_turn_ttft(loaded, prompt_cache: bool) -> float:
    """Time to first token (ms) of the tenth turn of a scripted chat: each turn adds a user message and the
    reply to one growing prompt, as the chat view does; with the prompt cache each turn prefills only its
    new tokens."""
    generator = Generator(loaded, prompt_cache=prompt_cache)
    settings = SamplingSettings(temperature=0, max_new_tokens=REPLY_TOKENS)
    window = loaded.context_window
    turn_tokens = max(2, min(USER_TOKENS, window // (2 * CHAT_TURNS)))
    history: list[int] = []
    for turn in range(CHAT_TURNS):
        history += _prompt(turn_tokens + turn, loaded.config.vocab_size)[:turn_tokens]
        done = list(generator.stream(history, replace(settings, max_new_tokens=turn_tokens)))[-1]
        history += done.token_ids
    return done.time_to_first_token_ms


def _decode_rates(loaded, prompt_tokens: int, new_tokens: int, repeats: int) -> tuple[Generator, list[float]]:
    """Greedy decode speeds (tokens/s) of `repeats` generations after one warm-up, each from the same prompt."""
    generator = Generator(loaded, prompt_cache=False)
    prompt = _prompt(prompt_tokens, loaded.config.vocab_size)
    list(generator.stream(prompt, SamplingSettings(temperature=0, max_new_tokens=4)))  # warm-up
    greedy = SamplingSettings(temperature=0, max_new_tokens=new_tokens)
    return generator, [list(generator.stream(prompt, greedy))[-1].tokens_per_second for _ in range(repeats)]


def measure_brief(model: str, precision: str, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    """Load time and decode speed (best of `repeats`, as in the full report) and nothing else: `bench --brief`."""
    started = time.perf_counter()
    loaded = load_model(model, device="cpu", precision=precision)
    load_s = time.perf_counter() - started
    generator, rates = _decode_rates(loaded, prompt_tokens, new_tokens, repeats)
    return {"decode_tok_s": _best(rates, True), "load_s": load_s,
            "decoder": "compiled" if generator.native is not None else "pytorch"}


def measure_decode(model: str, precision: str, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    """Decode speed alone (median of `repeats`): for runs beside another program's load."""
    import statistics

    _, rates = _decode_rates(load_model(model, device="cpu", precision=precision), prompt_tokens, new_tokens, repeats)
    return {"decode_tok_s": statistics.median(rates)}


def read_bandwidth_gb_s(megabytes: int = 1024) -> float:
    """The machine's memory read bandwidth as torch's sum sees it (the ceiling for decoding), from memory
    in 2 MiB pages where the system gives them, as the decoding step's weights are (engine.core.hugepages)."""
    memory = huge_bytes(megabytes * 2**20)
    data = memory.view(torch.float32) if memory is not None else torch.empty(megabytes * 2**20 // 4)
    data.fill_(1.0)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - t0)
    return data.numel() * 4 / best / 1e9


class _Clock:
    """A transformers streamer that timestamps every token it is handed."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def measure_transformers(model: str, dtype: str, prompt_tokens: int, new_tokens: int, prefill_tokens: int,
                         repeats: int) -> dict:
    from transformers import GPT2LMHeadModel

    torch_dtype = {"auto": torch.float32}.get(dtype) or getattr(torch, dtype)
    started = time.perf_counter()
    hf = GPT2LMHeadModel.from_pretrained(model, dtype=torch_dtype).eval()
    load_s = time.perf_counter() - started
    vocab = hf.config.vocab_size

    def generate(ids: list[int], n: int) -> tuple[float, list[float]]:
        clock = _Clock()
        t0 = time.perf_counter()
        hf.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n, streamer=clock,
                    pad_token_id=50256)
        return t0, clock.times[1:]  # the first put is the prompt

    decode, prefill, ttft = [], [], []
    generate(_prompt(prompt_tokens, vocab), 4)  # warm-up
    long_prompt = _prompt(prefill_tokens, vocab)
    for _ in range(repeats):
        _, times = generate(_prompt(prompt_tokens, vocab), new_tokens)
        decode.append((len(times) - 1) / (times[-1] - times[0]))
        with torch.inference_mode():
            t0 = time.perf_counter()
            hf(torch.tensor([long_prompt]), use_cache=True, logits_to_keep=1)
            prefill.append((time.perf_counter() - t0) * 1000)
        t0, times = generate(long_prompt, 1)
        ttft.append((times[0] - t0) * 1000)
    return {"decode_tok_s": _best(decode, True), "prefill_ms": _best(prefill, False), "ttft_ms": _best(ttft, False),
            "load_s": load_s}


def child_main(argv: list[str]) -> None:
    engine, model, precision, threads, prompt_tokens, new_tokens, prefill_tokens, repeats = argv
    set_threads(None if threads == "default" else int(threads))
    if engine == "prepare":  # make the reduced-precision copy before it is measured
        started = time.perf_counter()
        loaded = load_model(model, device="cpu", precision=precision)
        print(json.dumps({"prepare_s": time.perf_counter() - started, "made": loaded.prepared_now}))
        return
    if engine == "bandwidth":
        print(json.dumps({"read_gb_s": read_bandwidth_gb_s()}))
        return
    if engine == "decode":
        print(json.dumps(measure_decode(model, precision, int(prompt_tokens), int(new_tokens), int(repeats))))
        return
    if engine == "brief":
        result = measure_brief(model, precision, int(prompt_tokens), int(new_tokens), int(repeats))
    else:
        measure = measure_ours if engine == "ours" else measure_transformers
        result = measure(model, precision, int(prompt_tokens), int(new_tokens), int(prefill_tokens), int(repeats))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


def _run_child(engine: str, args, precision: str, threads: int | None = None) -> dict:
    argv = [engine, str(args.model), precision, str(threads or args.threads or "default"), str(args.prompt_tokens),
            str(args.new_tokens), str(args.prefill_tokens), str(args.repeats)]
    proc = subprocess.run([sys.executable, "-m", "engine.tooling.bench", *argv], capture_output=True, text=True,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
        raise RuntimeError(f"the {engine} {precision} benchmark failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


LLAMA_TYPES = {"float32": "f32", "float16": "f16", "int8": "q8_0", "int4": "q4_0"}  # ours -> llama.cpp's


def _llama_figures(llama_cpp, model_file, threads: int, args, kind: str) -> dict:
    decode = llama_cpp.llama_bench(model_file, threads, 0, args.new_tokens, args.repeats, args.llama_cpp)
    prefill = llama_cpp.llama_bench(model_file, threads, args.prefill_tokens, 0, args.repeats, args.llama_cpp)
    return {"type": kind, "decode_tok_s": decode, "prefill_ms": args.prefill_tokens / prefill * 1000}


def _busy_decode(args, llama_cpp, model_file, threads: int) -> dict:
    """float32 decode, ours then llama.cpp's, while another process keeps one core busy (as a browser or a
    compiler does on any desktop); and ours on one thread of a quiet machine, for reference."""
    out = {"ours_one_thread_quiet": _run_child("decode", args, "float32", threads=1)["decode_tok_s"]}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        out["ours"] = _run_child("decode", args, "float32")["decode_tok_s"]
        out["llama.cpp"] = llama_cpp.llama_bench(model_file, threads, 0, args.new_tokens, args.repeats, args.llama_cpp)
    finally:
        busy.kill()
        busy.wait()
    return out


def time_to_first_token(model: str | None, precision: str, threads: int | None) -> float:
    """Seconds from starting `gpt2-desktop generate` to its first token on stdout (a cold process)."""
    command = [sys.executable, "-m", "app.main", "generate", "--prompt", "Once upon a time", "--max-new-tokens", "1",
               "--temperature", "0", "--json", "--dtype", precision, "--device", "cpu"]
    command += ["--model", str(model)] if model else []
    command += ["--threads", str(threads)] if threads else []
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.communicate()
    if proc.returncode != 0 or '"token"' not in first:
        raise RuntimeError(f"gpt2-desktop generate --dtype {precision} failed while timing start-up")
    return elapsed


def quality(text: str, modes: list[str]) -> dict:
    """Each reduced precision of the embedded model against float32 over `text`: top-1 next-token
    agreement and bits per byte."""
    import math

    n_bytes = len(text.encode("utf-8"))
    reference = load_model(None, device="cpu", precision=precisions.REFERENCE)
    ids = reference.tokenizer.encode(text)
    ref_logprobs, ref_top1 = predictions(reference, ids)
    ref_bpb = -sum(ref_logprobs) / math.log(2) / n_bytes
    out = {"tokens": len(ids), "bytes": n_bytes, precisions.REFERENCE: {"bits_per_byte": ref_bpb}}
    for precision in modes:
        logprobs, top1 = predictions(load_model(None, device="cpu", precision=precision), ids)
        bpb = -sum(logprobs) / math.log(2) / n_bytes
        out[precision] = {"bits_per_byte": bpb, "bpb_change_pct": (bpb / ref_bpb - 1) * 100,
                          "top1_agreement_pct": 100 * sum(a == b for a, b in zip(top1, ref_top1)) / len(ids)}
    return out


# What `bench --brief` measures, per engine; its report names them, so that no one reads an absent row as zero.
BRIEF_MEASURED = {"ours": ["load_s", "peak_rss_mb", "decode_tok_s"], "llama.cpp": ["decode_tok_s"]}
BRIEF_SKIPPED = ["transformers", "prefill", "time to first token", "chat turns", f"decode with top-{TOP_K}",
                 "weight bandwidth", "start-up", "quality", "decode with one core busy"]


def run_bench(args) -> int:
    brief = args.brief
    if brief and (args.against == "transformers" or args.quality_text is not None):
        raise UsageError("gpt2-desktop bench: --brief measures only load time, peak memory and decode speed; "
                         "leave out --against transformers and --quality-text")
    args.against = args.against or ("none" if brief else "transformers")
    args.model, _name = resolve_model(args.model)
    modes = list(precisions.NAMES) if args.precision == precisions.AUTO else [args.precision]
    if args.against == "transformers":
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise SettingsError("--against transformers needs the transformers package (pip install transformers).")
    text = None
    if args.quality_text is not None:
        text = read_text_file(args.quality_text)
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = {"model": str(args.model), "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens}
    if brief:
        report.update(brief=True, measured={"ours": BRIEF_MEASURED["ours"]}, not_measured=BRIEF_SKIPPED)
    else:
        report["prefill_tokens"] = args.prefill_tokens
    report.update(threads=args.threads or physical_cores(), ours={})
    llama = None
    if args.llama_cpp is not None:
        from engine.tooling import llama_cpp

        if not llama_cpp.tool("llama-bench", args.llama_cpp).exists():
            raise SettingsError(f"{args.llama_cpp} has no llama-bench: run `make bench-llama` first.")
        say("converting the model for llama.cpp ...")
        llama = llama_cpp.convert(args.model, args.llama_cpp)
        report["llama.cpp"] = {}
        if brief:
            report["measured"]["llama.cpp"] = BRIEF_MEASURED["llama.cpp"]
    threads = args.threads or physical_cores()
    for precision in modes:
        if precision != precisions.REFERENCE:
            say(f"preparing {precision} ...")
            report.setdefault("prepare", {})[precision] = _run_child("prepare", args, precision)
        say(f"measuring ours, {precision} ...")
        report["ours"][precision] = _run_child("brief" if brief else "ours", args, precision)
        kind = LLAMA_TYPES.get(precision)
        if llama is not None and kind is not None:  # right after ours, the same precision: interleaved
            say(f"measuring llama.cpp, {kind} ...")
            if brief:
                report["llama.cpp"][precision] = {"type": kind, "decode_tok_s": llama_cpp.llama_bench(
                    llama[kind], threads, 0, args.new_tokens, args.repeats, args.llama_cpp)}
            else:
                report["llama.cpp"][precision] = _llama_figures(llama_cpp, llama[kind], threads, args, kind)
    if brief:
        if llama is not None:
            report["decode_vs_llama_cpp"] = {p: report["ours"][p]["decode_tok_s"] / theirs["decode_tok_s"]
                                             for p, theirs in report["llama.cpp"].items()}
        print(json.dumps(report) if args.json else format_brief(report))
        return 0
    if llama is not None:
        say("measuring decode with one core kept busy by another process ...")
        report["busy"] = _busy_decode(args, llama_cpp, llama["f32"], threads)
    if args.against == "transformers":
        say("measuring transformers, float32 ...")
        report["transformers"] = _run_child("transformers", args, "float32")
        theirs = report["transformers"]
        report["ratios"] = {
            precision: {
                "decode_speedup": ours["decode_tok_s"] / theirs["decode_tok_s"],
                "prefill_time_ratio": ours["prefill_ms"] / theirs["prefill_ms"],
                "ttft_vs_their_prefill": ours["ttft_ms"] / theirs["prefill_ms"],
                "peak_rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
            }
            for precision, ours in report["ours"].items()
        }
    report["read_gb_s"] = _run_child("bandwidth", args, "float32")["read_gb_s"]
    say("timing start-up ...")
    report["startup_s"] = {
        "embedded float32": time_to_first_token(None, "float32", args.threads),
        **{f"{args.model.name} {p}": time_to_first_token(args.model, p, args.threads) for p in modes},
    }
    if text is not None:
        say("measuring quality on the embedded model ...")
        report["quality"] = quality(text, [p for p in modes if p != precisions.REFERENCE])
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


def format_brief(report: dict) -> str:
    ours = report["ours"]
    also = ", and llama.cpp's decode speed" if "llama.cpp" in report else ""
    lines = [
        f"model {report['model']}  threads {report['threads']}  (CPU)",
        f"brief: measured only load time, peak RSS and decode speed{also} "
        f"(decode: {report['new_tokens']} greedy tokens after a {report['prompt_tokens']}-token prompt)",
        f"not measured: {', '.join(report['not_measured'])}",
        "",
        f"{'':30}" + "".join(f"{'ours ' + p:>18}" for p in ours),
    ]
    rows = [("decode tokens/s", lambda r: f"{r['decode_tok_s']:.1f}"),
            ("peak RSS MB (load + decode)", lambda r: f"{r['peak_rss_mb']:.0f}"),
            ("load s", lambda r: f"{r['load_s']:.2f}"), ("decoding step", lambda r: r["decoder"])]
    for label, show in rows:
        lines.append(f"{label:30}" + "".join(f"{show(r):>18}" for r in ours.values()))
    if "llama.cpp" in report:
        theirs, ratio = report["llama.cpp"], report["decode_vs_llama_cpp"]
        rows = [("llama.cpp type", lambda p: theirs[p]["type"]),
                ("llama.cpp decode tokens/s", lambda p: f"{theirs[p]['decode_tok_s']:.1f}"),
                ("  ours vs llama.cpp", lambda p: f"{ratio[p]:.2f}x")]
        lines.append("")
        for label, show in rows:
            lines.append(f"{label:30}" + "".join(f"{show(p) if p in theirs else '-':>18}" for p in ours))
    if report.get("prepare"):
        lines.append("")
    for precision, prep in report.get("prepare", {}).items():
        made = "made" if prep["made"] else "already cached"
        lines.append(f"prepared {precision} copy: {made}, {prep['prepare_s']:.2f} s (before, and not in, load s)")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    ours = report["ours"]
    columns = [(f"ours {p}", ours[p]) for p in ours]
    if "transformers" in report:
        columns.insert(0, ("transformers fp32", report["transformers"]))
    lines = [
        f"model {report['model']}  threads {report['threads']}  (CPU)",
        f"decode: {report['new_tokens']} greedy tokens after a {report['prompt_tokens']}-token prompt; "
        f"prefill and time to first token: {report['prefill_tokens']}-token prompt",
        "",
        f"{'':30}" + "".join(f"{name:>18}" for name, _ in columns),
    ]
    rows = [("decode tokens/s", "decode_tok_s", "{:.1f}"),
            (f"decode with top-{TOP_K} tokens/s", "decode_top_tok_s", "{:.1f}"),
            ("  its time vs plain decode", "top_cost", "{:.3f}x"), ("prefill ms (last logit)", "prefill_ms", "{:.1f}"),
            ("time to first token ms", "ttft_ms", "{:.1f}"),
            (f"chat turn {CHAT_TURNS} first token ms", "chat_ttft_cold_ms", "{:.1f}"),
            ("  with the prompt cache ms", "chat_ttft_cached_ms", "{:.1f}"),
            ("  cached vs cold", "chat_cache_ratio", "{:.3f}x"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
            ("load s", "load_s", "{:.2f}"), ("weights read per token MB", "weight_mb_per_token", "{:.0f}"),
            ("weight bandwidth GB/s", "weight_gb_s", "{:.1f}")]
    for label, key, fmt in rows:
        lines.append(f"{label:30}" + "".join(f"{fmt.format(r[key]) if key in r else '-':>18}" for _, r in columns))
    lines.append(f"{'decoding step':30}" + "".join(f"{r.get('decoder', 'generate()'):>18}" for _, r in columns))
    if "llama.cpp" in report:
        theirs = report["llama.cpp"]
        lines.append("")
        rows = [("llama.cpp type", lambda r: r["type"]), ("llama.cpp decode tokens/s", lambda r: f"{r['decode_tok_s']:.1f}"),
                ("  ours vs llama.cpp", None), ("llama.cpp prefill ms", lambda r: f"{r['prefill_ms']:.1f}"),
                ("  our prefill time vs theirs", "prefill")]
        for label, show in rows:
            cells = []
            for name, r in columns:
                p = name.removeprefix("ours ")
                if p not in theirs or not name.startswith("ours "):
                    cells.append("-")
                elif show is None:
                    cells.append(f"{r['decode_tok_s'] / theirs[p]['decode_tok_s']:.2f}x")
                elif show == "prefill":
                    cells.append(f"{r['prefill_ms'] / theirs[p]['prefill_ms']:.2f}x")
                else:
                    cells.append(show(theirs[p]))
            lines.append(f"{label:30}" + "".join(f"{c:>18}" for c in cells))
    if "busy" in report:
        b = report["busy"]
        lines.append("")
        lines.append(f"float32 decode with one core busy: ours {b['ours']:.1f} tok/s, llama.cpp {b['llama.cpp']:.1f} "
                     f"({b['ours'] / b['llama.cpp']:.2f}x); ours on one thread, quiet: {b['ours_one_thread_quiet']:.1f}")
    if "ratios" in report:
        lines.append("")
        ratio_rows = [("decode speed vs transformers", "decode_speedup"),
                      ("prefill time vs transformers", "prefill_time_ratio"),
                      ("first token vs their prefill", "ttft_vs_their_prefill"),
                      ("peak RSS vs transformers", "peak_rss_ratio")]
        for label, key in ratio_rows:
            lines.append(f"{label:30}" + f"{'1.00x':>18}"
                         + "".join(f"{report['ratios'][p][key]:>17.2f}x" for p in ours))
    lines.append("")
    lines.append(f"machine read bandwidth (torch sum over 1 GiB): {report['read_gb_s']:.1f} GB/s")
    for precision, prep in report.get("prepare", {}).items():
        made = "made" if prep["made"] else "already cached"
        lines.append(f"prepared {precision} copy: {made}, {prep['prepare_s']:.2f} s")
    for name, seconds in report["startup_s"].items():
        lines.append(f"process start to first token, {name}: {seconds:.2f} s")
    if "quality" in report:
        q = report["quality"]
        lines.append("")
        lines.append(f"quality, embedded model, {q['tokens']} tokens ({q['bytes']} bytes): "
                     f"float32 {q['float32']['bits_per_byte']:.4f} bits/byte")
        for precision, r in q.items():
            if isinstance(r, dict) and "top1_agreement_pct" in r:
                lines.append(f"  {precision:9} top-1 agreement {r['top1_agreement_pct']:6.2f}%   "
                             f"bits/byte {r['bits_per_byte']:.4f} ({r['bpb_change_pct']:+.2f}%)")
    return "\n".join(lines)


if __name__ == "__main__":
    child_main(sys.argv[1:])

"""`gpt2-desktop bench`: decode speed, prefill time, time to first token and peak memory,
side by side with transformers on the same weights, in one run, as ratios.

Each engine runs in its own child process so that its peak resident memory is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import torch

DECODE_KEYS = ("decode_tok_s", "prefill_ms", "ttft_ms", "peak_rss_mb", "load_s")


def _prompt(n: int) -> list[int]:
    return torch.randint(0, 50000, (n,), generator=torch.Generator().manual_seed(n)).tolist()


def _best(values: list[float], higher_is_better: bool) -> float:
    return max(values) if higher_is_better else min(values)


def measure_ours(model: str, dtype: str, prompt_tokens: int, new_tokens: int, prefill_tokens: int,
                 repeats: int) -> dict:
    from engine.generate import Generator
    from engine.loader import load_model
    from engine.sampling import SamplingSettings

    started = time.perf_counter()
    loaded = load_model(model, device="cpu", dtype=dtype)
    load_s = time.perf_counter() - started
    generator = Generator(loaded)
    greedy = SamplingSettings(temperature=0, max_new_tokens=new_tokens)
    decode, prefill, ttft = [], [], []
    list(generator.stream(_prompt(prompt_tokens), SamplingSettings(temperature=0, max_new_tokens=4)))  # warm-up
    long_prompt = _prompt(prefill_tokens)
    for _ in range(repeats):
        done = list(generator.stream(_prompt(prompt_tokens), greedy))[-1]
        decode.append(done.tokens_per_second)
        with torch.inference_mode():
            t0 = time.perf_counter()
            loaded.model(torch.tensor([long_prompt]), loaded.model.new_cache(), 0, last_only=True)
            prefill.append((time.perf_counter() - t0) * 1000)
        done = list(generator.stream(long_prompt, SamplingSettings(temperature=0, max_new_tokens=1)))[-1]
        ttft.append(done.time_to_first_token_ms)
    return {"decode_tok_s": _best(decode, True), "prefill_ms": _best(prefill, False), "ttft_ms": _best(ttft, False),
            "load_s": load_s}


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

    def generate(ids: list[int], n: int) -> tuple[float, list[float]]:
        clock = _Clock()
        t0 = time.perf_counter()
        hf.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n, streamer=clock,
                    pad_token_id=50256)
        return t0, clock.times[1:]  # the first put is the prompt

    decode, prefill, ttft = [], [], []
    generate(_prompt(prompt_tokens), 4)  # warm-up
    long_prompt = _prompt(prefill_tokens)
    for _ in range(repeats):
        _, times = generate(_prompt(prompt_tokens), new_tokens)
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
    engine, model, dtype, threads, prompt_tokens, new_tokens, prefill_tokens, repeats = argv
    if threads != "default":
        torch.set_num_threads(int(threads))
    measure = measure_ours if engine == "ours" else measure_transformers
    result = measure(model, dtype, int(prompt_tokens), int(new_tokens), int(prefill_tokens), int(repeats))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


def _run_child(engine: str, args) -> dict:
    argv = [engine, str(args.model), args.dtype, str(args.threads or "default"), str(args.prompt_tokens),
            str(args.new_tokens), str(args.prefill_tokens), str(args.repeats)]
    proc = subprocess.run([sys.executable, "-m", "engine.bench", *argv], capture_output=True, text=True,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
        raise RuntimeError(f"the {engine} benchmark failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(args) -> int:
    from engine.errors import SettingsError
    from engine.loader import resolve_model_folder

    args.model = resolve_model_folder(args.model)
    if args.dtype == "int8":
        raise SettingsError("--dtype int8 is not available yet; use float32, float16 or bfloat16.")
    if args.against == "transformers":
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise SettingsError("--against transformers needs the transformers package (pip install transformers).")
    results = {"ours": _run_child("ours", args)}
    if args.against == "transformers":
        results["transformers"] = _run_child("transformers", args)
    report = {
        "model": str(args.model),
        "dtype": args.dtype,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "prefill_tokens": args.prefill_tokens,
        "threads": results["ours"]["threads"],
        **results,
    }
    if "transformers" in results:
        ours, theirs = results["ours"], results["transformers"]
        report["ratios"] = {
            "decode_speedup": ours["decode_tok_s"] / theirs["decode_tok_s"],
            "prefill_time_ratio": ours["prefill_ms"] / theirs["prefill_ms"],
            "ttft_ratio": ours["ttft_ms"] / theirs["ttft_ms"],
            "peak_rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    engines = [name for name in ("ours", "transformers") if name in report]
    lines = [
        f"model {report['model']}  dtype {report['dtype']}  threads {report['threads']}",
        f"decode: {report['new_tokens']} greedy tokens after a {report['prompt_tokens']}-token prompt; "
        f"prefill and time to first token: {report['prefill_tokens']}-token prompt",
        "",
        f"{'':24}" + "".join(f"{name:>14}" for name in engines) + ("   ours/theirs" if "ratios" in report else ""),
    ]
    rows = [("decode tokens/s", "decode_tok_s", "decode_speedup", "{:.1f}"),
            ("prefill ms (last logit)", "prefill_ms", "prefill_time_ratio", "{:.1f}"),
            ("time to first token ms", "ttft_ms", "ttft_ratio", "{:.1f}"),
            ("peak RSS MB", "peak_rss_mb", "peak_rss_ratio", "{:.0f}"),
            ("load s", "load_s", None, "{:.2f}")]
    for label, key, ratio, fmt in rows:
        line = f"{label:24}" + "".join(f"{fmt.format(report[name][key]):>14}" for name in engines)
        if ratio and "ratios" in report:
            line += f"{report['ratios'][ratio]:>14.2f}x"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    child_main(sys.argv[1:])

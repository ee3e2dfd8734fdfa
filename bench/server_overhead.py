"""Decode speed through `gpt2-desktop serve`'s streaming API against the command line's, side by side.

    python -m bench.server_overhead [--model .bench/gpt2-124M] [--dtype float32] [--tokens 128] [--rounds 5]

Each round runs `generate --json` (its own tokens per second) and one streamed /v1/completions request
(chunks after the first, over the time since the first) with the same greedy settings, interleaved;
prints the medians and their ratio. The server runs as its own process, as a user would run it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import CLI


def streamed_tokens_per_second(base_url: str, prompt: str, tokens: int) -> float:
    import urllib.request

    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True}).encode()
    request = urllib.request.Request(base_url + "/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    times = []
    with urllib.request.urlopen(request) as response:
        for line in response:
            if line.startswith(b"data: {") and b'"finish_reason": null' in line:
                times.append(time.perf_counter())
    return (len(times) - 1) / (times[-1] - times[0])


def cli_tokens_per_second(model: str, dtype: str, prompt: str, tokens: int) -> float:
    out = subprocess.run([CLI, "generate", "--model", model, "--dtype", dtype, "--prompt", prompt,
                          "--max-new-tokens", str(tokens), "--temperature", "0", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=".bench/gpt2-124M")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not Path(args.model).exists():
        sys.exit(f"{args.model} is missing: run `python -m bench.make_models` first")
    server = subprocess.Popen([CLI, "serve", "--model", args.model, "--dtype", args.dtype, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().split(" at ")[1].split()[0]
        prompt = "Once upon a time there was a little fox who lived in the wood"
        streamed_tokens_per_second(base_url, prompt, 8)  # warm-up
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(streamed_tokens_per_second(base_url, prompt, args.tokens))
            theirs.append(cli_tokens_per_second(args.model, args.dtype, prompt, args.tokens))
    finally:
        server.terminate()
        server.wait()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.model} {args.dtype}, {args.tokens} greedy tokens, {args.rounds} interleaved rounds (medians)")
    print(f"  serve, streamed   {a:8.1f} tok/s   {['%.1f' % x for x in ours]}")
    print(f"  generate --json   {b:8.1f} tok/s   {['%.1f' % x for x in theirs]}")
    print(f"  server / command line: {a / b:.3f}x")


if __name__ == "__main__":
    main()

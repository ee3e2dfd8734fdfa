"""Training speed of a LoRA step: this engine's model against PEFT + transformers, same shape, rank,
targets, batch, context and threads; and peak memory of LoRA beside full fine-tuning.

    python -m bench.lora_speed [--model .bench/gpt2-124M] [--rank 8] [--batch 2] [--context 256]
                               [--threads 2] [--steps 3] [--rounds 2] [--json]

Each (engine, mode) runs in a child process of its own, so its peak resident memory is its own; the
rounds interleave them, so a busy spell on a shared machine falls on all of them alike. A step is
forward, cross-entropy, backward, gradient clipping and an AdamW step over the trained parameters;
tokens per second is batch x context over the step's wall time, median over the measured steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = {
    "ours lora fp32": ("ours", "lora", False),
    "ours lora bf16-autocast": ("ours", "lora", True),
    "peft lora fp32": ("peft", "lora", False),
    "peft lora bf16-autocast": ("peft", "lora", True),
    "ours full fp32": ("ours", "full", False),
}


def _ours(folder: Path, kind: str, rank: int):
    import torch

    from engine.core.adapters import LoraConfig, PROJECTIONS
    from engine.core.checkpoint import build_model, read_state_dict, weight_files
    from engine.core.config import load_config
    from engine.core.lora import add_lora

    model = build_model(load_config(folder), read_state_dict(weight_files(folder)), torch.float32, "cpu")
    if kind == "lora":
        add_lora(model, LoraConfig(rank=rank, alpha=2.0 * rank, targets=PROJECTIONS))
    else:
        model.requires_grad_(True)
    return model.train(), lambda x: model(x)


def _peft(folder: Path, kind: str, rank: int):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel

    # No dropout, as in this engine's model (GPT2Config's defaults would add three dropouts per block).
    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa", resid_pdrop=0.0, embd_pdrop=0.0,
                                            attn_pdrop=0.0)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                       "mlp.c_proj"],
                        fan_in_fan_out=True, lora_dropout=0.0, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    return model.train(), lambda x: model(input_ids=x).logits


def child(args) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    engine, kind, autocast = MODES[args.mode]
    model, forward = (_ours if engine == "ours" else _peft)(Path(args.model), kind, args.rank)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    vocab = json.loads((Path(args.model) / "config.json").read_text())["vocab_size"]
    times, losses = [], []
    for step in range(args.steps + 1):  # the first step warms up
        x = torch.randint(0, vocab, (args.batch, args.context + 1), generator=gen)
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = forward(x[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - started)
        losses.append(loss.item())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tok_s": [args.batch * args.context / t for t in times], "peak_mb": peak_mb,
                      "trained": sum(p.numel() for p in params), "loss": losses}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=".bench/gpt2-124M")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--json", action="store_true")
    p.add_argument("--mode", help=argparse.SUPPRESS)  # a child process measuring one mode
    args = p.parse_args()
    if args.mode:
        return child(args)
    modes = args.modes.split(",")
    results: dict[str, dict] = {m: {"tok_s": [], "peak_mb": 0.0} for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            argv = [sys.executable, "-m", "bench.lora_speed", "--mode", mode, "--model", args.model, "--rank",
                    str(args.rank), "--batch", str(args.batch), "--context", str(args.context), "--threads",
                    str(args.threads), "--steps", str(args.steps)]
            out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            results[mode]["tok_s"] += out["tok_s"]
            results[mode]["peak_mb"] = max(results[mode]["peak_mb"], out["peak_mb"])
            results[mode]["trained"] = out["trained"]
    base = statistics.median(results["peft lora fp32"]["tok_s"]) if "peft lora fp32" in results else None
    report = {"shape": args.model, "rank": args.rank, "batch": args.batch, "context": args.context,
              "threads": args.threads, "modes": {}}
    for mode, r in results.items():
        median = statistics.median(r["tok_s"])
        report["modes"][mode] = {"tok_s_median": round(median, 1), "tok_s_all": [round(v, 1) for v in r["tok_s"]],
                                 "vs_peft_fp32": round(median / base, 2) if base else None,
                                 "peak_mb": round(r["peak_mb"]), "trained_params": r["trained"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.model}: rank {args.rank}, batch {args.batch} x context {args.context}, {args.threads} threads")
    for mode, r in report["modes"].items():
        ratio = f"{r['vs_peft_fp32']:.2f}x" if r["vs_peft_fp32"] else ""
        print(f"  {mode:26} {r['tok_s_median']:8.1f} tok/s {ratio:>7}  peak {r['peak_mb']:6} MB  "
              f"trained {r['trained_params']:,}")


if __name__ == "__main__":
    main()

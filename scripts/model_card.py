"""Write the README.md (model card) of a model trained by `gpt2-desktop train`.

    python scripts/model_card.py RUN_FOLDER MODEL_FOLDER

Every figure is measured here: validation loss and bits per byte through the CLI's own
`perplexity` command, gzip -9 and xz -9 on the same text, and seeded sample continuations.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "gpt2-desktop")
SAMPLES = [
    ("Once upon a time", dict(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.1, seed=1)),
    ("Once upon a time", dict(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.1, seed=2)),
    ("The little rabbit looked up at the moon and", dict(temperature=0.7, top_k=40, top_p=1.0, repetition_penalty=1.1, seed=3)),
    ("\"Where are you going?\" asked the fox.", dict(temperature=0.9, top_k=0, top_p=0.9, repetition_penalty=1.0, seed=4)),
    ("In a great forest there lived a woodcutter with his two children.", dict(temperature=0, top_k=0, top_p=1.0, repetition_penalty=1.2, seed=5)),
]


def compressed_bits_per_byte(path: Path, tool: str) -> float:
    size = len(subprocess.run([tool, "-9", "-c", str(path)], capture_output=True, check=True).stdout)
    return size * 8 / path.stat().st_size


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    run, model = Path(sys.argv[1]), Path(sys.argv[2])
    settings = json.loads((run / "settings.json").read_text())
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    stats = json.loads((run / "data" / "stats.json").read_text())
    config = json.loads((model / "config.json").read_text())
    validation = run / "data" / "validation.txt"
    ppl = json.loads(subprocess.run([CLI, "perplexity", "--model", str(model), "--file", str(validation), "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    from safetensors import safe_open

    with safe_open(str(model / "model.safetensors"), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    samples = []
    for prompt, opts in SAMPLES:
        args = [CLI, "generate", "--model", str(model), "--prompt", prompt, "--max-new-tokens", "80", "--json"]
        for key, value in opts.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        done = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        samples.append((prompt, opts, done["text"]))
    gz, xz = compressed_bits_per_byte(validation, "gzip"), compressed_bits_per_byte(validation, "xz")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"# {model.name}",
        "",
        "The default model of gpt2-desktop: a small GPT-2 trained from scratch by this project on public-domain",
        "children's literature, so that the app writes English on a fresh, offline machine.",
        "",
        "## Model",
        "",
        f"- Architecture: GPT-2 (the engine's own `engine/core/model.py`), {config['n_layer']} layers, "
        f"{config['n_embd']} wide, {config['n_head']} heads, context {config['n_positions']} tokens.",
        f"- Parameters: {params:,} (output head tied to the token embedding); weights float32, "
        f"{(model / 'model.safetensors').stat().st_size / 1e6:.1f} MB.",
        f"- Tokenizer: byte-level BPE (GPT-2's scheme) with {config['vocab_size']:,} tokens, trained with `tokenizers` "
        "on the training books; `<|endoftext|>` is id 0 and separates documents.",
        "- Why not GPT-2's own 50,257-token vocabulary: at this width its embedding alone would be "
        f"{50257 * config['n_embd']:,} parameters ({50257 * config['n_embd'] * 4 / 1e6:.0f} MB in float32, over the 40 MB "
        "budget for a shipped model), and its output layer would cost about "
        f"{50257 / config['vocab_size']:.1f}x the compute of this one on every token, so within the same CPU time "
        "the model would see far fewer tokens. A vocabulary fitted to the corpus spends the budget on the network.",
        "",
        "## Training",
        "",
        f"- Data: {len(stats['train_documents'])} books of `shared/corpus/gutenberg-children` (Project Gutenberg header "
        "and footer stripped, line breaks normalised, paragraphs unwrapped), "
        f"{stats['train_tokens']:,} tokens. Validation: {len(stats['validation_documents'])} whole books never seen "
        f"in training (Project Gutenberg ids {', '.join(stats['validation_documents'])}), {stats['validation_tokens']:,} "
        "tokens.",
        f"- Tokens seen: {state['tokens_seen']:,} ({state['step']:,} steps of {settings['batch_size']} x "
        f"{settings['context']} tokens, about {state['tokens_seen'] / stats['train_tokens']:.1f} epochs).",
        f"- Optimiser: AdamW (betas 0.9/0.95, weight decay {settings['weight_decay']}), learning rate "
        f"{settings['lr']} with {settings['warmup']} warm-up steps and cosine decay to {settings['min_lr']}, gradient "
        f"clipping at {settings['grad_clip']}, seed {settings['seed']}.",
        f"- Time and hardware: {state['elapsed_s'] / 60:.0f} minutes on {nproc} cores of an {cpu_name()}, no GPU "
        "(CPU shared with other work part of the time).",
        "- Reproduce: `gpt2-desktop train --out RUN --data ../shared/corpus/gutenberg-children "
        f"--steps {settings['steps']} --eval-every {settings['eval_every']}`.",
        "",
        "## Evaluation (validation books)",
        "",
        "| measure | bits per byte |",
        "|---|---|",
        f"| this model (`gpt2-desktop perplexity`) | **{ppl['bits_per_byte']:.3f}** |",
        f"| xz -9 | {xz:.3f} |",
        f"| gzip -9 | {gz:.3f} |",
        "",
        f"Validation loss {ppl['nll'] / ppl['tokens']:.4f} nats per token, perplexity {ppl['ppl']:.2f}, over "
        f"{ppl['tokens']:,} tokens and {ppl['bytes']:,} bytes.",
        "Reproduce: `python scripts/validation_text.py ../shared/corpus/gutenberg-children val.txt && "
        "gpt2-desktop perplexity --file val.txt --json`.",
        "",
        "## Samples",
        "",
        "Each with `--max-new-tokens 80`; the prompt is in bold.",
        "",
    ]
    for prompt, opts, text in samples:
        settings_text = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in opts.items())
        lines += [f"*{settings_text}*", "", "> **" + prompt + "**" + text.replace("\n", "\n> "), ""]
    lines += [
        "## Limits",
        "",
        "A small model: it writes fluent-looking sentences in the style of old children's books, but it forgets",
        "what it said a paragraph ago, invents words now and then, knows no facts, and was not trained to chat or",
        "follow instructions. Its language and attitudes are those of books written a century or more ago.",
        "For real GPT-2, open a GPT-2 model folder with File > Open model folder… (or `--model FOLDER`).",
        "",
        "## Licence",
        "",
        "The training texts are in the public domain (Project Gutenberg). The weights are released under the",
        "same terms as gpt2-desktop.",
        "",
    ]
    (model / "README.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {model / 'README.md'}: {ppl['bits_per_byte']:.3f} bits/byte (xz {xz:.3f}, gzip {gz:.3f})")


if __name__ == "__main__":
    main()

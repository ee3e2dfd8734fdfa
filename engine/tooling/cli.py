"""The `gpt2-desktop` subcommands that need no window: generate, choose, score, perplexity, templates,
models, bench and train. Imports only what each command needs, so `--help` does not load torch."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

from engine.core import precisions
from engine.errors import EngineError, UsageError
from engine.inference.settings import SamplingSettings

PROG = "gpt2-desktop"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump, exit 2
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _add_model_args(p: argparse.ArgumentParser, model_required: bool = False, adapter: bool = True) -> None:
    p.add_argument("--model", required=model_required,
                   help="model folder or a downloaded model's name (default: the embedded model, or with --adapter "
                        "the base it was trained on)")
    if adapter:
        p.add_argument("--adapter", type=Path, default=None, metavar="FOLDER",
                       help="a LoRA adapter in PEFT's format (or a `train --lora` run folder), merged into the model "
                            "once and kept in the data folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", dest="precision", default=precisions.AUTO, choices=precisions.CHOICES,
                   help=f"weight precision (default: {precisions.default_for('cpu')} on the CPU, "
                        f"{precisions.default_for('cuda')} on CUDA) — {precisions.help_text()}; reduced ones are "
                        "prepared once and kept in the data folder")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per physical core)")


def _add_remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote", metavar="URL", help="use an OpenAI-compatible server instead of a local model "
                                                   "(vLLM, llama.cpp's server, another gpt2-desktop serve), e.g. "
                                                   "http://127.0.0.1:8080/v1")
    p.add_argument("--remote-model", metavar="ID", help="the server's model to use (default: the first it lists)")
    p.add_argument("--api-key", help="the server's API key (default: the OPENAI_API_KEY variable)")


def _add_top_logprobs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-logprobs", type=int, default=0, metavar="K",
                   help="with --json, add each token's rank (1 = the model's likeliest) and its K likeliest "
                        "alternatives, K up to 20")


def _add_prompt_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt")
    src.add_argument("--prompt-file", type=Path)
    src.add_argument("--template", help="a template name (see: gpt2-desktop templates list)")
    p.add_argument("--var", action="append", default=[], metavar="KEY=VALUE", help="a template variable")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run GPT-2-family models locally. With no command, open the window.",
                     epilog="Also: gpt2-desktop --version; gpt2-desktop --self-test (open the window, write one "
                            "short reply, exit 0 if all worked).")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    g = sub.add_parser("generate", help="continue a prompt")
    _add_model_args(g)
    _add_prompt_args(g)
    # Every sampling flag comes from SamplingSettings: its name, type, default and help. None here means
    # "not given", so that a template's own settings apply unless a flag overrides them.
    for name in SamplingSettings.SCALARS:
        g.add_argument(f"--{name.replace('_', '-')}", type=SamplingSettings.kind(name), default=None,
                       help=SamplingSettings.help(name) + (", or the template's" if name != "seed" else ""))
    g.add_argument("--stop", nargs="+", action="extend", default=None, metavar="TEXT", help=SamplingSettings.help("stop"))
    _add_top_logprobs_arg(g)
    _add_remote_args(g)
    g.add_argument("--json", action="store_true", help="one JSON object per token, then a summary line")

    c = sub.add_parser("choose", help="pick the likeliest of several continuations")
    _add_model_args(c)
    _add_prompt_args(c)
    c.add_argument("--option", action="append", default=[], help="one option; give two or more")
    c.add_argument("--normalise", action="store_true", help="rank by log-likelihood per token, not in total")
    _add_remote_args(c)
    c.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list, download, import or remove models")
    m.add_argument("action", choices=["list", "download", "import", "remove"])
    m.add_argument("target", nargs="?", help="a Hub repo id (download), a folder (import) or a name (remove)")
    m.add_argument("--yes", action="store_true", help="remove without asking")

    tl = sub.add_parser("templates", help="list or show prompt templates")
    tl.add_argument("action", choices=["list", "show"])
    tl.add_argument("name", nargs="?")

    s = sub.add_parser("score", help="per-token log-probabilities of a text")
    _add_model_args(s)
    s.add_argument("--text", required=True)
    _add_top_logprobs_arg(s)
    _add_remote_args(s)
    s.add_argument("--json", action="store_true")

    a = sub.add_parser("analyse", help="how predictable each token of a text was: rank buckets, bits per byte, "
                                       "the most surprising tokens")
    _add_model_args(a)
    a.add_argument("--file", required=True, type=Path)
    a.add_argument("--surprising", type=int, default=10, metavar="N", help="how many surprising tokens to list")
    _add_remote_args(a)
    a.add_argument("--json", action="store_true")

    p = sub.add_parser("perplexity", help="perplexity and bits per byte of a text file")
    _add_model_args(p)
    p.add_argument("--file", required=True, type=Path)
    _add_remote_args(p)
    p.add_argument("--json", action="store_true")

    h = sub.add_parser("history", help="export, import or list the window's conversations (JSON or Markdown; see "
                                       "gpt2-desktop history --help)", add_help=False)
    h.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    sv = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, "
                                      "/v1/models, /health) on one model",
                        description="An OpenAI-compatible HTTP server on one model. Requests must address it by "
                                    "a name of its own (localhost, its --host, an --allow-host name; any IP address "
                                    "when it listens on all of them), a POST must be JSON, and no web page may use it "
                                    "unless --allow-origin names the page's origin. A client has --timeout seconds "
                                    "for a request's headers and again for its body, an idle connection is closed "
                                    "after as long, and at most --max-connections are open at once.")
    _add_model_args(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer "
                                                        "only; any other needs --api-key)")
    sv.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    sv.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every request "
                                                    "(default: the GPT2_DESKTOP_API_KEY variable, if set)")
    sv.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                    help="let web pages from this origin call the server (CORS); repeat for more")
    sv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="accept requests addressed to this name too (a proxy's, a name of this computer; "
                         "'*' accepts any); repeat for more")
    sv.add_argument("--queue", type=int, default=32, metavar="N",
                    help="requests that may wait behind the running one before the server answers 429 (default 32)")
    sv.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                    help="how long a client has for a request's headers, and again for its body, and how long an "
                         "idle connection stays open (default 15)")
    sv.add_argument("--max-connections", type=int, default=256, metavar="N",
                    help="connections open at once (default 256; a quarter of the open-file limit where that is "
                         "lower); past it the one idle longest is closed")
    sv.add_argument("--slide", action="store_true",
                    help="let a prompt and completion longer than the model's window slide on, as generate does, "
                         "instead of refusing them")
    sv.add_argument("--log-requests", action="store_true",
                    help="print one JSON line per answered request: client, method, path, status, milliseconds")

    b = sub.add_parser("bench", help="speed and memory, side by side with transformers")
    _add_model_args(b, model_required=True, adapter=False)
    b.add_argument("--against", choices=["none", "transformers"], default=None,
                   help="measure transformers float32 too (default: transformers; none with --brief)")
    b.add_argument("--prompt-tokens", type=int, default=32)
    b.add_argument("--new-tokens", type=int, default=128)
    b.add_argument("--prefill-tokens", type=int, default=512)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--quality-text", type=Path, default=None,
                   help="a text to measure each reduced precision of the embedded model against float32 on")
    b.add_argument("--llama-cpp", type=Path, default=None, metavar="DIR",
                   help="also measure llama.cpp built in DIR (make bench-llama) on the same weights, interleaved")
    b.add_argument("--brief", action="store_true",
                   help="per precision only load time, peak memory and decode speed (and llama.cpp's decode speed): "
                        "for models too big to measure in full; no transformers, prefill, start-up or quality")
    b.add_argument("--json", action="store_true")

    e = sub.add_parser("export", help="write a model (with a LoRA adapter merged in) as a Hugging Face folder or "
                                      "a GGUF file for llama.cpp, LM Studio and Ollama")
    e.add_argument("--model", help="model folder or a downloaded model's name (default: the embedded model, or with "
                                   "--adapter the base it was trained on)")
    e.add_argument("--adapter", type=Path, default=None, metavar="FOLDER", help="a LoRA adapter to merge in")
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, metavar="DIR", help="write a Hugging Face GPT-2 folder")
    where.add_argument("--gguf", type=Path, metavar="FILE", help="write one GGUF file")
    e.add_argument("--type", dest="gguf_type", default="f16", choices=["f16", "q8_0"],
                   help="the GGUF file's matrices: f16 (default) or q8_0 (8-bit blocks, about half the size)")

    t = sub.add_parser("train", help="pre-train a small GPT-2 on text, or fine-tune a model on your text")
    t.add_argument("--out", required=True, type=Path, help="run folder: data, checkpoint, log and model/")
    t.add_argument("--data", help="a folder of .txt books (Project Gutenberg headers are stripped) or one text file")
    t.add_argument("--init", help="model folder to fine-tune instead of training from scratch")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--threads", type=int, default=None)
    for name, kind in [("steps", int), ("vocab-size", int), ("n-layer", int), ("n-embd", int), ("n-head", int),
                       ("context", int), ("batch-size", int), ("lr", float), ("min-lr", float), ("warmup", int),
                       ("weight-decay", float), ("eval-every", int), ("eval-batches", int),
                       ("checkpoint-every", int), ("seed", int)]:
        t.add_argument(f"--{name}", type=kind, default=None, **({"dest": "context_window"} if name == "context" else {}))
    t.add_argument("--autocast", default=None, choices=["auto", "bfloat16", "off"],
                   help="run the products in bfloat16 (weights and optimiser stay float32); auto (default): where "
                        "the CPU multiplies bfloat16 in hardware")
    t.add_argument("--lora", type=int, default=None, metavar="RANK",
                   help="train low-rank adapters of this rank (8 is usual) on the --init model, which stays frozen; "
                        "writes RUN/adapter/ in PEFT's format")
    t.add_argument("--lora-alpha", type=float, default=None, metavar="A",
                   help="the adapters' scale is alpha / rank (default: twice the rank)")
    t.add_argument("--lora-dropout", type=float, default=None, metavar="P", help="dropout on the adapters' input (0)")
    t.add_argument("--lora-targets", default=None, metavar="attn,mlp",
                   help="which projections get adapters: attn (c_attn, c_proj), mlp (c_fc, c_proj) or both (default)")
    return parser


MAX_PROMPT_BYTES = 16 << 20  # far more than any model's window (a prompt is cut to it from the start)


def _read_text(path: Path, limit: int | None = None, what: str = "a text file") -> str:
    from engine.tooling.corpus import MAX_TEXT_BYTES, read_text_file

    return read_text_file(path, limit or MAX_TEXT_BYTES, what)


def _load(args):
    """The model the command runs on: a local one, or with --remote a server's."""
    if getattr(args, "remote", None):
        return _remote(args)
    if getattr(args, "remote_model", None) or (getattr(args, "api_key", None) and args.command != "serve"):
        raise UsageError("--remote-model and --api-key go with --remote URL")
    from engine import load_model
    from engine.core.device import set_threads

    set_threads(args.threads)
    loaded = load_model(args.model, device=args.device, precision=args.precision, adapter=args.adapter)
    if loaded.note:
        print(f"note: {loaded.note}", file=sys.stderr)
    return loaded


def _remote(args):
    from engine.inference.remote import RemoteEngine, RemoteServer

    if args.model:
        raise UsageError("--model is for local models; with --remote, name the "
                         "server's model with --remote-model")
    key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY")
    return RemoteEngine(RemoteServer(args.remote, model=args.remote_model, api_key=key))


def _print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _template_values(args) -> dict[str, str]:
    values = {}
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--var takes KEY=VALUE, got {item!r}")
        values[key] = value
    return values


def _find_template(args):
    from engine.paths import user_templates_dir
    from engine.inference.templates import find_template

    if args.var and not args.template:
        raise UsageError("--var is only used with --template")
    return find_template(args.template, user_templates_dir()) if args.template else None


def _prompt_text(args, template, loaded, reserve: int = 0):
    """The prompt (and the rendered template, if one was used) from --prompt, --prompt-file or --template."""
    from engine.inference.templates import render

    if template is None:
        return (args.prompt if args.prompt is not None else _read_text(args.prompt_file, MAX_PROMPT_BYTES, "a prompt")), None
    if loaded is None:  # a remote model: its tokenizer is on the server, nothing is shortened here
        return render(template, _template_values(args)).text, None
    rendered = render(template, _template_values(args), loaded.tokenizer, loaded.context_window - reserve)
    if rendered.cut_tokens:
        print(f"note: '{rendered.cut_field}' was shortened by {rendered.cut_tokens} tokens from its start "
              "to fit the model's window.", file=sys.stderr)
    return rendered.text, rendered


def cmd_generate(args) -> int:
    from engine.inference.generate import Done, Generator

    template = _find_template(args)
    loaded = _load(args)
    remote = getattr(args, "remote", None)
    chosen = {k: getattr(args, k) for k in (*SamplingSettings.SCALARS, "stop") if getattr(args, k) is not None}
    values = {**chosen}
    if template is not None:
        values = {"max_new_tokens": template.max_new_tokens, "stop": template.stop, **template.sampling, **chosen}
    values = {name: SamplingSettings.default(name) for name in SamplingSettings.names()} | values
    # Room for the start of the reply; past the window, generation slides on by itself.
    reserve = 0 if remote else min(values["max_new_tokens"], loaded.context_window // 4)
    prompt, _ = _prompt_text(args, template, None if remote else loaded, reserve)
    settings = SamplingSettings(**{**values, "stop": tuple(values["stop"])}).validate()
    generator = loaded if remote else Generator(loaded)
    done = None
    try:
        for event in generator.stream(prompt, settings, top_logprobs=args.top_logprobs):
            if isinstance(event, Done):
                done = event
            elif args.json:
                _print_json(_token_json(event))
            else:
                sys.stdout.write(event.text)
                sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except EngineError as exc:
        if getattr(exc, "partial", ""):  # a server that went away mid-reply: what it wrote is kept
            sys.stdout.write("\n" if not args.json else "")
            sys.stdout.flush()
        raise
    if args.json:
        summary = {
            "done": True,
            "text": done.text,
            "token_ids": [t if t >= 0 else None for t in done.token_ids],
            "prompt_tokens": done.prompt_tokens,
            "stop_reason": done.stop_reason,
            "time_to_first_token_ms": done.time_to_first_token_ms,
            "tokens_per_second": done.tokens_per_second,
        }
        if done.truncated_prompt_tokens:
            summary["truncated_prompt_tokens"] = done.truncated_prompt_tokens
        _print_json(summary)
    else:
        sys.stdout.write("\n")
    if done.truncated_prompt_tokens:
        print(
            f"note: the prompt was longer than the model's {done.context_window}-token window; "
            f"its first {done.truncated_prompt_tokens} tokens were left out.",
            file=sys.stderr,
        )
    if remote and done.stop_reason == "length" and len(done.token_ids) < settings.max_new_tokens:
        # A server's window is not slid on: the reply ends where it is full.
        print(f"note: the model's {done.context_window}-token window left room for {len(done.token_ids)} new "
              "tokens after the prompt.", file=sys.stderr)
    return 0


def _token_json(t) -> dict:
    """A generated or scored token as --json prints it; rank and alternatives when they were asked for."""
    out = {"token": t.token if t.token >= 0 else None, "text": t.text,
           "logprob": round(t.logprob, 6) if math.isfinite(t.logprob) else None}
    if t.rank is not None or t.top:
        out["rank"] = t.rank
        out["top"] = [alt.to_dict() for alt in t.top]
    return out


def cmd_score(args) -> int:
    from engine.inference.predictions import check_top_logprobs
    from engine.inference.scoring import score_text

    check_top_logprobs(args.top_logprobs)
    model = _load(args)
    if getattr(args, "remote", None):
        scores = model.score_text(args.text, top_logprobs=args.top_logprobs)
    else:
        scores = score_text(model, args.text, top_logprobs=args.top_logprobs)
    total = sum(s.logprob for s in scores)
    if args.json:
        _print_json({"tokens": [_token_json(s) for s in scores], "logprob": total})
    else:
        for s in scores:
            print(f"{s.token:>7}  {s.logprob:10.4f}  {s.text!r}")
        print(f"total logprob {total:.4f} over {len(scores)} tokens")
    return 0


def _scored_text(path: Path) -> str:
    """A text file to score, its line endings read as `train` reads them (a note on stderr says so)."""
    from engine.inference.scoring import normalise_newlines

    text, changed = normalise_newlines(_read_text(path))
    if changed:
        print(f"note: {path} has Windows (CR LF) or old Mac (CR) line endings; its {changed:,} line "
              f"break{'s were' if changed != 1 else ' was'} scored as plain LF, as train reads text.", file=sys.stderr)
    return text


def cmd_perplexity(args) -> int:
    from engine.inference.scoring import perplexity

    text = _scored_text(args.file)
    if not text:
        raise UsageError(f"{args.file} is empty; there is nothing to measure.")
    model = _load(args)
    result = model.perplexity(text) if args.remote else perplexity(model, text)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(f"tokens {result.tokens}  bytes {result.bytes}  nll {result.nll:.2f} nats  "
              f"ppl {result.ppl:.3f}  bits/byte {result.bits_per_byte:.4f}")
    return 0


def cmd_analyse(args) -> int:
    from engine.inference.analysis import BUCKET_NAMES, LIMITS, analyse

    text = _scored_text(args.file)
    if not text.strip():
        raise UsageError(f"{args.file} is empty; there is nothing to analyse.")
    if args.surprising < 0:
        raise UsageError("--surprising takes 0 or more")
    loaded = _load(args)

    def progress(done: int, total: int) -> None:
        if not args.json or sys.stderr.isatty():
            sys.stderr.write(f"\rscoring: {done:,} / {total:,} tokens")
            sys.stderr.flush()

    try:
        if getattr(args, "remote", None):
            result = loaded.analyse(text, surprising=args.surprising, progress=progress)
        else:
            result = analyse(loaded, text, surprising=args.surprising, progress=progress)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    sys.stderr.write("\n")
    if args.json:
        _print_json(result.to_dict())
        return 0
    print(f"{result.tokens:,} tokens, {result.bytes:,} bytes, {result.bits_per_byte:.4f} bits per byte "
          f"({loaded.name})")
    for name, count in zip(BUCKET_NAMES, result.buckets):
        share = count / result.tokens
        print(f"  {name:9} {count:>8,}  {share:7.2%}  {'#' * round(40 * share)}")
    if result.surprising:
        print("most surprising tokens:")
        for s in result.surprising:
            print(f"  rank {s.rank:>6,}  logprob {s.logprob:8.3f}  …{s.before!r} → {s.text!r}")
    print(LIMITS)
    return 0


def cmd_choose(args) -> int:
    from engine.inference.scoring import choose
    from engine.inference.templates import render

    template = _find_template(args)
    loaded = _load(args)
    if args.remote and template is not None:
        rendered = render(template, _template_values(args))
        prompt = rendered.text
    else:
        prompt, rendered = _prompt_text(args, template, loaded)
    options = list(args.option) or list(rendered.options if rendered else [])
    if len(options) < 2:
        raise UsageError("give at least two --option values (or a choose template)")
    if args.remote:
        scores, best = loaded.choose(prompt, options, normalise=args.normalise)
    else:
        scores, best = choose(loaded, prompt, options, normalise=args.normalise)
    if args.json:
        _print_json({"options": [{"text": s.text, "logprob": s.logprob, "prob": s.prob} for s in scores],
                     "best": best})
    else:
        for i, s in enumerate(scores):
            mark = "*" if i == best else " "
            print(f"{mark} {s.prob:7.2%}  {s.logprob:9.3f}  {s.text!r}")
    return 0


def cmd_templates(args) -> int:
    from engine.paths import user_templates_dir
    from engine.inference.templates import all_templates, find_template, render

    if args.action == "list":
        for template in sorted(all_templates(user_templates_dir()).values(), key=lambda t: t.name.lower()):
            origin = "built-in" if template.builtin else "yours"
            print(f"{template.name:40} {template.kind:9} {origin:9} {template.description}")
        return 0
    if not args.name:
        raise UsageError("name a template (see: gpt2-desktop templates list)")
    template = find_template(args.name, user_templates_dir())
    print(f"{template.name} ({template.kind}) — {template.description}")
    print(f"file: {template.source}")
    print("variables: " + ", ".join(f"{v.name}{' (multi-line)' if v.multiline else ''}" for v in template.variables))
    print("example prompt:\n" + render(template, template.example_values()).text)
    return 0


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _terminal_progress(p) -> None:
    width = 30
    filled = int(width * p.done_bytes / p.total_bytes) if p.total_bytes else 0
    eta = p.eta_seconds
    eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None else "--"
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {_size(p.done_bytes)} / {_size(p.total_bytes)}  "
                     f"{p.bytes_per_second / 1e6:.1f} MB/s  ETA {eta_text}  {p.filename[:30]:30}")
    sys.stderr.flush()


def cmd_models(args) -> int:
    from engine.store import hub, local

    if args.action == "list":
        local_models = local.local_models()
        print("On this computer:")
        for model in local_models:
            print(f"  {model.name:40} {model.kind:11} {_size(model.size_bytes):>9}  {model.folder}")
        have = {m.name for m in local_models}
        print("\nAvailable to download (gpt2-desktop models download REPO_ID):")
        for entry in hub.CATALOG:
            mark = "(downloaded)" if entry.repo_id in have else ""
            print(f"  {entry.repo_id:40} {entry.parameters:>5}  ~{_size(entry.download_bytes):>8}  "
                  f"{entry.description} {mark}")
        return 0
    if not args.target:
        raise UsageError(f"say what to {args.action}")
    if args.action == "download":
        drawn = []  # the progress bar was drawn: what ends the download goes on the line below it

        def progress(p) -> None:
            drawn.append(True)
            _terminal_progress(p)

        try:
            folder = hub.download_model(args.target, progress=progress)
        except KeyboardInterrupt:
            sys.stderr.write("\ncancelled; run the same command again to continue\n")
            return 130
        except EngineError:
            sys.stderr.write("\n" if drawn else "")
            raise
        sys.stderr.write("\n")
        print(f"downloaded {args.target} to {folder}")
        return 0
    if args.action == "import":
        model = local.import_folder(Path(args.target))
        print(f"imported {model.name} ({model.folder})")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("pass --yes to remove without a question")
        if input(f"Remove {args.target}? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    model = local.remove_model(args.target)
    print(f"removed {model.name}" + (" from the list (its folder is untouched)" if model.kind == "imported" else ""))
    return 0


def cmd_serve(args) -> int:
    import math
    import os

    from engine.tooling.server import ServerOptions, bind, is_loopback, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"gpt2-desktop serve: --port must be from 0 to 65535, got {args.port}")
    if args.queue < 0:
        raise UsageError("gpt2-desktop serve: --queue takes 0 or more")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"gpt2-desktop serve: --timeout takes a number of seconds above 0, got {args.timeout:g}")
    if args.max_connections < 1:
        raise UsageError(f"gpt2-desktop serve: --max-connections takes 1 or more, got {args.max_connections}")
    if any(not name.strip() for name in args.allow_host):
        raise UsageError("gpt2-desktop serve: --allow-host takes a name, e.g. --allow-host my-box.lan")
    key = args.api_key if args.api_key is not None else os.environ.get("GPT2_DESKTOP_API_KEY") or None
    if key is not None and not key.strip():
        raise UsageError("gpt2-desktop serve: --api-key cannot be empty")
    options = ServerOptions(api_key=key, allow_origins=tuple(args.allow_origin), host=args.host,
                            allow_hosts=tuple(args.allow_host), queue_size=max(1, args.queue), slide=args.slide,
                            log_requests=args.log_requests, timeout=args.timeout,
                            max_connections=args.max_connections)
    if not is_loopback(args.host) and not key:  # before loading the model
        raise UsageError(f"gpt2-desktop serve: --host {args.host} lets other computers in; give it an --api-key "
                         "too (or serve on 127.0.0.1)")
    sock = bind(args.host, args.port)  # a wrong address or a taken port is said before the model loads
    try:
        loaded = _load(args)
    except BaseException:
        sock.close()
        raise
    return serve(loaded, sock, options)


def cmd_bench(args) -> int:
    from engine.tooling.bench import run_bench

    return run_bench(args)


def cmd_export(args) -> int:
    from engine.tooling.export import export_gguf, export_model, load_for_export

    if args.out is not None and args.gguf_type != "f16":
        raise UsageError("--type is for --gguf")
    target = args.out if args.out is not None else args.gguf
    if target.exists() and (args.out is None or not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists; remove it or choose another name")
    model, tokenizer, name = load_for_export(args.model, args.adapter)
    if args.out is not None:
        card = f"# {args.out.name}\n\n{name}, exported by `gpt2-desktop export`.\n"
        export_model(model, tokenizer, args.out, card=card)
    else:
        export_gguf(model, tokenizer, args.gguf, args.gguf_type, name=name)
    print(f"wrote {target} ({name})")
    return 0


def cmd_train(args) -> int:
    from engine.core.device import set_threads
    from engine.tooling.train import TrainSettings, train

    set_threads(args.threads)
    chosen = {k: v for k, v in vars(args).items() if v is not None and k in TrainSettings.__dataclass_fields__}
    if args.init and "lr" not in chosen:  # fine-tuning: gentler defaults, under what was given
        lr = 1e-3 if args.lora is not None else 3e-4  # adapters start at zero and learn faster
        gentle = {"lr": lr, "min_lr": lr / 10, "warmup": max(1, min(chosen.get("steps", 4000) // 10, 100))}
        chosen = {**gentle, **chosen}
    if not args.resume and not args.data:
        raise UsageError("--data is required (or --resume to continue a run)")
    settings = TrainSettings(**chosen) if args.data else None
    if args.resume and settings is None and "steps" in chosen:
        raise UsageError("to change --steps on --resume, pass --data too")
    # A polite kill (logout, `kill`) saves a checkpoint just as Ctrl+C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        train(args.out, settings, resume=args.resume, device=args.device)
    except KeyboardInterrupt:
        return 130
    return 0


COMMANDS = {"generate": cmd_generate, "score": cmd_score, "perplexity": cmd_perplexity, "analyse": cmd_analyse,
            "bench": cmd_bench, "serve": cmd_serve, "train": cmd_train, "choose": cmd_choose, "templates": cmd_templates,
            "models": cmd_models, "export": cmd_export}
COMMAND_NAMES = ("generate", "choose", "score", "perplexity", "analyse", "templates", "models", "history", "serve",
                 "bench", "train", "export")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the system says; else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _checked_threads(threads: int | None) -> int | None:
    """--threads as given, or the CPUs there are when it asks for more (said in a note: more threads than CPUs
    only take turns on them, which is slower)."""
    if threads is None:
        return None
    if threads < 1:
        raise UsageError(f"--threads takes 1 or more, got {threads}")
    cpus = available_cpus()
    if threads > cpus:
        print(f"note: --threads {threads} is more than the {cpus} CPU{'s' if cpus != 1 else ''} here; using {cpus}.",
              file=sys.stderr)
        return cpus
    return threads


def error_line(command: str | None, message: str) -> str:
    """Every error the command line prints, in one form: `gpt2-desktop COMMAND: what is wrong`."""
    prefix = f"{PROG} {command}" if command else PROG
    return message if message.startswith(PROG) else f"{prefix}: {message}"


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"name a command: {', '.join(COMMAND_NAMES)} (see --help)")
        if args.command == "history":  # the app's entry point runs it (app.history.transfer): not the engine's
            raise UsageError("run it as gpt2-desktop history export|import|list (the window's conversations)")
        if "threads" in vars(args):
            args.threads = _checked_threads(args.threads)
        return COMMANDS[args.command](args)
    except EngineError as exc:
        print(error_line(getattr(args, "command", None), str(exc)), file=sys.stderr)
        return 2

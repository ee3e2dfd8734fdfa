"""`gpt2-desktop train`: next-token pre-training of a small GPT-2 on a text corpus, and
fine-tuning an existing model on a user's own text (the two stages of GPT): every weight, or
low-rank adapters (LoRA, `--lora RANK`) beside the frozen base.

Everything lives in one run folder: the prepared data, a checkpoint that survives
interruption (`--resume` continues from it with the same data order), a log, and the
result: the exported model (`model/`), or the adapter in PEFT's format (`adapter/`).
Nothing is pickled: tensors go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.tooling.bpe import train_bpe
from engine.core.adapters import LoraConfig, target_projections, write_adapter
from engine.core.checkpoint import build_model, read_state_dict, weight_files
from engine.core.config import GPTConfig, load_config
from engine.core.lora import add_lora, lora_pairs
from engine.tooling.corpus import Document, load_documents, split_documents
from engine.core.device import resolve_device
from engine.core.device import native_bf16
from engine.errors import ModelLoadError, SettingsError, TrainingError
from engine.files import disk_problem, storage_error, write_atomic
from engine.tooling import checkpoints
from engine.tooling.checkpoints import TrainState
from engine.tooling.export import export_model, replace_folder
from engine.core.model import GPT
from engine.core.tokenizer import GPT2Tokenizer
from engine.store.local import embedded_model_folder, resolve_model


AUTOCAST = ("auto", "bfloat16", "off")


@dataclass(frozen=True)
class TrainSettings:
    data: str  # a folder of .txt books, or one text file
    init: str | None = None  # a model folder to fine-tune; None trains from scratch
    vocab_size: int = 8192
    n_layer: int = 6
    n_embd: int = 256
    n_head: int = 8
    context_window: int = 512  # tokens per training row (--context); at most the model's own
    batch_size: int = 8
    steps: int = 4000
    lr: float = 1.5e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 50
    seed: int = 1337
    lora: int | None = None  # the adapters' rank; None fine-tunes (or trains) every weight
    lora_alpha: float | None = None  # the adapters' scale is alpha / rank; None: twice the rank
    lora_dropout: float = 0.0
    lora_targets: str = "attn,mlp"  # which projections get adapters
    # Products in bfloat16 ("bfloat16"; weights, gradients and optimiser stay float32), in float32 ("off"), or
    # "auto": bfloat16 on a CPU that multiplies it in hardware (AVX512-BF16 or AMX), else float32.
    autocast: str = "auto"

    def validate(self) -> "TrainSettings":
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("weight_decay", "lora", "lora_alpha", "lora_dropout"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                flag = "context" if f.name == "context_window" else f.name.replace("_", "-")
                raise SettingsError(f"{flag} must be positive, got {value}.")
        if self.n_embd % self.n_head:
            raise SettingsError(f"n-embd ({self.n_embd}) must be divisible by n-head ({self.n_head}).")
        if self.min_lr > self.lr:
            raise SettingsError("min-lr cannot be larger than lr.")
        if self.autocast not in AUTOCAST:
            raise SettingsError(f"--autocast takes {', '.join(AUTOCAST)}; got {self.autocast!r}.")
        if self.weight_decay < 0:
            raise SettingsError(f"weight-decay cannot be negative, got {self.weight_decay}.")
        if self.lora is not None:
            if self.lora < 1:
                raise SettingsError(f"--lora takes the adapters' rank, 1 or more (8 is usual); got {self.lora}.")
            if not self.init:
                raise SettingsError("--lora trains adapters for an existing model: give it with --init MODEL.")
            if self.lora_alpha is not None and not self.lora_alpha > 0:
                raise SettingsError(f"--lora-alpha must be positive (the adapters' scale is alpha / rank); "
                                    f"got {self.lora_alpha}.")
            if not 0 <= self.lora_dropout < 1:
                raise SettingsError(f"--lora-dropout is a probability from 0 up to (not including) 1; "
                                    f"got {self.lora_dropout}.")
            try:
                target_projections(self.lora_targets)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        return self

    def lora_config(self, base_model: str | None) -> LoraConfig | None:
        if self.lora is None:
            return None
        alpha = self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora
        return LoraConfig(rank=self.lora, alpha=alpha, dropout=self.lora_dropout,
                          targets=target_projections(self.lora_targets), base_model=base_model)


def uses_bfloat16(s: TrainSettings, device: str) -> bool:
    """Whether the forward pass runs under bfloat16 autocast (see TrainSettings.autocast)."""
    if s.autocast == "auto":
        return device == "cpu" and native_bf16()
    return s.autocast == "bfloat16"


def lr_at(step: int, s: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to min_lr at the last step."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = min(1.0, (step - s.warmup) / max(1, s.steps - s.warmup))
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1 + math.cos(math.pi * progress))


def batch_at(ids: torch.Tensor, step: int, s: TrainSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of a step depends only on (seed, step): a resumed run sees exactly the same data."""
    gen = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - s.context_window - 1, (s.batch_size,), generator=gen)
    rows = torch.stack([ids[i : i + s.context_window + 1] for i in starts.tolist()]).long()
    return rows[:, :-1], rows[:, 1:]


class Run:
    """A run folder: data/, checkpoint/, model/ (or adapter/), settings.json, log.jsonl."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.checkpoint = self.folder / "checkpoint"
        self.model = self.folder / "model"
        self.adapter = self.folder / "adapter"
        self.log = self.folder / "log.jsonl"
        self.settings_file = self.folder / "settings.json"


def _encode_documents(tokenizer: GPT2Tokenizer, docs: list[Document]) -> torch.Tensor:
    """Token ids of the documents, each followed by <|endoftext|>."""
    ids: list[int] = []
    for encoding in tokenizer.backend.encode_batch([d.text for d in docs], add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(tokenizer.eos_id)
    return torch.tensor(ids, dtype=torch.int32)


def prepare_data(run: Run, s: TrainSettings, say) -> None:
    """Clean, split, tokenize; written once per run (a resumed run reuses it)."""
    if (run.data / "stats.json").is_file():
        return
    docs = load_documents(Path(s.data))
    train_docs, val_docs = split_documents(docs)
    if s.init:
        tokenizer = GPT2Tokenizer.from_folder(init_folder(s))
    else:
        say(f"training a {s.vocab_size}-token byte-level BPE on {len(train_docs)} training documents")
        tokenizer = train_bpe((d.text for d in train_docs), s.vocab_size)
    train_ids, val_ids = _encode_documents(tokenizer, train_docs), _encode_documents(tokenizer, val_docs)
    if len(train_ids) < s.context_window + 2 or len(val_ids) < 2:
        raise SettingsError(
            f"Too little text to train with a {s.context_window}-token context: {s.data} gives "
            f"{len(train_ids)} training and {len(val_ids)} validation tokens, and one training row needs "
            f"{s.context_window + 1}; give more text or a smaller --context."
        )
    tmp = run.folder / "data.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({"ids": train_ids}, tmp / "train.safetensors")
    save_file({"ids": val_ids}, tmp / "val.safetensors")
    (tmp / "tokenizer.json").write_text(tokenizer.backend.to_str(), encoding="utf-8")  # (save() hides OSError)
    validation_text = "\n\n".join(d.text for d in val_docs)
    (tmp / "validation.txt").write_text(validation_text, encoding="utf-8")
    stats = {
        "train_documents": [d.name for d in train_docs],
        "validation_documents": [d.name for d in val_docs],
        "train_tokens": len(train_ids),
        "validation_tokens": len(val_ids),
        "validation_bytes": sum(len(d.text.encode("utf-8")) + 1 for d in val_docs),
    }
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2))
    replace_folder(tmp, run.data)
    say(f"data: {stats['train_tokens']:,} training and {stats['validation_tokens']:,} validation tokens")


def init_folder(s: TrainSettings) -> Path:
    """The folder of the model --init names (a folder, or a downloaded or imported model's name)."""
    return resolve_model(s.init)[0]


def base_model_name(s: TrainSettings) -> str:
    """What an adapter records as its base (PEFT's base_model_name_or_path): a Hub model's repo id, the
    embedded model's name (its folder moves with the app), or the base folder's absolute path."""
    folder, name = resolve_model(s.init)
    return name if name != folder.name or folder == embedded_model_folder() else str(folder.resolve())


def new_model(s: TrainSettings, tokenizer: GPT2Tokenizer, device: str) -> GPT:
    if s.init:
        folder = init_folder(s)
        config = load_config(folder)
        model = build_model(config, read_state_dict(weight_files(folder)), torch.float32, device)
        if s.lora is not None:
            return add_lora(model, s.lora_config(None), seed=s.seed)
        return model.requires_grad_(True)
    eos = tokenizer.eos_id
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_positions=s.context_window, n_embd=s.n_embd, n_layer=s.n_layer,
                       n_head=s.n_head, bos_token_id=eos, eos_token_id=eos)
    model = GPT(config)
    model.init_weights(s.seed)
    return model.to(device)


def trained_parameters(model: GPT) -> dict[str, torch.nn.Parameter]:
    """What training changes: every weight, or only the adapters' (the base stays frozen)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def make_optimizer(model: GPT, s: TrainSettings) -> torch.optim.AdamW:
    trained = trained_parameters(model).values()
    decay = [p for p in trained if p.dim() >= 2]
    no_decay = [p for p in trained if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, 0.95), eps=1e-8)


def save_checkpoint(run: Run, model: GPT, opt: torch.optim.Optimizer, state: TrainState) -> None:
    """A LoRA run keeps only its adapters: the frozen base is the --init model's own files."""
    trained = trained_parameters(model)
    moments = {}
    for name, p in trained.items():
        for key, value in opt.state.get(p, {}).items():
            moments[f"{name}::{key}"] = value.detach().cpu().reshape(value.shape).contiguous()
    checkpoints.save_checkpoint(run.checkpoint, {n: t.detach().cpu().contiguous() for n, t in trained.items()},
                                moments, state)


@torch.no_grad()
def evaluate(model: GPT, val_ids: torch.Tensor, s: TrainSettings, bytes_per_token: float) -> tuple[float, float]:
    """Mean validation loss (nats/token) over fixed windows, and the bits per byte it implies."""
    model.eval()
    device = next(model.parameters()).device
    context = min(s.context_window, len(val_ids) - 1)
    gen = torch.Generator().manual_seed(s.seed)
    n = s.eval_batches * s.batch_size
    starts = torch.randint(0, max(1, len(val_ids) - context - 1), (n,), generator=gen).tolist()
    losses = []
    for i in range(0, n, s.batch_size):
        rows = torch.stack([val_ids[j : j + context + 1] for j in starts[i : i + s.batch_size]]).long().to(device)
        logits = model(rows[:, :-1])
        losses.append(F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten()).item())
    model.train()
    loss = sum(losses) / len(losses)
    return loss, loss / math.log(2) / bytes_per_token


class Progress:
    """One status line: step, loss, validation, tokens/s and time left."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self._last_print = 0.0

    def update(self, state: TrainState, tok_s: float, final: bool = False) -> None:
        now = time.monotonic()
        if not final and not self.tty and now - self._last_print < 30:
            return
        self._last_print = now
        left = (self.total - state.step) * (state.elapsed_s / max(1, state.step))
        done = int(30 * state.step / self.total)
        val = (f"val {state.val_loss:.3f} ({state.val_bpb:.3f} bits/byte)" if math.isfinite(state.val_loss)
               else "val not measured yet")  # before the first evaluation
        line = (
            f"[{'#' * done}{'.' * (30 - done)}] step {state.step}/{self.total}  loss {state.last_loss:.3f}  "
            f"{val}  {tok_s:,.0f} tok/s  ETA {int(left // 3600)}h{int(left % 3600 // 60):02d}m"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()


def train(run_folder: Path, settings: TrainSettings | None, resume: bool = False, device: str = "auto",
          say=lambda msg: print(msg, file=sys.stderr), pause_at: int | None = None) -> Path | None:
    """Train (or resume training) in a run folder; returns the exported model folder.

    `pause_at` stops after that step with a checkpoint and no export, as an interruption would.
    """
    run = Run(run_folder)
    if resume:
        saved = saved_settings(run)
        settings = replace(saved, steps=settings.steps) if settings and settings.steps != saved.steps else saved
    else:
        if settings is None:
            raise SettingsError("Training needs --data.")
        if any(p.exists() for p in (run.checkpoint, run.folder / "checkpoint.partial", run.folder / "checkpoint.old")):
            raise SettingsError(f"{run.folder} already holds a run; pass --resume to continue it, or another --out.")
    s = settings.validate()
    if s.init:
        s = replace(s, context_window=min(s.context_window, load_config(init_folder(s)).n_positions))
    created = not run.folder.exists()
    run.folder.mkdir(parents=True, exist_ok=True)
    try:
        try:
            prepare_data(run, s, say)
        except (OSError, SafetensorError) as exc:
            raise storage_error(run.folder, exc, "Cannot prepare the training data") from None
    except BaseException:
        # Refused text, a full disk (or an interruption) leaves nothing behind: no half-made run to trip over.
        shutil.rmtree(run.folder / "data.partial", ignore_errors=True)
        if created and not resume:
            shutil.rmtree(run.folder, ignore_errors=True)
        raise
    chosen = json.dumps(asdict(s), indent=2)
    if not run.settings_file.is_file() or run.settings_file.read_text(encoding="utf-8") != chosen:
        write_atomic(run.settings_file, chosen, what="the run's settings")
    device = resolve_device(device)
    tokenizer, train_ids, val_ids, bytes_per_token = read_data(run)

    model = new_model(s, tokenizer, device)
    model.train()
    opt = make_optimizer(model, s)
    state = TrainState()
    if resume and checkpoints.settle(run.checkpoint, say):
        state = checkpoints.load_checkpoint(run.checkpoint, trained_parameters(model), opt)
        say(f"resuming at step {state.step}")
    trim_log(run, state.step)
    params = sum(p.numel() for p in model.parameters())
    say(f"model: {params / 1e6:.2f}M parameters, {model.config.n_layer} layers, {model.config.n_embd} wide, "
        f"context {s.context_window}; {s.steps} steps of {s.batch_size}x{s.context_window} tokens on {device}")
    if s.lora is not None:
        trained = sum(p.numel() for p in trained_parameters(model).values())
        say(f"LoRA: rank {s.lora} on {len(lora_pairs(model))} projections ({s.lora_targets}), "
            f"{trained / 1e6:.3f}M trained parameters; the base stays frozen")
    bfloat16 = uses_bfloat16(s, device)
    if bfloat16:
        say("products in bfloat16 (autocast; weights, gradients and optimiser in float32); --autocast off for float32")

    progress = Progress(s.steps)
    tok_s = 0.0
    recorded = state.step  # the last step whose evaluation and log line (where due) are written

    def record() -> None:
        """The step just taken: its evaluation and its log line, where they are due."""
        if state.step % s.eval_every == 0 or state.step == s.steps:
            state.val_loss, state.val_bpb = evaluate(model, val_ids, s, bytes_per_token)
        if state.step % s.eval_every == 0 or state.step % 10 == 0:
            append_log(run, {**asdict(state), "lr": lr_at(state.step - 1, s), "tok_s": tok_s})

    try:
        while state.step < s.steps:
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = lr_at(state.step, s)
            x, y = batch_at(train_ids, state.step, s)
            x, y = x.to(device), y.to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bfloat16):
                logits = model(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained_parameters(model).values(), s.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            state.step += 1
            state.tokens_seen += x.numel()
            state.elapsed_s += dt
            state.last_loss = loss.item()
            tok_s = x.numel() / dt
            record()
            recorded = state.step
            if state.step % s.checkpoint_every == 0 or state.step == s.steps:
                save_checkpoint(run, model, opt, state)
            progress.update(state, tok_s, final=state.step == s.steps)
            if pause_at is not None and state.step >= pause_at:
                save_checkpoint(run, model, opt, state)
                return None
    except KeyboardInterrupt:
        if recorded < state.step:  # stopped between a step and its evaluation or log line: the checkpoint holds
            with contextlib.suppress(KeyboardInterrupt):  # that step, so its point on the curves is written first
                record()
        save_checkpoint(run, model, opt, state)
        say(f"\ninterrupted: checkpoint saved at step {state.step}; continue with --resume")
        raise
    if progress.tty:
        sys.stderr.write("\n")
    model.eval()
    result = (f"{state.tokens_seen:,} tokens seen in {state.elapsed_s / 60:.1f} minutes; "
              f"validation loss {state.val_loss:.4f} nats/token ({state.val_bpb:.4f} bits/byte).\n")
    try:
        if s.lora is not None:
            config = s.lora_config(base_model_name(s))
            card = (f"# {run.folder.name}\n\nA LoRA adapter (PEFT format) trained by `gpt2-desktop train` on "
                    f"{config.base_model}: rank {config.rank}, alpha {config.alpha:g}, on "
                    f"{', '.join(config.targets)}; " + result)
            write_adapter(run.adapter, config, lora_pairs(model), model.config, card=card)
            say(f"wrote the adapter to {run.adapter}")
            return run.adapter
        card = f"# {run.folder.name}\n\nA GPT-2 trained by `gpt2-desktop train`: {params:,} parameters, " + result
        export_model(model, tokenizer, run.model, card=card)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(run.folder / "model.partial", ignore_errors=True)
        raise TrainingError(f"Cannot write the result: {disk_problem(run.folder, exc)}; "
                            f"{checkpoints.last_good(run.checkpoint)}: free some space and run the same command "
                            "with --resume to write it.") from None
    say(f"exported {run.model}")
    return run.model


def saved_settings(run: Run) -> TrainSettings:
    """The settings a run was started with (its settings.json), every field checked: a damaged file, an
    unknown key or a value of the wrong type is named."""
    path = run.settings_file
    if not path.is_file():
        raise SettingsError(f"Nothing to resume in {run.folder}: it has no settings.json.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise SettingsError(f"Cannot resume: {path} is damaged ({exc}).") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"Cannot resume: {path} is not a JSON object.")
    if "context" in raw:  # runs started before the field was renamed
        raw["context_window"] = raw.pop("context")
    hints = typing.get_type_hints(TrainSettings)
    for key, value in raw.items():
        if key not in hints:
            raise SettingsError(f"Cannot resume: {path} has an unknown setting {key!r}.")
        if not _fits(value, hints[key]):
            raise SettingsError(f"Cannot resume: {path} has {key} = {json.dumps(value)}, which is not "
                                f"{_kind(hints[key])}.")
    return TrainSettings(**raw)


def _fits(value, hint) -> bool:
    allowed = typing.get_args(hint) or (hint,)
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    if isinstance(value, float):
        return float in allowed and math.isfinite(value)
    return any(isinstance(value, t) for t in allowed if t is not type(None))


def _kind(hint) -> str:
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
    allowed = [names[t] for t in (typing.get_args(hint) or (hint,)) if t in names]
    return " or ".join(allowed) + (" (or null)" if type(None) in typing.get_args(hint) else "")


def read_data(run: Run) -> tuple[GPT2Tokenizer, torch.Tensor, torch.Tensor, float]:
    """The run's prepared data: tokenizer, training and validation ids, and validation bytes per token; a
    damaged file is named."""
    def damaged(name: str, why) -> SettingsError:
        return SettingsError(f"Cannot train: {run.data / name} is damaged ({why}); delete {run.data} and run the "
                             "same command again to prepare the data from the text anew.")

    try:
        tokenizer = GPT2Tokenizer.from_folder(run.data)
    except ModelLoadError as exc:
        raise damaged("tokenizer.json", exc) from None
    ids = {}
    for name in ("train.safetensors", "val.safetensors"):
        try:
            ids[name] = load_file(run.data / name)["ids"]
        except (OSError, SafetensorError, KeyError) as exc:
            raise damaged(name, exc) from None
        if ids[name].dim() != 1 or len(ids[name]) < 2 or ids[name].is_floating_point():
            raise damaged(name, "token ids of the wrong shape or type")
    try:
        stats = json.loads((run.data / "stats.json").read_text(encoding="utf-8"))
        bytes_per_token = stats["validation_bytes"] / stats["validation_tokens"]
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise damaged("stats.json", exc) from None
    return tokenizer, ids["train.safetensors"], ids["val.safetensors"], float(bytes_per_token)


def trim_log(run: Run, step: int) -> None:
    """Keep only the log lines up to `step` (a resumed run writes the steps after it again), so the log
    never holds a step twice."""
    try:
        lines = run.log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"Cannot read the training log {run.log} ({exc}).") from None
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut off by a kill
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    if kept != lines:
        write_atomic(run.log, "".join(line + "\n" for line in kept), what="the training log")


def append_log(run: Run, record: dict) -> None:
    try:
        with run.log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise TrainingError(f"Cannot write the training log: {disk_problem(run.folder, exc)}; "
                            f"{checkpoints.last_good(run.checkpoint)}: free some space and continue with "
                            "--resume.") from None

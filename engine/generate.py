"""Streaming generation: prefill the prompt once, then decode one token per step from the KV cache."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from engine.errors import SettingsError
from engine.loader import LoadedModel
from engine.sampling import SamplingSettings, apply_repetition_penalty, sample
from engine.tokenizer import StreamDecoder


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its id, the text it makes visible now, and its log-probability under the model."""

    token: int
    text: str
    logprob: float


@dataclass(frozen=True)
class Done:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stop_reason: str  # "length" | "stop" | "eos" | "cancelled"
    time_to_first_token_ms: float
    tokens_per_second: float
    truncated_prompt_tokens: int = 0
    seed: int | None = None
    context_tokens: int = 0  # tokens in the model's window at the end, out of its context window


@dataclass
class _StopMatcher:
    """Finds stop sequences in the growing text and holds back what might be the start of one."""

    stops: tuple[str, ...]
    text: str = ""
    emitted: int = 0
    hit: bool = False
    _longest: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._longest = max((len(s) for s in self.stops), default=0)

    def feed(self, delta: str) -> str:
        """Add decoded text; return what can be shown now."""
        self.text += delta
        start = max(0, self.emitted - self._longest)
        cut = min((i for i in (self.text.find(s, start) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            self.text = self.text[:cut]
            return self._release(max(cut, self.emitted))
        return self._release(len(self.text) - self._held_back())

    def finish(self) -> str:
        return self._release(len(self.text))

    def _held_back(self) -> int:
        for n in range(min(self._longest - 1, len(self.text) - self.emitted), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0

    def _release(self, upto: int) -> str:
        out = self.text[self.emitted : upto]
        self.emitted = max(self.emitted, upto)
        return out


class Generator:
    """Runs generations on one loaded model, one at a time."""

    def __init__(self, loaded: LoadedModel, cuda_graph: bool = True, native: bool = True):
        self.loaded = loaded
        config = loaded.config
        self.window = config.n_positions
        # When the window is full, keep the most recent three quarters and rebuild the cache.
        self.keep = max(1, self.window * 3 // 4)
        # On CUDA, decode steps replay one captured graph (made at the first generation).
        self.cuda_graph = cuda_graph and loaded.device == "cuda"
        self._graphed = None
        # On the CPU, decode steps run in the compiled step (engine.native) where it is built.
        self.native = None
        if native and loaded.device == "cpu":
            from engine.native import NativeDecoder

            self.native = NativeDecoder.for_model(loaded.model)

    def _graphed_decoder(self):
        if self._graphed is None:
            from engine.cuda_graph import GraphedDecoder

            try:
                self._graphed = GraphedDecoder(self.loaded.model, self.window)
            except RuntimeError as exc:  # capture unsupported here: decode step by step instead
                print(f"gpt2-desktop: CUDA graph capture failed ({exc}); decoding without it", file=sys.stderr)
                self.cuda_graph = False
        return self._graphed

    def _decode(self, token: int, cache, pos: int) -> torch.Tensor:
        if self._graphed is not None and cache is self._graphed.cache:
            return self._graphed.step(token, pos).float().cpu()
        if self.native is not None:
            return self.native.step(token, pos, cache)
        return self._forward_last([token], cache, pos)

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.loaded.tokenizer.encode(prompt)
        return ids if ids else [self.loaded.tokenizer.eos_id or 0]

    def _forward_last(self, ids: list[int], cache, pos: int) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.loaded.device)
        return self.loaded.model(x, cache, pos, last_only=True)[0, -1].float().cpu()

    @torch.inference_mode()
    def stream(
        self,
        prompt: str | list[int],
        settings: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[TokenEvent | Done]:
        """Yield a TokenEvent per generated token, then one Done. `cancel` may be set from any thread."""
        settings.validate()
        started = time.perf_counter()
        ids = self.encode_prompt(prompt) if isinstance(prompt, str) else (list(prompt) or self.encode_prompt(""))
        seed = settings.seed if settings.seed is not None else int(torch.randint(0, 2**62, (1,)))
        rng = torch.Generator().manual_seed(seed)
        vocab = self.loaded.config.vocab_size
        if any(not 0 <= i < vocab for i in ids):
            raise SettingsError(f"Prompt token ids must be between 0 and {vocab - 1}.")
        seen = torch.zeros(vocab, dtype=torch.bool)
        seen[torch.tensor(ids)] = True

        truncated = 0
        if len(ids) > self.window:
            truncated = len(ids) - self.keep
        context = ids[truncated:]
        graphed = self._graphed_decoder() if self.cuda_graph else None
        cache = graphed.cache if graphed is not None else self.loaded.model.new_cache(1, self.window)
        logits = self._forward_last(context, cache, 0)
        pos = len(context)

        decoder = StreamDecoder(self.loaded.tokenizer)
        matcher = _StopMatcher(tuple(settings.stop))
        generated: list[int] = []
        stop_reason = None
        first_at = last_at = None
        while stop_reason is None:
            if cancel is not None and cancel.is_set():
                stop_reason = "cancelled"
                break
            scores = logits
            if settings.repetition_penalty != 1.0:
                scores = apply_repetition_penalty(logits, seen.nonzero().squeeze(1), settings.repetition_penalty)
            token = sample(scores, settings, rng)
            last_at = time.perf_counter()
            first_at = first_at or last_at
            generated.append(token)
            seen[token] = True
            if token in self.loaded.eos_ids:
                stop_reason, delta = "eos", ""
            else:
                delta = matcher.feed(decoder.push(token))
                if matcher.hit:
                    stop_reason = "stop"
                elif len(generated) >= settings.max_new_tokens:
                    stop_reason = "length"
            if stop_reason in ("eos", "length"):
                # The last token: release any held-back bytes or stop-sequence prefix with it.
                delta += matcher.feed(decoder.flush()) + matcher.finish()
            yield TokenEvent(token, delta, float(torch.log_softmax(logits, dim=-1)[token]))
            if stop_reason is not None:
                break
            context.append(token)
            if len(context) > self.window:
                context = context[-self.keep :]
                logits = self._forward_last(context, cache, 0)
            else:
                logits = self._decode(token, cache, pos)
            pos = len(context)

        yield self._done(matcher, generated, len(ids), stop_reason, started, first_at, last_at, truncated, seed, pos)

    def _done(self, matcher, generated, prompt_tokens, stop_reason, started, first_at, last_at, truncated, seed, pos):
        ttft = ((first_at or time.perf_counter()) - started) * 1000
        decode_time = (last_at - first_at) if first_at and last_at else 0.0
        rate = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time > 0 else 0.0
        return Done(
            text=matcher.text[: matcher.emitted],
            token_ids=generated,
            prompt_tokens=prompt_tokens,
            stop_reason=stop_reason,
            time_to_first_token_ms=round(ttft, 2),
            tokens_per_second=round(rate, 2),
            truncated_prompt_tokens=truncated,
            seed=seed,
            context_tokens=pos,
        )

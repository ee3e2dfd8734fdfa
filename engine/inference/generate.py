"""Streaming generation, read top-down: prefill the prompt into the KV cache, then decode one token at
a time, each chosen from the last logits; when the context window is full, slide it and prefill again.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

import torch

from engine.core import precisions
from engine.core.cuda_graph import GraphedDecoder
from engine.core.loader import LoadedModel, not_a_number
from engine.core.native import NativeDecoder
from engine.core.tokenizer import StreamDecoder
from engine.errors import SettingsError
from engine.inference.predictions import Alternative, check_top_logprobs, ranks, top_alternatives
from engine.inference.sampling import (SamplingSettings, apply_logit_bias, apply_openai_penalties,
                                      apply_repetition_penalty, sample)


class StopReason(str, Enum):
    """Why a generation ended. A str, so it compares to, and serialises as, its value ("length", ...)."""

    LENGTH = "length"  # max_new_tokens written
    STOP = "stop"  # a stop sequence appeared
    EOS = "eos"  # the model wrote an end-of-text token
    CANCELLED = "cancelled"  # the caller set the cancel flag

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its id, the text it makes visible now, and its log-probability under the model;
    with `top_logprobs`, also its rank there (1 = the likeliest) and the likeliest alternatives."""

    token: int
    text: str
    logprob: float
    rank: int | None = None
    top: tuple[Alternative, ...] = ()


@dataclass(frozen=True)
class Done:
    """The end of a generation: what was written and how it went."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    stop_reason: StopReason
    time_to_first_token_ms: float
    tokens_per_second: float
    truncated_prompt_tokens: int = 0  # left out from the prompt's start to fit the context window
    seed: int | None = None
    context_tokens: int = 0  # tokens in the model's window at the end, out of context_window
    context_window: int = 0
    cached_tokens: int = 0  # prompt tokens whose keys and values the previous generation had left (not prefilled)


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


class _Text:
    """Token ids to the text deltas a reader sees: UTF-8 held back across tokens, stop sequences cut."""

    def __init__(self, loaded: LoadedModel, stops: tuple[str, ...]):
        self.decoder = StreamDecoder(loaded.tokenizer)
        self.matcher = _StopMatcher(stops)

    def push(self, token: int) -> str:
        return self.matcher.feed(self.decoder.push(token))

    def finish(self) -> str:
        """Everything still held back (a split character, a stop sequence's possible start)."""
        return self.matcher.feed(self.decoder.flush()) + self.matcher.finish()

    @property
    def stopped(self) -> bool:
        return self.matcher.hit

    @property
    def shown(self) -> str:
        return self.matcher.text[: self.matcher.emitted]


@dataclass
class _Clock:
    """When a generation started and when its first and latest tokens were chosen."""

    started: float = field(default_factory=time.perf_counter)
    first: float | None = None
    last: float | None = None

    def tick(self) -> None:
        self.last = time.perf_counter()
        self.first = self.first or self.last

    def time_to_first_token_ms(self) -> float:
        return round(((self.first or time.perf_counter()) - self.started) * 1000, 2)

    def tokens_per_second(self, tokens: int) -> float:
        """Decoding speed: the tokens after the first, over the time since the first."""
        elapsed = (self.last - self.first) if self.first and self.last else 0.0
        return round((tokens - 1) / elapsed, 2) if tokens > 1 and elapsed > 0 else 0.0


class Generator:
    """Runs generations on one loaded model, one at a time."""

    def __init__(self, loaded: LoadedModel, cuda_graph: bool = True, native: bool = True, prompt_cache: bool = True):
        self.loaded = loaded
        # The prompt cache: the KV cache of the last generation and the tokens it holds, so that the next
        # prompt that starts with the same tokens (a chat's next turn, a regeneration) prefills only the rest.
        self.prompt_cache = prompt_cache
        self._kept: tuple[object, list[int]] | None = None
        self.context_window = loaded.context_window
        # When the window is full, keep the most recent three quarters and prefill them again.
        self.keep = max(1, self.context_window * 3 // 4)
        # On CUDA, decode steps replay one captured graph (made at the first generation).
        self.cuda_graph = cuda_graph and loaded.device == "cuda"
        self._graphed = None
        # On the CPU, decode steps run in the compiled step (engine.core.native) where it is built.
        self.native = None
        if native and loaded.device == "cpu":
            self.native = NativeDecoder.for_model(loaded.model)

    # the steps

    def prefill(self, ids: list[int], cache) -> torch.Tensor:
        """Run the prompt `ids` from position 0, filling the cache; the logits [vocab] after its last token."""
        return self._run(ids, cache, 0)

    def _run(self, ids: list[int], cache, start: int) -> torch.Tensor:
        """Put `ids` at positions start.. of the cache; the logits [vocab] after the last. With the compiled step,
        a short run goes through it token by token, and a long one through PyTorch's batched path but for its
        last token, whose step computes the logits (PyTorch's head for one row is the slower of the two)."""
        if self.native is not None:
            if len(ids) > precisions.get(self.loaded.precision).step_prefill:
                x = torch.tensor([ids[:-1]], dtype=torch.long)
                self.loaded.model.hidden(x, cache, start)
                ids, start = ids[-1:], start + len(ids) - 1
            for i, token in enumerate(ids):
                logits = self.native.step(token, start + i, cache)
            return self._numbers(logits)
        x = torch.tensor([ids], dtype=torch.long, device=self.loaded.device)
        return self._numbers(self.loaded.model(x, cache, start, last_only=True)[0, -1].float().cpu())

    def decode_one_token(self, token: int, cache, pos: int) -> torch.Tensor:
        """Put `token` at position `pos` of the cache; the logits [vocab] after it."""
        if self._graphed is not None and cache is self._graphed.cache:
            return self._numbers(self._graphed.step(token, pos).float().cpu())
        if self.native is not None:
            return self._numbers(self.native.step(token, pos, cache))
        x = torch.tensor([[token]], dtype=torch.long, device=self.loaded.device)
        return self._numbers(self.loaded.model(x, cache, pos, last_only=True)[0, -1].float().cpu())

    def _numbers(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits`, if none is NaN or infinite: one that is comes from the weights (see loader.not_a_number). The
        compiled step's logsumexp says so for nothing (it is finite unless a logit is NaN or +inf); elsewhere their
        sum does, in a few microseconds (a NaN or an infinity makes it one)."""
        summary = self._summary(logits)
        if not math.isfinite(summary[1] if summary is not None else float(logits.sum())):
            raise not_a_number(self.loaded)
        return logits

    def prefill_after(self, ids: list[int], cache, held: list[int]) -> tuple[torch.Tensor, int]:
        """Like `prefill`, into a cache that already holds the keys and values of the tokens `held`: only the
        tokens after the longest common prefix are run (at least one, for the logits). Returns the logits
        and how many tokens were reused."""
        reused = 0
        limit = min(len(held), len(ids) - 1)
        while reused < limit and held[reused] == ids[reused]:
            reused += 1
        return self._run(ids[reused:], cache, reused), reused

    def forget(self) -> None:
        """Drop the prompt cache (the next generation prefills its whole prompt)."""
        self._kept = None

    def slide(self, context: list[int], cache) -> tuple[list[int], torch.Tensor]:
        """The window is full: keep its most recent tokens and prefill them again."""
        context = context[-self.keep :]
        return context, self.prefill(context, cache)

    def _summary(self, logits: torch.Tensor) -> tuple[int, float] | None:
        """(argmax, logsumexp) of logits the compiled step returned, else None."""
        return self.native.summary(logits) if self.native is not None else None

    def next_token(self, logits: torch.Tensor, seen: torch.Tensor, written: torch.Tensor, settings: SamplingSettings,
                   rng: torch.Generator) -> int:
        """The repetition penalty over the tokens `seen` so far (prompt included), the presence and
        frequency penalties over the counts of tokens `written`, the logit bias, then sampling (or argmax
        at temperature 0)."""
        summary = self._summary(logits)
        if summary is not None and settings.temperature == 0 and settings.repetition_penalty == 1.0 \
                and not (settings.presence_penalty or settings.frequency_penalty or settings.logit_bias):
            return summary[0]
        if settings.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, seen.nonzero().squeeze(1), settings.repetition_penalty)
        if settings.presence_penalty or settings.frequency_penalty:
            logits = apply_openai_penalties(logits, written, settings.presence_penalty, settings.frequency_penalty)
        if settings.logit_bias:
            logits = apply_logit_bias(logits, settings.logit_bias)
        return sample(logits, settings, rng)

    # the loop

    @torch.inference_mode()
    def stream(
        self,
        prompt: str | list[int],
        settings: SamplingSettings,
        cancel: threading.Event | None = None,
        top_logprobs: int = 0,
    ) -> Iterator[TokenEvent | Done]:
        """Yield a TokenEvent per generated token, then one Done. `cancel` may be set from any thread.
        `top_logprobs` (up to 20) adds each token's rank and that many likeliest alternatives."""
        settings.validate()
        check_top_logprobs(top_logprobs)
        clock = _Clock()
        ids = self._prompt_ids(prompt)
        seed = settings.seed if settings.seed is not None else int(torch.randint(0, 2**62, (1,)))
        rng = torch.Generator().manual_seed(seed)
        seen = torch.zeros(self.loaded.config.vocab_size, dtype=torch.bool)
        seen[torch.tensor(ids)] = True
        written = torch.zeros(self.loaded.config.vocab_size)  # how often each token was generated
        vocab = self.loaded.config.vocab_size
        if any(not 0 <= token < vocab for token, _ in settings.logit_bias):
            raise SettingsError(f"logit-bias token ids must be between 0 and {vocab - 1}.")

        truncated = len(ids) - self.keep if len(ids) > self.context_window else 0
        context = ids[truncated:]
        kept, self._kept = self._kept, None  # until the end, the cache does not hold one known sequence
        if kept is not None and self.prompt_cache:
            cache, held = kept
            logits, cached = self.prefill_after(context, cache, held)
        else:
            cache, cached = (kept[0] if kept is not None else self._new_cache()), 0
            logits = self.prefill(context, cache)

        text = _Text(self.loaded, tuple(settings.stop))
        generated: list[int] = []
        stop = None
        while stop is None:
            if cancel is not None and cancel.is_set():
                stop = StopReason.CANCELLED
                break
            token = self.next_token(logits, seen, written, settings, rng)
            clock.tick()
            generated.append(token)
            seen[token] = True
            written[token] += 1
            stop, delta = self._after(token, text, len(generated), settings.max_new_tokens)
            self._kept = (cache, context)  # a caller that stops reading here leaves the cache whole
            yield self._event(token, delta, logits, top_logprobs)
            self._kept = None
            if stop is not None:
                break
            context.append(token)
            if len(context) > self.context_window:
                context, logits = self.slide(context, cache)
            else:
                logits = self.decode_one_token(token, cache, len(context) - 1)

        self._kept = (cache, context)
        yield Done(
            text=text.shown,
            token_ids=generated,
            prompt_tokens=len(ids),
            stop_reason=stop,
            time_to_first_token_ms=clock.time_to_first_token_ms(),
            tokens_per_second=clock.tokens_per_second(len(generated)),
            truncated_prompt_tokens=truncated,
            seed=seed,
            context_tokens=len(context),
            context_window=self.context_window,
            cached_tokens=cached,
        )

    # helpers of the loop

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.loaded.tokenizer.encode(prompt)
        return ids if ids else [self.loaded.tokenizer.eos_id or 0]

    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        ids = self.encode_prompt(prompt) if isinstance(prompt, str) else (list(prompt) or self.encode_prompt(""))
        vocab = self.loaded.config.vocab_size
        if any(not 0 <= i < vocab for i in ids):
            raise SettingsError(f"Prompt token ids must be between 0 and {vocab - 1}.")
        return ids

    def _event(self, token: int, delta: str, logits: torch.Tensor, top_logprobs: int) -> TokenEvent:
        summary = self._summary(logits)
        if summary is not None and not top_logprobs:
            return TokenEvent(token, delta, float(logits[token]) - summary[1])
        logprobs = torch.log_softmax(logits, dim=-1)
        if not top_logprobs:
            return TokenEvent(token, delta, float(logprobs[token]))
        top = top_alternatives(logprobs.unsqueeze(0), top_logprobs, self.loaded.tokenizer)[0]
        logprob = float(logprobs[token])
        if any(alt.token == token for alt in top):
            # Every token likelier than this one is among the alternatives too: no pass over the vocabulary.
            rank = 1 + sum(alt.logprob > logprob for alt in top)
        else:
            rank = int(ranks(logprobs.unsqueeze(0), torch.tensor([token]))[0])
        return TokenEvent(token, delta, logprob, rank, top)

    def _after(self, token: int, text: _Text, written: int, limit: int) -> tuple[StopReason | None, str]:
        """Whether `token` ends the generation, and the text it makes visible."""
        if token in self.loaded.eos_ids:
            return StopReason.EOS, text.finish()
        delta = text.push(token)
        if text.stopped:
            return StopReason.STOP, delta
        if written >= limit:
            return StopReason.LENGTH, delta + text.finish()
        return None, delta

    def _new_cache(self):
        """The captured graph's own cache on CUDA, else a fresh one for the whole window."""
        graphed = self._graphed_decoder() if self.cuda_graph else None
        return graphed.cache if graphed is not None else self.loaded.model.new_cache(1, self.context_window)

    def _graphed_decoder(self):
        if self._graphed is None:
            try:
                self._graphed = GraphedDecoder(self.loaded.model, self.context_window)
            except RuntimeError as exc:  # capture unsupported here: decode step by step instead
                print(f"gpt2-desktop: CUDA graph capture failed ({exc}); decoding without it", file=sys.stderr)
                self.cuda_graph = False
        return self._graphed

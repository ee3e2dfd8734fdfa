"""Analyse a text as GLTR does: score every token, count how often the model ranked it in its top
10, 100, 1000 or beyond, measure bits per byte, and find the tokens that surprised it most.

A text whose tokens sit almost all in the top 10 reads the way the model writes; human writing
has more tokens in the lower buckets. That is a hint, not a verdict: see `LIMITS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from engine.core.loader import LoadedModel
from engine.errors import SettingsError
from engine.inference.buckets import BUCKETS, bucket_of
from engine.inference.scoring import TokenScore, normalise_newlines, score_ids

BUCKET_NAMES = ("top 10", "top 100", "top 1000", "beyond")
CONTEXT_CHARS = 40
LIMITS = ("Ranks show how predictable each token was for this model. Text a model wrote with "
          "greedy or low-temperature sampling is mostly top-10 tokens; people write more surprising ones. "
          "But sampled or edited machine text, other models, and plain or formulaic human text all blur "
          "this, so it cannot prove who wrote a text.")


@dataclass(frozen=True)
class Surprise:
    """A token the model found unlikely, with the text just before it."""

    token: int
    text: str
    logprob: float
    rank: int
    before: str  # up to CONTEXT_CHARS characters of the text before the token

    def to_dict(self) -> dict:
        return {"token": self.token, "text": self.text, "logprob": round(self.logprob, 6), "rank": self.rank,
                "before": self.before}


@dataclass(frozen=True)
class Analysis:
    tokens: int
    bytes: int
    nll: float  # nats, over every token
    buckets: tuple[int, int, int, int]  # tokens in each of BUCKET_NAMES
    surprising: tuple[Surprise, ...]  # the least likely tokens, least likely first

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes if self.bytes else float("nan")

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "bytes": self.bytes, "nll": self.nll, "bits_per_byte": self.bits_per_byte,
                "buckets": dict(zip(BUCKET_NAMES, self.buckets)),
                "surprising": [s.to_dict() for s in self.surprising]}


class Cancelled(Exception):
    """An analysis stopped by its `cancelled()`, between two of the model's layers (see `cancellable`)."""


@contextmanager
def cancellable(loaded: LoadedModel, cancelled: Callable[[], bool] | None):
    """While inside, `cancelled()` is asked before each of the model's layers runs and a true answer raises
    Cancelled: scoring a window (seconds on a CPU for GPT-2's 1,024 tokens) stops within one layer's time."""
    if cancelled is None:
        yield
        return

    def check(_block, _inputs) -> None:
        if cancelled():
            raise Cancelled

    hooks = [block.register_forward_pre_hook(check) for block in loaded.model.h]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def analyse(loaded: LoadedModel, text: str, surprising: int = 10,
            progress: Callable[[int, int], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> Analysis:
    """Score every token of `text` (its line endings as plain LF, as training reads text; window by window,
    `progress(done, total)` after each, and a true `cancelled()` stops with a SettingsError) and summarise it."""
    text, _ = normalise_newlines(text)
    ids = loaded.tokenizer.encode(text)
    if not ids:
        raise SettingsError("There is no text to analyse.")
    try:
        with cancellable(loaded, cancelled):
            scores = gather(score_ids(loaded, ids, top_logprobs=1), len(ids), progress, cancelled)
    except Cancelled:
        raise SettingsError("The analysis was cancelled.") from None
    return summarise(text, scores, surprising, lambda i: loaded.tokenizer.decode(ids[max(0, i - 24):i]))


def gather(batches, total: int, progress: Callable[[int, int], None] | None = None,
           cancelled: Callable[[], bool] | None = None) -> list[TokenScore]:
    """The TokenScores of batches as they come (`progress(done, total)` after each; a true `cancelled()`
    stops with a SettingsError)."""
    scores: list[TokenScore] = []
    for batch in batches:
        if cancelled is not None and cancelled():
            raise SettingsError("The analysis was cancelled.")
        scores += batch
        if progress is not None:
            progress(len(scores), total)
    return scores


def summarise(text: str, scores: list[TokenScore], surprising: int,
              before: Callable[[int], str]) -> Analysis:
    """The Analysis of a text's scored tokens, each with its rank; `before(i)`: the text before token i."""
    counts = [0] * (len(BUCKETS) + 1)
    for score in scores:
        counts[bucket_of(score.rank)] += 1
    worst = sorted(range(len(scores)), key=lambda i: scores[i].logprob)[:surprising]
    surprises = tuple(Surprise(scores[i].token, scores[i].text, scores[i].logprob, scores[i].rank,
                               before(i)[-CONTEXT_CHARS:]) for i in worst)
    return Analysis(len(scores), len(text.encode("utf-8")), -sum(s.logprob for s in scores), tuple(counts),
                    surprises)

"""What the model predicted at a position: a token's rank under its own distribution (1 = the
likeliest) and the top-K alternatives with their log-probabilities, as GLTR shows them.

Ranks and log-probabilities are under the model's raw distribution (log-softmax of its logits),
before temperature, top-k, top-p or a repetition penalty reshape it for sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.core.tokenizer import GPT2Tokenizer
from engine.errors import SettingsError

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Alternative:
    """One token the model could have put there."""

    token: int
    text: str
    logprob: float

    def to_dict(self) -> dict:
        # A remote server's alternatives come without token ids (-1): null.
        return {"token": self.token if self.token >= 0 else None, "text": self.text, "logprob": round(self.logprob, 6)}


def check_top_logprobs(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_TOP_LOGPROBS:
        raise SettingsError(f"top-logprobs must be a whole number from 0 to {MAX_TOP_LOGPROBS}, got {k!r}.")
    return k


def ranks(logprobs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Rank (1 = likeliest) of each `tokens[i]` in `logprobs[i]` ([n, vocab] and [n]): one plus the
    number of tokens strictly more likely."""
    chosen = logprobs.gather(-1, tokens.unsqueeze(-1))
    return torch.count_nonzero(logprobs > chosen, dim=-1) + 1


def top_alternatives(logprobs: torch.Tensor, k: int, tokenizer: GPT2Tokenizer) -> list[tuple[Alternative, ...]]:
    """The k likeliest tokens of each row of `logprobs` [n, vocab], likeliest first."""
    if k == 0:
        return [() for _ in range(logprobs.shape[0])]
    values, ids = torch.topk(logprobs, k, dim=-1)
    return [tuple(Alternative(t, tokenizer.decode([t]), v) for t, v in zip(row_ids, row_values))
            for row_ids, row_values in zip(ids.tolist(), values.tolist())]

"""What the model predicted for each token of a reply, as the window keeps it: plain data, no Qt, no torch.

A reply's `ReplyTokens` holds, per token, its id, the text it made visible (the pieces concatenate to the
reply as written, before stripping), its log-probability, its rank under the model's own distribution
(1 = the likeliest) and its top alternatives. It is stored with the reply in the history as one small
blob (`encode` / `decode`): a header, the arrays packed as fixed-size numbers, a table of the texts of
the token ids it uses, all compressed. About 40 bytes a token with ten alternatives.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from array import array
from dataclasses import dataclass

TOP = 10  # alternatives kept per token
FORMAT = 1  # of the blob
BUCKETS = (10, 100, 1000)  # GLTR's: a rank up to 10, 100, 1000, beyond (as engine.inference.analysis)
BUCKET_NAMES = ("top 10", "top 100", "top 1000", "beyond")
_HEADER = struct.Struct("<4sBBII")  # magic, format, alternatives per token, tokens, length of the text table
_MAGIC = b"GTOK"
_FLOOR = -32.767  # alternatives' log-probabilities are kept in thousandths of a nat (16 bits), down to here


def bucket_of(rank: int) -> int:
    """0 for a rank up to 10, 1 up to 100, 2 up to 1000, 3 beyond."""
    return next((i for i, limit in enumerate(BUCKETS) if rank <= limit), len(BUCKETS))


@dataclass(frozen=True)
class Choice:
    """A token the model could have put there: its id, its text and its log-probability."""

    token: int
    text: str
    logprob: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class TokenInfo:
    """One token of a reply: what it showed, how likely the model found it, and what else it expected."""

    token: int
    piece: str  # the text it made visible (may be "" while a character split across tokens completes)
    logprob: float
    rank: int
    top: tuple[Choice, ...]  # likeliest first

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def bucket(self) -> int:
        return bucket_of(self.rank)


@dataclass(frozen=True)
class ReplyTokens:
    tokens: tuple[TokenInfo, ...]

    def __len__(self) -> int:
        return len(self.tokens)

    def text(self) -> str:
        return "".join(t.piece for t in self.tokens)

    def counts(self) -> tuple[int, int, int, int]:
        """How many tokens fall in each of GLTR's four rank buckets."""
        out = [0, 0, 0, 0]
        for t in self.tokens:
            out[t.bucket] += 1
        return tuple(out)

    def prefix(self, n: int) -> ReplyTokens:
        return ReplyTokens(self.tokens[:n])

    def __add__(self, other: ReplyTokens) -> ReplyTokens:
        return ReplyTokens(self.tokens + other.tokens)

    def alternative_at(self, index: int, choice: Choice) -> TokenInfo:
        """The token `choice` in the place of token `index`: the same prediction, another pick."""
        old = self.tokens[index]
        rank = next((i + 1 for i, c in enumerate(old.top) if c.token == choice.token), old.rank)
        return TokenInfo(choice.token, choice.text, choice.logprob, rank, old.top)

    # the stored form

    def encode(self) -> bytes:
        n, k = len(self.tokens), max((len(t.top) for t in self.tokens), default=0)
        texts: dict[int, str] = {}
        ids, ranks, pieces = array("i"), array("I"), []
        logprobs, top_ids, top_lp = array("f"), array("i", [-1] * (n * k)), array("h", [0] * (n * k))
        for i, t in enumerate(self.tokens):
            ids.append(t.token)
            ranks.append(max(0, t.rank))
            logprobs.append(t.logprob)
            pieces.append(t.piece)
            for j, c in enumerate(t.top):
                top_ids[i * k + j] = c.token
                top_lp[i * k + j] = _milli(c.logprob)
                if c.token >= 0:
                    texts.setdefault(c.token, c.text)
        table = json.dumps({"texts": {str(key): value for key, value in texts.items()}, "pieces": pieces},
                           ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        body = b"".join(a.tobytes() for a in (ids, ranks, logprobs, top_ids, top_lp)) + table
        return _HEADER.pack(_MAGIC, FORMAT, k, n, len(table)) + zlib.compress(body, 6)

    @staticmethod
    def decode(blob: bytes) -> ReplyTokens | None:
        """The tokens of a stored blob; None for one this version cannot read (kept, never an error)."""
        try:
            magic, version, k, n, table_len = _HEADER.unpack_from(blob)
            if magic != _MAGIC or version != FORMAT:
                return None
            body = zlib.decompress(blob[_HEADER.size:])
            arrays, at = [], 0
            for code, count in (("i", n), ("I", n), ("f", n), ("i", n * k), ("h", n * k)):
                a = array(code)
                size = a.itemsize * count
                a.frombytes(body[at:at + size])
                arrays.append(a)
                at += size
            ids, ranks, logprobs, top_ids, top_lp = arrays
            table = json.loads(body[at:at + table_len].decode("utf-8"))
            texts, pieces = {int(key): value for key, value in table["texts"].items()}, table["pieces"]
            tokens = []
            for i in range(n):
                top = tuple(Choice(top_ids[i * k + j], texts.get(top_ids[i * k + j], ""), top_lp[i * k + j] / 1000)
                            for j in range(k) if top_ids[i * k + j] >= 0)
                tokens.append(TokenInfo(ids[i], pieces[i], logprobs[i], ranks[i], top))
            return ReplyTokens(tuple(tokens))
        except (struct.error, zlib.error, ValueError, KeyError, IndexError, TypeError):
            return None


def _milli(logprob: float) -> int:
    return int(round(max(_FLOOR, logprob) * 1000)) if logprob > -math.inf else int(_FLOOR * 1000)

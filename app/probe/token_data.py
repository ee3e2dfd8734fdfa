"""What the model predicted for each token of a reply, as the window keeps it: plain data, no Qt, no torch.

A reply's `ReplyTokens` holds, per token, its id, the text it made visible (the pieces concatenate to the
reply as written, before stripping), its log-probability, its rank under the model's own distribution
(1 = the likeliest) and its top alternatives. It is stored with the reply in the history as one small
blob (`encode` / `decode`): a header, the arrays packed as fixed-size numbers, a table of the texts of
the token ids it uses, all compressed: about 60 bytes a token with ten alternatives (measured on 128-token replies).
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from array import array
from dataclasses import dataclass

from engine.inference.buckets import BUCKETS, bucket_of

TOP = 10  # alternatives kept per token
FORMAT = 1  # of the blob
BUCKET_NAMES = ("top 10", "top 100", "top 1000", "beyond")
_HEADER = struct.Struct("<4sBBII")  # magic, format, alternatives per token, tokens, length of the pieces (JSON)
_MAGIC = b"GTOK"
_FLOOR = -32.767  # alternatives' log-probabilities are kept in thousandths of a nat (16 bits), down to here


SOFT_BREAK = 400  # characters of a paragraph after which a view breaks it at the next sentence end
HARD_BREAK = 1500  # ... or at the next space, without one
_SENTENCE_END = re.compile(r"[.!?…][\"'»”)\]]*(?= )")


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


class ReplyTokens:
    """The tokens of one reply, kept as columns (a reply of 2,000 tokens has 20,000 alternatives: building an
    object for each would cost the window more than it needs). `token(i)` gives one as a TokenInfo."""

    def __init__(self, ids=(), pieces=(), logprobs=(), ranks=(), top_ids=(), top_lp=(), k: int = TOP,
                 texts: dict[int, str] | None = None):
        self.ids, self.pieces = array("i", ids), list(pieces)
        self.logprobs, self.ranks = array("f", logprobs), array("I", ranks)
        self.k = k
        self.top_ids, self.top_lp = array("i", top_ids), array("f", top_lp)  # n * k, -1 where none
        self._texts = dict(texts) if texts is not None else None
        self._texts_json: bytes | None = None  # read into `texts` only when an alternative's text is wanted

    @property
    def texts(self) -> dict[int, str]:
        """The text of each token id among the alternatives."""
        if self._texts is None:
            table = json.loads(self._texts_json.decode("utf-8")) if self._texts_json else {"ids": [], "texts": []}
            self._texts = dict(zip(table["ids"], table["texts"]))
            self._texts_json = None
        return self._texts

    @classmethod
    def of(cls, tokens) -> ReplyTokens:
        """From TokenInfos (or anything with token, piece, logprob, rank and top)."""
        out = cls()
        for t in tokens:
            out.add(t.token, t.piece, t.logprob, t.rank, [(c.token, c.text, c.logprob) for c in t.top])
        return out

    def add(self, token: int, piece: str, logprob: float, rank: int, top) -> None:
        """One more token; `top`: (id, text, log-probability) of its alternatives, likeliest first."""
        self.ids.append(token)
        self.pieces.append(piece)
        self.logprobs.append(logprob)
        self.ranks.append(max(0, rank or 0))
        top = list(top)[: self.k]
        for token_id, text, lp in top:
            self.top_ids.append(token_id)
            self.top_lp.append(lp)
            if token_id >= 0 and token_id not in self.texts:
                self.texts[token_id] = text
        for _ in range(self.k - len(top)):
            self.top_ids.append(-1)
            self.top_lp.append(0.0)

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other) -> bool:
        return isinstance(other, ReplyTokens) and all(getattr(self, name) == getattr(other, name) for name in
                                                      ("ids", "pieces", "logprobs", "ranks", "k", "top_ids"))

    def text(self) -> str:
        return "".join(self.pieces)

    def prob(self, i: int) -> float:
        return math.exp(self.logprobs[i])

    def bucket(self, i: int) -> int:
        return bucket_of(self.ranks[i])

    def token(self, i: int) -> TokenInfo:
        k = self.k
        top = tuple(Choice(self.top_ids[j], self.texts.get(self.top_ids[j], ""), self.top_lp[j])
                    for j in range(i * k, i * k + k) if self.top_ids[j] >= 0)
        return TokenInfo(self.ids[i], self.pieces[i], self.logprobs[i], self.ranks[i], top)

    @property
    def tokens(self) -> tuple[TokenInfo, ...]:
        return tuple(self.token(i) for i in range(len(self)))

    def counts(self) -> tuple[int, int, int, int]:
        """How many tokens fall in each of GLTR's four rank buckets."""
        within = [sum(1 for rank in self.ranks if rank <= limit) for limit in BUCKETS]
        return (within[0], within[1] - within[0], within[2] - within[1], len(self.ranks) - within[2])

    def prefix(self, n: int) -> ReplyTokens:
        k = self.k
        return ReplyTokens(self.ids[:n], self.pieces[:n], self.logprobs[:n], self.ranks[:n], self.top_ids[:n * k],
                           self.top_lp[:n * k], k, self.texts)

    def __add__(self, other: ReplyTokens) -> ReplyTokens:
        if other.k != self.k:
            return ReplyTokens.of(self.tokens + other.tokens)
        return ReplyTokens(self.ids + other.ids, self.pieces + other.pieces, self.logprobs + other.logprobs,
                           self.ranks + other.ranks, self.top_ids + other.top_ids, self.top_lp + other.top_lp,
                           self.k, {**self.texts, **other.texts})

    def alternative_at(self, index: int, choice: Choice) -> ReplyTokens:
        """The reply up to token `index`, with `choice` in its place: the same prediction, another pick."""
        old = self.token(index)
        rank = next((i + 1 for i, c in enumerate(old.top) if c.token == choice.token), old.rank)
        picked = ReplyTokens(k=self.k)
        picked.add(choice.token, choice.text, choice.logprob, rank, [(c.token, c.text, c.logprob) for c in old.top])
        return self.prefix(index) + picked

    # the stored form

    def encode(self) -> bytes:
        n, k = len(self), self.k
        used = sorted(token_id for token_id in set(self.top_ids) if token_id in self.texts)
        pieces = json.dumps(self.pieces, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        texts = json.dumps({"ids": used, "texts": [self.texts[i] for i in used]}, ensure_ascii=False,
                           separators=(",", ":")).encode("utf-8")
        top_lp = array("h", [_milli(lp) for lp in self.top_lp])
        body = b"".join(a.tobytes() for a in (self.ids, self.ranks, self.logprobs, self.top_ids, top_lp))
        return _HEADER.pack(_MAGIC, FORMAT, k, n, len(pieces)) + zlib.compress(body + pieces + texts, 6)

    @staticmethod
    def decode(blob: bytes) -> ReplyTokens | None:
        """The tokens of a stored blob; None for one this version cannot read (kept, never an error)."""
        try:
            magic, version, k, n, pieces_len = _HEADER.unpack_from(blob)
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
            pieces = json.loads(body[at:at + pieces_len].decode("utf-8"))
            if len(pieces) != n:
                return None
            out = ReplyTokens(ids, pieces, logprobs, ranks, top_ids, [lp / 1000 for lp in top_lp], k)
            out._texts_json = body[at + pieces_len:]
            return out
        except (struct.error, zlib.error, ValueError, KeyError, IndexError, TypeError):  # JSON errors are ValueErrors
            return None


def _milli(logprob: float) -> int:
    return int(round(max(_FLOOR, logprob) * 1000)) if logprob > -math.inf else int(_FLOOR * 1000)


def spans(data: ReplyTokens, strip: bool = False) -> list[tuple[int, int, int]]:
    """(index, start, end) of each token that shows text, in the reply's text (`strip`: in the text with its
    leading and trailing white space stripped, as a chat reply is kept)."""
    raw = data.text()
    lead, end = (len(raw) - len(raw.lstrip()), len(raw.rstrip())) if strip else (0, len(raw))
    out, at = [], 0
    for i, piece in enumerate(data.pieces):
        start, stop = max(at, lead), min(at + len(piece), end)
        if stop > start:
            out.append((i, start - lead, stop - lead))
        at += len(piece)
    return out


def soft_breaks(text: str) -> list[int]:
    """Where a view begins a new block in `text` (before a space that follows a sentence end, once the
    paragraph is SOFT_BREAK characters long; at a space after HARD_BREAK without one)."""
    cuts: list[int] = []

    def hard_cuts(block: int, end: int) -> int:
        """Cuts at a space every HARD_BREAK characters from `block` up to `end`; the block begun last."""
        while end - block > HARD_BREAK:
            space = text.find(" ", block + HARD_BREAK, end)
            if space < 0:
                break
            cuts.append(space)
            block = space
        return block

    for paragraph in re.finditer(r"[^\n]+", text):
        block = paragraph.start()
        if paragraph.end() - block <= SOFT_BREAK:
            continue
        for found in _SENTENCE_END.finditer(text, paragraph.start(), paragraph.end()):
            block = hard_cuts(block, found.end())
            if found.end() - block > SOFT_BREAK:
                cuts.append(found.end())
                block = found.end()
        hard_cuts(block, paragraph.end())
    return cuts


@dataclass(frozen=True)
class TextAnalysis:
    """An analysed text (the Analyse view's), with everything the window shows worked out beforehand, off the
    GUI thread."""

    data: ReplyTokens
    counts: tuple[int, int, int, int]  # tokens in each of GLTR's rank buckets
    bytes: int
    nll: float  # nats, over every token
    places: list[tuple[int, int, int]]  # spans(data)
    cuts: list[int]  # soft_breaks(data.text())
    model: str = ""  # the model that scored it
    line_endings: int = 0  # Windows (CR LF) or old Mac (CR) line endings it had, scored as plain LF

    @classmethod
    def of(cls, data: ReplyTokens, model: str = "", line_endings: int = 0) -> TextAnalysis:
        text = data.text()
        return cls(data, data.counts(), len(text.encode("utf-8")), -sum(data.logprobs), spans(data), soft_breaks(text),
                   model, line_endings)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes if self.bytes else float("nan")

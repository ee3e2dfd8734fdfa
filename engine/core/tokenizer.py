"""Byte-level BPE through the `tokenizers` library, plus streaming-safe decoding."""

from __future__ import annotations

import codecs
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from engine.errors import ModelLoadError, first_line

ENDOFTEXT = "<|endoftext|>"


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted (see its `bytes_to_unicode`)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class GPT2Tokenizer:
    """Encodes text to ids and ids to raw bytes; special tokens are kept as whole tokens."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        if self._tok.token_to_id(ENDOFTEXT) is not None:
            self._tok.add_special_tokens([AddedToken(ENDOFTEXT, special=True, normalized=False)])
        self.eos_id = self._tok.token_to_id(ENDOFTEXT)
        byte_of = _byte_decoder()
        special = {t.content for t in self._tok.get_added_tokens_decoder().values() if t.special}
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self._bytes: list[bytes] = [b""] * (max(vocab.values()) + 1)
        for token, idx in vocab.items():
            if token in special:
                self._bytes[idx] = token.encode("utf-8")
            else:
                self._bytes[idx] = bytes(byte_of[ch] for ch in token if ch in byte_of)

    @classmethod
    def from_folder(cls, folder: Path, vocab_size: int | None = None) -> "GPT2Tokenizer":
        """The tokenizer of a model folder; with `vocab_size` (config.json's), one that numbers a token past it is
        refused before anything is sized by its ids."""
        tokenizer_json = folder / "tokenizer.json"
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if tokenizer_json.is_file():
            source, read = tokenizer_json, lambda: Tokenizer.from_file(str(tokenizer_json))
        elif vocab.is_file() and merges.is_file():
            source, read = vocab, lambda: cls._byte_level_bpe(vocab, merges)
        else:
            raise ModelLoadError(f"No tokenizer in {folder}: it needs tokenizer.json, or vocab.json and merges.txt.")
        try:
            tokenizer = read()
            size = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1
            if vocab_size is not None and size > vocab_size:
                raise ModelLoadError(f"{source.name} numbers its tokens up to {size - 1:,} but config.json's "
                                     f"vocab_size is {vocab_size:,}: the tokenizer and the weights do not belong "
                                     "together.")
            return cls(tokenizer)
        except ModelLoadError:
            raise
        except Exception as exc:  # tokenizers raises plain Exception subclasses for bad files
            raise ModelLoadError(f"The tokenizer files in {folder} are unreadable ({first_line(exc)}).") from None

    @staticmethod
    def _byte_level_bpe(vocab: Path, merges: Path) -> Tokenizer:
        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id] if 0 <= token_id < len(self._bytes) else b""

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")


class StreamDecoder:
    """Turns token ids into text deltas, holding back a character split across tokens.

    The deltas always concatenate to the same text a one-shot decode gives, and a delta never
    shows a replacement character (U+FFFD) for bytes that a later token completes.
    """

    def __init__(self, tokenizer: GPT2Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)

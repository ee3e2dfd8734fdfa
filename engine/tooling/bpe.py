"""Train a byte-level BPE tokenizer (GPT-2's scheme) on text, with `<|endoftext|>` as id 0."""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from engine.core.tokenizer import ENDOFTEXT, GPT2Tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int) -> GPT2Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return GPT2Tokenizer(tok)

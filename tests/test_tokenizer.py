"""Token ids equal transformers' GPT2Tokenizer on GPT-2's real vocabulary; streaming decode is UTF-8 safe."""

import pytest

from engine.core.tokenizer import ENDOFTEXT, GPT2Tokenizer, StreamDecoder

TEXTS = [
    "Hello, world! This is GPT-2.",
    "Crème brûlée, naïve façade, São Paulo, Ærøskøbing",
    "日本語のテキストと中文文本",
    "emoji 🙂🎉👩‍👩‍👧 and flags 🇫🇷",
    "  leading   spaces,\ttabs\t\tand\n\nnewlines\r\n  \n\n\n   end   ",
    f"first document{ENDOFTEXT}second document {ENDOFTEXT} third",
    "",
    " ",
    "don't you'll we've I'm 1234567 3.14159",
]


@pytest.fixture(scope="module")
def tokenizers_pair(tiny_model_dir):
    from transformers import GPT2Tokenizer as HFTokenizer

    ours = GPT2Tokenizer.from_folder(tiny_model_dir)
    theirs = HFTokenizer.from_pretrained(tiny_model_dir)
    return ours, theirs


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_transformers(tokenizers_pair, text):
    ours, theirs = tokenizers_pair
    assert ours.encode(text) == theirs.encode(text)


def test_endoftext_is_one_special_token(tokenizers_pair):
    ours, _ = tokenizers_pair
    assert ours.eos_id == 50256
    assert ours.encode(ENDOFTEXT) == [50256]


@pytest.mark.parametrize("text", TEXTS)
def test_decode_round_trips(tokenizers_pair, text):
    ours, _ = tokenizers_pair
    assert ours.decode(ours.encode(text)) == text


def test_tokenizer_json_folder_gives_same_ids(tmp_path, tokenizers_pair):
    ours, theirs = tokenizers_pair
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    (tmp_path / "vocab.json").unlink(missing_ok=True)
    (tmp_path / "merges.txt").unlink(missing_ok=True)
    from_json = GPT2Tokenizer.from_folder(tmp_path)
    for text in TEXTS:
        assert from_json.encode(text) == ours.encode(text)


def test_stream_decoder_holds_back_split_characters(tokenizers_pair):
    ours, _ = tokenizers_pair
    text = "🙂 日本 👩‍👩‍👧 ok"
    ids = ours.encode(text)
    assert any("\ufffd" in ours.decode([i]) for i in ids), "the test needs a character split across tokens"
    decoder = StreamDecoder(ours)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text


def test_stream_decoder_keeps_genuinely_broken_bytes(tokenizers_pair):
    ours, _ = tokenizers_pair
    ids = ours.encode("🙂")[:-1] + ours.encode("a")  # an emoji cut short, then a letter
    decoder = StreamDecoder(ours)
    joined = "".join(decoder.push(i) for i in ids) + decoder.flush()
    assert joined == ours.decode(ids)
    assert "\ufffd" in joined

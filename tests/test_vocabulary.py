"""Tokenizers: lossless round trips on Devanagari, shared special ids, words that keep their matras."""

import pytest

from rnnmt.config import CorpusConfig
from rnnmt.data import read_corpus
from rnnmt.vocabulary import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    SentencePieceTokenizer,
    WordTokenizer,
    fill_unknown,
    join_words,
    split_words,
    train_tokenizers,
)

HINDI = [hi for _, hi in read_corpus(CorpusConfig(bundled="train"))]
ENGLISH = [en for en, _ in read_corpus(CorpusConfig(bundled="train"))]


@pytest.fixture(scope="module")
def hindi_sp():
    return SentencePieceTokenizer.train(HINDI, 600)


def test_sentencepiece_round_trip_on_devanagari(hindi_sp):
    for text in HINDI[:200] + ["क्षत्रिय ज़िंदगी फ़िल्म ऑफ़िस ह्रदय हूँ।"]:
        assert hindi_sp.decode(hindi_sp.encode(text)) == text


def test_sentencepiece_special_ids(hindi_sp):
    assert [hindi_sp.piece(i) for i in (PAD, UNK, BOS, EOS)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert hindi_sp.decode([BOS] + hindi_sp.encode("नमस्ते") + [EOS, PAD]) == "नमस्ते"


def test_sentencepiece_survives_bytes(hindi_sp):
    again = SentencePieceTokenizer(hindi_sp.to_bytes())
    assert again.encode(HINDI[0]) == hindi_sp.encode(HINDI[0])


def test_words_of_maps_pieces_to_whole_words():
    sp = SentencePieceTokenizer.train(ENGLISH, 300)
    pieces = sp.pieces("unbelievable weather")
    assert set(sp.words_of(pieces)) == {"unbelievable", "weather"}
    assert len(sp.words_of(pieces)) == len(pieces)


def test_split_words_keeps_matras_and_splits_punctuation():
    assert split_words("क्या आप ठीक हैं?") == ["क्या", "आप", "ठीक", "हैं", "?"]
    assert split_words("नमस्ते। (hello)") == ["नमस्ते", "।", "(", "hello", ")"]
    assert join_words(split_words("क्या आप ठीक हैं? हाँ, मैं ठीक हूँ।")) == "क्या आप ठीक हैं? हाँ, मैं ठीक हूँ।"


def test_word_tokenizer_round_trip_and_unknown_words():
    words = WordTokenizer.train(HINDI, 5000)
    text = "मैं ठीक हूँ।"
    assert words.decode(words.encode(text)) == text
    assert words.encode("ज़ुज़ुज़ु") == [UNK]
    assert WordTokenizer.from_bytes(words.to_bytes()).words == words.words


def test_word_tokenizer_min_freq_and_size():
    words = WordTokenizer.train(["a a a b b c"], size=6, min_freq=2)
    assert words.words == ["<pad>", "<unk>", "<s>", "</s>", "a", "b"]


def test_joint_vocabulary_is_shared():
    src, tgt = train_tokenizers(ENGLISH[:300], HINDI[:300], "sentencepiece", True, 400, 400)
    assert src is tgt and src.decode(src.encode("घर home")) == "घर home"


def test_a_copied_word_is_a_piece_of_the_target_tokenizer(hindi_sp):
    pieces, ids, looked_at = ["▁मुझे", "<unk>"], [5, UNK], [0, 2]
    words = WordTokenizer([*SPECIALS, "मुझे"])
    assert words.join(fill_unknown(["मुझे", "<unk>"], ids, looked_at, ["I", "love", "Zxqwv", ""], words)) \
        == "मुझे Zxqwv"
    assert hindi_sp.join(fill_unknown(pieces, ids, looked_at, ["I", "love", "Zxqwv", ""], hindi_sp)) == "मुझे Zxqwv"
    assert fill_unknown(pieces, ids, looked_at, ["I", "love", "Zxqwv", ""], hindi_sp) == ["▁मुझे", "▁Zxqwv"]

"""Tokenizers and vocabularies: SentencePiece subwords, or whole words as in the seed note.

Both kinds share the ids of the special tokens, so the model never needs to know which kind it was given.
"""

from __future__ import annotations

import io
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Protocol

import sentencepiece as spm

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
CLOSING = set(".,!?;:।॥)]}%\"'")  # word mode: no space before these when detokenising
OPENING = set("([{")  # word mode: no space after these


Sampling = tuple[float, int]  # subword regularisation: (alpha, nbest), see VocabConfig


class Tokenizer(Protocol):
    """What the model side needs from a vocabulary."""

    size: int

    def encode(self, text: str, sampling: Sampling | None = None) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def piece(self, index: int) -> str: ...

    def pieces(self, text: str) -> list[str]: ...

    def join(self, pieces: list[str]) -> str: ...

    def words_of(self, pieces: list[str]) -> list[str]: ...

    def word_starts(self, pieces: list[str]) -> list[bool]: ...

    def word_piece(self, word: str) -> str: ...

    def to_bytes(self) -> bytes: ...


class SentencePieceTokenizer:
    """Subword units learned with SentencePiece; ``decode(encode(s)) == s`` for NFC text."""

    suffix = ".model"

    def __init__(self, model: bytes):
        self.model = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self.size = self.sp.get_piece_size()

    @classmethod
    def train(cls, texts: list[str], size: int, model_type: str = "unigram") -> SentencePieceTokenizer:
        """Learn a vocabulary of about ``size`` pieces (fewer when the text is too small for that many)."""
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buffer, vocab_size=size, model_type=model_type,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_piece=SPECIALS[PAD], unk_piece=SPECIALS[UNK],
            bos_piece=SPECIALS[BOS], eos_piece=SPECIALS[EOS], character_coverage=1.0,
            normalization_rule_name="identity", hard_vocab_limit=False, input_sentence_size=2_000_000,
            shuffle_input_sentence=True, num_threads=2, minloglevel=2,
        )
        return cls(buffer.getvalue())

    def encode(self, text: str, sampling: Sampling | None = None) -> list[int]:
        """The ids of ``text``: its best segmentation, or with ``sampling`` (alpha, nbest) a sampled one.

        Sampling is Kudo's subword regularisation for a unigram model, BPE-dropout for a BPE model; it draws
        from SentencePiece's random generator (see ``seed_sampling``).
        """
        if sampling is None:
            return self.sp.encode(text)
        alpha, nbest = sampling
        return self.sp.encode(text, enable_sampling=True, alpha=alpha, nbest_size=nbest)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i >= len(SPECIALS) or i == UNK])

    def pieces(self, text: str) -> list[str]:
        """The subword pieces of ``text``, as the model sees them."""
        return self.sp.encode(text, out_type=str)

    def piece(self, index: int) -> str:
        return self.sp.id_to_piece(index)

    def join(self, pieces: list[str]) -> str:
        """Text from pieces (the inverse of ``pieces``), also for pieces outside the vocabulary."""
        return "".join(pieces).replace("\u2581", " ").strip()

    def words_of(self, pieces: list[str]) -> list[str]:
        """For each piece, the whole word it belongs to (a word starts at a piece beginning with ▁)."""
        spans, words = [], []
        for piece in pieces:
            if piece.startswith("▁") or not words:
                words.append("")
            words[-1] += piece
            spans.append(len(words) - 1)
        return [words[i].lstrip("▁") for i in spans]

    def word_starts(self, pieces: list[str]) -> list[bool]:
        """For each piece, whether ``join`` begins a new whitespace word with it (at a piece beginning with ▁)."""
        return [piece.startswith("▁") for piece in pieces]

    @staticmethod
    def word_piece(word: str) -> str:
        """``word`` as a piece that starts a word, for ``join``: ``▁word``."""
        return "\u2581" + word

    def to_bytes(self) -> bytes:
        return self.model


def split_words(text: str) -> list[str]:
    """Whitespace words with punctuation split off; Devanagari matras and viramas stay in their word."""
    words = []
    for chunk in text.split():
        start, end = 0, len(chunk)
        while start < end and unicodedata.category(chunk[start]).startswith("P"):
            start += 1
        while end > start and unicodedata.category(chunk[end - 1]).startswith("P"):
            end -= 1
        words.extend(chunk[:start])
        if chunk[start:end]:
            words.append(chunk[start:end])
        words.extend(chunk[end:])
    return words


def join_words(words: list[str]) -> str:
    """The inverse of ``split_words`` for ordinary punctuation."""
    text = ""
    for word in words:
        glue = not text or word in CLOSING or text[-1] in OPENING
        text += word if glue else " " + word
    return text


class WordTokenizer:
    """Whole words, as in the seed note; words outside the vocabulary become ``<unk>``."""

    suffix = ".vocab"

    def __init__(self, words: list[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a word vocabulary must start with {', '.join(SPECIALS)}")
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.size = len(words)

    @classmethod
    def train(cls, texts: list[str], size: int, min_freq: int = 1) -> WordTokenizer:
        """The ``size`` most frequent words that occur at least ``min_freq`` times."""
        counts = Counter(word for text in texts for word in split_words(text))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + ranked[: max(0, size - len(SPECIALS))])

    @classmethod
    def from_bytes(cls, data: bytes) -> WordTokenizer:
        return cls(data.decode("utf-8").split("\n"))

    def encode(self, text: str, sampling: Sampling | None = None) -> list[int]:
        if sampling is not None:
            raise ValueError("a word vocabulary has one segmentation: it cannot sample")
        return [self.index.get(word, UNK) for word in split_words(text)]

    def decode(self, ids: list[int]) -> str:
        return join_words([self.words[i] for i in ids if i >= len(SPECIALS) or i == UNK])

    def pieces(self, text: str) -> list[str]:
        return split_words(text)

    def piece(self, index: int) -> str:
        return self.words[index]

    def join(self, pieces: list[str]) -> str:
        return join_words(pieces)

    def words_of(self, pieces: list[str]) -> list[str]:
        return list(pieces)

    def word_starts(self, pieces: list[str]) -> list[bool]:
        """For each piece, whether ``join`` puts a space before it: not before closing punctuation, not after
        opening punctuation."""
        return [i > 0 and piece not in CLOSING and pieces[i - 1][-1:] not in OPENING for i, piece in enumerate(pieces)]

    @staticmethod
    def word_piece(word: str) -> str:
        """``word`` as a piece for ``join``: the word itself."""
        return word

    def to_bytes(self) -> bytes:
        return "\n".join(self.words).encode("utf-8")


def train_tokenizers(src_texts: list[str], tgt_texts: list[str], kind: str, joint: bool, src_size: int,
                     tgt_size: int, model_type: str = "unigram", min_freq: int = 1) -> tuple[Tokenizer, Tokenizer]:
    """Learn the English and Hindi vocabularies (one shared model when ``joint``)."""
    if kind == "word":
        if joint:
            shared = WordTokenizer.train(src_texts + tgt_texts, src_size, min_freq)
            return shared, shared
        return WordTokenizer.train(src_texts, src_size, min_freq), WordTokenizer.train(tgt_texts, tgt_size, min_freq)
    if joint:
        shared = SentencePieceTokenizer.train(src_texts + tgt_texts, src_size, model_type)
        return shared, shared
    return (SentencePieceTokenizer.train(src_texts, src_size, model_type),
            SentencePieceTokenizer.train(tgt_texts, tgt_size, model_type))


def encode_source(tokenizer: Tokenizer, text: str, max_len: int, sampling: Sampling | None = None) -> list[int]:
    """English ids, cut to ``max_len - 1``, then </s>."""
    return tokenizer.encode(text, sampling)[: max_len - 1] + [EOS]


def source_pieces(tokenizer: Tokenizer, text: str, max_len: int) -> list[str]:
    """The English pieces the model reads, cut as ``encode_source`` cuts the ids: ``max_len - 1``, then </s>."""
    return tokenizer.pieces(text)[: max_len - 1] + [SPECIALS[EOS]]


def output_pieces(ids: list[int], src_pieces: list[str], src: Tokenizer, tgt: Tokenizer,
                  looked_at: list[int] | None) -> list[str]:
    """The pieces of output ids (without </s>).

    With ``looked_at``, the source position each output step attended to most, every <unk> becomes the source
    word there (``src_pieces`` are the source's pieces, </s> last).
    """
    pieces = [tgt.piece(i) for i in ids]
    if looked_at is not None and UNK in ids:
        pieces = fill_unknown(pieces, ids, looked_at, src.words_of(src_pieces[:-1]) + [""], tgt)
    return pieces


def join_text(tgt: Tokenizer, pieces: list[str]) -> str:
    """Text from output pieces, in NFC with single spaces."""
    return " ".join(unicodedata.normalize("NFC", tgt.join(pieces)).split())


def detokenize(ids: list[int], src_pieces: list[str], src: Tokenizer, tgt: Tokenizer,
               looked_at: list[int] | None) -> str:
    """Hindi text of output ids (without </s>), <unk> copied as ``output_pieces`` says, in NFC with single spaces."""
    return join_text(tgt, output_pieces(ids, src_pieces, src, tgt, looked_at))


def word_indices(tokenizer: Tokenizer, pieces: list[str]) -> list[int]:
    """For each piece, the whitespace word of ``tokenizer.join(pieces)`` it falls in (0 for the first)."""
    indices, word = [], -1
    for start in tokenizer.word_starts(pieces):
        word += start or word < 0
        indices.append(word)
    return indices


def seed_sampling(seed: int) -> None:
    """Seed SentencePiece's generator, so that the same seed samples the same segmentations."""
    spm.set_random_generator_seed(seed)


def fill_unknown(pieces: list[str], ids: list[int], looked_at: list[int], source_words: list[str],
                 tgt: Tokenizer) -> list[str]:
    """Each <unk> output piece replaced by the source word its step attended to most (``looked_at[t]``).

    The word becomes a piece of the target tokenizer ``tgt`` (``▁word`` for SentencePiece, ``word`` for words).
    """
    return [tgt.word_piece(source_words[looked_at[t]]) if token == UNK else piece
            for t, (piece, token) in enumerate(zip(pieces, ids, strict=True))]


def load_tokenizers(folder: Path) -> tuple[Tokenizer, Tokenizer]:
    """The English and Hindi tokenizers of a model folder (``src.model``/``tgt.model`` or ``*.vocab``)."""
    return tuple(tokenizer_from_file(find_tokenizer(folder, side)) for side in ("src", "tgt"))


def find_tokenizer(folder: Path, side: str) -> Path:
    for suffix in (SentencePieceTokenizer.suffix, WordTokenizer.suffix):
        if (folder / f"{side}{suffix}").is_file():
            return folder / f"{side}{suffix}"
    raise FileNotFoundError(f"{folder}: no {side}.model or {side}.vocab (the {side} tokenizer)")


def tokenizer_from_file(path: Path) -> Tokenizer:
    """Load a tokenizer saved as ``*.model`` (SentencePiece) or ``*.vocab`` (words)."""
    data = path.read_bytes()
    if path.suffix == SentencePieceTokenizer.suffix:
        return SentencePieceTokenizer(data)
    return WordTokenizer.from_bytes(data)

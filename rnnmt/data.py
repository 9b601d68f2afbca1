"""Parallel data: reading corpora, normalising Unicode and cleaning pairs, and checking the texts callers pass.

Readers fail with the file and line of the fault. Cleaning never strips Devanagari combining marks: it
normalises to NFC, optionally applies indic-nlp-library's Hindi normaliser, and then filters by length,
length ratio and duplicates, counting everything it drops.
"""

from __future__ import annotations

import functools
import logging
import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rnnmt.config import CorpusConfig, DataConfig
from rnnmt.errors import DataError

log = logging.getLogger(__name__)

BUNDLED_CORPUS = Path(__file__).parent / "corpus"

Pair = tuple[str, str]  # (English, Hindi)



def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file, without line ends; invalid UTF-8 names the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    decoded = []
    for number, raw in enumerate(lines, start=1):
        try:
            decoded.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{number}: invalid UTF-8 at byte {err.start}: {raw[:60]!r}") from err
    return decoded


def read_aligned(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Pairs from two files aligned line by line."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
    return list(zip(src, tgt, strict=True))


def read_tsv(path: str | Path) -> list[Pair]:
    """Pairs from ``English<TAB>Hindi[<TAB>more]`` lines, such as Tatoeba's hin.txt."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        columns = line.split("\t")
        if len(columns) < 2:
            if line.strip():
                raise DataError(f"{path}:{number}: expected English<TAB>Hindi, found no tab")
            columns = ["", ""]
        pairs.append((columns[0], columns[1]))
    return pairs


def read_hf(path: str | Path, split: str, field: str) -> list[Pair]:
    """Pairs from a Hugging Face dataset saved to disk, rows like ``{field: {"en": ..., "hi": ...}}``."""
    try:
        import datasets
    except ImportError as err:
        raise DataError("reading a Hugging Face dataset needs the extra: pip install 'rnnmt[hf]'") from err
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise DataError(f"{path}: no dataset saved there ({err})") from err
    table = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    pairs = []
    for number, row in enumerate(table[field], start=1):
        if not isinstance(row, dict) or "en" not in row or "hi" not in row:
            raise DataError(f"{path}[{split}] row {number}: field {field!r} needs keys 'en' and 'hi'")
        pairs.append((row["en"] or "", row["hi"] or ""))
    return pairs


def read_corpus(corpus: CorpusConfig) -> list[Pair]:
    """The raw pairs of one configured corpus."""
    if corpus.bundled:
        pairs = read_tsv(BUNDLED_CORPUS / f"{corpus.bundled}.tsv")
    elif corpus.tsv:
        pairs = read_tsv(corpus.tsv)
    elif corpus.hf:
        pairs = read_hf(corpus.hf, corpus.hf_split, corpus.hf_field)
    else:
        pairs = read_aligned(corpus.src, corpus.tgt)
    return pairs[: corpus.limit] if corpus.limit else pairs


@functools.lru_cache(maxsize=1)
def hindi_normalizer():
    """indic-nlp-library's Hindi normaliser (built once: it is slow to build)."""
    from indicnlp.normalize.indic_normalize import IndicNormalizerFactory

    return IndicNormalizerFactory().get_normalizer("hi")


def normalize_english(text: str) -> str:
    """NFC and single spaces."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalize_hindi(text: str, indic: bool = True) -> str:
    """NFC, then indic-nlp-library's normaliser (nukta, danda, ZW(N)J canonical forms), then NFC again."""
    text = unicodedata.normalize("NFC", text)
    if indic:
        text = unicodedata.normalize("NFC", hindi_normalizer().normalize(text))
    return " ".join(text.split())


@dataclass
class CleaningReport:
    """What cleaning kept and dropped, and why."""

    read: int = 0
    empty: int = 0
    too_short: int = 0
    too_long: int = 0
    bad_ratio: int = 0
    duplicate: int = 0
    kept: int = 0

    def summary(self) -> str:
        """One line for the log and the console."""
        dropped = ", ".join(f"{f.name.replace('_', ' ')} {getattr(self, f.name)}"
                            for f in fields(self) if f.name not in ("read", "kept"))
        return f"read {self.read} pairs, kept {self.kept}; dropped: {dropped}"


def clean_pairs(pairs: list[Pair], config: DataConfig, filter_lengths: bool = True,
                seen: set[Pair] | None = None) -> tuple[list[Pair], CleaningReport]:
    """Normalise every pair, then drop empty, too short/long, badly proportioned and duplicate pairs.

    ``seen`` holds the pairs kept before (from other corpora): a pair found there is a duplicate too.
    """
    report, seen, kept = CleaningReport(read=len(pairs)), set() if seen is None else seen, []
    for en, hi in pairs:
        en, hi = normalize_english(en), normalize_hindi(hi, config.normalize_hindi)
        if not en or not hi:
            report.empty += 1
            continue
        n_en, n_hi = len(en.split()), len(hi.split())
        if filter_lengths and min(n_en, n_hi) < config.min_words:
            report.too_short += 1
        elif filter_lengths and max(n_en, n_hi) > config.max_words:
            report.too_long += 1
        elif filter_lengths and max(n_en, n_hi) > config.max_ratio * min(n_en, n_hi):
            report.bad_ratio += 1
        elif config.dedup and (en, hi) in seen:
            report.duplicate += 1
        else:
            seen.add((en, hi))
            kept.append((en, hi))
    report.kept = len(kept)
    return kept, report


def load_corpora(corpora: list[CorpusConfig], config: DataConfig, filter_lengths: bool = True) -> list[list[Pair]]:
    """Read and clean each corpus, logging what was dropped; a pair kept in one corpus is a duplicate in the next."""
    seen: set[Pair] = set()
    cleaned = []
    for corpus in corpora:
        pairs, report = clean_pairs(read_corpus(corpus), config, filter_lengths, seen)
        log.info("%s: %s", corpus.describe(), report.summary())
        cleaned.append(pairs)
    if not any(cleaned):
        raise DataError(f"{', '.join(c.describe() for c in corpora)}: no usable pairs left after cleaning")
    return cleaned


def load_pairs(corpora: list[CorpusConfig], config: DataConfig, filter_lengths: bool = True) -> list[Pair]:
    """Read, clean and concatenate corpora."""
    return [pair for pairs in load_corpora(corpora, config, filter_lengths) for pair in pairs]


def epoch_mix(sizes: list[int], weights: list[float], seed: int) -> list[tuple[int, int]]:
    """The (corpus, pair) indices of one epoch: each corpus contributes ``round(weight x size)`` pairs.

    A whole weight repeats every pair that many times (2: each pair twice); the fraction is a fresh random
    sample of the corpus each epoch (0.3: a different 30% every epoch), so a downweighted corpus is still
    seen whole over several epochs. The same seed gives the same mix, which lets training resume exactly.
    """
    rng = random.Random(seed)
    picks = []
    for corpus, (size, weight) in enumerate(zip(sizes, weights, strict=True)):
        whole = int(weight)
        picks += [(corpus, i) for _ in range(whole) for i in range(size)]
        picks += [(corpus, i) for i in sorted(rng.sample(range(size), round((weight - whole) * size)))]
    return picks


def check_text(text: Any, name: str) -> str:
    """``text`` if it is a str that UTF-8 can hold, else a TypeError/ValueError that names it."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{name} is not valid Unicode: a lone surrogate at character {err.start}") from None
    return text


def check_texts(texts: Any, name: str = "texts", first: int = 0) -> list[str]:
    """``texts`` as a list of str that UTF-8 can hold; ``first`` numbers the items of a stream's later chunks."""
    if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}")
    return [check_text(text, f"{name}[{i}]") for i, text in enumerate(texts, start=first)]


def check_count(value: Any, name: str, most: int | None = None, why: str = "") -> None:
    """A whole number from 1 (to ``most``), or a TypeError/ValueError that says what is allowed."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if most is None and value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    if most is not None and not 1 <= value <= most:
        raise ValueError(f"{name} must be from 1 to {most}{why}, got {value}")

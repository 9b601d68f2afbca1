"""Glossaries: English terms whose Hindi a translation must contain, for lexically constrained decoding.

A glossary is a list of (English, Hindi) terms, read from a TSV file (``English<TAB>Hindi`` per line) or given
as pairs. ``Glossary.find`` matches its English terms in a source sentence: on whole words, ignoring case,
after ``normalize_english`` (the normalisation ``translate`` applies), the longest match first and no two
matches overlapping. The Translator turns each matched term's Hindi into target token ids, and beam search
produces them (``rnnmt.search``, Post and Vilar's dynamic beam allocation); this module only reads, checks and
matches text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnmt.data import normalize_english, normalize_hindi, read_lines
from rnnmt.errors import DataError
from rnnmt.vocabulary import UNK, Tokenizer


@dataclass(frozen=True)
class Term:
    """One glossary entry: an English term and the Hindi a translation must use for it."""

    source: str  # English, normalised as translate normalises its input
    target: str  # Hindi, NFC with single spaces (the model's own normalisation is applied when it is encoded)


@dataclass(frozen=True)
class Glossary:
    """Terms to force into translations: ``Glossary.of({"virus": "वायरस"})`` or ``Glossary.read("terms.tsv")``.

    Both check every entry: each side a non-empty str, an English term given twice only with the same Hindi.
    Their errors name the entry (``glossary[2]``) or the file and line (``terms.tsv:3``). Two glossaries with
    the same terms are equal.
    """

    terms: tuple[Term, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.terms, tuple) or not all(isinstance(term, Term) for term in self.terms):
            raise TypeError("Glossary() takes a tuple of Terms; make one with Glossary.of(pairs) or "
                            "Glossary.read(path)")

    @classmethod
    def of(cls, terms: Iterable[tuple[str, str]] | Mapping[str, str], name: str = "glossary") -> Glossary:
        """The glossary of (English, Hindi) pairs or of a dict; ``name`` names an entry in errors."""
        entries = terms.items() if isinstance(terms, Mapping) else terms
        if isinstance(entries, (str, bytes, bytearray)) or not isinstance(entries, Iterable):
            raise TypeError(f"{name} must be a list of (English, Hindi) pairs or a dict, got {type(terms).__name__}")
        return cls(collect((f"{name}[{i}]", entry) for i, entry in enumerate(entries)))

    @classmethod
    def read(cls, path: str | Path) -> Glossary:
        """The glossary in a UTF-8 file of ``English<TAB>Hindi`` lines; empty lines are skipped."""
        return cls(collect(file_entries(path)))

    def find(self, source: str) -> list[Term]:
        """The terms that occur in ``source``, each once, in the order they occur.

        Matches are whole words (no letter, digit or _ on either side), case-insensitive, after
        ``normalize_english``; where matches overlap, the longest wins (the leftmost among equals).
        """
        text = normalize_english(source).casefold()
        spans = [(match.start(), match.end(), term) for key, term in self.by_key.items() if key in text
                 for match in whole_words(key).finditer(text)]
        spans.sort(key=lambda span: (span[0] - span[1], span[0]))  # longest first, then leftmost
        taken: list[tuple[int, int, Term]] = []
        for start, end, term in spans:
            if all(end <= s or start >= e for s, e, _ in taken):
                taken.append((start, end, term))
        return list(dict.fromkeys(term for _, _, term in sorted(taken, key=lambda span: span[0])))

    @functools.cached_property
    def by_key(self) -> dict[str, Term]:
        """The terms by their casefolded English."""
        return {term.source.casefold(): term for term in self.terms}

    def __len__(self) -> int:
        return len(self.terms)

    def __iter__(self) -> Iterator[Term]:
        return iter(self.terms)


@functools.lru_cache(maxsize=4096)
def whole_words(key: str) -> re.Pattern:
    """The regular expression that finds ``key`` as whole words: no letter, digit or _ on either side."""
    return re.compile(rf"(?<!\w){re.escape(key)}(?!\w)")


def file_entries(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(file:line, (English, Hindi))`` for each non-empty line of a glossary file; a line without one tab is
    refused, naming it."""
    for number, line in enumerate(read_lines(path), start=1):
        line = line.removeprefix("\ufeff") if number == 1 else line
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            found = "no tab" if len(columns) == 1 else f"{len(columns) - 1} tabs"
            raise DataError(f"{path}:{number}: expected English<TAB>Hindi, found {found}")
        yield f"{path}:{number}", (columns[0], columns[1])


def collect(entries: Iterable[tuple[str, Any]]) -> tuple[Term, ...]:
    """The checked terms of ``(where, entry)`` items, a repeated entry once; ``where`` names an entry in errors."""
    terms: dict[str, tuple[str, Term]] = {}
    for where, entry in entries:
        term = make_term(entry, where)
        first = terms.setdefault(term.source.casefold(), (where, term))
        if first[1].target != term.target:
            raise DataError(f"{where}: {term.source!r} is already in the glossary ({first[0]}) with another Hindi,"
                            f" {first[1].target!r}")
    return tuple(term for _, term in terms.values())


def make_term(entry: Any, where: str) -> Term:
    """One checked term from an (English, Hindi) pair: both sides non-empty str that UTF-8 can hold."""
    if isinstance(entry, (str, bytes)) or not isinstance(entry, (tuple, list)) or len(entry) != 2:
        raise TypeError(f"{where}: expected an (English, Hindi) pair, got {type(entry).__name__}")
    for side, text in zip(("English", "Hindi"), entry, strict=True):
        if not isinstance(text, str):
            raise TypeError(f"{where}: the {side} side must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise DataError(f"{where}: the {side} side is not valid Unicode (a lone surrogate at character"
                            f" {err.start})") from None
        if not text.strip():
            raise DataError(f"{where}: the {side} side is empty")
    return Term(normalize_english(entry[0]), normalize_hindi(entry[1], indic=False))


@dataclass
class Forced:
    """What a glossary asks of one sentence's translation."""

    terms: list[Term] = field(default_factory=list)  # the glossary's terms found in the sentence, to be forced
    ids: list[list[int]] = field(default_factory=list)  # their Hindi as target ids, each distinct sequence once
    warnings: list[str] = field(default_factory=list)  # terms found but not forced, and why


def constraints_for(terms: list[Term], encode: Callable[[Term], list[int]], room: int) -> Forced:
    """The constraints of one sentence's ``terms``: each term's Hindi as target ids (``encode``), each distinct id
    sequence once. A term whose ids hold <unk> is left out; and all of them if their ids outnumber ``room``, the
    tokens the translation may have besides </s>. The warnings say which and why."""
    forced = Forced()
    for term in terms:
        ids = encode(term)
        if not ids or UNK in ids:
            forced.warnings.append(f"glossary term {term.source!r}: the model's Hindi vocabulary cannot write "
                                   f"{term.target!r} (it has <unk>); not forced")
            continue
        forced.terms.append(term)
        forced.ids += [ids] if ids not in forced.ids else []
    needed = sum(len(ids) for ids in forced.ids)
    if needed > room:
        forced.warnings.append(f"the glossary terms {', '.join(repr(t.source) for t in forced.terms)} need {needed} "
                               f"Hindi tokens, more than the {room} this translation may have (search.max_len_ratio,"
                               " search.max_len): translated without them")
        forced.terms, forced.ids = [], []
    return forced


@functools.lru_cache(maxsize=8)
def word_glue(tgt: Tokenizer) -> tuple[bool, ...]:
    """For each target piece, whether it goes on with the word before it, as a subword that starts with a letter,
    mark or digit does. None may follow a glossary term's last piece, so that the term ends a word."""
    def goes_on(piece: str) -> bool:
        joined = tgt.join(["a", piece])  # "a" then the piece, as the tokenizer writes them
        return len(joined) > 1 and unicodedata.category(joined[1])[0] in "LMN"

    return tuple(goes_on(tgt.piece(i)) for i in range(tgt.size))

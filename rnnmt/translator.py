"""The public face of rnnmt: load a model folder, then translate and score.

    >>> from rnnmt import Translator
    >>> Translator.load("models/default").translate(["How are you?"])
    ['आप कैसे हैं?']
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path
from typing import Any

import torch

from rnnmt.batching import collate, pad
from rnnmt.config import Config
from rnnmt.data import check_count, check_texts, normalize_english, normalize_hindi
from rnnmt.ensemble import Ensemble
from rnnmt.errors import ModelFolderError
from rnnmt.explain import explain
from rnnmt.glossary import Forced, Glossary, Term, constraints_for, word_glue
from rnnmt.model import Seq2Seq, build_model, quantize
from rnnmt.model_folder import ModelFolder, read_model_folder
from rnnmt.search import Hypothesis, beam_search, greedy_loop, greedy_search
from rnnmt.vocabulary import PAD, Tokenizer, encode_source, join_text, output_pieces, source_pieces, word_indices

log = logging.getLogger(__name__)


@dataclass
class Translation:
    """One translated sentence, with what the model saw and did to produce it."""

    source: str
    text: str
    log_prob: float  # log P(translation + </s> | source)
    src_pieces: list[str] = field(default_factory=list)  # English tokens, </s> last
    tgt_pieces: list[str] = field(default_factory=list)  # Hindi tokens, </s> last
    attention: list[list[float]] | None = None  # len(tgt_pieces) x len(src_pieces), rows sum to 1
    n_best: list[tuple[str, float]] = field(default_factory=list)  # (text, search score), best first
    alignment: str | None = None  # Pharaoh "i-j ...": English word i for Hindi word j (None without attention)
    terms: list[tuple[str, str]] = field(default_factory=list)  # glossary terms (English, Hindi) forced into text
    warnings: list[str] = field(default_factory=list)  # glossary terms found but not forced, and why

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def check_glossary(glossary: Any) -> None:
    """Refuse anything but a Glossary or None, saying how to make one."""
    if glossary is not None and not isinstance(glossary, Glossary):
        raise TypeError("glossary must be a Glossary (Glossary.of(pairs) or Glossary.read(path)), "
                        f"got {type(glossary).__name__}")


def word_alignment(attention: list[list[float]], src_words: list[int], tgt_words: list[int]) -> str:
    """Each Hindi word with the English word it attended to most, in Pharaoh's ``i-j`` pairs (i English, j Hindi).

    ``attention`` is output pieces x source pieces, </s> last on both sides (left out here); ``src_words`` and
    ``tgt_words`` give each piece's whitespace word. A word's weight on another sums over both words' pieces.
    """
    if not src_words or not tgt_words:
        return ""
    weights = torch.tensor(attention)[: len(tgt_words), : len(src_words)]  # tgt pieces x src pieces
    by_words = torch.zeros(max(tgt_words) + 1, max(src_words) + 1)  # tgt words x src words
    by_words.index_put_((torch.tensor(tgt_words)[:, None], torch.tensor(src_words)[None, :]), weights, accumulate=True)
    return " ".join(f"{i}-{j}" for j, i in enumerate(by_words.argmax(dim=1).tolist()))


def check_shared_vocabularies(folders: list[ModelFolder]) -> ModelFolder:
    """The first folder, once every other is known to share its vocabularies (an ensemble's models must)."""
    first = folders[0]
    for other in folders[1:]:
        if (other.src.to_bytes(), other.tgt.to_bytes()) != (first.src.to_bytes(), first.tgt.to_bytes()):
            raise ModelFolderError(f"{other.path}: its vocabularies differ from {first.path}'s; an ensemble's"
                                   " models must share them (train them with one --init-from or one vocab)")
    return first


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when asked for or available under ``auto``, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Translator:
    """A trained model with its tokenizers and search settings."""

    def __init__(self, model: Seq2Seq | Ensemble, config: Config, src: Tokenizer, tgt: Tokenizer,
                 metadata: dict[str, Any] | None = None, device: str | torch.device = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        if precision != "fp32" and self.device.type != "cpu":
            raise ValueError(f"precision {precision} runs on the CPU only, not on {self.device}")
        self.model = quantize(model.to(self.device).eval(), precision)
        self.greedy = greedy_loop(self.model.decoder)
        self.config, self.src, self.tgt = config, src, tgt
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | Path | list[str | Path], device: str = "auto", precision: str | None = None
             ) -> Translator:
        """Load a model folder written by ``rnnmt train``, or several as an ensemble (see ``rnnmt.ensemble``).

        ``precision`` defaults to the (first) model's ``search.precision``; an ensemble searches with its first
        model's settings, and its models must share their vocabularies.
        """
        paths = path if isinstance(path, list) else [path]
        if not paths:
            raise ValueError("Translator.load needs a model folder, or a list of at least one")
        folders = [read_model_folder(p) for p in paths]
        first = check_shared_vocabularies(folders)
        models = [build_model(f.config.model, f.src.size, f.tgt.size, f) for f in folders]
        model, metadata = models[0], first.metadata
        if len(models) > 1:
            model, metadata = Ensemble(models), {**metadata, "ensemble": [str(f.path) for f in folders]}
        return cls(model, first.config, first.src, first.tgt, metadata, pick_device(device),
                   precision or first.config.search.precision)

    def translate(self, texts: str | list[str], beam_size: int | None = None,
                  glossary: Glossary | None = None) -> str | list[str]:
        """Hindi for each English text (a str for a str); an empty text gives an empty translation."""
        if isinstance(texts, str):
            return self.translate_full([texts], beam_size, glossary=glossary)[0].text
        if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        return [t.text for t in self.translate_full(texts, beam_size, glossary=glossary)]

    def translate_stream(self, lines: Iterable[str], beam_size: int | None = None, chunk: int = 1024,
                         glossary: Glossary | None = None) -> Iterator[str]:
        """Translate an endless stream in chunks, yielding results in input order as each chunk is done."""
        if isinstance(lines, (str, bytes, bytearray)) or not isinstance(lines, Iterable):
            raise TypeError(f"lines must be an iterable of str, got {type(lines).__name__}")
        check_count(chunk, "chunk")
        self.search_settings(beam_size, None, glossary)  # checked now, not at the first result
        return self.stream_chunks(iter(lines), beam_size, chunk, glossary)

    def stream_chunks(self, lines: Iterator[str], beam_size: int | None, chunk: int,
                      glossary: Glossary | None = None) -> Iterator[str]:
        """The generator behind ``translate_stream``."""
        for start in count(0, chunk):
            block = check_texts(islice(lines, chunk), "lines", start)
            if not block:
                return
            yield from (t.text for t in self.translate_full(block, beam_size, glossary=glossary))

    def search_settings(self, beam_size: int | None, n_best: int | None, glossary: Any = None) -> tuple[int, int]:
        """(beam_size, n_best), each defaulting to the config's; refuses an n_best over the beam and a non-Glossary."""
        check_glossary(glossary)
        beam = self.config.search.beam_size if beam_size is None else beam_size
        check_count(beam, "beam_size", self.tgt.size, " (the size of the target vocabulary)")
        if n_best is None:  # the config's n_best follows a smaller beam asked for
            return beam, min(self.config.search.n_best, beam)
        check_count(n_best, "n_best")
        if n_best > beam:
            raise ValueError(f"n_best ({n_best}) cannot exceed beam_size ({beam})")
        return beam, n_best

    def translate_full(self, texts: list[str], beam_size: int | None = None, n_best: int | None = None,
                       glossary: Glossary | None = None) -> list[Translation]:
        """Translations with scores, tokens, attention and n-best lists, with a ``glossary``'s terms forced in."""
        beam_size, n_best = self.search_settings(beam_size, n_best, glossary)
        sources = [normalize_english(text) for text in check_texts(texts)]
        results: list[Translation | None] = [Translation(s, "", 0.0) if not s else None for s in sources]
        todo = sorted((i for i, s in enumerate(sources) if s), key=lambda i: len(sources[i]))
        forced = glossary_constraints(self, sources, todo, glossary)
        for chunk, constraints in batches(todo, forced, self.config.search.batch_size):
            found = self.search([sources[i] for i in chunk], beam_size, n_best, constraints)
            for i, hypotheses in zip(chunk, found, strict=True):
                results[i] = with_terms(self.package(sources[i], hypotheses), forced.get(i))
        return results

    def search(self, sources: list[str], beam_size: int, n_best: int,
               constraints: list[list[list[int]]] | None = None) -> list[list[Hypothesis]]:
        """Run greedy or beam search on one batch of normalised sentences, constrained beam search with constraints."""
        search = dataclasses.replace(self.config.search, beam_size=beam_size, n_best=n_best)
        ids = [encode_source(self.src, text, search.max_src_len) for text in sources]
        src, src_len = pad(ids).to(self.device), torch.tensor([len(i) for i in ids], device=self.device)
        if beam_size == 1 and constraints is None:
            return [[h] for h in greedy_search(self.model, src, src_len, search, self.greedy)]
        glue = None if constraints is None else torch.tensor(word_glue(self.tgt), device=self.device)
        return beam_search(self.model, src, src_len, search, self.greedy, constraints, glue)

    def package(self, source: str, hypotheses: list[Hypothesis]) -> Translation:
        """Turn the best hypotheses into text, copying a source word wherever the output is <unk>."""
        src_pieces = source_pieces(self.src, source, self.config.search.max_src_len)
        best = hypotheses[0]
        pieces = [self.output_pieces(h, src_pieces) for h in hypotheses]
        texts = [join_text(self.tgt, p) for p in pieces]
        columns = len(src_pieces)  # the batch pads sources to its longest; padding got zero weight
        attention = best.attention[:, :columns].float().cpu().tolist() if best.attention is not None else None
        alignment = None if attention is None else word_alignment(
            attention, word_indices(self.src, src_pieces[:-1]), word_indices(self.tgt, pieces[0]))
        return Translation(source, texts[0], best.log_prob, src_pieces,
                           [self.tgt.piece(i) for i in best.ids] + ["</s>"], attention,
                           [(text, h.score) for text, h in zip(texts, hypotheses, strict=True)], alignment)

    def output_pieces(self, hypothesis: Hypothesis, src_pieces: list[str]) -> list[str]:
        """The hypothesis's pieces, each <unk> copied from its most attended source word (``search.replace_unk``)."""
        copy = self.config.search.replace_unk and hypothesis.attention is not None
        looked_at = hypothesis.attention.argmax(-1).tolist() if copy else None
        return output_pieces(hypothesis.ids, src_pieces, self.src, self.tgt, looked_at)

    def detokenize(self, hypothesis: Hypothesis, src_pieces: list[str]) -> str:
        """The hypothesis's Hindi text, as ``translate`` gives it."""
        return join_text(self.tgt, self.output_pieces(hypothesis, src_pieces))

    @torch.no_grad()
    def score(self, sources: list[str], targets: list[str]) -> list[float]:
        """log P(target + </s> | source) under the model, for each pair."""
        sources, targets = check_texts(sources, "sources"), check_texts(targets, "targets")
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        s = self.config.search
        examples = [(encode_source(self.src, normalize_english(en), s.max_src_len),
                     self.tgt.encode(normalize_hindi(hi, self.config.data.normalize_hindi)))
                    for en, hi in zip(sources, targets, strict=True)]
        order = sorted(range(len(examples)), key=lambda i: (len(examples[i][1]), len(examples[i][0])))
        scores = [0.0] * len(examples)
        for start in range(0, len(order), s.batch_size):  # pairs of like length together: little padding
            chunk = order[start : start + s.batch_size]
            batch = collate([examples[i] for i in chunk]).to(self.device)
            logits = self.model(batch.src, batch.src_len, batch.tgt_in)
            log_probs = torch.log_softmax(logits.float(), dim=-1).gather(2, batch.tgt_out[..., None])[..., 0]
            totals = log_probs.masked_fill(batch.tgt_out == PAD, 0.0).sum(1).tolist()
            for i, total in zip(chunk, totals, strict=True):
                scores[i] = total
        return scores

    def explain(self, text: str, top_k: int = 5) -> dict[str, Any]:
        """The seed's table walked through for ``text`` with the model's real numbers (see ``rnnmt.explain``)."""
        if isinstance(self.model, Ensemble):
            raise ValueError("explain walks one model through the seed's table; load one model folder, not several")
        return explain(self, text, top_k)


def glossary_constraints(translator: Translator, sources: list[str], todo: list[int], glossary: Glossary | None
                         ) -> dict[int, Forced]:
    """What the glossary asks of each sentence of ``todo`` that holds one of its terms (nothing without one): its
    terms' Hindi as target ids in the model's normalisation, within the room its length limit leaves."""
    if glossary is None:
        return {}
    search, indic = translator.config.search, translator.config.data.normalize_hindi

    @functools.cache  # a term is encoded once, however many sentences hold it
    def encode(term: Term) -> list[int]:
        return translator.tgt.encode(normalize_hindi(term.target, indic))

    forced = {}
    for i in todo:
        if terms := glossary.find(sources[i]):
            room = search.output_limit(len(encode_source(translator.src, sources[i], search.max_src_len))) - 1
            forced[i] = constraints_for(terms, encode, room)
            for warning in forced[i].warnings:
                log.warning("%s: %s", sources[i] if len(sources[i]) <= 60 else sources[i][:57] + "...", warning)
    return forced


def batches(todo: list[int], forced: dict[int, Forced], size: int
            ) -> Iterator[tuple[list[int], list[list[list[int]]] | None]]:
    """The sentences ``todo`` in batches of ``size``, each with its constraints (None for none): first those with
    nothing to force, searched exactly as without a glossary, then the others."""
    bound = [i for i in todo if i in forced and forced[i].ids]
    free = [i for i in todo if not (i in forced and forced[i].ids)]
    for start in range(0, len(free), size):
        yield free[start : start + size], None
    for start in range(0, len(bound), size):
        yield bound[start : start + size], [forced[i].ids for i in bound[start : start + size]]


def with_terms(translation: Translation, forced: Forced | None) -> Translation:
    """``translation`` with the glossary terms forced into it, and the warnings about those that were not."""
    if forced is not None:
        translation.terms, translation.warnings = [(t.source, t.target) for t in forced.terms], list(forced.warnings)
    return translation

"""Corpus-level evaluation with sacreBLEU: BLEU and chrF++, each with its signature."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class Scores:
    """BLEU and chrF++ of a set of hypotheses, with the signatures that make them reproducible."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    sentences: int

    def line(self) -> str:
        return f"BLEU {self.bleu:.2f}  chrF++ {self.chrf:.2f}  ({self.sentences} sentences)"

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_scores(hypotheses: list[str], references: list[str] | list[list[str]]) -> Scores:
    """sacreBLEU BLEU and chrF++ (chrF with word bigrams) against one or more reference streams."""
    streams = references if references and isinstance(references[0], list) else [references]
    if any(len(stream) != len(hypotheses) for stream in streams):
        raise ValueError(f"{len(hypotheses)} hypotheses but references of {[len(s) for s in streams]} lines")
    bleu, chrf = BLEU(), CHRF(word_order=2)
    return Scores(bleu.corpus_score(hypotheses, streams).score, chrf.corpus_score(hypotheses, streams).score,
                  str(bleu.get_signature()), str(chrf.get_signature()), len(hypotheses))

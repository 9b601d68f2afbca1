"""A glossary on TICO-19: term accuracy and chrF++ of beam search without and with lexical constraints.

    nice -n 10 python benchmarks/glossary.py -m MODEL [--data ../shared/data/tico19-dev] [--sentences 300]
        [--beam-size 5] [--threads 1]

Reads the first N sentences of dev.en/dev.hi and the COVID-19 term lists terminology.en/terminology.hi (aligned
lines; where an English term is listed with several Hindi, the first is kept). Translates the sentences with beam
search, then again with the terms as a glossary (``Translator.translate_full(..., glossary=...)``: dynamic beam
allocation, ``rnnmt.search.constrained_beam_search``), and prints for each run the term accuracy (the share of
the glossary terms found in the sources whose Hindi appears in the output), sacreBLEU chrF++ and BLEU
(``rnnmt.metrics.corpus_scores``) and the time taken. The references' own term accuracy is printed beside them:
how often the human translation uses the glossary's Hindi.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import torch

from rnnmt.data import normalize_hindi, read_lines
from rnnmt.glossary import Glossary, Term
from rnnmt.metrics import corpus_scores
from rnnmt.translator import Translator

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tico19-dev"


def term_list(folder: Path) -> tuple[Glossary, int]:
    """The glossary of terminology.en/.hi, each English term with its first Hindi; and how many entries were left out
    (an English term listed again with another Hindi)."""
    chosen: dict[str, tuple[str, str]] = {}
    english, hindi = read_lines(folder / "terminology.en"), read_lines(folder / "terminology.hi")
    for en, hi in zip(english, hindi, strict=True):
        chosen.setdefault(" ".join(en.split()).casefold(), (en, hi))
    return Glossary.of(list(chosen.values()), name=str(folder / "terminology")), len(english) - len(chosen)


def term_accuracy(found: list[list[Term]], outputs: list[str]) -> tuple[int, int]:
    """How many of the terms found in each source have their Hindi in that source's output, and how many were found."""
    hits = sum(normalize_hindi(term.target) in normalize_hindi(output)
               for terms, output in zip(found, outputs, strict=True) for term in terms)
    return hits, sum(map(len, found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", required=True, help="a model folder written by rnnmt train (only read)")
    parser.add_argument("--data", type=Path, default=DATA, help="a folder with dev.en, dev.hi, terminology.en/.hi")
    parser.add_argument("--sentences", type=int, default=300, help="the first N sentences of dev.en (default 300)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("rnnmt.translator").setLevel(logging.ERROR)  # the warnings are counted below instead
    sources = read_lines(args.data / "dev.en")[: args.sentences]
    references = [normalize_hindi(line, indic=False) for line in read_lines(args.data / "dev.hi")[: args.sentences]]
    glossary, left_out = term_list(args.data)
    found = [glossary.find(source) for source in sources]
    translator = Translator.load(args.model, "cpu")
    print(f"machine: {machine(args.threads)}")
    print(f"model: {args.model}; data: {args.data}, the first {len(sources)} sentences; beam {args.beam_size}")
    print(f"glossary: {len(glossary)} terms ({left_out} entries left out: an English term again with another Hindi);"
          f" {sum(map(len, found))} found in {sum(map(bool, found))} sentences\n")
    print("| run | term accuracy | chrF++ | BLEU | seconds | terms not forced |")
    print("|---|---:|---:|---:|---:|---:|")
    hits, total = term_accuracy(found, references)
    print(f"| the references | {hits / total:.1%} ({hits}/{total}) | | | | |")
    for name, terms in (("beam search", None), ("beam search + glossary", glossary)):
        start = time.perf_counter()
        results = translator.translate_full(sources, args.beam_size, glossary=terms)
        seconds = time.perf_counter() - start
        outputs = [r.text for r in results]
        hits, total = term_accuracy(found, outputs)
        scores = corpus_scores(outputs, references)
        unforced = sum(len(terms) for terms in found) - sum(len(r.terms) for r in results) if terms else "-"
        print(f"| {name} | {hits / total:.1%} ({hits}/{total}) | {scores.chrf:.2f} | {scores.bleu:.2f} | "
              f"{seconds:.1f} | {unforced} |", flush=True)
    print(f"\nchrF++ {scores.chrf_signature}\nBLEU {scores.bleu_signature}")
    print(f"command: nice -n 10 python benchmarks/glossary.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()

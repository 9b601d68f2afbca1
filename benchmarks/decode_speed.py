"""Decoding speed: greedy search and beam 5, one sentence at a time and 64 at once, on a dev set.

    python benchmarks/decode_speed.py -m MODEL [--src dev.en] [--sentences 300] [--threads 2]

Each setting translates the same sentences through ``Translator.translate_full``; printed are sentences
and target tokens per second, and each setting's speed against greedy search at batch 1, measured in the
same run. Without --src it reads the bundled dev set.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from rnnmt.config import CorpusConfig
from rnnmt.data import read_corpus, read_lines
from rnnmt.translator import Translator

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

SETTINGS = (("greedy", 1, 1), ("greedy", 1, 64), ("beam 5", 5, 1), ("beam 5", 5, 64))


def timed(translator: Translator, sentences: list[str], beam: int, batch: int) -> tuple[float, float]:
    """Sentences per second and target tokens (</s> included) per second."""
    translator.config.search.batch_size = batch
    translator.translate_full(sentences[:batch], beam)  # warm-up
    start = time.perf_counter()
    results = translator.translate_full(sentences, beam)
    seconds = time.perf_counter() - start
    return len(sentences) / seconds, sum(len(r.tgt_pieces) for r in results) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", required=True, help="a model folder written by rnnmt train")
    parser.add_argument("--src", help="English sentences, one per line (default: the bundled dev set)")
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = read_lines(args.src) if args.src else [en for en, _ in read_corpus(CorpusConfig(bundled="dev"))]
    sentences = sentences[: args.sentences]
    translator = Translator.load(args.model, "cpu")
    m = translator.config.model
    print(f"machine: {machine(args.threads)}")
    print(f"model: {args.model} ({m.cell}, hidden {m.hidden_size}, attention {m.attention}); "
          f"{len(sentences)} sentences from {args.src or 'the bundled dev set'}\n")
    print("| search | batch | sentences/s | target tokens/s | vs greedy at batch 1 |")
    print("|---|---:|---:|---:|---:|")
    baseline = None
    for name, beam, batch in SETTINGS:
        per_second, tokens = timed(translator, sentences, beam, batch)
        baseline = baseline or per_second
        print(f"| {name} | {batch} | {per_second:,.1f} | {tokens:,.0f} | {per_second / baseline:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

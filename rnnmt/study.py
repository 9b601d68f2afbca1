"""Studies that measure the model, starting with the seed's own critique: the bottleneck.

"Points to ponder", point 1: only the last encoder state reaches the decoder, so a long input is squeezed
into one vector and accuracy drops. ``bottleneck`` trains the seed's model (no attention) and the same
model with attention on the same data, budget and seed, then scores both by source length.
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from rnnmt.config import Config, CorpusConfig
from rnnmt.data import load_pairs
from rnnmt.metrics import corpus_scores
from rnnmt.model_folder import write_bytes, write_json
from rnnmt.plotting import plot_attention, plot_scores_by_length
from rnnmt.training import train
from rnnmt.translator import Translator

log = logging.getLogger(__name__)

BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10**9))


def bucket_name(low: int, high: int) -> str:
    return f">{low - 1}" if high >= 10**9 else f"{low}-{high}"


def bucket_of(sentence: str) -> str:
    """The length bucket of an English sentence, counted in whitespace words."""
    words = len(sentence.split())
    return next(bucket_name(lo, hi) for lo, hi in BUCKETS if lo <= words <= hi)


@dataclass
class BucketScore:
    bucket: str
    sentences: int
    bleu: float | None
    chrf: float | None


def scores_by_length(sources: list[str], hypotheses: list[str], references: list[str]) -> list[BucketScore]:
    """BLEU and chrF++ of the sentences in each source-length bucket (None where a bucket is empty)."""
    rows = []
    for lo, hi in BUCKETS:
        name = bucket_name(lo, hi)
        picked = [i for i, s in enumerate(sources) if bucket_of(s) == name]
        if not picked:
            rows.append(BucketScore(name, 0, None, None))
            continue
        scores = corpus_scores([hypotheses[i] for i in picked], [references[i] for i in picked])
        rows.append(BucketScore(name, len(picked), round(scores.bleu, 2), round(scores.chrf, 2)))
    return rows


def variant(base: Config, attention: str, name: str, budget_minutes: float) -> Config:
    """The base config with one attention setting and the shared budget."""
    config = copy.deepcopy(base)
    config.name = name
    config.model.attention = attention
    config.model.input_feeding = False
    config.train.max_minutes = budget_minutes
    config.search.beam_size = 1
    return config


def hold_out(base: Config, out: Path, count: int, seed: int) -> Config:
    """The base config training on all but ``count`` random pairs of its data, evaluated on those pairs."""
    pairs = load_pairs(base.data.train, base.data)
    random.Random(seed).shuffle(pairs)
    for name, part in (("heldout", pairs[:count]), ("train", pairs[count:])):
        write_bytes(out / f"{name}.tsv", "".join(f"{en}\t{hi}\n" for en, hi in part).encode("utf-8"))
    config = copy.deepcopy(base)
    config.data.train = [CorpusConfig(tsv=str(out / "train.tsv"))]
    config.data.dev = CorpusConfig(tsv=str(out / "heldout.tsv"))
    return config


def bottleneck(base: Config, out: Path, budget_minutes: float, attention: str = "luong_general",
               eval_set: CorpusConfig | None = None, heatmaps: int = 3, holdout: int = 0) -> dict:
    """Train both models, score them by source length, and write the table, the plot and heatmaps.

    The models are scored on ``eval_set``, else on ``holdout`` pairs held out of the training data, else on
    the config's dev set.
    """
    if holdout and not eval_set:
        base = hold_out(base, out, holdout, base.train.seed)
    eval_set = eval_set or base.data.dev
    pairs = load_pairs([eval_set], base.data, filter_lengths=False)
    sources, references = [en for en, _ in pairs], [hi for _, hi in pairs]
    results = {"eval_set": eval_set.describe(), "budget_minutes": budget_minutes, "models": {}}
    for label, kind in (("no attention (seed)", "none"), (f"attention ({attention})", attention)):
        folder = out / ("no-attention" if kind == "none" else "attention")
        log.info("bottleneck study: training %s for %.1f minutes into %s", label, budget_minutes, folder)
        metadata = train(variant(base, kind, folder.name, budget_minutes), folder, overwrite=True)
        translator = Translator.load(folder)
        hypotheses = translator.translate(sources, beam_size=1)
        overall = corpus_scores(hypotheses, references)
        results["models"][label] = {
            "folder": str(folder), "steps": metadata["steps"], "parameters": metadata["parameters"],
            "bleu": round(overall.bleu, 2), "chrf": round(overall.chrf, 2),
            "buckets": [vars(b) for b in scores_by_length(sources, hypotheses, references)]}
        if kind != "none":
            draw_heatmaps(translator, sources, out, heatmaps)
    write_report(results, out)
    return results


def draw_heatmaps(translator: Translator, sources: list[str], out: Path, count: int) -> None:
    """Attention heatmaps for the first ``count`` dev sentences of 6 to 15 words."""
    picked = [s for s in sources if 6 <= len(s.split()) <= 15][:count]
    for i, result in enumerate(translator.translate_full(picked, beam_size=1), start=1):
        plot_attention(result.src_pieces, result.tgt_pieces, result.attention, out / f"attention-{i}.png",
                       title=f"{result.source}\n{result.text}")


def write_report(results: dict, out: Path) -> None:
    """bottleneck.json, bottleneck.md and bottleneck.png (chrF++ and BLEU by source length)."""
    write_json(out / "bottleneck.json", results)
    write_bytes(out / "bottleneck.md", markdown_table(results).encode("utf-8"))
    models = results["models"]
    buckets = [b["bucket"] for b in next(iter(models.values()))["buckets"]]
    for metric in ("chrf", "bleu"):
        series = {label: [b[metric] for b in m["buckets"]] for label, m in models.items()}
        plot_scores_by_length(buckets, series, {"chrf": "chrF++", "bleu": "BLEU"}[metric],
                              out / f"bottleneck-{metric}.png")


def markdown_table(results: dict) -> str:
    """The per-bucket scores of both models as a Markdown table."""
    models = results["models"]
    first = next(iter(models.values()))["buckets"]
    header = "| source words | sentences | " + " | ".join(f"{m} BLEU | {m} chrF++" for m in models) + " |"
    lines = [f"Evaluated on {results['eval_set']}, {results['budget_minutes']} training minutes each.", "",
             header, "|" + "---|" * (2 + 2 * len(models))]
    for i, bucket in enumerate(first):
        cells = [f"{m['buckets'][i]['bleu']} | {m['buckets'][i]['chrf']}" for m in models.values()]
        lines.append(f"| {bucket['bucket']} | {bucket['sentences']} | " + " | ".join(cells) + " |")
    overall = " | ".join(f"{m['bleu']} | {m['chrf']}" for m in models.values())
    lines.append(f"| all | {sum(b['sentences'] for b in first)} | {overall} |")
    return "\n".join(lines) + "\n"


def copy_task(count: int, min_len: int, max_len: int, seed: int, symbols: int = 12) -> list[tuple[str, str]]:
    """Random symbol sequences paired with themselves reversed: a synthetic test of the bottleneck."""
    rng = random.Random(seed)
    alphabet = [f"s{i}" for i in range(symbols)]
    pairs = []
    for _ in range(count):
        words = [rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((" ".join(words), " ".join(reversed(words))))
    return pairs

"""Studies that measure the model: the seed's own critique (the bottleneck), and the recipe for real data.

"Points to ponder", point 1: only the last encoder state reaches the decoder, so a long input is squeezed
into one vector and accuracy drops. ``bottleneck`` trains the seed's model (no attention) and the same
model with attention on the same data, budget and seed, then scores both by source length.

``recipe`` is an ablation: the same config trained with one change at a time (a lever, a corpus, a weight),
on the same data, seed and time budget, each row scored on every dev set with greedy search and beam 5.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnmt.config import Config, ConfigError, CorpusConfig, build, config_from_dict, set_dotted
from rnnmt.data import load_pairs, normalize_hindi, read_corpus
from rnnmt.metrics import corpus_scores
from rnnmt.model_folder import write_bytes, write_json
from rnnmt.plotting import plot_attention, plot_curves, plot_scores_by_length
from rnnmt.training import read_history, train
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
    config.data.dev = [CorpusConfig(tsv=str(out / "heldout.tsv"))]
    return config


def bottleneck(base: Config, out: Path, budget_minutes: float, attention: str = "luong_general",
               eval_set: CorpusConfig | None = None, heatmaps: int = 3, holdout: int = 0) -> dict:
    """Train both models, score them by source length, and write the table, the plot and heatmaps.

    The models are scored on ``eval_set``, else on ``holdout`` pairs held out of the training data, else on
    the config's first dev set.
    """
    if holdout and not eval_set:
        base = hold_out(base, out, holdout, base.train.seed)
    eval_set = eval_set or base.data.dev[0]
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


STUDIES = Path(__file__).parent / "studies"


@dataclass
class Budget:
    """What every row of a study trains for: minutes (the same wall clock) or steps (immune to a busy machine)."""

    minutes: float = 0.0
    steps: int = 0

    def __post_init__(self) -> None:
        if (self.minutes > 0) == (self.steps > 0):
            raise ConfigError(f"give a study a budget of minutes or of steps, one of them (got {self})")

    def describe(self) -> str:
        return f"{self.minutes:g} minutes" if self.minutes else f"{self.steps:,} steps"


@dataclass
class Row:
    """One row of the recipe study: the base config with some fields set, corpora added or reweighted."""

    name: str
    what: str = ""
    set: dict[str, Any] = field(default_factory=dict)  # {"vocab.src_size": 4000, ...}, as --section.key overrides
    add: list[dict[str, Any]] = field(default_factory=list)  # training corpora appended, as in data.train
    weights: dict[str, float] = field(default_factory=dict)  # {corpus label: weight} for corpora already there

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    def apply(self, base: Config, budget: Budget) -> Config:
        """The row's config: the base changed as the row says, trained for the study's budget."""
        raw = copy.deepcopy(base.to_dict())
        raw["name"] = f"recipe-{self.slug}"
        raw["data"]["train"] += self.add
        labels = [CorpusConfig(**corpus).label() for corpus in raw["data"]["train"]]
        for label, weight in self.weights.items():
            if label not in labels:
                raise ConfigError(f"row {self.name!r}: no training corpus is called {label!r}; there are {labels}")
            raw["data"]["train"][labels.index(label)]["weight"] = weight
        for key, value in self.set.items():
            set_dotted(raw, key, value)
        raw["train"]["max_minutes"], raw["train"]["max_steps"] = budget.minutes, budget.steps
        return config_from_dict(raw, where=f"recipe row {self.name!r}")


def load_rows(source: str | Path) -> list[Row]:
    """The rows of a YAML file, or of a bundled one by name (``data``, ``levers``).

    The file holds ``rows:``, a list of rows, and optionally ``set:``, fields set in every row before its own.
    """
    path = Path(source) if Path(source).is_file() else STUDIES / f"{source}.yaml"
    if not path.is_file():
        raise ConfigError(f"rows {source!s}: neither a file nor a bundled rows file "
                          f"({', '.join(sorted(p.stem for p in STUDIES.glob('*.yaml')))})")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list) or set(raw) - {"rows", "set"}:
        raise ConfigError(f"{path}: expected `rows:` (a list of rows, each with a name) and optionally `set:`")
    rows = [build(Row, item, str(path), f"rows[{i}].") for i, item in enumerate(raw["rows"])]
    for row in rows:
        row.set = {**(raw.get("set") or {}), **row.set}
    if len({row.slug for row in rows}) < len(rows):
        raise ConfigError(f"{path}: two rows have the same name")
    return rows


def recipe(base: Config, rows: list[Row], out: Path, budget: Budget, beam_size: int = 5,
           only: list[str] | None = None) -> list[dict]:
    """Train and score each row not already done (of ``only``, slugs, if given), rewriting the table after each.

    A row whose results exist is skipped, and a row killed in training resumes from its checkpoint, so the
    study can be stopped at any moment and started again, or run as several processes on disjoint rows.
    Returns the results of every row done so far, in the rows' order.
    """
    unknown = set(only or []) - {row.slug for row in rows}
    if unknown:
        raise ConfigError(f"no row has the slug {', '.join(sorted(unknown))}; rows: {', '.join(r.slug for r in rows)}")
    for row in rows if only is None else [r for r in rows if r.slug in only]:
        result_file = out / "rows" / f"{row.slug}.json"
        if result_file.exists():
            continue
        config = row.apply(base, budget)
        folder = out / row.slug
        log.info("recipe study: row %r, %s into %s", row.name, budget.describe(), folder)
        metadata = train(config, folder, resume=True)
        write_json(result_file, score_row(row, config, folder, metadata, beam_size))
        write_recipe_report(out, [r.slug for r in rows])
    return write_recipe_report(out, [r.slug for r in rows])


def score_row(row: Row, config: Config, folder: Path, metadata: dict, beam_size: int) -> dict:
    """The row's best weights scored on every whole dev set, greedy and with the beam."""
    translator = Translator.load(folder)
    scores = {}
    for corpus in config.data.dev:
        pairs = read_corpus(corpus)
        references = [normalize_hindi(hi, indic=False) for _, hi in pairs]  # as `rnnmt evaluate` reads them
        scores[corpus.label()] = {}
        for search, beam in (("greedy", 1), (f"beam{beam_size}", beam_size)):
            result = corpus_scores(translator.translate([en for en, _ in pairs], beam), references)
            scores[corpus.label()][search] = {"bleu": round(result.bleu, 2), "chrf": round(result.chrf, 2)}
    curve = {h["step"]: round(h["dev_chrf"], 2) for h in read_history(folder) if "dev_chrf" in h}
    return {"name": row.name, "what": row.what, "steps": metadata["steps"], "pairs": metadata["training_pairs"],
            "minutes": round(metadata["training_seconds"] / 60, 1), "parameters": metadata["parameters"],
            "beam": f"beam{beam_size}", "scores": scores, "curve": curve}


def write_recipe_report(out: Path, order: list[str]) -> list[dict]:
    """recipe.md (the table), recipe.json and recipe.png (mean dev chrF++ against step) from the rows done."""
    results = [json.loads(p.read_text(encoding="utf-8")) for slug in order
               if (p := out / "rows" / f"{slug}.json").exists()]
    if results:
        write_json(out / "recipe.json", {"rows": results})
        write_bytes(out / "recipe.md", recipe_table(results).encode("utf-8"))
        plot_curves({r["name"]: r["curve"] for r in results}, "mean dev chrF++ (greedy, validation sentences)",
                    out / "recipe.png")
    return results


def recipe_table(results: list[dict]) -> str:
    """One line per row: steps, mean chrF++ at a step every row reached, and each dev set's scores."""
    beam = results[0]["beam"]
    sets = list(results[0]["scores"])
    common = max((s for s in map(int, results[0]["curve"]) if all(str(s) in r["curve"] for r in results)),
                 default=None)
    header = ["row", "steps", f"chrF++ @{common}" if common else "chrF++ @step", f"mean chrF++ {beam}"]
    header += [f"{name} chrF++ greedy / {beam}" for name in sets] + [f"{name} BLEU {beam}" for name in sets]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for r in results:
        mean = sum(r["scores"][name][beam]["chrf"] for name in sets) / len(sets)
        cells = [r["name"], f"{r['steps']:,}", str(r["curve"].get(str(common), "")) if common else "", f"{mean:.2f}"]
        cells += [f"{r['scores'][n]['greedy']['chrf']:.2f} / {r['scores'][n][beam]['chrf']:.2f}" for n in sets]
        cells += [f"{r['scores'][n][beam]['bleu']:.2f}" for n in sets]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- **{r['name']}**: {r['what']} ({r['pairs']:,} pairs, {r['minutes']} min)" for r in results]
    return "\n".join(lines + [""] + notes) + "\n"

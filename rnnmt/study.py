"""Studies that measure the model: the seed's own critique (the bottleneck), and the recipe for real data.

"Points to ponder", point 1: only the last encoder state reaches the decoder, so a long input is squeezed
into one vector and accuracy drops. ``bottleneck`` trains the seed's model (no attention) and the same
model with attention on the same data, budget and seed, then scores both by source length.

``recipe`` is an ablation: the same config trained with one change at a time (a lever, a corpus, a weight),
on the same data, seed and time budget, each row scored on every dev set with greedy search and beam 5.

``gradients`` measures the vanishing gradient: how much of the loss's gradient reaches the encoder state h_t
at each distance d = T - t from the end of the source, for the ``rnn``, ``gru`` and ``lstm`` cells. Without
attention L reaches the encoder only through s_0 = h_T, and backpropagation through time gives

    dL/dh_t = (dh_{t+1}/dh_t)^T dL/dh_{t+1},    for the seed's cell  dh_{t+1}/dh_t = diag(1 - h_{t+1}^2) W

so dL/dh_{T-d} is dL/dh_T through d such factors, each shrinking it wherever tanh saturates or W is small.
The GRU adds diag(z_{t+1}) to each factor (``h_t = (1 - z_t) * n_t + z_t * h_{t-1}``): a path its gate can
hold open. The LSTM's c_t carries f_t in the same way.
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

import torch
import yaml
from torch import Tensor
from tqdm import tqdm

from rnnmt.batching import Batch, Example, collate, encode_pairs
from rnnmt.cells import CELLS, State
from rnnmt.config import Config, ConfigError, CorpusConfig, ModelConfig, build, config_from_dict, set_dotted
from rnnmt.data import load_pairs, normalize_hindi, read_corpus
from rnnmt.decoders import DecoderState, Memory
from rnnmt.metrics import corpus_scores
from rnnmt.model import Seq2Seq, build_model, sequence_loss
from rnnmt.model_folder import ModelFolder, read_model_folder, write_bytes, write_json
from rnnmt.plotting import plot_attention, plot_curves, plot_gradient_norms, plot_scores_by_length
from rnnmt.training import read_history, train
from rnnmt.translator import Translator
from rnnmt.vocabulary import PAD

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


# The vanishing gradient, measured ------------------------------------------------------------------------------

GRADIENT_LOSSES = ("sentence", "last")
SHOWN_DISTANCES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)


def check_gradient_model(config: ModelConfig, where: str) -> None:
    """The study's model: one encoder layer, one direction, no attention; name the first setting that differs.

    Without attention the decoder reads only s_0 = h_T, so whatever reaches h_t for t < T came back through
    the recurrence: the path along which gradients vanish. Attention would give every h_t a direct path.
    """
    wanted = {"encoder_layers": 1, "bidirectional": False, "attention": "none"}
    for name, value in wanted.items():
        if getattr(config, name) != value:
            raise ConfigError(f"{where}: model.{name} is {getattr(config, name)!r}; the gradients study needs"
                              f" {', '.join(f'{k}: {v}' for k, v in wanted.items())}")


def gradient_variant(base: Config, cell: str, budget: Budget) -> Config:
    """The base config with ``cell``, the study's encoder (one layer, one direction), no attention, and the budget."""
    config = copy.deepcopy(base)
    config.name = f"gradients-{cell}"
    config.model.cell, config.model.attention, config.model.input_feeding = cell, "none", False
    config.model.encoder_layers, config.model.bidirectional = 1, False
    config.train.max_minutes, config.train.max_steps = budget.minutes, budget.steps
    return config


def stepwise_encode(model: Seq2Seq, src: Tensor) -> tuple[list[Tensor], State]:
    """h_1 .. h_T (each batch x hidden), one position at a time, and the final state as ``Encoder`` gives it.

    Each step runs the encoder's own recurrence (the seed's ``h_t = tanh(W h_{t-1} + U x_t + b)``, or torch's
    GRU or LSTM kernel) on one position, from the h_{t-1} the step before gave. So the states are the model's,
    and each h_t is a tensor of its own that the next step reads: autograd can give dL/dh_t.
    src: batch x T, no padding (every source of the batch has length T).
    """
    encoder = model.encoder
    x = encoder.embed(src)  # batch x T x emb
    state = encoder.initial_state(src.size(0))  # 1 x batch x hidden (a pair for the LSTM), or None for zeros
    hs = []
    for t in range(src.size(1)):
        _, state = encoder.rnn(x[:, t : t + 1], state)
        h = state[0][0] if isinstance(state, tuple) else state[0]  # batch x hidden
        hs.append(h)
        state = (h[None], state[1]) if isinstance(state, tuple) else h[None]  # the next step reads this h
    return hs, state


def last_token_only(tgt_out: Tensor) -> Tensor:
    """tgt_out with every token but each row's last (its </s>) replaced by <pad>, so the loss skips them."""
    rows = torch.arange(tgt_out.size(0))
    last = (tgt_out != PAD).sum(dim=1) - 1  # batch
    only = torch.full_like(tgt_out, PAD)
    only[rows, last] = tgt_out[rows, last]
    return only


def state_gradients(model: Seq2Seq, batch: Batch, loss: str = "sentence") -> tuple[Tensor, Tensor]:
    """The loss L of a batch of same-length sources, and dL/dh_t for t = 1..T: batch x T x hidden.

    ``sentence``: ``L = -sum_j log p(y_j | y_<j, s_0)`` over the whole teacher-forced target y_1 .. y_n </s>
    (training's loss, without label smoothing). Without attention all of it enters the encoder at the end of
    the sentence, through s_0 = h_T, and it is what training descends, so dL/dh_t is the signal that reaches
    position t. ``last``: the </s> term alone, the loss of the sentence's last output token. Each sentence's L
    depends on its own h_t only, so the gradient of the batch's sum holds every sentence's own dL/dh_t.
    For the LSTM, h_t is its output state; dL/dc_t, on its cell state, is not reported.
    """
    hs, final = stepwise_encode(model, batch.src)
    states = torch.stack(hs, dim=1)  # batch x T x hidden: only for Memory's shape; no attention reads it
    memory = Memory(states, states, torch.ones(batch.src.shape, dtype=torch.bool))
    logits, _, _ = model.decoder(batch.tgt_in, DecoderState(model.hand_over(final)), memory)
    target = batch.tgt_out if loss == "sentence" else last_token_only(batch.tgt_out)
    total = sequence_loss(logits, target)
    return total.detach(), torch.stack(torch.autograd.grad(total, hs), dim=1)


def gradient_norms(model: Seq2Seq, examples: list[Example], loss: str = "sentence",
                   batch_size: int = 64) -> list[list[float]]:
    """``||dL/dh_{T-d}||`` for d = 0 .. T-1 of each example (distance 0 first), in the examples' order.

    Sources of the same length go through the model together, so no batch has padding.
    """
    model.eval()
    by_length: dict[int, list[int]] = {}
    for i, (src, _) in enumerate(examples):
        by_length.setdefault(len(src), []).append(i)
    norms: list[list[float]] = [[] for _ in examples]
    groups = [indices[i : i + batch_size] for indices in by_length.values() for i in range(0, len(indices), batch_size)]
    for group in tqdm(groups, desc="dL/dh_t", unit=" batches", leave=False):
        _, grads = state_gradients(model, collate([examples[i] for i in group]), loss)
        for i, row in zip(group, grads.norm(dim=-1).flip(1).tolist(), strict=True):  # batch x T, distance 0 first
            norms[i] = row
    return norms


def by_distance(norms: list[list[float]], min_sentences: int) -> list[dict[str, Any]]:
    """Per distance d: the sentences long enough, the mean of ``||dL/dh_{T-d}||``, and the mean of its ratio to d = 0.

    Distances stop where fewer than ``min_sentences`` sentences reach.
    """
    rows = []
    for d in range(max(map(len, norms), default=0)):
        reaching = [n for n in norms if len(n) > d and n[0] > 0]
        if len(reaching) < min_sentences:
            break
        rows.append({"distance": d, "sentences": len(reaching),
                     "mean_norm": sum(n[d] for n in reaching) / len(reaching),
                     "relative": sum(n[d] / n[0] for n in reaching) / len(reaching)})
    return rows


def load_model(path: str | Path) -> tuple[Seq2Seq, ModelFolder]:
    """A model folder's model on the CPU in float64 and eval mode, refused unless the study can measure it.

    float64, because a saturated tanh RNN's gradient falls below what float32 holds within 20 steps: there
    ``1 - h_t^2`` rounds to 0 and dL/dh_t would read exactly 0 where its true size is, say, 1e-25.
    """
    folder = read_model_folder(path)
    check_gradient_model(folder.config.model, str(folder.path))
    model = build_model(folder.config.model, folder.src.size, folder.tgt.size, folder)
    return model.double().eval(), folder


def measure_model(path: Path, pairs: list[tuple[str, str]], loss: str, min_sentences: int) -> dict[str, Any]:
    """The table rows of one model folder, on ``pairs`` segmented by the folder's own tokenizers."""
    model, folder = load_model(path)
    search = folder.config.search
    examples = encode_pairs(pairs, folder.src, folder.tgt, search.max_src_len)
    norms = gradient_norms(model, examples, loss)
    return {"folder": str(path), "cell": folder.config.model.cell, "steps": folder.metadata.get("steps"),
            "rows": by_distance(norms, min_sentences)}


def gradient_sentences(base: Config, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` pairs drawn at random from the config's training data: the signal training itself receives."""
    pairs = load_pairs(base.data.train, base.data)
    return random.Random(seed).sample(pairs, min(count, len(pairs)))


def gradients(base: Config, out: Path, budget: Budget | None = None, cells: tuple[str, ...] = CELLS,
              models: list[Path] | None = None, sentences: int = 500, loss: str = "sentence",
              min_sentences: int = 10) -> dict[str, Any]:
    """Train a model per cell into out/CELL (or take ``models``), measure dL/dh_t by distance, and write the report.

    Every model is measured on the same ``sentences`` pairs of ``base``'s training data. Models trained here
    have attention none and one one-way encoder layer, whatever ``base`` says (see ``check_gradient_model``).
    """
    if loss not in GRADIENT_LOSSES:
        raise ConfigError(f"loss is {loss!r}; allowed values: {', '.join(GRADIENT_LOSSES)}")
    unknown = [cell for cell in cells if cell not in CELLS]
    if unknown:
        raise ConfigError(f"cell {unknown[0]!r} is unknown; allowed values: {', '.join(CELLS)}")
    if models is None:
        if budget is None:
            raise ConfigError("the gradients study trains its models: give it a budget, or model folders")
        models = []
        for cell in cells:
            folder = out / cell
            log.info("gradients study: training the %s cell for %s into %s", cell, budget.describe(), folder)
            train(gradient_variant(base, cell, budget), folder, overwrite=True)
            models.append(folder)
    pairs = gradient_sentences(base, sentences, base.train.seed)
    measured = [measure_model(Path(path), pairs, loss, min_sentences) for path in models]
    cells_seen = [m["cell"] for m in measured]
    results: dict[str, Any] = {"loss": loss, "sentences": len(pairs), "data": [c.describe() for c in base.data.train],
                               "models": {}}
    for m in measured:
        label = m["cell"] if cells_seen.count(m["cell"]) == 1 else f"{m['cell']} ({Path(m['folder']).name})"
        results["models"][label] = m
    write_gradients_report(results, out)
    return results


def write_gradients_report(results: dict[str, Any], out: Path) -> None:
    """gradients.json, gradients.md and gradients.png (mean norm and its ratio to distance 0, log scale)."""
    write_json(out / "gradients.json", results)
    write_bytes(out / "gradients.md", gradients_table(results).encode("utf-8"))
    models = results["models"]
    plot_gradient_norms({label: {r["distance"]: r["mean_norm"] for r in m["rows"]} for label, m in models.items()},
                        {label: {r["distance"]: r["relative"] for r in m["rows"]} for label, m in models.items()},
                        out / "gradients.png")


LOSS_NAMES = {"sentence": "L = -sum_j log p(y_j | y_<j, s_0), the whole teacher-forced target",
              "last": "L = -log p(</s> | y_1..y_n, s_0), the target's last token"}


def gradients_table(results: dict[str, Any]) -> str:
    """One line per shown distance: the sentences that reach it, then each model's mean norm and its ratio to d = 0."""
    models = results["models"]
    rows = {label: {r["distance"]: r for r in m["rows"]} for label, m in models.items()}
    deepest = max((d for r in rows.values() for d in r), default=-1)
    shown = sorted({d for d in SHOWN_DISTANCES if d <= deepest} | ({deepest} if deepest >= 0 else set()))
    header = "| distance T-t | sentences | " + " | ".join(f"{m} mean ‖dL/dh_t‖ | {m} ÷ d=0" for m in models) + " |"
    lines = [f"{LOSS_NAMES[results['loss']]}; {results['sentences']} training sentences; means over the sentences"
             " with more than T-t source tokens.", "",
             header, "|---:|---:|" + "---:|" * (2 * len(models))]
    for d in shown:
        counts = sorted({r[d]["sentences"] for r in rows.values() if d in r})
        cells = [f"{r[d]['mean_norm']:.3g} | {r[d]['relative']:.3g}" if d in r else " | " for r in rows.values()]
        lines.append(f"| {d} | {'/'.join(map(str, counts))} | " + " | ".join(cells) + " |")
    notes = [f"- **{label}**: {m['folder']} ({m['steps']} steps)" for label, m in models.items()]
    return "\n".join(lines + [""] + notes) + "\n"

"""rnnmt against Joey NMT 2.3.0 and OpenNMT-py 3.5.1: training and decoding speed, memory and quality in one run.

    python benchmarks/peers.py --quick                 # about 10 minutes: 200 steps, 100 sentences at batch 1
    python benchmarks/peers.py                         # 1,000 steps, every decode on all 1,000 sentences
    python benchmarks/peers.py --threads 2 --cache /tmp/peers --peers joey

The peers are installed once into their own virtual environments under the cache folder (default
~/.cache/rnnmt-peers), with the workarounds of ../shared/peers.md, and always with the constraint torch==2.13.0 so
that pip never pulls another torch. A peer that fails to install or run is reported in the table; the rest go on.

Every toolkit gets the same data and the same model, the issue's reference setting:
- training pairs: Tatoeba (hin.txt) and Hindi Visual Genome train from ../shared/data, cleaned by rnnmt and split
  into words by rnnmt's word tokenizer, so every toolkit reads the same words and builds 8,000-word vocabularies;
- a GRU encoder-decoder with attention, embeddings 256, hidden 512, batches of about 64 sentences, Adam 1e-3,
  gradient norm clipped at 1, dropout 0.1, trained for the same number of steps;
- decoding of the same 1,000 sentences (IITB dev, then Hindi Visual Genome dev) at exactly 20 output tokens, greedy
  and beam 5, at batch 64 and batch 1. The peers force the length with their minimum and maximum output length
  (Joey's minimum passed on by JOEY_TRANSLATE, OpenNMT-py's length ratio turned off); rnnmt has no minimum, so its
  decoder's </s> bias is set to -1e4 here and the maximum (20) ends each sentence.

Each run is a child process. Training speed is real (non-pad) target tokens per second, the median of the
toolkit's own logged intervals after the first (which holds start-up); decoding speed is sentences per second over
the toolkit's own decoding time (rnnmt: Translator.translate, timed in its child); peak memory is each child's
maximum resident set (os.wait4). Two rnnmt rows: with its speed levers (bf16 autocast in training where the CPU has
bf16 units, int8 weights in decoding) and with none (fp32), whose dev chrF++ after the same number of sentences
shows what the levers cost in quality. benchmarks/README.md holds the targets these figures were measured against.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

log = logging.getLogger("peers")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TORCH = "torch==2.13.0"
VOCAB = 8000
LENGTH = 20  # output tokens of every decoded sentence
SEARCHES = {"greedy b64": (1, 64), "greedy b1": (1, 1), "beam5 b64": (5, 64), "beam5 b1": (5, 1)}
PEERS = {  # key: (name, pip installs after torch, each with the torch constraint)
    "joey": ("Joey NMT 2.3.0", [["joeynmt==2.3.0", "importlib_metadata"]]),
    "onmt": ("OpenNMT-py 3.5.1", [
        ["configargparse", "tensorboard", "pyyaml", "sacrebleu", "rapidfuzz", "six", "pyonmttok", "spacy",
         "pyahocorasick", "ctranslate2", "flask", "waitress", "fasttext-wheel"],
        ["--no-deps", "OpenNMT-py==3.5.1"]]),
}


JOEY_TRANSLATE = (  # Joey 2.3.0's predict() never hands min_output_length to its search; this passes it on
    "import functools, sys\n"
    "import joeynmt.prediction as prediction\n"
    "from joeynmt.__main__ import main\n"
    f"prediction.search = functools.partial(prediction.search, min_output_length={LENGTH})\n"
    "main()\n"
)


class ToolkitError(RuntimeError):
    """A toolkit could not be installed, or one of its runs failed."""


@dataclass
class Plan:
    """How long each measurement runs."""

    steps: int
    log_every: int
    batch1_sentences: int  # sentences decoded at batch 1 (all 1,000 at batch 64)
    threads: int


@dataclass
class Data:
    """The prepared, word-split data every toolkit reads."""

    folder: Path
    pairs: int
    sentences: int
    batch_tokens: int  # rnnmt's token budget for batches of about 64 sentences

    def path(self, name: str) -> Path:
        return self.folder / name

    def first(self, count: int) -> Path:
        """A file holding the first ``count`` decode sentences."""
        path = self.folder / f"decode.{count}.en"
        if not path.exists():
            lines = self.path("decode.en").read_text(encoding="utf-8").splitlines(keepends=True)
            path.write_text("".join(lines[:count]), encoding="utf-8")
        return path


@dataclass
class Result:
    """One toolkit's row of the table; ``error`` says why figures are missing."""

    name: str
    tokens_per_s: float | None = None
    train_mb: float | None = None
    sentences_per_s: dict[str, float] = field(default_factory=dict)
    decode_mb: float | None = None
    chrf: float | None = None
    error: str = ""


@dataclass
class Child:
    """What a finished child process left: its log and its peak resident memory."""

    output: str
    peak_mb: float


def run_child(command: list[str], log_path: Path, threads: int, stdin: Path | None = None,
              extra_env: dict[str, str] | None = None) -> Child:
    """Run ``command`` to its end with ``threads`` CPU threads; raise ToolkitError with its last lines if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    with open(log_path, "w", encoding="utf-8") as out, (open(stdin, "rb") if stdin else nullcontext()) as source:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   stdin=source or subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        last = [line for line in output.splitlines() if line.strip()][-1:] or ["no output"]
        raise ToolkitError(f"{Path(command[0]).name} {' '.join(command[1:3])} exited with {process.returncode}: "
                           f"{last[0][:200]} (log: {log_path})")
    return Child(output, usage.ru_maxrss / 1024)


def install_peer(key: str, cache: Path) -> Path:
    """The peer's virtual environment (created and installed on first use); returns its bin folder."""
    venv = cache / "venvs" / key
    stamp = venv / ".rnnmt-peers-installed"
    steps = [[TORCH], *PEERS[key][1]]
    if stamp.exists() and stamp.read_text() == json.dumps(steps):
        return venv / "bin"
    log.info("installing %s into %s (once)", PEERS[key][0], venv)
    constraint = cache / "torch-constraint.txt"
    constraint.write_text(TORCH + "\n")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    for packages in steps:
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--constraint",
                               str(constraint), *packages], capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolkitError(f"pip install {' '.join(packages)} failed:\n{done.stderr[-1500:]}")
    stamp.write_text(json.dumps(steps))
    return venv / "bin"


def prepare_data(folder: Path, data_root: Path, sentences: int) -> Data:
    """Clean the corpora with rnnmt, split them into words, and write the files every toolkit reads."""
    from rnnmt.config import CorpusConfig, DataConfig
    from rnnmt.data import load_pairs
    from rnnmt.vocabulary import split_words

    train = load_pairs([CorpusConfig(tsv=str(data_root / "tatoeba-manythings/hin.txt")),
                        CorpusConfig(src=str(data_root / "hindi-visual-genome-1.1/train.en"),
                                     tgt=str(data_root / "hindi-visual-genome-1.1/train.hi"))], DataConfig())
    dev = [load_pairs([CorpusConfig(src=str(data_root / f"{name}/dev.en"), tgt=str(data_root / f"{name}/dev.hi"))],
                      DataConfig(), filter_lengths=False) for name in ("iitb-en-hi", "hindi-visual-genome-1.1")]
    decode = (dev[0] + dev[1])[:sentences]
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("decode.*.en"):  # first-N files of an earlier run
        stale.unlink()
    words = {side: [" ".join(split_words(pair[i])) for pair in train] for i, side in enumerate(("en", "hi"))}
    for i, side in enumerate(("en", "hi")):
        write_lines(folder / f"train.{side}", words[side])
        write_lines(folder / f"decode.{side}", [" ".join(split_words(pair[i])) for pair in decode])
        write_lines(folder / f"small.{side}", [" ".join(split_words(pair[i])) for pair in decode[:20]])  # peers' dev
    write_lines(folder / "reference.hi", [hi for _, hi in decode])
    longest = [max(len(en.split()) + 1, len(hi.split()) + 1) for en, hi in zip(words["en"], words["hi"], strict=True)]
    return Data(folder, len(train), len(decode), round(64 * statistics.mean(longest)))


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def median_after_first(rates: list[float], what: str) -> float:
    """The median logged rate, leaving out the first interval (start-up, buckets, first allocations)."""
    if len(rates) < 2:
        raise ToolkitError(f"{what}: found {len(rates)} logged training intervals, need at least 2")
    return statistics.median(rates[1:])


class Toolkit:
    """One toolkit's runs; subclasses say how to train, decode and read the figures."""

    name = ""

    def __init__(self, work: Path, data: Data, plan: Plan):
        self.work, self.data, self.plan = work, data, plan
        self.work.mkdir(parents=True, exist_ok=True)

    def train(self) -> Result:
        raise NotImplementedError

    def decode(self, beam: int, batch: int, count: int) -> tuple[float, float]:
        """Sentences per second and peak MB for the first ``count`` sentences."""
        raise NotImplementedError

    def measure(self) -> Result:
        """Train, then decode in every setting; a failure ends this toolkit's row with its reason."""
        result = Result(self.name)
        try:
            result = self.train()
            for column, (beam, batch) in SEARCHES.items():
                count = self.data.sentences if batch > 1 else self.plan.batch1_sentences
                log.info("%s: decoding %d sentences, %s", self.name, count, column)
                speed, peak = self.decode(beam, batch, count)
                result.sentences_per_s[column] = speed
                result.decode_mb = max(result.decode_mb or 0.0, peak)
        except ToolkitError as err:
            log.error("%s: %s", self.name, err)
            result.error = str(err).splitlines()[0]
        return result


class Rnnmt(Toolkit):
    """rnnmt through its own command line, with or without its speed levers."""

    def __init__(self, work: Path, data: Data, plan: Plan, fast: bool):
        super().__init__(work, data, plan)
        self.fast = fast
        self.name = "rnnmt" if fast else "rnnmt, fp32 (no levers)"
        self.precision = "int8" if fast else "fp32"

    def config(self) -> dict:
        d, p = self.data, self.plan
        return {
            "name": "peers", "data": {
                "train": [{"src": str(d.path("train.en")), "tgt": str(d.path("train.hi"))}],
                "dev": {"src": str(d.path("decode.en")), "tgt": str(d.path("reference.hi"))},
                "max_words": 1000, "max_ratio": 1000.0, "dedup": False},
            "vocab": {"kind": "word", "src_size": VOCAB, "tgt_size": VOCAB},
            "model": {"cell": "gru", "emb_size": 256, "hidden_size": 512, "attention": "luong_general",
                      "input_feeding": False, "dropout": 0.1},
            "train": {"lr": 1e-3, "batch_tokens": d.batch_tokens, "max_steps": p.steps, "max_epochs": 1000,
                      "valid_every": p.steps, "valid_sentences": d.sentences, "log_every": p.log_every,
                      "clip_norm": 1.0, "threads": p.threads, "device": "cpu", "amp": "bf16" if self.fast else "off"},
            "search": {"precision": self.precision},
        }

    def train(self) -> Result:
        import torch

        config = self.work / "config.yaml"
        config.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        child = run_child([sys.executable, "-m", "rnnmt", "train", str(config), "--model-dir",
                           str(self.work / "model"), "--overwrite"], self.work / "train.log", self.plan.threads)
        state = torch.load(self.work / "model" / "checkpoints" / "last.pt", weights_only=True)
        rates = [h["tokens_per_s"] for h in state["progress"]["history"] if "tokens_per_s" in h]
        best = json.loads((self.work / "model" / "metadata.json").read_text())["best"]
        return Result(self.name, median_after_first(rates, self.name), child.peak_mb, chrf=best.get("dev_chrf"))

    def decode(self, beam: int, batch: int, count: int) -> tuple[float, float]:
        report = self.run_decoder(beam, batch, count, forced=True)
        return count / report["seconds"], report["peak_mb"]

    def run_decoder(self, beam: int, batch: int, count: int, forced: bool, precision: str | None = None) -> dict:
        """Run ``decode_child`` in a process of its own; its JSON report plus the peak memory."""
        spec = {"folder": str(self.work / "model"), "src": str(self.data.first(count)), "beam": beam, "batch": batch,
                "precision": precision or self.precision, "forced": forced, "threads": self.plan.threads,
                "reference": str(self.data.path("reference.hi"))}
        child = run_child([sys.executable, __file__, "--decode-child", json.dumps(spec)],
                          self.work / f"decode.b{beam}.{batch}.log", self.plan.threads)
        return {**json.loads(child.output.strip().splitlines()[-1]), "peak_mb": child.peak_mb}


def decode_child(spec: dict) -> None:
    """In the child: load the model, translate the sentences, print the seconds (and chrF++ when not forced)."""
    import torch

    from rnnmt.metrics import corpus_scores
    from rnnmt.translator import Translator
    from rnnmt.vocabulary import EOS

    torch.set_num_threads(spec["threads"])
    loaded = Translator.load(spec["folder"], "cpu", "fp32")
    search = loaded.config.search
    search.batch_size = spec["batch"]
    if spec["forced"]:
        search.max_len, search.max_len_ratio = LENGTH, float(LENGTH)  # the limit is 20 for every source length
        with torch.no_grad():
            loaded.model.decoder.output.bias[EOS] = -1e4  # so </s> comes only at the limit
    translator = Translator(loaded.model, loaded.config, loaded.src, loaded.tgt, device="cpu",
                            precision=spec["precision"])
    sources = Path(spec["src"]).read_text(encoding="utf-8").splitlines()
    translator.translate(sources[:2], spec["beam"])  # warm-up
    start = time.perf_counter()
    hypotheses = translator.translate(sources, spec["beam"])
    report = {"seconds": time.perf_counter() - start}
    if not spec["forced"]:
        references = Path(spec["reference"]).read_text(encoding="utf-8").splitlines()[: len(sources)]
        report["chrf"] = corpus_scores(hypotheses, references).chrf
    print(json.dumps(report))


class Joey(Toolkit):
    """Joey NMT 2.3.0: a bidirectional GRU encoder (2 x 256; its unidirectional one crashes on torch 2.13) and a
    GRU decoder of 512 with Bahdanau attention, as in ../shared/peers.md."""

    name = PEERS["joey"][0]

    def __init__(self, work: Path, data: Data, plan: Plan, bin_dir: Path):
        super().__init__(work, data, plan)
        self.bin = bin_dir

    def config(self, beam: int = 1, batch: int = 64) -> dict:
        d, p = self.data, self.plan
        side = {"level": "word", "voc_limit": VOCAB - 4, "voc_min_freq": 1, "max_length": 1000, "lowercase": False}
        layer = {"type": "recurrent", "rnn_type": "gru", "embeddings": {"embedding_dim": 256}, "num_layers": 1,
                 "dropout": 0.1}
        return {
            "name": "peers", "joeynmt_version": "2.3.0", "model_dir": str(self.work / "model"), "use_cuda": False,
            "data": {"train": str(d.path("train")), "dev": str(d.path("small")), "dataset_type": "plain",
                     "src": {"lang": "en", **side}, "trg": {"lang": "hi", **side}},
            "training": {"random_seed": 1, "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64,
                         "batch_type": "sentence", "scheduling": "exponential", "decrease_factor": 1.0,
                         "clip_grad_norm": 1.0, "updates": p.steps, "epochs": 1000, "logging_freq": p.log_every,
                         "validation_freq": p.steps // p.log_every * p.log_every,  # a multiple, says Joey
                         "eval_metrics": ["bleu"], "early_stopping_metric": "loss",
                         "overwrite": True, "shuffle": True, "num_workers": 0, "keep_best_ckpts": 1},
            "testing": {"beam_size": beam, "batch_size": batch, "batch_type": "sentence", "eval_metrics": ["bleu"],
                        "max_output_length": LENGTH, "min_output_length": LENGTH},
            "model": {"encoder": {**layer, "hidden_size": 256, "bidirectional": True},
                      "decoder": {**layer, "hidden_size": 512, "attention": "bahdanau", "input_feeding": False,
                                  "init_hidden": "last", "hidden_dropout": 0.1}},
        }

    def write_config(self, name: str, **search: int) -> Path:
        path = self.work / name
        path.write_text(yaml.safe_dump(self.config(**search)), encoding="utf-8")
        return path

    def train(self) -> Result:
        config = self.write_config("train.yaml")
        child = run_child([str(self.bin / "python"), "-m", "joeynmt", "train", str(config), "--skip-test"],
                          self.work / "train.log", self.plan.threads)
        rates = [float(r) for r in re.findall(r"Tokens per Sec:\s+([\d.]+)", child.output)]
        return Result(self.name, median_after_first(rates, self.name), child.peak_mb)

    def decode(self, beam: int, batch: int, count: int) -> tuple[float, float]:
        config = self.write_config(f"decode.b{beam}.{batch}.yaml", beam=beam, batch=batch)
        child = run_child([str(self.bin / "python"), "-c", JOEY_TRANSLATE, "translate", str(config)],  # no -o: with
                          self.work / f"decode.b{beam}.{batch}.log", self.plan.threads,  # it, 2.3.0 fails on n_best
                          stdin=self.data.first(count))
        seconds = re.findall(r"Generation took ([\d.]+)\[sec\]", child.output)
        if not seconds:
            raise ToolkitError(f"{self.name}: no 'Generation took' line in {self.work}/decode.b{beam}.{batch}.log")
        return count / float(seconds[-1]), child.peak_mb


class OpenNMT(Toolkit):
    """OpenNMT-py 3.5.1: a GRU encoder and decoder of 512, general attention, no input feeding, no bridge."""

    name = PEERS["onmt"][0]
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # new torch loads only weights; these checkpoints are ours

    def __init__(self, work: Path, data: Data, plan: Plan, bin_dir: Path):
        super().__init__(work, data, plan)
        self.bin = bin_dir

    def config(self) -> dict:
        d, p, w = self.data, self.plan, self.work
        return {
            "save_data": str(w / "run"), "src_vocab": str(w / "vocab.src"), "tgt_vocab": str(w / "vocab.tgt"),
            "src_vocab_size": VOCAB, "tgt_vocab_size": VOCAB, "overwrite": True,
            "data": {"corpus_1": {"path_src": str(d.path("train.en")), "path_tgt": str(d.path("train.hi"))}},
            "save_model": str(w / "model"), "save_checkpoint_steps": p.steps, "train_steps": p.steps,
            "valid_steps": 10 * p.steps, "report_every": p.log_every, "seed": 1, "num_workers": 0,
            "encoder_type": "rnn", "decoder_type": "rnn", "rnn_type": "GRU", "layers": 1, "hidden_size": 512,
            "word_vec_size": 256, "global_attention": "general", "input_feed": 0, "bridge": False,
            "batch_size": 64, "batch_type": "sents", "optim": "adam", "learning_rate": 1e-3, "max_grad_norm": 1.0,
            "dropout": [0.1], "world_size": 1, "gpu_ranks": [],
        }

    def train(self) -> Result:
        config = self.work / "train.yaml"
        config.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        run_child([str(self.bin / "onmt_build_vocab"), "-config", str(config), "-n_sample", "-1"],
                  self.work / "vocab.log", self.plan.threads, extra_env=self.env)
        child = run_child([str(self.bin / "onmt_train"), "-config", str(config)], self.work / "train.log",
                          self.plan.threads, extra_env=self.env)
        rates = [float(r) for r in re.findall(r"[\d.]+/\s*([\d.]+) tok/s", child.output)]
        return Result(self.name, median_after_first(rates, self.name), child.peak_mb)

    def decode(self, beam: int, batch: int, count: int) -> tuple[float, float]:
        name = f"b{beam}.{batch}"
        model = self.work / f"model_step_{self.plan.steps}.pt"
        child = run_child([str(self.bin / "onmt_translate"), "-model", str(model), "-src", str(self.data.first(count)),
                           "-output", str(self.work / f"out.{name}"),
                           "-beam_size", str(beam), "-batch_size", str(batch), "-batch_type", "sents",
                           "-min_length", str(LENGTH), "-max_length", str(LENGTH), "-max_length_ratio", "0",
                           "-report_time"],  # the ratio would cut short sources' outputs below 20 tokens
                          self.work / f"decode.{name}.log", self.plan.threads, extra_env=self.env)
        average_ms = re.findall(r"Average translation time \(ms\): ([\d.]+)", child.output)
        if not average_ms:
            raise ToolkitError(f"{self.name}: no 'Average translation time' line in {self.work}/decode.{name}.log")
        return 1000 / float(average_ms[-1]), child.peak_mb


def figures(result: Result) -> list[float | None]:
    """The row's numbers in column order: speeds, then memory."""
    return [result.tokens_per_s, *(result.sentences_per_s.get(c) for c in SEARCHES), result.train_mb,
            result.decode_mb]


def table(results: list[Result]) -> list[str]:
    """A Markdown table: one row per toolkit, then rnnmt's ratio to each other row (memory: below 1 is less)."""
    lines = ["| toolkit | train tok/s | " + " | ".join(SEARCHES) + " | train MB | translate MB | dev chrF++ |",
             "|---|" + "---:|" * (len(SEARCHES) + 4)]
    for r in results:
        cells = [f"{v:,.0f}" if v and v >= 100 else f"{v:.1f}" if v else "-" for v in figures(r)]
        lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {f'{r.chrf:.2f}' if r.chrf else '-'} |")
    fast = figures(results[0])
    for other in results[1:]:
        ratios = [f"{a / b:.2f}x" if a and b else "-" for a, b in zip(fast, figures(other), strict=True)]
        lines.append(f"| rnnmt / {other.name} | " + " | ".join(ratios) + " | |")
    lines += [f"- {r.name}: {r.error}" for r in results if r.error]
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 steps and 100 sentences at batch 1 (about 10 minutes)")
    p.add_argument("--steps", type=int, help="training steps of every toolkit (default: 200 quick, 1,000 full)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every toolkit (2 on a quiet machine)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "rnnmt-peers",
                   help="where the peers' environments, the data and the runs go (outside the repository)")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the ../shared/data folder")
    p.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS), help="which peers to run")
    p.add_argument("--decode-child", help=argparse.SUPPRESS)
    return p.parse_args()


def run_all(args: argparse.Namespace, plan: Plan) -> tuple[dict[str, Result], dict[str, float], Data]:
    """Prepare the data, then train and decode with rnnmt (fast and fp32) and each peer, one after another."""
    runs = args.cache / "runs"
    data = prepare_data(args.cache / "data", args.data, 1000)
    fast = Rnnmt(runs / "rnnmt", data, plan, fast=True)
    toolkits = {"rnnmt": fast, "fp32": Rnnmt(runs / "rnnmt-fp32", data, plan, fast=False)}
    rows: dict[str, Result] = {}
    for key in args.peers:
        try:
            peer = {"joey": Joey, "onmt": OpenNMT}[key]
            toolkits[key] = peer(runs / key, data, plan, install_peer(key, args.cache))
        except (ToolkitError, subprocess.CalledProcessError) as err:
            log.error("%s: %s", PEERS[key][0], err)
            rows[key] = Result(PEERS[key][0], error=f"not installed: {str(err).splitlines()[0]}")
    for key, toolkit in tqdm(toolkits.items(), desc="toolkits", unit="toolkit"):
        log.info("%s: training %d steps", toolkit.name, plan.steps)
        rows[key] = toolkit.measure()
    quality = {}
    if not rows["rnnmt"].error:
        for precision in ("fp32", "int8"):
            quality[precision] = fast.run_decoder(5, 64, data.sentences, forced=False, precision=precision)["chrf"]
    return rows, quality, data


def main() -> None:
    args = parse_args()
    if args.decode_child:
        return decode_child(json.loads(args.decode_child))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    load_before = os.getloadavg()[0]
    steps = args.steps or (200 if args.quick else 1000)
    plan = Plan(steps, max(1, steps // 8), 100 if args.quick else 1000, args.threads)
    started = time.perf_counter()
    rows, quality, data = run_all(args, plan)
    order = ["rnnmt", "fp32", *[key for key in PEERS if key in rows]]
    print(f"\nrnnmt against its peers, {'quick' if args.quick else 'full'} run of "
          f"{(time.perf_counter() - started) / 60:.1f} min: python benchmarks/peers.py {' '.join(sys.argv[1:])}")
    print(f"machine: {machine(plan.threads)} per toolkit; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"data: {data.pairs:,} training pairs (Tatoeba + Hindi Visual Genome train), {VOCAB:,}-word vocabularies; "
          f"{plan.steps} steps of about 64 sentences; decoding {data.sentences:,} sentences at batch 64 and "
          f"{plan.batch1_sentences:,} at batch 1, {LENGTH} tokens each (sentences/s)\n")
    print("\n".join(table([rows[key] for key in order])))
    print(f"\ndev chrF++ after {plan.steps} steps (greedy, fp32 weights, {data.sentences:,} IITB + HVG dev sentences);"
          f" beam 5 chrF++ of the fast model: " + ", ".join(f"{p} {c:.2f}" for p, c in quality.items()))


if __name__ == "__main__":
    main()

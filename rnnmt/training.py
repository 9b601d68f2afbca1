"""Training: teacher forcing, cross-entropy over real tokens, Adam, clipping, validation and checkpoints.

A run writes a model folder (see ``model_folder``) and can be killed at any moment: ``--resume`` picks
up from the last checkpoint with the optimizer, the scheduler, the step and the data order restored.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import math
import os
import random
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from rnnmt import __version__
from rnnmt.batching import Batch, Epochs, Example, bucket_batches, collate, encode_pairs
from rnnmt.config import Config, TrainConfig, load_config
from rnnmt.data import Pair, load_corpora, load_pairs
from rnnmt.distributed import join
from rnnmt.metrics import corpus_scores
from rnnmt.model import Seq2Seq, build_model
from rnnmt.model_folder import (
    CONFIG,
    LAST,
    LOCK,
    PARTS,
    WEIGHTS,
    atomic_write,
    keep_weights,
    save_config,
    save_metadata,
    save_tokenizers,
    save_weights,
)
from rnnmt.plotting import plot_losses
from rnnmt.translator import Translator, pick_device
from rnnmt.vocabulary import PAD, Tokenizer, load_tokenizers, train_tokenizers

log = logging.getLogger(__name__)

# oneDNN keeps a compiled kernel, with its buffers, for every batch shape it meets (1,024 by default). Under
# bf16 autocast on the CPU that held 200 MB after 60 steps of varied shapes; 8 kept the speed (peers run).
ONEDNN_CACHE = 8


class TrainingError(RuntimeError):
    """Training cannot start or continue as asked."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already done
    seconds: float = 0.0
    best_chrf: float = -1.0
    best: dict[str, Any] = field(default_factory=dict)
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Make a run repeatable: Python, NumPy and torch draw the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over non-pad target tokens: logits batch x len x V, target batch x len.

    The logits keep their dtype: under bf16 autocast, log-softmax and its backward run on the bf16 logits
    (4.5 times faster here than through an fp32 copy, and no fp32 batch x len x V held for the backward);
    each token's loss is still summed in fp32.
    """
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=PAD,
                                label_smoothing=label_smoothing, reduction="none")  # batch * len
    return per_token.float().sum()


def train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, batch: Batch, clip_norm: float = 1.0,
               label_smoothing: float = 0.0, amp: torch.dtype | None = None) -> float:
    """One teacher-forced update: forward, cross-entropy per real target token, backward, clip, step."""
    device = batch.src.device.type
    with torch.autocast(device, dtype=amp, enabled=amp is not None):
        logits = model(batch.src, batch.src_len, batch.tgt_in)  # batch x tgt_len x V
    loss = sequence_loss(logits, batch.tgt_out, label_smoothing) / batch.tokens
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return loss.item()


def bf16_units() -> list[str]:
    """This CPU's bf16 units (AVX512-BF16, AMX), where bf16 autocast pays; empty where bf16 is emulated."""
    probes = {"AVX512-BF16": "_is_avx512_bf16_supported", "AMX": "_is_amx_tile_supported"}  # private in torch 2.13
    return [unit for unit, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype. ``auto``: bf16 on CUDA and on CPUs with bf16 units, fp32 (none) elsewhere.

    On this machine's AVX512-BF16 units bf16 trained 1.2x faster than fp32 at the default size, 1.45x for
    ``shared`` and 1.7x at the peers' reference size, with the same dev chrF++ (benchmarks/README.md).
    """
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" or (device.type == "cpu" and bool(bf16_units())) else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


@dataclass
class DevSet:
    """One dev set: its pairs, and their ids for the teacher-forced dev loss."""

    name: str
    pairs: list[Pair]
    examples: list[Example]


def ema_update(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """The update of an exponential moving average of the weights: ``avg <- d avg + (1 - d) w``.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the average soon forgets the
    random initial weights instead of carrying them for 1 / (1 - decay) steps.
    """
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        n = int(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (10 + n)))

    return update


class Trainer:
    """One training run into one model folder."""

    def __init__(self, config: Config, folder: str | Path, resume: bool = False, overwrite: bool = False):
        self.config, self.folder = config, Path(folder)
        self.checkpoint = self.folder / LAST
        t = config.train
        device = pick_device(t.device)
        self.world = join(device)  # one rank, unless launched by torchrun
        self.device = self.world.place(device)
        self.lock = lock_folder(self.folder) if self.world.leader else None  # until run() ends
        try:
            self.set_up(resume, overwrite)
        except BaseException:
            self.release()
            raise

    def set_up(self, resume: bool, overwrite: bool) -> None:
        """Claim the folder, read the data, build the model and optimiser, and restore a run to resume."""
        config, t = self.config, self.config.train
        seed_everything(t.seed + self.world.rank)  # DDP copies rank 0's initial weights to the others
        if t.threads:
            torch.set_num_threads(t.threads)
        self.amp = autocast_dtype(t.amp, self.device)
        if self.amp is not None and self.device.type == "cpu":  # before oneDNN's first use, which reads it
            os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))
        corpora = load_corpora(config.data.train, config.data)  # a data error stops us before the folder is touched
        self.resuming = self.world.from_leader(float(claim_folder(self.folder, config, resume, overwrite)
                                                     if self.world.leader else 0.0)) > 0
        self.src, self.tgt, self.epochs, self.dev = self.prepare_data(corpora)
        self.model = build_model(config.model, self.src.size, self.tgt.size).to(self.device)
        self.replica = self.model  # what the training step runs: the model itself, or DDP around it
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr)
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_update(t.ema_decay)) if t.ema_decay else None
        self.progress = Progress()
        if self.resuming:
            self.load_checkpoint()
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.replica = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.clock, self.seconds_before = time.perf_counter(), self.progress.seconds

    def elapsed(self) -> float:
        """Seconds of training so far, across resumed runs."""
        return self.seconds_before + time.perf_counter() - self.clock

    @property
    def weights(self) -> Seq2Seq:
        """The weights that are validated and kept: the moving average when there is one, else the model's."""
        return self.ema.module if self.ema is not None else self.model

    def prepare_data(self, corpora: list[list[Pair]]) -> tuple[Tokenizer, Tokenizer, Epochs, list[DevSet]]:
        """Learn (or, on resume, reload) the vocabularies from the first epoch's mix; encode the dev sets."""
        d, v, s = self.config.data, self.config.vocab, self.config.search
        epochs = Epochs(corpora, [c.weight for c in d.train], self.config.train.seed)
        if not self.resuming and self.world.leader:
            first = epochs.pairs(0)
            src, tgt = train_tokenizers([en for en, _ in first], [hi for _, hi in first], v.kind, v.joint,
                                        v.src_size, v.tgt_size, v.model_type, v.min_freq)
            save_tokenizers(self.folder, src, tgt)
            save_config(self.folder, self.config)
        self.world.barrier()  # the other ranks read the leader's vocabularies
        if self.resuming or not self.world.leader:
            src, tgt = load_tokenizers(self.folder)
        log.info("vocabularies: %d English and %d Hindi tokens (%s)", src.size, tgt.size, v.kind)
        epochs.segment(src, tgt, s.max_src_len, (v.sampling_alpha, v.sampling_nbest) if v.sampling else None)
        dev = []
        for corpus in d.dev:
            pairs = load_pairs([corpus], d, filter_lengths=False)
            dev.append(DevSet(corpus.label(), pairs, encode_pairs(pairs, src, tgt, s.max_src_len)))
        return src, tgt, epochs, dev

    def load_checkpoint(self) -> None:
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if "ema" not in state:
                raise TrainingError(f"{self.checkpoint} was saved without train.ema_decay: resume it without")
            self.ema.load_state_dict(state["ema"])
        self.progress = Progress(**state["progress"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed %s at step %d (epoch %d, batch %d)", self.folder, self.progress.step,
                 self.progress.epoch + 1, self.progress.batch_in_epoch)

    def save_checkpoint(self) -> None:
        self.progress.seconds = self.elapsed()
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "progress": dataclasses.asdict(self.progress),
                 "torch_rng": torch.get_rng_state()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        atomic_write(self.checkpoint, lambda tmp: torch.save(state, tmp))

    def epoch_batches(self, examples: list[Example], epoch: int) -> list[list[int]]:
        """The batches of ``epoch``: the same every time for the same seed, so a resumed run sees the same.

        Under DDP every rank draws the same list and trains on its own share of it.
        """
        t = self.config.train
        return self.world.share(bucket_batches(examples, t.batch_tokens, t.seed * 1009 + epoch))

    def train_step(self, batch: Batch) -> float:
        """One teacher-forced update (and the moving average's); returns the loss per target token."""
        t = self.config.train
        loss = train_step(self.replica, self.optimizer, batch, t.clip_norm, t.label_smoothing, self.amp)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss

    def out_of_budget(self) -> bool:
        t, p = self.config.train, self.progress
        return bool((t.max_steps and p.step >= t.max_steps) or (t.max_minutes and self.elapsed() >= 60 * t.max_minutes))

    def run(self) -> dict[str, Any]:
        """Train, logging to the folder's train.log as well."""
        package_log = logging.getLogger("rnnmt")
        if self.world.leader:
            log_file = logging.FileHandler(self.folder / "train.log", mode="a" if self.resuming else "w",
                                           encoding="utf-8")
            log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            package_log.setLevel(logging.INFO)
        else:
            log_file = logging.NullHandler()
        package_log.addHandler(log_file)
        try:
            return self.loop()
        finally:
            package_log.removeHandler(log_file)
            log_file.close()
            self.world.leave()
            self.release()

    def release(self) -> None:
        """Free the folder for the next run."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def loop(self) -> dict[str, Any]:
        """Train until the epoch, step or time budget runs out or dev chrF++ stops improving."""
        t, p = self.config.train, self.progress
        stop = False
        log.info("training %s: %s parameters on %s", self.config.name, f"{count_parameters(self.model):,}",
                 self.device)
        bar = tqdm(total=t.max_steps or None, initial=p.step, unit="step", dynamic_ncols=True, mininterval=1.0,
                   disable=not self.world.leader)
        tokens, window = 0, time.perf_counter()
        while p.epoch < t.max_epochs and not stop:
            examples = self.epochs.examples(p.epoch)
            for indices in self.epoch_batches(examples, p.epoch)[p.batch_in_epoch :]:
                self.model.train()
                batch = collate([examples[i] for i in indices]).to(self.device)
                loss = self.train_step(batch)
                p.step, p.batch_in_epoch, tokens = p.step + 1, p.batch_in_epoch + 1, tokens + batch.tokens
                bar.update(1)
                if p.step % t.log_every == 0:
                    rate = self.world.total(tokens) / max(time.perf_counter() - window, 1e-9)
                    bar.set_postfix(epoch=p.epoch + 1, loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
                    p.history.append({"step": p.step, "train_loss": loss, "tokens_per_s": rate})
                    tokens, window = 0, time.perf_counter()
                if p.step % t.valid_every == 0:
                    stop = self.validate()
                if self.world.any(stop or self.out_of_budget()):  # every rank stops at the same step
                    stop = True
                    break
            else:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        bar.close()
        if self.world.any(self.world.leader and (not p.history or "dev_chrf" not in p.history[-1])):
            self.validate()
        return self.finish()

    def validate(self) -> bool:
        """The leader validates; every rank takes its learning rate and its decision to stop early."""
        stop = self.validate_here() if self.world.leader else False
        lr = self.world.from_leader(self.optimizer.param_groups[0]["lr"])  # the plateau scheduler's choice
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return self.world.any(stop)

    def validate_here(self) -> bool:
        """Score every dev set; keep the best weights by their mean chrF++; say whether to stop early."""
        p, t = self.progress, self.config.train
        record: dict[str, Any] = {"step": p.step, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.dev:
            record.update(self.evaluate_dev())
            self.scheduler.step(record["dev_loss"])
        improved = record.get("dev_chrf", 0.0) > p.best_chrf or not self.dev
        p.history.append(record)
        if improved:
            p.best_chrf, p.best, p.bad_validations = record.get("dev_chrf", 0.0), record, 0
            save_weights(self.folder, self.weights)
            save_metadata(self.folder, self.metadata())
        else:
            p.bad_validations += 1
        if t.keep_checkpoints:
            keep_weights(self.folder, self.weights, p.step, t.keep_checkpoints)
        self.save_checkpoint()
        plot_losses(p.history, self.folder / "loss.png")
        per_set = ", ".join(f"{name} {scores['chrf']:.2f}" for name, scores in record.get("dev", {}).items())
        log.info("step %d: %s%s%s", p.step, ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                      if isinstance(v, float)),
                 f" (chrF++ {per_set})" if len(self.dev) > 1 else "", " (best)" if improved else "")
        return bool(self.dev) and p.bad_validations >= t.patience

    @torch.no_grad()
    def evaluate_dev(self) -> dict[str, Any]:
        """Every dev set's loss, BLEU and chrF++; overall, the loss per token of all and the mean of the scores."""
        model = self.weights.eval()
        translator = Translator(model, self.config, self.src, self.tgt, device=self.device)
        per_set = {dev.name: score_dev(translator, dev, self.config.train) for dev in self.dev}
        tokens = sum(scores["tokens"] for scores in per_set.values())
        loss = sum(scores["loss"] * scores["tokens"] for scores in per_set.values()) / tokens
        return {"dev_loss": loss, "dev_ppl": math.exp(min(loss, 50)),
                "dev_bleu": sum(s["bleu"] for s in per_set.values()) / len(per_set),
                "dev_chrf": sum(s["chrf"] for s in per_set.values()) / len(per_set), "dev": per_set}

    def metadata(self) -> dict[str, Any]:
        """What metadata.json says of the run so far."""
        p, d = self.progress, self.config.data
        return {
            "rnnmt_version": __version__, "torch_version": torch.__version__, "name": self.config.name,
            "languages": {"source": "en", "target": "hi"},
            "training_data": [c.describe() for c in d.train], "dev_data": [c.describe() for c in d.dev],
            "training_pairs": sum(len(pairs) for pairs in self.epochs.corpora),
            "corpora": [{"data": c.describe(), "pairs": len(pairs), "weight": c.weight}
                        for c, pairs in zip(d.train, self.epochs.corpora, strict=True)],
            "vocab_sizes": {"src": self.src.size, "tgt": self.tgt.size},
            "parameters": count_parameters(self.model), "steps": p.step, "epochs_completed": p.epoch,
            "training_seconds": round(self.elapsed(), 1), "device": str(self.device), "best": p.best,
        }

    def finish(self) -> dict[str, Any]:
        """Write the metadata of the finished run and return it (on the leader; other ranks get {})."""
        p = self.progress
        if not self.world.leader:
            return {}
        self.save_checkpoint()
        metadata = self.metadata()
        save_metadata(self.folder, metadata)
        log.info("done: %d steps in %.1f min; best dev %s", p.step, p.seconds / 60,
                 {k: round(v, 2) for k, v in p.best.items() if k.startswith("dev_") and isinstance(v, float)})
        return metadata


def lock_folder(folder: Path) -> IO[str]:
    """Hold the folder's lock file for as long as this process lives: one training run per folder at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (kept open: closing would free the lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise TrainingError(f"{folder} is in use: {holder} is training into it; wait for it to end, or train"
                            " into another folder") from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    return handle


def claim_folder(folder: Path, config: Config, resume: bool, overwrite: bool) -> bool:
    """Make ``folder`` ready for a run and say whether it holds one to resume; refuse to clobber anything.

    A folder of files rnnmt did not write is refused even with --overwrite. A run resumes only with the data,
    vocab and model it was started with. --overwrite removes the old model's parts before a new one writes
    any, so the folder never holds a mix of the two.
    """
    entries = [entry for entry in folder.iterdir() if entry.name != LOCK]
    foreign = sorted(e.name for e in entries if e.name not in PARTS and not e.name.endswith(".tmp"))
    if foreign:
        raise TrainingError(f"{folder} holds files rnnmt did not write ({', '.join(foreign[:3])}); train into an"
                            " empty or new folder")
    if resume and (folder / LAST).exists():
        saved = load_config(folder / CONFIG)
        changed = [name for name in ("data", "vocab", "model") if getattr(saved, name) != getattr(config, name)]
        if changed:
            raise TrainingError(f"{folder}: its run has another {changed[0]} section in {CONFIG}; resume it with"
                                " the config it started with, or pass --overwrite to start again")
        for stale in folder.rglob(".*.tmp"):  # half-written by a killed run
            stale.unlink()
        return True
    started = (folder / LAST).exists() or (folder / WEIGHTS).exists()
    if started and not overwrite:
        what = "a training run" if (folder / LAST).exists() else "a trained model"
        raise TrainingError(f"{folder} already holds {what}; pass --resume to continue it or --overwrite to"
                            " start again")
    if entries:
        log.info("%s: removing %s", folder, "the old model" if started else "a run killed before its first checkpoint")
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return False


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The losses and validations a run logged, from its last checkpoint."""
    return torch.load(Path(path) / LAST, weights_only=True)["progress"]["history"]


def score_dev(translator: Translator, dev: DevSet, train: TrainConfig) -> dict[str, float]:
    """A dev set's teacher-forced loss per token, and the greedy translations of its first sentences, scored.

    The loss goes in batches of the training budget: fixed batches of 64 long news sentences held
    64 x 150 x V fp32 logits, and made validation, not training, the run's peak memory.
    """
    model, examples = translator.model, dev.examples
    total, tokens = 0.0, 0
    for indices in bucket_batches(examples, train.batch_tokens, seed=0):
        batch = collate([examples[i] for i in indices]).to(translator.device)
        total += float(sequence_loss(model(batch.src, batch.src_len, batch.tgt_in), batch.tgt_out))
        tokens += batch.tokens
    sample = dev.pairs[: train.valid_sentences]
    scores = corpus_scores(translator.translate([en for en, _ in sample], beam_size=1), [hi for _, hi in sample])
    return {"loss": total / tokens, "tokens": tokens, "bleu": scores.bleu, "chrf": scores.chrf}


def count_parameters(model: Seq2Seq) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(config: Config, folder: str | Path, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train a model into ``folder`` and return its metadata."""
    return Trainer(config, folder, resume, overwrite).run()

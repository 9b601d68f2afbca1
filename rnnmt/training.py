"""Training: teacher forcing, cross-entropy over real tokens, Adam, clipping, validation and checkpoints.

A run writes a model folder (see ``model_folder``) and can be killed at any moment: ``--resume`` picks
up from the last checkpoint with the optimizer, the scheduler, the step and the data order restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from rnnmt import __version__
from rnnmt.batching import Batch, Epochs, bucket_batches, collate
from rnnmt.board import Board
from rnnmt.config import Config, ModelConfig, TrainConfig
from rnnmt.data import load_corpora
from rnnmt.distributed import World, join
from rnnmt.errors import TrainingError
from rnnmt.model import Seq2Seq, build_model, sequence_loss
from rnnmt.model_folder import (
    LAST,
    ModelFolder,
    atomic_write,
    claim_folder,
    keep_weights,
    lock_folder,
    read_model_folder,
    save_config,
    save_metadata,
    save_tokenizers,
    save_weights,
)
from rnnmt.plotting import plot_losses
from rnnmt.translator import Translator, pick_device
from rnnmt.validation import load_dev_sets, validate
from rnnmt.vocabulary import Tokenizer, load_tokenizers, train_tokenizers

log = logging.getLogger(__name__)

# oneDNN keeps a compiled kernel, with its buffers, for every batch shape it meets (1,024 by default). Under
# bf16 autocast on the CPU that grew memory by hundreds of MB; 8 keeps the speed (benchmarks/README.md).
ONEDNN_CACHE = 8



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
    parent: dict[str, Any] = field(default_factory=dict)  # the model it started from (--init-from), if any


def seed_everything(seed: int) -> None:
    """Make a run repeatable: Python, NumPy and torch draw the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, batch: Batch, clip_norm: float = 1.0,
               label_smoothing: float = 0.0, amp: torch.dtype | None = None) -> tuple[float, float]:
    """One teacher-forced update: forward, cross-entropy per real target token, backward, clip, step.

    Returns the loss per target token and the gradient's norm before clipping.
    """
    device = batch.src.device.type
    with torch.autocast(device, dtype=amp, enabled=amp is not None):
        logits = model(batch.src, batch.src_len, batch.tgt_in)  # batch x tgt_len x V
    loss = sequence_loss(logits, batch.tgt_out, label_smoothing) / batch.tokens
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm > 0 else math.inf)
    optimizer.step()
    return loss.item(), float(norm)


def bf16_units() -> list[str]:
    """This CPU's bf16 units (AVX512-BF16, AMX), where bf16 autocast pays; empty where bf16 is emulated."""
    probes = {"AVX512-BF16": "_is_avx512_bf16_supported", "AMX": "_is_amx_tile_supported"}  # private in torch 2.13
    return [unit for unit, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]


def set_up_device(train: TrainConfig, world: World) -> tuple[torch.device, torch.dtype | None]:
    """This rank's device and autocast dtype, with torch's threads and oneDNN's cache set for them."""
    device = world.place(pick_device(train.device))
    if train.threads:
        torch.set_num_threads(train.threads)
    amp = autocast_dtype(train.amp, device)
    if amp is not None and device.type == "cpu":  # before oneDNN's first use, which reads it
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))
    return device, amp


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype. ``auto``: bf16 on CUDA and on CPUs with bf16 units, fp32 (none) elsewhere.

    Where the CPU has bf16 units, bf16 trains faster than fp32 at every size measured, more so for larger
    models, with the same dev chrF++ (benchmarks/README.md has the figures).
    """
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" or (device.type == "cpu" and bool(bf16_units())) else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def learn_vocabularies(config: Config, epochs: Epochs, folder: Path, world: World, resuming: bool,
                       parent: ModelFolder | None) -> tuple[Tokenizer, Tokenizer]:
    """The vocabularies: the parent model's, or learned from the first epoch's mix (reloaded to resume); then used."""
    v = config.vocab
    if not resuming and world.leader:
        first = epochs.pairs(0)
        src, tgt = (parent.src, parent.tgt) if parent else train_tokenizers(
            [en for en, _ in first], [hi for _, hi in first], v.kind, v.joint, v.src_size, v.tgt_size, v.model_type,
            v.min_freq)
        save_tokenizers(folder, src, tgt)
        save_config(folder, config)
    world.barrier()  # the other ranks read the leader's vocabularies
    if resuming or not world.leader:
        src, tgt = load_tokenizers(folder)
    log.info("vocabularies: %d English and %d Hindi tokens (%s)", src.size, tgt.size, v.kind)
    epochs.segment(src, tgt, config.search.max_src_len, (v.sampling_alpha, v.sampling_nbest) if v.sampling else None)
    return src, tgt


TRAINING_ONLY = {"dropout", "emb_dropout", "rnn_dropout", "out_dropout", "word_dropout", "init", "init_scale"}


def read_parent(path: str | Path, config: Config) -> ModelFolder:
    """The model a run starts from (``--init-from``): it must have this config's architecture.

    The run keeps the parent's vocabularies, so ``config.vocab`` is made to describe them (its sampling stays).
    """
    parent = read_model_folder(path)
    for name in (f.name for f in dataclasses.fields(ModelConfig) if f.name not in TRAINING_ONLY):
        mine, theirs = getattr(config.model, name), getattr(parent.config.model, name)
        if mine != theirs:
            raise TrainingError(f"--init-from {path}: model.{name} is {mine!r} in this config but {theirs!r} in"
                                " the model it starts from; give this config its model section")
    v = config.vocab
    config.vocab = dataclasses.replace(parent.config.vocab, sampling=v.sampling, sampling_alpha=v.sampling_alpha,
                                       sampling_nbest=v.sampling_nbest)
    return parent


def ema_update(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """The update of an exponential moving average of the weights: ``avg <- d avg + (1 - d) w``.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the average soon forgets the
    random initial weights instead of carrying them for 1 / (1 - decay) steps.
    """
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        n = int(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (10 + n)))

    return update


@dataclass
class Learner:
    """What the updates change, all of it saved in a checkpoint: the model, Adam, the schedule, the average."""

    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    ema: AveragedModel | None

    @classmethod
    def build(cls, model: Seq2Seq, t: TrainConfig) -> Learner:
        optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                                     fused=next(model.parameters()).device.type in ("cpu", "cuda"))
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=t.lr_factor,
                                                               patience=t.lr_patience, min_lr=t.min_lr)
        ema = AveragedModel(model, multi_avg_fn=ema_update(t.ema_decay)) if t.ema_decay else None
        return cls(model, optimizer, scheduler, ema)

    @property
    def weights(self) -> Seq2Seq:
        """The weights that are validated and kept: the moving average when there is one, else the model's."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def validated(self, dev_loss: float, t: TrainConfig) -> None:
        """Let the plateau rule read a validation's dev loss (the cooldown schedule follows the budget instead)."""
        if t.lr_schedule == "plateau":
            self.scheduler.step(dev_loss)

    def average(self) -> None:
        """Fold the model's new weights into the moving average, if there is one."""
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        return state | ({"ema": self.ema.state_dict()} if self.ema is not None else {})

    def load_state_dict(self, state: dict[str, Any], where: Path) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if "ema" not in state:
                raise TrainingError(f"{where} was saved without train.ema_decay: resume it without")
            self.ema.load_state_dict(state["ema"])


class Trainer:
    """One training run into one model folder."""

    def __init__(self, config: Config, folder: str | Path, resume: bool = False, overwrite: bool = False,
                 init_from: str | Path | None = None):
        self.config, self.folder = config, Path(folder)
        self.world = join(pick_device(config.train.device))  # one rank, unless launched by torchrun
        self.lock = lock_folder(self.folder) if self.world.leader else None  # until run() ends
        try:
            self.set_up(resume, overwrite, init_from)
        except BaseException:
            self.release()
            raise

    def set_up(self, resume: bool, overwrite: bool, init_from: str | Path | None) -> None:
        """Claim the folder, read the data, build the model and optimiser, and restore a run to resume.

        ``init_from`` starts from another model's weights and vocabularies, with a fresh optimiser and schedule.
        """
        config, t, world = self.config, self.config.train, self.world
        parent = read_parent(init_from, config) if init_from else None
        seed_everything(t.seed + world.rank)  # DDP copies rank 0's initial weights to the others
        self.device, self.amp = set_up_device(t, world)
        corpora = load_corpora(config.data.train, config.data)  # a data error stops us before the folder is touched
        claimed = claim_folder(self.folder, config, resume, overwrite) if world.leader else False
        self.resuming = world.from_leader(float(claimed)) > 0
        self.epochs = Epochs(corpora, [c.weight for c in config.data.train], t.seed)
        self.src, self.tgt = learn_vocabularies(config, self.epochs, self.folder, world, self.resuming, parent)
        self.dev = load_dev_sets(config, self.src, self.tgt)
        self.model = build_model(config.model, self.src.size, self.tgt.size, parent).to(self.device)
        self.learner, self.progress = Learner.build(self.model, t), Progress(parent=parent_record(parent))
        if self.resuming:  # the learner's state, the progress and the random stream
            state = torch.load(self.folder / LAST, map_location=self.device, weights_only=True)
            self.learner.load_state_dict(state, self.folder / LAST)
            self.progress = Progress(**state["progress"])
            torch.set_rng_state(state["torch_rng"])
            p = self.progress
            log.info("resumed %s at step %d (epoch %d, batch %d)", self.folder, p.step, p.epoch + 1, p.batch_in_epoch)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.replica = DistributedDataParallel(self.model, device_ids=ids) if world.size > 1 else self.model
        self.translator = Translator(self.learner.weights, config, self.src, self.tgt, device=self.device)
        self.clock, self.seconds_before = time.perf_counter(), self.progress.seconds

    def elapsed(self) -> float:  # seconds of training so far, across resumed runs
        return self.seconds_before + time.perf_counter() - self.clock

    def save_checkpoint(self) -> None:
        self.progress.seconds = self.elapsed()
        state = {**self.learner.state_dict(), "progress": dataclasses.asdict(self.progress),
                 "torch_rng": torch.get_rng_state()}
        atomic_write(self.folder / LAST, lambda tmp: torch.save(state, tmp))

    def run(self) -> dict[str, Any]:
        """Train, logging to the folder's train.log (and to TensorBoard when asked) as well."""
        self.board = Board(self.folder, self.config.train.tensorboard and self.world.leader)
        try:
            with log_to(self.folder / "train.log", self.world.leader, append=self.resuming):
                return self.loop()
        finally:
            self.board.close()
            self.world.leave()
            self.release()

    def release(self) -> None:  # free the folder for the next run
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def loop(self) -> dict[str, Any]:
        """Train until the epoch, step or time budget runs out or dev chrF++ stops improving."""
        t, p, world = self.config.train, self.progress, self.world
        log.info("training %s: %s parameters on %s", self.config.name, f"{count_parameters(self.model):,}", self.device)
        bar = tqdm(total=t.max_steps or None, initial=p.step, unit="step", dynamic_ncols=True, mininterval=1.0,
                   disable=not world.leader)
        meter, stop = Meter(), False
        self.model.train()
        while p.epoch < t.max_epochs and not stop:
            examples = self.epochs.examples(p.epoch)
            batches = world.share(bucket_batches(examples, t.batch_tokens, t.seed * 1009 + p.epoch))  # resumable
            for indices in batches[p.batch_in_epoch :]:
                batch = collate([examples[i] for i in indices]).to(self.device)
                if t.lr_schedule == "cooldown":  # the leader's clock sets every rank's rate
                    self.learner.lr = world.from_leader(scheduled_lr(t, budget_used(t, p.step, self.elapsed())))
                loss, norm = train_step(self.replica, self.learner.optimizer, batch, t.clip_norm, t.label_smoothing,
                                        self.amp)
                self.learner.average()
                if world.any(not math.isfinite(loss)):
                    raise TrainingError(f"step {p.step + 1}: the loss is {loss}; stopped before saving broken"
                                        " weights (try a lower train.lr or a train.clip_norm)")
                p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + 1
                meter.add(batch.tokens)
                bar.update(1)
                if p.step % t.log_every == 0:
                    record = {"step": p.step, "train_loss": loss, "tokens_per_s": meter.rate(world), "grad_norm": norm,
                              "lr": self.learner.lr}
                    bar.set_postfix(epoch=p.epoch + 1, loss=f"{loss:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")
                    p.history.append(record)
                    self.board.scalars("train", record)
                if p.step % t.valid_every == 0:
                    stop = self.validate()
                if world.any(stop or out_of_budget(t, p.step, self.elapsed())):  # every rank stops at the same step
                    stop = True
                    break
            else:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        bar.close()
        if world.any(world.leader and not last_validated(p.history)):
            self.validate()
        return self.finish()

    def validate(self) -> bool:
        """The leader validates; every rank takes its learning rate and its decision to stop early."""
        stop = self.validate_here() if self.world.leader else False
        self.learner.lr = self.world.from_leader(self.learner.lr)  # the plateau scheduler's choice
        return self.world.any(stop)

    def validate_here(self) -> bool:
        """Score every dev set; keep the best weights by their mean chrF++; say whether to stop early."""
        p, t = self.progress, self.config.train
        record: dict[str, Any] = {"step": p.step, "lr": self.learner.lr}
        if self.dev:
            record.update(validate(self.translator, self.dev, t))
            self.learner.validated(record["dev_loss"], t)
            self.board.validation(record, self.translator, self.dev[0])
        improved = record.get("dev_chrf", 0.0) > p.best_chrf or not self.dev
        p.history.append(record)
        if improved:
            p.best_chrf, p.best, p.bad_validations = record.get("dev_chrf", 0.0), record, 0
            save_weights(self.folder, self.learner.weights)
            save_metadata(self.folder, run_metadata(self))
        else:
            p.bad_validations += 1
        if t.keep_checkpoints:
            keep_weights(self.folder, self.learner.weights, p.step, t.keep_checkpoints)
        self.save_checkpoint()
        plot_losses(p.history, self.folder / "loss.png")
        log.info("step %d: %s%s", p.step, describe(record), " (best)" if improved else "")
        return bool(self.dev) and p.bad_validations >= t.patience

    def finish(self) -> dict[str, Any]:
        """Write the metadata of the finished run and return it (on the leader; other ranks get {})."""
        p = self.progress
        if not self.world.leader:
            return {}
        self.save_checkpoint()
        metadata = run_metadata(self)
        save_metadata(self.folder, metadata)
        log.info("done: %d steps in %.1f min; best dev %s", p.step, p.seconds / 60,
                 {k: round(v, 2) for k, v in p.best.items() if k.startswith("dev_") and isinstance(v, float)})
        return metadata


def run_metadata(trainer: Trainer) -> dict[str, Any]:
    """What metadata.json says of a run so far."""
    p, d = trainer.progress, trainer.config.data
    return {
        "rnnmt_version": __version__, "torch_version": torch.__version__, "name": trainer.config.name,
        "languages": {"source": "en", "target": "hi"},
        "training_data": [c.describe() for c in d.train], "dev_data": [c.describe() for c in d.dev],
        "training_pairs": sum(len(pairs) for pairs in trainer.epochs.corpora),
        "corpora": [{"data": c.describe(), "pairs": len(pairs), "weight": c.weight}
                    for c, pairs in zip(d.train, trainer.epochs.corpora, strict=True)],
        "vocab_sizes": {"src": trainer.src.size, "tgt": trainer.tgt.size},
        "parameters": count_parameters(trainer.model), "steps": p.step, "epochs_completed": p.epoch,
        "training_seconds": round(trainer.elapsed(), 1), "device": str(trainer.device), "best": p.best,
        **({"parent": p.parent} if p.parent else {}),
    }


class Meter:
    """Target tokens per second since the last reading."""

    def __init__(self):
        self.tokens, self.start = 0, time.perf_counter()

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def rate(self, world: World) -> float:
        """All ranks' tokens per second since the last call."""
        rate = world.total(self.tokens) / max(time.perf_counter() - self.start, 1e-9)
        self.tokens, self.start = 0, time.perf_counter()
        return rate


def budget_used(train: TrainConfig, step: int, seconds: float) -> float:
    """The share of the step or time budget used so far, whichever is further on (0 with neither set)."""
    steps = step / train.max_steps if train.max_steps else 0.0
    return max(steps, seconds / (60 * train.max_minutes) if train.max_minutes else 0.0)


def out_of_budget(train: TrainConfig, step: int, seconds: float) -> bool:
    """Whether the run has used up its steps or its minutes."""
    return budget_used(train, step, seconds) >= 1.0


def scheduled_lr(train: TrainConfig, used: float) -> float:
    """``train.lr_schedule cooldown``: ``train.lr`` until the last ``train.lr_cooldown`` share of the budget, then a
    straight line down to ``train.min_lr`` at its end (``used`` goes from 0 to 1). A cooldown of 1 is the linear
    decay Li et al. (ICLR 2020) found best for a fixed budget; a short one keeps the fast early steps (Hägele et al.,
    NeurIPS 2024)."""
    left = (1.0 - used) / train.lr_cooldown
    return max(train.min_lr, train.lr * min(1.0, left))


def last_validated(history: list[dict[str, Any]]) -> bool:
    """Whether the run's last record is a validation: then the final state needs no other."""
    return bool(history) and "dev_chrf" in history[-1]


def describe(record: dict[str, Any]) -> str:
    """A validation record as one log line, with each dev set's chrF++ when there are several."""
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float))
    per_set = record.get("dev", {})
    if len(per_set) < 2:
        return numbers
    return numbers + " (chrF++ " + ", ".join(f"{name} {s['chrf']:.2f}" for name, s in per_set.items()) + ")"


@contextlib.contextmanager
def log_to(path: Path, leader: bool, append: bool) -> Iterator[None]:
    """Copy the package's log records to ``path`` while the block runs (on the leader only)."""
    package_log = logging.getLogger("rnnmt")
    if not leader:
        yield
        return
    handler = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    package_log.setLevel(logging.INFO)
    package_log.addHandler(handler)
    try:
        yield
    finally:
        package_log.removeHandler(handler)
        handler.close()


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The losses and validations a run logged, from its last checkpoint."""
    return torch.load(Path(path) / LAST, weights_only=True)["progress"]["history"]


def count_parameters(model: Seq2Seq) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parent_record(parent: ModelFolder | None) -> dict[str, Any]:
    """What metadata.json says of the model a run started from."""
    if parent is None:
        return {}
    meta = parent.metadata
    return {"model": str(parent.path.resolve()), "name": parent.config.name, "steps": meta.get("steps"),
            "training_data": meta.get("training_data"), "best": meta.get("best", {})}


def train(config: Config, folder: str | Path, resume: bool = False, overwrite: bool = False,
          init_from: str | Path | None = None) -> dict[str, Any]:
    """Train a model into ``folder`` (from ``init_from``'s weights and vocabularies, if given); return its metadata."""
    return Trainer(config, folder, resume, overwrite, init_from).run()

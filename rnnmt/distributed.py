"""Training on several processes at once with torch's DistributedDataParallel (DDP), launched by torchrun.

    torchrun --standalone --nproc_per_node 4 -m rnnmt train shared

Every process (rank) holds the whole model and trains on its own share of each epoch's batches. After each
backward pass DDP averages the gradients of all ranks, so every rank takes the same optimizer step and the
copies never drift apart. Rank 0, the leader, validates, writes the model folder and logs; the others wait
for its decisions (stop or go on, the learning rate) at the next step. On GPUs the ranks talk over NCCL,
one GPU each; on the CPU over Gloo. Without torchrun there is one rank and nothing here does anything.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    on_gpu: bool = False  # NCCL, whose messages travel in GPU tensors
    mailbox: torch.Tensor | None = field(default=None, compare=False, repr=False)  # (1,) float64

    @property
    def leader(self) -> bool:
        """Rank 0 writes the model folder, validates and logs."""
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """One GPU per rank on this node; the CPU stays the CPU."""
        return torch.device("cuda", self.local_rank) if self.on_gpu else device

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on at least one: a stop that all ranks obey together."""
        return flag if self.size == 1 else self.exchange(float(flag), dist.all_reduce, op=dist.ReduceOp.MAX) > 0

    def total(self, count: float) -> float:
        """The sum of ``count`` over all ranks (tokens trained, for the speed in the log)."""
        return count if self.size == 1 else self.exchange(float(count), dist.all_reduce)

    def from_leader(self, value: float) -> float:
        """The leader's ``value`` on every rank (the learning rate after the leader's validation)."""
        return value if self.size == 1 else self.exchange(value, dist.broadcast, src=0)

    def exchange(self, value: float, collective: Callable[..., Any], **options: Any) -> float:
        """Pass ``value`` through one collective in this rank's mailbox, the one message tensor it keeps."""
        self.mailbox.fill_(value)
        collective(self.mailbox, **options)
        return float(self.mailbox.item())

    def share(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches of an epoch: every size-th one, all ranks getting the same number."""
        usable = len(batches) - len(batches) % self.size
        return batches[self.rank : usable : self.size]

    def leave(self, patience_s: float = 5.0) -> None:
        """Leave the process group once no worker thread of the backend still holds the mailbox.

        Gloo frees each finished collective on its worker thread a moment after ``wait`` returns here. Had the
        mailbox died in Python first, that thread would need the GIL to free it, and at interpreter shutdown it
        cannot have it: the process aborted with "terminate called without an active exception" in about one
        torchrun run in 20. A fresh tensor per message had the same race at every message.
        """
        if self.size == 1 or not dist.is_initialized():
            return
        deadline = time.monotonic() + patience_s
        while self.mailbox._use_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        dist.destroy_process_group()


def join(device: torch.device) -> World:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1), or stand alone as the only rank."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local_rank, on_gpu = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), device.type == "cuda"
    mailbox = torch.zeros(1, dtype=torch.float64, device=f"cuda:{local_rank}" if on_gpu else "cpu")
    world = World(rank, size, local_rank, on_gpu, mailbox)
    if world.on_gpu:
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if world.on_gpu else "gloo")
    if not world.leader:  # the leader's log speaks for every rank
        logging.getLogger("rnnmt").setLevel(logging.WARNING)
    return world

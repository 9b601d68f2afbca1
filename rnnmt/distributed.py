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
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    on_gpu: bool = False  # NCCL, whose messages travel in GPU tensors

    @property
    def leader(self) -> bool:
        """Rank 0 writes the model folder, validates and logs."""
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """One GPU per rank on this node; the CPU stays the CPU."""
        return torch.device("cuda", self.local_rank) if self.on_gpu else device

    def message(self, value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A one-number tensor where this rank's backend can send it."""
        return torch.tensor([value], dtype=dtype, device=f"cuda:{self.local_rank}" if self.on_gpu else "cpu")

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on at least one: a stop that all ranks obey together."""
        if self.size == 1:
            return flag
        value = self.message(float(flag))
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def total(self, count: float) -> float:
        """The sum of ``count`` over all ranks (tokens trained, for the speed in the log)."""
        if self.size == 1:
            return count
        value = self.message(float(count), torch.float64)
        dist.all_reduce(value)
        return float(value.item())

    def from_leader(self, value: float) -> float:
        """The leader's ``value`` on every rank (the learning rate after the leader's validation)."""
        if self.size == 1:
            return value
        message = self.message(value, torch.float64)
        dist.broadcast(message, src=0)
        return float(message.item())

    def share(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches of an epoch: every size-th one, all ranks getting the same number."""
        usable = len(batches) - len(batches) % self.size
        return batches[self.rank : usable : self.size]

    def leave(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def join(device: torch.device) -> World:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1), or stand alone as the only rank."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")), device.type == "cuda")
    if world.on_gpu:
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if world.on_gpu else "gloo")
    if not world.leader:  # the leader's log speaks for every rank
        logging.getLogger("rnnmt").setLevel(logging.WARNING)
    return world

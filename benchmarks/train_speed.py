"""Training speed: rnnmt's batched training step against the tutorial way, measured side by side in one run.

    python benchmarks/train_speed.py [--steps 20] [--threads 2] [--sizes default reference]

rnnmt trains on padded, length-bucketed batches and runs each whole sequence through torch's fused
recurrent kernel. The tutorial way, as most RNN tutorials teach it, trains one sentence at a time with a
Python loop over every encoder and decoder step. Both train the same model (same cell, sizes and attention)
on the same sentences of 20 target tokens; each configuration runs in its own process, so its peak
resident memory is its own. Printed: target tokens per second, peak memory, and rnnmt's speed-up.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from rnnmt.batching import Batch
from rnnmt.config import ModelConfig
from rnnmt.model import build_model
from rnnmt.training import train_step

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

SIZES = {  # name: (emb, hidden, vocab, attention)
    "default": (128, 256, 1000, "luong_general"),  # rnnmt/configs/default.yaml
    "reference": (256, 512, 8000, "luong_general"),  # the peers' reference setting
}
BATCH, LENGTH = 64, 20


def random_batch(vocab: int, batch: int, generator: torch.Generator) -> Batch:
    """Sentences of 20 source and 20 target tokens drawn at random (the speed does not depend on the words)."""
    src = torch.randint(4, vocab, (batch, LENGTH), generator=generator)
    tgt = torch.randint(4, vocab, (batch, LENGTH), generator=generator)
    src[:, -1] = 3
    tgt_in = torch.cat([torch.full((batch, 1), 2), tgt[:, :-1]], 1)
    return Batch(src, torch.full((batch,), LENGTH), tgt_in, tgt)


def rnnmt_rate(cell: str, size: str, steps: int) -> float:
    """Target tokens per second of rnnmt's own training step at batch 64."""
    emb, hidden, vocab, attention = SIZES[size]
    model = build_model(ModelConfig(cell=cell, emb_size=emb, hidden_size=hidden, attention=attention), vocab, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(vocab, BATCH, generator) for _ in range(steps + 2)]
    for batch in batches[:2]:  # warm-up
        train_step(model, optimizer, batch)
    start = time.perf_counter()
    for batch in batches[2:]:
        train_step(model, optimizer, batch)
    return steps * BATCH * LENGTH / (time.perf_counter() - start)


class TutorialModel(nn.Module):
    """The same encoder-decoder written the tutorial way: cells stepped in Python, one sentence at a time."""

    def __init__(self, cell: str, emb: int, hidden: int, vocab: int, attention: bool):
        super().__init__()
        make = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}[cell]
        self.src_embed, self.tgt_embed = nn.Embedding(vocab, emb), nn.Embedding(vocab, emb)
        self.encoder, self.decoder = make(emb, hidden), make(emb, hidden)
        self.attention = nn.Linear(hidden, hidden, bias=False) if attention else None
        self.combine = nn.Linear(2 * hidden, hidden) if attention else None
        self.output = nn.Linear(hidden, vocab)
        self.lstm = cell == "lstm"

    def loss(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        state, states = None, []
        for token in src:  # one encoder step per Python iteration
            state = self.encoder(self.src_embed(token)[None], state)
            states.append(state[0] if self.lstm else state)
        memory = torch.cat(states)  # src_len x hidden
        total = torch.zeros(())
        for token, target in zip(tgt_in, tgt_out, strict=True):  # one decoder step per Python iteration
            state = self.decoder(self.tgt_embed(token)[None], state)
            s = state[0] if self.lstm else state
            if self.attention is not None:
                alpha = torch.softmax(memory @ self.attention(s)[0], 0)  # src_len
                s = self.combine(torch.cat([s, (alpha @ memory)[None]], 1))
            total = total + nn.functional.cross_entropy(self.output(s), target[None])
        return total / len(tgt_out)


def tutorial_rate(cell: str, size: str, steps: int) -> float:
    """Target tokens per second of the tutorial way: batch 1, a Python loop over time steps."""
    emb, hidden, vocab, attention = SIZES[size]
    model = TutorialModel(cell, emb, hidden, vocab, attention != "none")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = random_batch(vocab, steps + 2, torch.Generator().manual_seed(0))
    start = 0.0
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        optimizer.zero_grad()
        model.loss(batch.src[i], batch.tgt_in[i], batch.tgt_out[i]).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps * LENGTH / (time.perf_counter() - start)


def measure(job: tuple[str, str, str, int, int]) -> tuple[float, float]:
    """Run one measurement in this (fresh) process: (target tokens/s, peak resident MiB)."""
    way, cell, size, steps, threads = job
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rate = (rnnmt_rate if way == "rnnmt" else tutorial_rate)(cell, size, steps)
    return rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(job: tuple) -> tuple[float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (job,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed rnnmt steps of 64 sentences")
    parser.add_argument("--tutorial-steps", type=int, default=64, help="timed tutorial steps of 1 sentence")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sizes", nargs="+", default=["default"], choices=sorted(SIZES))
    parser.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm"], choices=["rnn", "gru", "lstm"])
    args = parser.parse_args()
    print(f"machine: {machine(args.threads)}; sentences of {LENGTH} target tokens\n")
    print("| size | cell | attention | rnnmt tok/s (batch 64) | peak MiB | tutorial tok/s (batch 1) | peak MiB"
          " | speed-up |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        for cell in args.cells:
            fast, fast_mem = in_child(("rnnmt", cell, size, args.steps, args.threads))
            slow, slow_mem = in_child(("tutorial", cell, size, args.tutorial_steps, args.threads))
            print(f"| {size} | {cell} | {SIZES[size][3]} | {fast:,.0f} | {fast_mem:,.0f} | {slow:,.0f} | "
                  f"{slow_mem:,.0f} | {fast / slow:.1f}x |", flush=True)


if __name__ == "__main__":
    main()

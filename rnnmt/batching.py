"""Batches by length buckets with a token budget, so little compute goes to padding."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnmt.vocabulary import BOS, EOS, PAD, Tokenizer, encode_source

Example = tuple[list[int], list[int]]  # (English ids + </s>, Hindi ids)


@dataclass
class Batch:
    """Padded tensors for one teacher-forced step."""

    src: Tensor  # batch x src_len: English ids, </s> last
    src_len: Tensor  # batch
    tgt_in: Tensor  # batch x tgt_len: <s> y_1 .. y_n (the decoder's previous words)
    tgt_out: Tensor  # batch x tgt_len: y_1 .. y_n </s> (what it must predict)

    @property
    def tokens(self) -> int:
        """Real (non-pad) target tokens."""
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in (self.src, self.src_len, self.tgt_in, self.tgt_out)))


def encode_pairs(pairs: list[tuple[str, str]], src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int) -> list[Example]:
    """Token ids of every pair, both sides cut to ``max_len``."""
    return [(encode_source(src_tok, en, max_len), tgt_tok.encode(hi)[: max_len - 1]) for en, hi in pairs]


def pad(rows: list[list[int]]) -> Tensor:
    """batch x longest, filled with <pad>."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(examples: list[Example]) -> Batch:
    """Pad a list of examples into a Batch."""
    src = [s for s, _ in examples]
    return Batch(pad(src), torch.tensor([len(s) for s in src]), pad([[BOS] + t for _, t in examples]),
                 pad([t + [EOS] for _, t in examples]))


def bucket_batches(examples: list[Example], batch_tokens: int, seed: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, at most ``batch_tokens`` padded tokens each.

    Sorting by length (ties broken at random) fills each batch with look-alikes; the batches are then
    shuffled. The same seed always gives the same batches, which is what lets training resume exactly.
    """
    rng = random.Random(seed)
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][1]), len(examples[i][0]), rng.random()))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(len(examples[i][0]), len(examples[i][1]) + 1)
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches

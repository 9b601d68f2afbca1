"""Training examples: each epoch's mix of the corpora, its segmentation, and batches by length with a token budget."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnmt.data import Pair, epoch_mix
from rnnmt.vocabulary import BOS, EOS, PAD, Sampling, Tokenizer, encode_source, seed_sampling

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


def encode_pairs(pairs: list[Pair], src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int,
                 sampling: Sampling | None = None) -> list[Example]:
    """Token ids of every pair, both sides cut to ``max_len``; ``sampling`` samples each segmentation."""
    return [(encode_source(src_tok, en, max_len, sampling), tgt_tok.encode(hi, sampling)[: max_len - 1])
            for en, hi in pairs]


class Epochs:
    """The training pairs of each corpus, and what every epoch makes of them.

    An epoch is a weighted mix of the corpora (``data.epoch_mix``), segmented into ids: once and for all, or
    with subword sampling anew each epoch (never the dev or translation side), then cut into batches. The
    same seed and epoch always give the same examples and batches, which is what lets training resume exactly.
    """

    def __init__(self, corpora: list[list[Pair]], weights: list[float], seed: int):
        self.corpora, self.weights, self.seed = corpora, weights, seed
        self.encoded: list[list[Example]] = []
        self.sampling: Sampling | None = None

    def mix(self, epoch: int) -> list[tuple[int, int]]:
        """(corpus, pair) indices of the epoch's examples."""
        return epoch_mix([len(pairs) for pairs in self.corpora], self.weights, self.seed * 1009 + epoch)

    def pairs(self, epoch: int) -> list[Pair]:
        return [self.corpora[c][i] for c, i in self.mix(epoch)]

    def segment(self, src: Tokenizer, tgt: Tokenizer, max_len: int, sampling: Sampling | None) -> None:
        """Use these tokenizers from now on: each corpus is encoded here once, unless every epoch samples."""
        self.src, self.tgt, self.max_len, self.sampling = src, tgt, max_len, sampling
        self.encoded = [] if sampling else [encode_pairs(pairs, src, tgt, max_len) for pairs in self.corpora]

    def examples(self, epoch: int) -> list[Example]:
        """The epoch's examples, in the order of its mix."""
        if self.sampling is None:
            return [self.encoded[c][i] for c, i in self.mix(epoch)]
        seed_sampling(self.seed * 1009 + epoch)
        return encode_pairs(self.pairs(epoch), self.src, self.tgt, self.max_len, self.sampling)


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

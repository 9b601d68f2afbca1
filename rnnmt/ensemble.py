"""Ensembles: several models that share their vocabularies, searched as one.

At every output step each model k gives its own distribution from its own state, and the ensemble's is their
mean, ``p(y_t | y_<t, x) = 1/K sum_k p_k(y_t | y_<t, x)``, as in Marian and OpenNMT-py. Greedy and beam search
run unchanged: the ensemble answers ``encode`` and ``decoder.step`` (and the greedy loop's ``advance``) like one
model, with each model's memory and state kept side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnmt.cells import State
from rnnmt.decoders import Decoder
from rnnmt.model import Seq2Seq


def mean_log_probs(logits: list[Tensor]) -> Tensor:
    """``log(1/K sum_k softmax(z_k))`` over the last axis, in fp32: the ensemble's log-probabilities."""
    stacked = torch.stack([torch.log_softmax(z.float(), dim=-1) for z in logits])  # K x ... x V
    return torch.logsumexp(stacked, dim=0) - math.log(len(logits))


@dataclass
class EnsembleMemory:
    """Each model's encoder states and keys; the mask is the source's, the same for all."""

    states: list[Tensor]
    keys: list[Tensor]
    mask: Tensor

    def select(self, index: Tensor) -> EnsembleMemory:
        return EnsembleMemory([s.index_select(0, index) for s in self.states],
                              [k.index_select(0, index) for k in self.keys], self.mask.index_select(0, index))


@dataclass
class EnsembleState:
    """Each model's decoder state (s_{t-1} of every layer) and input feed."""

    hidden: list[State]
    feed: list[Tensor | None]

    def select(self, index: Tensor) -> EnsembleState:
        hidden = [tuple(h.index_select(1, index) for h in s) if isinstance(s, tuple) else s.index_select(1, index)
                  for s in self.hidden]
        return EnsembleState(hidden, [None if f is None else f.index_select(0, index) for f in self.feed])


class EnsembleDecoder(nn.Module):
    """The models' decoders, stepped together; their outputs are the log of the mean of their probabilities."""

    def __init__(self, decoders: list[Decoder]):
        super().__init__()
        self.members = nn.ModuleList(decoders)
        self.attention = next((d.attention for d in decoders if d.attention is not None), None)

    def advance(self, y: Tensor, hidden: list[State], feed: list[Tensor | None], keys: list[Tensor],
                states: list[Tensor], mask: Tensor) -> tuple[Tensor, list[State], list[Tensor | None], Tensor | None]:
        """One step of every model from the word chosen last (batch x 1): log-probabilities batch x 1 x V.

        Attention is the mean of the models' that have it (batch x 1 x src_len), for <unk> copying and alignments.
        """
        steps = [d.advance(y, h, f, k, s, mask) for d, h, f, k, s in zip(self.members, hidden, feed, keys, states,
                                                                          strict=True)]
        alphas = [alpha for *_, alpha in steps if alpha is not None]
        return (mean_log_probs([logits for logits, *_ in steps]), [h for _, h, _, _ in steps],
                [f for _, _, f, _ in steps], torch.stack(alphas).mean(0) if alphas else None)

    def step(self, y: Tensor, state: EnsembleState, memory: EnsembleMemory) -> tuple[Tensor, EnsembleState,
                                                                                       Tensor | None]:
        log_probs, hidden, feed, alpha = self.advance(y, state.hidden, state.feed, memory.keys, memory.states,
                                                      memory.mask)
        return log_probs, EnsembleState(hidden, feed), alpha


class Ensemble(nn.Module):
    """Several trained models as one: what search, scoring and int8 quantisation need of a model."""

    def __init__(self, models: list[Seq2Seq]):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.decoder = EnsembleDecoder([m.decoder for m in models])

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[None, EnsembleMemory, EnsembleState]:
        """Every model's encoder over the same source, and each one's hand-over to its decoder."""
        memories, states = zip(*[m.encode(src, src_len)[1:] for m in self.members], strict=True)
        memory = EnsembleMemory([m.states for m in memories], [m.keys for m in memories], memories[0].mask)
        return None, memory, EnsembleState([s.hidden for s in states], [s.feed for s in states])

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced log-probabilities (batch x tgt_len x V) of the mean distribution."""
        return mean_log_probs([m(src, src_len, tgt_in) for m in self.members])

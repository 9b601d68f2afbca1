"""Attention: the cure for the seed's bottleneck ("Points to ponder", point 1).

Instead of one fixed final state, the decoder reads at every step a context vector
``ctx_t = sum_j alpha_tj h_j``, a weighted sum of all encoder states, with
``alpha_t = softmax_j(score(s_t, h_j))``. Padding positions get a score of -inf, so exactly zero weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")


class Attention(nn.Module):
    """The shared half: mask, softmax and the weighted sum. Subclasses define ``keys`` and ``scores``."""

    def keys(self, memory: Tensor) -> Tensor:
        """What the scores compare against, computed once per sentence: batch x src_len x key."""
        return memory

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """query: batch x tgt_len x hidden -> batch x tgt_len x src_len."""
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Context (batch x tgt_len x memory) and weights alpha (batch x tgt_len x src_len)."""
        scores = self.scores(query, keys).masked_fill(~mask[:, None, :], float("-inf"))
        alpha = torch.softmax(scores.float(), dim=-1).to(memory.dtype)  # batch x tgt_len x src_len
        return torch.bmm(alpha, memory), alpha


class BahdanauAttention(Attention):
    """Additive attention: ``score(s, h_j) = v^T tanh(W_s s + W_h h_j)`` (Bahdanau et al., 2015)."""

    def __init__(self, query_size: int, memory_size: int, size: int):
        super().__init__()
        self.W_s = nn.Linear(query_size, size, bias=False)
        self.W_h = nn.Linear(memory_size, size, bias=False)
        self.v = nn.Linear(size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.W_h(memory)  # batch x src_len x size

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        summed = self.W_s(query)[:, :, None, :] + keys[:, None, :, :]  # batch x tgt_len x src_len x size
        return self.v(torch.tanh(summed)).squeeze(-1)


class LuongAttention(Attention):
    """Multiplicative attention (Luong et al., 2015): ``s^T h_j`` (dot) or ``s^T W_a h_j`` (general)."""

    def __init__(self, query_size: int, memory_size: int, general: bool):
        super().__init__()
        if not general and query_size != memory_size:
            raise ValueError(f"luong_dot needs equal sizes: decoder {query_size}, encoder states {memory_size};"
                             " use luong_general or bahdanau")
        self.W_a = nn.Linear(memory_size, query_size, bias=False) if general else None

    def keys(self, memory: Tensor) -> Tensor:
        return memory if self.W_a is None else self.W_a(memory)  # batch x src_len x query

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # batch x tgt_len x src_len


def make_attention(kind: str, query_size: int, memory_size: int) -> Attention | None:
    """The attention named by ``model.attention``, or None for the seed's original model."""
    if kind == "none":
        return None
    if kind == "bahdanau":
        return BahdanauAttention(query_size, memory_size, query_size)
    if kind in ("luong_dot", "luong_general"):
        return LuongAttention(query_size, memory_size, general=kind == "luong_general")
    raise ValueError(f"model.attention is {kind!r}; allowed values: {', '.join(ATTENTIONS)}")

"""The decoder: the right column of the seed's table, steps 1 to 10."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnmt.attention import make_attention
from rnnmt.cells import State, make_recurrence
from rnnmt.config import ModelConfig
from rnnmt.vocabulary import PAD


@dataclass
class Memory:
    """The encoder states the decoder attends over, with their keys computed once."""

    states: Tensor  # batch x src_len x memory
    keys: Tensor  # batch x src_len x key
    mask: Tensor  # batch x src_len, True at real tokens

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` of the batch (to expand or reorder beams)."""
        return Memory(self.states.index_select(0, index), self.keys.index_select(0, index),
                      self.mask.index_select(0, index))


@dataclass
class DecoderState:
    """s_{t-1} of every layer, plus the attentional output fed to the next step under input feeding."""

    hidden: State  # layers x batch x hidden (a pair for the LSTM)
    feed: Tensor | None = None  # batch x 1 x hidden

    def select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` of the batch (to expand or reorder beams)."""
        if isinstance(self.hidden, tuple):
            hidden = tuple(h.index_select(1, index) for h in self.hidden)
        else:
            hidden = self.hidden.index_select(1, index)
        return DecoderState(hidden, None if self.feed is None else self.feed.index_select(0, index))


class Decoder(nn.Module):
    """``s_t = tanh(W_dec s_{t-1} + V y_t + c)`` over the previous word y_t, then ``softmax(V_out s_t + c_out)``.

    In the seed's notation the recurrence's weights are the cell's ``W`` (W_dec), ``U`` (V, on the
    embedded previous word y_t) and ``b`` (c); ``output`` holds the output equation's weights, which the
    seed also calls V and c, and which rnnmt calls V_out and c_out to tell the two apart.
    With attention, the output reads ``o_t = W_c [s_t; ctx_t] + b_c`` instead of s_t alone (see ``attend``).
    Without attention, or with Luong attention and no input feeding, teacher-forced training runs the
    whole target in one fused call; Bahdanau attention and input feeding need one step at a time.
    """

    def __init__(self, vocab_size: int, config: ModelConfig, memory_size: int):
        super().__init__()
        hidden = self.hidden_size = config.hidden_size
        self.attention_kind = config.attention
        self.input_feeding = config.input_feeding
        emb_dropout, rnn_dropout, out_dropout = config.dropouts()
        self.embed = nn.Embedding(vocab_size, config.emb_size, padding_idx=PAD)
        self.emb_dropout, self.out_dropout = nn.Dropout(emb_dropout), nn.Dropout(out_dropout)
        self.attention = make_attention(config.attention, hidden, memory_size)
        extra = memory_size if self.attention_kind == "bahdanau" else hidden if self.input_feeding else 0
        self.rnn = make_recurrence(config.cell, config.emb_size + extra, hidden, config.decoder_layers,
                                   rnn_dropout, residual=config.residual)
        self.combine = nn.Linear(hidden + memory_size, hidden) if self.attention else None
        tied = config.tie_embeddings
        self.project = nn.Linear(hidden, config.emb_size, bias=False) if tied and config.emb_size != hidden else None
        self.output = nn.Linear(config.emb_size if tied else hidden, vocab_size)  # logits = V_out s_t + c_out
        if tied:  # V_out is the embedding matrix: one tensor, learned from both ends (Press and Wolf, 2017)
            self.output.weight = self.embed.weight

    @property
    def stepwise(self) -> bool:
        """Whether each step needs the previous step's attention (Bahdanau, input feeding)."""
        return self.attention_kind == "bahdanau" or self.input_feeding

    @torch.jit.unused  # TorchScript compiles the search's steps (``advance``), never teacher forcing
    def forward(self, y: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState, Tensor | None]:
        """Logits for every position of ``y`` (batch x tgt_len) under teacher forcing."""
        if self.stepwise:
            logits, alphas = [], []
            for t in range(y.size(1)):
                step_logits, state, alpha = self.step(y[:, t : t + 1], state, memory)
                logits.append(step_logits)
                alphas.append(alpha)
            return torch.cat(logits, dim=1), state, torch.cat(alphas, dim=1)
        s, hidden = self.rnn(self.emb_dropout(self.embed(y)), state.hidden)  # batch x tgt_len x hidden
        out, alpha = self.attend(s, memory.keys, memory.states, memory.mask)
        return self.logits(out), DecoderState(hidden), alpha

    def step(self, y: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One decoder step (steps 6-8): y is batch x 1, the word chosen last; returns logits batch x 1 x V."""
        logits, hidden, feed, alpha = self.advance(y, state.hidden, state.feed, memory.keys, memory.states, memory.mask)
        return logits, DecoderState(hidden, feed), alpha

    def advance(self, y: Tensor, hidden: Tensor, feed: Tensor | None, keys: Tensor, states: Tensor,
                mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """``s_t = tanh(W_dec s_{t-1} + V y_t + c)`` (or the GRU/LSTM's), then the logits ``V_out s_t + c_out``.

        ``step`` on plain tensors, so that TorchScript can compile it: returns the logits (batch x 1 x V), s_t of
        every layer, the next step's input feed and alpha. ``hidden`` is layers x batch x hidden; for the LSTM it
        is the (h, c) pair, which runs in Python only.
        """
        x = self.emb_dropout(self.embed(y))  # batch x 1 x emb
        if self.attention is not None and self.attention_kind == "bahdanau":  # the None test lets TorchScript skip it
            top = (hidden[0] if isinstance(hidden, tuple) else hidden)[-1:]  # 1 x batch x hidden
            context, alpha = self.attention(top.transpose(0, 1), keys, states, mask)
            s, hidden = self.rnn(torch.cat([x, context], dim=-1), hidden)
            out = self.combine(torch.cat([s, context], dim=-1))
        else:
            if self.input_feeding:
                feed = feed if feed is not None else x.new_zeros(x.size(0), 1, self.hidden_size)
                x = torch.cat([x, feed], dim=-1)
            s, hidden = self.rnn(x, hidden)  # batch x 1 x hidden
            out, alpha = self.attend(s, keys, states, mask)
        return self.logits(out), hidden, out if self.input_feeding else None, alpha

    def logits(self, out: Tensor) -> Tensor:
        """``V_out o_t + c_out`` (decoder steps 7-8); tied, ``E (P o_t) + c_out``, with P where the sizes differ."""
        out = self.out_dropout(out)
        if self.project is not None:
            out = self.project(out)
        return self.output(out)

    def attend(self, s: Tensor, keys: Tensor, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """The attentional output ``o_t = W_c [s_t; ctx_t] + b_c``, or s_t itself without attention.

        Luong et al. put a tanh around it. Here that tanh saturated on real data: after 300 steps 99.8% of its
        units sat beyond +-0.95, the context no longer reached the logits and the model was stuck repeating
        one word (train loss 6.66 against the seed's 5.88). Linear, it trains as fast as the seed's model.
        """
        if self.attention is None:
            return s, None
        context, alpha = self.attention(s, keys, states, mask)
        return self.combine(torch.cat([s, context], dim=-1)), alpha

"""The recurrent cells: the seed's tanh RNN under its own names, and the field's GRU and LSTM.

All three run a whole (packed or padded, batch-first) sequence in one fused torch kernel, never a Python
loop over time steps, and all three share one calling convention: ``rnn(x, state) -> (outputs, state)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

CELLS = ("rnn", "gru", "lstm")

State = Tensor | tuple[Tensor, Tensor]  # h (layers*dirs x batch x hidden), or (h, c) for the LSTM


class SeedRNN(nn.Module):
    """The seed's recurrence, ``h_t = tanh(W h_{t-1} + U x_t + b)``, over whole sequences.

    For layer l (and direction d, counted as l * directions + d), ``W[i]`` is hidden x hidden, ``U[i]`` is
    hidden x input and ``b[i]`` is hidden: exactly the W, U and b of the seed note. It runs torch's fused
    ``rnn_tanh`` kernel, the one ``nn.RNN`` uses, with the second bias that kernel expects fixed at zero.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self.bidirectional, self.directions = bidirectional, 2 if bidirectional else 1
        sizes = [input_size if layer == 0 else hidden_size * self.directions
                 for layer in range(num_layers) for _ in range(self.directions)]
        self.W = nn.ParameterList(nn.Parameter(torch.empty(hidden_size, hidden_size)) for _ in sizes)
        self.U = nn.ParameterList(nn.Parameter(torch.empty(hidden_size, size)) for size in sizes)
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(hidden_size)) for _ in sizes)
        self.register_buffer("no_bias", torch.zeros(hidden_size), persistent=False)
        bound = 1.0 / math.sqrt(hidden_size)  # nn.RNN's default; build_model may re-initialise
        for weight in [*self.W, *self.U]:
            nn.init.uniform_(weight, -bound, bound)

    def flat_weights(self) -> list[Tensor]:
        """The weights in the order torch's kernel reads them: U, W, b and a zero bias per layer."""
        return [t for i in range(len(self.W)) for t in (self.U[i], self.W[i], self.b[i], self.no_bias)]

    def forward(self, x: Tensor | PackedSequence, h0: Tensor | None = None) -> tuple[Tensor | PackedSequence, Tensor]:
        """All hidden states h_1..h_T (the seed's encoder step 6) and the last one of each layer (encoder step 7)."""
        packed = isinstance(x, PackedSequence)
        batch = int(x.batch_sizes[0]) if packed else x.size(0)
        if h0 is None:
            h0 = x.data.new_zeros(self.num_layers * self.directions, batch, self.hidden_size)
        args = (self.flat_weights(), True, self.num_layers, self.dropout, self.training, self.bidirectional)
        if not packed:
            out, h_n = torch.rnn_tanh(x, h0, *args, True)  # batch_first
            return out, h_n
        if x.sorted_indices is not None:
            h0 = h0.index_select(1, x.sorted_indices)
        out, h_n = torch.rnn_tanh(x.data, x.batch_sizes, h0, *args)
        if x.unsorted_indices is not None:
            h_n = h_n.index_select(1, x.unsorted_indices)
        return PackedSequence(out, x.batch_sizes, x.sorted_indices, x.unsorted_indices), h_n


class ResidualStack(nn.Module):
    """Recurrent layers run one after another, each from the second on adding its input to its output.

    ``x^1 = RNN_0(x^0)``, then ``x^{l+1} = x^l + RNN_l(dropout(x^l))`` (Wu et al., 2016): the residual path lets
    the loss reach the lower layers of a deep stack directly. States are laid out as one multi-layer
    recurrence lays them out, (layers * directions) x batch x hidden, so the rest of the model cannot tell.
    """

    def __init__(self, layers: list[nn.Module], dropout: float):
        super().__init__()
        self.layers, self.dropout = nn.ModuleList(layers), nn.Dropout(dropout)
        self.directions = 2 if layers[0].bidirectional else 1

    def forward(self, x: Tensor | PackedSequence, state: State | None = None) -> tuple[Tensor | PackedSequence, State]:
        finals = []
        for index, layer in enumerate(self.layers):
            start = rows_of(state, index * self.directions, self.directions)
            if index == 0:
                x, final = layer(x, start)
            else:
                out, final = layer(map_data(x, self.dropout), start)
                x = map_data(x, lambda data, out=out: data + (out.data if isinstance(out, PackedSequence) else out))
            finals.append(final)
        if isinstance(finals[0], tuple):
            return x, tuple(torch.cat(parts) for parts in zip(*finals, strict=True))
        return x, torch.cat(finals)


def rows_of(state: State | None, start: int, count: int) -> State | None:
    """Rows ``start`` to ``start + count`` of a (layers * directions) x batch x hidden state, or of an (h, c) pair."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(part[start : start + count] for part in state)
    return state[start : start + count]


def map_data(x: Tensor | PackedSequence, fn: Callable[[Tensor], Tensor]) -> Tensor | PackedSequence:
    """``fn`` applied to a tensor, or to the data of a packed sequence (its layout kept)."""
    if isinstance(x, PackedSequence):
        return PackedSequence(fn(x.data), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    return fn(x)


def make_recurrence(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                    bidirectional: bool = False, residual: bool = False) -> nn.Module:
    """The recurrent stack for ``cell``: the seed's ``rnn``, ``gru`` or ``lstm``, residual between layers if asked."""
    if residual and num_layers > 1:
        sizes = [input_size] + [hidden_size * (2 if bidirectional else 1)] * (num_layers - 1)
        return ResidualStack([make_recurrence(cell, size, hidden_size, 1, 0.0, bidirectional) for size in sizes],
                             dropout)
    dropout = dropout if num_layers > 1 else 0.0  # torch applies it between layers only
    if cell == "rnn":
        return SeedRNN(input_size, hidden_size, num_layers, dropout, bidirectional)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
                      bidirectional=bidirectional)
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
                       bidirectional=bidirectional)
    raise ValueError(f"model.cell is {cell!r}; allowed values: {', '.join(CELLS)}")


def is_recurrent_weight(name: str) -> bool:
    """True for the hidden-to-hidden matrices (the seed's W): ``...W.0`` or ``...weight_hh_l0``."""
    parts = name.split(".")
    return parts[-1].startswith("weight_hh") or (len(parts) > 1 and parts[-2] == "W")

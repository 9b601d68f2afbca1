"""The encoder: the left column of the seed's table, steps 1 to 7."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnmt.cells import State, make_recurrence
from rnnmt.config import ModelConfig
from rnnmt.vocabulary import PAD


@dataclass
class EncoderOutput:
    """Everything the decoder may read from the encoder."""

    states: Tensor  # batch x src_len x (hidden * directions): every h_t (step 6)
    final: State  # layers x batch x (hidden * directions): the last h_T of each layer (encoder step 7)
    mask: Tensor  # batch x src_len, True at real tokens

    @property
    def size(self) -> int:
        return self.states.size(-1)


class Encoder(nn.Module):
    """Embed the English tokens and run ``h_t = tanh(W h_{t-1} + U x_t + b)`` (or a GRU/LSTM) over them.

    Step 1: embeddings. Step 2: ``encoder_layers`` x ``hidden_size``. Step 3: h0, zeros or learned.
    Steps 4-6: the recurrence over the whole input at once. Step 7: the last state, for the decoder.
    Padding is packed away, so it never changes a state.
    """

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        self.cell, self.layers = config.cell, config.encoder_layers
        self.directions = config.directions
        self.hidden_size = config.hidden_size
        emb_dropout, rnn_dropout, _ = config.dropouts()
        self.embed = nn.Embedding(vocab_size, config.emb_size, padding_idx=PAD)
        self.emb_dropout, self.rnn_dropout = nn.Dropout(emb_dropout), nn.Dropout(rnn_dropout)
        self.word_dropout = config.word_dropout
        self.rnn = make_recurrence(config.cell, config.emb_size, config.hidden_size, config.encoder_layers,
                                   rnn_dropout, config.bidirectional, config.residual)
        shape = (config.encoder_layers * self.directions, 1, config.hidden_size)
        self.h0 = nn.Parameter(torch.zeros(shape)) if config.h0 == "learned" else None

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.directions

    def initial_state(self, batch: int) -> State | None:
        """h0 for every sentence (step 3): None means zeros, or the learned h0 (c0 stays zero)."""
        if self.h0 is None:
            return None
        h0 = self.h0.expand(-1, batch, -1).contiguous()
        return (h0, torch.zeros_like(h0)) if self.cell == "lstm" else h0

    def forward(self, src: Tensor, src_len: Tensor) -> EncoderOutput:
        """src: batch x src_len token ids, src_len: batch lengths (each at least 1)."""
        x = self.emb_dropout(self.drop_words(self.embed(src)))  # batch x src_len x emb
        if bool((src_len == src.size(1)).all()):  # no padding (one sentence, say): nothing to pack, same result
            states, final = self.rnn(x, self.initial_state(src.size(0)))
        else:
            packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
            out, final = self.rnn(packed, self.initial_state(src.size(0)))
            states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        mask = torch.arange(src.size(1), device=src.device)[None, :] < src_len.to(src.device)[:, None]
        return EncoderOutput(self.rnn_dropout(states), self.join_directions(final), mask)

    def drop_words(self, x: Tensor) -> Tensor:
        """Word dropout, in training: zero the embedding of each token with probability ``word_dropout``.

        Whole words vanish, not single units (Sennrich and Zhang, 2019, after Gal and Ghahramani, 2016), so
        the model learns to translate from a source with gaps instead of leaning on every word.
        """
        if not self.training or self.word_dropout == 0.0:
            return x
        keep = torch.rand(x.shape[:2], device=x.device) >= self.word_dropout  # batch x src_len
        return x * keep[..., None].to(x.dtype)

    def join_directions(self, final: State) -> State:
        """(layers*dirs) x batch x hidden -> layers x batch x (dirs*hidden): forward and backward side by side."""
        if isinstance(final, tuple):
            return tuple(self.join_directions(part) for part in final)
        if self.directions == 1:
            return final
        layers_dirs, batch, hidden = final.shape
        return final.view(self.layers, 2, batch, hidden).permute(0, 2, 1, 3).reshape(self.layers, batch, 2 * hidden)

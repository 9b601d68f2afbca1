"""The encoder: padding never changes a state, and the last state is each sentence's own."""

import pytest
import torch

from rnnmt.config import ModelConfig
from rnnmt.encoders import Encoder


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("residual", [False, True])
def test_padding_never_changes_a_result(cell, bidirectional, residual):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, emb_size=8, hidden_size=6, encoder_layers=2, bidirectional=bidirectional,
                         dropout=0.0, h0="learned", residual=residual)
    encoder = Encoder(20, config).eval()
    sentences = [[5, 6, 7, 8, 9, 3], [4, 3], [10, 11, 12, 3]]
    src = torch.zeros(3, 6, dtype=torch.long)
    for i, s in enumerate(sentences):
        src[i, : len(s)] = torch.tensor(s)
    batched = encoder(src, torch.tensor([len(s) for s in sentences]))
    for i, s in enumerate(sentences):
        alone = encoder(torch.tensor([s]), torch.tensor([len(s)]))
        torch.testing.assert_close(batched.states[i, : len(s)], alone.states[0])
        assert batched.states[i, len(s) :].abs().sum() == 0
        final = batched.final[0] if cell == "lstm" else batched.final
        alone_final = alone.final[0] if cell == "lstm" else alone.final
        torch.testing.assert_close(final[:, i], alone_final[:, 0])
    assert batched.mask.tolist()[1] == [True, True, False, False, False, False]
    assert batched.states.size(-1) == encoder.output_size == 6 * (2 if bidirectional else 1)


def test_final_state_is_the_last_hidden_state_of_the_top_layer():
    encoder = Encoder(20, ModelConfig(cell="rnn", emb_size=4, hidden_size=5, dropout=0.0)).eval()
    out = encoder(torch.tensor([[5, 6, 7, 3]]), torch.tensor([4]))
    torch.testing.assert_close(out.final[-1, 0], out.states[0, -1])


def test_bidirectional_final_joins_forward_end_and_backward_start():
    encoder = Encoder(20, ModelConfig(cell="gru", emb_size=4, hidden_size=5, bidirectional=True,
                                      dropout=0.0)).eval()
    out = encoder(torch.tensor([[5, 6, 7, 3]]), torch.tensor([4]))
    torch.testing.assert_close(out.final[-1, 0, :5], out.states[0, -1, :5])
    torch.testing.assert_close(out.final[-1, 0, 5:], out.states[0, 0, 5:])


def test_learned_h0_is_used():
    encoder = Encoder(20, ModelConfig(cell="rnn", emb_size=4, hidden_size=5, h0="learned", dropout=0.0)).eval()
    src, length = torch.tensor([[5, 3]]), torch.tensor([2])
    before = encoder(src, length).states.clone()
    with torch.no_grad():
        encoder.h0.fill_(0.5)
    assert not torch.allclose(before, encoder(src, length).states)


def test_word_dropout_zeroes_whole_words_in_training_only():
    torch.manual_seed(0)
    encoder = Encoder(50, ModelConfig(emb_size=8, hidden_size=6, dropout=0.0, word_dropout=0.25))
    x = encoder.embed(torch.randint(4, 50, (200, 30)))  # batch x src_len x emb
    dropped = encoder.drop_words(x)
    zero = (dropped == 0).all(-1)  # whole words, never single units
    assert 0.22 < zero.float().mean() < 0.28
    assert torch.equal(dropped[~zero], x[~zero])  # the others pass unscaled
    assert torch.equal(encoder.eval().drop_words(x), x)

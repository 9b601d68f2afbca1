"""The whole model: the hand-over from encoder to decoder, and the initialisation."""

import numpy as np
import pytest
import torch
from torch import nn

from rnnmt.cells import ResidualStack, make_recurrence
from rnnmt.config import ModelConfig
from rnnmt.model import build_model, quantize
from rnnmt.model_folder import weight_arrays


def test_seed_model_hands_the_last_encoder_state_over_unchanged():
    model = build_model(ModelConfig(cell="rnn", emb_size=4, hidden_size=6, dropout=0.0), 10, 12).eval()
    encoded, _, state = model.encode(torch.tensor([[5, 6, 3]]), torch.tensor([3]))
    assert model.bridge is None
    torch.testing.assert_close(state.hidden, encoded.final)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_linear_bridge_joins_a_bidirectional_encoder(cell):
    model = build_model(ModelConfig(cell=cell, emb_size=4, hidden_size=6, bidirectional=True, encoder_layers=2,
                                    decoder_layers=1, dropout=0.0), 10, 12).eval()
    encoded, _, state = model.encode(torch.tensor([[5, 6, 3]]), torch.tensor([3]))
    h = state.hidden[0] if cell == "lstm" else state.hidden
    final = encoded.final[0] if cell == "lstm" else encoded.final
    assert h.shape == (1, 1, 6)
    torch.testing.assert_close(h[0], model.bridge(final[-1]))


def test_more_decoder_layers_than_encoder_layers_repeat_the_top_state():
    model = build_model(ModelConfig(cell="gru", emb_size=4, hidden_size=6, decoder_layers=3, dropout=0.0), 10, 12)
    encoded, _, state = model.encode(torch.tensor([[5, 3]]), torch.tensor([2]))
    assert state.hidden.shape == (3, 1, 6)
    torch.testing.assert_close(state.hidden[2], encoded.final[-1])


def test_xavier_init_makes_recurrent_blocks_orthogonal_and_zeroes_biases():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="lstm", emb_size=8, hidden_size=8, dropout=0.0), 10, 12)
    blocks = model.encoder.rnn.weight_hh_l0.detach().split(8)
    for block in blocks:
        torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)
    bias = model.encoder.rnn.bias_ih_l0.detach()
    assert torch.all(bias[8:16] == 1.0) and torch.all(bias[:8] == 0.0)  # LSTM forget gate starts open
    assert torch.all(model.decoder.embed.weight[0] == 0)  # <pad>


def test_uniform_init_stays_in_range():
    model = build_model(ModelConfig(init="uniform", init_scale=0.05, emb_size=4, hidden_size=6), 10, 12)
    assert all(p.abs().max() <= 0.05 for p in model.parameters())


def test_int8_weights_keep_the_logits_close():
    torch.manual_seed(0)
    model = build_model(ModelConfig(emb_size=16, hidden_size=32, attention="luong_general"), 50, 60).eval()
    assert quantize(model, "fp32") is model
    src, src_len, tgt = torch.randint(4, 50, (3, 7)), torch.tensor([7, 5, 2]), torch.randint(4, 60, (3, 6))
    with torch.no_grad():
        fp32 = model(src, src_len, tgt)
        small = quantize(model, "int8")
        assert type(small.decoder.output) is not torch.nn.Linear
        torch.testing.assert_close(small(src, src_len, tgt), fp32, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="allowed values: fp32, int8"):
        quantize(model, "int4")


@pytest.mark.parametrize("emb_size", [6, 4])
def test_tied_embeddings_are_one_tensor_learned_from_both_ends(emb_size):
    model = build_model(ModelConfig(emb_size=emb_size, hidden_size=6, attention="luong_general", dropout=0.0,
                                    tie_embeddings=True), 10, 12)
    decoder = model.decoder
    assert decoder.output.weight is decoder.embed.weight and decoder.embed.weight.shape == (12, emb_size)
    assert (decoder.project is None) == (emb_size == 6)
    logits = model(torch.tensor([[5, 6, 3]]), torch.tensor([3]), torch.tensor([[2, 7]]))
    logits[0, 1, 9].backward()  # reaches the matrix as the output's row 9 and as the input embedding of word 7
    assert decoder.embed.weight.grad[9].abs().sum() > 0 and decoder.embed.weight.grad[7].abs().sum() > 0
    arrays = weight_arrays(model)  # saved under both names, as two arrays: safetensors refuses shared memory
    assert (arrays["decoder.output.weight"] == arrays["decoder.embed.weight"]).all()
    assert not np.shares_memory(arrays["decoder.output.weight"], arrays["decoder.embed.weight"])


def test_a_residual_stack_adds_each_layer_s_input_to_its_output():
    torch.manual_seed(0)
    stack = make_recurrence("gru", 5, 6, 3, 0.0, residual=True).eval()
    assert isinstance(stack, ResidualStack) and len(stack.layers) == 3
    x = torch.randn(2, 4, 5)  # batch x len x input
    out, final = stack(x)
    first, h1 = stack.layers[0](x)
    second, h2 = stack.layers[1](first)
    third, h3 = stack.layers[2](first + second)
    torch.testing.assert_close(out, first + second + third)
    torch.testing.assert_close(final, torch.cat([h1, h2, h3]))  # layers x batch x hidden, as nn.GRU lays it out
    assert isinstance(make_recurrence("gru", 5, 6, 1, 0.0, residual=True), nn.GRU)  # one layer: nothing to add

"""The decoder: one fused call over the target gives exactly what step-by-step decoding gives."""

import pytest
import torch

from rnnmt.config import ModelConfig
from rnnmt.model import build_model

VARIANTS = [("rnn", "none", False), ("gru", "none", False), ("lstm", "none", False), ("gru", "luong_dot", False),
            ("gru", "luong_general", False), ("lstm", "bahdanau", False), ("gru", "luong_general", True)]


@pytest.mark.parametrize("cell, attention, input_feeding", VARIANTS)
def test_teacher_forcing_equals_one_step_at_a_time(cell, attention, input_feeding):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, emb_size=8, hidden_size=10, attention=attention, input_feeding=input_feeding,
                         dropout=0.0, decoder_layers=2, encoder_layers=2)
    model = build_model(config, 30, 40).eval()
    src, src_len = torch.tensor([[5, 6, 7, 3], [8, 3, 0, 0]]), torch.tensor([4, 2])
    y = torch.tensor([[2, 9, 10, 11], [2, 12, 13, 0]])
    _, memory, state = model.encode(src, src_len)
    whole, _, alpha = model.decoder(y, state, memory)
    steps = []
    for t in range(y.size(1)):
        logits, state, _ = model.decoder.step(y[:, t : t + 1], state, memory)
        steps.append(logits)
    torch.testing.assert_close(whole, torch.cat(steps, 1), atol=1e-5, rtol=1e-5)
    assert whole.shape == (2, 4, 40)
    assert (alpha is None) == (attention == "none")


def test_decoder_parameters_carry_the_seed_names():
    model = build_model(ModelConfig(cell="rnn", emb_size=4, hidden_size=6, dropout=0.0), 10, 12)
    names = dict(model.named_parameters())
    assert names["decoder.rnn.W.0"].shape == (6, 6)  # W_dec
    assert names["decoder.rnn.U.0"].shape == (6, 4)  # V of s_t = tanh(W_dec s_{t-1} + V y_t + c)
    assert names["decoder.rnn.b.0"].shape == (6,)  # c
    assert names["decoder.output.weight"].shape == (12, 6)  # V of softmax(V h_t + c)


def test_seed_decoder_step_is_the_equation():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="rnn", emb_size=4, hidden_size=6, dropout=0.0), 10, 12).eval()
    _, memory, state = model.encode(torch.tensor([[5, 3]]), torch.tensor([2]))
    logits, new_state, _ = model.decoder.step(torch.tensor([[2]]), state, memory)
    p = dict(model.named_parameters())
    y = p["decoder.embed.weight"][2]
    s = torch.tanh(p["decoder.rnn.W.0"] @ state.hidden[0, 0] + p["decoder.rnn.U.0"] @ y + p["decoder.rnn.b.0"])
    torch.testing.assert_close(new_state.hidden[0, 0], s)
    torch.testing.assert_close(logits[0, 0], p["decoder.output.weight"] @ s + p["decoder.output.bias"])


def test_luong_step_is_the_equations():
    """s_t from the seed's recurrence, alpha_t = softmax_j(s_t^T W_a h_j), o_t = W_c [s_t; ctx_t] + b_c."""
    torch.manual_seed(0)
    config = ModelConfig(cell="rnn", emb_size=4, hidden_size=6, attention="luong_general", dropout=0.0)
    model = build_model(config, 10, 12).eval()
    encoded, memory, state = model.encode(torch.tensor([[5, 7, 3]]), torch.tensor([3]))
    logits, new_state, alpha = model.decoder.step(torch.tensor([[2]]), state, memory)
    p = dict(model.named_parameters())
    s = new_state.hidden[0, 0]
    h = encoded.states[0]  # src_len x hidden: h_1..h_3
    weights = torch.softmax(h @ p["decoder.attention.W_a.weight"].T @ s, dim=0)
    o = p["decoder.combine.weight"] @ torch.cat([s, weights @ h]) + p["decoder.combine.bias"]
    torch.testing.assert_close(alpha[0, 0], weights)
    torch.testing.assert_close(logits[0, 0], p["decoder.output.weight"] @ o + p["decoder.output.bias"])

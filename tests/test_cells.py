"""The seed's recurrence, checked against h_t = tanh(W h_{t-1} + U x_t + b) computed by hand in NumPy."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnmt.cells import SeedRNN, is_recurrent_weight, make_recurrence


def numpy_rnn(x: np.ndarray, W: np.ndarray, U: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """The seed's equation 1, one time step at a time: x is time x input, returns time x hidden."""
    h, states = h0, []
    for x_t in x:
        h = np.tanh(W @ h + U @ x_t + b)
        states.append(h)
    return np.stack(states)


def test_seed_rnn_matches_the_equation_with_hand_set_weights():
    rnn = SeedRNN(input_size=3, hidden_size=2)
    W = np.array([[0.5, -0.3], [0.2, 0.9]])
    U = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    b = np.array([0.1, -0.2])
    with torch.no_grad():
        rnn.W[0].copy_(torch.tensor(W))
        rnn.U[0].copy_(torch.tensor(U))
        rnn.b[0].copy_(torch.tensor(b))
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5], [2.0, 0.0, 0.0], [-1.0, 1.0, 1.0]])
    h0 = np.array([0.3, -0.4])
    out, h_n = rnn(torch.tensor(x, dtype=torch.float32)[None], torch.tensor(h0, dtype=torch.float32)[None, None])
    expected = numpy_rnn(x, W, U, b, h0)
    np.testing.assert_allclose(out[0].detach().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(h_n[0, 0].detach().numpy(), expected[-1], atol=1e-6)
    # first step written out: h_1 = tanh(W h0 + U x_1 + b)
    assert out[0, 0, 0].item() == pytest.approx(np.tanh(0.5 * 0.3 - 0.3 * -0.4 + 1 - 3 + 0.1), abs=1e-6)


def test_seed_rnn_layers_and_directions_follow_the_equation():
    torch.manual_seed(0)
    rnn = SeedRNN(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(1, 5, 3)
    out, h_n = rnn(x)
    p = {name: t.detach().double().numpy() for name, t in rnn.named_parameters()}
    h0 = np.zeros(4)
    fwd = numpy_rnn(x[0].double().numpy(), p["W.0"], p["U.0"], p["b.0"], h0)
    bwd = numpy_rnn(x[0].double().numpy()[::-1], p["W.1"], p["U.1"], p["b.1"], h0)[::-1]
    layer1 = np.concatenate([fwd, bwd], axis=1)
    top_fwd = numpy_rnn(layer1, p["W.2"], p["U.2"], p["b.2"], h0)
    np.testing.assert_allclose(out[0, :, :4].detach().numpy(), top_fwd, atol=1e-5)
    assert h_n.shape == (4, 1, 4)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_packed_sequences_give_the_states_of_each_sentence_alone(cell):
    torch.manual_seed(0)
    rnn = make_recurrence(cell, 3, 5, num_layers=2, dropout=0.0).eval()
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 2, 4])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True)
    h_n = final[0] if isinstance(final, tuple) else final
    for i, n in enumerate(lengths.tolist()):
        alone, alone_final = rnn(x[i : i + 1, :n])
        alone_h = alone_final[0] if isinstance(alone_final, tuple) else alone_final
        torch.testing.assert_close(out[i, :n], alone[0])
        torch.testing.assert_close(h_n[:, i], alone_h[:, 0])


def test_unknown_cell_names_the_allowed_values():
    with pytest.raises(ValueError, match="allowed values: rnn, gru, lstm"):
        make_recurrence("lstmm", 3, 4, 1, 0.0)


def test_recurrent_weights_are_recognised_by_name():
    assert is_recurrent_weight("encoder.rnn.W.0")
    assert is_recurrent_weight("decoder.rnn.weight_hh_l1")
    assert not is_recurrent_weight("encoder.rnn.U.0")
    assert not is_recurrent_weight("decoder.rnn.weight_ih_l0")

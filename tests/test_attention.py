"""Attention: weights are a distribution over real source tokens, and padding gets exactly zero."""

import pytest
import torch

from rnnmt.attention import make_attention


@pytest.mark.parametrize("kind", ["bahdanau", "luong_dot", "luong_general"])
def test_weights_sum_to_one_and_padding_gets_zero(kind):
    torch.manual_seed(0)
    attention = make_attention(kind, 6, 6)
    memory = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    query = torch.randn(2, 3, 6)
    context, alpha = attention(query, attention.keys(memory), memory, mask)
    assert alpha.shape == (2, 3, 5) and context.shape == (2, 3, 6)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, 3))
    assert torch.all(alpha[1, :, 2:] == 0)
    torch.testing.assert_close(context, torch.bmm(alpha, memory))


def test_padding_content_cannot_leak_into_the_context():
    attention = make_attention("luong_general", 4, 4)
    memory = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    query = torch.randn(1, 2, 4)
    context, _ = attention(query, attention.keys(memory), memory, mask)
    memory[0, 2] = 1e6
    again, _ = attention(query, attention.keys(memory), memory, mask)
    torch.testing.assert_close(context, again)


def test_luong_dot_score_is_the_dot_product():
    attention = make_attention("luong_dot", 2, 2)
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    _, alpha = attention(torch.tensor([[[2.0, 0.0]]]), memory, memory, torch.tensor([[True, True]]))
    expected = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    torch.testing.assert_close(alpha[0, 0], expected)


def test_unknown_and_mismatched_attention_are_errors():
    assert make_attention("none", 4, 4) is None
    with pytest.raises(ValueError, match="allowed values: none, bahdanau, luong_dot, luong_general"):
        make_attention("luong", 4, 4)
    with pytest.raises(ValueError, match="luong_dot needs equal sizes"):
        make_attention("luong_dot", 4, 8)

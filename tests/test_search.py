"""Search: greedy is the seed's argmax, compiled or not; beam 1 is greedy; wider beams find better-scored output."""

import pytest
import torch

from rnnmt.batching import pad
from rnnmt.config import CorpusConfig, ModelConfig, SearchConfig
from rnnmt.data import read_corpus
from rnnmt.model import build_model, quantize
from rnnmt.search import GreedyLoop, beam_search, best_extensions, greedy_loop, greedy_search, length_limits
from rnnmt.translator import Translator
from rnnmt.vocabulary import BOS, EOS, encode_source

HELD_OUT = [en for en, _ in read_corpus(CorpusConfig(bundled="test"))][:60]


def close(a: float, b: float) -> bool:
    """Equal up to float32 rounding of a sum over many steps."""
    return abs(a - b) <= 1e-4 + 1e-5 * abs(b)


def batch_of(translator: Translator, sentences: list[str]):
    ids = [encode_source(translator.src, s, 400) for s in sentences]
    return pad(ids), torch.tensor([len(i) for i in ids])


def test_greedy_picks_the_argmax_at_every_step(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    model = translator.model
    src, src_len = batch_of(translator, HELD_OUT[:20])
    limits = length_limits(src_len, SearchConfig(max_len_ratio=3.0, max_len=200))
    ended = [i for i, h in enumerate(greedy_search(model, src, src_len)) if len(h.ids) + 1 < limits[i]]
    assert ended, "some sentence should end with </s> rather than at the length limit"
    src, src_len = batch_of(translator, [HELD_OUT[ended[0]]])
    (hypothesis,) = greedy_search(model, src, src_len)
    _, memory, state = model.encode(src, src_len)
    y, total = torch.tensor([[BOS]]), 0.0
    with torch.no_grad():
        for expected in hypothesis.ids + [EOS]:
            logits, state, _ = model.decoder.step(y, state, memory)
            log_probs = torch.log_softmax(logits[0, -1], -1)
            assert int(log_probs.argmax()) == expected
            total += float(log_probs[expected])
            y = torch.tensor([[expected]])
    assert close(total, hypothesis.log_prob)


def same_hypotheses(found: list, expected: list) -> None:
    for f, e in zip(found, expected, strict=True):
        assert f.ids == e.ids
        assert close(f.log_prob, e.log_prob)
        if e.attention is None:
            assert f.attention is None
        else:
            torch.testing.assert_close(f.attention, e.attention)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_compiled_greedy_loop_translates_as_the_python_one(tiny_model, precision):
    translator = Translator.load(tiny_model, "cpu", precision)
    assert isinstance(translator.greedy, torch.jit.ScriptModule)  # the tiny model is a GRU: compiled
    src, src_len = batch_of(translator, HELD_OUT)
    compiled = greedy_search(translator.model, src, src_len, loop=translator.greedy)
    assert any(h.ids for h in compiled)
    same_hypotheses(compiled, greedy_search(translator.model, src, src_len))


@pytest.mark.parametrize("attention,input_feeding", [("none", False), ("luong_dot", False), ("bahdanau", False),
                                                     ("luong_general", True)])
def test_every_gru_decoder_compiles_its_greedy_loop_and_runs_it_alike(attention, input_feeding):
    torch.manual_seed(0)
    config = ModelConfig(emb_size=16, hidden_size=24, attention=attention, input_feeding=input_feeding,
                         bidirectional=attention != "luong_dot", decoder_layers=2)
    model = build_model(config, 40, 50).eval()
    src, src_len = torch.randint(4, 40, (3, 6)), torch.tensor([6, 4, 1])  # untrained: runs to the length limits
    loop = greedy_loop(model.decoder)
    assert isinstance(loop, torch.jit.ScriptModule)
    same_hypotheses(greedy_search(model, src, src_len, loop=loop), greedy_search(model, src, src_len))


def test_a_loop_torchscript_refuses_runs_in_python_with_a_warning(monkeypatch, caplog):
    def no_source(module):
        raise OSError("could not get source code")

    monkeypatch.setattr(torch.jit, "script", no_source)
    model = build_model(ModelConfig(emb_size=8, hidden_size=8), 20, 20).eval()
    assert type(greedy_loop(model.decoder)) is GreedyLoop
    assert "greedy search runs in Python, uncompiled: could not get source code" in caplog.text


def test_other_cells_keep_the_python_loop():
    for cell in ("lstm", "rnn"):
        model = quantize(build_model(ModelConfig(cell=cell, emb_size=8, hidden_size=8), 20, 20).eval(), "int8")
        assert type(greedy_loop(model.decoder)) is GreedyLoop


def test_beam_size_one_is_exactly_greedy(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT)
    greedy = greedy_search(translator.model, src, src_len)
    beam = beam_search(translator.model, src, src_len, SearchConfig(beam_size=1))
    for g, (b,) in zip(greedy, beam, strict=True):
        assert g.ids == b.ids
        assert close(g.log_prob, b.log_prob)
        torch.testing.assert_close(g.attention, b.attention)


def test_beam_finds_a_model_score_at_least_as_high_as_greedy(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT)
    greedy = greedy_search(translator.model, src, src_len)
    beam = beam_search(translator.model, src, src_len, SearchConfig(beam_size=5, length_penalty=0.0))
    for g, (b,) in zip(greedy, beam, strict=True):
        assert b.log_prob >= g.log_prob or close(b.log_prob, g.log_prob)


def test_n_best_lists_are_sorted_distinct_and_scored_like_score(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT[:8])
    results = beam_search(translator.model, src, src_len, SearchConfig(beam_size=4, n_best=4))
    compared = 0
    for sentence, n_best in zip(HELD_OUT[:8], results, strict=True):
        assert len(n_best) == 4
        assert [h.score for h in n_best] == sorted((h.score for h in n_best), reverse=True)
        assert len({tuple(h.ids) for h in n_best}) == 4
        hindi = translator.tgt.decode(n_best[0].ids)
        if translator.tgt.encode(hindi) == n_best[0].ids:  # the text re-encodes to the same pieces
            assert abs(translator.score([sentence], [hindi])[0] - n_best[0].log_prob) < 1e-3
            compared += 1
    assert compared >= 4, "too few best texts re-encode to their own pieces for the score to be compared"


def test_attention_rows_belong_to_output_tokens(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT[:4])
    results = beam_search(translator.model, src, src_len, SearchConfig(beam_size=3))
    for (h,), length in zip(results, src_len, strict=True):
        assert h.attention.shape == (len(h.ids) + 1, src.size(1))
        torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.ids) + 1))
        assert torch.all(h.attention[:, int(length) :] == 0)


def test_length_limits_grow_with_the_source_and_stop_at_the_cap():
    limits = length_limits(torch.tensor([1, 10, 500]), SearchConfig(max_len_ratio=2.0, max_len=200))
    assert limits.tolist() == [7, 25, 200]


def test_ranking_each_rows_best_words_equals_ranking_every_word():
    torch.manual_seed(0)
    batch, k, vocab = 4, 3, 50
    log_probs = torch.randn(batch * k, vocab).log_softmax(-1)
    scores = torch.randn(batch, k)
    scores[0, 1:] = float("-inf")  # a first step: only one live beam
    origin, token, best = best_extensions(scores, log_probs, k)
    full, index = (scores.view(-1, 1) + log_probs).view(batch, k * vocab).topk(k, dim=1)
    torch.testing.assert_close(best, full)
    assert origin.tolist() == (index // vocab + torch.arange(batch)[:, None] * k).view(-1).tolist()
    assert token.tolist() == (index % vocab).view(-1).tolist()

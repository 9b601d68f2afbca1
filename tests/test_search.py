"""Search: greedy is the seed's argmax, compiled or not; beam 1 is greedy; wider beams find better-scored output;
constrained beam search (dynamic beam allocation) puts every constraint in every output, within the length limit."""

import pytest
import torch

from rnnmt.batching import pad
from rnnmt.config import CorpusConfig, ModelConfig, SearchConfig
from rnnmt.data import read_corpus
from rnnmt.glossary import word_glue
from rnnmt.model import build_model, quantize
from rnnmt.search import (
    Constraints,
    GreedyLoop,
    Progress,
    advance,
    bank_sizes,
    beam_search,
    best_extensions,
    constrained_beam_search,
    dba_step,
    greedy_loop,
    greedy_search,
    length_limits,
)
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


def test_banks_share_the_beam_and_hand_on_the_slots_they_cannot_fill():
    top = torch.tensor([2])  # two constraint tokens: banks 0, 1 and 2
    assert bank_sizes(torch.tensor([[9, 9, 9]]), top, 5).tolist() == [[1, 1, 3]]  # 5 // 3 each, the rest on top
    assert bank_sizes(torch.tensor([[9, 0, 1]]), top, 5).tolist() == [[4, 0, 1]]  # spare slots fall to lower banks
    assert bank_sizes(torch.tensor([[0, 9, 0]]), top, 5).tolist() == [[0, 5, 0]]  # bank 0's go round to the top
    assert bank_sizes(torch.tensor([[1, 1, 1]]), top, 5).tolist() == [[1, 1, 1]]  # fewer candidates than beams
    assert bank_sizes(torch.tensor([[5, 2, 0, 0]]), torch.tensor([3]), 1).tolist() == [[0, 1, 0, 0]]  # beam 1
    both = bank_sizes(torch.tensor([[9, 9, 9], [9, 0, 0]]), torch.tensor([2, 0]), 5)  # each sentence its banks
    assert both.tolist() == [[1, 1, 3], [5, 0, 0]]


def test_advance_tracks_met_constraints_and_the_one_in_progress():
    cons = Constraints.of([[[5, 6], [7]]] * 2, torch.device("cpu"))  # a two-token and a one-token constraint
    progress = Progress.start(2, 2, torch.device("cpu"))
    progress.inside[1], progress.done[1] = 0, 1  # row 1 has produced 5, the first token of [5, 6]
    after = advance(progress, cons, torch.tensor([[5, 7, 4], [6, 5, 4]]))
    assert after.met.tolist() == [[[False, False], [False, True], [False, False]],
                                  [[True, False], [False, False], [False, False]]]
    assert after.inside.tolist() == [[0, -1, -1], [-1, 0, -1]]  # 5 after 5 starts [5, 6] again; 4 leaves it
    assert after.done.tolist() == [[1, 0, 0], [0, 1, 0]]
    assert after.ended.tolist() == [[False, True, False], [True, False, False]]
    assert after.met_tokens(cons.lengths[:, None, :]).tolist() == [[1, 1, 0], [2, 1, 0]]  # the banks


def test_one_dba_step_keeps_the_best_of_each_bank_where_beam_search_keeps_the_best():
    """One sentence, beam 3, one constraint [6, 7]: beam 0 has met nothing, beam 1 has produced 6, beam 2 is empty."""
    cons = Constraints.of([[[6, 7]]] * 3, torch.device("cpu"))
    progress = Progress.start(3, 1, torch.device("cpu"))
    progress.inside[1], progress.done[1] = 0, 1
    scores = torch.tensor([[0.0, -1.0, float("-inf")]])
    log_probs = torch.full((3, 8), -10.0)
    log_probs[0, [4, 5, 1, 6]] = torch.tensor([-0.125, -0.5, -3.0, -6.0])  # 6 is not among beam 0's 3 best words
    log_probs[1, [4, 5, 7, 6]] = torch.tensor([-0.2, -0.3, -4.5, -7.0])  # 7, which goes on with [6, 7], is
    origin, token, best = best_extensions(scores, log_probs, 3)
    assert (origin.tolist(), token.tolist()) == ([0, 0, 1], [4, 5, 4])  # plain beam search drops the constraint
    origin, token, best, after = dba_step(scores, log_probs, progress, cons, torch.tensor([2]), 3)
    assert (origin.tolist(), token.tolist(), best.tolist()) == ([0, 1, 0], [4, 7, 6], [[-0.125, -5.5, -6.0]])
    assert after.met_tokens(cons.lengths).tolist() == [0, 2, 1]  # banks 0, 2 and 1: one beam each
    assert after.met[:, 0].tolist() == [False, True, False] and after.inside.tolist() == [-1, -1, 0]


def contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i : i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def test_every_output_holds_every_constraint_within_its_length_limit(tiny_model, one_thread):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT[:30])
    rng = torch.Generator().manual_seed(0)
    glue = torch.tensor(word_glue(translator.tgt))  # no piece that goes on with a word after a constraint
    for k, max_len in ((1, 200), (3, 9), (5, 14), (5, 200)):
        search = SearchConfig(beam_size=k, n_best=k, max_len=max_len)
        limits = length_limits(src_len, search).tolist()
        constraints = []
        for limit in limits:  # up to 3 constraints of 1-3 random words, as many as fit
            sequences = [torch.randint(4, translator.tgt.size, (int(n),), generator=rng).tolist()
                         for n in torch.randint(1, 4, (int(torch.randint(0, 4, (1,), generator=rng)),), generator=rng)]
            while sum(map(len, sequences)) > limit - 1:
                sequences.pop()
            constraints.append(sequences)
        results = beam_search(translator.model, src, src_len, search, translator.greedy, constraints, glue)
        for n_best, sequences, limit in zip(results, constraints, limits, strict=True):
            assert n_best and [h.score for h in n_best] == sorted((h.score for h in n_best), reverse=True)
            for h in n_best:
                assert len(h.ids) + 1 <= limit and all(contains(h.ids, ids) for ids in sequences), (k, max_len)


def test_constraints_that_fill_the_length_limit_are_the_whole_output(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT[:6])
    search = SearchConfig(beam_size=4, n_best=4, max_len=6)  # 5 words and </s> at most
    results = beam_search(translator.model, src, src_len, search, constraints=[[[40, 41], [42, 43, 44]]] * 6)
    for n_best in results:
        assert {tuple(h.ids) for h in n_best} <= {(40, 41, 42, 43, 44), (42, 43, 44, 40, 41)}
    with pytest.raises(ValueError, match="sentence 0: its constraints need 6 tokens, but its output may have 5 "):
        constrained_beam_search(translator.model, src, src_len, search, [[[40, 41, 42], [43, 44, 45]]] * 6)


def test_dba_without_constraints_is_exactly_beam_search(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    src, src_len = batch_of(translator, HELD_OUT[:30])
    for k in (1, 4):
        search = SearchConfig(beam_size=k, n_best=k)
        plain = beam_search(translator.model, src, src_len, search, translator.greedy)
        dba = constrained_beam_search(translator.model, src, src_len, search, [[]] * 30, translator.greedy)
        for p, d in zip(plain, dba, strict=True):
            same_hypotheses(d, p)

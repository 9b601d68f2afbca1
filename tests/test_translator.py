"""Translator: the Python API over a model folder."""

import math

import pytest
import torch

from rnnmt.search import Hypothesis
from rnnmt.translator import Translator, word_alignment
from rnnmt.vocabulary import SPECIALS, UNK, WordTokenizer


def test_translate_returns_hindi_for_a_list_and_a_string(tiny_model):
    translator = Translator.load(tiny_model)
    out = translator.translate(["Can you call a taxi for me?", "Flowers bloom in spring."])
    assert out == ["क्या आप मेरे लिए टैक्सी बुला सकते हैं?", "वसंत में फूल खिलते हैं।"]  # memorised training pairs
    assert translator.translate("Flowers bloom in spring.") == out[1]


def test_empty_string_gives_empty_string(tiny_model):
    translator = Translator.load(tiny_model)
    assert translator.translate(["", "   ", "Flowers bloom in spring."])[:2] == ["", ""]
    assert translator.translate("") == ""


def test_input_far_longer_than_training_is_cut_not_crashed(tiny_model):
    translator = Translator.load(tiny_model)
    translator.config.search.max_src_len = 50
    result = translator.translate_full(["the weather is nice today " * 400])[0]
    assert len(result.src_pieces) == 50
    assert len(result.tgt_pieces) <= 50 * 3 + 5


def test_order_is_kept_across_length_sorted_batches(tiny_model):
    translator = Translator.load(tiny_model)
    sentences = ["Flowers bloom in spring.", "Can you call a taxi for me?", "Hi."] * 30
    translator.config.search.batch_size = 7
    batched = translator.translate(sentences)
    assert batched == [translator.translate(s) for s in sentences[:3]] * 30


def test_stream_matches_list(tiny_model):
    translator = Translator.load(tiny_model)
    sentences = ["Flowers bloom in spring.", "Hi.", "It is very hot today."]
    assert list(translator.translate_stream(iter(sentences), chunk=2)) == translator.translate(sentences)


def test_full_result_carries_tokens_attention_and_n_best(tiny_model):
    translator = Translator.load(tiny_model)
    result, _ = translator.translate_full(["Flowers bloom in spring.", "Can you call a taxi for me? " * 3],
                                          beam_size=4, n_best=3)
    assert result.src_pieces[-1] == "</s>" and result.tgt_pieces[-1] == "</s>"
    assert len(result.attention) == len(result.tgt_pieces)
    assert all(len(row) == len(result.src_pieces) and math.isclose(sum(row), 1, rel_tol=1e-5)
               for row in result.attention)
    assert len(result.n_best) == 3 and result.n_best[0][0] == result.text


def test_score_prefers_the_reference_to_nonsense(tiny_model):
    translator = Translator.load(tiny_model)
    good, bad = translator.score(["Flowers bloom in spring."] * 2, ["वसंत में फूल खिलते हैं।", "हैं फूल वसंत।"])
    assert good > bad and good < 0


def test_scores_come_back_in_input_order_whatever_the_batches(tiny_model):
    translator = Translator.load(tiny_model)
    sources = ["Flowers bloom in spring and the birds sing in the old trees.", "Hello.", "How are you?"]
    targets = ["वसंत में फूल खिलते हैं और पुराने पेड़ों पर पक्षी गाते हैं।", "नमस्ते।", "आप कैसे हैं?"]
    alone = [translator.score([en], [hi])[0] for en, hi in zip(sources, targets, strict=True)]
    translator.config.search.batch_size = 2  # the two short pairs share a batch, the long one comes last
    together = translator.score(sources, targets)
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5) for a, b in zip(together, alone, strict=True))
    assert len(set(alone)) == 3


def test_unknown_output_copies_the_most_attended_source_word(tiny_model):
    translator = Translator.load(tiny_model)
    from rnnmt.search import Hypothesis
    from rnnmt.vocabulary import UNK

    src_pieces = translator.src.pieces("Ramesh went home") + ["</s>"]
    rows = [[0.0] * len(src_pieces) for _ in range(2)]
    rows[0][0] = 1.0  # the <unk> looked at the first piece, part of "Ramesh"
    import torch

    hypothesis = Hypothesis([UNK], -1.0, -1.0, torch.tensor(rows))
    assert translator.detokenize(hypothesis, src_pieces) == "Ramesh"


def test_int8_weights_translate_much_like_fp32_and_only_on_the_cpu(tiny_model):
    # training sentences: the tiny model is sure of them, so int8 rounding cannot flip a word
    sentences = ["Can you call a taxi for me?", "Flowers bloom in spring.", "My boss is on leave today."]
    fp32, int8 = Translator.load(tiny_model, "cpu"), Translator.load(tiny_model, "cpu", "int8")
    assert fp32.translate(sentences) == int8.translate(sentences)
    with pytest.raises(ValueError, match="CPU only"):
        Translator(fp32.model, fp32.config, fp32.src, fp32.tgt, device="cuda", precision="int8")


@pytest.mark.parametrize("call, error, message", [
    (lambda t: t.translate(None), TypeError, "texts must be a str or a list of str, got NoneType"),
    (lambda t: t.translate([1, 2]), TypeError, r"texts\[0\] must be a str, got int"),
    (lambda t: t.translate(b"Hello."), TypeError, "texts must be a str or a list of str, got bytes"),
    (lambda t: t.translate(["Hi.", "\ud800"]), ValueError, r"texts\[1\] is not valid Unicode: a lone surrogate"),
    (lambda t: t.translate("Hi.", beam_size=-1), ValueError, "beam_size must be from 1 to"),
    (lambda t: t.translate("Hi.", beam_size=10**6), ValueError, r"from 1 to \d+ \(the size of the target vocab"),
    (lambda t: t.translate("Hi.", beam_size=2.0), TypeError, "beam_size must be an int, got float"),
    (lambda t: t.translate_full("Hi."), TypeError, "texts must be a list of str, got str"),
    (lambda t: t.translate_full(["Hi."], n_best=0), ValueError, "n_best must be at least 1, got 0"),
    (lambda t: t.translate_full(["Hi."], beam_size=2, n_best=3), ValueError, r"n_best \(3\) cannot exceed beam_size"),
    (lambda t: t.translate_stream(None), TypeError, "lines must be an iterable of str, got NoneType"),
    (lambda t: t.translate_stream(["Hi."], beam_size=0), ValueError, "beam_size must be from 1"),
    (lambda t: list(t.translate_stream(["Hi.", "Hi.", 3], chunk=2)), TypeError, r"lines\[2\] must be a str, got int"),
    (lambda t: t.score(["Hi."], None), TypeError, "targets must be a list of str, got NoneType"),
    (lambda t: t.score(["\ud800"], ["x"]), ValueError, r"sources\[0\] is not valid Unicode"),
])
def test_wrong_arguments_are_refused_at_the_door(tiny_model, call, error, message):
    with pytest.raises(error, match=message):
        call(Translator.load(tiny_model, "cpu"))


def test_the_configs_n_best_follows_a_smaller_beam(tiny_model):
    translator = Translator.load(tiny_model, "cpu")
    translator.config.search.beam_size, translator.config.search.n_best = 4, 3
    assert len(translator.translate_full(["Hi."])[0].n_best) == 3
    assert len(translator.translate_full(["Hi."], beam_size=1)[0].n_best) == 1


def test_a_copied_word_gets_no_subword_marker_with_word_vocabularies(tiny_model):
    tiny = Translator.load(tiny_model, "cpu")
    src, tgt = WordTokenizer([*SPECIALS, "I", "love"]), WordTokenizer([*SPECIALS, "मुझे", "पसंद", "है"])
    translator = Translator(tiny.model, tiny.config, src, tgt)
    rows = [[0.0, 0.0, 1.0, 0.0] for _ in range(4)]  # every step looked at "Zxqwv"
    hypothesis = Hypothesis([4, UNK, 5, 6], -1.0, -1.0, torch.tensor(rows))
    assert translator.detokenize(hypothesis, src.pieces("I love Zxqwv") + ["</s>"]) == "मुझे Zxqwv पसंद है"


def test_word_alignment_sums_pieces_into_words_and_takes_the_most_attended():
    # English pieces "▁The" "▁cat" "s" </s> are words 0 1 1; Hindi "▁बि" "ल्लि" "याँ" "▁" "हैं" </s> are 0 0 0 1 1
    attention = [[0.1, 0.6, 0.2, 0.1],
                 [0.5, 0.2, 0.2, 0.1],  # alone this piece looks at "The", but its word's pieces sum to "cats"
                 [0.0, 0.3, 0.6, 0.1],
                 [0.7, 0.1, 0.1, 0.1],
                 [0.6, 0.2, 0.1, 0.1],
                 [0.0, 0.0, 0.0, 1.0]]
    assert word_alignment(attention, [0, 1, 1], [0, 0, 0, 1, 1]) == "1-0 0-1"
    assert word_alignment([[1.0]], [], []) == ""


def test_alignments_name_real_words_of_both_sides(tiny_model):
    sentences = ["How are you?", "Please open the window.", "I like tea very much."]
    for result in Translator.load(tiny_model).translate_full(sentences, beam_size=3):
        pairs = [tuple(map(int, pair.split("-"))) for pair in result.alignment.split()]
        assert [j for _, j in pairs] == list(range(len(result.text.split())))  # every Hindi word, once, in order
        assert all(0 <= i < len(result.source.split()) for i, _ in pairs)

"""Translator: the Python API over a model folder."""

import math

import pytest

from rnnmt.translator import Translator


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

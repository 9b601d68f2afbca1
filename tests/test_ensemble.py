"""Ensembles: the mean of the models' probabilities at every step; one model alone is itself."""

import math
import shutil

import pytest
import torch

from rnnmt.batching import pad
from rnnmt.config import SearchConfig
from rnnmt.ensemble import Ensemble
from rnnmt.errors import ModelFolderError
from rnnmt.model_folder import read_model_folder, save_tokenizers, save_weights
from rnnmt.search import beam_search, greedy_search
from rnnmt.translator import Translator
from rnnmt.vocabulary import BOS, encode_source

SENTENCES = ["How are you?", "Please open the window.", "Where is the railway station?", "I like tea."]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sibling(tiny_model, tmp_path_factory):
    """tiny_model's folder with its weights jolted: another model with the same vocabularies."""
    folder = tmp_path_factory.mktemp("ensemble") / "sibling"
    shutil.copytree(tiny_model, folder)
    model = Translator.load(tiny_model, "cpu").model
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    save_weights(folder, model)
    return folder


def sources(translator: Translator):
    ids = [encode_source(translator.src, s, 400) for s in SENTENCES]
    return pad(ids), torch.tensor([len(i) for i in ids])


def test_an_ensemble_of_one_model_is_that_model(tiny_model):
    alone = Translator.load(tiny_model, "cpu")
    ensemble = Ensemble([alone.model])
    src, src_len = sources(alone)
    for found, expected in ((greedy_search(ensemble, src, src_len), greedy_search(alone.model, src, src_len)),
                            ([h for (h,) in beam_search(ensemble, src, src_len, SearchConfig(beam_size=4))],
                             [h for (h,) in beam_search(alone.model, src, src_len, SearchConfig(beam_size=4))])):
        for f, e in zip(found, expected, strict=True):
            assert f.ids == e.ids and f.log_prob == pytest.approx(e.log_prob, abs=1e-4)
            torch.testing.assert_close(f.attention, e.attention)


def test_two_models_step_with_the_mean_of_their_probabilities(tiny_model, sibling):
    a, b = Translator.load(tiny_model, "cpu").model, Translator.load(sibling, "cpu").model
    ensemble = Ensemble([a, b]).eval()
    src, src_len = sources(Translator.load(tiny_model, "cpu"))
    y = torch.full((len(SENTENCES), 1), BOS)
    with torch.no_grad():
        _, memory, state = ensemble.encode(src, src_len)
        log_probs, _, alpha = ensemble.decoder.step(y, state, memory)
        by_hand = []
        for model in (a, b):
            _, m, s = model.encode(src, src_len)
            logits, _, member_alpha = model.decoder.step(y, s, m)
            by_hand.append((torch.softmax(logits.float(), -1), member_alpha))
    torch.testing.assert_close(log_probs.exp(), (by_hand[0][0] + by_hand[1][0]) / 2)
    torch.testing.assert_close(alpha, (by_hand[0][1] + by_hand[1][1]) / 2)
    assert not torch.allclose(by_hand[0][0], by_hand[1][0]), "the two models should differ"


def test_an_ensemble_translates_and_scores_through_the_translator(tiny_model, sibling):
    pair = Translator.load([tiny_model, sibling], "cpu")
    assert isinstance(pair.model, Ensemble) and pair.metadata["ensemble"] == [str(tiny_model), str(sibling)]
    assert pair.translate(SENTENCES, beam_size=1) == pair.translate(SENTENCES, beam_size=1)
    assert all(pair.translate(SENTENCES, beam_size=3))
    twice = Translator.load([tiny_model, tiny_model], "cpu")  # the same model twice: the same as once
    once = Translator.load(tiny_model, "cpu")
    assert twice.translate(SENTENCES, beam_size=3) == once.translate(SENTENCES, beam_size=3)
    hindi = once.translate(SENTENCES, beam_size=1)
    assert twice.score(SENTENCES, hindi) == pytest.approx(once.score(SENTENCES, hindi), abs=1e-4)
    scores = pair.score(SENTENCES, hindi)
    assert all(math.isfinite(s) and s < 0 for s in scores)
    with pytest.raises(ValueError, match="explain walks one model"):
        pair.explain("How are you?")


def test_models_with_other_vocabularies_are_refused(tiny_model, sibling, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(sibling, other)
    parts = read_model_folder(tiny_model)
    save_tokenizers(other, parts.tgt, parts.src)  # swapped: same sizes, other pieces
    with pytest.raises(ModelFolderError, match="its vocabularies differ from .*an ensemble's models must share them"):
        Translator.load([tiny_model, other], "cpu")

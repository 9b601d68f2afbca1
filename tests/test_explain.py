"""The explained walk through the seed's table: its numbers are the model's, and they rebuild the translation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from rnnmt.__main__ import main
from rnnmt.config import config_from_dict
from rnnmt.explain import explain
from rnnmt.model import build_model
from rnnmt.model_folder import read_model_folder, save_config, save_metadata, save_tokenizers, save_weights
from rnnmt.reference import ReferenceTranslator
from rnnmt.search import Hypothesis
from rnnmt.translator import Translator
from rnnmt.vocabulary import BOS, EOS

SENTENCES = ["Where is the station?", "He reads a book every day."]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seed_model(tiny_model, tmp_path_factory) -> Path:
    """The seed's model (rnn cell, no attention), untrained but jolted off its init, with tiny_model's vocabularies."""
    parts = read_model_folder(tiny_model)
    config = config_from_dict(tiny_config(model={"cell": "rnn", "attention": "none"}))
    torch.manual_seed(1)
    model = build_model(config.model, parts.src.size, parts.tgt.size)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp("explain") / "seed"
    save_config(folder, config)
    save_tokenizers(folder, parts.src, parts.tgt)
    save_weights(folder, model)
    save_metadata(folder, {})
    return folder


@pytest.fixture(params=["tiny_model", "seed_model"])
def folder(request) -> Path:
    """The trained tiny model (GRU, luong_general) and the seed's model."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def translator(folder) -> Translator:
    return Translator.load(folder, "cpu")


@pytest.mark.parametrize("text", SENTENCES)
def test_the_explained_steps_rebuild_the_translation(translator, text):
    record = translator.explain(text)
    steps = record["decoder"]
    chosen = [step["chosen"]["id"] for step in steps]
    assert chosen[-1] == EOS and EOS not in chosen[:-1]  # it ends at </s>
    assert [step["input"]["id"] for step in steps] == [BOS, *chosen[:-1]]  # each step read the last choice
    attention = torch.tensor([step["attention"] for step in steps]) if steps[0]["attention"] else None
    pieces = [token["piece"] for token in record["encoder"]["tokens"]]
    rebuilt = translator.detokenize(Hypothesis(chosen[:-1], 0.0, 0.0, attention), pieces)
    assert rebuilt == record["translation"] == translator.translate(text, beam_size=1)
    full = translator.translate_full([text], beam_size=1)[0]
    assert record["log_prob"] == pytest.approx(full.log_prob, abs=1e-4)
    assert record["tgt_pieces"] == full.tgt_pieces


def test_the_numbers_are_the_models(translator, folder):
    """Checked against the NumPy reference, an implementation that shares no code with the torch model."""
    record = explain(translator, SENTENCES[1], top_k=4, first=5)
    reference = ReferenceTranslator.load(folder)
    ids = [token["id"] for token in record["encoder"]["tokens"]]
    embeddings = translator.model.encoder.embed.weight.detach().numpy()
    encoded = reference.model.encode(ids)
    for t, token in enumerate(record["encoder"]["tokens"]):
        np.testing.assert_allclose(token["x"]["first"], embeddings[token["id"], :5], atol=1e-7)
        state = record["encoder"]["states"][t]["h"]
        np.testing.assert_allclose(state["first"], encoded.states[t, :5], atol=1e-5)
        assert state["norm"] == pytest.approx(np.linalg.norm(encoded.states[t]), abs=1e-5)
    np.testing.assert_allclose(record["encoder"]["handed_over"]["first"], encoded.s0[-1, :5], atol=1e-5)
    s = encoded.s0
    for step in record["decoder"]:
        logits, s, alpha = reference.model.step(step["input"]["id"], s, encoded)
        # float32 against float64: the seed's tanh RNN carries rounding from step to step (1.7e-5 seen at step 20)
        np.testing.assert_allclose(step["s"]["first"], s[-1, :5], atol=1e-4)
        assert [w["id"] for w in step["top"]] == list(np.argsort(-logits)[:4])
        assert [w["logit"] for w in step["top"]] == pytest.approx(sorted(logits, reverse=True)[:4], abs=1e-5)
        assert all(w["prob"] == pytest.approx(math.exp(w["log_prob"])) for w in step["top"])
        assert step["forced_end"] or step["chosen"] == step["top"][0]
        if alpha is not None:
            np.testing.assert_allclose(step["attention"], alpha, atol=1e-5)


def test_json_and_html_are_written(tiny_model, tmp_path, capsys):
    page = tmp_path / "explain.html"
    assert main(["explain", "-m", str(tiny_model), SENTENCES[0], "--json", "--html", str(page), "--top-k", "3",
                 "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == Translator.load(tiny_model, "cpu").explain(SENTENCES[0], top_k=3)
    assert all(len(step["top"]) == 3 for step in record["decoder"])
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<script src" not in text and "<link" not in text
    embedded = re.search(r"<script type=application/json id=record>(.*)</script>", text).group(1)
    assert json.loads(embedded.replace("<\\/", "</")) == record


def test_terminal_view_follows_the_table(tiny_model, capsys):
    assert main(["explain", "-m", str(tiny_model), SENTENCES[0], "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for heading in ("1. Embed inputs", "2. Layers and states", "3. h0", "4-6. h_t", "7. Handed to the decoder",
                    "step 1: reads <s>", "9. chosen:", "attention:"):
        assert heading in out
    assert out.rstrip().endswith(")") and "Hindi: " in out


def test_an_empty_sentence_is_refused(tiny_model, capsys):
    with pytest.raises(ValueError, match="empty"):
        Translator.load(tiny_model, "cpu").explain("   ")
    assert main(["explain", "-m", str(tiny_model), " ", "--device", "cpu"]) == 2
    assert "nothing to explain" in capsys.readouterr().err


def test_markup_in_the_sentence_cannot_break_the_embedded_json(tiny_model, tmp_path, capsys):
    page = tmp_path / "explain.html"
    text = "Hi <!--<script> and </script> there."
    assert main(["explain", "-m", str(tiny_model), text, "--json", "--html", str(page), "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    html = page.read_text(encoding="utf-8")
    assert html.count("<script") == 1 and html.count("</script>") == 1
    embedded = re.search(r"<script type=application/json id=record>(.*?)</script>", html).group(1)
    assert "<" not in embedded and json.loads(embedded) == record and record["source"] == text


@pytest.mark.parametrize("text, top_k, error, message", [
    (None, 5, TypeError, "text must be a str, got NoneType"),
    ("\udcff", 5, ValueError, "text is not valid Unicode"),
    ("Hi.", 0, ValueError, "top_k must be at least 1, got 0"),
])
def test_wrong_arguments_are_named(tiny_model, text, top_k, error, message):
    with pytest.raises(error, match=message):
        Translator.load(tiny_model, "cpu").explain(text, top_k)

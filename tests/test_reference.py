"""The NumPy reference against the torch model: same states, probabilities and translations; BPTT checked twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from rnnmt.config import CorpusConfig, ModelConfig, config_from_dict
from rnnmt.data import read_corpus
from rnnmt.model import build_model
from rnnmt.model_folder import ModelFolderError, save_config, save_metadata, save_tokenizers, save_weights
from rnnmt.reference import (
    ReferenceModel,
    ReferenceTranslator,
    UnsupportedModel,
    loss_and_gradients,
    softmax,
)
from rnnmt.translator import Translator
from rnnmt.vocabulary import BOS, UNK, encode_source, train_tokenizers

SENTENCES = ["Where is the station?", "He reads a book every day.", "I am going home", "Zebras quietly xylophone!"]
MODELS = {  # name: model settings
    "seed": {"cell": "rnn", "attention": "none", "h0": "learned"},
    "gru_luong_dot": {"cell": "gru", "attention": "luong_dot"},
    "gru_bahdanau_deep": {"cell": "gru", "attention": "bahdanau", "encoder_layers": 2, "decoder_layers": 2},
    "rnn_bidirectional_bridge": {"cell": "rnn", "attention": "luong_general", "bidirectional": True,
                                 "encoder_layers": 2, "h0": "learned"},
    "gru_tied_projected": {"cell": "gru", "attention": "luong_general", "tie_embeddings": True},  # emb 32, hidden 64
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A model folder per setting in MODELS: untrained, with every weight (biases, h0) jolted off its init.

    The jolt makes the outputs long and varied; a raised <unk> bias makes the attention models emit <unk>,
    so the copying of source words is compared too.
    """
    pairs = read_corpus(CorpusConfig(bundled="train", limit=200))
    src, tgt = train_tokenizers([en for en, _ in pairs], [hi for _, hi in pairs], "sentencepiece", False, 200, 250)
    root = tmp_path_factory.mktemp("reference")
    for name, settings in MODELS.items():
        config = config_from_dict(tiny_config(model=settings))
        torch.manual_seed(0)
        model = build_model(config.model, src.size, tgt.size)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
            model.decoder.output.bias[UNK] += 0.0 if settings["attention"] == "none" else 3.0
        save_config(root / name, config)
        save_tokenizers(root / name, src, tgt)
        save_weights(root / name, model)
        save_metadata(root / name, {})
    return {name: root / name for name in MODELS}


@pytest.fixture(params=[*MODELS, "tiny"])
def folder(request, folders) -> Path:
    """Each folder of MODELS, and the session's trained tiny model (GRU, luong_general)."""
    return request.getfixturevalue("tiny_model") if request.param == "tiny" else folders[request.param]


def load_both(folder: Path) -> tuple[Translator, ReferenceTranslator]:
    return Translator.load(folder, "cpu"), ReferenceTranslator.load(folder)


@torch.no_grad()
def test_states_and_probabilities_match_torch(folder):
    translator, reference = load_both(folder)
    for text in SENTENCES:
        ids = encode_source(translator.src, text, 400)
        encoded, memory, state = translator.model.encode(torch.tensor([ids]), torch.tensor([len(ids)]))
        ref = reference.model.encode(ids)
        np.testing.assert_allclose(ref.states, encoded.states[0].numpy(), atol=1e-5)  # every h_t
        np.testing.assert_allclose(ref.s0, state.hidden[:, 0].numpy(), atol=1e-5)  # s_0
        y, s = torch.tensor([[BOS]]), ref.s0
        for _ in range(6):  # both fed the torch model's argmax
            logits, state, alpha = translator.model.decoder.step(y, state, memory)
            ref_logits, s, ref_alpha = reference.model.step(int(y), s, ref)
            np.testing.assert_allclose(s, state.hidden[:, 0].numpy(), atol=1e-5)  # s_t of every layer
            probs = torch.softmax(logits[0, -1], -1).numpy()
            np.testing.assert_allclose(softmax(ref_logits), probs, atol=1e-5)
            if alpha is not None:
                np.testing.assert_allclose(ref_alpha, alpha[0, 0].numpy(), atol=1e-5)
            y = logits[:, -1].argmax(-1, keepdim=True)


def test_translations_match_torch(folder):
    translator, reference = load_both(folder)
    expected = translator.translate(SENTENCES + [""], beam_size=1)
    assert [reference.translate(text) for text in SENTENCES + [""]] == expected


def test_unknown_words_are_copied_as_torch_copies_them(folders):
    translator, reference = load_both(folders["gru_luong_dot"])
    results = translator.translate_full(SENTENCES, beam_size=1)
    assert any("<unk>" in result.tgt_pieces for result in results)  # the copying path is exercised
    assert [reference.translate(text) for text in SENTENCES] == [result.text for result in results]


def test_unsupported_settings_are_named():
    with pytest.raises(UnsupportedModel, match="model.cell is 'lstm'"):
        ReferenceModel(ModelConfig(cell="lstm"), {})
    with pytest.raises(UnsupportedModel, match="model.input_feeding"):
        ReferenceModel(ModelConfig(attention="luong_dot", input_feeding=True), {})


def test_bptt_needs_the_seed_model(folders):
    reference = ReferenceTranslator.load(folders["gru_luong_dot"])
    with pytest.raises(UnsupportedModel, match="model.cell is 'gru'"):
        loss_and_gradients(reference.model, [5, 3], [6])


def seed_example(folder: Path) -> tuple[ReferenceTranslator, list[int], list[int]]:
    reference = ReferenceTranslator.load(folder)
    src = encode_source(reference.src, "He reads a book every day.", 400)
    tgt = reference.tgt.encode("वह हर दिन एक किताब पढ़ता है।")
    return reference, src, tgt


def test_bptt_matches_finite_differences(folders):
    reference, src, tgt = seed_example(folders["seed"])
    _, grads = loss_and_gradients(reference.model, src, tgt)
    rng, eps = np.random.default_rng(0), 1e-6
    for name, grad in grads.items():
        biggest = np.unravel_index(np.argsort(-np.abs(grad), axis=None)[:2], grad.shape)
        for index in [*zip(*biggest, strict=True), tuple(rng.integers(0, n) for n in grad.shape)]:
            losses = []
            for sign in (1, -1):
                weights = {k: v.copy() for k, v in reference.model.w.items()}
                weights[name][index] += sign * eps
                losses.append(loss_and_gradients(ReferenceModel(reference.config.model, weights), src, tgt)[0])
            assert (losses[0] - losses[1]) / (2 * eps) == pytest.approx(grad[index], rel=1e-5, abs=1e-7), (name, index)


def test_bptt_matches_torch_autograd(folders):
    reference, src, tgt = seed_example(folders["seed"])
    loss, grads = loss_and_gradients(reference.model, src, tgt)
    translator = Translator.load(folders["seed"], "cpu")
    model = translator.model.double()
    logits = model(torch.tensor([src]), torch.tensor([len(src)]), torch.tensor([[BOS, *tgt]]))
    torch_loss = F.cross_entropy(logits[0], torch.tensor([*tgt, 3]), reduction="sum")
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-10)
    parameters = dict(model.named_parameters())
    assert set(grads) == set(parameters)
    for name, parameter in parameters.items():
        np.testing.assert_allclose(grads[name], parameter.grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)


def test_reference_imports_no_torch():
    code = "import sys, rnnmt.reference; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_numpy_engine_translates_without_torch(folders):
    folder = folders["gru_bahdanau_deep"]
    code = ("import sys; from rnnmt.__main__ import main;"
            f" rc = main(['translate', '--engine', 'numpy', '-m', {str(folder)!r}] + {SENTENCES!r});"
            " print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    *lines, verdict = out.rstrip("\n").split("\n")
    assert verdict == "no torch"
    assert lines == Translator.load(folder, "cpu").translate(SENTENCES, beam_size=1)


def test_cli_numpy_engine_refuses_beam_search(folders, capsys):
    from rnnmt.__main__ import main

    assert main(["translate", "--engine", "numpy", "--beam-size", "4", "-m", str(folders["seed"]), "Hi"]) == 2
    assert "greedily only" in capsys.readouterr().err


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing config.yaml"):
        ReferenceTranslator.load(tmp_path)


def test_both_engines_refuse_what_the_folder_reader_refuses(tiny_model, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_model, old)
    metadata = json.loads((old / "metadata.json").read_text(encoding="utf-8"))
    (old / "metadata.json").write_text(json.dumps({**metadata, "format_version": 1}), encoding="utf-8")
    with pytest.raises(ModelFolderError, match="format 1 with attention"):
        ReferenceTranslator.load(old)

"""Brief training and evaluation on the real corpora in ../shared/data (skipped where that folder is absent)."""

import pytest

from conftest import tiny_config
from rnnmt.config import config_from_dict
from rnnmt.data import read_lines
from rnnmt.metrics import corpus_scores
from rnnmt.training import read_history, train
from rnnmt.translator import Translator

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def test_brief_training_on_tatoeba_and_hvg_learns_and_translates(shared_data, tmp_path):
    hvg = shared_data / "hindi-visual-genome-1.1"
    config = tiny_config(
        data={"train": [{"tsv": str(shared_data / "tatoeba-manythings" / "hin.txt")},
                        {"src": str(hvg / "train.en"), "tgt": str(hvg / "train.hi"), "limit": 5000}],
              "dev": {"src": str(hvg / "dev.en"), "tgt": str(hvg / "dev.hi"), "limit": 100}},
        vocab={"src_size": 1000, "tgt_size": 1000},
        model={"emb_size": 64, "hidden_size": 128},
        train={"max_steps": 600, "valid_every": 300, "batch_tokens": 1500, "lr": 0.005})
    metadata = train(config_from_dict(config), tmp_path / "real")
    assert metadata["training_pairs"] > 7000
    history = [h for h in read_history(tmp_path / "real") if "dev_loss" in h]
    assert history[-1]["dev_loss"] < history[0]["dev_loss"] < 7.0
    translator = Translator.load(tmp_path / "real")
    sources = read_lines(hvg / "dev.en")[:100]
    hypotheses = translator.translate(sources)
    assert all(any("\u0900" <= ch <= "\u097f" for ch in h) for h in hypotheses)
    assert corpus_scores(hypotheses, read_lines(hvg / "dev.hi")[:100]).chrf > 6  # an untrained model scores about 1

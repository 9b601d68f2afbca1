"""The seed's bottleneck, measured: without attention accuracy collapses with length; with it, it holds."""

import json

import pytest
import yaml

from conftest import tiny_config
from rnnmt.config import ConfigError, CorpusConfig, config_from_dict
from rnnmt.study import Budget, Row, bottleneck, bucket_of, copy_task, hold_out, load_rows, recipe, scores_by_length
from rnnmt.training import train
from rnnmt.translator import Translator


def token_accuracy(output: str, reference: str) -> float:
    return sum(a == b for a, b in zip(output.split(), reference.split(), strict=False)) / len(reference.split())


def accuracy_by_length(folder, pairs, low, high) -> float:
    picked = [(s, r) for s, r in pairs if low <= len(s.split()) <= high]
    outputs = Translator.load(folder).translate([s for s, _ in picked], beam_size=1)
    return sum(token_accuracy(o, r) for o, (_, r) in zip(outputs, picked, strict=True)) / len(picked)


@pytest.mark.slow
def test_attention_cures_the_bottleneck_on_reversal(tmp_path):
    path = tmp_path / "reverse.tsv"
    path.write_text("".join(f"{a}\t{b}\n" for a, b in copy_task(3000, 5, 40, seed=1)), encoding="utf-8")
    held_out = copy_task(200, 5, 40, seed=2)
    accuracy = {}
    for attention in ("none", "luong_general"):
        config = tiny_config(data={"train": [{"tsv": str(path)}], "dev": None, "max_ratio": 10.0},
                             vocab={"kind": "word", "src_size": 50, "tgt_size": 50},
                             model={"cell": "gru", "attention": attention, "emb_size": 32, "hidden_size": 64},
                             train={"max_steps": 300, "max_epochs": 1000, "valid_every": 300, "lr": 0.005,
                                    "batch_tokens": 1200})
        train(config_from_dict(config), tmp_path / attention)
        accuracy[attention] = [accuracy_by_length(tmp_path / attention, held_out, lo, hi)
                               for lo, hi in ((5, 10), (31, 40))]
    short_plain, long_plain = accuracy["none"]
    short_attn, long_attn = accuracy["luong_general"]
    assert short_plain - long_plain > 0.3, "without attention, long inputs should be much worse"
    assert long_attn > 0.5 and short_attn > 0.9, "with attention, accuracy should hold"
    assert long_attn > long_plain + 0.3


def test_buckets_follow_source_words():
    assert [bucket_of(" ".join(["w"] * n)) for n in (1, 5, 6, 10, 11, 20, 21, 40, 41, 300)] == [
        "1-5", "1-5", "6-10", "6-10", "11-20", "11-20", "21-40", "21-40", ">40", ">40"]


def test_scores_by_length_scores_each_bucket_alone():
    sources = ["a b", "a b c d e f g", "a b c"]
    rows = scores_by_length(sources, ["मैं घर जाता हूँ।", "ग़लत", "मैं घर जाता हूँ।"],
                            ["मैं घर जाता हूँ।", "वह बाज़ार गया।", "मैं घर जाता हूँ।"])
    assert [(r.bucket, r.sentences) for r in rows[:2]] == [("1-5", 2), ("6-10", 1)]
    assert rows[0].bleu == 100.0 and rows[1].bleu < 10 and rows[2].sentences == 0 and rows[2].bleu is None


def test_bottleneck_writes_table_plots_and_heatmaps(tmp_path):
    base = config_from_dict(tiny_config(train={"max_steps": 20, "valid_every": 20}))
    results = bottleneck(base, tmp_path, budget_minutes=0.2, eval_set=CorpusConfig(bundled="dev", limit=40),
                         heatmaps=2)
    assert set(results["models"]) == {"no attention (seed)", "attention (luong_general)"}
    for name in ("bottleneck-chrf.png", "bottleneck-bleu.png", "attention-1.png", "attention-2.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG" and (tmp_path / name).stat().st_size > 2000
    table = (tmp_path / "bottleneck.md").read_text(encoding="utf-8")
    assert "| 6-10 |" in table and "| all | 40 |" in table
    assert json.loads((tmp_path / "bottleneck.json").read_text(encoding="utf-8"))["eval_set"] == "bundled:dev"


def test_hold_out_splits_the_training_data_without_overlap(tmp_path):
    base = config_from_dict(tiny_config())
    config = hold_out(base, tmp_path, 30, seed=1)
    held = (tmp_path / "heldout.tsv").read_text(encoding="utf-8").splitlines()
    kept = (tmp_path / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(held) == 30 and len(kept) == 170 and not set(held) & set(kept)
    assert config.data.dev[0].tsv == str(tmp_path / "heldout.tsv") and base.data.dev[0].bundled == "dev"


def test_recipe_trains_each_row_once_and_tables_them_all(tmp_path):
    rows = tmp_path / "rows.yaml"
    rows.write_text(yaml.safe_dump({
        "set": {"train.valid_every": 5,
                "data.dev": [{"bundled": "dev", "limit": 12, "name": "a"}, {"bundled": "test", "limit": 12}]},
        "rows": [{"name": "baseline", "what": "as it is"},
                 {"name": "Tied, 2 layers", "set": {"model.tie_embeddings": True, "model.decoder_layers": 2}},
                 {"name": "half", "weights": {"bundled-train": 0.5}}]}), encoding="utf-8")
    base = config_from_dict(tiny_config())
    loaded = load_rows(rows)
    assert [r.slug for r in loaded] == ["baseline", "tied-2-layers", "half"]
    tied = loaded[1].apply(base, Budget(minutes=3.0))
    assert tied.model.decoder_layers == 2 and tied.train.max_minutes == 3 and tied.train.max_steps == 0
    assert loaded[2].apply(base, Budget(steps=7)).data.train[0].weight == 0.5 and base.data.train[0].weight == 1.0
    assert loaded[2].apply(base, Budget(steps=7)).train.max_steps == 7
    with pytest.raises(ConfigError, match="minutes or of steps, one of them"):
        Budget(minutes=1.0, steps=5)
    results = recipe(base, loaded, tmp_path / "out", budget=Budget(steps=10), only=["baseline", "half"])
    assert [r["name"] for r in results] == ["baseline", "half"]
    assert results[1]["pairs"] == 200 and results[0]["steps"] == 10 and set(results[0]["curve"]) == {"5", "10"}
    assert set(results[0]["scores"]) == {"a", "bundled-test"} and set(results[0]["scores"]["a"]) == {"greedy", "beam5"}
    done = (tmp_path / "out" / "rows" / "baseline.json").stat().st_mtime_ns
    results = recipe(base, loaded, tmp_path / "out", budget=Budget(steps=10))  # trains only the row not done
    assert (tmp_path / "out" / "rows" / "baseline.json").stat().st_mtime_ns == done
    table = (tmp_path / "out" / "recipe.md").read_text(encoding="utf-8").splitlines()
    assert table[0].startswith("| row | steps | chrF++ @10 | mean chrF++ beam5 | a chrF++ greedy / beam5 |")
    assert [line.split(" | ")[0] for line in table[2:5]] == ["| baseline", "| Tied, 2 layers", "| half"]
    assert (tmp_path / "out" / "recipe.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="no row has the slug nope"):
        recipe(base, loaded, tmp_path / "out", budget=Budget(steps=10), only=["nope"])


def test_recipe_rows_name_an_unknown_corpus_or_field(tmp_path):
    base = config_from_dict(tiny_config())
    with pytest.raises(ConfigError, match="no training corpus is called 'bible'"):
        Row("w", weights={"bible": 0.5}).apply(base, Budget(steps=1))
    with pytest.raises(ConfigError, match="unknown key 'model.tied'"):
        Row("w", set={"model.tied": True}).apply(base, Budget(steps=1))
    for name in ("data", "levers"):  # the bundled rows files load
        assert load_rows(name)

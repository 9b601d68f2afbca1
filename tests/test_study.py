"""The seed's bottleneck, measured: without attention accuracy collapses with length; with it, it holds.

And the vanishing gradient, measured: dL/dh_t by distance from the end of the source, for each cell.
"""

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_config
from rnnmt.batching import collate
from rnnmt.config import ConfigError, CorpusConfig, ModelConfig, config_from_dict
from rnnmt.model import build_model, sequence_loss
from rnnmt.reference import ReferenceModel, rnn_backward, softmax
from rnnmt.study import (
    Budget,
    Row,
    bottleneck,
    bucket_of,
    by_distance,
    check_gradient_model,
    copy_task,
    gradients,
    hold_out,
    load_rows,
    recipe,
    scores_by_length,
    state_gradients,
    stepwise_encode,
)
from rnnmt.training import train
from rnnmt.translator import Translator
from rnnmt.vocabulary import BOS, EOS


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


def jolted_model(cell: str, h0: str = "zeros") -> torch.nn.Module:
    """A seed-shaped model (no attention, one layer each side) with every weight and bias moved off its init."""
    config = config_from_dict(tiny_config(model={"cell": cell, "attention": "none", "h0": h0}))
    torch.manual_seed(0)
    model = build_model(config.model, 50, 60).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


SOURCES = [[5, 9, 12, 7, 30, 11, EOS], [8, 8, 41, 6, 13, 27, EOS]]  # the same length: the study's batches
TARGETS = [[8, 14, 22, 9], [17, 5]]


@pytest.mark.parametrize("h0", ["zeros", "learned"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_stepwise_encoder_gives_the_fused_encoders_states(cell, h0):
    model = jolted_model(cell, h0)
    src = torch.tensor(SOURCES)
    with torch.no_grad():
        fused = model.encoder(src, torch.tensor([src.size(1)] * src.size(0)))
        hs, final = stepwise_encode(model, src)
    torch.testing.assert_close(torch.stack(hs, dim=1), fused.states, atol=1e-6, rtol=0)  # every h_t
    for mine, theirs in zip(final if cell == "lstm" else [final], fused.final if cell == "lstm" else [fused.final],
                            strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)  # h_T (and c_T)


@pytest.mark.parametrize("loss", ["sentence", "last"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_studys_loss_is_the_models_own(cell, loss):
    model = jolted_model(cell)
    batch = collate(list(zip(SOURCES, TARGETS, strict=True)))
    total, grads = state_gradients(model, batch, loss)
    assert grads.shape == (2, len(SOURCES[0]), 64)
    with torch.no_grad():
        logits = model(batch.src, batch.src_len, batch.tgt_in)  # the fused, packed forward pass
    if loss == "last":  # the </s> of each target alone
        rows = torch.arange(2)
        ends = torch.tensor([len(t) for t in TARGETS])
        expected = torch.nn.functional.cross_entropy(logits[rows, ends], batch.tgt_out[rows, ends], reduction="sum")
    else:
        expected = sequence_loss(logits, batch.tgt_out)
    assert float(total) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("loss", ["sentence", "last"])
def test_rnn_gradients_match_the_numpy_bptt(loss):
    """dL/dh_t by the study's stepwise autograd against ``rnn_backward``, the NumPy reference's BPTT.

    dL/dh_T comes from the decoder's BPTT (dL/ds_0, as s_0 = h_T); for t < T, dL/dh_t is the "dL/dh_0" that
    ``rnn_backward`` returns for the rest of the source, x_{t+1} .. x_T, run from h_t.
    """
    model = jolted_model("rnn", "learned").double()
    src, tgt = SOURCES[0], TARGETS[0]
    _, grads = state_gradients(model, collate([(src, tgt)]), loss)
    reference = ReferenceModel(model.config, {k: v.numpy() for k, v in model.state_dict().items()})
    w, encoder, decoder = reference.w, reference.encoder[0][0], reference.decoder[0][0]
    x_src, x_tgt = w["encoder.embed.weight"][src], w["decoder.embed.weight"][[BOS, *tgt]]
    hs = encoder.run(x_src, reference.h0[0])  # T x hidden: h_1 .. h_T
    ss = decoder.run(x_tgt, hs[-1])  # s_1 .. s_{n+1}
    dz = softmax(ss @ w["decoder.output.weight"].T + w["decoder.output.bias"])
    dz[np.arange(len(tgt) + 1), [*tgt, EOS]] -= 1.0  # dL_j/dz_j for each target token j
    if loss == "last":
        dz[:-1] = 0.0
    ds0 = rnn_backward(decoder, x_tgt, hs[-1], ss, dz @ w["decoder.output.weight"])[4]
    outside = np.zeros_like(hs)
    outside[-1] = ds0  # L reaches the encoder only through s_0 = h_T
    expected = [rnn_backward(encoder, x_src[t + 1 :], hs[t], hs[t + 1 :], outside[t + 1 :])[4]
                for t in range(len(src) - 1)] + [ds0]
    np.testing.assert_allclose(grads[0].numpy(), np.stack(expected), rtol=1e-9, atol=1e-12)


def test_by_distance_averages_the_sentences_that_reach_each_distance():
    norms = [[4.0, 2.0, 1.0], [2.0, 2.0], [1.0]]  # ||dL/dh_{T-d}||, distance 0 first
    rows = by_distance(norms, min_sentences=2)
    assert [(r["distance"], r["sentences"]) for r in rows] == [(0, 3), (1, 2)]  # distance 2: only one sentence
    assert rows[0]["mean_norm"] == pytest.approx(7 / 3) and rows[0]["relative"] == 1.0
    assert rows[1]["mean_norm"] == 2.0 and rows[1]["relative"] == pytest.approx((0.5 + 1.0) / 2)


def test_gradients_study_refuses_what_it_cannot_measure(tmp_path):
    with pytest.raises(ConfigError, match="model.attention is 'luong_dot'"):
        check_gradient_model(ModelConfig(attention="luong_dot"), "m")
    with pytest.raises(ConfigError, match="model.bidirectional is True"):
        check_gradient_model(ModelConfig(bidirectional=True), "m")
    base = config_from_dict(tiny_config())
    with pytest.raises(ConfigError, match="cell 'tanh' is unknown; allowed values: rnn, gru, lstm"):
        gradients(base, tmp_path, Budget(steps=1), cells=("rnn", "tanh"))
    with pytest.raises(ConfigError, match="give it a budget, or model folders"):
        gradients(base, tmp_path)


@pytest.fixture(scope="module")
def reversal_study(tmp_path_factory):
    """The rnn and gru cells, each trained 150 steps on reversal pairs of 5 to 30 symbols, then measured."""
    root = tmp_path_factory.mktemp("gradients")
    data = root / "reverse.tsv"
    data.write_text("".join(f"{a}\t{b}\n" for a, b in copy_task(1000, 5, 30, seed=1)), encoding="utf-8")
    config = tiny_config(data={"train": [{"tsv": str(data)}], "dev": None, "max_ratio": 10.0},
                         vocab={"kind": "word", "src_size": 50, "tgt_size": 50},
                         model={"emb_size": 16, "hidden_size": 32},  # attention: the study sets none
                         train={"max_epochs": 1000, "lr": 0.005, "batch_tokens": 1200, "seed": 1})
    (root / "reverse.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    results = gradients(config_from_dict(config), root / "out", Budget(steps=150), cells=("rnn", "gru"),
                        sentences=300)
    return root, results


def test_rnn_gradient_vanishes_faster_than_the_grus(reversal_study):
    root, results = reversal_study
    rows = {cell: {r["distance"]: r for r in results["models"][cell]["rows"]} for cell in ("rnn", "gru")}
    decay = {cell: rows[cell][20]["mean_norm"] / rows[cell][1]["mean_norm"] for cell in rows}  # about 0.09 and 0.45
    assert decay["rnn"] < decay["gru"] / 2, decay
    assert decay["gru"] < 1.0, "the gradient fades with distance for both cells"
    assert all(rows[cell][0]["relative"] == 1.0 and rows[cell][20]["sentences"] >= 50 for cell in rows)
    assert results["models"]["rnn"]["steps"] == 150 and results["sentences"] == 300
    table = (root / "out" / "gradients.md").read_text(encoding="utf-8")
    assert "| 20 | " in table and "rnn mean ‖dL/dh_t‖" in table and "gru ÷ d=0" in table
    assert (root / "out" / "gradients.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((root / "out" / "gradients.json").read_text(encoding="utf-8"))["loss"] == "sentence"


def test_cli_gradients_measures_given_model_folders(reversal_study, capsys):
    from rnnmt.__main__ import main

    root, _ = reversal_study
    out = root / "cli"
    folders = f"{root / 'out' / 'rnn'},{root / 'out' / 'gru'}"
    argv = ["study", "gradients", "--data", str(root / "reverse.yaml"), "--models", folders, "--sentences", "40",
            "--loss", "last", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 0 | 40 |" in printed and "the target's last token" in printed and (out / "gradients.png").is_file()
    assert main(["study", "gradients", "--data", str(root / "reverse.yaml"), "--cells", "rnn,tanh"]) == 2
    assert "cell 'tanh' is unknown" in capsys.readouterr().err

"""Training: loss falls, a tiny corpus is memorised exactly by every cell, and a resumed run is the same run."""

import copy
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel

from conftest import tiny_config
from rnnmt import training
from rnnmt.batching import collate
from rnnmt.config import CorpusConfig, config_from_dict
from rnnmt.data import read_corpus
from rnnmt.model_folder import WEIGHTS, ModelFolderError, average_checkpoints, kept_weights, read_model_folder
from rnnmt.training import Trainer, TrainingError, autocast_dtype, ema_update, read_history, sequence_loss, train
from rnnmt.translator import Translator
from rnnmt.validation import validate
from rnnmt.vocabulary import PAD


@pytest.fixture(scope="module")
def thirty_pairs(tmp_path_factory):
    pairs = [p for p in read_corpus(CorpusConfig(bundled="train")) if len(p[0].split()) <= 6][:30]
    path = tmp_path_factory.mktemp("data") / "thirty.tsv"
    path.write_text("".join(f"{en}\t{hi}\n" for en, hi in pairs), encoding="utf-8")
    return path, pairs


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_memorises_thirty_pairs_exactly(cell, thirty_pairs, tmp_path):
    path, pairs = thirty_pairs
    config = tiny_config(data={"train": [{"tsv": str(path)}], "dev": None},
                         vocab={"src_size": 120, "tgt_size": 150},
                         model={"cell": cell, "attention": "none", "emb_size": 64, "hidden_size": 128},
                         train={"max_steps": 400, "max_epochs": 1000, "valid_every": 400, "batch_tokens": 400})
    train(config_from_dict(config), tmp_path / cell)
    translations = Translator.load(tmp_path / cell).translate([en for en, _ in pairs], beam_size=1)
    assert translations == [hi for _, hi in pairs]


def test_loss_falls_on_the_bundled_corpus(tiny_model):
    history = torch.load(tiny_model / "checkpoints" / "last.pt", weights_only=True)["progress"]["history"]
    losses = [h["train_loss"] for h in history if "train_loss" in h]
    assert losses[-1] < 0.6 * losses[0]
    # 200 pairs and no dropout: the model overfits, so dev loss is only checked for being measured each time
    validations = [h for h in history if "dev_loss" in h]
    assert [h["step"] for h in validations] == [300, 600]
    assert all(math.isfinite(h["dev_loss"]) and 0 <= h["dev_chrf"] <= 100 for h in validations)


LEVERS = {  # every lever that draws random numbers or keeps state: each must resume exactly too
    "vocab": {"sampling": True},
    "model": {"dropout": 0.3, "word_dropout": 0.2, "tie_embeddings": True},
    "train": {"ema_decay": 0.9},
    "data": {"train": [{"bundled": "train", "limit": 150, "weight": 1.5}, {"bundled": "test", "weight": 0.3}]},
}


def short_run(steps: int, levers: bool = False) -> dict:
    sections = copy.deepcopy(LEVERS) if levers else {"model": {"dropout": 0.3}}  # dropout: the random stream
    sections.setdefault("train", {}).update(max_steps=steps, valid_every=10, log_every=5, max_epochs=100)
    return tiny_config(**sections)


@pytest.mark.parametrize("levers", [False, True])
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, levers):
    train(config_from_dict(short_run(40, levers)), tmp_path / "whole")
    train(config_from_dict(short_run(20, levers)), tmp_path / "split")
    train(config_from_dict(short_run(40, levers)), tmp_path / "split", resume=True)
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert whole["progress"]["step"] == split["progress"]["step"] == 40
    assert whole["progress"]["epoch"] > 1  # several epochs: the mix and the segmentation were drawn again
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    assert whole["optimizer"]["state"][0]["exp_avg"].equal(split["optimizer"]["state"][0]["exp_avg"])
    for name, tensor in whole.get("ema", {}).items():
        assert torch.equal(tensor, split["ema"][name]), name


@pytest.mark.parametrize("cooldown", [0.5, 1.0])
def test_the_cooldown_schedule_holds_then_falls_to_min_lr_as_the_budget_runs_out(tmp_path, cooldown):
    config = tiny_config(train={"max_steps": 40, "valid_every": 10, "log_every": 5, "lr": 0.002, "min_lr": 1e-4,
                                "lr_schedule": "cooldown", "lr_cooldown": cooldown,
                                "lr_patience": 0})  # the plateau rule would halve it at once
    train(config_from_dict(config), tmp_path / "run")
    history = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["progress"]["history"]
    logged = {h["step"]: h["lr"] for h in history if "train_loss" in h}
    # the rate of step s is set before it, with s - 1 of the 40 steps used; never below min_lr
    by_hand = {s: max(1e-4, 0.002 * min(1.0, (1 - (s - 1) / 40) / cooldown)) for s in range(5, 41, 5)}
    assert logged == pytest.approx(by_hand)
    assert logged[20] == (0.002 if cooldown == 0.5 else pytest.approx(0.002 * 21 / 40))


def test_a_run_resumed_in_its_cooldown_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    config = config_from_dict(tiny_config(train={"max_steps": 40, "valid_every": 10, "max_epochs": 100,
                                                 "lr_schedule": "cooldown", "lr_cooldown": 0.75}))
    train(config, tmp_path / "whole")
    with monkeypatch.context() as patch:  # killed after step 25, ten steps into the cooldown
        patch.setattr(training, "out_of_budget", lambda t, step, seconds: step >= 25)
        train(config, tmp_path / "split")
    train(config, tmp_path / "split", resume=True)
    whole, split = (torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
                    for name in ("whole", "split"))
    assert split["progress"]["step"] == 40 and split["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005 / 30)
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, split["model"][name]), name


@pytest.mark.parametrize(("schedule", "after"), [("plateau", 0.001), ("cooldown", 0.002)])
def test_only_the_plateau_rule_halves_the_rate_when_the_dev_loss_rises(schedule, after):
    t = config_from_dict(tiny_config(train={"lr": 0.002, "lr_factor": 0.5, "lr_patience": 0, "max_steps": 9,
                                            "lr_schedule": schedule})).train
    learner = training.Learner.build(torch.nn.Linear(2, 2), t)
    for dev_loss in (3.0, 2.0, 2.5):  # better, better, worse: patience 0 acts on the first worse one
        learner.validated(dev_loss, t)
    assert learner.lr == pytest.approx(after)


def test_the_budget_used_is_the_steps_or_the_minutes_whichever_is_further():
    t = config_from_dict(tiny_config(train={"max_steps": 100, "max_minutes": 2.0})).train
    assert training.budget_used(t, 10, 60.0) == pytest.approx(0.5)
    assert training.budget_used(t, 80, 60.0) == pytest.approx(0.8)
    assert training.out_of_budget(t, 100, 0.0) and training.out_of_budget(t, 1, 120.0)
    assert not training.out_of_budget(t, 99, 119.0)


def test_same_seed_same_model_other_seed_other_model(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(config_from_dict(tiny_config(train={"max_steps": 10, "valid_every": 10, "seed": seed})), tmp_path / name)
    weights = {n: torch.load(tmp_path / n / "checkpoints" / "last.pt", weights_only=True)["model"] for n in "abc"}
    key = "decoder.output.weight"
    assert torch.equal(weights["a"][key], weights["b"][key])
    assert not torch.equal(weights["a"][key], weights["c"][key])


def test_an_existing_run_is_not_overwritten_by_accident(tmp_path):
    config = config_from_dict(tiny_config(train={"max_steps": 5, "valid_every": 5}))
    train(config, tmp_path / "run")
    with pytest.raises(TrainingError, match="--resume to continue it or --overwrite"):
        train(config, tmp_path / "run")
    metadata = train(config, tmp_path / "run", overwrite=True)
    assert metadata["steps"] == 5


def test_metadata_and_log_and_plot_are_written(tiny_model):
    metadata = json.loads((tiny_model / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["steps"] == 600 and metadata["parameters"] > 0 and metadata["training_seconds"] > 0
    assert "step 600" in (tiny_model / "train.log").read_text(encoding="utf-8")
    assert (tiny_model / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("units", [True, False])
def test_auto_amp_is_bf16_on_cuda_and_on_cpus_with_bf16_units(units, monkeypatch):
    monkeypatch.setattr(training, "bf16_units", lambda: ["AVX512-BF16"] if units else [])
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if units else None)  # fp32 where bf16 is emulated
    assert autocast_dtype("off", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_reads_bf16_logits_as_they_are_and_sums_in_fp32(smoothing):
    torch.manual_seed(0)
    logits = (3 * torch.randn(4, 9, 300)).bfloat16().requires_grad_()
    target = torch.randint(1, 300, (4, 9))
    target[1, 5:] = PAD
    loss = sequence_loss(logits, target, smoothing)
    exact = F.cross_entropy(logits.detach().double().view(-1, 300), target.view(-1), ignore_index=PAD,
                            label_smoothing=smoothing, reduction="sum")
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(exact.item(), rel=2e-3)  # bf16 keeps 8 bits of each token's loss
    loss.backward()
    assert torch.all(logits.grad[1, 5:] == 0) and logits.grad[1, :5].abs().sum() > 0  # padding takes no part


def test_the_dev_loss_does_not_depend_on_the_dev_batches(tmp_path):
    trainer = Trainer(config_from_dict(tiny_config(train={"batch_tokens": 60})), tmp_path / "run")
    examples, model = trainer.dev[0].examples, trainer.model
    with torch.no_grad():
        alone = [collate([example]) for example in examples]
        total = sum(float(sequence_loss(model(b.src, b.src_len, b.tgt_in), b.tgt_out)) for b in alone)
    scores = validate(trainer.translator, trainer.dev, trainer.config.train)
    assert scores["dev_loss"] == pytest.approx(total / sum(b.tokens for b in alone), rel=1e-5)


def test_the_moving_average_follows_its_equation():
    model = torch.nn.Linear(1, 1, bias=False)
    averaged = AveragedModel(model, multi_avg_fn=ema_update(0.5))
    for weight in [1.0, 3.0, 7.0, 5.0]:
        model.weight.data.fill_(weight)
        averaged.update_parameters(model)
    # the first update copies; then the decay warms up as (1 + n) / (10 + n): 2/11, 3/12, 4/13, below 0.5 so far
    by_hand = 4 / 13 * (3 / 12 * (2 / 11 * 1 + 9 / 11 * 3) + 9 / 12 * 7) + 9 / 13 * 5
    assert averaged.module.weight.item() == pytest.approx(by_hand)
    for _ in range(30):  # later the decay is 0.5: each update halves the distance to the new weights
        averaged.update_parameters(model)
    assert averaged.module.weight.item() == pytest.approx(5.0, abs=1e-6)


def test_the_average_is_what_is_validated_and_kept(tmp_path):
    config = tiny_config(train={"max_steps": 20, "valid_every": 20, "ema_decay": 0.9})
    train(config_from_dict(config), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    kept = load_file(str(tmp_path / "run" / "weights.safetensors"))
    name = "decoder.output.weight"
    assert torch.equal(kept[name], state["ema"][f"module.{name}"]) and not torch.equal(kept[name], state["model"][name])


def test_several_dev_sets_are_each_scored_and_kept_checkpoints_average(tmp_path):
    config = tiny_config(data={"dev": [{"bundled": "dev", "limit": 15, "name": "a"}, {"bundled": "test", "limit": 10}]},
                         train={"max_steps": 30, "valid_every": 10, "keep_checkpoints": 2})
    train(config_from_dict(config), tmp_path / "run")
    validations = [h for h in read_history(tmp_path / "run") if "dev" in h]
    assert [h["step"] for h in validations] == [10, 20, 30]
    for record in validations:
        assert set(record["dev"]) == {"a", "bundled-test"}
        assert record["dev_chrf"] == pytest.approx(sum(s["chrf"] for s in record["dev"].values()) / 2)
    assert "bundled-test" in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    kept = [p.name for p in kept_weights(tmp_path / "run")]
    assert kept == ["step-20.safetensors", "step-30.safetensors"]
    average_checkpoints(tmp_path / "run", 2, tmp_path / "avg")
    w20, w30, mean = (load_file(str(p)) for p in (*kept_weights(tmp_path / "run"), tmp_path / "avg" / WEIGHTS))
    for name, tensor in mean.items():
        torch.testing.assert_close(tensor, (w20[name] + w30[name]) / 2, rtol=0, atol=1e-7)
    assert Translator.load(tmp_path / "avg").translate("How are you?")
    with pytest.raises(ModelFolderError, match="2 kept checkpoints, fewer than the 3 asked for"):
        average_checkpoints(tmp_path / "run", 3, tmp_path / "avg3")


def test_tensorboard_gets_the_losses_the_scores_and_the_attention(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(data={"dev": [{"bundled": "dev", "limit": 15, "name": "a"}, {"bundled": "test", "limit": 10}]},
                         train={"max_steps": 20, "valid_every": 10, "log_every": 5, "tensorboard": True})
    train(config_from_dict(config), tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/train_loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "dev/loss", "dev/bleu",
            "dev/chrf", "dev/a/chrf", "dev/bundled-test/bleu"} <= scalars
    assert [e.step for e in events.Scalars("train/train_loss")] == [5, 10, 15, 20]
    assert [e.step for e in events.Scalars("dev/chrf")] == [10, 20]
    assert events.Tags()["images"] == ["attention/a"]


def test_tensorboard_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if it were not installed
    config = tiny_config(train={"max_steps": 5, "valid_every": 5, "tensorboard": True})
    with pytest.raises(TrainingError, match=r"needs TensorBoard: pip install 'rnnmt\[tensorboard\]'"):
        train(config_from_dict(config), tmp_path / "run")


def test_fine_tuning_learns_pairs_the_model_could_not_translate(tiny_model, tmp_path):
    new = [p for p in read_corpus(CorpusConfig(bundled="test")) if len(p[0].split()) <= 5][:6]
    before = Translator.load(tiny_model).translate([en for en, _ in new], beam_size=1)
    assert sum(b == hi for b, (_, hi) in zip(before, new, strict=True)) <= 1
    path = tmp_path / "new.tsv"
    path.write_text("".join(f"{en}\t{hi}\n" for en, hi in new), encoding="utf-8")
    config = tiny_config(data={"train": [{"tsv": str(path)}], "dev": None},
                         vocab={"src_size": 50, "tgt_size": 50},  # ignored: the parent's vocabularies are kept
                         train={"max_steps": 150, "max_epochs": 1000, "valid_every": 150, "lr": 0.003})
    metadata = train(config_from_dict(config), tmp_path / "tuned", init_from=tiny_model)
    tuned = Translator.load(tmp_path / "tuned")
    assert tuned.translate([en for en, _ in new], beam_size=1) == [hi for _, hi in new]
    parent = read_model_folder(tiny_model)
    assert tuned.src.to_bytes() == parent.src.to_bytes() and tuned.tgt.to_bytes() == parent.tgt.to_bytes()
    assert tuned.config.vocab.src_size == parent.config.vocab.src_size
    assert metadata["parent"]["model"] == str(tiny_model.resolve()) and metadata["parent"]["steps"] == 600


def test_fine_tuning_refuses_another_architecture_by_name(tiny_model, tmp_path):
    config = config_from_dict(tiny_config(model={"hidden_size": 32}))
    with pytest.raises(TrainingError, match="model.hidden_size is 32 in this config but 64 in the model it starts"):
        train(config, tmp_path / "tuned", init_from=tiny_model)
    assert not (tmp_path / "tuned" / "config.yaml").exists()


def test_a_non_finite_loss_stops_training_before_it_saves(tmp_path, monkeypatch):
    taken = []

    def nan_at_step_3(*args, **kwargs):
        loss, norm = take_step(*args, **kwargs)
        taken.append(loss)
        return (math.nan if len(taken) == 3 else loss), norm

    take_step = training.train_step
    monkeypatch.setattr(training, "train_step", nan_at_step_3)
    folder = tmp_path / "m"
    with pytest.raises(TrainingError, match=r"^step 3: the loss is nan; stopped before saving broken weights"):
        train(config_from_dict(tiny_config(train={"max_steps": 10, "valid_every": 2})), folder)
    assert len(taken) == 3
    saved = load_file(folder / WEIGHTS)  # the weights of the validation at step 2, finite
    assert all(torch.isfinite(tensor).all() for tensor in saved.values())

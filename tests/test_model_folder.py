"""The model folder: a save/load round trip gives identical outputs, and missing parts are named."""

import errno
import json
import os
import shutil

import pytest
import torch
import yaml

from conftest import tiny_config
from rnnmt.config import config_from_dict
from rnnmt.model_folder import ModelFolderError, atomic_write, read_model_folder, write_bytes
from rnnmt.training import TrainingError, train
from rnnmt.translator import Translator

SENTENCES = ["How are you?", "Please open the window.", "Where is the railway station?"]


def test_folder_holds_every_part(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {"config.yaml", "src.model", "tgt.model", "weights.safetensors", "metadata.json", "loss.png",
            "train.log", "checkpoints"} <= names
    folder = read_model_folder(tiny_model)
    assert folder.metadata["format_version"] == 2
    assert folder.metadata["training_data"] == ["bundled:train"]
    assert "dev_chrf" in folder.metadata["best"]


def test_moved_folder_translates_identically(tiny_model, tmp_path):
    before = Translator.load(tiny_model, "cpu")
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_model, moved)
    after = Translator.load(moved, "cpu")
    for a, b in zip(before.model.state_dict().values(), after.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert before.translate(SENTENCES, beam_size=3) == after.translate(SENTENCES, beam_size=3)
    assert before.score(SENTENCES, ["आप कैसे हैं?"] * 3) == after.score(SENTENCES, ["आप कैसे हैं?"] * 3)


@pytest.mark.parametrize("part", ["config.yaml", "weights.safetensors", "metadata.json", "src.model", "tgt.model"])
def test_missing_part_is_named(tiny_model, tmp_path, part):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / part).unlink()
    with pytest.raises(ModelFolderError, match=part.split(".")[0]):
        Translator.load(broken)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ModelFolderError, match="no such model folder"):
        Translator.load(tmp_path / "nothing")


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_format_1_attention_weights_are_refused_and_plain_ones_read(tiny_model, tmp_path):
    """Format 1 put a tanh around the attentional output: those weights would now translate wrongly, silently."""
    old = tmp_path / "old"
    shutil.copytree(tiny_model, old)
    metadata = json.loads((old / "metadata.json").read_text(encoding="utf-8"))
    (old / "metadata.json").write_text(json.dumps({**metadata, "format_version": 1}), encoding="utf-8")
    with pytest.raises(ModelFolderError, match="format 1 with attention.*train it again"):
        read_model_folder(old)
    config = (old / "config.yaml").read_text(encoding="utf-8")
    (old / "config.yaml").write_text(config.replace("attention: luong_general", "attention: none"), encoding="utf-8")
    assert read_model_folder(old).config.model.attention == "none"


def break_weights(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated


@pytest.mark.parametrize(("part", "damage", "message"), [
    ("weights.safetensors", break_weights, "weights.safetensors: not a readable safetensors file"),
    ("weights.safetensors", lambda p: p.write_bytes(b""), "weights.safetensors: not a readable safetensors file"),
    ("weights.safetensors", lambda p: p.write_bytes(b"\x00garbage" * 99), "not a readable safetensors file"),
    ("metadata.json", lambda p: p.write_text("{not json", encoding="utf-8"), "metadata.json: not valid JSON"),
    ("tgt.model", lambda p: p.write_bytes(b"garbage"), "a tokenizer is not readable"),
    ("config.yaml", lambda p: p.write_text(p.read_text(encoding="utf-8").replace("hidden_size: 64", "hidden_size: 32"),
                                           encoding="utf-8"), "weights.safetensors has .* of shape .* needs"),
])
def test_corrupt_part_is_named_in_one_line(tiny_model, tmp_path, part, damage, message):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    damage(broken / part)
    with pytest.raises(ModelFolderError, match=message) as caught:
        Translator.load(broken)
    assert "\n" not in str(caught.value)


def test_files_are_written_with_ordinary_modes_and_a_full_disk_is_named(tmp_path):
    write_bytes(tmp_path / "a.txt", b"x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ModelFolderError, match=f"{tmp_path}: no space left on the device while writing b.bin"):
        atomic_write(tmp_path / "b.bin", full)


def test_a_folder_is_never_clobbered_silently(tiny_model, tmp_path):
    config = config_from_dict(tiny_config(train={"max_steps": 5, "valid_every": 5}))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    for overwrite in (False, True):
        with pytest.raises(TrainingError, match="holds files rnnmt did not write \\(notes.txt\\)"):
            train(config, mine, overwrite=overwrite)
    finished = tmp_path / "finished"
    shutil.copytree(tiny_model, finished, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(TrainingError, match="already holds a trained model"):
        train(config, finished)
    with pytest.raises(TrainingError, match="already holds a trained model"):
        train(config, finished, resume=True)  # nothing to resume: it is a finished model


def test_overwrite_removes_the_old_model_before_writing_a_new_one(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill between the first new file and the first save

    monkeypatch.setattr("rnnmt.training.train_tokenizers", killed)
    other = config_from_dict(tiny_config(model={"hidden_size": 32}, train={"max_steps": 5, "valid_every": 5}))
    with pytest.raises(KeyboardInterrupt):
        train(other, folder, overwrite=True)
    assert not [p.name for p in folder.iterdir() if p.name != ".lock"]  # neither the old model nor a mix
    monkeypatch.undo()
    train(other, folder, resume=True)  # a run killed before its first checkpoint starts again
    assert read_model_folder(folder).config.model.hidden_size == 32


def test_a_run_resumes_only_with_the_config_it_started_with(tmp_path):
    config = tiny_config(train={"max_steps": 5, "valid_every": 5})
    train(config_from_dict(config), tmp_path / "m")
    longer = yaml.safe_load(yaml.safe_dump(config))
    longer["train"]["max_steps"] = 10  # the budget may change
    assert train(config_from_dict(longer), tmp_path / "m", resume=True)["steps"] == 10
    longer["model"]["hidden_size"] = 32  # the model may not
    with pytest.raises(TrainingError, match="its run has another model section"):
        train(config_from_dict(longer), tmp_path / "m", resume=True)


def test_a_folder_written_before_the_quality_levers_still_loads(tiny_model, tmp_path):
    """Folders of rnnmt 0.2 have no corpus weights, dropout fields, tying or EMA, and one dev set as a mapping."""
    old = tmp_path / "old"
    shutil.copytree(tiny_model, old)
    raw = yaml.safe_load((old / "config.yaml").read_text(encoding="utf-8"))
    for corpus in raw["data"]["train"]:
        del corpus["weight"], corpus["name"]
    raw["data"]["dev"] = {k: v for k, v in raw["data"]["dev"][0].items() if k not in ("weight", "name")}
    for section, names in {"vocab": ["sampling", "sampling_alpha", "sampling_nbest"],
                           "model": ["residual", "tie_embeddings", "emb_dropout", "rnn_dropout", "out_dropout",
                                     "word_dropout"],
                           "train": ["ema_decay", "keep_checkpoints", "tensorboard"]}.items():
        for name in names:
            del raw[section][name]
    (old / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert Translator.load(old).translate(SENTENCES) == Translator.load(tiny_model).translate(SENTENCES)

"""The model folder: a save/load round trip gives identical outputs, and missing parts are named."""

import json
import shutil

import pytest
import torch

from rnnmt.model_folder import ModelFolderError, atomic_write, read_model_folder
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

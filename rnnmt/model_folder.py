"""The model folder: everything needed to use a trained model, so that moving the folder moves the model.

    MODEL/
      config.yaml           the full config it was trained with
      src.model, tgt.model  SentencePiece models (or src.vocab, tgt.vocab in word mode)
      weights.safetensors   the best weights
      metadata.json         format version, training data, sizes, scores, time
      checkpoints/last.pt   training state for --resume (not needed to translate)

Every file is written atomically: to a temporary file beside it, then renamed over the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rnnmt.config import Config, ConfigError, config_to_yaml, load_config
from rnnmt.vocabulary import SentencePieceTokenizer, Tokenizer, WordTokenizer, load_tokenizers

FORMAT_VERSION = 2  # 2: the attentional output is W_c [s_t; ctx_t] + b_c; format 1 had a tanh around it
CONFIG, WEIGHTS, METADATA, CHECKPOINTS = "config.yaml", "weights.safetensors", "metadata.json", "checkpoints"
LAST = f"{CHECKPOINTS}/last.pt"


class ModelFolderError(FileNotFoundError):
    """A model folder is missing, or lacks one of its parts."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def tokenizer_name(side: str, tokenizer: Tokenizer) -> str:
    suffix = SentencePieceTokenizer.suffix if isinstance(tokenizer, SentencePieceTokenizer) else WordTokenizer.suffix
    return side + suffix


def save_tokenizers(folder: Path, src: Tokenizer, tgt: Tokenizer) -> None:
    for side, tokenizer in (("src", src), ("tgt", tgt)):
        write_bytes(folder / tokenizer_name(side, tokenizer), tokenizer.to_bytes())


def save_config(folder: Path, config: Config) -> None:
    write_bytes(folder / CONFIG, config_to_yaml(config).encode("utf-8"))


def weight_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as safetensors stores it: on the CPU, and tied weights written once under each name."""
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        tensors[name] = tensor.clone() if tensor.data_ptr() in seen else tensor  # safetensors refuses shared memory
        seen.add(tensor.data_ptr())
    return tensors


def write_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "rnnmt"}))


def save_weights(folder: Path, model: torch.nn.Module) -> None:
    write_weights(folder / WEIGHTS, weight_tensors(model))


def kept_weights(folder: Path) -> list[Path]:
    """The weights kept at validations (``train.keep_checkpoints``), oldest first."""
    return sorted((folder / CHECKPOINTS).glob("step-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))


def keep_weights(folder: Path, model: torch.nn.Module, step: int, keep: int) -> None:
    """Keep this validation's weights as ``checkpoints/step-N.safetensors``, and only the last ``keep`` of them."""
    write_weights(folder / CHECKPOINTS / f"step-{step}.safetensors", weight_tensors(model))
    for old in kept_weights(folder)[:-keep]:
        old.unlink()


def save_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    write_json(folder / METADATA, {"format_version": FORMAT_VERSION, **metadata})


@dataclass
class ModelFolder:
    """The parts of a model folder, read from disk."""

    path: Path
    config: Config
    src: Tokenizer
    tgt: Tokenizer
    weights: dict[str, torch.Tensor]
    metadata: dict[str, Any]


def require(folder: Path, name: str) -> Path:
    if not (folder / name).is_file():
        raise ModelFolderError(f"{folder}: missing {name}; a model folder needs {CONFIG}, src/tgt tokenizers,"
                               f" {WEIGHTS} and {METADATA}")
    return folder / name


def read_model_folder(path: str | Path) -> ModelFolder:
    """Read every part of a model folder, naming the first part that is missing or unreadable."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder")
    config_path, weights_path, meta_path = (require(folder, n) for n in (CONFIG, WEIGHTS, METADATA))
    try:
        config = load_config(config_path)
    except ConfigError as err:
        raise ModelFolderError(f"{folder}: {err}") from err
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    version = metadata.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise ModelFolderError(f"{folder}: format {version} is newer than this rnnmt reads")
    if version < 2 and config.model.attention != "none":
        raise ModelFolderError(f"{folder}: format {version} with attention: its weights expect the tanh that"
                               " rnnmt 0.2 took out of the attentional output; train it again")
    try:
        src, tgt = load_tokenizers(folder)
    except FileNotFoundError as err:
        raise ModelFolderError(str(err)) from err
    return ModelFolder(folder, config, src, tgt, load_file(str(weights_path)), metadata)


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The losses and validations a run logged, from its last checkpoint."""
    return torch.load(Path(path) / LAST, weights_only=True)["progress"]["history"]


def mean_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of weight files of one model, summed in float64."""
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        for name, tensor in load_file(str(path)).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    dtypes = {name: tensor.dtype for name, tensor in load_file(str(paths[0])).items()}
    return {name: (tensor / len(paths)).to(dtypes[name]) for name, tensor in total.items()}


def average_checkpoints(path: str | Path, last: int, out: str | Path) -> dict[str, Any]:
    """A new model folder ``out`` whose weights are the mean of the ``last`` kept validations' weights of ``path``.

    Averaging the last checkpoints of a run smooths out the noise of its last updates (Junczys-Dowmunt et
    al., 2016; Vaswani et al., 2017). The run must have kept them: ``train.keep_checkpoints``.
    """
    folder, out = read_model_folder(path), Path(out)
    kept = kept_weights(folder.path)
    if len(kept) < last:
        raise ModelFolderError(f"{folder.path}: {len(kept)} kept checkpoints, fewer than the {last} asked for;"
                               " train with --train.keep_checkpoints N to keep them")
    if out.resolve() == folder.path.resolve():
        raise ModelFolderError(f"{out}: write the average into a new folder, not over the model it comes from")
    picked = kept[-last:]
    save_config(out, folder.config)
    save_tokenizers(out, folder.src, folder.tgt)
    write_weights(out / WEIGHTS, mean_weights(picked))
    metadata = {key: value for key, value in folder.metadata.items() if key != "format_version"}
    metadata["averaged_from"] = {"model": str(folder.path), "checkpoints": [p.name for p in picked]}
    save_metadata(out, metadata)
    return metadata

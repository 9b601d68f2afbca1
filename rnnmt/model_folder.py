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

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from rnnmt.config import Config, ConfigError, config_to_yaml, load_config
from rnnmt.errors import ModelFolderError, TrainingError
from rnnmt.vocabulary import SentencePieceTokenizer, Tokenizer, WordTokenizer, load_tokenizers

FORMAT_VERSION = 2  # 2: the attentional output is W_c [s_t; ctx_t] + b_c; format 1 had a tanh around it
CONFIG, WEIGHTS, METADATA, CHECKPOINTS = "config.yaml", "weights.safetensors", "metadata.json", "checkpoints"
LAST, LOCK = f"{CHECKPOINTS}/last.pt", ".lock"
PARTS = {CONFIG, WEIGHTS, METADATA, CHECKPOINTS, LOCK, "train.log", "loss.png", "eval", "tensorboard",
         *(f"{side}{kind.suffix}" for side in ("src", "tgt") for kind in (SentencePieceTokenizer, WordTokenizer))}

log = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]  # parameter name -> array, as weights.safetensors holds them


def file_mode() -> int:
    """The mode an ordinary new file gets under the process's umask (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask



def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place, durably.

    The file and then its folder are synced to disk before and after the rename, so a crash leaves the old
    file or the new one, never a torn one. A full disk is named in one line, with the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise ModelFolderError(f"{path.parent}: no space left on the device while writing {path.name}") from err
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def weight_arrays(model: Any) -> Weights:
    """A torch model's state dict as safetensors stores it: CPU arrays, tied weights written under each name."""
    arrays, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        arrays[name] = tensor.numpy().copy() if tensor.data_ptr() in seen else tensor.numpy()  # no shared memory
        seen.add(tensor.data_ptr())
    return arrays


def write_weights(path: Path, weights: Weights) -> None:
    atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata={"format": "rnnmt"}))


def save_weights(folder: Path, model: Any) -> None:
    """The torch model's weights as the folder's weights.safetensors."""
    write_weights(folder / WEIGHTS, weight_arrays(model))


def kept_weights(folder: Path) -> list[Path]:
    """The weights kept at validations (``train.keep_checkpoints``), oldest first."""
    return sorted((folder / CHECKPOINTS).glob("step-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))


def keep_weights(folder: Path, model: Any, step: int, keep: int) -> None:
    """Keep this validation's weights as ``checkpoints/step-N.safetensors``, and only the last ``keep`` of them."""
    write_weights(folder / CHECKPOINTS / f"step-{step}.safetensors", weight_arrays(model))
    for old in kept_weights(folder)[:-keep]:
        old.unlink()


def lock_folder(folder: Path) -> IO[str]:
    """Hold the folder's lock file for as long as this process lives: one training run per folder at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (kept open: closing would free the lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise TrainingError(f"{folder} is in use: {holder} is training into it; wait for it to end, or train"
                            " into another folder") from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    return handle


def claim_folder(folder: Path, config: Config, resume: bool, overwrite: bool) -> bool:
    """Make ``folder`` ready for a run and say whether it holds one to resume; refuse to clobber anything.

    A folder of files rnnmt did not write is refused even with --overwrite. A run resumes only with the data,
    vocab and model it was started with. --overwrite removes the old model's parts before a new one writes
    any, so the folder never holds a mix of the two.
    """
    entries = [entry for entry in folder.iterdir() if entry.name != LOCK]
    foreign = sorted(e.name for e in entries if e.name not in PARTS and not e.name.endswith(".tmp"))
    if foreign:
        raise TrainingError(f"{folder} holds files rnnmt did not write ({', '.join(foreign[:3])}); train into an"
                            " empty or new folder")
    if resume and (folder / LAST).exists():
        saved = load_config(folder / CONFIG)
        changed = [name for name in ("data", "vocab", "model") if getattr(saved, name) != getattr(config, name)]
        if changed:
            raise TrainingError(f"{folder}: its run has another {changed[0]} section in {CONFIG}; resume it with"
                                " the config it started with, or pass --overwrite to start again")
        for stale in folder.rglob(".*.tmp"):  # half-written by a killed run
            stale.unlink()
        return True
    started = (folder / LAST).exists() or (folder / WEIGHTS).exists()
    if started and not overwrite:
        what = "a training run" if (folder / LAST).exists() else "a trained model"
        raise TrainingError(f"{folder} already holds {what}; pass --resume to continue it or --overwrite to"
                            " start again")
    if entries:
        log.info("%s: removing %s", folder, "the old model" if started else "a run killed before its first checkpoint")
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return False


def save_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    write_json(folder / METADATA, {"format_version": FORMAT_VERSION, **metadata})


@dataclass
class ModelFolder:
    """The parts of a model folder, read from disk."""

    path: Path
    config: Config
    src: Tokenizer
    tgt: Tokenizer
    weights: Weights
    metadata: dict[str, Any]


def require(folder: Path, name: str) -> Path:
    if not (folder / name).is_file():
        raise ModelFolderError(f"{folder}: missing {name}; a model folder needs {CONFIG}, src/tgt tokenizers,"
                               f" {WEIGHTS} and {METADATA}")
    return folder / name


def read_model_folder(path: str | Path) -> ModelFolder:
    """Read every part of a model folder, naming the first part that is missing or unreadable.

    It needs NumPy, safetensors, PyYAML and SentencePiece, never torch: both engines read folders through it.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder")
    config_path, weights_path, meta_path = (require(folder, n) for n in (CONFIG, WEIGHTS, METADATA))
    try:
        config = load_config(config_path)
    except ConfigError as err:
        raise ModelFolderError(f"{folder}: {err}") from err
    metadata = read_metadata(meta_path)
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
    except (RuntimeError, UnicodeDecodeError, ValueError) as err:  # SentencePiece's parse error is a RuntimeError
        raise ModelFolderError(f"{folder}: a tokenizer is not readable ({first_line(err)})") from err
    return ModelFolder(folder, config, src, tgt, read_weights(weights_path), metadata)


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: not valid JSON ({first_line(err)})") from err
    if not isinstance(metadata, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, found {type(metadata).__name__}")
    return metadata


def read_weights(path: Path) -> Weights:
    """The arrays of a safetensors file, or an error that says the file is not one."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFolderError(f"{path}: not a readable safetensors file ({first_line(err)});"
                               " it may be truncated: copy or train it again") from err


def first_line(err: Exception) -> str:
    return str(err).strip().partition("\n")[0] or type(err).__name__


def check_weights(folder: Path, expected: dict[str, tuple[int, ...]], weights: Weights) -> None:
    """Refuse weights that do not fit the model config.yaml describes, naming the first tensor that differs."""
    for name, shape in expected.items():
        if name not in weights:
            raise ModelFolderError(f"{folder}: {WEIGHTS} lacks {name}, which {CONFIG}'s model needs")
        if tuple(weights[name].shape) != shape:
            raise ModelFolderError(f"{folder}: {WEIGHTS} has {name} of shape {tuple(weights[name].shape)}, but"
                                   f" {CONFIG}'s model needs {shape}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise ModelFolderError(f"{folder}: {WEIGHTS} has {extra[0]}, which {CONFIG}'s model does not have")


def mean_weights(paths: list[Path]) -> Weights:
    """The element-wise mean of weight files of one model, summed in float64."""
    total: dict[str, np.ndarray] = {}
    for path in paths:
        for name, array in read_weights(path).items():
            total[name] = total[name] + array.astype(np.float64) if name in total else array.astype(np.float64)
    dtypes = {name: array.dtype for name, array in read_weights(paths[0]).items()}
    return {name: (array / len(paths)).astype(dtypes[name]) for name, array in total.items()}


def average_checkpoints(path: str | Path, last: int, out: str | Path) -> dict[str, Any]:
    """A new model folder ``out`` whose weights are the mean of the ``last`` kept validations' weights of ``path``.

    Averaging the last checkpoints of a run smooths out the noise of its last updates (Junczys-Dowmunt et
    al., 2016; Vaswani et al., 2017). The run must have kept them: ``train.keep_checkpoints``.
    """
    if last < 1:
        raise ModelFolderError(f"average the last 1 or more checkpoints, not {last}")
    folder, out = read_model_folder(path), Path(out)
    kept = kept_weights(folder.path)
    if len(kept) < last:
        raise ModelFolderError(f"{folder.path}: {len(kept)} kept checkpoints, fewer than the {last} asked for;"
                               " train with --train.keep_checkpoints N to keep them")
    if out.exists() and any(out.iterdir()):
        raise ModelFolderError(f"{out}: not empty; write the average into a new folder")
    picked = kept[-last:]
    save_config(out, folder.config)
    save_tokenizers(out, folder.src, folder.tgt)
    write_weights(out / WEIGHTS, mean_weights(picked))
    metadata = {key: value for key, value in folder.metadata.items() if key != "format_version"}
    metadata["averaged_from"] = {"model": str(folder.path), "checkpoints": [p.name for p in picked]}
    save_metadata(out, metadata)
    return metadata

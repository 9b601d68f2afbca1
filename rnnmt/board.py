"""TensorBoard: what a training run writes for TensorBoard to draw, when ``train.tensorboard`` is on.

The event files go to the model folder's ``tensorboard/``: open them with ``tensorboard --logdir MODEL``.
TensorBoard is an optional extra (``pip install 'rnnmt[tensorboard]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnmt.errors import TrainingError
from rnnmt.plotting import attention_figure
from rnnmt.translator import Translator

FOLDER = "tensorboard"


class Board:
    """A TensorBoard writer, or nothing at all when it is off (so that callers never ask)."""

    def __init__(self, folder: Path, on: bool):
        self.writer = None
        if on:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # torch's writer needs the tensorboard package
                raise TrainingError("train.tensorboard needs TensorBoard: pip install 'rnnmt[tensorboard]'") from err
            self.writer = SummaryWriter(str(folder / FOLDER))

    def scalars(self, prefix: str, record: dict[str, Any]) -> None:
        """Every number of a log record, as ``prefix/name`` at its step."""
        if self.writer is None:
            return
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"{prefix}/{name}", value, record["step"])

    def validation(self, record: dict[str, Any], translator: Translator, dev: Any) -> None:
        """The dev scores, overall and per dev set, and the attention of one fixed dev sentence as an image."""
        if self.writer is None:
            return
        step = record["step"]
        self.scalars("dev", {k.removeprefix("dev_"): v for k, v in record.items() if k != "dev"})
        for name, scores in record.get("dev", {}).items():
            self.scalars(f"dev/{name}", {"step": step, **scores})
        if translator.model.decoder.attention is not None:
            sentence = next((en for en, _ in dev.pairs if 6 <= len(en.split()) <= 15), dev.pairs[0][0])
            result = translator.translate_full([sentence], beam_size=1)[0]
            figure = attention_figure(result.src_pieces, result.tgt_pieces, result.attention,
                                      f"{result.source}\n{result.text}")
            self.writer.add_figure(f"attention/{dev.name}", figure, step)  # closes the figure

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

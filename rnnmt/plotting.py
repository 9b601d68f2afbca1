"""Pictures of training: the loss curves, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_losses(history: list[dict], path: Path) -> None:
    """Training loss per logged step and dev loss per validation, on one chart."""
    train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    dev = [(h["step"], h["dev_loss"]) for h in history if "dev_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for points, label in ((train, "train loss"), (dev, "dev loss")):
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker="o" if label.startswith("dev") else None)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)

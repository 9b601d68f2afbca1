"""Pictures: loss curves, attention heatmaps, scores by length and gradient norms, saved as PNG."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rnnmt.model_folder import atomic_write  # noqa: E402

log = logging.getLogger(__name__)


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
    save(fig, path)


@functools.lru_cache(maxsize=1)
def use_devanagari_font() -> str | None:
    """Make Hindi text render: add a system Devanagari font (Noto, Lohit) as the fallback after DejaVu Sans."""
    for path in sorted(font_manager.findSystemFonts()):
        name = Path(path).name.lower()
        if "devanagari" in name and "bold" not in name and "serif" not in name:
            font_manager.fontManager.addfont(path)
            family = font_manager.FontProperties(fname=path).get_name()
            plt.rcParams["font.family"] = ["DejaVu Sans", family]
            return family
    log.warning("no Devanagari font found (apt-get install fonts-noto-core): Hindi labels will show as boxes")
    return None


def plot_attention(src_tokens: list[str], tgt_tokens: list[str], weights: list[list[float]], path: Path,
                   title: str = "") -> None:
    """A heatmap of attention weights, saved: English tokens across, Hindi tokens down."""
    save(attention_figure(src_tokens, tgt_tokens, weights, title), path)


def attention_figure(src_tokens: list[str], tgt_tokens: list[str], weights: list[list[float]],
                     title: str = "") -> plt.Figure:
    """A heatmap of attention weights: English tokens across, Hindi tokens down."""
    use_devanagari_font()
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(src_tokens), 1.2 + 0.4 * len(tgt_tokens)), dpi=110)
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(tgt_tokens)), tgt_tokens)
    ax.set_xlabel("English (source)")
    ax.set_ylabel("Hindi (output)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_scores_by_length(buckets: list[str], series: dict[str, list[float | None]], metric: str, path: Path) -> None:
    """One line per model: ``metric`` against source-length bucket."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for label, values in series.items():
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, path)


def plot_curves(curves: dict[str, dict[str, float]], metric: str, path: Path) -> None:
    """One line per run: ``metric`` against training step (``{run: {step: value}}``, steps as JSON keeps them)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for label, curve in curves.items():
        points = sorted((int(step), value) for step, value in curve.items())
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def plot_gradient_norms(norms: dict[str, dict[int, float]], relative: dict[str, dict[int, float]], path: Path) -> None:
    """One line per model, log scale: mean ``||dL/dh_t||`` (left) and its ratio to distance 0 (right) by distance."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    panels = ((axes[0], norms, "mean ||dL/dh_t||"), (axes[1], relative, "mean of ||dL/dh_t|| / ||dL/dh_T||"))
    for ax, series, ylabel in panels:
        for label, points in series.items():
            distances = sorted(d for d, value in points.items() if value > 0)  # 0 has no place on a log scale
            ax.plot(distances, [points[d] for d in distances], marker=".", label=label)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("distance from the end of the source, T - t (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save(fig, path)


def save(fig: plt.Figure, path: Path) -> None:
    """Write a figure as PNG atomically (as every file of a model folder is written) and free it."""
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)

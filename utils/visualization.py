"""Plots shared by every case, saved as PNG with the headless Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.script_utils import atomic_write  # noqa: E402

COLORS = {"lstm": "#1f77b4", "gru": "#d62728", "rnn": "#7f7f7f", "baseline": "#2ca02c"}


def save_figure(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save atomically (a PNG is never half-written) and close the figure."""
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict], path: Path | str, title: str = "",
                         metrics: Sequence[str] | None = None) -> Path:
    """Loss (train vs validation) on the left; validation metrics (e.g. accuracy) on the right."""
    epochs = [r["epoch"] for r in history]
    metrics = list(metrics) if metrics is not None else [
        k for k in history[0] if k.startswith("val_") and k != "val_loss"
        and isinstance(history[0][k], (int, float))] if history else []
    fig, axes = plt.subplots(1, 2 if metrics else 1, figsize=(11 if metrics else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    if "val_loss" in history[0]:
        ax.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if metrics:
        ax2 = axes[0, 1]
        for m in metrics:
            ax2.plot(epochs, [r.get(m) for r in history], "o-", label=m)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation metric")
        ax2.grid(alpha=0.3)
        ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(curves: dict[str, Sequence[float]], path: Path | str, xlabel: str, ylabel: str,
                title: str = "", logy: bool = False, x: Sequence[float] | None = None) -> Path:
    """Several named curves on one axis (e.g. scratch vs torch.nn loss, LSTM vs GRU)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in curves.items():
        xs = x if x is not None else range(1, len(ys) + 1)
        ax.plot(xs, ys, label=name, color=COLORS.get(name.split()[0].lower()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def plot_confusion_matrix(cm: np.ndarray, labels: Sequence[str], path: Path | str,
                          title: str = "Confusion matrix", normalize: bool = False) -> Path:
    """Rows are true classes, columns predicted; each cell shows the count (and row % if normalize)."""
    cm = np.asarray(cm)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{cm[i, j]}" + (f"\n{shown[i, j]:.0%}" if normalize else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > threshold else "black")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_predictions(x: Sequence, actual: Sequence[float], predictions: dict[str, Sequence[float]],
                     path: Path | str, title: str = "", ylabel: str = "value") -> Path:
    """Actual series against one or more predicted series (e.g. dates vs prices)."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(x, actual, color="black", lw=1.4, label="actual")
    for name, ys in predictions.items():
        ax.plot(x, ys, lw=1.0, alpha=0.85, label=name, color=COLORS.get(name.split()[0].lower()))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.autofmt_xdate()
    return save_figure(fig, path)


def plot_heatmap(matrix: np.ndarray, path: Path | str, title: str = "", xlabel: str = "time step",
                 ylabel: str = "unit", cmap: str = "viridis", vmin: float | None = None,
                 vmax: float | None = None, yticklabels: Sequence[str] | None = None) -> Path:
    """A matrix as an image, e.g. gate activations (units x time steps)."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(10, max(2.5, min(8.0, 0.12 * matrix.shape[0] + 1.5))))
    im = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.03)
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)), yticklabels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bars(groups: Sequence[str], series: dict[str, Sequence[float]], path: Path | str,
              ylabel: str = "", title: str = "", errors: dict[str, Sequence[float]] | None = None) -> Path:
    """Grouped bar chart (e.g. accuracy of LSTM / GRU / baseline per task), optional error bars."""
    n = len(series)
    width = 0.8 / max(n, 1)
    xs = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) + 2), 4))
    for k, (name, ys) in enumerate(series.items()):
        err = errors.get(name) if errors else None
        ax.bar(xs + (k - (n - 1) / 2) * width, ys, width, yerr=err, capsize=3, label=name,
               color=COLORS.get(name.split()[0].lower()))
    ax.set_xticks(xs, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)

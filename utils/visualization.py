"""Plots shared by every case, saved as PNG with the headless Agg backend (no display needed)."""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.script_utils import atomic_write  # noqa: E402

COLORS = {"lstm": "#1f77b4", "gru": "#d62728", "rnn": "#7f7f7f", "baseline": "#2ca02c"}
_OTHER_COLORS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def color_for(name: str) -> str:
    """LSTM is always blue, GRU red, RNN grey, a baseline green (by the label's first word); any other
    label gets a fixed colour from a palette that avoids those four, so curves never share a colour
    with the LSTM or GRU by accident."""
    key = re.sub(r"[^a-z0-9]", "", name.split()[0].lower()) if name.split() else ""
    return COLORS.get(key) or _OTHER_COLORS[zlib.crc32(name.encode()) % len(_OTHER_COLORS)]


def save_figure(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save atomically (a PNG is never half-written) and close the figure."""
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict] | dict[str, list[dict]], path: Path | str, title: str = "",
                         metrics: Sequence[str] | None = None, logy: bool = False) -> Path:
    """Loss (train vs validation) on the left; validation metrics (e.g. accuracy) on the right.
    history: one run's rows, or {label: rows} to overlay several runs (e.g. the members of an ensemble).
    The x axis is each row's 'epoch' (or 'step'); logy puts the losses on a log scale."""
    runs = history if isinstance(history, dict) else {"": history}
    first = next(iter(runs.values()), [])
    metrics = list(metrics) if metrics is not None else [
        k for k in first[0] if k.startswith("val_") and k != "val_loss"
        and isinstance(first[0][k], (int, float))] if first else []
    xkey = "epoch" if not first or "epoch" in first[0] else "step"
    # one colour per run: the 10 default colours, or 20 from tab20 when there are more runs
    palette = ([f"C{i}" for i in range(10)] if len(runs) <= 10
               else [plt.cm.tab20(i % 20) for i in range(len(runs))])
    fig, axes = plt.subplots(1, 2 if metrics else 1, figsize=(11 if metrics else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for i, (label, rows) in enumerate(runs.items()):
        epochs = [r[xkey] for r in rows]
        color = palette[i] if label else None
        ax.plot(epochs, [r["train_loss"] for r in rows], "o-", color=color, label=label or "train loss")
        if rows and "val_loss" in rows[0]:  # several runs: one colour each, dashed = validation
            ax.plot(epochs, [r["val_loss"] for r in rows], "s--" if label else "s-", color=color,
                    label=None if label else "validation loss")
    ax.set_xlabel(xkey)
    ax.set_ylabel("loss (solid: train, dashed: validation)" if len(runs) > 1 or "" not in runs else "loss")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small" if len(runs) > 1 else None, ncol=2 if len(runs) > 8 else 1)
    if metrics:
        ax2 = axes[0, 1]
        for i, (label, rows) in enumerate(runs.items()):
            for m in metrics:
                ax2.plot([r[xkey] for r in rows], [r.get(m) for r in rows], "o-",
                         color=palette[i] if label else None,
                         label=(f"{label}: {m}" if len(metrics) > 1 else label) if label else m)
        ax2.set_xlabel(xkey)
        ax2.set_ylabel("validation metric")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize="small" if len(runs) > 1 else None, ncol=2 if len(runs) > 8 else 1)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(curves: dict[str, Sequence[float]], path: Path | str, xlabel: str, ylabel: str,
                title: str = "", logy: bool = False, x: Sequence[float] | None = None,
                styles: dict[str, dict] | None = None) -> Path:
    """Several named curves on one axis (e.g. scratch vs torch.nn loss, LSTM vs GRU).

    `styles` optionally maps a curve name to matplotlib keywords (e.g. {"LSTM b_f=0": {"ls": "--"}}),
    to tell apart two curves of the same cell, which share its colour.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in curves.items():
        xs = x if x is not None else range(1, len(ys) + 1)
        style = {"color": color_for(name), **((styles or {}).get(name, {}))}
        ax.plot(xs, ys, label=name, **style)
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
               color=color_for(name))
    ax.set_xticks(xs, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_heatmap_panels(panels: dict[str, np.ndarray], path: Path | str, title: str = "",
                        xlabel: str = "time step", ylabel: str = "unit", cmap: str = "viridis",
                        vmin: float | None = 0.0, vmax: float | None = 1.0,
                        marks: Sequence[float] = ()) -> Path:
    """Several (units x time) matrices stacked with a shared time axis, e.g. an LSTM's i, f, o gates.

    `marks` puts a red triangle above these time steps on every panel (e.g. where the input carries a
    marker), leaving the column itself visible.
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels) + 0.6), sharex=True,
                             squeeze=False)
    for ax, (name, matrix) in zip(axes[:, 0], panels.items()):
        matrix = np.asarray(matrix)
        im = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        if len(marks):
            ax.plot(list(marks), [-0.5 - 0.04 * matrix.shape[0]] * len(marks), ls="", marker="v",
                    color="red", markersize=7, clip_on=False)
        ax.set_ylabel(f"{name}\n{ylabel}")
        fig.colorbar(im, ax=ax, fraction=0.03)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)

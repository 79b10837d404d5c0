"""Plots shared by every case, saved as PNG with the headless Agg backend (no display needed).

Every label is bilingual, Chinese first ("训练损失 / training loss"): importing this module registers the CJK
font that requirements.txt installs with pip, so Chinese renders on any machine, with or without system fonts.
"""
from __future__ import annotations

import importlib
import logging
import re
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from utils.script_utils import atomic_write  # noqa: E402

# ---- Chinese in every plot ---------------------------------------------------------------------------
# The font comes from a pip package, so a fresh Windows, Mac or Linux machine needs no system font:
# Noto Sans SC Regular (one .otf file) from pylopdf-fonts-zh-cn (requirements.txt). Chosen over the others
# measured (2026-12): its wheel is 17 MB, against 85 MB for mplfonts, which also bundles SimHei, a font
# whose licence is not open; the font is under the SIL Open Font License 1.1, and the package holds nothing
# else but a serif face and a two-function API; it draws the simplified-Chinese forms of the characters
# (notojp-matplotlib's Noto Sans CJK JP draws the Japanese forms of some of them) and covers all 20,976 CJK
# Unified Ideographs U+4E00-U+9FFF; it is a plain .otf, which every matplotlib that requirements.txt allows
# can read (before 3.11, matplotlib reads only the first face of a .ttc collection, the Japanese one in
# noto-cjk-sans-otc's and manimgx-fonts-cjk's). Without the package, a system CJK font is used if there is
# one. matplotlib falls back glyph by glyph along rcParams["font.family"]: Latin text stays in DejaVu Sans,
# only the Chinese characters come from the CJK font.
CJK_FONT_PACKAGE = "pylopdf_fonts_zh_cn"    # pip install pylopdf-fonts-zh-cn
CJK_SYSTEM_FAMILIES = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Zen Hei",
                       "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC",
                       "Droid Sans Fallback", "Noto Sans CJK JP", "Noto Sans CJK TC")
_CJK_FILE_NAMES = re.compile(r"cjk|wqy|sourcehan|droidsansfallback|simhei|msyh|pingfang|notosanssc", re.I)


def cjk_font_file() -> Path | None:
    """The CJK font file that requirements.txt installs (Noto Sans SC Regular), or None without it."""
    try:
        package = importlib.import_module(CJK_FONT_PACKAGE)
    except ImportError:
        return None
    path = Path(package.sans_path())
    return path if path.is_file() else None


def use_chinese_font(choice: str = "auto", quiet: bool = False) -> str:
    """Register a CJK font and make it matplotlib's fallback for Chinese glyphs; -> its family, or "".

    choice: "auto" = the pip package's Noto Sans SC, else the first system CJK font found; a family name
    to use that one; "none" = no CJK font (Latin only). rcParams["font.family"] becomes
    ["DejaVu Sans", <CJK family>]: matplotlib takes each glyph from the first font in the list that has it.
    """
    wanted: tuple[str, ...] = ()
    if choice == "auto":
        path = cjk_font_file()
        if path is not None:
            font_manager.fontManager.addfont(str(path))
            wanted = (font_manager.FontProperties(fname=str(path)).get_name(),)
        wanted += CJK_SYSTEM_FAMILIES
    elif choice != "none":
        wanted = (choice,)
    known = {f.name for f in font_manager.fontManager.ttflist}
    if wanted and not known.intersection(wanted):
        # matplotlib's font cache predates fonts installed later: add system files that look like CJK fonts
        for found in font_manager.findSystemFonts():
            if _CJK_FILE_NAMES.search(Path(found).name):
                try:
                    font_manager.fontManager.addfont(found)
                except (OSError, RuntimeError, ValueError):
                    continue
        known = {f.name for f in font_manager.fontManager.ttflist}
    family = next((name for name in wanted if name in known), "")
    plt.rcParams["font.family"] = ["DejaVu Sans"] + ([family] if family else [])  # a list: glyph fallback
    plt.rcParams["axes.unicode_minus"] = True  # DejaVu Sans has the minus sign U+2212
    if not family and choice != "none":
        # one line instead of a warning per missing glyph: Chinese labels show as empty boxes
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font")
        if not quiet:
            print(f"warning: no CJK font found ({choice}); Chinese labels will show as boxes "
                  "(pip install pylopdf-fonts-zh-cn, as requirements.txt does)")
    return family


# The package has the regular weight only: a bold title draws its Chinese characters regular, and
# matplotlib's one-line note about it says nothing a learner needs.
logging.getLogger("matplotlib.font_manager").addFilter(
    lambda record: not record.getMessage().startswith("findfont: Failed to find font weight"))
CJK_FAMILY = use_chinese_font()   # every plot drawn through this module can show Chinese

COLORS = {"lstm": "#1f77b4", "gru": "#d62728", "rnn": "#7f7f7f", "baseline": "#2ca02c"}
_OTHER_COLORS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def color_for(name: str) -> str:
    """LSTM is always blue, GRU red, RNN grey, a baseline green (by the first word of the label's English,
    which follows " / " in a bilingual label: "基线 / baseline"); any other label gets a fixed colour from a
    palette that avoids those four, so curves never share a colour with the LSTM or GRU by accident."""
    english = name.split(" / ")[-1]
    key = re.sub(r"[^a-z0-9]", "", english.split()[0].lower()) if english.split() else ""
    return COLORS.get(key) or _OTHER_COLORS[zlib.crc32(english.encode()) % len(_OTHER_COLORS)]


METRIC_NAMES = {"loss": ("损失", "loss"), "accuracy": ("准确率", "accuracy"), "f1": ("F1", "F1"),
                "macro_f1": ("宏平均 F1", "macro F1"), "wer": ("词错误率", "WER"),
                "per": ("音素错误率", "PER"), "rmse": ("RMSE", "RMSE"), "mae": ("MAE", "MAE"),
                "nmse": ("MSE 与基线之比", "MSE over baseline"), "perplexity": ("困惑度", "perplexity"),
                "bits_per_char": ("bits/char", "bits/char"), "nats_per_char": ("nats/char", "nats/char")}


def metric_label(key: str) -> str:
    """A history's metric key as a bilingual label: 'val_accuracy' -> '验证准确率 / val accuracy'."""
    val = key.startswith("val_")
    name = key[4:] if val else key
    zh, en = METRIC_NAMES.get(name, (name, name))
    if not val:
        return zh if zh == en else f"{zh} / {en}"
    return f"验证{' ' if zh[0].isascii() else ''}{zh} / val {en}"


def save_figure(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save atomically (a PNG is never half-written) and close the figure."""
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


X_LABELS = {"epoch": "轮次 / epoch", "step": "步数 / step"}


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
        ax.plot(epochs, [r["train_loss"] for r in rows], "o-", color=color,
                label=label or "训练损失 / training loss")
        if rows and "val_loss" in rows[0]:  # several runs: one colour each, dashed = validation
            ax.plot(epochs, [r["val_loss"] for r in rows], "s--" if label else "s-", color=color,
                    label=None if label else "验证损失 / validation loss")
    ax.set_xlabel(X_LABELS[xkey])
    ax.set_ylabel("损失（实线：训练，虚线：验证）\nloss (solid: train, dashed: validation)"
                  if len(runs) > 1 or "" not in runs else "损失 / loss")
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
                         label=(f"{label}: {metric_label(m)}" if len(metrics) > 1 else label) if label
                         else metric_label(m))
        ax2.set_xlabel(X_LABELS[xkey])
        ax2.set_ylabel("验证集上的指标 / validation metric")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize="small" if len(runs) > 1 else None, ncol=2 if len(runs) > 8 else 1)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(curves: dict[str, Sequence[float]], path: Path | str, xlabel: str, ylabel: str,
                title: str = "", logy: bool = False, x: Sequence[float] | None = None,
                styles: dict[str, dict] | None = None, legend_outside: bool = False) -> Path:
    """Several named curves on one axis (e.g. scratch vs torch.nn loss, LSTM vs GRU).

    `styles` optionally maps a curve name to matplotlib keywords (e.g. {"LSTM b_f=0": {"ls": "--"}}),
    to tell apart two curves of the same cell, which share its colour. `legend_outside` puts the legend
    to the right of the axes, where long bilingual names cover no point.
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
    ax.legend(**({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if legend_outside else {}))
    ax.set_title(title)
    return save_figure(fig, path)


def plot_confusion_matrix(cm: np.ndarray, labels: Sequence[str], path: Path | str,
                          title: str = "混淆矩阵 / confusion matrix", normalize: bool = False) -> Path:
    """Rows are true classes, columns predicted; each cell shows the count (and row % if normalize)."""
    cm = np.asarray(cm)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("预测的类别 / predicted")
    ax.set_ylabel("真实的类别 / true")
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
                        xlabel: str = "时间步 / time step", ylabel: str = "隐藏单元 / unit",
                        cmap: str = "viridis",
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

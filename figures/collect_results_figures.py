"""The pictures of real runs that the READMEs show, collected from outputs/ into figures/results/.

Each row of RESULTS below names a figure in figures/results/, the run's file it comes from (under outputs/,
or a README table) and how it gets there: copied as the run drew it (made smaller if it is over MAX_KB),
or redrawn from the run's numbers. Prints one line per figure: where it came from, or why it is missing
(and which script to run). Run:  python figures/collect_results_figures.py  from the repo root  (--help)
To add a case's figures: run its script at its defaults, add rows to RESULTS, rerun this, and caption them.

中文：把各个 README 里展示的"真实运行的图"从 outputs/ 收集到 figures/results/。
下面的 RESULTS 表每一行给出 figures/results/ 里的一张图、它来自哪次运行的哪个文件
（outputs/ 下，或某个 README 里的表格），以及怎样得到它：照运行时画的原样复制（超过 MAX_KB 就缩小），
或者用运行记录的数字重画。每张图打印一行：从哪里来，或者为什么缺（以及该先运行哪个脚本）。
运行：在仓库根目录执行 python figures/collect_results_figures.py（--help 查看选项）。
要加入别的案例的图：先用默认设置运行那个脚本，在 RESULTS 里加几行，再运行本脚本，并在 README 里写好图注。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import importlib.util
import io
import json
import math
import re
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.script_utils import (  # noqa: E402
    OUTPUTS_ROOT,
    REPO_ROOT,
    AtLeast,
    atomic_write,
    parse_config,
    run_main,
    shown_path,
)

# ==== Settings (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
OUTPUTS: str = "auto"                   # where the runs' results are read: auto = outputs/
                                        # (or $LSTM_GRU_OUTPUTS)
OUT_DIR: str = "figures/results"        # where the figures go: relative to the repo root, or an absolute path
ONLY: str = "all"                       # every figure, or the one whose file name
                                        # (without .png) starts with this
MAX_KB: AtLeast(20) = 300               # largest PNG kept, in kB (1 kB = 1024 bytes); bigger ones are shrunk
DPI: AtLeast(60) = 110                  # pixels per inch of the redrawn figures
CJK_FONT: str = "auto"                  # font for Chinese labels: auto = the first CJK font found;
                                        # none = English only
MEASURED_ON: str = "2-core AMD EPYC CPU"  # the machine the runs were made on,
                                          # written under the redrawn figures
TABLE_05_MEASURED: str = "2-core AMD EPYC, torch 2.13.0 CPU, 2026-11-27"  # the run behind 05's README table
ZOOM_DAYS: AtLeast(5) = 40              # last test days shown close up in 03's forecast figure

CHECKS = [(lambda: ONLY == "all" or any(r.name.startswith(ONLY) for r in RESULTS),
           "ONLY must be 'all' or the start of a figure's name in RESULTS (e.g. 01_loss_curves)")]


class Figure(NamedTuple):
    name: str           # file in OUT_DIR
    source: str         # the file it comes from: under OUTPUTS, or "repo:<path>" for a file of the repository
    how: str            # "copy", or the name of a draw_* function below that redraws it from `source`
    made_by: str        # the command whose run writes `source`


# The table of contents: one row per figure. Cases 02, 04 and 06 can add their rows here.
RESULTS = (
    Figure("01_gradient_norms.png", "01_basic_theory/theory_comparison/gradient_norms.png", "copy",
           "python 01_basic_theory/theory_comparison.py"),
    Figure("01_error_vs_lag.png", "01_basic_theory/theory_comparison/error_vs_lag.png", "copy",
           "python 01_basic_theory/theory_comparison.py"),
    Figure("01_gates_lstm.png", "01_basic_theory/theory_comparison/gates_lstm.png", "copy",
           "python 01_basic_theory/theory_comparison.py"),
    Figure("01_gates_gru.png", "01_basic_theory/theory_comparison/gates_gru.png", "copy",
           "python 01_basic_theory/theory_comparison.py"),
    Figure("01_loss_curves.png", "01_basic_theory/lstm_from_scratch/metrics.json", "draw_scratch_vs_torch",
           "python 01_basic_theory/lstm_from_scratch.py"),
    Figure("02_training_curves.png", "02_sentiment/sentiment_lstm/training_curves.png", "copy",
           "python 02_sentiment/sentiment_lstm.py"),
    Figure("02_confusion_matrix.png", "02_sentiment/sentiment_lstm/confusion_matrix.png", "copy",
           "python 02_sentiment/sentiment_lstm.py"),
    Figure("02_labelled_size_curve.png", "02_sentiment/pretraining_study/curve/labelled_size_curve.png",
           "copy",
           "python 02_sentiment/pretraining_study.py (after sentiment_lstm.py --PRETRAINED=..., README)"),
    Figure("02_stage1_length.png", "02_sentiment/pretraining_study/stage1/stage1_length.png", "copy",
           "python 02_sentiment/pretraining_study.py --PART=stage1 (after 04's 2- and 32-min runs, README)"),
    Figure("02_stage2_length.png", "02_sentiment/pretraining_study/stage2/stage2_length.png", "copy",
           "python 02_sentiment/pretraining_study.py --PART=stage2 (after 04's default run)"),
    Figure("03_forecast_vs_persistence.png", "03_stock/stock_lstm/predictions.csv",
           "draw_forecast_vs_persistence", "python 03_stock/stock_lstm.py"),
    Figure("03_training_curves.png", "03_stock/stock_lstm/training_curves.png", "copy",
           "python 03_stock/stock_lstm.py"),
    Figure("04_attention_gru.png", "04_text_gen/g2p_gru/attention.png", "copy",
           "python 04_text_gen/g2p_gru.py"),
    Figure("04_wer_by_length.png", "04_text_gen/g2p_lstm/metrics.json", "draw_wer_by_length",
           "python 04_text_gen/g2p_lstm.py (and g2p_gru.py, --ATTENTION=false, for more curves)"),
    Figure("04_char_model_progress.png", "04_text_gen/text_lstm/metrics.json", "draw_char_model_progress",
           "python 04_text_gen/text_lstm.py"),
    Figure("05_accuracy_per_dataset.png", "repo:05_seq_classify/README.md", "draw_accuracy_per_dataset",
           "the measured table of 05_seq_classify/README.md"),
    Figure("05_confusion_gunpoint_gru.png",
           "05_seq_classify/classification_metrics/GunPoint/confusion_gru.png", "copy",
           "python 05_seq_classify/classification_metrics.py"),
    Figure("05_training_curves_gunpoint_gru.png", "05_seq_classify/sequence_gru/GunPoint/progress.jsonl",
           "draw_ensemble_curves", "python 05_seq_classify/sequence_gru.py"),
    Figure("06_lstm_vs_gru.png", "repo:06_comparison/README.md", "draw_cell_comparison",
           "the measured tables of 06_comparison/README.md"),
    Figure("06_study_grid.png", "repo:06_comparison/README.md", "draw_study_grid",
           "the measured table of 06_comparison/README.md (python 06_comparison/hyperparameter_study.py)"),
    Figure("06_gate_explorer_zh.png", "06_comparison/gate_explorer/screenshots/gate_explorer_zh.png", "copy",
           "python 06_comparison/gate_explorer.py --SCREENSHOTS"),
    Figure("06_gate_explorer_en.png", "06_comparison/gate_explorer/screenshots/gate_explorer_en.png", "copy",
           "python 06_comparison/gate_explorer.py --SCREENSHOTS"),
    Figure("06_interpretable_units.png", "06_comparison/gate_explorer/interpretable_units.png", "copy",
           "python 06_comparison/gate_explorer.py"),
    Figure("06_gate_saturation.png", "06_comparison/gate_explorer/gate_saturation.png", "copy",
           "python 06_comparison/gate_explorer.py"),
)


class Missing(Exception):
    """A figure that cannot be made now: said in one line, and the others still go ahead."""


# ---------------------------------------------------------------------------------------------------
# Fonts and labels: the same as THEORY.md's figures (Chinese first, English after;
# English alone without a CJK font)
# ---------------------------------------------------------------------------------------------------
def theory_figures():
    spec = importlib.util.spec_from_file_location("draw_theory_figures",
                                                  Path(__file__).with_name("draw_theory_figures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


THEORY = theory_figures()


def bi(zh: str, en: str, sep: str = " / ") -> str:
    return THEORY.bi(zh, en, sep=sep)


# ---------------------------------------------------------------------------------------------------
# Copying, and keeping every PNG under MAX_KB
# ---------------------------------------------------------------------------------------------------
def png_bytes_within(data: bytes, limit: int) -> bytes:
    """The PNG as it is if it fits in `limit` bytes; else a 256-colour palette copy, then smaller ones
    (each 85% of the last's width) until it fits. Raises Missing if it is not an image PIL can read."""
    if len(data) <= limit:
        return data
    from PIL import Image, UnidentifiedImageError
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise Missing(f"{len(data) / 1024:.0f} kB, over {limit / 1024:.0f} kB, and not an image to shrink "
                      f"({e})")
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit or image.width < 300:
            return buffer.getvalue()
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)), Image.Resampling.LANCZOS)


def copy_figure(source: Path, dest: Path, limit: int) -> str:
    data = source.read_bytes()
    kept = png_bytes_within(data, limit)
    atomic_write(dest, lambda p: p.write_bytes(kept))
    return "copied" if kept is data else f"shrunk from {len(data) / 1024:.0f} kB"


def save_drawn(fig, dest: Path, limit: int) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png", bbox_inches="tight", facecolor="white",
                metadata={"Software": None})
    plt.close(fig)
    drawn = buffer.getvalue()
    kept = png_bytes_within(drawn, limit)
    atomic_write(dest, lambda p: p.write_bytes(kept))
    return "redrawn" if kept is drawn else f"redrawn, shrunk from {len(drawn) / 1024:.0f} kB,"


def footer(fig, lines: list[str]) -> None:
    """Where the figure's numbers come from, in small grey type under the axes."""
    fig.text(0.01, -0.01, "\n".join(lines), fontsize=8, color="#555555", va="top", ha="left")


def run_record(source: Path) -> dict:
    """The metrics.json of the run that wrote `source` (in its folder or the one above), or {}."""
    for folder in (source.parent, source.parent.parent):
        path = folder / "metrics.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
    return {}


def run_stamp(record: dict) -> str:
    if not record:
        return "no metrics.json beside it"
    return (f"run finished {record.get('finished', '?')}, "
            f"torch {str(record.get('torch_version', '?')).split('+')[0]}, {record.get('device', '?')}")


# ---------------------------------------------------------------------------------------------------
# Redrawn figures
# ---------------------------------------------------------------------------------------------------
def draw_scratch_vs_torch(source: Path, record: dict):
    """01: ScratchLSTM and torch.nn.LSTM trained side by side (same init, same batches): their loss curves
    per epoch (metrics.json's history), and on the right how far apart they are (float32 rounding)."""
    history = record["history"]
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for split, color, zh in (("train", "#1f77b4", "训练"), ("val", "#ff7f0e", "验证")):
        en = "train" if split == "train" else "validation"
        left.plot(epochs, [r[f"scratch_{split}_loss"] for r in history], "-", color=color, lw=5, alpha=0.35,
                  label=bi(f"手写 ScratchLSTM，{zh}", f"scratch, {en}"))
        left.plot(epochs, [r[f"torch_{split}_loss"] for r in history], "o--", color=color, lw=1.2, ms=3.5,
                  label=bi(f"torch.nn.LSTM，{zh}", f"torch.nn, {en}"))
        right.plot(epochs,
                   [max(abs(r[f"scratch_{split}_loss"] - r[f"torch_{split}_loss"]), 1e-18) for r in history],
                   "o-", color=color, ms=3.5, label=bi(zh, en))
    left.set_yscale("log")
    left.set_xlabel(bi("轮次", "epoch"))
    left.set_ylabel(bi("均方误差", "MSE", sep="\n"))
    left.set_title(bi("正弦波任务：两条曲线重合", "sine task: the two curves coincide"), fontsize=10.5)
    left.legend(fontsize=8.5)
    right.set_yscale("log")
    right.set_xlabel(bi("轮次", "epoch"))
    right.set_ylabel(bi("两者损失之差的绝对值", "|scratch - torch.nn| loss", sep="\n"))
    right.set_title(bi("差别只是 float32 的舍入误差", "the gap is float32 rounding"), fontsize=10.5)
    right.legend(fontsize=8.5)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    footer(fig, [f"{shown_path(source)} of python 01_basic_theory/lstm_from_scratch.py, {MEASURED_ON}, "
                 f"{run_stamp(record)}", "redrawn by python figures/collect_results_figures.py"])
    return fig


def draw_forecast_vs_persistence(source: Path, record: dict):
    """03: the LSTM's next-day forecast, persistence ("tomorrow = today") and the actual close on the test
    days (predictions.csv: date, actual, prediction, persistence); below, the last ZOOM_DAYS days close up,
    where the forecast is seen to trail the price by a day, as persistence does by construction."""
    import pandas as pd
    table = pd.read_csv(source)
    absent = {"date", "actual", "prediction", "persistence"} - set(table.columns)
    if absent:
        raise Missing(f"{shown_path(source)} has no column {', '.join(sorted(absent))}")
    dates = pd.to_datetime(table["date"])
    rmse = {k: float(np.sqrt(np.mean((table[k] - table["actual"]) ** 2)))
            for k in ("prediction", "persistence")}
    config = record.get("config", {})
    ticker = config.get("TICKER", "?")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.2), gridspec_kw={"height_ratios": [1, 1.1]})
    series = (("actual", bi("实际收盘价", "actual close"), "#222222", "-", None),
              ("persistence", bi("持续性预测基线（明天 = 今天）", "persistence (tomorrow = today)"),
               "#2ca02c", "--", "s"),
              ("prediction", bi("LSTM 预测", "LSTM forecast"), "#1f77b4", "-", "o"))
    for column, label, color, style, _ in series:
        top.plot(dates, table[column], style, color=color, lw=1.4 if column == "actual" else 1.1, label=label)
    top.set_title(bi(f"{ticker}：测试期每天预测下一天的收盘价（{len(table)} 个交易日）",
                     f"{ticker}: next-day close on the {len(table)} test days"), fontsize=11)
    top.set_ylabel(bi("收盘价（拆股调整后）", "close, split-adjusted", sep="\n"))
    top.legend(loc="upper left", fontsize=9)
    top.grid(alpha=0.3)
    tail = table.tail(ZOOM_DAYS)
    tail_dates = dates.tail(ZOOM_DAYS)
    for column, label, color, style, marker in series:
        bottom.plot(tail_dates, tail[column], style, color=color, lw=1.3, marker=marker, ms=4, label=label)
    bottom.set_title(bi(f"最后 {ZOOM_DAYS} 天放大：预测几乎就是前一天的价格，和持续性预测基线一样落后一天",
                        f"the last {ZOOM_DAYS} days: the forecast trails the price by a day, "
                        "as persistence does",
                        sep="\n"), fontsize=10.5)
    bottom.set_ylabel(bi("收盘价", "close", sep="\n"))
    bottom.grid(alpha=0.3)
    bottom.text(0.01, 0.04, f"RMSE：LSTM {rmse['prediction']:.3f}，持续性预测 {rmse['persistence']:.3f} / "
                            f"RMSE: LSTM {rmse['prediction']:.3f}, persistence {rmse['persistence']:.3f}",
                transform=bottom.transAxes, fontsize=9, bbox=dict(fc="white", ec="#cccccc"))
    for ax in (top, bottom):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    footer(fig, [f"{shown_path(source)} of python 03_stock/stock_lstm.py, {MEASURED_ON}, {run_stamp(record)}",
                 "redrawn by python figures/collect_results_figures.py"])
    return fig


def draw_ensemble_curves(source: Path, record: dict):
    """05: each member of a seed ensemble, epoch by epoch (progress.jsonl: one row per epoch, tagged with
    its run): training and validation loss, and validation accuracy with the epoch early stopping kept.
    The legend gives each member's best epoch and test accuracy (metrics.json's per_seed entry)."""
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    runs: dict[str, list[dict]] = {}
    for row in rows:
        if "epoch" in row and "run" in row:
            runs.setdefault(row["run"], []).append(row)
    if not runs:
        raise Missing(f"no epoch rows in {shown_path(source)}")
    seed = (record.get("metrics", {}).get("per_seed") or [{}])[0]
    best = seed.get("best_epoch") or [None] * len(runs)
    tests = seed.get("member_test_accuracy") or [None] * len(runs)
    best = best if isinstance(best, list) else [best]
    config = record.get("config", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    for k, (name, history) in enumerate(runs.items()):
        color = f"C{k}"
        epochs = [r["epoch"] for r in history]
        left.plot(epochs, [r["train_loss"] for r in history], "-", color=color, lw=1.1)
        left.plot(epochs, [r["val_loss"] for r in history], "--", color=color, lw=1.0, alpha=0.8)
        zh, en = re.sub(r"model (\d+) \(seed (\d+)\)", r"模型 \1（种子 \2）", name), name
        if k < len(best) and best[k] is not None:
            zh, en = zh + f"：最好的一轮 {best[k]}", en + f": best epoch {best[k]}"
        if k < len(tests) and tests[k] is not None:
            zh, en = zh + f"，测试 {tests[k]:.3f}", en + f", test {tests[k]:.3f}"
        label = bi(zh, en, sep="\n")
        right.plot(epochs, [r["val_accuracy"] for r in history], "-", color=color, lw=1.1, label=label)
        if k < len(best) and best[k] in epochs:
            row = history[epochs.index(best[k])]
            right.plot([best[k]], [row["val_accuracy"]], "*", color=color, ms=13, mec="black", mew=0.6,
                       zorder=5)
    left.set_yscale("log")
    left.set_xlabel(bi("轮次", "epoch"))
    left.set_ylabel(bi("交叉熵损失（实线：训练，虚线：验证）",
                       "cross-entropy (solid: train, dashed: validation)", sep="\n"),
                    fontsize=9)
    left.set_title(bi("每个成员的损失", "each member's loss"), fontsize=10.5)
    right.set_xlabel(bi("轮次", "epoch"))
    right.set_ylabel(bi("验证准确率", "validation accuracy", sep="\n"))
    right.set_ylim(0, 1.05)
    right.set_title(bi("验证准确率；星号是早停留下的轮次",
                       "validation accuracy; a star marks the epoch kept"),
                    fontsize=10.5)
    right.legend(fontsize=7, loc="lower right", labelspacing=0.3)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    ensemble = seed.get("test_accuracy")
    fig.suptitle(bi(f"GRU 在 {config.get('DATASET', '?')} 上的 {len(runs)} 模型集成" +
                    (f"：集成测试准确率 {ensemble:.3f}" if ensemble is not None else ""),
                    f"GRU ensemble of {len(runs)} on {config.get('DATASET', '?')}" +
                    (f": ensemble test accuracy {ensemble:.3f}" if ensemble is not None else "")),
                 fontsize=11)
    fig.tight_layout()
    footer(fig,
           [f"{shown_path(source)} of python 05_seq_classify/sequence_gru.py, {MEASURED_ON}, "
            f"{run_stamp(record)}",
            "redrawn by python figures/collect_results_figures.py"])
    return fig


G2P_RUNS = (("g2p_lstm", "LSTM", "#1f77b4"), ("g2p_gru", "GRU", "#d62728"))


def draw_wer_by_length(source: Path, record: dict):
    """04: test WER (beam 5) and PER (greedy) per word-length bin of every pronunciation run found beside
    `source` (g2p_lstm/, g2p_gru/ and their no_attention/ folders; metrics.json's wer_by_length), one line
    per model on the same test words; dashed without attention."""
    case = source.parent.parent
    runs = []
    for folder, cell, color in G2P_RUNS:
        for sub, zh, en, style in ((None, "有注意力", "attention", "-"),
                                   ("no_attention", "无注意力", "no attention", "--")):
            path = case / folder / (sub or "") / "metrics.json"
            if path.is_file():
                saved = json.loads(path.read_text(encoding="utf-8"))
                runs.append((bi(f"{cell} {zh}", f"{cell} {en}"), saved, color, style, path))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    for label, saved, color, style, _ in runs:
        lengths = saved["metrics"]["wer_by_length"]
        bins = list(lengths["beam"])
        left.plot(bins, [100 * lengths["beam"][b]["wer"] for b in bins], style, marker="o", color=color,
                  label=label + f": {100 * saved['metrics']['test_wer']:.1f}%")
        right.plot(bins, [100 * lengths["greedy"][b]["per"] for b in bins], style, marker="o", color=color,
                   label=label)
    first = runs[0][1]["metrics"]["wer_by_length"]["beam"]
    ticks = [f"{b}\n({first[b]['words']:,})" for b in first]
    for ax in (left, right):
        ax.set_xticks(range(len(ticks)), ticks, fontsize=8.5)
        ax.set_xlabel(bi("词长（字母数；括号里是测试词数）", "word length in letters (test words)"),
                      fontsize=9)
        ax.grid(alpha=0.3)
    left.set_ylabel(bi("测试词错误率 WER（%）", "test WER (%)", sep="\n"))
    left.set_title(bi("词错误率（束搜索宽度 5），越低越好", "word error rate (beam 5), lower is better",
                      sep="\n"),
                   fontsize=10)
    left.legend(fontsize=8.5, title=bi("名字后是总 WER", "overall WER after the name"), title_fontsize=8)
    right.set_ylabel(bi("测试音素错误率 PER（%）", "test PER (%)", sep="\n"))
    right.set_title(bi("音素错误率（贪心），越低越好", "phoneme error rate (greedy), lower is better",
                       sep="\n"),
                    fontsize=10)
    right.legend(fontsize=8.5)
    fig.tight_layout()
    footer(fig, [f"{shown_path(path)}: {run_stamp(saved)}" for _, saved, _, _, path in runs]
           + [f"python 04_text_gen/g2p_lstm.py / g2p_gru.py, {MEASURED_ON}; "
              "redrawn by python figures/collect_results_figures.py"])
    return fig


def draw_char_model_progress(source: Path, record: dict):
    """04: the character model's validation nats/char at each report of a default text_lstm.py run (each
    report scores VAL_CHARS_PER_EPOCH validation characters; the last point, all of them), against the
    5-gram baseline, beside the sample the model wrote at each report (temperature 0.8, the same seed)."""
    history = record.get("history") or []
    if not history or "sample" not in history[0]:
        raise Missing(f"{shown_path(source)} has no samples in its history (a run from before they were "
                      f"kept); run python 04_text_gen/text_lstm.py")
    metrics, prompt = record["metrics"], record["config"]["PROMPT"]
    seen = [r["chars_seen"] / 1e6 for r in history]
    fig, (ax, text) = plt.subplots(1, 2, figsize=(12.5, 4.9), gridspec_kw={"width_ratios": [1, 1.25]})
    ax.plot(seen, [r["val_loss"] for r in history], "o-", color="#1f77b4",
            label=bi("每次报告的验证 nats/char", "validation nats/char at each report"))
    ax.plot(seen, [r["train_loss"] for r in history], "s--", color="#aaaaaa",
            label=bi("训练损失", "training loss"))
    ax.axhline(metrics["baseline_nats_per_char"], color="#2ca02c", ls=":",
               label=bi(f"5-gram 基线 {metrics['baseline_nats_per_char']:.3f}",
                        f"5-gram baseline {metrics['baseline_nats_per_char']:.3f}"))
    ax.plot([seen[-1]], [metrics["val_nats_per_char"]], "*", ms=14, color="#d62728",
            label=bi(f"最好的模型，全部验证集 {metrics['val_nats_per_char']:.3f}",
                     f"best model, all validation text {metrics['val_nats_per_char']:.3f}"))
    for k, (x, r) in enumerate(zip(seen, history), start=1):
        ax.annotate(f"{k}", (x, r["val_loss"]), textcoords="offset points", xytext=(6, 6), fontsize=9,
                    color="#1f77b4")
    ax.set_xlabel(bi("已训练的字符数（百万）", "characters trained on (millions)"))
    ax.set_ylabel(bi("nats/char，越低越好", "nats per character, lower is better", sep="\n"))
    ax.set_title(bi("字符语言模型的验证损失", "the character model's validation loss", sep="\n"),
                 fontsize=10.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5)
    text.axis("off")
    text.set_title(bi(f"每次报告时写出的样本（温度 0.8，提示 {prompt.strip()!r}）",
                      f"the sample at each report (temperature 0.8, prompt {prompt.strip()!r})", sep="\n"),
                   fontsize=10.5)
    lines = []
    for k, r in enumerate(history, start=1):
        sample = (prompt + r["sample"])[:170]
        wrapped = [part[:62] for part in sample.splitlines() if part.strip()][:4]
        lines.append(f"[{k}] {r['chars_seen'] / 1e6:.1f}M, {r['val_loss']:.3f} nats/char")
        lines += ["    " + w for w in wrapped] + [""]
    text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8.3,
              transform=text.transAxes)
    fig.tight_layout()
    footer(fig, [f"{shown_path(source)}: {run_stamp(record)}",
                 f"python 04_text_gen/text_lstm.py at its defaults "
                 f"({record['config']['MAX_MINUTES']:g}-minute budget), {MEASURED_ON}; "
                 "redrawn by python figures/collect_results_figures.py"])
    return fig


ESTIMATE = re.compile(r"^\**([\d.]+)\s*±\s*([\d.]+)")   # "0.783 ± 0.008" (bold or with a bits/char note)


def comparison_rows(readme: str) -> list[tuple]:
    """06's README tables -> (task in Chinese, in English, metric, LSTM mean, std, GRU mean, std) per task,
    from every row whose metric has a direction arrow and whose LSTM and GRU cells read "mean ± std"."""
    rows = []
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not ("↑" in cells[1] or "↓" in cells[1]):
            continue
        lstm, gru = ESTIMATE.match(cells[2]), ESTIMATE.match(cells[3])
        if lstm and gru and "/ " in cells[0]:
            zh, en = re.split(r"\s*/\s+", cells[0], maxsplit=1)
            if en not in [r[1] for r in rows]:
                rows.append((zh, en, cells[1], *map(float, lstm.groups()), *map(float, gru.groups())))
    return rows


def draw_cell_comparison(source: Path, record: dict):
    """06: LSTM against GRU on every task of 06's README tables (model_comparison.py, 3 seeds each): the mean
    and a band of ± one standard deviation over the seeds, one panel per task (each has its own metric and
    direction). Read from the README's measured tables: the runs behind them take hours on 2 CPU cores."""
    rows = comparison_rows(source.read_text(encoding="utf-8"))
    if not rows:
        raise Missing(f"no 'task | metric | LSTM a ± b | GRU a ± b | ...' table in {shown_path(source)}")
    fig, axes = plt.subplots(1, len(rows), figsize=(2.45 * len(rows) + 0.6, 4.0))
    for ax, (zh, en, metric, lm, ls, gm, gs) in zip(np.atleast_1d(axes), rows):
        for x, (mean, std, color) in enumerate(((lm, ls, "#1f77b4"), (gm, gs, "#d62728"))):
            ax.fill_between([x - 0.28, x + 0.28], mean - std, mean + std, color=color, alpha=0.25, lw=0)
            ax.plot([x - 0.28, x + 0.28], [mean, mean], color=color, lw=2.5)
            ax.text(x, mean + std, f"{mean:.3f}\n± {std:.3f}", ha="center", va="bottom", fontsize=8)
        low, high = min(lm - ls, gm - gs), max(lm + ls, gm + gs)
        pad = (high - low) * 0.6 + 1e-3
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlim(-0.6, 1.6)
        ax.set_xticks([0, 1], ["LSTM", "GRU"])
        better = bi("越高越好", "higher is better") if "↑" in metric else bi("越低越好", "lower is better")
        title = "\n".join(textwrap.wrap(en, 24))
        ax.set_title(f"{zh.split('（')[0]}\n{title}" if THEORY.HAS_CJK else title, fontsize=8.5)
        metric = metric.replace("↑", "").replace("↓", "").strip()
        ax.set_xlabel("\n".join(textwrap.wrap(metric if THEORY.HAS_CJK else metric.split(" / ")[-1], 26))
                      + f"\n({better})", fontsize=7.5)
        ax.tick_params(axis="y", labelsize=7.5)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(bi("LSTM 对 GRU：3 个种子的均值（横线）和均值 ± 一个标准差（色带）",
                    "LSTM vs GRU: mean over 3 seeds (line) and mean ± one standard deviation (band)"),
                 fontsize=10.5)
    fig.tight_layout()
    footer(fig,
           [f"numbers from the measured tables of {shown_path(source)} "
            "(python 06_comparison/model_comparison.py;",
            "the dates and machines are beside the tables); "
            "redrawn by python figures/collect_results_figures.py"])
    return fig


TABLE_ROW = re.compile(r"^\|\s*([A-Za-z]+)[^|]*\|\s*([\d.]+)\s*±\s*([\d.]+)\s*\|"
                       r"\s*([\d.]+)\s*±\s*([\d.]+)\s*\|"
                       r"[^|]*\|\s*([\d.]+|n/a)\s*\|\s*([\d.]+|n/a)\s*\|\s*$")


def draw_accuracy_per_dataset(source: Path, record: dict):
    """05: test accuracy per dataset, the two 5-model ensembles (mean ± std over seeds 0-2) against 1-NN
    Euclidean and 1-NN DTW, read from the measured table of 05_seq_classify/README.md (the runs behind it,
    --DATASET=all --N_SEEDS=3, take 8 and 13 minutes on 2 CPU cores; this draws their published numbers)."""
    rows = [m.groups() for m in map(TABLE_ROW.match, source.read_text(encoding="utf-8").splitlines()) if m]
    if not rows:
        raise Missing(f"no table of 'dataset | LSTM a ± b | GRU a ± b | ... | 1-NN Euclidean | 1-NN DTW' "
                      f"in {shown_path(source)}")
    names = [r[0] for r in rows]
    value = lambda text: np.nan if text == "n/a" else float(text)  # noqa: E731
    bars = ((bi("LSTM，5 模型集成", "LSTM, 5-model ensemble"), [value(r[1]) for r in rows],
             [value(r[2]) for r in rows], "#1f77b4"),
            (bi("GRU，5 模型集成", "GRU, 5-model ensemble"), [value(r[3]) for r in rows],
             [value(r[4]) for r in rows], "#d62728"),
            (bi("1-NN 欧氏距离", "1-NN Euclidean"), [value(r[5]) for r in rows], None, "#bbbbbb"),
            (bi("1-NN 动态时间规整", "1-NN DTW"), [value(r[6]) for r in rows], None, "#2ca02c"))
    x = np.arange(len(names))
    width = 0.2
    fig, ax = plt.subplots(figsize=(11.5, 4.8))
    for k, (label, heights, errors, color) in enumerate(bars):
        positions = x + (k - 1.5) * width
        ax.bar(positions, np.nan_to_num(heights), width, yerr=errors, capsize=3, color=color, label=label,
               edgecolor="white")
        for p, h, e in zip(positions, heights, errors or [0.0] * len(heights)):
            ax.text(p, 0.51 if np.isnan(h) else h + e + 0.008, "n/a" if np.isnan(h) else f"{h:.3f}",
                    ha="center", fontsize=7.5, rotation=90, va="bottom")
    ax.set_xticks(x, names, fontsize=9.5)
    ax.set_ylim(0.5, 1.06)
    ax.set_ylabel(bi("测试准确率", "test accuracy", sep="\n"))
    ax.set_title(bi("各数据集的测试准确率：RNN 集成（种子 0–2 的均值 ± 标准差）对 1-NN 基线",
                    "test accuracy per dataset: RNN ensembles (mean ± std, seeds 0-2) against 1-NN",
                    sep="\n"),
                 fontsize=10.5)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, framealpha=0.95)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    footer(fig, [f"numbers from the measured table of {shown_path(source)} ({TABLE_05_MEASURED};",
                 "python 05_seq_classify/sequence_lstm.py / sequence_gru.py --DATASET=all --N_SEEDS=3)",
                 "redrawn by python figures/collect_results_figures.py"])
    return fig


# One panel per sweep of hyperparameter_study.py: its Chinese and English name and the scale of its axis.
STUDY_SWEEPS = {"learning rate": ("学习率", "log"), "hidden size": ("隐藏层大小", "log2"),
                "layers": ("层数", "linear"), "dropout": ("dropout 比例", "linear"),
                "batch size": ("批大小", "log2"), "forget-gate bias": ("遗忘门偏置（LSTM）", "linear")}
STUDY_HEADER = "| 超参数 / hyperparameter | 取值 / value |"
STUDY_CELL = re.compile(r"^\**([\d.]+)\s*±\s*([\d.]+)\**$")


def study_rows(readme: str) -> dict[str, list[tuple]]:
    """06's README table of the one-factor study -> {sweep: [(value, LSTM (mean, std) or None, GRU (mean, std)
    or None, is the default point)]}; the default point is the bold one."""
    lines = readme.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith(STUDY_HEADER)), None)
    sweeps: dict[str, list[tuple]] = {}
    for line in lines[start + 2:] if start is not None else []:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].split(" / ")[-1]
        if name not in STUDY_SWEEPS:
            continue
        lstm, gru = (STUDY_CELL.match(c) for c in cells[2:4])
        sweeps.setdefault(name, []).append((float(cells[1]), lstm and tuple(map(float, lstm.groups())),
                                            gru and tuple(map(float, gru.groups())), "**" in cells[2]))
    return sweeps


def draw_study_grid(source: Path, record: dict):
    """06: GunPoint test accuracy of LSTM and GRU, one hyperparameter changed at a time around the twins'
    defaults (hyperparameter_study.py, 3 seeds per point): the mean, a band of ± one standard deviation, the
    default point as a star on a dotted line; drawn as the script draws study_grid.png, from the measured
    table of 06's README (the run behind it takes 10-40 minutes on 2 CPU cores)."""
    sweeps = study_rows(source.read_text(encoding="utf-8"))
    if not sweeps:
        raise Missing(f"no table starting '{STUDY_HEADER}' in {shown_path(source)}")
    rows = math.ceil(len(sweeps) / 3)
    fig, axes = plt.subplots(rows, 3, figsize=(4.6 * 3, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(sweeps):]:
        ax.axis("off")
    for ax, (name, points) in zip(axes.flat, sweeps.items()):
        zh, scale = STUDY_SWEEPS[name]
        for k, (cell, color) in enumerate((("LSTM", "#1f77b4"), ("GRU", "#d62728"))):
            pts = [(p[0], p[1 + k], p[3]) for p in points if p[1 + k] is not None]
            if not pts:
                continue
            x = np.array([p[0] for p in pts])
            mean, std = np.array([p[1][0] for p in pts]), np.array([p[1][1] for p in pts])
            ax.plot(x, mean, "o-", color=color, label=cell)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
            for value, (m, _), default in pts:
                if default:
                    ax.plot([value], [m], "*", ms=14, color=color, mec="black", zorder=5)
                    ax.axvline(value, color=color, ls=":", lw=1)
        if scale != "linear":
            ax.set_xscale("log", base=10 if scale == "log" else 2)
        ax.set_xticks(sorted({p[0] for p in points}))
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(bi(zh, name, sep=" / "))
        ax.set_ylabel(bi("测试准确率（均值 ± 标准差）", "test accuracy (mean ± std)", sep="\n"), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(bi("GunPoint（50 条训练序列，150 条测试序列）：每次只改一个超参数，每个点 3 个种子"
                    "（星号 = 孪生脚本的默认值）",
                    "GunPoint (50 training / 150 test series): one hyperparameter at a time, 3 seeds per "
                    "point (star = the twin's default)", sep="\n"), fontsize=11)
    fig.tight_layout()
    footer(fig, [f"numbers from the measured table of {shown_path(source)} "
                 "(python 06_comparison/hyperparameter_study.py);",
                 "redrawn by python figures/collect_results_figures.py"])
    return fig


# ---------------------------------------------------------------------------------------------------
# The story
# ---------------------------------------------------------------------------------------------------
def source_path(figure: Figure, outputs: Path) -> Path:
    if figure.source.startswith("repo:"):
        return REPO_ROOT / figure.source[len("repo:"):]
    return outputs / figure.source


def make_figure(figure: Figure, outputs: Path, out: Path) -> str:
    """One figure into `out`; -> the line that says where it came from. Raises Missing if it cannot be
    made."""
    source = source_path(figure, outputs)
    if not source.is_file():
        raise Missing(f"no {shown_path(source)} (run {figure.made_by})")
    record = {} if figure.source.startswith("repo:") else run_record(source)
    dest = out / figure.name
    try:
        if figure.how == "copy":
            how = copy_figure(source, dest, MAX_KB * 1024)
        else:
            how = save_drawn(globals()[figure.how](source, record), dest, MAX_KB * 1024)
    except (OSError, ValueError, KeyError) as e:  # a damaged or unexpected file: one line, not a traceback
        raise Missing(f"could not read {shown_path(source)}: {type(e).__name__}: {e}")
    stamp = "" if figure.source.startswith("repo:") else f"; {run_stamp(record)}"
    return f"{how:9s} {shown_path(dest)} ({dest.stat().st_size / 1024:.0f} kB) <- {shown_path(source)}{stamp}"


def main():
    t0 = time.time()
    parse_config(globals())
    outputs = (OUTPUTS_ROOT if OUTPUTS == "auto" else
               Path(OUTPUTS) if Path(OUTPUTS).is_absolute() else REPO_ROOT / OUTPUTS)
    out = Path(OUT_DIR) if Path(OUT_DIR).is_absolute() else REPO_ROOT / OUT_DIR
    family = THEORY.setup_fonts(CJK_FONT)
    print(f"reading runs from {shown_path(outputs)}; Chinese labels in {family or 'none (English only)'}")
    made, missing = 0, 0
    for figure in RESULTS:
        if ONLY != "all" and not figure.name.startswith(ONLY):
            continue
        try:
            print(make_figure(figure, outputs, out))
            made += 1
        except Missing as e:
            print(f"missing   {shown_path(out / figure.name)}: {e}")
            missing += 1
    print(f"{made} figure(s) in {shown_path(out)}, {missing} missing, in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    run_main(main)

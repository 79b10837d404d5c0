"""The diagrams of THEORY.md, drawn with matplotlib alone so that anyone can redraw or change them.

Draws into figures/theory/: the unrolled RNN and its vanishing gradient (§1), the LSTM and GRU cells in
colah's style, the cell state as a conveyor belt (§2, §3), sigmoid and tanh with their derivatives (§4), one
LSTM step's and one GRU step's backward graph (§4.1, §4.2), one input of the adding problem (§4.3), padding,
packing and the mask (§5), bidirectional and stacked RNNs (§6), truncated BPTT over parallel streams (§10),
attention and beam search (§13), the CRF's tag lattice (§15), and the gradient measured by
01_basic_theory/theory_comparison.py
(skipped, with one line, if it has not run).
Run:  python figures/draw_theory_figures.py  from the repo root   (--ONLY=lstm_cell draws one; --help)
Font: Chinese labels use Noto Sans SC from the pip package pylopdf-fonts-zh-cn (requirements.txt; why this
one: utils/visualization.py), the same font as every plot the scripts draw; without it, a system CJK font,
and with none, English labels only in DejaVu Sans (one warning line).

中文：用 matplotlib 画出 THEORY.md 里的全部示意图（不依赖其他绘图库），谁都可以改了重画。
输出到 figures/theory/：按时间展开的 RNN 与梯度消失（§1）、
colah 风格的 LSTM 与 GRU 单元（细胞状态画成传送带，§2、§3）、sigmoid 和 tanh 及其导数（§4）、
LSTM 和 GRU 单步反向传播的计算图（§4.1、§4.2）、加法问题的一个输入（§4.3）、填充/打包/掩码（§5）、
双向与多层 RNN（§6）、并行文本流上的截断 BPTT（§10）、注意力与束搜索（§13）、CRF 的标签格（§15），
以及 01_basic_theory/theory_comparison.py 实测的梯度曲线（还没运行过就跳过并提示一行）。
运行：在仓库根目录执行 python figures/draw_theory_figures.py（--ONLY=lstm_cell 只画一张；--help 查看选项）。
字体：中文标签用 pip 包 pylopdf-fonts-zh-cn 里的 Noto Sans SC（见 requirements.txt；为什么选它，见
utils/visualization.py），和各脚本画图用的字体相同；没装这个包时用系统里的中文字体；都没有时只画英文标签
（DejaVu Sans），并打印一行警告。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import json
import re
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, Ellipse, FancyBboxPatch, Rectangle  # noqa: E402

from utils.script_utils import (  # noqa: E402
    OUTPUTS_ROOT,
    REPO_ROOT,
    Interval,
    OneOf,
    atomic_write,
    parse_config,
    run_main,
    shown_path,
)
from utils.visualization import use_chinese_font  # noqa: E402

NAMES = ("rnn_unrolled", "gradient_decay", "adding_problem", "lstm_cell", "gru_cell", "activations",
         "lstm_backward_graph", "gru_backward_graph", "padding_packing", "bidirectional_stacked",
         "tbptt_streams", "attention", "beam_search", "crf_lattice", "gradient_vs_lag")

# ==== Settings (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
OUT_DIR: str = "figures/theory"          # where the PNGs go: relative to the repo root, or an absolute path
ONLY: OneOf("all", *NAMES) = "all"       # draw every figure, or only this one (its file name without .png)
DPI: Interval("[60, 200]", int) = 120    # pixels per inch: 120 keeps every PNG well under 300 kB
CJK_FONT: str = "auto"                   # font for Chinese: auto = the pip package's Noto Sans SC
                                         # (else a system CJK font); none = English only
MEASURED_ON: str = "2-core AMD EPYC CPU"  # the machine theory_comparison.py ran on,
                                          # for gradient_vs_lag's caption

# Flat colours, colah-like: yellow layers, pink pointwise operations, a blue belt, gradients in magenta.
INK, GREY, LIGHT = "#222222", "#9a9a9a", "#e6e6e6"
LAYER, LAYER_EDGE = "#fde7a3", "#c79a1e"     # a neural-network layer (weights, then sigma or tanh)
LINEAR = "#fff4d1"                           # a layer without activation (a matrix product plus bias)
OP, OP_EDGE = "#f9d3d3", "#c0392b"           # a pointwise operation: x, +, 1-, tanh
BELT = "#1f77b4"                             # the LSTM's cell state (and the LSTM's colour in every plot)
GRU_RED = "#d62728"                          # the GRU's hidden state (the GRU's colour in every plot)
GRAD = "#b3126f"                             # gradients / backward quantities
CELL_BG, CELL_EDGE = "#f3f6fb", "#8a9bb8"
STREAM_COLORS = ("#cfe3f6", "#fbdcc0", "#d5ecd0", "#e7d8f0")

HAS_CJK = False  # set by setup_fonts(): whether Chinese glyphs can be drawn


# ---------------------------------------------------------------------------------------------------
# 1. Fonts, labels and saving
# ---------------------------------------------------------------------------------------------------
def setup_fonts(choice: str) -> str:
    """Latin text in DejaVu Sans, Chinese glyphs from the CJK font (utils.visualization.use_chinese_font:
    the pip package's Noto Sans SC). Returns the family used for Chinese, or "" (then English labels)."""
    global HAS_CJK
    family = use_chinese_font(choice, quiet=True)
    plt.rcParams["mathtext.fontset"] = "dejavusans"
    HAS_CJK = bool(family)
    if not family and choice != "none":
        print(f"warning: no CJK font found ({choice}); drawing English labels only in DejaVu Sans "
              "(pip install pylopdf-fonts-zh-cn, as requirements.txt does)")
    return family


def bi(zh: str, en: str, tail: str = "", sep: str = "\n") -> str:
    """A bilingual label: Chinese first, then English ('遗忘门 f (L2)\\nforget gate'); English alone
    when no CJK font is available. `tail` (a symbol, an equation number) is shown once: after the Chinese,
    or after the English when it holds $math$ (mathtext has no Chinese glyphs, so no line may mix them)."""
    if not HAS_CJK:
        return f"{en} {tail}".strip()
    if "$" in tail:
        return f"{zh}{sep}{en} {tail}".strip()
    return f"{zh} {tail}".strip() + sep + en


CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def checked(text: str) -> str:
    """The text, after making sure that no line mixes Chinese and $math$ (it would draw empty boxes)."""
    for line in text.split("\n"):
        if "$" in line and CJK.search(line):
            raise ValueError(f"a line mixes Chinese and $math$, split it in two: {line!r}")
    return text


def save(fig, out: Path, name: str) -> Path:
    """Write out/<name>.png atomically; no software version in the metadata, so reruns are identical."""
    path = out / f"{name}.png"
    atomic_write(path, lambda p: fig.savefig(p, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.12,
                                             facecolor="white", metadata={"Software": None}))
    plt.close(fig)
    return path


def canvas(width_in: float, xlim: tuple, ylim: tuple):
    """A blank figure whose data units are equal in x and y (height follows from the limits)."""
    height_in = width_in * (ylim[1] - ylim[0]) / (xlim[1] - xlim[0])
    fig = plt.figure(figsize=(width_in, height_in))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


# ---------------------------------------------------------------------------------------------------
# 2. Drawing primitives: boxes (layers), circles (pointwise operations), wires and arrows
# ---------------------------------------------------------------------------------------------------
def box(ax, x, y, text, w=1.3, h=0.8, fc=LAYER, ec=LAYER_EDGE, fs=12, color=INK, lw=1.3, ls="-", z=3, **kw):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.14",
                                fc=fc, ec=ec, lw=lw, ls=ls, zorder=z))
    ax.text(x, y, checked(text), ha="center", va="center", fontsize=fs, color=color, zorder=z + 1, **kw)


def op(ax, x, y, text, r=0.28, fs=13, fc=OP, ec=OP_EDGE):
    ax.add_patch(Circle((x, y), r, fc=fc, ec=ec, lw=1.3, zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=fs, zorder=4)


def arrow(ax, p0, p1, color=INK, lw=1.5, ls="-", alpha=1.0, head=True, rad=0.0, z=2, scale=None):
    ax.annotate("", xy=p1, xytext=p0, zorder=z,
                arrowprops=dict(arrowstyle="-|>" if head else "-", color=color, lw=lw, ls=ls, alpha=alpha,
                                shrinkA=0, shrinkB=0, mutation_scale=scale or 9 + 2.2 * lw,
                                connectionstyle=f"arc3,rad={rad}"))


def wire(ax, points, color=INK, lw=1.5, head=True, z=2, alpha=1.0, ls="-"):
    """A polyline through `points` with an arrow head on its last segment."""
    xs, ys = zip(*points)
    if len(points) > 2:
        ax.plot(xs[:-1], ys[:-1], color=color, lw=lw, ls=ls, zorder=z, solid_capstyle="butt", alpha=alpha)
    arrow(ax, points[-2], points[-1], color=color, lw=lw, head=head, z=z, alpha=alpha, ls=ls)


def dot(ax, x, y, color=INK):
    ax.plot([x], [y], "o", ms=4.5, color=color, zorder=4)


def note(ax, x, y, text, fs=9.5, color=INK, ha="center", va="center", bg=None, **kw):
    bbox = dict(fc=bg, ec="none", pad=1.0) if bg else None
    return ax.text(x, y, checked(text), fontsize=fs, color=color, ha=ha, va=va, bbox=bbox, zorder=6, **kw)


def title(ax, x, y, zh, en, fs=13):
    note(ax, x, y, bi(zh, en, sep="  /  "), fs=fs, fontweight="bold")


# ---------------------------------------------------------------------------------------------------
# 3. §1: the plain RNN unrolled, and how a product of Jacobians shrinks or explodes
# ---------------------------------------------------------------------------------------------------
def draw_rnn_unrolled(out: Path) -> Path:
    """Five steps of h_t = tanh(W_ih x_t + W_hh h_{t-1} + b); the loss at the end; the gradient going
    back one Jacobian diag(1 - h_t^2) W_hh per step, drawn thinner and fainter each step (THEORY.md §1)."""
    fig, ax = canvas(12.5, (-1.2, 16.2), (-0.9, 7.4))
    steps = [1, 2, 3, 4, 5]
    xs = [1.5 + 3.0 * k for k in range(5)]
    y_cell, y_h, y_x = 2.6, 4.3, 1.05
    title(ax, 7.5, 7.0, "按时间展开的 RNN", "a plain RNN unrolled in time")
    note(ax, 7.5, 6.4, r"$h_t = \tanh(W_{ih}\,x_t + W_{hh}\,h_{t-1} + b)$", fs=12)
    note(ax, -0.65, y_cell + 0.28, "$h_0=0$", fs=10, ha="center")
    arrow(ax, (-0.6, y_cell), (xs[0] - 0.65, y_cell))
    for t, x in zip(steps, xs):
        box(ax, x, y_cell, "tanh", fs=12)
        note(ax, x, y_x, f"$x_{t}$", fs=13)
        arrow(ax, (x, y_x + 0.3), (x, y_cell - 0.4))
        ax.add_patch(Circle((x, y_h), 0.36, fc="#dbe9f6", ec=BELT, lw=1.2, zorder=3))
        note(ax, x, y_h, f"$h_{t}$", fs=12)
        arrow(ax, (x, y_cell + 0.4), (x, y_h - 0.36))
        if t < 5:
            arrow(ax, (x + 0.65, y_cell), (xs[t] - 0.65, y_cell))
            note(ax, x + 1.5, y_cell + 0.27, "$W_{hh}$", fs=9.5, color="#555555")
    # The loss at the last step and the gradient that enters there.
    xl = xs[-1]
    box(ax, xl + 1.9, y_h, bi("损失 L", "loss"), w=1.4, h=0.95, fc="#eeeeee", ec=GREY, fs=10.5)
    arrow(ax, (xl + 0.36, y_h + 0.1), (xl + 1.1, y_h + 0.1))
    arrow(ax, (xl + 1.1, y_h - 0.16), (xl + 0.36, y_h - 0.16), color=GRAD, lw=2.8)
    # Backward: one Jacobian per step, the arrow thinning as the gradient shrinks (drawn for ~0.6 a step).
    widths = [4.2, 2.7, 1.7, 1.05]
    alphas = [1.0, 0.72, 0.5, 0.34]
    note(ax, xs[-1], y_h + 0.68, r"$\delta h_5$", fs=11, color=GRAD)
    note(ax, 7.5, y_h + 1.35, bi("品红：反向传播的梯度 δhₜ = ∂L/∂hₜ，一步比一步细",
                                 "magenta: the gradient δhₜ = ∂L/∂hₜ going back, thinner at each step",
                                 sep="  /  "),
         fs=9.5, color=GRAD)
    for k, t in enumerate(range(5, 1, -1)):
        x_right, x_left = xs[t - 1], xs[t - 2]
        arrow(ax, (x_right - 0.45, y_h), (x_left + 0.45, y_h), color=GRAD, lw=widths[k], alpha=alphas[k],
              scale=10 + 2.6 * widths[k])
        note(ax, (x_left + x_right) / 2, y_h - 0.5, rf"$\times\,\mathrm{{diag}}(1-h_{t}^2)\,W_{{hh}}$",
             fs=9.5, color=GRAD, alpha=max(alphas[k], 0.6))
        note(ax, x_left, y_h + 0.68, rf"$\delta h_{t - 1}$", fs=11, color=GRAD, alpha=max(alphas[k], 0.55))
    note(ax, 7.5, -0.1,
         bi("反向传播每往回一步，梯度就乘一次雅可比矩阵 ∂hₜ/∂hₜ₋₁：连乘 k 次，"
            "它按指数缩小（梯度消失）或放大（梯度爆炸）",
            r"each step back multiplies the gradient by the Jacobian $\partial h_t/\partial h_{t-1}"
            r" = \mathrm{diag}(1-h_t^2)\,W_{hh}$: after $k$ steps it has shrunk (vanished)"
            " or grown (exploded) exponentially in $k$"), fs=10, color="#333333")
    return save(fig, out, "rnn_unrolled")


def draw_gradient_decay(out: Path) -> Path:
    """rho^k for rho = 0.9, 1.0, 1.1: the per-step factor decides everything after 50 steps (THEORY.md §1)."""
    k = np.arange(51)
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    curves = [(0.9, "#1f77b4", bi("梯度消失", "vanishing", sep=" ")),
              (1.0, "#555555", bi("不变", "unchanged", sep=" ")),
              (1.1, GRU_RED, bi("梯度爆炸", "exploding", sep=" "))]
    for rho, color, name in curves:
        ax.plot(k, rho ** k, color=color, lw=2.2, label=checked(f"{rho:.1f}ᵏ: {name}"))
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1e3)
    ax.set_xlim(0, 56)
    for rho, color, text, xy_text in ((0.9, "#1f77b4", r"$0.9^{50} \approx 0.005$", (37, 1.6e-3)),
                                      (1.1, GRU_RED, r"$1.1^{50} \approx 117$", (37, 330))):
        ax.plot([50], [rho ** 50], "o", color=color, ms=7, zorder=5)
        ax.annotate(text, (50, rho ** 50), xytext=xy_text, fontsize=11, color=color, va="center",
                    arrowprops=dict(arrowstyle="-", color=color, lw=1, shrinkB=5))
    ax.text(35, 1.4, bi("LSTM 的细胞通路，f ≈ 1 时（§4.3）", "the LSTM's cell path when f ≈ 1 (§4.3)"),
            fontsize=9.5, color="#555555", ha="center", va="bottom")
    ax.set_xlabel(bi("往回传的步数 k", "steps back k", sep="  /  "), fontsize=11)
    ax.set_ylabel(bi("梯度被乘的倍数", "factor on the gradient", "$\\rho^k$", sep="\n"), fontsize=11)
    ax.set_title(bi("每步乘 ρ，k 步后乘 ρᵏ", "a factor ρ per step gives ρᵏ after k steps", sep="  /  "),
                 fontsize=12)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=10, framealpha=0.95)
    return save(fig, out, "gradient_decay")


def draw_adding_problem(out: Path) -> Path:
    """One input of the adding problem as theory_comparison.py makes it (adding_problem): channel 0 holds
    random numbers in [0, 1), channel 1 marks one step in each half; the target is the sum of the two
    marked numbers. T = 20 and illustrative numbers here; the experiments use T up to 100."""
    T = 20
    rng = np.random.default_rng(10)
    values = rng.random(T)
    first, second = 4, 14                                  # one mark in each half
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10.5, 4.6), sharex=True,
                                      gridspec_kw={"height_ratios": [2.2, 1]})
    steps = np.arange(T)
    colors = [GRU_RED if t in (first, second) else "#b9cde3" for t in steps]
    top.bar(steps, values, color=colors, width=0.75, edgecolor="white")
    for t in (first, second):
        top.text(t, values[t] + 0.04, f"{values[t]:.2f}", ha="center", fontsize=10, color=GRU_RED,
                 fontweight="bold")
    top.set_ylim(0, 1.25)
    top.set_ylabel(bi("通道 0：随机数", "channel 0: numbers", sep="\n"), fontsize=9.5)
    bottom.bar(steps, [1.0 if t in (first, second) else 0.0 for t in steps], color=GRU_RED, width=0.75)
    bottom.set_ylim(0, 1.3)
    bottom.set_yticks([0, 1])
    bottom.set_ylabel(bi("通道 1：标记", "channel 1: marks", sep="\n"), fontsize=9.5)
    bottom.set_xticks(steps)
    bottom.set_xlabel(bi("时间步 t（输入 x 的形状是 (T, 2)，这里 T = 20）",
                         "time step t (the input x has shape (T, 2); here T = 20)", sep=" / "), fontsize=9.5)
    for ax in (top, bottom):
        ax.axvline(T / 2 - 0.5, color="#777777", ls="--", lw=1)
        ax.grid(alpha=0.25, axis="y")
    top.text(T / 4 - 0.5, 1.13, bi("前半段：标记一个", "first half: one mark", sep=" / "), ha="center",
             fontsize=9, color="#555555")
    top.text(3 * T / 4 - 0.5, 1.13, bi("后半段：标记一个", "second half: one mark", sep=" / "), ha="center",
             fontsize=9, color="#555555")
    sum_text = f"{values[first]:.2f} + {values[second]:.2f} = {values[first] + values[second]:.2f}"
    fig.suptitle(bi(f"加法问题的一个输入（示意）：目标 y = {sum_text}",
                    f"one input of the adding problem (illustrative): target y = {sum_text}"), fontsize=11)
    fig.text(0.5, -0.05, bi("第一个标记的数要一直记到序列末尾才能用上；"
                            "总是猜平均值 1.0，均方误差是 1/6 ≈ 0.167（基线）",
                            "the first marked number must be held until the end of the sequence; always "
                            "guessing the mean 1.0 gives an MSE of 1/6 ≈ 0.167 (the baseline)"),
             ha="center", fontsize=9.5, color="#444444")
    fig.tight_layout()
    return save(fig, out, "adding_problem")


# ---------------------------------------------------------------------------------------------------
# 4. §2, §3: the LSTM and GRU cells, colah's way
# ---------------------------------------------------------------------------------------------------
def legend_row(ax, y, items):
    """A key at the bottom: what a yellow box, a light box and a pink circle mean. items: (x, kind, text)."""
    for x, kind, text in items:
        if kind == "layer":
            box(ax, x + 0.35, y, "σ", w=0.7, h=0.5, fs=10)
        elif kind == "linear":
            box(ax, x + 0.35, y, "W", w=0.7, h=0.5, fc=LINEAR, fs=10)
        else:
            op(ax, x + 0.35, y, "×", r=0.22, fs=10)
        note(ax, x + 0.85, y, text, fs=9.5, ha="left")


def draw_lstm_cell(out: Path) -> Path:
    """The LSTM step (L1)-(L6): c_{t-1} -> c_t as a belt across the top with x (forget) and + (input *
    candidate) on it, the four layers below, tanh(c_t) and the output gate giving h_t."""
    fig, ax = canvas(12.5, (-1.4, 16.4), (-1.8, 9.4))
    title(ax, 7.5, 9.0, "LSTM 单元", "the LSTM cell (torch.nn.LSTM's equations)")
    ax.add_patch(FancyBboxPatch((0.4, 0.2), 14.2, 7.7, boxstyle="round,pad=0,rounding_size=0.5",
                                fc=CELL_BG, ec=CELL_EDGE, lw=1.5, zorder=1))
    yb, ybus, yg = 7.0, 1.3, 3.1
    xf, xi, xg, xo, xtanh = 3.0, 5.0, 6.8, 9.0, 11.6
    r = 0.28
    # The belt: c_{t-1} -> x f -> + i*g -> c_t (L5).
    for a, b in ((-1.0, xf - r), (xf + r, xg - r)):
        ax.plot([a, b], [yb, yb], color=BELT, lw=5, zorder=2, solid_capstyle="butt")
    arrow(ax, (xg + r, yb), (16.0, yb), color=BELT, lw=5, scale=22)
    note(ax, -1.0, yb + 0.38, "$c_{t-1}$", fs=13, ha="left", color=BELT)
    note(ax, 16.0, yb + 0.38, "$c_t$", fs=13, ha="right", color=BELT)
    note(ax, 7.5, 8.35, bi("细胞状态 c：一条传送带，只有逐元素的 × 和 +，没有矩阵乘法",
                           "cell state c: a conveyor belt with only a pointwise × and +, no matrix product"),
         fs=10, color=BELT)
    op(ax, xf, yb, "×")
    op(ax, xg, yb, "+")
    note(ax, xf + 0.4, yb + 0.42, r"$f_t\odot c_{t-1}$", fs=10, ha="left")
    note(ax, xg + 0.4, yb + 0.42, r"(L5)  $c_t = f_t\odot c_{t-1} + i_t\odot g_t$", fs=10, ha="left")
    # The input bus [h_{t-1}, x_t] feeding the four layers from below.
    ax.plot([-1.0, xo], [ybus, ybus], color=INK, lw=1.6, zorder=2)
    note(ax, -1.0, ybus + 0.33, "$h_{t-1}$", fs=13, ha="left")
    wire(ax, [(1.5, -0.15), (1.5, ybus)])
    dot(ax, 1.5, ybus)
    note(ax, 1.5, -0.42, "$x_t$", fs=13)
    for x in (xf, xi, xg, xo):
        if x != xo:
            dot(ax, x, ybus)
        arrow(ax, (x, ybus), (x, yg - 0.45))
    # The four layers, torch's a = W_ih x_t + W_hh h_{t-1} + b split into a^i, a^f, a^g, a^o.
    for x, sym in ((xf, "σ"), (xi, "σ"), (xg, "tanh"), (xo, "σ")):
        box(ax, x, yg, sym, w=1.3, h=0.9, fs=13)
    names = ((xf, bi("遗忘门", "forget gate", "f (L2)")), (xi, bi("输入门", "input gate", "i (L1)")),
             (xg, bi("候选值", "candidate", "g (L3)")), (xo, bi("输出门", "output gate", "o (L4)")))
    for x, text in names:
        note(ax, x, 0.72, text, fs=9.5, bg=CELL_BG)
    # f -> belt; i and g -> x -> +; o -> x with tanh(c_t) -> h_t.
    arrow(ax, (xf, yg + 0.45), (xf, yb - r))
    yig = 5.0
    wire(ax, [(xi, yg + 0.45), (xi, yig), (xg - r, yig)])
    arrow(ax, (xg, yg + 0.45), (xg, yig - r))
    op(ax, xg, yig, "×")
    arrow(ax, (xg, yig + r), (xg, yb - r))
    note(ax, xg + 0.4, yig + 0.05, r"$i_t\odot g_t$", fs=10, ha="left")
    ax.plot([xtanh, xtanh], [yb, 5.88], color=BELT, lw=1.8, zorder=2)
    dot(ax, xtanh, yb, color=BELT)
    ax.add_patch(Ellipse((xtanh, 5.6), 1.15, 0.56, fc=OP, ec=OP_EDGE, lw=1.3, zorder=3))
    note(ax, xtanh, 5.6, "tanh", fs=11)
    note(ax, xtanh + 0.75, 5.6, r"$\tanh(c_t)$", fs=10, ha="left")
    arrow(ax, (xtanh, 5.32), (xtanh, yg + r))
    op(ax, xtanh, yg, "×")
    arrow(ax, (xo + 0.65, yg), (xtanh - r, yg))
    note(ax, xtanh + 0.4, yg + 0.4, r"(L6)  $h_t = o_t\odot\tanh(c_t)$", fs=10, ha="left")
    wire(ax, [(xtanh, yg - r), (xtanh, ybus), (16.0, ybus)], lw=1.6)
    note(ax, 16.0, ybus + 0.33, "$h_t$", fs=13, ha="right")
    note(ax, 13.4, ybus - 0.42, bi("输出，并传给下一步", "output, and to step t+1"), fs=9, color="#444444")
    # Reading the gates: the labels on the wires say what each one decides.
    note(ax, xf - 0.15, 5.0, bi("留下多少\n旧记忆", "how much old\nmemory stays", sep="\n"), fs=8.5,
         ha="right", color="#555555")
    legend_row(ax, -1.2, [
        (0.0, "layer", bi("神经网络层", "layer:", r"$\sigma$ or tanh of $W_{ih}x_t + W_{hh}h_{t-1} + b$")),
        (5.6, "op", bi("逐元素运算", "pointwise", r"($\odot$, +)")),
    ])
    note(ax, 16.2, -1.2, bi("torch 把四组权重按 i, f, g, o 的顺序堆叠",
                            "torch stacks the four weight blocks as i, f, g, o")
         + "\n" + r"$W_{ih} = [W_{ii}; W_{if}; W_{ig}; W_{io}]$", fs=9, ha="right", color="#444444")
    return save(fig, out, "lstm_cell")


def draw_gru_cell(out: Path) -> Path:
    """The GRU step (G1)-(G4) in PyTorch's form: the reset gate multiplies W_hn h_{t-1} + b_hn, i.e. it
    acts after the matrix product; h_t = (1 - z) * n + z * h_{t-1} along the top line."""
    fig, ax = canvas(12.5, (-1.4, 16.4), (-2.6, 9.9))
    title(ax, 7.5, 9.5, "GRU 单元", "the GRU cell (torch.nn.GRU's equations)")
    ax.add_patch(FancyBboxPatch((0.4, -0.5), 14.2, 8.8, boxstyle="round,pad=0,rounding_size=0.5",
                                fc=CELL_BG, ec=CELL_EDGE, lw=1.5, zorder=1))
    ytop, ybus, r = 7.6, 0.85, 0.28
    xz, xr, xhn, xn = 3.4, 5.8, 8.1, 11.2
    # The memory line: h_{t-1} -> x z -> + (1-z) n -> h_t (G4).
    ax.plot([-1.0, xz - r], [ytop, ytop], color=GRU_RED, lw=4, zorder=2, solid_capstyle="butt")
    ax.plot([xz + r, xn - r], [ytop, ytop], color=GRU_RED, lw=4, zorder=2, solid_capstyle="butt")
    arrow(ax, (xn + r, ytop), (16.0, ytop), color=GRU_RED, lw=4, scale=20)
    note(ax, -1.0, ytop + 0.38, "$h_{t-1}$", fs=13, ha="left", color=GRU_RED)
    note(ax, 16.0, ytop + 0.38, "$h_t$", fs=13, ha="right", color=GRU_RED)
    note(ax, 16.0, ytop - 0.45, bi("输出，也传给下一步", "output, and to step t+1"), fs=9, ha="right",
         color="#444444")
    note(ax, 7.3, 8.75,
         bi("没有单独的细胞状态：h 本身就是记忆", "no separate cell state: h itself is the memory"), fs=10,
         color=GRU_RED)
    op(ax, xz, ytop, "×")
    op(ax, xn, ytop, "+")
    note(ax, xz + 0.4, ytop + 0.4, r"$z_t\odot h_{t-1}$", fs=10, ha="left")
    note(ax, xn - 0.4, ytop + 0.4, r"(G4)  $h_t = (1-z_t)\odot n_t + z_t\odot h_{t-1}$", fs=10, ha="right")
    # h_{t-1} drops down into the bus, where x_t joins it.
    ax.plot([1.0, 1.0], [ytop, ybus], color=INK, lw=1.6, zorder=2)
    dot(ax, 1.0, ytop, color=GRU_RED)
    ax.plot([1.0, xn], [ybus, ybus], color=INK, lw=1.6, zorder=2)
    wire(ax, [(2.0, -1.05), (2.0, ybus)])
    dot(ax, 2.0, ybus)
    note(ax, 2.0, -1.35, "$x_t$", fs=13)
    # Update gate z (G2): to the top x, and through 1 - z to the candidate's x.
    yz, yzline = 3.0, 5.9
    box(ax, xz, yz, "σ", fs=13, w=1.3, h=0.9)
    dot(ax, xz, ybus)
    arrow(ax, (xz, ybus), (xz, yz - 0.45))
    arrow(ax, (xz, yz + 0.45), (xz, ytop - r))
    dot(ax, xz, yzline)
    wire(ax, [(xz, yzline), (6.0 - r, yzline)])
    op(ax, 6.0, yzline, "1−", fs=10)
    arrow(ax, (6.0 + r, yzline), (xn - r, yzline))
    op(ax, xn, yzline, "×")
    arrow(ax, (xn, yzline + r), (xn, ytop - r))
    note(ax, xn + 0.4, yzline, r"$(1-z_t)\odot n_t$", fs=10, ha="left")
    note(ax, 8.6, yzline + 0.3, r"$1-z_t$", fs=10)
    # Reset gate r (G1), applied to W_hn h_{t-1} + b_hn: after the product (torch), not before it.
    yr, ylin, ymix = 2.25, 2.25, 3.55
    box(ax, xr, yr, "σ", fs=13, w=1.3, h=0.9)
    dot(ax, xr, ybus)
    arrow(ax, (xr, ybus), (xr, yr - 0.45))
    wire(ax, [(xr, yr + 0.45), (xr, ymix), (xhn - r, ymix)])
    box(ax, xhn, ylin, r"$W_{hn}h_{t-1}+b_{hn}$", w=2.3, h=0.75, fc=LINEAR, fs=10)
    dot(ax, xhn, ybus)
    arrow(ax, (xhn, ybus), (xhn, ylin - 0.375))
    arrow(ax, (xhn, ylin + 0.375), (xhn, ymix - r))
    op(ax, xhn, ymix, "×")
    box(ax, xn, ylin, r"$W_{in}x_t+b_{in}$", w=2.0, h=0.75, fc=LINEAR, fs=10)
    arrow(ax, (xn, ybus), (xn, ylin - 0.375))
    arrow(ax, (xn, ylin + 0.375), (xn, ymix - r))
    op(ax, xn, ymix, "+")
    arrow(ax, (xhn + r, ymix), (xn - r, ymix))
    note(ax, (xhn + xn) / 2, ymix + 0.32, r"$r_t\odot(W_{hn}h_{t-1}+b_{hn})$", fs=9.5)
    # Candidate n (G3).
    yn = 4.7
    arrow(ax, (xn, ymix + r), (xn, yn - 0.4))
    box(ax, xn, yn, "tanh", fs=12, w=1.3, h=0.8)
    arrow(ax, (xn, yn + 0.4), (xn, yzline - r))
    # Names under the bus, each under its part.
    for x, text in ((xz, bi("更新门", "update gate", "z (G2)")), (xr, bi("重置门", "reset gate", "r (G1)")),
                    (xhn + 0.1, bi("先做矩阵乘法，再乘 r", "the product first, then × r", "(G3)"))):
        note(ax, x, 0.42, text, fs=9.5, va="top", bg=CELL_BG)
    note(ax, xn + 0.8, yn, bi("候选值", "candidate", "n (G3)"), fs=9.5, ha="left")
    note(ax, xz - 0.15, 4.6,
         bi("z→1：保留旧状态\nz→0：换成候选值", "z→1: keep the old state\nz→0: take the candidate"), fs=8.5,
         ha="right", color="#555555")
    legend_row(ax, -2.15, [
        (0.0, "layer", bi("神经网络层", "layer:", r"$\sigma$ or tanh of $W_i x_t + W_h h_{t-1} + b$")),
        (5.6, "linear", bi("线性层，无激活", "linear, no activation")),
        (8.9, "op", bi("逐元素运算", "pointwise")),
    ])
    note(ax, 16.2, -2.15, bi("Cho 等 2014 原文先乘 r：", "Cho et al. 2014 apply r first:",
                            r"$W_{hn}(r_t\odot h_{t-1})$, §3.1"), fs=9, ha="right", color="#444444")
    return save(fig, out, "gru_cell")


# ---------------------------------------------------------------------------------------------------
# 5. §4: sigmoid and tanh with their derivatives; §4.1, §4.2: one LSTM step and one GRU step as
#    computational graphs, forward (black) and backward (magenta)
# ---------------------------------------------------------------------------------------------------
def draw_activations(out: Path) -> Path:
    """sigmoid and tanh beside their derivatives (D1), (D2), both written with the function's own value:
    sigma' peaks at 0.25 where the gate is 0.5 and is about 0.01 at a gate of 0.99; tanh' peaks at 1."""
    a = np.linspace(-6, 6, 601)
    sig = 1 / (1 + np.exp(-a))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    left.plot(a, sig, color=BELT, lw=2.2, label=r"$\sigma(a)$")
    left.plot(a, sig * (1 - sig), color=GRAD, lw=2.2, ls="--",
              label=r"$\sigma'(a) = \sigma(a)\,(1-\sigma(a))$ (D1)")
    right.plot(a, np.tanh(a), color=BELT, lw=2.2, label=r"$\tanh(a)$")
    right.plot(a, 1 - np.tanh(a) ** 2, color=GRAD, lw=2.2, ls="--",
               label=r"$\tanh'(a) = 1 - \tanh^2(a)$ (D2)")
    left.plot([0], [0.25], "o", color=GRAD, ms=7, zorder=5)
    left.annotate(bi("门值 0.5 时导数最大：0.25", "largest at a gate of 0.5: 0.25"), (0, 0.25),
                  xytext=(-5.8, 0.6), fontsize=9, color=GRAD,
                  arrowprops=dict(arrowstyle="-", color=GRAD, lw=1))
    a99 = np.log(99)                                   # sigma(a) = 0.99
    left.plot([a99, a99], [0.99 * 0.01, 0.99], ":", color="#777777", lw=1)
    left.plot([a99], [0.99 * 0.01], "o", color=GRAD, ms=6, zorder=5)
    left.annotate(bi("门值 0.99（几乎全开）时只剩约 0.01", "at a gate of 0.99 (almost open): about 0.01"),
                  (a99, 0.0099), xytext=(0.6, 0.3), fontsize=9, color=GRAD, ha="left",
                  arrowprops=dict(arrowstyle="-", color=GRAD, lw=1))
    right.plot([0], [1.0], "o", color=GRAD, ms=7, zorder=5)
    right.annotate(bi("在 0 处最大：1", "largest at 0: 1"), (0, 1.0), xytext=(1.2, 0.45), fontsize=9,
                   color=GRAD, arrowprops=dict(arrowstyle="-", color=GRAD, lw=1))
    left.set_title(bi("sigmoid：各个门都用它", "sigmoid, used by the gates", sep="\n"), fontsize=10.5)
    right.set_title(bi("tanh：候选值和 tanh(c) 用它", "tanh, used by the candidate and tanh(c)", sep="\n"),
                    fontsize=10.5)
    for ax, low in ((left, -0.05), (right, -1.1)):
        ax.axhline(0, color="#999999", lw=0.8)
        ax.axvline(0, color="#999999", lw=0.8)
        ax.set_ylim(low, 1.1)
        ax.set_xlabel(bi("激活前的值 a", "pre-activation a", sep=" / "), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is right else "upper left", fontsize=9, framealpha=0.95)
    fig.text(0.5, -0.07, bi("两个导数都能用函数值本身算出：反向传播只需保存门的输出（§4）",
                            "both derivatives follow from the function's own value: the backward pass keeps "
                            "only the gates' outputs (§4)"), ha="center", fontsize=9.5, color="#444444")
    fig.tight_layout()
    return save(fig, out, "activations")


def node(ax, x, y, text, w=1.2, h=0.7, fc="white", ec="#555555", fs=12):
    box(ax, x, y, text, w=w, h=h, fc=fc, ec=ec, fs=fs)


def draw_lstm_backward_graph(out: Path) -> Path:
    """Nodes x_t, h_{t-1}, c_{t-1}, a, a^i..a^o, i..o, c_t, tanh c_t, h_t; forward edges; and beside them
    the quantities of lstm_cell_backward (LB1)-(LB7), with the two paths of the gradient into c_t."""
    fig, ax = canvas(14.0, (-1.6, 19.6), (-1.3, 10.6))
    title(ax, 9.0, 10.25, "LSTM 一步的计算图与反向传播",
          "one LSTM step as a graph: forward, and backward (BPTT)")
    note(ax, 9.0, 9.55,
         bi("黑色：前向计算；品红：反向传播的梯度 δv = ∂L/∂v（与 lstm_cell_backward 一一对应）",
            "black: the forward pass; magenta: the gradients δv = ∂L/∂v, as in lstm_cell_backward"),
         fs=10, color="#444444")
    inp = "#dbe9f6"
    # Positions.
    yc, rows = 7.6, {"i": 6.2, "f": 5.0, "g": 3.8, "o": 2.1}
    xa, xpre, xgate, xc, xtc, xh = 3.1, 6.6, 8.6, 12.2, 12.2, 15.0
    ytc, yh = 4.6, 2.1
    node(ax, 0.0, yc, "$c_{t-1}$", fc=inp)
    node(ax, 0.0, 4.9, "$x_t$", fc=inp)
    node(ax, 0.0, 3.1, "$h_{t-1}$", fc=inp)
    node(ax, xa, 4.0, "$a_t$", w=1.0)
    note(ax, xa, 3.3, r"$W_{ih}x_t+W_{hh}h_{t-1}+b$" + "\n(4H)", fs=9)
    for g, y in rows.items():
        node(ax, xpre, y, f"$a^{g}$", w=0.9)
        node(ax, xgate, y, f"${g}_t$", w=0.9)
    node(ax, xc, yc, "$c_t$", fc=inp)
    node(ax, xtc, ytc, r"$\tanh c_t$", w=1.4)
    node(ax, xh, yh, "$h_t$", fc=inp)
    # Forward edges.
    arrow(ax, (0.6, 4.8), (xa - 0.5, 4.15))
    arrow(ax, (0.6, 3.2), (xa - 0.5, 3.85))
    for g, y in rows.items():
        arrow(ax, (xa + 0.5, 4.0), (xpre - 0.45, y))
        arrow(ax, (xpre + 0.45, y), (xgate - 0.45, y))
        note(ax, (xpre + xgate) / 2, y + 0.22,
             {"i": "σ (L1)", "f": "σ (L2)", "g": "tanh (L3)", "o": "σ (L4)"}[g], fs=8.5, color="#444444")
    arrow(ax, (0.6, yc), (xc - 0.6, yc))
    for g in "ifg":
        arrow(ax, (xgate + 0.45, rows[g]), (xc - 0.35, yc - 0.35))
    note(ax, xc + 0.55, yc - 0.55, "(L5)", fs=9, ha="left", color="#444444")
    arrow(ax, (xc, yc - 0.35), (xtc, ytc + 0.35))
    arrow(ax, (xtc + 0.5, ytc - 0.35), (xh - 0.25, yh + 0.35))
    arrow(ax, (xgate + 0.45, rows["o"]), (xh - 0.6, yh))
    note(ax, xh, yh - 0.6, "(L6)", fs=9, color="#444444")
    # Backward: what arrives from later steps...
    arrow(ax, (18.6, yh), (xh + 0.6, yh), color=GRAD, lw=2.2, ls="--")
    note(ax, 18.7, yh + 0.95,
         bi("从输出与第 t+1 步来", "from the output and step t+1") + "\n" + r"$\delta h_t$ (LB8)", fs=9.5,
         ha="right", color=GRAD)
    arrow(ax, (18.6, yc), (xc + 0.6, yc), color=GRAD, lw=2.2, ls="--")
    note(ax, 18.7, yc + 0.95, bi("② 从第 t+1 步经 fₜ₊₁ 来", "② from step t+1 via fₜ₊₁") + "\n"
         + r"$\delta c^{next}_t = \delta c_{t+1}\odot f_{t+1}$", fs=9.5, ha="right", color=GRAD)
    # ... through tanh into c_t: the first of its two paths, then their sum (LB2).
    note(ax, 12.55, 6.15, bi("① 经 tanh 从 hₜ 来", "① through tanh from hₜ") + "\n"
         + r"$\delta h_t\odot o_t\odot(1-\tanh^2 c_t)$", fs=9.5, ha="left", color=GRAD)
    note(ax, 11.3, 8.55,
         r"(LB2)  $\delta c_t = \delta c^{next}_t + \delta h_t\odot o_t\odot(1-\tanh^2 c_t)$  = ② + ①", fs=10,
         color=GRAD, bg="white")
    note(ax, 11.6, 1.65, r"(LB1)  $\delta o_t = \delta h_t\odot\tanh c_t$", fs=10, color=GRAD, bg="white")
    # (LB3) beside each gate's edge into c_t, (LB4) along the belt edge.
    note(ax, xgate + 0.6, 3.05, r"(LB3)  $\delta i_t = \delta c_t\odot g_t$" + "\n"
         + r"$\delta f_t = \delta c_t\odot c_{t-1}$" + "\n" + r"$\delta g_t = \delta c_t\odot i_t$",
         fs=9.5, ha="left", color=GRAD, linespacing=1.5)
    note(ax, 5.0, yc + 0.55, bi("加法通路", "the additive path", sep=" / ") + "\n"
         + r"(LB4)  $\delta c_{t-1} = \delta c_t\odot f_t$", fs=10, color=GRAD)
    arrow(ax, (-0.6, yc + 0.0), (-1.5, yc), color=GRAD, lw=2.2, ls="--")
    # (LB5) through the sigmoids and the tanh, (LB6) to the inputs, (LB7) the weights.
    note(ax, 6.6, 1.0, r"(LB5)  $\delta a = [\,\delta i\odot i(1-i),\ \delta f\odot f(1-f),\ "
                        r"\delta g\odot(1-g^2),\ \delta o\odot o(1-o)\,]$", fs=10, color=GRAD)
    note(ax, 0.0, 2.05, r"(LB6)  $\delta h_{t-1} \ {+}{=}\  W_{hh}^\top\delta a$", fs=10, color=GRAD,
         ha="left")
    note(ax, 0.0, 5.75, r"(LB6)  $\delta x_t = W_{ih}^\top\delta a$", fs=10, color=GRAD, ha="left")
    arrow(ax, (-0.6, 3.1), (-1.5, 3.1), color=GRAD, lw=2.2, ls="--")
    arrow(ax, (-0.6, 4.9), (-1.5, 4.9), color=GRAD, lw=2.2, ls="--")
    note(ax, 6.6, 0.1, r"(LB7)  $\delta W_{ih} \ {+}{=}\  \delta a\,x_t^\top,\ \ \delta W_{hh} \ {+}{=}\  "
                         r"\delta a\,h_{t-1}^\top,\ \ \delta b \ {+}{=}\  \delta a$" + "\n" +
         bi("对所有步求和", "summed over all steps", sep=" / "), fs=10, color=GRAD)
    note(ax, 14.6, 0.1, bi("δhₜ₋₁ 与 δcₜ₋₁ 再交给第 t−1 步，重复直到 t = 1（LB8）",
                           "δhₜ₋₁ and δcₜ₋₁ go on to step t−1;\nrepeat down to t = 1 (LB8)"),
         fs=10, color="#444444")
    return save(fig, out, "lstm_backward_graph")


def draw_gru_backward_graph(out: Path) -> Path:
    """The GRU step as a graph (GB0)-(GB8), drawn like the LSTM's: the input side xi = W_ih x + b_ih and the
    hidden side eta = W_hh h + b_hh kept apart (the reset gate multiplies only the hidden side's candidate
    part h_hat); beside each edge the quantity of gru_cell_backward; the direct path h_{t-1} -> h_t, where the
    gradient is only scaled by z."""
    fig, ax = canvas(14.0, (-1.6, 19.6), (-1.3, 10.6))
    title(ax, 9.0, 10.25, "GRU 一步的计算图与反向传播",
          "one GRU step as a graph: forward, and backward (BPTT)")
    note(ax, 9.0, 9.55,
         bi("黑色：前向计算；品红：反向传播的梯度 δv = ∂L/∂v（与 gru_cell_backward 一一对应）",
            "black: the forward pass; magenta: the gradients δv = ∂L/∂v, as in gru_cell_backward"),
         fs=10, color="#444444")
    inp = "#fbe0e0"
    ytop, xh = 7.6, 15.6
    xs, xpre, xgate, xan, xn = 3.1, 6.0, 8.2, 10.6, 12.8
    yr, yz, yhat, yn, yxi, yeta = 6.0, 4.9, 3.7, 2.2, 1.6, 4.9
    node(ax, 0.0, ytop, "$h_{t-1}$", fc=inp)
    node(ax, 0.0, yxi, "$x_t$", fc=inp)
    node(ax, xs, yeta, r"$\eta_t$", w=1.0)
    note(ax, xs, yeta - 0.75, r"$W_{hh}h_{t-1}+b_{hh}$" + "\n(3H)", fs=9)
    node(ax, xs, yxi, r"$\xi_t$", w=1.0)
    note(ax, xs, yxi - 0.75, r"$W_{ih}x_t+b_{ih}$" + "\n(3H)", fs=9)
    node(ax, xpre, yr, "$a^r$", w=0.9)
    node(ax, xpre, yz, "$a^z$", w=0.9)
    node(ax, xpre, yhat, r"$\hat h_t$", w=0.9)
    node(ax, xgate, yr, "$r_t$", w=0.9)
    node(ax, xgate, yz, "$z_t$", w=0.9)
    node(ax, xan, yn, "$a^n$", w=0.9)
    node(ax, xn, yn, "$n_t$", w=0.9)
    node(ax, xh, ytop, "$h_t$", fc=inp)
    # Forward edges: the two sides, the sums (G1), (G2), r on the hidden side's candidate part (G3), (G4).
    wire(ax, [(0.0, ytop - 0.35), (0.0, 6.4), (xs - 0.2, 6.4), (xs - 0.2, yeta + 0.35)])
    arrow(ax, (0.6, yxi), (xs - 0.5, yxi))
    for y in (yr, yz):
        arrow(ax, (xs + 0.5, yeta + 0.05), (xpre - 0.45, y))
        arrow(ax, (xs + 0.5, yxi + 0.15), (xpre - 0.45, y - 0.2))
    arrow(ax, (xs + 0.5, yeta - 0.15), (xpre - 0.45, yhat))
    note(ax, xpre, yhat - 0.62, r"$W_{hn}h_{t-1}+b_{hn}$", fs=8.5, color="#444444")
    arrow(ax, (xs + 0.5, yxi - 0.1), (xan - 0.45, yn - 0.1))
    note(ax, 8.6, 2.3, r"$\xi^n$", fs=9, color="#444444")
    arrow(ax, (xpre + 0.45, yr), (xgate - 0.45, yr))
    arrow(ax, (xpre + 0.45, yz), (xgate - 0.45, yz))
    note(ax, (xpre + xgate) / 2, yr + 0.25, "σ (G1)", fs=8.5, color="#444444")
    note(ax, (xpre + xgate) / 2, yz + 0.25, "σ (G2)", fs=8.5, color="#444444")
    arrow(ax, (xgate + 0.3, yr - 0.35), (xan - 0.2, yn + 0.35))
    arrow(ax, (xpre + 0.45, yhat - 0.1), (xan - 0.45, yn + 0.15))
    note(ax, xan + 0.1, yn - 0.62, r"$\xi^n + r\odot\hat h$ (G3)", fs=8.5, color="#444444", ha="right")
    arrow(ax, (xan + 0.45, yn), (xn - 0.45, yn))
    note(ax, (xan + xn) / 2, yn + 0.25, "tanh", fs=8.5, color="#444444")
    arrow(ax, (xn + 0.45, yn + 0.1), (xh - 0.3, ytop - 0.35))
    arrow(ax, (xgate + 0.45, yz + 0.1), (xh - 0.55, ytop - 0.3))
    # The direct path h_{t-1} -> h_t (G4), drawn on top like the LSTM's cell path.
    arrow(ax, (0.6, ytop), (xh - 0.6, ytop), color=GRU_RED, lw=2.4)
    note(ax, xh + 0.05, ytop - 0.6, "(G4)", fs=9, color="#444444")
    note(ax, 12.6, 4.6, r"(G4)  $h_t = (1-z_t)\odot n_t + z_t\odot h_{t-1}$", fs=9.5, color="#444444",
         bg="white")
    # Backward: what arrives from later steps ...
    arrow(ax, (19.4, ytop), (xh + 0.6, ytop), color=GRAD, lw=2.2, ls="--")
    note(ax, 19.5, ytop + 0.95,
         bi("从输出与第 t+1 步来", "from the output and step t+1") + "\n" + r"$\delta h_t$ (GB8)", fs=9.5,
         ha="right", color=GRAD)
    # ... back along the direct path: scaled by z, no matrix, no nonlinearity (GB6).
    note(ax, 6.4, ytop + 0.6, bi("直接路径：只被更新门 z 逐元素缩放，不经过矩阵，也不经过非线性函数",
                                 "the direct path: scaled element-wise by the update gate z only, "
                                 "through no matrix and no nonlinearity")
         + "\n" + r"$\delta h_t\odot z_t$  (GB6)", fs=9.5, color=GRAD)
    arrow(ax, (-0.6, ytop), (-1.5, ytop), color=GRAD, lw=2.2, ls="--")
    # (GB1) into n and z, (GB2) through tanh, (GB3) into r, (GB4) through the sigmoids, (GB5) the two sides.
    note(ax, 14.0, 3.5, r"(GB1)  $\delta n_t = \delta h_t\odot(1-z_t)$" + "\n"
         + r"$\delta z_t = \delta h_t\odot(h_{t-1}-n_t)$", fs=9.5, color=GRAD, ha="left", bg="white",
         linespacing=1.5)
    note(ax, 13.4, 1.45, r"(GB2)  $\delta a^n = \delta n_t\odot(1-n_t^2)$", fs=9.5, color=GRAD, bg="white")
    note(ax, 10.0, 6.55, r"(GB3)  $\delta r_t = \delta a^n\odot\hat h_t$" + "\n"
         + r"$\delta\hat h_t = r_t\odot\delta a^n$", fs=9.5, color=GRAD, ha="left", bg="white",
         linespacing=1.5)
    note(ax, 7.1, 7.0, r"(GB4)  $\delta a^r = \delta r\odot r(1-r)$,  $\delta a^z = \delta z\odot z(1-z)$",
         fs=9.5, color=GRAD, bg="white")
    note(ax, 6.5, 0.55, r"(GB5)  $\delta\xi_t = [\,\delta a^r,\ \delta a^z,\ \delta a^n\,]$,   "
                        r"$\delta\eta_t = [\,\delta a^r,\ \delta a^z,\ \delta\hat h_t\,]$", fs=10, color=GRAD)
    # (GB6) to the inputs, (GB7) the weights.
    note(ax, -1.4, 6.0, r"(GB6)  $\delta h_{t-1} \ {+}{=}$" + "\n"
         + r"$\delta h_t\odot z_t + W_{hh}^\top\delta\eta_t$", fs=9.5, color=GRAD, ha="left",
         linespacing=1.5)
    note(ax, -1.4, 0.6, r"(GB6)  $\delta x_t = W_{ih}^\top\delta\xi_t$", fs=9.5, color=GRAD, ha="left")
    arrow(ax, (-0.6, yxi), (-1.5, yxi), color=GRAD, lw=2.2, ls="--")
    note(ax, 6.5, -0.35, r"(GB7)  $\delta W_{ih} \ {+}{=}\ \delta\xi_t\,x_t^\top,\ \ \delta W_{hh} \ {+}{=}\ "
                         r"\delta\eta_t\,h_{t-1}^\top,\ \ \delta b_{ih} \ {+}{=}\ \delta\xi_t,\ \ "
                         r"\delta b_{hh} \ {+}{=}\ \delta\eta_t$", fs=10, color=GRAD)
    note(ax, 15.8, 0.3, bi("δhₜ₋₁ 再交给第 t−1 步，\n重复直到 t = 1（GB8）",
                           "δhₜ₋₁ goes on to step t−1;\nrepeat down to t = 1 (GB8)"),
         fs=10, color="#444444")
    return save(fig, out, "gru_backward_graph")


# ---------------------------------------------------------------------------------------------------
# 6. §5: padding, the mask, and torch's PackedSequence; §6: bidirectional and stacked RNNs
# ---------------------------------------------------------------------------------------------------
REVIEWS = (("a", "fine", "film"), ("the", "plot", "is", "so", "thin"), ("loved", "it"),
           ("not", "bad", "at", "all"))


def pack_layout(lengths):
    """What pack_padded_sequence(..., enforce_sorted=False) stores, without torch (tests/test_figures.py
    checks it against torch): the (b, t) of each row of PackedSequence.data, batch_sizes, sorted_indices."""
    sorted_indices = sorted(range(len(lengths)), key=lambda b: -lengths[b])   # longest first
    batch_sizes = [sum(L > t for L in lengths) for t in range(max(lengths))]   # sequences longer than t
    order = [(b, t) for t in range(max(lengths)) for b in sorted_indices if lengths[b] > t]  # time-major
    return order, batch_sizes, sorted_indices


def draw_padding_packing(out: Path) -> Path:
    """Four reviews of 3, 5, 2 and 4 words: the padded (B, T) batch, its mask, and the packed data."""
    fig, ax = canvas(12.5, (-2.4, 19.4), (-4.6, 6.8))
    lengths = [len(r) for r in REVIEWS]
    B, T = len(REVIEWS), max(lengths)
    order, batch_sizes, sorted_idx = pack_layout(lengths)
    title(ax, 8.5, 6.4, "变长序列：填充、掩码与打包", "variable lengths: padding, the mask, packing")
    cw, ch = 1.25, 0.8

    def grid(x0, heading, cell):
        note(ax, x0 + T * cw / 2, 5.25, heading, fs=10.5)
        for t in range(T):
            note(ax, x0 + (t + 0.5) * cw, 4.4, f"t={t}", fs=9, color="#555555")
        for b in range(B):
            y = 4.1 - (b + 1) * ch
            for t in range(T):
                fc, text, color = cell(b, t)
                ax.add_patch(Rectangle((x0 + t * cw, y), cw, ch, fc=fc, ec="white", lw=2, zorder=2))
                note(ax, x0 + (t + 0.5) * cw, y + ch / 2, text, fs=9.5, color=color)

    def padded(b, t):
        return (STREAM_COLORS[b], REVIEWS[b][t], INK) if t < lengths[b] else (LIGHT, "PAD", GREY)

    def mask(b, t):
        return ("#d9ead3", "1", INK) if t < lengths[b] else (LIGHT, "0", GREY)

    grid(0.0, bi("填充后的批", "padded batch", sep=" / ") + f"\n(B={B}, T={T}, batch_first)", padded)
    for b in range(B):
        note(ax, -0.15, 4.1 - (b + 0.5) * ch, f"b={b}  $L_{b}$={lengths[b]}", fs=9, ha="right")
    grid(9.6, bi("掩码", "mask", sep=" / ") + "\n" + r"$m_{t,b} = [\,t < L_b\,]$", mask)
    note(ax, 9.6 + T * cw + 0.25, 4.1 - 2 * ch,
         bi("1：真实的一步\n0：填充，状态不变", "1: a real step\n0: padding, state kept"), fs=9, ha="left",
         color="#444444", linespacing=1.4)
    # The packed form: time-major, only the real steps, longest sequence first.
    y0, x = -1.6, -1.5
    note(ax, 8.5, 0.3, "pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)",
         fs=10, family="monospace")
    arrow(ax, (8.5, -0.05), (8.5, y0 + ch + 0.08), color="#555555")
    note(ax, -2.3, y0 + 0.4, "data", fs=10, ha="left", family="monospace")
    k = 0
    cw2 = 0.95
    x = -0.9
    for t, size in enumerate(batch_sizes):
        x_start = x
        for _ in range(size):
            b, tt = order[k]
            ax.add_patch(Rectangle((x, y0), cw2, ch, fc=STREAM_COLORS[b], ec="white", lw=2, zorder=2))
            note(ax, x + cw2 / 2, y0 + ch / 2, REVIEWS[b][tt], fs=8.5)
            x += cw2
            k += 1
        mid = (x_start + x) / 2
        ax.plot([x_start + 0.05, x - 0.05], [y0 - 0.2, y0 - 0.2], color="#555555", lw=1.2)
        note(ax, mid, y0 - 0.5, f"t={t}", fs=9, color="#555555")
        note(ax, mid, y0 - 1.0, f"{size}", fs=11, fontweight="bold")
        x += 0.35
    note(ax, -2.3, y0 - 1.0, "batch_sizes", fs=10, ha="left", family="monospace")
    note(ax, x + 0.1, y0 + 0.4, bi(f"共 {sum(lengths)} 行", f"{sum(lengths)} rows", sep=" / ") + "\n= "
         + " + ".join(map(str, lengths)),
         fs=9.5, ha="left")
    note(ax, 8.5, y0 - 1.85, f"batch_sizes = {batch_sizes}   sorted_indices = {sorted_idx}", fs=10,
         family="monospace")
    note(ax, 8.5, y0 - 2.55,
         bi("按时间步存放：第 t 步只有比 t 长的序列（按长度从长到短排）；h_n 仍按调用者的顺序返回",
                                "time-major: step t holds only the sequences longer than t (longest first); "
                                "h_n comes back in the caller's order"), fs=9.5, color="#444444")
    return save(fig, out, "padding_packing")


def draw_bidirectional_stacked(out: Path) -> Path:
    """§6 in two panels. Left, bidirectional (D = 2): a forward pass and a backward pass with their own
    weights over the same x_1..x_4, the output at t the concatenation [forward h_t; backward h_t] (2H).
    Right, stacked (L = 2): layer 1 reads layer 0's outputs (dropout between, in training); h_n[l*D + d]."""
    fig, ax = canvas(13.5, (-1.0, 26.0), (-2.2, 8.6))
    T = 4
    w, h = 1.25, 0.75
    fwd, bwd = BELT, "#d9822b"
    # Left: bidirectional.
    title(ax, 5.6, 8.2, "双向 RNN（D = 2）", "bidirectional, D = 2", fs=12)
    xs = [1.2 + 2.9 * k for k in range(T)]
    y_x, y_f, y_b, y_o = 0.0, 2.4, 4.2, 6.3
    note(ax, -0.6, y_f, bi("正向", "forward", sep="\n"), fs=9, color=fwd, ha="center")
    note(ax, -0.6, y_b, bi("反向", "backward", sep="\n"), fs=9, color=bwd, ha="center")
    for k, x in enumerate(xs):
        note(ax, x, y_x, f"$x_{k + 1}$", fs=12)
        box(ax, x, y_f, rf"$\overrightarrow{{h}}_{k + 1}$", w=w, h=h, fc="#dbe9f6", ec=fwd, fs=11)
        box(ax, x, y_b, rf"$\overleftarrow{{h}}_{k + 1}$", w=w, h=h, fc="#fde0c5", ec=bwd, fs=11)
        arrow(ax, (x - 0.3, y_x + 0.3), (x - 0.3, y_f - h / 2), color=fwd, lw=1.2)
        arrow(ax, (x + 0.3, y_x + 0.3), (x + 0.3, y_b - h / 2), color=bwd, lw=1.2, z=1)  # behind the box
        box(ax, x, y_o, rf"$[\overrightarrow{{h}}_{k + 1};\overleftarrow{{h}}_{k + 1}]$", w=2.3, h=h,
            fc="white", ec="#777777", fs=10)
        arrow(ax, (x - 0.3, y_f + h / 2), (x - 0.3, y_o - h / 2), color=fwd, lw=1.2, z=1)
        arrow(ax, (x + 0.3, y_b + h / 2), (x + 0.3, y_o - h / 2), color=bwd, lw=1.2)
        if k + 1 < T:
            arrow(ax, (x + w / 2, y_f + 0.15), (xs[k + 1] - w / 2, y_f + 0.15), color=fwd, lw=1.8)
            arrow(ax, (xs[k + 1] - w / 2, y_b - 0.15), (x + w / 2, y_b - 0.15), color=bwd, lw=1.8)
    note(ax, 5.6, -1.35,
         bi("第二组权重（..._reverse）把序列倒着读；时刻 t 的输出把两个方向拼起来：(T, B, 2H)，正向在前",
            "a second set of weights (..._reverse) reads the sequence backwards; the output at t\n"
            "concatenates both directions: (T, B, 2H), forward features first"), fs=9, color="#444444")
    # Right: stacked.
    x0 = 15.2
    title(ax, x0 + 4.8, 8.2, "多层 RNN（L = 2）", "stacked, L = 2", fs=12)
    xs2 = [x0 + 0.8 + 2.6 * k for k in range(T)]
    y_x, y_l0, y_l1, y_o = 0.0, 2.4, 4.6, 6.3
    note(ax, x0 - 0.55, y_l0, bi("第 0 层", "layer 0", sep="\n"), fs=9, ha="center")
    note(ax, x0 - 0.55, y_l1, bi("第 1 层", "layer 1", sep="\n"), fs=9, ha="center")
    for k, x in enumerate(xs2):
        note(ax, x, y_x, f"$x_{k + 1}$", fs=12)
        box(ax, x, y_l0, rf"$h^{{(0)}}_{k + 1}$", w=w, h=h, fc="#dbe9f6", ec=fwd, fs=11)
        box(ax, x, y_l1, rf"$h^{{(1)}}_{k + 1}$", w=w, h=h, fc="#e3d7f1", ec="#6a4c9c", fs=11)
        arrow(ax, (x, y_x + 0.3), (x, y_l0 - h / 2), lw=1.2)
        arrow(ax, (x, y_l0 + h / 2), (x, y_l1 - h / 2), lw=1.2)
        arrow(ax, (x, y_l1 + h / 2), (x, y_o - 0.25), lw=1.2)
        note(ax, x, y_o, f"$out_{k + 1}$", fs=10)
        if k + 1 < T:
            arrow(ax, (x + w / 2, y_l0), (xs2[k + 1] - w / 2, y_l0), color=fwd, lw=1.8)
            arrow(ax, (x + w / 2, y_l1), (xs2[k + 1] - w / 2, y_l1), color="#6a4c9c", lw=1.8)
    note(ax, xs2[0] + 1.3, (y_l0 + y_l1) / 2, "dropout", fs=8.5, color="#777777", ha="center", style="italic")
    note(ax, xs2[-1] + 1.0, y_l0, "$h_n[0]$", fs=10, ha="left", color=fwd)
    note(ax, xs2[-1] + 1.0, y_l1, "$h_n[1]$", fs=10, ha="left", color="#6a4c9c")
    note(ax, x0 + 4.8, -1.35,
         bi("第 l 层读第 l−1 层每一步的输出（l > 0 时输入大小是 D·H）；\n"
            "设 dropout=p 时，除最后一层外每层的输出都做 dropout；h_n[l·D + d] 是第 l 层第 d 个方向的末状态",
            "layer l reads layer l−1's output at every step (input size D·H for l > 0);\n"
            "dropout=p acts on every layer's output but the last; h_n[l·D + d] is layer l, direction d"),
         fs=9, color="#444444")
    return save(fig, out, "bidirectional_stacked")


# ---------------------------------------------------------------------------------------------------
# 7. §10: truncated BPTT over B parallel streams, the state carried and detached
# ---------------------------------------------------------------------------------------------------
TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. First Citizen: You")


def draw_tbptt_streams(out: Path) -> Path:
    B, T, K = 3, 6, 4
    n = T * K
    text = TEXT[:B * n + 1]
    fig, ax = canvas(13.0, (-2.6, 29.6), (-2.3, 9.6))
    title(ax, 13.5, 9.15, "截断 BPTT：B 条文本流，每块 T 步", "truncated BPTT: B streams, chunks of T steps")
    # The whole text, coloured by the stream each character goes to (T1).
    cw = 0.36
    x0 = 0.0
    note(ax, -0.2, 7.6, bi("整篇文本", "the text", sep="\n"), fs=9.5, ha="right")
    for j, chr_ in enumerate(text):
        b = min(j // n, B - 1)
        fc = STREAM_COLORS[b] if j < B * n else LIGHT
        ax.add_patch(Rectangle((x0 + j * cw, 7.3), cw, 0.6, fc=fc, ec="white", lw=0.8, zorder=2))
        note(ax, x0 + (j + 0.5) * cw, 7.6, "·" if chr_ == " " else chr_, fs=7.5, family="monospace")
    for b in range(B):
        note(ax, x0 + (b * n + n / 2) * cw, 8.25, bi(f"流 {b}", f"stream {b}", sep=" / "), fs=9)
    note(ax, 13.5, 6.6,
         bi(f"切成 B 条首尾相接的文本流：矩阵 (B, n) 的第 b 行是连续的一段 (T1)；这里 B={B}, T={T}, n={n}",
            "cut into B contiguous streams: row b of the (B, n) matrix is one long stretch (T1); "
            f"here B={B}, T={T}, n={n}"),
         fs=9.5, color="#444444")
    # The (B, n) matrix, its columns cut into K chunks of T.
    cw2, ch, gap = 0.9, 0.8, 1.4
    ytop = 4.6

    def col_x(j):
        return (j // T) * (T * cw2 + gap) + (j % T) * cw2

    for k in range(K):
        xk = col_x(k * T)
        note(ax, xk + T * cw2 / 2, ytop + 0.8, bi(f"第 {k} 块", f"chunk {k}", sep=" / ") + f"\n$X^{{({k})}}$",
             fs=9.5)
    for b in range(B):
        y = ytop - (b + 1) * ch * 1.35
        note(ax, -2.5, y + ch / 2, f"b={b}", fs=9.5, ha="left")
        arrow(ax, (-1.3, y + ch / 2), (-0.08, y + ch / 2), color=BELT, lw=2.0)
        note(ax, -0.7, y + ch / 2 + 0.3, "0", fs=9, color=BELT)
        for j in range(n):
            chr_ = text[b * n + j]
            ax.add_patch(Rectangle((col_x(j), y), cw2, ch, fc=STREAM_COLORS[b], ec="white", lw=1.5, zorder=2))
            note(ax, col_x(j) + cw2 / 2, y + ch / 2, "·" if chr_ == " " else chr_, fs=10, family="monospace")
        for k in range(K):
            xs, xe = col_x(k * T), col_x(k * T + T - 1) + cw2
            # the gradient flows back within the chunk only
            arrow(ax, (xe - 0.1, y - 0.17), (xs + 0.1, y - 0.17), color=GRAD, lw=1.4)
            if k + 1 < K:
                # the state carried to the next chunk, detached on the way
                xn = col_x((k + 1) * T)
                arrow(ax, (xe + 0.05, y + ch / 2), (xn - 0.05, y + ch / 2), color=BELT, lw=2.0)
                mid = (xe + xn) / 2
                ax.plot([mid - 0.12, mid + 0.12], [y + ch / 2 - 0.3, y + ch / 2 + 0.3], color=GRAD, lw=2.2,
                        zorder=5)
                ax.plot([mid + 0.02, mid + 0.26], [y + ch / 2 - 0.3, y + ch / 2 + 0.3], color=GRAD, lw=2.2,
                        zorder=5)
    ybot = ytop - B * ch * 1.35
    for k in range(K - 1):
        mid = (col_x(k * T + T - 1) + cw2 + col_x((k + 1) * T)) / 2
        note(ax, mid, ybot - 0.55, "detach()", fs=9, color=GRAD, family="monospace")
    note(ax, 13.5, ybot - 1.35,
         bi("蓝色箭头：(h, c) 从第 k 块末尾传到第 k+1 块开头（第 0 块从 0 开始），前向计算看得见全部历史；"
            "中间先 detach() 切断梯度",
            "blue: (h, c) carried from the end of chunk k to the start of chunk k+1, so the forward pass "
            "sees the whole history; detach() cuts the gradient on the way (T2)"), fs=9.5, color=BELT)
    note(ax, 13.5, ybot - 2.55,
         bi("品红箭头：损失 L⁽ᵏ⁾ 的梯度只回传到本块开头，最多 T 步；各块按顺序训练，不打乱",
            "magenta: the gradient of L⁽ᵏ⁾ flows back to the start of its chunk only, at most T steps; "
            "chunks are visited in order, never shuffled"), fs=9.5, color=GRAD)
    return save(fig, out, "tbptt_streams")


# ---------------------------------------------------------------------------------------------------
# 8. §13: attention in the encoder-decoder, and beam search
# ---------------------------------------------------------------------------------------------------
def draw_attention(out: Path) -> Path:
    """Encoder over C A T (bidirectional), decoder writing K AE1 T </s>; at step t=2 the weights
    alpha_{2,j} (illustrative) as lines of varying width into the context c_2 (E4)-(E8)."""
    fig, ax = canvas(12.5, (-1.6, 17.6), (-1.9, 8.5))
    title(ax, 8.0, 8.1, "编码器-解码器与注意力：写第 2 个音素时",
          "encoder–decoder with attention, at step t = 2")
    letters, xs_enc, y = "CAT", [1.0, 3.4, 5.8], 2.4
    phones_in, phones_out = ["<s>", "K", "AE1", "T"], ["K", "AE1", "T", "</s>"]
    xs_dec = [9.6, 11.8, 14.0, 16.2]
    alpha = [0.10, 0.82, 0.08]
    w, h = 1.6, 1.1
    # Encoder: each s_j = [forward h_j ; backward h_j] (E1).
    for j, (ch, x) in enumerate(zip(letters, xs_enc)):
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w / 2, h, fc="#dbe9f6", ec=BELT, lw=1.2, zorder=3))
        ax.add_patch(Rectangle((x, y - h / 2), w / 2, h, fc="#fde0c5", ec="#d9822b", lw=1.2, zorder=3))
        note(ax, x - w / 4, y, rf"$\overrightarrow{{h}}_{j + 1}$", fs=11)
        note(ax, x + w / 4, y, rf"$\overleftarrow{{h}}_{j + 1}$", fs=11)
        note(ax, x + 0.15, y - h / 2 - 0.4, f"$s_{j + 1}$", fs=10.5, ha="left")
        note(ax, x, 0.0, ch, fs=15, fontweight="bold")
        arrow(ax, (x, 0.35), (x, y - h / 2))
        if j + 1 < len(letters):
            arrow(ax, (x + w / 2, y + 0.3), (xs_enc[j + 1] - w / 2, y + 0.3), color=BELT)
            arrow(ax, (xs_enc[j + 1] - w / 2, y - 0.3), (x + w / 2, y - 0.3), color="#d9822b")
    note(ax, 3.4, -0.6,
         bi("编码器：双向 RNN 读字母", "encoder: a bidirectional RNN over the letters", "(E1)"), fs=9.5,
         color="#444444", va="top")
    # Decoder (E3), fed the previous phoneme.
    for t, x in enumerate(xs_dec):
        box(ax, x, y, f"$d_{t + 1}$", w=1.2, h=h, fc="#e8e8f4", ec="#6a6aa8", fs=12)
        note(ax, x, 0.0, phones_in[t], fs=12, family="monospace")
        arrow(ax, (x, 0.35), (x, y - h / 2))
        if t + 1 < len(xs_dec):
            arrow(ax, (x + 0.6, y), (xs_dec[t + 1] - 0.6, y), color="#6a6aa8")
        if t != 1:
            arrow(ax, (x, y + h / 2), (x, y + h / 2 + 0.45), color=GREY)
            note(ax, x, y + h / 2 + 0.72, phones_out[t], fs=12, family="monospace", color=GREY)
    arrow(ax, (xs_enc[-1] + w / 2, y), (xs_dec[0] - 0.6, y), color="#6a6aa8", lw=1.5)
    note(ax, (xs_enc[-1] + xs_dec[0]) / 2 + 0.05, y - 0.45, r"$d_0$ (E2)", fs=9.5, color="#444444")
    note(ax, 12.9, -0.6,
         bi("解码器：一次写一个音素，输入上一个音素", "decoder: one phoneme per step, fed the previous one",
                             "(E3)"), fs=9.5, color="#444444", va="top")
    # Attention at step t = 2: weights alpha_{2,j} into the context c_2 (E5)-(E6).
    xc, yc = 6.4, 6.0
    box(ax, xc, yc, "$c_2$", w=1.2, h=0.8, fc=OP, ec=OP_EDGE, fs=13)
    note(ax, xc - 0.8, yc + 0.05, bi("上下文", "context", r"$c_2=\sum_j\alpha_{2,j}s_j$ (E6)", sep="\n"),
         fs=9.5, ha="right")
    for j, x in enumerate(xs_enc):
        lw = 0.8 + 9 * alpha[j]
        ax.plot([x, xc - 0.2 + 0.2 * j], [y + h / 2, yc - 0.4], color=GRAD, lw=lw,
                alpha=0.35 + 0.65 * alpha[j], zorder=2, solid_capstyle="butt")
        x_end, y0, y1 = xc - 0.2 + 0.2 * j, y + h / 2, yc - 0.4
        ly = y0 + 0.22 * (y1 - y0)
        lx = x + 0.22 * (x_end - x)
        note(ax, lx + 0.22 + 0.05 * lw, ly, rf"$\alpha_{{2,{j + 1}}}={alpha[j]:.2f}$", fs=9.5, color=GRAD,
             ha="left", bg="white")
    # The query d_2, the attentional state and the output (E4), (E7), (E8).
    xd = xs_dec[1]
    yq = 4.55
    dot(ax, xd, yq, color="#6a6aa8")
    wire(ax, [(xd, yq), (xc + 0.75, yq), (xc + 0.35, yc - 0.4)], color="#6a6aa8", lw=1.3, ls="--")
    note(ax, (xd + xc) / 2 + 0.3, yq + 0.45, bi("用 d₂ 给每个 sⱼ 打分", "d₂ scores every sⱼ:",
                                                r"$e_{2,j}=d_2^\top W_a s_j$ (E4)"), fs=9.5, color="#6a6aa8")
    box(ax, xd, yc, r"$\tilde d_2$", w=1.2, h=0.8, fc=LAYER, ec=LAYER_EDGE, fs=13)
    arrow(ax, (xc + 0.6, yc), (xd - 0.6, yc))
    arrow(ax, (xd, y + h / 2), (xd, yc - 0.4))
    note(ax, xd + 0.8, yc, r"$\tanh(W_c[c_2;d_2]+b_c)$ (E7)", fs=9.5, ha="left")
    arrow(ax, (xd, yc + 0.4), (xd, yc + 1.1))
    note(ax, xd, yc + 1.45, "AE1", fs=13, family="monospace", fontweight="bold")
    note(ax, xd + 0.8, yc + 1.45, r"softmax $(W_o\tilde d_2+b_o)$ (E8)", fs=9.5, ha="left")
    note(ax, 1.6, 5.6,
         bi("线越粗 = 权重 α 越大\n（示意数值）", "thicker = larger weight α\n(illustrative values)",
                          r"$\alpha_{2,j}$ (E5)"), fs=9, color=GRAD, ha="center")
    return save(fig, out, "attention")


BEAM = {  # node: (parent, token, log p of the token, y); illustrative numbers for the word "CAT"
    "K": ("<s>", "K", -0.36, 4.6), "S": ("<s>", "S", -1.61, 1.9), "CH": ("<s>", "CH", -2.30, 0.3),
    "K AE1": ("K", "AE1", -0.22, 5.6), "K AH0": ("K", "AH0", -1.90, 4.2),
    "S AE1": ("S", "AE1", -0.51, 2.6), "S IY1": ("S", "IY1", -1.20, 1.2),
    "K AE1 T": ("K AE1", "T", -0.11, 6.1), "K AE1 D": ("K AE1", "D", -2.41, 5.1),
    "S AE1 T": ("S AE1", "T", -0.36, 3.2), "S AE1 D": ("S AE1", "D", -1.61, 2.2),
}


def beam_scores():
    """Cumulative scores (B1) and the hypotheses kept at each step with beam width 2."""
    score = {"<s>": 0.0}
    for name, (parent, _, lp, _) in BEAM.items():
        score[name] = score[parent] + lp
    kept = set()
    for depth in (1, 2, 3):
        level = sorted((n for n in BEAM if len(n.split()) == depth and (depth == 1 or BEAM[n][0] in kept)),
                       key=lambda n: -score[n])
        kept.update(level[:2])
    return score, kept


def draw_beam_search(out: Path) -> Path:
    score, kept = beam_scores()
    fig, ax = canvas(11.5, (-1.6, 15.4), (-1.9, 8.9))
    title(ax, 6.9, 8.5, "束搜索（束宽 K = 2）", "beam search with beam width K = 2")
    xs = {0: 0.0, 1: 4.0, 2: 8.0, 3: 12.0}
    pos = {"<s>": (0.0, 3.3)}
    for name, (_, _, _, y) in BEAM.items():
        pos[name] = (xs[len(name.split())], y)
    for name, (parent, token, lp, _) in BEAM.items():
        (x0, y0), (x1, y1) = pos[parent], pos[name]
        on = name in kept
        color = BELT if on else GREY
        best = name in ("K", "K AE1", "K AE1 T")
        ax.plot([x0 + 0.75, x1 - 0.85], [y0, y1], color=color, lw=3.0 if best else 1.6 if on else 1.1,
                ls="-" if on else "--", zorder=2)
        mx, my = 0.5 * (x0 + 0.75 + x1 - 0.85), 0.5 * (y0 + y1)
        note(ax, mx, my, f"{lp:+.2f}", fs=9, color=color if on else "#8a8a8a", bg="white")
    for name, (x, y) in pos.items():
        on = name in kept or name == "<s>"
        label = name.split()[-1] + "\n" + f"{score[name]:.2f}"
        box(ax, x, y, label, w=1.6, h=0.85, fc="#dbe9f6" if on else "#f1f1f1", ec=BELT if on else "#bbbbbb",
            fs=10, color=INK if on else "#8a8a8a", ls="-" if on else "--", family="monospace")
    for depth, x in xs.items():
        if depth:
            n = sum(len(name.split()) == depth for name in BEAM)
            note(ax, x, 7.75, bi(f"第 {depth} 步", f"step {depth}", sep=" / "), fs=10, fontweight="bold")
            note(ax, x, 7.1, bi(f"{n} 个候选，留 2 个", f"{n} candidates, keep 2"), fs=9, color="#555555")
    note(ax, 12.0, -0.35, bi("最优：K AE1 T（−0.69）", "best: K AE1 T (−0.69)", sep=" / "), fs=10, color=BELT,
         fontweight="bold")
    note(ax, 6.9, -1.25,
         bi("框内：音素与累计得分 Σ log p (B1)；边上：该音素的 log p。"
            "每步把所有扩展按得分排序，只留 K = 2 个（蓝），其余剪掉（灰）。示意数字",
            "in a box: the phoneme and the running score Σ log p (B1); on an edge: that phoneme's log p.\n"
            "Each step keeps the K = 2 best extensions (blue) and prunes the rest (grey). "
            "Illustrative numbers."),
         fs=9, color="#444444")
    return save(fig, out, "beam_search")


# ---------------------------------------------------------------------------------------------------
# 8b. §15: the tag lattice of the linear-chain CRF
# ---------------------------------------------------------------------------------------------------
def draw_crf_lattice(out: Path) -> Path:
    """§15: the B/M/E/S tag lattice of "我们去公园": one column per character, one node per tag, an edge for
    every legal pair of neighbouring tags (B, M -> M, E; E, S -> B, S); one path is one segmentation, the
    highlighted one B E S B E = 我们 / 去 / 公园. (CRF1) scores a path; (CRF2) sums over all paths."""
    chars, path = "我们去公园", "BESBE"
    tags = "BMES"
    legal = {"B": "ME", "M": "ME", "E": "BS", "S": "BS"}
    fig, ax = canvas(11.0, (-2.2, 13.6), (-1.6, 7.6))
    title(ax, 5.7, 7.15, "标签格：一条路径就是一种切分", "the tag lattice: one path, one segmentation", fs=12)
    xs = [1.0 + 2.4 * k for k in range(len(chars))]
    ys = {tag: 5.2 - 1.25 * k for k, tag in enumerate(tags)}
    names = {"B": bi("词首", "begin", sep=" "), "M": bi("词中", "middle", sep=" "),
             "E": bi("词尾", "end", sep=" "), "S": bi("单字词", "single", sep=" ")}
    allowed = lambda k, tag: (k > 0 or tag in "BS") and (k + 1 < len(chars) or tag in "ES")  # noqa: E731
    for tag, y in ys.items():
        note(ax, -0.4, y, f"{tag}  {names[tag]}", fs=9.5, ha="right")
    for k, (x, ch) in enumerate(zip(xs, chars)):
        note(ax, x, 6.25, ch, fs=15)
        if k + 1 < len(chars):
            for a in (a for a in tags if allowed(k, a)):
                for b in (b for b in legal[a] if allowed(k + 1, b)):
                    on = path[k] == a and path[k + 1] == b
                    ax.plot([x + 0.35, xs[k + 1] - 0.35], [ys[a], ys[b]], color=BELT if on else "#c8c8c8",
                            lw=3.0 if on else 0.9, zorder=2 if on else 1)
        for tag, y in ys.items():
            on = path[k] == tag
            ok = allowed(k, tag)
            ax.add_patch(Circle((x, y), 0.33, fc="#dbe9f6" if on else "white" if ok else "#eeeeee",
                                ec=BELT if on else "#888888" if ok else "#cccccc", lw=1.8 if on else 1.0,
                                zorder=3))
            note(ax, x, y, tag, fs=11, color=INK if ok else "#bbbbbb", fontweight="bold" if on else None)
    note(ax, 5.7, 0.6, bi("蓝色路径 B E S B E = 我们 / 去 / 公园；灰线是所有合法的相邻标签对",
                           "blue: B E S B E = 我们 / 去 / 公园; grey: every legal pair of neighbouring tags"),
         fs=9.5, color="#333333")
    note(ax, 5.7, -0.2, bi("B、M 后面只能跟 M 或 E，E、S 后面只能跟 B 或 S；"
                          "句子以 B 或 S 开头，以 E 或 S 结尾（浅灰的不能用）",
                          "B and M are followed by M or E, E and S by B or S; a sentence starts with B or S "
                          "and ends with E or S (pale: not allowed)"), fs=9, color="#555555")
    note(ax, 5.7, -1.0, bi("(CRF1) 给一条路径打分；(CRF2) 的前向算法一列一列地把所有路径加起来",
                            "(CRF1) scores one path; the forward algorithm (CRF2) sums over all paths, "
                            "column by column"), fs=9, color="#555555")
    return save(fig, out, "crf_lattice")


# ---------------------------------------------------------------------------------------------------
# 9. Measured: the gradient reaching step t, from theory_comparison.py's last run
# ---------------------------------------------------------------------------------------------------
def draw_gradient_vs_lag(out: Path) -> Path | None:
    """theory_comparison.py's gradient_norms.png with a caption from its metrics.json. The metrics hold
    the per-step factor of each cell, not the curve itself, so the run's own plot is shown as it is."""
    run = OUTPUTS_ROOT / "01_basic_theory" / "theory_comparison"
    missing = [p for p in (run / "metrics.json", run / "gradient_norms.png") if not p.is_file()]
    if missing:
        print(f"skipped gradient_vs_lag.png: no {shown_path(missing[0])} "
              "(run python 01_basic_theory/theory_comparison.py first)")
        return None
    record = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    grad = record["metrics"]["gradient"]
    image = plt.imread(run / "gradient_norms.png")
    h_px, w_px = image.shape[:2]
    labels = {"rnn": "RNN", "lstm": "LSTM b_f=1", "gru": "GRU",
              "lstm_bf0": bi("LSTM torch 默认初始化", "LSTM torch init", sep=" / ")}
    kept = "    ".join(f"{labels.get(k, k)} ×{v['shrink_per_step']:.3f}"
                       for k, v in grad.items() if isinstance(v, dict))
    threads = record.get("config", {}).get("CPU_THREADS")
    lines = [(bi("实测（初始化时）：每往回一步，梯度保留的倍数",
                 "measured at init: the gradient kept per step back"), INK),
             (kept, INK),
             (f"python 01_basic_theory/theory_comparison.py (defaults: T={grad.get('seq_len')})", "#555555"),
             (f"{MEASURED_ON}" + (f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else "")
              + f", torch {record.get('torch_version', '?').split('+')[0]}, "
                f"{record.get('finished', '?')[:10]}",
              "#555555"),
             ("redrawn by python figures/draw_theory_figures.py --ONLY=gradient_vs_lag", "#555555")]
    n_lines = sum(text.count("\n") + 1 for text, _ in lines)
    line_in = 0.19
    caption_in = 0.15 + line_in * n_lines
    fig_h = h_px / DPI + caption_in
    fig = plt.figure(figsize=(w_px / DPI, fig_h))
    ax = fig.add_axes((0, caption_in / fig_h, 1, 1 - caption_in / fig_h))
    ax.imshow(image, interpolation="none")          # pixel for pixel: the figure is sized to the image
    ax.axis("off")
    y_in = caption_in - 0.1
    for text, color in lines:
        fig.text(0.03, y_in / fig_h, checked(text), fontsize=8.5, color=color, va="top")
        y_in -= line_in * (text.count("\n") + 1)
    return save(fig, out, "gradient_vs_lag")


DRAW = {"rnn_unrolled": draw_rnn_unrolled, "gradient_decay": draw_gradient_decay,
        "adding_problem": draw_adding_problem, "lstm_cell": draw_lstm_cell, "gru_cell": draw_gru_cell,
        "activations": draw_activations, "lstm_backward_graph": draw_lstm_backward_graph,
        "gru_backward_graph": draw_gru_backward_graph, "padding_packing": draw_padding_packing,
        "bidirectional_stacked": draw_bidirectional_stacked, "tbptt_streams": draw_tbptt_streams,
        "attention": draw_attention, "beam_search": draw_beam_search, "crf_lattice": draw_crf_lattice,
        "gradient_vs_lag": draw_gradient_vs_lag}


def main():
    t0 = time.time()
    parse_config(globals())
    out = Path(OUT_DIR) if Path(OUT_DIR).is_absolute() else REPO_ROOT / OUT_DIR
    family = setup_fonts(CJK_FONT)
    print(f"Chinese labels in {family}" if family else "English labels only (DejaVu Sans)")
    for name in NAMES:
        if ONLY in ("all", name):
            path = DRAW[name](out)
            if path is not None:
                print(f"wrote {shown_path(path)} ({path.stat().st_size / 1024:.0f} kB)")
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    run_main(main)

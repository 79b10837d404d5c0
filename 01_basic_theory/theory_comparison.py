"""Vanilla RNN vs LSTM vs GRU, side by side: why gates make long memories learnable.

Five experiments on the adding problem (Hochreiter & Schmidhuber 1997): (1) the gradient that reaches
step t from the loss at the last step, (2) test error as the lag grows, (3) parameters and speed,
(4) the LSTM forget-gate bias 1 vs torch's init (b_f near 0), (5) the gates of trained models as heatmaps.
Run: python 01_basic_theory/theory_comparison.py   (--quick: 30-second smoke test; --help: options)
Theory: THEORY.md sections 1, 4.3 (why gates ease vanishing gradients), 4.4 (forget bias), 6 (params).

把普通 RNN、LSTM 和 GRU 放到同一个任务上比一比，看清楚为什么有了门，长距离的记忆才学得会。
任务是加法问题：序列里标出两个数，最后一步要输出它们的和，所以第一个数至少要记住半个序列。
五个实验：(1) 最后一步的损失传回第 t 步时还剩多少梯度；(2) 要记住的间隔越来越长时，测试误差怎样变化；
(3) 参数量和每一步的耗时；(4) LSTM 的遗忘门偏置取 1 与 torch 默认初始化的对比；
(5) 训练好的模型里各个门的热力图。
运行：`python 01_basic_theory/theory_comparison.py`（2 核 CPU 上约 1.5-2.5 分钟；`--quick` 约 30 秒跑通）。
对应的理论：THEORY.md 第 1 节、4.3 节（门如何缓解梯度消失）、4.4 节（遗忘门偏置）、第 6 节（参数量）。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # this folder: rnn_common

import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rnn_common import full_float32
from utils.model_utils import count_parameters, init_forget_bias, make_rnn
from utils.script_utils import (
    AtLeast,
    Finite,
    Items,
    OneOf,
    Positive,
    Seed,
    UserError,
    check_constants,
    float64_device,
    get_device,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
    synchronize,
)
from utils.training import ProgressLog, clip_gradients, gradient_summary
from utils.visualization import plot_bars, plot_curves, plot_heatmap_panels

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                     # one seed for models, training batches and test sets
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to run
CPU_THREADS: AtLeast(1) = 1        # torch threads on CPU: H=32 matrices gain nothing from more
                                   # (and stall a busy CPU)
HIDDEN_SIZE: AtLeast(1) = 32       # hidden units of every cell (same H for a fair comparison)
FORGET_BIAS: Finite = 1.0          # the LSTM's forget-gate bias at init (THEORY.md 4.4);
                                   # experiment 4 compares it to 0
GRAD_SEQ_LEN: AtLeast(2) = 100     # experiment 1: length T of the sequence whose
                                   # last-step loss is differentiated
GRAD_SAMPLES: AtLeast(1) = 16      # experiment 1: random input sequences the gradient norms are averaged over
LAGS: Items(AtLeast(2)) = (10, 25, 50, 100)  # experiment 2: adding-problem sequence lengths
                                             # (one marker in each half)
TRAIN_STEPS: AtLeast(1) = 1200     # experiments 2, 4: Adam steps per cell and lag (a fixed, small budget)
BATCH_SIZE: AtLeast(1) = 64        # sequences per training step (freshly sampled every step)
LR: Positive = 0.01                # Adam learning rate
CLIP: AtLeast(0.0) = 1.0           # gradient-norm clipping, 0 = off: gates cure vanishing,
                                   # not exploding, gradients
EVAL_EVERY: AtLeast(1) = 100       # steps between two validation points of the learning curves
TEST_SIZE: AtLeast(1) = 1000       # sequences in each validation and test set
SOLVED_NMSE: Positive = 0.1        # a lag counts as solved when test MSE < this fraction of the
                                   # predict-1 baseline's
TIMING_SEQ_LEN: AtLeast(1) = 100   # experiment 3: sequence length of the timed forward+backward pass
TIMING_REPEATS: AtLeast(1) = 30    # experiment 3: interleaved timing rounds (the median is reported)
HEATMAP_LAG: AtLeast(2) = 50       # experiment 5: the trained models at this lag
                                   # (one of LAGS) show their gates

QUICK_SETTINGS = dict(LAGS=(10, 20), TRAIN_STEPS=150, EVAL_EVERY=25, TEST_SIZE=256, GRAD_SEQ_LEN=50,
                      GRAD_SAMPLES=8, TIMING_SEQ_LEN=50, TIMING_REPEATS=5, HEATMAP_LAG=20)
CHECKS = [(lambda: HEATMAP_LAG in LAGS,
           "--HEATMAP_LAG must be one of --LAGS: the gates are shown for a model "
                                         "trained at that lag")]

# The contestants (a dict, so the command line leaves it alone). Experiment 4 compares the two LSTMs.
MODELS = {"rnn": "vanilla tanh RNN",
          "lstm": "LSTM with its forget-gate bias set to FORGET_BIAS",
          "lstm_bf0": "LSTM with torch's init: biases from U(-1/sqrt(H), 1/sqrt(H)), so b_f ≈ 0 and f ≈ 0.5",
          "gru": "GRU"}
GATE_COUNT = {"rnn": 1, "lstm": 4, "gru": 3}  # weight blocks per cell: tanh / i,f,g,o / r,z,n


def label(name: str) -> str:
    return {"rnn": "RNN", "lstm": f"LSTM b_f={FORGET_BIAS:g}", "lstm_bf0": "LSTM torch init",
            "gru": "GRU"}[name]


# the plots' legends, Chinese first (label() names the models in the printed tables)
LEGEND = {"LSTM torch init": "LSTM，torch 默认初始化 / LSTM torch init",
          "baseline (predict 1.0)": "基线（总是预测 1.0） / baseline (predict 1.0)"}


def legend(curves: dict) -> dict:
    return {LEGEND.get(name, name): ys for name, ys in curves.items()}


STYLES = {LEGEND["LSTM torch init"]: {"ls": "--"}}  # the two LSTMs share a colour; dash torch's init


# ----------------------------------------------------------------------------------------------------
# The task: the adding problem
# ----------------------------------------------------------------------------------------------------
def adding_problem(n: int, seq_len: int, generator: torch.Generator):
    """n sequences of the adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015 variant).

    Channel 0 holds random numbers in [0, 1); channel 1 marks exactly two steps, one in the first half
    and one in the second. The target is the sum of the two marked numbers, so the first one must be
    remembered for at least seq_len/2 steps. Predicting the mean (1.0) gives MSE 1/6 ≈ 0.167.
    Returns x: (n, seq_len, 2), y: (n,), marks: (n, 2) the marked positions.
    """
    if seq_len < 2:
        raise UserError(f"every lag must be at least 2 (one marker in each half); got {seq_len}.")
    values = torch.rand(n, seq_len, generator=generator)
    first = torch.randint(0, seq_len // 2, (n,), generator=generator)
    second = torch.randint(seq_len // 2, seq_len, (n,), generator=generator)
    marker = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = torch.stack([values, marker], dim=-1)                 # (n, T, 2)
    y = (values * marker).sum(dim=1)                          # (n,)
    return x, y, torch.stack([first, second], dim=1)


def data_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------
# The models: one recurrent layer read out at the last step
# ----------------------------------------------------------------------------------------------------
class LastStepRegressor(nn.Module):
    """x: (B, T, 2) -> rnn -> h_T: (B, H) -> linear -> (B,) the predicted sum."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, 1)

    def forward(self, x):
        out, _ = self.rnn(x)                                  # out: (B, T, H)
        return self.head(out[:, -1]).squeeze(-1)


def build_model(name: str, device) -> LastStepRegressor:
    """The same seed for every cell, so differences come from the cell, not the draw."""
    torch.manual_seed(SEED)
    cell = name.split("_")[0]
    if cell == "rnn":
        rnn = nn.RNN(2, HIDDEN_SIZE, batch_first=True)        # h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)
    else:
        rnn = make_rnn(cell, "torch", 2, HIDDEN_SIZE)
    if name == "lstm":
        init_forget_bias(rnn, FORGET_BIAS)                   # f ≈ σ(1) ≈ 0.73 at init (THEORY.md 4.4)
    return LastStepRegressor(rnn).to(device)


# ----------------------------------------------------------------------------------------------------
# Experiment 1: how much gradient reaches step t from the loss at the last step
# ----------------------------------------------------------------------------------------------------
def gradient_norms(model: LastStepRegressor, x, y) -> np.ndarray:
    """||∂L_T/∂h_t|| / ||∂L_T/∂h_T|| for t = 0..T-1, per sequence: (B, T), in float64.

    The layer is run one step at a time so that every h_t is a tensor of its own whose .grad is the
    full derivative through all later steps (for the LSTM it includes the path through c, (L5)).
    """
    rnn = model.rnn
    states, state = [], None
    for t in range(x.shape[1]):
        _, state = rnn(x[:, t:t + 1], state)                  # state: h (1, B, H) or (h, c)
        h = state[0] if isinstance(state, tuple) else state
        h.retain_grad()
        states.append(h)
    pred = model.head(states[-1][0]).squeeze(-1)              # (B,)
    # Sum of per-sequence losses: sequence b's gradient comes only from its own loss.
    (0.5 * (pred - y) ** 2).sum().backward()
    norms = torch.stack([h.grad[0].norm(dim=-1) for h in states], dim=1)  # (B, T)
    return (norms / norms[:, -1:]).detach().cpu().numpy()


def experiment_gradients(device):
    """Geometric mean over GRAD_SAMPLES sequences of the relative gradient norm, at initialisation."""
    x, y, _ = adding_problem(GRAD_SAMPLES, GRAD_SEQ_LEN, data_generator(SEED + 1))
    device = float64_device(device)                           # float64: 1e-30 is a real number here
    x, y = x.double().to(device), y.double().to(device)       # (on a Mac, on the CPU: MPS has no float64)
    curves, rows, summary = {}, [], {}
    for name in MODELS:
        model = build_model(name, device).double()
        log_ratio = np.log10(gradient_norms(model, x, y)).mean(axis=0)   # (T,)
        # Per-step shrink factor: slope of log10 ||∂L/∂h_t|| against t (least squares).
        slope = np.polyfit(np.arange(GRAD_SEQ_LEN), log_ratio, 1)[0]
        curves[label(name)] = (10.0 ** log_ratio).tolist()
        summary[name] = {"log10_ratio_t0": float(log_ratio[0]), "shrink_per_step": float(10 ** -slope)}
        rows.append({"model": label(name),
                     f"log10 ||dL/dh_0|| / ||dL/dh_{GRAD_SEQ_LEN - 1}||": float(log_ratio[0]),
                     "gradient kept per step": float(10 ** -slope)})
    print_table(rows, f"(1) Gradient reaching step t from the loss at step T={GRAD_SEQ_LEN} "
                      f"(at init, {GRAD_SAMPLES} sequences, float64 on {device.type})", floatfmt=".3f")
    return curves, summary


# ----------------------------------------------------------------------------------------------------
# Experiment 2 (and 4): train every cell on the adding problem at every lag, same budget
# ----------------------------------------------------------------------------------------------------
def mse(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float(((model(x) - y) ** 2).mean())


def train_on_adding(name: str, lag: int, device, progress: ProgressLog | None = None):
    """TRAIN_STEPS Adam steps on fresh batches; returns the model and its validation curve
    [(step, validation MSE / the predict-1.0 baseline's MSE)]. `progress` gets a row every EVAL_EVERY
    steps: training and validation MSE, the gradient norm before clipping, the share of steps clipped."""
    model = build_model(name, device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    batches = data_generator(SEED + lag)                      # the same batches for every cell at a lag
    x_val, y_val, _ = adding_problem(TEST_SIZE, lag, data_generator(SEED + 10_000 + lag))
    val_baseline = float(((y_val - 1.0) ** 2).mean())
    x_val, y_val = x_val.to(device), y_val.to(device)
    curve = []                                                # (step, validation MSE / its baseline)
    losses, norms, t0 = [], [], time.time()                   # since the last validation point
    if progress is not None:
        progress.start(TRAIN_STEPS)
    bar = tqdm(range(1, TRAIN_STEPS + 1), desc=f"{label(name):15s} T={lag:<4d}", leave=False,
               dynamic_ncols=True)
    for step in bar:
        model.train()
        x, y, _ = adding_problem(BATCH_SIZE, lag, batches)
        loss = ((model(x.to(device)) - y.to(device)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(clip_gradients(model, CLIP))                  # the norm before clipping; clipped to CLIP
        opt.step()
        losses.append(loss.item())
        if step % EVAL_EVERY == 0 or step == TRAIN_STEPS:
            train_s = time.time() - t0
            val_mse = mse(model, x_val, y_val)
            curve.append((step, val_mse / val_baseline))
            bar.set_postfix(val_nmse=f"{curve[-1][1]:.3f}", grad=f"{norms[-1]:.2f}")
            if progress is not None:
                progress.epoch({"step": step, "train_loss": sum(losses) / len(losses), "val_loss": val_mse,
                                "val_nmse": curve[-1][1], "lr": LR,
                                **gradient_summary(norms, sum(n > CLIP for n in norms) if CLIP else 0),
                                "samples_per_s": round(len(losses) * BATCH_SIZE / max(train_s, 1e-9), 1)})
            losses, norms, t0 = [], [], time.time()
    if progress is not None:
        progress.end({"final_val_nmse": curve[-1][1]})
    return model, curve


def experiment_lags(device, progress: ProgressLog | None = None):
    """Final test MSE of every cell at every lag, plus the validation curves (experiment 4 reads them)."""
    results = {name: {} for name in MODELS}
    baseline = {}
    for lag in LAGS:
        x_test, y_test, _ = adding_problem(TEST_SIZE, lag, data_generator(SEED + 20_000 + lag))
        baseline[lag] = float(((y_test - 1.0) ** 2).mean())   # predict the mean sum, 1.0, every time
        for name in MODELS:
            t0 = time.time()
            run = progress.for_run(f"{label(name)} T={lag}") if progress is not None else None
            model, curve = train_on_adding(name, lag, device, run)
            test = mse(model, x_test.to(device), y_test.to(device))
            results[name][lag] = {"model": model, "curve": curve, "test_mse": test,
                                  "nmse": test / baseline[lag]}
            tqdm.write(f"  {label(name):15s} T={lag:<4d} test MSE {test:.4f} "
                       f"({test / baseline[lag]:.3f} x baseline)  {time.time() - t0:.1f}s")
    rows = [{"model": label(n), **{f"T={lag}": results[n][lag]["nmse"] for lag in LAGS},
             "longest solved": longest_solved(results[n]) or "-"} for n in MODELS]
    print_table(rows, f"(2) Test MSE / baseline MSE (predict 1.0) after {TRAIN_STEPS} steps; "
                      f"< {SOLVED_NMSE} counts as solved", floatfmt=".3f")
    return results, baseline


def longest_solved(by_lag: dict) -> int | None:
    solved = [lag for lag, r in by_lag.items() if r["nmse"] < SOLVED_NMSE]
    return max(solved) if solved else None


# ----------------------------------------------------------------------------------------------------
# Experiment 3: parameters (THEORY.md section 6) and time per training step
# ----------------------------------------------------------------------------------------------------
def parameter_formula(cell: str, input_size: int, hidden: int) -> int:
    """k (H I + H H + 2H), k weight blocks (RNN 1, LSTM 4, GRU 3), two bias vectors as in torch."""
    return GATE_COUNT[cell] * (hidden * input_size + hidden * hidden + 2 * hidden)


def time_step_ms(models: dict, device) -> dict:
    """Median forward+backward time (ms) of one batch; cells are interleaved in every round so a
    busy machine slows them all alike."""
    x, y, _ = adding_problem(BATCH_SIZE, TIMING_SEQ_LEN, data_generator(SEED + 2))
    x, y = x.to(device), y.to(device)
    times = {name: [] for name in models}
    for round_ in range(TIMING_REPEATS + 2):                 # 2 warm-up rounds, not counted
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            synchronize(device)                               # CUDA and MPS queue work: wait before the clock
            t0 = time.perf_counter()
            ((model(x) - y) ** 2).mean().backward()
            synchronize(device)
            if round_ >= 2:
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: float(np.median(t)) for name, t in times.items()}


def experiment_cost(device):
    cells = {"rnn": "rnn", "lstm": "lstm", "gru": "gru"}
    models = {cell: build_model(cell, device) for cell in cells}
    ms = time_step_ms(models, device)
    summary, rows = {}, []
    for cell, model in models.items():
        counted = count_parameters(model.rnn)
        formula = parameter_formula(cell, 2, HIDDEN_SIZE)
        summary[cell] = {"params_counted": counted, "params_formula": formula, "ms_per_step": ms[cell]}
        rows.append({"cell": cell.upper(), "params (formula)": formula, "params (counted)": counted,
                     "vs LSTM": counted / count_parameters(models["lstm"].rnn),
                     f"ms fwd+bwd (B={BATCH_SIZE}, T={TIMING_SEQ_LEN})": ms[cell],
                     "time vs LSTM": ms[cell] / ms["lstm"]})
    print_table(rows, f"(3) Recurrent-layer parameters (I=2, H={HIDDEN_SIZE}) and time per step "
                      f"(median of {TIMING_REPEATS} interleaved rounds)", floatfmt=".2f")
    return summary


# ----------------------------------------------------------------------------------------------------
# Experiment 5: the gates of trained models, computed from torch.nn's weights with the equations
# ----------------------------------------------------------------------------------------------------
def lstm_gates(lstm: nn.LSTM, x):
    """Re-run a trained nn.LSTM step by step with (L1)-(L6). x: (B, T, I).

    Returns a dict of (B, T, H) tensors: i, f, o (gates), c (cell state), h (output).
    """
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0        # (4H, I), (4H, H), gate order i, f, g, o
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0                     # (4H,)
    B, T, _ = x.shape
    h = c = x.new_zeros(B, lstm.hidden_size)
    out = {k: [] for k in "ifoch"}
    for t in range(T):
        a_i, a_f, a_g, a_o = (x[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, dim=1)   # each (B, H)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)  # (L1)-(L4)
        c = f * c + i * g                                     # (L5) the additive memory path
        h = o * torch.tanh(c)                                 # (L6)
        for k, v in zip("ifoch", (i, f, o, c, h)):
            out[k].append(v)
    return {k: torch.stack(v, dim=1) for k, v in out.items()}


def gru_gates(gru: nn.GRU, x):
    """Re-run a trained nn.GRU step by step with (G1)-(G4). x: (B, T, I) -> dict of (B, T, H): r, z, h."""
    gi_all = x @ gru.weight_ih_l0.T + gru.bias_ih_l0          # (B, T, 3H), gate order r, z, n
    B, T, _ = x.shape
    h = x.new_zeros(B, gru.hidden_size)
    out = {k: [] for k in "rzh"}
    for t in range(T):
        gi_r, gi_z, gi_n = gi_all[:, t].chunk(3, dim=1)
        gh_r, gh_z, gh_n = (h @ gru.weight_hh_l0.T + gru.bias_hh_l0).chunk(3, dim=1)
        r = torch.sigmoid(gi_r + gh_r)                        # (G1) reset gate
        z = torch.sigmoid(gi_z + gh_z)                        # (G2) update gate: z ≈ 1 keeps h_{t-1}
        n = torch.tanh(gi_n + r * gh_n)                       # (G3) candidate
        h = (1 - z) * n + z * h                               # (G4)
        for k, v in zip("rzh", (r, z, h)):
            out[k].append(v)
    return {k: torch.stack(v, dim=1) for k, v in out.items()}


def check_reproduces(name: str, ours, rnn: nn.Module, x) -> None:
    """The equations must give torch's own outputs, or the heatmaps would show something else."""
    theirs, _ = rnn(x)
    err = float((ours - theirs).detach().abs().max())
    if err > 1e-4:
        raise RuntimeError(f"{name} gates recomputed from the equations disagree with torch.nn "
                           f"(max error {err:.1e})")


def gate_statistics(gates: dict, marks, seq_len: int) -> dict:
    """Numbers that say what the gates do, over the whole test set.

    marked vs other steps: do the input/update gates open when a number must be stored?
    holding window: the steps after the first marker, when the model must keep the first number.
    """
    B = marks.shape[0]
    is_marked = torch.zeros(B, seq_len, dtype=torch.bool)
    is_marked[torch.arange(B), marks[:, 0]] = True
    is_marked[torch.arange(B), marks[:, 1]] = True
    holding = torch.arange(seq_len).unsqueeze(0) > marks[:, :1]           # (B, T)
    stats = {}
    for k, v in gates.items():                                            # v: (B, T, H)
        v = v.detach().cpu()
        per_unit_hold = (v * holding.unsqueeze(-1)).sum((0, 1)) / holding.sum()   # (H,)
        stats[k] = {"marked": float(v[is_marked].mean()), "other": float(v[~is_marked].mean()),
                    "holding": float(v[holding].mean()),
                    "units_above_0.9_while_holding": int((per_unit_hold > 0.9).sum())}
    return stats


def memory_unit(state, x, marks) -> tuple[int, float]:
    """The unit whose state best tracks the first marked number just before the second one arrives.

    state: (B, T, H) (LSTM: c, GRU: h), x: (B, T, 2), marks: (B, 2). Returns (unit, correlation).
    """
    rows = torch.arange(x.shape[0])
    first_value = x[rows, marks[:, 0], 0].cpu()                         # (B,)
    held = state[rows, marks[:, 1] - 1].detach().cpu()                  # (B, H), after holding it
    a, b = first_value - first_value.mean(), held - held.mean(0)
    corr = (a[:, None] * b).sum(0) / (a.norm() * b.norm(dim=0)).clamp_min(1e-12)   # (H,)
    unit = int(corr.abs().argmax())
    return unit, float(corr[unit])


def experiment_gates(results: dict, device, out) -> dict:
    """Heatmaps (units x time) of the LSTM's i, f, o and the GRU's r, z on one test sequence."""
    x, _, marks = adding_problem(TEST_SIZE, HEATMAP_LAG, data_generator(SEED + 20_000 + HEATMAP_LAG))
    x = x.to(device)
    lstm = results["lstm"][HEATMAP_LAG]["model"].rnn
    gru = results["gru"][HEATMAP_LAG]["model"].rnn
    with torch.no_grad(), full_float32():                     # no TF32 on CUDA: the 1e-4 check below holds
        lg, gg = lstm_gates(lstm, x), gru_gates(gru, x)
        check_reproduces("LSTM", lg["h"], lstm, x)
        check_reproduces("GRU", gg["h"], gru, x)
    first = [float(m) for m in marks[0]]                      # the example sequence's two marked steps
    show = lambda g: g[0].T.cpu().numpy()                     # (T, H) -> (H, T): units x time
    plot_heatmap_panels({"输入门 i (L1)\ninput": show(lg["i"]), "遗忘门 f (L2)\nforget": show(lg["f"]),
                         "输出门 o (L4)\noutput": show(lg["o"])}, out / "gates_lstm.png", marks=first,
                        title=f"LSTM 的门，一条测试序列，T={HEATMAP_LAG}（红色三角：两个标记的步）\n"
                              f"LSTM gates on one test sequence, T={HEATMAP_LAG} "
                              "(red triangles: marked steps)")
    plot_heatmap_panels({"重置门 r (G1)\nreset": show(gg["r"]), "更新门 z (G2)\nupdate": show(gg["z"])},
                        out / "gates_gru.png", marks=first,
                        title=f"GRU 的门，一条测试序列，T={HEATMAP_LAG}（红色三角：两个标记的步）\n"
                              f"GRU gates on one test sequence, T={HEATMAP_LAG} "
                              "(red triangles: marked steps)")
    stats = {}
    for cell, gates, state in (("lstm", {k: lg[k] for k in "ifo"}, lg["c"]),
                               ("gru", {k: gg[k] for k in "rz"}, gg["h"])):
        unit, corr = memory_unit(state, x, marks)
        stats[cell] = {"all_units": gate_statistics(gates, marks, HEATMAP_LAG),
                       "memory_unit": {"unit": unit, "corr_with_first_number": corr,
                                       **gate_statistics({k: g[..., unit:unit + 1] for k, g in gates.items()},
                                                         marks, HEATMAP_LAG)}}
    rows = []
    for cell, by_scope in stats.items():
        for scope, by_gate in by_scope.items():
            who = "all units" if scope == "all_units" else f"unit {by_gate['unit']}"
            rows += [{"gate": f"{cell.upper()} {k}", "units": who, "mean at marked steps": s["marked"],
                      "mean at other steps": s["other"], "mean while holding": s["holding"]}
                     for k, s in by_gate.items() if isinstance(s, dict)]
    print_table(rows,
                f"(5) Gate activations of the models trained at T={HEATMAP_LAG} ({TEST_SIZE} test "
                f"sequences); unit = the one whose state best tracks the first number (LSTM c, GRU h)",
                floatfmt=".3f")
    return stats


# ----------------------------------------------------------------------------------------------------
# Reading the numbers: every sentence is chosen by the measurements
# ----------------------------------------------------------------------------------------------------
def steps_to_solve(curve) -> int | None:
    return next((step for step, v in curve if v < SOLVED_NMSE), None)


def conclusions(grad: dict, results: dict, baseline: dict, cost: dict, gates: dict) -> list[str]:
    lines = []
    by_grad = sorted(MODELS, key=lambda n: grad[n]["log10_ratio_t0"], reverse=True)
    lines.append(f"(1) At init, the gradient reaching step 0 from the loss at step {GRAD_SEQ_LEN - 1} is "
                 f"largest for {label(by_grad[0])} (10^{grad[by_grad[0]]['log10_ratio_t0']:.1f} of its "
                 f"last-step size) and smallest for {label(by_grad[-1])} "
                 f"(10^{grad[by_grad[-1]]['log10_ratio_t0']:.1f}); per step it keeps "
                 + ", ".join(f"{label(n)} x{grad[n]['shrink_per_step']:.2f}" for n in MODELS) + ".")
    solved = {n: longest_solved(results[n]) for n in MODELS}
    parts = []
    for n in MODELS:
        failed = [lag for lag in LAGS if results[n][lag]["nmse"] >= SOLVED_NMSE]
        if not failed:
            parts.append(f"{label(n)} solves every lag up to {max(LAGS)}")
        elif solved[n] is None:
            parts.append(f"{label(n)} solves none (not even T={min(LAGS)})")
        else:
            parts.append(f"{label(n)} solves up to T={solved[n]} and fails from T={min(failed)}")
    lines.append(f"(2) With {TRAIN_STEPS} steps: " + "; ".join(parts) + ".")
    ratio_p = cost["gru"]["params_counted"] / cost["lstm"]["params_counted"]
    ratio_t = cost["gru"]["ms_per_step"] / cost["lstm"]["ms_per_step"]
    speed = ("slower" if ratio_t > 1.1 else "faster" if ratio_t < 0.9 else "about as fast")
    lines.append(f"(3) The GRU has {ratio_p:.2f}x the LSTM's parameters (formula: 3/4) and is {speed} per "
                 f"step here (x{ratio_t:.2f}; speed depends on the kernels of the device, not only on the "
                 "FLOPs).")
    lag = max(LAGS)
    s1 = steps_to_solve(results["lstm"][lag]["curve"])
    s0 = steps_to_solve(results["lstm_bf0"][lag]["curve"])
    e1, e0 = results["lstm"][lag]["nmse"], results["lstm_bf0"][lag]["nmse"]
    if s1 is None and s0 is None:
        verdict = "neither LSTM solves it within the budget"
    elif s0 is None or (s1 is not None and s1 < s0):
        verdict = f"b_f={FORGET_BIAS:g} solves it first (step {s1} vs {s0 or 'never'})"
    elif s1 is None or s0 < s1:
        verdict = (f"torch's init (b_f≈0) solves it first here (step {s0} vs {s1 or 'never'}): the trick is "
                   "no guarantee on one seed")
    else:
        verdict = f"both solve it at step {s1}"
    g1, g0 = grad["lstm"]["log10_ratio_t0"], grad["lstm_bf0"]["log10_ratio_t0"]
    lines.append(f"(4) At T={lag}, {verdict}; final error {e1:.3f} vs {e0:.3f} x baseline. At init, "
                 f"b_f={FORGET_BIAS:g} lets 10^{g1 - g0:.1f} times {'more' if g1 > g0 else 'less'} gradient "
                 "reach step 0 (THEORY.md 4.4).")
    lm, gm = gates["lstm"]["memory_unit"], gates["gru"]["memory_unit"]
    i, f, z = lm["i"], lm["f"], gm["z"]
    i_says = ("opens at the marked steps" if i["marked"] > i["other"] + 0.05 else
              "does not single out the marked steps")
    f_says = ("stays near 1" if f["holding"] > 0.9 else "is high" if f["holding"] > 0.7 else "is not near 1")
    z_says = ("stays near 1 (keeps h)" if z["holding"] > 0.9 else "is high" if z["holding"] > 0.7 else
              "is not near 1")
    z_marked = ("drops (lets the new number in) at the marked steps" if z["marked"] < z["other"] - 0.05 else
                "does not single out the marked steps")
    tracks = lambda r: "tracks" if abs(r) > 0.5 else "only weakly tracks"
    lines.append(f"(5) At T={HEATMAP_LAG}, LSTM unit {lm['unit']}'s cell state "
                 f"{tracks(lm['corr_with_first_number'])} the first number "
                 f"(correlation {lm['corr_with_first_number']:+.2f}): its input gate {i_says} "
                 f"(mean {i['marked']:.2f} vs {i['other']:.2f}) and its forget gate {f_says} while the "
                 f"number is held (mean {f['holding']:.2f}; all units: "
                 f"{gates['lstm']['all_units']['f']['holding']:.2f}). "
                 f"GRU unit {gm['unit']}'s state {tracks(gm['corr_with_first_number'])} it (correlation "
                 f"{gm['corr_with_first_number']:+.2f}): its update gate {z_says} "
                 f"while holding (mean {z['holding']:.2f}) and {z_marked} "
                 f"({z['marked']:.2f} vs {z['other']:.2f}).")
    return lines


def check_config() -> None:
    """The constants against their annotations and CHECKS, as parse_config does at start: options that
    would fail late (after minutes of training) are refused up front."""
    check_constants(globals())


def main():
    t0 = time.time()
    cfg = parse_config(globals())  # checks every constant (annotations, CHECKS) before anything runs
    set_seed(SEED)
    torch.set_num_threads(max(1, CPU_THREADS))
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])

    grad_curves, grad = experiment_gradients(device)
    plot_curves(legend(grad_curves), out / "gradient_norms.png", xlabel="时间步 t / time step t",
                x=list(range(GRAD_SEQ_LEN)), ylabel="梯度范数之比 / gradient norm ratio\n"
                                                   "||dL_T/dh_t|| / ||dL_T/dh_T||", logy=True, styles=STYLES,
                title=f"T={GRAD_SEQ_LEN} 处的损失传回第 t 步的梯度（初始化时）\n"
                      f"Gradient reaching step t from the loss at T={GRAD_SEQ_LEN} (at init)")

    with ProgressLog(out, hparams=cfg, logy=True, metrics=["val_nmse"],         # progress.jsonl, live curves,
                     # TensorBoard (experiment 2)
                     title="加法问题：每种单元、每个间隔\n"
                           "Adding problem: every cell at every lag") as progress:
        results, baseline = experiment_lags(device, progress)
    lag_curves = {label(n): [results[n][lag]["nmse"] for lag in LAGS] for n in MODELS}
    lag_curves["baseline (predict 1.0)"] = [1.0] * len(LAGS)
    plot_curves(legend(lag_curves), out / "error_vs_lag.png",
                xlabel="序列长度 T（间隔） / sequence length T (lag)",
                ylabel="测试 MSE 与基线之比\ntest MSE / baseline MSE", logy=True, x=list(LAGS),
                styles={**{label(n): {"marker": "o"} for n in MODELS},
                        LEGEND["LSTM torch init"]: {"marker": "o", "ls": "--"},
                        LEGEND["baseline (predict 1.0)"]: {"ls": ":"}}, legend_outside=True,
                title=f"加法问题：训练 {TRAIN_STEPS} 步之后（H={HIDDEN_SIZE}）\n"
                      f"Adding problem after {TRAIN_STEPS} steps (H={HIDDEN_SIZE})")

    cost = experiment_cost(device)
    plot_bars([c.upper() for c in cost], {"每步毫秒数 / ms per step": [cost[c]["ms_per_step"] for c in cost]},
              out / "time_per_step.png", ylabel="毫秒（前向 + 反向） / ms (forward + backward)",
              title=f"每步耗时 / time per step, B={BATCH_SIZE}, T={TIMING_SEQ_LEN}, H={HIDDEN_SIZE} "
                    f"({device.type})")

    lag = max(LAGS)
    bias_curves = {label(n): [v for _, v in results[n][lag]["curve"]] for n in ("lstm", "lstm_bf0")}
    plot_curves(legend(bias_curves), out / "forget_bias.png", xlabel="训练步数 / training step",
                ylabel="验证 MSE 与基线之比\nvalidation MSE / baseline MSE", logy=True, styles=STYLES,
                x=[s for s, _ in results["lstm"][lag]["curve"]],
                title=f"LSTM 遗忘门偏置 {FORGET_BIAS:g} 对 torch 默认初始化，加法问题，T={lag}\n"
                      f"LSTM forget-gate bias {FORGET_BIAS:g} vs torch's init on the adding problem, T={lag}")
    print_table([{"model": label(n), "steps to solve": steps_to_solve(results[n][lag]["curve"]) or "never",
                  "final test MSE / baseline": results[n][lag]["nmse"],
                  "log10 gradient at t=0 (init)": grad[n]["log10_ratio_t0"]} for n in ("lstm", "lstm_bf0")],
                f"(4) Forget-gate bias at T={lag}", floatfmt=".3f")

    gates = experiment_gates(results, device, out)

    lines = conclusions(grad, results, baseline, cost, gates)
    print("Conclusions (from the numbers above):")
    for line in lines:
        print("  " + line)

    metrics = {
        "gradient": {"seq_len": GRAD_SEQ_LEN, **{n: grad[n] for n in MODELS}},
        "adding": {"lags": list(LAGS), "baseline_mse": [baseline[l] for l in LAGS],
                   **{n: {"test_mse": [results[n][l]["test_mse"] for l in LAGS],
                          "test_nmse": [results[n][l]["nmse"] for l in LAGS],
                          "longest_solved_lag": longest_solved(results[n])} for n in MODELS}},
        "cost": cost,
        "forget_bias": {"lag": lag, **{n: {"steps_to_solve": steps_to_solve(results[n][lag]["curve"]),
                                           "final_test_nmse": results[n][lag]["nmse"]}
                                       for n in ("lstm", "lstm_bf0")}},
        "gates": {"lag": HEATMAP_LAG, **gates},
        "conclusions": lines,
    }
    history = [{"model": n, "lag": l, "step": s, "val_nmse": v}
               for n in MODELS for l in LAGS for s, v in results[n][l]["curve"]]
    save_metrics(out, config=cfg, metrics=metrics, history=history, start_time=t0, device=device)
    print(f"wrote {out}/metrics.json and {len(list(out.glob('*.png')))} PNGs in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    run_main(main)

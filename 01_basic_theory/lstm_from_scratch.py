"""LSTM from the equations: forward and backward (BPTT) by hand, proven equal to torch.nn.LSTM.

Run:  python 01_basic_theory/lstm_from_scratch.py [--quick] [--NAME=VALUE ...]   (--help lists them)
Read: THEORY.md sections 2 (equations L1-L6), 4 (backward LB1-LB8), 5-6 (packing, stacking).
Import: `ScratchLSTM` is a drop-in for torch.nn.LSTM (utils.model_utils loads it for IMPL="scratch").

这个脚本只用张量运算，照着 THEORY.md 的公式 (L1)-(L6) 亲手写出 LSTM 的前向传播和反向传播（BPTT），
再和 torch.nn.LSTM 逐项对照：输出、末状态和每一个梯度都对得上。建议从 lstm_cell_forward 读起：
它算一个时间步，每一行都标着对应的公式编号。
运行：`python 01_basic_theory/lstm_from_scratch.py`，几秒钟就能跑完；`--help` 列出可以改的常量。
对应的理论：THEORY.md 第 2 节（公式 L1-L6）、第 4 节（反向传播 LB1-LB8）、第 5-6 节（打包、多层与双向）。
`ScratchLSTM` 与 torch.nn.LSTM 接口相同，可以直接替换；02-05 的案例加 `--IMPL=scratch` 就用它训练。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # this folder: rnn_common

import time

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from rnn_common import (
    ScratchRNNBase,
    check_against_torch_impl,
    compare_with_torch,
    gradcheck_layer,
    make_sine_task,
    max_rel_error,
    median_ms,
    previous_states,
    train_side_by_side,
)
from utils.script_utils import (
    AtLeast,
    Finite,
    OneOf,
    Positive,
    Seed,
    float64_device,
    get_device,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
)
from utils.training import ProgressLog
from utils.visualization import plot_curves

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                  # one seed for weights, data and batch order
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to run
INPUT_SIZE: AtLeast(1) = 3      # features per time step in the one-step demo and the comparisons
HIDDEN_SIZE: AtLeast(1) = 4     # hidden units in the one-step demo and the comparisons
SEQ_LEN: AtLeast(1) = 40        # length of each sine-wave window in the training task
NUM_SERIES: AtLeast(5) = 1024   # sine-wave windows for training (a fifth more are drawn for validation)
TRAIN_HIDDEN: AtLeast(1) = 32   # hidden size of the trained models
EPOCHS: AtLeast(1) = 15         # training epochs for scratch and torch.nn side by side
BATCH_SIZE: AtLeast(1) = 64     # windows per optimisation step
LR: Positive = 0.01             # Adam learning rate
FORGET_BIAS: Finite = 1.0       # forget-gate bias at init for both models (THEORY.md 4.4);
                                # 0 keeps torch's init

QUICK_SETTINGS = dict(NUM_SERIES=128, SEQ_LEN=15, EPOCHS=2, TRAIN_HIDDEN=16)


# ---------------------------------------------------------------------------------------------
# 1. One cell step, written from the equations (readable reference, no autograd)
# ---------------------------------------------------------------------------------------------
def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step. x: (B, I), h, c: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_*: (4H,) or None.

    Returns h_new, c_new: (B, H) and a cache for lstm_cell_backward.
    """
    a = x @ w_ih.t() + h @ w_hh.t()                # pre-activations (B, 4H), gate order i, f, g, o
    if b_ih is not None:
        a = a + b_ih + b_hh
    a_i, a_f, a_g, a_o = a.chunk(4, dim=1)         # each (B, H)
    i = torch.sigmoid(a_i)                          # (L1) 输入门 input gate
    f = torch.sigmoid(a_f)                          # (L2) 遗忘门 forget gate
    g = torch.tanh(a_g)                             # (L3) 候选值 candidate cell
    o = torch.sigmoid(a_o)                          # (L4) 输出门 output gate
    c_new = f * c + i * g                           # (L5) 细胞状态 cell state: the additive path
    tanh_c = torch.tanh(c_new)
    h_new = o * tanh_c                              # (L6) 隐藏状态 hidden state
    return h_new, c_new, (x, h, c, w_ih, w_hh, i, f, g, o, tanh_c)


def lstm_cell_backward(dh_new, dc_new, cache):
    """Backward of one step. dh_new, dc_new: (B, H) gradients w.r.t. h_t, c_t (from later steps).

    Returns dx (B, I), dh (B, H), dc (B, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,) (db_ih = db_hh = db).
    """
    x, h, c, w_ih, w_hh, i, f, g, o, tanh_c = cache
    do = dh_new * tanh_c                            # (LB1) from (L6)
    dc = dc_new + dh_new * o * (1 - tanh_c ** 2)    # (LB2) both paths into c_t
    di, df, dg = dc * g, dc * c, dc * i             # (LB3) from (L5)
    dc_prev = dc * f                                # (LB4) the additive path: dc_{t-1} = dc_t * f_t
    da = torch.cat([di * i * (1 - i),               # (LB5) through sigmoid / tanh: (B, 4H)
                    df * f * (1 - f),
                    dg * (1 - g ** 2),
                    do * o * (1 - o)], dim=1)
    dx = da @ w_ih                                  # (LB6)
    dh_prev = da @ w_hh                             # (LB6)
    dw_ih, dw_hh, db = da.t() @ x, da.t() @ h, da.sum(0)   # (LB7)
    return dx, dh_prev, dc_prev, dw_ih, dw_hh, db


# ---------------------------------------------------------------------------------------------
# 2. A whole sequence, the plain way: a loop over the cell above (read this first)
# ---------------------------------------------------------------------------------------------
def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """The forward pass over a sequence: lstm_cell_forward at t = 0, 1, ..., T-1 (THEORY.md §2).

    x: (T, B, I), h0, c0: (B, H)  ->  out (T, B, H): h_t of every step; h_n, c_n (B, H): the states after
    the last step; caches: the T step caches, for lstm_backward.
    """
    h, c, outs, caches = h0, c0, [], []
    for t in range(x.shape[0]):
        h, c, cache = lstm_cell_forward(x[t], h, c, w_ih, w_hh, b_ih, b_hh)   # (L1)-(L6), one step
        outs.append(h)                              # out_t = h_t
        caches.append(cache)
    return torch.stack(outs), h, c, caches


def lstm_backward(d_out, d_hn, d_cn, caches):
    """BPTT over a sequence: lstm_cell_backward at t = T-1, ..., 1, 0 (THEORY.md §4.1, (LB8)).

    d_out: (T, B, H) = dL/d out_t; d_hn, d_cn: (B, H) = dL/d h_T, dL/d c_T (the final states).
    Returns dx (T, B, I), dh0, dc0 (B, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,).
    """
    dh, dc = d_hn, d_cn                             # what arrives from after the last step (§4)
    dxs = [None] * len(caches)
    dw_ih = dw_hh = db = 0.0
    for t in reversed(range(len(caches))):
        dh = dh + d_out[t]                          # (LB8) h_t feeds its own output and step t+1
        dxs[t], dh, dc, dw_ih_t, dw_hh_t, db_t = lstm_cell_backward(dh, dc, caches[t])   # dh, dc -> t-1
        dw_ih, dw_hh, db = dw_ih + dw_ih_t, dw_hh + dw_hh_t, db + db_t   # (LB7) summed over the steps
    return torch.stack(dxs), dh, dc, dw_ih, dw_hh, db


# ---------------------------------------------------------------------------------------------
# 3. The same equations, organised for speed (what ScratchLSTM runs)
# ---------------------------------------------------------------------------------------------
# lstm_forward / lstm_backward above call the cell T times, and each call makes new tensors. The
# functions below compute exactly the same numbers (the tests check it to 1e-12 in float64), reorganised:
# - the input half of every gate, W_ih x_t + b, for all T steps in one matrix product before the loop;
# - each step writes into buffers allocated once (in-place sigmoid_/tanh_ on views), no torch.cat;
# - backward fills the local derivatives of (LB3)+(LB5) for all steps at once, so the loop only
#   multiplies by dc_t / dh_t, and (LB7)'s weight gradients are one matrix product after the loop;
# - a mask lets finished sequences of a packed batch keep their state (THEORY.md §5), and `reverse`
#   runs the backward direction of a bidirectional layer (§6).
# The script's section 2 times both (forward + backward) on the same batch: README, "the fast path".
def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, mask=None, reverse=False):
    """x: (T, B, I), h0, c0: (B, H), mask: (T, B, 1) of 0/1 or None (all steps real).

    Returns out (T, B, H) (zero at padded steps), h_n, c_n (B, H), and what backward needs:
    gates (T, B, 4H) after their nonlinearities, C and Hs (T, B, H): the carried states after each step.
    """
    T, B, _ = x.shape
    H = h0.size(1)
    # (L1)-(L4) the input half of every gate for all T steps in one matmul: (T*B, I) @ (I, 4H).
    if b_ih is not None:
        gates = torch.addmm(b_ih + b_hh, x.reshape(T * B, -1), w_ih.t())
    else:
        gates = x.reshape(T * B, -1) @ w_ih.t()
    gates = gates.view(T, B, 4 * H)
    C, Hs = x.new_empty(T, B, H), x.new_empty(T, B, H)
    tanh_c = x.new_empty(B, H)
    w_hh_t = w_hh.t()
    # Per-step views into the buffers, made once: gates_t[t] is (B, 4H); i_t[t] etc. are (B, H).
    gates_t, if_t, g_t, o_t = (gates.unbind(0), gates[..., :2 * H].unbind(0),
                               gates[..., 2 * H:3 * H].unbind(0), gates[..., 3 * H:].unbind(0))
    i_t, f_t = gates[..., :H].unbind(0), gates[..., H:2 * H].unbind(0)
    C_t, H_t = C.unbind(0), Hs.unbind(0)
    if mask is not None:
        real = (mask > 0).unbind(0)                 # (B, 1) bool per step
        c_new, h_new = x.new_empty(B, H), x.new_empty(B, H)

    h, c = h0, c0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        gates_t[t].addmm_(h, w_hh_t)                # + W_hh h_{t-1}: pre-activations (B, 4H)
        if_t[t].sigmoid_()                          # (L1) i, (L2) f
        g_t[t].tanh_()                              # (L3) g
        o_t[t].sigmoid_()                           # (L4) o
        if mask is None:
            torch.mul(f_t[t], c, out=C_t[t])
            C_t[t].addcmul_(i_t[t], g_t[t])         # (L5) c_t = f*c + i*g
            torch.tanh(C_t[t], out=tanh_c)
            torch.mul(o_t[t], tanh_c, out=H_t[t])   # (L6) h_t = o*tanh(c_t)
        else:
            torch.mul(f_t[t], c, out=c_new)
            c_new.addcmul_(i_t[t], g_t[t])          # (L5)
            torch.mul(o_t[t], torch.tanh(c_new), out=h_new)   # (L6)
            # Finished sequences keep their state: h_t = h_{t-1}, c_t = c_{t-1} where t >= length.
            torch.where(real[t], c_new, c, out=C_t[t])
            torch.where(real[t], h_new, h, out=H_t[t])
        h, c = H_t[t], C_t[t]
    out = Hs if mask is None else Hs * mask        # padded outputs are zero, as in torch
    return out, h.clone(), c.clone(), (gates, C, Hs)


def lstm_sequence_backward(d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, gates, C, Hs, mask=None,
                           reverse=False, need_dx=True):
    """BPTT through the whole sequence. d_out: (T, B, H), d_hn, d_cn: (B, H); the rest as saved by
    lstm_sequence_forward. Returns dx (T, B, I) | None, dh0, dc0 (B, H), dw_ih, dw_hh, db."""
    T, B, _ = x.shape
    H = h0.size(1)
    i, f, g, o = gates.split(H, dim=2)              # (T, B, H) each, after the nonlinearities
    C_prev = previous_states(C, c0, reverse)        # c_{t-1} for every step
    tanh_c = torch.tanh(C)                          # recomputed instead of saved (L6)
    # dA holds dL/d(pre-activation) per step. Fill it first with the local factors of (LB3)+(LB5);
    # the loop then only multiplies by dc_t (for i, f, g) or dh_t (for o).
    dA = torch.empty_like(gates)                    # (T, B, 4H)
    dA_i, dA_f, dA_g, dA_o = dA.split(H, dim=2)
    torch.mul(i, 1 - i, out=dA_i).mul_(g)           # di/da_i * dc-factor g
    torch.mul(f, 1 - f, out=dA_f).mul_(C_prev)      # df/da_f * c_{t-1}
    torch.mul(g, g, out=dA_g).neg_().add_(1).mul_(i)   # (1 - g^2) * i
    torch.mul(o, 1 - o, out=dA_o).mul_(tanh_c)      # do/da_o * tanh(c_t)
    K = o * (1 - tanh_c * tanh_c)                   # (LB2) dh_t -> dc_t factor
    dA_t, dA_ifg, dA_o_t = dA.unbind(0), dA[..., :3 * H].unflatten(2, (3, H)).unbind(0), dA_o.unbind(0)
    K_t, f_t, d_out_t = K.unbind(0), f.unbind(0), d_out.unbind(0)

    steps = list(range(T)) if reverse else list(range(T - 1, -1, -1))   # backward visits steps in this order
    if mask is None:
        dh, dc = d_hn + d_out_t[steps[0]], d_cn     # gradients w.r.t. h_t, c_t of the last step
        for k, t in enumerate(steps):
            dc = torch.addcmul(dc, dh, K_t[t])      # (LB2)
            dA_ifg[t].mul_(dc.unsqueeze(1))         # (LB3)+(LB5) da_i, da_f, da_g  (B, 3, H)
            dA_o_t[t].mul_(dh)                      # (LB1)+(LB5) da_o
            dc = dc * f_t[t]                        # (LB4) dc_{t-1}
            if k + 1 < T:                           # (LB6) dh_{t-1} = dA W_hh + dL/dout_{t-1}
                dh = torch.addmm(d_out_t[steps[k + 1]], dA_t[t], w_hh)
            else:
                dh = dA_t[t] @ w_hh
    else:
        keep = (1 - mask).unbind(0)                 # 1 where the step is padding (state carried)
        mask_t = mask.unbind(0)
        dh_carry, dc = d_hn, d_cn
        for t in steps:
            # state_t = m*new + (1-m)*state_{t-1}, out_t = m*new: split each gradient accordingly.
            dh = (dh_carry + d_out_t[t]).mul_(mask_t[t])
            dc_new = torch.addcmul(dc, dh, K_t[t]).mul_(mask_t[t])   # (LB2), real steps only
            dA_ifg[t].mul_(dc_new.unsqueeze(1))     # (LB3)+(LB5)
            dA_o_t[t].mul_(dh)
            dc = torch.addcmul(dc * keep[t], dc_new, f_t[t])        # (LB4) + carried part
            dh_carry = torch.addmm(dh_carry * keep[t], dA_t[t], w_hh)   # (LB6) + carried part
        dh = dh_carry

    # (LB7) weight gradients of all steps in one matmul each: (4H, T*B) @ (T*B, I or H).
    dA_flat = dA.view(T * B, 4 * H)
    H_prev = previous_states(Hs, h0, reverse)
    dw_ih = dA_flat.t() @ x.reshape(T * B, -1)
    dw_hh = dA_flat.t() @ H_prev.reshape(T * B, H)
    db = dA_flat.sum(0)
    dx = (dA_flat @ w_ih).view(T, B, -1) if need_dx else None   # (LB6) for the layer below
    return dx, dh, dc, dw_ih, dw_hh, db


class LSTMLayerFunction(torch.autograd.Function):
    """One layer, one direction: forward = lstm_sequence_forward, backward = the hand-written BPTT."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, reverse):
        x = x.contiguous()
        out, h_n, c_n, (gates, C, Hs) = lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask,
                                                              reverse)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, gates, C, Hs, mask)
        ctx.reverse, ctx.has_bias = reverse, b_ih is not None
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        x, h0, c0, w_ih, w_hh, gates, C, Hs, mask = ctx.saved_tensors
        dx, dh0, dc0, dw_ih, dw_hh, db = lstm_sequence_backward(
            d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, gates, C, Hs, mask, ctx.reverse,
            need_dx=ctx.needs_input_grad[0])
        db_ih, db_hh = (db, db.clone()) if ctx.has_bias else (None, None)
        return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, None, None


# ---------------------------------------------------------------------------------------------
# 4. The layer: a drop-in for torch.nn.LSTM
# ---------------------------------------------------------------------------------------------
class ScratchLSTM(ScratchRNNBase):
    """torch.nn.LSTM's constructor, parameters, init, inputs and outputs; hand-written forward/backward.

    input (T, B, I) | (B, T, I) if batch_first | (T, I) | PackedSequence, hx = (h_0, c_0) each (L*D, B, H)
    -> output (T, B, D*H) | PackedSequence, (h_n, c_n) each (L*D, B, H).
    """
    MODE, GATES, NUM_STATES = "LSTM", 4, 2

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)

    def _layer_forward(self, x, state, weights, mask, reverse):
        out, h_n, c_n = LSTMLayerFunction.apply(x, state[0], state[1], *weights, mask, reverse)
        return out, (h_n, c_n)


def init_forget_bias(module, value=1.0):
    """Forget-gate bias := value in bias_ih and 0 in bias_hh, for nn.LSTM and ScratchLSTM alike.

    Why (Jozefowicz et al. 2015, THEORY.md 4.4): with the default init f_t = sigmoid(~0) = 0.5, so the
    cell keeps only half of c_{t-1} per step and dc shrinks like 0.5^k (LB4). With bias 1, f_t starts
    near sigmoid(1) = 0.73 and gradients reach much further back before the model learns to forget.
    Only the sum b_ih + b_hh matters, so bias_hh's forget slice is zeroed. Gate order i,f,g,o: slice [H:2H].
    """
    H = module.hidden_size
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("bias_ih"):
                p[H:2 * H].fill_(value)
            elif name.startswith("bias_hh"):
                p[H:2 * H].zero_()
    return module


def check_against_torch(device="cpu", dtype=torch.float64):
    """Fast check (well under a second): ScratchLSTM vs torch.nn.LSTM on a packed, unsorted,
    variable-length batch through a bidirectional 2-layer stack; outputs, states and all gradients.
    Returns the max relative error; raises AssertionError if it is above tolerance."""
    return check_against_torch_impl(ScratchLSTM, nn.LSTM, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# 5. The story the script tells
# ---------------------------------------------------------------------------------------------
def show_one_step(device):
    """Build a cell and print one step's gates, with shapes."""
    torch.manual_seed(SEED)
    cell = ScratchLSTM(INPUT_SIZE, HIDDEN_SIZE, device=device)
    x = torch.randn(2, INPUT_SIZE, device=device)                  # a batch of 2 inputs x_t: (B, I)
    h = torch.zeros(2, HIDDEN_SIZE, device=device)
    c = torch.zeros(2, HIDDEN_SIZE, device=device)
    w = [p.detach() for p in (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)]
    h1, c1, cache = lstm_cell_forward(x, h, c, *w)
    print(f"x_t {tuple(x.shape)}   h_(t-1), c_(t-1) {tuple(h.shape)}   W_ih {tuple(w[0].shape)}   "
          f"W_hh {tuple(w[1].shape)}   b {tuple(w[2].shape)}  (4H rows: i, f, g, o)")
    fmt = lambda v: " ".join(f"{a:+.3f}" for a in v[0].tolist())
    for name, value, eq in (("i", cache[5], "L1"), ("f", cache[6], "L2"), ("g", cache[7], "L3"),
                            ("o", cache[8], "L4"), ("c_t", c1, "L5"), ("h_t", h1, "L6")):
        print(f"  ({eq}) {name:3s} {tuple(value.shape)}  sample 0: {fmt(value)}")
    # The one-step backward against autograd, as a first sanity check.
    leaves = [t.clone().requires_grad_(True) for t in (x, h, c, *w)]
    h_ref, c_ref, _ = lstm_cell_forward(*leaves)
    dh, dc = torch.randn_like(h1), torch.randn_like(c1)
    torch.autograd.backward((h_ref, c_ref), (dh, dc))
    mine = lstm_cell_backward(dh, dc, cache)
    ref = [leaves[k].grad for k in range(5)] + [leaves[5].grad]
    err = max(max_rel_error(a, b) for a, b in zip(mine, ref))
    print(f"one-step backward (LB1-LB7) vs autograd: max rel. error {err:.1e}")
    return err


def loop_vs_fast_path(device, T=100, B=32, I=32, H=64, reps=5):
    """Section 2 of the script: the plain loop (lstm_forward / lstm_backward) against torch.nn.LSTM and
    against the fast path (lstm_sequence_forward / _backward): the same numbers, then the time of one
    forward + backward each way (median of `reps` interleaved runs, float32). Uses its own random
    generator and leaves the global one untouched (the training in section 5 starts from the same state)."""
    gen = torch.Generator().manual_seed(SEED)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).to(float64_device(device))
    x, h0, c0 = rand(T, B, I), rand(B, H), rand(B, H)        # inputs and initial states
    d_out, d_hn, d_cn = rand(T, B, H), rand(B, H), rand(B, H)   # gradients arriving from a loss
    w = [rand(4 * H, I) * 0.2, rand(4 * H, H) * 0.2, rand(4 * H) * 0.2, rand(4 * H) * 0.2]
    out, h_n, c_n, caches = lstm_forward(x, h0, c0, *w)
    loop_grads = lstm_backward(d_out, d_hn, d_cn, caches)
    # torch.nn.LSTM with the same weights, and autograd for the gradients
    with torch.random.fork_rng(devices=[]):
        ref = nn.LSTM(I, H, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for p, v in zip((ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0), w):
            p.copy_(v)
    leaves = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
    ref_out, (ref_h, ref_c) = ref(leaves[0], (leaves[1][None], leaves[2][None]))
    torch.autograd.backward((ref_out, ref_h[0], ref_c[0]), (d_out, d_hn, d_cn))
    ref_grads = [leaves[0].grad, leaves[1].grad, leaves[2].grad, ref.weight_ih_l0.grad, ref.weight_hh_l0.grad,
                 ref.bias_ih_l0.grad]
    vs_torch = max(max_rel_error(a, b) for a, b in zip((out, h_n, c_n, *loop_grads),
                                                      (ref_out, ref_h[0], ref_c[0], *ref_grads)))
    f_out, f_h, f_c, saved = lstm_sequence_forward(x, h0, c0, *w)
    fast_grads = lstm_sequence_backward(d_out, d_hn, d_cn, x, h0, c0, w[0], w[1], *saved)
    vs_fast = max(max_rel_error(a, b) for a, b in zip((out, h_n, c_n, *loop_grads),
                                                     (f_out, f_h, f_c, *fast_grads)))
    print(f"lstm_forward / lstm_backward (a loop over the cell of 1.), T={T}, B={B}, I={I}, H={H}, float64:")
    print(f"  vs torch.nn.LSTM + autograd: max rel. error {vs_torch:.1e}   vs the fast path of section 3 of "
          f"the file: {vs_fast:.1e}")

    x32, h32, c32, d32 = (t.float().to(device) for t in (x, h0, c0, d_out))
    w32 = [t.float().to(device) for t in w]
    zero = torch.zeros_like(h32)

    def plain():
        o, _, _, cs = lstm_forward(x32, h32, c32, *w32)
        lstm_backward(d32, zero, zero, cs)

    def fast():
        o, _, _, sv = lstm_sequence_forward(x32, h32, c32, *w32)
        lstm_sequence_backward(d32, zero, zero, x32, h32, c32, w32[0], w32[1], *sv)

    med = median_ms({"plain": plain, "fast": fast}, device, reps)
    speedup = med["plain"] / med["fast"]
    print(f"  one forward + backward, float32 on {device.type}: plain loop {med['plain']:.1f} ms, fast path "
          f"{med['fast']:.1f} ms -> {speedup:.1f}x (median of {reps}; the same equations, reorganised)")
    return {"loop_vs_torch_max_error": vs_torch, "loop_vs_fast_max_error": vs_fast,
            "plain_loop_ms": med["plain"], "fast_path_ms": med["fast"], "fast_path_speedup": speedup}


def compare_configurations(device):
    """ScratchLSTM vs torch.nn.LSTM with copied weights across several configurations."""
    configs = [dict(),
               dict(num_layers=2, bidirectional=True),
               dict(batch_first=True, with_hx=False),
               dict(packed=True, num_layers=2, bidirectional=True),
               dict(num_layers=3, bias=False, batch=1, seq_len=1)]
    rows = []
    for dtype in (torch.float64, torch.float32):
        where = float64_device(device) if dtype == torch.float64 else device   # MPS: float64 on the CPU
        for cfg in configs:
            errors = compare_with_torch(ScratchLSTM, nn.LSTM, input_size=INPUT_SIZE, hidden_size=HIDDEN_SIZE,
                                        dtype=dtype, device=where, seed=SEED, **cfg)
            label = ", ".join(f"{k}={v}" for k, v in cfg.items()) or "defaults"
            rows.append({"dtype": str(dtype).replace("torch.", ""), "config": label,
                         **{k: f"{v:.1e}" for k, v in errors.items()}, "_max": max(errors.values())})
    print_table([{k: v for k, v in r.items() if k != "_max"} for r in rows],
                title="max relative error, ScratchLSTM vs torch.nn.LSTM (outputs, states, gradients)")
    worst = {d: max(r["_max"] for r in rows if r["dtype"] == d) for d in ("float64", "float32")}
    if worst["float64"] > 1e-10 or worst["float32"] > 1e-4:
        raise AssertionError(f"ScratchLSTM disagrees with torch.nn.LSTM: {worst}")
    return worst


def train_both(device, progress):
    """Train ScratchLSTM and nn.LSTM side by side from the same init on a sine next-value task."""
    x, y = make_sine_task(NUM_SERIES + NUM_SERIES // 5, SEQ_LEN, seed=SEED)
    x_train, y_train, x_val, y_val = x[:NUM_SERIES], y[:NUM_SERIES], x[NUM_SERIES:], y[NUM_SERIES:]
    print(f"sine task: x_train {tuple(x_train.shape)} (N, T, 1) -> y {tuple(y_train.shape)} next value")
    scratch = ScratchLSTM(1, TRAIN_HIDDEN, batch_first=True, device=device)
    ref = nn.LSTM(1, TRAIN_HIDDEN, batch_first=True, device=device)
    if FORGET_BIAS:
        init_forget_bias(ref, FORGET_BIAS)
    t0 = time.time()
    history = train_side_by_side(scratch, ref, x_train, y_train, x_val, y_val, epochs=EPOCHS,
                                 batch_size=BATCH_SIZE, lr=LR, seed=SEED, progress=progress)
    print(f"trained both in {time.time() - t0:.1f}s")
    return history


def main():
    cfg = parse_config(globals())
    t0 = time.time()
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])

    print("\n== 1. One LSTM step from the equations (THEORY.md L1-L6) ==")
    step_err = show_one_step(device)
    if float64_device(device) != device:
        print(f"(the float64 rows of 3. and the gradcheck of 4. run on the CPU: {device.type} has no "
              f"float64; the float32 rows and the training of 5. run on {device.type})")
    print("\n== 2. A whole sequence as a loop over that step (lstm_forward / lstm_backward) ==")
    loop = loop_vs_fast_path(device)
    print("\n== 3. Whole sequences vs torch.nn.LSTM: outputs, final states and every gradient ==")
    worst = compare_configurations(device)
    print("\n== 4. torch.autograd.gradcheck (float64, finite differences vs our BPTT) ==")
    ok = gradcheck_layer(ScratchLSTM, packed=True, device=float64_device(device))
    print(f"gradcheck on a packed, bidirectional 2-layer ScratchLSTM: {'passed' if ok else 'FAILED'}")
    print("\n== 5. Training ScratchLSTM and torch.nn.LSTM side by side (same init, same batches) ==")
    # progress.jsonl, live training_curves.png and TensorBoard; Ctrl-C says what is kept
    with ProgressLog(out, hparams=cfg, logy=True,
                     title="手写 ScratchLSTM 对 torch.nn.LSTM\nScratchLSTM vs torch.nn.LSTM") as progress:
        history = train_both(device, progress)
    gap = max(abs(r["scratch_train_loss"] - r["torch_train_loss"]) for r in history)
    print(f"largest |loss gap| between the two curves: {gap:.2e} (float32 rounding only)")

    plot_path = plot_curves({"手写，训练 / scratch train": [r["scratch_train_loss"] for r in history],
                             "torch，训练 / torch train": [r["torch_train_loss"] for r in history],
                             "手写，验证 / scratch val": [r["scratch_val_loss"] for r in history],
                             "torch，验证 / torch val": [r["torch_val_loss"] for r in history]},
                            out / "loss_curves.png", xlabel="轮次 / epoch", ylabel="均方误差 / MSE",
                            logy=True,
                            title="手写 ScratchLSTM 对 torch.nn.LSTM：两条曲线重合\n"
                                  "ScratchLSTM vs torch.nn.LSTM: the curves coincide")
    metrics = {"one_step_backward_error": step_err, "max_error_float64": worst["float64"],
               "max_error_float32": worst["float32"], "gradcheck": bool(ok),
               "final_val_loss_scratch": history[-1]["scratch_val_loss"],
               "final_val_loss_torch": history[-1]["torch_val_loss"], "max_loss_gap": gap, **loop}
    save_metrics(out, config=cfg, metrics=metrics, history=history, start_time=t0, device=device)
    print(f"\nwrote {plot_path} and {out / 'metrics.json'}")


if __name__ == "__main__":
    run_main(main)

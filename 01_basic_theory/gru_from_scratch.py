"""GRU from the equations: forward and backward (BPTT) by hand, proven equal to torch.nn.GRU.

Run:  python 01_basic_theory/gru_from_scratch.py [--quick] [--NAME=VALUE ...]   (--help lists them)
Read: THEORY.md sections 3 (equations G1-G4, and how Cho et al. 2014 differs), 4 (backward GB1-GB7).
Import: `ScratchGRU` is a drop-in for torch.nn.GRU (utils.model_utils loads it for IMPL="scratch").

这个脚本照着 THEORY.md 的公式 (G1)-(G4) 亲手写出 GRU 的前向传播和反向传播，并验证它与 torch.nn.GRU
完全一致。最好和 LSTM 版对照着读：GRU 只有重置门和更新门两个门，没有单独的细胞状态，一个更新门就
做了 LSTM 遗忘门加输入门的事。留意重置门作用在矩阵乘法之后 (G3)：这是 torch 的写法，与 Cho et al.
2014 的原文不同。
运行：`python 01_basic_theory/gru_from_scratch.py`，几秒钟就能跑完；`--help` 列出可以改的常量。
对应的理论：THEORY.md 第 3 节（公式 G1-G4；3.1 节讲与原文的区别）、第 4 节（反向传播 GB1-GB7）。
`ScratchGRU` 与 torch.nn.GRU 接口相同，可以直接替换；02-05 的案例加 `--IMPL=scratch` 就用它训练。
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

QUICK_SETTINGS = dict(NUM_SERIES=128, SEQ_LEN=15, EPOCHS=2, TRAIN_HIDDEN=16)


# ---------------------------------------------------------------------------------------------
# 1. One cell step, written from the equations (readable reference, no autograd)
# ---------------------------------------------------------------------------------------------
def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step. x: (B, I), h: (B, H), w_ih: (3H, I), w_hh: (3H, H), b_*: (3H,) or None.

    Returns h_new (B, H) and a cache for gru_cell_backward.
    """
    gi = x @ w_ih.t()                               # input part (B, 3H), gate order r, z, n
    gh = h @ w_hh.t()                               # hidden part (B, 3H)
    if b_ih is not None:
        gi, gh = gi + b_ih, gh + b_hh
    gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
    gh_r, gh_z, gh_n = gh.chunk(3, dim=1)           # gh_n = W_hn h + b_hn, kept for (G3)
    r = torch.sigmoid(gi_r + gh_r)                  # (G1) 重置门 reset gate
    z = torch.sigmoid(gi_z + gh_z)                  # (G2) 更新门 update gate
    n = torch.tanh(gi_n + r * gh_n)                 # (G3) 候选值 candidate: r gates W_hn h + b_hn
    h_new = (1 - z) * n + z * h                     # (G4) 新的隐藏状态 new hidden state: z keeps the old one
    return h_new, (x, h, w_ih, w_hh, r, z, n, gh_n)


def gru_cell_backward(dh_new, cache):
    """Backward of one step. dh_new: (B, H) gradient w.r.t. h_t (from later steps).

    Returns dx (B, I), dh (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih (3H,), db_hh (3H,).
    """
    x, h, w_ih, w_hh, r, z, n, gh_n = cache
    dn = dh_new * (1 - z)                           # (GB1) from (G4)
    dz = dh_new * (h - n)                           # (GB1)
    da_n = dn * (1 - n ** 2)                        # (GB2) through tanh (G3)
    dr = da_n * gh_n                                # (GB3)
    da_r, da_z = dr * r * (1 - r), dz * z * (1 - z)   # (GB4) through sigmoid (G1), (G2)
    d_gi = torch.cat([da_r, da_z, da_n], dim=1)     # (GB5) dL/d(W_i x + b_i): (B, 3H)
    d_gh = torch.cat([da_r, da_z, da_n * r], dim=1) # (GB5) dL/d(W_h h + b_h): r multiplies the n part
    dx = d_gi @ w_ih                                # (GB6)
    dh_prev = dh_new * z + d_gh @ w_hh              # (GB6) direct path (G4) + through the gates
    return dx, dh_prev, d_gi.t() @ x, d_gh.t() @ h, d_gi.sum(0), d_gh.sum(0)   # (GB7)


# ---------------------------------------------------------------------------------------------
# 2. A whole sequence, the plain way: a loop over the cell above (read this first)
# ---------------------------------------------------------------------------------------------
def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """The forward pass over a sequence: gru_cell_forward at t = 0, 1, ..., T-1 (THEORY.md §3).

    x: (T, B, I), h0: (B, H)  ->  out (T, B, H): h_t of every step; h_n (B, H): the state after the last
    step; caches: the T step caches, for gru_backward.
    """
    h, outs, caches = h0, [], []
    for t in range(x.shape[0]):
        h, cache = gru_cell_forward(x[t], h, w_ih, w_hh, b_ih, b_hh)   # (G1)-(G4), one step
        outs.append(h)                              # out_t = h_t
        caches.append(cache)
    return torch.stack(outs), h, caches


def gru_backward(d_out, d_hn, caches):
    """BPTT over a sequence: gru_cell_backward at t = T-1, ..., 1, 0 (THEORY.md §4.2).

    d_out: (T, B, H) = dL/d out_t; d_hn: (B, H) = dL/d h_T (the final state).
    Returns dx (T, B, I), dh0 (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih, db_hh (3H,).
    """
    dh = d_hn                                       # what arrives from after the last step (§4)
    dxs = [None] * len(caches)
    dw_ih = dw_hh = db_ih = db_hh = 0.0
    for t in reversed(range(len(caches))):
        dh = dh + d_out[t]                          # h_t feeds its own output and step t+1
        dxs[t], dh, dw_ih_t, dw_hh_t, db_ih_t, db_hh_t = gru_cell_backward(dh, caches[t])   # dh -> t-1
        dw_ih, dw_hh = dw_ih + dw_ih_t, dw_hh + dw_hh_t   # (GB7) summed over the steps
        db_ih, db_hh = db_ih + db_ih_t, db_hh + db_hh_t
    return torch.stack(dxs), dh, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# 3. The same equations, organised for speed (what ScratchGRU runs)
# ---------------------------------------------------------------------------------------------
# gru_forward / gru_backward above call the cell T times, and each call makes new tensors. The functions
# below compute exactly the same numbers (the tests check it to 1e-12 in float64), reorganised:
# - the input half of every gate, W_ih x_t + b, for all T steps in one matrix product before the loop
#   (b_hr and b_hz join it; b_hn stays inside r * (W_hn h + b_hn), (G3));
# - each step writes into buffers allocated once (in-place sigmoid_/tanh_, torch.lerp for (G4));
# - backward fills the local derivatives of (GB1)-(GB5) for all steps at once, so the loop only
#   multiplies by dh_t, and (GB7)'s weight gradients are one matrix product after the loop;
# - a mask lets finished sequences of a packed batch keep their state (THEORY.md §5), and `reverse`
#   runs the backward direction of a bidirectional layer (§6).
# The script's section 2 times both (forward + backward) on the same batch: README, "the fast path".
def gru_sequence_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, mask=None, reverse=False):
    """x: (T, B, I), h0: (B, H), mask: (T, B, 1) of 0/1 or None (all steps real).

    Returns out (T, B, H) (zero at padded steps), h_n (B, H), and what backward needs:
    gates (T, B, 3H) = r, z, n after their nonlinearities, HN (T, B, H) = W_hn h_{t-1} + b_hn,
    Hs (T, B, H): the carried state after each step.
    """
    T, B, _ = x.shape
    H = h0.size(1)
    # The input half of every gate for all T steps in one matmul: (T*B, I) @ (I, 3H).
    # b_hr and b_hz simply add, so they join here; b_hn must stay inside r * (W_hn h + b_hn) (G3).
    gates = x.reshape(T * B, -1) @ w_ih.t()
    b_hn = None
    if b_ih is not None:
        gates += b_ih
        gates[:, :2 * H] += b_hh[:2 * H]
        b_hn = b_hh[2 * H:]
    gates = gates.view(T, B, 3 * H)
    HN, Hs = x.new_empty(T, B, H), x.new_empty(T, B, H)
    w_hrz_t, w_hn_t = w_hh[:2 * H].t(), w_hh[2 * H:].t()
    rz_t, r_t, z_t, n_t = (gates[..., :2 * H].unbind(0), gates[..., :H].unbind(0),
                           gates[..., H:2 * H].unbind(0), gates[..., 2 * H:].unbind(0))
    HN_t, H_t = HN.unbind(0), Hs.unbind(0)
    if mask is not None:
        real = (mask > 0).unbind(0)                 # (B, 1) bool per step
        h_new = x.new_empty(B, H)

    h = h0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        rz_t[t].addmm_(h, w_hrz_t).sigmoid_()       # (G1) r, (G2) z: (B, 2H)
        if b_hn is not None:
            torch.addmm(b_hn, h, w_hn_t, out=HN_t[t])   # W_hn h + b_hn: (B, H)
        else:
            torch.mm(h, w_hn_t, out=HN_t[t])
        n_t[t].addcmul_(r_t[t], HN_t[t]).tanh_()    # (G3) n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
        if mask is None:
            torch.lerp(n_t[t], h, z_t[t], out=H_t[t])   # (G4) h_t = n + z*(h - n) = (1-z)*n + z*h
        else:
            torch.lerp(n_t[t], h, z_t[t], out=h_new)    # (G4)
            torch.where(real[t], h_new, h, out=H_t[t])  # finished sequences keep h_{t-1}
        h = H_t[t]
    out = Hs if mask is None else Hs * mask        # padded outputs are zero, as in torch
    return out, h.clone(), (gates, HN, Hs)


def gru_sequence_backward(d_out, d_hn, x, h0, w_ih, w_hh, gates, HN, Hs, mask=None, reverse=False,
                          need_dx=True):
    """BPTT through the whole sequence. d_out: (T, B, H), d_hn: (B, H); the rest as saved by
    gru_sequence_forward. Returns dx (T, B, I) | None, dh0 (B, H), dw_ih, dw_hh, db_ih, db_hh."""
    T, B, _ = x.shape
    H = h0.size(1)
    r, z, n = gates.split(H, dim=2)                 # (T, B, H) each
    H_prev = previous_states(Hs, h0, reverse)       # h_{t-1} for every step
    # dGh holds dL/d(W_h h + b_h) per step. Fill it first with the local factors of (GB1)-(GB5);
    # the loop then only multiplies by dh_t.
    Pn = (1 - z) * (1 - n * n)                      # dh -> da_n        (GB1)+(GB2)
    dGh = torch.empty_like(gates)                   # (T, B, 3H)
    dGh_r, dGh_z, dGh_n = dGh.split(H, dim=2)
    torch.mul(r, 1 - r, out=dGh_r).mul_(HN).mul_(Pn)   # dh -> da_r   (GB3)+(GB4)
    torch.mul(z, 1 - z, out=dGh_z).mul_(H_prev - n)    # dh -> da_z   (GB1)+(GB4)
    torch.mul(Pn, r, out=dGh_n)                        # dh -> d(W_hn h + b_hn)  (GB5)
    DH = torch.empty_like(Hs)                       # dL/dh_t (the part that enters step t's cell)
    dGh_t, dGh_3, z_t, DH_t, d_out_t = (dGh.unbind(0), dGh.unflatten(2, (3, H)).unbind(0), z.unbind(0),
                                        DH.unbind(0), d_out.unbind(0))

    steps = list(range(T)) if reverse else list(range(T - 1, -1, -1))   # backward visits steps in this order
    if mask is None:
        torch.add(d_hn, d_out_t[steps[0]], out=DH_t[steps[0]])
        for k, t in enumerate(steps):
            dGh_3[t].mul_(DH_t[t].unsqueeze(1))     # (GB5) for r, z, n at once: (B, 3, H)
            if k + 1 < T:                           # (GB6) dh_{t-1} = dh*z + dGh W_hh + dL/dout_{t-1}
                prev = steps[k + 1]
                torch.addcmul(d_out_t[prev], DH_t[t], z_t[t], out=DH_t[prev]).addmm_(dGh_t[t], w_hh)
            else:
                dh0 = torch.addmm(DH_t[t] * z_t[t], dGh_t[t], w_hh)
    else:
        keep, mask_t = (1 - mask).unbind(0), mask.unbind(0)
        dh_carry = d_hn
        for t in steps:
            # h_t = m*new + (1-m)*h_{t-1}, out_t = m*new: split the gradient accordingly.
            torch.add(dh_carry, d_out_t[t], out=DH_t[t]).mul_(mask_t[t])
            dGh_3[t].mul_(DH_t[t].unsqueeze(1))     # (GB5)
            dh_carry = torch.addcmul(dh_carry * keep[t], DH_t[t], z_t[t]).addmm_(dGh_t[t], w_hh)   # (GB6)
        dh0 = dh_carry

    # The input side equals dGh except for n, where r does not multiply (GB5): dGi_n = dh * Pn.
    dGi = torch.empty_like(gates)
    dGi[..., :2 * H] = dGh[..., :2 * H]
    torch.mul(DH, Pn, out=dGi[..., 2 * H:])
    # (GB7) weight gradients of all steps in one matmul each: (3H, T*B) @ (T*B, I or H).
    dGi_flat, dGh_flat = dGi.view(T * B, 3 * H), dGh.view(T * B, 3 * H)
    dw_ih = dGi_flat.t() @ x.reshape(T * B, -1)
    dw_hh = dGh_flat.t() @ H_prev.reshape(T * B, H)
    dx = (dGi_flat @ w_ih).view(T, B, -1) if need_dx else None   # (GB6) for the layer below
    return dx, dh0, dw_ih, dw_hh, dGi_flat.sum(0), dGh_flat.sum(0)


class GRULayerFunction(torch.autograd.Function):
    """One layer, one direction: forward = gru_sequence_forward, backward = the hand-written BPTT."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, mask, reverse):
        x = x.contiguous()
        out, h_n, (gates, HN, Hs) = gru_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, mask, reverse)
        ctx.save_for_backward(x, h0, w_ih, w_hh, gates, HN, Hs, mask)
        ctx.reverse, ctx.has_bias = reverse, b_ih is not None
        return out, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        x, h0, w_ih, w_hh, gates, HN, Hs, mask = ctx.saved_tensors
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_sequence_backward(
            d_out, d_hn, x, h0, w_ih, w_hh, gates, HN, Hs, mask, ctx.reverse,
            need_dx=ctx.needs_input_grad[0])
        if not ctx.has_bias:
            db_ih = db_hh = None
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None


# ---------------------------------------------------------------------------------------------
# 4. The layer: a drop-in for torch.nn.GRU
# ---------------------------------------------------------------------------------------------
class ScratchGRU(ScratchRNNBase):
    """torch.nn.GRU's constructor, parameters, init, inputs and outputs; hand-written forward/backward.

    input (T, B, I) | (B, T, I) if batch_first | (T, I) | PackedSequence, hx (L*D, B, H)
    -> output (T, B, D*H) | PackedSequence, h_n (L*D, B, H).
    """
    MODE, GATES, NUM_STATES = "GRU", 3, 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)

    def _layer_forward(self, x, state, weights, mask, reverse):
        out, h_n = GRULayerFunction.apply(x, state[0], *weights, mask, reverse)
        return out, (h_n,)


def check_against_torch(device="cpu", dtype=torch.float64):
    """Fast check (well under a second): ScratchGRU vs torch.nn.GRU on a packed, unsorted,
    variable-length batch through a bidirectional 2-layer stack; outputs, state and all gradients.
    Returns the max relative error; raises AssertionError if it is above tolerance."""
    return check_against_torch_impl(ScratchGRU, nn.GRU, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# 5. The story the script tells
# ---------------------------------------------------------------------------------------------
def show_one_step(device):
    """Build a cell and print one step's gates, with shapes."""
    torch.manual_seed(SEED)
    cell = ScratchGRU(INPUT_SIZE, HIDDEN_SIZE, device=device)
    x = torch.randn(2, INPUT_SIZE, device=device)                  # a batch of 2 inputs x_t: (B, I)
    h = torch.randn(2, HIDDEN_SIZE, device=device)
    w = [p.detach() for p in (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)]
    h1, cache = gru_cell_forward(x, h, *w)
    print(f"x_t {tuple(x.shape)}   h_(t-1) {tuple(h.shape)}   W_ih {tuple(w[0].shape)}   "
          f"W_hh {tuple(w[1].shape)}   b {tuple(w[2].shape)}  (3H rows: r, z, n)  -- no cell state")
    fmt = lambda v: " ".join(f"{a:+.3f}" for a in v[0].tolist())
    for name, value, eq in (("r", cache[4], "G1"), ("z", cache[5], "G2"), ("n", cache[6], "G3"),
                            ("h_t", h1, "G4")):
        print(f"  ({eq}) {name:3s} {tuple(value.shape)}  sample 0: {fmt(value)}")
    print("  z near 1 keeps h_(t-1); z near 0 replaces it with n (one gate does LSTM's forget+input work)")
    leaves = [t.clone().requires_grad_(True) for t in (x, h, *w)]
    h_ref, _ = gru_cell_forward(*leaves)
    dh = torch.randn_like(h1)
    h_ref.backward(dh)
    mine = gru_cell_backward(dh, cache)
    err = max(max_rel_error(a, l.grad) for a, l in zip(mine, leaves))
    print(f"one-step backward (GB1-GB7) vs autograd: max rel. error {err:.1e}")
    return err


def loop_vs_fast_path(device, T=100, B=32, I=32, H=64, reps=5):
    """Section 2 of the script: the plain loop (gru_forward / gru_backward) against torch.nn.GRU and against
    the fast path (gru_sequence_forward / _backward): the same numbers, then the time of one forward +
    backward each way (median of `reps` interleaved runs, float32). Uses its own random generator and
    leaves the global one untouched (the training in section 5 starts from the same state)."""
    gen = torch.Generator().manual_seed(SEED)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).to(float64_device(device))
    x, h0, d_out, d_hn = rand(T, B, I), rand(B, H), rand(T, B, H), rand(B, H)
    w = [rand(3 * H, I) * 0.2, rand(3 * H, H) * 0.2, rand(3 * H) * 0.2, rand(3 * H) * 0.2]
    out, h_n, caches = gru_forward(x, h0, *w)
    loop_grads = gru_backward(d_out, d_hn, caches)
    # torch.nn.GRU with the same weights, and autograd for the gradients
    with torch.random.fork_rng(devices=[]):
        ref = nn.GRU(I, H, dtype=torch.float64, device=x.device)
    params = (ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)
    with torch.no_grad():
        for p, v in zip(params, w):
            p.copy_(v)
    leaves = [t.clone().requires_grad_(True) for t in (x, h0)]
    ref_out, ref_h = ref(leaves[0], leaves[1][None])
    torch.autograd.backward((ref_out, ref_h[0]), (d_out, d_hn))
    ref_grads = [leaves[0].grad, leaves[1].grad] + [p.grad for p in params]
    vs_torch = max(max_rel_error(a, b) for a, b in zip((out, h_n, *loop_grads),
                                                      (ref_out, ref_h[0], *ref_grads)))
    f_out, f_h, saved = gru_sequence_forward(x, h0, *w)
    fast_grads = gru_sequence_backward(d_out, d_hn, x, h0, w[0], w[1], *saved)
    vs_fast = max(max_rel_error(a, b) for a, b in zip((out, h_n, *loop_grads), (f_out, f_h, *fast_grads)))
    print(f"gru_forward / gru_backward (a loop over the cell of 1.), T={T}, B={B}, I={I}, H={H}, float64:")
    print(f"  vs torch.nn.GRU + autograd: max rel. error {vs_torch:.1e}   vs the fast path of section 3 of "
          f"the file: {vs_fast:.1e}")

    x32, h32, d32 = (t.float().to(device) for t in (x, h0, d_out))
    w32 = [t.float().to(device) for t in w]
    zero = torch.zeros_like(h32)

    def plain():
        gru_backward(d32, zero, gru_forward(x32, h32, *w32)[2])

    def fast():
        saved = gru_sequence_forward(x32, h32, *w32)[2]
        gru_sequence_backward(d32, zero, x32, h32, w32[0], w32[1], *saved)

    med = median_ms({"plain": plain, "fast": fast}, device, reps)
    speedup = med["plain"] / med["fast"]
    print(f"  one forward + backward, float32 on {device.type}: plain loop {med['plain']:.1f} ms, fast path "
          f"{med['fast']:.1f} ms -> {speedup:.1f}x (median of {reps}; the same equations, reorganised)")
    return {"loop_vs_torch_max_error": vs_torch, "loop_vs_fast_max_error": vs_fast,
            "plain_loop_ms": med["plain"], "fast_path_ms": med["fast"], "fast_path_speedup": speedup}


def compare_configurations(device):
    """ScratchGRU vs torch.nn.GRU with copied weights across several configurations."""
    configs = [dict(),
               dict(num_layers=2, bidirectional=True),
               dict(batch_first=True, with_hx=False),
               dict(packed=True, num_layers=2, bidirectional=True),
               dict(num_layers=3, bias=False, batch=1, seq_len=1)]
    rows = []
    for dtype in (torch.float64, torch.float32):
        where = float64_device(device) if dtype == torch.float64 else device   # MPS: float64 on the CPU
        for cfg in configs:
            errors = compare_with_torch(ScratchGRU, nn.GRU, input_size=INPUT_SIZE, hidden_size=HIDDEN_SIZE,
                                        dtype=dtype, device=where, seed=SEED, **cfg)
            label = ", ".join(f"{k}={v}" for k, v in cfg.items()) or "defaults"
            rows.append({"dtype": str(dtype).replace("torch.", ""), "config": label,
                         **{k: f"{v:.1e}" for k, v in errors.items()}, "_max": max(errors.values())})
    print_table([{k: v for k, v in r.items() if k != "_max"} for r in rows],
                title="max relative error, ScratchGRU vs torch.nn.GRU (outputs, state, gradients)")
    worst = {d: max(r["_max"] for r in rows if r["dtype"] == d) for d in ("float64", "float32")}
    if worst["float64"] > 1e-10 or worst["float32"] > 1e-4:
        raise AssertionError(f"ScratchGRU disagrees with torch.nn.GRU: {worst}")
    return worst


def train_both(device, progress):
    """Train ScratchGRU and nn.GRU side by side from the same init on a sine next-value task."""
    x, y = make_sine_task(NUM_SERIES + NUM_SERIES // 5, SEQ_LEN, seed=SEED)
    x_train, y_train, x_val, y_val = x[:NUM_SERIES], y[:NUM_SERIES], x[NUM_SERIES:], y[NUM_SERIES:]
    print(f"sine task: x_train {tuple(x_train.shape)} (N, T, 1) -> y {tuple(y_train.shape)} next value")
    scratch = ScratchGRU(1, TRAIN_HIDDEN, batch_first=True, device=device)
    ref = nn.GRU(1, TRAIN_HIDDEN, batch_first=True, device=device)
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

    print("\n== 1. One GRU step from the equations (THEORY.md G1-G4) ==")
    step_err = show_one_step(device)
    if float64_device(device) != device:
        print(f"(the float64 rows of 3. and the gradcheck of 4. run on the CPU: {device.type} has no "
              f"float64; the float32 rows and the training of 5. run on {device.type})")
    print("\n== 2. A whole sequence as a loop over that step (gru_forward / gru_backward) ==")
    loop = loop_vs_fast_path(device)
    print("\n== 3. Whole sequences vs torch.nn.GRU: outputs, final state and every gradient ==")
    worst = compare_configurations(device)
    print("\n== 4. torch.autograd.gradcheck (float64, finite differences vs our BPTT) ==")
    ok = gradcheck_layer(ScratchGRU, packed=True, device=float64_device(device))
    print(f"gradcheck on a packed, bidirectional 2-layer ScratchGRU: {'passed' if ok else 'FAILED'}")
    print("\n== 5. Training ScratchGRU and torch.nn.GRU side by side (same init, same batches) ==")
    # progress.jsonl, live training_curves.png and TensorBoard; Ctrl-C says what is kept
    with ProgressLog(out, hparams=cfg, logy=True,
                     title="手写 ScratchGRU 对 torch.nn.GRU\nScratchGRU vs torch.nn.GRU") as progress:
        history = train_both(device, progress)
    gap = max(abs(r["scratch_train_loss"] - r["torch_train_loss"]) for r in history)
    print(f"largest |loss gap| between the two curves: {gap:.2e} (float32 rounding only)")

    plot_path = plot_curves({"手写，训练 / scratch train": [r["scratch_train_loss"] for r in history],
                             "torch，训练 / torch train": [r["torch_train_loss"] for r in history],
                             "手写，验证 / scratch val": [r["scratch_val_loss"] for r in history],
                             "torch，验证 / torch val": [r["torch_val_loss"] for r in history]},
                            out / "loss_curves.png", xlabel="轮次 / epoch", ylabel="均方误差 / MSE",
                            logy=True,
                            title="手写 ScratchGRU 对 torch.nn.GRU：两条曲线重合\n"
                                  "ScratchGRU vs torch.nn.GRU: the curves coincide")
    metrics = {"one_step_backward_error": step_err, "max_error_float64": worst["float64"],
               "max_error_float32": worst["float32"], "gradcheck": bool(ok),
               "final_val_loss_scratch": history[-1]["scratch_val_loss"],
               "final_val_loss_torch": history[-1]["torch_val_loss"], "max_loss_gap": gap, **loop}
    save_metrics(out, config=cfg, metrics=metrics, history=history, start_time=t0, device=device)
    print(f"\nwrote {plot_path} and {out / 'metrics.json'}")


if __name__ == "__main__":
    run_main(main)

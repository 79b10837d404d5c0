"""练习 3：整段序列上的 BPTT / Exercise 3: backpropagation through time over a whole sequence.

中文：把一步的 LSTM 单元串成一整段序列：前向时把每一步的 h、c 传给下一步；反向时从最后一步往回走，
把两样东西传回上一步：dh（来自 W_hh 的路径，再加上这一步输出自己的梯度）和 dc（加法路径 (LB4)）。
权重的梯度是每一步梯度之和 (LB7)。这就是 THEORY.md §4 开头的边界条件和 §4.1 的 (LB8)。
一步的前向与反向用 01 的 lstm_cell_forward / lstm_cell_backward（下面已经导入；
也可以换成你在 lstm_cell.py 里写的，这时检查程序会先把你的单元当作一步来检查）。
下标的方向：代码从 0 数起，反向的循环是 t = T-1, …, 0；THEORY.md 的 (LB8) 从 1 数起，写作 t = T, …, 1。
所以 (LB8) 里的第 t 步就是代码里的 t-1：x_t 是 x[t-1]，t 时刻的输出梯度是 d_out[t-1]。
检查：python 01_basic_theory/exercises/check.py --EXERCISE=bptt

English: chain the one-step LSTM cell over a sequence. Forward, hand each step's h and c to the next.
Backward, walk from the last step to the first and carry two things back: dh (through W_hh, plus the
gradient of that step's own output) and dc (the additive path, (LB4)). Weight gradients are sums over the
steps (LB7). That is the boundary condition at the top of THEORY.md §4 and the recursion (LB8) of §4.1.
The one-step cells are 01's (imported below; yours from lstm_cell.py work as well, and the grader then
grades your cell as one step first). The index direction: the code counts from 0 and its backward loop runs
t = T-1, ..., 0; THEORY.md's (LB8) counts from 1 and writes t = T, ..., 1, so (LB8)'s step t is the code's
t-1: x_t is x[t-1], and the output gradient at time t is d_out[t-1].
Grade it with: python 01_basic_theory/exercises/check.py --EXERCISE=bptt
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # 01_basic_theory

# 一步的前向与反向（换成 from lstm_cell import ... 就用你自己写的）
# one step, forward and backward (from lstm_cell import ... takes yours instead)
from lstm_from_scratch import lstm_cell_backward, lstm_cell_forward  # noqa: F401


def bptt_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """整段序列的前向 / The forward pass over a whole sequence: (L1)-(L6) at every step, THEORY.md §2.

    中文：对 t = 0 … T-1 逐步调用 lstm_cell_forward，上一步的 h、c 作为这一步的输入；
    保存每一步的 cache 供反向使用。

    English: call lstm_cell_forward for t = 0 ... T-1, each step reading the h, c the previous one produced;
    keep every step's cache for the backward.

    x: (T, B, I)      h0, c0: (B, H)      w_ih: (4H, I)      w_hh: (4H, H)      b_ih, b_hh: (4H,) or None
    Returns out (T, B, H): h_t of every step; h_n, c_n (B, H): the states after the last step;
    caches: anything bptt_backward needs (e.g. the list of the T step caches).
    """
    # TODO 对 t = 0 … T-1 循环：h, c, cache = lstm_cell_forward(x[t], h, c, ...)  (L1)–(L6)
    #      loop over t = 0 ... T-1: h, c, cache = lstm_cell_forward(x[t], h, c, ...)  (L1)-(L6)
    # TODO 收集 out[t] = h 和每一步的 cache
    #      collect out[t] = h and the caches
    raise NotImplementedError("bptt_forward：请逐步执行 (L1)–(L6) / run (L1)-(L6) step after step")


def bptt_backward(d_out, d_hn, d_cn, caches):
    """整段序列的反向 / BPTT over the whole sequence: (LB1)-(LB8), THEORY.md §4.1.

    中文：损失对每一步输出 out_t 的梯度 d_out[t]，以及对最终状态的梯度 d_hn、d_cn。从 t = T-1 往回到 0：
    这一步收到的 dh 是 d_out[t] 加上从后一步传回来的 dh；dc 从后一步传回来（最后一步是 d_cn）。
    这里的 t 从 0 数起；THEORY.md 的 (LB8) 从 1 数起（t = T, …, 1）：它的第 t 步是这里的 t-1，
    x_t 是 x[t-1]，t 时刻的输出梯度是 d_out[t-1]。没有偏置时 db 可以是 None（若返回张量，按偏置若存在会
    得到的梯度比较）。

    English: d_out[t] is the gradient of the loss w.r.t. the output out_t, d_hn and d_cn w.r.t. the final
    states. Walk t = T-1 down to 0: the dh that step t receives is d_out[t] plus the dh carried back from step
    t+1; dc is carried back too (d_cn at the last step). This t counts from 0; THEORY.md's (LB8) counts from
    1 (t = T, ..., 1): its step t is t-1 here, x_t is x[t-1] and the output gradient at time t is
    d_out[t-1]. Without biases db may be None (a tensor is checked as the gradient a bias would get).

    d_out: (T, B, H)      d_hn, d_cn: (B, H)      caches: what bptt_forward returned
    Returns dx (T, B, I), dh0 (B, H), dc0 (B, H): the gradients w.r.t. x, h0, c0;
    dw_ih (4H, I), dw_hh (4H, H), db (4H,): summed over all steps (and the batch).
    """
    # TODO t = T-1 处的边界条件：dh = d_hn + d_out[T-1]，dc = d_cn（§4）
    #      the boundary condition at t = T-1: dh = d_hn + d_out[T-1], dc = d_cn (§4)
    # TODO 从 t = T-1 往回走到 0：lstm_cell_backward(dh, dc, caches[t]) 给出 dx_t 和要交给第 t-1 步的 dh、dc
    #      walk t = T-1 ... 0: lstm_cell_backward(dh, dc, caches[t]) gives dx_t and what goes to step t-1
    # TODO (LB8) 第 t-1 步的 dh = 这一步传回的 dh + d_out[t-1]；dc 就是 (LB4) 传回的那个，也要带上。
    #      下标：这里从 0 数（t = T-1 … 0），(LB8) 从 1 数（t = T … 1），(LB8) 的 t 是这里的 t+1
    #      (LB8) the dh for step t-1: what the step sent back plus d_out[t-1]; carry the dc of (LB4) too.
    #      Index: here t = T-1 ... 0 (from 0), (LB8) writes t = T ... 1 (from 1): its t is the code's t+1
    # TODO (LB7) 把各步的 dw_ih、dw_hh、db 加起来
    #      (LB7) add up dw_ih, dw_hh, db over the steps
    raise NotImplementedError("bptt_backward：请写出递推 (LB8) / write the recursion (LB8)")

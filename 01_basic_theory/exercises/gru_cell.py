"""练习 2：GRU 的一步，前向与反向 / Exercise 2: one GRU step, forward and backward.

中文：照着 THEORY.md §3 的 (G1)–(G4) 写前向，照着 §4.2 的 (GB1)–(GB7) 写反向，只用张量运算。门的顺序与 torch
一致：r, z, n。注意 torch 把重置门 r 放在矩阵乘法之后：n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))（§3.1），
所以输入侧与隐藏侧的偏置梯度不相等（GB5）。检查：
    python 01_basic_theory/exercises/check.py --EXERCISE=gru
参考答案在 01_basic_theory/gru_from_scratch.py（先自己试）。

English: write the forward from (G1)-(G4) of THEORY.md §3 and the backward from (GB1)-(GB7) of §4.2, with
tensor operations only. The gate order is torch's: r, z, n. Mind where torch applies the reset gate: after
the matrix product, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) (§3.1), which is why the input-side and
hidden-side bias gradients differ (GB5). Grade it with:
    python 01_basic_theory/exercises/check.py --EXERCISE=gru
The reference is in 01_basic_theory/gru_from_scratch.py (try first).
"""


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """GRU 前向一步 / One GRU step forward: (G1)-(G4), THEORY.md §3.

    中文：输入侧 gi = x W_ih^T + b_ih 和隐藏侧 gh = h W_hh^T + b_hh 要分开算（都是 (B, 3H)，
    按 r, z, n 切块），因为 n 的隐藏侧部分要先乘以 r。没有偏置时 b_ih、b_hh 为 None。cache 由你决定。

    English: keep the input side gi = x W_ih^T + b_ih and the hidden side gh = h W_hh^T + b_hh apart (each
    (B, 3H), split r, z, n): the hidden part of n is multiplied by r first. Without biases b_ih,
    b_hh are None. The cache is yours: whatever your backward will read.

    x: (B, I)        h: (B, H)
    w_ih: (3H, I)    w_hh: (3H, H)    b_ih, b_hh: (3H,) or None
    Returns h_new (B, H), cache.
    """
    # TODO gi = x W_ih^T + b_ih，gh = h W_hh^T + b_hh，各为 (B, 3H)，按 r, z, n 切块
    #      gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, each (B, 3H), split into r, z, n parts
    # TODO (G1) 重置门 r
    #      (G1) reset gate r
    # TODO (G2) 更新门 z
    #      (G2) update gate z
    # TODO (G3) 候选值 n：r 乘在隐藏一侧 (W_hn h + b_hn) 上；这一部分存进 cache，反向要用
    #      (G3) candidate n: r multiplies the hidden part (W_hn h + b_hn), keep that part for the backward
    # TODO (G4) h_new：z 是保留旧状态 h 的比例，不是写入候选值 n 的比例（两种约定见 §3.1）
    #      (G4) h_new: z is the share of the old state h that is kept, not the share of n (§3.1)
    raise NotImplementedError("gru_cell_forward：请按 THEORY.md §3 的 (G1)–(G4) 写出 / "
                              "write (G1)-(G4) of THEORY.md §3")


def gru_cell_backward(dh_new, cache):
    """GRU 反向一步 / One GRU step backward: (GB1)-(GB7), THEORY.md §4.2.

    中文：已知损失对 h_t 的梯度 dh_new，求对这一步所有输入的梯度。db_ih 与 db_hh 分开返回：
    它们在 n 那一块不相等。没有偏置时 db_ih、db_hh 可以是 None；若返回张量，按“偏置若存在会得到的梯度”来比较。

    English: given the gradient of the loss w.r.t. h_t, return the gradients w.r.t. every input of the step.
    db_ih and db_hh are returned apart: they differ in the n block. Without biases they may be None; tensors
    are checked as the gradients the biases would get.

    dh_new: (B, H)        cache: what your gru_cell_forward returned
    Returns dx (B, I), dh (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih (3H,), db_hh (3H,).
    """
    # TODO (GB1) dn、dz：来自 (G4)
    #      (GB1) dn, dz, from (G4)
    # TODO (GB2) da_n：穿过 (G3) 的 tanh
    #      (GB2) da_n: through the tanh of (G3)
    # TODO (GB3) dr：r 乘的是隐藏一侧那一项 (W_hn h + b_hn)
    #      (GB3) dr: r multiplies the hidden part (W_hn h + b_hn)
    # TODO (GB4) da_r、da_z：穿过 (G1)、(G2) 的 sigmoid
    #      (GB4) da_r, da_z: through the sigmoids of (G1), (G2)
    # TODO (GB5) d_gi（输入一侧）和 d_gh（隐藏一侧），各为 (B, 3H)；n 那一块只有隐藏一侧要乘 r
    #      (GB5) d_gi (input side) and d_gh (hidden side), each (B, 3H); only the hidden side's n block has r
    # TODO (GB6) dx；dh = (G4) 的直接路径 + 经过门的路径
    #      (GB6) dx, and dh: the direct path of (G4) plus the path through the gates
    # TODO (GB7) dw_ih、dw_hh、db_ih、db_hh：对 batch 求和
    #      (GB7) dw_ih, dw_hh, db_ih, db_hh: summed over the batch
    raise NotImplementedError("gru_cell_backward：请按 THEORY.md §4.2 的 (GB1)–(GB7) 写出 / "
                              "write (GB1)-(GB7) of THEORY.md §4.2")

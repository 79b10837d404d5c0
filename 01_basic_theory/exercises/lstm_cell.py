"""练习 1：LSTM 的一步，前向与反向 / Exercise 1: one LSTM step, forward and backward.

中文：照着 THEORY.md §2 的 (L1)–(L6) 写前向，照着 §4.1 的 (LB1)–(LB7) 写反向，只用张量运算，不用 autograd。
门的顺序与 torch 一致：堆叠的权重按 i, f, g, o 排列，所以写对以后，你的单元可以直接读入 torch.nn.LSTM 的权重。
每写完一个函数就运行检查程序，它会逐项告诉你哪个量不对、该看哪个公式：
    python 01_basic_theory/exercises/check.py --EXERCISE=lstm
卡住了可以对照 01_basic_theory/lstm_from_scratch.py 里的 lstm_cell_forward / lstm_cell_backward（先自己试）。

English: write the forward from (L1)-(L6) of THEORY.md §2 and the backward from (LB1)-(LB7) of §4.1, with
tensor operations only, no autograd. The gate order is torch's: the stacked weights hold the rows of i, f, g,
o, so once it is right your cell runs on torch.nn.LSTM's own weights. Run the grader after each function;
it names every quantity that is wrong and the equation to look at:
    python 01_basic_theory/exercises/check.py --EXERCISE=lstm
Stuck? 01_basic_theory/lstm_from_scratch.py has the reference lstm_cell_forward / lstm_cell_backward
(try first).
"""


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """LSTM 前向一步 / One LSTM step forward: (L1)-(L6), THEORY.md §2.

    中文：由输入 x_t 和上一步的状态 h_{t-1}、c_{t-1} 算出 h_t、c_t。一次矩阵乘法就得到三个门和一个候选值
    的激活前的值 a（B, 4H），再按 i, f, g, o 的顺序切成四块。没有偏置时 b_ih、b_hh 为 None。
    cache 由你决定：反向需要什么就存什么（元组、字典都行）。

    English: from the input x_t and the previous states h_{t-1}, c_{t-1}, compute h_t and c_t. One matrix
    product gives the pre-activations a of the three gates and the candidate, (B, 4H), split in the order
    i, f, g, o. Without biases b_ih and b_hh are None. The cache is yours: whatever your backward will read
    (a tuple, a dict, ...).

    x: (B, I)            h, c: (B, H)
    w_ih: (4H, I)        w_hh: (4H, H)        b_ih, b_hh: (4H,) or None
    Returns h_new (B, H), c_new (B, H), cache.
    """
    # TODO 激活前的值 a = x W_ih^T + b_ih + h W_hh^T + b_hh，形状 (B, 4H)；按 i, f, g, o 切成四块
    #      pre-activations a = x W_ih^T + b_ih + h W_hh^T + b_hh, (B, 4H); split into a_i, a_f, a_g, a_o
    # TODO (L1) 输入门 i
    #      (L1) input gate i
    # TODO (L2) 遗忘门 f
    #      (L2) forget gate f
    # TODO (L3) 候选值 g（用 tanh，不是 sigmoid）
    #      (L3) candidate g (tanh, not sigmoid)
    # TODO (L4) 输出门 o
    #      (L4) output gate o
    # TODO (L5) 细胞状态 c_new
    #      (L5) cell state c_new
    # TODO (L6) 隐藏状态 h_new
    #      (L6) hidden state h_new
    raise NotImplementedError("lstm_cell_forward：请按 THEORY.md §2 的 (L1)–(L6) 写出 / "
                              "write (L1)-(L6) of THEORY.md §2")


def lstm_cell_backward(dh_new, dc_new, cache):
    """LSTM 反向一步 / One LSTM step backward: (LB1)-(LB7), THEORY.md §4.1.

    中文：已知损失对 h_t、c_t 的梯度 dh_new、dc_new（来自后面的时间步），求对这一步所有输入的梯度。
    db 是偏置之和的梯度：(LB7) 中 δb_ih = δb_hh，所以只返回一个。没有偏置时 db 可以是 None；
    若返回张量，检查程序按“偏置若存在会得到的梯度”来比较。

    English: given the gradients of the loss w.r.t. h_t and c_t (from the later steps), return the gradients
    w.r.t. every input of the step. db is the gradient of the summed bias: δb_ih = δb_hh in (LB7), so one is
    returned. Without biases db may be None; a tensor is checked as the gradient a bias would get.

    dh_new, dc_new: (B, H)        cache: what your lstm_cell_forward returned
    Returns dx (B, I), dh (B, H), dc (B, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,):
    the gradients w.r.t. x, h_{t-1}, c_{t-1}, w_ih, w_hh and the bias.
    """
    # TODO (LB1) do：来自 (L6)
    #      (LB1) do, from (L6)
    # TODO (LB2) dc_t：从 h_t 经 tanh(c_t) 传回的那条路（别忘了 tanh'），再加上 dc_new
    #      (LB2) dc_t: the path from h_t through tanh(c_t) (mind tanh'), plus dc_new
    # TODO (LB3) di、df、dg：来自 (L5)
    #      (LB3) di, df, dg, from (L5)
    # TODO (LB4) dc：传给 c_{t-1} 的梯度
    #      (LB4) dc: the gradient carried to c_{t-1}
    # TODO (LB5) da = [da_i, da_f, da_g, da_o]，(B, 4H)：i、f、o 穿过 sigmoid，g 穿过 tanh
    #      (LB5) da = [da_i, da_f, da_g, da_o], (B, 4H): i, f, o through their sigmoids, g through its tanh
    # TODO (LB6) dx、dh：穿过线性部分 a = x W_ih^T + h W_hh^T + b
    #      (LB6) dx, dh: back through the linear part a = x W_ih^T + h W_hh^T + b
    # TODO (LB7) dw_ih、dw_hh、db：对 batch 求和
    #      (LB7) dw_ih, dw_hh, db: summed over the batch
    raise NotImplementedError("lstm_cell_backward：请按 THEORY.md §4.1 的 (LB1)–(LB7) 写出 / "
                              "write (LB1)-(LB7) of THEORY.md §4.1")

"""练习 5：截断 BPTT——传递状态，并切断梯度 / Exercise 5: truncated BPTT, the carried and detached state.

中文：长文本被切成一段段连续的块（chunk），第 k+1 块的每一行紧接着第 k 块的同一行 (T1)。
前向时，上一块结束时的状态作为下一块的初始状态传下去，所以模型看得到读过的全部历史；但要先 detach：
数值不变、历史丢掉，反向传播只回到本块开头 (T2)。不 detach，第 k 块的计算图会一直连到最早的块。
04_text_gen 的字符模型就是这样训练的（char_model.py 的 detach_state）。见 THEORY.md §10。
检查：python 01_basic_theory/exercises/check.py --EXERCISE=tbptt

English: a long text is cut into consecutive chunks; row b of chunk k+1 continues where row b of chunk k
stopped (T1). Forward, the state at the end of one chunk is the initial state of the next, so the model
sees everything its stream has read; but it is detached first: the same values, no history, so backward
stops at the start of the chunk (T2). Without the detach, chunk k's graph would reach back to the first
chunk. 04_text_gen's character model trains this way (detach_state in char_model.py). THEORY.md §10.
Grade it with: python 01_basic_theory/exercises/check.py --EXERCISE=tbptt
"""


def detach_state(state):
    """切断状态的历史 / Cut the state's history: sg(.) of (T2), THEORY.md §10.

    中文：LSTM 的状态是元组 (h, c)，GRU 的是一个张量 h，还没有状态时是 None；
    返回同样结构、同样数值、没有历史的状态。

    English: an LSTM's state is a tuple (h, c), a GRU's a tensor h, and None before there is one; return the
    same structure with the same values and no history.

    state: (h, c) each (layers, B, H) | h (layers, B, H) | None
    Returns the state, detached (None stays None).
    """
    # TODO (T2) sg：数值不变、没有梯度历史；(h, c) 还是返回元组，None 还是返回 None
    #      (T2) sg: the same values, no gradient history; a tuple for (h, c), None for None
    raise NotImplementedError("detach_state：请写出 (T2) 的 sg(.) / write sg(.) of (T2)")


def run_chunks(rnn, chunks, state=None):
    """把状态从一块传到下一块 / Carry the state from chunk to chunk: (T2), THEORY.md §10.

    中文：依次把每一块喂给 rnn，每块从上一块的最终状态（先 detach）开始。所有块的输出拼起来，
    应当与一次读完整段序列的输出完全相同；但第 k 块的损失不能把梯度传回第 k-1 块。

    English: feed the chunks to rnn in order, each starting from the previous chunk's final state, detached.
    The outputs of all chunks put together must equal the output of reading the whole sequence at once; but
    the loss of chunk k must send no gradient back into chunk k-1.

    rnn: a torch.nn.LSTM or torch.nn.GRU with batch_first=True
    chunks: a list of K tensors (B, T, I), consecutive pieces of the same B streams (T1)
    state: the state before the first chunk, as rnn takes it ((h, c) | h | None)
    Returns outputs: a list of K tensors (B, T, H), rnn's output on each chunk;
    state: the state after the last.
    """
    # TODO 对每一块：out, state = rnn(chunk, state)，从上一块的最终状态开始，先 detach（(T2)）
    #      for each chunk: out, state = rnn(chunk, state) -- from the previous chunk's state, detached (T2)
    # TODO 收集每一块的输出
    #      collect the outputs
    raise NotImplementedError("run_chunks：请传递切断后的状态 (T2) / carry the detached state (T2)")

"""练习 4：只在有效步上做池化 / Exercise 4: pooling over the valid steps only.

中文：一个 batch 里的序列长短不一，补齐到同一长度 T；RNN 在补齐位置的输出为 0
（pad_packed_sequence 就是这样）。分类器需要每条序列一个向量：对时间取平均或取最大时，必须只看有效的步，
否则平均会除以 T 而不是真实长度 L_b，最大值会被补齐位置的 0 抢走（某个特征在所有真实步上都为负时）。
公式见 THEORY.md §5.1 的 (P1)、(P2)；
02_sentiment 把两者与最终状态拼在一起。检查：python 01_basic_theory/exercises/check.py --EXERCISE=masked_pool

English: sequences of different lengths are padded to one length T, and the RNN's outputs at padded steps
are 0 (as pad_packed_sequence leaves them). A classifier needs one vector per sequence: a mean or a max
over time must look at the valid steps only, or the mean divides by T instead of the true length L_b and
the max is won by the padding's 0 (for a feature negative at every real step). The equations are (P1),
(P2) of THEORY.md §5.1; 02_sentiment concatenates both with the final state.
Grade it with: python 01_basic_theory/exercises/check.py --EXERCISE=masked_pool
"""


def masked_mean(out, lengths):
    """有效步上的平均 / The mean over the valid steps: (P1), THEORY.md §5.1.

    中文：mask[b, t] = t < lengths[b]；对有效步求和，再除以每条序列自己的长度。

    English: mask[b, t] = t < lengths[b]; sum over the valid steps, divide by each sequence's own length.

    out: (B, T, D), 0 at padded steps      lengths: (B,) int64, each in 1..T
    Returns mean: (B, D).
    """
    # TODO 由 lengths 得到掩码 mask，形状 (B, T, 1)
    #      the mask (B, T, 1) from lengths
    # TODO (P1) 有效步上的输出之和，再除以长度
    #      (P1) sum of the valid outputs / length
    raise NotImplementedError("masked_mean：请写出 (P1) / write (P1)")


def masked_max(out, lengths):
    """有效步上的最大值 / The max over the valid steps, per feature: (P2), THEORY.md §5.1.

    中文：先把补齐位置填成 -inf（masked_fill），再沿时间取最大值。

    English: fill the padded steps with -inf (masked_fill), then take the max over time.

    out: (B, T, D), 0 at padded steps      lengths: (B,) int64, each in 1..T
    Returns peak: (B, D).
    """
    # TODO 由 lengths 得到掩码 mask，形状 (B, T, 1)
    #      the mask (B, T, 1) from lengths
    # TODO (P2) 补齐位置填 -inf，再沿 t 取最大值
    #      (P2) -inf at padded steps, max over t
    raise NotImplementedError("masked_max：请写出 (P2) / write (P2)")

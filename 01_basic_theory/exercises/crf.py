"""练习 8：线性链 CRF 的前向算法与维特比解码 / Exercise 8: the CRF: forward algorithm, Viterbi.

中文：给一个句子的每个字、每个标签一个发射分数 e[t, k]，再给每一对相邻标签一个转移分数 A[i, j]，以及开头分数
s[j]、结尾分数 u[i]；一条标签序列的得分是这些分数之和 (CRF1)。请写出：用前向算法在对数空间里算所有标签序列的
log Z (CRF2)-(CRF3)，以及用维特比算法找出得分最高的那条序列 (CRF5)。公式见 THEORY.md §15；
05_seq_classify/segment_model.py 的 crf_log_partition / viterbi_decode 是参考（它们多了批和掩码）。
检查：python 01_basic_theory/exercises/check.py --EXERCISE=crf

English: every character of a sentence gets an emission score e[t, k] for each tag, every pair of
neighbouring tags a transition score A[i, j], the first tag a start score s[j] and the last an end score
u[i]; a tag sequence scores the sum (CRF1). Write log Z over all tag sequences by the forward algorithm in
log space (CRF2)-(CRF3), and the best sequence by Viterbi (CRF5). The equations are in THEORY.md §15;
05_seq_classify/segment_model.py has the reference crf_log_partition / viterbi_decode (with a batch and a
mask on top). Grade it with: python 01_basic_theory/exercises/check.py --EXERCISE=crf
"""


def crf_log_partition(emissions, transitions, start, end):
    """前向算法 / The forward algorithm: (CRF2)-(CRF3), THEORY.md §15.

    中文：alpha_0 = s + e[0]；之后每一步 alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A[i, j]) + e[t, j]；
    最后 log Z = logsumexp_j(alpha_{T-1}[j] + u[j])。用 torch.logsumexp，不要先 exp 再 log。

    English: alpha_0 = s + e[0]; then alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A[i, j]) + e[t, j]; finally
    log Z = logsumexp_j(alpha_{T-1}[j] + u[j]). Use torch.logsumexp, never exp then log.

    emissions: (T, K)      transitions: (K, K), [previous tag, next tag]      start, end: (K,)
    Returns log Z: a scalar tensor (shape ()).
    """
    # TODO (CRF2) 先令 alpha = start + emissions[0]；对 t = 1 … T-1：alpha[:, None] + transitions，
    #      沿上一个标签那一维做 logsumexp，再加 emissions[t]
    #      (CRF2) alpha = start + emissions[0]; for t = 1 ... T-1: alpha with a new axis plus transitions,
    #      logsumexp over the previous tag, plus emissions[t]
    # TODO (CRF3) 最后加上结尾分数：log Z = logsumexp(alpha + end)
    #      (CRF3) log Z = logsumexp(alpha + end)
    raise NotImplementedError("crf_log_partition：请写出 (CRF2)-(CRF3) / write (CRF2)-(CRF3)")


def viterbi(emissions, transitions, start, end):
    """维特比解码 / Viterbi decoding: (CRF5), THEORY.md §15.

    中文：和前向算法同一个递推，把 logsumexp 换成 max，并记下每一步每个标签的最佳前一个标签（回溯指针）；
    最后一步加上 end，取最大的那个标签，再沿着指针往回走。

    English: the forward recursion with max in place of logsumexp, remembering for every step and tag the
    best previous tag (the back-pointer); at the last step add end, take the best tag, and follow the
    pointers back.

    emissions: (T, K)      transitions: (K, K)      start, end: (K,)
    Returns the best tag sequence: a long tensor of shape (T,) (torch.tensor(path, dtype=torch.long)).
    """
    # TODO (CRF5) delta = start + emissions[0]；每一步：候选 = delta[:, None] + transitions，取每一列的最大值
    #      和它的位置（回溯指针），再加 emissions[t]
    #      (CRF5) delta = start + emissions[0]; each step: candidates = delta[:, None] + transitions, the max
    #      of each column and where it is (the back-pointer), plus emissions[t]
    # TODO 加上 end，取最大的标签，沿着回溯指针从 t = T-1 走回 t = 0，再把路径倒过来
    #      add end, take the best tag, follow the back-pointers from t = T-1 to t = 0, reverse the path
    raise NotImplementedError("viterbi：请写出 (CRF5) / write (CRF5)")

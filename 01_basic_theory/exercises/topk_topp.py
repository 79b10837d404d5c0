"""练习 7：top-k 与 top-p（核采样）过滤 / Exercise 7: top-k and top-p (nucleus) filtering.

中文：生成文本时，模型给每个字符一点概率；尾部的小概率加起来也会经常被抽中，抽错的字符又会成为后面的上下文。
top-k 只保留概率最高的 k 个字符 (S2)；top-p 保留累计概率达到 p 的最少字符 (S3)。两者都要重新归一化。
公式见 THEORY.md §11；04_text_gen/char_model.py 的 top_k_filter / top_p_filter 是参考。
检查：python 01_basic_theory/exercises/check.py --EXERCISE=topk_topp

English: the model gives every character a little probability, and a tail of small ones is drawn often
enough to derail a sample, since each odd character becomes context. Top-k keeps the k most likely
characters (S2); top-p keeps the smallest set of most likely characters whose total reaches p (S3). Both
renormalise. The equations are in THEORY.md §11; 04_text_gen/char_model.py has the reference
top_k_filter / top_p_filter. Grade it with: python 01_basic_theory/exercises/check.py --EXERCISE=topk_topp
"""


def top_k_filter(probs, k):
    """只保留最可能的 k 个 / Keep the k most likely: (S2), THEORY.md §11.

    中文：与第 k 大的概率相等的字符也保留；k <= 0 或 k >= V 时全部保留。

    English: characters tied with the k-th largest are kept too; k <= 0 or k >= V keeps them all.

    probs: (..., V), each row sums to 1      k: int
    Returns probs (..., V): 0 outside the kept set, renormalised to sum to 1.
    """
    # TODO (S2) 每一行第 k 大的概率（torch.topk），保留 >= 它的，再重新归一化
    #      (S2) the k-th largest probability of each row (torch.topk), keep those >= it, renormalise
    raise NotImplementedError("top_k_filter：请写出 (S2) / write (S2)")


def top_p_filter(probs, p):
    """核采样 / Nucleus filtering: (S3), THEORY.md §11.

    中文：按概率从大到小排序，保留“排在它前面的概率之和 < p”的字符（最可能的一个总会保留）；
    p >= 1 时全部保留。

    English: sort by probability, most likely first; keep a character while the mass of those before it is
    < p (the most likely one is always kept); p >= 1 keeps them all.

    probs: (..., V), each row sums to 1      p: float in (0, 1]
    Returns probs (..., V): 0 outside the nucleus, renormalised to sum to 1.
    """
    # TODO (S3) 排序；算出排在每个字符前面的概率之和，保留 < p 的；放回原来的顺序；重新归一化
    #      (S3) sort, the mass before each character, keep where it is < p, back to the original order,
    #      renormalise
    raise NotImplementedError("top_p_filter：请写出 (S3) / write (S3)")

"""练习 6：注意力的一步 / Exercise 6: one attention step of the encoder-decoder.

中文：解码器写每个音素时，都回头看一遍所有字母：用解码器状态 d_t 给每个字母的编码向量 s_j 打分 (E4)，
补齐的位置得分为 -inf；softmax 得到注意力权重 α (E5)；按权重求和得到上下文 c_t (E6)；
再把 [c_t; d_t] 合成注意力状态 d̃_t (E7)。公式见 THEORY.md §13；04_text_gen/g2p_model.py 的 Seq2Seq.attend
就是这几行（对所有输出步一起算）。检查：python 01_basic_theory/exercises/check.py --EXERCISE=attention

English: each time the decoder writes a phoneme it looks back at every letter: the decoder state d_t scores
each letter's encoder vector s_j (E4), with -inf at padding; a softmax gives the attention weights alpha
(E5); their weighted sum is the context c_t (E6); [c_t; d_t] makes the attentional state (E7). The equations
are in THEORY.md §13; Seq2Seq.attend in 04_text_gen/g2p_model.py is these lines, for all output steps at once.
Grade it with: python 01_basic_theory/exercises/check.py --EXERCISE=attention
"""


def attention_step(d, memory, mask, w_a, w_c, b_c):
    """一个输出步的注意力 / Attention for one output step: (E4)-(E7), THEORY.md §13.

    中文：e_j = d_t · (W_a s_j)，补齐位置为 -inf；α = softmax(e)；c_t = Σ_j α_j s_j；
    d̃_t = tanh(W_c [c_t; d_t] + b_c)，拼接的顺序是上下文在前、d_t 在后。

    English: e_j = d_t . (W_a s_j), -inf at padding; alpha = softmax(e); c_t = sum_j alpha_j s_j;
    tilde d_t = tanh(W_c [c_t; d_t] + b_c), the context first, then d_t.

    d: (B, H) the decoder state d_t (E3)      memory: (B, S, M) the encoder vectors s_j (E1)
    mask: (B, S) bool, True at the real letters (every row has at least one)
    w_a: (H, M) (E4)      w_c: (H, M + H), b_c: (H,) (E7)
    Returns alpha (B, S), context (B, M), tilde (B, H).
    """
    # TODO (E4) 得分 e，形状 (B, S)；mask 为 False 的位置填 -inf
    #      (E4) scores e (B, S), -inf where mask is False
    # TODO (E5) alpha：在字母这一维上做 softmax
    #      (E5) alpha: softmax over the letters
    # TODO (E6) 上下文 context
    #      (E6) context
    # TODO (E7) 注意力状态 tilde
    #      (E7) the attentional state tilde
    raise NotImplementedError("attention_step：请写出 (E4)–(E7) / write (E4)-(E7)")

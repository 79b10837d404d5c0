"""The sentiment case's experiments, beside the lesson of sentiment_model.py: the classic yardsticks, the
statistics that compare models on the same reviews, and two ways of mixing counting with reading.

1. `tfidf_baseline`: TF-IDF of words and word pairs (Chinese: character 1-3-grams, `ngram_range_for`)
   + logistic regression, the bag-of-words yardstick;
2. `NBSVM` and `nbsvm_baseline` (Wang & Manning 2012, THEORY.md §14), the strongest classic yardstick on
   these snippets; `mcnemar`, the exact test of two classifiers on the same test reviews;
   `compare_with_baselines`, what the twins print beside their RNN (BASELINES);
3. averaging an RNN with NBSVM (`average_probabilities`, the weight from `choose_weight` on validation,
   `cross_fitted_accuracy`, `average_with_nbsvm`: the twins' WITH_NBSVM);
4. the NB channel (NB_CHANNEL): each word's NB log-count ratio as a fixed extra input of the cell
   (`NBChannelClassifier`), cross-fitted for the training reviews (`cross_fitted_nb_channel`).
Used by sentiment_lstm.py, sentiment_gru.py and model_comparison.py.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from sentiment_model import (
    LengthBucketSampler,
    SentimentClassifier,
    binary_metrics,
    collate_reviews,
    encode_reviews,
    predict_proba,
)
from utils.data_utils import Vocab, han_share, tokenize
from utils.model_utils import confusion_matrix
from utils.script_utils import print_table


# ----------------------------------------------------------------------------------------------------
# 1. The yardstick: a bag of words and bigrams
# ----------------------------------------------------------------------------------------------------
def ngram_range_for(texts: Sequence[str]) -> tuple[int, int]:
    """The baselines' n-grams: words and word pairs (1, 2) for English; for Chinese, where each token is one
    Han character, character 1- to 3-grams (1, 3), which stand in for the words a segmenter would find."""
    return (1, 3) if han_share(t for text in texts[:2000] for t in tokenize(text)) > 0.5 else (1, 2)


def tfidf_baseline(texts: dict, Cs: tuple = (0.3, 1.0, 3.0, 10.0)) -> dict:
    """The bag-of-words yardstick: TF-IDF of words and word pairs + logistic regression (scikit-learn);
    of character 1- to 3-grams for Chinese (`ngram_range_for`).

    texts: {'train'|'val'|'test': (texts, labels)}. C (inverse regularisation) is picked on validation,
    like the RNNs' early stopping, so both sides get the same chance. Word order beyond bigrams is lost:
    whatever the RNNs gain over this baseline is what reading the sequence buys.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    (xtr, ytr), (xva, yva), (xte, yte) = texts["train"], texts["val"], texts["test"]
    t0 = time.time()
    ngrams = ngram_range_for(xtr)
    vec = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=ngrams,
                          sublinear_tf=True)
    A, V = vec.fit_transform(xtr), vec.transform(xva)   # sparse (reviews, n-grams)
    fitted = [(LogisticRegression(C=C, max_iter=2000).fit(A, ytr), C) for C in Cs]
    scored = [(float((clf.predict(V) == yva).mean()), C, clf) for clf, C in fitted]
    val_acc, C, clf = max(scored, key=lambda s: s[0])
    train_time = time.time() - t0
    t1 = time.time()
    preds = torch.as_tensor(clf.predict(vec.transform(xte)))
    seconds = max(time.time() - t1, 1e-9)
    metrics = binary_metrics(preds, torch.as_tensor(yte))
    metrics.update(C=C, ngram_range=list(ngrams), val_accuracy=val_acc,
                   parameters=int(clf.coef_.size + clf.intercept_.size),
                   train_time_s=round(train_time, 2), reviews_per_s=round(len(yte) / seconds, 1),
                   confusion_matrix=confusion_matrix(yte, preds, 2).tolist(), predictions=preds.tolist())
    return metrics


# ----------------------------------------------------------------------------------------------------
# 2. The strong yardstick: NBSVM (Wang & Manning 2012, THEORY.md §14), and McNemar's test
# ----------------------------------------------------------------------------------------------------
# A review is a binary bag of words and word pairs, x in {0,1}^V (x_j = 1 if n-gram j occurs at least once).
# Naive Bayes' log-count ratio says how much each n-gram leans positive, with smoothing alpha:
#     p = alpha + sum_{i: y_i = 1} x_i,   q = alpha + sum_{i: y_i = 0} x_i     (V,) counts of reviews  (N1)
#     r = log( (p / ||p||_1) / (q / ||q||_1) )                                 (V,) > 0: leans positive (N2)
# NBSVM trains a linear classifier (here logistic regression, so it gives probabilities) on the
# r-scaled features x~ = r * x (elementwise), then shrinks its weights w towards their mean magnitude:
#     w' = (1 - beta) * w_bar + beta * w,   w_bar = ||w||_1 / V                (N3) interpolation
#     P(positive | x) = sigmoid(w' . x~ + b)                                    (N4)
# beta = 0 leaves w_bar * (r . x) + b: Naive Bayes' votes, each n-gram with its log-count ratio (b stays as
# trained, as in the paper); beta = 1 is the discriminative model alone, on NB-scaled features. Wang & Manning
# found NB's votes stronger on short snippets and the classifier on long reviews; here validation picks beta.
def binary_ngrams(texts: Sequence[str], vocabulary: dict | None = None, ngram_range: tuple = (1, 2)):
    """Reviews -> (X, vocabulary): X a scipy sparse (reviews, V) 0/1 matrix of the word and word-pair
    n-grams each review contains (utils.data_utils.tokenize's tokens; Chinese: ngram_range=(1, 3) of
    characters). vocabulary None: learn it from these texts (training only); else reuse it
    (validation/test n-grams never seen in training are dropped)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False,
                          ngram_range=tuple(ngram_range), binary=True, vocabulary=vocabulary)
    X = vec.fit_transform(texts) if vocabulary is None else vec.transform(texts)
    return X.tocsr().astype(np.float64), vec.vocabulary_


def log_count_ratio(X, labels: Sequence[int], alpha: float = 1.0) -> np.ndarray:
    """X: (reviews, V) binary features, labels: (reviews,) 0/1 -> r: (V,) the NB log-count ratio above."""
    y = np.asarray(labels)
    p = alpha + np.asarray(X[y == 1].sum(axis=0)).ravel()   # (V,) smoothed count of positive reviews with j
    q = alpha + np.asarray(X[y == 0].sum(axis=0)).ravel()   # (V,) the same for negative reviews
    return np.log((p / p.sum()) / (q / q.sum()))


def interpolate_weights(w: np.ndarray, beta: float) -> np.ndarray:
    """w' = (1 - beta) * mean|w| + beta * w  (N3): beta = 1 keeps w, beta = 0 gives every feature the
    same weight."""
    return (1 - beta) * np.abs(w).mean() + beta * w


class NBSVM:
    """NBSVM-uni+bi: logistic regression on NB-scaled binary uni+bigram features (Chinese: character
    1-3-grams), weights interpolated.
    fit(texts, labels) -> self; predict_proba(texts) -> (N,) P(positive). See the formulas above."""

    def __init__(self, alpha: float = 1.0, C: float = 1.0, beta: float = 0.25, ngram_range: tuple = (1, 2)):
        self.alpha, self.C, self.beta, self.ngram_range = alpha, C, beta, tuple(ngram_range)

    def features(self, texts: Sequence[str]):
        """texts -> x~ = r * x: (N, V) sparse, V = the training n-grams."""
        X, _ = binary_ngrams(texts, self.vocabulary, self.ngram_range)
        return X.multiply(self.r[None, :]).tocsr()

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> "NBSVM":
        X, self.vocabulary = binary_ngrams(texts, ngram_range=self.ngram_range)
        self.r = log_count_ratio(X, labels, self.alpha)
        return self.fit_classifier(X.multiply(self.r[None, :]).tocsr(), labels)

    def fit_classifier(self, features, labels: Sequence[int]) -> "NBSVM":
        """The discriminative half alone, on already r-scaled features (the grid search reuses them)."""
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=self.C, max_iter=5000).fit(features, labels)
        self.w, self.b = clf.coef_.ravel(), float(clf.intercept_[0])   # (V,), scalar
        return self

    def predict_proba(self, texts: Sequence[str] | None = None, features=None) -> np.ndarray:
        """texts (or their r-scaled features) -> (N,) P(positive) = sigmoid(w' . x~ + b)."""
        features = self.features(texts) if features is None else features
        margin = features @ interpolate_weights(self.w, self.beta) + self.b
        return 1.0 / (1.0 + np.exp(-margin))


def nbsvm_baseline(texts: dict, Cs: tuple = (0.1, 0.3, 1.0, 3.0, 10.0),
                   betas: tuple = (0.0, 0.25, 0.5, 0.75, 1.0), alpha: float = 1.0) -> dict:
    """NBSVM with C and beta picked on validation accuracy (alpha = 1, Wang & Manning's value, not tuned).

    texts: {'train'|'val'|'test': (texts, labels)}. Returns the same keys as `tfidf_baseline`, plus
    'val_probs' and 'test_probs' (P(positive) in split order) for averaging with the RNNs, and the model."""
    (xtr, ytr), (xva, yva), (xte, yte) = texts["train"], texts["val"], texts["test"]
    t0 = time.time()
    model = NBSVM(alpha=alpha, ngram_range=ngram_range_for(xtr))  # Chinese: character 1- to 3-grams
    X, model.vocabulary = binary_ngrams(xtr, ngram_range=model.ngram_range)
    model.r = log_count_ratio(X, ytr, alpha)
    train_feats, val_feats = X.multiply(model.r[None, :]).tocsr(), model.features(xva)
    scored = []                                            # (val accuracy, C, beta, w, b), in grid order
    for C in Cs:
        model.C = C
        model.fit_classifier(train_feats, ytr)
        for beta in betas:
            model.beta = beta
            right = (model.predict_proba(features=val_feats) >= 0.5) == np.asarray(yva)
            scored.append((float(right.mean()), C, beta, model.w, model.b))
    # first best in grid order
    val_acc, model.C, model.beta, model.w, model.b = max(scored, key=lambda s: s[0])
    train_time = time.time() - t0
    val_probs = model.predict_proba(features=val_feats)
    t1 = time.time()
    test_probs = model.predict_proba(xte)
    seconds = max(time.time() - t1, 1e-9)
    preds = torch.as_tensor((test_probs >= 0.5).astype(np.int64))
    metrics = binary_metrics(preds, torch.as_tensor(yte))
    metrics.update(C=model.C, beta=model.beta, alpha=alpha, ngram_range=list(model.ngram_range),
                   val_accuracy=val_acc, parameters=int(model.w.size + 1), train_time_s=round(train_time, 2),
                   reviews_per_s=round(len(yte) / seconds, 1),
                   confusion_matrix=confusion_matrix(yte, preds, 2).tolist(), predictions=preds.tolist(),
                   val_probs=val_probs.tolist(), test_probs=test_probs.tolist(),
                   val_grid=[{"C": C, "beta": beta, "val_accuracy": a} for a, C, beta, _, _ in scored],
                   model=model)
    return metrics


def mcnemar(a_right, b_right) -> dict:
    """McNemar's exact test of two classifiers on the same test reviews: only the reviews where exactly
    one of them is right carry information; under "equally good" each such review is a fair coin flip."""
    from scipy.stats import binomtest

    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p": float(p)}


def compare_with_baselines(model: nn.Module, data: dict, max_len: int, device: torch.device | str,
                           name: str = "RNN", nb: dict | None = None) -> dict:
    """Fit both yardsticks on the training reviews (their settings picked on validation), print their test
    accuracy beside the trained `model`'s and McNemar's test of the model against the one of them that did
    better on validation (choosing it on test would favour the baseline's luck). `nb`: an nbsvm_baseline
    result already fitted on data['texts'] (else it is fitted here). -> metrics for metrics.json."""
    texts = data["texts"]
    y_test = np.asarray(texts["test"][1])
    tfidf, nb = tfidf_baseline(texts), nb or nbsvm_baseline(texts)
    p_rnn = np.asarray(predict_proba(model, encode_reviews(texts["test"][0], data["vocab"], max_len)[0],
                                     device))
    rnn_right = (p_rnn >= 0.5) == y_test.astype(bool)
    best_name, best = max((("TF-IDF + LR", tfidf), ("NBSVM", nb)), key=lambda b: b[1]["val_accuracy"])
    test = mcnemar(rnn_right, np.asarray(best["predictions"]) == y_test)
    grams = "character" if tuple(nb["ngram_range"]) == (1, 3) else "word"
    (lo, hi), (nb_lo, nb_hi) = tfidf["ngram_range"], nb["ngram_range"]
    rnn_f1 = binary_metrics(torch.as_tensor(p_rnn >= 0.5).long(), torch.as_tensor(y_test))["f1"]
    print_table([{"model": f"TF-IDF + LR ({grams} {lo}-{hi}-grams, C={tfidf['C']})",
                  "val accuracy": tfidf["val_accuracy"], "accuracy": tfidf["accuracy"], "f1": tfidf["f1"]},
                 {"model": f"NBSVM ({grams} {nb_lo}-{nb_hi}-grams, C={nb['C']}, beta={nb['beta']})",
                  "val accuracy": nb["val_accuracy"], "accuracy": nb["accuracy"], "f1": nb["f1"]},
                 {"model": name, "val accuracy": "", "accuracy": float(rnn_right.mean()), "f1": rnn_f1}],
                title="Against the classic baselines, same test split (baselines.py §1-§2)",
                floatfmt=".4f")
    print(f"McNemar, {name} vs {best_name} (the better baseline on validation) on the same {len(y_test)} "
          f"test reviews: {test['only_first_right']} only the {name} gets right, "
          f"{test['only_second_right']} only {best_name}, p = {test['p']:.3f}.")
    return {"tfidf_test_accuracy": tfidf["accuracy"], "tfidf_val_accuracy": tfidf["val_accuracy"],
            "tfidf_C": tfidf["C"], "nbsvm_test_accuracy": nb["accuracy"],
            "nbsvm_val_accuracy": nb["val_accuracy"], "nbsvm_C": nb["C"], "nbsvm_beta": nb["beta"],
            "baseline_ngram_range": nb["ngram_range"],
            "mcnemar_vs_better_baseline": {"baseline": best_name, **test}}


# ----------------------------------------------------------------------------------------------------
# 3. Averaging an RNN with NBSVM (WITH_NBSVM; model_comparison.py's "+ nbsvm" rows)
# ----------------------------------------------------------------------------------------------------
# Averaging the RNNs with NBSVM (as Mesnil et al. 2014 averaged an RNN LM, paragraph vectors and NBSVM
# on IMDB):
#     P(positive) = w * P_rnn + (1 - w) * P_nbsvm,   w in [0, 1] chosen on validation     (N5)
# The two make different mistakes: NBSVM counts n-grams anywhere in the snippet, the RNN reads them in order.
WEIGHT_GRID = tuple(round(0.05 * k, 2) for k in range(21))   # w = 0, 0.05, ..., 1


def average_probabilities(p_rnn: Sequence[float], p_nbsvm: Sequence[float], weight: float) -> np.ndarray:
    """(N,) and (N,) P(positive) -> (N,) w * p_rnn + (1 - w) * p_nbsvm."""
    return weight * np.asarray(p_rnn, np.float64) + (1 - weight) * np.asarray(p_nbsvm, np.float64)


def log_loss(probs: np.ndarray, labels: Sequence[int]) -> float:
    """Mean binary cross-entropy of P(positive) against 0/1 labels (probabilities clipped away from 0
    and 1)."""
    p, y = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7), np.asarray(labels)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose_weight(p_rnn: Sequence[float], p_nbsvm: Sequence[float], labels: Sequence[int],
                  grid: Sequence[float] = WEIGHT_GRID) -> float:
    """The w of `average_probabilities` with the best accuracy on these (validation) reviews; ties, which
    accuracy on ~1,300 reviews has many of, go to the w with the lower log loss."""
    y = np.asarray(labels)
    def score(w):
        p = average_probabilities(p_rnn, p_nbsvm, w)
        return float(((p >= 0.5) == y).mean()), -log_loss(p, y)
    return max(grid, key=score)


def cross_fitted_accuracy(p_rnn: Sequence[float], p_nbsvm: Sequence[float], labels: Sequence[int],
                          grid: Sequence[float] = WEIGHT_GRID) -> float:
    """An honest validation accuracy for the averaged model: choose w on the even-numbered validation
    reviews and score it on the odd ones, then the other way round, and pool the two halves.
    Scoring w on the reviews it was chosen on would flatter it: w = 0 is NBSVM itself, so the chosen w
    could never look worse than NBSVM there."""
    p_rnn, p_nbsvm, y = (np.asarray(a) for a in (p_rnn, p_nbsvm, labels))
    right = np.zeros(len(y), bool)
    for pick, score in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        w = choose_weight(p_rnn[pick], p_nbsvm[pick], y[pick], grid)
        right[score] = (average_probabilities(p_rnn[score], p_nbsvm[score], w) >= 0.5) == y[score]
    return float(right.mean())


def average_with_nbsvm(model: nn.Module, data: dict, max_len: int, device: torch.device | str,
                       name: str = "RNN", nb: dict | None = None) -> dict:
    """Fit NBSVM on the training reviews (C, beta on validation; or take `nb`, an nbsvm_baseline result
    already fitted on data['texts']), average it with the trained `model` (w on validation), test both and
    the average on the test split, print the table and McNemar's test of the average against NBSVM.
    -> metrics for metrics.json ('nbsvm_*', 'with_nbsvm_*')."""
    texts = data["texts"]
    (_, y_val), (_, y_test) = texts["val"], texts["test"]
    nb = nb or nbsvm_baseline(texts)
    p_rnn = {part: predict_proba(model, encode_reviews(texts[part][0], data["vocab"], max_len)[0], device)
             for part in ("val", "test")}                                   # P(positive) in split order
    w = choose_weight(p_rnn["val"], nb["val_probs"], y_val)
    p_avg = average_probabilities(p_rnn["test"], nb["test_probs"], w)    # (N_test,)
    y = torch.as_tensor(y_test)
    rnn = binary_metrics(torch.as_tensor(np.asarray(p_rnn["test"]) >= 0.5).long(), y)
    avg = binary_metrics(torch.as_tensor(p_avg >= 0.5).long(), y)
    nb_right = np.asarray(nb["predictions"]) == np.asarray(y_test)
    test = mcnemar((p_avg >= 0.5) == np.asarray(y_test, bool), nb_right)
    honest_val = cross_fitted_accuracy(p_rnn["val"], nb["val_probs"], y_val)
    print_table([{"model": f"NBSVM (C={nb['C']}, beta={nb['beta']})", "val accuracy": nb["val_accuracy"],
                  "accuracy": nb["accuracy"], "f1": nb["f1"]},
                 {"model": name, "val accuracy": "", "accuracy": rnn["accuracy"], "f1": rnn["f1"]},
                 {"model": f"{w:.2f} x {name} + {1 - w:.2f} x NBSVM", "val accuracy": honest_val,
                  "accuracy": avg["accuracy"], "f1": avg["f1"]}],
                title="Averaged with NBSVM (baselines.py §3; the average's val accuracy is cross-fitted)",
                floatfmt=".4f")
    print(f"McNemar, average vs NBSVM on the same {len(y_test)} test reviews: {test['only_first_right']} "
          f"only the average gets right, {test['only_second_right']} only NBSVM, p = {test['p']:.3f}.")
    return {"nbsvm_test_accuracy": nb["accuracy"], "nbsvm_test_f1": nb["f1"],
            "nbsvm_val_accuracy": nb["val_accuracy"], "nbsvm_C": nb["C"], "nbsvm_beta": nb["beta"],
            "nbsvm_weight": 1 - w, "with_nbsvm_weight_on_rnn": w, "with_nbsvm_test_accuracy": avg["accuracy"],
            "with_nbsvm_test_f1": avg["f1"], "with_nbsvm_val_accuracy_cross_fitted": honest_val,
            "with_nbsvm_mcnemar_vs_nbsvm": test}


# ----------------------------------------------------------------------------------------------------
# 4. The NB channel (NB_CHANNEL): each word's log-count ratio as a fixed extra input of the cell
# ----------------------------------------------------------------------------------------------------
def word_log_count_ratios(texts: Sequence[str], labels: Sequence[int], vocab: Vocab,
                          alpha: float = 1.0) -> torch.Tensor:
    """Each vocabulary word's NB log-count ratio r ((N1)-(N2), words only) from the training reviews
    -> (len(vocab), 1) float32, the `word_features` of NBChannelClassifier.
    <pad> and <unk> get 0 (no lean). The RNN then sees, beside each learned word vector, how strongly that
    word leaned positive or negative across the whole training set: a rare word's vector is learned from a
    handful of gradient steps, its count ratio from every review at once."""
    tokens = vocab.to_list()
    X, _ = binary_ngrams(texts, {t: i for i, t in enumerate(tokens)})   # (reviews, V): words only, no pairs
    r = log_count_ratio(X, labels, alpha)
    r[:2] = 0.0                                                          # <pad> = 0, <unk> = 1
    return torch.tensor(r, dtype=torch.float32)[:, None]


class NBChannelClassifier(SentimentClassifier):
    """A SentimentClassifier whose cell reads, beside each word's learned vector, `word_channels` fixed
    numbers per word: NB_CHANNEL's log-count ratio r of the word (`word_log_count_ratios`).

    word_features: (vocab, channels), a buffer saved with the weights, never trained: what every review
    reads at validation, test and after loading. fold_features: (folds, vocab, channels), what a *training*
    review of cross-fitting fold k reads while training, computed without fold k (`cross_fitted_nb_channel`);
    not saved. Only `embed` differs from the lesson's model: packing, pooling and the head are the same.
    """

    def __init__(self, vocab_size: int, *, word_channels: int = 1, **kwargs):
        super().__init__(vocab_size, word_channels=word_channels, **kwargs)
        self.register_buffer("word_features", torch.zeros(vocab_size, word_channels))
        self.register_buffer("fold_features", None, persistent=False)  # moves with .to(), not saved
        self.folds = None  # the batch's folds (B,) while forward runs, for embed

    def set_word_features(self, features: torch.Tensor, fold_features: torch.Tensor | None = None) -> None:
        """features (vocab, channels) for every review; fold_features (folds, vocab, channels) for the
        training reviews, so a rare word's number never encodes the label of the very review it is read in."""
        self.word_features.copy_(features)
        self.fold_features = None if fold_features is None else fold_features.to(self.word_features.device)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor,
                folds: torch.Tensor | None = None) -> torch.Tensor:
        """As SentimentClassifier.forward; folds: (B,) long, each training review's cross-fitting fold."""
        self.folds = folds
        try:
            return super().forward(ids, lengths)
        finally:
            self.folds = None

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) -> (B, T, E + channels): the word vectors (dropped out), then the fixed numbers
        (not dropped out)."""
        x = super().embed(ids)                                                 # (B, T, E)
        if self.folds is not None and self.fold_features is not None and self.training:
            feats = self.fold_features[self.folds.to(ids.device)[:, None], ids]  # fold k's own table
        else:
            feats = self.word_features[ids]                                    # all training reviews'
        return torch.cat([x, feats], dim=2)


def collate_with_folds(batch: Sequence[tuple]):
    """[(ids, label, fold), ...] -> collate_reviews' (ids, lengths, labels), then folds: (B,) long."""
    folds = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return collate_reviews([b[:2] for b in batch]) + (folds,)


def cross_fitted_nb_channel(data: dict, folds: int = 5, alpha: float = 1.0) -> dict:
    """NB_CHANNEL without leakage: the ratios from all training reviews (for validation, test, new text) and,
    for cross-fitting, one table per fold from the other folds' reviews; and the training batches again,
    each review now carrying its fold (same batches, same order as data['loaders']['train']).
    data: what prepare_sentiment_data returned (left unchanged).
    -> {'word_features': (vocab, 1), 'fold_features': (folds, vocab, 1), 'train_loader': DataLoader}.

    Why: computed on the reviews the RNN trains on, a word seen in one review only gets a ratio of about
    +-log 2 pointing at that review's own label, and the RNN learns to read the label off it (stacking has
    the same trap, and the same cure)."""
    texts, labels = data["texts"]["train"]
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(data["seed"])).tolist()
    fold_of = [0] * len(texts)
    for rank, i in enumerate(order):
        fold_of[i] = rank % folds
    tables = []
    for k in range(folds):
        keep = [i for i in range(len(texts)) if fold_of[i] != k]
        tables.append(word_log_count_ratios([texts[i] for i in keep], [labels[i] for i in keep],
                                            data["vocab"], alpha))
    encoded, _ = encode_reviews(texts, data["vocab"], data["max_len"])
    sampler = LengthBucketSampler([len(e) for e in encoded], data["batch_size"], True, data["seed"])
    loader = torch.utils.data.DataLoader(list(zip(encoded, labels, fold_of)), batch_sampler=sampler,
                                         collate_fn=collate_with_folds)
    return {"word_features": word_log_count_ratios(texts, labels, data["vocab"], alpha),
            "fold_features": torch.stack(tables), "train_loader": loader}

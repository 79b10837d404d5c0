"""LSTM vs GRU vs two bag-of-n-grams baselines (TF-IDF + logistic regression, NBSVM) on the same fixed split.

Teaches: judging a neural model against the strongest cheap yardstick (picked on validation, never on test),
with mean ± std over seeds, what averaging the seeds' models buys (a seed ensemble, what sentiment_lstm.py's
ENSEMBLE trains), what averaging that ensemble with NBSVM buys (the weight chosen on validation), McNemar's
test on the same reviews, and what each costs (parameters, training time, inference speed). Theory: THEORY.md
§8 and §14. The RNNs and their training are sentiment_model.py's; the baselines and the tests baselines.py's.
Run: python 02_sentiment/model_comparison.py [--quick] [--SEEDS=0,1,2,3,4] [--DATASET=chinese_reviews |
     --CSV=file.csv]
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import numpy as np
import torch

from baselines import (
    NBChannelClassifier,
    average_probabilities,
    choose_weight,
    cross_fitted_accuracy,
    cross_fitted_nb_channel,
    mcnemar,
    nbsvm_baseline,
    tfidf_baseline,
)
from sentiment_model import (
    SentimentClassifier,
    binary_metrics,
    dataset_folder,
    dataset_name,
    encode_reviews,
    predict_proba,
    prepare_sentiment_data,
    test_sentiment_model,
    train_sentiment_model,
)
from utils.model_utils import count_parameters, log_mean_probability
from utils.script_utils import (
    AtLeast,
    Fraction,
    Items,
    OneOf,
    Positive,
    Seed,
    apply_dataset_settings,
    get_device,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
)
from utils.visualization import plot_bars

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                        # seeds the baselines' run order; each RNN run is seeded from SEEDS
SEEDS: Items(Seed) = (0, 1, 2, 3, 4)  # one training run per seed and model: mean ± std over these, and their
                                      # averaged probabilities as the "ensemble" row (5 = the twins' ENSEMBLE)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train
IMPL: OneOf("torch", "scratch") = "torch"  # nn.LSTM/nn.GRU | scratch: 01's ScratchLSTM/ScratchGRU
DATASET: OneOf("rotten_tomatoes", "chinese_reviews", "imdb") = "rotten_tomatoes"  # which reviews
                                      # rotten_tomatoes, chinese_reviews (offline) | imdb (downloads 84 MB)
CSV: str = ""                         # your own labelled reviews instead (a UTF-8 CSV: text, label columns)
EPOCHS: AtLeast(1) = 12               # upper bound per run (early stopping on validation accuracy)
PATIENCE: AtLeast(1) = 3              # early-stopping patience in epochs
BATCH_SIZE: AtLeast(1) = 64           # reviews per batch (bucketed by length)
LR: Positive = 2e-3                   # AdamW learning rate
WEIGHT_DECAY: AtLeast(0.0) = 1e-2     # AdamW weight decay
CLIP: AtLeast(0.0) = 1.0              # gradient-norm clipping, 0 = off (THEORY.md §9)
MIN_FREQ: AtLeast(1) = 2              # vocabulary: minimum training count of a word
MAX_VOCAB: AtLeast(0) = 20000         # vocabulary size cap (0 = no cap)
MAX_LEN: AtLeast(1) = 100             # truncate reviews to this many tokens
EMBED_DIM: AtLeast(1) = 128           # word vector size (both models)
HIDDEN_SIZE: AtLeast(1) = 64          # state size per direction (both models: the GRU has fewer parameters)
NUM_LAYERS: AtLeast(1) = 1            # stacked recurrent layers
BIDIRECTIONAL: bool = True            # both directions, as in the twin scripts
DROPOUT: Fraction = 0.5               # on the pooled review vector
EMBED_DROPOUT: Fraction = 0.3         # on the word vectors
LIMIT: AtLeast(0) = 0                 # keep only the first LIMIT training reviews (0 = all; else >= 8)
NB_CHANNEL: bool = False              # as the twins: each word's NB log-count ratio enters beside its vector

# chinese_reviews: the twins' longer MAX_LEN for its longer reviews (one token per Han character; README)
DATASET_SETTINGS = {"chinese_reviews": dict(MAX_LEN=(100, 200))}
QUICK_SETTINGS = dict(SEEDS=(0, 1), LIMIT=300, EPOCHS=1, EMBED_DIM=16, HIDDEN_SIZE=16, MAX_LEN=30)
CHECKS = [(lambda: LIMIT == 0 or LIMIT >= 8, "LIMIT must be 0 (all reviews) or at least 8, so that "
                                             "validation and test keep LIMIT // 4 >= 2 reviews each"),
          (lambda: not CSV or DATASET == "rotten_tomatoes", "--CSV replaces --DATASET: give one of them")]
MODELS = ("lstm", "gru")
BASELINES = {"tfidf+logreg": "TF-IDF + logistic regression", "nbsvm": "NBSVM"}


def build_model(cell: str, vocab_size: int, device, nb_channel: dict | None = None):
    """The twins' model (sentiment_model.SentimentClassifier) with this script's sizes; NB_CHANNEL: each
    word's NB log-count ratio beside its vector (baselines.NBChannelClassifier, nb_channel its ratios)."""
    model_class = NBChannelClassifier if NB_CHANNEL else SentimentClassifier
    model = model_class(vocab_size, cell=cell, impl=IMPL, embed_dim=EMBED_DIM, hidden_size=HIDDEN_SIZE,
                        num_layers=NUM_LAYERS, bidirectional=BIDIRECTIONAL, dropout=DROPOUT,
                        embed_dropout=EMBED_DROPOUT, word_channels=int(NB_CHANNEL), device=device).to(device)
    if NB_CHANNEL and nb_channel is not None:  # cross-fitted for the training reviews
        model.set_word_features(nb_channel["word_features"], nb_channel["fold_features"])
    return model


def run_rnn(cell: str, seed: int, device) -> dict:
    """Train one LSTM or GRU with `seed` (weights and batch order) and measure it on the test split."""
    data = prepare_sentiment_data(DATASET, min_freq=MIN_FREQ, max_vocab=MAX_VOCAB, max_len=MAX_LEN,
                                  batch_size=BATCH_SIZE, limit=LIMIT, seed=seed, csv=CSV)
    nb_channel = cross_fitted_nb_channel(data) if NB_CHANNEL else None  # the ratios; batches with folds
    model, result = train_sentiment_model(  # one model (members=1), its weights seeded with `seed`
        lambda vocab_size, dev: build_model(cell, vocab_size, dev, nb_channel), data, device, members=1,
        seed=seed, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY, patience=PATIENCE, clip=CLIP,
        train_loader=nb_channel["train_loader"] if NB_CHANNEL else None)
    fit = result["members"][0]
    test = test_sentiment_model(model, data["loaders"]["test"], device)
    probs = {}  # P(positive) of each validation and test review, in split order
    for part in ("val", "test"):
        encoded, _ = encode_reviews(data["texts"][part][0], data["vocab"], MAX_LEN)
        probs[f"{part}_probs"] = predict_proba(model, encoded, device)
    return {**test, "parameters": count_parameters(model), "train_time_s": fit["train_time_s"],
            "best_epoch": fit["best_epoch"], "val_accuracy": fit["best_value"], "texts": data["texts"],
            **probs}


def mean_probability(runs: list[dict], key: str = "test_probs") -> np.ndarray:
    """The runs' P(positive) averaged by log_mean_probability, the averager SentimentEnsemble uses -> (N,)."""
    p = [torch.tensor(r[key], dtype=torch.float64) for r in runs]               # M x (N,) P(positive)
    logits = [torch.stack([torch.log1p(-q), torch.log(q)], dim=1) for q in p]   # M x (N, 2): log-probs
    return log_mean_probability(logits).exp()[:, 1].numpy()                     # (N,) mean P(positive)


def ensemble_of(runs: list[dict], labels: list[int]) -> tuple[dict, np.ndarray]:
    """The seed ensemble of one cell: the runs' test probabilities averaged (by log_mean_probability, the
    averager SentimentEnsemble uses), then thresholded at 0.5.
    Its cost is the sum of the runs' (training time, parameters); its speed is one run's divided by n.
    -> (metrics, which test reviews it gets right)."""
    preds = mean_probability(runs) >= 0.5
    metrics = binary_metrics(torch.as_tensor(preds).long(), torch.as_tensor(labels))
    metrics.update(parameters=sum(r["parameters"] for r in runs),
                   train_time_s=sum(r["train_time_s"] for r in runs),
                   reviews_per_s=float(np.mean([r["reviews_per_s"] for r in runs])) / len(runs))
    return metrics, preds == np.asarray(labels, bool)


def combine_with_nbsvm(runs: list[dict], nbsvm: dict, texts: dict) -> tuple[dict, np.ndarray]:
    """One cell's seed ensemble averaged with NBSVM: P = w * P_ensemble + (1 - w) * P_nbsvm, w chosen on
    validation (baselines.choose_weight), then applied once to the test split.
    -> (metrics with 'weight' and the honest 'val_accuracy' (cross-fitted), which test reviews it gets
    right)."""
    (_, y_val), (_, y_test) = texts["val"], texts["test"]
    p_val = mean_probability(runs, "val_probs")
    w = choose_weight(p_val, nbsvm["val_probs"], y_val)
    preds = average_probabilities(mean_probability(runs), nbsvm["test_probs"], w) >= 0.5
    metrics = binary_metrics(torch.as_tensor(preds).long(), torch.as_tensor(y_test))
    metrics.update(weight=w, val_accuracy=cross_fitted_accuracy(p_val, nbsvm["val_probs"], y_val),
                   parameters=sum(r["parameters"] for r in runs) + nbsvm["parameters"],
                   train_time_s=sum(r["train_time_s"] for r in runs) + nbsvm["train_time_s"])
    return metrics, preds == np.asarray(y_test, bool)


def summarize(runs: dict) -> dict:
    """{model: [run, ...]} -> {model: {metric: (mean, std)}}: the sample std over seeds (ddof=1, as in
    06_comparison), 0 for a single run."""
    keys = ("accuracy", "f1", "loss", "val_accuracy", "weight", "parameters", "train_time_s", "reviews_per_s")
    std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {m: {k: (float(np.mean([r[k] for r in rs])), std([r[k] for r in rs]))
                for k in keys if k in rs[0]} for m, rs in runs.items()}


def verdict(summary: dict, tests: dict, best: str) -> list[str]:
    """Plain-words judgement of each RNN against the best classic baseline `best` (the one with the higher
    validation accuracy), from the measured numbers only. Single models: the gap against two seed-stds.
    Ensembles and their averages with NBSVM: McNemar's test against the baseline on the same reviews."""
    base_acc, base_name = summary[best]["accuracy"][0], BASELINES[best]
    base_time, base_params = summary[best]["train_time_s"][0], summary[best]["parameters"][0]
    lines = [f"Best classic baseline, picked on validation accuracy: {base_name}. " + "; ".join(
        f"{BASELINES[b]}: validation {100 * summary[b]['val_accuracy'][0]:.1f}%, test "
        f"{100 * summary[b]['accuracy'][0]:.1f}%" for b in BASELINES) + "."]
    combos = tuple(f"{c} ensemble + nbsvm" for c in MODELS)
    for m in MODELS + tuple(f"{c} ensemble" for c in MODELS) + combos:
        if m not in summary:
            continue
        acc, std = summary[m]["accuracy"]
        gap = 100 * (acc - base_acc)
        if m in tests:  # one ensemble vs one baseline on the same reviews
            t = tests[m]
            significant = t["p"] < 0.05
            evidence = (f"McNemar p={t['p']:.3f}: {t['only_first_right']} reviews only it gets right, "
                        f"{t['only_second_right']} only the baseline")
            shown = f"{100 * acc:.1f}% test accuracy, {len(SEEDS)} models averaged"
            if m in combos:
                shown += (f" with NBSVM at weight w={summary[m]['weight'][0]:.2f} on the ensemble; "
                          f"cross-fitted validation {100 * summary[m]['val_accuracy'][0]:.1f}% vs NBSVM's "
                          f"{100 * summary['nbsvm']['val_accuracy'][0]:.1f}%")
        else:
            significant = abs(gap) > max(200 * std, 0.5)  # inside two seed-stds (or 0.5 points): no result
            evidence = "the gap is more than two seed-stds" if significant else "within seed noise"
            shown = f"{100 * acc:.1f}% ± {100 * std:.1f} test accuracy over {len(SEEDS)} seeds"
        if significant:
            judged = (f"{'beats' if gap > 0 else 'falls short of'} the {base_name} baseline "
                      f"by {abs(gap):.1f} points ({evidence})")
        else:
            judged = f"is level with the {base_name} baseline ({gap:+.1f} points; {evidence})"
        cost = summary[m]["train_time_s"][0] / max(base_time, 1e-9)
        lines.append(f"The {m.upper()} ({shown}) {judged}; baseline {100 * base_acc:.1f}%, with "
                     f"{summary[m]['parameters'][0] / base_params:.0f}x its parameters and "
                     f"{cost:.0f}x its training time.")
    lstm, gru = summary["lstm"]["accuracy"][0], summary["gru"]["accuracy"][0]
    share = summary["gru"]["parameters"][0] / summary["lstm"]["parameters"][0]
    lines.append(f"LSTM vs GRU: {abs(100 * (lstm - gru)):.1f} points apart "
                 f"({'LSTM' if lstm > gru else 'GRU'} ahead); the GRU has {share:.0%} of the LSTM's "
                 f"parameters.")
    return lines


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    cfg.update(apply_dataset_settings(globals(), DATASET, quick=cfg["QUICK"]))  # never over your own values
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, dataset_folder(DATASET, CSV), quick=cfg["QUICK"])  # RT: no subfolder
    dataset = dataset_name(DATASET, CSV)  # DATASET, or csv:<file name>
    runs = {m: [] for m in MODELS}
    for seed in SEEDS:
        for m in MODELS:
            print(f"\n== {m.upper()}, seed {seed} ==")
            runs[m].append(run_rnn(m, seed, device))
    texts = runs["lstm"][0]["texts"]
    labels = texts["test"][1]
    # the baselines are deterministic given the split: one fit is their only "seed"; std is reported as 0
    runs["tfidf+logreg"] = [tfidf_baseline(texts)]
    runs["nbsvm"] = [nbsvm_baseline(texts)]
    runs["nbsvm"][0].pop("model")
    best = max(BASELINES, key=lambda b: runs[b][0]["val_accuracy"])   # chosen on validation, never on test
    base_right = {b: np.asarray(runs[b][0].pop("predictions")) == np.asarray(labels) for b in BASELINES}
    print(f"\nBest classic baseline on validation: {BASELINES[best]} "
          f"({100 * runs[best][0]['val_accuracy']:.1f}%); every model is tested against it with McNemar's "
          f"test.")
    tests = {}
    if len(SEEDS) > 1:
        for m in MODELS:
            ens, ens_right = ensemble_of(runs[m], labels)
            runs[f"{m} ensemble"] = [ens]
            tests[f"{m} ensemble"] = mcnemar(ens_right, base_right[best])
        for m in MODELS:
            combo, combo_right = combine_with_nbsvm(runs[m], runs["nbsvm"][0], texts)
            runs[f"{m} ensemble + nbsvm"] = [combo]
            tests[f"{m} ensemble + nbsvm"] = mcnemar(combo_right, base_right[best])
    for m in MODELS + ("nbsvm",):
        for r in runs[m]:
            r.pop("texts", None)
            for key in ("val_probs", "test_probs"):  # kept, so combinations can be recomputed without
                                                     # retraining
                r[key] = [round(p, 4) for p in r[key]]
    summary = summarize(runs)
    names = list(runs)
    print_table([{"model": m,
                  **{k: f"{a:.4f} ± {s:.4f}" if k in ("accuracy", "f1", "loss", "val_accuracy") else
                                 f"{a:,.0f}" if k == "parameters" else f"{a:.2f}" if k == "weight" else
                                 f"{a:.1f} ± {s:.1f}" for k, (a, s) in summary[m].items()}} for m in names],
                title=f"{dataset}, test split, {len(SEEDS)} seed(s) for the RNNs (ensemble: their mean "
                      f"probability; + nbsvm: averaged with NBSVM, w and a cross-fitted val_accuracy from "
                      f"validation)")
    plot_bars(["准确率 / accuracy", "F1"],
              {m: [summary[m]["accuracy"][0], summary[m]["f1"][0]] for m in names},
              out / "comparison.png", ylabel="测试集得分 / test score",
              title=f"LSTM、GRU、TF-IDF+LR 与 NBSVM（{dataset}）\n"
                    f"LSTM vs GRU vs TF-IDF+LR vs NBSVM ({dataset})",
              errors={m: [summary[m]["accuracy"][1], summary[m]["f1"][1]] for m in names})
    conclusion = verdict(summary, tests, best)
    print("\n".join(conclusion))
    metrics = {m: {k: {"mean": a, "std": s} for k, (a, s) in summary[m].items()} for m in names}
    save_metrics(out, config=cfg, metrics=metrics,
                 extra={"runs": runs, "conclusion": conclusion, "best_baseline": best,
                        "mcnemar_vs_baseline": tests, "seeds": list(SEEDS)},
                 start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

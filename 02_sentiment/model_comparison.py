"""LSTM vs GRU vs a TF-IDF + logistic-regression baseline on the same fixed review split, over several seeds.

Teaches: judging a neural model against a cheap bag-of-words yardstick, with mean ± std over seeds,
what averaging the seeds' models buys (a seed ensemble, what sentiment_lstm.py's ENSEMBLE trains),
and counting what each costs (parameters, training time, inference speed). Theory: THEORY.md §8.
Run: python 02_sentiment/model_comparison.py [--quick] [--SEEDS=0,1,2,3,4]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import numpy as np
import torch

from utils.model_utils import count_parameters, log_mean_probability
from utils.script_utils import (get_device, output_dir, parse_config, print_table, run_main, save_metrics,
                                set_seed)
from utils.visualization import plot_bars
from sentiment_model import (SentimentClassifier, binary_metrics, encode_reviews, predict_proba,
                             prepare_sentiment_data, test_sentiment_model, tfidf_baseline, train_sentiment_model)

# ==== Hyperparameters (edit me) ====
SEED = 0                      # seeds the baseline's run order; each RNN run is seeded from SEEDS
SEEDS = (0, 1, 2, 3, 4)       # one training run per seed and model: mean ± std over these, and their
                              # averaged probabilities as the "ensemble" row (5 = the scripts' ENSEMBLE)
DEVICE = "auto"               # auto | cpu | cuda | mps
IMPL = "torch"                # torch: nn.LSTM/nn.GRU | scratch: 01_basic_theory's ScratchLSTM/ScratchGRU
DATASET = "rotten_tomatoes"   # rotten_tomatoes (offline) | imdb (downloads 84 MB)
EPOCHS = 12                   # >= 1, upper bound per run (early stopping on validation accuracy)
PATIENCE = 3                  # >= 1, early-stopping patience in epochs
BATCH_SIZE = 64               # >= 1 reviews per batch (bucketed by length)
LR = 2e-3                     # > 0, AdamW learning rate
WEIGHT_DECAY = 1e-2           # >= 0, AdamW weight decay
CLIP = 1.0                    # > 0 gradient-norm clipping, 0 = off (THEORY.md §9)
MIN_FREQ = 2                  # >= 1, vocabulary: minimum training count of a word
MAX_VOCAB = 20000             # vocabulary size cap (0 = no cap)
MAX_LEN = 100                 # >= 1, truncate reviews to this many tokens
EMBED_DIM = 128               # >= 1, word vector size (both models)
HIDDEN_SIZE = 64              # >= 1, state size per direction (both models: the GRU ends up with fewer parameters)
NUM_LAYERS = 1                # >= 1 stacked recurrent layers
BIDIRECTIONAL = True          # both directions, as in the twin scripts
DROPOUT = 0.5                 # 0-1, on the pooled review vector
EMBED_DROPOUT = 0.3           # 0-1, on the word vectors
LIMIT = 0                     # keep only the first LIMIT training reviews (0 = all)

QUICK_SETTINGS = dict(SEEDS=(0, 1), LIMIT=300, EPOCHS=1, EMBED_DIM=16, HIDDEN_SIZE=16, MAX_LEN=30)
CHOICES = {"IMPL": ("torch", "scratch"), "DATASET": ("rotten_tomatoes", "imdb")}
MODELS = ("lstm", "gru")


def run_rnn(cell: str, seed: int, device) -> dict:
    """Train one LSTM or GRU with `seed` (weights and batch order) and measure it on the test split."""
    set_seed(seed)
    data = prepare_sentiment_data(DATASET, min_freq=MIN_FREQ, max_vocab=MAX_VOCAB, max_len=MAX_LEN,
                                  batch_size=BATCH_SIZE, limit=LIMIT, seed=seed)
    model = SentimentClassifier(len(data["vocab"]), cell=cell, impl=IMPL, embed_dim=EMBED_DIM,
                                hidden_size=HIDDEN_SIZE, num_layers=NUM_LAYERS, bidirectional=BIDIRECTIONAL,
                                dropout=DROPOUT, embed_dropout=EMBED_DROPOUT, device=device).to(device)
    fit = train_sentiment_model(model, data, device, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY,
                                patience=PATIENCE, clip=CLIP)
    test = test_sentiment_model(model, data["loaders"]["test"], device)
    encoded, _ = encode_reviews(data["texts"]["test"][0], data["vocab"], MAX_LEN)
    return {**test, "parameters": count_parameters(model), "train_time_s": fit["train_time_s"],
            "best_epoch": fit["best_epoch"], "val_accuracy": fit["best_value"], "texts": data["texts"],
            "test_probs": predict_proba(model, encoded, device)}  # P(positive), in test-split order


def ensemble_of(runs: list[dict], labels: list[int]) -> tuple[dict, np.ndarray]:
    """The seed ensemble of one cell: the runs' test probabilities averaged (by log_mean_probability, the
    averager SentimentEnsemble uses), then thresholded at 0.5.
    Its cost is the sum of the runs' (training time, parameters); its speed is one run's divided by n.
    -> (metrics, which test reviews it gets right)."""
    p = [torch.tensor(r["test_probs"], dtype=torch.float64) for r in runs]       # M x (N,) P(positive)
    logits = [torch.stack([torch.log1p(-q), torch.log(q)], dim=1) for q in p]   # M x (N, 2): log-probs are logits
    mean_p = log_mean_probability(logits).exp()[:, 1]                           # (N,) the runs' mean P(positive)
    preds = (mean_p >= 0.5).numpy()
    metrics = binary_metrics(torch.as_tensor(preds).long(), torch.as_tensor(labels))
    metrics.update(parameters=sum(r["parameters"] for r in runs), train_time_s=sum(r["train_time_s"] for r in runs),
                   reviews_per_s=float(np.mean([r["reviews_per_s"] for r in runs])) / len(runs))
    return metrics, preds == np.asarray(labels, bool)


def summarize(runs: dict) -> dict:
    """{model: [run, ...]} -> {model: {metric: (mean, std)}}: the sample std over seeds (ddof=1, as in
    06_comparison), 0 for a single run."""
    keys = ("accuracy", "f1", "loss", "parameters", "train_time_s", "reviews_per_s")
    std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {m: {k: (float(np.mean([r[k] for r in rs])), std([r[k] for r in rs]))
                for k in keys if k in rs[0]} for m, rs in runs.items()}


def mcnemar(a_right, b_right) -> dict:
    """McNemar's exact test of two classifiers on the same test reviews: only the reviews where exactly
    one of them is right carry information; under "equally good" each such review is a fair coin flip."""
    from scipy.stats import binomtest

    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p": float(p)}


def verdict(summary: dict, tests: dict) -> list[str]:
    """Plain-words judgement of each RNN against the baseline, from the measured numbers only.
    Single models: the gap against two seed-stds. Ensembles: McNemar's test against the baseline."""
    base_acc, _ = summary["tfidf+logreg"]["accuracy"]
    base_time, _ = summary["tfidf+logreg"]["train_time_s"]
    base_params = summary["tfidf+logreg"]["parameters"][0]
    lines = []
    for m in MODELS + tuple(f"{c} ensemble" for c in MODELS):
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
        else:
            significant = abs(gap) > max(200 * std, 0.5)  # inside two seed-stds (or 0.5 points): no result
            evidence = "the gap is more than two seed-stds" if significant else "within seed noise"
            shown = f"{100 * acc:.1f}% ± {100 * std:.1f} test accuracy over {len(SEEDS)} seeds"
        if significant:
            judged = (f"{'beats' if gap > 0 else 'falls short of'} the TF-IDF + logistic-regression baseline "
                      f"by {abs(gap):.1f} points ({evidence})")
        else:
            judged = f"is level with the TF-IDF + logistic-regression baseline ({gap:+.1f} points; {evidence})"
        cost = summary[m]["train_time_s"][0] / max(base_time, 1e-9)
        lines.append(f"The {m.upper()} ({shown}) {judged}; baseline {100 * base_acc:.1f}%, with "
                     f"{summary[m]['parameters'][0] / base_params:.0f}x its parameters and {cost:.0f}x its training time.")
    lstm, gru = summary["lstm"]["accuracy"][0], summary["gru"]["accuracy"][0]
    lines.append(f"LSTM vs GRU: {abs(100 * (lstm - gru)):.1f} points apart "
                 f"({'LSTM' if lstm > gru else 'GRU'} ahead); the GRU has "
                 f"{summary['gru']['parameters'][0] / summary['lstm']['parameters'][0]:.0%} of the LSTM's parameters.")
    return lines


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__)
    runs = {m: [] for m in MODELS}
    for seed in SEEDS:
        for m in MODELS:
            print(f"\n== {m.upper()}, seed {seed} ==")
            runs[m].append(run_rnn(m, seed, device))
    texts = runs["lstm"][0]["texts"]
    labels = texts["test"][1]
    # deterministic given the split: one fit is its only "seed"; std is reported as 0
    base = tfidf_baseline(texts)
    base_right = np.asarray(base.pop("predictions")) == np.asarray(labels)
    runs["tfidf+logreg"] = [base]
    tests = {}
    if len(SEEDS) > 1:
        for m in MODELS:
            ens, ens_right = ensemble_of(runs[m], labels)
            runs[f"{m} ensemble"] = [ens]
            tests[f"{m} ensemble"] = mcnemar(ens_right, base_right)
    for m in MODELS:
        for r in runs[m]:
            r.pop("texts", None)
            r["test_probs"] = [round(p, 4) for p in r["test_probs"]]
    summary = summarize(runs)
    names = list(runs)
    print_table([{"model": m, **{k: f"{a:.4f} ± {s:.4f}" if k in ("accuracy", "f1", "loss") else
                                 f"{a:,.0f}" if k == "parameters" else f"{a:.1f} ± {s:.1f}"
                                 for k, (a, s) in summary[m].items()}} for m in names],
                title=f"{DATASET}, test split, {len(SEEDS)} seed(s) for the RNNs (ensemble: their mean probability)")
    plot_bars(["accuracy", "F1"], {m: [summary[m]["accuracy"][0], summary[m]["f1"][0]] for m in names},
              out / "comparison.png", ylabel="test score", title=f"LSTM vs GRU vs TF-IDF+LR ({DATASET})",
              errors={m: [summary[m]["accuracy"][1], summary[m]["f1"][1]] for m in names})
    conclusion = verdict(summary, tests)
    print("\n".join(conclusion))
    metrics = {m: {k: {"mean": a, "std": s} for k, (a, s) in summary[m].items()} for m in names}
    save_metrics(out, config=cfg, metrics=metrics, extra={"runs": runs, "conclusion": conclusion,
                                                          "mcnemar_vs_baseline": tests, "seeds": list(SEEDS)},
                 start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

"""Beyond accuracy: confusion matrix, per-class precision/recall/F1, one-vs-rest ROC/AUC, calibration
(reliability diagram + ECE) and the misclassified series, for the LSTM and GRU of sequence_lstm.py /
sequence_gru.py (each as its twin saved it: by default a 5-model ensemble, analysed as one model),
against 1-nearest-neighbour baselines (Euclidean and DTW) on the same official split; every formula is below.
Run: python 05_seq_classify/classification_metrics.py [--DATASET=JapaneseVowels] [--quick]
Theory: THEORY.md §8 (a seed ensemble's mean probability); the models' mechanism is in series_model.py.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

import numpy as np

import series_model
from utils.data_utils import load_ucr_dataset
from utils.model_utils import confusion_matrix, ensemble_member_seeds
from utils.script_utils import (
    AtLeast,
    Interval,
    OneOf,
    Seed,
    get_device,
    load_case_script,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_json,
    save_metrics,
    set_seed,
    shown_path,
)
from utils.visualization import plot_confusion_matrix

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
DATASET: str = "GunPoint"     # a UCR/UEA problem bundled with sktime (as in sequence_lstm.py)
DOWNLOAD: bool = False        # True: let sktime fetch a problem it does not bundle (needs internet)
SEED: Seed = 0                # the seed whose checkpoints are analysed (the twins' first seed)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to run the models
IMPL: OneOf("torch", "scratch") = "torch"  # which layer runs the saved weights (and trains missing models)
RETRAIN: bool = False         # True: train fresh models here even if the twins' checkpoints exist
DTW_WINDOW: Interval("(0, 1]") = 0.1  # Sakoe-Chiba band half-width, a fraction of the longest series
                                      # (1 = no band)
CALIBRATION_BINS: AtLeast(1) = 10  # confidence bins of the reliability diagram and ECE
N_MISCLASSIFIED: AtLeast(0) = 6  # misclassified test series to plot per model
MAX_TEST: AtLeast(0) = 0      # 0 = every test series; N = a random subset (smoke tests)

QUICK_SETTINGS = dict(RETRAIN=True, MAX_TEST=40, N_MISCLASSIFIED=3)
TWINS = {"lstm": "sequence_lstm.py", "gru": "sequence_gru.py"}


# ----------------------------------------------------------------------------------------------------
# The metrics, written with numpy so each formula is visible (the confusion matrix is utils')
# ----------------------------------------------------------------------------------------------------
def per_class_report(cm) -> dict:
    """cm: (classes, classes), cm[i, j] = true class i predicted as j. Precision = TP/(TP+FP) (a column of
    cm), recall = TP/(TP+FN) (a row), F1, support (row sum); plus macro (plain mean over classes) and
    weighted (mean weighted by support) averages."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    support = cm.sum(1)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    w = support / max(support.sum(), 1)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int),
            "macro": {"precision": precision.mean(), "recall": recall.mean(), "f1": f1.mean()},
            "weighted": {"precision": (w * precision).sum(), "recall": (w * recall).sum(),
                         "f1": (w * f1).sum()},
            "accuracy": tp.sum() / max(cm.sum(), 1)}


def roc_curve(is_positive, scores) -> tuple:
    """ROC of one class against the rest: thresholds at every distinct score, highest first.
    is_positive, scores: (n,). -> fpr, tpr (arrays from (0, 0) to (1, 1)), AUC by the trapezoid rule
    (nan if one class is absent)."""
    is_positive, scores = np.asarray(is_positive, dtype=bool), np.asarray(scores, dtype=float)
    P, N = is_positive.sum(), (~is_positive).sum()
    if P == 0 or N == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, pos = scores[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # equal scores move together
    tpr = np.r_[0.0, np.cumsum(pos)[last_of_tie] / P]
    fpr = np.r_[0.0, np.cumsum(~pos)[last_of_tie] / N]
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def calibration(probs, y_true, bins: int = 10) -> dict:
    """Reliability of the top-class probability: split predictions into equal-width confidence bins;
    ECE = sum over bins of (bin share) * |accuracy in bin - mean confidence in bin|. probs: (n, classes)."""
    probs = np.asarray(probs)
    confidence, pred = probs.max(1), probs.argmax(1)
    correct = (pred == np.asarray(y_true)).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 joins the top bin
    rows = []
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            acc, conf = correct[members].mean(), confidence[members].mean()
            ece += members.mean() * abs(acc - conf)
            rows.append({"bin": b, "low": b / bins, "high": (b + 1) / bins, "count": int(members.sum()),
                         "accuracy": float(acc), "confidence": float(conf)})
    return {"ece": float(ece), "bins": rows}


# ----------------------------------------------------------------------------------------------------
# The baselines: 1-nearest-neighbour with Euclidean distance and with dynamic time warping
# ----------------------------------------------------------------------------------------------------
def dtw_distance(a, b, window: int | None = None) -> float:
    """Dynamic time warping between two series a: (n, channels), b: (m, channels), written as the
    textbook recursion: D[i, j] = cost(i, j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1]), cost = squared
    Euclidean distance of the two steps; only cells with |i - j| <= window are allowed (Sakoe-Chiba
    band, widened to |n - m| so the end is reachable). Returns sqrt(D[n, m]). O(n * m): the reference
    that `dtw_distances` (vectorised over many pairs) is tested against."""
    n, m = len(a), len(b)
    r = max(n, m) if window is None else max(window, abs(n - m))
    D = np.full((n + 1, m + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(max(1, i - r), min(m, i + r) + 1):
            cost = float(np.sum((a[i - 1] - b[j - 1]) ** 2))
            D[i, j] = cost + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return float(np.sqrt(D[n, m]))


def dtw_distances(A: list, B: list, window: int | None = None, chunk: int = 20000):
    """DTW (as `dtw_distance`) between every series of A and every series of B -> (len(A), len(B)).

    Same recursion, but each cell (i, j) is computed for many (a, b) pairs at once: pairs are a numpy
    axis, the double loop over i, j stays in Python. Series of different lengths are padded; a pair's
    answer is read at its own (n, m), and cells beyond it never feed into that cell."""

    def stack(S):  # [(len_k, channels)] -> (len(S), longest, channels) zero-padded, lengths (len(S),)
        L = np.array([len(s) for s in S])
        X = np.zeros((len(S), L.max(), S[0].shape[1]))
        for k, s in enumerate(S):
            X[k, : len(s)] = s
        return X, L

    XA, LA = stack(A)
    XB, LB = stack(B)
    ia, ib = np.meshgrid(np.arange(len(A)), np.arange(len(B)), indexing="ij")
    ia, ib = ia.ravel(), ib.ravel()
    out = np.empty(len(ia))
    n_max, m_max = XA.shape[1], XB.shape[1]
    for start in range(0, len(ia), chunk):
        pa, pb = ia[start:start + chunk], ib[start:start + chunk]
        la, lb = LA[pa], LB[pb]
        r = np.maximum(max(n_max, m_max) if window is None else window, np.abs(la - lb))  # per-pair band
        prev = np.full((len(pa), m_max + 1), np.inf)  # row i-1 of D for every pair: (pairs, m_max + 1)
        prev[:, 0] = 0.0
        final = np.empty(len(pa))
        for i in range(1, n_max + 1):
            cost = ((XA[pa, i - 1][:, None, :] - XB[pb]) ** 2).sum(-1)  # (pairs, m_max): step i vs every j
            cur = np.full_like(prev, np.inf)
            for j in range(max(1, i - int(r.max())), min(m_max, i + int(r.max())) + 1):
                best = np.minimum(np.minimum(prev[:, j], cur[:, j - 1]), prev[:, j - 1])
                cur[:, j] = np.where(np.abs(i - j) <= r, cost[:, j - 1] + best, np.inf)
            prev = cur
            done = la == i  # pairs whose series a ends at step i: read D[n, m] now
            final[done] = prev[done, lb[done]]
        out[start:start + chunk] = np.sqrt(final)
    return out.reshape(len(A), len(B))


def euclidean_distances(A: list, B: list):
    """Euclidean distance between equal-length series: (len(A), len(B)). Undefined for unequal lengths."""
    XA = np.stack([a.ravel() for a in A])  # (len(A), time*channels)
    XB = np.stack([b.ravel() for b in B])
    sq = (XA ** 2).sum(1)[:, None] + (XB ** 2).sum(1)[None, :] - 2 * XA @ XB.T
    return np.sqrt(np.maximum(sq, 0))


def nearest_neighbour_predict(distances, y_train):
    """1-NN: each test series takes the label of its closest training series. distances: (test, train)."""
    return np.asarray(y_train)[np.asarray(distances).argmin(1)]


# ----------------------------------------------------------------------------------------------------
# The analysis
# ----------------------------------------------------------------------------------------------------
def get_trained_model(cell: str, data: dict, device, out, quick: bool) -> list:
    """The twin's checkpoint from its full run
    (outputs/05_seq_classify/sequence_<cell>/<DATASET>/checkpoint.pt, never a --quick run's), or, if there
    is none (or RETRAIN), one trained here with the twin's own settings and train_member (with --quick, the
    twin's --quick settings). -> its members (an ensemble, as the twin trains by default)."""
    twin = load_case_script(pathlib.Path(__file__).with_name(TWINS[cell]), quick=quick)
    path = output_dir(twin.__file__, sub=DATASET, create=False) / "checkpoint.pt"
    if path.is_file() and not RETRAIN:
        print(f"{cell.upper()}: using {shown_path(path)}")
        return series_model.load_series_members(path, IMPL, device, cell=cell, dataset=DATASET,
                                                script=pathlib.Path(__file__).name)
    why = "RETRAIN is set" if RETRAIN else f"no checkpoint at {shown_path(path)}"
    print(f"{cell.upper()}: {why}: training one here with {TWINS[cell]}'s settings "
          f"(saved to {shown_path(out / cell)})")
    twin.IMPL = IMPL
    members = [twin.train_member(data, seed, device, progress=None)
               for seed in ensemble_member_seeds(SEED, twin.ENSEMBLE)]
    series_model.ensemble_result(members, data, SEED, out / cell)
    return series_model.load_series_members(out / cell / "checkpoint.pt", IMPL, device, cell=cell,
                                            dataset=DATASET)


def nearest_neighbour_baselines(data: dict, test_idx) -> dict:
    """1-NN with Euclidean distance (equal lengths only) and with DTW, on the full official training set
    (no validation needed: nothing is tuned), z-scored per channel with training statistics as for the
    RNNs. -> {name: (predictions, seconds)}; also the train-train DTW matrix for the class medoids."""
    X, y = data["train"]
    scaler = series_model.ChannelScaler().fit(X)
    X = scaler.transform(X)
    X_test = scaler.transform([data["test"][0][i] for i in test_idx])
    window = max(1, int(round(DTW_WINDOW * data["lengths"][1])))
    results = {}
    if data["lengths"][0] == data["lengths"][1]:
        t = time.time()
        results["1-NN Euclidean"] = (nearest_neighbour_predict(euclidean_distances(X_test, X), y),
                                     time.time() - t)
    else:
        print("1-NN Euclidean skipped: the series have different lengths (Euclidean distance needs equal "
              "ones).")
    t = time.time()
    results[f"1-NN DTW (window {window})"] = (nearest_neighbour_predict(dtw_distances(X_test, X, window), y),
                                              time.time() - t)
    return results, X, X_test, dtw_distances(X, X, window)


def class_medoids(X: list, y, train_dtw) -> dict:
    """For each class, its training series with the smallest total DTW distance to the rest of its class:
    a real series that is typical of the class (a mean would blur misaligned shapes)."""
    medoids = {}
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        medoids[int(c)] = X[members[train_dtw[np.ix_(members, members)].sum(1).argmin()]]
    return medoids


def analyse(name: str, probs, y_true, classes, out) -> dict:
    """Every metric of one model from its probabilities (n_test, classes); writes its confusion matrix
    and ROC curves, returns numbers."""
    pred = probs.argmax(1)
    cm = confusion_matrix(y_true, pred, len(classes))
    report = per_class_report(cm)
    rocs = {f"class {c}": roc_curve(y_true == k, probs[:, k]) for k, c in enumerate(classes)}
    cal = calibration(probs, y_true, CALIBRATION_BINS)
    plot_confusion_matrix(cm, classes, out / f"confusion_{name.lower()}.png",
                          title=f"{name}，{DATASET}（测试集）\n{name} on {DATASET} (test)", normalize=True)
    series_model.plot_roc_curves(rocs, out / f"roc_{name.lower()}.png",
                                 title=f"{name}：{DATASET} 上一对其余的 ROC\n"
                                       f"{name}: one-vs-rest ROC on {DATASET}")
    return {"accuracy": report["accuracy"], "macro": report["macro"], "weighted": report["weighted"],
            "per_class": {c: {"precision": report["precision"][k], "recall": report["recall"][k],
                              "f1": report["f1"][k], "support": report["support"][k],
                              "auc": rocs[f"class {c}"][2]} for k, c in enumerate(classes)},
            "macro_auc": float(np.nanmean([r[2] for r in rocs.values()])), "ece": cal["ece"],
            "calibration_bins": cal["bins"], "confusion_matrix": cm, "predictions": pred}


def show_misclassified(name, pred, y_true, X_test, test_idx, medoids, classes, out) -> None:
    """The first N_MISCLASSIFIED wrong predictions beside the medoids of their true and predicted class."""
    wrong = np.flatnonzero(pred != y_true)[:N_MISCLASSIFIED]
    cases = [{"series": X_test[k], "true_typical": medoids[int(y_true[k])],
              "pred_typical": medoids[int(pred[k])],
              "label": f"测试 #{test_idx[k]}：真实 {classes[y_true[k]]}，预测 {classes[pred[k]]}\n"
                       f"test #{test_idx[k]}: true {classes[y_true[k]]}, predicted {classes[pred[k]]}"}
             for k in wrong]
    series_model.plot_misclassified_series(cases, out / f"misclassified_{name.lower()}.png",
                                           title=f"{name}，{DATASET}：分错的序列与各类的中心序列（medoid）\n"
                                                 f"{name} on {DATASET}: misclassified series vs class "
                                                 "medoids")


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = series_model.series_run_dir(__file__, DATASET, cfg["QUICK"])
    data = load_ucr_dataset(DATASET, DOWNLOAD)
    classes = data["classes"]

    results, probs_by_model = {}, {}
    for cell in TWINS:
        members = get_trained_model(cell, data, device, out, cfg["QUICK"])
        # an ensemble is analysed as one model: its members' mean probability (each member reads the
        # test series through its own train-only scaler)
        probs, test_idx = series_model.predict_series_probabilities(members, data, MAX_TEST)
        probs_by_model[cell.upper()] = probs
        print(f"{cell.upper()}: {len(members)} member(s)")
    y_true = data["test"][1][test_idx]
    for name, probs in probs_by_model.items():
        results[name] = analyse(name, probs, y_true, classes, out)

    baselines, X_train, X_test, train_dtw = nearest_neighbour_baselines(data, test_idx)
    for name, (pred, seconds) in baselines.items():
        report = per_class_report(confusion_matrix(y_true, pred, len(classes)))
        results[name] = {"accuracy": report["accuracy"], "macro": report["macro"],
                         "weighted": report["weighted"], "seconds": seconds, "predictions": pred}

    medoids = class_medoids(X_train, data["train"][1], train_dtw)
    for name in probs_by_model:
        show_misclassified(name, results[name]["predictions"], y_true, X_test, test_idx, medoids, classes,
                           out)
    series_model.plot_reliability({n: results[n]["calibration_bins"] for n in probs_by_model},
                                  out / "reliability.png",
                                  title=f"{DATASET} 上的校准（测试集） / Calibration on {DATASET} (test)")

    rows = [{"model": n, "accuracy": r["accuracy"], "macro-F1": r["macro"]["f1"],
             "weighted-F1": r["weighted"]["f1"], "macro AUC": r.get("macro_auc"), "ECE": r.get("ece")}
            for n, r in results.items()]
    print_table(rows, title=f"{DATASET}: {len(y_true)} test series, {len(classes)} classes")
    for name in probs_by_model:
        print_table([{"class": c, **{k: v for k, v in pc.items()}} for c,
                     pc in results[name]["per_class"].items()],
                    title=f"{name} per class")
    summary = {n: {k: v for k, v in r.items() if k not in ("predictions",)} for n, r in results.items()}
    save_json({"test_index": test_idx, "true": y_true, **{n: r["predictions"] for n, r in results.items()}},
              out / "predictions.json")
    top = output_dir(__file__, quick=cfg["QUICK"])  # one metrics.json over every dataset analysed
    merged = series_model.merge_dataset_metrics(top / "metrics.json", {DATASET: summary})
    save_metrics(top, config=cfg, metrics={"dataset": DATASET, "models": summary, "datasets": merged},
                 start_time=t0, device=device)
    save_metrics(out, config=cfg, metrics=summary, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

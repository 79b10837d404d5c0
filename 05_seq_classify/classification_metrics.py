"""Beyond accuracy: confusion matrix, per-class precision/recall/F1, one-vs-rest ROC/AUC, calibration
(reliability diagram + ECE) and the misclassified series, for the LSTM and GRU of sequence_lstm.py /
sequence_gru.py (each as its twin saved it: by default a 5-model ensemble, analysed as one model),
against 1-nearest-neighbour baselines (Euclidean and DTW) on the same official split.
Run: python 05_seq_classify/classification_metrics.py [--DATASET=JapaneseVowels] [--quick]
Theory: THEORY.md; the baselines' formulas are in utils/model_utils.py (05 section).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

import numpy as np

from utils.data_utils import ChannelScaler, load_ucr_dataset
from utils.model_utils import (calibration, confusion_matrix, dtw_distances, euclidean_distances,
                               load_case_script, load_series_members, merge_dataset_metrics,
                               nearest_neighbour_predict, per_class_report, predict_series_probabilities,
                               roc_curve, script_config, series_run_dir, train_series_ensemble)
from utils.script_utils import (get_device, output_dir, parse_config, print_table, run_main, save_json,
                                save_metrics, set_seed)
from utils.visualization import (plot_confusion_matrix, plot_misclassified_series, plot_reliability,
                                 plot_roc_curves)

# ==== Hyperparameters (edit me) ====
DATASET = "GunPoint"  # a UCR/UEA problem bundled with sktime (as in sequence_lstm.py)
DOWNLOAD = False  # True: let sktime fetch a problem it does not bundle (needs internet)
SEED = 0  # the seed whose checkpoints are analysed (the twins' first seed)
DEVICE = "auto"  # auto, cpu, cuda or mps
IMPL = "torch"  # torch or scratch: which layer runs the saved weights (and trains missing models)
RETRAIN = False  # True: train fresh models here even if the twins' checkpoints exist
DTW_WINDOW = 0.1  # Sakoe-Chiba band half-width as a fraction of the longest series (1.0 = no band)
CALIBRATION_BINS = 10  # confidence bins of the reliability diagram and ECE
N_MISCLASSIFIED = 6  # misclassified test series to plot per model
MAX_TEST = 0  # 0 = every test series; N = a random subset (smoke tests)

QUICK_SETTINGS = dict(RETRAIN=True, MAX_TEST=40, N_MISCLASSIFIED=3)
CHOICES = {"IMPL": ("torch", "scratch")}
TWINS = {"lstm": "sequence_lstm.py", "gru": "sequence_gru.py"}


def get_trained_model(cell: str, data: dict, device, out, quick: bool) -> list:
    """The twin's checkpoint (outputs/05_seq_classify/sequence_<cell>/<DATASET>/checkpoint.pt), or, if
    there is none (or RETRAIN), one trained here with the twin's own settings and build_model (with
    --quick, the twin's --quick settings). -> its members (an ensemble, as the twin trains by default)."""
    twin = load_case_script(pathlib.Path(__file__).with_name(TWINS[cell]), quick=quick)
    path = output_dir(twin.__file__, sub=DATASET) / "checkpoint.pt"
    if path.is_file() and not RETRAIN:
        print(f"{cell.upper()}: using {path}")
        return load_series_members(path, IMPL, device)
    print(f"{cell.upper()}: {'RETRAIN is set' if RETRAIN else f'no checkpoint at {path}'}: training one "
          f"here with {TWINS[cell]}'s settings (saved to {out / cell})")
    twin.IMPL = IMPL
    cfg = script_config(twin)
    train_series_ensemble(lambda f, c: twin.build_model(f, c, device), data, cfg, SEED, device, out / cell)
    return load_series_members(out / cell / "checkpoint.pt", IMPL, device)


def nearest_neighbour_baselines(data: dict, test_idx) -> dict:
    """1-NN with Euclidean distance (equal lengths only) and with DTW, on the full official training set
    (no validation needed: nothing is tuned), z-scored per channel with training statistics as for the
    RNNs. -> {name: (predictions, seconds)}; also the train-train DTW matrix for the class medoids."""
    X, y = data["train"]
    scaler = ChannelScaler().fit(X)
    X = scaler.transform(X)
    X_test = scaler.transform([data["test"][0][i] for i in test_idx])
    window = max(1, int(round(DTW_WINDOW * data["lengths"][1])))
    results = {}
    if data["lengths"][0] == data["lengths"][1]:
        t = time.time()
        results["1-NN Euclidean"] = (nearest_neighbour_predict(euclidean_distances(X_test, X), y), time.time() - t)
    else:
        print("1-NN Euclidean skipped: the series have different lengths (Euclidean distance needs equal ones).")
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
    """Every metric of one model from its probabilities; writes its confusion matrix, returns numbers."""
    pred = probs.argmax(1)
    cm = confusion_matrix(y_true, pred, len(classes))
    report = per_class_report(cm)
    rocs = {f"class {c}": roc_curve(y_true == k, probs[:, k]) for k, c in enumerate(classes)}
    cal = calibration(probs, y_true, CALIBRATION_BINS)
    plot_confusion_matrix(cm, classes, out / f"confusion_{name.lower()}.png",
                          title=f"{name} on {DATASET} (test)", normalize=True)
    plot_roc_curves(rocs, out / f"roc_{name.lower()}.png", title=f"{name}: one-vs-rest ROC on {DATASET}")
    return {"accuracy": report["accuracy"], "macro": report["macro"], "weighted": report["weighted"],
            "per_class": {c: {"precision": report["precision"][k], "recall": report["recall"][k],
                              "f1": report["f1"][k], "support": report["support"][k],
                              "auc": rocs[f"class {c}"][2]} for k, c in enumerate(classes)},
            "macro_auc": float(np.nanmean([r[2] for r in rocs.values()])), "ece": cal["ece"],
            "calibration_bins": cal["bins"], "confusion_matrix": cm, "predictions": pred}


def show_misclassified(name, pred, y_true, X_test, test_idx, medoids, classes, out) -> None:
    """The first N_MISCLASSIFIED wrong predictions beside the medoids of their true and predicted class."""
    wrong = np.flatnonzero(pred != y_true)[:N_MISCLASSIFIED]
    cases = [{"series": X_test[k], "true_typical": medoids[int(y_true[k])], "pred_typical": medoids[int(pred[k])],
              "label": f"test #{test_idx[k]}: true {classes[y_true[k]]}, predicted {classes[pred[k]]}"}
             for k in wrong]
    plot_misclassified_series(cases, out / f"misclassified_{name.lower()}.png",
                              title=f"{name} on {DATASET}: misclassified series vs class medoids")


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = series_run_dir(__file__, DATASET, cfg["QUICK"])
    data = load_ucr_dataset(DATASET, DOWNLOAD)
    classes = data["classes"]

    results, probs_by_model = {}, {}
    for cell in TWINS:
        members = get_trained_model(cell, data, device, out, cfg["QUICK"])
        # an ensemble is analysed as one model: its members' mean probabilities (each member reads the
        # test series through its own train-only scaler)
        probs, test_idx = predict_series_probabilities(members, data, device, MAX_TEST)
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
        show_misclassified(name, results[name]["predictions"], y_true, X_test, test_idx, medoids, classes, out)
    plot_reliability({n: results[n]["calibration_bins"] for n in probs_by_model}, out / "reliability.png",
                     title=f"Calibration on {DATASET} (test)")

    rows = [{"model": n, "accuracy": r["accuracy"], "macro-F1": r["macro"]["f1"],
             "weighted-F1": r["weighted"]["f1"], "macro AUC": r.get("macro_auc"), "ECE": r.get("ece")}
            for n, r in results.items()]
    print_table(rows, title=f"{DATASET}: {len(y_true)} test series, {len(classes)} classes")
    for name in probs_by_model:
        print_table([{"class": c, **{k: v for k, v in pc.items()}} for c, pc in results[name]["per_class"].items()],
                    title=f"{name} per class")
    summary = {n: {k: v for k, v in r.items() if k not in ("predictions",)} for n, r in results.items()}
    save_json({"test_index": test_idx, "true": y_true, **{n: r["predictions"] for n, r in results.items()}},
              out / "predictions.json")
    merged = merge_dataset_metrics(output_dir(__file__) / "metrics.json", {DATASET: summary})
    save_metrics(output_dir(__file__), config=cfg, metrics={"dataset": DATASET, "models": summary,
                                                            "datasets": merged},
                 start_time=t0, device=device)
    save_metrics(out, config=cfg, metrics=summary, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

"""What reading the newspaper first buys: ULMFiT's three choices probed on validation, and test accuracy
against the number of labelled reviews (the pretrained LSTM, the same LSTM from scratch, NBSVM).

Teaches: how a choice is kept or dropped by a rule fixed before the probes, on validation only (PART=choices);
why pretraining matters most when labels are few (PART=curve: 100, 300, 1,000, 3,000 labelled reviews, a few
seeds each; the point for all ~13.9 k is the twins' default runs). Every model faces the whole validation and
test sets; each gets at least MIN_STEPS gradient steps, so a small set is not simply under-trained.
Needs stage 2's language model, written by the twin's pretrained run:
  python 04_text_gen/text_lstm.py --DATASET=peoples_daily
  python 02_sentiment/sentiment_lstm.py --DATASET=chinese_reviews \
      --PRETRAINED=outputs/04_text_gen/text_lstm/peoples_daily/model.pt
Run: python 02_sentiment/pretraining_study.py [--quick] [--PART=curve] [--SEEDS=0,1,2]

先读报纸再学评论到底带来了什么：在验证集上逐个检验 ULMFiT 的三个做法（规则事先定好），再画出测试准确率随
有标签评论数量变化的曲线（预训练的 LSTM、同样大小但从零训练的 LSTM、NBSVM）。标签越少，预训练越重要。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import importlib
import json
import math
import time

import pretrained

from baselines import nbsvm_baseline
from sentiment_model import prepare_sentiment_data, test_sentiment_model, train_sentiment_model
from utils.script_utils import (
    REPO_ROOT,
    AtLeast,
    Items,
    OneOf,
    Seed,
    get_device,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
    shown_path,
)

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                  # the probes' seed (the curve's seeds are SEEDS)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train
CELL: OneOf("lstm", "gru") = "lstm"  # which twin's models and settings (sentiment_lstm.py / sentiment_gru.py)
PART: OneOf("choices", "curve", "both") = "both"  # the probes of the three choices, the curve, or both
SIZES: Items(AtLeast(8)) = (100, 300, 1000, 3000)  # labelled training reviews per point of the curve
SEEDS: Items(Seed) = (0, 1)     # per size: which random subset of the training reviews (and initial weights)
MIN_STEPS: AtLeast(1) = 150     # gradient steps every model gets at least (small sets: more epochs)
LANGUAGE_MODEL: str = ""        # stage 2's language model ('' = the twin's pretrained run's)
LIMIT: AtLeast(0) = 0           # the probes: only the first LIMIT training reviews (0 = all; --quick)
PROBE_RUNS: Items(OneOf("all", "no_discriminative", "no_unfreezing", "no_slanted")) = (
    "all", "no_discriminative", "no_unfreezing", "no_slanted")  # which probes (PROBES below); a subset
                                # writes to choices_<names>/ (several subsets can run side by side)

QUICK_SETTINGS = dict(SIZES=(40,), SEEDS=(0,), MIN_STEPS=4, LIMIT=400)

# The rule, fixed before the probes ran: a choice stays when the run without it scores lower validation
# accuracy than the run with all three; otherwise (as good or better without it) the simpler setting wins.
# (The curve trains stage 3 with the twin's own settings, the defaults the probes left.)
ALL_ON = dict(discriminative=True, gradual_unfreezing=True, slanted_triangular=True)  # ULMFiT's recipe
PROBES = {"all": ("all three", ALL_ON),
          "no_discriminative": ("without discriminative rates", {**ALL_ON, "discriminative": False}),
          "no_unfreezing": ("without gradual unfreezing", {**ALL_ON, "gradual_unfreezing": False}),
          "no_slanted": ("without the slanted triangular schedule", {**ALL_ON, "slanted_triangular": False})}


def twin():
    """The twin script as a module: its constants are the settings every model here uses."""
    return importlib.import_module(f"sentiment_{CELL}")


def batch_size_for(size: int, full: int) -> int:
    """The twin's batch size, smaller for small sets (at least 8 reviews, about 8 batches an epoch)."""
    return min(full, max(8, size // 8))


def train_pretrained(lm, vocab, data, t, device, epochs: int, **choices) -> dict:
    """Stage 3 with the twin's settings on `data` -> fit's result (the best validation accuracy in it)."""
    model = pretrained.PretrainedClassifier.from_language_model(lm)
    settings = {"discriminative": t.DISCRIMINATIVE, "gradual_unfreezing": t.GRADUAL_UNFREEZING,
                "slanted_triangular": t.SLANTED_TRIANGULAR, **choices}  # a probe turns one of them off
    result = pretrained.train_pretrained_classifier(model, data, epochs=epochs, lr=t.CLS_LR,
                                                    weight_decay=t.WEIGHT_DECAY, clip=t.CLIP,
                                                    patience=t.PATIENCE, **settings)
    return {"model": model, "fit": result["members"][0]}


def probe_choices(lm, vocab, t, device) -> list[dict]:
    """Each of ULMFiT's choices dropped in turn; validation accuracy only (the test set is not looked at)."""
    data = prepare_sentiment_data("chinese_reviews", min_freq=1, max_vocab=0, max_len=t.MAX_CHARS,
                                  batch_size=t.BATCH_SIZE, limit=LIMIT, seed=SEED, vocab=vocab)
    rows = []
    for key in PROBE_RUNS:
        name, choice = PROBES[key]
        set_seed(SEED)
        t0 = time.time()
        fit = train_pretrained(lm, vocab, data, t, device, t.CLS_EPOCHS, **choice)["fit"]
        rows.append({"stage 3": name, "val accuracy": fit["best_value"], "best epoch": fit["best_epoch"],
                     "minutes": round((time.time() - t0) / 60, 1)})
        print(f"{name}: validation accuracy {fit['best_value']:.4f}")
    full = next((r["val accuracy"] for r in rows if r["stage 3"] == PROBES["all"][0]), None)
    for row in rows:
        if full is not None and row["stage 3"] != PROBES["all"][0]:
            row["verdict"] = "keep" if row["val accuracy"] < full else "drop (as good without it)"
    print_table(rows, title="ULMFiT's choices on validation (rule: keep a choice when dropping it lowers "
                            "validation accuracy)", floatfmt=".4f")
    return rows


def curve_point(size: int, seed: int, lm, vocab, t, device) -> dict:
    """One labelled-set size and seed: the same random subset for the three models, whole val and test."""
    bs = batch_size_for(size, t.BATCH_SIZE)
    point = {"size": size, "seed": seed, "batch_size": bs}
    # the pretrained LSTM (stage 3 only: stage 2 read the training reviews' text, never their labels)
    data = prepare_sentiment_data("chinese_reviews", min_freq=1, max_vocab=0, max_len=t.MAX_CHARS,
                                  batch_size=bs, seed=seed, vocab=vocab, train_size=size)
    set_seed(seed)
    epochs = max(t.CLS_EPOCHS, math.ceil(MIN_STEPS / len(data["loaders"]["train"])))
    run = train_pretrained(lm, vocab, data, t, device, epochs)
    point["pretrained"] = test_sentiment_model(run["model"], data["loaders"]["test"], device)["accuracy"]
    # the same twin's model from scratch (word-level vocabulary from this subset), and NBSVM on the subset
    max_len = t.DATASET_SETTINGS["chinese_reviews"]["MAX_LEN"][1]
    data = prepare_sentiment_data("chinese_reviews", min_freq=t.MIN_FREQ, max_vocab=t.MAX_VOCAB,
                                  max_len=max_len, batch_size=bs, seed=seed, train_size=size)
    epochs = max(t.EPOCHS, math.ceil(MIN_STEPS / len(data["loaders"]["train"])))
    model, _ = train_sentiment_model(t.build_model, data, device, members=1, seed=seed, epochs=epochs,
                                     lr=t.LR, weight_decay=t.WEIGHT_DECAY, patience=t.PATIENCE, clip=t.CLIP)
    point["scratch"] = test_sentiment_model(model, data["loaders"]["test"], device)["accuracy"]
    point["nbsvm"] = nbsvm_baseline(data["texts"])["accuracy"]
    print(f"{size} labelled reviews, seed {seed}: pretrained {point['pretrained']:.4f}, from scratch "
          f"{point['scratch']:.4f}, NBSVM {point['nbsvm']:.4f}")
    return point


def full_set_point(quick: bool) -> dict | None:
    """The twin's default runs on all training reviews (pretrained and from scratch), from their
    metrics.json; None when either is missing."""
    script = REPO_ROOT / "02_sentiment" / f"sentiment_{CELL}.py"
    files = {k: output_dir(script, sub, quick=quick, create=False) / "metrics.json"
             for k, sub in (("pretrained", "chinese_reviews_pretrained"), ("scratch", "chinese_reviews"))}
    if not all(f.is_file() for f in files.values()):
        return None
    m = {k: json.loads(f.read_text(encoding="utf-8")) for k, f in files.items()}
    return {"size": m["pretrained"]["metrics"]["split_sizes"]["train"], "seed": "default runs",
            "pretrained": m["pretrained"]["metrics"]["test_accuracy"],
            "scratch": m["scratch"]["metrics"]["test_accuracy"],
            "nbsvm": m["pretrained"]["metrics"].get("nbsvm_test_accuracy")}


def plot_curve(points: list[dict], path: pathlib.Path) -> pathlib.Path:
    """Test accuracy against labelled reviews (log scale): each seed a dot, the mean a line."""
    from utils.visualization import color_for, plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = {"pretrained": "先读报纸的 LSTM / pretrained LSTM",
             "scratch": "从零训练的 LSTM / LSTM from scratch",
             "nbsvm": "NBSVM（字的 1–3 元语法）/ NBSVM (character 1–3-grams)"}
    colors = {"pretrained": color_for("LSTM"), "scratch": "#7f7f7f", "nbsvm": color_for("baseline")}
    for key, label in names.items():
        sizes = sorted({p["size"] for p in points if p.get(key) is not None})
        means = [sum(p[key] for p in points if p["size"] == s and p.get(key) is not None)
                 / sum(1 for p in points if p["size"] == s and p.get(key) is not None) for s in sizes]
        color = colors[key]
        ax.plot(sizes, means, "-o", color=color, label=label, lw=2)
        ax.scatter([p["size"] for p in points if p.get(key) is not None],
                   [p[key] for p in points if p.get(key) is not None], color=color, alpha=0.35, s=14)
    ax.set_xscale("log")
    ax.set_xlabel("有标签的训练评论条数 / labelled training reviews")
    ax.set_ylabel("测试准确率 / test accuracy")
    ax.set_title("中文评论：测试准确率随有标签评论的数量变化\n"
                 "Chinese reviews: test accuracy against labelled reviews")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    t = twin()
    path = pathlib.Path(LANGUAGE_MODEL) if LANGUAGE_MODEL else (
        output_dir(t.__file__, "chinese_reviews_pretrained", quick=cfg["QUICK"], create=False)
        / "language_model.pt")
    lm, vocab, info = pretrained.load_language_model_after_stage2(path, device, cell=CELL,
                                                                  script=pathlib.Path(__file__).name)
    print(f"stage 2's language model: {shown_path(path)}")
    record = {"language_model": shown_path(path), "language_model_info": info}
    # each part writes its own folder (outputs/02_sentiment/pretraining_study/choices/, .../curve/), so
    # the two can run side by side as two commands
    if PART in ("choices", "both"):
        part = "choices" if set(PROBE_RUNS) == set(PROBES) else "choices_" + "_".join(PROBE_RUNS)
        out = output_dir(__file__, part, quick=cfg["QUICK"])
        save_metrics(out, config=cfg, metrics={**record, "choices": probe_choices(lm, vocab, t, device)},
                     start_time=t0, device=device)
    if PART in ("curve", "both"):
        out = output_dir(__file__, "curve", quick=cfg["QUICK"])
        points = [curve_point(size, seed, lm, vocab, t, device) for size in SIZES for seed in SEEDS]
        full = full_set_point(cfg["QUICK"])
        if full is None:
            print(f"(the point for all training reviews comes from the twin's default runs; run "
                  f"sentiment_{CELL}.py --DATASET=chinese_reviews with and without --PRETRAINED to add it)")
        else:
            points.append(full)
        print_table(points, title="Test accuracy against labelled training reviews", floatfmt=".4f")
        figure = plot_curve(points, out / "labelled_size_curve.png")  # figures/collect_results_figures.py
        print(f"curve: {shown_path(figure)}")                          # copies it for the README
        save_metrics(out, config=cfg, metrics={**record, "curve": points}, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

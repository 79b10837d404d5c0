"""What reading the newspaper first buys: ULMFiT's three choices probed on validation, and test accuracy
against the number of labelled reviews (the pretrained LSTM, the same LSTM from scratch, NBSVM).

Teaches: how a choice is kept or dropped by a rule fixed before the probes, on validation only (PART=choices);
why pretraining matters most when labels are few (PART=curve: 100, 300, 1,000, 3,000 labelled reviews, a few
seeds each; the point for all ~13.9 k is the twins' default runs); whether a language model that read the
newspaper longer reads reviews better (PART=stage1: the same stages 2-3 on 04 runs of 2, 8 and 32 minutes);
whether reading the reviews' own text longer does (PART=stage2: stage 2 for 0, 2.5 and 10 minutes, then
stage 3).
Every model faces the whole validation and test sets; each gets at least MIN_STEPS gradient steps, so a small
set is not simply under-trained.
Needs stage 2's language model, written by the twin's pretrained run:
  python 04_text_gen/text_lstm.py --DATASET=peoples_daily
  python 02_sentiment/sentiment_lstm.py --DATASET=chinese_reviews \
      --PRETRAINED=outputs/04_text_gen/text_lstm/peoples_daily/model.pt
Run: python 02_sentiment/pretraining_study.py [--quick] [--PART=curve] [--SEEDS=0,1,2]
PART=stage1 needs 04's longer and shorter runs beside the default one:
  python 04_text_gen/text_lstm.py --DATASET=peoples_daily --MAX_MINUTES=2 --RUN_NAME=peoples_daily_2min
  python 04_text_gen/text_lstm.py --DATASET=peoples_daily --MAX_MINUTES=32 --EPOCHS=40 \
      --RUN_NAME=peoples_daily_32min
PART=stage2 needs only 04's default run (the first command above).

先读报纸再学评论到底带来了什么：在验证集上逐个检验 ULMFiT 的三个做法（规则事先定好），再画出测试准确率随
有标签评论数量变化的曲线（预训练的 LSTM、同样大小但从零训练的 LSTM、NBSVM）。标签越少，预训练越重要。
最后看第一阶段读报纸读得越久，读评论是否越好（PART=stage1：同样的第二、三阶段，换成读了 2、8、32 分钟
的语言模型）；第二阶段读评论的文字读得越久，是否越好（PART=stage2：第二阶段读 0、2.5、10 分钟，
再做第三阶段）。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import importlib
import json
import math
import time

import pretrained

from baselines import compare_with_baselines, nbsvm_baseline
from sentiment_model import (
    prepare_sentiment_data,
    sentiment_split,
    test_sentiment_model,
    train_sentiment_model,
)
from utils.script_utils import (
    REPO_ROOT,
    AtLeast,
    Items,
    OneOf,
    Seed,
    UserError,
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
PART: OneOf("choices", "curve", "both", "stage1", "stage2") = "both"  # the probes of the three
                                # choices, the curve, or both; stage1: stages 2-3 on each of STAGE1_RUNS;
                                # stage2: stages 2-3 on 04's default run for each of STAGE2_MINUTES
SIZES: Items(AtLeast(8)) = (100, 300, 1000, 3000)  # labelled training reviews per point of the curve
SEEDS: Items(Seed) = (0, 1)     # per size: which random subset of the training reviews (and initial weights)
MIN_STEPS: AtLeast(1) = 150     # gradient steps every model gets at least (small sets: more epochs)
LANGUAGE_MODEL: str = ""        # stage 2's language model ('' = the twin's pretrained run's)
LIMIT: AtLeast(0) = 0           # the probes: only the first LIMIT training reviews (0 = all; --quick)
STAGE1_RUNS: Items(str) = ("peoples_daily_2min", "peoples_daily", "peoples_daily_32min")  # PART=
                                # stage1: 04 runs of text_<CELL>.py (their RUN_NAME folders), shortest first
STAGE2_MINUTES: Items(AtLeast(0.0)) = (0, 2.5, 10)  # PART=stage2: minutes stage 2 reads the training
                                # reviews' text (0 = no stage 2; the twin's default is 2.5), shortest first
PROBE_RUNS: Items(OneOf("all", "no_discriminative", "no_unfreezing", "no_slanted")) = (
    "all", "no_discriminative", "no_unfreezing", "no_slanted")  # which probes (PROBES below); a subset
                                # writes to choices_<names>/ (several subsets can run side by side)

QUICK_SETTINGS = dict(SIZES=(40,), SEEDS=(0,), MIN_STEPS=4, LIMIT=400, STAGE1_RUNS=("peoples_daily",),
                      STAGE2_MINUTES=(0, 0.05))

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


def stage1_runs(quick: bool, names: tuple = ()) -> list[tuple[str, pathlib.Path]]:
    """STAGE1_RUNS (or `names`) -> [(run, its model.pt)] for those 04 has written; one line per missing run
    naming the command, and an error when none is there."""
    script = REPO_ROOT / "04_text_gen" / f"text_{CELL}.py"
    which = f"the 04 runs {','.join(names)}" if names else f"--STAGE1_RUNS={','.join(STAGE1_RUNS)}"
    names = names or STAGE1_RUNS
    runs = [(run, output_dir(script, run, quick=quick, create=False) / "model.pt") for run in names]
    for run, path in runs:
        if not path.is_file():
            print(f"(no 04 run {run}: python 04_text_gen/text_{CELL}.py --DATASET=peoples_daily "
                  f"--RUN_NAME={run} --MAX_MINUTES=<minutes> writes {shown_path(path)})")
    runs = [(run, path) for run, path in runs if path.is_file()]
    if not runs:
        raise UserError(f"none of {which} has a model yet; the commands above "
                        f"write them")
    return runs


def stages_point(run: str, path: pathlib.Path, t, device, quick: bool, lm_minutes: float) -> dict:
    """Stages 2 and 3 of the twin's pretrained run, on 04's run `run` (its model.pt at `path`), stage 2
    reading the reviews' text for `lm_minutes`: what a longer (or shorter) stage 1 or stage 2 buys.
    Validation accuracy (the best epoch's) and test accuracy, McNemar against the better n-gram baseline
    and against the twin's model from scratch."""
    set_seed(SEED)                                      # every point starts from the same random state
    lm, vocab, stage1 = pretrained.load_language_model(path, device, cell=CELL,
                                                       script=pathlib.Path(__file__).name)
    split = sentiment_split("chinese_reviews")
    lm, vocab, _ = pretrained.add_review_characters(lm, vocab, split["train"][0])
    data = prepare_sentiment_data("chinese_reviews", min_freq=1, max_vocab=0, max_len=t.MAX_CHARS,
                                  batch_size=t.BATCH_SIZE, limit=LIMIT, seed=SEED, vocab=vocab, split=split)
    stage2 = pretrained.fine_tune_language_model(lm, vocab, data["texts"], minutes=lm_minutes, lr=t.LM_LR,
                                                 clip=t.CLIP, seed=SEED, device=device)
    set_seed(SEED)
    model_run = train_pretrained(lm, vocab, data, t, device, t.CLS_EPOCHS)
    name = f"pretrained {CELL.upper()} ({run}, stage 2 {lm_minutes:g} min)"
    vs_baseline = compare_with_baselines(model_run["model"], data, t.MAX_CHARS, device, name=name)
    scratch = output_dir(REPO_ROOT / "02_sentiment" / f"sentiment_{CELL}.py", "chinese_reviews", quick=quick,
                         create=False)
    vs_scratch = pretrained.against_scratch(model_run["model"], data, t.MAX_CHARS, device, scratch=scratch,
                                            cell=CELL, name=name)
    test = test_sentiment_model(model_run["model"], data["loaders"]["test"], device)
    return {"run": run, "stage1_minutes": round((stage1.get("train_time_s") or 0) / 60, 1),
            "stage1_chars_read": stage1.get("chars_seen"), "stage1_val_nats_per_char": stage1.get(
                "val_nats_per_char"), "stage2_val_nats_per_char_before": stage2["val_nats_per_char_before"],
            "stage2_val_nats_per_char": stage2["val_nats_per_char_after"], "stage2_passes": stage2["passes"],
            "stage2_minutes": lm_minutes,
            "val_accuracy": model_run["fit"]["best_value"], "test_accuracy": test["accuracy"],
            "nbsvm_test_accuracy": vs_baseline["nbsvm_test_accuracy"],
            "nbsvm_val_accuracy": vs_baseline["nbsvm_val_accuracy"],
            "tfidf_test_accuracy": vs_baseline["tfidf_test_accuracy"],
            "mcnemar_vs_better_baseline": vs_baseline["mcnemar_vs_better_baseline"],
            "scratch_test_accuracy": vs_scratch.get("scratch_test_accuracy"),
            "mcnemar_vs_scratch": vs_scratch.get("mcnemar_vs_scratch")}


def plot_stage_length(points: list[dict], path: pathlib.Path, stage: int) -> pathlib.Path:
    """Validation and test accuracy against how long stage `stage` read, NBSVM and the model from scratch as
    lines. Stage 1: characters read (log scale), under each point its minutes and nats/char on the newspaper;
    stage 2: minutes (0 = no stage 2), under each point its passes and nats/char on the validation reviews."""
    from utils.visualization import color_for, plt, save_figure

    fig, ax = plt.subplots(figsize=(7.5, 5))
    x = [p["stage1_chars_read"] / 1e6 if stage == 1 else p["stage2_minutes"] for p in points]
    blue, green = color_for("LSTM"), color_for("baseline")
    ax.plot(x, [p["val_accuracy"] for p in points], "--o", color=blue, alpha=0.55, lw=1.5,
            label="先读报纸的模型，验证集 / pretrained, validation")
    ax.plot(x, [p["test_accuracy"] for p in points], "-o", color=blue, lw=2.2,
            label="先读报纸的模型，测试集 / pretrained, test")
    last = points[-1]
    if last.get("nbsvm_val_accuracy") is not None:
        ax.axhline(last["nbsvm_val_accuracy"], color=green, ls="--", alpha=0.55, lw=1.5,
                   label="NBSVM，验证集 / NBSVM, validation")
    ax.axhline(last["nbsvm_test_accuracy"], color=green, ls="-", lw=2,
               label="NBSVM（字的 1–3 元语法），测试集 / NBSVM (character 1–3-grams), test")
    if last.get("scratch_test_accuracy") is not None:
        ax.axhline(last["scratch_test_accuracy"], color="#7f7f7f", ls="-", lw=2,
                   label="同样的 LSTM 从零训练，测试集 / the same LSTM from scratch, test")
    ax.set_xticks(x)
    if stage == 1:
        ax.set_xscale("log")
        ax.set_xticklabels([f"{xi:.2g} M\n{p['stage1_minutes']:g} min" + (
            f"\n{p['stage1_val_nats_per_char']:.2f} nats/char" if p["stage1_val_nats_per_char"] else "")
            for xi, p in zip(x, points)], fontsize=8)
        ax.minorticks_off()
        ax.set_xlim(min(x) / 1.6, max(x) * 1.6)
        ax.set_xlabel("第一阶段读过的字数（百万）、用时、报纸验证集上的损失\ncharacters stage 1 read "
                      "(millions), its minutes, its loss on the newspaper's validation")
        ax.set_title("中文评论：第一阶段读报纸读得越久，读评论越好吗？\n"
                     "Chinese reviews: does a longer stage 1 read reviews better?")
    else:
        ax.set_xticklabels([f"{xi:g} min\n{p['stage2_passes']:.2g} 遍 / passes\n"
                            f"{p['stage2_val_nats_per_char']:.2f} nats/char" for xi, p in zip(x, points)],
                           fontsize=8)
        span = max(max(x) - min(x), 1e-9)
        ax.set_xlim(min(x) - 0.08 * span, max(x) + 0.08 * span)
        ax.set_xlabel("第二阶段读评论文字的分钟数、遍数、验证评论文字上的损失\nminutes stage 2 read the "
                      "reviews' text, its passes, its loss on the validation reviews' text")
        ax.set_title("中文评论：第二阶段读评论的文字读得越久，读评论越好吗？\n"
                     "Chinese reviews: does a longer stage 2 read reviews better?")
    ax.set_ylabel("准确率 / accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    return save_figure(fig, path)


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
    if PART in ("stage1", "stage2"):  # stages 2-3 anew on 04's model(s): no twin's stage-2 model needed
        twin_minutes = t.QUICK_SETTINGS["LM_MINUTES"] if cfg["QUICK"] else t.LM_MINUTES
        if PART == "stage1":  # each 04 run, the twin's stage 2
            runs = [(run, path, twin_minutes) for run, path in stage1_runs(cfg["QUICK"])]  # missing: named
            title = "Stages 2-3 on language models that read the newspaper for longer"
        else:                 # 04's default run, stage 2 for each of STAGE2_MINUTES
            (run, path), = stage1_runs(cfg["QUICK"], names=("peoples_daily",))
            runs = [(run, path, minutes) for minutes in STAGE2_MINUTES]
            title = "Stages 2-3 with a stage 2 that reads the reviews' text for longer"
        out = output_dir(__file__, PART, quick=cfg["QUICK"])
        points = [stages_point(run, path, t, device, cfg["QUICK"], minutes) for run, path, minutes in runs]
        print_table([{k: v for k, v in p.items() if not isinstance(v, dict)} for p in points], title=title,
                    floatfmt=".4f")
        figure = plot_stage_length(points, out / f"{PART}_length.png", stage=int(PART[-1]))
        print(f"figure: {shown_path(figure)}")                  # collect_results_figures.py copies it
        save_metrics(out, config=cfg, metrics={PART: points}, start_time=t0, device=device)
        return
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

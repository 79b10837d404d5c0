"""How far does each hyperparameter move an LSTM and a GRU? One factor at a time, several seeds per point.

Around each 05_seq_classify twin's defaults (one model, no ensemble): learning rate
(log grid over two decades), hidden size, layers, dropout, batch size and the LSTM's forget-gate bias;
SEEDS seeds per point, scored on the test set, ranked by how far each moves the mean,
and set beside Greff et al. 2017 ("LSTM: A Search Space Odyssey").
Run: python 06_comparison/hyperparameter_study.py [--quick] [--TASK=ItalyPowerDemand] [--SEEDS=5]
     [--RANDOM_TRIALS=20]
Default: 87 runs, 9 CPU minutes (27.5 min on a busy 2-core machine);
         --quick: seconds. Theory: THEORY.md §4.4, §9.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import math
import time

import numpy as np

from utils.data_utils import load_ucr_dataset
from utils.model_utils import init_forget_bias
from utils.script_utils import (
    REPO_ROOT,
    AtLeast,
    Finite,
    Fraction,
    Interval,
    Items,
    OneOf,
    Positive,
    Seed,
    apply_gpu_settings,
    get_device,
    import_case_module,
    load_case_script,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
)
from utils.training import NonFiniteLoss, ProgressLog
from utils.visualization import COLORS, plot_bars, plt, save_figure

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
TASK: str = "GunPoint"                # a 05_seq_classify problem (UCR/UEA, in sktime): GunPoint,
                                      # ItalyPowerDemand, ...
CELLS: Items(OneOf("lstm", "gru")) = ("lstm", "gru")  # the cells;
                                                      # each sweeps around its own script's defaults
SEEDS: AtLeast(2) = 3                 # seeds per point (a mean and a std); the same seeds at every point
LR_GRID: Items(Positive) = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # AdamW learning rates: a log grid over two decades
HIDDEN_SIZE_GRID: Items(AtLeast(1)) = (16, 32, 64, 128)    # units per direction
NUM_LAYERS_GRID: Items(AtLeast(1)) = (1, 2, 3)             # stacked layers
DROPOUT_GRID: Items(Fraction) = (0.0, 0.2, 0.5)            # dropout before the classifier
                                                           # (and between layers)
BATCH_SIZE_GRID: Items(AtLeast(1)) = (8, 16, 32)           # series per batch
FORGET_BIAS_GRID: Items(Finite) = (0.0, 1.0)  # the LSTM's initial forget-gate bias (§4.4);
                                              # the GRU has no forget gate
EPOCHS: AtLeast(1) = 150              # at most this many epochs per run (the twins allow 300:
                                      # halved to fit 30 minutes)
PATIENCE: AtLeast(1) = 30             # early stopping after this many epochs without a better
                                      # validation score
METRIC: OneOf("test_accuracy", "test_loss") = "test_accuracy"  # higher accuracy,
                                                               # or lower cross-entropy, is better
RANDOM_TRIALS: AtLeast(0) = 0         # > 0: also a seeded random search of this many runs per cell, with an
                                      # importance estimate (random forest, main effects vs interactions):
                                      # indicative only
ONE_FACTOR: bool = True               # the one-factor-at-a-time sweeps; False: the random search alone
MAX_TRAIN: AtLeast(0) = 0             # 0 = every training series; N = a stratified subset (smoke tests)
MAX_TEST: AtLeast(0) = 0              # 0 = every test series; N = a random subset (smoke tests)
ALPHA: Interval("(0, 1)") = 0.05       # a factor with permutation p above this is "not
                                       # distinguishable from noise"
PERMUTATIONS: AtLeast(100) = 5000     # random reassignments of a sweep's runs to its points:
                                      # the null of its range
SEED: Seed = 0                        # the seeds are SEED, SEED+1, ..., SEED+SEEDS-1
                                      # (and the permutations' seed)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train

QUICK_SETTINGS = dict(SEEDS=2, LR_GRID=(1e-3, 1e-2), HIDDEN_SIZE_GRID=(16,), NUM_LAYERS_GRID=(2,),
                      DROPOUT_GRID=(0.0,), BATCH_SIZE_GRID=(32,), EPOCHS=2, PATIENCE=2, MAX_TRAIN=30,
                      MAX_TEST=40)
# On a CUDA device, {NAME: (value above, value on a GPU)}: more seeds and wider grids, for every constant you
# left as shipped (an edit in the file or a --NAME=VALUE keeps your value)
GPU_SETTINGS = dict(SEEDS=(3, 5), HIDDEN_SIZE_GRID=((16, 32, 64, 128), (16, 32, 64, 128, 256)),
                    NUM_LAYERS_GRID=((1, 2, 3), (1, 2, 3, 4)), EPOCHS=(150, 300), PATIENCE=(30, 60),
                    RANDOM_TRIALS=(0, 30))
CHECKS = [(lambda: ONE_FACTOR or RANDOM_TRIALS > 0,
           "ONE_FACTOR=false leaves nothing to run: give RANDOM_TRIALS > 0 as well")]

# the hyperparameters swept: name in the twin scripts -> (this script's grid constant, x-axis scale, label)
SWEEPS = {"LR": ("LR_GRID", "log", "learning rate"),
          "HIDDEN_SIZE": ("HIDDEN_SIZE_GRID", "log2", "hidden size"),
          "NUM_LAYERS": ("NUM_LAYERS_GRID", "linear", "layers"),
          "DROPOUT": ("DROPOUT_GRID", "linear", "dropout"),
          "BATCH_SIZE": ("BATCH_SIZE_GRID", "log2", "batch size"),
          "FORGET_BIAS": ("FORGET_BIAS_GRID", "linear", "forget-gate bias (LSTM)")}
SWEEPS_ZH = {"LR": "学习率", "HIDDEN_SIZE": "隐藏层大小", "NUM_LAYERS": "层数", "DROPOUT": "dropout 比例",
             "BATCH_SIZE": "批大小", "FORGET_BIAS": "遗忘门偏置（LSTM）"}   # the plots' labels, Chinese first
METRICS_ZH = {"test_accuracy": "测试准确率", "test_loss": "测试损失"}
TWINS = {"lstm": "05_seq_classify/sequence_lstm.py", "gru": "05_seq_classify/sequence_gru.py"}


# ----------------------------------------------------------------------------------------------------
# One run: the twin script's own build_model at one point of the grid, trained by 05's own code
# ----------------------------------------------------------------------------------------------------
def load_twins() -> dict:
    """{cell: the 05 twin script as a module}: its constants are the defaults, its build_model the model."""
    return {cell: load_case_script(REPO_ROOT / TWINS[cell]) for cell in CELLS}


def defaults_of(twin, cell: str) -> dict:
    """The point every sweep passes through: the twin's own values, plus the LSTM's forget-gate bias."""
    point = {name: getattr(twin, name) for name in SWEEPS if name != "FORGET_BIAS"}
    if cell == "lstm":
        point["FORGET_BIAS"] = 1.0  # what sequence_lstm.build_model sets: init_forget_bias(model.rnn, 1.0)
    return point


def train_point(twin, cell: str, point: dict, seed: int, data: dict, device) -> dict:
    """Train the twin's model at `point` ({"LR": ..., "HIDDEN_SIZE": ..., ...}) from `seed` and score it
    on the test set, with 05's own training (series_model.train_series_classifier, no ensemble).
    -> {METRIC, "seconds", "parameters", "epochs_run"}; a run whose loss became NaN counts as diverged."""
    series_model = import_case_module("05_seq_classify", "series_model")
    for name in ("HIDDEN_SIZE", "NUM_LAYERS", "DROPOUT"):
        # read by build_model
        setattr(twin, name, int(point[name]) if name != "DROPOUT" else float(point[name]))

    def build(n_features, n_classes):
        model = twin.build_model(n_features, n_classes, device)
        if cell == "lstm":  # replaces the 1.0 that build_model set: b_f = point's value (§4.4)
            init_forget_bias(model.rnn, point["FORGET_BIAS"])
        return model

    t0 = time.time()
    try:
        run = series_model.train_series_classifier(
            build, data, seed, device, val_fraction=twin.VAL_FRACTION, patch=twin.PATCH,
            batch_size=int(point["BATCH_SIZE"]), epochs=EPOCHS, lr=float(point["LR"]),
            weight_decay=twin.WEIGHT_DECAY, patience=PATIENCE, clip=twin.CLIP, max_train=MAX_TRAIN,
            max_test=MAX_TEST, verbose=False)
    except NonFiniteLoss:
        return {METRIC: math.nan, "seconds": round(time.time() - t0, 2), "parameters": None,
                "epochs_run": None, "diverged": True}
    m = run["metrics"]
    return {METRIC: m[METRIC], "seconds": m["train_time_s"], "parameters": m["parameters"],
            "epochs_run": m["epochs_run"], "diverged": False}


def sweep_plan(defaults: dict, cell: str) -> list[tuple[str, float]]:
    """(hyperparameter, value) of every point of the cell's sweeps; each grid gains its default value."""
    plan = []
    for name, (grid, _, _) in SWEEPS.items():
        if name not in defaults:
            continue  # the GRU has no forget gate
        plan += [(name, v) for v in sorted(set(globals()[grid]) | {defaults[name]})]
    return plan


def run_sweeps(twins: dict, data: dict, device, progress: ProgressLog) -> tuple[list[dict], list[dict]]:
    """Every cell, every sweep point, every seed. A point shared by several sweeps (the defaults) is
    trained once per seed. -> (trials: one dict per run, study: one row per cell x hyperparameter x value)."""
    seeds = list(range(SEED, SEED + SEEDS))
    plans = {cell: sweep_plan(defaults_of(twins[cell], cell), cell) for cell in CELLS}
    unique = {cell: {_key({**defaults_of(twins[cell], cell), name: v}) for name, v in plan}
              for cell, plan in plans.items()}
    total = sum(len(u) for u in unique.values()) * len(seeds)
    points = ", ".join(f"{c.upper()} {len(u)} points" for c, u in unique.items())
    print(f"{TASK}: {total} training runs ({points}, {len(seeds)} seeds each)")
    done, trials, study = {}, [], []
    for cell in CELLS:
        defaults = defaults_of(twins[cell], cell)
        for name, value in plans[cell]:
            point = {**defaults, name: value}
            results = []
            for seed in seeds:
                key = (cell, _key(point), seed)
                if key not in done:
                    done[key] = train_point(twins[cell], cell, point, seed, data, device)
                    trial = {"trial": len(trials) + 1, "total": total, "cell": cell, **point, "seed": seed,
                             **done[key]}
                    trials.append(trial)
                    shown = "default" if point == defaults else f"{name}={value:g}"
                    print(f"[{trial['trial']:3d}/{total}] {cell.upper()} {shown:18s} seed {seed}: "
                          f"{METRIC} {trial[METRIC]:.4f} ({trial['seconds']:.1f} s)")
                    run_name = f"{cell} {shown} seed {seed}"
                    progress.for_run(run_name, {"cell": cell, **point, "seed": seed}).end(
                        {k: v for k, v in trial.items() if k not in point and k not in ("cell", "diverged")})
                results.append(done[key])
            study.append(study_row(name, value, cell, results, default=value == defaults[name]))
    return trials, study


def _key(point: dict) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in point.items()))


def study_row(name: str, value, cell: str, results: list[dict], default: bool) -> dict:
    """One point of a sweep: the mean and spread of the metric over seeds (diverged runs left out,
    counted)."""
    values = np.array([r[METRIC] for r in results], dtype=float)
    ok = values[np.isfinite(values)]
    return {"hyperparameter": name, "value": value, "cell": cell,
            "mean": float(ok.mean()) if len(ok) else math.nan,
            "std": float(ok.std(ddof=1)) if len(ok) > 1 else math.nan, "n": int(len(ok)),
            "parameters": next((r["parameters"] for r in results if r["parameters"]), None),
            "seconds": float(np.mean([r["seconds"] for r in results])), "default": bool(default),
            "values": values.tolist(), "diverged": int(sum(r["diverged"] for r in results))}


# ----------------------------------------------------------------------------------------------------
# How much each hyperparameter moves the metric, and what that says
# ----------------------------------------------------------------------------------------------------
def permutation_null(runs: list[np.ndarray], permutations: int, seed: int = 0) -> np.ndarray:
    """The range of point means a sweep shows when the hyperparameter does nothing: the same runs dealt
    to the points at random (each point keeps its number of runs), `permutations` times -> (P,) ranges.

    Under pure noise the range of k means grows with k (and eta^2 with the number of points), so a factor
    tried at 5 values looks stronger than one tried at 2 whatever it does; its own null removes that."""
    every = np.concatenate(runs)
    labels = np.repeat(np.arange(len(runs)), [len(r) for r in runs])              # (N,) point of each run
    rng = np.random.default_rng(seed)
    shuffled = labels[rng.permuted(np.tile(np.arange(len(every)), (permutations, 1)), axis=1)]  # (P, N)
    sums = np.zeros((permutations, len(runs)))
    np.add.at(sums, (np.arange(permutations)[:, None], shuffled), every[None, :])
    means = sums / np.array([len(r) for r in runs])[None, :]                       # (P, k)
    return means.max(axis=1) - means.min(axis=1)


def rank_hyperparameters(study: list[dict], permutations: int | None = None) -> list[dict]:
    """Per cell and hyperparameter: the range of the point means (best minus worst), the share of the
    sweep's run-to-run variance it explains (eta^2 = between-point / total sum of squares, over every
    seed's run), and its permutation test: p = the share of `permutation_null` ranges >= the observed
    one, and 'beyond_noise' = the observed range minus the null's 95th percentile (in metric units).

    Ranked by p (then by beyond_noise): under no effect p is uniform whatever the grid size, so every
    factor is equally likely to come first; ranking by the range itself favoured the factor tried at
    the most values (with 3 seeds and no effect at all, the 5-point learning rate came first a third of
    the time, the 2-point forget bias one time in twenty)."""
    permutations = PERMUTATIONS if permutations is None else permutations
    ranking = []
    for cell in CELLS:
        rows = []
        for name in SWEEPS:
            points = [r for r in study if r["cell"] == cell and r["hyperparameter"] == name]
            if len(points) < 2:
                continue
            means = np.array([p["mean"] for p in points])
            runs = [np.array(p["values"])[np.isfinite(p["values"])] for p in points]
            runs_ok = [r for r in runs if len(r)]
            every = np.concatenate(runs)
            total_ss = float(((every - every.mean()) ** 2).sum())
            between_ss = float(sum(len(r) * (r.mean() - every.mean()) ** 2 for r in runs if len(r)))
            best = points[int(np.nanargmax(means) if higher_is_better() else np.nanargmin(means))]
            observed = float(np.nanmax(means) - np.nanmin(means))
            null = permutation_null(runs_ok, permutations, seed=SEED) if len(runs_ok) > 1 else np.zeros(1)
            null_95 = float(np.quantile(null, 0.95))
            rows.append({"cell": cell, "hyperparameter": name, "range": observed,
                         "eta_squared": between_ss / total_ss if total_ss > 0 else 0.0,
                         "p_value": float((1 + (null >= observed - 1e-12).sum()) / (1 + len(null))),
                         "null_range_95": null_95, "beyond_noise": observed - null_95,
                         "points": len(points), "best_value": best["value"], "best_mean": best["mean"],
                         "default_std": next(p["std"] for p in points if p["default"])})
        ranking += sorted(rows, key=lambda r: (r["p_value"], -r["beyond_noise"]))
    for rank_within in CELLS:
        for k, r in enumerate([r for r in ranking if r["cell"] == rank_within], start=1):
            r["rank"] = k
    return ranking


def higher_is_better() -> bool:
    return METRIC == "test_accuracy"


def label_of(name: str) -> str:
    return SWEEPS[name][2]


def conclusions(study: list[dict], ranking: list[dict], task_note: str) -> list[str]:
    """Sentences chosen by the numbers: the ranking per cell, the seed noise it stands against, where the
    best values lie, and how LSTM and GRU differ in sensitivity."""
    lines = []
    for cell in CELLS:
        ranked = [r for r in ranking if r["cell"] == cell]
        if not ranked:
            continue
        noise = ranked[0]["default_std"]
        order = ", ".join(f"{label_of(r['hyperparameter'])} {r['range']:.3f} over {r['points']} values "
                          f"(p {r['p_value']:.3g}, eta² {r['eta_squared']:.2f})" for r in ranked)
        lines.append(f"{cell.upper()} on {task_note}: the range of the mean {METRIC} each hyperparameter "
                     f"spans, ranked by its permutation test (the range expected from seed noise alone grows "
                     f"with the number of values tried): {order}. Seed-to-seed std at the defaults: "
                     f"{noise:.3f}.")
        small = [label_of(r["hyperparameter"]) for r in ranked if r["p_value"] > ALPHA]
        if small:
            lines.append(f"{cell.upper()}: {', '.join(small)} move{'s' if len(small) == 1 else ''} the mean "
                         f"no more than shuffling the runs among the values does (p > {ALPHA:g}): within "
                         f"these grids, not distinguishable from luck at {SEEDS} seeds, so "
                         f"{'its' if len(small) == 1 else 'their'} rank says nothing.")
        best_lr = next((r for r in ranked if r["hyperparameter"] == "LR"), None)
        if best_lr:
            lines.append(f"{cell.upper()}: the best learning rate in the grid is {best_lr['best_value']:g} "
                         f"(mean {METRIC} {best_lr['best_mean']:.3f}).")
    if len(CELLS) == 2:
        both = {name: {r["cell"]: r["range"] for r in ranking if r["hyperparameter"] == name}
                for name in SWEEPS}
        shared = {n: v for n, v in both.items() if len(v) == 2}
        if shared:
            a, b = CELLS
            more = [label_of(n) for n, v in shared.items() if v[a] > 1.5 * v[b]]
            less = [label_of(n) for n, v in shared.items() if v[b] > 1.5 * v[a]]
            parts = []
            if more:
                parts.append(f"the {a.upper()} is more sensitive (range > 1.5x) to {', '.join(more)}")
            if less:
                parts.append(f"the {b.upper()} is more sensitive to {', '.join(less)}")
            lines.append("Between the cells: " + ("; ".join(parts) if parts else
                         "no hyperparameter moves one cell 1.5x more than the other") + ".")
    return lines


def compare_with_greff(ranking: list[dict], searched: dict | None = None) -> list[str]:
    """Greff et al. 2017 (random search + fANOVA on TIMIT, IAM Online, JSB Chorales): the learning rate is
    by far the most important hyperparameter, the hidden size comes next, and interactions are small.
    Each statement is checked against this study's own ranking (and the random search, if one ran)."""
    lines = []
    for cell in CELLS:
        ranked = [r["hyperparameter"] for r in ranking if r["cell"] == cell]
        if not ranked:
            continue
        where = {name: k + 1 for k, name in enumerate(ranked)}
        p = {r["hyperparameter"]: r["p_value"] for r in ranking if r["cell"] == cell}
        first = label_of(ranked[0])
        lr_rank, hid_rank = where.get("LR"), where.get("HIDDEN_SIZE")
        noise = lambda name: p.get(name, 0.0) > ALPHA                          # noqa: E731
        verdict_lr = ("cannot be checked (no learning-rate sweep)" if not lr_rank else
                      f"cannot be told from noise here (p {p['LR']:.3g})" if noise("LR") else
                      "agrees: the learning rate ranks first" if lr_rank == 1 else
                      f"differs: {first} ranks first, the learning rate {lr_rank}")
        verdict_hid = ("cannot be checked (no hidden-size sweep)" if not hid_rank else
                       f"cannot be told from noise here (p {p['HIDDEN_SIZE']:.3g}), so its rank "
                       f"{hid_rank} of {len(ranked)} says nothing" if noise("HIDDEN_SIZE") else
                       "agrees: hidden size ranks second" if hid_rank == 2 else
                       f"differs: hidden size ranks {hid_rank} of {len(ranked)}")
        lines.append(f"{cell.upper()}: 'the learning rate matters most' {verdict_lr}; "
                     f"'hidden size next' {verdict_hid}.")
    if not searched:
        lines.append("'Interactions are small': a one-factor-at-a-time study cannot measure them (each sweep "
                     "holds the others at their defaults); set --RANDOM_TRIALS for an indicative estimate.")
    for cell, res in (searched or {}).items():
        if not res["importance"]:
            lines.append(f"{cell.upper()}: random search: {res['note']}.")
            continue
        shares = sorted(res["importance"].items(), key=lambda kv: -kv[1])
        rest = res["interactions_and_rest"]
        lines.append(f"{cell.upper()}, random search ({len(res['trials'])} runs, indicative): "
                     "main-effect shares "
                     + ", ".join(f"{label_of(n)} {v:.2f}" for n, v in shares)
                     + f"; interactions and the rest {rest:.2f}: 'interactions are small' "
                     + ("agrees" if rest < 0.25 else "differs")
                     + f"; the largest main effect is {label_of(shares[0][0])}.")
    return lines


# ----------------------------------------------------------------------------------------------------
# Optional: a seeded random search and a main-effects estimate (fANOVA-style, indicative)
# ----------------------------------------------------------------------------------------------------
def random_search(twins: dict, data: dict, device, progress: ProgressLog) -> dict:
    """RANDOM_TRIALS runs per cell at points drawn at random from the grids (the learning rate
    log-uniform between the grid's ends), seeds cycling over SEED...; then a random forest fitted to
    (hyperparameters -> metric) estimates each hyperparameter's main effect: the variance of its
    partial-dependence curve over the grid, as a share of the forest's prediction variance. What the
    main effects do not add up to is interactions (plus what the forest smooths away)."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(SEED)
    result = {}
    for cell in CELLS:
        defaults = defaults_of(twins[cell], cell)
        names = [n for n in SWEEPS if n in defaults]
        grids = {n: sorted(set(globals()[SWEEPS[n][0]]) | {defaults[n]}) for n in names}
        rows = []
        for i in range(RANDOM_TRIALS):
            point = {n: float(rng.choice(grids[n])) for n in names}
            lo, hi = math.log10(min(grids["LR"])), math.log10(max(grids["LR"]))
            point["LR"] = float(10 ** rng.uniform(lo, hi))
            seed = SEED + i % SEEDS
            r = train_point(twins[cell], cell, point, seed, data, device)
            rows.append({**point, "seed": seed, **r})
            print(f"[random {i + 1:2d}/{RANDOM_TRIALS}] {cell.upper()} "
                  + " ".join(f"{n}={point[n]:.3g}" for n in names) + f": {METRIC} {r[METRIC]:.4f}")
            progress.for_run(f"{cell} random {i + 1}", {"cell": cell, **point, "seed": seed}).end(
                {METRIC: r[METRIC], "seconds": r["seconds"]})
        ok = [r for r in rows if math.isfinite(r[METRIC])]
        if len(ok) < 5:
            result[cell] = {"trials": rows, "importance": {}, "note": "too few finished runs for an estimate"}
            continue
        X = np.array([[math.log10(r[n]) if n == "LR" else r[n] for n in names] for r in ok])
        y = np.array([r[METRIC] for r in ok])
        forest = RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=SEED).fit(X, y)
        base = forest.predict(X)
        spread = {}
        for j, n in enumerate(names):
            grid = np.log10(grids[n]) if n == "LR" else np.array(grids[n], dtype=float)
            curve = []
            for v in grid:  # partial dependence: every sampled point with this hyperparameter set to v
                Xv = X.copy()
                Xv[:, j] = v
                curve.append(forest.predict(Xv).mean())
            spread[n] = float(np.var(curve))
        # shares of the forest's prediction variance; partial-dependence variances can add up to more than
        # it (correlated samples), so they are scaled to sum to at most 1
        total = max(float(np.var(base)), sum(spread.values()), 1e-12)
        importance = {n: v / total for n, v in spread.items()}
        result[cell] = {"trials": rows, "importance": importance,
                        "interactions_and_rest": float(1 - sum(importance.values()))}
    return result


# ----------------------------------------------------------------------------------------------------
# Plots: metric vs value per hyperparameter (mean ± std bands), the ranking, the cost
# ----------------------------------------------------------------------------------------------------
def plot_study(study: list[dict], key: str, path, ylabel: str, title: str):
    """One panel per hyperparameter: `key` ('mean' with its std band, or 'seconds') against the value,
    LSTM blue and GRU red; the default is the star, on a dotted line; the learning rate on a log axis."""
    names = [n for n in SWEEPS if any(r["hyperparameter"] == n for r in study)]
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        _, scale, label = SWEEPS[name]
        for cell in CELLS:
            pts = sorted((r for r in study if r["hyperparameter"] == name and r["cell"] == cell),
                         key=lambda r: r["value"])
            if not pts:
                continue
            x = np.array([p["value"] for p in pts], dtype=float)
            y = np.array([p[key] for p in pts], dtype=float)
            color = COLORS[cell]
            ax.plot(x, y, "o-", color=color, label=cell.upper())
            if key == "mean":
                s = np.nan_to_num(np.array([p["std"] for p in pts], dtype=float))
                ax.fill_between(x, y - s, y + s, color=color, alpha=0.2, lw=0)
            d = next(p for p in pts if p["default"])
            ax.plot([d["value"]], [d[key]], "*", ms=14, color=color, mec="black", zorder=5)
            ax.axvline(d["value"], color=color, ls=":", lw=1)
        if scale != "linear":
            ax.set_xscale("log", base=10 if scale == "log" else 2)
        ax.set_xticks(sorted({r["value"] for r in study if r["hyperparameter"] == name}))
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(f"{SWEEPS_ZH[name]} / {label}")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_results(study: list[dict], ranking: list[dict], out, task_note: str) -> list[str]:
    """study_grid.png (the metric per sweep), study_seconds.png (time per run), study_ranking.png."""
    ylabel, zh = METRIC.replace("_", " "), METRICS_ZH[METRIC]
    plot_study(study, "mean", out / "study_grid.png", f"{zh}（均值 ± 标准差）\n{ylabel} (mean ± std)",
               f"{TASK}：每次只改一个超参数，每个点 {SEEDS} 个种子（星号 = 孪生脚本的默认值）\n"
               f"{task_note}: one hyperparameter at a time, {SEEDS} seeds per point "
               "(star = the twin's default)")
    plot_study(study, "seconds", out / "study_seconds.png", "每次运行的秒数 / seconds per run",
               f"{TASK}：每次运行的训练时间 / {TASK}: training time per run")
    swept = [n for n in SWEEPS if any(r["hyperparameter"] == n for r in ranking)]
    ranges = {c.upper(): [next((r["range"] for r in ranking
                                if r["cell"] == c and r["hyperparameter"] == n), 0.0)
                          for n in swept] for c in CELLS}
    plot_bars([f"{SWEEPS_ZH[n]}\n{label_of(n)}" for n in swept], ranges, out / "study_ranking.png",
              ylabel=f"{zh}均值的极差 / range of mean {ylabel}",
              title="每个超参数让指标变化多少（最好与最差的点的均值之差）\n"
                    "How far each hyperparameter moves the metric (best minus worst point mean)")
    return ["study_grid.png", "study_seconds.png", "study_ranking.png"]


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    # never over your edits
    cfg.update(apply_gpu_settings(globals(), GPU_SETTINGS, device, quick=cfg["QUICK"]))
    out = output_dir(__file__, quick=cfg["QUICK"])  # --quick: under .../quick/, never over a full run
    twins = load_twins()
    data = load_ucr_dataset(TASK)
    task_note = f"{TASK} ({len(data['train'][1])} training / {len(data['test'][1])} test series)"
    # progress.jsonl: one row per finished run; TensorBoard: each run's point and result (HParams tab)
    with ProgressLog(out, hparams={"TASK": TASK, "METRIC": METRIC}, curves=False) as progress:
        trials, study = run_sweeps(twins, data, device, progress) if ONE_FACTOR else ([], [])
        searched = random_search(twins, data, device, progress) if RANDOM_TRIALS > 0 else None
    ranking = rank_hyperparameters(study)
    if ranking:
        print_table([{"cell": r["cell"].upper(), "rank": r["rank"],
                      "hyperparameter": label_of(r["hyperparameter"]), "values": r["points"],
                      "range of means": r["range"], "noise alone (95%)": r["null_range_95"],
                      "p": r["p_value"], "eta²": r["eta_squared"], "best value": f"{r['best_value']:g}",
                      "best mean": r["best_mean"]} for r in ranking],
                    title=f"How far each hyperparameter moves the mean {METRIC} ({SEEDS} seeds per point; p: "
                          f"{PERMUTATIONS} permutations of the runs among the values)",
                    floatfmt=".3f")
    lines = conclusions(study, ranking, task_note)
    greff = compare_with_greff(ranking, searched)
    print("Conclusions (from the numbers above):")
    for line in lines + greff:
        print("  - " + line)
    plots = plot_results(study, ranking, out, task_note) if study else []
    metrics = {"task": task_note, "metric": METRIC, "higher_is_better": higher_is_better(), "seeds": SEEDS,
               "runs": len(trials), "study": study, "ranking": ranking, "conclusions": lines,
               "greff_2017": greff, "defaults": {c: defaults_of(twins[c], c) for c in CELLS}, "plots": plots,
               "random_search": searched}
    save_metrics(out, config=cfg, metrics=metrics, history=trials, start_time=t0, device=device)
    print(f"wrote {out / 'metrics.json'}{''.join(', ' + p for p in plots)} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    run_main(main)

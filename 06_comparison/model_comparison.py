"""LSTM vs GRU on every applied case: same data and splits, several seeds, optionally matched
parameter counts.

Each case script runs in a subprocess (`--SEED=s`, the learner's own outputs/ untouched); its metrics.json
is kept in outputs/06_comparison/model_comparison/runs/, reused while the code it ran is unchanged.
--MATCH_PARAMS sizes the GRU with the case script's own build_model. One table (mean ± std, parameters,
training time, winner, Welch t-test) and conclusions generated from the numbers.
Run: python 06_comparison/model_comparison.py [--quick] [--MATCH_PARAMS] [--CASES=03_stock,05_seq_classify]
Default: 5 tasks x 2 cells x 3 seeds, about 1-1.5 h on a 2-core CPU plus ~1.2 h for pronunciation
(04_pronounce: six runs of 11-13 min each) (--quick: 1 seed, ~1 min). Theory: THEORY.md.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import ast
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from utils.data_utils import load_ucr_dataset
from utils.model_utils import count_parameters
from utils.script_utils import (
    OUTPUTS_ROOT,
    REPO_ROOT,
    Interval,
    Items,
    Positive,
    Seed,
    UserError,
    apply_gpu_settings,
    atomic_write,
    get_device,
    import_case_module,
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
from utils.visualization import COLORS, plt, save_figure

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEEDS: Items(Seed) = (0, 1, 2)    # every case runs once per seed and cell (n=3:
                                  # enough for a rough Welch test)
CASES: Items(str) = ("02_sentiment", "02_chinese", "03_stock", "04_text_gen",  # which tasks to compare
                     "04_pronounce", "05_seq_classify")
MATCH_PARAMS: bool = False        # True: the GRU gets the hidden size
                                  # that gives it the LSTM's parameter count
REUSE: bool = True                # skip a run whose saved result has the same command and code
                                  # (comments aside)
RUN_TIMEOUT: Positive = 3600      # seconds before one case run is abandoned
ALPHA: Interval("(0, 1)") = 0.05  # significance level of the Welch t-test
SEED: Seed = 0                    # (this script itself draws nothing random; kept for the house convention)

QUICK_SETTINGS = dict(SEEDS=(0,), RUN_TIMEOUT=300)

# What each case reports and how its model is sized. `hidden`: the case script's hidden-size constant
# (MATCH_PARAMS sets it and calls the script's build_model); `metric`: the headline metric in its
# metrics.json ("a.b" reaches into nested dicts); `higher`: whether a larger metric is better; `split`:
# which split it is measured on ("test" unless said: the character model has no test split of its own);
# `args`: what the case scripts are given besides --SEED (02_chinese: the same twins on the Chinese reviews),
# `folder`: the subfolder of the script's outputs that such a run writes to.
TASKS = {
    "02_sentiment": dict(task="sentiment (Rotten Tomatoes)", lstm="02_sentiment/sentiment_lstm.py",
                         gru="02_sentiment/sentiment_gru.py", metric="test_accuracy", higher=True,
                         hidden="HIDDEN_SIZE"),
    "02_chinese": dict(task="sentiment (Chinese reviews)", lstm="02_sentiment/sentiment_lstm.py",
                       gru="02_sentiment/sentiment_gru.py", metric="test_accuracy", higher=True,
                       hidden="HIDDEN_SIZE", args=["--DATASET=chinese_reviews"], folder="chinese_reviews"),
    # the twins fine-tuning 04's People's Daily model of their own cell (ULMFiT, 02's README): run
    # text_lstm.py and text_gru.py with --DATASET=peoples_daily first ({outputs}: this machine's outputs/)
    "02_chinese_pretrained": dict(task="sentiment (Chinese reviews), pretrained on People's Daily",
                                  lstm="02_sentiment/sentiment_lstm.py", gru="02_sentiment/sentiment_gru.py",
                                  metric="test_accuracy", higher=True, hidden="HIDDEN_SIZE",
                                  args=["--DATASET=chinese_reviews", "--PRETRAINED={outputs}/04_text_gen/"
                                        "text_{cell}/{quick}peoples_daily/model.pt"],
                                  folder="chinese_reviews_pretrained"),
    "03_stock": dict(task="next-day return (AAPL)", lstm="03_stock/stock_lstm.py",
                     gru="03_stock/stock_gru.py", metric="rmse", higher=False, hidden="HIDDEN_SIZE"),
    "04_text_gen": dict(task="character LM (Shakespeare, held-out 10%)", lstm="04_text_gen/text_lstm.py",
                        gru="04_text_gen/text_gru.py", metric="val_bits_per_char", higher=False,
                        hidden="HIDDEN_SIZE", split="validation"),   # the split that also chose its learning
                                                                     # rate and checkpoints
    "04_pronounce": dict(task="pronunciation (CMUdict, 6.2k test words)", lstm="04_text_gen/g2p_lstm.py",
                         gru="04_text_gen/g2p_gru.py", metric="test_wer", higher=False, hidden="HIDDEN_SIZE"),
    "05_seq_classify": dict(task="time-series classes (GunPoint)", lstm="05_seq_classify/sequence_lstm.py",
                            gru="05_seq_classify/sequence_gru.py", metric="test_accuracy", higher=True,
                            hidden="HIDDEN_SIZE"),
    "05_segment": dict(task="word segmentation (People's Daily, 50k test words)",
                       lstm="05_seq_classify/segment_lstm.py", gru="05_seq_classify/segment_gru.py",
                       metric="test_f1", higher=True, hidden="HIDDEN_SIZE", args=["--BASELINES=false"]),
}


# ----------------------------------------------------------------------------------------------------
# Parameter counts and the matched hidden size (Chung et al. 2014 compared the cells at equal size)
# ----------------------------------------------------------------------------------------------------
def rnn_parameter_count(cell: str, input_size: int, hidden: int, num_layers: int = 1,
                        bidirectional: bool = False, bias: bool = True) -> int:
    """Weights of a torch.nn.LSTM/GRU stack: per layer and direction G*(H*I_l + H*H) + 2*G*H bias terms,
    G = 4 gates (LSTM) or 3 (GRU); I_l = input_size for layer 0, H * directions above it."""
    gates = {"lstm": 4, "gru": 3}[cell.lower()]
    dirs = 2 if bidirectional else 1
    total = 0
    for layer in range(num_layers):
        i = input_size if layer == 0 else hidden * dirs
        total += dirs * gates * (hidden * i + hidden * hidden + (2 * hidden if bias else 0))
    return total


def matched_hidden_size(count, target: int, lo: int = 1, hi: int = 8192) -> int:
    """The hidden size h whose count(h) is closest to `target`; count must grow with h.
    Binary search for the first h with count(h) >= target, then keep whichever neighbour is closer."""
    if count(hi) < target:
        raise UserError(f"no hidden size up to {hi} reaches {target} parameters.")
    a, b = lo, hi
    while a < b:
        mid = (a + b) // 2
        if count(mid) >= target:
            b = mid
        else:
            a = mid + 1
    if a > lo and abs(count(a - 1) - target) <= abs(count(a) - target):
        return a - 1
    return a


def model_dims(case: str, script, lstm_record: dict) -> tuple:
    """The arguments before `device` of the case script's build_model: the sizes its data fixes
    (vocabulary for 02 and 04, features for 03, features and classes for 05)."""
    if case == "02_chinese_pretrained":
        raise UserError("02_chinese_pretrained's size is its language model's (04's): --MATCH_PARAMS does "
                        "not apply to it.")
    if case in ("02_sentiment", "02_chinese", "04_text_gen"):
        vocab = lstm_record.get("metrics", {}).get("vocab_size")
        if vocab is None:
            raise UserError(f"{case}'s LSTM run did not record vocab_size, so its model cannot be rebuilt.")
        return (vocab,)
    if case == "03_stock":
        return (len(script.FEATURES),)
    if case == "04_pronounce":  # letters and phonemes are fixed sets: build_model(device) needs nothing else
        return ()
    if case == "05_segment":  # characters and character pairs seen in training
        metrics = lstm_record.get("metrics", {})
        return (metrics["char_vocab_size"], metrics["bigram_vocab_size"])
    if case == "05_seq_classify":
        series_model = import_case_module(case, "series_model")
        data = load_ucr_dataset(script.DATASET, False)
        patch = series_model.resolve_patch(script.PATCH, data["lengths"][1])  # PATCH=0 (auto) ->
                                                                              # what training uses
        return (data["n_channels"] * patch, len(data["classes"]))
    raise UserError(f"no model dimensions known for case {case!r}.")


def run_device() -> str:
    """The device kind a case script's DEVICE="auto" picks on this machine: 'cuda', 'mps' or 'cpu'. Runs on
    another device are other runs (GPU_SETTINGS give other models), so reuse and --MATCH_PARAMS key on it."""
    return get_device("auto", verbose=False).type


def use_run_settings(script, record: dict | None, device: str, quick: bool, hidden: str) -> None:
    """Give the twin module (from load_case_script) the GPU_SETTINGS values its runs really use, so that a
    parameter count is the trained model's: a finished run's own config when there is one (`record`), else
    what apply_gpu_settings gives on `device`, with the hidden-size constant left to the matcher."""
    settings = getattr(script, "GPU_SETTINGS", None) or {}
    if record is not None:
        for name in settings:
            if name in record.get("config", {}):
                setattr(script, name, record["config"][name])
        return
    namespace = vars(script)
    namespace["__given__"] = [hidden]              # set by --HIDDEN_SIZE=... on the GRU's command line
    with contextlib.redirect_stdout(io.StringIO()):
        apply_gpu_settings(namespace, settings, device, quick=quick)


def parameter_counter(case: str, script, lstm_record: dict):
    """hidden -> parameters of the model the case script trains, built by the script's own build_model
    with its hidden-size constant set to `hidden` (`script`: the twin from load_case_script, its
    GPU_SETTINGS already resolved by use_run_settings)."""
    dims = model_dims(case, script, lstm_record)

    def count(hidden: int) -> int:
        setattr(script, TASKS[case]["hidden"], hidden)
        with contextlib.redirect_stdout(io.StringIO()):  # a build_model may print a summary line
            return count_parameters(script.build_model(*dims, "cpu"))

    return count


# ----------------------------------------------------------------------------------------------------
# Running the cases (or reusing their saved results)
# ----------------------------------------------------------------------------------------------------
def code_hash(source: str) -> str:
    """SHA-256 of a script's parsed code: a comment or layout edit keeps it, any change to what runs
    (a constant, a line of code, a docstring) changes it and so forces a fresh run."""
    return hashlib.sha256(ast.dump(ast.parse(source)).encode()).hexdigest()


def with_sibling_imports(path: Path) -> list[Path]:
    """`path` and the modules of its own folder that it imports, directly or through one another
    (`import sentiment_model`, `from rnn_common import ...`)."""
    found, todo = [], [path]
    while todo:
        file = todo.pop()
        if file in found or not file.is_file():
            continue
        found.append(file)
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            todo += [file.parent / f"{name.split('.')[0]}.py" for name in names]
    return found


def run_signature(command: list[str], cell: str, root: Path = REPO_ROOT, device: str | None = None) -> dict:
    """What a case run depends on: its command, the device kind it runs on (GPU_SETTINGS change the model
    on CUDA), and the code of every file it executes from this repository (comments aside): the script and
    the case modules it imports, utils/*.py, and 01_basic_theory's scratch cell (IMPL=scratch trains with
    it), and the checksum of a --PRETRAINED file. A saved run is reused only if all match."""
    files = (with_sibling_imports(root / command[0]) + sorted((root / "utils").glob("*.py"))
             + with_sibling_imports(root / "01_basic_theory" / f"{cell}_from_scratch.py"))
    inputs = {}  # a file the run reads besides the code (--PRETRAINED's language model): its checksum
    for arg in command:
        if arg.startswith("--PRETRAINED=") and Path(arg.split("=", 1)[1]).is_file():
            inputs[arg] = hashlib.sha256(Path(arg.split("=", 1)[1]).read_bytes()).hexdigest()
    return {"command": command, "device": device or run_device(),
            "code_sha256": {f.relative_to(root).as_posix(): code_hash(f.read_text(encoding="utf-8"))
                            for f in files}, **({"inputs_sha256": inputs} if inputs else {})}


def run_case(case: str, cell: str, seed: int, args: list[str], runs_dir: Path, quick: bool,
             device: str = "cpu") -> dict:
    """One training run of a case script in a subprocess -> its metrics.json (also kept under runs/)."""
    script = REPO_ROOT / TASKS[case][cell]
    name = f"{case}_{cell}_seed{seed}"
    task_args = [a.format(cell=cell, outputs=OUTPUTS_ROOT, quick="quick/" if quick else "")
                 for a in TASKS[case].get("args", [])]
    command = ([TASKS[case][cell], f"--SEED={seed}", *task_args, *args]
               + (["--quick"] if quick else []))
    signature = run_signature(command, cell, device=device)
    saved = runs_dir / f"{name}.json"
    if REUSE and saved.is_file():
        record = json.loads(saved.read_text(encoding="utf-8"))
        if record.get("comparison_signature") == signature:
            print(f"  {name}: reused {shown_path(saved)}")
            return record
    work = runs_dir / "work" / name
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "LSTM_GRU_OUTPUTS": str(work), "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    print(f"  {name}: python {' '.join(command)}", flush=True)
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT)
        failed = proc.returncode != 0 and f"exit code {proc.returncode}"
        log = proc.stdout + "\n--- stderr ---\n" + proc.stderr
    except subprocess.TimeoutExpired as e:
        failed, log = f"timed out after {RUN_TIMEOUT} s", str(e.stdout or "") + str(e.stderr or "")
    folder = work / script.parent.name / script.stem        # a task's key need not be its folder
                                                            # (04_pronounce)
    metrics_file = folder / "metrics.json"
    if quick:  # output_dir's layout: a --quick run writes under <script>/quick/[<dataset>/]
        metrics_file = folder / "quick" / TASKS[case].get("folder", "") / "metrics.json"
    elif TASKS[case].get("folder"):
        metrics_file = folder / TASKS[case]["folder"] / "metrics.json"
    if not failed and not metrics_file.is_file():
        failed = f"no {metrics_file.relative_to(work)} written"
    if failed:
        atomic_write(runs_dir / f"{name}.log", lambda p: p.write_text(log, encoding="utf-8"))
        tail = log.strip().splitlines()[-3:]
        print(f"  {name}: FAILED ({failed}); log: {runs_dir / (name + '.log')}\n    " + "\n    ".join(tail))
        return {"failed": failed}
    record = json.loads(metrics_file.read_text(encoding="utf-8"))
    record["comparison_signature"] = signature
    record["comparison_run_s"] = round(time.time() - t0, 1)
    save_json(record, saved)
    shutil.rmtree(work, ignore_errors=True)
    return record


def lookup(record: dict, dotted: str):
    value = record.get("metrics", {})
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def parameters_of(record: dict):
    m = record.get("metrics", {})
    if "parameters" in m:
        return m["parameters"]
    for sub in (m.get("datasets") or {}).values():
        if isinstance(sub, dict) and "parameters" in sub:
            return sub["parameters"]
    return None


def training_time_of(record: dict):
    """Seconds spent training: the case's own train_time_s, else the sum of its epoch times, else wall
    time."""
    m = record.get("metrics", {})
    if isinstance(m.get("train_time_s"), (int, float)):
        return float(m["train_time_s"])
    epochs = [r.get("epoch_time_s") for r in record.get("history", []) if isinstance(r, dict)]
    if epochs and all(isinstance(t, (int, float)) for t in epochs):
        return float(sum(epochs))
    return record.get("wall_time_s")


# ----------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------
def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def welch_test(a, b) -> dict:
    """Welch's two-sample t-test (unequal variances). Returns t, df, p, or a note when n is too small."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return {"t": None, "df": None, "p": None, "note": f"n too small (n={len(a)} vs {len(b)} seeds)"}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        same = a.mean() == b.mean()
        return {"t": None, "df": None, "p": 1.0 if same else 0.0,
                "note": ("identical results across seeds" if same
                         else "no spread at all: any gap is systematic")}
    t, p = stats.ttest_ind(a, b, equal_var=False)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return {"t": float(t), "df": float(df), "p": float(p), "note": ""}


def significance_note(test: dict, alpha: float) -> str:
    if test["p"] is None:
        return test["note"]
    if test["note"]:
        return test["note"]
    return (f"significant (Welch p={test['p']:.3f})" if test["p"] < alpha
            else f"difference within noise (Welch p={test['p']:.2f})")


def compare_case(case: str, runs: dict, alpha: float) -> dict:
    """LSTM vs GRU on one case from its per-seed run records."""
    spec = TASKS[case]
    row = {"case": case, "task": spec["task"], "metric": spec["metric"], "split": spec.get("split", "test"),
           "better": "higher" if spec["higher"] else "lower"}
    for cell in ("lstm", "gru"):
        ok = [r for r in runs[cell] if "failed" not in r]
        values = [lookup(r, spec["metric"]) for r in ok]
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        mean, std = mean_std(values) if values else (None, None)
        times = [t for t in (training_time_of(r) for r in ok) if t is not None]
        params = [p for p in (parameters_of(r) for r in ok) if p is not None]
        hidden = [r.get("config", {}).get(spec["hidden"]) for r in ok]
        row[cell] = {"values": values, "mean": mean, "std": std, "n": len(values),
                     "failed": len(runs[cell]) - len(ok), "parameters": params[0] if params else None,
                     "hidden": hidden[0] if hidden else None,
                     "train_time_s": float(np.mean(times)) if times else None}
    a, b = row["lstm"]["values"], row["gru"]["values"]
    if a and b:
        test = welch_test(a, b)
        diff = row["gru"]["mean"] - row["lstm"]["mean"]
        gru_better = diff > 0 if spec["higher"] else diff < 0
        row["winner"] = "tie" if diff == 0 else ("GRU" if gru_better else "LSTM")
        row["difference_gru_minus_lstm"] = diff
        row["welch"] = test
        row["significant"] = test["p"] is not None and not test["note"] and test["p"] < alpha
        row["note"] = significance_note(test, alpha)
    else:
        row.update(winner=None, welch=None, significant=False,
                   note="missing results: " + ", ".join(c.upper() for c in ("lstm", "gru")
                                                        if not row[c]["values"]))
    return row


# ----------------------------------------------------------------------------------------------------
# Table, conclusions, chart
# ----------------------------------------------------------------------------------------------------
def fmt_ms(mean, std, n):
    if mean is None:
        return "n/a"
    digits = 4 if abs(mean) < 10 else 2
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + ("" if n > 1 else " (1 seed)")


def holm_adjust(rows: list[dict], alpha: float) -> None:
    """Holm's step-down correction over the tasks compared in one run: each row gains 'p_holm', and
    'significant' then means p_holm < alpha. Five Welch tests at alpha 0.05 would call at least one
    difference significant 23% of the time when the cells are equal; Holm keeps that chance <= alpha."""
    tested = sorted((r for r in rows
                     if r.get("welch") and r["welch"]["p"] is not None and not r["welch"]["note"]),
                    key=lambda r: r["welch"]["p"])
    running = 0.0
    for k, r in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - k) * r["welch"]["p"]))
        r["p_holm"] = running
        r["significant"] = running < alpha
        r["note"] = significance_note(r["welch"], alpha) + f"; Holm over {len(tested)} tasks p={running:.3f}"


def table_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        lp, gp = r["lstm"]["parameters"], r["gru"]["parameters"]
        lt, gt = r["lstm"]["train_time_s"], r["gru"]["train_time_s"]
        out.append({"task": r["task"], "metric": f"{r['split']} {r['metric']} ({r['better']} is better)",
                    "LSTM": fmt_ms(r["lstm"]["mean"], r["lstm"]["std"], r["lstm"]["n"]),
                    "GRU": fmt_ms(r["gru"]["mean"], r["gru"]["std"], r["gru"]["n"]),
                    "params LSTM / GRU": f"{lp:,} / {gp:,}" if lp and gp else "n/a",
                    "train s LSTM / GRU": f"{lt:.1f} / {gt:.1f}" if lt and gt else "n/a",
                    "winner": r["winner"] or "n/a", "significance": r["note"]})
    return out


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_no case has results yet_\n"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(r[h]).replace("|", "/") for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def conclusions(rows: list[dict], matched: bool) -> list[str]:
    """Plain-words conclusions, each computed from the measured numbers above."""
    done = [r for r in rows if r["winner"]]
    if not done:
        return ["No case has results for both cells yet, so nothing can be concluded."]
    lines = []
    for r in done:
        lp, gp = r["lstm"]["parameters"], r["gru"]["parameters"]
        lt, gt = r["lstm"]["train_time_s"], r["gru"]["train_time_s"]
        size = f" GRU had {gp / lp:.0%} of the LSTM's parameters" if lp and gp else ""
        speed = f" and trained in {gt / lt:.0%} of its time" if lt and gt else ""
        verdict = (f"{r['winner']} is better, {r['note']}" if r["winner"] != "tie" else "a tie")
        lines.append(f"{r['task']}: LSTM {r['metric']} {r['lstm']['mean']:.4g}, GRU {r['gru']['mean']:.4g} "
                     f"-> {verdict}.{size}{speed}.")
    sig = [r for r in done if r["significant"]]
    wins = {c: sum(r["winner"] == c for r in done) for c in ("LSTM", "GRU")}
    lines.append(f"Overall: GRU ahead on {wins['GRU']} of {len(done)} tasks, LSTM on {wins['LSTM']}; "
                 f"{len(sig)} of these differences are statistically significant at alpha={ALPHA} after "
                 f"Holm's correction for the {len(done)} comparisons.")
    lines.append("What the Welch tests cover: the spread between seeds only. Every seed is scored on the "
                 "same test items, so the test set's own sampling error (one standard error of accuracy p on "
                 "n items is sqrt(p(1-p)/n): about 1.1 points on 1,275 reviews, 1.4 on 150 GunPoint series) "
                 "is in none of them; a per-example paired test (McNemar, as "
                 "02_sentiment/model_comparison.py runs) answers 'is one model better on these items', these "
                 "answer 'does the seed-to-seed spread hide the difference'.")
    val = [r["task"] for r in done if r.get("split") == "validation"]
    if val:
        lines.append(f"{', '.join(val)}: scored on the validation split, which also chose the learning rate "
                     f"and the checkpoints, so its figures lean optimistic for both cells alike.")
    ratios = [r["gru"]["train_time_s"] / r["lstm"]["train_time_s"] for r in done
              if r["gru"]["train_time_s"] and r["lstm"]["train_time_s"]]
    if ratios:
        lines.append(f"Training time GRU/LSTM: median {np.median(ratios):.2f} over {len(ratios)} tasks "
                     f"(range {min(ratios):.2f}-{max(ratios):.2f}); end-to-end time includes data loading "
                     f"and early stopping, so it is not a pure cell-speed measure "
                     f"(see performance_benchmark.py).")
    lstm_sig = [r["task"] for r in sig if r["winner"] == "LSTM"]
    gru_sig = [r["task"] for r in sig if r["winner"] == "GRU"]
    same = "" if matched else " (at each script's own hidden size)"
    cheaper = None
    if ratios:
        cheaper = "GRU" if np.median(ratios) < 1 else "LSTM"
    params = [r["gru"]["parameters"] / r["lstm"]["parameters"] for r in done
              if r["gru"]["parameters"] and r["lstm"]["parameters"]]
    cost = (f"the {cheaper} trained faster here (median GRU/LSTM time {np.median(ratios):.2f})" if cheaper
            else "training times were not recorded")
    if params and not matched:
        cost += f" and the GRU had {np.median(params):.0%} of the LSTM's parameters"
    if all(r["welch"] and r["welch"]["p"] is None for r in done):
        lines.append("When to pick which: with one seed per cell no difference can be called real; run more "
                     f"seeds (--SEEDS=0,1,2,3,4) before choosing. Measured cost so far: {cost}.")
    elif not sig:
        lines.append(f"When to pick which: on these tasks the cell choice was within seed-to-seed "
                     f"noise{same}, so cost decides: {cost}.")
    else:
        if lstm_sig:
            lines.append(f"Pick the LSTM for tasks like {', '.join(lstm_sig)}: it was significantly better "
                         f"there{same}.")
        if gru_sig:
            lines.append(f"Pick the GRU for tasks like {', '.join(gru_sig)}: it was significantly better "
                         f"there{same}.")
        rest = [r["task"] for r in done if not r["significant"]]
        if rest:
            lines.append(f"Elsewhere ({', '.join(rest)}) the difference was within noise, so cost decides: "
                         f"{cost}.")
    return lines


# The plot's panel titles and axes, Chinese first (the AAPL task is scored on the forecast close, in dollars)
PANEL_TITLES = {"02_sentiment": ("情感分类（烂番茄）", "sentiment (Rotten Tomatoes)"),
                "02_chinese": ("情感分类（中文评论）", "sentiment (Chinese reviews)"),
                "02_chinese_pretrained": ("情感分类（中文评论，先读《人民日报》）",
                                          "sentiment (Chinese reviews, pretrained)"),
                "03_stock": ("AAPL 下一天的收盘价", "next-day close (AAPL)"),
                "04_text_gen": ("字符语言模型（莎士比亚）", "character LM (Shakespeare)"),
                "04_pronounce": ("发音（CMUdict）", "pronunciation (CMUdict)"),
                "05_seq_classify": ("时间序列分类（GunPoint）", "time-series classes (GunPoint)"),
                "05_segment": ("中文分词（人民日报）", "word segmentation (People's Daily)")}
METRICS_ZH = {"test_accuracy": "测试准确率", "rmse": "测试 RMSE（美元）",
              "val_bits_per_char": "验证集 bits/char", "test_wer": "测试词错误率", "test_f1": "测试词 F1"}


def plot_comparison(rows: list[dict], path: Path) -> Path:
    """One panel per task (their metrics have different scales): LSTM vs GRU mean with ±1 std error bars."""
    done = [r for r in rows if r["lstm"]["mean"] is not None or r["gru"]["mean"] is not None]
    fig, axes = plt.subplots(1, max(len(done), 1), figsize=(3.2 * max(len(done), 1) + 1, 3.8), squeeze=False)
    for ax, r in zip(axes[0], done):
        means = [r[c]["mean"] or 0.0 for c in ("lstm", "gru")]
        stds = [r[c]["std"] or 0.0 for c in ("lstm", "gru")]
        ax.bar(["LSTM", "GRU"], means, yerr=stds, capsize=4, color=[COLORS["lstm"], COLORS["gru"]])
        for x, (m, s) in enumerate(zip(means, stds)):
            ax.text(x, m + s, f"{m:.3g}", ha="center", va="bottom", fontsize=8)
        lo = min(m - s for m, s in zip(means, stds))
        hi = max(m + s for m, s in zip(means, stds))
        pad = 0.25 * (hi - lo) + 1e-9
        ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
        zh, en = PANEL_TITLES.get(r.get("case"), (r["task"], r["task"]))
        ax.set_title(f"{zh}\n{en}\n{r['winner'] or ''} {'*' if r['significant'] else ''}", fontsize=9)
        better = "越高越好" if r["better"] == "higher" else "越低越好"
        ax.set_ylabel(f"{METRICS_ZH.get(r['metric'], r['metric'])}（{better}）\n"
                      f"{r.get('split', 'test')} {r['metric']} ({r['better']} better)", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    if not done:
        axes[0, 0].text(0.5, 0.5, "还没有结果 / no results yet", ha="center", va="center")
    fig.suptitle("LSTM 对 GRU：主要指标（测试集；字符语言模型用验证集），各种子的均值 ± 标准差"
                 "（* = Holm 校正后 Welch 检验 p < alpha）\n"
                 "LSTM vs GRU: headline metric (test split; character LM: validation), mean ± std over seeds "
                 "(* = Holm-corrected Welch p < alpha)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    unknown = [c for c in CASES if c not in TASKS]
    if unknown:
        raise UserError(f"--CASES has unknown case(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}.")
    quick = cfg["QUICK"]
    out = output_dir(__file__, quick=quick)
    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)
    device = run_device()                          # where the case scripts will run (DEVICE="auto")
    print(f"case runs on: {device}")
    rows, skipped = [], []
    for case in CASES:
        spec = TASKS[case]
        missing = [spec[c] for c in ("lstm", "gru") if not (REPO_ROOT / spec[c]).is_file()]
        if missing:
            print(f"{case}: not available yet ({', '.join(missing)} missing)")
            skipped.append({"case": case, "missing": missing})
            continue
        print(f"{case}: {spec['task']}")
        runs = {"lstm": [run_case(case, "lstm", s, [], runs_dir, quick, device) for s in SEEDS]}
        gru_args, matched = [], None
        if MATCH_PARAMS:
            matched = match_gru_hidden(case, runs["lstm"], quick, device)
            if matched:
                gru_args = [f"--{spec['hidden']}={matched['gru_hidden']}"]
        runs["gru"] = [run_case(case, "gru", s, gru_args, runs_dir, quick, device) for s in SEEDS]
        row = compare_case(case, runs, ALPHA)
        row["matched"] = matched
        rows.append(row)

    holm_adjust(rows, ALPHA)
    table = table_rows(rows)
    print_table(table, title="LSTM vs GRU (mean ± std over seeds)")
    notes = conclusions(rows, MATCH_PARAMS)
    print("\n".join(f"- {n}" for n in notes))
    md = (f"# LSTM vs GRU{' (matched parameter counts)' if MATCH_PARAMS else ''}\n\n"
          f"Seeds: {', '.join(map(str, SEEDS))}{' (quick settings)' if quick else ''}.\n\n"
          + markdown_table(table) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    atomic_write(out / "comparison_table.md", lambda p: p.write_text(md, encoding="utf-8"))
    plot_comparison(rows, out / "comparison.png")
    failed = [f"{r['case']} {c.upper()}" for r in rows for c in ("lstm", "gru") if r[c]["failed"]]
    save_metrics(out, config=cfg, metrics={"rows": rows, "table": table, "conclusions": notes,
                                           "skipped": skipped, "failed": failed,
                                           "plots": ["comparison.png"],
                                           "table_markdown": "comparison_table.md"},
                 start_time=t0)
    print(f"results: {out / 'metrics.json'}, {out / 'comparison_table.md'}, {out / 'comparison.png'}")
    if failed:
        raise UserError(f"{len(failed)} case run(s) failed ({', '.join(failed)}); see the .log files in "
                        f"{runs_dir}.")


def match_gru_hidden(case: str, lstm_runs: list[dict], quick: bool, device: str = "cpu") -> dict | None:
    """The GRU hidden size that gives the GRU model the LSTM model's parameter count. Both models are
    built by their own script's build_model with the settings their runs use on `device` (the LSTM's from
    its run's config, the GRU's GPU_SETTINGS on CUDA), so the count is that of the very models trained."""
    spec = TASKS[case]
    ok = [r for r in lstm_runs if "failed" not in r]
    if not ok:
        return None
    lstm_hidden = ok[0]["config"][spec["hidden"]]
    try:
        lstm_script = load_case_script(REPO_ROOT / spec["lstm"], quick)
        gru_script = load_case_script(REPO_ROOT / spec["gru"], quick)
        use_run_settings(lstm_script, ok[0], device, quick, spec["hidden"])   # what the LSTM runs used
        use_run_settings(gru_script, None, device, quick, spec["hidden"])     # what the GRU runs will use
        lstm_count = parameter_counter(case, lstm_script, ok[0])
        gru_count = parameter_counter(case, gru_script, ok[0])
        target = lstm_count(lstm_hidden)
        h = matched_hidden_size(gru_count, target)
    except (UserError, KeyError, TypeError, AttributeError) as e:
        print(f"  cannot match parameters for {case} ({e}); the GRU keeps its own hidden size")
        return None
    got = gru_count(h)
    print(f"  matched: LSTM hidden {lstm_hidden} -> {target:,} parameters; GRU hidden {h} -> {got:,}")
    return {"lstm_hidden": lstm_hidden, "lstm_parameters": target, "gru_hidden": h, "gru_parameters": got}


if __name__ == "__main__":
    run_main(main)

"""06_comparison/hyperparameter_study.py: the sweeps end to end (--quick), the ranking, the Greff comparison."""
import json
import math

import pytest

from conftest import ROOT, run_script
from utils.script_utils import load_case_script

STUDY = ROOT / "06_comparison" / "hyperparameter_study.py"


@pytest.fixture(scope="module")
def study():
    return load_case_script(STUDY)


def test_quick_study_end_to_end():
    result = run_script("06_comparison/hyperparameter_study.py", "--quick")
    record = result.metrics
    m = record["metrics"]
    rows = m["study"]
    assert rows and all({"hyperparameter", "value", "cell", "mean", "std", "n", "parameters", "seconds"} <= set(r)
                        for r in rows)
    assert all(r["n"] == 2 and len(r["values"]) == 2 for r in rows)              # SEEDS=2 under --quick
    for cell, default in (("lstm", 3e-3), ("gru", 3e-3)):                         # the twins' LR, added to the grid
        lrs = sorted(r["value"] for r in rows if r["cell"] == cell and r["hyperparameter"] == "LR")
        assert lrs == [1e-3, default, 1e-2]
        assert [r["default"] for r in rows if r["cell"] == cell and r["hyperparameter"] == "LR"] == [False, True, False]
    assert {r["cell"] for r in rows if r["hyperparameter"] == "FORGET_BIAS"} == {"lstm"}  # the GRU has no forget gate
    # a point shared by several sweeps (the defaults) is trained once per seed and reused
    defaults = [r for r in rows if r["cell"] == "lstm" and r["default"]]
    assert len({tuple(r["values"]) for r in defaults}) == 1
    assert m["runs"] == len(record["history"]) == 2 * (8 + 7)   # LSTM 8 points, GRU 7 (no forget gate), 2 seeds
    hps = {r["hyperparameter"] for r in m["ranking"] if r["cell"] == "lstm"}
    assert hps == {"LR", "HIDDEN_SIZE", "NUM_LAYERS", "DROPOUT", "BATCH_SIZE", "FORGET_BIAS"}
    assert m["conclusions"] and any("learning rate" in line for line in m["greff_2017"])
    for name in ("study_grid.png", "study_seconds.png", "study_ranking.png"):
        assert (result.out_dir / name).stat().st_size > 1000
    progress = [json.loads(line) for line in (result.out_dir / "progress.jsonl").read_text().splitlines()]
    trials = [r for r in progress if "trial" in r]
    assert [r["trial"] for r in trials] == list(range(1, m["runs"] + 1)) and trials[-1]["total"] == m["runs"]
    assert list((result.out_dir / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("args, says", [
    (["--SEEDS=1"], "--SEEDS=1: must be an integer >= 2"),
    (["--ONE_FACTOR=false"], "ONE_FACTOR=false leaves nothing to run"),
])
def test_bad_values_are_one_error_line(args, says):
    result = run_script("06_comparison/hyperparameter_study.py", *args, check=False, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and says in result.stderr


def synthetic_study(study, cell: str, means: dict[str, list[list[float]]]) -> list[dict]:
    """Study rows from per-point seed values: {hyperparameter: [[seed values of point 1], ...]}; the first
    point of each sweep is the default."""
    rows = []
    for name, points in means.items():
        for k, values in enumerate(points):
            rows.append(study.study_row(name, float(k), cell, [{study.METRIC: v, "parameters": 10, "seconds": 1.0,
                                                                "diverged": False} for v in values], default=k == 0))
    return rows


def test_ranking_uses_the_range_of_means_and_eta_squared(study):
    rows = synthetic_study(study, "lstm", {
        "LR": [[0.9, 0.9], [0.5, 0.5]],                 # moves the mean by 0.4, all between points: eta^2 = 1
        "HIDDEN_SIZE": [[0.8, 0.9], [0.9, 0.8]],        # same means: range 0, eta^2 = 0
        "DROPOUT": [[0.85, 0.85], [0.80, 0.90], [0.95, 0.95]]})
    ranking = study.rank_hyperparameters(rows)
    assert [r["hyperparameter"] for r in ranking] == ["LR", "DROPOUT", "HIDDEN_SIZE"]
    lr, dropout, hidden = ranking
    assert lr["range"] == pytest.approx(0.4) and lr["eta_squared"] == pytest.approx(1.0) and lr["best_value"] == 0
    assert hidden["range"] == pytest.approx(0.0) and hidden["eta_squared"] == pytest.approx(0.0)
    # dropout: means 0.85, 0.85, 0.95 -> between SS 2*(3 * 0.0333^2 ...): computed by hand below
    values = [0.85, 0.85, 0.80, 0.90, 0.95, 0.95]
    grand = sum(values) / 6
    between = 2 * ((0.85 - grand) ** 2 * 2 + (0.95 - grand) ** 2)
    total = sum((v - grand) ** 2 for v in values)
    assert dropout["eta_squared"] == pytest.approx(between / total)
    assert [r["rank"] for r in ranking] == [1, 2, 3]
    lines = study.compare_with_greff(ranking)
    assert "'the learning rate matters most' agrees" in lines[0]
    assert "'hidden size next' differs: hidden size ranks 3 of 3" in lines[0]


def test_a_diverged_run_is_left_out_and_counted(study):
    row = study.study_row("LR", 0.03, "gru", [{study.METRIC: 0.9, "parameters": 10, "seconds": 1.0, "diverged": False},
                                              {study.METRIC: math.nan, "parameters": None, "seconds": 0.5,
                                               "diverged": True}], default=False)
    assert row["n"] == 1 and row["mean"] == pytest.approx(0.9) and row["diverged"] == 1 and math.isnan(row["std"])

"""06_comparison/hyperparameter_study.py: the sweeps end to end (--quick), the ranking, the Greff
comparison."""
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
    assert rows and all({"hyperparameter", "value", "cell", "mean", "std", "n", "parameters",
                         "seconds"} <= set(r)
                        for r in rows)
    assert all(r["n"] == 2 and len(r["values"]) == 2 for r in rows)              # SEEDS=2 under --quick
    # the twins' LR, added to the grid
    for cell, default in (("lstm", 3e-3), ("gru", 3e-3)):
        lrs = sorted(r["value"] for r in rows if r["cell"] == cell and r["hyperparameter"] == "LR")
        assert lrs == [1e-3, default, 1e-2]
        assert ([r["default"] for r in rows if r["cell"] == cell and r["hyperparameter"] == "LR"]
                == [False, True, False])
    # the GRU has no forget gate
    assert {r["cell"] for r in rows if r["hyperparameter"] == "FORGET_BIAS"} == {"lstm"}
    # a point shared by several sweeps (the defaults) is trained once per seed and reused
    defaults = [r for r in rows if r["cell"] == "lstm" and r["default"]]
    assert len({tuple(r["values"]) for r in defaults}) == 1
    assert m["runs"] == len(record["history"]) == 2 * (8 + 7)   # LSTM 8 points, GRU 7
                                                                # (no forget gate), 2 seeds
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
            results = [{study.METRIC: v, "parameters": 10, "seconds": 1.0, "diverged": False} for v in values]
            rows.append(study.study_row(name, float(k), cell, results, default=k == 0))
    return rows


def test_ranking_uses_the_range_of_means_eta_squared_and_a_permutation_test(study):
    rows = synthetic_study(study, "lstm", {
        "LR": [[0.90, 0.91, 0.89, 0.90], [0.50, 0.51, 0.49, 0.50]],          # a real effect: 0.4,
                                                                             # all between points
        "HIDDEN_SIZE": [[0.8, 0.9, 0.85, 0.85], [0.9, 0.8, 0.85, 0.85]],      # same means: range 0
        "DROPOUT": [[0.85, 0.80, 0.90, 0.85], [0.80, 0.90, 0.85, 0.85], [0.95, 0.90, 0.85, 0.90]]})
    ranking = study.rank_hyperparameters(rows, permutations=2000)
    assert [r["hyperparameter"] for r in ranking] == ["LR", "DROPOUT", "HIDDEN_SIZE"]
    lr, dropout, hidden = ranking
    assert lr["range"] == pytest.approx(0.4) and lr["eta_squared"] == pytest.approx(0.99875, abs=1e-4)
    assert lr["best_value"] == 0 and lr["points"] == 2
    # 8 runs dealt 4 + 4: only 2 of the C(8, 4) = 70 deals put all four high runs together
    assert lr["p_value"] == pytest.approx(2 / 70, abs=0.012) and lr["beyond_noise"] > 0
    assert hidden["range"] == pytest.approx(0.0) and hidden["eta_squared"] == pytest.approx(0.0)
    assert hidden["p_value"] == 1.0 and hidden["beyond_noise"] < 0
    values = [v for point in ([0.85, 0.80, 0.90, 0.85], [0.80, 0.90, 0.85, 0.85], [0.95, 0.90, 0.85, 0.90])
              for v in point]
    grand = sum(values) / 12
    between = 4 * sum((m - grand) ** 2 for m in (0.85, 0.85, 0.90))
    total = sum((v - grand) ** 2 for v in values)
    assert dropout["eta_squared"] == pytest.approx(between / total) and 0.05 < dropout["p_value"] < 1
    assert [r["rank"] for r in ranking] == [1, 2, 3]
    lines = study.compare_with_greff(ranking)
    assert "'the learning rate matters most' agrees" in lines[0]
    assert ("'hidden size next' cannot be told from noise here (p 1), so its rank 3 of 3 says nothing"
            in lines[0])


def test_under_no_effect_every_factor_is_equally_likely_to_rank_first(study, monkeypatch):
    """The ranking's bias, simulated: no hyperparameter does anything (3 seeds, noise 0.03), grids of 5, 4,
    3, 3, 3 and 2 values. Ranked by the range of means, the 5-value learning rate came first ~1/3 of the
    time and the 2-value forget bias ~1/20; ranked by the permutation test each comes first ~1/6."""
    import numpy as np
    monkeypatch.setattr(study, "CELLS", ("lstm",))
    grid = {"LR": 5, "HIDDEN_SIZE": 4, "NUM_LAYERS": 3, "DROPOUT": 3, "BATCH_SIZE": 3, "FORGET_BIAS": 2}
    rng = np.random.default_rng(1)
    first, by_range, sims = {k: 0 for k in grid}, {k: 0 for k in grid}, 300
    for _ in range(sims):
        rows = synthetic_study(study, "lstm", {name: (0.9 + 0.03 * rng.standard_normal((k, 3))).tolist()
                                               for name, k in grid.items()})
        ranking = study.rank_hyperparameters(rows, permutations=200)
        first[ranking[0]["hyperparameter"]] += 1
        by_range[max(ranking, key=lambda r: r["range"])["hyperparameter"]] += 1
    assert by_range["LR"] / sims > 0.22 and by_range["FORGET_BIAS"] / sims < 0.09      # the old rule's bias
    assert all(0.09 < n / sims < 0.25 for n in first.values()), first                  # about 1/6 each


def test_a_diverged_run_is_left_out_and_counted(study):
    row = study.study_row("LR", 0.03, "gru",
                          [{study.METRIC: 0.9, "parameters": 10, "seconds": 1.0, "diverged": False},
                           {study.METRIC: math.nan, "parameters": None, "seconds": 0.5, "diverged": True}],
                          default=False)
    assert (row["n"] == 1 and row["mean"] == pytest.approx(0.9) and row["diverged"] == 1
            and math.isnan(row["std"]))

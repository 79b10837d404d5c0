"""01_basic_theory/theory_comparison.py: the adding problem, the gate equations, and a --quick run."""
import math
import time

import pytest
import torch
from conftest import load_theory, run_script
from torch import nn

from utils.model_utils import count_parameters
from utils.script_utils import UserError

SCRIPT = "01_basic_theory/theory_comparison.py"
tc = load_theory("theory_comparison")


# ---- the adding problem ---------------------------------------------------------------------------
def test_adding_problem_target_is_the_sum_of_the_two_marked_values():
    x, y, marks = tc.adding_problem(50, 7, torch.Generator().manual_seed(3))
    assert x.shape == (50, 7, 2) and y.shape == (50,) and marks.shape == (50, 2)
    for b in range(50):
        marked = [t for t in range(7) if x[b, t, 1] == 1.0]
        assert len(marked) == 2 and (x[b, :, 1] != 0).sum() == 2       # exactly two markers
        assert marked[0] < 3 <= marked[1]                               # one in each half (7 // 2 = 3)
        assert marked == marks[b].tolist()
        assert y[b].item() == pytest.approx(x[b, marked[0], 0].item() + x[b, marked[1], 0].item())
    assert 0.0 <= x[..., 0].min() and x[..., 0].max() < 1.0


def test_adding_problem_is_reproducible_and_hand_checked():
    a = tc.adding_problem(4, 10, torch.Generator().manual_seed(0))
    b = tc.adding_problem(4, 10, torch.Generator().manual_seed(0))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    # the smallest lag: T=2 puts one marker on each step
    x2, y2, marks2 = tc.adding_problem(3, 2, torch.Generator().manual_seed(1))
    assert marks2.tolist() == [[0, 1]] * 3
    assert torch.allclose(y2, x2[:, :, 0].sum(1))
    with pytest.raises(UserError, match="at least 2"):
        tc.adding_problem(3, 1, torch.Generator())


# ---- parameters, gradients, gates -----------------------------------------------------------------
def test_parameter_formula_matches_torch():
    # I=3, H=5: one block is H*I + H*H + 2H = 15 + 25 + 10 = 50
    assert [tc.parameter_formula(c, 3, 5) for c in ("rnn", "lstm", "gru")] == [50, 200, 150]
    for cell, cls in (("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)):
        assert tc.parameter_formula(cell, 3, 5) == count_parameters(cls(3, 5))


def test_gradient_norms_flow_only_through_the_recurrence():
    torch.manual_seed(0)
    x, y, _ = tc.adding_problem(4, 6, torch.Generator().manual_seed(0))
    model = tc.LastStepRegressor(nn.RNN(2, 8, batch_first=True)).double()
    ratio = tc.gradient_norms(model, x.double(), y.double())
    assert ratio.shape == (4, 6) and (ratio[:, -1] == 1.0).all()
    assert (ratio[:, :-1] > 0).all()
    with torch.no_grad():
        model.rnn.weight_hh_l0.zero_()                  # no recurrence: h_t cannot affect L_T for t < T-1
    ratio = tc.gradient_norms(model, x.double(), y.double())
    assert (ratio[:, :-1] == 0).all() and (ratio[:, -1] == 1.0).all()


def test_gate_equations_reproduce_torch_lstm_and_gru():
    torch.manual_seed(0)
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    lstm = nn.LSTM(2, 6, batch_first=True).double()
    gates = tc.lstm_gates(lstm, x)
    out, (h_n, c_n) = lstm(x)
    assert (torch.allclose(gates["h"], out, atol=1e-12)
            and torch.allclose(gates["c"][:, -1], c_n[0], atol=1e-12))
    assert all(gates[k].shape == (3, 9, 6) and 0 <= gates[k].min() and gates[k].max() <= 1 for k in "ifo")
    gru = nn.GRU(2, 6, batch_first=True).double()
    gates = tc.gru_gates(gru, x)
    assert torch.allclose(gates["h"], gru(x)[0], atol=1e-12)
    tc.check_reproduces("GRU", gates["h"], gru, x)
    with pytest.raises(RuntimeError, match="disagree"):
        tc.check_reproduces("GRU", gates["h"] + 1.0, gru, x)


def test_memory_unit_finds_the_unit_that_holds_the_first_number():
    x, _, marks = tc.adding_problem(64, 8, torch.Generator().manual_seed(0))
    state = torch.randn(64, 8, 5, generator=torch.Generator().manual_seed(1))
    first = x[torch.arange(64), marks[:, 0], 0]
    state[:, :, 3] = -2.0 * first[:, None]              # unit 3 holds the first number (sign flipped)
    unit, corr = tc.memory_unit(state, x, marks)
    assert unit == 3 and corr == pytest.approx(-1.0)


def test_gate_statistics_by_hand():
    # one sequence, T=4, markers at steps 0 and 2; the gate is 0.2 / 0.4 / 0.6 / 0.8 over time, 1 unit
    g = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 4, 1)
    s = tc.gate_statistics({"f": g}, torch.tensor([[0, 2]]), 4)["f"]
    assert s["marked"] == pytest.approx(0.4)            # steps 0, 2
    assert s["other"] == pytest.approx(0.6)             # steps 1, 3
    assert s["holding"] == pytest.approx(0.6)           # steps after the first marker: 1, 2, 3
    assert s["units_above_0.9_while_holding"] == 0


# ---- the script end to end ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run():
    start = time.time()
    result = run_script(SCRIPT, "--quick", timeout=240)
    return result, start


def test_quick_run_metrics(quick_run):
    result, _ = quick_run
    m = result.metrics
    assert m["config"]["QUICK"] is True
    lags = m["config"]["LAGS"]
    metrics = m["metrics"]
    assert set(metrics) >= {"gradient", "adding", "cost", "forget_bias", "gates", "conclusions"}

    grad = metrics["gradient"]
    # At init (fixed seed), every cell's gradient shrinks over the sequence, and the forget-gate bias 1
    # keeps more of it than the vanilla RNN and than the LSTM with torch's default bias (f ≈ 0.73 vs 0.5).
    assert all(grad[n]["log10_ratio_t0"] < -1 for n in tc.MODELS)
    assert grad["lstm"]["log10_ratio_t0"] > grad["rnn"]["log10_ratio_t0"] + 2
    assert grad["lstm"]["log10_ratio_t0"] > grad["lstm_bf0"]["log10_ratio_t0"] + 2
    assert grad["lstm"]["shrink_per_step"] > grad["lstm_bf0"]["shrink_per_step"]
    assert all(0 < grad[n]["shrink_per_step"] < 1 for n in tc.MODELS)

    adding = metrics["adding"]
    assert adding["lags"] == lags
    assert all(0.1 < b < 0.25 for b in adding["baseline_mse"])       # predict-1.0 baseline ≈ 1/6
    for n in tc.MODELS:
        nmse = adding[n]["test_nmse"]
        assert len(nmse) == len(lags) and all(v is not None and 0 <= v < 10 for v in nmse)
        assert adding[n]["longest_solved_lag"] in (None, *lags)

    cost = metrics["cost"]
    for cell in ("rnn", "lstm", "gru"):
        assert cost[cell]["params_counted"] == cost[cell]["params_formula"] > 0
        assert cost[cell]["ms_per_step"] > 0
    assert cost["gru"]["params_counted"] * 4 == cost["lstm"]["params_counted"] * 3

    for cell, names in (("lstm", "ifo"), ("gru", "rz")):
        unit = metrics["gates"][cell]["memory_unit"]
        assert 0 <= unit["unit"] < m["config"]["HIDDEN_SIZE"] and -1 <= unit["corr_with_first_number"] <= 1
        for k in names:
            for s in (metrics["gates"][cell]["all_units"][k], unit[k]):
                assert all(0 <= s[q] <= 1 for q in ("marked", "other", "holding"))
    assert len(metrics["conclusions"]) == 5
    steps, every = m["config"]["TRAIN_STEPS"], m["config"]["EVAL_EVERY"]
    points = math.ceil(steps / every)                               # validation points per learning curve
    assert len(m["history"]) == len(tc.MODELS) * len(lags) * points
    assert {r["model"] for r in m["history"]} == set(tc.MODELS)
    assert "Conclusions" in result.stdout and "(5) Gate activations" in result.stdout


def test_quick_run_writes_plots(quick_run):
    result, start = quick_run
    for name in ("gradient_norms", "error_vs_lag", "time_per_step", "forget_bias", "gates_lstm", "gates_gru"):
        path = result.out_dir / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 5000, path
        assert path.stat().st_mtime >= start - 1, f"{path} was not written by this run"


@pytest.mark.parametrize("args, message", [
    (("--HEATMAP_LAG=33",), "must be one of --LAGS"),
    (("--HIDDEN_SIZE=big",), "expects an integer"),
])
def test_bad_options_are_one_line_errors(args, message):
    result = run_script(SCRIPT, "--quick", *args, check=False, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name, value, message", [
    ("LAGS", (1, 20), "the item 1 must be an integer >= 2"), ("GRAD_SEQ_LEN", 1, ">= 2"),
    ("TRAIN_STEPS", 0, ">= 1"), ("HEATMAP_LAG", 7, "must be one of"),
])
def test_check_config_refuses_values_that_would_fail_late(monkeypatch, name, value, message):
    monkeypatch.setattr(tc, "LAGS", (10, 20))
    monkeypatch.setattr(tc, "HEATMAP_LAG", 20)
    tc.check_config()                                   # a valid configuration passes
    monkeypatch.setattr(tc, name, value)
    with pytest.raises(UserError, match=message):
        tc.check_config()

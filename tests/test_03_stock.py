"""03_stock: data (splits, split adjustment, windows, scaling, CSV/yfinance loading), baselines, metrics
on hand-checked series, no look-ahead, and the three scripts end to end with --quick.
The case's own mechanism (features, split, scaler, windows, model, training step) lives in
03_stock/stock_model.py, its baselines and error measures in 03_stock/forecasting.py; the raw price loading
stays in utils.data_utils."""
import math

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_script
from scipy import stats

import forecasting as fc
import stock_model as sm
from utils import data_utils as du
from utils.script_utils import UserError

FIXTURE = ROOT / "tests" / "fixtures" / "yfinance_AAPL_2013.csv"


# ---------------------------------------------------------------------------------------------------
# Splits, split adjustment
# ---------------------------------------------------------------------------------------------------
def frame(close, open_=None, adj=None):
    df = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=len(close)), "close": close,
                       "open": open_ if open_ is not None else close, "volume": [100.0] * len(close)})
    if adj is not None:
        df["adj_close"] = adj
    return df


def test_split_is_detected_and_back_adjusted():
    # 2:1 split on day 3: open halves overnight; adj_close/close jumps by 2 as well
    close = [100.0, 102.0, 104.0, 53.0, 54.0]
    open_ = [100.0, 101.0, 103.0, 52.5, 53.0]
    adj = [50.0, 51.0, 52.0, 53.0, 54.0]
    df = frame(close, open_, adj)
    assert du.detect_splits(df) == [(3, 2.0)]
    out = du.adjust_splits(df, [(3, 2.0)])
    assert out["close"].tolist() == [50.0, 51.0, 52.0, 53.0, 54.0]
    assert out["volume"].tolist() == [200.0, 200.0, 200.0, 100.0, 100.0]
    assert du.detect_splits(df.drop(columns="adj_close")) == [(3, 2.0)]  # the open gap alone
    assert du.detect_splits(df.drop(columns=["adj_close", "open"])) == []  # close only: not detectable


def test_a_crash_that_looks_like_a_split_is_not_adjusted():
    # the price halves overnight but adj_close/close does not jump: a crash, not a split
    close = [100.0, 100.0, 50.0, 51.0]
    df = frame(close, [100.0, 100.0, 50.5, 50.0], adj=close)
    assert du.detect_splits(df) == []
    # without adj_close the same gap IS taken for a split: that is why adj_close is used when present
    assert du.detect_splits(df.drop(columns="adj_close")) == [(2, 2.0)]


def test_real_aapl_and_msft_splits():
    aapl = du.load_bokeh_prices("AAPL")
    found = [(str(aapl["date"][r].date()), f) for r, f in du.detect_splits(aapl)]
    # 2:1 in 2000 and 2005; the -52% day 2000-09-29 (a profit warning) is not a split
    assert found == [("2000-06-21", 2.0), ("2005-02-28", 2.0)]
    msft = du.load_bokeh_prices("MSFT")
    assert [str(msft["date"][r].date()) for r, _ in du.detect_splits(msft)] == ["2003-02-18"]
    df, info = du.load_prices("bokeh", "AAPL", verbose=False)
    r = np.diff(np.log(df["close"]))
    assert r.min() > -0.75 and np.sort(r)[:2].max() > np.log(0.6)  # only the crash day remains below -40%
    assert info["splits"] == [("2000-06-21", 2.0), ("2005-02-28", 2.0)]
    assert df["close"].iloc[-1] == 430.47  # the latest price is the one quoted on the day


# ---------------------------------------------------------------------------------------------------
# Splits of the time line, windows, scaling
# ---------------------------------------------------------------------------------------------------
def test_chronological_split():
    assert sm.chronological_split(100, 0.15, 0.15) == (70, 85)
    assert sm.chronological_split(10, 0.2, 0.3) == (5, 7)
    with pytest.raises(UserError):
        sm.chronological_split(100, 0.6, 0.5)


def test_windows_use_only_the_past():
    feats = np.arange(20, dtype=float).reshape(10, 2)  # row t = [2t, 2t+1]
    log_close = np.arange(10, dtype=float) ** 2 / 10
    x, y = sm.make_windows(feats, log_close, np.array([3, 5]), window=3, horizon=2)
    assert x.shape == (2, 3, 2)
    assert x[0].tolist() == [[2, 3], [4, 5], [6, 7]]  # rows 1, 2, 3 for origin 3
    assert np.allclose(y, [log_close[5] - log_close[3], log_close[7] - log_close[5]])
    _, y_level = sm.make_windows(feats, log_close, np.array([3]), 3, 2, target="log_price")
    assert np.isclose(y_level[0], log_close[5])
    with pytest.raises(ValueError):
        sm.make_windows(feats, log_close, np.array([2]), 3, 1)  # would need row 0 (no return on day 0)
    with pytest.raises(ValueError):
        sm.make_windows(feats, log_close, np.array([8]), 3, 2)  # target day 10 does not exist


def test_features_and_train_only_scaling():
    df = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=4), "close": [10.0, 11.0, 9.9, 9.9],
                       "open": [10.0, 10.0, 11.0, 10.0], "high": [11.0, 12.0, 11.0, 10.0],
                       "low": [9.0, 10.0, 9.0, 9.0], "volume": [99.0, 199.0, 99.0, 99.0]})
    f = sm.stock_features(df, ["log_return", "hl_range", "oc_return", "log_volume_change", "log_close"])
    assert np.isnan(f[0, 0]) and np.isclose(f[1, 0], math.log(1.1)) and np.isclose(f[2, 0], math.log(0.9))
    assert np.isclose(f[1, 1], math.log(1.2)) and np.isclose(f[2, 2], math.log(0.9))
    assert np.isclose(f[1, 3], math.log(2)) and np.isclose(f[3, 4], math.log(9.9))
    s = sm.TrainScaler(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert s.mean.tolist() == [2.0, 5.0] and s.std.tolist() == [1.0, 1.0]  # constant column: std 1
    assert np.allclose(s.inverse(s.transform(np.array([[7.0, 2.0]]))), [[7.0, 2.0]])

    prices, _ = du.load_prices("bokeh", "IBM", start="2010-01-01", verbose=False)
    data = sm.prepare_stock_data(prices, ["log_return", "hl_range"], 10, 1, 0.15, 0.15)
    a, b = data["a"], data["b"]
    raw = sm.stock_features(prices, ["log_return", "hl_range"])
    assert np.allclose(data["scaler"].mean, raw[1:a].mean(axis=0))  # training days only
    assert not np.allclose(data["scaler"].mean, raw[1:].mean(axis=0))
    # every training label lies before validation, every validation label before the test period
    h = data["horizon"]
    assert data["origin_train"].max() + h < a <= data["origin_val"].min() + h
    assert data["origin_val"].max() + h < b <= data["origin_test"].min() + h
    assert data["origin_test"].max() + h == len(prices) - 1
    assert abs(data["y_train"].mean()) < 1e-5 and abs(data["y_train"].std() - 1) < 1e-4


def test_twins_build_the_case_model():
    import torch

    from utils.script_utils import load_case_script

    # each twin's build_model (06_comparison calls it): PriceRNN with the twin's cell and constants
    sizes = {}
    for cell in ("lstm", "gru"):
        twin = load_case_script(ROOT / "03_stock" / f"stock_{cell}.py")
        model = twin.build_model(len(twin.FEATURES), torch.device("cpu"))
        assert isinstance(model, sm.PriceRNN) and model.cell == cell
        assert model.rnn.hidden_size == twin.HIDDEN_SIZE == 32
        assert model.rnn.num_layers == twin.NUM_LAYERS == 1
        # (batch, window, F) -> (batch,)
        assert model(torch.zeros(3, twin.WINDOW, len(twin.FEATURES))).shape == (3,)
        sizes[cell] = sum(p.numel() for p in model.parameters())
    # 4 (LSTM) or 3 (GRU) gate blocks of W (32x4), U (32x32), two biases (2x32), plus the head (32 + 1)
    assert sizes == {"lstm": 4 * (32 * 4 + 32 * 32 + 64) + 33, "gru": 3 * (32 * 4 + 32 * 32 + 64) + 33}


# ---------------------------------------------------------------------------------------------------
# Baselines and metrics on hand-checked series
# ---------------------------------------------------------------------------------------------------
def test_train_step_is_one_update_and_a_nan_never_reaches_the_weights():
    import torch

    from utils.training import NonFiniteLoss

    torch.manual_seed(0)
    model = sm.PriceRNN("gru", "torch", 2, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 7, 2), torch.randn(5)          # (batch, window, F), (batch,)
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(model(x), y).item()
    before = [p.detach().clone() for p in model.parameters()]
    loss, norm, n = sm.train_step(model, (x, y), optimizer, clip=1.0)
    assert loss == expected and n == 5 and norm > 0     # the loss before the update, the batch's windows
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    after = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLoss):
        sm.train_step(model, (torch.full_like(x, math.nan), y), optimizer, clip=1.0)
    assert all(torch.equal(a, p) for a, p in zip(after, model.parameters()))


def test_baselines():
    close = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert fc.persistence(close, np.array([2, 4])).tolist() == [3.0, 5.0]
    assert fc.moving_average(close, np.array([2, 5]), 3).tolist() == [2.0, 5.0]
    # an AR(1) process in the returns: the least-squares fit recovers its coefficient
    rng = np.random.default_rng(0)
    r = np.zeros(5000)
    for t in range(1, len(r)):
        r[t] = 0.001 + 0.5 * r[t - 1] + 0.01 * rng.standard_normal()
    log_close = np.cumsum(r)
    coef = fc.fit_ar(log_close, np.arange(5, 4000), p=2, horizon=1)
    assert abs(coef[-1] - 0.5) < 0.05 and abs(coef[-2]) < 0.05  # last column = most recent return
    pred = fc.predict_ar(log_close, np.array([4500]), coef)
    assert np.isclose(pred[0], coef[0] + coef[1] * r[4499] + coef[2] * r[4500])
    assert np.isclose(fc.price_from_log_return(np.exp(log_close), [4500], pred)[0],
                      np.exp(log_close[4500] + pred[0]))


def test_error_measures_by_hand():
    actual = np.array([10.0, 11.0, 12.0, 11.0])
    pred = np.array([10.5, 11.0, 11.0, 12.0])      # errors 0.5, 0, -1, 1
    previous = np.array([9.0, 10.0, 11.0, 12.0])   # persistence errors -1, -1, -1, 1
    assert math.isclose(fc.rmse(actual, pred), 0.75)              # sqrt(2.25 / 4)
    assert math.isclose(fc.mae(actual, pred), 0.625)              # 2.5 / 4
    assert math.isclose(fc.mape(actual, pred), 25 * (0.5 / 10 + 1 / 12 + 1 / 11))
    assert math.isclose(fc.naive_scale([1.0, 3.0, 2.0, 6.0]), 7 / 3)
    assert math.isclose(fc.mase(actual, pred, 7 / 3), 0.625 * 3 / 7)
    assert math.isclose(fc.theils_u(actual, pred, previous), 0.75)  # sqrt(2.25 / 4)
    assert fc.theils_u(actual, previous, previous) == 1.0
    d = fc.directional_accuracy(actual, pred, previous)  # up, up (0: miss), down (0: miss) -> 2 of 4
    assert (d["hits"], d["n"], d["accuracy"]) == (2, 4, 0.5) and math.isclose(d["p_value"], 1.0)
    d = fc.directional_accuracy(np.ones(20) * 2, np.ones(20) * 3, np.ones(20))  # 20 of 20
    assert d["accuracy"] == 1.0 and math.isclose(d["p_value"], 2 * 0.5 ** 20)
    assert fc.forecast_errors(actual, previous, previous, 1.0)["direction_acc"] is None
    lag = fc.lag_check([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0])  # a copy of yesterday
    assert lag["rmse_vs_day_before"] == 0.0 and lag["rmse_vs_same_day"] == 1.0


def test_diebold_mariano_by_hand():
    # d = e1^2 - e2^2 = [0, 3, 8, 15]: mean 6.5, gamma_0 = (42.25 + 12.25 + 2.25 + 72.25) / 4 = 32.25
    dm = 6.5 / math.sqrt(32.25 / 4)
    dm_hln = dm * math.sqrt((4 + 1 - 2) / 4)  # h = 1
    out = fc.diebold_mariano([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert math.isclose(out["dm"], dm_hln) and math.isclose(out["mean_diff"], 6.5)
    assert math.isclose(out["p_value"], 2 * stats.t.sf(dm_hln, df=3))
    # h = 2 adds the lag-1 autocovariance: dc = [-6.5, -3.5, 1.5, 8.5]
    g1 = (-3.5 * -6.5 + 1.5 * -3.5 + 8.5 * 1.5) / 4
    dm2 = 6.5 / math.sqrt((32.25 + 2 * g1) / 4) * math.sqrt((4 + 1 - 4 + 2 / 4) / 4)
    assert math.isclose(fc.diebold_mariano([1, 2, 3, 4], [1, 1, 1, 1], horizon=2)["dm"], dm2)
    flipped = fc.diebold_mariano([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert math.isclose(flipped["dm"], -dm_hln) and math.isclose(flipped["p_value"], out["p_value"])


# ---------------------------------------------------------------------------------------------------
# No look-ahead: changing prices after day D changes no forecast for days up to D
# ---------------------------------------------------------------------------------------------------
def pipeline(raw, split_days):
    """raw prices -> split adjustment -> features, train-only scaler, windows -> train -> test forecasts."""
    import torch

    df = du.adjust_splits(raw, du.detect_splits(raw))
    data = sm.prepare_stock_data(df, ["log_return", "hl_range", "oc_return", "log_volume_change"], 10, 1,
                                 0.15, 0.15, split_days=split_days)
    torch.manual_seed(0)
    model = sm.PriceRNN("lstm", "torch", data["x_train"].shape[2], 8, 1)
    sm.train_price_model(model, data, epochs=1, batch_size=64, lr=1e-2, weight_decay=0.0, patience=5, seed=0)
    return fc.forecast_table(data, sm.predict_target(model, data, "test"))


def test_changing_prices_after_a_day_changes_no_earlier_forecast():
    raw = du.load_bokeh_prices("AAPL")
    raw = raw[raw["date"] >= "2011-01-01"].reset_index(drop=True)
    split_days = sm.chronological_split(len(raw), 0.15, 0.15)
    D = split_days[1] + 40  # a day inside the test period
    changed = raw.copy()
    noise = np.exp(np.random.default_rng(1).normal(0, 0.03, len(raw) - D - 1))
    for col in ("open", "high", "low", "close", "adj_close"):
        changed.loc[D + 1:, col] *= noise
    changed.loc[D + 1:, "volume"] *= 3
    before, after = pipeline(raw, split_days), pipeline(changed, split_days)
    upto = pd.to_datetime(before["date"]) <= raw["date"][D]
    assert upto.sum() > 30 and (~upto).sum() > 30
    for col in ("actual", "prediction", "persistence"):
        assert np.array_equal(before[col][upto].to_numpy(), after[col][upto].to_numpy()), col  # bitwise
    assert not np.allclose(before["prediction"][~upto], after["prediction"][~upto])  # the change is real


# ---------------------------------------------------------------------------------------------------
# Loading: yfinance (recorded fixture, download monkeypatched), a user's CSV, bad inputs
# ---------------------------------------------------------------------------------------------------
def fake_download(*args, **kwargs):
    """What yfinance.download returns: columns a (Price, Ticker) MultiIndex, index named Date."""
    return pd.read_csv(FIXTURE, header=[0, 1], index_col=0, parse_dates=True)


def test_yfinance_downloads_once_then_uses_the_cache(tmp_path, monkeypatch):
    import yfinance

    cache = tmp_path / "yfinance_AAPL.csv"
    monkeypatch.setattr(du, "yfinance_cache_path", lambda *a: cache)
    calls = []
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: calls.append(a) or fake_download())
    df, info = du.load_prices("yfinance", "AAPL", start="2013-01-01", verbose=False)
    assert calls and cache.is_file()
    assert cache.read_text().splitlines()[:3] == FIXTURE.read_text().splitlines()[:3]
    assert len(df) == 41 and df["close"].iloc[-1] == 430.47 and info["splits"] == []
    assert {"open", "high", "low", "close", "volume"} <= set(df.columns)

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(yfinance, "download", offline)
    again, _ = du.load_prices("yfinance", "AAPL", start="2013-01-01", verbose=False)  # from the cache
    pd.testing.assert_frame_equal(df, again)


@pytest.mark.parametrize("result", ["raise", "empty"])
def test_yfinance_offline_is_one_clear_error(tmp_path, monkeypatch, result):
    import yfinance

    monkeypatch.setattr(du, "yfinance_cache_path", lambda *a: tmp_path / "none.csv")

    def download(*a, **k):
        if result == "raise":
            raise ConnectionError("no network")
        return pd.DataFrame()  # what yfinance returns when every request failed

    monkeypatch.setattr(yfinance, "download", download)
    with pytest.raises(UserError, match="could not download NVDA.*--SOURCE=bokeh"):
        du.load_prices("yfinance", "NVDA", verbose=False)
    assert not (tmp_path / "none.csv").exists()


def write_csv(tmp_path, text):
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return str(path)


def test_user_csv_loads_with_any_case_columns(tmp_path):
    rows = "\n".join(f"2021-01-{d:02d},{100 + d},{1000 * d}" for d in range(1, 29))
    df, info = du.load_prices(csv=write_csv(tmp_path, "Date,CLOSE,Volume\n" + rows), verbose=False)
    assert list(df.columns) == ["date", "close", "volume"] and len(df) == 28 and info["name"] == "prices.csv"


@pytest.mark.parametrize("text, message", [
    ("day,close\n2021-01-01,1\n", "no 'date' column"),
    ("date,open\n2021-01-01,1\n", "no 'close' column"),
    ("date,close\n2021-01-01,1\nyesterday,2\n", "could not be parsed"),
    ("date,close\n2021-01-02,1\n2021-01-01,2\n", "not in increasing order"),
    ("date,close\n2021-01-01,1\n2021-01-01,2\n", "duplicate dates"),
    ("date,close\n2021-01-01,1\n2021-01-02,0\n", "non-positive"),
    ("date,close\n2021-01-01,1\n2021-01-02,\n", "missing"),
    ("date,close\n2021-01-01,1\n2021-01-02,2\n", "at least 50"),
])
def test_bad_user_csv(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        du.load_prices(csv=write_csv(tmp_path, text), min_rows=50, verbose=False)


def test_other_bad_options():
    with pytest.raises(UserError, match="--SOURCE must be bokeh or yfinance"):
        du.load_prices("quandl", verbose=False)
    with pytest.raises(UserError, match="at least 41 are needed"):
        du.load_prices("bokeh", "AAPL", start="2013-02-01", min_rows=41, verbose=False)
    with pytest.raises(UserError, match="not a date"):
        du.load_prices("bokeh", "AAPL", start="last year", verbose=False)
    prices, _ = du.load_prices("bokeh", "AAPL", start="2012-06-01", verbose=False)
    with pytest.raises(UserError, match="too few days"):
        sm.prepare_stock_data(prices, ["log_return"], 150, 1, 0.15, 0.15)
    with pytest.raises(UserError, match="needs the column"):
        sm.stock_features(prices[["date", "close"]], ["hl_range"])


# ---------------------------------------------------------------------------------------------------
# The scripts, end to end, as a learner runs them
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script, cell, impl", [("03_stock/stock_lstm.py", "LSTM", "torch"),
                                               ("03_stock/stock_gru.py", "GRU", "scratch")])
def test_twin_quick(script, cell, impl):
    r = run_script(script, "--quick", f"--IMPL={impl}")
    m = r.metrics
    assert m["config"]["QUICK"] and m["config"]["EPOCHS"] == 1 and m["config"]["IMPL"] == impl
    assert m["config"]["HIDDEN_SIZE"] == 8 and "HIDDEN" not in m["config"] and "CELL" not in m["config"]
    assert (f"scratch {cell} matches torch.nn" in r.stdout) == (impl == "scratch")
    assert m["metrics"]["test_days"] > 50 and m["metrics"]["rmse"] > 0
    assert m["metrics"]["beats_persistence"] == (m["metrics"]["rmse"] < m["metrics"]["persistence"]["rmse"])
    assert m["data"]["name"] == "AAPL"
    table = pd.read_csv(r.out_dir / "predictions.csv")
    assert list(table.columns) == ["date", "actual", "prediction", "persistence"]
    assert math.isclose(fc.rmse(table["actual"], table["prediction"]), m["metrics"]["rmse"])
    assert np.array_equal(table["persistence"].to_numpy()[1:], table["actual"].to_numpy()[:-1])
    for png in ("predictions.png", "training_curves.png"):
        assert (r.out_dir / png).stat().st_size > 1000
    assert (r.out_dir / "model.pt").is_file() and f"The {cell}" in r.stdout


def test_performance_analysis_quick():
    r = run_script("03_stock/performance_analysis.py", "--quick")
    m = r.metrics["metrics"]
    for h in ("h1", "h5"):
        assert set(m[h]["scores"]) == {"persistence", "MA(5)", "AR(5)", "LSTM", "GRU"}
        assert m[h]["scores"]["persistence"]["theils_u"] == 1.0
        assert set(m[h]["diebold_mariano_vs_persistence"]) == {"LSTM", "GRU"}
    assert "Verdict" in r.stdout and "persistence" in m["verdict"][0]
    assert m["lag_check"]["rmse_vs_day_before"] < m["lag_check"]["rmse_vs_same_day"]
    for png in ("predictions.png", "lag_zoom.png", "residuals.png", "multistep_theils_u.png"):
        assert (r.out_dir / png).stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--TICKER=TSLA"], "not in the offline data"),
    (["--CSV=no_such_file.csv"], "does not exist"),
    (["--FEATURES=log_return,rsi"], "the item 'rsi' must be one of"),
])
def test_bad_input_is_one_clear_error(args, message):
    r = run_script("03_stock/stock_lstm.py", "--quick", *args, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and message in lines[-1]

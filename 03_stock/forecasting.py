"""03_stock's yardsticks: forecasting baselines and error measures, in plain numpy/scipy so every number
can be checked by hand. stock_model.py and performance_analysis.py score the networks with them.

Conventions: a forecast is made on an origin day t for day t+h. `actual` = close[t+h], `pred` = the
forecast of it, `previous` = close[t] (what persistence predicts). Arrays are 1-D and aligned.

- baselines: `persistence`, `moving_average`, `fit_ar` / `predict_ar` (a linear autoregression on past
  log returns, least squares on the training windows only)
- errors: `rmse`, `mae`, `mape`, `mase`, `theils_u`, `directional_accuracy` (+ binomial test vs 50%)
- `diebold_mariano`: is one forecast's loss significantly lower than another's? (HLN-corrected)
"""
from __future__ import annotations

import numpy as np
from scipy import stats


# ----------------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------------
def persistence(close: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """"Tomorrow = today": the forecast for day t+h is close[t].
    Every forecast must beat this (THEORY.md §12)."""
    return np.asarray(close, float)[np.asarray(origins)]


def moving_average(close: np.ndarray, origins: np.ndarray, k: int) -> np.ndarray:
    """The mean of the last k closes, close[t-k+1 .. t]."""
    close = np.asarray(close, float)
    idx = np.asarray(origins)[:, None] + np.arange(-k + 1, 1)[None, :]  # (N, k)
    if idx.min() < 0:
        raise ValueError("moving_average: an origin has fewer than k days before it")
    return close[idx].mean(axis=1)


def lagged_returns(log_close: np.ndarray, origins: np.ndarray, p: int) -> np.ndarray:
    """(N, p): the log returns of days t-p+1 .. t for each origin t (r[s] = log close[s] - log close[s-1])."""
    r = np.diff(np.asarray(log_close, float), prepend=np.nan)
    return r[np.asarray(origins)[:, None] + np.arange(-p + 1, 1)[None, :]]


def fit_ar(log_close: np.ndarray, origins: np.ndarray, p: int, horizon: int) -> np.ndarray:
    """Least squares  log close[t+h] - log close[t]  ~  c + sum_k a_k r[t-k]  on the given (training)
    origins. -> coefficients (p+1,): intercept first."""
    X = np.column_stack([np.ones(len(origins)), lagged_returns(log_close, origins, p)])
    y = log_close[np.asarray(origins) + horizon] - log_close[np.asarray(origins)]
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef


def predict_ar(log_close: np.ndarray, origins: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """The AR forecast of the log return to day t+h (uses returns up to day t only)."""
    p = len(coef) - 1
    return coef[0] + lagged_returns(log_close, origins, p) @ coef[1:]


def price_from_log_return(close: np.ndarray, origins: np.ndarray, log_return: np.ndarray) -> np.ndarray:
    """close[t] * exp(predicted log return): a return forecast turned into a price forecast."""
    return np.asarray(close, float)[np.asarray(origins)] * np.exp(np.asarray(log_return, float))


# ----------------------------------------------------------------------------------------------------
# Error measures
# ----------------------------------------------------------------------------------------------------
def rmse(actual, pred) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(actual, float)) ** 2)))


def mae(actual, pred) -> float:
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(actual, float))))


def mape(actual, pred) -> float:
    """Mean absolute percentage error, in percent."""
    actual = np.asarray(actual, float)
    return float(100 * np.mean(np.abs((np.asarray(pred, float) - actual) / actual)))


def naive_scale(train_series, lag: int = 1) -> float:
    """MASE's denominator (Hyndman & Koehler 2006): the in-sample MAE of the naive forecast
    y[t] = y[t-lag] on the TRAINING series."""
    y = np.asarray(train_series, float)
    return float(np.mean(np.abs(y[lag:] - y[:-lag])))


def mase(actual, pred, scale: float) -> float:
    """MAE / naive_scale(train): below 1 means better than the naive forecast was in training."""
    return mae(actual, pred) / scale


def theils_u(actual, pred, previous) -> float:
    """(F1) Theil's U2 = sqrt(sum (pred - actual)^2 / sum (previous - actual)^2): the RMSE relative to
    persistence on the same days. U < 1 beats "tomorrow = today"; U = 1 is persistence itself."""
    actual = np.asarray(actual, float)
    num = np.sum((np.asarray(pred, float) - actual) ** 2)
    den = np.sum((np.asarray(previous, float) - actual) ** 2)
    return float(np.sqrt(num / den))


def directional_accuracy(actual, pred, previous) -> dict:
    """How often sign(pred - previous) == sign(actual - previous), on days the price moved.

    A forecast of "no change" counts as a miss. The binomial test asks whether the hit rate could be
    a fair coin's: p_value = P(a coin gets a result this far from 50% | n days), two-sided.
    """
    actual, pred, previous = (np.asarray(v, float) for v in (actual, pred, previous))
    moved = actual != previous
    hits = int(np.sum(np.sign(pred - previous)[moved] == np.sign(actual - previous)[moved]))
    n = int(moved.sum())
    p_value = float(stats.binomtest(hits, n, 0.5).pvalue) if n else float("nan")
    return {"accuracy": hits / n if n else float("nan"), "hits": hits, "n": n, "p_value": p_value}


def diebold_mariano(e1, e2, horizon: int = 1, power: int = 2) -> dict:
    """Diebold-Mariano test (1995) with the Harvey-Leybourne-Newbold (1997) small-sample correction.

    H0: forecasts 1 and 2 have equal expected loss |e|^power. With d_t = |e1_t|^p - |e2_t|^p:
        DM  = mean(d) / sqrt(V / n),   V = gamma_0 + 2 sum_{k=1}^{h-1} gamma_k   (h-step forecasts
              overlap, so d_t is autocorrelated up to lag h-1; gamma_k is its lag-k autocovariance)
        DM* = DM * sqrt((n + 1 - 2h + h(h-1)/n) / n),   p from Student's t with n-1 degrees of freedom.
    DM < 0: forecast 1 has the lower loss. -> {"dm": DM*, "p_value": two-sided, "mean_diff": mean(d)}
    """
    d = np.abs(np.asarray(e1, float)) ** power - np.abs(np.asarray(e2, float)) ** power
    n, h = len(d), horizon
    dc = d - d.mean()
    gamma = [np.sum(dc[k:] * dc[:n - k]) / n for k in range(h)]
    variance = gamma[0] + 2 * sum(gamma[1:])
    if variance <= 0:
        return {"dm": float("nan"), "p_value": float("nan"), "mean_diff": float(d.mean())}
    dm = d.mean() / np.sqrt(variance / n)
    dm_hln = dm * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    p_value = 2 * stats.t.sf(abs(dm_hln), df=n - 1)
    return {"dm": float(dm_hln), "p_value": float(p_value), "mean_diff": float(d.mean())}


def forecast_errors(actual, pred, previous, scale: float) -> dict:
    """All the error measures of one price forecast on one period (see the functions above)."""
    direction = directional_accuracy(actual, pred, previous)
    if np.array_equal(np.asarray(pred, float), np.asarray(previous, float)):
        direction = {"accuracy": None, "p_value": None}  # "no change" has no direction (persistence)
    return {"rmse": rmse(actual, pred), "mae": mae(actual, pred), "mape_pct": mape(actual, pred),
            "mase": mase(actual, pred, scale), "theils_u": theils_u(actual, pred, previous),
            "direction_acc": direction["accuracy"], "direction_p": direction["p_value"]}


def lag_check(actual, pred) -> dict:
    """Does a forecast track today's price or yesterday's? RMSE of pred[t] against actual[t] and
    against actual[t-1]. A forecast that is closer to yesterday's price is a lagged copy of the series."""
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    return {"rmse_vs_same_day": rmse(actual[1:], pred[1:]), "rmse_vs_day_before": rmse(actual[:-1], pred[1:])}


# ----------------------------------------------------------------------------------------------------
# A model's forecasts as a table, and its scores (used by stock_lstm/gru and performance_analysis)
# ----------------------------------------------------------------------------------------------------
def forecast_table(data: dict, value: np.ndarray, part: str = "test"):
    """-> DataFrame: date (the day forecast), actual close, prediction, persistence (close on the
    origin day), for the windows of `part` in data from stock_model.prepare_stock_data.
    `value` is the forecast of data["target"]: a log return (default) or a log price."""
    import pandas as pd

    o, h, close = data[f"origin_{part}"], data["horizon"], data["close"]
    price = (np.exp(value) if data.get("target") == "log_price" else price_from_log_return(close, o, value))
    return pd.DataFrame({"date": pd.to_datetime(data["dates"][o + h]).strftime("%Y-%m-%d"),
                         "actual": close[o + h],
                         "prediction": price,
                         "persistence": persistence(close, o)})


def score_forecast(table, data: dict, column: str = "prediction") -> dict:
    """forecast_errors of table[column]; MASE is scaled by the h-day naive error on the training days."""
    scale = naive_scale(data["close"][:data["a"]], lag=data["horizon"])
    return forecast_errors(table["actual"], table[column], table["persistence"], scale)

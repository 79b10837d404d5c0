"""Do the LSTM and GRU really predict stock prices? They face naive baselines on the same test days.

Persistence (tomorrow = today), a moving average and a linear autoregression against both networks:
RMSE, MAE, MAPE, MASE, Theil's U, direction (binomial test), a Diebold-Mariano test, residuals, a
5-day-ahead comparison, and a zoomed plot of why a lagged copy of the price "looks" like a good forecast.
Run: python 03_stock/performance_analysis.py (reuses stock_lstm/gru's predictions when their settings
match, else trains both here with stock_model.py). Theory: THEORY.md §12 (forecasting honestly).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

import numpy as np
import pandas as pd
import torch

import stock_model
from forecasting import (
    diebold_mariano,
    fit_ar,
    forecast_table,
    lag_check,
    moving_average,
    predict_ar,
    price_from_log_return,
    score_forecast,
)
from stock_model import plot_predictions, plot_residuals
from utils.data_utils import load_prices
from utils.script_utils import (
    AtLeast,
    Fraction,
    Interval,
    Items,
    OneOf,
    Positive,
    Seed,
    atomic_write,
    get_device,
    load_metrics,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
    shown_path,
)
from utils.visualization import plot_bars

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SOURCE: OneOf("bokeh", "yfinance") = "bokeh"  # bokeh: offline AAPL/IBM/MSFT/GOOG 2000-2013;
                                              # yfinance: any ticker
TICKER: str = "AAPL"          # the stock to forecast
CSV: str = ""                 # your own OHLCV CSV (date and close columns at least);
                              # overrides SOURCE when set
START: str = ""               # first day to use, YYYY-MM-DD ("" = the first available)
END: str = ""                 # last day to use, YYYY-MM-DD ("" = the last available)
FEATURES: Items(OneOf(*stock_model.STOCK_FEATURES)) = ("log_return", "hl_range", "oc_return",
                                                       "log_volume_change")
                              # inputs per day (as in the twins)
TARGET: OneOf("log_return", "log_price") = "log_return"  # what the networks predict, as in the twins
WINDOW: AtLeast(1) = 30       # days of history per forecast
HORIZON: AtLeast(1) = 1       # the main comparison: trading days ahead to forecast
MULTI_HORIZON: AtLeast(1) = 5  # the multi-step comparison: direct forecasts this many days ahead
VAL_FRAC: Interval("(0, 1)") = 0.15   # the middle part of the time line: early stopping
TEST_FRAC: Interval("(0, 1)") = 0.15  # the last part of the time line: every forecast is scored here
MA_DAYS: AtLeast(1) = 5       # moving-average baseline: mean of the last MA_DAYS closes (<= WINDOW)
AR_LAGS: AtLeast(1) = 5       # autoregressive baseline: linear in the last AR_LAGS daily log returns
                              # (<= WINDOW)
ZOOM_DAYS: AtLeast(1) = 60    # the lag plot shows the last ZOOM_DAYS test days
REUSE_TWINS: bool = True      # use stock_lstm/gru's predictions.csv (their full runs) when their data
                              # settings match
IMPL: OneOf("torch", "scratch") = "torch"  # torch or scratch (01_basic_theory's cells),
                                           # for networks trained here
HIDDEN_SIZE: AtLeast(1) = 32  # state size of networks trained here
NUM_LAYERS: AtLeast(1) = 1    # stacked layers
DROPOUT: Fraction = 0.0       # dropout between stacked layers (needs NUM_LAYERS > 1)
EPOCHS: AtLeast(1) = 30       # maximum epochs
BATCH_SIZE: AtLeast(1) = 64   # windows per gradient step
LR: Positive = 1e-3           # Adam learning rate
WEIGHT_DECAY: AtLeast(0.0) = 1e-5  # L2 penalty
PATIENCE: AtLeast(1) = 5      # early stopping patience in epochs
SEED: Seed = 0                # random seed
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train

QUICK_SETTINGS = dict(EPOCHS=1, HIDDEN_SIZE=8, WINDOW=10, START="2010-01-01")
CHECKS = [(lambda: VAL_FRAC + TEST_FRAC < 1,
           "VAL_FRAC + TEST_FRAC must be below 1: the rest of the time line trains"),
          (lambda: MA_DAYS <= WINDOW and AR_LAGS <= WINDOW,
           "MA_DAYS and AR_LAGS must not exceed WINDOW: every forecast sees only the WINDOW days before it")]

CELLS = ("lstm", "gru")
DATA_SETTINGS = ("SOURCE", "TICKER", "CSV", "START", "END", "FEATURES", "TARGET", "WINDOW", "HORIZON",
                 "VAL_FRAC", "TEST_FRAC")  # a twin's predictions are reused only if all of these match


def load_data(horizon):
    prices, info = load_prices(SOURCE, TICKER, CSV, START, END, min_rows=WINDOW + horizon + 30,
                               verbose=horizon == HORIZON)
    return stock_model.prepare_stock_data(prices, FEATURES, WINDOW, horizon, VAL_FRAC, TEST_FRAC,
                                          target=TARGET), info


def build_model(cell, n_features, device):
    """The twins' model (stock_model.PriceRNN) with this script's sizes."""
    return stock_model.PriceRNN(cell, IMPL, n_features, HIDDEN_SIZE, NUM_LAYERS, DROPOUT,
                                device=device).to(device)


def train_network(cell, data, device):
    """Train one network as the twins do; seeded right before it is built, so the LSTM's weights do not
    depend on whether the GRU was trained before it."""
    torch.manual_seed(SEED)
    model = build_model(cell, data["x_train"].shape[2], device)
    stock_model.train_price_model(model, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR,
                                  weight_decay=WEIGHT_DECAY, patience=PATIENCE, seed=SEED)
    return model


def twin_predictions(cell, cfg, dates):
    """stock_<cell>.py's test forecasts from its full run (outputs/03_stock/stock_<cell>/predictions.csv,
    never a --quick run's) if it ran with the same data settings on the same days, else None (and says
    why)."""
    folder = output_dir(pathlib.Path(__file__).with_name(f"stock_{cell}.py"), create=False)
    metrics, table = folder / "metrics.json", folder / "predictions.csv"
    if not REUSE_TWINS:
        return None
    if not (metrics.is_file() and table.is_file()):
        print(f"{cell.upper()}: no full run of stock_{cell}.py in {shown_path(folder)}: training one here.")
        return None
    try:
        theirs = load_metrics(metrics)["config"]
        table = pd.read_csv(table, dtype={"date": str})
        predictions = table["prediction"].to_numpy(float)
    except (ValueError, KeyError, TypeError, OSError, pd.errors.ParserError) as e:
        print(f"{cell.upper()}: {shown_path(folder)} is unreadable ({type(e).__name__}): training one here.")
        return None
    differ = [k for k in DATA_SETTINGS if _same(theirs.get(k)) != _same(cfg[k])]
    if differ or list(table["date"]) != list(dates) or not np.isfinite(predictions).all():
        why = f"its {', '.join(differ)} differ" if differ else "its test days or values do not fit"
        print(f"{cell.upper()}: stock_{cell}.py's full run does not match ({why}): training one here.")
        return None
    print(f"{cell.upper()}: using {shown_path(folder / 'predictions.csv')}")
    return predictions


def _same(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def forecasts(data, cfg, device, horizon):
    """Every forecast of the test days as price columns of one table: date, actual, persistence, ...
    Baselines see the training days only: AR is fit on the training windows, MA and persistence
    have nothing to fit."""
    table = forecast_table(data, np.zeros(len(data["origin_test"])))  # date, actual, persistence
    table = table.drop(columns="prediction")
    o, close, log_close = data["origin_test"], data["close"], np.log(data["close"])
    table[f"MA({MA_DAYS})"] = moving_average(close, o, MA_DAYS)
    ar = fit_ar(log_close, data["origin_train"], AR_LAGS, horizon)
    table[f"AR({AR_LAGS})"] = price_from_log_return(close, o, predict_ar(log_close, o, ar))
    for cell in CELLS:
        reused = twin_predictions(cell, cfg, table["date"]) if horizon == HORIZON else None
        if reused is None:
            print(f"training the {cell.upper()} for {horizon}-day forecasts ...")
            model = train_network(cell, data, device)
            reused = forecast_table(data,
                                    stock_model.predict_target(model, data, "test"))["prediction"].to_numpy()
        table[cell.upper()] = reused
    return table


def score_all(table, data):
    """One row of errors per forecast (persistence first: the bar to clear)."""
    names = [c for c in table.columns if c not in ("date", "actual")]
    return {name: score_forecast(table, data, name) for name in names}


def significance(table, horizon):
    """Diebold-Mariano (squared error) of each network against persistence on the same days."""
    naive_err = table["actual"] - table["persistence"]
    return {cell: diebold_mariano(table["actual"] - table[cell], naive_err, horizon=horizon)
            for cell in ("LSTM", "GRU")}


def verdict(scores, dm, horizon):
    """Plain words, from the numbers: did a network beat "tomorrow = today"?"""
    lines = []
    naive = scores["persistence"]["rmse"]
    for cell, test in dm.items():
        s = scores[cell]
        if test["p_value"] is not None and test["p_value"] < 0.05:
            word = "significantly BETTER than" if test["dm"] < 0 else "significantly WORSE than"
        else:
            word = "not significantly different from"
        d = s["direction_acc"]
        lines.append(f"{cell} ({horizon}-day): RMSE {s['rmse']:.3f} vs persistence {naive:.3f} "
                     f"(Theil's U {s['theils_u']:.3f}), {word} persistence (DM p = {test['p_value']:.3f}); "
                     f"direction right on {d:.1%} of days (binomial p = {s['direction_p']:.3f} vs a coin).")
    best = min(scores, key=lambda k: scores[k]["rmse"])
    lines.append(f"Lowest RMSE at {horizon} day(s): {best}.")
    return lines


def explain_lag(table, data, out, name):
    """Why a lagged copy looks good: price levels barely move day to day, so any forecast near
    yesterday's close hugs the actual curve on a chart, while the part that matters (the change) is
    unpredicted. Shown with numbers and a zoomed plot."""
    zoom = table.tail(ZOOM_DAYS)
    dates = pd.to_datetime(zoom["date"])
    shown = {"LSTM": zoom["LSTM"], "GRU": zoom["GRU"],
             "基线：持续性预测（实际价格推后一天） / baseline: persistence (actual shifted 1 day)":
             zoom["persistence"]}
    plot_predictions(dates, zoom["actual"], shown, out / "lag_zoom.png", ylabel="收盘价 / close",
                     title=f"{name}，测试期最后 {ZOOM_DAYS} 天：预测比实际价格落后一天\n"
                           f"{name}, last {ZOOM_DAYS} test days: the forecasts trail the actual price "
                           "by a day")
    level_corr = float(np.corrcoef(table["actual"], table["persistence"])[0, 1])
    change = table["actual"] - table["persistence"]
    predicted_change = table["LSTM"] - table["persistence"]
    change_corr = float(np.corrcoef(change, predicted_change)[0, 1]) if predicted_change.std() > 0 else 0.0
    lag = lag_check(table["actual"], table["LSTM"])
    nearer = "closer to" if lag["rmse_vs_day_before"] < lag["rmse_vs_same_day"] else "farther from"
    print(f"\nWhy this is hard: persistence correlates {level_corr:.4f} with the actual price (a chart of it "
          f"looks perfect), yet it says nothing about tomorrow's change. The LSTM's predicted change "
          f"correlates {change_corr:+.3f} with the actual change. Its forecast for day t is {nearer} the "
          f"price of day t-1 (RMSE {lag['rmse_vs_day_before']:.3f}) than to the price of day t "
          f"(RMSE {lag['rmse_vs_same_day']:.3f}): it is mostly a copy of the last close. Daily returns of a "
          "liquid stock are close to unpredictable from past prices alone (weak-form market efficiency): "
          "anything predictable would be traded away. See lag_zoom.png.")
    return {"persistence_level_corr": level_corr, "lstm_change_corr": change_corr, **lag}


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])
    results, verdicts = {}, []
    for horizon in dict.fromkeys((HORIZON, MULTI_HORIZON)):
        data, info = load_data(horizon)
        table = forecasts(data, cfg, device, horizon)
        scores, dm = score_all(table, data), significance(table, horizon)
        print_table([{"forecast": k, **v} for k, v in scores.items()],
                    title=f"{info['name']}, {horizon}-day-ahead forecasts, test {table['date'].iloc[0]} .. "
                          f"{table['date'].iloc[-1]} ({len(table)} days)")
        atomic_write(out / f"forecasts_h{horizon}.csv", lambda p: table.to_csv(p, index=False))
        results[horizon] = {"scores": scores, "diebold_mariano_vs_persistence": dm, "test_days": len(table)}
        verdicts += verdict(scores, dm, horizon)
        if horizon == HORIZON:
            lag = explain_lag(table, data, out, info["name"])
            dates = pd.to_datetime(table["date"])
            plot_predictions(dates, table["actual"], {k: table[k] for k in ("LSTM", "GRU", f"AR({AR_LAGS})")},
                             out / "predictions.png", ylabel="收盘价 / close",
                             title=f"{info['name']}：测试期 / {info['name']}: test period")
            plot_residuals(dates, {shown: table["actual"] - table[k] for k, shown in
                                   (("LSTM", "LSTM"), ("GRU", "GRU"),
                                    ("persistence", "持续性预测 / persistence"))},
                           out / "residuals.png",
                           title=f"{info['name']}：提前 {horizon} 天预测的误差\n"
                                 f"{info['name']}: {horizon}-day forecast errors")
    names = list(results[HORIZON]["scores"])
    plot_bars(names, {f"{h} 天 / {h}-day": [results[h]["scores"][n]["theils_u"] for n in names]
                      for h in results},
              out / "multistep_theils_u.png",
              ylabel="Theil's U（RMSE 与持续性预测的 RMSE 之比）\nTheil's U (RMSE / persistence RMSE)",
              title="低于 1 即胜过持续性预测 / below 1 beats persistence")
    print("\nVerdict:\n  " + "\n  ".join(verdicts))
    beats = {f"{cell}_h{h}": results[h]["diebold_mariano_vs_persistence"][cell]["dm"] < 0
             and results[h]["diebold_mariano_vs_persistence"][cell]["p_value"] < 0.05
             for h in results for cell in ("LSTM", "GRU")}
    save_metrics(out, config=cfg, metrics={f"h{h}": r for h, r in results.items()} | {
        "significantly_beats_persistence": beats, "lag_check": lag, "verdict": verdicts},
        extra={"data": info}, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

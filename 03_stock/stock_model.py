"""03_stock's mechanism: daily prices -> features -> a chronological split -> scaling fitted on the training
days -> sliding windows -> a recurrent regressor of the next return (`PriceRNN`, trained one batch at a
time by `train_step`) -> forecasts next to persistence, and their plots.

Read top to bottom; stock_lstm.py / stock_gru.py tell the story with these pieces, performance_analysis.py
puts the forecasts against naive baselines; the baselines and error measures are in forecasting.py.
Two choices matter more than the cell (THEORY.md §12):
- the target is the log RETURN to the forecast day, not the price: returns are stationary, while a price
  network trained on 2000-2010 levels would have to extrapolate to levels it never saw;
- persistence ("tomorrow = today") is the baseline: a price forecast that merely trails the price by a
  day looks perfect on a chart. A network earns its keep only if its RMSE is below persistence's.
No forecast may see its own day or later (look-ahead leakage): the split is by the day a forecast is
FOR, and the scaler sees training days only. Raw prices come from utils.data_utils.load_prices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from forecasting import forecast_table, score_forecast
from utils.model_utils import init_forget_bias, make_rnn
from utils.script_utils import UserError, atomic_write, print_table
from utils.training import ProgressLog, checkpoint_tag, clip_gradients, fit, stop_if_not_finite
from utils.visualization import color_for, plot_training_curves, plt, save_figure

# ----------------------------------------------------------------------------------------------------
# Features: row t of the feature matrix uses day t's prices and earlier days' only
# ----------------------------------------------------------------------------------------------------
STOCK_FEATURES = {
    "log_return": "log(close[t] / close[t-1]): the day's return",
    "hl_range": "log(high[t] / low[t]): the day's trading range, a volatility proxy",
    "oc_return": "log(close[t] / open[t]): the move during the session",
    "log_volume_change": "log(volume[t] / volume[t-1]): unusual trading activity",
    "log_close": "log(close[t]): the price level itself (needed with TARGET=log_price)",
}


def stock_features(df: "pd.DataFrame", features) -> np.ndarray:
    """Price frame (days rows: date, open, high, low, close, volume) -> (days, len(features)) float array;
    row 0 is NaN where a feature needs yesterday."""
    cols = []
    for f in features:
        need = {"log_return": ["close"], "hl_range": ["high", "low"], "oc_return": ["open", "close"],
                "log_volume_change": ["volume"], "log_close": ["close"]}.get(f)
        if need is None:
            raise UserError(f"--FEATURES: unknown feature {f!r}; choose from {', '.join(STOCK_FEATURES)}.")
        if any(c not in df for c in need):
            raise UserError(f"--FEATURES={f} needs the column(s) {', '.join(need)}, which the data lacks; "
                            "use --FEATURES=log_return.")
        if f == "log_return":
            col = np.log(df["close"]).diff()
        elif f == "hl_range":
            col = np.log(df["high"] / df["low"])
        elif f == "oc_return":
            col = np.log(df["close"] / df["open"])
        elif f == "log_close":
            col = np.log(df["close"])
        else:  # +1 share: a day with zero volume must not give log(0)
            col = np.log(df["volume"] + 1).diff()
        cols.append(col.to_numpy(float))                # (days,)
    return np.stack(cols, axis=1)                       # (days, F)


# ----------------------------------------------------------------------------------------------------
# The time line: train, then validation, then test; scaling from the training days only
# ----------------------------------------------------------------------------------------------------
def chronological_split(n_days: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    """Day indices where validation and test begin: train = [0, a), validation = [a, b), test = [b, n).
    Time order is kept: the model is judged on days after everything it learned from (a random split
    would let it learn from the days around each test day: look-ahead, THEORY.md §12)."""
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise UserError(f"--VAL_FRAC and --TEST_FRAC must be in (0, 1) with a sum below 1; "
                        f"got {val_frac} and {test_frac}.")
    b = n_days - int(round(n_days * test_frac))
    a = b - int(round(n_days * val_frac))
    return a, b


class TrainScaler:
    """Standardise with the mean and std of the training rows only (test statistics would leak).
    x: (rows, F) -> mean, std: (F,).

    A constant column gets std 1, and so does a column whose spread is negligible next to its size
    (std <= NEGLIGIBLE * its largest |value|): a column that is constant on paper but was computed in
    floating point has a std of ~1e-16 from rounding alone, and dividing by that would turn rounding
    noise into O(1) inputs."""

    NEGLIGIBLE = 1e-9   # float64 rounding is ~1e-16 relative; a real feature varies far more than 1e-9

    def __init__(self, x):
        x = np.asarray(x, float)
        self.mean = np.nanmean(x, axis=0)
        self.std = np.nanstd(x, axis=0)
        size = np.nanmax(np.abs(x), axis=0)
        self.std = np.where(self.std > self.NEGLIGIBLE * size, self.std, 1.0)  # also std == 0 (size 0 too)

    def transform(self, x):
        return (x - self.mean) / self.std

    def inverse(self, z):
        return z * self.std + self.mean


def make_windows(features, log_close, origins, window: int, horizon: int, target: str = "log_return"):
    """Sliding windows for a direct `horizon`-day forecast made on each origin day t:

        input  x_t = features[t-window+1 .. t]        (window, F): day t and the window-1 days before
        target y_t = log close[t+horizon] - log close[t]   the log return to the predicted day
               (target="log_price": y_t = log close[t+horizon], the price level itself)

    so the prediction for day t+horizon sees nothing from day t+horizon or later.
    features: (days, F), log_close: (days,), origins: (N,) day indices.
    -> x: (N, window, F) float32, y: (N,) float32.
    """
    origins = np.asarray(origins, int)
    if origins.size and (origins.min() < window or origins.max() + horizon >= len(log_close)):
        raise ValueError("every origin needs `window` days before it (day 0 has no return) and "
                         "`horizon` days after it")
    idx = origins[:, None] + np.arange(-window + 1, 1)[None, :]  # (N, window): day indices of each window
    x = features[idx].astype(np.float32)                          # (N, window, F)
    y = log_close[origins + horizon] - (0 if target == "log_price" else log_close[origins])  # (N,)
    return x, y.astype(np.float32)


def prepare_stock_data(df, features, window: int, horizon: int, val_frac: float, test_frac: float,
                       split_days: tuple[int, int] | None = None, target: str = "log_return") -> dict:
    """Split by the day a forecast is FOR, scale with training statistics, build windows.

    Each forecast's target day t+horizon falls in exactly one of train / validation / test, so no
    training label uses a validation or test price. The scaler sees feature rows of training days only,
    and the target's scale (std of training targets) too. `split_days` fixes the boundaries (a, b)
    instead of computing them from the fractions (the no-look-ahead test uses this). target: see
    make_windows; "log_price" is the classic tutorial set-up, kept to show why it misleads.
    -> dict: x_* (N, window, F) and y_* (N,) (scaled), origin_* (N,) (day index t), scaler,
    target_mean/std, dates, close, a, b, window, horizon, features, target.
    """
    feats = stock_features(df, features)               # (days, F)
    close = df["close"].to_numpy(float)                 # (days,)
    log_close = np.log(close)
    n = len(df)
    a, b = split_days or chronological_split(n, val_frac, test_frac)
    scaler = TrainScaler(feats[1:a])  # training days only; row 0 has no yesterday
    scaled = scaler.transform(feats)                    # (days, F)
    first = window  # origin t needs rows t-window+1 >= 1
    target_day = np.arange(first, n - horizon) + horizon
    origins = {"train": np.arange(first, n - horizon)[target_day < a],
               "val": np.arange(first, n - horizon)[(target_day >= a) & (target_day < b)],
               "test": np.arange(first, n - horizon)[target_day >= b]}
    for part, o in origins.items():
        if len(o) < 2:
            raise UserError(f"the {part} part has {len(o)} windows: too few days ({n}) for "
                            f"--WINDOW={window}, --HORIZON={horizon} and this split; use more data or a "
                            "shorter window.")
    if target not in ("log_return", "log_price"):
        raise UserError(f"--TARGET must be log_return or log_price, got {target!r}.")
    out = {"dates": df["date"].to_numpy(), "close": close, "a": a, "b": b, "scaler": scaler,
           "window": window, "horizon": horizon, "features": list(features), "target": target}
    for part, o in origins.items():
        x, y = make_windows(scaled, log_close, o, window, horizon, target)
        out[f"x_{part}"], out[f"y_{part}"], out[f"origin_{part}"] = x, y, o
    # the target is standardised too (daily returns are ~0.02: tiny for a network's output layer)
    out["target_mean"] = float(out["y_train"].mean())
    out["target_std"] = float(out["y_train"].std()) or 1.0
    for part in origins:
        out[f"y_{part}"] = ((out[f"y_{part}"] - out["target_mean"]) / out["target_std"]).astype(np.float32)
    return out


def stock_loaders(data: dict, batch_size: int, seed: int) -> dict:
    """DataLoaders of (x: (batch, window, F), y: (batch,)); training batches shuffled with a seeded
    generator (shuffling windows is fine: each window carries its own past)."""

    def ds(part):
        return TensorDataset(torch.from_numpy(data[f"x_{part}"]), torch.from_numpy(data[f"y_{part}"]))

    g = torch.Generator().manual_seed(seed)
    return {"train": DataLoader(ds("train"), batch_size=batch_size, shuffle=True, generator=g),
            "val": DataLoader(ds("val"), batch_size=512),
            "test": DataLoader(ds("test"), batch_size=512)}


# ----------------------------------------------------------------------------------------------------
# The model: a recurrent regressor from a window of daily features to the next return
# ----------------------------------------------------------------------------------------------------
class PriceRNN(nn.Module):
    """x: (batch, window, features) -> rnn outputs (batch, window, H) -> h at the last day (batch, H)
    -> Linear -> (batch,): the standardised log return to the forecast day.

    Predicting the return rather than the price keeps the target stationary: a price network trained on
    2000-2010 prices would have to extrapolate to 2012 levels it never saw (THEORY.md §12).
    """

    def __init__(self, cell: str, impl: str, n_features: int, hidden: int, layers: int = 1,
                 dropout: float = 0.0, device: torch.device | str = "cpu"):
        super().__init__()
        self.cell = cell.lower()
        self.rnn = make_rnn(cell, impl, n_features, hidden, layers, dropout=dropout, device=device)
        if self.cell == "lstm":
            init_forget_bias(self.rnn, 1.0)  # f starts near sigmoid(1) = 0.73: keep the past (THEORY.md §4.4)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)                          # (batch, window, H): h_t of every day, (L6) / (G4)
        return self.head(out[:, -1]).squeeze(-1)      # last day's h (batch, H) -> (batch,)


# ----------------------------------------------------------------------------------------------------
# Training: one step in plain sight, and the loop (utils.training.fit) with early stopping on the
# validation loss
# ----------------------------------------------------------------------------------------------------
def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer,
               clip: float | None) -> tuple[float, float, int]:
    """One gradient step on a batch of windows: what `fit` runs for every training batch.
    batch: x (batch, window, F), y (batch,) standardised returns.
    -> (the batch's mean squared error, the gradient norm before clipping, windows in the batch)."""
    device = next(model.parameters()).device
    x, y = batch[0].to(device), batch[1].to(device)    # (batch, window, F), (batch,)
    pred = model(x)                                     # (batch,): the last day's h -> linear head
    loss = nn.functional.mse_loss(pred, y)              # mean of (pred - y)^2 over the batch
    value = loss.item()
    stop_if_not_finite("loss", value, optimizer)        # a NaN stops here, before it reaches the weights
    optimizer.zero_grad(set_to_none=True)               # .grad accumulates: clear the last batch's
    loss.backward()                                     # BPTT: back through every day of the window (§4)
    norm = clip_gradients(model, clip)                  # ||g|| before clipping, then g capped at clip (C2)
    stop_if_not_finite("gradient norm", norm, optimizer)
    optimizer.step()                                    # the Adam update
    return value, norm, y.shape[0]


def eval_step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same forward and loss without the update, for validation (`fit`'s eval_step, `evaluate`).
    -> (mean squared error, predictions (batch,), targets (batch,))."""
    device = next(model.parameters()).device
    x, y = batch[0].to(device), batch[1].to(device)
    pred = model(x)                                   # (batch,)
    return nn.functional.mse_loss(pred, y), pred.detach(), y


def train_price_model(model: PriceRNN, data: dict, *, epochs: int, batch_size: int, lr: float,
                      weight_decay: float, patience: int, seed: int,
                      checkpoint_path: Path | None = None, progress: ProgressLog | None = None) -> dict:
    """Train `model` (a PriceRNN, freshly built right after torch.manual_seed(seed) so its weights
    do not depend on what ran before) on data from `prepare_stock_data` with Adam and `fit`: the
    validation loss decides the epoch kept, gradients are clipped at norm 1 (THEORY.md §9). `seed`
    also seeds the shuffling of the training windows. The checkpoint keeps what is needed to use the
    model on new prices (features, window, scalers). `progress` (a ProgressLog) watches every epoch.
    Each batch is one `train_step`; `eval_step` scores the validation windows.
    -> fit's result: history, best_epoch, ..."""
    loaders = stock_loaders(data, batch_size, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    extra = {**checkpoint_tag("03_stock", model.cell), "features": data["features"], "window": data["window"],
             "horizon": data["horizon"], "target": data["target"],
             "scaler_mean": data["scaler"].mean.tolist(), "scaler_std": data["scaler"].std.tolist(),
             "target_mean": data["target_mean"], "target_std": data["target_std"]}
    return fit(model, loaders["train"], loaders["val"], train_step=train_step, eval_step=eval_step,
               epochs=epochs, optimizer=optimizer, patience=patience, clip=1.0,
               checkpoint_path=checkpoint_path, checkpoint_extra=extra, progress=progress)


# ----------------------------------------------------------------------------------------------------
# Forecasts of the test period, next to persistence, and the twins' report
# ----------------------------------------------------------------------------------------------------
def predict_target(model: nn.Module, data: dict, part: str = "test") -> np.ndarray:
    """The model's forecasts for data[f'x_{part}'] (N, window, F), un-standardised: (N,) log returns
    (or log prices with target="log_price"), float64."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        batches = torch.from_numpy(data[f"x_{part}"]).split(512)       # (<=512, window, F) each
        z = torch.cat([model(x.to(device)).cpu() for x in batches])       # (N,)
    return z.double().numpy() * data["target_std"] + data["target_mean"]


def forecast_test_period(model: nn.Module, data: dict, label: str) -> tuple["pd.DataFrame", dict, dict]:
    """The model's forecasts of every test day next to persistence's, scored and printed with a verdict.
    -> (table: date, actual, prediction, persistence; the model's scores; persistence's scores)."""
    table = forecast_table(data, predict_target(model, data, "test"))
    scores, naive = score_forecast(table, data), score_forecast(table, data, "persistence")
    print_table([{"forecast": label, **scores}, {"forecast": "persistence", **naive}],
                title=f"test period {table['date'].iloc[0]} .. {table['date'].iloc[-1]} ({len(table)} days)")
    verdict = "beats" if scores["rmse"] < naive["rmse"] else "does NOT beat"
    print(f"The {label} {verdict} persistence on RMSE (Theil's U = {scores['theils_u']:.3f}; below 1 would "
          "beat it). Run performance_analysis.py for the significance tests.")
    return table, scores, naive


def save_forecast_report(out: Path, table, history: list, *, label: str, name: str, horizon: int) -> None:
    """predictions.csv (the test table), predictions.png (forecast vs actual close) and
    training_curves.png (train/validation loss per epoch) in `out`."""
    atomic_write(out / "predictions.csv", lambda p: table.to_csv(p, index=False))
    plot_predictions(table["date"].astype("datetime64[ns]"), table["actual"], {label: table["prediction"]},
                     out / "predictions.png", ylabel="收盘价（拆股调整后） / close (split-adjusted)",
                     title=f"{name}：{label} 预测 {horizon} 天后的收盘价（测试期）\n"
                           f"{name}: {label} forecast of the close {horizon} day(s) ahead (test period)")
    plot_training_curves(history, out / "training_curves.png", title=f"{label}，{name} / {label} on {name}")


# ----------------------------------------------------------------------------------------------------
# Plots: forecasts against the actual close, and their errors (the twins and performance_analysis.py)
# ----------------------------------------------------------------------------------------------------
def plot_predictions(x: Sequence, actual: Sequence[float], predictions: dict[str, Sequence[float]],
                     path: Path | str, title: str = "", ylabel: str = "value") -> Path:
    """The actual series (black) against one or more forecasts of it, e.g. dates vs closes."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(x, actual, color="black", lw=1.4, label="实际 / actual")
    for name, ys in predictions.items():
        ax.plot(x, ys, lw=1.0, alpha=0.85, label=name, color=color_for(name))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.autofmt_xdate()
    return save_figure(fig, path)


def plot_residuals(x: Sequence, residuals: dict[str, Sequence[float]], path: Path | str, title: str = "",
                   max_lag: int = 20) -> Path:
    """Forecast errors three ways: over time (clusters = volatile periods), their histogram (fat tails),
    and their autocorrelation (a bar outside the ±2/sqrt(n) band = structure the forecast missed)."""
    fig = plt.figure(figsize=(12, 7))
    top = fig.add_subplot(2, 1, 1)
    hist = fig.add_subplot(2, 2, 3)
    acf = fig.add_subplot(2, 2, 4)
    width = 0.8 / max(len(residuals), 1)
    for k, (name, r) in enumerate(residuals.items()):
        r = np.asarray(r, float)
        color = color_for(name)
        top.plot(x, r, lw=0.8, alpha=0.8, label=name, color=color)
        hist.hist(r, bins=40, alpha=0.5, label=name, color=color)
        rc = r - r.mean()
        lags = np.arange(1, max_lag + 1)
        ac = [np.sum(rc[lag:] * rc[:-lag]) / np.sum(rc * rc) for lag in lags]  # lag-k autocorrelation
        acf.bar(lags + (k - (len(residuals) - 1) / 2) * width, ac, width, label=name, color=color)
        band = 2 / np.sqrt(len(r))
    top.axhline(0, color="black", lw=0.8)
    top.set_ylabel("实际 − 预测 / actual − forecast")
    top.legend()
    top.grid(alpha=0.3)
    hist.set_xlabel("残差 / residual")
    hist.set_ylabel("天数 / days")
    acf.axhspan(-band, band, color="grey", alpha=0.2, label="±2/√n")
    acf.set_xlabel("滞后（天） / lag (days)")
    acf.set_ylabel("自相关 / autocorrelation")
    acf.legend(fontsize=8)
    top.tick_params(axis="x", labelrotation=30)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)

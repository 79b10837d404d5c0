"""Stock price prediction with a GRU: a window of past daily returns -> the next day's return -> a price.

Run: python 03_stock/stock_gru.py  (offline, real AAPL prices 2000-2013; --quick for a smoke test,
--SOURCE=yfinance --TICKER=NVDA for any ticker, --CSV=prices.csv for your own data). The honest question
is not "does the curve look right?" but "does it beat tomorrow = today?"; see performance_analysis.py.
Theory: THEORY.md, GRU equations (G1)-(G4); compare with stock_lstm.py.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

from utils.data_utils import load_prices, prepare_stock_data
from utils.model_utils import count_parameters, forecast_test_period, train_price_model
from utils.script_utils import get_device, output_dir, parse_config, run_main, save_metrics, set_seed
from utils.visualization import plot_predictions, plot_training_curves

# ==== Hyperparameters (edit me) ====
SOURCE = "bokeh"          # bokeh: offline AAPL/IBM/MSFT/GOOG 2000-2013; yfinance: any ticker (downloaded once, cached)
TICKER = "AAPL"           # the stock to forecast
CSV = ""                  # your own OHLCV CSV (date and close columns at least); overrides SOURCE when set
START = ""                # first day to use, YYYY-MM-DD ("" = the first available)
END = ""                  # last day to use, YYYY-MM-DD ("" = the last available)
FEATURES = ("log_return", "hl_range", "oc_return", "log_volume_change")  # inputs per day (see utils.data_utils)
TARGET = "log_return"     # log_return: predict log(close[t+H]/close[t]) and turn it into a price; log_price: the level
WINDOW = 30               # days of history the GRU reads for each forecast
HORIZON = 1               # forecast the close HORIZON trading days after the last day of the window
VAL_FRAC = 0.15           # the middle part of the time line: early stopping
TEST_FRAC = 0.15          # the last part of the time line: never seen in training
IMPL = "torch"            # torch: nn.GRU; scratch: the hand-written ScratchGRU from 01_basic_theory
HIDDEN = 32               # GRU state size (h only: no cell state)
LAYERS = 1                # stacked GRU layers
DROPOUT = 0.0             # dropout between stacked layers (needs LAYERS > 1)
EPOCHS = 30               # maximum passes over the training windows
BATCH_SIZE = 64           # windows per gradient step
LR = 1e-3                 # Adam learning rate
WEIGHT_DECAY = 1e-5       # L2 penalty: daily returns are mostly noise, easy to overfit
PATIENCE = 5              # early stopping: epochs without a better validation loss
SEED = 0                  # random seed (weights, shuffling)
DEVICE = "auto"           # auto, cpu, cuda or mps

QUICK_SETTINGS = dict(EPOCHS=1, HIDDEN=8, WINDOW=10, START="2010-01-01")
CHOICES = {"SOURCE": ("bokeh", "yfinance"), "IMPL": ("torch", "scratch"), "TARGET": ("log_return", "log_price")}

CELL = "gru"


def load_data():
    """Prices (split-adjusted) -> scaled sliding windows, split chronologically into train/val/test."""
    prices, info = load_prices(SOURCE, TICKER, CSV, START, END, min_rows=WINDOW + HORIZON + 30)
    return prepare_stock_data(prices, FEATURES, WINDOW, HORIZON, VAL_FRAC, TEST_FRAC, target=TARGET), info


def train(data, cfg, device, out):
    """A GRU reads the window day by day with one state h and two gates: the reset gate r (G1) decides how
    much of h_{t-1} enters the candidate n (G3), the update gate z (G2) blends old h and n (G4), doing
    the LSTM's forget and input gates' work at once. No cell state: 3/4 of the LSTM's parameters."""
    model, result = train_price_model(CELL, data, cfg, device, checkpoint_path=out / "model.pt")
    print(f"{CELL.upper()} ({IMPL}): {count_parameters(model):,} parameters, best epoch {result['best_epoch']}")
    return model, result


def save_results(out, table, result, name):
    table.to_csv(out / "predictions.csv", index=False)
    plot_predictions(table["date"].astype("datetime64[ns]"), table["actual"], {CELL.upper(): table["prediction"]},
                     out / "predictions.png", ylabel="close (split-adjusted)",
                     title=f"{name}: {CELL.upper()} forecast of the close {HORIZON} day(s) ahead (test period)")
    plot_training_curves(result["history"], out / "training_curves.png", title=f"{CELL.upper()} on {name}")


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__)
    data, info = load_data()
    model, result = train(data, cfg, device, out)
    table, scores, naive = forecast_test_period(model, data, CELL.upper())  # vs tomorrow = today
    save_results(out, table, result, info["name"])
    metrics = {**scores, "persistence": naive, "beats_persistence": scores["rmse"] < naive["rmse"],
               "best_epoch": result["best_epoch"], "parameters": count_parameters(model), "test_days": len(table)}
    save_metrics(out, config=cfg, metrics=metrics,
                 history=result["history"], extra={"data": info}, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

"""Stock price prediction with an LSTM: a window of past daily features -> the next day's return -> a price.

Shows sliding windows (x: (N, WINDOW, F) -> y: (N,)), a chronological train/val/test split, scaling fitted on
the training days only, and why the target is a return and "tomorrow = today"
(persistence) is the bar to clear.
Run: python 03_stock/stock_lstm.py (offline AAPL 2000-2013; --quick; --SOURCE=yfinance --TICKER=NVDA;
     --CSV=my.csv).
Theory: THEORY.md (L1)-(L6); §12 forecasting honestly. The mechanism is in stock_model.py.

用 LSTM 看过去一段时间的每日特征，预测下一个交易日的收益率，再换算成价格。要学的是：用滑动窗口切出样本
（x: (N, WINDOW, F) -> y: (N,)）；训练、验证、测试按时间先后划分；缩放只用训练期的数据来拟合；以及为什么
预测目标是收益率，而“明天和今天一样”（persistence，持续性基线）是模型必须超过的那条线。
运行：`python 03_stock/stock_lstm.py`，默认用离线的 AAPL 2000-2013 数据；`--quick` 快速跑通，
`--SOURCE=yfinance --TICKER=NVDA` 在线下载别的股票，`--CSV=my.csv` 用你自己的数据。
理论：THEORY.md 公式 (L1)-(L6)，第 12 节讲怎样做不偷看未来的预测评估。具体实现在 stock_model.py。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

import torch

import stock_model
from utils.data_utils import load_prices
from utils.model_utils import count_parameters
from utils.script_utils import (
    AtLeast,
    Fraction,
    Interval,
    Items,
    OneOf,
    Positive,
    Seed,
    get_device,
    output_dir,
    parse_config,
    run_main,
    save_metrics,
    set_seed,
)
from utils.training import ProgressLog

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SOURCE: OneOf("bokeh", "yfinance") = "bokeh"  # bokeh: offline AAPL/IBM/MSFT/GOOG 2000-2013;
                                              # yfinance: any ticker
TICKER: str = "AAPL"          # the stock to forecast (bokeh: AAPL, IBM, MSFT or GOOG)
CSV: str = ""                 # your own OHLCV CSV (date and close columns at least);
                              # overrides SOURCE when set
START: str = ""               # first day to use, YYYY-MM-DD ("" = the first available)
END: str = ""                 # last day to use, YYYY-MM-DD ("" = the last available)
FEATURES: Items(OneOf(*stock_model.STOCK_FEATURES)) = ("log_return", "hl_range", "oc_return",
                                                       "log_volume_change")
                              # inputs per day: stock_model.STOCK_FEATURES
TARGET: OneOf("log_return", "log_price") = "log_return"  # predict log(close[t+H]/close[t]),
                                                         # or log_price: the level
WINDOW: AtLeast(1) = 30       # days of history the LSTM reads for each forecast
HORIZON: AtLeast(1) = 1       # trading days ahead to forecast
VAL_FRAC: Interval("(0, 1)") = 0.15   # the middle part of the time line: early stopping
TEST_FRAC: Interval("(0, 1)") = 0.15  # the last part of the time line: never seen in training
IMPL: OneOf("torch", "scratch") = "torch"  # torch: nn.LSTM;
                                           # scratch: 01_basic_theory's hand-written ScratchLSTM
HIDDEN_SIZE: AtLeast(1) = 32  # LSTM state size, h and c
NUM_LAYERS: AtLeast(1) = 1    # stacked LSTM layers
DROPOUT: Fraction = 0.0       # dropout between stacked layers (needs NUM_LAYERS > 1)
EPOCHS: AtLeast(1) = 30       # maximum passes over the training windows
BATCH_SIZE: AtLeast(1) = 64   # windows per gradient step
LR: Positive = 1e-3           # Adam learning rate
WEIGHT_DECAY: AtLeast(0.0) = 1e-5  # L2 penalty: daily returns are mostly noise, easy to overfit
PATIENCE: AtLeast(1) = 5      # early stopping: epochs without a better validation loss
SEED: Seed = 0                # random seed (weights, shuffling)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train

QUICK_SETTINGS = dict(EPOCHS=1, HIDDEN_SIZE=8, WINDOW=10, START="2010-01-01")
CHECKS = [(lambda: VAL_FRAC + TEST_FRAC < 1,
           "VAL_FRAC + TEST_FRAC must be below 1: the rest of the time line trains")]


def load_data():
    """Prices (split-adjusted) -> features -> chronological split -> scaling fitted on the training days
    -> sliding windows x: (N, WINDOW, F), y: (N,) per part (stock_model.prepare_stock_data)."""
    prices, info = load_prices(SOURCE, TICKER, CSV, START, END, min_rows=WINDOW + HORIZON + 30)
    return stock_model.prepare_stock_data(prices, FEATURES, WINDOW, HORIZON, VAL_FRAC, TEST_FRAC,
                                          target=TARGET), info


def build_model(n_features, device):
    """(batch, WINDOW, n_features) -> LSTM -> last h -> linear -> (batch,) standardised return."""
    return stock_model.PriceRNN("lstm", IMPL, n_features, HIDDEN_SIZE, NUM_LAYERS, DROPOUT,
                                device=device).to(device)


def train(data, device, out, progress):
    """An LSTM reads the window day by day: 输入门 input gate i (L1) decides how much of today's return
    enters 细胞状态 cell state c (L5), 遗忘门 forget gate f (L2) how much of the older history is kept, and
    输出门 output gate o (L4) what the last h passes to the linear head. Forget bias starts at 1 (§4.4)."""
    torch.manual_seed(SEED)  # right before the weights are drawn: the same model whatever ran before
    model = build_model(data["x_train"].shape[2], device)
    # Adam, early stopping on the validation loss; each batch is one stock_model.train_step:
    # forward -> mean squared error -> zero_grad -> backward -> clip -> step
    result = stock_model.train_price_model(model, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR,
                                           weight_decay=WEIGHT_DECAY, patience=PATIENCE, seed=SEED,
                                           checkpoint_path=out / "model.pt", progress=progress)
    print(f"LSTM ({IMPL}): {count_parameters(model):,} parameters, best epoch {result['best_epoch']}")
    return model, result


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])
    data, info = load_data()
    # progress.jsonl, live curves, TensorBoard
    progress = ProgressLog(out, hparams=cfg, title=f"LSTM，{info['name']} / LSTM on {info['name']}")
    model, result = train(data, device, out, progress)
    table, scores, naive = stock_model.forecast_test_period(model, data, "LSTM")  # vs tomorrow = today
    stock_model.save_forecast_report(out, table, result["history"], label="LSTM", name=info["name"],
                                     horizon=HORIZON)
    metrics = {**scores, "persistence": naive, "beats_persistence": scores["rmse"] < naive["rmse"],
               "best_epoch": result["best_epoch"], "parameters": count_parameters(model),
               "test_days": len(table)}
    save_metrics(out, config=cfg, metrics=metrics,
                 history=result["history"], extra={"data": info}, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

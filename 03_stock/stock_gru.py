"""Stock price prediction with a GRU: a window of past daily features -> the next day's return -> a price.

Shows sliding windows (x: (N, WINDOW, F) -> y: (N,)), a chronological train/val/test split, scaling fitted on
the training days only, and why the target is a return and "tomorrow = today"
(persistence) is the bar to clear.
Run: python 03_stock/stock_gru.py (offline AAPL 2000-2013; --quick; --SOURCE=yfinance --TICKER=NVDA;
     --CSV=my.csv).
Theory: THEORY.md (G1)-(G4), compare with stock_lstm.py; §12 forecasting honestly. The mechanism is in
        stock_model.py.

stock_lstm.py 的孪生脚本，把 LSTM 换成 GRU：看过去一段时间的每日特征，预测下一个交易日的收益率，再换算成
价格。要学的是：用滑动窗口切出样本（x: (N, WINDOW, F) -> y: (N,)）；训练、验证、测试按时间先后划分；缩放
只用训练期的数据来拟合；以及为什么预测目标是收益率，而“明天和今天一样”（persistence，持续性基线）是模型
必须超过的那条线。
运行：`python 03_stock/stock_gru.py`，默认用离线的 AAPL 2000-2013 数据；`--quick` 快速跑通，
`--SOURCE=yfinance --TICKER=NVDA` 在线下载别的股票，`--CSV=my.csv` 用你自己的数据。
理论：THEORY.md 公式 (G1)-(G4)，和 stock_lstm.py 对照着看；第 12 节讲怎样做不偷看未来的预测评估。
具体实现在 stock_model.py。
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
WINDOW: AtLeast(1) = 30       # days of history the GRU reads for each forecast
HORIZON: AtLeast(1) = 1       # trading days ahead to forecast
VAL_FRAC: Interval("(0, 1)") = 0.15   # the middle part of the time line: early stopping
TEST_FRAC: Interval("(0, 1)") = 0.15  # the last part of the time line: never seen in training
IMPL: OneOf("torch", "scratch") = "torch"  # torch: nn.GRU;
                                           # scratch: 01_basic_theory's hand-written ScratchGRU
HIDDEN_SIZE: AtLeast(1) = 32  # GRU state size, h only: no cell state
NUM_LAYERS: AtLeast(1) = 1    # stacked GRU layers
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
    """(batch, WINDOW, n_features) -> GRU -> last h -> linear -> (batch,) standardised return."""
    return stock_model.PriceRNN("gru", IMPL, n_features, HIDDEN_SIZE, NUM_LAYERS, DROPOUT,
                                device=device).to(device)


def train(data, device, out, progress):
    """A GRU reads the window day by day with one state h and two gates: 重置门 reset gate r (G1) decides
    how much of h_{t-1} enters 候选状态 candidate n (G3), 更新门 update gate z (G2) blends old h and n into
    新的隐藏状态 new hidden state (G4), doing the LSTM's forget and input gates' work at once.
    No cell state 无细胞状态: 3/4 of the LSTM's parameters."""
    torch.manual_seed(SEED)  # right before the weights are drawn: the same model whatever ran before
    model = build_model(data["x_train"].shape[2], device)
    # Adam, early stopping on the validation loss; each batch is one stock_model.train_step:
    # forward -> mean squared error -> zero_grad -> backward -> clip -> step
    result = stock_model.train_price_model(model, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR,
                                           weight_decay=WEIGHT_DECAY, patience=PATIENCE, seed=SEED,
                                           checkpoint_path=out / "model.pt", progress=progress)
    print(f"GRU ({IMPL}): {count_parameters(model):,} parameters, best epoch {result['best_epoch']}")
    return model, result


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])
    data, info = load_data()
    # progress.jsonl, live curves, TensorBoard
    progress = ProgressLog(out, hparams=cfg, title=f"GRU，{info['name']} / GRU on {info['name']}")
    model, result = train(data, device, out, progress)
    table, scores, naive = stock_model.forecast_test_period(model, data, "GRU")  # vs tomorrow = today
    stock_model.save_forecast_report(out, table, result["history"], label="GRU", name=info["name"],
                                     horizon=HORIZON)
    metrics = {**scores, "persistence": naive, "beats_persistence": scores["rmse"] < naive["rmse"],
               "best_epoch": result["best_epoch"], "parameters": count_parameters(model),
               "test_days": len(table)}
    save_metrics(out, config=cfg, metrics=metrics,
                 history=result["history"], extra={"data": info}, start_time=t0, device=device)


if __name__ == "__main__":
    run_main(main)

"""Time-series classification with a (bidirectional) LSTM on UCR/UEA benchmarks bundled with sktime.

Teaches: packing variable-length series and pooling over valid steps only (series_model.SeriesClassifier),
early stopping on validation accuracy - 0.001 * NLL (the loss breaks ties on a 10-series validation split),
and a seed ensemble: with a few dozen training series one network's accuracy swings with its seed.
Run: python 05_seq_classify/sequence_lstm.py [--DATASET=JapaneseVowels | --DATASET=all] [--quick]
Theory: THEORY.md (L1)-(L6), §5 packing, §8 seed ensembles; the GRU twin is sequence_gru.py.

用（双向）LSTM 给时间序列分类，数据是 sktime 自带的 UCR/UEA 基准数据集（默认 GunPoint）。要学的是：把长短
不一的序列打包，池化时只用真实的时间步（series_model.SeriesClassifier）；按“验证准确率 - 0.001 × NLL”早停
（验证集只有 10 条序列，准确率常常打平，就靠损失分出高下）；以及种子集成：训练序列只有几十条时，单个网络的
准确率会随随机种子大起大落。
运行：`python 05_seq_classify/sequence_lstm.py`；`--DATASET=JapaneseVowels` 换一个数据集，`--DATASET=all`
跑完 DATASETS 里的全部，`--quick` 快速跑通。
理论：THEORY.md 公式 (L1)-(L6)，第 5 节（打包），第 8 节（种子集成）；GRU 版是 sequence_gru.py。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

import series_model
from utils.data_utils import load_ucr_dataset
from utils.model_utils import ensemble_member_seeds, init_forget_bias
from utils.script_utils import (
    AtLeast,
    Fraction,
    Interval,
    Items,
    OneOf,
    Positive,
    Seed,
    get_device,
    parse_config,
    run_main,
    set_seed,
)
from utils.training import ProgressLog

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
DATASET: str = "GunPoint"     # a UCR/UEA problem bundled with sktime (README), "A,B" for several,
                              # or "all" (= DATASETS)
DATASETS: Items(str) = ("GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions",
                        "JapaneseVowels")  # = "all"
DOWNLOAD: bool = False        # True: let sktime fetch a problem it does not bundle (needs internet)
SEED: Seed = 0                # first random seed
N_SEEDS: AtLeast(1) = 1       # seeds SEED, SEED+1, ...: metrics.json reports the mean and std over them
ENSEMBLE: AtLeast(1) = 5      # models per seed, probabilities averaged (1 = one model):
                              # one seed is noisy (§8)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train
IMPL: OneOf("torch", "scratch") = "torch"  # torch: nn.LSTM; scratch: 01_basic_theory's ScratchLSTM
                                           # (same maths, slower)
HIDDEN_SIZE: AtLeast(1) = 64  # units per direction; the LSTM state is h and c, each of this size
NUM_LAYERS: AtLeast(1) = 1    # stacked LSTM layers
BIDIRECTIONAL: bool = True    # also read each series backwards: its start is then "recent" too (§6)
POOLING: OneOf(*series_model.SeriesClassifier.POOLINGS) = "last+mean"  # per-step states -> one vector
DROPOUT: Fraction = 0.2       # before the classifier, and between layers if NUM_LAYERS > 1
PATCH: AtLeast(0) = 0         # steps per input vector (0 = auto, <= 25 inputs):
                              # 40 series can't teach 150 steps
EPOCHS: AtLeast(1) = 300      # upper bound; early stopping usually ends sooner
BATCH_SIZE: AtLeast(1) = 16   # series per batch; UCR training sets are small (36-270 series here)
LR: Positive = 3e-3           # AdamW learning rate, halved when validation stalls
WEIGHT_DECAY: AtLeast(0.0) = 1e-4  # AdamW weight decay
PATIENCE: AtLeast(1) = 60     # epochs without a better validation score before stopping
CLIP: AtLeast(0.0) = 1.0      # gradient-norm clipping (0 = off): guards against exploding gradients (§9)
VAL_FRACTION: Interval("(0, 1)") = 0.2  # stratified validation split carved from the official training set
REFIT: bool = False           # True: retrain a fresh model on train + validation for the chosen
                              # number of epochs (README)
MAX_TRAIN: AtLeast(0) = 0     # 0 = every training series; N = a stratified subset (smoke tests)
MAX_TEST: AtLeast(0) = 0      # 0 = every test series; N = a random subset (smoke tests)

QUICK_SETTINGS = dict(EPOCHS=2, HIDDEN_SIZE=16, N_SEEDS=1, ENSEMBLE=2, MAX_TRAIN=40, MAX_TEST=60)


def build_model(n_features: int, n_classes: int, device) -> series_model.SeriesClassifier:
    """A (bi)LSTM classifier. Each step the gates decide what 细胞状态 cell state c keeps:
    遗忘门 forget gate f (L2) scales c_{t-1} and 输入门 input gate i (L1) admits 候选值 candidate g (L3)
    into c_t (L5); 输出门 output gate o (L4) exposes tanh(c_t) as 隐藏状态 hidden state h_t (L6).
    The additive path through c is what lets an LSTM carry a feature seen early in a series to its end
    almost unchanged (§4.3)."""
    model = series_model.SeriesClassifier("lstm", IMPL, n_features, n_classes, HIDDEN_SIZE, NUM_LAYERS,
                                          BIDIRECTIONAL, POOLING, DROPOUT, device=device).to(device)
    # f ≈ 0.73 at the start: remember by default (§4.4, Jozefowicz et al. 2015)
    init_forget_bias(model.rnn, 1.0)
    return model


def train_member(data: dict, seed: int, device, progress) -> dict:
    """One LSTM from `seed`: its own weights, batch order and validation fifth (series_model)."""
    return series_model.train_series_classifier(
        lambda f, c: build_model(f, c, device), data, seed, device, val_fraction=VAL_FRACTION, patch=PATCH,
        batch_size=BATCH_SIZE, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY, patience=PATIENCE, clip=CLIP,
        refit=REFIT, max_train=MAX_TRAIN, max_test=MAX_TEST, progress=progress)


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    names = series_model.datasets_to_run(DATASET, DATASETS)
    for name in names:
        data = load_ucr_dataset(name, DOWNLOAD)
        out = series_model.series_run_dir(__file__, name, cfg["QUICK"])
        # progress.jsonl, live curves, TensorBoard
        progress = ProgressLog(out, hparams={**cfg, "DATASET": name})
        runs = []
        for seed in range(SEED, SEED + N_SEEDS):
            # the seed ensemble (§8): member k starts from seed*ENSEMBLE + k; their mean probability
            # is the vote
            members = []
            for k, member_seed in enumerate(ensemble_member_seeds(seed, ENSEMBLE)):
                print(f"--- {name}, SEED {seed}: model {k + 1} of {ENSEMBLE} (seed {member_seed}) ---")
                members.append(train_member(data, member_seed, device,
                                            progress.for_run(f"model {k + 1} (seed {member_seed})")))
            # the first SEED's checkpoint, predictions and curves are saved
            files = out if seed == SEED else None
            runs.append(series_model.ensemble_result(members, data, seed, files))
        series_model.report_series_runs(__file__, runs, cfg, device, t0, quick=cfg["QUICK"],
                                        ensemble=ENSEMBLE, single_dataset=len(names) == 1)


if __name__ == "__main__":
    run_main(main)

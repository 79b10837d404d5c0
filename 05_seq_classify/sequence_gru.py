"""Time-series classification with a (bidirectional) GRU on UCR/UEA benchmarks bundled with sktime.

Teaches: packing variable-length series and pooling over valid steps only (series_model.SeriesClassifier),
early stopping on validation accuracy - 0.001 * NLL (the loss breaks ties on a 10-series validation split),
and a seed ensemble: with a few dozen training series one network's accuracy swings with its seed.
Run: python 05_seq_classify/sequence_gru.py [--DATASET=JapaneseVowels | --DATASET=all] [--quick]
Theory: THEORY.md (G1)-(G4), §5 packing, §8 seed ensembles; the LSTM twin is sequence_lstm.py.

用（双向）GRU 给时间序列分类，数据是 sktime 自带的 UCR/UEA 基准数据集（默认 GunPoint）。要学的是：把长短
不一的序列打包，池化时只用真实的时间步（series_model.SeriesClassifier）；按“验证准确率 - 0.001 × NLL”早停
（验证集只有 10 条序列，准确率常常打平，就靠损失分出高下）；以及种子集成：训练序列只有几十条时，单个网络的
准确率会随随机种子大起大落。
运行：`python 05_seq_classify/sequence_gru.py`；`--DATASET=JapaneseVowels` 换一个数据集，`--DATASET=all`
跑完 DATASETS 里的全部，`--quick` 快速跑通。
理论：THEORY.md 公式 (G1)-(G4)，第 5 节（打包），第 8 节（种子集成）；LSTM 版是 sequence_lstm.py。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

import series_model
from utils.data_utils import load_ucr_dataset
from utils.model_utils import ensemble_member_seeds
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
IMPL: OneOf("torch", "scratch") = "torch"  # torch: nn.GRU; scratch: 01_basic_theory's ScratchGRU
                                           # (same maths, slower)
HIDDEN_SIZE: AtLeast(1) = 64  # units per direction; the GRU state is h alone (no cell state)
NUM_LAYERS: AtLeast(1) = 1    # stacked GRU layers
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
    """A (bi)GRU classifier. 更新门 update gate z (G2) does the work of an LSTM's forget and input gates at
    once: 新的隐藏状态 new hidden state h_t = (1 - z) * n_t + z * h_{t-1} (G4) keeps or overwrites each
    unit; 重置门 reset gate r (G1) decides how much of h_{t-1} enters 候选状态 candidate n (G3).
    No cell state 无细胞状态, 3 weight blocks instead of 4:
    3/4 of the LSTM's parameters at the same HIDDEN_SIZE."""
    return series_model.SeriesClassifier("gru", IMPL, n_features, n_classes, HIDDEN_SIZE, NUM_LAYERS,
                                         BIDIRECTIONAL, POOLING, DROPOUT, device=device).to(device)


def train_member(data: dict, seed: int, device, progress) -> dict:
    """One GRU from `seed`: its own weights, batch order and validation fifth (series_model)."""
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

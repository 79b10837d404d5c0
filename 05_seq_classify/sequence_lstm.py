"""Time-series classification with a (bidirectional) LSTM on UCR/UEA benchmarks bundled with sktime.

Teaches: packing variable-length series (no pad-and-pretend), pooling over valid steps only, early
stopping on validation accuracy, averaging a few models trained from different seeds (a seed ensemble:
with 40-200 training series one network's test accuracy swings by a point or two from seed to seed),
and reporting accuracy / macro-F1 against published baselines.
Run: python 05_seq_classify/sequence_lstm.py [--DATASET=JapaneseVowels | --DATASET=all] [--quick]
Theory: THEORY.md (LSTM equations L1-L6); the GRU twin is sequence_gru.py.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path
import time

from utils.model_utils import SeriesClassifier, init_forget_bias, run_series_experiments
from utils.script_utils import get_device, parse_config, run_main, set_seed

# ==== Hyperparameters (edit me) ====
DATASET = "GunPoint"  # a UCR/UEA problem bundled with sktime, or "all" for every name in DATASETS
DATASETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels")  # what "all" runs
DOWNLOAD = False  # True: let sktime fetch a problem it does not bundle (needs internet)
SEED = 0  # first random seed
N_SEEDS = 1  # seeds SEED, SEED+1, ...: metrics.json reports the mean and std over them
ENSEMBLE = 5  # models per seed, averaged (member k: seed SEED*ENSEMBLE+k, own validation split); 1 = one model
DEVICE = "auto"  # auto, cpu, cuda or mps
IMPL = "torch"  # torch: nn.LSTM; scratch: ScratchLSTM from 01_basic_theory (same maths, slower)
HIDDEN_SIZE = 64  # units per direction; the LSTM state is h and c, each of this size
NUM_LAYERS = 1  # stacked LSTM layers
BIDIRECTIONAL = True  # also read each series backwards: the start of a series is then "recent" too
POOLING = "last+mean"  # last, mean or last+mean: how the per-step states become one vector
DROPOUT = 0.2  # before the classifier (and between layers if NUM_LAYERS > 1)
PATCH = 0  # k > 1 feeds k consecutive steps as one input vector; 1 = raw steps; 0 = auto (> 50 steps -> ≤ 25)
# (why patch: 40 training series cannot teach a plain RNN to carry gradients through 150-251 steps;
#  25 steps of 6-11 values keep the whole series, only fewer, richer steps. JapaneseVowels and
#  ItalyPowerDemand are short enough to stay unpatched.)
EPOCHS = 300  # upper bound; early stopping usually ends sooner
BATCH_SIZE = 16  # series per batch (UCR training sets are small: 36-270 series here)
LR = 3e-3  # AdamW learning rate, halved when validation stalls
WEIGHT_DECAY = 1e-4  # AdamW weight decay
PATIENCE = 60  # epochs without validation improvement before stopping
CLIP = 1.0  # gradient-norm clipping (THEORY.md: exploding gradients)
VAL_FRACTION = 0.2  # stratified validation split carved from the official training set
REFIT = False  # True: retrain a fresh model on train + validation for the chosen epochs (no gain here: README)
MAX_TRAIN = 0  # 0 = every training series; N = a stratified subset (smoke tests)
MAX_TEST = 0  # 0 = every test series; N = a random subset (smoke tests)

QUICK_SETTINGS = dict(EPOCHS=2, HIDDEN_SIZE=16, N_SEEDS=1, ENSEMBLE=2, MAX_TRAIN=40, MAX_TEST=60)
CHOICES = {"IMPL": ("torch", "scratch"), "POOLING": SeriesClassifier.POOLINGS}
CELL = "lstm"


def build_model(n_features: int, n_classes: int, device) -> SeriesClassifier:
    """A (bi)LSTM classifier. Each step the gates decide what the cell state c keeps: the forget gate f
    (L2) scales c_{t-1} and the input gate i (L1) admits the candidate g (L3) into c_t (L5); the output
    gate o (L4) exposes tanh(c_t) as h_t (L6). The additive path through c is what lets an LSTM carry a feature seen
    early in a series to its end almost unchanged."""
    model = SeriesClassifier(CELL, IMPL, n_features, n_classes, HIDDEN_SIZE, NUM_LAYERS, BIDIRECTIONAL,
                             POOLING, DROPOUT, device=device).to(device)
    init_forget_bias(model.rnn, 1.0)  # f ≈ 0.73 at the start: remember by default (Jozefowicz et al. 2015)
    return model


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    run_series_experiments(__file__, lambda f, c: build_model(f, c, device), cfg, device, t0)


if __name__ == "__main__":
    run_main(main)

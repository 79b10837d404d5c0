"""Character-level Shakespeare with an LSTM: read 4 M characters of plays, predict the next character.

Teaches truncated backpropagation through time (the hidden state carried across chunks), loss in
nats/bits per character against an n-gram baseline, and sampling with a temperature.
Run: python 04_text_gen/text_lstm.py [--quick] [--TEXT=my.txt] [--IMPL=scratch]   Theory: THEORY.md (L1)-(L6).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

from utils.model_utils import CharRNN, apply_device_settings, count_parameters, train_char_lm
from utils.script_utils import get_device, output_dir, parse_config, run_main, set_seed

# ==== Hyperparameters (edit me) ====
SEED = 0                    # random seed (weights, dropout, pass offsets, samples)
DEVICE = "auto"             # auto | cpu | cuda | mps
IMPL = "torch"              # torch = nn.LSTM (cuDNN on GPU); scratch = 01_basic_theory's ScratchLSTM
TEXT = ""                   # a UTF-8 text file to learn instead of Shakespeare (split 90/10 by position)
EMBED_DIM = 48              # character embedding size (only ~70 characters: a small table is enough)
HIDDEN_SIZE = 384           # LSTM units per layer
NUM_LAYERS = 2              # stacked LSTM layers
DROPOUT = 0.1               # on embeddings, between layers and before the softmax (4 M chars: little needed)
FORGET_BIAS = 0.0           # initial forget-gate bias (THEORY.md 4.4). The usual advice, 1.0, *hurts* here:
                            # 2.04 vs 1.83 nats/char after 2.5 CPU minutes (README, 04): a char LM needs to
                            # learn to forget fast more than to remember long
BATCH_SIZE = 64             # parallel streams of text (rows of the TBPTT batch)
SEQ_LEN = 128               # characters per chunk: gradients flow back at most this far
LR = 8e-3                   # peak AdamW learning rate (warm-up, then cosine decay); full 8-minute runs:
                            # 1.480 nats/char at 8e-3, 1.498 at 1.2e-2, 1.496 at 2e-2 (forget bias 1:
                            # 1.605 at 8e-3, 1.728 at 3e-3; README, 04)
WEIGHT_DECAY = 0.0          # AdamW decoupled weight decay
CLIP = 1.0                  # gradient-norm clipping (exploding gradients: THEORY.md)
EPOCHS = 20                 # reports (validation, samples, checkpoint) during training
CHUNKS_PER_EPOCH = 150      # training chunks between two reports (an "epoch" is not a full pass here)
MAX_MINUTES = 8.0           # training time budget: the schedule anneals to it, then training ends (0 = none)
PATIENCE = 4                # stop after this many reports without a better validation loss
MAX_TRAIN_CHARS = 0         # use only the first N training characters (0 = all)
VAL_CHARS_PER_EPOCH = 150_000  # validate on this prefix at each report (the final figure uses all of it)
NGRAM_ORDER = 5             # the baseline: an add-k smoothed character n-gram ...
NGRAM_K = 0.1               # ... with this k
PROMPT = "ROMEO:\n"         # what the samples continue
SAMPLE_LEN = 200            # characters per sample at each report
TEMPERATURES = (0.5, 0.8, 1.0)  # sampling temperatures shown at the end

# On a CUDA device these replace the defaults above (a --NAME=VALUE on the command line still wins):
# a wider, deeper, more regularised model (4 M characters are seen many times in 8 minutes on a GPU).
GPU_SETTINGS = dict(EMBED_DIM=128, HIDDEN_SIZE=1024, NUM_LAYERS=3, DROPOUT=0.3, BATCH_SIZE=128, SEQ_LEN=256,
                    LR=2e-3, WEIGHT_DECAY=0.05, CHUNKS_PER_EPOCH=120, EPOCHS=40, PATIENCE=6,
                    VAL_CHARS_PER_EPOCH=0, MAX_MINUTES=8.0)
QUICK_SETTINGS = dict(MAX_TRAIN_CHARS=200_000, HIDDEN_SIZE=64, EMBED_DIM=16, BATCH_SIZE=16, SEQ_LEN=64,
                      EPOCHS=2, CHUNKS_PER_EPOCH=15, VAL_CHARS_PER_EPOCH=10_000, SAMPLE_LEN=60, MAX_MINUTES=0.3)
CHOICES = {"IMPL": ("torch", "scratch")}


def build_model(vocab_size, device):
    """Embedding -> LSTM -> linear. Each LSTM step computes four gates from x_t and h_{t-1}:
    input i (L1), forget f (L2), candidate g (L3), output o (L4); the cell state c_t = f*c + i*g (L5)
    is the long-term memory (which speaker is talking, whether a line is verse), h_t = o*tanh(c_t) (L6)
    what the softmax sees. FORGET_BIAS sets where f starts: sigmoid(0) = 0.5, sigmoid(1) = 0.73."""
    model = CharRNN(vocab_size, cell="lstm", impl=IMPL, embed_dim=EMBED_DIM, hidden_size=HIDDEN_SIZE,
                    num_layers=NUM_LAYERS, dropout=DROPOUT, forget_bias=FORGET_BIAS, device=device).to(device)
    print(f"model: {NUM_LAYERS}x{HIDDEN_SIZE} LSTM ({IMPL}), {count_parameters(model):,} parameters "
          f"(4 gate blocks per layer)")
    return model


def main():
    t0 = time.time()
    defaults = {k: globals()[k] for k in GPU_SETTINGS}
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    cfg.update(apply_device_settings(globals(), defaults, GPU_SETTINGS, device, quick=cfg["QUICK"]))
    out = output_dir(__file__)
    # data + baseline -> build_model -> TBPTT training with samples -> whole-validation score -> report
    train_char_lm(cfg, build_model, device, out, t0, title=f"{NUM_LAYERS}x{HIDDEN_SIZE} LSTM")


if __name__ == "__main__":
    run_main(main)

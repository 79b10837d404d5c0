"""Chinese word segmentation with a bidirectional GRU tagger (and a CRF on top): one label per character.

The LSTM's twin (segment_lstm.py): same data, inputs, CRF, training and yardsticks (segment_model.py); only
the cell differs: a GRU (THEORY.md (G1)-(G4)) has two gates and no cell state, so 3/4 of the LSTM's
recurrent parameters. Theory: §5 packing, §6 bidirectional, §15 the CRF (forward algorithm, Viterbi).
Run: python 05_seq_classify/segment_gru.py [--quick] [--CRF=false] [--BIGRAMS=false]
     python 05_seq_classify/segment_gru.py --LOAD=outputs/05_seq_classify/segment_gru/model.pt
                                           --TEXT="今天天气很好，我们去公园散步。"   (or --TEXT=file.txt)

中文：用双向 GRU 做中文分词，是 segment_lstm.py 的孪生脚本：数据、输入、CRF、训练和对照基线都相同（都在
segment_model.py 里），只换了循环单元：GRU（THEORY.md (G1)-(G4)）只有两个门，没有细胞状态，循环部分的参数是
LSTM 的 3/4。把它的结果和 LSTM 版放在一起看。
运行：`python 05_seq_classify/segment_gru.py`；`--quick` 快速跑通；训练后加
`--LOAD=<model.pt> --TEXT="一句话"` 给你自己的句子分词（`--TEXT=文件.txt` 给整个文件分词）。
理论：第 5 节（打包）、第 6 节（双向）、第 15 节（CRF）。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import torch

import segment_model as sm
from utils.model_utils import count_parameters
from utils.script_utils import (
    AtLeast,
    Fraction,
    OneOf,
    Positive,
    Seed,
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
SEED: Seed = 0                        # weights, dropout and batch order
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train
IMPL: OneOf("torch", "scratch") = "torch"  # torch: nn.GRU; scratch: 01_basic_theory's ScratchGRU
CRF: bool = True                      # a linear-chain CRF on the tag scores (False: each character alone)
BIGRAMS: bool = True                  # also feed each character's left and right character pairs
EMBED_DIM: AtLeast(1) = 64            # character vector size
BIGRAM_DIM: AtLeast(1) = 32           # character-pair vector size (used when BIGRAMS)
MIN_BIGRAM_FREQ: AtLeast(1) = 5       # training occurrences a pair needs to get its own vector
HIDDEN_SIZE: AtLeast(1) = 128         # GRU units per direction (h only: no separate cell state)
NUM_LAYERS: AtLeast(1) = 1            # stacked BiGRU layers
DROPOUT: Fraction = 0.2               # on the input vectors and on the BiGRU's outputs
MAX_LEN: AtLeast(8) = 200             # a longer sentence is cut at a word boundary (training and scoring)
BATCH_SIZE: AtLeast(1) = 64           # sentences per batch (batches hold sentences of similar length)
LR: Positive = 3e-3                   # AdamW learning rate
WEIGHT_DECAY: AtLeast(0.0) = 0.0      # AdamW decoupled weight decay
CLIP: AtLeast(0.0) = 5.0              # gradient-norm clipping, 0 = off (THEORY.md §9)
EPOCHS: AtLeast(1) = 200              # reports (validation, checkpoint) at most; the time budget ends sooner
BATCHES_PER_EPOCH: AtLeast(1) = 200   # training batches between two reports
PATIENCE: AtLeast(1) = 5              # stop after this many reports without a better validation F1
MAX_MINUTES: AtLeast(0.0) = 8.0       # training time budget in minutes (0 = none)
BASELINES: bool = True                # max matching, a feature CRF and jieba on the same test sentences
CRF_ITERATIONS: AtLeast(1) = 100      # L-BFGS iterations of the feature CRF baseline
THREADS: AtLeast(0) = 0               # CPU threads for torch (0 = torch's default, one per core; 1 when
                                      # another job shares the cores)
LIMIT: AtLeast(0) = 0                 # keep only the first LIMIT training lines (0 = all; smoke tests)
TEXT: str = ""                        # a sentence to segment after training, or a UTF-8 .txt file
LOAD: str = ""                        # a saved model.pt: skip training, only segment TEXT

GPU_SETTINGS = dict(HIDDEN_SIZE=(128, 256), NUM_LAYERS=(1, 2), BATCH_SIZE=(64, 128))
QUICK_SETTINGS = dict(LIMIT=300, EPOCHS=2, BATCHES_PER_EPOCH=4, HIDDEN_SIZE=16, EMBED_DIM=16, BIGRAM_DIM=8,
                      MAX_MINUTES=0.0, CRF_ITERATIONS=5)
CELL = "gru"


def build_model(n_chars: int, n_bigrams: int, device) -> sm.SegmentTagger:
    """Characters (+ pairs) -> BiGRU -> 4 tag scores (-> CRF). Each step, in each direction, the 重置门 reset
    gate r (G1) decides how much of h_{t-1} enters the 候选值 candidate n (G3), and the 更新门 update gate z
    (G2) mixes n with h_{t-1} into the 隐藏状态 hidden state h_t (G4): left to right, h knows the word so
    far; right to left, what comes next."""
    model = sm.SegmentTagger(n_chars, n_bigrams, cell=CELL, impl=IMPL, embed_dim=EMBED_DIM,
                             bigram_dim=BIGRAM_DIM if BIGRAMS else 0, hidden_size=HIDDEN_SIZE,
                             num_layers=NUM_LAYERS, dropout=DROPOUT, crf=CRF, device=device).to(device)
    print(f"model: BiGRU {NUM_LAYERS}x{HIDDEN_SIZE} ({IMPL}), {'CRF' if CRF else 'no CRF'}, "
          f"{'bigrams' if BIGRAMS else 'characters only'}: {count_parameters(model):,} parameters")
    return model


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    cfg.update(apply_gpu_settings(globals(), GPU_SETTINGS, device, quick=cfg["QUICK"]))
    if LOAD:  # segment with a saved model: nothing is trained
        sm.segment_user_text(TEXT, LOAD, device, cell=CELL, script=pathlib.Path(__file__).name)
        return
    if TEXT:  # refuse an unusable text now, not after minutes of training
        sm.read_user_text(TEXT)
    out = output_dir(__file__, quick=cfg["QUICK"])
    data = sm.prepare_segmentation_data(max_len=MAX_LEN, batch_size=BATCH_SIZE,
                                        min_bigram_freq=MIN_BIGRAM_FREQ, bigrams_on=BIGRAMS, limit=LIMIT,
                                        seed=SEED)
    model = build_model(len(data["char_vocab"]), len(data["bigram_vocab"] or ()), device)
    progress = ProgressLog(out, hparams=cfg, metrics=["val_f1"],
                           title="BiGRU 分词：词 F1 / BiGRU segmenter: word F1")
    result = sm.train_segmenter(model, data, epochs=EPOCHS, batches_per_epoch=BATCHES_PER_EPOCH, lr=LR,
                                weight_decay=WEIGHT_DECAY, clip=CLIP, patience=PATIENCE,
                                max_minutes=MAX_MINUTES, checkpoint_path=out / "model.pt", progress=progress)
    sm.report_segmentation(model, data, result, out, name="BiGRU" + ("-CRF" if CRF else ""), config=cfg,
                        baselines=BASELINES, crf_iterations=CRF_ITERATIONS, start_time=t0, device=device)
    if TEXT:
        sm.segment_user_text(TEXT, out / "model.pt", device, cell=CELL, script=pathlib.Path(__file__).name)


if __name__ == "__main__":
    run_main(main)

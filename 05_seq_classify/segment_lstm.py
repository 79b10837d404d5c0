"""Chinese word segmentation with a bidirectional LSTM tagger (and a CRF on top): one label per character.

Teaches: sequence labelling (a B/M/E/S tag for every character), character and character-bigram inputs, a
BiLSTM over packed sentences (THEORY.md §5, §6), a linear-chain CRF written by hand (§15: the forward
algorithm and Viterbi), word-level precision/recall/F1 and recall on unseen words, against forward maximum
matching, a feature CRF and jieba on the same test sentences, with a paired bootstrap test.
Run: python 05_seq_classify/segment_lstm.py [--quick] [--CRF=false] [--BIGRAMS=false]
     python 05_seq_classify/segment_lstm.py --LOAD=outputs/05_seq_classify/segment_lstm/model.pt
                                            --TEXT="今天天气很好，我们去公园散步。"   (or --TEXT=file.txt)

中文：用双向 LSTM 做中文分词：给每个字打一个标签（B 词首、M 词中、E 词尾、S 单字词），这是“每一步一个标签”的序
列标注。输入是字向量加上字的双字组合（bigram）向量；双向 LSTM 读打包的句子（THEORY.md 第 5、6 节）；上面可以再
加一层亲手写的线性链 CRF（第 15 节：前向算法和维特比解码）。评价按词算精确率、召回率和 F1，另算训练集里没见过
的词的召回率；同一批测试句子上并排给出正向最大匹配、特征 CRF 和 jieba 的结果，并用配对自助法检验差别。
运行：`python 05_seq_classify/segment_lstm.py`；`--quick` 快速跑通；训练后加 `--LOAD=<model.pt> --TEXT="一句话
"`给你自己的句子分词（`--TEXT=文件.txt` 给整个文件分词）。GRU 版是 segment_gru.py。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import torch

import segment_model as sm
from utils.model_utils import count_parameters, init_forget_bias
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
IMPL: OneOf("torch", "scratch") = "torch"  # torch: nn.LSTM; scratch: 01_basic_theory's ScratchLSTM
CRF: bool = True                      # a linear-chain CRF on the tag scores (False: each character alone)
BIGRAMS: bool = True                  # also feed each character's left and right character pairs
EMBED_DIM: AtLeast(1) = 64            # character vector size
BIGRAM_DIM: AtLeast(1) = 32           # character-pair vector size (used when BIGRAMS)
MIN_BIGRAM_FREQ: AtLeast(1) = 5       # training occurrences a pair needs to get its own vector
HIDDEN_SIZE: AtLeast(1) = 128         # LSTM units per direction (h and c each this size)
NUM_LAYERS: AtLeast(1) = 1            # stacked BiLSTM layers
DROPOUT: Fraction = 0.2               # on the input vectors and on the BiLSTM's outputs
FORGET_BIAS: AtLeast(0.0) = 1.0       # forget-gate bias at init (THEORY.md §4.4)
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
CELL = "lstm"


def build_model(n_chars: int, n_bigrams: int, device) -> sm.SegmentTagger:
    """Characters (+ pairs) -> BiLSTM -> 4 tag scores (-> CRF). Each step, in each direction, the LSTM's
    输入门 input gate i (L1), 遗忘门 forget gate f (L2) and 输出门 output gate o (L4) decide how the
    候选值 candidate g (L3) enters the 细胞状态 cell state c (L5) and what the 隐藏状态 hidden state h (L6)
    shows: reading left to right, h knows the word so far; right to left, what comes next."""
    model = sm.SegmentTagger(n_chars, n_bigrams, cell=CELL, impl=IMPL, embed_dim=EMBED_DIM,
                             bigram_dim=BIGRAM_DIM if BIGRAMS else 0, hidden_size=HIDDEN_SIZE,
                             num_layers=NUM_LAYERS, dropout=DROPOUT, crf=CRF, device=device).to(device)
    init_forget_bias(model.rnn, FORGET_BIAS)
    print(f"model: BiLSTM {NUM_LAYERS}x{HIDDEN_SIZE} ({IMPL}), {'CRF' if CRF else 'no CRF'}, "
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
                           title="BiLSTM 分词：词 F1 / BiLSTM segmenter: word F1")
    result = sm.train_segmenter(model, data, epochs=EPOCHS, batches_per_epoch=BATCHES_PER_EPOCH, lr=LR,
                                weight_decay=WEIGHT_DECAY, clip=CLIP, patience=PATIENCE,
                                max_minutes=MAX_MINUTES, checkpoint_path=out / "model.pt", progress=progress)
    sm.report_segmentation(model, data, result, out, name="BiLSTM" + ("-CRF" if CRF else ""), config=cfg,
                        baselines=BASELINES, crf_iterations=CRF_ITERATIONS, start_time=t0, device=device)
    if TEXT:
        sm.segment_user_text(TEXT, out / "model.pt", device, cell=CELL, script=pathlib.Path(__file__).name)


if __name__ == "__main__":
    run_main(main)

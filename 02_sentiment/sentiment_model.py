"""The sentiment case's own machinery: reviews -> length-bucketed batches -> (bi)LSTM/GRU classifier.

Read in this order (the data flows top to bottom):
1. encoding and batching: `encode_reviews`, `LengthBucketSampler`, `collate_reviews`,
   `prepare_sentiment_data`;
2. the model: `SentimentClassifier.forward` (packing and masked pooling, THEORY.md §5) and
   `SentimentEnsemble` (a seed ensemble, §8);
3. training: `sentiment_step` (one batch for utils' `fit`), `train_sentiment_model`,
   `train_sentiment_ensemble`;
4. saving and loading a model with its vocabulary; testing, reporting, hand-written reviews;
5. `tfidf_baseline`, the bag-of-words yardstick of model_comparison.py;
6. `NBSVM` and `nbsvm_baseline` (Wang & Manning 2012), the strongest classic yardstick on these snippets, and
   averaging it with an RNN ensemble (`average_probabilities`, the weight from `choose_weight` on validation).
The raw reviews and the fixed split come from utils.data_utils (load_rotten_tomatoes, load_imdb,
sentiment_split).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from utils.data_utils import SENTIMENT_LABELS, Vocab, han_share, pad_batch, sentiment_split, tokenize
from utils.model_utils import (
    ProgressLog,
    check_checkpoint,
    checkpoint_tag,
    confusion_matrix,
    count_parameters,
    ensemble_member_seeds,
    evaluate,
    fit,
    init_forget_bias,
    load_checkpoint,
    log_mean_probability,
    make_rnn,
    save_checkpoint,
)
from utils.script_utils import UserError, print_table, set_seed

SENTIMENT_CASE = "02_sentiment"  # the tag in this case's checkpoints (model_utils.checkpoint_tag)

# Hand-written reviews every sentiment script classifies after training: the negation and the
# "but" sentences are where a bag of words fails and a recurrent model can read the word order.
SENTIMENT_EXAMPLES = (
    "A moving, beautifully acted film with a script full of surprises.",
    "Dull, predictable and far too long: I checked my watch every ten minutes.",
    "Not terrible, actually great.",
    "I expected to love it, but it was a mess.",
    "Not a single good performance in the whole movie.",
)
# The same kinds of sentence for a model trained on the Chinese reviews (products, hotels, books): praise,
# a complaint, a double negation ("not bad to look at, actually very good"), a "but", and a plain negative.
SENTIMENT_EXAMPLES_ZH = (
    "房间干净，服务也很周到，下次还会再来。",
    "质量太差了，用了两天就坏了，再也不买了。",
    "不难看，其实挺好看的。",
    "本来很期待，但是内容太让人失望了。",
    "没有一点值得推荐的地方。",
)


def sentiment_examples(vocab: Vocab) -> tuple[str, ...]:
    """The hand-written examples in the language the model was trained on: Chinese when most of its
    vocabulary is Han characters, English otherwise (a --CSV model in another language gets the English ones)."""
    return SENTIMENT_EXAMPLES_ZH if han_share(vocab.to_list()[2:]) > 0.5 else SENTIMENT_EXAMPLES


# ----------------------------------------------------------------------------------------------------
# 1. Encoding and batching: text -> id lists -> batches of similar length, padded, with their lengths
# ----------------------------------------------------------------------------------------------------
def encode_reviews(texts: Sequence[str], vocab: Vocab, max_len: int) -> tuple[list[list[int]], int]:
    """Tokenise, map to ids, truncate to max_len tokens -> (id lists, how many were truncated).
    An empty review becomes [<unk>] so that every sequence has length >= 1 (packing needs it)."""
    encoded, cut = [], 0
    for text in texts:
        ids = vocab.encode(tokenize(text)) or [1]
        cut += len(ids) > max_len
        encoded.append(ids[:max_len])
    return encoded, cut


def check_review(text: str, vocab: Vocab, max_len: int) -> list[int]:
    """A learner's review -> ids, refusing an empty one, warning when most of its tokens are unknown to the
    model (an English review given to a model trained on Chinese, or the other way round), noting truncation."""
    tokens = tokenize(text)
    if not tokens:
        raise UserError("the review is empty (no words found); pass some text, e.g. --REVIEW=\"a moving, "
                        "funny film\" or --REVIEW=\"这部电影太好看了\".")
    ids = vocab.encode(tokens)
    unknown = sum(i == 1 for i in ids)
    if unknown > len(ids) / 2:   # e.g. an English review given to a model trained on Chinese, or the reverse
        language = vocab_language(vocab)
        learned = f"{language} reviews" if language else "its training file"
        basis = "nothing but the review's length" if unknown == len(ids) else "the few known ones"
        print(f"warning: {unknown} of the {len(ids)} tokens of {shorten(text)!r} are unknown to this model's "
              f"vocabulary ({len(vocab):,} tokens, learned from {learned}): its verdict rests on {basis} and means "
              f"little. Give it a review in {language or 'that language'}, or train on reviews in the review's "
              f"language (--DATASET, --CSV).")
    if len(ids) > max_len:
        print(f"notice: the review has {len(ids)} tokens; only the first MAX_LEN={max_len} are used.")
    return ids[:max_len]


def vocab_language(vocab: Vocab) -> str | None:
    """'Chinese' for a vocabulary of mostly Han characters, 'English' for one of mostly a-z words (the packaged
    sets), None for another language (a --CSV model)."""
    tokens = vocab.to_list()[2:]
    if han_share(tokens) > 0.5:
        return "Chinese"
    latin = sum(t.replace("'", "").isascii() and t.replace("'",
                                                           "").isalnum() for t in tokens) / max(len(tokens), 1)
    return "English" if latin > 0.5 else None


def shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of reviews of similar length, so little of each batch is padding (much faster on CPU).

    Training: shuffle, cut into pools of 50 batches, sort each pool by length, batch it, then shuffle
    the batches: random enough for SGD, yet each batch is nearly pad-free. Evaluation: sorted order.
    Yields lists of dataset indices, one list per batch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0):
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)  # its own generator: the batch order is SEED's

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=self.lengths.__getitem__)
            yield from (order[i:i + bs] for i in range(0, n, bs))
            return
        order = torch.randperm(n, generator=self.generator).tolist()
        pool = bs * 50
        batches = []
        for s in range(0, n, pool):
            chunk = sorted(order[s:s + pool], key=self.lengths.__getitem__)  # a pool, shortest first
            batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        for j in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[j]

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def collate_reviews(batch: Sequence[tuple]):
    """[(ids, label), ...] -> ids: (B, T) long padded with 0, lengths: (B,) long on CPU, labels: (B,) long.
    T is the batch's longest review: with length buckets, hardly more than the shortest. Items with a third
    field (a cross-fitting fold, NB_CHANNEL's training reviews) add folds: (B,) long."""
    ids, lengths = pad_batch([b[0] for b in batch])
    out = (ids, lengths, torch.tensor([b[1] for b in batch], dtype=torch.long))
    return out + (torch.tensor([b[2] for b in batch], dtype=torch.long),) if len(batch[0]) > 2 else out


def sentiment_loader(encoded: list[list[int]], labels: Sequence[int], batch_size: int, *,
                     shuffle: bool, seed: int = 0,
                     folds: Sequence[int] | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader of length-bucketed, padded batches (see LengthBucketSampler, collate_reviews); `folds`
    (one per review) ride along for a cross-fitted NB channel."""
    data = list(zip(encoded, labels) if folds is None else zip(encoded, labels, folds))
    sampler = LengthBucketSampler([len(e) for e in encoded], batch_size, shuffle, seed)
    return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collate_reviews)


def prepare_sentiment_data(dataset: str, *, min_freq: int, max_vocab: int, max_len: int, batch_size: int,
                           limit: int = 0, seed: int = 0, csv: str = "") -> dict:
    """The fixed split (of `dataset`, or of the learner's `csv` file) -> vocabulary (built on train only)
    -> length-bucketed loaders.

    limit > 0 keeps only the first `limit` training reviews (and limit//4 of validation and test): --quick.
    Returns {'vocab', 'texts': {part: (texts, labels)}, 'loaders': {part: DataLoader}, 'sizes'}.
    """
    split = sentiment_split(dataset, csv=csv)
    dataset = dataset_name(dataset, csv)
    if limit > 0:
        split = {p: (t[:n], y[:n]) for (p, (t, y)), n in zip(split.items(), (limit, limit // 4, limit // 4))}
    vocab = Vocab.build((tokenize(t) for t in split["train"][0]), min_freq=min_freq,
                        max_size=max_vocab or None)
    loaders, truncated = {}, 0
    for part, (texts, labels) in split.items():
        encoded, cut = encode_reviews(texts, vocab, max_len)
        truncated += cut
        loaders[part] = sentiment_loader(encoded, labels, batch_size, shuffle=part == "train", seed=seed)
    total = sum(len(t) for t, _ in split.values())
    print(f"{dataset}: {', '.join(f'{p} {len(t)}' for p, (t, _) in split.items())} reviews; vocabulary "
          f"{len(vocab)} tokens (min_freq={min_freq}); {truncated} of {total} reviews truncated to "
          f"MAX_LEN={max_len} tokens.")
    return {"vocab": vocab, "texts": split, "loaders": loaders,
            "sizes": {p: len(t) for p, (t, _) in split.items()},
            "max_len": max_len, "batch_size": batch_size, "seed": seed}


def dataset_name(dataset: str, csv: str = "") -> str:
    """What a run's tables, checkpoint and metrics.json call its data: the DATASET, or 'csv:<file name>'."""
    return f"csv:{Path(csv).name}" if csv else dataset


def dataset_folder(dataset: str, csv: str = "") -> str | None:
    """The subfolder of outputs/02_sentiment/<script>/ a run writes to: none for Rotten Tomatoes (the default,
    which other scripts read), else the dataset's name or csv_<file stem>, so runs on other data never
    replace the default run's model and metrics."""
    if csv:
        return "csv_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(csv).stem)
    return None if dataset == "rotten_tomatoes" else dataset


# ----------------------------------------------------------------------------------------------------
# 2. The model: embedding -> (bi)LSTM/GRU over packed sequences -> masked pooling -> linear
# ----------------------------------------------------------------------------------------------------
class SentimentClassifier(nn.Module):
    """Embedding -> (bi)LSTM or (bi)GRU over packed sequences -> pooled review vector -> class logits.

    The review vector concatenates three summaries of the outputs (D = hidden * directions):
    the final state of each direction (what the cell carried to the end), and the max and mean over
    the *valid* steps only (padding must not vote). Max pooling lets one strong phrase ("masterpiece")
    decide even in a long review, where the final state may have forgotten it.
    word_channels > 0 appends that many fixed numbers per word to its learned vector (the buffer
    `word_features`, (vocab, word_channels), saved with the weights, never trained): NB_CHANNEL in the twins
    fills it with each word's Naive-Bayes log-count ratio (§6 of this file).
    `hparams` holds every constructor argument, so a checkpoint can rebuild the model.
    """

    def __init__(self, vocab_size: int, *, cell: str, impl: str = "torch", embed_dim: int = 128,
                 hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.5, embed_dropout: float = 0.3, word_channels: int = 0,
                 num_classes: int = 2, device: torch.device | str = "cpu"):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, cell=cell, impl=impl, embed_dim=embed_dim,
                            hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                            dropout=dropout, embed_dropout=embed_dropout, word_channels=word_channels,
                            num_classes=num_classes)
        self.bidirectional, self.word_channels = bidirectional, word_channels
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)  # <pad> = 0 stays a zero vector
        self.embed_dropout = nn.Dropout(embed_dropout)
        if word_channels:  # only then: a model without it keeps the state_dict earlier checkpoints have
            self.register_buffer("word_features", torch.zeros(vocab_size, word_channels))
        self.fold_features = None  # (folds, vocab, channels) for training reviews only: set_word_features
        self.rnn = make_rnn(cell, impl, embed_dim + word_channels, hidden_size, num_layers, dropout=dropout,
                            bidirectional=bidirectional, device=device)  # nn.LSTM/GRU or the scratch cell
        if cell.lower() == "lstm":
            init_forget_bias(self.rnn, 1.0)  # f starts near sigmoid(1): remember by default (THEORY.md §4.4)
        d = hidden_size * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(3 * d, num_classes)

    def set_word_features(self, features: torch.Tensor, fold_features: torch.Tensor | None = None) -> None:
        """features (vocab, channels): what every review sees at validation, test and after loading (saved
        with the weights). fold_features (folds, vocab, channels): what a *training* review of fold k sees
        while training, computed without fold k (cross-fitting), so a rare word's number never encodes the
        label of the very review it is read in. Not saved: only training needs it."""
        self.word_features.copy_(features)
        self.fold_features = None if fold_features is None else fold_features.to(self.word_features.device)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor,
                folds: torch.Tensor | None = None) -> torch.Tensor:
        """ids: (B, T) long, 0 = <pad>; lengths: (B,) long, each review's true length >= 1; folds: (B,) long,
        a training review's cross-fitting fold (or None) ->  logits: (B, num_classes).
        E = embed_dim, H = hidden_size, D = H * directions."""
        T = ids.shape[1]
        x = self.embed_dropout(self.embedding(ids))                            # (B, T, E)
        if self.word_channels:  # the fixed per-word numbers, not dropped out: (B, T, E + word_channels)
            cross_fitted = folds is not None and self.fold_features is not None and self.training
            # fold k's own table
            feats = (self.fold_features[folds.to(ids.device)[:, None], ids] if cross_fitted
                     else self.word_features[ids])
            x = torch.cat([x, feats], dim=2)
        # Packing (THEORY.md §5): the cell runs each review for exactly its own length, never over <pad>,
        # so the final state is taken at the review's last word, not after a tail of pads.
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        # each step, in each direction (§6): LSTM gates i (L1), f (L2), candidate g (L3), gate o (L4),
        # c_t = f*c + i*g (L5), h_t = o*tanh(c_t) (L6); GRU r (G1), z (G2), candidate n (G3), h_t (G4)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state                  # LSTM: (h_n, c_n);
                                                                               # (layers*dirs, B, H)
        # (B, T, D), 0 past a length
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        # the top layer's final states: forward after the last word, backward after the first
        # (it reads right to left)
        last = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]  # (B, D)
        # Masked pooling (THEORY.md §5.1): mask[b, t] = t < lengths[b];
        # padded steps must not win the max or dilute the mean
        mask = (torch.arange(T, device=ids.device)[None, :] < lengths.to(ids.device)[:, None])[...,
                                                                                               None]  # (B, T, 1)
        peak = out.masked_fill(~mask, float("-inf")).max(dim=1).values         # (P2) masked max: (B, D)
        # (P1) masked mean: (B, D)
        mean = (out * mask).sum(dim=1) / lengths.to(ids.device)[:, None].clamp_min(1)
        return self.head(self.dropout(torch.cat([last, peak, mean], dim=1)))   # (B, 3D) -> (B, classes)


class SentimentEnsemble(nn.Module):
    """A seed ensemble (THEORY.md §8): several SentimentClassifiers of the same shape, trained from different
    seeds on the same data; the prediction is the mean of their class probabilities.

    With ~10k short reviews, one network's test accuracy moves by about a point from seed to seed: each
    run memorises a different handful of rare words. Averaging cancels much of that variance (a bag of
    words with logistic regression has none to cancel: its optimum is unique). `forward` returns
    log(mean probability), so the ensemble stands wherever logits are expected: softmax gives the mean
    probability back, argmax the ensemble's vote, and cross_entropy the ensemble's loss.
    """

    def __init__(self, members: Sequence[SentimentClassifier]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.hparams = dict(members[0].hparams)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T), lengths: (B,) -> log mean probability over the M members: (B, classes)."""
        return log_mean_probability([m(ids, lengths) for m in self.members])


# ----------------------------------------------------------------------------------------------------
# 3. Training: one batch for utils' `fit`, AdamW with early stopping, and the seed ensemble
# ----------------------------------------------------------------------------------------------------
def sentiment_step(device: torch.device | str) -> Callable:
    """The `step` for `fit`/`evaluate`: a (ids, lengths, labels) batch -> (loss, predictions, labels)."""
    def step(model, batch):
        ids, lengths, labels, *folds = batch         # (B, T), (B,), (B,) [, (B,) folds: cross-fitted NB
                                                     # channel]
        labels = labels.to(device)
        logits = model(ids.to(device), lengths, *folds)  # (B, 2); lengths stay on CPU for packing
        return nn.functional.cross_entropy(logits, labels), logits.argmax(dim=1), labels
    return step


def binary_metrics(preds: torch.Tensor, targets: torch.Tensor) -> dict:
    """Accuracy, and precision/recall/F1 of the positive class (label 1).  preds, targets: (N,) ints."""
    preds, targets = preds.long().cpu(), targets.long().cpu()
    tp = int(((preds == 1) & (targets == 1)).sum())
    fp = int(((preds == 1) & (targets == 0)).sum())
    fn = int(((preds == 0) & (targets == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((preds == targets).float().mean()) if len(targets) else 0.0,
            "precision": precision, "recall": recall, "f1": f1}


def train_sentiment_model(model: nn.Module, data: dict, device: torch.device | str, *, epochs: int,
                          lr: float, weight_decay: float, patience: int, clip: float,
                          checkpoint_path: Path | None = None, checkpoint_extra: dict | None = None,
                          progress: ProgressLog | None = None) -> dict:
    """AdamW + `fit`, keeping the epoch with the best validation accuracy (early stopping on it), the
    learning rate halved when it stalls, gradients clipped to norm `clip` (THEORY.md §9); `progress`
    (a ProgressLog) watches every epoch. Returns fit's result plus 'train_time_s'."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    t0 = time.time()
    result = fit(model, data["loaders"]["train"], data["loaders"]["val"], sentiment_step(device),
                 epochs=epochs, optimizer=optimizer, metrics_fn=binary_metrics, monitor="accuracy",
                 mode="max", patience=patience, clip=clip, scheduler=scheduler,
                 checkpoint_path=checkpoint_path, checkpoint_extra=checkpoint_extra, progress=progress)
    result["train_time_s"] = round(time.time() - t0, 2)
    return result


def train_sentiment_ensemble(build_model: Callable, data: dict, device: torch.device | str, *, members: int,
                             seed: int, checkpoint_path: Path, checkpoint_extra: Callable,
                             progress: ProgressLog | None = None, **train_args):
    """Train `members` models from `build_model(vocab_size, device)`, member k from seed seed*members + k
    (so two SEEDs never share a member), each with `train_sentiment_model` (early stopping on its own
    validation accuracy). One member is returned as it is; several as a `SentimentEnsemble`.
    The model is saved once at the end, atomically: checkpoint_extra(model) -> what goes beside the weights.
    `progress` (a ProgressLog) watches each member as a run of its own ("member 2 (seed 7)").
    Returns (model, result): result has each member's fit result under 'members' and the total train time."""
    models, fits = [], []
    for k, member_seed in enumerate(ensemble_member_seeds(seed, members)):
        if members > 1:
            tqdm.write(f"--- ensemble member {k + 1} of {members} (seed {member_seed}) ---")
        set_seed(member_seed)  # the member's initial weights and dropout masks; batch order is the loaders'
        model = build_model(len(data["vocab"]), device)
        if k == 0:
            hp = model.hparams
            tqdm.write(f"{hp['cell'].upper()} classifier: {count_parameters(model):,} parameters ({hp['impl']})"
                       + (f"; {members} of them are trained and averaged" if members > 1 else ""))
        watch = progress.for_run(f"member {k + 1} (seed {member_seed})") if progress and members > 1 else progress
        fits.append(train_sentiment_model(model, data, device, progress=watch, **train_args))
        models.append(model)
    model = models[0] if members == 1 else SentimentEnsemble(models).to(device)
    save_checkpoint({"state_dict": model.state_dict(), **checkpoint_extra(model)}, checkpoint_path)
    return model, {"members": fits, "train_time_s": round(sum(f["train_time_s"] for f in fits), 2)}


# ----------------------------------------------------------------------------------------------------
# 4. Saving and loading (the vocabulary travels with the weights), testing, reporting
# ----------------------------------------------------------------------------------------------------
def sentiment_checkpoint_extra(model: nn.Module, vocab: Vocab, max_len: int, dataset: str) -> dict:
    """What is stored beside the weights: what the file holds (case and cell), enough to rebuild the model
    (and how many members an ensemble has) and to re-encode new text."""
    members = len(model.members) if isinstance(model, SentimentEnsemble) else 1
    return {**checkpoint_tag(SENTIMENT_CASE, model.hparams["cell"]),
            "hparams": dict(model.hparams), "members": members, "vocab": vocab.to_list(), "max_len": max_len,
            "dataset": dataset}


def load_sentiment_model(path: Path | str, device: torch.device | str = "cpu", cell: str | None = None,
                         script: str = ""):
    """A saved model.pt -> (model on device, Vocab, checkpoint dict). A file of another case, of the other
    cell than `cell` ('lstm'/'gru', None: either), or one that does not fit together is refused in one line
    (`script`, e.g. "sentiment_lstm.py", names who refuses it)."""
    expected = f"a {SENTIMENT_CASE} {cell.upper() if cell else 'model'} checkpoint"
    ckpt = load_checkpoint(path, map_location=device, expected=expected)
    check_checkpoint(ckpt, path, case=SENTIMENT_CASE, cell=cell, needs=("state_dict", "hparams", "vocab"),
                     script=script)
    try:
        vocab = Vocab.from_list(ckpt["vocab"])
        members = int(ckpt.get("members", 1))
        key = "members.0.embedding.weight" if members > 1 else "embedding.weight"
        rows = ckpt["state_dict"].get(key, torch.empty(0, 0)).shape[0]
        if rows != len(vocab) or ckpt["hparams"].get("vocab_size") != len(vocab):
            raise UserError(f"checkpoint {path} does not match its vocabulary: the embedding has {rows} rows "
                            f"but the vocabulary has {len(vocab)} tokens; retrain the model to get a consistent file.")
        model = SentimentClassifier(**ckpt["hparams"], device=device)
        if members > 1:
            model = SentimentEnsemble([model] + [SentimentClassifier(**ckpt["hparams"], device=device)
                                                 for _ in range(members - 1)])
        model = model.to(device)
        model.load_state_dict(ckpt["state_dict"])
    except UserError:
        raise
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as e:  # a damaged or edited file
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
        raise UserError(f"the weights in {path} do not fit the model its hyperparameters describe ({first}); "
                        f"retrain the model.") from None
    return model, vocab, ckpt


def predict_proba(model: nn.Module, encoded: list[list[int]], device: torch.device | str,
                  batch_size: int = 256) -> list[float]:
    """P(positive) for each already-encoded review (id lists of length >= 1), in the given order.

    In batches of `batch_size` reviews of similar length (little padding), so memory stays bounded: a
    whole IMDB split as one batch would be 25k x 400 tokens x EMBED_DIM floats for the embeddings alone."""
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    probs = [0.0] * len(encoded)
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            ids, lengths = pad_batch([encoded[i] for i in idx])           # (b, longest in the batch), (b,)
            p = torch.softmax(model(ids.to(device), lengths), dim=1)[:, 1].tolist()
            for i, value in zip(idx, p):                                  # back to the caller's order
                probs[i] = value
    return probs


def test_sentiment_model(model: nn.Module, loader, device: torch.device | str) -> dict:
    """Test loss, accuracy, precision/recall/F1, confusion matrix and inference speed (reviews/s)."""
    t0 = time.time()
    res = evaluate(model, loader, sentiment_step(device), binary_metrics)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = max(time.time() - t0, 1e-9)
    metrics = {k: v for k, v in res.items() if k not in ("predictions", "targets")}
    # [true][pred]
    metrics["confusion_matrix"] = confusion_matrix(res["targets"], res["predictions"], 2).tolist()
    metrics["reviews_per_s"] = round(len(res["targets"]) / seconds, 1)
    return metrics


def classify_reviews(model: nn.Module, vocab: Vocab, reviews: list[str], max_len: int,
                     device: torch.device | str, title: str = "Hand-written reviews") -> list[dict]:
    """Hand-written reviews -> printed rows {review, P(positive), verdict, unknown words}, checked first
    (an empty or all-unknown review is refused with one sentence; a long one is truncated)."""
    encoded = [check_review(r, vocab, max_len) for r in reviews]
    rows = []
    for text, ids, p in zip(reviews, encoded, predict_proba(model, encoded, device)):
        rows.append({"review": shorten(text), "P(positive)": round(p, 3),
                     "verdict": SENTIMENT_LABELS[int(p >= 0.5)], "unknown words": sum(i == 1 for i in ids)})
    print_table(rows, title=title, floatfmt=".3f")
    return rows


def report_sentiment(model: nn.Module, data: dict, fit_result: dict, out: Path, *, name: str, dataset: str,
                     device: torch.device | str) -> dict:
    """Test the trained model (and, for an ensemble, each member alone), print the table, save training
    curves and the confusion matrix, and return the metrics for metrics.json (same keys for LSTM and GRU).
    fit_result: what `train_sentiment_ensemble` returned."""
    from utils.visualization import plot_confusion_matrix, plot_training_curves  # matplotlib only when needed

    fits = fit_result["members"]
    members = list(model.members) if isinstance(model, SentimentEnsemble) else [model]
    rows, singles = [], []
    for k, (member, fit_k) in enumerate(zip(members, fits) if len(members) > 1 else []):  # each member alone
        t = test_sentiment_model(member, data["loaders"]["test"], device)
        singles.append(t["accuracy"])
        rows.append({"model": f"member {k + 1}", "best epoch": fit_k["best_epoch"],
                     "val accuracy": fit_k["best_value"], "accuracy": t["accuracy"], "f1": t["f1"],
                     "loss": t["loss"]})
    test = test_sentiment_model(model, data["loaders"]["test"], device)
    label = f"mean of {len(members)} (ensemble)" if len(members) > 1 else name
    rows.append({"model": label, "best epoch": "/".join(str(f["best_epoch"]) for f in fits),
                 "val accuracy": fits[0]["best_value"] if len(fits) == 1 else "",
                 "accuracy": test["accuracy"], "f1": test["f1"], "loss": test["loss"]})
    print_table(rows, title=f"{name} on {dataset}, test split ({test['reviews_per_s']:,.0f} reviews/s)",
                floatfmt=".4f")
    histories = {f"member {k + 1}": f["history"] for k,
                 f in enumerate(fits)} if len(fits) > 1 else fits[0]["history"]
    plot_training_curves(histories, out / "training_curves.png", title=f"{name} on {dataset}",
                         metrics=["val_accuracy"] if len(fits) > 1 else ["val_accuracy", "val_f1"])
    plot_confusion_matrix(test["confusion_matrix"], SENTIMENT_LABELS, out / "confusion_matrix.png",
                          title=f"{name}, test set ({dataset})", normalize=True)
    metrics = {f"test_{k}": v for k, v in test.items()}
    metrics.update(parameters=count_parameters(model), ensemble_members=len(members),
                   train_time_s=fit_result["train_time_s"], best_epoch=[f["best_epoch"] for f in fits],
                   epochs_run=[f["epochs_run"] for f in fits],
                   best_val_accuracy=[f["best_value"] for f in fits], vocab_size=len(data["vocab"]),
                   split_sizes=data["sizes"])
    if singles:
        metrics["member_test_accuracy"] = singles
        metrics["single_model_test_accuracy"] = {"mean": sum(singles) / len(singles),
                                                 "std": float(torch.tensor(singles).std()) if len(singles) > 1 else 0.0}
    return metrics


# ----------------------------------------------------------------------------------------------------
# 5. The yardstick: a bag of words and bigrams
# ----------------------------------------------------------------------------------------------------
def ngram_range_for(texts: Sequence[str]) -> tuple[int, int]:
    """The baselines' n-grams: words and word pairs (1, 2) for English; for Chinese, where each token is one
    Han character, character 1- to 3-grams (1, 3), which stand in for the words a segmenter would find."""
    return (1, 3) if han_share(t for text in texts[:2000] for t in tokenize(text)) > 0.5 else (1, 2)


def tfidf_baseline(texts: dict, Cs: tuple = (0.3, 1.0, 3.0, 10.0)) -> dict:
    """The bag-of-words yardstick: TF-IDF of words and word pairs + logistic regression (scikit-learn);
    of character 1- to 3-grams for Chinese (`ngram_range_for`).

    texts: {'train'|'val'|'test': (texts, labels)}. C (inverse regularisation) is picked on validation,
    like the RNNs' early stopping, so both sides get the same chance. Word order beyond bigrams is lost:
    whatever the RNNs gain over this baseline is what reading the sequence buys.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    (xtr, ytr), (xva, yva), (xte, yte) = texts["train"], texts["val"], texts["test"]
    t0 = time.time()
    ngrams = ngram_range_for(xtr)
    vec = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=ngrams,
                          sublinear_tf=True)
    A, V = vec.fit_transform(xtr), vec.transform(xva)   # sparse (reviews, n-grams)
    fitted = [(LogisticRegression(C=C, max_iter=2000).fit(A, ytr), C) for C in Cs]
    scored = [(float((clf.predict(V) == yva).mean()), C, clf) for clf, C in fitted]
    val_acc, C, clf = max(scored, key=lambda s: s[0])
    train_time = time.time() - t0
    t1 = time.time()
    preds = torch.as_tensor(clf.predict(vec.transform(xte)))
    seconds = max(time.time() - t1, 1e-9)
    metrics = binary_metrics(preds, torch.as_tensor(yte))
    metrics.update(C=C, ngram_range=list(ngrams), val_accuracy=val_acc,
                   parameters=int(clf.coef_.size + clf.intercept_.size),
                   train_time_s=round(train_time, 2), reviews_per_s=round(len(yte) / seconds, 1),
                   confusion_matrix=confusion_matrix(yte, preds, 2).tolist(), predictions=preds.tolist())
    return metrics


# ----------------------------------------------------------------------------------------------------
# 6. The strong yardstick: NBSVM (Wang & Manning 2012), and averaging it with the RNNs (THEORY.md §14)
# ----------------------------------------------------------------------------------------------------
# A review is a binary bag of words and word pairs, x in {0,1}^V (x_j = 1 if n-gram j occurs at least once).
# Naive Bayes' log-count ratio says how much each n-gram leans positive, with smoothing alpha:
#     p = alpha + sum_{i: y_i = 1} x_i,   q = alpha + sum_{i: y_i = 0} x_i     (V,) counts of reviews  (N1)
#     r = log( (p / ||p||_1) / (q / ||q||_1) )                                 (V,) > 0: leans positive (N2)
# NBSVM trains a linear classifier (here logistic regression, so it gives probabilities) on the
# r-scaled features x~ = r * x (elementwise), then shrinks its weights w towards their mean magnitude:
#     w' = (1 - beta) * w_bar + beta * w,   w_bar = ||w||_1 / V                (N3) interpolation
#     P(positive | x) = sigmoid(w' . x~ + b)                                    (N4)
# beta = 0 leaves w_bar * (r . x) + b: Naive Bayes' votes, each n-gram with its log-count ratio (b stays as
# trained, as in the paper); beta = 1 is the discriminative model alone, on NB-scaled features. Wang & Manning
# found NB's votes stronger on short snippets and the classifier on long reviews; here validation picks beta.
def binary_ngrams(texts: Sequence[str], vocabulary: dict | None = None, ngram_range: tuple = (1, 2)):
    """Reviews -> (X, vocabulary): X a scipy sparse (reviews, V) 0/1 matrix of the word and word-pair
    n-grams each review contains (utils.data_utils.tokenize's tokens; Chinese: ngram_range=(1, 3) of
    characters). vocabulary None: learn it from these texts (training only); else reuse it
    (validation/test n-grams never seen in training are dropped)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False,
                          ngram_range=tuple(ngram_range), binary=True, vocabulary=vocabulary)
    X = vec.fit_transform(texts) if vocabulary is None else vec.transform(texts)
    return X.tocsr().astype(np.float64), vec.vocabulary_


def log_count_ratio(X, labels: Sequence[int], alpha: float = 1.0) -> np.ndarray:
    """X: (reviews, V) binary features, labels: (reviews,) 0/1 -> r: (V,) the NB log-count ratio above."""
    y = np.asarray(labels)
    p = alpha + np.asarray(X[y == 1].sum(axis=0)).ravel()   # (V,) smoothed count of positive reviews with j
    q = alpha + np.asarray(X[y == 0].sum(axis=0)).ravel()   # (V,) the same for negative reviews
    return np.log((p / p.sum()) / (q / q.sum()))


def interpolate_weights(w: np.ndarray, beta: float) -> np.ndarray:
    """w' = (1 - beta) * mean|w| + beta * w: beta = 1 keeps w, beta = 0 gives every feature the same weight."""
    return (1 - beta) * np.abs(w).mean() + beta * w


class NBSVM:
    """NBSVM-uni+bi: logistic regression on NB-scaled binary uni+bigram features (Chinese: character 1-3-grams),
    weights interpolated.
    fit(texts, labels) -> self; predict_proba(texts) -> (N,) P(positive). See the formulas above."""

    def __init__(self, alpha: float = 1.0, C: float = 1.0, beta: float = 0.25, ngram_range: tuple = (1, 2)):
        self.alpha, self.C, self.beta, self.ngram_range = alpha, C, beta, tuple(ngram_range)

    def features(self, texts: Sequence[str]):
        """texts -> x~ = r * x: (N, V) sparse, V = the training n-grams."""
        X, _ = binary_ngrams(texts, self.vocabulary, self.ngram_range)
        return X.multiply(self.r[None, :]).tocsr()

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> "NBSVM":
        X, self.vocabulary = binary_ngrams(texts, ngram_range=self.ngram_range)
        self.r = log_count_ratio(X, labels, self.alpha)
        return self.fit_classifier(X.multiply(self.r[None, :]).tocsr(), labels)

    def fit_classifier(self, features, labels: Sequence[int]) -> "NBSVM":
        """The discriminative half alone, on already r-scaled features (the grid search reuses them)."""
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=self.C, max_iter=5000).fit(features, labels)
        self.w, self.b = clf.coef_.ravel(), float(clf.intercept_[0])   # (V,), scalar
        return self

    def predict_proba(self, texts: Sequence[str] | None = None, features=None) -> np.ndarray:
        """texts (or their r-scaled features) -> (N,) P(positive) = sigmoid(w' . x~ + b)."""
        features = self.features(texts) if features is None else features
        margin = features @ interpolate_weights(self.w, self.beta) + self.b
        return 1.0 / (1.0 + np.exp(-margin))


def nbsvm_baseline(texts: dict, Cs: tuple = (0.1, 0.3, 1.0, 3.0, 10.0),
                   betas: tuple = (0.0, 0.25, 0.5, 0.75, 1.0), alpha: float = 1.0) -> dict:
    """NBSVM with C and beta picked on validation accuracy (alpha = 1, Wang & Manning's value, not tuned).

    texts: {'train'|'val'|'test': (texts, labels)}. Returns the same keys as `tfidf_baseline`, plus
    'val_probs' and 'test_probs' (P(positive) in split order) for averaging with the RNNs, and the model."""
    (xtr, ytr), (xva, yva), (xte, yte) = texts["train"], texts["val"], texts["test"]
    t0 = time.time()
    model = NBSVM(alpha=alpha, ngram_range=ngram_range_for(xtr))  # Chinese: character 1- to 3-grams
    X, model.vocabulary = binary_ngrams(xtr, ngram_range=model.ngram_range)
    model.r = log_count_ratio(X, ytr, alpha)
    train_feats, val_feats = X.multiply(model.r[None, :]).tocsr(), model.features(xva)
    scored = []                                            # (val accuracy, C, beta, w, b), in grid order
    for C in Cs:
        model.C = C
        model.fit_classifier(train_feats, ytr)
        for beta in betas:
            model.beta = beta
            scored.append((float(((model.predict_proba(features=val_feats) >= 0.5) == np.asarray(yva)).mean()),
                           C, beta, model.w, model.b))
    # first best in grid order
    val_acc, model.C, model.beta, model.w, model.b = max(scored, key=lambda s: s[0])
    train_time = time.time() - t0
    val_probs = model.predict_proba(features=val_feats)
    t1 = time.time()
    test_probs = model.predict_proba(xte)
    seconds = max(time.time() - t1, 1e-9)
    preds = torch.as_tensor((test_probs >= 0.5).astype(np.int64))
    metrics = binary_metrics(preds, torch.as_tensor(yte))
    metrics.update(C=model.C, beta=model.beta, alpha=alpha, ngram_range=list(model.ngram_range),
                   val_accuracy=val_acc, parameters=int(model.w.size + 1), train_time_s=round(train_time, 2),
                   reviews_per_s=round(len(yte) / seconds, 1),
                   confusion_matrix=confusion_matrix(yte, preds, 2).tolist(), predictions=preds.tolist(),
                   val_probs=val_probs.tolist(), test_probs=test_probs.tolist(),
                   val_grid=[{"C": C, "beta": beta, "val_accuracy": a} for a, C, beta, _, _ in scored],
                   model=model)
    return metrics


# Averaging the RNNs with NBSVM (as Mesnil et al. 2014 averaged an RNN LM,
# paragraph vectors and NBSVM on IMDB):
#     P(positive) = w * P_rnn + (1 - w) * P_nbsvm,   w in [0, 1] chosen on validation     (N5)
# The two make different mistakes: NBSVM counts n-grams anywhere in the snippet, the RNN reads them in order.
WEIGHT_GRID = tuple(round(0.05 * k, 2) for k in range(21))   # w = 0, 0.05, ..., 1


def average_probabilities(p_rnn: Sequence[float], p_nbsvm: Sequence[float], weight: float) -> np.ndarray:
    """(N,) and (N,) P(positive) -> (N,) w * p_rnn + (1 - w) * p_nbsvm."""
    return weight * np.asarray(p_rnn, np.float64) + (1 - weight) * np.asarray(p_nbsvm, np.float64)


def log_loss(probs: np.ndarray, labels: Sequence[int]) -> float:
    """Mean binary cross-entropy of P(positive) against 0/1 labels (probabilities clipped away from 0 and 1)."""
    p, y = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7), np.asarray(labels)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose_weight(p_rnn: Sequence[float], p_nbsvm: Sequence[float], labels: Sequence[int],
                  grid: Sequence[float] = WEIGHT_GRID) -> float:
    """The w of `average_probabilities` with the best accuracy on these (validation) reviews; ties, which
    accuracy on ~1,300 reviews has many of, go to the w with the lower log loss."""
    y = np.asarray(labels)
    def score(w):
        p = average_probabilities(p_rnn, p_nbsvm, w)
        return float(((p >= 0.5) == y).mean()), -log_loss(p, y)
    return max(grid, key=score)


def cross_fitted_accuracy(p_rnn: Sequence[float], p_nbsvm: Sequence[float], labels: Sequence[int],
                          grid: Sequence[float] = WEIGHT_GRID) -> float:
    """An honest validation accuracy for the averaged model: choose w on the even-numbered validation
    reviews and score it on the odd ones, then the other way round, and pool the two halves.
    Scoring w on the reviews it was chosen on would flatter it: w = 0 is NBSVM itself, so the chosen w
    could never look worse than NBSVM there."""
    p_rnn, p_nbsvm, y = (np.asarray(a) for a in (p_rnn, p_nbsvm, labels))
    right = np.zeros(len(y), bool)
    for pick, score in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        w = choose_weight(p_rnn[pick], p_nbsvm[pick], y[pick], grid)
        right[score] = (average_probabilities(p_rnn[score], p_nbsvm[score], w) >= 0.5) == y[score]
    return float(right.mean())


def mcnemar(a_right, b_right) -> dict:
    """McNemar's exact test of two classifiers on the same test reviews: only the reviews where exactly
    one of them is right carry information; under "equally good" each such review is a fair coin flip."""
    from scipy.stats import binomtest

    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p": float(p)}


def compare_with_baselines(model: nn.Module, data: dict, max_len: int, device: torch.device | str,
                           name: str = "RNN", nb: dict | None = None) -> dict:
    """Fit both yardsticks on the training reviews (their settings picked on validation), print their test
    accuracy beside the trained `model`'s and McNemar's test of the model against the one of them that did
    better on validation (choosing it on test would favour the baseline's luck). `nb`: an nbsvm_baseline
    result
    already fitted on data['texts'] (else it is fitted here). -> metrics for metrics.json."""
    texts = data["texts"]
    y_test = np.asarray(texts["test"][1])
    tfidf, nb = tfidf_baseline(texts), nb or nbsvm_baseline(texts)
    p_rnn = np.asarray(predict_proba(model, encode_reviews(texts["test"][0], data["vocab"], max_len)[0],
                                     device))
    rnn_right = (p_rnn >= 0.5) == y_test.astype(bool)
    best_name, best = max((("TF-IDF + LR", tfidf), ("NBSVM", nb)), key=lambda b: b[1]["val_accuracy"])
    test = mcnemar(rnn_right, np.asarray(best["predictions"]) == y_test)
    grams = "character" if tuple(nb["ngram_range"]) == (1, 3) else "word"
    print_table([{"model": f"TF-IDF + LR ({grams} {tfidf['ngram_range'][0]}-{tfidf['ngram_range'][1]}-grams, "
                           f"C={tfidf['C']})", "val accuracy": tfidf["val_accuracy"],
                           "accuracy": tfidf["accuracy"],
                  "f1": tfidf["f1"]},
                 {"model": f"NBSVM ({grams} {nb['ngram_range'][0]}-{nb['ngram_range'][1]}-grams, C={nb['C']}, "
                           f"beta={nb['beta']})", "val accuracy": nb["val_accuracy"],
                           "accuracy": nb["accuracy"],
                  "f1": nb["f1"]},
                 {"model": name, "val accuracy": "", "accuracy": float(rnn_right.mean()),
                  "f1": binary_metrics(torch.as_tensor(p_rnn >= 0.5).long(), torch.as_tensor(y_test))["f1"]}],
                title="Against the classic baselines, same test split (sentiment_model §5-§6)",
                floatfmt=".4f")
    print(f"McNemar, {name} vs {best_name} (the better baseline on validation) on the same {len(y_test)} test "
          f"reviews: {test['only_first_right']} only the {name} gets right, {test['only_second_right']} only "
          f"{best_name}, p = {test['p']:.3f}.")
    return {"tfidf_test_accuracy": tfidf["accuracy"], "tfidf_val_accuracy": tfidf["val_accuracy"],
            "tfidf_C": tfidf["C"], "nbsvm_test_accuracy": nb["accuracy"],
            "nbsvm_val_accuracy": nb["val_accuracy"], "nbsvm_C": nb["C"], "nbsvm_beta": nb["beta"],
            "baseline_ngram_range": nb["ngram_range"],
            "mcnemar_vs_better_baseline": {"baseline": best_name, **test}}


def average_with_nbsvm(model: nn.Module, data: dict, max_len: int, device: torch.device | str,
                       name: str = "RNN", nb: dict | None = None) -> dict:
    """Fit NBSVM on the training reviews (C, beta on validation; or take `nb`, an nbsvm_baseline result already
    fitted on data['texts']), average it with the trained `model` (w on validation), test both and the average
    on the test split, print the table and McNemar's test of the average against NBSVM.
    -> metrics for metrics.json ('nbsvm_*', 'with_nbsvm_*')."""
    texts = data["texts"]
    (_, y_val), (_, y_test) = texts["val"], texts["test"]
    nb = nb or nbsvm_baseline(texts)
    p_rnn = {part: predict_proba(model, encode_reviews(texts[part][0], data["vocab"], max_len)[0], device)
             for part in ("val", "test")}                                   # P(positive) in split order
    w = choose_weight(p_rnn["val"], nb["val_probs"], y_val)
    p_avg = average_probabilities(p_rnn["test"], nb["test_probs"], w)    # (N_test,)
    y = torch.as_tensor(y_test)
    rnn = binary_metrics(torch.as_tensor(np.asarray(p_rnn["test"]) >= 0.5).long(), y)
    avg = binary_metrics(torch.as_tensor(p_avg >= 0.5).long(), y)
    nb_right = np.asarray(nb["predictions"]) == np.asarray(y_test)
    test = mcnemar((p_avg >= 0.5) == np.asarray(y_test, bool), nb_right)
    honest_val = cross_fitted_accuracy(p_rnn["val"], nb["val_probs"], y_val)
    print_table([{"model": f"NBSVM (C={nb['C']}, beta={nb['beta']})", "val accuracy": nb["val_accuracy"],
                  "accuracy": nb["accuracy"], "f1": nb["f1"]},
                 {"model": name, "val accuracy": "", "accuracy": rnn["accuracy"], "f1": rnn["f1"]},
                 {"model": f"{w:.2f} x {name} + {1 - w:.2f} x NBSVM", "val accuracy": honest_val,
                  "accuracy": avg["accuracy"], "f1": avg["f1"]}],
                title="Averaged with NBSVM (sentiment_model §6; the average's val accuracy is cross-fitted)",
                floatfmt=".4f")
    print(f"McNemar, average vs NBSVM on the same {len(y_test)} test reviews: {test['only_first_right']} only the "
          f"average gets right, {test['only_second_right']} only NBSVM, p = {test['p']:.3f}.")
    return {"nbsvm_test_accuracy": nb["accuracy"], "nbsvm_test_f1": nb["f1"],
            "nbsvm_val_accuracy": nb["val_accuracy"], "nbsvm_C": nb["C"], "nbsvm_beta": nb["beta"],
            "nbsvm_weight": 1 - w, "with_nbsvm_weight_on_rnn": w, "with_nbsvm_test_accuracy": avg["accuracy"],
            "with_nbsvm_test_f1": avg["f1"], "with_nbsvm_val_accuracy_cross_fitted": honest_val,
            "with_nbsvm_mcnemar_vs_nbsvm": test}


def cross_fitted_nb_channel(data: dict, folds: int = 5, alpha: float = 1.0) -> tuple[torch.Tensor,
                                                                                     torch.Tensor]:
    """NB_CHANNEL without leakage: the ratios from all training reviews (for validation, test, new text) and,
    for cross-fitting, one table per fold from the other folds' reviews; the training loader is rebuilt so
    each review carries its fold (same batches, same order). -> (full (vocab, 1), per fold (folds, vocab, 1)).

    Why: computed on the reviews the RNN trains on, a word seen in one review only gets a ratio of about
    +-log 2 pointing at that review's own label, and the RNN learns to read the label off it (stacking has
    the same trap, and the same cure)."""
    texts, labels = data["texts"]["train"]
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(data["seed"])).tolist()
    fold_of = [0] * len(texts)
    for rank, i in enumerate(order):
        fold_of[i] = rank % folds
    tables = []
    for k in range(folds):
        keep = [i for i in range(len(texts)) if fold_of[i] != k]
        tables.append(word_log_count_ratios([texts[i] for i in keep], [labels[i] for i in keep],
                                            data["vocab"], alpha))
    encoded, _ = encode_reviews(texts, data["vocab"], data["max_len"])
    data["loaders"]["train"] = sentiment_loader(encoded, labels, data["batch_size"], shuffle=True,
                                                seed=data["seed"], folds=fold_of)
    return word_log_count_ratios(texts, labels, data["vocab"], alpha), torch.stack(tables)


def word_log_count_ratios(texts: Sequence[str], labels: Sequence[int], vocab: Vocab,
                          alpha: float = 1.0) -> torch.Tensor:
    """Each vocabulary word's NB log-count ratio r (the formula above, words only) from the training reviews
    -> (len(vocab), 1) float32, the `word_features` of SentimentClassifier(word_channels=1).
    <pad> and <unk> get 0 (no lean). The RNN then sees, beside each learned word vector, how strongly that
    word leaned positive or negative across the whole training set: a rare word's vector is learned from a
    handful of gradient steps, its count ratio from every review at once."""
    tokens = vocab.to_list()
    X, _ = binary_ngrams(texts, {t: i for i, t in enumerate(tokens)})   # (reviews, V): words only, no pairs
    r = log_count_ratio(X, labels, alpha)
    r[:2] = 0.0                                                          # <pad> = 0, <unk> = 1
    return torch.tensor(r, dtype=torch.float32)[:, None]

"""The sentiment case's lesson: reviews -> length-bucketed batches -> (bi)LSTM/GRU classifier -> its training.

Read in this order (the data flows top to bottom):
1. encoding and batching: `encode_reviews`, `collate_reviews` (batches of similar length: the
   `LengthBucketSampler` of utils/data_utils.py, shared with 05's segmenter), `prepare_sentiment_data`;
2. the model: `SentimentClassifier.forward` (embed -> pack -> pool -> classify, THEORY.md §5) and
   `SentimentEnsemble` (a seed ensemble, §8);
3. the training step: `train_step` (forward -> loss -> zero_grad -> backward -> clip -> step) and
   `eval_step` (the same forward and loss, for validation and test);
4. training: `train_sentiment_model` (AdamW + utils.training.fit, one model or a seed ensemble);
5. saving and loading a model with its vocabulary;
6. testing, reporting, hand-written reviews.
The experiments beside the lesson -- the classic baselines (TF-IDF + LR, NBSVM), McNemar's test, averaging
with NBSVM and the NB channel -- are in baselines.py. The raw reviews and the fixed split come from
utils.data_utils (load_rotten_tomatoes, load_imdb, sentiment_split).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.data_utils import (
    SENTIMENT_LABELS,
    LengthBucketSampler,
    Vocab,
    han_share,
    pad_batch,
    sentiment_split,
    tokenize,
)
from utils.model_utils import (
    confusion_matrix,
    count_parameters,
    ensemble_member_seeds,
    init_forget_bias,
    log_mean_probability,
    make_rnn,
)
from utils.script_utils import UserError, print_table, set_seed
from utils.training import (
    ProgressLog,
    check_checkpoint,
    checkpoint_tag,
    clip_gradients,
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
    stop_if_not_finite,
    weights_that_fit,
)

SENTIMENT_CASE = "02_sentiment"  # the tag in this case's checkpoints (utils.training.checkpoint_tag)

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
    vocabulary is Han characters, English otherwise (a --CSV model in another language gets the English
    ones)."""
    return SENTIMENT_EXAMPLES_ZH if han_share(vocab.to_list()[2:]) > 0.5 else SENTIMENT_EXAMPLES


# ----------------------------------------------------------------------------------------------------
# 1. Encoding and batching: text -> id lists -> batches of similar length, padded, with their lengths
# ----------------------------------------------------------------------------------------------------
def encode_reviews(texts: Sequence[str], vocab: Vocab, max_len: int) -> tuple[list[list[int]], int]:
    """Tokenise, map to ids, truncate to max_len tokens -> (id lists, how many were truncated).
    An empty review becomes [<unk>] so that every sequence has length >= 1 (packing needs it)."""
    encoded, cut = [], 0
    for text in texts:
        ids = vocab.encode(vocab.tokenize(text)) or [1]
        cut += len(ids) > max_len
        encoded.append(ids[:max_len])
    return encoded, cut


def check_review(text: str, vocab: Vocab, max_len: int) -> list[int]:
    """A learner's review -> ids, refusing an empty one, warning when most of its tokens are unknown to the
    model (an English review given to a model trained on Chinese, or the other way round), noting
    truncation."""
    tokens = vocab.tokenize(text)
    if not tokens:
        raise UserError("the review is empty (no words found); pass some text, e.g. --REVIEW=\"a moving, "
                        "funny film\" or --REVIEW=\"这部电影太好看了\".")
    ids = vocab.encode(tokens)
    unknown = sum(i == 1 for i in ids)
    if unknown > len(ids) / 2:   # e.g. an English review given to a model trained on Chinese, or the reverse
        language = vocab_language(vocab)
        learned = f"{language} reviews" if language else "its training file"
        basis = "nothing but the review's length" if unknown == len(ids) else "the few known ones"
        print(f"warning: {unknown} of the {len(ids)} tokens of {shorten(text)!r} are unknown to this "
              f"model's vocabulary ({len(vocab):,} tokens, learned from {learned}): its verdict rests on "
              f"{basis} and means little. Give it a review in {language or 'that language'}, or train on "
              f"reviews in the review's language (--DATASET, --CSV).")
    if len(ids) > max_len:
        print(f"notice: the review has {len(ids)} tokens; only the first MAX_LEN={max_len} are used.")
    return ids[:max_len]


def vocab_language(vocab: Vocab) -> str | None:
    """'Chinese' for a vocabulary of mostly Han characters, 'English' for one of mostly a-z words (the
    packaged sets), None for another language (a --CSV model)."""
    tokens = vocab.to_list()[2:]
    if han_share(tokens) > 0.5:
        return "Chinese"
    words = [t.replace("'", "") for t in tokens]
    latin = sum(w.isascii() and w.isalnum() for w in words) / max(len(tokens), 1)
    return "English" if latin > 0.5 else None


def shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def collate_reviews(batch: Sequence[tuple]):
    """[(ids, label), ...] -> ids: (B, T) long padded with 0, lengths: (B,) long on CPU, labels: (B,) long.
    T is the batch's longest review: with length buckets, hardly more than the shortest."""
    ids, lengths = pad_batch([b[0] for b in batch])
    return ids, lengths, torch.tensor([b[1] for b in batch], dtype=torch.long)


def sentiment_loader(encoded: list[list[int]], labels: Sequence[int], batch_size: int, *,
                     shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader of length-bucketed, padded batches (see LengthBucketSampler, collate_reviews)."""
    sampler = LengthBucketSampler([len(e) for e in encoded], batch_size, shuffle, seed)
    return torch.utils.data.DataLoader(list(zip(encoded, labels)), batch_sampler=sampler,
                                       collate_fn=collate_reviews)


def prepare_sentiment_data(dataset: str, *, min_freq: int, max_vocab: int, max_len: int, batch_size: int,
                           limit: int = 0, seed: int = 0, csv: str = "", vocab: Vocab | None = None,
                           train_size: int = 0, split: dict | None = None) -> dict:
    """The fixed split (of `dataset`, or of the learner's `csv` file) -> vocabulary (built on train only)
    -> length-bucketed loaders.

    limit > 0 keeps only the first `limit` training reviews (and limit//4 of validation and test): --quick.
    vocab: a vocabulary to use instead of building one (pretrained.py's characters of a language model);
    split: the split when the caller has already read it (sentiment_split), so it is not read twice.
    train_size > 0 keeps a random `train_size` of the training reviews, each class in its share (drawn with
    `seed`), with validation and test whole: the labelled-size curve (pretraining_study.py).
    Returns {'vocab', 'texts': {part: (texts, labels)}, 'loaders': {part: DataLoader}, 'sizes'}, and the
    'max_len', 'batch_size' and 'seed' they were made with.
    """
    split = dict(split) if split is not None else sentiment_split(dataset, csv=csv)  # (given: already read)
    dataset = dataset_name(dataset, csv)
    if limit > 0:
        split = {p: (t[:n], y[:n]) for (p, (t, y)), n in zip(split.items(), (limit, limit // 4, limit // 4))}
    if 0 < train_size < len(split["train"][0]):
        split["train"] = labelled_subset(*split["train"], train_size, seed)
    built = vocab is None
    if built:
        vocab = Vocab.build((tokenize(t) for t in split["train"][0]), min_freq=min_freq,
                            max_size=max_vocab or None)
    loaders, truncated = {}, 0
    for part, (texts, labels) in split.items():
        encoded, cut = encode_reviews(texts, vocab, max_len)
        truncated += cut
        loaders[part] = sentiment_loader(encoded, labels, batch_size, shuffle=part == "train", seed=seed)
    total = sum(len(t) for t, _ in split.values())
    print(f"{dataset}: {', '.join(f'{p} {len(t)}' for p, (t, _) in split.items())} reviews; vocabulary "
          f"{len(vocab)} tokens ({f'min_freq={min_freq}' if built else 'given'}); {truncated} of {total} "
          f"reviews truncated to "
          f"MAX_LEN={max_len} tokens.")
    return {"vocab": vocab, "texts": split, "loaders": loaders,
            "sizes": {p: len(t) for p, (t, _) in split.items()},
            "max_len": max_len, "batch_size": batch_size, "seed": seed}


def labelled_subset(texts: Sequence[str], labels: Sequence[int], size: int, seed: int) -> tuple[list, list]:
    """A random `size` of the reviews, each class keeping its share: the same subset for every model given
    the same seed, a different one for each seed."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        k = round(size * len(members) / len(labels))
        chosen += [members[j] for j in torch.randperm(len(members), generator=g)[:k].tolist()]
    chosen.sort()
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def dataset_name(dataset: str, csv: str = "") -> str:
    """What a run's tables, checkpoint and metrics.json call its data: the DATASET, or 'csv:<file name>'."""
    return f"csv:{Path(csv).name}" if csv else dataset


def dataset_folder(dataset: str, csv: str = "") -> str | None:
    """The subfolder of outputs/02_sentiment/<script>/ a run writes to: none for Rotten Tomatoes (the
    default, which other scripts read), else the dataset's name or csv_<file stem>, so runs on other data
    never replace the default run's model and metrics."""
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
    word_channels > 0: the cell reads that many more numbers per word than embed_dim; a subclass appends
    them to the word vectors (NB_CHANNEL: baselines.NBChannelClassifier). 0 for the lesson's model.
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
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)  # <pad> = 0 stays a zero vector
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.rnn = make_rnn(cell, impl, embed_dim + word_channels, hidden_size, num_layers, dropout=dropout,
                            bidirectional=bidirectional, device=device)  # nn.LSTM/GRU or the scratch cell
        if cell.lower() == "lstm":
            init_forget_bias(self.rnn, 1.0)  # f starts near sigmoid(1): remember by default (THEORY.md §4.4)
        d = hidden_size * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(3 * d, num_classes)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) -> word vectors (B, T, E), dropped out while training (E = embed_dim)."""
        return self.embed_dropout(self.embedding(ids))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) long, 0 = <pad>; lengths: (B,) long, each review's true length >= 1
        -> logits: (B, num_classes). E = embed_dim, H = hidden_size, D = H * directions."""
        T = ids.shape[1]
        x = self.embed(ids)                                                    # (B, T, E)
        # Packing (THEORY.md §5): the cell runs each review for exactly its own length, never over <pad>,
        # so the final state is taken at the review's last word, not after a tail of pads.
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        # each step, in each direction (§6): LSTM gates i (L1), f (L2), candidate g (L3), gate o (L4),
        # c_t = f*c + i*g (L5), h_t = o*tanh(c_t) (L6); GRU r (G1), z (G2), candidate n (G3), h_t (G4)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n); h_n: (layers*dirs, B, H)
        # back to a padded tensor: (B, T, D), 0 past each review's length
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        # the top layer's final states: forward after the last word, backward after the first
        # (it reads right to left)
        last = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]  # (B, D)
        peak, mean = masked_max_and_mean(out, lengths)                        # (P2), (P1): (B, D) each
        return self.head(self.dropout(torch.cat([last, peak, mean], dim=1)))   # (B, 3D) -> (B, classes)


def masked_max_and_mean(out: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked pooling (THEORY.md §5.1) over the valid steps only: mask[b, t] = t < lengths[b], so padded
    steps never win the max or dilute the mean. out: (B, T, D), lengths: (B,) -> (max, mean), each (B, D).
    Also pretrained.PretrainedClassifier's pooling."""
    T = out.shape[1]
    valid = lengths.to(out.device)
    mask = (torch.arange(T, device=out.device)[None, :] < valid[:, None])[..., None]  # (B, T, 1)
    peak = out.masked_fill(~mask, float("-inf")).max(dim=1).values         # (P2) masked max: (B, D)
    mean = (out * mask).sum(dim=1) / valid[:, None].clamp_min(1)           # (P1) masked mean: (B, D)
    return peak, mean


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
# 3. The training step, in plain sight, and its twin for validation and test
# ----------------------------------------------------------------------------------------------------
def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer,
               clip: float | None) -> tuple[float, float, int]:
    """One gradient step on a batch of reviews: what `fit` runs for every training batch.
    batch: ids (B, T) padded with 0, lengths (B,) on the CPU, labels (B,) 0/1.
    -> (the batch's mean cross-entropy, the gradient norm before clipping, reviews in the batch)."""
    device = next(model.parameters()).device
    ids, lengths, labels, *extra = batch               # extra: NB_CHANNEL's folds (baselines.py), else none
    ids, labels = ids.to(device), labels.to(device)    # lengths stay on the CPU, where packing reads them
    logits = model(ids, lengths, *extra)               # (B, 2): embed -> pack -> pool -> classify (§5)
    loss = nn.functional.cross_entropy(logits, labels)  # mean over the batch of -log softmax(logits)[label]
    value = loss.item()
    stop_if_not_finite("loss", value, optimizer)        # a NaN stops here, before it reaches the weights
    optimizer.zero_grad(set_to_none=True)               # .grad accumulates: clear the last batch's
    loss.backward()                                     # BPTT along each packed review, both directions (§4)
    norm = clip_gradients(model, clip)                  # ||g|| before clipping; g capped at clip (§9, C2)
    stop_if_not_finite("gradient norm", norm, optimizer)
    optimizer.step()                                    # the AdamW update
    return value, norm, labels.shape[0]


def eval_step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same forward and loss without the update, for validation (`fit`) and test (`evaluate`).
    -> (mean cross-entropy, predicted classes (B,), labels (B,))."""
    device = next(model.parameters()).device
    ids, lengths, labels, *extra = batch
    labels = labels.to(device)
    logits = model(ids.to(device), lengths, *extra)     # (B, 2)
    return nn.functional.cross_entropy(logits, labels), logits.argmax(dim=1), labels


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


# ----------------------------------------------------------------------------------------------------
# 4. Training: AdamW with early stopping (utils.training.fit runs train_step), one model or a seed ensemble
# ----------------------------------------------------------------------------------------------------
def train_sentiment_model(build_model: Callable, data: dict, device: torch.device | str, *, members: int,
                          seed: int, epochs: int, lr: float, weight_decay: float, patience: int, clip: float,
                          train_loader=None, checkpoint_path: Path | None = None,
                          checkpoint_extra: Callable | None = None, progress: ProgressLog | None = None):
    """Train `members` models from `build_model(vocab_size, device)`, member k from seed seed*members + k
    (so two SEEDs never share a member). Each is trained by `fit`, which runs `train_step` on every batch
    with AdamW, keeps the epoch with the best validation accuracy (early stopping on it), halves the
    learning rate when it stalls and clips gradients to norm `clip` (THEORY.md §9). One member is returned
    as it is; several as a `SentimentEnsemble`.
    train_loader: the training batches, if not data's (NB_CHANNEL's carry each review's fold).
    checkpoint_path: the model is saved once at the end, atomically, with checkpoint_extra(model) beside the
    weights. `progress` (a ProgressLog) watches each member as a run of its own ("member 2 (seed 7)").
    -> (model, result): result has each member's fit result (with its 'train_time_s') under 'members' and
    the total train time."""
    train_batches = data["loaders"]["train"] if train_loader is None else train_loader
    models, fits = [], []
    for k, member_seed in enumerate(ensemble_member_seeds(seed, members)):
        if members > 1:
            tqdm.write(f"--- ensemble member {k + 1} of {members} (seed {member_seed}) ---")
        set_seed(member_seed)  # the member's initial weights and dropout masks; batch order is the loaders'
        model = build_model(len(data["vocab"]), device)
        if k == 0:
            cell, impl = model.hparams["cell"].upper(), model.hparams["impl"]
            tqdm.write(f"{cell} classifier: {count_parameters(model):,} parameters ({impl})"
                       + (f"; {members} of them are trained and averaged" if members > 1 else ""))
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
        watch = progress
        if progress and members > 1:  # each member in progress.jsonl and TensorBoard as a run of its own
            watch = progress.for_run(f"member {k + 1} (seed {member_seed})")
        t0 = time.time()
        result = fit(model, train_batches, data["loaders"]["val"],
                     train_step=train_step, eval_step=eval_step, epochs=epochs, optimizer=optimizer,
                     metrics_fn=binary_metrics, monitor="accuracy", mode="max", patience=patience, clip=clip,
                     scheduler=scheduler, progress=watch)
        result["train_time_s"] = round(time.time() - t0, 2)
        fits.append(result)
        models.append(model)
    model = models[0] if members == 1 else SentimentEnsemble(models).to(device)
    if checkpoint_path is not None:
        save_checkpoint({"state_dict": model.state_dict(), **checkpoint_extra(model)}, checkpoint_path)
    return model, {"members": fits, "train_time_s": round(sum(f["train_time_s"] for f in fits), 2)}


# ----------------------------------------------------------------------------------------------------
# 5. Saving and loading (the vocabulary travels with the weights)
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
    with weights_that_fit(path):
        vocab = Vocab.from_list(ckpt["vocab"])
        model_class = SentimentClassifier
        if ckpt.get("tokens") == "chars":  # a pretrained classifier that reads characters (pretrained.py)
            from pretrained import CharTokens, PretrainedClassifier
            vocab, model_class = CharTokens.from_list(ckpt["vocab"]), PretrainedClassifier
        members = int(ckpt.get("members", 1))
        key = "members.0.embedding.weight" if members > 1 else "embedding.weight"
        rows = ckpt["state_dict"].get(key, torch.empty(0, 0)).shape[0]
        if rows != len(vocab) or ckpt["hparams"].get("vocab_size") != len(vocab):
            raise UserError(f"checkpoint {path} does not match its vocabulary: the embedding has {rows} rows "
                            f"but the vocabulary has {len(vocab)} tokens; retrain the model to get a "
                            f"consistent file.")
        if ckpt["hparams"].get("word_channels"):  # a model trained with NB_CHANNEL, an experiment
            from baselines import NBChannelClassifier as model_class
        model = model_class(**ckpt["hparams"], device=device)
        if members > 1:
            model = SentimentEnsemble([model] + [model_class(**ckpt["hparams"], device=device)
                                                 for _ in range(members - 1)])
        model = model.to(device)
        model.load_state_dict(ckpt["state_dict"])
    return model, vocab, ckpt


# ----------------------------------------------------------------------------------------------------
# 6. Testing, reporting, and classifying hand-written reviews
# ----------------------------------------------------------------------------------------------------
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
    res = evaluate(model, loader, eval_step, binary_metrics)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = max(time.time() - t0, 1e-9)
    metrics = {k: v for k, v in res.items() if k not in ("predictions", "targets")}
    # rows: the true class, columns: the predicted one
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
    fit_result: what `train_sentiment_model` returned."""
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
    if len(fits) > 1:
        histories = {f"成员 {k + 1} / member {k + 1}": f["history"] for k, f in enumerate(fits)}
    else:
        histories = fits[0]["history"]
    plot_training_curves(histories, out / "training_curves.png",
                         title=f"{name}，{dataset} / {name} on {dataset}",
                         metrics=["val_accuracy"] if len(fits) > 1 else ["val_accuracy", "val_f1"])
    plot_confusion_matrix(test["confusion_matrix"], ("负面 / negative", "正面 / positive"),
                          out / "confusion_matrix.png", normalize=True,
                          title=f"{name}，测试集（{dataset}）\n{name}, test set ({dataset})")
    metrics = {f"test_{k}": v for k, v in test.items()}
    metrics.update(parameters=count_parameters(model), ensemble_members=len(members),
                   train_time_s=fit_result["train_time_s"], best_epoch=[f["best_epoch"] for f in fits],
                   epochs_run=[f["epochs_run"] for f in fits],
                   best_val_accuracy=[f["best_value"] for f in fits], vocab_size=len(data["vocab"]),
                   split_sizes=data["sizes"])
    if singles:
        metrics["member_test_accuracy"] = singles
        spread = float(torch.tensor(singles).std()) if len(singles) > 1 else 0.0
        metrics["single_model_test_accuracy"] = {"mean": sum(singles) / len(singles), "std": spread}
    return metrics

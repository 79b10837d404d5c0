"""05_seq_classify's mechanism: UCR/UEA series -> train-only scaling and patching -> padded batches with their
lengths -> a (bi)LSTM/GRU over the PACKED batch, pooled over each series' valid steps -> class logits ->
`train_step` (one gradient step) run by utils.training.fit, with early stopping on
validation accuracy - 0.001 * NLL -> a seed ensemble's log mean probability -> reports.

Read top to bottom; sequence_lstm.py / sequence_gru.py tell the story with these pieces (the loop over an
ensemble's members is theirs), classification_metrics.py looks beyond accuracy. Padding never reaches the
model's output (THEORY.md §5): the RNN is run on a packed batch and the mean is taken over valid steps only.
Raw UCR/UEA files are read by utils.data_utils.load_ucr_dataset.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from utils.model_utils import count_parameters, log_mean_probability, make_rnn
from utils.script_utils import (
    UserError,
    atomic_write,
    load_metrics,
    output_dir,
    print_table,
    save_metrics,
    set_seed,
)
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
from utils.visualization import COLORS, color_for, plot_bars, plot_training_curves, save_figure

SERIES_CASE = "05_seq_classify"  # the tag in this case's checkpoints (utils.training.checkpoint_tag)


# ----------------------------------------------------------------------------------------------------
# Data: a validation split from train, scaling fitted on train, patching, batches that keep the lengths
# ----------------------------------------------------------------------------------------------------
def datasets_to_run(dataset: str, datasets) -> list[str]:
    """--DATASET=all -> every name in DATASETS; a comma-separated list or one name -> those."""
    names = list(datasets) if dataset.strip().lower() == "all" else [d.strip() for d in dataset.split(",")]
    names = [n for n in names if n]
    if not names:
        raise UserError("--DATASET is empty; give a UCR/UEA problem name or 'all'.")
    return names


def stratified_split(y, val_fraction: float, seed: int) -> tuple:
    """Indices (train_idx, val_idx): a validation set carved from the training cases only, with the same
    class proportions (every class keeps at least one training case). y: (n,) class indices."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--VAL_FRACTION must be between 0 and 1, got {val_fraction}.")
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = min(int(round(val_fraction * len(members))), len(members) - 1)
        val_idx.extend(members[:k])
        train_idx.extend(members[k:])
    return np.sort(np.array(train_idx, dtype=np.int64)), np.sort(np.array(val_idx, dtype=np.int64))


class ChannelScaler:
    """Per-channel z-score, fitted on the training series only (every valid time step of every series
    counts once), then applied to validation and test: no information leaks from held-out data."""

    def __init__(self, mean=None, std=None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)  # (channels,)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)    # (channels,)

    def fit(self, series: list) -> "ChannelScaler":
        steps = np.concatenate(series, axis=0)  # (all valid steps, channels)
        self.mean = steps.mean(0).astype(np.float32)
        self.std = np.maximum(steps.std(0), 1e-8).astype(np.float32)
        return self

    def transform(self, series: list) -> list:
        """[(time_i, channels)] -> the same shapes, z-scored."""
        return [(x - self.mean) / self.std for x in series]

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


MAX_AUTO_STEPS = 25  # PATCH=0: series longer than 2x this are patched down to at most this many steps


def resolve_patch(patch: int, longest: int) -> int:
    """PATCH=0 (auto): long series get the smallest patch leaving <= MAX_AUTO_STEPS steps, short ones
    (<= 2 * MAX_AUTO_STEPS steps) none; any other value is kept."""
    if patch != 0:
        return patch
    return 1 if longest <= 2 * MAX_AUTO_STEPS else -(-longest // MAX_AUTO_STEPS)


def patch_series(x, patch: int):
    """Group `patch` consecutive steps into one input vector: (time, channels) ->
    (ceil(time/patch), patch*channels). The last, partial patch repeats the final value (edge padding),
    so no made-up zeros enter the model. patch=1 returns x unchanged."""
    if patch <= 1:
        return x
    steps = -(-len(x) // patch)
    tail = np.repeat(x[-1:], steps * patch - len(x), axis=0)      # the last step, repeated
    padded = np.concatenate([x, tail], axis=0)                      # (steps*patch, channels)
    return padded.reshape(steps, patch * x.shape[1])


class SeriesDataset(Dataset):
    """(series (time, features) float32 tensor, class index) pairs; lengths may differ."""

    def __init__(self, series: list, y):
        self.series = [torch.as_tensor(x, dtype=torch.float32) for x in series]
        self.y = torch.as_tensor(y, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i):
        return self.series[i], self.y[i]


def collate_series(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(series (time_i, features), label)] -> x: (batch, max_len, features) zero-padded, lengths: (batch,)
    long on CPU (for packing), y: (batch,). The padding is never read: the model packs the batch by
    lengths."""
    series, y = zip(*batch)
    lengths = torch.tensor([len(s) for s in series], dtype=torch.long)
    x = nn.utils.rnn.pad_sequence(list(series), batch_first=True)
    return x, lengths, torch.stack(y)


def series_test_subset(n_test: int, max_test: int | None = None):
    """Indices of the test series to use: all of them, or (smoke tests) a random max_test of them drawn
    with a fixed seed, so every seed and every ensemble member is scored on the same series."""
    if max_test and max_test < n_test:
        return np.sort(np.random.default_rng(0).choice(n_test, max_test, replace=False))
    return np.arange(n_test)


def prepare_series_splits(data: dict, val_fraction: float, seed: int, patch: int = 1,
                          max_train: int | None = None, max_test: int | None = None) -> dict:
    """Official train/test split -> train/validation/test SeriesDatasets, z-scored per channel with
    statistics of the training part only, optionally patched (patch=0: automatic, see MAX_AUTO_STEPS).
    max_train/max_test subsample (for --quick).
    -> {"train", "val", "test": SeriesDataset, "scaler": ChannelScaler, "n_features": int, "patch": int,
        "val_idx": indices into the official training set, "test_idx": indices into the test set}"""
    X, y = data["train"]
    X_test, y_test = data["test"]
    if max_train and max_train < len(X):
        keep = stratified_split(y, max_train / len(X), seed)[1]
        X, y = [X[i] for i in keep], y[keep]
    test_idx = series_test_subset(len(X_test), max_test)
    tr, va = stratified_split(y, val_fraction, seed)
    scaler = ChannelScaler().fit([X[i] for i in tr])
    patch = resolve_patch(patch, data["lengths"][1])

    def make(series, labels):  # (time, channels) -> (ceil(time/patch), patch*channels) each
        return SeriesDataset([patch_series(x, patch) for x in scaler.transform(series)], labels)

    return {"train": make([X[i] for i in tr], y[tr]), "val": make([X[i] for i in va], y[va]),
            "test": make([X_test[i] for i in test_idx], y_test[test_idx]), "scaler": scaler,
            "n_features": data["n_channels"] * patch, "patch": patch, "val_idx": va, "test_idx": test_idx}


def series_loaders(splits: dict, batch_size: int, seed: int) -> dict:
    """DataLoaders for train (shuffled with a seeded generator), val and test, collated for packing."""
    g = torch.Generator().manual_seed(seed)
    make = lambda ds, shuffle: DataLoader(  # noqa: E731
        ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_series,
        generator=g if shuffle else None)
    return {"train": make(splits["train"], True), "val": make(splits["val"], False),
            "test": make(splits["test"], False)}


def series_test_set(data: dict, ckpt: dict, max_test: int | None = None):
    """The official test set prepared exactly as the checkpoint's model saw its data (its train-only
    scaler, its patch). -> (SeriesDataset, test indices into the official test file)."""
    X_test, y_test = data["test"]
    idx = series_test_subset(len(X_test), max_test)
    scaler = ChannelScaler(ckpt["scaler"]["mean"], ckpt["scaler"]["std"])
    series = [patch_series(x, ckpt["patch"]) for x in scaler.transform([X_test[i] for i in idx])]
    return SeriesDataset(series, y_test[idx]), idx


# ----------------------------------------------------------------------------------------------------
# The model: packed RNN -> pooling over valid steps -> linear
# ----------------------------------------------------------------------------------------------------
class SeriesClassifier(nn.Module):
    """(bi)LSTM or (bi)GRU over a packed batch of series, pooled over the *valid* steps, then a linear
    layer to class logits.

    pooling: 'last' = the state at each series' own last step (for a bidirectional layer: the forward
    direction's final state and the backward direction's state at t=0, each having read the whole series);
    'mean' = the average of the outputs over valid steps only; 'last+mean' = both, concatenated.
    Padding never enters: the batch is packed by `lengths`, so the RNN stops at each series' end (§5).
    """

    POOLINGS = ("last", "mean", "last+mean")

    def __init__(self, cell: str, impl: str, n_features: int, n_classes: int, hidden_size: int = 64,
                 num_layers: int = 1, bidirectional: bool = True, pooling: str = "last+mean",
                 dropout: float = 0.0, device: torch.device | str = "cpu"):
        super().__init__()
        if pooling not in self.POOLINGS:
            raise UserError(f"--POOLING must be one of {', '.join(self.POOLINGS)}; got {pooling!r}.")
        # everything needed to rebuild the model from a checkpoint (impl is not: weights are the same)
        self.config = dict(cell=cell, n_features=n_features, n_classes=n_classes, hidden_size=hidden_size,
                           num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
                           dropout=dropout)
        self.rnn = make_rnn(cell, impl, n_features, hidden_size, num_layers, dropout=dropout,
                            bidirectional=bidirectional, device=device)
        self.directions = 2 if bidirectional else 1  # §6: a backward layer reads each series from its end
        width = self.directions * hidden_size * (2 if pooling == "last+mean" else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, features) zero-padded; lengths: (batch,) long -> logits (batch, classes)."""
        # packing (§5): the RNN runs each series for its own length; padded steps are never computed
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)  # out: packed (sum of lengths, directions*hidden)
        # an LSTM returns (h_n, c_n): the cell state c (L5) is its private memory, the classifier reads
        # h (L6); a GRU has no cell state and returns h_n alone (G4)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers*directions, batch, hidden)
        pooled = []
        if self.config["pooling"] in ("last", "last+mean"):
            # the top layer's final state per direction, taken at each series' own last step
            pooled.append(torch.cat(list(h_n[-self.directions:]), dim=-1))  # (batch, directions*hidden)
        if self.config["pooling"] in ("mean", "last+mean"):
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)  # (batch, max_len, dir*hidden)
            # (P1) masked mean (THEORY.md §5.1): the outputs past each end are 0 and add nothing to the
            # sum, and the sum is divided by the series' own length, not max_len
            pooled.append(out.sum(1) / lengths.to(out.device, out.dtype).unsqueeze(1))  # (batch, dir*hidden)
        return self.head(torch.cat(pooled, dim=-1))  # (batch, pooled width) -> (batch, classes)


# ----------------------------------------------------------------------------------------------------
# One training step in plain sight, the same forward for validation, and the numbers early stopping watches
# ----------------------------------------------------------------------------------------------------
def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer,
               clip: float | None) -> tuple[float, float, int]:
    """One gradient step on a padded batch of series: what `fit` runs for every training batch.
    batch: x (batch, max_len, features) zero-padded, lengths (batch,), y (batch,) class indices.
    -> (the batch's mean cross-entropy, the gradient norm before clipping, series in the batch)."""
    device = next(model.parameters()).device
    x, lengths, y = batch
    x, y = x.to(device), y.to(device)                  # lengths stay on the CPU, as packing wants
    logits = model(x, lengths)                         # (batch, classes): packed RNN -> pooled -> linear (§5)
    loss = nn.functional.cross_entropy(logits, y)      # mean over the batch of -log softmax(logits)[y]
    value = loss.item()
    stop_if_not_finite("loss", value, optimizer)       # a NaN stops here, before it reaches the weights
    optimizer.zero_grad(set_to_none=True)              # .grad accumulates: clear the last batch's
    loss.backward()                                    # BPTT over each series' valid steps only (§4, §5)
    norm = clip_gradients(model, clip)                 # ||g|| before clipping, then g capped at clip (C2)
    stop_if_not_finite("gradient norm", norm, optimizer)
    optimizer.step()                                   # the AdamW update
    return value, norm, y.shape[0]


def eval_step(model: nn.Module, batch) -> tuple:
    """The same forward and loss without the update, for validation and test (`evaluate`):
    a batch (x, lengths, y) -> (mean cross-entropy, logits (batch, classes), y (batch,)).
    The logits (not just the argmax) go to `series_metrics`, which needs probabilities."""
    device = next(model.parameters()).device
    x, lengths, y = batch                              # (batch, max_len, features), (batch,), (batch,)
    x, y = x.to(device), y.to(device)
    logits = model(x, lengths)                         # (batch, classes)
    return nn.functional.cross_entropy(logits, y), logits.detach(), y


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2PR/(P+R); a class with no true and no predicted case is
    skipped, one that is never predicted counts F1 = 0."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def series_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """Accuracy, macro-F1 and the model-selection score from logits (n, classes) and targets (n,).

    selection = accuracy - 0.001 * cross-entropy: early stopping on validation accuracy, with the loss
    breaking ties (tiny validation sets, e.g. 10 series, give the same accuracy for many epochs)."""
    pred = logits.argmax(1)
    accuracy = (pred == targets).float().mean().item()
    nll = nn.functional.cross_entropy(logits.float(), targets).item()
    return {"accuracy": accuracy, "macro_f1": macro_f1(targets.numpy(), pred.numpy(), logits.shape[1]),
            "selection": accuracy - 1e-3 * min(nll, 100.0)}


# ----------------------------------------------------------------------------------------------------
# Training one member; averaging an ensemble's members (the loop over members is in the twins)
# ----------------------------------------------------------------------------------------------------
def train_series_classifier(build_model: Callable, data: dict, seed: int, device: torch.device, *,
                            val_fraction: float, patch: int, batch_size: int, epochs: int, lr: float,
                            weight_decay: float, patience: int, clip: float, refit: bool = False,
                            max_train: int = 0, max_test: int = 0, progress: ProgressLog | None = None,
                            verbose: bool = True) -> dict:
    """Train one classifier on one UCR/UEA problem from `seed` (its weights, batch order and validation
    split) and evaluate it on the official test set. Writes nothing: `ensemble_result` saves the files.

    build_model(n_features, n_classes) -> SeriesClassifier on `device` (the LSTM/GRU script's choice).
    Early stopping keeps the epoch with the best validation accuracy - 0.001 * NLL (`series_metrics`);
    the learning rate is halved when that stalls; refit=True then retrains on train + validation.
    `progress` (a ProgressLog) watches every epoch; verbose=False trains without a bar or epoch lines.
    -> {"metrics": {...}, "history": [...], "model", "splits", "probs": (n_test, classes) array,
        "logits": (n_test, classes) tensor, "checkpoint_extra": what a checkpoint needs beside the weights}
    """
    set_seed(seed)
    if torch.device(device).type == "cpu":
        # batches of 16 short series are too small to split across threads: on a shared 2-core CPU one
        # thread per process measured ~4x faster than two (which fight each other and other processes)
        torch.set_num_threads(1)
    t0 = time.time()
    splits = prepare_series_splits(data, val_fraction, seed, patch, max_train, max_test)
    loaders = series_loaders(splits, batch_size, seed)
    model = build_model(splits["n_features"], len(data["classes"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    # halve the learning rate when validation stops improving: small steps settle into a sharper optimum
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                           patience=max(2, patience // 3))
    extra = {**checkpoint_tag(SERIES_CASE, model.config["cell"]), "model_config": model.config,
             "classes": data["classes"], "dataset": data["name"],
             "scaler": splits["scaler"].to_dict(), "patch": splits["patch"], "seed": seed,
             "val_idx": splits["val_idx"].tolist()}
    # every batch is one train_step; the best weights are restored at the end
    run = fit(model, loaders["train"], loaders["val"], train_step=train_step, eval_step=eval_step,
              epochs=epochs, optimizer=optimizer, metrics_fn=series_metrics, monitor="selection", mode="max",
              patience=patience, clip=clip, scheduler=scheduler, progress=progress, verbose=verbose)
    best = run["history"][run["best_epoch"] - 1]
    if refit:
        watch = progress.for_run(f"{progress.run} refit".strip()) if progress else None  # a run of its own
        model, _ = refit_on_train_and_val(build_model, splits, len(data["classes"]), seed,
                                          run["history"][:run["best_epoch"]], batch_size=batch_size,
                                          weight_decay=weight_decay, clip=clip, progress=watch,
                                          verbose=verbose)
    test = evaluate(model, loaders["test"], eval_step, series_metrics, desc="test")
    logits = test["predictions"].float()  # (n_test, classes)
    metrics = {"dataset": data["name"], "seed": seed, "test_accuracy": test["accuracy"],
               "test_macro_f1": test["macro_f1"], "test_loss": test["loss"],
               "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"],
               "best_epoch": run["best_epoch"], "epochs_run": run["epochs_run"],
               "patch": splits["patch"], "n_train": len(splits["train"]), "n_val": len(splits["val"]),
               "n_test": len(splits["test"]), "refit": bool(refit),
               "parameters": count_parameters(model), "train_time_s": round(time.time() - t0, 2)}
    return {"metrics": metrics, "history": run["history"], "model": model, "splits": splits,
            "probs": torch.softmax(logits, dim=1).numpy(), "logits": logits,
            "checkpoint_extra": extra}


def refit_on_train_and_val(build_model: Callable, splits: dict, n_classes: int, seed: int,
                           history: list[dict], *, batch_size: int, weight_decay: float,
                           clip: float, progress: ProgressLog | None = None,
                           verbose: bool = True) -> tuple[nn.Module, dict]:
    """A fresh model trained on training + validation series for exactly the epochs early stopping chose,
    replaying that run's learning rate epoch by epoch (the LR halvings were triggered by validation).

    With 50 training series (GunPoint), holding 10 out for early stopping costs a fifth of the data; the
    held-out series have done their job once the epoch count is known. Nothing here looks at the test set.
    """
    set_seed(seed + 10_000)  # new weights: not a continuation of the first run
    both = ConcatDataset([splits["train"], splits["val"]])
    loader = DataLoader(both, batch_size=batch_size, shuffle=True, collate_fn=collate_series,
                        generator=torch.Generator().manual_seed(seed))
    model = build_model(splits["n_features"], n_classes)
    lrs = [row["lr"] for row in history]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lrs[0], weight_decay=weight_decay)
    replay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lrs[min(e, len(lrs) - 1)] / lrs[0])
    print(f"refit: a fresh model on {len(both)} series (train + validation) for {len(lrs)} epochs")
    # the validation split is inside the training data now: fit's validation numbers are not a score
    val_loader = DataLoader(splits["val"], batch_size=batch_size, collate_fn=collate_series)
    result = fit(model, loader, val_loader, train_step=train_step, eval_step=eval_step, epochs=len(lrs),
                 optimizer=optimizer, metrics_fn=series_metrics, monitor="selection", mode="max",
                 patience=len(lrs) + 1, clip=clip, scheduler=replay, restore_best=False, progress=progress,
                 verbose=verbose)
    return model, {**result, "n_series": len(both)}


def ensemble_result(runs: list[dict], data: dict, seed: int, out: Path | None = None) -> dict:
    """The members trained for one SEED (each a `train_series_classifier` run) -> one result.

    One member is returned as it is. Several are averaged the one way this project averages (THEORY.md §8):
    log of the members' mean class probability (`log_mean_probability`), which stands where logits stand,
    so `series_metrics` scores the ensemble like a single model.
    With `out`: checkpoint.pt (one model, or every member with its own scaler: `load_series_members`),
    predictions.csv, and training_curves.png (the members' curves overlaid).
    -> as `train_series_classifier`; for an ensemble the metrics add each member's test accuracy and best
    epoch, the history and splits are the first member's, and 'model' is the list of members."""
    first, classes = runs[0], data["classes"]
    cell = first["model"].config["cell"].upper()
    if len(runs) == 1:
        if out is not None:
            refit = {"refit": True} if first["metrics"]["refit"] else {}  # weights of the refit model
            save_checkpoint({"state_dict": first["model"].state_dict(),
                             "epoch": first["metrics"]["best_epoch"], **refit,
                             **first["checkpoint_extra"]}, out / "checkpoint.pt")
            save_series_predictions(out / "predictions.csv", first["splits"]["test_idx"],
                                    first["splits"]["test"].y.numpy(), first["probs"], classes)
            plot_training_curves(first["history"], out / "training_curves.png",
                                 title=f"{cell}，{data['name']}（种子 {seed}）\n"
                                       f"{cell} on {data['name']} (seed {seed})",
                                 metrics=["val_accuracy", "val_macro_f1"])
        return first
    logp = log_mean_probability([r["logits"] for r in runs])  # (n_test, classes): log mean probability
    probs = logp.exp().numpy()
    y = first["splits"]["test"].y  # (n_test,)
    scores = series_metrics(logp, y)  # argmax of logp is the ensemble's vote
    singles = [r["metrics"] for r in runs]
    metrics = {**singles[0], "seed": seed, "ensemble_members": len(runs),
               "member_seeds": [m["seed"] for m in singles], "test_accuracy": scores["accuracy"],
               "test_macro_f1": scores["macro_f1"],
               "test_loss": nn.functional.cross_entropy(logp, y).item(),  # the ensemble's NLL
               "member_test_accuracy": [m["test_accuracy"] for m in singles],
               "val_accuracy": float(np.mean([m["val_accuracy"] for m in singles])),  # each on its own split
               "val_loss": float(np.mean([m["val_loss"] for m in singles])),
               "best_epoch": [m["best_epoch"] for m in singles],
               "epochs_run": [m["epochs_run"] for m in singles],
               "parameters": sum(m["parameters"] for m in singles),
               "train_time_s": round(sum(m["train_time_s"] for m in singles), 2)}
    if out is not None:
        save_checkpoint({**checkpoint_tag(SERIES_CASE, first["model"].config["cell"]),
                         "members": [{"state_dict": r["model"].state_dict(),
                                      **r["checkpoint_extra"]} for r in runs],
                         "model_config": first["model"].config, "classes": classes,
                         "dataset": data["name"], "seed": seed}, out / "checkpoint.pt")
        save_series_predictions(out / "predictions.csv", first["splits"]["test_idx"], y.numpy(), probs,
                                classes)
        plot_training_curves({f"成员 {k + 1}（种子 {r['metrics']['seed']}） / "
                              f"member {k + 1} (seed {r['metrics']['seed']})": r["history"]
                              for k, r in enumerate(runs)}, out / "training_curves.png",
                             title=f"{cell} 的 {len(runs)} 模型集成，{data['name']}：每个成员的曲线\n"
                                   f"{cell} ensemble of {len(runs)} on {data['name']}: each member's curves",
                             metrics=["val_accuracy"])
    return {"metrics": metrics, "history": first["history"], "model": [r["model"] for r in runs],
            "splits": first["splits"], "probs": probs, "logits": logp}


# ----------------------------------------------------------------------------------------------------
# Saving and loading: predictions.csv, checkpoint.pt of one model or of an ensemble
# ----------------------------------------------------------------------------------------------------
def save_series_predictions(path: Path | str, test_idx, y_true, probs, classes) -> Path:
    """CSV: one row per test series (index in the official test file), true and predicted label, and the
    predicted probability of every class. probs: (n_test, classes)."""
    probs = np.asarray(probs)

    def write(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["test_index", "true", "predicted", "correct"] + [f"p_{c}" for c in classes])
            for i, t, pr in zip(test_idx, y_true, probs):
                k = int(np.argmax(pr))
                w.writerow([int(i), classes[int(t)], classes[k], int(k == int(t))]
                           + [f"{v:.6f}" for v in pr])

    return atomic_write(path, write)


def load_series_members(path: Path | str, impl: str = "torch", device: torch.device | str = "cpu",
                        cell: str | None = None, dataset: str | None = None, script: str = "") -> list:
    """checkpoint.pt of a sequence_*.py run -> [(SeriesClassifier in eval mode, its data settings)], one
    pair per ensemble member (a single model is a list of one). The data settings (train-only scaler,
    patch, classes) differ between members because each one was fitted on its own training split.
    A file of another case, of the other cell than `cell`, trained on another `dataset`, or one whose parts
    do not fit together is refused in one line (`script` names who refuses it)."""
    ckpt = load_checkpoint(path, map_location=device,
                           expected=f"a {SERIES_CASE} {cell.upper() if cell else 'model'} checkpoint")
    check_checkpoint(ckpt, path, case=SERIES_CASE, cell=cell, needs=("model_config",), script=script)
    if dataset and ckpt.get("dataset") not in (None, dataset):
        raise UserError(f"{path} holds a model trained on {ckpt['dataset']}, not on {dataset}; train one on "
                        f"{dataset} (--DATASET={dataset}).")
    shared = {k: v for k, v in ckpt.items() if k not in ("members", "state_dict")}
    pairs = []
    with weights_that_fit(path):  # a damaged or hand-edited file: one line, not a traceback
        for member in ckpt.get("members", [ckpt]):
            model = SeriesClassifier(impl=impl, device=device, **ckpt["model_config"]).to(device)
            model.load_state_dict(member["state_dict"])
            settings = {k: v for k, v in member.items() if k != "state_dict"}  # its scaler, patch, seed
            pairs.append((model.eval(), {**shared, **settings}))
    return pairs


def predict_series_probabilities(members: list, data: dict, max_test: int | None = None):
    """Class probabilities of `load_series_members`' pairs on the official test set, each member's input
    prepared as at its training time, averaged as `ensemble_result` does (log mean probability).
    -> (probs (n_test, classes), test indices)."""
    logits = []
    for model, settings in members:
        test_set, test_idx = series_test_set(data, settings, max_test)
        loader = DataLoader(test_set, batch_size=64, collate_fn=collate_series)
        result = evaluate(model, loader, eval_step, series_metrics)
        logits.append(result["predictions"].float())  # (n_test, classes)
    return log_mean_probability(logits).exp().numpy(), test_idx


# ----------------------------------------------------------------------------------------------------
# Reporting: outputs/05_seq_classify/<script>/<DATASET>/ per dataset, one metrics.json over all datasets
# ----------------------------------------------------------------------------------------------------
def series_run_dir(script_file: str, dataset: str, quick: bool = False) -> Path:
    """outputs/05_seq_classify/<script>/<DATASET>/ for real runs, .../quick/<DATASET>/ for --quick ones
    (output_dir's quick/), so a smoke test never overwrites a trained checkpoint or its plots."""
    return output_dir(script_file, sub=dataset, quick=quick)


def merge_dataset_metrics(path: Path | str, summaries: dict) -> dict:
    """The per-dataset entries of an existing metrics.json (earlier runs on other datasets), updated with
    `summaries` ({dataset: {...}}). A --quick run writes its own metrics.json under quick/, so it never
    meets a real run's entries. An unreadable old file is simply replaced."""
    merged = {}
    if Path(path).is_file():
        try:
            merged = load_metrics(path).get("metrics", {}).get("datasets", {}) or {}
        except (ValueError, AttributeError):
            merged = {}
    merged.update(summaries)
    return merged


def report_series_runs(script_file: str, runs: list[dict], config: dict, device, start_time: float, *,
                       quick: bool, ensemble: int, single_dataset: bool) -> dict:
    """Summarise runs (one per dataset and seed, from `ensemble_result`): a table on screen,
    outputs/<case>/<script>/<DATASET>/metrics.json per dataset, and the script-level metrics.json with
    one entry per dataset ever run (entries of other datasets from earlier runs are kept, each with
    its own config and time) plus an accuracy bar chart over them. config: the script's constants (recorded);
    ensemble: models per seed; single_dataset: the run asked for one dataset (its numbers go to the top)."""
    by_dataset: dict[str, list[dict]] = {}
    for r in runs:
        by_dataset.setdefault(r["metrics"]["dataset"], []).append(r)
    summaries = {}
    for name, group in by_dataset.items():
        rows = [r["metrics"] for r in group]
        summary = {"dataset": name, "seeds": [m["seed"] for m in rows], "quick": quick,
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "config": config}
        for key in ("test_accuracy", "test_macro_f1", "test_loss", "train_time_s"):
            values = np.array([m[key] for m in rows], dtype=float)
            summary[f"{key}_mean"] = float(values.mean())
            summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        singles = [a for m in rows for a in m.get("member_test_accuracy", [m["test_accuracy"]])]
        summary["ensemble_members"] = rows[0].get("ensemble_members", 1)
        summary["single_model_test_accuracy_mean"] = float(np.mean(singles))  # every member of every seed
        summary["single_model_test_accuracy_std"] = float(np.std(singles,
                                                                 ddof=1)) if len(singles) > 1 else 0.0
        summary.update({k: rows[0][k] for k in ("parameters", "n_train", "n_val", "n_test")})
        summary["per_seed"] = rows
        summaries[name] = summary
        save_metrics(series_run_dir(script_file, name, quick), config=config, metrics=summary,
                     history=group[0]["history"], start_time=start_time, device=device)

    out = output_dir(script_file, quick=quick)
    merged = merge_dataset_metrics(out / "metrics.json", summaries)
    metrics = {"datasets": merged, "run_now": list(summaries), "quick": quick}
    if single_dataset:  # a single-dataset run: its numbers at the top too
        only = next(iter(summaries.values()))
        metrics.update({k: only[f"{k}_mean"] for k in ("test_accuracy", "test_macro_f1", "test_loss")})
        metrics["dataset"] = only["dataset"]
    save_metrics(out, config=config, metrics=metrics, start_time=start_time, device=device)

    stem = Path(script_file).stem
    names, label = list(merged), f"{stem} 测试准确率 / {stem} test accuracy"
    plot_bars(names, {label: [merged[n]["test_accuracy_mean"] for n in names]}, out / "test_accuracy.png",
              ylabel="测试准确率 / test accuracy",
              errors={label: [merged[n]["test_accuracy_std"] for n in names]},
              title="各 UCR/UEA 数据集的测试准确率（各种子的均值 ± 标准差）\n"
                    "Test accuracy per UCR/UEA problem (mean ± std over seeds)")
    if quick:
        print(f"--quick: results are in {out}; a full run's results are untouched.")
    print_table([{"dataset": s["dataset"], "seeds": len(s["seeds"]),
                  "test acc": f"{s['test_accuracy_mean']:.4f} ± {s['test_accuracy_std']:.4f}",
                  **({"one model": f"{s['single_model_test_accuracy_mean']:.4f}"} if ensemble > 1 else {}),
                  "macro-F1": s["test_macro_f1_mean"], "test loss": s["test_loss_mean"],
                  "median epoch": int(np.median([m["best_epoch"] for m in s["per_seed"]])),
                  "params": s["parameters"], "train s": s["train_time_s_mean"]}
                 for s in summaries.values()],
                title=f"{Path(script_file).stem}: official test split (best-validation epochs"
                      + (f"; ensembles of {ensemble}, 'one model' = their members' mean)" if ensemble > 1
                         else ")"))
    return metrics


# ----------------------------------------------------------------------------------------------------
# Plots of classification_metrics.py: ROC curves, reliability diagram, misclassified series
# ----------------------------------------------------------------------------------------------------
def plot_roc_curves(curves: dict[str, tuple], path: Path | str, title: str = "") -> Path:
    """curves: {name: (fpr, tpr, auc)} drawn on one axis with the chance diagonal."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        shown = f"{name.replace('class ', '类别 ')} / {name}" if name.startswith("class ") else name
        ax.plot(fpr, tpr, lw=1.3, label=f"{shown} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="随机猜测 / chance")
    ax.set_xlabel("假阳性率 / false positive rate")
    ax.set_ylabel("真阳性率 / true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_reliability(models: dict[str, list[dict]], path: Path | str, title: str = "") -> Path:
    """Reliability diagram: accuracy against mean confidence per confidence bin (bins as returned by
    classification_metrics.calibration); a calibrated model lies on the diagonal. Marker size ~ bin count."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="完美校准 / perfect calibration")
    for name, bins in models.items():
        conf = [b["confidence"] for b in bins]
        acc = [b["accuracy"] for b in bins]
        sizes = [12 + 4 * b["count"] ** 0.5 for b in bins]
        ax.plot(conf, acc, "-", lw=1, color=color_for(name))
        ax.scatter(conf, acc, s=sizes, label=name, color=color_for(name))
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("置信度（概率最大的类别的概率）\nconfidence (top-class probability)")
    ax.set_ylabel("准确率 / accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def plot_misclassified_series(cases: list[dict], path: Path | str, title: str = "") -> Path:
    """One panel per misclassified series: the series (black) beside a typical series of its true class
    (green) and of the predicted class (red). cases: dicts with 'series' (time, channels), 'true_typical',
    'pred_typical', 'label' (panel title); multichannel series show their first channel."""
    import matplotlib.pyplot as plt

    n = max(len(cases), 1)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[len(cases):]:
        ax.axis("off")
    for ax, case in zip(axes.ravel(), cases):
        ax.plot(case["true_typical"][:, 0], color=COLORS["baseline"], lw=1, alpha=0.8,
                label="真实类别的典型序列 / typical of true class")
        ax.plot(case["pred_typical"][:, 0], color=COLORS["gru"], lw=1, alpha=0.8,
                label="预测类别的典型序列 / typical of predicted class")
        ax.plot(case["series"][:, 0], color="black", lw=1.4, label="分错的序列 / misclassified series")
        ax.set_title(case["label"], fontsize=8)
        ax.grid(alpha=0.3)
    if not cases:
        axes[0, 0].text(0.5, 0.5, "没有分错的序列 / no misclassified series", ha="center", va="center")
    else:
        axes.ravel()[0].legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)

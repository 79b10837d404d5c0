"""Models and training, written once for every case.

- `make_rnn`: an LSTM or GRU layer, either torch.nn's (cuDNN on GPU) or the hand-written
  ScratchLSTM / ScratchGRU from 01_basic_theory (checked against torch.nn before it is used).
- `fit`: the one training loop (tqdm progress, gradient clipping, early stopping on validation,
  best-checkpoint saving, a history row per epoch) and `evaluate`, the one evaluation pass.
- `save_checkpoint` / `load_checkpoint`: atomic save, `weights_only=True` load.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.script_utils import REPO_ROOT, UserError, atomic_write, set_seed

THEORY_DIR = REPO_ROOT / "01_basic_theory"


# ----------------------------------------------------------------------------------------------------
# The recurrent layer: torch.nn or the scratch cells from 01_basic_theory (one source of truth)
# ----------------------------------------------------------------------------------------------------
def load_theory_module(stem: str):
    """Import 01_basic_theory/<stem>.py by path (a folder name starting with a digit is not a package)."""
    name = f"basic_theory_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    path = THEORY_DIR / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def scratch_class(cell: str):
    """ScratchLSTM or ScratchGRU, imported from 01_basic_theory."""
    cell = cell.lower()
    if cell == "lstm":
        return load_theory_module("lstm_from_scratch").ScratchLSTM
    if cell == "gru":
        return load_theory_module("gru_from_scratch").ScratchGRU
    raise UserError(f"cell must be 'lstm' or 'gru', got {cell!r}.")


_CHECKED: set[tuple[str, str]] = set()


def check_scratch(cell: str, device: torch.device | str = "cpu") -> float:
    """Fast equivalence check of the scratch cell against torch.nn before a case trains with it.

    Runs once per (cell, device) in a process. A mismatch stops the script with a clear message: a case
    must never train on a cell that disagrees with the reference implementation.
    """
    cell = cell.lower()
    key = (cell, str(device))
    module = load_theory_module("lstm_from_scratch" if cell == "lstm" else "gru_from_scratch")
    if key in _CHECKED:
        return 0.0
    try:
        err = module.check_against_torch(device=str(device))
    except AssertionError as e:
        raise UserError(f"the scratch {cell.upper()} in 01_basic_theory disagrees with torch.nn ({e}); "
                        f"fix it (python -m pytest tests/test_scratch_cells.py) or use --IMPL=torch.")
    _CHECKED.add(key)
    print(f"scratch {cell.upper()} matches torch.nn on {device} (max rel. error {err:.1e})")
    return err


def make_rnn(cell: str, impl: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
             dropout: float = 0.0, bidirectional: bool = False, batch_first: bool = True,
             device: torch.device | str = "cpu") -> nn.Module:
    """An LSTM/GRU layer with torch.nn's interface. impl='torch' -> nn.LSTM/nn.GRU (cuDNN on GPU),
    impl='scratch' -> ScratchLSTM/ScratchGRU (hand-written forward and backward, same parameters)."""
    cell, impl = cell.lower(), impl.lower()
    if cell not in ("lstm", "gru"):
        raise UserError(f"cell must be 'lstm' or 'gru', got {cell!r}.")
    if impl == "torch":
        cls = nn.LSTM if cell == "lstm" else nn.GRU
    elif impl == "scratch":
        check_scratch(cell, device)
        cls = scratch_class(cell)
    else:
        raise UserError(f"--IMPL must be 'torch' or 'scratch', got {impl!r}.")
    # torch.nn warns when dropout is set on a single layer: it only acts between layers
    dropout = dropout if num_layers > 1 else 0.0
    return cls(input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout,
               bidirectional=bidirectional)


def init_forget_bias(rnn: nn.Module, value: float = 1.0) -> nn.Module:
    """Set an LSTM's forget-gate bias to `value` (Jozefowicz et al. 2015; THEORY.md 4.4).

    The one implementation lives beside the cell in 01_basic_theory/lstm_from_scratch.py; it works on
    nn.LSTM and ScratchLSTM alike (same parameter names, gate order i, f, g, o).
    """
    return load_theory_module("lstm_from_scratch").init_forget_bias(rnn, value)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def log_mean_probability(member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The one ensemble averager: M members' logits, each (batch, classes) -> log of their mean class
    probability, (batch, classes). It stands wherever logits are expected: softmax gives the mean
    probability back, argmax the ensemble's vote, cross_entropy the ensemble's loss (THEORY.md §8)."""
    logp = torch.stack([z.log_softmax(dim=-1) for z in member_logits])   # (M, batch, classes)
    return torch.logsumexp(logp, dim=0) - math.log(len(member_logits))


def confusion_matrix(y_true, y_pred, n_classes: int):
    """cm[i, j] = how many examples of true class i were predicted as class j (numpy int64)."""
    import numpy as np

    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------
def save_checkpoint(obj: dict, path: Path | str) -> Path:
    """torch.save to a temp file, then rename: an interrupted save never leaves a broken checkpoint.

    Keep `obj` to tensors, numbers, strings, lists and dicts so `load_checkpoint` can use the safe
    `weights_only=True` loader (no arbitrary pickled code).
    """
    return atomic_write(path, lambda p: torch.save(obj, p))


def load_checkpoint(path: Path | str, map_location: Any = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train a model first.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, wrong format, or unsafe pickled objects
        raise UserError(f"checkpoint {path} could not be read ({type(e).__name__}); "
                        "delete it and train again.") from None


# ----------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------
# A case describes one batch with a `step` function:
#     step(model, batch) -> (loss, predictions, targets)
# `loss` is the mean loss over the batch (a scalar tensor with grad in training); `predictions` and
# `targets` are detached tensors (or None) that `metrics_fn(preds, targets) -> dict` turns into
# validation metrics. Moving the batch to the device is the step's job: it knows the batch's shape.

def _batch_size(targets, batch) -> int:
    if targets is not None and hasattr(targets, "shape") and targets.dim() > 0:
        return targets.shape[0]
    return 1


def evaluate(model: nn.Module, loader, step: Callable, metrics_fn: Callable | None = None,
             desc: str = "eval", progress: bool = False) -> dict:
    """One pass without gradients: mean loss, metrics, and the concatenated predictions/targets."""
    model.eval()
    total, n = 0.0, 0
    preds, targs = [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
            loss, p, t = step(model, batch)
            k = _batch_size(t, batch)
            total += float(loss) * k
            n += k
            if p is not None:
                preds.append(p.detach().cpu())
                targs.append(t.detach().cpu())
    result = {"loss": total / max(n, 1)}
    P = torch.cat(preds) if preds else None
    T = torch.cat(targs) if targs else None
    if metrics_fn is not None and P is not None:
        result.update(metrics_fn(P, T))
    result["predictions"], result["targets"] = P, T
    return result


def fit(model: nn.Module, train_loader, val_loader, step: Callable, *, epochs: int,
        optimizer: torch.optim.Optimizer, metrics_fn: Callable | None = None,
        monitor: str = "loss", mode: str = "min", patience: int = 5, clip: float | None = 1.0,
        scheduler: Any = None, checkpoint_path: Path | None = None, checkpoint_extra: dict | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None, max_batches: int | None = None,
        restore_best: bool = True) -> dict:
    """Train with early stopping on a validation metric; return the history and the best epoch.

    - monitor/mode: which validation number decides "best" ('loss'/'min', 'accuracy'/'max', ...).
    - clip: gradient-norm clipping (RNNs can have exploding gradients: THEORY.md §9).
    - scheduler: stepped once per epoch (ReduceLROnPlateau gets the monitored value).
    - checkpoint_path: the best model's state_dict (plus `checkpoint_extra`, e.g. a vocabulary) saved
      atomically whenever validation improves; the best weights are restored at the end either way.
    - on_epoch_end(epoch, row): called after each epoch (it may add entries to `row`, the history
      row); returning True stops training there, like early stopping.
    - restore_best=False keeps the last epoch's weights (a refit with a fixed epoch count).
    """
    if epochs < 1:
        raise UserError(f"--EPOCHS must be at least 1, got {epochs}.")
    sign = 1.0 if mode == "min" else -1.0
    best_value, best_epoch, best_state = math.inf, 0, None
    history: list[dict] = []
    bad_epochs = 0
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        model.train()
        total, n = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True)
        for b, batch in enumerate(bar):
            if max_batches is not None and b >= max_batches:
                break
            loss, _, t = step(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            k = _batch_size(t, batch)
            total += loss.item() * k
            n += k
            bar.set_postfix(loss=f"{total / n:.4f}")
        val = evaluate(model, val_loader, step, metrics_fn, desc="validate")
        row = {"epoch": epoch, "train_loss": total / max(n, 1)}
        row.update({f"val_{k}": v for k, v in val.items() if k not in ("predictions", "targets")})
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["epoch_time_s"] = round(time.time() - t0, 2)
        history.append(row)

        value = row.get(f"val_{monitor}")
        if value is None:
            raise ValueError(f"monitor={monitor!r} is not among the validation metrics {list(val)}")
        improved = sign * value < best_value - 1e-12 if best_state is not None else True  # best_value is signed
        if improved:
            best_value, best_epoch, bad_epochs = sign * value, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint_path is not None:
                save_checkpoint({"state_dict": best_state, "epoch": epoch,
                                 **(checkpoint_extra or {})}, checkpoint_path)
        else:
            bad_epochs += 1
        shown = "  ".join(f"{k}={v:.4f}" for k, v in row.items()
                          if isinstance(v, float) and k not in ("lr", "epoch_time_s"))
        tqdm.write(f"epoch {epoch:3d}  {shown}  ({row['epoch_time_s']:.1f}s){'  *best' if improved else ''}")
        stop = bool(on_epoch_end(epoch, row)) if on_epoch_end is not None else False
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(value)
            else:
                scheduler.step()
        if bad_epochs >= patience:
            tqdm.write(f"early stopping: no improvement in val_{monitor} for {patience} epochs "
                       f"(best epoch {best_epoch}).")
            break
        if stop:  # on_epoch_end returned True, e.g. a time budget is spent
            break
    if best_state is not None and restore_best:
        model.load_state_dict(best_state)
    return {"history": history, "best_epoch": best_epoch, "best_value": sign * best_value,
            "epochs_run": len(history)}


# ----------------------------------------------------------------------------------------------------
# ---- 02_sentiment: review classifier (embedding -> LSTM/GRU -> pooling -> linear) ----
# ----------------------------------------------------------------------------------------------------
class SentimentClassifier(nn.Module):
    """Embedding -> (bi)LSTM or (bi)GRU over packed sequences -> pooled review vector -> class logits.

    The review vector concatenates three summaries of the outputs (D = hidden * directions):
    the final state of each direction (what the cell carried to the end), and the max and mean over
    the *valid* steps only (padding must not vote). Max pooling lets one strong phrase ("masterpiece")
    decide even in a long review, where the final state may have forgotten it.
    `hparams` holds every constructor argument, so a checkpoint can rebuild the model.
    """

    def __init__(self, vocab_size: int, *, cell: str, impl: str = "torch", embed_dim: int = 128,
                 hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.5, embed_dropout: float = 0.3, num_classes: int = 2,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, cell=cell, impl=impl, embed_dim=embed_dim,
                            hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                            dropout=dropout, embed_dropout=embed_dropout, num_classes=num_classes)
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)  # <pad> = 0 stays a zero vector
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.rnn = make_rnn(cell, impl, embed_dim, hidden_size, num_layers, dropout=dropout,
                            bidirectional=bidirectional, device=device)
        if cell.lower() == "lstm":
            init_forget_bias(self.rnn, 1.0)
        d = hidden_size * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(3 * d, num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (batch, time) long, lengths: (batch,) long on CPU  ->  logits: (batch, num_classes)."""
        T = ids.shape[1]
        x = self.embed_dropout(self.embedding(ids))                           # (B, T, E)
        # packing: the cell runs each review for exactly its own length, never over <pad>
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state                 # LSTM: (h_n, c_n); (L*dirs, B, H)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D)
        last = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]  # (B, D)
        mask = (torch.arange(T, device=ids.device)[None, :] < lengths.to(ids.device)[:, None])[..., None]
        peak = out.masked_fill(~mask, float("-inf")).max(dim=1).values        # (B, D)
        mean = (out * mask).sum(dim=1) / lengths.to(ids.device)[:, None].clamp_min(1)  # (B, D)
        return self.head(self.dropout(torch.cat([last, peak, mean], dim=1)))  # (B, classes)


class SentimentEnsemble(nn.Module):
    """A seed ensemble: several SentimentClassifiers of the same shape, trained from different seeds on the
    same data; the prediction is the mean of their class probabilities.

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
        logp = torch.stack([m(ids, lengths).log_softmax(dim=-1) for m in self.members])  # (M, B, classes)
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))              # log mean prob


def sentiment_step(device: torch.device | str) -> Callable:
    """The `step` for `fit`/`evaluate`: a (ids, lengths, labels) batch -> (loss, predictions, labels)."""
    def step(model, batch):
        ids, lengths, labels = batch
        labels = labels.to(device)
        logits = model(ids.to(device), lengths)  # lengths stay on CPU for packing
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


def confusion_counts(preds: torch.Tensor, targets: torch.Tensor, num_classes: int = 2) -> list[list[int]]:
    """cm[i][j] = how many reviews of true class i were predicted as class j."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    cm.index_put_((targets.long().cpu(), preds.long().cpu()), torch.ones(len(targets), dtype=torch.long),
                  accumulate=True)
    return cm.tolist()


def predict_proba(model: nn.Module, encoded: list[list[int]], device: torch.device | str) -> list[float]:
    """P(positive) for each already-encoded review (id lists of length >= 1)."""
    from utils.data_utils import pad_batch

    model.eval()
    ids, lengths = pad_batch(encoded)
    with torch.no_grad():
        return torch.softmax(model(ids.to(device), lengths), dim=1)[:, 1].tolist()


def sentiment_checkpoint_extra(model: nn.Module, vocab, max_len: int, dataset: str) -> dict:
    """What is stored beside the weights: enough to rebuild the model (and how many members an ensemble
    has) and to re-encode new text."""
    members = len(model.members) if isinstance(model, SentimentEnsemble) else 1
    return {"hparams": dict(model.hparams), "members": members, "vocab": vocab.to_list(), "max_len": max_len,
            "dataset": dataset}


def load_sentiment_model(path: Path | str, device: torch.device | str = "cpu"):
    """A saved model.pt -> (model on device, Vocab, checkpoint dict); a mismatched file is refused."""
    from utils.data_utils import Vocab

    ckpt = load_checkpoint(path, map_location=device)
    if not isinstance(ckpt, dict) or not {"state_dict", "hparams", "vocab"} <= set(ckpt):
        raise UserError(f"{path} is not a sentiment checkpoint (it needs state_dict, hparams and vocab); "
                        f"train one with 02_sentiment/sentiment_lstm.py.")
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
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise UserError(f"the weights in {path} do not fit the model its hyperparameters describe ({first}); "
                        f"retrain the model.") from None
    return model, vocab, ckpt


def train_sentiment_model(model: nn.Module, data: dict, device: torch.device | str, *, epochs: int,
                          lr: float, weight_decay: float, patience: int, clip: float,
                          checkpoint_path: Path | None = None, checkpoint_extra: dict | None = None) -> dict:
    """AdamW + `fit`, keeping the epoch with the best validation accuracy (early stopping on it).
    Returns fit's result plus 'train_time_s'."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    t0 = time.time()
    result = fit(model, data["loaders"]["train"], data["loaders"]["val"], sentiment_step(device),
                 epochs=epochs, optimizer=optimizer, metrics_fn=binary_metrics, monitor="accuracy",
                 mode="max", patience=patience, clip=clip, scheduler=scheduler,
                 checkpoint_path=checkpoint_path, checkpoint_extra=checkpoint_extra)
    result["train_time_s"] = round(time.time() - t0, 2)
    return result


def ensemble_member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members: seed*members + k, so two SEEDs never share a member."""
    if members < 1:
        raise UserError(f"--ENSEMBLE must be at least 1, got {members}.")
    return [seed * members + k for k in range(members)]


def train_sentiment_ensemble(build_model: Callable, data: dict, device: torch.device | str, *, members: int,
                             seed: int, checkpoint_path: Path, checkpoint_extra: Callable, **train_args):
    """Train `members` models from `build_model(vocab_size, device)`, member k from seed seed*members + k
    (so two SEEDs never share a member), each with `train_sentiment_model` (early stopping on its own
    validation accuracy). One member is returned as it is; several as a `SentimentEnsemble`.
    The model is saved once at the end, atomically: checkpoint_extra(model) -> what goes beside the weights.
    Returns (model, result): result has each member's fit result under 'members' and the total train time."""
    models, fits = [], []
    for k, member_seed in enumerate(ensemble_member_seeds(seed, members)):
        if members > 1:
            tqdm.write(f"--- ensemble member {k + 1} of {members} (seed {member_seed}) ---")
        set_seed(member_seed)
        model = build_model(len(data["vocab"]), device)
        if k == 0:
            hp = model.hparams
            tqdm.write(f"{hp['cell'].upper()} classifier: {count_parameters(model):,} parameters ({hp['impl']})"
                       + (f"; {members} of them are trained and averaged" if members > 1 else ""))
        fits.append(train_sentiment_model(model, data, device, **train_args))
        models.append(model)
    model = models[0] if members == 1 else SentimentEnsemble(models).to(device)
    save_checkpoint({"state_dict": model.state_dict(), **checkpoint_extra(model)}, checkpoint_path)
    return model, {"members": fits, "train_time_s": round(sum(f["train_time_s"] for f in fits), 2)}


def test_sentiment_model(model: nn.Module, loader, device: torch.device | str) -> dict:
    """Test loss, accuracy, precision/recall/F1, confusion matrix and inference speed (reviews/s)."""
    t0 = time.time()
    res = evaluate(model, loader, sentiment_step(device), binary_metrics)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = max(time.time() - t0, 1e-9)
    metrics = {k: v for k, v in res.items() if k not in ("predictions", "targets")}
    metrics["confusion_matrix"] = confusion_counts(res["predictions"], res["targets"])
    metrics["reviews_per_s"] = round(len(res["targets"]) / seconds, 1)
    return metrics


def classify_reviews(model: nn.Module, vocab, reviews: list[str], max_len: int, device: torch.device | str,
                     title: str = "Hand-written reviews") -> list[dict]:
    """Hand-written reviews -> printed rows {review, P(positive), verdict, unknown words}, checked first
    (an empty or all-unknown review is refused with one sentence; a long one is truncated)."""
    from utils.data_utils import SENTIMENT_LABELS, check_review
    from utils.script_utils import print_table

    encoded = [check_review(r, vocab, max_len) for r in reviews]
    rows = []
    for text, ids, p in zip(reviews, encoded, predict_proba(model, encoded, device)):
        shown = text if len(text) <= 60 else text[:57] + "..."
        rows.append({"review": shown, "P(positive)": round(p, 3), "verdict": SENTIMENT_LABELS[int(p >= 0.5)],
                     "unknown words": sum(i == 1 for i in ids)})
    print_table(rows, title=title, floatfmt=".3f")
    return rows

def report_sentiment(model: nn.Module, data: dict, fit_result: dict, out: Path, *, name: str, dataset: str,
                     device: torch.device | str) -> dict:
    """Test the trained model (and, for an ensemble, each member alone), print the table, save training
    curves and the confusion matrix, and return the metrics for metrics.json (same keys for LSTM and GRU).
    fit_result: what `train_sentiment_ensemble` returned."""
    from utils.data_utils import SENTIMENT_LABELS
    from utils.script_utils import print_table
    from utils.visualization import plot_confusion_matrix, plot_training_curves

    fits = fit_result["members"]
    members = list(model.members) if isinstance(model, SentimentEnsemble) else [model]
    rows, singles = [], []
    for k, (member, fit_k) in enumerate(zip(members, fits) if len(members) > 1 else []):  # each member alone
        t = test_sentiment_model(member, data["loaders"]["test"], device)
        singles.append(t["accuracy"])
        rows.append({"model": f"member {k + 1}", "best epoch": fit_k["best_epoch"],
                     "val accuracy": fit_k["best_value"], "accuracy": t["accuracy"], "f1": t["f1"], "loss": t["loss"]})
    test = test_sentiment_model(model, data["loaders"]["test"], device)
    label = f"mean of {len(members)} (ensemble)" if len(members) > 1 else name
    rows.append({"model": label, "best epoch": "/".join(str(f["best_epoch"]) for f in fits),
                 "val accuracy": fits[0]["best_value"] if len(fits) == 1 else "", "accuracy": test["accuracy"], "f1": test["f1"], "loss": test["loss"]})
    print_table(rows, title=f"{name} on {dataset}, test split ({test['reviews_per_s']:,.0f} reviews/s)",
                floatfmt=".4f")
    histories = {f"member {k + 1}": f["history"] for k, f in enumerate(fits)} if len(fits) > 1 else fits[0]["history"]
    plot_training_curves(histories, out / "training_curves.png", title=f"{name} on {dataset}",
                         metrics=["val_accuracy"] if len(fits) > 1 else ["val_accuracy", "val_f1"])
    plot_confusion_matrix(test["confusion_matrix"], SENTIMENT_LABELS, out / "confusion_matrix.png",
                          title=f"{name}, test set ({dataset})", normalize=True)
    metrics = {f"test_{k}": v for k, v in test.items()}
    metrics.update(parameters=count_parameters(model), ensemble_members=len(members),
                   train_time_s=fit_result["train_time_s"], best_epoch=[f["best_epoch"] for f in fits],
                   epochs_run=[f["epochs_run"] for f in fits], best_val_accuracy=[f["best_value"] for f in fits],
                   vocab_size=len(data["vocab"]), split_sizes=data["sizes"])
    if singles:
        metrics["member_test_accuracy"] = singles
        metrics["single_model_test_accuracy"] = {"mean": sum(singles) / len(singles),
                                                 "std": float(torch.tensor(singles).std()) if len(singles) > 1 else 0.0}
    return metrics


def tfidf_baseline(texts: dict, Cs: tuple = (0.3, 1.0, 3.0, 10.0)) -> dict:
    """The bag-of-words yardstick: TF-IDF of words and word pairs + logistic regression (scikit-learn).

    texts: {'train'|'val'|'test': (texts, labels)}. C (inverse regularisation) is picked on validation,
    like the RNNs' early stopping, so both sides get the same chance. Word order beyond bigrams is lost:
    whatever the RNNs gain over this baseline is what reading the sequence buys.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from utils.data_utils import tokenize

    (xtr, ytr), (xva, yva), (xte, yte) = texts["train"], texts["val"], texts["test"]
    t0 = time.time()
    vec = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                          sublinear_tf=True)
    A, V = vec.fit_transform(xtr), vec.transform(xva)
    fitted = [(LogisticRegression(C=C, max_iter=2000).fit(A, ytr), C) for C in Cs]
    scored = [(float((clf.predict(V) == yva).mean()), C, clf) for clf, C in fitted]
    val_acc, C, clf = max(scored, key=lambda s: s[0])
    train_time = time.time() - t0
    t1 = time.time()
    preds = torch.as_tensor(clf.predict(vec.transform(xte)))
    seconds = max(time.time() - t1, 1e-9)
    metrics = binary_metrics(preds, torch.as_tensor(yte))
    metrics.update(C=C, val_accuracy=val_acc, parameters=int(clf.coef_.size + clf.intercept_.size),
                   train_time_s=round(train_time, 2), reviews_per_s=round(len(yte) / seconds, 1),
                   confusion_matrix=confusion_counts(preds, torch.as_tensor(yte)), predictions=preds.tolist())
    return metrics


# ---- 05_seq_classify: a recurrent time-series classifier, its step, metrics and training pipeline ----
class SeriesClassifier(nn.Module):
    """(bi)LSTM or (bi)GRU over a packed batch of series, pooled over the *valid* steps, then a linear
    layer to class logits.

    pooling: 'last' = the state at each series' own last step (for a bidirectional layer: the forward
    direction's final state and the backward direction's state at t=0, each having read the whole series);
    'mean' = the average of the outputs over valid steps only; 'last+mean' = both, concatenated.
    Padding never enters: the batch is packed by `lengths`, so the RNN stops at each series' end.
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
        self.directions = 2 if bidirectional else 1
        width = self.directions * hidden_size * (2 if pooling == "last+mean" else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, features) zero-padded; lengths: (batch,) long on CPU -> logits (batch, classes)."""
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        # an LSTM returns (h_n, c_n): the cell state c (L5) is its private memory, the classifier reads h;
        # a GRU has no cell state and returns h_n alone
        h_n = state[0] if isinstance(state, tuple) else state  # (layers*directions, batch, hidden)
        pooled = []
        if self.config["pooling"] in ("last", "last+mean"):
            pooled.append(torch.cat(list(h_n[-self.directions:]), dim=-1))  # (batch, directions*hidden)
        if self.config["pooling"] in ("mean", "last+mean"):
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)  # (batch, max_len, dir*hidden), 0 past the end
            pooled.append(out.sum(1) / lengths.to(out.device, out.dtype).unsqueeze(1))  # mean over valid steps
        return self.head(torch.cat(pooled, dim=-1))


def make_series_step(device: torch.device):
    """The `step` for `fit`/`evaluate`: a batch (x, lengths, y) -> (mean cross-entropy, logits, y).
    The logits (not just the argmax) go to `series_metrics`, which needs probabilities."""

    def step(model: nn.Module, batch) -> tuple:
        x, lengths, y = batch
        x, y = x.to(device), y.to(device)  # lengths stay on the CPU, as packing wants
        logits = model(x, lengths)  # (batch, classes)
        return nn.functional.cross_entropy(logits, y), logits.detach(), y

    return step


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2PR/(P+R); a class with no true and no predicted case is
    skipped, one that is never predicted counts F1 = 0."""
    import numpy as np

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


def save_series_predictions(path: Path | str, test_idx, y_true, probs, classes) -> Path:
    """CSV: one row per test series (index in the official test file), true and predicted label, and the
    predicted probability of every class."""
    import csv

    import numpy as np

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


def train_series_classifier(build_model: Callable, data: dict, cfg: dict, seed: int, device: torch.device,
                            out: Path | None = None) -> dict:
    """Train one classifier on one UCR/UEA problem and evaluate it on the official test set.

    build_model(n_features, n_classes) -> SeriesClassifier on `device` (the LSTM/GRU script's choice).
    cfg: the script's constants; uses VAL_FRACTION, PATCH, BATCH_SIZE, EPOCHS, LR, WEIGHT_DECAY, PATIENCE,
    CLIP, MAX_TRAIN, MAX_TEST. With `out`, writes checkpoint.pt (best validation epoch), predictions.csv
    and training_curves.png there.
    -> {"metrics": {...}, "history": [...], "model", "splits", "probs": (n_test, classes) array}
    """
    from utils.data_utils import prepare_series_splits, series_loaders

    set_seed(seed)
    if torch.device(device).type == "cpu":
        # batches of 16 short series are too small to split across threads: on a shared 2-core CPU one
        # thread per process measured ~4x faster than two (which fight each other and other processes)
        torch.set_num_threads(1)
    t0 = time.time()
    splits = prepare_series_splits(data, cfg["VAL_FRACTION"], seed, cfg["PATCH"],
                                   cfg.get("MAX_TRAIN"), cfg.get("MAX_TEST"))
    loaders = series_loaders(splits, cfg["BATCH_SIZE"], seed)
    model = build_model(splits["n_features"], len(data["classes"]))
    step = make_series_step(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["LR"], weight_decay=cfg["WEIGHT_DECAY"])
    # halve the learning rate when validation stops improving: small steps settle into a sharper optimum
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                           patience=max(2, cfg["PATIENCE"] // 3))
    extra = {"model_config": model.config, "classes": data["classes"], "dataset": data["name"],
             "scaler": splits["scaler"].to_dict(), "patch": splits["patch"], "seed": seed,
             "val_idx": splits["val_idx"].tolist()}
    run = fit(model, loaders["train"], loaders["val"], step, epochs=cfg["EPOCHS"], optimizer=optimizer,
              metrics_fn=series_metrics, monitor="selection", mode="max", patience=cfg["PATIENCE"],
              clip=cfg["CLIP"], scheduler=scheduler,
              checkpoint_path=out / "checkpoint.pt" if out is not None else None, checkpoint_extra=extra)
    best = run["history"][run["best_epoch"] - 1]
    if cfg.get("REFIT"):
        model, _ = refit_on_train_and_val(build_model, splits, len(data["classes"]), cfg, seed,
                                          run["history"][:run["best_epoch"]], device)
        if out is not None:
            save_checkpoint({"state_dict": model.state_dict(), "epoch": run["best_epoch"], "refit": True, **extra},
                            out / "checkpoint.pt")
    test = evaluate(model, loaders["test"], step, series_metrics, desc="test")
    probs = torch.softmax(test["predictions"].float(), dim=1).numpy()
    metrics = {"dataset": data["name"], "seed": seed, "test_accuracy": test["accuracy"],
               "test_macro_f1": test["macro_f1"], "test_loss": test["loss"],
               "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"],
               "best_epoch": run["best_epoch"], "epochs_run": run["epochs_run"],
               "patch": splits["patch"], "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(splits["test"]),
               "refit": bool(cfg.get("REFIT")),
               "parameters": count_parameters(model), "train_time_s": round(time.time() - t0, 2)}
    if out is not None:
        from utils.visualization import plot_training_curves

        save_series_predictions(out / "predictions.csv", splits["test_idx"], test["targets"].numpy(),
                                probs, data["classes"])
        plot_training_curves(run["history"], out / "training_curves.png",
                             title=f"{model.config['cell'].upper()} on {data['name']} (seed {seed})",
                             metrics=["val_accuracy", "val_macro_f1"])
    return {"metrics": metrics, "history": run["history"], "model": model, "splits": splits, "probs": probs,
            "checkpoint_extra": extra}


def train_series_ensemble(build_model: Callable, data: dict, cfg: dict, seed: int, device: torch.device,
                          out: Path | None = None) -> dict:
    """cfg['ENSEMBLE'] classifiers averaged: member k is `train_series_classifier` with seed seed*M + k, so
    it has its own weights, batch order *and* validation split (its own fifth of the training series held
    out for early stopping): together the members learn from every training series. The ensemble's
    prediction is the mean of the members' class probabilities. ENSEMBLE = 1 is one plain model.

    With `out`: one checkpoint.pt holding every member (each with its own scaler, see
    `load_series_members`), predictions.csv of the ensemble and the members' curves overlaid.
    -> as `train_series_classifier`: the ensemble's metrics (plus each member's test accuracy and best
    epoch), the first member's history and splits, and under 'model' the list of members."""
    import numpy as np

    members = int(cfg.get("ENSEMBLE", 1))
    seeds = ensemble_member_seeds(seed, members)
    if members == 1:
        return train_series_classifier(build_model, data, cfg, seed, device, out)
    t0, runs = time.time(), []
    for k, member_seed in enumerate(seeds):
        tqdm.write(f"--- ensemble member {k + 1} of {members} (seed {member_seed}) ---")
        runs.append(train_series_classifier(build_model, data, cfg, member_seed, device))
    probs = np.mean([r["probs"] for r in runs], axis=0)  # (n_test, classes): the members' average
    y = runs[0]["splits"]["test"].y
    # log(mean probability) stands in for logits (as in SentimentEnsemble): argmax is the ensemble's vote,
    # cross-entropy its loss, so the single models' metric functions score it
    logp = torch.as_tensor(probs).clamp_min(1e-12).log()
    scores = series_metrics(logp, y)
    y = y.numpy()
    singles = [r["metrics"] for r in runs]
    metrics = {**singles[0], "seed": seed, "ensemble_members": members, "member_seeds": seeds,
               "test_accuracy": scores["accuracy"], "test_macro_f1": scores["macro_f1"],
               "test_loss": nn.functional.cross_entropy(logp, torch.as_tensor(y)).item(),
               "member_test_accuracy": [m["test_accuracy"] for m in singles],
               "val_accuracy": float(np.mean([m["val_accuracy"] for m in singles])),  # each on its own split
               "val_loss": float(np.mean([m["val_loss"] for m in singles])),
               "best_epoch": [m["best_epoch"] for m in singles], "epochs_run": [m["epochs_run"] for m in singles],
               "parameters": sum(m["parameters"] for m in singles), "train_time_s": round(time.time() - t0, 2)}
    if out is not None:
        from utils.visualization import plot_training_curves

        save_checkpoint({"members": [{"state_dict": r["model"].state_dict(), **r["checkpoint_extra"]} for r in runs],
                         "model_config": runs[0]["model"].config, "classes": data["classes"],
                         "dataset": data["name"], "seed": seed}, out / "checkpoint.pt")
        save_series_predictions(out / "predictions.csv", runs[0]["splits"]["test_idx"], y, probs, data["classes"])
        plot_training_curves({f"member {k + 1} (seed {r['metrics']['seed']})": r["history"]
                              for k, r in enumerate(runs)}, out / "training_curves.png",
                             title=f"{runs[0]['model'].config['cell'].upper()} ensemble of {members} on {data['name']}: "
                                   f"each member's curves", metrics=["val_accuracy"])
    return {"metrics": metrics, "history": runs[0]["history"], "model": [r["model"] for r in runs],
            "splits": runs[0]["splits"], "probs": probs}


def refit_on_train_and_val(build_model: Callable, splits: dict, n_classes: int, cfg: dict, seed: int,
                           history: list[dict], device: torch.device) -> tuple[nn.Module, dict]:
    """A fresh model trained on training + validation series for exactly the epochs early stopping chose,
    replaying that run's learning rate epoch by epoch (the LR halvings were triggered by validation).

    With 50 training series (GunPoint), holding 10 out for early stopping costs a fifth of the data; the
    held-out series have done their job once the epoch count is known. Nothing here looks at the test set.
    """
    from utils.data_utils import collate_series

    set_seed(seed + 10_000)  # new weights: not a continuation of the first run
    both = torch.utils.data.ConcatDataset([splits["train"], splits["val"]])
    loader = torch.utils.data.DataLoader(both, batch_size=cfg["BATCH_SIZE"], shuffle=True, collate_fn=collate_series,
                                         generator=torch.Generator().manual_seed(seed))
    model = build_model(splits["n_features"], n_classes)
    lrs = [row["lr"] for row in history]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lrs[0], weight_decay=cfg["WEIGHT_DECAY"])
    replay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lrs[min(e, len(lrs) - 1)] / lrs[0])
    tqdm.write(f"refit: a fresh model on {len(both)} series (train + validation) for {len(lrs)} epochs")
    # the validation split is inside the training data now: fit's validation numbers are not a score
    result = fit(model, loader, torch.utils.data.DataLoader(splits["val"], batch_size=cfg["BATCH_SIZE"],
                                                            collate_fn=collate_series),
                 make_series_step(device), epochs=len(lrs), optimizer=optimizer, metrics_fn=series_metrics,
                 monitor="selection", mode="max", patience=len(lrs) + 1, clip=cfg["CLIP"], scheduler=replay,
                 restore_best=False)
    return model, {**result, "n_series": len(both)}


def load_series_members(path: Path | str, impl: str = "torch", device: torch.device | str = "cpu") -> list:
    """checkpoint.pt of a sequence_*.py run -> [(SeriesClassifier in eval mode, its data settings)], one
    pair per ensemble member (a single model is a list of one). The data settings (train-only scaler,
    patch, classes) differ between members because each one was fitted on its own training split."""
    ckpt = load_checkpoint(path, map_location=device)
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise UserError(f"{path} is not a 05_seq_classify checkpoint (no model_config); train it again.")
    shared = {k: v for k, v in ckpt.items() if k not in ("members", "state_dict")}
    pairs = []
    for member in ckpt.get("members", [ckpt]):
        model = SeriesClassifier(impl=impl, device=device, **ckpt["model_config"]).to(device)
        model.load_state_dict(member["state_dict"])
        pairs.append((model.eval(), {**shared, **{k: v for k, v in member.items() if k != "state_dict"}}))
    return pairs


def predict_series_probabilities(members: list, data: dict, device, max_test: int | None = None):
    """Mean class probabilities of `load_series_members`' pairs on the official test set, each member's
    input prepared as at its training time. -> (probs (n_test, classes), test indices)."""
    import numpy as np

    from utils.data_utils import collate_series

    probs = []
    for model, settings in members:
        test_set, test_idx = series_test_set(data, settings, max_test)
        loader = torch.utils.data.DataLoader(test_set, batch_size=64, collate_fn=collate_series)
        result = evaluate(model, loader, make_series_step(device), series_metrics)
        probs.append(torch.softmax(result["predictions"].float(), 1).numpy())
    return np.mean(probs, axis=0), test_idx


def report_series_runs(script_file: str, runs: list[dict], cfg: dict, device, start_time: float) -> dict:
    """Summarise runs (one per dataset and seed) of `train_series_classifier`: a table on screen,
    outputs/<case>/<script>/<DATASET>/metrics.json per dataset, and the script-level metrics.json with
    one entry per dataset ever run (entries of other datasets from earlier runs are kept, each with
    its own config and time) plus an accuracy bar chart over them."""
    import numpy as np

    from utils.script_utils import output_dir, print_table, save_metrics
    from utils.visualization import plot_bars

    by_dataset: dict[str, list[dict]] = {}
    for r in runs:
        by_dataset.setdefault(r["metrics"]["dataset"], []).append(r)
    summaries = {}
    for name, group in by_dataset.items():
        rows = [r["metrics"] for r in group]
        summary = {"dataset": name, "seeds": [m["seed"] for m in rows], "quick": cfg.get("QUICK", False),
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "config": cfg}
        for key in ("test_accuracy", "test_macro_f1", "test_loss", "train_time_s"):
            values = np.array([m[key] for m in rows], dtype=float)
            summary[f"{key}_mean"] = float(values.mean())
            summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        singles = [a for m in rows for a in m.get("member_test_accuracy", [m["test_accuracy"]])]
        summary["ensemble_members"] = rows[0].get("ensemble_members", 1)
        summary["single_model_test_accuracy_mean"] = float(np.mean(singles))  # every member of every seed
        summary["single_model_test_accuracy_std"] = float(np.std(singles, ddof=1)) if len(singles) > 1 else 0.0
        summary.update({k: rows[0][k] for k in ("parameters", "n_train", "n_val", "n_test")})
        summary["per_seed"] = rows
        summaries[name] = summary
        save_metrics(series_run_dir(script_file, name, cfg.get("QUICK", False)), config=cfg, metrics=summary,
                     history=group[0]["history"], start_time=start_time, device=device)

    out = output_dir(script_file)
    merged = merge_dataset_metrics(out / "metrics.json", summaries)
    metrics = {"datasets": merged, "run_now": list(summaries), "quick": cfg.get("QUICK", False)}
    from utils.data_utils import datasets_to_run

    if len(datasets_to_run(cfg["DATASET"], cfg["DATASETS"])) == 1:  # a single-dataset run: numbers at the top too
        only = next(iter(summaries.values()))
        metrics.update({k: only[f"{k}_mean"] for k in ("test_accuracy", "test_macro_f1", "test_loss")})
        metrics["dataset"] = only["dataset"]
    save_metrics(out, config=cfg, metrics=metrics, start_time=start_time, device=device)

    names = list(merged)
    plot_bars(names, {f"{Path(script_file).stem} test accuracy": [merged[n]["test_accuracy_mean"] for n in names]},
              out / "test_accuracy.png", ylabel="test accuracy",
              errors={f"{Path(script_file).stem} test accuracy": [merged[n]["test_accuracy_std"] for n in names]},
              title="Test accuracy per UCR/UEA problem (mean ± std over seeds)")
    if cfg.get("QUICK"):
        print(f"--quick: per-dataset results are in {out / 'quick'}; real entries in metrics.json are kept.")
    members = cfg.get("ENSEMBLE", 1)
    print_table([{"dataset": s["dataset"], "seeds": len(s["seeds"]),
                  "test acc": f"{s['test_accuracy_mean']:.4f} ± {s['test_accuracy_std']:.4f}",
                  **({"one model": f"{s['single_model_test_accuracy_mean']:.4f}"} if members > 1 else {}),
                  "macro-F1": s["test_macro_f1_mean"], "test loss": s["test_loss_mean"],
                  "median epoch": int(np.median([m["best_epoch"] for m in s["per_seed"]])),
                  "params": s["parameters"], "train s": s["train_time_s_mean"]}
                 for s in summaries.values()],
                title=f"{Path(script_file).stem}: official test split (best-validation epochs"
                      + (f"; ensembles of {members}, 'one model' = their members' mean)" if members > 1 else ")"))
    return metrics


# ---- 03_stock: a recurrent regressor from a window of daily features to the next return ----
class PriceRNN(nn.Module):
    """x: (batch, window, features) -> rnn outputs (batch, window, H) -> h at the last day (batch, H)
    -> Linear -> (batch,): the standardised log return to the forecast day.

    Predicting the return rather than the price keeps the target stationary: a price network trained on
    2000-2010 prices would have to extrapolate to 2012 levels it never saw.
    """

    def __init__(self, cell: str, impl: str, n_features: int, hidden: int, layers: int = 1,
                 dropout: float = 0.0, device: torch.device | str = "cpu"):
        super().__init__()
        self.rnn = make_rnn(cell, impl, n_features, hidden, layers, dropout=dropout, device=device)
        if cell.lower() == "lstm":
            init_forget_bias(self.rnn, 1.0)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)                          # (batch, window, H)
        return self.head(out[:, -1]).squeeze(-1)      # (batch,)


def regression_step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fit's step for (x, y) batches: mean squared error on the standardised target."""
    device = next(model.parameters()).device
    x, y = batch[0].to(device), batch[1].to(device)
    pred = model(x)
    return nn.functional.mse_loss(pred, y), pred.detach(), y


def train_price_model(cell: str, data: dict, cfg: dict, device: torch.device,
                      checkpoint_path: Path | None = None) -> tuple[nn.Module, dict]:
    """Build a PriceRNN and train it with `fit` on data from `prepare_stock_data` (the validation loss
    decides the epoch kept). cfg holds the script's constants: IMPL, HIDDEN, LAYERS, DROPOUT, EPOCHS,
    BATCH_SIZE, LR, WEIGHT_DECAY, PATIENCE, SEED. The seed is set here, so training the same cell on the
    same data gives the same weights whatever was trained before it in the process."""
    from utils.data_utils import stock_loaders

    torch.manual_seed(cfg["SEED"])
    model = PriceRNN(cell, cfg["IMPL"], data["x_train"].shape[2], cfg["HIDDEN"], cfg["LAYERS"],
                     cfg["DROPOUT"], device=device).to(device)
    loaders = stock_loaders(data, cfg["BATCH_SIZE"], cfg["SEED"])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["LR"], weight_decay=cfg["WEIGHT_DECAY"])
    extra = {"cell": cell, "features": data["features"], "window": data["window"], "horizon": data["horizon"],
             "target": data["target"],
             "scaler_mean": data["scaler"].mean.tolist(), "scaler_std": data["scaler"].std.tolist(),
             "target_mean": data["target_mean"], "target_std": data["target_std"]}
    result = fit(model, loaders["train"], loaders["val"], regression_step, epochs=cfg["EPOCHS"],
                 optimizer=optimizer, patience=cfg["PATIENCE"], clip=1.0,
                 checkpoint_path=checkpoint_path, checkpoint_extra=extra)
    return model, result


def predict_target(model: nn.Module, data: dict, part: str = "test") -> "np.ndarray":
    """The model's forecasts for data[f'x_{part}'], un-standardised: log returns (or log prices)."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(x.to(device)).cpu() for x in torch.from_numpy(data[f"x_{part}"]).split(512)])
    return z.double().numpy() * data["target_std"] + data["target_mean"]


def forecast_test_period(model: nn.Module, data: dict, label: str) -> tuple[Any, dict, dict]:
    """The model's forecasts of every test day next to persistence's, scored and printed with a verdict.
    -> (table: date, actual, prediction, persistence; the model's scores; persistence's scores)."""
    from utils.forecasting import forecast_table, score_forecast
    from utils.script_utils import print_table

    table = forecast_table(data, predict_target(model, data, "test"))
    scores, naive = score_forecast(table, data), score_forecast(table, data, "persistence")
    print_table([{"forecast": label, **scores}, {"forecast": "persistence", **naive}],
                title=f"test period {table['date'].iloc[0]} .. {table['date'].iloc[-1]} ({len(table)} days)")
    verdict = "beats" if scores["rmse"] < naive["rmse"] else "does NOT beat"
    print(f"The {label} {verdict} persistence on RMSE (Theil's U = {scores['theils_u']:.3f}; below 1 would "
          "beat it). Run performance_analysis.py for the significance tests.")
    return table, scores, naive


# ----------------------------------------------------------------------------------------------------
# ---- 04_text_gen: character language model, truncated BPTT training, sampling, text diversity ----
# ----------------------------------------------------------------------------------------------------
class CharRNN(nn.Module):
    """Embedding -> multi-layer LSTM/GRU -> linear: the logits of the next character at every step.

    `hparams` holds every constructor argument, so a checkpoint can rebuild the model.
    """

    def __init__(self, vocab_size: int, *, cell: str, impl: str = "torch", embed_dim: int = 64,
                 hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.1,
                 forget_bias: float | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, cell=cell, impl=impl, embed_dim=embed_dim,
                            hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                            forget_bias=forget_bias)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = make_rnn(cell, impl, embed_dim, hidden_size, num_layers, dropout=dropout, device=device)
        if cell.lower() == "lstm" and forget_bias is not None:  # None: torch's init, f starts near 0.5
            init_forget_bias(self.rnn, forget_bias)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        """ids: (B, T) long, state: None or the previous chunk's final state
        -> logits (B, T, V), state (LSTM: (h, c), GRU: h; each (layers, B, H))."""
        x = self.dropout(self.embedding(ids))        # (B, T, E)
        out, state = self.rnn(x, state)              # (B, T, H)
        return self.head(self.dropout(out)), state   # (B, T, V)


def detach_state(state):
    """Cut the graph at the chunk boundary (truncated BPTT): keep the values, drop the history."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def tbptt_step(on_train_step: Callable[[], None] | None = None) -> Callable:
    """The `step` for `fit`/`evaluate` on `CharStreams` chunks (x, y, reset), x/y: (B, T) on the device.

    A closure that carries the hidden state from one chunk to the next (detached), separately for
    training and evaluation (fit validates between training chunks), and zeroes it when `reset` says a
    new pass begins. Returns (mean loss in nats/char, that loss as a (1,) 'prediction', a (1,) dummy
    target): each chunk has B*T characters, so the mean over chunks is the mean over characters.
    """
    states: dict[bool, Any] = {}

    def step(model, batch):
        x, y, reset = batch
        key = model.training
        if reset:
            states[key] = None
        if key and on_train_step is not None:
            on_train_step()
        logits, state = model(x, states.get(key))
        states[key] = detach_state(state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, loss.detach().reshape(1), y.new_ones(1)  # one chunk: a (1,) 'batch'
    return step


def char_metrics(chunk_losses: torch.Tensor, _targets=None) -> dict:
    """Mean nats/char -> bits/char (divide by ln 2) and perplexity (e^nats: 'as unsure as a fair die
    with this many faces')."""
    nats = float(chunk_losses.mean())
    return {"bits_per_char": nats / math.log(2), "perplexity": math.exp(nats)}


class BudgetSchedule:
    """Linear warm-up, then cosine decay to `min_frac` * lr, driven by progress = the larger of
    (steps done / total steps) and (seconds spent / budget): the learning rate anneals on time even when
    a busy CPU makes every step slower, and `done()` says when the budget is spent."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, total_steps: int, max_minutes: float,
                 warmup_steps: int = 100, min_frac: float = 0.05):
        self.opt, self.lr, self.total, self.warmup, self.min_frac = optimizer, lr, max(total_steps, 1), warmup_steps, min_frac
        self.budget = max_minutes * 60 if max_minutes and max_minutes > 0 else math.inf
        self.steps, self.t0 = 0, time.time()

    def progress(self) -> float:
        return min(1.0, max(self.steps / self.total, (time.time() - self.t0) / self.budget))

    def done(self) -> bool:
        return self.progress() >= 1.0

    def step(self) -> None:
        warm = min(1.0, (self.steps + 1) / self.warmup) if self.warmup else 1.0
        cosine = self.min_frac + (1 - self.min_frac) * 0.5 * (1 + math.cos(math.pi * self.progress()))
        for group in self.opt.param_groups:
            group["lr"] = self.lr * warm * cosine
        self.steps += 1


def train_char_model(model: CharRNN, train_streams, val_streams, *, epochs: int, lr: float,
                     weight_decay: float, clip: float, max_minutes: float, patience: int,
                     checkpoint_path: Path | None = None, checkpoint_extra: dict | None = None,
                     on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """AdamW + `BudgetSchedule` + `fit` with the TBPTT step: the one training routine of the text_lstm,
    text_gru and creative_writing scripts. `train_streams` must be a `CharStreams` with chunks_per_epoch.

    Training ends after `epochs`, when the time budget is spent (graceful: the epoch is cut short,
    validated, and the best weights restored), or after `patience` epochs without improvement.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = BudgetSchedule(optimizer, lr, epochs * len(train_streams), max_minutes)
    train_streams.stop = schedule.done

    def end_of_epoch(epoch: int, row: dict) -> bool:
        row["chars_seen"] = schedule.steps * train_streams.B * train_streams.T
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if schedule.done() and epoch < epochs:
            tqdm.write(f"time budget of {max_minutes:g} min spent: training ends after epoch {epoch}.")
        return schedule.done()

    t0 = time.time()
    result = fit(model, train_streams, val_streams, tbptt_step(schedule.step), epochs=epochs,
                 optimizer=optimizer, metrics_fn=char_metrics, patience=patience, clip=clip,
                 checkpoint_path=checkpoint_path, checkpoint_extra=checkpoint_extra,
                 on_epoch_end=end_of_epoch)
    result["train_time_s"] = round(time.time() - t0, 2)
    result["chars_seen"] = schedule.steps * train_streams.B * train_streams.T
    return result


def char_checkpoint_extra(model: CharRNN, vocab, source: str) -> dict:
    """Beside the weights: the constructor arguments, the vocabulary as one plain string, the data source."""
    return {"hparams": dict(model.hparams), "chars": vocab.chars, "source": source}


def load_char_model(path: Path | str, device: torch.device | str = "cpu", impl: str | None = None):
    """A saved text_lstm/text_gru model.pt -> (model in eval mode on device, CharVocab, checkpoint dict).
    `impl` overrides the saved implementation (a scratch-trained model can generate with torch.nn)."""
    from utils.data_utils import CharVocab

    ckpt = load_checkpoint(path, map_location=device)
    if not isinstance(ckpt, dict) or not {"state_dict", "hparams", "chars"} <= set(ckpt):
        raise UserError(f"{path} is not a character-model checkpoint (it needs state_dict, hparams and chars); "
                        f"train one with 04_text_gen/text_lstm.py or text_gru.py.")
    vocab = CharVocab(ckpt["chars"])
    hparams = dict(ckpt["hparams"], **({"impl": impl} if impl else {}))
    if hparams.get("vocab_size") != len(vocab):
        raise UserError(f"checkpoint {path} does not match its vocabulary ({hparams.get('vocab_size')} vs "
                        f"{len(vocab)} characters); retrain the model.")
    model = CharRNN(**hparams, device=device).to(device)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise UserError(f"the weights in {path} do not fit the model its hyperparameters describe "
                        f"({str(e).strip().splitlines()[-1].strip()}); retrain the model.") from None
    return model.eval(), vocab, ckpt


# Sampling: three ways to reshape the next-character distribution before drawing from it.
def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): T < 1 sharpens (safer, more repetitive), T > 1 flattens (bolder, more
    errors), T -> 0 is greedy. logits: (..., V) -> probabilities (..., V)."""
    if temperature <= 0:
        probs = torch.zeros_like(logits)
        return probs.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    return torch.softmax(logits / temperature, dim=-1)


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k most likely characters, renormalised; k <= 0 keeps all.  probs: (..., V)."""
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    kth = probs.topk(k, dim=-1).values[..., -1:]
    kept = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): the smallest set of most likely characters whose total
    probability reaches p, renormalised; p >= 1 keeps all.  probs: (..., V)."""
    if p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p          # mass of the strictly more likely characters
    keep_sorted = before < p                         # the first character is always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def sampling_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                          top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the distribution the next character is drawn from."""
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


GENERATION_WARMUP = "\n\n"


@contextlib.contextmanager
def one_step_friendly(device: torch.device):
    """On CPU, torch runs nn.LSTM (not nn.GRU) through oneDNN, whose fixed cost per call dominates when a
    call is a single character: one step of a 2x384 LSTM measured 9.7 ms with it and 0.5 ms without (the
    GRU: 0.6 ms). On 64x128 training chunks oneDNN is the faster path (0.65 vs 0.86 s per step), so it is
    switched off only around step-by-step generation, and restored after."""
    before = torch.backends.mkldnn.enabled
    if device.type == "cpu":
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


@torch.no_grad()
def generate(model: CharRNN, vocab, prompt: str, length: int, *, temperature: float = 0.8, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None) -> str:
    """Continue `prompt` by `length` characters, one at a time, feeding each sampled character back.

    The prompt is read in one call (warming up the hidden state), then the cell runs step by step with
    its state carried: O(length) steps, no re-reading of the growing text. Characters of the prompt the
    model never saw are skipped (the caller warns about them: `vocab.unknown(prompt)`).
    """
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu")
    g.manual_seed(seed if seed is not None else int(torch.randint(2**31 - 1, (1,))))
    # Trained with TBPTT, the model almost never starts from a zero state (it is carried across chunks
    # and reset only once per pass), so from a cold start its first predictions are nearly uniform and
    # one bad draw derails the rest. Reading a blank line first (what precedes every speech) warms it up.
    ids = [i for i in vocab.encode(GENERATION_WARMUP + prompt).tolist() if i != 0]
    logits, state = model(torch.tensor([ids], device=device))        # (1, P, V)
    out = []
    with one_step_friendly(device):
        for _ in range(length):
            probs = sampling_distribution(logits[0, -1].float(), temperature, top_k, top_p).cpu()
            probs[0] = 0.0                                           # never emit the unknown marker
            nxt = int(torch.multinomial(probs / probs.sum(), 1, generator=g))
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]], device=device), state)  # one step: (1, 1, V)
    return vocab.decode(out)


@torch.no_grad()
def text_log_likelihood(model: CharRNN, vocab, context: str, text: str) -> float:
    """The model's own mean log-probability (nats/char, <= 0) of `text` following `context`: how
    plausible the model finds what it wrote. High at low temperature, falling as temperature rises."""
    model.eval()
    device = next(model.parameters()).device
    ids = vocab.encode(GENERATION_WARMUP + context + text).to(device)[None]  # (1, N), warmed up as in generate
    logits, _ = model(ids[:, :-1])
    logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[0, :, 0]
    return float(logp[-len(text):].mean()) if len(text) else 0.0


def distinct_n(text: str, n: int) -> float:
    """Distinct character n-grams / all n-grams (Li et al. 2016): 1.0 = no n-gram repeats."""
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(text: str, n: int) -> float:
    """Share of the word n-grams that already occurred earlier in the text: loops and stock phrases."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


def apply_device_settings(namespace: dict, defaults: dict, settings: dict, device: torch.device,
                          quick: bool = False) -> dict:
    """On CUDA, apply a script's GPU_SETTINGS to every constant still at its default (a --NAME=VALUE
    given on the command line wins); never with --quick. Returns {name: value} of what was applied."""
    if device.type != "cuda" or quick:
        return {}
    applied = {k: v for k, v in settings.items() if namespace.get(k) == defaults.get(k)}
    namespace.update(applied)
    if applied:
        print("GPU settings applied: " + ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied


def evaluate_char_model(model: CharRNN, streams) -> dict:
    """One pass over `streams` (hidden state carried chunk to chunk) -> nats/bits per char, perplexity."""
    res = evaluate(model, streams, tbptt_step(), char_metrics)
    return {"nats_per_char": res["loss"], "bits_per_char": res["bits_per_char"], "perplexity": res["perplexity"]}


def show_samples(model: CharRNN, vocab, prompt: str, temperatures, length: int, seed: int = 0) -> dict:
    """Print one continuation of `prompt` per temperature; return {temperature: text}."""
    samples = {}
    for temp in temperatures:
        text = generate(model, vocab, prompt, length, temperature=temp, seed=seed)
        samples[str(temp)] = text
        tqdm.write(f"--- sample, temperature {temp}:\n{prompt}{text}\n")
    model.train()
    return samples


def char_lm_report(out: Path, *, cfg: dict, model: CharRNN, data: dict, result: dict, final: dict,
                   samples: dict, device, start_time: float, title: str) -> dict:
    """The result table (model vs n-gram baseline), metrics.json and the training-curve PNG."""
    from utils.script_utils import print_table, save_metrics
    from utils.visualization import plot_training_curves

    base = data["baseline"]
    rows = [{"model": f"add-{base['add_k']:g} char {base['order']}-gram", "nats/char": base["nats_per_char"],
             "bits/char": base["bits_per_char"], "perplexity": base["perplexity"], "parameters": ""},
            {"model": title, "nats/char": final["nats_per_char"], "bits/char": final["bits_per_char"],
             "perplexity": final["perplexity"], "parameters": count_parameters(model)}]
    print_table(rows, title="Validation (the whole held-out split)")
    metrics = {"val_nats_per_char": final["nats_per_char"], "val_bits_per_char": final["bits_per_char"],
               "val_perplexity": final["perplexity"], "baseline_nats_per_char": base["nats_per_char"],
               "baseline_bits_per_char": base["bits_per_char"],
               "improvement_over_baseline_nats": base["nats_per_char"] - final["nats_per_char"],
               "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
               "train_time_s": result["train_time_s"], "chars_seen": result["chars_seen"],
               "train_chars": len(data["corpus"]["train"]), "val_chars": len(data["corpus"]["val"]),
               "vocab_size": len(data["vocab"]), "parameters": count_parameters(model)}
    plot_training_curves(result["history"], out / "training_curves.png",
                         title=f"{title}: loss in nats/char (baseline {base['nats_per_char']:.3f})",
                         metrics=["val_bits_per_char"])
    save_metrics(out, config=cfg, metrics=metrics, history=result["history"], start_time=start_time,
                 device=device, extra={"samples": samples, "baseline": base,
                                       "val_plays": data["corpus"]["val_plays"], "source": data["corpus"]["source"]})
    return metrics


def series_run_dir(script_file: str, dataset: str, quick: bool = False) -> Path:
    """outputs/05_seq_classify/<script>/<DATASET>/ for real runs, .../quick/<DATASET>/ for --quick ones,
    so a smoke test never overwrites a trained checkpoint or its plots."""
    from utils.script_utils import output_dir

    return output_dir(script_file, sub=f"quick/{dataset}" if quick else dataset)


def merge_dataset_metrics(path: Path | str, summaries: dict) -> dict:
    """The per-dataset entries of an existing metrics.json (earlier runs on other datasets), updated with
    `summaries` ({dataset: {...}}); a --quick entry never replaces a real one. An unreadable old file is
    simply replaced."""
    from utils.script_utils import load_metrics

    merged = {}
    if Path(path).is_file():
        try:
            merged = load_metrics(path).get("metrics", {}).get("datasets", {}) or {}
        except ValueError:
            merged = {}
    for name, entry in summaries.items():
        old = merged.get(name)
        if not (entry.get("quick") and old and not old.get("quick")):
            merged[name] = entry
    return merged


def load_case_script(script: Path | str, quick: bool = False):
    """Import a runnable script (e.g. 05_seq_classify/sequence_lstm.py) as a module to reuse its
    constants and build_model; with quick=True its QUICK_SETTINGS are applied. Its main() is not run."""
    path = Path(script)
    spec = importlib.util.spec_from_file_location(f"case_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if quick:
        for name, value in getattr(module, "QUICK_SETTINGS", {}).items():
            setattr(module, name, value)
    return module


def script_config(module) -> dict:
    """The UPPER_CASE constants of a script module, as parse_config would return them."""
    from utils.script_utils import _constant_names

    return {n: getattr(module, n) for n in _constant_names(vars(module))}


def series_test_set(data: dict, ckpt: dict, max_test: int | None = None):
    """The official test set prepared exactly as the checkpoint's model saw its data (its train-only
    scaler, its patch). -> (SeriesDataset, test indices into the official test file)."""
    from utils.data_utils import ChannelScaler, SeriesDataset, patch_series, series_test_subset

    X_test, y_test = data["test"]
    idx = series_test_subset(len(X_test), max_test)
    scaler = ChannelScaler(ckpt["scaler"]["mean"], ckpt["scaler"]["std"])
    series = [patch_series(x, ckpt["patch"]) for x in scaler.transform([X_test[i] for i in idx])]
    return SeriesDataset(series, y_test[idx]), idx


# Evaluation beyond accuracy, written with numpy so each formula is visible.
def confusion_matrix(y_true, y_pred, n_classes: int):
    """cm[i, j] = number of series of true class i predicted as class j."""
    import numpy as np

    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_report(cm) -> dict:
    """Precision = TP/(TP+FP) (a column of cm), recall = TP/(TP+FN) (a row), F1, support (row sum);
    plus macro (plain mean over classes) and weighted (mean weighted by support) averages."""
    import numpy as np

    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    support = cm.sum(1)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    w = support / max(support.sum(), 1)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int),
            "macro": {"precision": precision.mean(), "recall": recall.mean(), "f1": f1.mean()},
            "weighted": {"precision": (w * precision).sum(), "recall": (w * recall).sum(),
                         "f1": (w * f1).sum()},
            "accuracy": tp.sum() / max(cm.sum(), 1)}


def roc_curve(is_positive, scores) -> tuple:
    """ROC of one class against the rest: thresholds at every distinct score, highest first.
    -> fpr, tpr (arrays from (0, 0) to (1, 1)), AUC by the trapezoid rule (nan if one class is absent)."""
    import numpy as np

    is_positive, scores = np.asarray(is_positive, dtype=bool), np.asarray(scores, dtype=float)
    P, N = is_positive.sum(), (~is_positive).sum()
    if P == 0 or N == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, pos = scores[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # equal scores move together
    tpr = np.r_[0.0, np.cumsum(pos)[last_of_tie] / P]
    fpr = np.r_[0.0, np.cumsum(~pos)[last_of_tie] / N]
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def calibration(probs, y_true, bins: int = 10) -> dict:
    """Reliability of the top-class probability: split predictions into equal-width confidence bins;
    ECE = sum over bins of (bin share) * |accuracy in bin - mean confidence in bin|."""
    import numpy as np

    probs = np.asarray(probs)
    confidence, pred = probs.max(1), probs.argmax(1)
    correct = (pred == np.asarray(y_true)).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 joins the top bin
    rows = []
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            acc, conf = correct[members].mean(), confidence[members].mean()
            ece += members.mean() * abs(acc - conf)
            rows.append({"bin": b, "low": b / bins, "high": (b + 1) / bins, "count": int(members.sum()),
                         "accuracy": float(acc), "confidence": float(conf)})
    return {"ece": float(ece), "bins": rows}


def dtw_distance(a, b, window: int | None = None) -> float:
    """Dynamic time warping between two series a: (n, channels), b: (m, channels), written as the
    textbook recursion: D[i, j] = cost(i, j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1]), cost = squared
    Euclidean distance of the two steps; only cells with |i - j| <= window are allowed (Sakoe-Chiba
    band, widened to |n - m| so the end is reachable). Returns sqrt(D[n, m]). O(n * m): the reference
    that `dtw_distances` (vectorised over many pairs) is tested against."""
    import numpy as np

    n, m = len(a), len(b)
    r = max(n, m) if window is None else max(window, abs(n - m))
    D = np.full((n + 1, m + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(max(1, i - r), min(m, i + r) + 1):
            cost = float(np.sum((a[i - 1] - b[j - 1]) ** 2))
            D[i, j] = cost + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return float(np.sqrt(D[n, m]))


def dtw_distances(A: list, B: list, window: int | None = None, chunk: int = 20000):
    """DTW (as `dtw_distance`) between every series of A and every series of B -> (len(A), len(B)).

    Same recursion, but each cell (i, j) is computed for many (a, b) pairs at once: pairs are a numpy
    axis, the double loop over i, j stays in Python. Series of different lengths are padded; a pair's
    answer is read at its own (n, m), and cells beyond it never feed into that cell."""
    import numpy as np

    def stack(S):
        L = np.array([len(s) for s in S])
        X = np.zeros((len(S), L.max(), S[0].shape[1]))
        for k, s in enumerate(S):
            X[k, : len(s)] = s
        return X, L

    XA, LA = stack(A)
    XB, LB = stack(B)
    ia, ib = np.meshgrid(np.arange(len(A)), np.arange(len(B)), indexing="ij")
    ia, ib = ia.ravel(), ib.ravel()
    out = np.empty(len(ia))
    n_max, m_max = XA.shape[1], XB.shape[1]
    for start in range(0, len(ia), chunk):
        pa, pb = ia[start:start + chunk], ib[start:start + chunk]
        la, lb = LA[pa], LB[pb]
        r = np.maximum(max(n_max, m_max) if window is None else window, np.abs(la - lb))  # per-pair band
        prev = np.full((len(pa), m_max + 1), np.inf)
        prev[:, 0] = 0.0
        final = np.empty(len(pa))
        for i in range(1, n_max + 1):
            cost = ((XA[pa, i - 1][:, None, :] - XB[pb]) ** 2).sum(-1)  # (pairs, m_max): step i vs every j
            cur = np.full_like(prev, np.inf)
            for j in range(max(1, i - int(r.max())), min(m_max, i + int(r.max())) + 1):
                best = np.minimum(np.minimum(prev[:, j], cur[:, j - 1]), prev[:, j - 1])
                cur[:, j] = np.where(np.abs(i - j) <= r, cost[:, j - 1] + best, np.inf)
            prev = cur
            done = la == i  # pairs whose series a ends at step i: read D[n, m] now
            final[done] = prev[done, lb[done]]
        out[start:start + chunk] = np.sqrt(final)
    return out.reshape(len(A), len(B))


def euclidean_distances(A: list, B: list):
    """Euclidean distance between equal-length series: (len(A), len(B)). Undefined for unequal lengths."""
    import numpy as np

    XA = np.stack([a.ravel() for a in A])
    XB = np.stack([b.ravel() for b in B])
    sq = (XA ** 2).sum(1)[:, None] + (XB ** 2).sum(1)[None, :] - 2 * XA @ XB.T
    return np.sqrt(np.maximum(sq, 0))


def nearest_neighbour_predict(distances, y_train):
    """1-NN: each test series takes the label of its closest training series. distances: (test, train)."""
    import numpy as np

    return np.asarray(y_train)[np.asarray(distances).argmin(1)]


def train_char_lm(cfg: dict, build_model: Callable, device, out: Path, start_time: float, title: str) -> dict:
    """The story of text_lstm.py / text_gru.py after the configuration: data and n-gram baseline ->
    `build_model(vocab_size, device)` -> TBPTT training (a sample at each report, best checkpoint in
    out/model.pt) -> the best weights on the whole validation split -> samples -> table, plots, metrics."""
    from utils.data_utils import prepare_char_data

    data = prepare_char_data(cfg["TEXT"], cfg["BATCH_SIZE"], cfg["SEQ_LEN"], cfg["CHUNKS_PER_EPOCH"], device,
                             max_train_chars=cfg["MAX_TRAIN_CHARS"], val_chars_per_epoch=cfg["VAL_CHARS_PER_EPOCH"],
                             ngram_order=cfg["NGRAM_ORDER"], ngram_k=cfg["NGRAM_K"], seed=cfg["SEED"])
    model = build_model(len(data["vocab"]), device)
    result = train_char_model(
        model, data["streams"]["train"], data["streams"]["val"], epochs=cfg["EPOCHS"], lr=cfg["LR"],
        weight_decay=cfg["WEIGHT_DECAY"], clip=cfg["CLIP"], max_minutes=cfg["MAX_MINUTES"], patience=cfg["PATIENCE"],
        checkpoint_path=out / "model.pt",
        checkpoint_extra=char_checkpoint_extra(model, data["vocab"], data["corpus"]["source"]),
        on_epoch_end=lambda epoch, row: show_samples(model, data["vocab"], cfg["PROMPT"], (0.8,),
                                                     cfg["SAMPLE_LEN"], seed=cfg["SEED"]))
    final = evaluate_char_model(model, data["streams"]["val_full"])
    samples = show_samples(model, data["vocab"], cfg["PROMPT"], cfg["TEMPERATURES"], cfg["SAMPLE_LEN"], seed=cfg["SEED"])
    return char_lm_report(out, cfg=cfg, model=model, data=data, result=result, final=final, samples=samples,
                          device=device, start_time=start_time, title=title)


def run_series_experiments(script_file: str, build_model: Callable, cfg: dict, device,
                           start_time: float | None = None) -> list[dict]:
    """Train `build_model`'s classifier (an ensemble of cfg['ENSEMBLE'], see `train_series_ensemble`) on
    every dataset of cfg['DATASET'] ('all' = cfg['DATASETS']) for seeds SEED .. SEED+N_SEEDS-1; the first
    seed's checkpoint, predictions and curves go to
    `series_run_dir`. The summary is rewritten after each dataset, so a long 'all' run keeps what
    finished. -> the runs (see `train_series_classifier`)."""
    from utils.data_utils import datasets_to_run, load_ucr_dataset

    start, runs = start_time or time.time(), []
    for name in datasets_to_run(cfg["DATASET"], cfg["DATASETS"]):
        data = load_ucr_dataset(name, cfg["DOWNLOAD"])
        for seed in range(cfg["SEED"], cfg["SEED"] + cfg["N_SEEDS"]):
            out = series_run_dir(script_file, name, cfg["QUICK"]) if seed == cfg["SEED"] else None
            runs.append(train_series_ensemble(build_model, data, cfg, seed, device, out))
        report_series_runs(script_file, [r for r in runs if r["metrics"]["dataset"] == name], cfg, device, start)
    return runs

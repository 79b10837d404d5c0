"""Models and training that two or more cases share (each case's own model lives in its folder).

- `make_rnn`: an LSTM or GRU layer, either torch.nn's (cuDNN on GPU) or the hand-written
  ScratchLSTM / ScratchGRU from 01_basic_theory (checked against torch.nn before it is used).
- `fit`: the one training loop (tqdm progress, gradient clipping, early stopping on validation,
  best-checkpoint saving, a history row per epoch) and `evaluate`, the one evaluation pass.
- `save_checkpoint` / `load_checkpoint`: atomic save, `weights_only=True` load.
- `log_mean_probability` / `ensemble_member_seeds`: seed ensembles; `confusion_matrix`.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.script_utils import REPO_ROOT, UserError, atomic_write

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
# Seed ensembles (02 and 05; THEORY.md §8)
# ----------------------------------------------------------------------------------------------------
def ensemble_member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members: seed*members + k, so two SEEDs never share a member."""
    if members < 1:
        raise UserError(f"--ENSEMBLE must be at least 1, got {members}.")
    return [seed * members + k for k in range(members)]

"""The training driver every case shares: the plumbing around a case's own training step.

A case module writes the step a learner reads, `train_step(model, batch, optimizer, clip)`: forward ->
loss -> zero_grad -> backward -> clip -> step, returning (loss, gradient norm, examples in the batch).
This file keeps what is plumbing:
- `fit`: epochs, a tqdm bar, validation after each epoch (`evaluate`), early stopping, the best
  checkpoint, a history row per epoch, Ctrl-C, and the stop on a NaN or infinite loss.
- `ProgressLog`: watch a run while it trains: progress.jsonl, a live training_curves.png, TensorBoard.
- `clip_gradients` (clip, and return the norm before clipping), `stop_if_not_finite` and
  `NonFiniteLoss`: the pieces a training step uses, fit's and the character model's own loop alike.
- `save_checkpoint` / `load_checkpoint` (atomic save, `weights_only=True` load) and the tags that say
  which case and cell a checkpoint holds.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.script_utils import UserError, atomic_write


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------
def save_checkpoint(obj: dict, path: Path | str) -> Path:
    """torch.save to a temp file, then rename: an interrupted save never leaves a broken checkpoint.

    Keep `obj` to tensors, numbers, strings, lists and dicts so `load_checkpoint` can use the safe
    `weights_only=True` loader (no arbitrary pickled code).
    """
    return atomic_write(path, lambda p: torch.save(obj, p))


def load_checkpoint(path: Path | str, map_location: Any = "cpu", expected: str = "") -> dict:
    """torch.load with weights_only=True; a missing, truncated or foreign file is one UserError.
    `expected` says in words what the caller needs (e.g. "a 02_sentiment LSTM checkpoint")."""
    path = Path(path)
    wanted = f"; {expected} is expected" if expected else ""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist{wanted}; train a model first.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, wrong format, or unsafe pickled objects
        raise UserError(f"checkpoint {path} could not be read ({type(e).__name__}): it is damaged or not a "
                        f"checkpoint of this project{wanted}; delete it and train again.") from None


# Every checkpoint names what it holds, {"case": "02_sentiment", "cell": "lstm", ...}, so a script given
# another case's file, or the other cell's, says so in one line instead of failing inside load_state_dict.
def checkpoint_tag(case: str, cell: str) -> dict:
    """The entries that say what a checkpoint holds: its case folder and its cell."""
    return {"case": case, "cell": cell.lower()}


def describe_checkpoint(ckpt: Any) -> str:
    """What a loaded checkpoint holds, in words: 'a 04_text_gen GRU checkpoint'. Files saved before the
    tags existed are named by their cell (from their hyperparameters) or by their top-level keys."""
    if not isinstance(ckpt, dict):
        return f"a {type(ckpt).__name__}, not a checkpoint dict"
    cell = checkpoint_cell(ckpt)
    if ckpt.get("case"):
        return f"a {ckpt['case']} {cell.upper() if cell else 'model'} checkpoint"
    keys = ", ".join(sorted(map(str, ckpt))[:8])
    return f"an untagged {cell.upper() + ' ' if cell else ''}checkpoint (entries: {keys})"


def checkpoint_cell(ckpt: dict) -> str | None:
    """'lstm' or 'gru': the tag, else the cell among the saved hyperparameters (older files)."""
    for source in (ckpt, ckpt.get("hparams"), ckpt.get("model_config")):
        if isinstance(source, dict) and isinstance(source.get("cell"), str):
            return source["cell"].lower()
    return None


def check_checkpoint(ckpt: Any, path: Path | str, *, case: str, needs: Sequence[str], cell: str | None = None,
                     script: str = "") -> dict:
    """Refuse, in one line, a checkpoint of another case, of the other cell, or without the entries `needs`:
    'X holds a 02_sentiment GRU checkpoint; sentiment_lstm.py expects a 02_sentiment LSTM checkpoint'."""
    want = f"a {case} {cell.upper() if cell else 'model'} checkpoint"
    who = f"{script} expects" if script else "expected:"
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} holds {describe_checkpoint(ckpt)}; {who} {want}.")
    held_case, held_cell = ckpt.get("case"), checkpoint_cell(ckpt)
    missing = [k for k in needs if k not in ckpt]
    if (held_case and held_case != case) or missing:
        raise UserError(f"{path} holds {describe_checkpoint(ckpt)}; {who} {want}"
                        + (f" (with {', '.join(needs)})." if missing else "."))
    if cell and held_cell and held_cell != cell.lower():
        raise UserError(f"{path} holds {describe_checkpoint(ckpt)}; {who} {want}: load it with the "
                        f"{held_cell.upper()} script instead.")
    return ckpt


@contextlib.contextmanager
def weights_that_fit(path: Path | str):
    """Rebuild a model from a checkpoint inside `with weights_that_fit(path):` -- a damaged or hand-edited
    file (wrong shapes, missing keys, bad hyperparameters) becomes one line naming the file, not a traceback:
        with weights_that_fit(path):
            model = MyModel(**ckpt["hparams"])
            model.load_state_dict(ckpt["state_dict"])
    A UserError raised inside (e.g. a vocabulary that does not match) passes through unchanged."""
    try:
        yield
    except UserError:
        raise
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as e:  # a damaged or edited file
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
        raise UserError(f"the weights in {path} do not fit the model its hyperparameters describe ({first}); "
                        f"retrain the model.") from None


# ----------------------------------------------------------------------------------------------------
# Watching a run while it trains: progress.jsonl, a live training_curves.png, TensorBoard
# ----------------------------------------------------------------------------------------------------
class NonFiniteLoss(UserError):
    """The training loss (or gradient norm) became NaN or infinite. Raised inside a loop with the parts
    (what, value, where, lr); `stopped_early` turns it into the learner's one-line message."""

    def at(self, where: str) -> "NonFiniteLoss":
        """The same stop, with `where` it happened ("epoch 3, batch 12") filled in by the loop."""
        what, value, _, lr = self.args
        return NonFiniteLoss(what, value, where, lr)


def clip_gradients(model: nn.Module, clip: float | None) -> float:
    """Clip the gradients to norm `clip` (THEORY.md §9: g <- g * clip / ||g|| when ||g|| > clip) and return
    ||g||, the norm of all gradients as one vector, measured *before* clipping. clip None or 0: the
    gradients are only measured, never changed."""
    if clip:
        return float(nn.utils.clip_grad_norm_(model.parameters(), clip))   # (C2) clip the global gradient
                                                                           # norm
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class ProgressLog:
    """Watch a run while it trains. After every epoch the same row goes to three places:

    - out/progress.jsonl: one JSON object per line, appended and flushed at once (`tail -f` it; 06's
      dashboard reads it): epoch, seconds since start, losses, validation metrics, learning rate,
      gradient norm before clipping, share of steps clipped, throughput;
    - out/training_curves.png: redrawn atomically (an image viewer shows it grow; when epochs take under
      a second it is redrawn every few seconds, and always at the end);
    - out/tensorboard/<start time>/: the same scalars for `tensorboard --logdir outputs`, and at the end
      of a run its hyperparameters with its results (`add_hparams`: TensorBoard's HParams tab compares
      runs). Each start gets its own folder, so runs with other settings stay comparable.

        progress = ProgressLog(out, hparams=cfg)       # one per script run: starts a new progress.jsonl
        fit(..., progress=progress)                    # or progress.for_run("member 2") per ensemble member

    A loop calls start(epochs), epoch(row) after each epoch, and end(metrics) or stop(reason).
    """

    REDRAW_EVERY_S = 3.0   # at most one curve redraw per this many seconds (a redraw costs ~0.3-0.6 s)

    def __init__(self, out: Path | str, hparams: dict | None = None, *, title: str = "",
                 metrics: Sequence[str] | None = None, curves: bool = True, logy: bool = False,
                 tensorboard: bool = True):
        self.out = Path(out)
        self.path = self.out / "progress.jsonl"
        self.hparams = dict(hparams or {})
        self.title, self.metrics, self.curves, self.logy = title, metrics, curves, logy
        self.run = ""
        self.t0 = time.time()
        # shared with every for_run() copy: one file, one figure, one TensorBoard folder
        self._shared = {"rows": {}, "totals": {}, "writers": {}, "last_draw": -math.inf, "draw_s": 0.0,
                        "stopped": False,
                        "tb_root": self.out / "tensorboard" / time.strftime("%Y%m%d-%H%M%S"),
                        "tb_class": _summary_writer() if tensorboard else None}
        self.out.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")  # a new run, a new file
        self._append({"event": "start", "time": time.strftime("%Y-%m-%d %H:%M:%S"), "unix": round(self.t0, 3),
                      "hparams": self.hparams})

    def for_run(self, name: str, hparams: dict | None = None) -> "ProgressLog":
        """The same log for one of several runs (an ensemble member, a cell): its rows carry "run": name
        and it gets its own TensorBoard run; `hparams` adds to (or overrides) the script's."""
        view = copy.copy(self)
        view.run, view.hparams = name, {**self.hparams, **(hparams or {})}
        return view

    # -- what a training loop calls --------------------------------------------------------------------
    def start(self, epochs: int) -> None:
        """A run begins: `epochs` is its planned length ("epoch 7 of 20" on the dashboard)."""
        self._shared["totals"][self.run] = epochs
        self._shared["rows"][self.run] = []

    def epoch(self, row: dict) -> None:
        """One finished epoch (or report, or step): row has 'epoch' (or 'step'), losses and metrics.
        The file's row adds the run, the planned total ('total': "epoch 7 of 20") and the seconds so far."""
        record = {**({"run": self.run} if self.run else {}), **row,
                  "total": self._shared["totals"].get(self.run), "elapsed_s": round(time.time() - self.t0, 2)}
        self._append(record)
        self._shared["rows"].setdefault(self.run, []).append(row)
        writer = self._writer()
        if writer is not None:
            step = int(row.get("epoch", row.get("step", len(self._shared["rows"][self.run]))))
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value,
                                                                                                       bool):
                    writer.add_scalar(key, value, step)
            writer.flush()  # TensorBoard sees the epoch now, not after its default 2-minute flush
        self._draw()

    def end(self, metrics: dict) -> None:
        """The run is over: its results beside its hyperparameters (TensorBoard's HParams tab)."""
        numbers = {k: v for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        self._append({**({"run": self.run} if self.run else {}), "event": "end", **numbers,
                      "elapsed_s": round(time.time() - self.t0, 2)})
        writer = self._writer()
        if writer is not None:
            # run_name="." puts the HParams record in this run's own folder, beside its curves
            writer.add_hparams(_hparam_values(self.hparams),
                               {f"hparam/{k}": float(v) for k, v in numbers.items()}, run_name=".")
            writer.close()
            self._shared["writers"].pop(self.run, None)
        self._draw(force=True)

    def __enter__(self) -> "ProgressLog":
        return self

    def __exit__(self, kind, error, trace) -> None:
        """`with ProgressLog(...) as progress:` around a loop of one's own: Ctrl-C inside it says what is
        kept."""
        if kind is KeyboardInterrupt and not self._shared["stopped"]:
            print(f"\ninterrupted: kept {self.stop('interrupted')}.")

    def stop(self, reason: str) -> str:
        """Training ended early (Ctrl-C, a non-finite loss): mark it, draw the curves once more, close
        TensorBoard. Returns what was kept, for the loop's message."""
        self._shared["stopped"] = True
        self._append({**({"run": self.run} if self.run else {}), "event": "stopped", "reason": reason,
                      "elapsed_s": round(time.time() - self.t0, 2)})
        self._draw(force=True)
        for writer in self._shared["writers"].values():
            writer.close()
        self._shared["writers"].clear()
        rows = sum(len(r) for r in self._shared["rows"].values())
        drawn = self.curves and (self.out / "training_curves.png").is_file()
        curves = " and training_curves.png" if drawn else ""
        return f"{self.path.name} ({rows} rows){curves} in {self.out}"

    # -- the three outputs -----------------------------------------------------------------------------
    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:  # one line per write, flushed on close
            f.write(json.dumps(_plain(record), ensure_ascii=False) + "\n")

    def _writer(self):
        cls = self._shared["tb_class"]
        if cls is None:
            return None
        writers = self._shared["writers"]
        if self.run not in writers:
            folder = self._shared["tb_root"] / (_safe_name(self.run) if self.run else "")
            writers[self.run] = cls(log_dir=str(folder))
        return writers[self.run]

    def _draw(self, force: bool = False) -> None:
        shared = self._shared
        rows = {run: r for run, r in shared["rows"].items() if r and "train_loss" in r[0]}
        wait = max(self.REDRAW_EVERY_S, 9 * shared["draw_s"])  # drawing stays under a tenth of the time
        if not self.curves or not rows or (not force and time.time() - shared["last_draw"] < wait):
            return
        from utils.visualization import plot_training_curves  # matplotlib only once there is a curve
        t = time.time()
        history = rows[""] if list(rows) == [""] else {run or "run": r for run, r in rows.items()}
        plot_training_curves(history, self.out / "training_curves.png", title=self.title,
                             metrics=self.metrics, logy=self.logy)
        shared["last_draw"], shared["draw_s"] = time.time(), time.time() - t


def _summary_writer():
    """torch.utils.tensorboard.SummaryWriter, or None (with a one-line note) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed (pip install tensorboard): no TensorBoard logs this run.")
        return None
    return SummaryWriter


def _hparam_values(hparams: dict) -> dict:
    """add_hparams takes numbers, strings and booleans: a tuple or None becomes its text."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text).strip("_") or "run"


def _plain(x: Any) -> Any:
    """JSON-ready: tuples become lists, NaN/inf become None, tensors and numpy numbers plain floats."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x if isinstance(x, (bool, int, float, str, type(None))) else str(x)


# ----------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------
# A case gives fit two functions, both written in its own module where the learner reads them:
#     train_step(model, batch, optimizer, clip) -> (loss, grad_norm, n)
#         one optimisation step, in plain sight: forward -> loss -> zero_grad -> backward -> clip -> step;
#         loss: the batch's mean loss (a float), grad_norm: the norm before clipping (clip_gradients),
#         n: examples in the batch (the epoch's mean loss weights each batch by it). It calls
#         stop_if_not_finite on the loss and on the norm, so a NaN never reaches optimizer.step().
#     eval_step(model, batch) -> (loss, predictions, targets)
#         the same forward and loss without the update, for `evaluate`: predictions and targets are
#         detached tensors (or None) that `metrics_fn(preds, targets) -> dict` turns into validation metrics.
# Moving the batch to the device is the steps' job: they know the batch's shape.

def stop_if_not_finite(what: str, value: float, optimizer: torch.optim.Optimizer) -> None:
    """Raise NonFiniteLoss when `value` (the loss, or the gradient norm) is NaN or infinite: called by a
    training step before optimizer.step(), so a broken step never changes the weights."""
    if not math.isfinite(value):
        raise NonFiniteLoss(what, value, "", optimizer.param_groups[0]["lr"])


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


def fit(model: nn.Module, train_loader, val_loader, *, train_step: Callable, eval_step: Callable, epochs: int,
        optimizer: torch.optim.Optimizer, metrics_fn: Callable | None = None,
        monitor: str = "loss", mode: str = "min", patience: int = 5, clip: float | None = 1.0,
        scheduler: Any = None, checkpoint_path: Path | None = None, checkpoint_extra: dict | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None, max_batches: int | None = None,
        restore_best: bool = True, progress: ProgressLog | None = None, verbose: bool = True) -> dict:
    """Run the case's `train_step` over every batch of each epoch, validate with its `eval_step`, stop
    early on a validation metric; return the history and the best epoch (the contract is above).

    - monitor/mode: which validation number decides "best" ('loss'/'min', 'accuracy'/'max', ...).
    - clip: passed to train_step, which clips (RNNs can have exploding gradients: THEORY.md §9). Every row
      has the gradient norm before clipping (mean and max over the epoch's steps) and the share of
      steps that were clipped, with the training throughput (samples/s).
    - scheduler: stepped once per epoch (ReduceLROnPlateau gets the monitored value).
    - checkpoint_path: the best model's state_dict (plus `checkpoint_extra`, e.g. a vocabulary) saved
      atomically whenever validation improves; the best weights are restored at the end either way.
    - on_epoch_end(epoch, row): called after each epoch (it may add entries to `row`, the history
      row); returning True stops training there, like early stopping.
    - restore_best=False keeps the last epoch's weights (a refit with a fixed epoch count).
    - progress: a ProgressLog that receives every row as it is made (progress.jsonl, live curves,
      TensorBoard); verbose=False trains silently (no bar, no line per epoch).
    A NaN or infinite loss (or gradient norm) stops training with NonFiniteLoss before that step is
    applied; Ctrl-C stops it too. Either way the best checkpoint and the progress files are kept.
    """
    if epochs < 1:
        raise UserError(f"--EPOCHS must be at least 1, got {epochs}.")
    sign = 1.0 if mode == "min" else -1.0
    best_value, best_epoch, best_state = math.inf, 0, None
    history: list[dict] = []
    bad_epochs, epoch = 0, 0
    if progress is not None:
        progress.start(epochs)
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.time()
            model.train()
            total, n, norms, clipped = 0.0, 0, [], 0
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True,
                       disable=not verbose)
            for b, batch in enumerate(bar):
                if max_batches is not None and b >= max_batches:
                    break
                try:
                    value, norm, k = train_step(model, batch, optimizer, clip)   # the case's own step
                except NonFiniteLoss as e:  # say where: this epoch, this batch
                    raise e.at(f"epoch {epoch}, batch {b + 1}") from None
                norms.append(norm)
                clipped += bool(clip) and norm > clip
                total += value * k
                n += k
                bar.set_postfix(loss=f"{total / n:.4f}", grad=f"{norm:.2f}")
            train_s = time.time() - t0
            val = evaluate(model, val_loader, eval_step, metrics_fn, desc="validate")
            row = {"epoch": epoch, "train_loss": total / max(n, 1)}
            row.update({f"val_{k}": v for k, v in val.items() if k not in ("predictions", "targets")})
            row["lr"] = optimizer.param_groups[0]["lr"]
            row.update(gradient_summary(norms, clipped))
            row["samples_per_s"] = round(n / max(train_s, 1e-9), 1)
            row["epoch_time_s"] = round(time.time() - t0, 2)
            history.append(row)

            value = row.get(f"val_{monitor}")
            if value is None:
                raise ValueError(f"monitor={monitor!r} is not among the validation metrics {list(val)}")
            # a NaN/inf validation value is no improvement, not even in epoch 1
            # (it compares false with anything)
            improved = math.isfinite(value) and (best_state is None or sign * value < best_value - 1e-12)
            if not math.isfinite(value) and verbose:
                tqdm.write(f"val_{monitor} is {value} in epoch {epoch}: not a number to compare, so these "
                           f"weights are not kept as the best.")
            if improved:
                best_value, best_epoch, bad_epochs = sign * value, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if checkpoint_path is not None:
                    save_checkpoint({"state_dict": best_state, "epoch": epoch,
                                     **(checkpoint_extra or {})}, checkpoint_path)
            else:
                bad_epochs += 1
            if verbose:
                tqdm.write(epoch_line(row, improved))
            stop = bool(on_epoch_end(epoch, row)) if on_epoch_end is not None else False
            if progress is not None:
                progress.epoch(row)
            if scheduler is not None:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(value)
                else:
                    scheduler.step()
            if bad_epochs >= patience:
                if verbose:
                    tqdm.write(f"early stopping: no improvement in val_{monitor} for {patience} epochs "
                               f"(best epoch {best_epoch}).")
                break
            if stop:  # on_epoch_end returned True, e.g. a time budget is spent
                break
    except (KeyboardInterrupt, NonFiniteLoss) as e:
        stopped_early(e, epoch, checkpoint_path if best_state is not None else None, best_epoch, progress)
    if best_state is None and history:
        raise UserError(f"val_{monitor} was never a finite number in {len(history)} epoch(s), so no weights "
                        f"were kept; lower the learning rate or check the validation data.")
    if best_state is not None and restore_best:
        model.load_state_dict(best_state)
    result = {"history": history, "best_epoch": best_epoch, "best_value": sign * best_value,
              "epochs_run": len(history)}
    if progress is not None:
        progress.end({f"best_val_{monitor}": result["best_value"], "best_epoch": best_epoch,
                      "epochs_run": len(history)})
    return result


def gradient_summary(norms: Sequence[float], clipped: int) -> dict:
    """An epoch's gradient norms before clipping -> mean, max and the share of steps that were clipped."""
    if not norms:
        return {"grad_norm": 0.0, "grad_norm_max": 0.0, "clipped": 0.0}
    return {"grad_norm": sum(norms) / len(norms), "grad_norm_max": max(norms),
            "clipped": clipped / len(norms)}


def epoch_line(row: dict, improved: bool) -> str:
    """The line printed after an epoch: losses and metrics, then the gradient and the speed."""
    skip = ("lr", "epoch_time_s", "grad_norm", "grad_norm_max", "clipped", "samples_per_s", "chars_per_s")
    shown = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k not in skip)
    speed = (f", {row['samples_per_s']:,.0f} samples/s" if "samples_per_s" in row else
             f", {row['chars_per_s']:,.0f} chars/s" if "chars_per_s" in row else "")
    grads = (f"  |g| {row['grad_norm']:.2f} ({row['clipped']:.0%} clipped{speed})" if "grad_norm" in row
             else "")
    epoch = row.get("epoch", row.get("step"))
    return f"epoch {epoch:3d}  {shown}{grads}  ({row['epoch_time_s']:.1f}s){'  *best' if improved else ''}"


def stopped_early(error: BaseException, epoch: int, checkpoint: Path | None, best_epoch: int,
                  progress: ProgressLog | None) -> None:
    """Ctrl-C or a non-finite loss inside a training loop: say what is kept, then re-raise.
    NonFiniteLoss becomes one `error:` line (exit 2) naming the step, what is kept and what to try."""
    kept = [f"the best checkpoint {checkpoint} (epoch {best_epoch})"] if checkpoint is not None else []
    if progress is not None:
        kept.append(progress.stop("interrupted" if isinstance(error,
                                                              KeyboardInterrupt) else "non-finite loss"))
    kept_text = f"Kept: {'; '.join(kept)}." if kept else "Nothing was saved yet."
    if isinstance(error, KeyboardInterrupt):
        tqdm.write(f"\ninterrupted during epoch {epoch}. {kept_text}")
        raise error
    what, value, where, lr = error.args
    raise NonFiniteLoss(f"the training {what} became {value} at {where}: training stopped before that step "
                        f"changed the weights. {kept_text} Try a lower learning rate (it was {lr:g}; "
                        f"e.g. --LR={lr / 10:g}).") from None

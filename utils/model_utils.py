"""Model builders that two or more cases share (each case's own model lives in its folder).

- `make_rnn`: an LSTM or GRU layer, either torch.nn's (cuDNN on GPU) or the hand-written
  ScratchLSTM / ScratchGRU from 01_basic_theory (checked against torch.nn before it is used).
- `init_forget_bias`, `count_parameters`.
- `log_mean_probability` / `ensemble_member_seeds`: seed ensembles; `confusion_matrix`.
The training driver (fit, evaluate, ProgressLog, checkpoints) is utils/training.py. Imports run one way:
this file loads 01_basic_theory's cells by path; 01 imports utils.training and utils.script_utils, never
this file.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from utils.script_utils import REPO_ROOT, UserError, float64_device

THEORY_DIR = REPO_ROOT / "01_basic_theory"


# ----------------------------------------------------------------------------------------------------
# The recurrent layer: torch.nn or the scratch cells from 01_basic_theory (one source of truth)
# ----------------------------------------------------------------------------------------------------
def load_case_module(folder: str, stem: str):
    """Import <folder>/<stem>.py by path (a folder name starting with a digit is not a package), once: 01's
    cells for make_rnn, 04's char_model for 02's pretrained classifier."""
    name = f"case_{folder}_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    if stem in sys.modules and Path(getattr(sys.modules[stem], "__file__", "") or "").resolve() == \
            (REPO_ROOT / folder / f"{stem}.py").resolve():
        return sys.modules[stem]        # already imported by its own script: the same classes, not a copy
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / folder / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_theory_module(stem: str):
    """Import 01_basic_theory/<stem>.py by path."""
    return load_case_module(THEORY_DIR.name, stem)


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
    where = float64_device(device)                 # a float64 check: on the CPU where the device has none
                                                   # (MPS)
    try:
        err = module.check_against_torch(device=str(where))
    except AssertionError as e:
        raise UserError(f"the scratch {cell.upper()} in 01_basic_theory disagrees with torch.nn ({e}); "
                        f"fix it (python -m pytest tests/test_scratch_cells.py) or use --IMPL=torch.")
    except RuntimeError as e:
        raise UserError(f"the check of the scratch {cell.upper()} against torch.nn could not run on {where} "
                        f"({str(e).splitlines()[0]}); use --IMPL=torch or --DEVICE=cpu.")
    _CHECKED.add(key)
    note = ("" if where == torch.device(device) else
            f" (checked in float64 on the CPU: {device} has no float64)")
    print(f"scratch {cell.upper()} matches torch.nn on {where} (max rel. error {err:.1e}){note}")
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
# Seed ensembles (02 and 05; THEORY.md §8)
# ----------------------------------------------------------------------------------------------------
def ensemble_member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members: seed*members + k, so two SEEDs never share a member."""
    if members < 1:
        raise UserError(f"--ENSEMBLE must be at least 1, got {members}.")
    return [seed * members + k for k in range(members)]

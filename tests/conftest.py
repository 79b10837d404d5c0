"""Shared test helpers: run a script exactly as a learner does, and import the 01_basic_theory modules."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# each case module (02_sentiment/sentiment_model.py, ...) is imported by its plain name, as its scripts do
for _case in ("02_sentiment", "03_stock", "04_text_gen", "05_seq_classify"):
    sys.path.insert(1, str(ROOT / _case))

# Tests write their results to a throw-away outputs/ folder, never over a learner's own outputs/ (a
# --quick smoke test would otherwise replace a real run's metrics.json and checkpoint). Every script
# honours LSTM_GRU_OUTPUTS (utils/script_utils.py); set here, before any test imports utils.
TEST_OUTPUTS = Path(tempfile.mkdtemp(prefix="lstm_gru_tests_")) / "outputs"
os.environ["LSTM_GRU_OUTPUTS"] = str(TEST_OUTPUTS)
# ... and their caches (the Rotten Tomatoes split, the stripped Shakespeare, n-gram baselines) to a throw-away
# data folder: a test run never writes into the source tree (utils/data_utils.py honours LSTM_GRU_DATA).
TEST_DATA = TEST_OUTPUTS.parent / "data"
os.environ["LSTM_GRU_DATA"] = str(TEST_DATA)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_OUTPUTS.parent, ignore_errors=True)


class ScriptResult:
    def __init__(self, proc: subprocess.CompletedProcess, out_dir: Path):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.out_dir = out_dir

    @property
    def metrics(self) -> dict:
        path = self.out_dir / "metrics.json"
        assert path.is_file(), (f"{path} was not written.\nstdout:\n{self.stdout[-3000:]}\n"
                                f"stderr:\n{self.stderr[-3000:]}")
        return json.loads(path.read_text(encoding="utf-8"))


def run_script(script: str, *args: str, timeout: float = 300, cwd: Path | None = None,
               env: dict | None = None, check: bool = True) -> ScriptResult:
    """`python <script> <args>` in a subprocess from the repo root (or `cwd`), as a learner runs it.

    With check=True the exit code must be 0 (the output is shown if not). The results folder is
    <TEST_OUTPUTS>/<case folder>/<script stem>/, and .../<script stem>/quick/ for a --quick run.
    """
    path = ROOT / script
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", **(env or {})}
    proc = subprocess.run([sys.executable, str(path.relative_to(ROOT) if cwd is None else path), *args],
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
    out_dir = TEST_OUTPUTS / path.parent.name / path.stem
    result = ScriptResult(proc, out_dir / "quick" if "--quick" in args else out_dir)
    if check:
        assert proc.returncode == 0, (f"{script} {' '.join(args)} exited with {proc.returncode}\n"
                                      f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return result


def load_theory(stem: str):
    """01_basic_theory/<stem>.py as a module (the folder name is not importable with `import`)."""
    from utils.model_utils import load_theory_module
    return load_theory_module(stem)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train_step_for(step):
    """A training step around a `step(model, batch) -> (loss, predictions, targets)`, written the way a case
    module writes its own (utils/training.py: fit's contract): forward -> loss -> zero_grad -> backward ->
    clip -> optimizer step."""
    from utils.training import clip_gradients, stop_if_not_finite

    def train_step(model, batch, optimizer, clip):
        loss, _, targets = step(model, batch)
        value = loss.item()
        stop_if_not_finite("loss", value, optimizer)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(model, clip)
        stop_if_not_finite("gradient norm", norm, optimizer)
        optimizer.step()
        return value, norm, targets.shape[0]
    return train_step


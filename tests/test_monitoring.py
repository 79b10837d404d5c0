"""Watching training: progress.jsonl, live curves and TensorBoard from every loop;
NaN and Ctrl-C stop cleanly."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TEST_OUTPUTS, run_script, train_step_for
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from utils.script_utils import load_case_script, save_metrics
from utils.training import NonFiniteLoss, ProgressLog, fit, load_checkpoint

REQUIRED = {"epoch", "train_loss", "val_loss", "lr", "grad_norm", "clipped", "samples_per_s", "elapsed_s",
            "total"}


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents.*"))


def toy_problem(seed: int = 0):
    """A linear regression small enough to train in milliseconds: y = sum of 5 inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(120, 5, generator=g)
    loader = DataLoader(TensorDataset(x, x.sum(1)), batch_size=20)

    def step(model, batch):
        pred = model(batch[0]).squeeze(-1)
        return nn.functional.mse_loss(pred, batch[1]), pred.detach(), batch[1]

    return loader, step


def train_toy(tmp_path: Path, progress=None, lr: float = 0.05, epochs: int = 4, **kw):
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    loader, step = toy_problem()
    result = fit(model, loader, loader, train_step=train_step_for(step), eval_step=step, epochs=epochs,
                 optimizer=torch.optim.SGD(model.parameters(), lr=lr), checkpoint_path=tmp_path / "model.pt",
                 progress=progress, verbose=False, **kw)
    return model, result


def test_progress_log_writes_rows_curves_and_tensorboard(tmp_path):
    progress = ProgressLog(tmp_path, hparams={"LR": 0.05, "SIZES": (1, 2), "NOTE": None}, title="toy")
    _, result = train_toy(tmp_path, progress)
    rows = rows_of(tmp_path / "progress.jsonl")
    assert rows[0]["event"] == "start" and rows[0]["hparams"]["SIZES"] == [1, 2]
    epochs = [r for r in rows if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4] and all(REQUIRED <= set(r) for r in epochs)
    assert all(r["total"] == 4 and 0 <= r["clipped"] <= 1 and r["grad_norm"] > 0 for r in epochs)
    assert rows[-1]["event"] == "end" and rows[-1]["best_epoch"] == result["best_epoch"]
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    # the same scalars in TensorBoard, and the run's hyperparameters for its HParams tab
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    (run_dir,) = (tmp_path / "tensorboard").iterdir()
    values = [(v.tag, (v.simple_value if v.WhichOneof("value") == "simple_value"
                       else next(iter(v.tensor.float_val), None)), v.metadata.plugin_data.plugin_name)
              for f in event_files(run_dir) for e in EventFileLoader(str(f)).Load() for v in e.summary.value]
    assert ([x for tag, x, _ in values if tag == "train_loss"]
            == pytest.approx([r["train_loss"] for r in epochs]))
    assert ("_hparams_/session_start_info", "hparams") in {(tag, plugin) for tag, _, plugin in values}
    assert "hparam/best_val_loss" in {tag for tag, _, _ in values}


def test_monitoring_changes_no_number(tmp_path):
    """Measuring gradient norms, writing rows and drawing must not touch the training itself."""
    plain_model, plain = train_toy(tmp_path / "plain")
    watched_model, watched = train_toy(tmp_path / "watched", ProgressLog(tmp_path / "watched"))
    assert [r["train_loss"] for r in plain["history"]] == [r["train_loss"] for r in watched["history"]]
    assert all(torch.equal(a, b) for a, b in zip(plain_model.parameters(), watched_model.parameters()))


def test_clip_none_only_measures_the_gradient(tmp_path):
    _, clipped = train_toy(tmp_path / "a", clip=0.01)
    _, unclipped = train_toy(tmp_path / "b", clip=None)
    _, never = train_toy(tmp_path / "c", clip=1e9)                   # clipping that never bites
    assert all(r["clipped"] == 1.0 for r in clipped["history"])       # norm > 0.01 at every step
    assert all(r["clipped"] == 0.0 for r in unclipped["history"] + never["history"])
    for a, b in zip(unclipped["history"], never["history"]):         # measured alike, trained alike
        assert (a["train_loss"], a["grad_norm"]) == pytest.approx((b["train_loss"], b["grad_norm"]))


def test_non_finite_loss_stops_with_one_message_and_keeps_the_checkpoint(tmp_path):
    progress = ProgressLog(tmp_path)
    with pytest.raises(NonFiniteLoss) as info:
        train_toy(tmp_path, progress, lr=40.0, epochs=20, clip=None)   # diverges to inf within a few epochs
    message = str(info.value)
    assert "became" in message and "lower learning rate" in message and "--LR=4" in message
    assert "model.pt" in message and "progress.jsonl" in message and "\n" not in message
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    rows = rows_of(tmp_path / "progress.jsonl")
    assert rows[-1]["event"] == "stopped" and rows[-1]["reason"] == "non-finite loss"


def test_ctrl_c_keeps_progress_curves_and_best_checkpoint(tmp_path, capsys):
    loader, step = toy_problem()
    calls = {"n": 0}

    def interrupted_step(model, batch):
        calls["n"] += 1
        if calls["n"] == 2 * 6 * 2 + 3:   # 6 batches + 6 validation batches per epoch: epoch 3 is cut short
            raise KeyboardInterrupt
        return step(model, batch)

    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(model, loader, loader, train_step=train_step_for(interrupted_step), eval_step=interrupted_step,
            epochs=10, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
            checkpoint_path=tmp_path / "model.pt", progress=ProgressLog(tmp_path), verbose=False)
    said = capsys.readouterr().out
    assert ("interrupted during epoch 3" in said and "model.pt (epoch 2)" in said
            and "training_curves.png" in said)
    rows = rows_of(tmp_path / "progress.jsonl")
    assert [r["epoch"] for r in rows if "epoch" in r] == [1, 2] and rows[-1]["reason"] == "interrupted"
    assert (load_checkpoint(tmp_path / "model.pt")["epoch"] == 2
            and (tmp_path / "training_curves.png").is_file())


def test_text_gru_writes_progress_and_curves_while_it_trains():
    """The issue's check: while 04_text_gen/text_gru.py trains, progress.jsonl already holds rows and
    training_curves.png exists; TensorBoard event files are there at the end; the dashboard calls it
    training."""
    out = TEST_OUTPUTS / "04_text_gen" / "text_gru" / "quick"
    progress_file = out / "progress.jsonl"
    progress_file.unlink(missing_ok=True)
    (out / "training_curves.png").unlink(missing_ok=True)
    dashboard = load_case_script(ROOT / "06_comparison" / "visualization_dashboard.py")
    proc = subprocess.Popen([sys.executable, "04_text_gen/text_gru.py", "--quick", "--EPOCHS=4",
                             "--CHUNKS_PER_EPOCH=4", "--MAX_MINUTES=0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen_while_running, status = None, None
    try:
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if progress_file.is_file() and (out / "training_curves.png").is_file():
                rows = [r for r in rows_of(progress_file) if "epoch" in r]
                if rows:
                    status = dashboard.progress_status(progress_file)
                    seen_while_running = (len(rows), proc.poll() is None)
                    break
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert seen_while_running and seen_while_running[1], "no progress row and curve seen while training"
    assert status["state"] == "training" and "epoch" in status["line"] and "of 4" in status["line"]
    rows = rows_of(progress_file)
    assert [r["epoch"] for r in rows if "epoch" in r] == [1, 2, 3, 4]
    assert {"chars_per_s", "grad_norm", "val_bits_per_char"} <= set(rows[1])
    assert event_files(out / "tensorboard")


def test_an_ensemble_logs_each_member_as_a_run():
    """05's twin trains two members under --quick: one progress.jsonl, one TensorBoard run per member."""
    run_script("05_seq_classify/sequence_lstm.py", "--quick", "--EPOCHS=2")
    out = TEST_OUTPUTS / "05_seq_classify" / "sequence_lstm" / "quick" / "GunPoint"
    rows = rows_of(out / "progress.jsonl")
    assert rows[0]["event"] == "start" and rows[0]["hparams"]["EPOCHS"] == 2
    trained = [r for r in rows if "epoch" in r]
    assert [(r["run"], r["epoch"]) for r in trained] == [("model 1 (seed 0)", 1), ("model 1 (seed 0)", 2),
                                                          ("model 2 (seed 1)", 1), ("model 2 (seed 1)", 2)]
    assert all({"train_loss", "val_accuracy", "grad_norm", "clipped", "samples_per_s",
                "total"} <= set(r) for r in trained)
    stamp = max((out / "tensorboard").iterdir())   # this run's folder (an earlier test may have left one)
    assert sorted(p.name for p in stamp.iterdir()) == ["model_1__seed_0", "model_2__seed_1"]
    assert all(event_files(p) for p in stamp.iterdir()) and (out / "training_curves.png").is_file()


def test_every_training_script_creates_a_progress_log():
    """Monitoring is always on: each script that trains hands a ProgressLog to its loop."""
    scripts = ["01_basic_theory/lstm_from_scratch.py", "01_basic_theory/gru_from_scratch.py",
               "01_basic_theory/theory_comparison.py", "06_comparison/hyperparameter_study.py",
               *(f"{case}/{stem}_{cell}.py"
                 for case, stem in (("02_sentiment", "sentiment"), ("03_stock", "stock"),
                                    ("04_text_gen", "text"), ("05_seq_classify", "sequence"))
                 for cell in ("lstm", "gru"))]
    missing = [s for s in scripts if "ProgressLog(" not in (ROOT / s).read_text(encoding="utf-8")]
    assert not missing


def test_dashboard_reads_training_stopped_and_finished_runs(tmp_path):
    dashboard = load_case_script(ROOT / "06_comparison" / "visualization_dashboard.py")
    progress = ProgressLog(tmp_path / "run", curves=False, tensorboard=False)
    member = progress.for_run("member 2 (seed 7)")
    member.start(20)
    for epoch in range(1, 8):
        member.epoch({"epoch": epoch, "train_loss": 1 / epoch, "val_loss": 1.1 / epoch,
                      "val_accuracy": 0.5 + epoch / 100})
    status = dashboard.progress_status(tmp_path / "run" / "progress.jsonl")
    assert status["state"] == "training"
    assert status["line"].startswith("training: epoch 7 of 20 (member 2 (seed 7)), train_loss 0.1429")
    assert "val_accuracy 0.57" in status["line"]
    member.stop("interrupted")
    status = dashboard.progress_status(tmp_path / "run" / "progress.jsonl")
    assert status["line"].startswith("stopped (interrupted)")
    time.sleep(0.02)
    save_metrics(tmp_path / "run", config={}, metrics={})
    assert dashboard.progress_status(tmp_path / "run" / "progress.jsonl")["state"] == "finished"
    silent = dashboard.progress_status(tmp_path / "run" / "progress.jsonl", now=time.time() + 10_000)
    assert silent["state"] == "finished"


def test_dashboard_decides_from_the_records_not_the_file_times(tmp_path):
    """outputs/ copied from another machine: every file gets a new mtime (progress.jsonl last here), yet a
    finished run stays finished, and a run that never finished is not 'updated 0 s ago'. --quick runs
    are not listed as runs in progress."""
    import os
    dashboard = load_case_script(ROOT / "06_comparison" / "visualization_dashboard.py")
    root = tmp_path / "outputs"
    done = ProgressLog(root / "02_sentiment" / "sentiment_lstm", curves=False, tensorboard=False)
    done.start(3)
    done.epoch({"epoch": 1, "train_loss": 0.5})
    save_metrics(root / "02_sentiment" / "sentiment_lstm", config={}, metrics={})
    killed = ProgressLog(root / "03_stock" / "stock_gru", curves=False, tensorboard=False)
    killed.start(9)
    killed.epoch({"epoch": 2, "train_loss": 0.7})
    quick = ProgressLog(root / "03_stock" / "stock_lstm" / "quick", curves=False, tensorboard=False)
    quick.start(1)
    later = time.time() + 3600                                   # the copy, an hour later
    for f in root.rglob("*"):
        if f.is_file():
            os.utime(f, (later + (1 if f.name == "progress.jsonl" else 0),) * 2)
    progress = root / "02_sentiment" / "sentiment_lstm" / "progress.jsonl"
    assert dashboard.progress_status(progress, now=later + 5)["state"] == "finished"
    status = dashboard.progress_status(root / "03_stock" / "stock_gru" / "progress.jsonl", now=later + 5)
    assert status["state"] == "training" and "may have been killed" in status["line"]   # silent for an hour
    page = dashboard.live_section(root, [])
    assert "stock_gru" in page and "sentiment_lstm" not in page and "quick" not in page

"""05_seq_classify: UCR/UEA loading, masking-aware classifier, evaluation metrics, DTW, and the scripts."""
import json

import numpy as np
import pytest
import torch
from classification_metrics import (
    calibration,
    dtw_distance,
    dtw_distances,
    euclidean_distances,
    nearest_neighbour_predict,
    per_class_report,
    roc_curve,
)
from conftest import run_script

from series_model import (
    ChannelScaler,
    SeriesClassifier,
    collate_series,
    datasets_to_run,
    ensemble_result,
    load_series_members,
    macro_f1,
    patch_series,
    predict_series_probabilities,
    prepare_series_splits,
    refit_on_train_and_val,
    stratified_split,
    train_series_classifier,
    train_step,
)
from utils.data_utils import load_ucr_dataset, read_ts_file
from utils.model_utils import confusion_matrix, ensemble_member_seeds
from utils.script_utils import UserError

TS = """# a comment
@problemName Tiny
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a
7,8:9,10:b
"""


def test_read_ts_file_keeps_channels_and_unequal_lengths(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS)
    series, labels, header = read_ts_file(path)
    assert labels == ["a", "b"] and header["problemname"] == "Tiny"
    assert series[0].shape == (3, 2) and series[1].shape == (2, 2)
    assert series[0][:, 1].tolist() == [4, 5, 6] and series[1][1].tolist() == [8, 10]
    path.write_text(TS.replace("7,8:9,10:b", "7,8:9:b"))
    with pytest.raises(UserError, match="different lengths"):
        read_ts_file(path)
    path.write_text("just text\n")
    with pytest.raises(UserError, match="no @data"):
        read_ts_file(path)


def test_bundled_datasets_load_offline_with_official_splits():
    jv = load_ucr_dataset("JapaneseVowels")
    assert len(jv["train"][0]) == 270 and len(jv["test"][0]) == 370
    assert jv["n_channels"] == 12 and jv["lengths"] == (7, 29) and len(jv["classes"]) == 9
    assert not jv["znormalized"]  # UEA multivariate: raw values
    gp = load_ucr_dataset("GunPoint")
    assert gp["znormalized"] and gp["lengths"] == (150, 150) and gp["classes"] == ["1", "2"]
    with pytest.raises(UserError, match="bundled: .*GunPoint"):
        load_ucr_dataset("NoSuchProblem")
    with pytest.raises(UserError, match="not a classification problem"):
        load_ucr_dataset("Tecator")
    assert datasets_to_run("all", ("A", "B")) == ["A", "B"] and datasets_to_run("A, B", ()) == ["A", "B"]


def test_stratified_split_scaler_and_patching():
    y = np.array([0] * 10 + [1] * 5)
    tr, va = stratified_split(y, 0.2, seed=0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == 15
    assert np.sum(y[va] == 0) == 2 and np.sum(y[va] == 1) == 1
    scaler = ChannelScaler().fit([np.array([[0.0, 10.0], [2.0, 10.0]]), np.array([[4.0, 10.0]])])
    assert np.allclose(scaler.mean, [2.0, 10.0]) and np.allclose(scaler.std[0], np.sqrt(8 / 3))
    x = np.arange(5, dtype=np.float32)[:, None]
    assert patch_series(x, 2).tolist() == [[0, 1], [2, 3], [4, 4]]  # edge-padded last patch
    data = load_ucr_dataset("ItalyPowerDemand")
    splits = prepare_series_splits(data, 0.2, seed=0)
    train_steps = np.concatenate([s.numpy() for s in splits["train"].series])
    assert abs(train_steps.mean()) < 1e-5 and abs(train_steps.std() - 1) < 1e-3  # fitted on train only
    assert len(splits["train"]) + len(splits["val"]) == 67 and len(splits["test"]) == 1029


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", SeriesClassifier.POOLINGS)
def test_padding_never_changes_a_prediction(cell, pooling):
    """A series classified alone and inside a padded batch with a longer one gives the same logits."""
    torch.manual_seed(0)
    model = SeriesClassifier(cell, "torch", 3, 4, 8, num_layers=2, bidirectional=True, pooling=pooling).eval()
    short, long_ = torch.randn(5, 3), torch.randn(9, 3)
    x, lengths, _ = collate_series([(short, torch.tensor(0)), (long_, torch.tensor(1))])
    assert x.shape == (2, 9, 3) and lengths.tolist() == [5, 9]
    with torch.no_grad():
        batched = model(x, lengths)
        alone = model(short[None], torch.tensor([5]))
        x_noisy = x.clone()
        x_noisy[0, 5:] = 100.0  # garbage in the padding must be ignored
        noisy = model(x_noisy, lengths)
    assert torch.allclose(batched[0], alone[0], atol=1e-6) and torch.allclose(noisy, batched, atol=1e-6)


def test_classification_metrics_by_hand():
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    rep = per_class_report(cm)
    assert np.allclose(rep["precision"], [0.5, 2 / 3, 0]) and np.allclose(rep["recall"], [0.5, 1, 0])
    assert np.isclose(rep["macro"]["f1"], (0.5 + 0.8 + 0) / 3) and rep["support"].tolist() == [2, 2, 1]
    assert np.isclose(rep["weighted"]["f1"], (2 * 0.5 + 2 * 0.8) / 5) and np.isclose(rep["accuracy"], 0.6)
    assert np.isclose(macro_f1(y_true, y_pred, 3), rep["macro"]["f1"])
    fpr, tpr, auc = roc_curve([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    assert auc == pytest.approx(0.75) and fpr[-1] == 1 and tpr[-1] == 1
    assert roc_curve([1, 0], [0.5, 0.5])[2] == pytest.approx(0.5)  # ties count half
    cal = calibration(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), [0, 1, 1], bins=2)
    assert cal["ece"] == pytest.approx(abs(2 / 3 - 0.8))


def test_dtw_by_hand_and_vectorised_matches_reference():
    a = np.array([0.0, 1.0, 2.0])[:, None]
    b = np.array([0.0, 0.0, 1.0, 2.0])[:, None]
    assert dtw_distance(a, b) == 0.0  # a repeated step costs nothing after warping
    assert dtw_distance(a, a + 1, window=0) == pytest.approx(np.sqrt(3))  # no warping: 1 + 1 + 1
    assert dtw_distance(a, a + 1) == pytest.approx(np.sqrt(2))  # 0-1, 1-1, 2-2, 2-3: cost 1 + 0 + 0 + 1
    assert dtw_distance(np.array([[0.0], [0.0], [5.0]]), np.array([[5.0], [0.0], [0.0]]), window=0) \
        == pytest.approx(np.sqrt(50))  # window 0 = Euclidean
    rng = np.random.default_rng(1)
    A = [rng.normal(size=(int(rng.integers(4, 12)), 2)) for _ in range(4)]
    B = [rng.normal(size=(int(rng.integers(4, 12)), 2)) for _ in range(3)]
    for window in (None, 2):
        ref = [[dtw_distance(x, z, window) for z in B] for x in A]
        assert np.allclose(dtw_distances(A, B, window, chunk=5), ref)
    E = [rng.normal(size=(6, 1)) for _ in range(3)]
    assert np.allclose(euclidean_distances(E, E[:2]), [[np.linalg.norm(x - z) for z in E[:2]] for x in E],
                       atol=1e-6)
    assert nearest_neighbour_predict(np.array([[3.0, 1.0], [0.5, 2.0]]), [7, 9]).tolist() == [9, 7]


@pytest.mark.parametrize("script,args",
                         [("sequence_lstm.py", ()), ("sequence_gru.py", ("--DATASET=JapaneseVowels",))])
def test_twins_quick_end_to_end(script, args):
    r = run_script(f"05_seq_classify/{script}", "--quick", *args)
    name = args[0].split("=")[1] if args else "GunPoint"
    m = r.metrics
    assert m["config"]["QUICK"] and m["metrics"]["dataset"] == name and m["metrics"]["run_now"] == [name]
    assert 0 <= m["metrics"]["test_accuracy"] <= 1 and m["metrics"]["test_loss"] > 0
    assert name in m["metrics"]["datasets"] and (r.out_dir / "test_accuracy.png").is_file()
    sub = r.out_dir / name  # under .../quick/: a smoke test never overwrites a real run's checkpoint
    entry = json.loads((sub / "metrics.json").read_text())["metrics"]
    assert entry["per_seed"][0]["n_test"] == 60
    assert entry["test_accuracy_mean"] == m["metrics"]["test_accuracy"]
    for f in ("metrics.json", "checkpoint.pt", "predictions.csv", "training_curves.png"):
        assert (sub / f).is_file(), f
    lines = (sub / "predictions.csv").read_text().splitlines()
    assert len(lines) == 61 and lines[0].startswith("test_index,true,predicted,correct,p_")
    seed0 = entry["per_seed"][0]  # --quick trains an ensemble of 2: its accuracy is the saved predictions'
    assert seed0["ensemble_members"] == 2 and len(seed0["member_test_accuracy"]) == 2
    assert np.mean([int(row.split(",")[3]) for row in lines[1:]]) == pytest.approx(seed0["test_accuracy"])


def test_classification_metrics_quick_end_to_end():
    r = run_script("05_seq_classify/classification_metrics.py", "--quick")
    assert "training one here" in r.stdout
    models = r.metrics["metrics"]["models"]
    assert {"LSTM", "GRU", "1-NN Euclidean"} <= set(models)
    assert any(k.startswith("1-NN DTW") for k in models)
    dtw = next(v for k, v in models.items() if k.startswith("1-NN DTW"))
    assert dtw["accuracy"] >= 0.8  # GunPoint is easy for 1-NN DTW (0.907 on the full test set)
    for name in ("LSTM", "GRU"):
        assert 0 <= models[name]["ece"] <= 1 and len(models[name]["per_class"]) == 2
        assert sum(c["support"] for c in models[name]["per_class"].values()) == 40
    sub = r.out_dir / "GunPoint"  # r.out_dir is .../classification_metrics/quick
    for f in ("confusion_lstm.png", "roc_gru.png", "reliability.png", "misclassified_lstm.png",
              "predictions.json"):
        assert (sub / f).is_file(), f


@pytest.mark.parametrize("script,args,message", [
    ("sequence_lstm.py", ("--DATASET=NoSuchProblem",), "bundled: "),
    ("sequence_gru.py", ("--POOLING=max",), "--POOLING must be one of"),
    ("sequence_gru.py", ("--DATASET=Tecator",), "not a classification problem"),
    ("sequence_lstm.py", ("--ENSEMBLE=0",), "--ENSEMBLE=0: must be an integer >= 1"),
    ("classification_metrics.py", ("--DTW_WINDOW=wide",), "expects a number"),
])
def test_bad_inputs_give_one_line_errors(script, args, message):
    r = run_script(f"05_seq_classify/{script}", "--quick", *args, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and message in r.stderr


@pytest.mark.slow
def test_scratch_cells_train_through_packed_sequences():
    r = run_script("05_seq_classify/sequence_gru.py", "--quick", "--IMPL=scratch", "--DATASET=JapaneseVowels")
    assert "matches torch.nn" in r.stdout and r.metrics["config"]["IMPL"] == "scratch"


def test_train_step_is_one_update_and_a_nan_never_reaches_the_weights():
    from utils.training import NonFiniteLoss

    torch.manual_seed(0)
    model = SeriesClassifier("lstm", "torch", 2, 3, 4, 1, True, "last+mean", 0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = collate_series([(torch.randn(t, 2), torch.tensor(t % 3)) for t in (5, 3, 4, 2)])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(batch[0], batch[1]), batch[2]).item()
    before = [p.detach().clone() for p in model.parameters()]
    loss, norm, n = train_step(model, batch, optimizer, clip=1.0)
    assert loss == expected and n == 4 and norm > 0     # the loss before the update, the batch's series
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    after = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLoss):
        train_step(model, (torch.full_like(batch[0], float("nan")), *batch[1:]), optimizer, clip=1.0)
    assert all(torch.equal(a, p) for a, p in zip(after, model.parameters()))


def test_refit_trains_on_train_and_val_replaying_the_learning_rates():
    data = load_ucr_dataset("ItalyPowerDemand")
    splits = prepare_series_splits(data, 0.2, seed=0, patch=1, max_train=30)
    history = [{"lr": 3e-3}, {"lr": 3e-3}, {"lr": 1.5e-3}]  # as if validation had halved the LR once
    build = lambda f, c: SeriesClassifier("gru", "torch", f, c, 8, 1, False, "last", 0.0)
    model, result = refit_on_train_and_val(build, splits, len(data["classes"]), 0, history, batch_size=8,
                                           weight_decay=0.0, clip=1.0)
    assert result["n_series"] == len(splits["train"]) + len(splits["val"]) == 30
    assert [row["lr"] for row in result["history"]] == [3e-3, 3e-3, 1.5e-3] and result["epochs_run"] == 3


def test_series_ensemble_averages_members_with_their_own_splits_and_reloads(tmp_path):
    import csv

    data = load_ucr_dataset("ItalyPowerDemand")
    settings = dict(val_fraction=0.2, patch=1, batch_size=8, epochs=2, lr=3e-3, weight_decay=0.0, patience=5,
                    clip=1.0, max_train=30, max_test=50)
    build = lambda f, c: SeriesClassifier("gru", "torch", f, c, 8, 1, True, "last+mean", 0.0)
    cpu = torch.device("cpu")
    # the twins' loop: one member per seed of ensemble_member_seeds, then averaged
    runs = [train_series_classifier(build, data, s, cpu, **settings) for s in ensemble_member_seeds(1, 3)]
    run = ensemble_result(runs, data, seed=1, out=tmp_path)
    m = run["metrics"]
    assert m["member_seeds"] == [3, 4, 5] and m["ensemble_members"] == 3 and len(run["model"]) == 3
    members = load_series_members(tmp_path / "checkpoint.pt")
    assert len(members) == 3
    val_splits = {tuple(settings["val_idx"]) for _, settings in members}
    assert len(val_splits) == 3  # each member held out its own validation series
    probs, test_idx = predict_series_probabilities(members, data, settings["max_test"])
    assert np.allclose(probs, run["probs"], atol=1e-6) and np.allclose(probs.sum(1), 1)
    y = data["test"][1][test_idx]
    assert m["test_accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()))
    assert m["test_loss"] == pytest.approx(float(-np.log(probs[np.arange(len(y)), y]).mean()), rel=1e-5)
    with open(tmp_path / "predictions.csv") as f:
        saved = list(csv.DictReader(f))
    assert [int(r["test_index"]) for r in saved] == test_idx.tolist()
    assert np.allclose([[float(r[f"p_{c}"]) for c in data["classes"]] for r in saved], probs, atol=1e-5)
    one = ensemble_result([train_series_classifier(build, data, 3, cpu, **settings)], data, seed=3,
                          out=tmp_path / "one")
    # = member 1 (seed 3)
    assert one["metrics"]["test_accuracy"] == pytest.approx(m["member_test_accuracy"][0])
    alone = load_series_members(tmp_path / "one" / "checkpoint.pt")  # a single model's checkpoint reloads too
    assert len(alone) == 1 and alone[0][1]["epoch"] == one["metrics"]["best_epoch"]
    assert np.allclose(predict_series_probabilities(alone, data, settings["max_test"])[0], one["probs"],
                       atol=1e-6)
    with pytest.raises(UserError, match="at least 1"):
        ensemble_member_seeds(0, 0)

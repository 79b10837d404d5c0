"""Shared machinery: tokenizer, vocabulary, batching, downloads, training loop, checkpoints, plots."""
import math

import pytest
import torch
from conftest import train_step_for
from torch import nn

from utils.data_utils import Vocab, download, pad_batch, sha256_of, tokenize
from utils.model_utils import count_parameters, init_forget_bias, make_rnn
from utils.script_utils import UserError
from utils.training import evaluate, fit, load_checkpoint, save_checkpoint
from utils.visualization import plot_confusion_matrix, plot_training_curves


def test_tokenize_keeps_negations_and_punctuation():
    assert tokenize("Not terrible, actually GREAT!<br />Isn't it?") == [
        "not", "terrible", "actually", "great", "!", "isn't", "it", "?"]
    assert tokenize("") == []


def test_vocab_orders_by_frequency_and_maps_unknowns():
    v = Vocab.build([["b", "a", "a"], ["c", "a", "b"], ["d"]], min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "a", "b"]
    assert v.encode(["a", "zzz", "b"]) == [2, 1, 3]
    assert Vocab.from_list(v.to_list()).stoi == v.stoi
    assert len(Vocab.build([["a"] * 5, ["b"] * 4, ["c"] * 3], min_freq=1, max_size=3)) == 3


def test_pad_batch_shapes():
    ids, lengths = pad_batch([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_download_verifies_and_recovers_from_corrupt_cache(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)
    digest = sha256_of(src)
    dest = tmp_path / "cache" / "file.bin"
    download(src.as_uri(), dest, sha256=digest)
    assert dest.read_bytes() == src.read_bytes()
    dest.write_bytes(b"x" * 10)  # a truncated earlier download
    download(src.as_uri(), dest, sha256=digest, size=1000)
    assert dest.stat().st_size == 1000
    with pytest.raises(UserError, match="incomplete or corrupt"):
        download(src.as_uri(), tmp_path / "other.bin", sha256="0" * 64)
    assert not (tmp_path / "other.bin").exists()
    with pytest.raises(UserError, match="could not download"):
        download((tmp_path / "missing.bin").as_uri(), tmp_path / "m.bin")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["file.bin"]


def test_make_rnn_torch_and_forget_bias():
    rnn = make_rnn("lstm", "torch", 3, 5, 2, dropout=0.1)
    assert isinstance(rnn, nn.LSTM) and rnn.batch_first and rnn.dropout == 0.1
    init_forget_bias(rnn, 1.0)
    assert torch.all(rnn.bias_ih_l0[5:10] == 1) and torch.all(rnn.bias_hh_l1[5:10] == 0)
    assert count_parameters(make_rnn("gru", "torch", 3, 5)) == 3 * (5 * 3 + 5 * 5 + 10)
    assert make_rnn("gru", "torch", 3, 5, 1, dropout=0.5).dropout == 0.0
    with pytest.raises(UserError):
        make_rnn("lstm", "keras", 3, 5)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(1, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def step(model, batch):
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), logits.argmax(1), y


def accuracy(p, t):
    return {"accuracy": (p == t).float().mean().item()}


def toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 1, generator=g)
    y = (x.sum(dim=(1, 2)) > 0).long()  # the sign of the sum: learnable by a GRU
    return list(zip(torch.split(x, 32), torch.split(y, 32)))


def test_fit_learns_keeps_history_and_checkpoints_best(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    train, val = toy_data(512, 0), toy_data(256, 1)
    before = evaluate(model, val, step, accuracy)
    ckpt = tmp_path / "best.pt"
    result = fit(model, train, val, train_step=train_step_for(step), eval_step=step, epochs=8,
                 optimizer=torch.optim.Adam(model.parameters(), 1e-2), metrics_fn=accuracy,
                 monitor="accuracy", mode="max", patience=3, checkpoint_path=ckpt,
                 checkpoint_extra={"vocab": ["<pad>", "<unk>"]})
    after = evaluate(model, val, step, accuracy)
    assert after["accuracy"] > max(0.85, before["accuracy"])
    h = result["history"]
    assert [r["epoch"] for r in h] == list(range(1, len(h) + 1))
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s"} <= set(h[0])
    assert result["best_value"] == max(r["val_accuracy"] for r in h)
    # the restored model is the best epoch's, and the checkpoint holds the same weights
    assert math.isclose(after["accuracy"], result["best_value"])
    saved = load_checkpoint(ckpt)
    assert saved["epoch"] == result["best_epoch"] and saved["vocab"] == ["<pad>", "<unk>"]
    for k, v in model.state_dict().items():
        assert torch.equal(saved["state_dict"][k], v)


def test_fit_stops_early():
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing can improve after epoch 1
    result = fit(model, toy_data(64), toy_data(64, 1), train_step=train_step_for(step), eval_step=step,
                 epochs=20, optimizer=opt, patience=2)
    assert result["epochs_run"] == 3 and result["best_epoch"] == 1


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="could not be read"):
        load_checkpoint(bad)
    save_checkpoint({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["w"], torch.ones(2))


def test_plots_write_pngs(tmp_path):
    hist = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5},
            {"epoch": 2, "train_loss": 0.8, "val_loss": 0.9, "val_accuracy": 0.6}]
    for path in (plot_training_curves(hist, tmp_path / "c.png"),
                 plot_confusion_matrix([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "cm.png",
                                       normalize=True)):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_max_mode_keeps_the_best_epoch_not_the_last():
    """A metric that peaks at epoch 2 and then falls: 'max' mode must keep epoch 2 and stop early."""
    torch.manual_seed(0)
    model = Tiny()
    scores = iter([0.5, 0.9, 0.8, 0.7, 0.6, 0.5])

    def scripted(p, t):
        return {"accuracy": next(scores)}

    result = fit(model, toy_data(64), toy_data(64, 1), train_step=train_step_for(step), eval_step=step,
                 epochs=6, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), metrics_fn=scripted,
                 monitor="accuracy", mode="max", patience=2)
    assert result["best_epoch"] == 2 and result["best_value"] == 0.9 and result["epochs_run"] == 4


@pytest.mark.parametrize("mode", ["min", "max"])
def test_fit_never_keeps_a_nan_epoch_as_the_best(mode, tmp_path):
    """A NaN (or inf) monitored value in epoch 1 compares false with everything: it must not become the
    best epoch whose weights are restored and saved; the first finite epoch does."""
    torch.manual_seed(0)
    model = Tiny()
    scores = iter([math.nan, 0.6, math.inf, 0.7 if mode == "max" else 0.5])

    def scripted(p, t):
        return {"accuracy": next(scores)}

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = fit(model, toy_data(64), toy_data(64, 1), train_step=train_step_for(step), eval_step=step,
                 epochs=4, optimizer=opt, metrics_fn=scripted, monitor="accuracy", mode=mode, patience=5,
                 checkpoint_path=tmp_path / "best.pt")
    assert result["best_epoch"] == 4 and result["best_value"] == (0.7 if mode == "max" else 0.5)
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 4


def test_fit_says_so_when_the_monitored_value_is_never_finite(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    with pytest.raises(UserError, match="never a finite number in 2 epoch"):
        fit(model, toy_data(64), toy_data(64, 1), train_step=train_step_for(step), eval_step=step, epochs=2,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), metrics_fn=lambda p,
            t: {"accuracy": math.nan}, monitor="accuracy", mode="max", checkpoint_path=tmp_path / "best.pt")
    assert not (tmp_path / "best.pt").exists()

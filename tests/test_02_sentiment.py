"""02_sentiment: data split and IMDB cache, batching, model masking, metrics, bad input, and every script
end-to-end with --quick (exactly as a learner runs them)."""
import io
import tarfile

import numpy as np
import pytest
import torch
from conftest import ROOT, run_script

from sentiment_model import (
    LengthBucketSampler,
    SentimentClassifier,
    SentimentEnsemble,
    binary_metrics,
    check_review,
    collate_reviews,
    encode_reviews,
    eval_step,
    load_sentiment_model,
    sentiment_checkpoint_extra,
    train_step,
)
from utils import data_utils
from utils.data_utils import Vocab, load_imdb, sentiment_split, tokenize
from utils.model_utils import confusion_matrix
from utils.script_utils import UserError, load_case_script
from utils.training import save_checkpoint


# ---- metrics, batching, model ------------------------------------------------------------------------
def test_binary_metrics_by_hand():
    preds, targets = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    m = binary_metrics(preds, targets)  # tp=2, fp=1, fn=1, tn=1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert confusion_matrix(targets, preds, 2).tolist() == [[1, 1], [1, 2]]  # rows: true class,
                                                                             # as the case saves it
    assert binary_metrics(torch.tensor([0, 0]), torch.tensor([0, 0]))["f1"] == 0.0  # no positives at all


def test_length_bucket_sampler_covers_everything_once_and_groups_lengths():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    train = list(LengthBucketSampler(lengths, 32, shuffle=True, seed=0))
    flat = sorted(i for b in train for i in b)
    assert flat == list(range(1000)) and len(train) == len(LengthBucketSampler(lengths, 32, True))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in train) / len(train)
    assert spread < 10  # random batches would spread over ~90 tokens
    assert train != list(LengthBucketSampler(lengths, 32, shuffle=True, seed=1))
    evals = [i for b in LengthBucketSampler(lengths, 32, shuffle=False) for i in b]
    assert [lengths[i] for i in evals] == sorted(lengths)


def test_encode_truncates_and_never_returns_empty():
    vocab = Vocab.build([["good", "film"]], min_freq=1)
    encoded, cut = encode_reviews(["good film good film", "", "zzz"], vocab, max_len=3)
    assert encoded == [[3, 2, 3], [1], [1]] and cut == 1  # ties sort alphabetically: film=2, good=3


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_ignores_padding(cell):
    """A review's logits must not change when it is padded beside a longer one (packing + masked pooling)."""
    torch.manual_seed(0)
    model = SentimentClassifier(20, cell=cell, embed_dim=8, hidden_size=6).eval()
    short, long = torch.tensor([[3, 4, 5]]), torch.tensor([[6, 7, 8, 9, 10, 11, 12]])
    alone = model(short, torch.tensor([3]))
    batch = torch.zeros(2, 7, dtype=torch.long)
    batch[0, :3], batch[1] = short[0], long[0]
    together = model(batch, torch.tensor([3, 7]))
    assert together.shape == (2, 2)
    torch.testing.assert_close(together[0:1], alone, rtol=1e-5, atol=1e-6)


def test_train_step_is_one_plain_optimisation_step():
    """train_step: forward -> loss -> zero_grad -> backward -> clip -> step. Its loss is eval_step's on the
    same batch (no dropout here), its norm is measured before clipping, and the step lowers the loss."""
    torch.manual_seed(0)
    model = SentimentClassifier(20, cell="gru", embed_dim=8, hidden_size=6, dropout=0.0, embed_dropout=0.0)
    batch = collate_reviews([([3, 4, 5], 1), ([6, 7], 0), ([8, 9, 10, 11], 1)])  # ids (3, 4), lengths, labels
    with torch.no_grad():
        loss, preds, labels = eval_step(model, batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    value, norm, n = train_step(model, batch, optimizer, clip=0.1)
    assert value == pytest.approx(float(loss)) and n == 3 and preds.shape == labels.shape == (3,)
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm > 0.1 and float(clipped) == pytest.approx(0.1, rel=1e-3)   # measured before, then clipped
    with torch.no_grad():
        assert float(eval_step(model, batch)[0]) < value


def test_ensemble_averages_member_probabilities_and_round_trips(tmp_path):
    torch.manual_seed(0)
    members = [SentimentClassifier(20, cell="lstm", embed_dim=8, hidden_size=6) for _ in range(3)]
    ens = SentimentEnsemble(members).eval()
    ids, lengths = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]]), torch.tensor([3, 4])
    mean_p = torch.stack([torch.softmax(m.eval()(ids, lengths), 1) for m in members]).mean(0)
    torch.testing.assert_close(torch.softmax(ens(ids, lengths), 1), mean_p)
    assert abs(torch.softmax(members[0](ids, lengths), 1) - mean_p).max() > 1e-4  # members do differ
    vocab = Vocab([Vocab.PAD, Vocab.UNK] + [f"w{i}" for i in range(18)])
    save_checkpoint({"state_dict": ens.state_dict(), **sentiment_checkpoint_extra(ens, vocab, 9, "rt")},
                    tmp_path / "ens.pt")
    loaded, v, ckpt = load_sentiment_model(tmp_path / "ens.pt")
    assert isinstance(loaded, SentimentEnsemble) and len(loaded.members) == 3 and ckpt["members"] == 3
    torch.testing.assert_close(loaded.eval()(ids, lengths), ens(ids, lengths))
    save_checkpoint({"state_dict": ens.state_dict(), **sentiment_checkpoint_extra(ens, vocab, 9, "rt"),
                     "members": 2}, tmp_path / "two.pt")
    with pytest.raises(UserError, match="do not fit"):
        load_sentiment_model(tmp_path / "two.pt")


def test_mcnemar_counts_only_the_disagreements():
    mcnemar = load_case_script(ROOT / "02_sentiment" / "model_comparison.py").mcnemar
    r = mcnemar([1, 1, 0, 1, 1], [0, 1, 1, 0, 1])  # first alone right twice, second alone once
    assert (r["only_first_right"], r["only_second_right"]) == (2, 1) and r["p"] == pytest.approx(1.0)
    assert mcnemar([1] * 12, [0] * 12)["p"] == pytest.approx(2 * 0.5 ** 12)
    assert mcnemar([1, 0], [1, 0])["p"] == 1.0


def test_comparison_ensemble_is_the_mean_probability_thresholded():
    """model_comparison's ensemble row goes through the one averager (log_mean_probability) and must equal
    the plain mean of the runs' P(positive) thresholded at 0.5, certainties 0 and 1 included."""
    ensemble_of = load_case_script(ROOT / "02_sentiment" / "model_comparison.py").ensemble_of
    probs = [[1.0, 0.0, 0.6, 0.45, 0.2], [0.3, 0.1, 0.5, 0.56, 0.7]]
    runs = [{"test_probs": p, "parameters": 10, "train_time_s": 2.0, "reviews_per_s": 100.0} for p in probs]
    labels = [1, 0, 0, 1, 1]
    metrics, right = ensemble_of(runs, labels)
    expected = np.mean(probs, axis=0) >= 0.5  # [1, 0, 1, 1, 0]
    assert right.tolist() == (expected == np.asarray(labels, bool)).tolist() == [True, True, False, True,
                                                                                 False]
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["parameters"] == 20 and metrics["train_time_s"] == 4.0 and metrics["reviews_per_s"] == 50.0


# ---- data: the fixed Rotten Tomatoes split ------------------------------------------------------------
def test_rotten_tomatoes_split_is_fixed_disjoint_and_stratified(tmp_path):
    split = sentiment_split("rotten_tomatoes", cache=tmp_path)
    sizes = {p: len(t) for p, (t, _) in split.items()}
    total = sum(sizes.values())
    assert 12_000 < total < 13_000 and abs(sizes["train"] / total - 0.8) < 0.01
    texts = [set(split[p][0]) for p in ("train", "val", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    pos = {p: sum(y) / len(y) for p, (_, y) in split.items()}
    assert max(pos.values()) - min(pos.values()) < 0.01  # ~58% fresh in each part
    again = sentiment_split("rotten_tomatoes", cache=tmp_path)  # read back from the saved JSON
    assert again == split and (tmp_path / "split_rotten_tomatoes.json").is_file()
    with pytest.raises(UserError, match="DATASET"):
        sentiment_split("yelp", cache=tmp_path)


# ---- data: the IMDB archive, offline with a tiny archive of the same layout ---------------------------
def make_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


TINY = {f"aclImdb/{part}/{folder}/{i}_{7 if folder == 'pos' else 2}.txt":
        f"{'Great' if folder == 'pos' else 'Awful'} film number {i}.<br /><br />Seen in {part}."
        for part in ("train", "test") for folder in ("pos", "neg") for i in range(10)}


@pytest.fixture
def tiny_imdb(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    archive = make_archive(tmp_path / "src" / "aclImdb_v1.tar.gz", TINY)
    monkeypatch.setattr(data_utils, "IMDB_URL", archive.as_uri())
    monkeypatch.setattr(data_utils, "IMDB_SIZE", archive.stat().st_size)
    cache = tmp_path / "cache"
    cache.mkdir()
    return archive, cache


def test_imdb_download_extract_and_split(tiny_imdb):
    archive, cache = tiny_imdb
    corpus = load_imdb(cache)
    assert len(corpus) == 40 and corpus["train/pos/3_7.txt"][1] == 1 and corpus["test/neg/0_2.txt"][1] == 0
    assert "<br" not in " ".join(tokenize(corpus["train/pos/3_7.txt"][0]))
    assert (cache / "aclImdb" / ".extracted-ok").is_file()
    split = sentiment_split("imdb", cache=cache)
    # the official test set
    assert len(split["test"][0]) == 20 and all("test." in t for t in split["test"][0])
    assert len(split["val"][0]) == 2 and len(split["train"][0]) == 18  # validation carved from train


def test_imdb_corrupt_archive_and_half_extraction_are_redone(tiny_imdb):
    archive, cache = tiny_imdb
    (cache / "aclImdb_v1.tar.gz").write_bytes(b"\0" * archive.stat().st_size)  # right size, not a tar
    (cache / "aclImdb" / "train").mkdir(parents=True)  # an interrupted extraction: no marker file
    assert len(load_imdb(cache)) == 40
    assert (cache / "aclImdb_v1.tar.gz").read_bytes() == archive.read_bytes()
    assert not [p for p in cache.iterdir() if p.name.startswith(".aclImdb.")]  # no temp folders left


def test_imdb_offline_says_how_to_use_the_default(tiny_imdb, monkeypatch):
    _, cache = tiny_imdb
    monkeypatch.setattr(data_utils, "IMDB_URL", (cache / "nowhere.tar.gz").as_uri())
    with pytest.raises(UserError, match="could not be fetched.*rotten_tomatoes"):
        load_imdb(cache)


def test_imdb_archive_with_path_traversal_is_refused(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    archive = make_archive(tmp_path / "src" / "aclImdb_v1.tar.gz", {**TINY, "../evil.txt": "pwned"})
    monkeypatch.setattr(data_utils, "IMDB_URL", archive.as_uri())
    monkeypatch.setattr(data_utils, "IMDB_SIZE", archive.stat().st_size)
    with pytest.raises(UserError, match="unsafe"):
        load_imdb(tmp_path / "src" / "cache")
    assert not (tmp_path / "src" / "evil.txt").exists()


# ---- bad input ----------------------------------------------------------------------------------------
def test_check_review_refuses_empty_warns_on_unknown_and_truncates(capsys):
    vocab = Vocab.build([["good", "film", "not"]], min_freq=1)
    with pytest.raises(UserError, match="empty"):
        check_review("  ... ", vocab, 10)
    assert check_review("zzqx blorf", vocab, 10) == [1, 1]       # judged, with a warning that says why it
                                                                 # means little
    assert "warning: 2 of the 2 tokens" in capsys.readouterr().out
    assert check_review("not " * 50 + "good", vocab, 10) == [4] * 10
    assert "only the first MAX_LEN=10" in capsys.readouterr().out


def test_checkpoint_with_mismatched_vocabulary_is_refused(tmp_path):
    model = SentimentClassifier(6, cell="gru", embed_dim=4, hidden_size=3)
    vocab = Vocab([Vocab.PAD, Vocab.UNK, "good", "bad", "film", "plot"])
    good = {"state_dict": model.state_dict(), "hparams": model.hparams, "vocab": vocab.to_list(),
            "max_len": 9}
    save_checkpoint(good, tmp_path / "ok.pt")
    loaded, v, ckpt = load_sentiment_model(tmp_path / "ok.pt")
    assert len(v) == 6 and ckpt["max_len"] == 9
    save_checkpoint({**good, "vocab": vocab.to_list() + ["extra"]}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="embedding has 6 rows but the vocabulary has 7"):
        load_sentiment_model(tmp_path / "bad.pt")
    save_checkpoint({**good, "hparams": {**model.hparams, "hidden_size": 5}}, tmp_path / "shape.pt")
    with pytest.raises(UserError, match="do not fit"):
        load_sentiment_model(tmp_path / "shape.pt")


# ---- the scripts, end to end --------------------------------------------------------------------------
def check_error(result, *needles):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("script,cell", [("02_sentiment/sentiment_lstm.py", "lstm"),
                                         ("02_sentiment/sentiment_gru.py", "gru")])
def test_sentiment_script_quick(script, cell):
    r = run_script(script, "--quick", "--REVIEW=not terrible, actually great")
    m = r.metrics["metrics"]
    assert r.metrics["config"]["QUICK"] and r.metrics["config"]["LIMIT"] == 400
    assert 0.0 <= m["test_accuracy"] <= 1.0 and 0.0 <= m["test_f1"] <= 1.0 and m["test_loss"] > 0
    assert sum(map(sum, m["test_confusion_matrix"])) == m["split_sizes"]["test"] == 100
    assert m["parameters"] > 0 and len(r.metrics["history"]) == 1
    # --quick trains a 2-member ensemble: each member is tested alone too, and the file holds both
    assert m["ensemble_members"] == 2 and len(m["member_test_accuracy"]) == 2
    assert len(r.metrics["member_histories"]) == 2 and "mean of 2 (ensemble)" in r.stdout
    assert [e["review"] for e in m["examples"]][-1] == "not terrible, actually great"
    for name in ("training_curves.png", "confusion_matrix.png", "model.pt"):
        assert (r.out_dir / name).stat().st_size > 0
    model, vocab, ckpt = load_sentiment_model(r.out_dir / "model.pt")
    assert model.hparams["cell"] == cell and len(vocab) == m["vocab_size"] and ckpt["max_len"] == 40
    assert isinstance(model, SentimentEnsemble) and ckpt["members"] == 2
    # classify with the saved model, without training
    again = run_script(script, f"--LOAD={r.out_dir / 'model.pt'}", "--REVIEW=a great, moving film")
    assert "a great, moving film" in again.stdout and "P(positive)" in again.stdout


def test_sentiment_bad_inputs(tmp_path):
    script = "02_sentiment/sentiment_gru.py"
    check_error(run_script(script, "--quick", "--REVIEW=  ...  ", check=False), "empty")
    check_error(run_script(script, "--quick", "--DATASET=yelp", check=False), "--DATASET")
    model = SentimentClassifier(5, cell="gru", embed_dim=4, hidden_size=3)
    save_checkpoint({"state_dict": model.state_dict(), "hparams": model.hparams,
                     "vocab": [Vocab.PAD, Vocab.UNK, "a", "b"]}, tmp_path / "m.pt")
    check_error(run_script(script, f"--LOAD={tmp_path / 'm.pt'}", check=False),
                "does not match its vocabulary")
    check_error(run_script(script, f"--LOAD={tmp_path / 'missing.pt'}", check=False), "does not exist")


def test_model_comparison_quick():
    r = run_script("02_sentiment/model_comparison.py", "--quick")
    rec = r.metrics
    for name in ("lstm", "gru", "tfidf+logreg", "nbsvm", "lstm ensemble", "gru ensemble",
                 "gru ensemble + nbsvm"):
        acc = rec["metrics"][name]["accuracy"]
        assert 0.0 <= acc["mean"] <= 1.0 and acc["std"] >= 0.0
    assert len(rec["runs"]["lstm"]) == len(rec["runs"]["gru"]) == 2
    assert rec["metrics"]["gru"]["parameters"]["mean"] < rec["metrics"]["lstm"]["parameters"]["mean"]
    params = {m: rec["metrics"][m]["parameters"]["mean"] for m in ("lstm", "lstm ensemble")}
    assert params["lstm ensemble"] == 2 * params["lstm"]
    # the ensemble row is recomputed from the two runs' saved probabilities
    runs, n_test = rec["runs"]["lstm"], 300 // 4  # --quick: LIMIT=300 keeps the first 75 test reviews
    labels = sentiment_split("rotten_tomatoes")["test"][1][:n_test]
    mean_p = [(a + b) / 2 for a, b in zip(runs[0]["test_probs"], runs[1]["test_probs"])]
    assert len(mean_p) == n_test
    acc = sum((p >= 0.5) == y for p, y in zip(mean_p, labels)) / n_test
    assert acc == pytest.approx(rec["metrics"]["lstm ensemble"]["accuracy"]["mean"],
                                abs=1.5 / n_test)  # rounding
    test = rec["mcnemar_vs_baseline"]["lstm ensemble"]
    assert 0.0 <= test["p"] <= 1.0 and test["only_first_right"] >= 0
    assert rec["best_baseline"] in ("tfidf+logreg", "nbsvm") and "NBSVM" in rec["conclusion"][0]
    assert len(rec["conclusion"]) == 8 and "McNemar" in rec["conclusion"][3] and "w=" in rec["conclusion"][6]
    assert (r.out_dir / "comparison.png").stat().st_size > 0


def test_sentiment_trains_with_scratch_cells_and_the_nbsvm_options():
    """The scratch cell, the NB log-count ratio as an input channel and the average with NBSVM, in one run."""
    r = run_script("02_sentiment/sentiment_gru.py", "--quick", "--IMPL=scratch", "--NB_CHANNEL=true",
                   "--WITH_NBSVM=true")
    m = r.metrics["metrics"]
    assert r.metrics["config"]["IMPL"] == "scratch" and "scratch GRU matches torch.nn" in r.stdout
    assert 0.0 <= m["test_accuracy"] <= 1.0 and 0.0 <= m["with_nbsvm_test_accuracy"] <= 1.0
    assert 0.0 <= m["with_nbsvm_weight_on_rnn"] <= 1.0 and "averaged with NBSVM" in r.stdout
    model, _, _ = load_sentiment_model(r.out_dir / "model.pt")
    first = model.members[0] if isinstance(model, SentimentEnsemble) else model
    # the ratios were saved
    assert first.hparams["word_channels"] == 1 and first.word_features.abs().sum() > 0

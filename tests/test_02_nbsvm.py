"""02_sentiment's experiments (baselines.py): NBSVM (Wang & Manning 2012) on tiny hand-checked examples,
averaging it with the RNNs (the weight chosen on validation, the cross-fitted (honest) validation accuracy,
model_comparison's combination), and the NB channel."""
import math

import numpy as np
import pytest
from conftest import ROOT

from baselines import (
    NBSVM,
    average_probabilities,
    binary_ngrams,
    choose_weight,
    cross_fitted_accuracy,
    interpolate_weights,
    log_count_ratio,
    nbsvm_baseline,
)
from utils.script_utils import load_case_script

# two positive reviews, one negative; uni+bigrams: bad, bad film, film, good, good film, good good
TEXTS, LABELS = ["good film", "good good", "bad film"], [1, 1, 0]


def test_binary_ngrams_are_words_and_pairs_present_or_not():
    X, vocab = binary_ngrams(TEXTS)
    assert sorted(vocab) == ["bad", "bad film", "film", "good", "good film", "good good"]
    dense = X.toarray()
    assert dense[1, vocab["good"]] == 1 and dense[1].sum() == 2   # "good good": good (once: binary) and
                                                                  # "good good"
    assert dense[0, vocab["good film"]] == 1 and dense[2, vocab["good film"]] == 0
    Xv, _ = binary_ngrams(["good plot", "unseen words"], vocab)   # validation: training n-grams only
    assert Xv.shape == (2, len(vocab)) and Xv.toarray().tolist()[1] == [0] * len(vocab)


def test_log_count_ratio_by_hand():
    texts, labels = ["good film", "good", "bad film"], [1, 1, 0]
    X, vocab = binary_ngrams(texts)
    r = log_count_ratio(X, labels, alpha=1.0)
    # p = 1 + positive counts: bad 1, bad film 1, film 2, good 3, good film 2 -> ||p||_1 = 9
    # q = 1 + negative counts: bad 2, bad film 2, film 2, good 1, good film 1 -> ||q||_1 = 8
    assert r[vocab["good"]] == pytest.approx(math.log((3 / 9) / (1 / 8)))
    assert r[vocab["film"]] == pytest.approx(math.log((2 / 9) / (2 / 8)))   # in both: only the norms differ
    assert r[vocab["bad"]] == pytest.approx(math.log((1 / 9) / (2 / 8)))
    # much more smoothing drowns the counts: every ratio moves towards 0 (no lean either way)
    assert abs(log_count_ratio(X, labels, alpha=100.0)[vocab["good"]]) < abs(r[vocab["good"]]) / 10


def test_interpolation_by_hand():
    w = np.array([2.0, -4.0, 0.0, 2.0])                          # mean |w| = 2
    np.testing.assert_allclose(interpolate_weights(w, 0.25), [2.0, 0.5, 1.5, 2.0])   # 0.75 * 2 + 0.25 * w
    np.testing.assert_allclose(interpolate_weights(w, 1.0), w)
    np.testing.assert_allclose(interpolate_weights(w, 0.0), [2.0] * 4)


def test_nbsvm_features_probabilities_and_interpolation():
    model = NBSVM(alpha=1.0, C=10.0, beta=1.0).fit(TEXTS * 3, LABELS * 3)
    X, _ = binary_ngrams(["good film"], model.vocabulary)
    np.testing.assert_allclose(model.features(["good film"]).toarray(),
                               X.toarray() * model.r[None, :])  # x~ = r * x
    p = model.predict_proba(["good", "bad", "film"])
    assert p.shape == (3,) and p[0] > 0.5 > p[1]
    margin = model.features(["good"]) @ model.w + model.b
    assert p[0] == pytest.approx(1 / (1 + math.exp(-margin[0])))   # beta = 1: the classifier alone
    model.beta = 0.0                                                # every n-gram votes with w_bar * r_j
    nb_margin = np.abs(model.w).mean() * model.r[model.vocabulary["good"]] + model.b
    assert model.predict_proba(["good"])[0] == pytest.approx(1 / (1 + math.exp(-nb_margin)))


def test_nbsvm_baseline_picks_its_grid_on_validation():
    texts = {"train": (["a good film", "a great film", "a bad film", "an awful film"] * 5, [1, 1, 0, 0] * 5),
             "val": (["good and great", "bad and awful", "a film"], [1, 0, 1]),
             "test": (["great", "awful", "good film", "bad"], [1, 0, 1, 0])}
    m = nbsvm_baseline(texts, Cs=(0.1, 1.0), betas=(0.5, 1.0))
    assert len(m["val_grid"]) == 4 and m["val_accuracy"] == max(g["val_accuracy"] for g in m["val_grid"])
    first_best = next(g for g in m["val_grid"] if g["val_accuracy"] == m["val_accuracy"])
    assert (m["C"], m["beta"]) == (first_best["C"], first_best["beta"])
    assert m["predictions"] == [int(p >= 0.5) for p in m["test_probs"]] == [1, 0, 1, 0]
    assert m["accuracy"] == 1.0 and len(m["val_probs"]) == 3 and m["parameters"] == len(m["model"].w) + 1


def test_average_and_weight_chosen_on_validation():
    p_rnn, p_nb, y = [0.9, 0.6, 0.2, 0.45], [0.4, 0.3, 0.3, 0.8], [1, 0, 0, 1]
    np.testing.assert_allclose(average_probabilities(p_rnn, p_nb, 0.25), [0.525, 0.375, 0.275, 0.7125])
    # w = 1 (the RNN) misses reviews 2 and 4; w = 0 (NBSVM) misses review 1; w = 0.25 gets all four right
    assert choose_weight(p_rnn, p_nb, y, grid=(0.0, 0.25, 1.0)) == 0.25
    # a tie in accuracy goes to the lower log loss: both w are right everywhere here, 0.5 is less confident
    assert choose_weight([1.0, 0.0], [0.6, 0.4], [1, 0], grid=(0.5, 0.9)) == 0.9


def test_cross_fitted_accuracy_scores_each_half_with_the_other_halfs_weight():
    # on the even half the RNN is right and NBSVM wrong; on the odd half the reverse: each half's weight
    # (w = 1 on the evens, w = 0 on the odds) is then scored on the other half, where it is always wrong
    p_rnn = [0.9, 0.2, 0.8, 0.3]   # labels 1, 1, 1, 1: right at 0 and 2
    p_nb = [0.2, 0.9, 0.3, 0.8]    # right at 1 and 3
    y = [1, 1, 1, 1]
    assert choose_weight(p_rnn, p_nb, y, grid=(0.0, 1.0)) in (0.0, 1.0)   # in-sample: 2/4 either way
    assert cross_fitted_accuracy(p_rnn, p_nb, y, grid=(0.0, 1.0)) == 0.0
    same = [0.7, 0.4, 0.6, 0.2]
    assert cross_fitted_accuracy(same, same, [1, 1, 1, 0]) == 0.75  # identical models: their own accuracy


def test_comparison_combines_ensemble_and_nbsvm_with_the_validation_weight():
    combine = load_case_script(ROOT / "02_sentiment" / "model_comparison.py").combine_with_nbsvm
    texts = {"val": ([""] * 4, [1, 0, 0, 1]), "test": ([""] * 3, [1, 0, 1])}
    runs = [{"val_probs": [0.9, 0.6, 0.2, 0.45], "test_probs": [0.7, 0.6, 0.2], "parameters": 10,
             "train_time_s": 1.0},
            {"val_probs": [0.9, 0.6, 0.2, 0.45], "test_probs": [0.7, 0.6, 0.2], "parameters": 10,
             "train_time_s": 1.0}]
    nbsvm = {"val_probs": [0.4, 0.3, 0.3, 0.8], "test_probs": [0.6, 0.2, 0.9], "parameters": 5,
             "train_time_s": 0.5}
    metrics, right = combine(runs, nbsvm, texts)
    w = metrics["weight"]
    assert 0.0 < w < 1.0   # neither model alone gets all four validation reviews right; the average does
    expected = w * np.array([0.7, 0.6, 0.2]) + (1 - w) * np.array([0.6, 0.2, 0.9]) >= 0.5
    assert right.tolist() == (expected == np.array([1, 0, 1], bool)).tolist()
    assert metrics["accuracy"] == pytest.approx(right.mean())
    assert metrics["parameters"] == 25 and metrics["train_time_s"] == 2.5
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


def test_average_with_nbsvm_reports_both_models_and_their_average(capsys):
    """What the twins run after training (WITH_NBSVM): NBSVM fitted on the training reviews, the RNN's own
    probabilities, the weight chosen on validation and McNemar against NBSVM on the test reviews."""
    import torch

    from baselines import average_with_nbsvm
    from sentiment_model import SentimentClassifier, encode_reviews, predict_proba
    from utils.data_utils import Vocab, tokenize

    train = (["a good film", "a great film", "a bad film", "an awful film"] * 5, [1, 1, 0, 0] * 5)
    texts = {"train": train, "val": (["good and great", "bad and awful", "a great film"], [1, 0, 1]),
             "test": (["great", "awful", "good film", "bad"], [1, 0, 1, 0])}
    vocab = Vocab.build((tokenize(t) for t in train[0]), min_freq=1)
    torch.manual_seed(0)
    model = SentimentClassifier(len(vocab), cell="gru", embed_dim=4, hidden_size=3).eval()   # untrained
    m = average_with_nbsvm(model, {"texts": texts, "vocab": vocab}, 10, "cpu", name="GRU")
    w = m["with_nbsvm_weight_on_rnn"]
    assert 0.0 <= w <= 1.0 and m["nbsvm_weight"] == pytest.approx(1 - w)
    p_rnn = predict_proba(model, encode_reviews(texts["test"][0], vocab, 10)[0], "cpu")
    nb = NBSVM(C=m["nbsvm_C"], beta=m["nbsvm_beta"]).fit(*train)
    p_avg = average_probabilities(p_rnn, nb.predict_proba(texts["test"][0]), w)
    assert m["with_nbsvm_test_accuracy"] == pytest.approx(((p_avg >= 0.5) == np.array([1, 0, 1, 0])).mean())
    assert m["nbsvm_test_accuracy"] == 1.0 and 0.0 <= m["with_nbsvm_mcnemar_vs_nbsvm"]["p"] <= 1.0
    out = capsys.readouterr().out
    assert "NBSVM (C=" in out and "McNemar" in out


def test_word_log_count_ratios_by_hand_and_as_an_input_channel(tmp_path):
    """NB_CHANNEL: each vocabulary word's ratio (words only) becomes one more input number per word; it is a
    buffer, so it travels with the weights through a checkpoint, and the cell really reads it."""
    import torch

    from baselines import NBChannelClassifier, word_log_count_ratios
    from sentiment_model import SentimentClassifier, load_sentiment_model, sentiment_checkpoint_extra
    from utils.data_utils import Vocab, tokenize
    from utils.training import save_checkpoint

    texts, labels = ["good film", "good", "bad film"], [1, 1, 0]
    vocab = Vocab.build((tokenize(t) for t in texts), min_freq=1)     # <pad>, <unk>, film, good, bad
    r = word_log_count_ratios(texts, labels, vocab)
    assert r.shape == (len(vocab), 1) and r[0, 0] == r[1, 0] == 0.0   # <pad> and <unk> lean nowhere
    # p = 1 + positive counts over the 5 tokens: 1, 1, film 2, good 3, bad 1 -> 8; q: 1, 1, 2, 1, 2 -> 7
    assert r[vocab.encode(["good"])[0], 0].item() == pytest.approx(math.log((3 / 8) / (1 / 7)), rel=1e-6)
    assert r[vocab.encode(["bad"])[0], 0].item() == pytest.approx(math.log((1 / 8) / (2 / 7)), rel=1e-6)

    torch.manual_seed(0)
    model = NBChannelClassifier(len(vocab), cell="gru", embed_dim=4, hidden_size=3).eval()
    assert model.rnn.input_size == 4 + 1 and model.hparams["word_channels"] == 1
    ids, lengths = torch.tensor([vocab.encode(["good", "film"])]), torch.tensor([2])
    zero = model(ids, lengths)
    model.word_features.copy_(r)
    assert not torch.allclose(model(ids, lengths), zero)               # the ratios reach the cell
    save_checkpoint({"state_dict": model.state_dict(), **sentiment_checkpoint_extra(model, vocab, 9, "rt")},
                    tmp_path / "m.pt")
    loaded, _, _ = load_sentiment_model(tmp_path / "m.pt")
    assert isinstance(loaded, NBChannelClassifier) and "fold_features" not in loaded.state_dict()
    torch.testing.assert_close(loaded.word_features, r)
    torch.testing.assert_close(loaded.eval()(ids, lengths), model(ids, lengths))
    assert "word_features" not in SentimentClassifier(5, cell="gru", embed_dim=4, hidden_size=3).state_dict()


def test_the_nb_channel_is_cross_fitted_for_training_reviews():
    """A word seen in one training review only: its ratio from all training reviews points at that review's
    own label; the table that review reads while training comes from the other folds and knows nothing of
    it. Validation, test and a loaded model read the ratios of all training reviews."""
    import torch

    from baselines import NBChannelClassifier, cross_fitted_nb_channel
    from sentiment_model import eval_step, train_step
    from utils.data_utils import Vocab, tokenize

    texts = [f"good film {'rare' if i == 0 else 'plain'}" if i % 2 == 0 else "bad film plain"
             for i in range(20)]
    labels = [1 if i % 2 == 0 else 0 for i in range(20)]
    vocab = Vocab.build((tokenize(t) for t in texts), min_freq=1)
    data = {"texts": {"train": (texts, labels)}, "vocab": vocab, "max_len": 10, "batch_size": 4, "seed": 3,
            "loaders": {}}
    nb_channel = cross_fitted_nb_channel(data, folds=5)
    assert data["loaders"] == {}                                           # data is left as it was
    full, folds = nb_channel["word_features"], nb_channel["fold_features"]
    rare = vocab.encode(["rare"])[0]
    # all reviews: leans positive
    assert folds.shape == (5, len(vocab), 1) and full[rare, 0] > 0.3
    batches = list(nb_channel["train_loader"])
    # ids, lengths, labels, folds
    assert all(len(b) == 4 for b in batches)
    fold_of_rare = next(int(f[k]) for ids, _, _, f in batches
                        for k in range(len(f)) if rare in ids[k].tolist())
    # its own fold's table never saw the word: only the classes' total counts tilt it (log |q|1/|p|1)
    own = folds[fold_of_rare, rare, 0]
    assert abs(own) < full[rare, 0] / 2
    # the others saw it: positive
    assert all(folds[k, rare, 0] > 0.3 for k in range(5) if k != fold_of_rare)
    model = NBChannelClassifier(len(vocab), cell="gru", embed_dim=4, hidden_size=3)
    model.set_word_features(full, folds)
    ids, lengths, y, f = batches[0]
    model.eval()
    evaluated = model(ids, lengths, f)                                                 # eval: the full table
    torch.testing.assert_close(evaluated, model(ids, lengths))
    model.train()
    torch.manual_seed(0)
    a = model(ids, lengths, f)
    torch.manual_seed(0)
    b = model(ids, lengths)
    assert not torch.allclose(a, b) or not bool((folds[f[:, None], ids] != full[ids]).any())
    # the steps pass the folds on; a training step changes the weights
    loss, _, _ = eval_step(model, batches[0])
    assert torch.isfinite(loss)
    before = model.head.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    value, norm, n = train_step(model.train(), batches[0], optimizer, clip=1.0)
    assert n == len(batches[0][2]) and value > 0 and norm > 0
    assert not torch.equal(model.head.weight, before)

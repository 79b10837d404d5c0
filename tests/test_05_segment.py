"""Word segmentation's data, measures and the hand-written linear-chain CRF (05_seq_classify/
segment_model.py): the CRF against brute-force enumeration of every tag sequence (float64) and gradcheck."""
import itertools

import pytest
import torch

import segment_model as sm
from utils.data_utils import parse_tagged_line


@pytest.fixture(scope="module")
def corpus():
    return sm.load_peoples_daily()


def test_the_corpus_and_its_contiguous_split_have_their_exact_sizes(corpus):
    """19,484 lines, 1,841,657 characters; 90/5/5 of the lines in order: the test block holds 50,329 words."""
    assert len(corpus) == 19484 and sum(len(c) for c, _ in corpus) == 1841657
    split = sm.peoples_daily_split(corpus)
    sizes = {k: (len(v), sum(len(c) for c, _ in v), sum(len(sm.tags_to_words(c, t)) for c, t in v))
             for k, v in split.items()}
    assert sizes == {"train": (17535, 1671911, 1017970), "val": (974, 87463, 53148),
                     "test": (975, 82283, 50329)}
    assert split["train"][-1] == corpus[17534] and split["test"][0] == corpus[17535 + 974]   # contiguous


def test_tags_and_words_go_both_ways(corpus):
    assert parse_tagged_line("迈/b 向/e 的/s") == ("迈向的", "BES")
    assert sm.tags_to_words("中国人民", "BEBE") == ["中国", "人民"]
    assert sm.words_to_tags(["中华人民共和国", "成立", "了"]) == "BMMMMMEBES"
    assert all(sm.words_to_tags(sm.tags_to_words(c, t)) == t for c, t in corpus[:2000])
    with pytest.raises(ValueError):
        parse_tagged_line("迈/x")


def test_word_scores_count_exact_spans_and_unseen_words():
    gold = [["我们", "去", "公园"]]
    pred = [["我们", "去公", "园"]]          # one of three words right
    s = sm.word_scores(gold, pred, train_words={"我们", "去"})
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(1 / 3) and s["oov_words"] == 1 and s["oov_recall"] == 0.0
    assert sm.word_scores(gold, gold)["f1"] == 1.0
    with pytest.raises(ValueError):
        sm.word_scores(gold, [["我们", "去"]])


def test_forward_maximum_matching_takes_the_longest_word_first():
    words = {"研究", "研究生", "生命", "起源"}
    assert sm.max_match("研究生命起源", words) == ["研究生", "命", "起源"]   # its classic failure
    assert sm.max_match("天天", set()) == ["天", "天"]


def _random_crf(B, T, K, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    return r(B, T, K), r(K, K), r(K), r(K)


LENGTHS = [4, 2, 1]     # a full row, a padded row, a one-step row


def _mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def test_crf_partition_and_viterbi_equal_brute_force_enumeration():
    B, T, K = len(LENGTHS), max(LENGTHS), 4
    em, A, s, u = _random_crf(B, T, K, seed=0)
    mask = _mask(LENGTHS, T)
    log_z = sm.crf_log_partition(em, mask, A, s, u)
    paths = sm.viterbi_decode(em, mask, A, s, u)
    for b, L in enumerate(LENGTHS):
        scores = {}
        for y in itertools.product(range(K), repeat=L):          # all K^L tag sequences
            tags = torch.tensor(list(y) + [0] * (T - L))[None]
            scores[y] = sm.crf_score(em[b:b + 1], tags, mask[b:b + 1], A, s, u)[0]
        brute = torch.logsumexp(torch.stack(list(scores.values())), 0)
        assert abs(float(log_z[b] - brute)) < 1e-12
        assert tuple(paths[b]) == max(scores, key=lambda y: float(scores[y]))
        # the probabilities of all sequences sum to one
        total = sum(torch.exp(-sm.crf_nll(em[b:b + 1], torch.tensor(list(y) + [0] * (T - L))[None],
                                          mask[b:b + 1], A, s, u)[0]) for y in scores)
        assert abs(float(total) - 1.0) < 1e-12


def test_crf_score_by_hand():
    em = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]], dtype=torch.float64)
    A = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    s, u = torch.tensor([0.5, 0.6], dtype=torch.float64), torch.tensor([0.7, 0.8], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    # y = (0, 1): s[0] + e[0,0] + A[0,1] + e[1,1] + u[1] = 0.5 + 1 + 0.2 + 2 + 0.8; step 2 is padding
    score = sm.crf_score(em, torch.tensor([[0, 1, 1]]), mask, A, s, u)
    assert float(score[0]) == pytest.approx(4.5)


def test_crf_gradients_pass_gradcheck():
    em, A, s, u = (t.requires_grad_(True) for t in _random_crf(3, 4, 4, seed=1))
    mask = _mask(LENGTHS, 4)
    tags = torch.tensor([[0, 1, 2, 3], [3, 2, 0, 0], [1, 0, 0, 0]])
    assert torch.autograd.gradcheck(lambda e, a, b, c: sm.crf_log_partition(e, mask, a, b, c), (em, A, s, u))
    assert torch.autograd.gradcheck(lambda e, a, b, c: sm.crf_nll(e, tags, mask, a, b, c), (em, A, s, u))


def test_bmes_rules_make_viterbi_return_a_legal_tagging():
    A, s, u = bmes = sm.bmes_transitions(torch.float64)
    g = torch.Generator().manual_seed(2)
    em = torch.randn(5, 9, 4, generator=g, dtype=torch.float64) * 3
    mask = _mask([9, 7, 3, 1, 2], 9)
    legal = {"B": "ME", "M": "ME", "E": "BS", "S": "BS"}
    for path in sm.viterbi_decode(em, mask, *bmes):
        tags = "".join(sm.TAGS[k] for k in path)
        assert tags[0] in "BS" and tags[-1] in "ES"
        assert all(b in legal[a] for a, b in zip(tags, tags[1:])), tags


def test_the_crf_module_learns_a_transition():
    """Gold tags that always alternate 0, 1, 0, 1 under uninformative emissions: the learned transition
    0 -> 1 grows above 0 -> 0."""
    torch.manual_seed(0)
    crf = sm.LinearChainCRF(2)
    em = torch.zeros(8, 6, 2)
    tags = torch.tensor([[0, 1] * 3] * 8)
    mask = torch.ones(8, 6, dtype=torch.bool)
    opt = torch.optim.SGD(crf.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        crf.nll(em, tags, mask).backward()
        opt.step()
    assert crf.transitions[0, 1] > crf.transitions[0, 0] + 1.0
    assert crf.decode(em[:1], mask[:1]) == [[0, 1, 0, 1, 0, 1]]


# ----------------------------------------------------------------------------------------------------
# The twins, end to end as a learner runs them
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lstm_quick():
    from conftest import run_script

    return run_script("05_seq_classify/segment_lstm.py", "--quick", timeout=600)


def test_segment_lstm_quick_scores_the_model_beside_the_yardsticks(lstm_quick):
    m = lstm_quick.metrics["metrics"]
    assert 0 <= m["test_f1"] <= 1 and m["test_words"] > 1000 and 0 < m["test_oov_rate"] < 1
    for base in ("max_match", "crf", "jieba"):
        assert 0.3 < m[f"{base}_test"]["f1"] <= 1
        assert 0 <= m[f"{base}_test"]["bootstrap_vs_model"]["p"] <= 1
    assert {"length 1", "length 2", "unseen in training"} <= set(m["errors"])
    assert (lstm_quick.out_dir / "model.pt").is_file() and "test word F1" in lstm_quick.stdout


def test_segment_gru_quick_without_crf_and_with_the_scratch_cell():
    from conftest import run_script

    r = run_script("05_seq_classify/segment_gru.py", "--quick", "--CRF=false", "--BASELINES=false",
                   "--IMPL=scratch", timeout=600)
    m = r.metrics
    assert m["config"]["CRF"] is False and m["config"]["IMPL"] == "scratch" and "crf_test" not in m["metrics"]
    assert 0 <= m["metrics"]["test_f1"] <= 1


def test_a_saved_model_segments_a_sentence_and_a_file(lstm_quick, tmp_path):
    from conftest import run_script

    model = lstm_quick.out_dir / "model.pt"
    r = run_script("05_seq_classify/segment_lstm.py", f"--LOAD={model}",
                   "--TEXT=今天天气很好，我们去公园散步。")
    line = r.stdout.strip().splitlines()[-1]
    assert "".join(line.split(" / ")) == "今天天气很好，我们去公园散步。"
    text = tmp_path / "my.txt"
    text.write_text("今天天气很好。\n\n我们去公园散步。\n", encoding="utf-8")
    r = run_script("05_seq_classify/segment_lstm.py", f"--LOAD={model}", f"--TEXT={text}")
    written = model.parent / "my.segmented.txt"
    assert str(written) in r.stdout
    lines = written.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and lines[1] == "" and "".join(lines[2].split(" ")) == "我们去公园散步。"


@pytest.mark.parametrize("text, said",
                         [("hello world", "no Chinese character"), ("missing.txt", "no such file"),
                                        ("gbk", "not UTF-8")])
def test_bad_text_is_refused_in_one_line_before_any_work(text, said, tmp_path):
    from conftest import run_script

    if text == "gbk":
        (tmp_path / "gbk.txt").write_bytes("你好".encode("gbk"))
        text = str(tmp_path / "gbk.txt")
    r = run_script("05_seq_classify/segment_gru.py", f"--TEXT={text}", check=False)
    assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "epoch" not in r.stdout


def test_load_without_text_or_with_a_foreign_file_says_so(tmp_path):
    from conftest import run_script

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    r = run_script("05_seq_classify/segment_lstm.py", f"--LOAD={bad}", "--TEXT=你好", check=False)
    assert r.returncode == 2 and "could not be read" in r.stderr
    r = run_script("05_seq_classify/segment_lstm.py", f"--LOAD={bad}", check=False)
    assert r.returncode == 2 and "give a sentence" in r.stderr


def test_the_feature_crf_baseline_is_computed_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    import segment_baselines as sb

    monkeypatch.setattr(sb, "data_dir", lambda case: tmp_path)
    calls = []
    compute = lambda: (calls.append(1) or [["我们", "去"]], 3.5)   # noqa: E731
    train = [("我们去", "BES")]
    first = sb.cached("feature_crf_5", train, ["我们去"], compute)
    second = sb.cached("feature_crf_5", train, ["我们去"], compute)
    assert first == second == ([["我们", "去"]], 3.5) and calls == [1]
    sb.cached("feature_crf_5", train, ["别的"], compute)          # other texts: a new key
    assert calls == [1, 1] and len(list(tmp_path.glob("feature_crf_5_*.json"))) == 2

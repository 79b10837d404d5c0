"""A learner's results are never lost: GPU settings never replace an edit, --quick never touches a full run,
readers take the full run's checkpoint and say which, foreign checkpoints and bad inputs are one clear line,
caches are checked before they are kept, results are valid JSON with normal permissions, tests stay out
of the source tree, and an old Python gets one line."""
import json
import math
import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, TEST_DATA, run_script

import char_model
import series_model
import stock_model
from sentiment_model import SentimentClassifier, load_sentiment_model, sentiment_checkpoint_extra
from utils import data_utils as du
from utils.data_utils import Vocab
from utils.script_utils import (
    UserError,
    apply_gpu_settings,
    atomic_write,
    load_case_script,
    output_dir,
    parse_config,
    save_json,
    save_metrics,
)
from utils.training import save_checkpoint


def one_line_error(result, *needles):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


# ---- GPU settings never replace the learner's own values (a faked CUDA device) ---------------------------
@pytest.mark.parametrize("script", ["04_text_gen/text_lstm.py", "04_text_gen/text_gru.py"])
def test_gpu_settings_keep_edits_and_command_line_values(script, capsys):
    module = load_case_script(ROOT / script)
    shipped = {k: pair[0] for k, pair in module.GPU_SETTINGS.items()}
    assert shipped == {k: getattr(module,
                                  k) for k in shipped}, "GPU_SETTINGS' shipped values drifted from the file"
    module.HIDDEN_SIZE = 512                                  # the learner edited the file
    cfg = parse_config(vars(module), ["--LR=0.004"])          # ... and set LR on the command line
    applied = apply_gpu_settings(vars(module), module.GPU_SETTINGS, torch.device("cuda"), quick=cfg["QUICK"])
    assert module.HIDDEN_SIZE == 512 and module.LR == 0.004   # both kept
    assert "HIDDEN_SIZE" not in applied and "LR" not in applied
    assert module.EMBED_DIM == 128 == applied["EMBED_DIM"] and module.NUM_LAYERS == 3  # the rest: GPU values
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("GPU settings")]
    assert (len(line) == 1
            and "your own values kept: HIDDEN_SIZE=512 (edited; shipped 384), --LR=0.004" in line[0])


GPU_SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("0[1-6]_*/*.py")
                     if "\nGPU_SETTINGS = " in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("script", GPU_SCRIPTS)
def test_gpu_settings_name_the_shipped_value_and_a_valid_gpu_value(script):
    """{NAME: (shipped, gpu)}: the shipped value is the file's (else no GPU value would ever apply), and the
    GPU value passes the constant's own rule."""
    from utils.script_utils import constant_rules

    module = load_case_script(ROOT / script)
    rules = constant_rules(vars(module))
    for name, pair in module.GPU_SETTINGS.items():
        assert isinstance(pair,
                          tuple) and len(pair) == 2, f"{script}: GPU_SETTINGS {name}=(shipped, gpu value)"
        assert pair[0] == getattr(module, name), f"{script}: GPU_SETTINGS {name} says shipped {pair[0]!r}"
        assert rules[name].accepts(pair[1]), f"{script}: GPU value {name}={pair[1]!r} breaks {rules[name]}"


@pytest.mark.parametrize("script", ["02_sentiment/sentiment_lstm.py", "02_sentiment/sentiment_gru.py",
                                    "02_sentiment/model_comparison.py"])
def test_dataset_settings_apply_to_their_dataset_only_and_keep_the_learners_values(script, capsys):
    """chinese_reviews' DATASET_SETTINGS: applied for that dataset, never over a value set on the command
    line, never for another dataset or with --quick; the shipped values are the file's and the new ones
    valid."""
    from utils.script_utils import apply_dataset_settings, constant_rules

    module = load_case_script(ROOT / script)
    rules = constant_rules(vars(module))
    for name, (shipped, value) in module.DATASET_SETTINGS["chinese_reviews"].items():
        assert shipped == getattr(module, name) and rules[name].accepts(value)
    assert apply_dataset_settings(vars(module), "rotten_tomatoes") == {}
    assert apply_dataset_settings(vars(module), "chinese_reviews", quick=True) == {}
    cfg = parse_config(vars(module), ["--MAX_LEN=150", "--DATASET=chinese_reviews"])
    applied = apply_dataset_settings(vars(module), module.DATASET, quick=cfg["QUICK"])
    assert module.MAX_LEN == 150 and "MAX_LEN" not in applied                 # the learner's value is kept
    assert applied == ({"ENSEMBLE": 1} if "ENSEMBLE" in module.DATASET_SETTINGS["chinese_reviews"] else {})
    assert "your own values kept: --MAX_LEN=150" in capsys.readouterr().out


def test_gpu_settings_do_nothing_on_cpu_or_with_quick():
    module = load_case_script(ROOT / "04_text_gen/text_gru.py")
    cfg = parse_config(vars(module), [])
    assert apply_gpu_settings(vars(module), module.GPU_SETTINGS, torch.device("cpu"), cfg["QUICK"]) == {}
    assert apply_gpu_settings(vars(module), module.GPU_SETTINGS, torch.device("cuda"), quick=True) == {}
    assert module.HIDDEN_SIZE == 384


def test_a_bad_gpu_value_is_refused_like_any_constant():
    module = load_case_script(ROOT / "04_text_gen/text_lstm.py")
    parse_config(vars(module), [])
    with pytest.raises(UserError, match="DROPOUT = 1.5: must be a number in"):
        apply_gpu_settings(vars(module), {"DROPOUT": (0.1, 1.5)}, torch.device("cuda"))


# ---- --quick writes under quick/, never over a full run ------------------------------------------------
def test_output_dir_keeps_quick_runs_apart():
    full = output_dir("/x/03_stock/stock_lstm.py", create=False)
    assert output_dir("/x/03_stock/stock_lstm.py", quick=True, create=False) == full / "quick"
    assert (output_dir("/x/05_seq_classify/sequence_gru.py", "GunPoint", quick=True, create=False).parts[-3:]
            == ("sequence_gru", "quick", "GunPoint"))


def test_every_script_passes_quick_to_output_dir():
    """A structural check that needs no training: each output_dir(__file__ ...) call of a script says
    quick=."""
    import ast

    for path in sorted(ROOT.glob("0[1-6]_*/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "output_dir"
                    and node.args and getattr(node.args[0], "id", None) == "__file__"):
                where = f"{path.name}:{node.lineno}"
                assert any(k.arg == "quick" for k in node.keywords), f"{where}: output_dir without quick="


def test_a_quick_run_leaves_the_full_run_untouched(tmp_path):
    outputs = tmp_path / "outputs"
    full = outputs / "03_stock" / "stock_gru"
    full.mkdir(parents=True)
    for name in ("model.pt", "metrics.json", "predictions.csv"):
        (full / name).write_text(f"the full run's {name}")
    r = run_script("03_stock/stock_gru.py", "--quick", env={"LSTM_GRU_OUTPUTS": str(outputs)}, timeout=180)
    for name in ("model.pt", "metrics.json", "predictions.csv"):
        assert (full / name).read_text() == f"the full run's {name}"
        assert (full / "quick" / name).stat().st_size > 0
    assert json.loads((full / "quick" / "metrics.json").read_text())["config"]["QUICK"] is True
    assert r.returncode == 0


def tiny_char_checkpoint(path, cell, hidden):
    vocab = char_model.CharVocab.build("abc ROMEO:\n")
    model = char_model.CharRNN(len(vocab), cell=cell, embed_dim=4, hidden_size=hidden, num_layers=1,
                               dropout=0.0)
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1,
                     **char_model.char_checkpoint_extra(model, vocab, "test")}, path)
    return path


def test_creative_writing_reads_the_full_runs_and_says_which(tmp_path):
    outputs = tmp_path / "outputs"
    for cell in ("lstm", "gru"):
        folder = outputs / "04_text_gen" / f"text_{cell}"
        (folder / "quick").mkdir(parents=True)
        tiny_char_checkpoint(folder / "model.pt", cell, hidden=6)             # the full run's
        tiny_char_checkpoint(folder / "quick" / "model.pt", cell, hidden=5)   # a smoke test's
    before = {p: p.read_bytes() for p in outputs.rglob("*.pt")}
    r = run_script("04_text_gen/creative_writing.py", "--quick", "--LENGTH=5", "--SWEEP_LEN=5",
                   "--SWEEP_TEMPERATURES=1.0", env={"LSTM_GRU_OUTPUTS": str(outputs)}, timeout=180)
    for cell in ("lstm", "gru"):
        used = [line for line in r.stdout.splitlines() if line.startswith(f"{cell.upper()}: using")]
        assert len(used) == 1 and f"text_{cell}/model.pt (1x6," in used[0], r.stdout[-2000:]
    assert before == {p: p.read_bytes() for p in outputs.rglob("*.pt")}  # read, never rewritten
    assert (outputs / "04_text_gen" / "creative_writing" / "quick" / "metrics.json").is_file()


# ---- a checkpoint of another cell, another case, or a damaged one: one line ----------------------------
def sentiment_checkpoint(path, cell):
    vocab = Vocab([Vocab.PAD, Vocab.UNK, "good", "bad"])
    model = SentimentClassifier(len(vocab), cell=cell, embed_dim=4, hidden_size=3)
    save_checkpoint({"state_dict": model.state_dict(), **sentiment_checkpoint_extra(model, vocab, 9, "rt")},
                    path)
    return path


def test_load_refuses_the_other_cell_and_other_cases(tmp_path):
    gru = sentiment_checkpoint(tmp_path / "gru.pt", "gru")
    assert load_sentiment_model(gru, cell="gru")[2]["cell"] == "gru"
    with pytest.raises(UserError, match=r"holds a 02_sentiment GRU checkpoint; sentiment_lstm.py expects a "
                                        r"02_sentiment LSTM checkpoint: load it with the GRU script"):
        load_sentiment_model(gru, cell="lstm", script="sentiment_lstm.py")
    text = tiny_char_checkpoint(tmp_path / "char.pt", "lstm", hidden=4)
    with pytest.raises(UserError,
                       match="holds a 04_text_gen LSTM checkpoint; .* expects a 02_sentiment LSTM"):
        load_sentiment_model(text, cell="lstm", script="sentiment_lstm.py")
    with pytest.raises(UserError, match="holds a 02_sentiment GRU checkpoint; .*expects a 04_text_gen LSTM"):
        char_model.load_char_model(gru, cell="lstm", script="creative_writing.py")
    with pytest.raises(UserError, match="holds a 04_text_gen GRU checkpoint"):
        char_model.load_char_model(tiny_char_checkpoint(tmp_path / "g.pt", "gru", 4), cell="lstm")
    untagged = {k: v for k, v in torch.load(gru, weights_only=True).items() if k not in ("case", "cell")}
    save_checkpoint(untagged, tmp_path / "old.pt")            # saved before checkpoints named their case
    with pytest.raises(UserError, match="an untagged GRU checkpoint"):
        load_sentiment_model(tmp_path / "old.pt", cell="lstm")
    save_checkpoint({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"untagged checkpoint \(entries: weights\)"):
        load_sentiment_model(tmp_path / "other.pt", cell="lstm")


def test_load_refuses_damaged_or_edited_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="could not be read .*a 02_sentiment LSTM checkpoint is expected"):
        load_sentiment_model(tmp_path / "junk.pt", cell="lstm")
    ckpt = torch.load(sentiment_checkpoint(tmp_path / "ok.pt", "lstm"), weights_only=True)
    save_checkpoint({**ckpt, "hparams": {**ckpt["hparams"], "colour": "blue"}}, tmp_path / "edited.pt")
    with pytest.raises(UserError, match="do not fit"):                         # was a TypeError
        load_sentiment_model(tmp_path / "edited.pt", cell="lstm")
    save_checkpoint({**ckpt, "vocab": ["no", "pad"]}, tmp_path / "vocab.pt")
    with pytest.raises(UserError, match="do not fit"):                         # was a ValueError
        load_sentiment_model(tmp_path / "vocab.pt", cell="lstm")
    chars = torch.load(tiny_char_checkpoint(tmp_path / "c.pt", "gru", 4), weights_only=True)
    save_checkpoint({**chars, "hparams": "not a dict"}, tmp_path / "c2.pt")
    with pytest.raises(UserError, match="do not fit"):
        char_model.load_char_model(tmp_path / "c2.pt")


def test_series_checkpoint_of_another_cell_or_dataset_is_refused(tmp_path):
    model = series_model.SeriesClassifier("gru", "torch", 1, 2, 4, 1, False, "last", 0.0)
    save_checkpoint({"case": "05_seq_classify", "cell": "gru", "state_dict": model.state_dict(),
                     "model_config": model.config, "dataset": "GunPoint"}, tmp_path / "checkpoint.pt")
    assert len(series_model.load_series_members(tmp_path / "checkpoint.pt", cell="gru",
                                                dataset="GunPoint")) == 1
    with pytest.raises(UserError, match="05_seq_classify GRU checkpoint; .* LSTM"):
        series_model.load_series_members(tmp_path / "checkpoint.pt", cell="lstm")
    with pytest.raises(UserError, match="trained on GunPoint, not on ArrowHead"):
        series_model.load_series_members(tmp_path / "checkpoint.pt", cell="gru", dataset="ArrowHead")


def test_sentiment_script_refuses_the_other_cells_checkpoint(tmp_path):
    path = sentiment_checkpoint(tmp_path / "model.pt", "gru")
    r = run_script("02_sentiment/sentiment_lstm.py", f"--LOAD={path}", check=False, timeout=120)
    one_line_error(r, "02_sentiment GRU checkpoint",
                   "sentiment_lstm.py expects a 02_sentiment LSTM checkpoint")
    assert "(LSTM)" not in r.stdout                       # nothing was classified under the wrong heading


# ---- inputs: inf is refused like NaN; downloads and caches are checked before they are kept --------------
def test_inf_prices_are_refused_like_nan(tmp_path):
    rows = [f"2021-01-{d:02d},{100 + d}" for d in range(1, 29)]
    rows[10] = "2021-01-11,inf"
    csv = tmp_path / "prices.csv"
    csv.write_text("date,close\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError,
                       match="'close' has 1 missing, non-numeric, infinite or non-positive value.*01-11"):
        du.load_prices(csv=str(csv), verbose=False)
    frame = pd.DataFrame({"date": ["2021-01-01", "2021-01-02"], "close": [1.0, 2.0],
                          "volume": [-np.inf, 5.0]})
    with pytest.raises(UserError, match="'volume'.*infinite"):
        du.clean_price_frame(frame, "test")


YF_FIXTURE = ROOT / "tests" / "fixtures" / "yfinance_AAPL_2013.csv"


def yf_frame():
    return pd.read_csv(YF_FIXTURE, header=[0, 1], index_col=0, parse_dates=True)


def test_a_bad_yfinance_cache_is_downloaded_again(tmp_path, monkeypatch, capsys):
    import yfinance

    cache = tmp_path / "yfinance_AAPL.csv"
    # a broken earlier download
    cache.write_text("Price,Close\nTicker,AAPL\nDate,\n2013-01-02,not a price\n")
    monkeypatch.setattr(du, "yfinance_cache_path", lambda *a: cache)
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: yf_frame())
    df, _ = du.load_prices("yfinance", "AAPL", start="2013-01-01", verbose=False)
    assert "is unusable" in capsys.readouterr().out and len(df) == 41
    # replaced by a good one
    assert cache.read_text().splitlines()[:3] == YF_FIXTURE.read_text().splitlines()[:3]


def test_a_bad_download_is_never_cached(tmp_path, monkeypatch):
    import yfinance

    cache = tmp_path / "yfinance_AAPL.csv"
    monkeypatch.setattr(du, "yfinance_cache_path", lambda *a: cache)
    bad = yf_frame()
    bad.iloc[5, 0] = np.inf                                   # one infinite price in the download
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: bad)
    with pytest.raises(UserError, match="the download of AAPL from Yahoo Finance.*infinite"):
        du.load_prices("yfinance", "AAPL", start="2013-01-01", verbose=False)
    assert list(tmp_path.iterdir()) == []                     # no cache, no temp file left


def test_a_damaged_text_cache_is_rebuilt_not_reused(tmp_path, monkeypatch, capsys):
    plays = du.shakespeare_plays()[:12]                      # 11 training plays and 1 validation play: quick
    monkeypatch.setattr(du, "shakespeare_plays", lambda: plays)
    monkeypatch.setattr(du, "data_dir", lambda case, create=True: tmp_path)
    first = du.shakespeare_split()
    # a good cache is reused
    assert du.shakespeare_split() == first and "rebuilding" not in capsys.readouterr().out
    train = tmp_path / "shakespeare_train.txt"
    train.write_text(train.read_text(encoding="utf-8")[:1000], encoding="utf-8")  # an interrupted copy, say
    assert du.shakespeare_split() == first and "stale or damaged: rebuilding" in capsys.readouterr().out
    monkeypatch.setattr(char_model, "data_dir", lambda case: tmp_path)
    corpus = {"train": "to be or not to be " * 20, "val": "to be or not " * 5}
    good = char_model.cached_ngram_baseline(corpus, 3, 0.5)
    (cache,) = tmp_path.glob("ngram_baseline_*.json")
    cache.write_text('{"nats_per_char": NaN}')
    assert char_model.cached_ngram_baseline(corpus, 3,
                                            0.5) == good and "is damaged" in capsys.readouterr().out


# ---- the scaler: a column whose spread is rounding noise is constant --------------------------------------
def test_scaler_treats_negligible_spread_as_constant():
    rng = np.random.default_rng(0)
    real = rng.normal(0.001, 0.02, 500)                                  # daily returns
    flat = 0.3 + rng.normal(0, 1e-16, 500)                               # constant on paper,
                                                                         # not in floating point
    scaler = stock_model.TrainScaler(np.stack([real, flat, np.zeros(500)], 1))
    assert scaler.std[1] == 1.0 and scaler.std[2] == 1.0 and scaler.std[0] == pytest.approx(real.std())
    z = scaler.transform(np.stack([real, flat, np.zeros(500)], 1))
    assert np.abs(z[:, 1]).max() < 1e-12 and z[:, 0].std() == pytest.approx(1.0)


# ---- results files: valid JSON, normal permissions --------------------------------------------------------
def test_metrics_json_is_always_valid_json(tmp_path):
    path = save_metrics(tmp_path, config={"LR": np.float32(1e-3), "H": np.int64(3)}, start_time=0.0,
                        metrics={"nan": float("nan"), "np_nan": np.float64("nan"),
                                 "np32_inf": np.float32("inf"), "torch_nan": torch.tensor(float("nan")),
                                 "nested": [{"x": -math.inf}, (np.nan, 1)], "array": np.array([1.5, np.nan]),
                                 "tensor": torch.tensor([[1.0, float("inf")]]), "flag": np.bool_(True)})

    def refuse(token):
        raise AssertionError(f"{token} in metrics.json")

    data = json.loads(path.read_text(), parse_constant=refuse)           # NaN/Infinity are not JSON
    m = data["metrics"]
    assert m["nan"] is None and m["np_nan"] is None and m["np32_inf"] is None and m["torch_nan"] is None
    assert (m["nested"] == [{"x": None}, [None, 1]] and m["array"] == [1.5, None]
            and m["tensor"] == [[1.0, None]])
    assert m["flag"] is True and data["config"] == {"LR": pytest.approx(1e-3), "H": 3}


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        atomic_write(tmp_path / "atomic.txt", lambda p: p.write_text("x"))
        save_json({"a": 1}, tmp_path / "m.json")
        save_checkpoint({"w": torch.ones(1)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("atomic.txt", "m.json", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


# ---- tests stay out of the source tree; an old Python gets one line --------------------------------------
def test_caches_go_to_the_test_data_folder():
    for case in ("02_sentiment", "03_stock", "04_text_gen", "05_seq_classify"):
        folder = du.data_dir(case, create=False)
        assert folder.is_relative_to(TEST_DATA) and not folder.is_relative_to(ROOT), folder
    assert du.yfinance_cache_path("AAPL", "", "").is_relative_to(TEST_DATA)


def test_an_old_python_gets_one_clear_line():
    code = "import sys; sys.version_info = (3, 9, 18, 'final', 0); import utils"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("error: this project needs Python 3.11 or newer; this is Python")


@pytest.mark.parametrize("script", ["04_text_gen/text_lstm.py", "04_text_gen/text_gru.py",
                                    "04_text_gen/creative_writing.py"])
def test_peoples_daily_settings_are_valid_and_leave_the_gpu_model_alone(script):
    """peoples_daily's DATASET_SETTINGS: shipped values are the file's, new ones valid; with --quick the
    small model stays and the Chinese prompt applies; on a GPU the GPU's model size stays."""
    from utils.script_utils import apply_dataset_settings, constant_rules

    module = load_case_script(ROOT / script)
    rules = constant_rules(vars(module))
    settings = module.DATASET_SETTINGS["peoples_daily"]
    for name, (shipped, value) in settings.items():
        assert shipped == getattr(module, name) and rules[name].accepts(value)
    assert apply_dataset_settings(vars(module), "shakespeare") == {}
    if "HIDDEN_SIZE" in settings:
        gpu = {"HIDDEN_SIZE": 1024, "NUM_LAYERS": 3}
        applied = apply_dataset_settings(dict(vars(module)), "peoples_daily", skip=gpu)
        assert "HIDDEN_SIZE" not in applied and applied["TIE_WEIGHTS"] is True
    cfg = parse_config(vars(module), ["--quick", "--DATASET=peoples_daily"])
    applied = apply_dataset_settings(vars(module), module.DATASET, quick=cfg["QUICK"])
    assert applied["PROMPT"] == "新华社北京1月1日电" and "HIDDEN_SIZE" not in applied

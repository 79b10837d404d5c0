"""06_comparison: LSTM vs GRU across the cases, the speed/memory benchmark, and the offline dashboard.

The default run compares one case end to end (03_stock with --quick, matched parameters, then again to prove
the saved runs are reused); every case at once is `@pytest.mark.slow` (8 trainings, 2-4 min on 2 cores).
"""
import json
import math
import re

import pytest
from conftest import ROOT, run_script

from utils.model_utils import count_parameters, make_rnn
from utils.script_utils import load_case_script


@pytest.fixture(scope="module")
def comparison():
    """06_comparison/model_comparison.py as a module (the folder name is not importable with `import`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_comparison_06",
                                                  ROOT / "06_comparison/model_comparison.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    """06_comparison/performance_benchmark.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_06", ROOT / "06_comparison/performance_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PNG = b"\x89PNG\r\n\x1a\n"


# ---- unit tests on hand-checked numbers ---------------------------------------------------------------
def test_parameter_formula_matches_torch(comparison):
    # LSTM I=10, H=20: 4*(20*10 + 20*20 + 2*20) = 2560
    assert comparison.rnn_parameter_count("lstm", 10, 20) == 2560
    # GRU I=3, H=5: 3*(5*3 + 5*5 + 10) = 150
    assert comparison.rnn_parameter_count("gru", 3, 5) == 150
    for cell, layers, bidir in (("lstm", 2, True), ("gru", 3, False), ("gru", 2, True)):
        torch_count = count_parameters(make_rnn(cell, "torch", 7, 11, layers, bidirectional=bidir))
        assert comparison.rnn_parameter_count(cell, 7, 11, layers, bidir) == torch_count


def test_matched_hidden_size(comparison):
    gru = lambda h: comparison.rnn_parameter_count("gru", 10, h)
    # GRU h=23 -> 3*(230+529+46) = 2415, h=24 -> 3*(240+576+48) = 2592: 2592 is closer to 2560
    assert gru(23) == 2415 and gru(24) == 2592
    assert comparison.matched_hidden_size(gru, 2560) == 24
    assert comparison.matched_hidden_size(gru, 2420) == 23          # just above gru(23): keep 23
    assert comparison.matched_hidden_size(gru, gru(57)) == 57       # exact hit
    # roughly sqrt(4/3) x the LSTM's hidden size when H >> I
    lstm = comparison.rnn_parameter_count("lstm", 8, 256)
    assert comparison.matched_hidden_size(lambda h: comparison.rnn_parameter_count("gru", 8, h),
                                          lstm) in (295, 296)


def test_mean_std_and_welch(comparison):
    assert comparison.mean_std([1, 2, 3]) == (2.0, 1.0)
    assert comparison.mean_std([5]) == (5.0, 0.0)
    # means 2 and 5, variances 1 and 1: t = -3 / sqrt(1/3 + 1/3) = -3.674, df = 4, two-sided p = 0.0213
    w = comparison.welch_test([1, 2, 3], [4, 5, 6])
    assert math.isclose(w["t"], -3.6742, abs_tol=1e-3) and math.isclose(w["df"], 4.0)
    assert math.isclose(w["p"], 0.0213, abs_tol=5e-4)
    assert "significant" in comparison.significance_note(w, 0.05)
    # unequal variances: df from the Welch-Satterthwaite formula, (1/3 + 4/3)^2 / ((1/3)^2/2 +
    # (4/3)^2/2) = 2.94
    w2 = comparison.welch_test([1, 2, 3], [2, 4, 6])
    assert math.isclose(w2["df"], 2.9412, abs_tol=1e-3) and w2["p"] > 0.05
    assert "within noise" in comparison.significance_note(w2, 0.05)
    assert comparison.welch_test([1.0], [2.0, 3.0])["note"].startswith("n too small")


def fake_run(value, params, seconds, hidden=16):
    return {"metrics": {"test_accuracy": value, "parameters": params, "train_time_s": seconds},
            "config": {"HIDDEN_SIZE": hidden}, "history": []}


def test_compare_case_picks_winner_and_direction(comparison):
    runs = {"lstm": [fake_run(v, 100, 10.0) for v in (0.80, 0.81, 0.79)],
            "gru": [fake_run(v, 75, 8.0) for v in (0.90, 0.91, 0.89)] + [{"failed": "exit code 1"}]}
    row = comparison.compare_case("05_seq_classify", runs, 0.05)
    assert row["winner"] == "GRU" and row["significant"]
    assert row["gru"]["failed"] == 1 and row["gru"]["n"] == 3 and row["gru"]["parameters"] == 75
    assert math.isclose(row["difference_gru_minus_lstm"], 0.10)
    lines = comparison.conclusions([row], matched=False)
    assert any("GRU" in l and "significantly better" in l for l in lines)
    assert any("75%" in l for l in lines)  # GRU/LSTM parameters, computed from the runs
    # lower is better for 03_stock's rmse: the smaller mean wins
    stock = {"lstm": [{"metrics": {"rmse": 1.0}, "config": {}}],
             "gru": [{"metrics": {"rmse": 2.0}, "config": {}}]}
    row = comparison.compare_case("03_stock", stock, 0.05)
    assert row["winner"] == "LSTM" and not row["significant"] and "n too small" in row["note"]


def test_parameter_count_builds_the_scripts_own_quick_models(comparison):
    """03 at --quick sizes (its QUICK_SETTINGS applied): LSTM I=4, H=8: 4*(8*4 + 8*8 + 2*8) = 448 weights
    + the linear head 8 + 1 = 457; the GRU 3*(10*4 + 100 + 20) + 11 = 491 at H=10, 3*(9*4 + 81 + 18) + 10
    = 415 at H=9, so H=10 is the closest match."""
    lstm = load_case_script(ROOT / "03_stock/stock_lstm.py", quick=True)
    gru = load_case_script(ROOT / "03_stock/stock_gru.py", quick=True)
    assert lstm.HIDDEN_SIZE == 8 and len(lstm.FEATURES) == 4
    lstm_count = comparison.parameter_counter("03_stock", lstm, {})
    gru_count = comparison.parameter_counter("03_stock", gru, {})
    assert lstm_count(8) == 457 and gru_count(10) == 491 and gru_count(9) == 415
    assert comparison.matched_hidden_size(gru_count, lstm_count(8)) == 10
    # the count is of the model build_model returns: the same as building it here
    gru.HIDDEN_SIZE = 12
    assert gru_count(12) == count_parameters(gru.build_model(len(gru.FEATURES), "cpu"))


def test_series_parameter_count_uses_the_automatic_patch(comparison):
    import series_model
    from utils.data_utils import load_ucr_dataset

    gru = load_case_script(ROOT / "05_seq_classify/sequence_gru.py", quick=False)
    assert gru.PATCH == 0  # auto: GunPoint's 150 steps become 25 patches of 6
    splits = series_model.prepare_series_splits(load_ucr_dataset("GunPoint"), 0.2, 0, gru.PATCH)
    trained = series_model.SeriesClassifier("gru", "torch", splits["n_features"], 2, gru.HIDDEN_SIZE,
                                            gru.NUM_LAYERS, gru.BIDIRECTIONAL, gru.POOLING)
    counted = comparison.parameter_counter("05_seq_classify", gru, {})(gru.HIDDEN_SIZE)
    assert counted == count_parameters(trained) == 28_162


def test_reuse_signature_ignores_comments_not_code(comparison):
    code = "LR = 3e-3  # learning rate\nprint(LR)\n"
    same = comparison.code_hash("# a new comment\nLR = 3e-3    # reworded\n\nprint(LR)\n")
    assert comparison.code_hash(code) == same
    assert comparison.code_hash(code.replace("3e-3", "1e-3")) != same


def test_reuse_signature_follows_the_case_module(comparison, tmp_path):
    """A run depends on its script, the case module the script imports, utils/ and 01's scratch cell:
    a code change in any of them must force a fresh run, a comment must not."""
    files = {"07_case/case_lstm.py": "import case_model\nimport numpy\nprint(case_model.H)\n",
             "07_case/case_model.py": "H = 8  # hidden size\n",
             "07_case/unrelated.py": "X = 1\n",
             "utils/helpers.py": "Y = 2\n",
             "01_basic_theory/lstm_from_scratch.py": "from rnn_common import Base\n",
             "01_basic_theory/rnn_common.py": "Base = object\n",
             "01_basic_theory/gru_from_scratch.py": "Z = 3\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    command = ["07_case/case_lstm.py", "--SEED=0"]
    sign = lambda: comparison.run_signature(command, "lstm", root=tmp_path)
    before = sign()
    assert before["command"] == command
    assert set(before["code_sha256"]) == {"07_case/case_lstm.py", "07_case/case_model.py", "utils/helpers.py",
                                          "01_basic_theory/lstm_from_scratch.py",
                                          "01_basic_theory/rnn_common.py"}
    module = tmp_path / "07_case/case_model.py"
    module.write_text("# the model's size\nH = 8    # hidden size, reworded\n", encoding="utf-8")
    assert sign() == before                                   # only comments changed
    module.write_text("H = 16  # hidden size\n", encoding="utf-8")
    assert sign() != before                                   # the case module's code changed
    module.write_text("H = 8  # hidden size\n", encoding="utf-8")
    assert sign() == before
    for name, text in (("utils/helpers.py", "Y = 3\n"), ("01_basic_theory/rnn_common.py", "Base = int\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert sign() != before, name                          # utils and the scratch cell count too
        (tmp_path / name).write_text(files[name], encoding="utf-8")
    gru = comparison.run_signature(command, "gru", root=tmp_path)["code_sha256"]
    assert "01_basic_theory/gru_from_scratch.py" in gru and "01_basic_theory/lstm_from_scratch.py" not in gru


# ---- end to end -------------------------------------------------------------------------------------
def test_model_comparison_quick_one_case_and_reuse():
    args = ("--quick", "--CASES=03_stock", "--MATCH_PARAMS")
    first = run_script("06_comparison/model_comparison.py", *args, "--REUSE=false", timeout=300)
    m = first.metrics["metrics"]
    row = m["rows"][0]
    assert row["case"] == "03_stock" and row["winner"] in ("LSTM", "GRU", "tie")
    assert row["lstm"]["n"] == 1 and row["gru"]["n"] == 1 and "n too small" in row["note"]
    # matched parameter counts: the GRU was run with the solved hidden size and really has ~ the LSTM's size
    assert row["matched"]["gru_hidden"] == row["gru"]["hidden"] != row["lstm"]["hidden"]
    # the solver counted the very models the scripts trained (at --quick sizes one hidden unit moves the GRU
    # by ~8%, so "closest" is all that can be asked: LSTM H=8 -> 457, GRU H=10 -> 491 beats H=9 -> 415)
    assert row["lstm"]["parameters"] == row["matched"]["lstm_parameters"]
    assert row["gru"]["parameters"] == row["matched"]["gru_parameters"]
    assert abs(row["gru"]["parameters"] / row["lstm"]["parameters"] - 1) < 0.1
    assert m["conclusions"] and m["failed"] == []
    out = first.out_dir
    for name in ("comparison.png",):
        assert (out / name).read_bytes()[:8] == PNG
    assert "| next-day return" in (out / "comparison_table.md").read_text(encoding="utf-8")
    for cell in ("lstm", "gru"):
        saved = json.loads((out / "runs" / f"03_stock_{cell}_seed0.json").read_text(encoding="utf-8"))
        assert saved["config"]["QUICK"] and saved["comparison_signature"]["command"][1] == "--SEED=0"
    # the learner's own outputs/03_stock are not touched by the comparison's runs
    assert not (out / "runs" / "work" / "03_stock_lstm_seed0").exists()
    second = run_script("06_comparison/model_comparison.py", *args, timeout=120)
    assert second.stdout.count("reused") == 2
    assert second.metrics["metrics"]["rows"][0]["lstm"]["values"] == row["lstm"]["values"]


@pytest.mark.slow
def test_model_comparison_quick_every_case():
    r = run_script("06_comparison/model_comparison.py", "--quick", "--REUSE=false", timeout=900)
    rows = r.metrics["metrics"]["rows"]
    assert {row["case"] for row in rows} == {"02_sentiment", "02_chinese", "03_stock", "04_text_gen",
                                             "04_pronounce", "05_seq_classify"}
    assert all(row["winner"] for row in rows)


def test_model_comparison_runs_the_chinese_task_with_its_dataset():
    """02_chinese: the sentiment twins with --DATASET=chinese_reviews, their metrics read from the dataset's
    subfolder."""
    r = run_script("06_comparison/model_comparison.py", "--quick", "--CASES=02_chinese", "--REUSE=false",
                   timeout=300)
    row = r.metrics["metrics"]["rows"][0]
    assert row["case"] == "02_chinese" and row["task"] == "sentiment (Chinese reviews)"
    for cell in ("lstm", "gru"):
        saved = json.loads((r.out_dir / "runs" / f"02_chinese_{cell}_seed0.json").read_text(encoding="utf-8"))
        assert (saved["config"]["DATASET"] == "chinese_reviews"
                and saved["metrics"]["baseline_ngram_range"] == [1, 3])
        assert "--DATASET=chinese_reviews" in saved["comparison_signature"]["command"]


def test_model_comparison_runs_the_pretrained_chinese_task():
    """02_chinese_pretrained: each twin fine-tunes 04's People's Daily model of its own cell (ULMFiT); the
    language model's file is part of the run's command and its record is in the saved metrics."""
    for cell in ("lstm", "gru"):
        run_script(f"04_text_gen/text_{cell}.py", "--quick", "--DATASET=peoples_daily", timeout=180)
    r = run_script("06_comparison/model_comparison.py", "--quick", "--CASES=02_chinese_pretrained",
                   "--REUSE=false", timeout=600)
    row = r.metrics["metrics"]["rows"][0]
    assert row["case"] == "02_chinese_pretrained" and row["winner"]
    for cell in ("lstm", "gru"):
        saved = json.loads((r.out_dir / "runs" / f"02_chinese_pretrained_{cell}_seed0.json")
                           .read_text(encoding="utf-8"))
        command = saved["comparison_signature"]["command"]                 # the script's arguments
        assert any(a.endswith(f"text_{cell}/quick/peoples_daily/model.pt") for a in command)
        assert saved["metrics"]["stage1"]["cell"] == cell and "nbsvm_test_accuracy" in saved["metrics"]


def test_performance_benchmark_quick():
    r = run_script("06_comparison/performance_benchmark.py", "--quick", "--DEVICE=cpu", timeout=240)
    m = r.metrics["metrics"]
    cpu = m["devices"]["cpu"]
    assert cpu["quick"] and cpu["threads"] == 2
    assert len(cpu["checks"]) == 4 and all(re.match(r"(PASS|FAIL) \(", c["verdict"]) for c in cpu["checks"])
    for row in cpu["headline"]:
        for impl in ("torch", "scratch"):
            assert row[impl]["median_ms"] > 0 and row[impl]["saved_bytes"] > 0 and row[impl]["n"] == 3
        assert row["time_ratio"] > 0 and row["memory_ratio"] > 0
    assert set(cpu["sweeps"]) == {"batch", "length", "hidden"}
    assert "lstm_scratch_vs_length" in cpu["slopes"]
    for name in cpu["plots"].values():
        assert (r.out_dir / name).read_bytes()[:8] == PNG


def test_saved_activation_memory_counts_what_backward_keeps(bench):
    """The memory probe on a layer whose saved tensors are known exactly."""
    import torch

    class Stash(torch.autograd.Function):   # keeps y via save_for_backward and z as a plain ctx attribute
        @staticmethod
        def forward(ctx, x, w):
            y = x @ w.t()
            ctx.save_for_backward(w, y)
            ctx.z = torch.zeros(100)          # 400 bytes that the saved_tensors hooks do not see
            return y

        @staticmethod
        def backward(ctx, g):
            w, _ = ctx.saved_tensors
            return g @ w, None

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(8, 4))

        def forward(self, x):
            return Stash.apply(x, self.w), None

    x = torch.randn(2, 3, 4, requires_grad=True)
    # y: 2*3*8 float32 = 192 bytes, z: 400 bytes; the weight and the input are not activations
    assert bench.saved_activation_bytes(Layer(), x, torch.randn(2, 3, 8)) == 192 + 400


def test_profile_keeps_its_table_without_the_profilers_usdt_lines(bench, capfd):
    """libkineto writes "USDT: ... profiler_start/stop" to file descriptor 2 at every profile; the learner
    must not see them, while any other stderr line still passes."""
    import os

    import torch

    profile = bench.profile_headline(torch.device("cpu"), (2, 3, 2, 4), reps=1)
    assert set(profile) == {f"{c}_{i}" for c in bench.CELLS for i in bench.IMPLS}
    assert all(p["top_ops"] and p["op_count_per_run"] > 0 for p in profile.values())
    with bench.without_usdt_lines():
        os.write(2, b"USDT:2026-01-01 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\nreal warning\n")
    err = capfd.readouterr().err
    assert "USDT" not in err and "profiler_st" not in err and "real warning" in err


def assert_self_contained(page: str):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page,
                         re.I), "external resource in the HTML"
    assert "<script" not in page.lower() and "<link" not in page.lower()
    for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', page):
        assert src.startswith("data:image/png;base64,")


def test_dashboard_empty_outputs_then_fake_results(tmp_path):
    run_script("06_comparison/visualization_dashboard.py", "--quick", f"--OUTPUTS={tmp_path}")
    out = tmp_path / "06_comparison" / "visualization_dashboard" / "quick"   # a --quick run writes in quick/
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "not run yet" in page and "python 06_comparison/model_comparison.py" in page
    assert "<img" not in page
    assert (out / "overview.png").read_bytes()[:8] == PNG
    assert json.loads((out / "metrics.json").read_text())["metrics"]["figure_groups"] == []

    # fake results: twin histories for 02, a comparison record, a gate heatmap PNG from 01,
    # a text sample for 04
    for cell, acc in (("lstm", [0.6, 0.7]), ("gru", [0.65, 0.72])):
        folder = tmp_path / "02_sentiment" / f"sentiment_{cell}"
        folder.mkdir(parents=True)
        hist = [{"epoch": e + 1, "train_loss": 0.7 - 0.1 * e, "val_loss": 0.69 - 0.05 * e, "val_accuracy": a}
                for e, a in enumerate(acc)]
        (folder / "metrics.json").write_text(json.dumps({"metrics": {"test_accuracy": acc[-1]},
                                                         "history": hist}))
    comp = tmp_path / "06_comparison" / "model_comparison"
    comp.mkdir(parents=True)
    (comp / "metrics.json").write_text(json.dumps({"config": {"SEEDS": [0, 1]}, "metrics": {
        "table": [{"task": "sentiment <RT>", "LSTM": "0.70 ± 0.01", "GRU": "0.72 ± 0.01", "winner": "GRU"}],
        "conclusions": ["GRU is better on sentiment <RT>."]}}))
    gates = tmp_path / "01_basic_theory" / "lstm_from_scratch"
    gates.mkdir(parents=True)
    (gates / "gate_heatmap.png").write_bytes((out / "overview.png").read_bytes())
    text = tmp_path / "04_text_gen" / "text_lstm"
    text.mkdir(parents=True)
    samples = ["ROMEO: <what light> through yonder"]
    (text / "metrics.json").write_text(json.dumps({"metrics": {"samples": samples}, "history": []}))
    run_script("06_comparison/visualization_dashboard.py", f"--OUTPUTS={tmp_path}")
    out = out.parent                                                          # the full run's folder
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert page.count("data:image/png;base64,") >= 2         # the twin curves and the gate heatmap
    assert (out / "curves_02_sentiment.png").read_bytes()[:8] == PNG
    assert "sentiment &lt;RT&gt;" in page and "GRU is better" in page   # text is escaped, table rendered
    assert "ROMEO: &lt;what light&gt;" in page
    assert "门控可视化" in page and "Gate activations" in page             # bilingual headings
    groups = json.loads((out / "metrics.json").read_text())["metrics"]["figure_groups"]
    assert any("02_sentiment curves" in g for g in groups) and "01_basic_theory" in groups


@pytest.mark.parametrize("script,args,message", [
    ("06_comparison/model_comparison.py", ("--CASES=07_nope",), "unknown case"),
    ("06_comparison/performance_benchmark.py", ("--REPS=0",), "--REPS"),
    ("06_comparison/visualization_dashboard.py", ("--OUTPUTS=/no/such/folder",), "is not a folder"),
])
def test_bad_input_is_one_clear_line(script, args, message):
    r = run_script(script, *args, check=False, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and message in r.stderr


def test_holm_correction_and_the_split_are_in_the_table():
    """Five Welch tests at alpha 0.05 call something significant 23% of the time under no effect: the
    significance is Holm-corrected over the tasks; the character model's row says it is validation."""
    from conftest import ROOT

    from utils.script_utils import load_case_script
    comparison = load_case_script(ROOT / "06_comparison/model_comparison.py")
    rows = []
    for case, p in (("02_sentiment", 0.04), ("03_stock", 0.30), ("04_text_gen", 0.002),
                    ("04_pronounce", 0.02)):
        rows.append({"case": case, "task": case, "metric": comparison.TASKS[case]["metric"],
                     "split": comparison.TASKS[case].get("split", "test"), "better": "lower",
                     "welch": {"p": p, "note": ""}, "significant": p < 0.05, "note": "",
                     "winner": "GRU",
                     "lstm": {"mean": 1.0, "std": 0.1, "n": 3, "parameters": 2, "train_time_s": 1.0},
                     "gru": {"mean": 0.9, "std": 0.1, "n": 3, "parameters": 1, "train_time_s": 1.0}})
    comparison.holm_adjust(rows, 0.05)
    holm = {r["case"]: r["p_holm"] for r in rows}
    assert holm == pytest.approx({"04_text_gen": 0.008, "04_pronounce": 0.06, "02_sentiment": 0.08,
                                  "03_stock": 0.30})
    # 0.04 and 0.02 no longer pass
    assert [r["case"] for r in rows if r["significant"]] == ["04_text_gen"]
    table = comparison.table_rows(rows)
    assert (table[2]["metric"].startswith("validation val_bits_per_char")
            and table[0]["metric"].startswith("test "))
    notes = comparison.conclusions(rows, matched=False)
    assert any("Holm's correction for the 4 comparisons" in n for n in notes)
    assert any("validation split, which also chose the learning rate" in n for n in notes)


def test_model_comparison_runs_the_segmentation_task():
    """05_segment: the segmentation twins (their yardsticks skipped), F1 read from their metrics.json, and the
    GRU's matched hidden size solved from the vocabulary sizes the LSTM run recorded."""
    r = run_script("06_comparison/model_comparison.py", "--quick", "--CASES=05_segment", "--REUSE=false",
                   "--MATCH_PARAMS", timeout=600)
    row = r.metrics["metrics"]["rows"][0]
    assert row["case"] == "05_segment" and row["metric"] == "test_f1"
    assert all(0 <= v <= 1 for cell in ("lstm", "gru") for v in row[cell]["values"])
    assert row["lstm"]["parameters"] == row["matched"]["lstm_parameters"]

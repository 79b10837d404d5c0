"""06's gate explorer: small models of every kind (04 character models, 02 sentiment classifiers, 05
segmenter; LSTM and GRU; stacked, bidirectional, tied) saved as their scripts save them, the script run as a
learner runs it, then each page driven in headless Chromium: it loads with no console error and no network
request, typing updates it, and every number it shows equals torch.nn's (hidden and cell states, run step by
step, and the model's own outputs) and 01's cells' (the gates) to 1e-4. Bad inputs: empty text, unseen
characters, a text over the limit, a damaged or missing model file."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "06_comparison"))
import gate_explorer as ge  # noqa: E402
from headless_browser import HeadlessChromium, find_chromium  # noqa: E402

TOL = 1e-4
TRICKY = "Ｈｅｌｌｏ，世界！ It's <br/> GREAT!! ☃ 😀\n第二行“引号”里 the end"
no_chromium = pytest.mark.skipif(find_chromium() is None,
                                 reason="no Chromium installed: apt-get install -y chromium (CI installs it)")


# ----------------------------------------------------------------------------------------------------
# Small models of every kind, saved in their cases' own checkpoint formats
# ----------------------------------------------------------------------------------------------------
def save_models(outputs):
    import pretrained

    import char_model
    import segment_model
    import sentiment_model
    from utils.data_utils import Vocab
    from utils.training import checkpoint_tag, save_checkpoint

    torch.manual_seed(0)
    saved = {}

    def put(name, obj):
        spec = next(s for s in ge.SPECS if s[0] == name)
        path = outputs / spec[1] / spec[2] / "quick" / (spec[3] or "") / "model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(obj, path)
        saved[name] = path

    def bolder(model, scale=3.0):   # larger weights than the default init: gates that really saturate
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
        return model

    english = char_model.CharVocab.build("ROMEO: But soft, what light through yonder window breaks?\n")
    lm = bolder(char_model.CharRNN(len(english), cell="lstm", embed_dim=5, hidden_size=6, num_layers=2))
    put("text_lstm", {"state_dict": lm.state_dict(),
                      **char_model.char_checkpoint_extra(lm, english, "test", "shakespeare")})
    chinese = char_model.CharVocab.build("新华社北京电记者从国家统计局获悉,1997年我国“九五”计划。()《》\n")
    lm = bolder(char_model.CharRNN(len(chinese), cell="gru", impl="scratch", embed_dim=4, hidden_size=5,
                                   num_layers=1, tie_weights=True))      # trained with --IMPL=scratch
    put("text_gru_peoples_daily", {"state_dict": lm.state_dict(),
                                   **char_model.char_checkpoint_extra(lm, chinese, "test", "peoples_daily")})

    words = Vocab(["<pad>", "<unk>", "the", "acting", "is", "great", "!", "it's", "boring", "end"])
    clf = bolder(sentiment_model.SentimentClassifier(len(words), cell="lstm", embed_dim=4, hidden_size=3,
                                                     num_layers=2, bidirectional=True), 2.0).eval()
    put("sentiment_lstm", {"state_dict": clf.state_dict(),
                           **sentiment_model.sentiment_checkpoint_extra(clf, words, 8, "rotten_tomatoes")})
    chars = pretrained.CharTokens(["<pad>", "<unk>", *"房间很干净服务员也热情就是早餐太差了下次不会再来，,!"])
    pre = bolder(pretrained.PretrainedClassifier(len(chars), cell="gru", embed_dim=4, hidden_size=5,
                                                 num_layers=2), 2.0).eval()
    put("sentiment_gru_pretrained", {"state_dict": pre.state_dict(), "tokens": "chars",
                                     **sentiment_model.sentiment_checkpoint_extra(pre, chars, 30,
                                                                                  "chinese_reviews")})
    seg_chars = Vocab(["<pad>", "<unk>", *"中国人民银行宣布下调存贷款利率，这是近两年来的第五次降息。"])
    seg_bigrams = Vocab(["<pad>", "<unk>", "\x02中", "中国", "国人", "人民", "银行", "行宣", "息。",
                         "。\x03"])
    tagger = bolder(segment_model.SegmentTagger(len(seg_chars), len(seg_bigrams), cell="lstm", impl="torch",
                                                embed_dim=4, bigram_dim=3, hidden_size=4, num_layers=2,
                                                dropout=0.0, crf=True), 2.0).eval()
    tag = checkpoint_tag(segment_model.SEGMENT_CASE, "lstm")
    put("segment_lstm", {"state_dict": tagger.state_dict(), **tag,
                         "hparams": tagger.hparams, "chars": seg_chars.to_list(),
                         "bigrams": seg_bigrams.to_list()})
    return saved


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    """The small models, the explorer run on them (--quick), and where its pages are."""
    outputs = tmp_path_factory.mktemp("gate_explorer") / "outputs"
    saved = save_models(outputs)
    damaged = outputs / "02_sentiment" / "sentiment_gru" / "quick" / "chinese_reviews" / "model.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    proc = run_explorer(outputs, "--quick", "--MAX_CHARS=120")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(outputs=outputs, saved=saved, pages=outputs / "06_comparison" / "gate_explorer" / "quick",
                stdout=proc.stdout)


def run_explorer(outputs, *args):
    env = {**os.environ, "LSTM_GRU_OUTPUTS": str(outputs), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "06_comparison/gate_explorer.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------------------------------------------------
# The Python side: what torch.nn says, step by step
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def torch_states(cell: str, layers: list[list[dict]], x: torch.Tensor) -> list[list[dict]]:
    """[layer][direction] = {"h": (T, H), "c": (T, H)}: torch.nn.LSTMCell / GRUCell, one step at a time."""
    out, inp = [], x.double()
    for weights in layers:
        dirs = []
        for d, w in enumerate(weights):
            H = w["weight_hh"].shape[1]
            step = (torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell)(inp.shape[1], H).double()
            step.load_state_dict({k: v.double() for k, v in w.items()})
            h, c = torch.zeros(1, H, dtype=torch.float64), torch.zeros(1, H, dtype=torch.float64)
            hs, cs = (torch.zeros(len(inp), H, dtype=torch.float64) for _ in range(2))
            for t in (range(len(inp) - 1, -1, -1) if d == 1 else range(len(inp))):
                if cell == "lstm":
                    h, c = step(inp[t:t + 1], (h, c))
                    cs[t] = c[0]
                else:
                    h = step(inp[t:t + 1], h)
                hs[t] = h[0]
            dirs.append({"h": hs, "c": cs})
        out.append(dirs)
        inp = torch.cat([d["h"] for d in dirs], dim=1)
    return out


def reference(name: str, path, text: str, max_chars: int) -> dict:
    """Everything the page should show for `text`, from the case's own torch model."""
    spec = next(s for s in ge.SPECS if s[0] == name)
    model, reader, extra = ge.load_model(spec, path)
    model.eval()
    tokens, ids = ge.encode(reader, extra["vocab"], extra["unk"], text[:max_chars])
    if extra.get("max_len"):
        tokens, ids = tokens[:extra["max_len"]], ids[:extra["max_len"]]
    x = recurrent_inputs(spec[4], model, ids, tokens, extra)
    weights = ge.rnn_weights(model.rnn)
    ref = dict(tokens=tokens, ids=ids, states=torch_states(model.hparams["cell"], weights, x),
               gates=ge.trace(model.hparams["cell"], weights, x))
    T = len(ids)
    with torch.no_grad():
        if spec[4] == "charlm":
            ref["probs"] = torch.softmax(model(torch.tensor([ids]))[0][0].double(), -1)   # (T, V)
        elif spec[4] == "sentiment":
            ref["running"] = [float(torch.softmax(model(torch.tensor([ids[:L]]), torch.tensor([L])), 1)[0, 1])
                              for L in range(1, T + 1)]   # P(positive | the first L tokens)
        else:
            import segment_model
            chars, left, right, lengths, _ = segment_model.collate_sentences(
                [(*segment_model.encode_sentence("".join(tokens), extra_vocab(extra), extra_bigrams(extra)),
                  [0] * T)])
            emissions = model(chars, left, right, lengths)
            ref["emissions"] = emissions[0]
            ref["tags"] = "".join(segment_model.TAGS[k] for k in model.decode(emissions, chars != 0)[0])
    return ref


def recurrent_inputs(kind, model, ids, tokens, extra) -> torch.Tensor:
    """What the model's recurrent layer reads (T, I): its embedding rows; 05's segmenter encodes the left and
    right character pairs with its own encode_sentence and appends their embeddings, as its forward does."""
    if kind != "segment":
        return model.embedding(torch.tensor(ids)).float()
    import segment_model
    chars, left, right = (torch.tensor(v) for v in segment_model.encode_sentence(
        "".join(tokens), extra_vocab(extra), extra_bigrams(extra)))
    x = [model.char_embedding(chars)]
    if model.bigram_embedding is not None:
        x += [model.bigram_embedding(left), model.bigram_embedding(right)]
    return torch.cat(x, dim=1).float()


def extra_vocab(extra):
    from utils.data_utils import Vocab
    return Vocab(extra["vocab"])


def extra_bigrams(extra):
    from utils.data_utils import Vocab
    return Vocab(extra["bigrams"]) if extra.get("bigrams") else None


def max_diff(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max()) if a.numel() else 0.0


def test_the_python_trace_is_torch_nn_step_by_step():
    """gate_explorer.trace (01's cells, which the analysis uses) against torch.nn's cells, both cells,
    stacked and bidirectional, float32."""
    torch.manual_seed(1)
    for cell in ("lstm", "gru"):
        rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(4, 5, num_layers=2, bidirectional=True)
        x = torch.randn(9, 4)
        ours, theirs = ge.trace(cell, ge.rnn_weights(rnn), x), torch_states(cell, ge.rnn_weights(rnn), x)
        for layer, (a, b) in enumerate(zip(ours, theirs)):
            for d in range(2):
                assert max_diff(a[d]["h"], b[d]["h"]) < TOL, (cell, layer, d)
                if cell == "lstm":
                    assert max_diff(a[d]["c"], b[d]["c"]) < TOL, (cell, layer, d)
        with torch.no_grad():
            top, _ = rnn(x[:, None])
        assert max_diff(torch.cat([d["h"] for d in ours[-1]], 1), top[:, 0]) < TOL


# ----------------------------------------------------------------------------------------------------
# The script: pages, missing and damaged models, bad input
# ----------------------------------------------------------------------------------------------------
def test_the_script_makes_a_page_per_model_and_names_the_missing_and_the_damaged(explorer):
    out, pages = explorer["stdout"], explorer["pages"]
    for name in explorer["saved"]:
        assert (pages / f"{name}.html").is_file(), name
    assert (pages / "index.html").is_file()
    assert "missing: python 04_text_gen/text_gru.py" in out            # the command that makes a missing one
    assert "sentiment_gru_chinese" in out and "skipped:" in out and "damaged" in out   # one line, no crash
    metrics = json.loads((pages / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert set(metrics["pages"]) == set(explorer["saved"])
    units = metrics["interpretable_units"]["text_lstm"]
    assert units and all(abs(u["r"]) <= 1 and 0 <= u["chance"] <= 1 for u in units)
    sat = metrics["saturation"]["text_gru_peoples_daily"]
    assert {s["gate"] for s in sat} == {"r", "z"} and all(0 <= s["saturated_steps"] <= 1 for s in sat)
    for figure in ("interpretable_units.png", "gate_saturation.png"):
        assert (pages / figure).read_bytes()[:4] == b"\x89PNG"


def test_no_model_at_all_or_a_wrong_name_is_one_error_line(tmp_path):
    for args in ((), ("--MODELS=text_lstm,nonsense",)):
        proc = run_explorer(tmp_path / "empty", "--quick", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "python 04_text_gen/text_lstm.py" in proc.stdout or "nonsense" in proc.stderr


def test_the_saturation_statistic_counts_the_steps_below_and_above_the_threshold():
    gates = torch.tensor([[0.05, 0.5], [0.95, 0.5], [0.02, 0.99], [0.5, 0.91]])
    rows = ge.saturation([[{"r": gates, "z": 1 - gates}]], "gru", 0.1)
    r = next(s for s in rows if s["gate"] == "r")
    assert r["left"] == [0.5, 0.0] and r["right"] == [0.25, 0.5]


# ----------------------------------------------------------------------------------------------------
# The page in a real browser
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no Chromium installed: apt-get install -y chromium (CI installs it)")
    with HeadlessChromium(width=1200, height=900) as b:
        yield b


def show(browser, page, text):
    """Open the page, type `text` as a learner does, wait for the update -> the page's numbers."""
    browser.console_errors.clear()
    browser.requests.clear()
    browser.open(page.resolve().as_uri())
    browser.wait_for("window.GE && window.GE.done", timeout=30)
    browser.type_text("#text", text)
    browser.wait_for(f"window.GE.done && window.GE.text === {json.dumps(text)}", timeout=30)
    shown = browser.evaluate("GE.export()")
    browser.pump(0.1)
    assert browser.console_errors == [] and browser.network_requests() == []
    return shown


PAGES_AND_TEXTS = [("text_lstm", "ROMEO: But soft! what light through yonder window breaks? ☃"),
                   ("text_gru_peoples_daily", "新华社北京电，记者获悉：１９９７年“九五”计划（草案）☃"),
                   ("sentiment_lstm", "The acting is GREAT! it's boring <br/> the end, the end the end"),
                   ("sentiment_gru_pretrained", "  房间很干净，服务员也很热情！就是早餐太差了，不会再来 "),
                   ("segment_lstm", "中国人民银行宣布下调存贷款利率，这是近两年来的第五次降息。☃")]


@no_chromium
@pytest.mark.parametrize("name,text", PAGES_AND_TEXTS)
def test_the_page_shows_torch_numbers_for_a_typed_text(explorer, browser, name, text):
    shown = show(browser, explorer["pages"] / f"{name}.html", text)
    ref = reference(name, explorer["saved"][name], text, 120)
    assert shown["tokens"] == ref["tokens"] and shown["ids"] == ref["ids"]
    T = len(ref["ids"])
    for layer, (dirs, states, gates) in enumerate(zip(shown["layers"], ref["states"], ref["gates"])):
        for d, (page, torch_nn, cells) in enumerate(zip(dirs, states, gates)):
            where = f"{name} layer {layer} direction {d}"
            assert max_diff(torch.tensor(page["h"]).view(T, -1), torch_nn["h"]) < TOL, where
            if "c" in page:
                assert max_diff(torch.tensor(page["c"]).view(T, -1), torch_nn["c"]) < TOL, where
            for q in ("i", "f", "g", "o") if "c" in page else ("r", "z", "n"):
                assert max_diff(torch.tensor(page[q]).view(T, -1), cells[q]) < TOL, f"{where} gate {q}"
    outputs = shown["outputs"]
    if "probs" in ref:
        for t, top5 in enumerate(outputs["top5"]):
            expected = ref["probs"][t].clone()
            expected[0] = -1                                         # the unknown marker is never a guess
            assert max_diff([p for _, p in top5], expected.topk(5).values) < TOL      # the 5 likeliest ...
            assert max_diff([p for _, p in top5], ref["probs"][t][[k for k, _ in top5]]) < TOL   # ... by id
        for t in range(T - 1):
            assert abs(outputs["surprise"][t] + float(torch.log(ref["probs"][t, ref["ids"][t + 1]]))) < TOL
    if "running" in ref:
        assert max_diff(outputs["running"], ref["running"]) < TOL
        assert abs(outputs["probability"] - ref["running"][-1]) < TOL
    if "tags" in ref:
        assert max_diff(torch.tensor(outputs["emissions"]).view(T, 4), ref["emissions"]) < TOL
        assert outputs["tags"] == ref["tags"]
        assert "".join(outputs["words"]) == "".join(ref["tokens"])


@no_chromium
def test_the_page_says_what_it_did_with_empty_unknown_and_long_text(explorer, browser):
    page = explorer["pages"] / "text_lstm.html"
    empty = show(browser, page, "")
    assert empty["tokens"] == [] and any("Type some text" in n for n in empty["notes"])
    unseen = show(browser, page, "ROMEO ☃ xyz")
    assert "☃" in unseen["unknown"] and any("unknown" in n and "☃" in n for n in unseen["notes"])
    marked = browser.evaluate("document.querySelectorAll('.tok.unk').length")
    assert marked == sum(i == 0 for i in unseen["ids"]) >= 2
    long = show(browser, page, "ROMEO: " * 30)
    assert long["cut"] == 210 - 120 and len(long["tokens"]) == 120
    assert any("only the first 120 are read" in n for n in long["notes"])
    words = show(browser, explorer["pages"] / "sentiment_lstm.html", "the " * 20)
    assert words["modelCut"] == 12 and any("first 8 tokens" in n for n in words["notes"])
    nothing = show(browser, explorer["pages"] / "sentiment_lstm.html", "，。 ...")
    assert nothing["tokens"] == [] and any("No words found" in n for n in nothing["notes"])


@no_chromium
def test_picking_a_unit_and_following_a_link_keep_working(explorer, browser):
    page = explorer["pages"] / "text_lstm.html"
    show(browser, page, "ROMEO: But soft!")
    browser.evaluate("document.getElementById('unit').value = 3; document.getElementById('unit')"
                     ".dispatchEvent(new Event('input')); document.querySelector('.tok').dispatchEvent("
                     "new MouseEvent('mouseover', {bubbles: true}))")
    assert "unit 3" in browser.evaluate("document.getElementById('detail').textContent")
    links = browser.evaluate("Array.from(document.querySelectorAll('nav a'), a => a.getAttribute('href'))")
    assert set(links) == {f"{name}.html" for name in explorer["saved"]}


@no_chromium
def test_screenshots_and_the_speed_test_run_in_the_browser(explorer, tmp_path):
    import shutil
    outputs = tmp_path / "outputs"
    shutil.copytree(explorer["outputs"] / "04_text_gen", outputs / "04_text_gen")
    proc = run_explorer(outputs, "--quick", "--MODELS=text_lstm", "--SCREENSHOTS", "--SPEED_TEST")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pages = outputs / "06_comparison" / "gate_explorer" / "quick"
    assert (pages / "screenshots" / "gate_explorer_en.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((pages / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    timing = metrics["update_ms_200_characters"]["text_lstm"]
    assert 0 < timing["drawn_ms"] <= timing["all_outputs_ms"] and "200-character update" in proc.stdout

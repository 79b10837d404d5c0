"""See inside the gates: a page per trained model where you type any text and watch every gate, the cell
state and the hidden state of the units you pick, with the model's own output at every step (the
next-character top 5, the running sentiment probability, the B/M/E/S tag and the words it implies).

Finds the models under outputs/ (04's character models of Shakespeare and People's Daily, 02's sentiment
models, 05's segmenter; full runs first, else --quick ones; --IMPL=scratch models too), says which are missing
and the command that makes each, and writes one self-contained HTML file per model (weights inside, a few
hundred lines of JavaScript that compute (L1)-(L6) / (G1)-(G4) a third time: THEORY.md §17), plus index.html.
For each character model it also reads ANALYSIS_CHARS characters of validation text to find the units that
track simple features of the text (inside quotes, position in the line, inside a word, ...) and to measure
how often each gate saturates (Karpathy, Johnson & Fei-Fei 2015): interpretable_units.png and
gate_saturation.png.
Run: python 06_comparison/gate_explorer.py [--quick] [--MODELS=text_lstm,segment_gru] [--SCREENSHOTS]
Open outputs/06_comparison/gate_explorer/index.html by double-click (no server, no network).

看进门控内部：为每个训练好的模型生成一个网页。输入任意一段文字，就能看到你选中的隐藏单元在每一步的每个门、
细胞状态和隐藏状态，以及模型自己在每一步的输出（下一个字符的前 5 名、情感概率随阅读的变化、B/M/E/S
标签和它切出的词）。脚本在 outputs/ 里寻找训练好的模型（04 的莎士比亚和《人民日报》字符模型、02 的情感
模型、05 的分词器；先用完整训练的，没有就用 --quick 的；--IMPL=scratch 训练的也行），说明缺了哪些、用哪条
命令训练；每个模型写成一个自带权重的 HTML 文件（其中几百行 JavaScript 把 (L1)-(L6) / (G1)-(G4) 第三次
写出来：THEORY.md 第 17 节），再加一个 index.html。对每个字符模型，它还读 ANALYSIS_CHARS 个验证集字符，
找出跟踪文本简单特征（是否在引号里、在行中的位置、是否在词的中间……）的隐藏单元，并统计每个门饱和的频率。
运行：python 06_comparison/gate_explorer.py；双击打开 outputs/06_comparison/gate_explorer/index.html。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import base64
import functools
import html
import importlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from utils.data_utils import (
    load_peoples_daily,
    peoples_daily_split,
    peoples_daily_text,
    shakespeare_split,
    to_half_width,
    tokenize,
)
from utils.model_utils import load_theory_module
from utils.script_utils import (
    OUTPUTS_ROOT,
    REPO_ROOT,
    AtLeast,
    OneOf,
    Seed,
    UserError,
    atomic_write,
    output_dir,
    parse_config,
    run_main,
    save_metrics,
    shown_path,
)
from utils.visualization import plt, save_figure

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
MODELS: str = ""                  # which pages, by name (e.g. "text_lstm,segment_gru"); "" = all found
MAX_CHARS: AtLeast(1) = 400       # the page reads at most this many characters of your text (says so if cut)
ANALYSIS_CHARS: AtLeast(200) = 30_000  # validation characters read to find interpretable units and saturation
SATURATED: OneOf(0.1) = 0.1       # a gate is "saturated" below this or above 1 - this (Karpathy et al. 2015)
SCREENSHOTS: bool = False         # also photograph two pages in headless Chromium (for 06's README)
SPEED_TEST: bool = False          # also time, in headless Chromium, how long each page takes to update for a
                                  # 200-character text (median of 5 typings, compute + drawing)
SEED: Seed = 0                    # the untrained twin whose units are the chance baseline
DEVICE: OneOf("cpu") = "cpu"      # everything here is one pass over a few thousand characters

QUICK_SETTINGS = dict(ANALYSIS_CHARS=2_000)
FOUND_MARGIN = 0.2   # a hidden unit counts as found when its |r| beats the untrained twin's best by this much

# (page name, case folder, training script, its run's subfolder, what the model does, bilingual title,
#  the command line options that make the run)
SPECS = [
    ("text_lstm", "04_text_gen", "text_lstm", None, "charlm", "莎士比亚字符模型 LSTM · Shakespeare, LSTM",
     ""),
    ("text_gru", "04_text_gen", "text_gru", None, "charlm", "莎士比亚字符模型 GRU · Shakespeare, GRU", ""),
    ("text_lstm_peoples_daily", "04_text_gen", "text_lstm", "peoples_daily", "charlm",
     "《人民日报》字符模型 LSTM · People's Daily, LSTM", "--DATASET=peoples_daily"),
    ("text_gru_peoples_daily", "04_text_gen", "text_gru", "peoples_daily", "charlm",
     "《人民日报》字符模型 GRU · People's Daily, GRU", "--DATASET=peoples_daily"),
    ("sentiment_lstm", "02_sentiment", "sentiment_lstm", None, "sentiment",
     "英文影评情感 LSTM · Rotten Tomatoes sentiment, LSTM", ""),
    ("sentiment_gru", "02_sentiment", "sentiment_gru", None, "sentiment",
     "英文影评情感 GRU · Rotten Tomatoes sentiment, GRU", ""),
    ("sentiment_lstm_chinese", "02_sentiment", "sentiment_lstm", "chinese_reviews", "sentiment",
     "中文评论情感 LSTM · Chinese reviews, LSTM", "--DATASET=chinese_reviews"),
    ("sentiment_gru_chinese", "02_sentiment", "sentiment_gru", "chinese_reviews", "sentiment",
     "中文评论情感 GRU · Chinese reviews, GRU", "--DATASET=chinese_reviews"),
    ("sentiment_lstm_pretrained", "02_sentiment", "sentiment_lstm", "chinese_reviews_pretrained", "sentiment",
     "预训练后的中文评论情感 LSTM · Chinese reviews, pretrained LSTM",
     "--DATASET=chinese_reviews --PRETRAINED=outputs/04_text_gen/text_lstm/peoples_daily/model.pt"),
    ("sentiment_gru_pretrained", "02_sentiment", "sentiment_gru", "chinese_reviews_pretrained", "sentiment",
     "预训练后的中文评论情感 GRU · Chinese reviews, pretrained GRU",
     "--DATASET=chinese_reviews --PRETRAINED=outputs/04_text_gen/text_gru/peoples_daily/model.pt"),
    ("segment_lstm", "05_seq_classify", "segment_lstm", None, "segment",
     "中文分词 LSTM · Word segmentation, LSTM", ""),
    ("segment_gru", "05_seq_classify", "segment_gru", None, "segment",
     "中文分词 GRU · Word segmentation, GRU", ""),
]
EXAMPLES = {  # what each page shows first (the learner types over it)
    "shakespeare": "ROMEO:\nBut soft, what light through yonder window breaks?\n"
                   "It is the east, and Juliet is the sun.\n",
    "peoples_daily": "新华社北京1月1日电记者从国家统计局获悉,1997年我国国内生产总值达到74772亿元(人民币),"
                     "比上年增长8.8%。“九五”计划的第二年,经济运行平稳。",
    "english_review": "the acting is wooden and the plot is predictable , but the last twenty minutes are "
                      "a joy to watch .",
    "chinese_review": "房间很干净，服务员也很热情，就是早餐太差了，下次不会再来。",
    "segment": "中国人民银行宣布下调存贷款利率，这是近两年来的第五次降息。“九五”计划进展顺利。",
}
PAGE_FILES = ("gate_explorer.html", "gate_explorer.js")   # the page's template and its script, beside us


# ----------------------------------------------------------------------------------------------------
# 1. Finding and loading the trained models (each case's own loader checks its file)
# ----------------------------------------------------------------------------------------------------
def model_path(spec, quick: bool) -> Path:
    name, case, stem, sub, *_ = spec
    folder = OUTPUTS_ROOT / case / stem
    return (folder / "quick" if quick else folder) / (sub or "") / "model.pt"


def find_models(names: list[str]) -> tuple[list[tuple], list[str]]:
    """-> [(spec, path, is_quick)] for the models found (the full run's, else the --quick run's), and one
    line per missing model naming the command that makes it."""
    found, missing = [], []
    for spec in SPECS:
        if names and spec[0] not in names:
            continue
        full, quick = model_path(spec, False), model_path(spec, True)
        if full.is_file() or quick.is_file():
            found.append((spec, full if full.is_file() else quick, not full.is_file()))
        else:
            command = f"python {spec[1]}/{spec[2]}.py {spec[6]}".strip()
            missing.append(f"{spec[0]:26s} missing: {command}   (or with --quick, in seconds)")
    return found, missing


def case_module(folder: str, stem: str):
    """A case's module, imported by its plain name as its own scripts do (its folder on sys.path), so that its
    imports of its neighbours (`from pretrained import ...`) work."""
    if str(REPO_ROOT / folder) not in sys.path:
        sys.path.insert(1, str(REPO_ROOT / folder))
    return importlib.import_module(stem)


def load_model(spec, path: Path):
    """The case's own loader (it refuses a damaged or foreign file in one line) -> (model, reader, extra).
    reader: how text becomes token ids, mirrored by the page ("chars", "half_width", "review_chars",
    "words"); extra: the vocabulary and what the page needs beyond the recurrent weights."""
    kind = spec[4]
    if kind == "charlm":
        char_model = case_module("04_text_gen", "char_model")
        model, vocab, ckpt = char_model.load_char_model(path, cell=None, script="gate_explorer.py")
        reader = "half_width" if ckpt.get("dataset") == "peoples_daily" else "chars"
        return model, reader, {"vocab": vocab.itos, "unk": 0, "dataset": ckpt.get("dataset") or "shakespeare"}
    if kind == "sentiment":
        sentiment_model = case_module("02_sentiment", "sentiment_model")
        model, vocab, ckpt = sentiment_model.load_sentiment_model(path, script="gate_explorer.py")
        if ckpt["hparams"].get("word_channels"):
            raise UserError(f"{shown_path(path)} is an NB_CHANNEL experiment, which this page does not show; "
                            f"retrain without --NB_CHANNEL.")
        members = int(ckpt.get("members", 1))
        model = model.members[0] if members > 1 else model    # an ensemble: its first member is shown
        reader = "review_chars" if ckpt.get("tokens") == "chars" else "words"
        return model, reader, {"vocab": vocab.itos, "unk": 1, "max_len": int(ckpt["max_len"]),
                               "members": members, "dataset": ckpt.get("dataset", "")}
    segment_model = case_module("05_seq_classify", "segment_model")
    model, chars, bigram_vocab, ckpt = segment_model.load_segmenter(path, script="gate_explorer.py")
    return model, "chars", {"vocab": chars.itos, "unk": 1,
                            "bigrams": bigram_vocab.itos if bigram_vocab else None,
                            "edges": [segment_model.EDGE_LEFT, segment_model.EDGE_RIGHT]}


def encode(reader: str, vocab: list[str], unk: int, text: str) -> tuple[list[str], list[int]]:
    """The Python side of the page's reader: text -> (tokens as shown, ids), as each case encodes."""
    stoi = {t: i for i, t in enumerate(vocab)}
    if reader == "words":
        tokens = tokenize(text)                                  # 02's words (utils.data_utils.tokenize)
    elif reader == "review_chars":
        tokens = list(to_half_width(text.strip()))
    else:
        tokens = list(to_half_width(text) if reader == "half_width" else text)
    return tokens, [stoi.get(t, unk) for t in tokens]   # unk: 0 in 04's CharVocab, 1 in 02's and 05's Vocab


# ----------------------------------------------------------------------------------------------------
# 2. The recurrent layers, step by step, with 01's hand-written cells (the analysis's source of numbers)
# ----------------------------------------------------------------------------------------------------
def rnn_weights(rnn: torch.nn.Module) -> list[list[dict]]:
    """nn.LSTM / nn.GRU / 01's scratch cells -> [layer][direction] = {weight_ih, weight_hh, bias_ih, bias_hh}
    (both name layer k's reverse direction *_l{k}_reverse)."""
    sd = rnn.state_dict()
    layers = []
    for k in range(rnn.num_layers):
        dirs = ("", "_reverse") if rnn.bidirectional else ("",)
        layers.append([{w: sd[f"{w}_l{k}{d}"].detach().float() for w in
                        ("weight_ih", "weight_hh", "bias_ih", "bias_hh")} for d in dirs])
    return layers


@torch.no_grad()
def trace(cell: str, layers: list[list[dict]], x: torch.Tensor) -> list[list[dict]]:
    """x: (T, I) float -> [layer][direction] = {gate or state: (T, H)} over one text from zero states, by
    01's lstm_sequence_forward / gru_sequence_forward: LSTM i (L1), f (L2), g (L3), o (L4), c (L5), h (L6);
    GRU r (G1), z (G2), n (G3), h (G4). A reverse direction's row t is its state after reading t..T-1."""
    theory = load_theory_module("lstm_from_scratch" if cell == "lstm" else "gru_from_scratch")
    out, inp = [], x[:, None, :]                                       # (T, 1, I): a batch of one
    for weights in layers:
        dirs = []
        for d, w in enumerate(weights):
            H = w["weight_hh"].shape[1]
            h0 = inp.new_zeros(1, H)
            if cell == "lstm":
                h, _, _, (gates, C, _) = theory.lstm_sequence_forward(
                    inp, h0, h0, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"], reverse=d == 1)
                i, f, g, o = gates[:, 0].split(H, dim=1)
                dirs.append(dict(i=i, f=f, g=g, o=o, c=C[:, 0], h=h[:, 0]))
            else:
                h, _, (gates, _, _) = theory.gru_sequence_forward(
                    inp, h0, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"], reverse=d == 1)
                r, z, n = gates[:, 0].split(H, dim=1)
                dirs.append(dict(r=r, z=z, n=n, h=h[:, 0]))
        out.append(dirs)
        inp = torch.cat([d["h"] for d in dirs], dim=1)[:, None, :]      # the next layer reads both directions
    return out


# ----------------------------------------------------------------------------------------------------
# 3. Interpretable units and gate saturation (character models, on their validation text)
# ----------------------------------------------------------------------------------------------------
def text_features(text: str, dataset: str) -> dict[str, np.ndarray]:
    """Simple facts about each position of the text, the things Karpathy et al. found units tracking.
    -> {feature name: (N,) float}, bilingual names. People's Daily's "inside a word" comes from its own
    B/M/E/S tags (a character tagged B or M: the word goes on after it)."""
    n = len(text)
    since_break, inside = np.zeros(n), {}
    pairs = {"shakespeare": {}, "peoples_daily": {"引号内 inside “quotes”": "“”",
                                                  "书名号内 inside 《titles》": "《》",
                                                  "括号内 inside (brackets)": "()"}}[dataset]
    breaks = "\n" if dataset == "shakespeare" else "。!?\n"
    count = 0
    for t, ch in enumerate(text):
        since_break[t] = count
        count = 0 if ch in breaks else count + 1
    for name, (open_, close) in pairs.items():
        depth, values = 0, np.zeros(n)
        for t, ch in enumerate(text):
            depth = 1 if ch == open_ else 0 if ch == close else depth
            values[t] = depth
        inside[name] = values
    chars = np.array(list(text))
    punct = np.isin(chars, list(",.;:!?、。"))   # People's Daily's text is half width, as the model reads it
    if dataset == "shakespeare":
        lines = text.split("\n")
        speaker = np.concatenate([np.full(len(line) + 1, float(line.endswith(":"))) for line in lines])[:n]
        return {"行内位置 position in the line": since_break,
                "字母 inside a word": np.char.isalpha(chars) * 1.0,
                "标点 punctuation": punct * 1.0, "说话人名字那一行 speaker's name line": speaker}
    tags = peoples_daily_tags(len(text))
    return {"句内位置 position in the sentence": since_break,
            "词没完 inside a word (B/M)": np.isin(tags, ["B", "M"]) * 1.0,
            "标点 punctuation": punct * 1.0, "数字 digit": np.char.isdigit(chars) * 1.0, **inside}


@functools.lru_cache(maxsize=None)   # read once for both People's Daily models
def peoples_daily_tags(n: int) -> np.ndarray:
    """The B/M/E/S tag of each of the first n characters of peoples_daily_text()['val'] ('\n' gets 'S')."""
    lines = peoples_daily_split(load_peoples_daily())["val"]
    tags = "".join(t + "S" for _, t in lines)    # a newline after each line, as peoples_daily_text joins them
    return np.array(list(tags[:n]))


@functools.lru_cache(maxsize=None)
def validation_text(dataset: str, n: int) -> str:
    return (shakespeare_split() if dataset == "shakespeare" else peoples_daily_text())["val"][:n]


def correlations(acts: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """acts: (N, U), feature: (N,) -> Pearson r of every unit with the feature: (U,)."""
    a = acts - acts.mean(0)
    f = feature - feature.mean()
    denom = np.sqrt((a * a).sum(0) * (f * f).sum()) + 1e-12
    return (a * f[:, None]).sum(0) / denom


def best_units(traced, untrained, features, text, cell) -> list[dict]:
    """For each feature, the unit (any layer; LSTM: its cell state c or hidden state h; GRU: h) whose
    activation correlates best with it, beside the best of an untrained twin (the chance level of picking
    the best of hundreds of units), and a window of text where the feature changes (page, figure)."""
    rows = []
    for name, feature in features.items():
        if feature.std() == 0:
            continue
        best, chance = None, 0.0
        for layer, (dirs, dirs0) in enumerate(zip(traced, untrained)):
            for quantity in ("c", "h") if cell == "lstm" else ("h",):
                r = correlations(dirs[0][quantity].numpy(), feature)
                r0 = correlations(dirs0[0][quantity].numpy(), feature)
                chance = max(chance, float(np.abs(r0).max()))
                k = int(np.abs(r).argmax())
                if best is None or abs(r[k]) > abs(best["r"]):
                    best = dict(feature=name, layer=layer, quantity=quantity, unit=k, r=round(float(r[k]), 3))
        changes = np.flatnonzero(np.diff(feature) != 0)
        start = max(0, int(changes[min(len(changes) - 1, 3)]) - 40) if len(changes) else 0
        acts = traced[best["layer"]][0][best["quantity"]][start:start + 120, best["unit"]]
        best.update(chance=round(chance, 3), found=abs(best["r"]) >= chance + FOUND_MARGIN,
                    example=text[start:start + 120],
                    values=[round(float(v), 3) for v in acts])
        rows.append(best)
    return rows


def saturation(traced, cell: str, level: float) -> list[dict]:
    """Per layer and gate, each unit's share of steps with the gate below `level` (left-saturated: closed) and
    above 1 - level (right-saturated: open), the statistic of Karpathy et al. 2015, §4.3."""
    rows = []
    for layer, dirs in enumerate(traced):
        for gate in ("i", "f", "o") if cell == "lstm" else ("r", "z"):
            values = dirs[0][gate].numpy()
            rows.append(dict(layer=layer, gate=gate, left=(values < level).mean(0).round(4).tolist(),
                             right=(values > 1 - level).mean(0).round(4).tolist()))
    return rows


def analyse(spec, model, extra: dict, chars: int, level: float, seed: int) -> dict:
    """Interpretable units and saturation of a character model over `chars` validation characters."""
    text = validation_text(extra["dataset"], chars)
    reader = "half_width" if extra["dataset"] == "peoples_daily" else "chars"
    tokens, ids = encode(reader, extra["vocab"], extra["unk"], text)
    cell = model.hparams["cell"]
    with torch.no_grad():
        traced = trace(cell, rnn_weights(model.rnn), model.embedding(torch.tensor(ids)).float())
        torch.manual_seed(seed)
        twin = type(model)(**{**model.hparams, "impl": "torch"})          # same shape, never trained
        untrained = trace(cell, rnn_weights(twin.rnn), twin.embedding(torch.tensor(ids)).float())
    features = text_features(text, extra["dataset"])
    return {"units": best_units(traced, untrained, features, text, cell),
            "saturation": saturation(traced, cell, level), "chars": len(text), "cell": cell}


# ----------------------------------------------------------------------------------------------------
# 4. The pages: weights as one base64 float32 block, the model's description as JSON, the template around
# ----------------------------------------------------------------------------------------------------
class WeightBlock:
    """Every array the page needs, appended to one float32 buffer; a tensor met twice (tied weights) is
    stored once. add() -> {"offset": index of its first float, "shape": [...]} for the page."""

    def __init__(self):
        self.parts, self.size, self.seen = [], 0, {}

    def add(self, tensor: torch.Tensor) -> dict:
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in self.seen:
            array = tensor.detach().float().contiguous().numpy().astype("<f4").ravel()
            self.seen[key] = {"offset": self.size, "shape": list(tensor.shape)}
            self.parts.append(array)
            self.size += array.size
        return self.seen[key]

    def base64(self) -> str:
        return base64.b64encode(np.concatenate(self.parts).tobytes() if self.parts else b"").decode("ascii")


def describe(spec, path: Path, quick: bool, model, reader: str, extra: dict, block: WeightBlock,
             analysis: dict | None) -> dict:
    """What the page needs to know about one model (JSON), its arrays going into `block`."""
    name, case, stem, sub, kind, title, options = spec
    hp = model.hparams
    rnn = model.rnn
    layers = [[{k: block.add(v) for k, v in d.items()} for d in dirs] for dirs in rnn_weights(rnn)]
    page = dict(name=name, title=title, kind=kind, cell=hp["cell"], impl=hp["impl"], path=shown_path(path),
                quick=quick, command=f"python {case}/{stem}.py {options}".strip(), reader=reader,
                vocab=extra["vocab"], unk=extra["unk"], hidden=rnn.hidden_size, layers=layers,
                bidirectional=bool(rnn.bidirectional), max_chars=MAX_CHARS, analysis=analysis)
    if kind == "charlm":
        page.update(embedding=block.add(model.embedding.weight), head_w=block.add(model.head.weight),
                    head_b=block.add(model.head.bias), proj_w=None, proj_b=None,
                    example=EXAMPLES[extra["dataset"] if extra["dataset"] in EXAMPLES else "shakespeare"])
        if hp.get("tie_weights"):
            page.update(proj_w=block.add(model.proj.weight), proj_b=block.add(model.proj.bias))
    elif kind == "sentiment":
        chinese = reader == "review_chars" or extra.get("dataset") == "chinese_reviews"
        page.update(embedding=block.add(model.embedding.weight), head_w=block.add(model.head.weight),
                    head_b=block.add(model.head.bias), max_len=extra["max_len"], members=extra["members"],
                    example=EXAMPLES["chinese_review" if chinese else "english_review"])
    else:
        A = model.rule_transitions + (model.crf.transitions if model.crf is not None else 0)
        start = model.rule_start + (model.crf.start if model.crf is not None else 0)
        end = model.rule_end + (model.crf.end if model.crf is not None else 0)
        page.update(embedding=block.add(model.char_embedding.weight),
                    bigram_embedding=(block.add(model.bigram_embedding.weight) if model.bigram_embedding
                                      else None),
                    bigrams=extra["bigrams"], edges=extra["edges"], head_w=block.add(model.head.weight),
                    head_b=block.add(model.head.bias), transitions=block.add(A), start=block.add(start),
                    end=block.add(end), example=EXAMPLES["segment"])
    return page


def render_page(page: dict, block: WeightBlock, siblings: list[dict]) -> str:
    """The template with the model's JSON, its weights and the links to the other pages filled in."""
    here = Path(__file__).parent
    template, script = ((here / f).read_text(encoding="utf-8") for f in PAGE_FILES)
    safe_json = json.dumps(page, ensure_ascii=False).replace("</", "<\\/")   # never ends the <script> early
    nav = json.dumps(siblings, ensure_ascii=False).replace("</", "<\\/")
    return (template.replace("__TITLE__", html.escape(page["title"]))
            .replace("/*__MODEL__*/", safe_json).replace("/*__PAGES__*/", nav)
            .replace("__WEIGHTS__", block.base64()).replace("/*__SCRIPT__*/", script))


def index_page(pages: list[dict], missing: list[str], skipped: list[str], figures: list[str]) -> str:
    """index.html: a link to each model's page, what is missing and how to make it, the two figures."""
    items = "\n".join(f'<li><a href="{html.escape(p["file"])}">{html.escape(p["title"])}</a>'
                      f'{" (--quick 模型 · a --quick model)" if p["quick"] else ""}</li>' for p in pages)
    absent = "\n".join(f"<li><code>{html.escape(line)}</code></li>" for line in missing + skipped)
    images = "\n".join(f'<p><img src="{html.escape(f)}" style="max-width:100%"></p>' for f in figures)
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<title>门控探查器 · Gate explorer</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.5}}
code{{font-size:90%}}</style>
</head><body><h1>门控探查器 · Gate explorer</h1>
<p>点开一个模型，输入任意文字，看它的每个门怎样响应。<br>
Open a model, type any text, watch each of its gates respond.</p>
<ul>{items}</ul>
{f"<h2>还没有的模型 · Models not found</h2><ul>{absent}</ul>" if absent else ""}
{images}
</body></html>"""


def draw_units(analyses: dict, path: Path, per_model: int = 3) -> Path | None:
    """Karpathy-style coloured text: for each character model, its `per_model` clearest hidden units (|r| the
    furthest above the untrained twin's best), the example window coloured by the unit (blue < 0 < red)."""
    rows = [(name, row) for name, a in analyses.items()
            for row in sorted(a["units"], key=lambda u: abs(u["r"]) - u["chance"], reverse=True)[:per_model]]
    if not rows:
        return None
    width = 60
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 0.95 * len(rows) + 0.4), squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    for ax, (name, row) in zip(axes[:, 0], rows):
        ax.set_axis_off()
        ax.set_xlim(0, width)
        ax.set_ylim(-2.2, 1.1)
        values = np.array(row["values"])
        scale = max(float(np.abs(values).max()), 1e-6)
        for k, (ch, v) in enumerate(zip(row["example"][:2 * width], values[:2 * width])):
            x, y = k % width, -(k // width)
            ax.add_patch(plt.Rectangle((x, y - 0.45), 1, 0.9, color=cmap(0.5 + 0.5 * v / scale), lw=0))
            ax.text(x + 0.5, y, "↵" if ch == "\n" else ch, ha="center", va="center", fontsize=8)
        ax.set_title(f"{name} · {row['feature']} · layer {row['layer']} {row['quantity']}[{row['unit']}]: "
                     f"r = {row['r']:+.2f}（未训练的同形模型 untrained twin: {row['chance']:.2f}）",
                     fontsize=9, loc="left")
    return save_figure(fig, path)


def draw_saturation(analyses: dict, level: float, path: Path) -> Path | None:
    """Karpathy et al.'s Figure: each dot a unit, x = share of steps its gate is below `level` (closed),
    y = share above 1 - level (open); one row per model, one column per gate, colour = layer."""
    if not analyses:
        return None
    names = list(analyses)
    fig, axes = plt.subplots(len(names), 3, figsize=(10, 3.1 * len(names)), squeeze=False)
    gate_names = {"i": "输入门 input i", "f": "遗忘门 forget f", "o": "输出门 output o",
                  "r": "重置门 reset r", "z": "更新门 update z"}
    for row_axes, name in zip(axes, names):
        present = {s["gate"] for s in analyses[name]["saturation"]}
        gates = [g for g in ("i", "f", "o", "r", "z") if g in present]
        for ax in row_axes[len(gates):]:
            ax.set_axis_off()
        for ax, gate in zip(row_axes, gates):
            for s in (s for s in analyses[name]["saturation"] if s["gate"] == gate):
                ax.scatter(s["left"], s["right"], s=6, alpha=0.6,
                           label=f"第 {s['layer'] + 1} 层 layer {s['layer'] + 1}")
            ax.plot([0, 1], [1, 0], color="0.8", lw=0.8)
            ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=f"{name}: {gate_names[gate]}",
                   xlabel=f"关着的步数比例 share < {level}", ylabel=f"开着的步数比例 share > {1 - level:.1f}")
            ax.title.set_fontsize(9)
            ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


def in_browser(out: Path, pages: list[dict], screenshots: bool, speed: bool) -> tuple[list[Path], dict]:
    """In headless Chromium: photograph a Chinese and an English page (06's README shows them), and/or time
    each page's update for a 200-character text (median of 5 typings; computing + drawing, in ms)."""
    from headless_browser import HeadlessChromium, find_chromium
    if find_chromium() is None:
        raise UserError("--SCREENSHOTS and --SPEED_TEST need Chromium: apt-get install -y chromium.")
    import pylopdf_fonts_zh_cn  # Noto Sans SC, the font of every plot, for Chinese in the screenshots
    fonts = [Path(pylopdf_fonts_zh_cn.__file__).parent]
    names = [p["name"] for p in pages]
    wanted = [("zh", ["text_lstm_peoples_daily", "segment_lstm", "sentiment_lstm_pretrained"]),
              ("en", ["text_lstm", "text_gru", "sentiment_lstm"])] if screenshots else []
    shots, timings = [], {}
    with HeadlessChromium(width=1280, height=1000, font_dirs=fonts) as browser:
        for lang, options in wanted:
            name = next((n for n in options if n in names), None)
            if name is None:
                continue
            browser.open((out / f"{name}.html").resolve().as_uri())
            browser.wait_for("window.GE && window.GE.done", timeout=60)
            shots.append(out / "screenshots" / f"gate_explorer_{lang}.png")
            shots[-1].parent.mkdir(exist_ok=True)
            browser.screenshot(shots[-1])
        for name in names if speed else []:
            browser.open((out / f"{name}.html").resolve().as_uri())
            browser.wait_for("window.GE && window.GE.done", timeout=60)
            example = browser.evaluate("GE.model.example")
            first, done = [], []
            for k in range(5):                       # a different 200-character text each time
                text = ((example + " ") * 8)[k:k + 200]
                browser.type_text("#text", text)
                browser.wait_for(f"GE.done && GE.text === {json.dumps(text)}", timeout=120)
                first.append(browser.evaluate("GE.result.ms + GE.result.drawMs"))
                done.append(browser.evaluate("GE.result.totalMs"))
            timings[name] = {"drawn_ms": round(float(np.median(first)), 1),
                             "all_outputs_ms": round(float(np.median(done)), 1)}
            print(f"{name:26s} a 200-character update: drawn in {timings[name]['drawn_ms']:.0f} ms, every "
                  f"output in {timings[name]['all_outputs_ms']:.0f} ms (medians of 5)")
    return shots, timings


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    names = [n.strip() for n in MODELS.split(",") if n.strip()]
    unknown = [n for n in names if n not in {s[0] for s in SPECS}]
    if unknown:
        raise UserError(f"--MODELS: no model called {', '.join(unknown)}; choose from "
                        f"{', '.join(s[0] for s in SPECS)}.")
    found, missing = find_models(names)                     # full runs first, else --quick runs
    for line in missing:
        print(line)
    if not found:
        raise UserError("no trained model found under outputs/: run one of the commands above first, e.g. "
                        "python 04_text_gen/text_lstm.py --quick (seconds).")
    out = output_dir(__file__, quick=cfg["QUICK"])
    loaded, skipped = [], []
    for spec, path, quick in found:
        try:
            loaded.append((spec, path, quick, *load_model(spec, path)))
        except UserError as e:                  # a damaged or foreign file: one line, the rest go on
            skipped.append(f"{spec[0]:26s} skipped: {e}")
            print(skipped[-1])
    if not loaded:
        raise UserError("every model file found could not be read (above); train them again.")
    siblings = [{"name": s[0], "title": s[5], "file": f"{s[0]}.html", "quick": q} for s, _, q, *_ in loaded]
    analyses, sizes = {}, {}
    for spec, path, quick, model, reader, extra in loaded:
        analysis = None
        if spec[4] == "charlm":
            t1 = time.time()
            analysis = analyse(spec, model, extra, ANALYSIS_CHARS, SATURATED, SEED)
            analyses[spec[0]] = analysis
            print(f"{spec[0]}: interpretable units and saturation over {analysis['chars']:,} validation "
                  f"characters ({time.time() - t1:.1f} s)")
        block = WeightBlock()
        page = describe(spec, path, quick, model, reader, extra, block, analysis)
        text = render_page(page, block, siblings)
        target = out / f"{spec[0]}.html"
        atomic_write(target, lambda p, text=text: p.write_text(text, encoding="utf-8"))
        sizes[spec[0]] = target.stat().st_size
        print(f"{spec[0]:26s} {shown_path(path)}{' (--quick model)' if quick else ''} -> "
              f"{shown_path(target)} ({sizes[spec[0]] / 1e6:.1f} MB)")
    figures = [p.name for p in (draw_units(analyses, out / "interpretable_units.png"),
                                draw_saturation(analyses, SATURATED, out / "gate_saturation.png")) if p]
    index = index_page(siblings, missing, skipped, figures)
    atomic_write(out / "index.html", lambda p: p.write_text(index, encoding="utf-8"))
    shots, timings = [], {}
    if SCREENSHOTS or SPEED_TEST:
        shots, timings = in_browser(out, siblings, SCREENSHOTS, SPEED_TEST)
    save_metrics(out, config=cfg, start_time=t0, metrics={
        "pages": {s["name"]: {"file": s["file"], "quick": s["quick"], "bytes": sizes[s["name"]]}
                  for s in siblings},
        "missing": missing, "skipped": skipped, "screenshots": [p.name for p in shots],
        "update_ms_200_characters": timings,
        "interpretable_units": {n: [{k: v for k, v in row.items() if k != "values"} for row in a["units"]]
                                for n, a in analyses.items()},
        "saturation": {n: saturation_summary(a["saturation"]) for n, a in analyses.items()}})
    print(f"open {shown_path(out / 'index.html')} in a browser (double-click; it needs no network)")


def saturation_summary(rows: list[dict]) -> list[dict]:
    """Per layer and gate: the share of units that are closed (left-saturated) or open (right-saturated) on
    more than half of the steps, and on more than 90% of them, and the mean share of saturated steps."""
    return [dict(layer=s["layer"], gate=s["gate"],
                 units_mostly_closed=round(float(np.mean(np.array(s["left"]) > 0.5)), 3),
                 units_mostly_open=round(float(np.mean(np.array(s["right"]) > 0.5)), 3),
                 units_always_closed=round(float(np.mean(np.array(s["left"]) > 0.9)), 3),
                 units_always_open=round(float(np.mean(np.array(s["right"]) > 0.9)), 3),
                 saturated_steps=round(float(np.mean(np.array(s["left"]) + np.array(s["right"]))), 3))
            for s in rows]


if __name__ == "__main__":
    run_main(main)

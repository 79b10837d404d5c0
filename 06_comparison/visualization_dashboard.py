"""One offline HTML dashboard (images embedded as base64, no external JS/CSS) plus a PNG overview of
everything under outputs/: runs still training (from their progress.jsonl: "training: epoch 7 of 20 ..." and
the curves so far), LSTM vs GRU training curves per case, the comparison table, speed/memory benchmarks,
the hyperparameter study, gate heatmaps (01), forecasts (03), generated text (04), confusion matrices
(02, 05). Missing results are listed as "not run yet: python <script>".
Run: python 06_comparison/visualization_dashboard.py [--OUTPUTS=folder]
Open outputs/06_comparison/visualization_dashboard/dashboard.html in any browser. Theory: THEORY.md.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import base64
import html
import json
import math
import time
from pathlib import Path

from utils.script_utils import (
    OUTPUTS_ROOT,
    REPO_ROOT,
    AtLeast,
    OneOf,
    Seed,
    UserError,
    atomic_write,
    parse_config,
    run_main,
    save_metrics,
)
from utils.visualization import COLORS, metric_label, plt, save_figure

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
OUTPUTS: str = ""                 # results folder to read ("" = this repo's outputs/);
                                  # the dashboard goes inside it
MAX_IMAGES_PER_SECTION: AtLeast(1) = 12  # at most this many figures per section (the HTML embeds every one)
OVERVIEW_COLUMNS: AtLeast(1) = 3  # columns of the PNG overview grid
SEED: Seed = 0                    # (nothing random here; kept for the house convention)
DEVICE: OneOf("cpu") = "cpu"      # (plots only: no model runs)

QUICK_SETTINGS = dict(MAX_IMAGES_PER_SECTION=4)

# (case folder, bilingual heading, what to look for in its figures first)
SECTIONS = [
    ("01_basic_theory", "门控可视化 · Gate activations (01)", ("gate", "heatmap")),
    ("02_sentiment", "情感分析 · Sentiment analysis (02)", ("confusion", "curve")),
    ("03_stock", "股价预测 · Stock forecast (03)", ("forecast", "prediction", "price")),
    ("04_text_gen", "文本生成 · Text generation (04)", ("curve", "bpc", "loss")),
    ("05_seq_classify", "序列分类与中文分词 · Sequence classification and word segmentation (05)",
     ("confusion", "curve")),
]
PREFERRED_METRICS = ("val_accuracy", "val_bits_per_char", "val_bpc", "val_perplexity", "val_f1",
                     "val_macro_f1", "val_rmse", "val_mae", "val_wer")


# ----------------------------------------------------------------------------------------------------
# Reading what the other scripts left under outputs/
# ----------------------------------------------------------------------------------------------------
def full_runs(paths) -> list[Path]:
    """The paths that belong to full runs: a --quick smoke test writes under <script>/quick/, never shown."""
    return [p for p in paths if "quick" not in p.parts]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def case_scripts(case: str) -> list[Path]:
    """The runnable scripts of a case folder (what a learner would run to fill its outputs)."""
    folder = REPO_ROOT / case
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")) if folder.is_dir() else []


def run_record(root: Path, case: str, stem: str) -> dict | None:
    """outputs/<case>/<stem>/metrics.json; if it has no history, the first sub-folder's one that does
    (05 writes one per dataset)."""
    folder = root / case / stem
    top = read_json(folder / "metrics.json")
    if top and top.get("history"):
        return top
    for path in full_runs(sorted(folder.glob("*/metrics.json"))):
        sub = read_json(path)
        if sub and sub.get("history"):
            return {**(top or {}), **sub}
    return top


def figures(folder: Path, prefer: tuple, limit: int, skip: tuple = ()) -> list[Path]:
    """PNG files under `folder`, the ones whose name contains a preferred word first, then the run's own
    before a sub-folder's (02's runs on other datasets, e.g. chinese_reviews/, sit below the default run's).
    """
    found = ([p for p in full_runs(sorted(folder.rglob("*.png"))) if not any(s in p.name for s in skip)]
             if folder.is_dir() else [])
    found.sort(key=lambda p: (not any(w in p.name.lower() for w in prefer), len(p.parts), str(p)))
    return found[:limit]


def text_samples(root: Path) -> list[tuple[str, str]]:
    """Generated text from 04: strings under a key containing 'sample' in metrics.json, or *.txt files."""
    out = []
    for path in full_runs(sorted((root / "04_text_gen").rglob("metrics.json"))):
        record = read_json(path) or {}
        for key, value in _walk(record.get("metrics", {})):
            if "sample" in key.lower() or "generat" in key.lower():
                texts = value if isinstance(value, list) else [value]
                for t in texts:
                    if isinstance(t, dict):
                        t = t.get("text") or t.get("sample") or json.dumps(t, ensure_ascii=False)
                    if isinstance(t, str) and len(t) > 20:
                        out.append((f"{path.parent.name} · {key}", t))
    for path in full_runs(sorted((root / "04_text_gen").rglob("*.txt"))):
        out.append((f"{path.parent.name} · {path.name}",
                    path.read_text(encoding="utf-8", errors="replace")[:3000]))
    return out[:8]


def _walk(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from _walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v


# ----------------------------------------------------------------------------------------------------
# Runs still training: every training loop appends a row per epoch to its folder's progress.jsonl
# ----------------------------------------------------------------------------------------------------
STALE_AFTER_S = 30 * 60   # a run silent for this long is reported as possibly killed


def read_progress(path: Path) -> list[dict]:
    """The rows of a progress.jsonl; a line being written right now (half a line) is skipped."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def progress_status(path: Path, now: float | None = None) -> dict:
    """What a progress.jsonl says about its run: state 'training', 'stopped' or 'finished', and a line
    such as "training: epoch 7 of 20 (member 2 (seed 7)), train_loss 0.4102, val_accuracy 0.7812".

    Decided from the files' contents, not their modification times (which a copy of outputs/ from another
    machine renews): finished = the folder's metrics.json was written after this progress.jsonl's run
    started (its 'finished_unix' against the start row's 'unix'); the last update = the start plus the
    last row's elapsed seconds. Files written before those fields existed fall back to the file times."""
    now = time.time() if now is None else now
    rows = read_progress(path)
    last = rows[-1] if rows else {}
    start = next((r for r in rows if r.get("event") == "start"), {})
    metrics_path = path.parent / "metrics.json"
    record = read_json(metrics_path) if metrics_path.is_file() else None
    if "unix" in start:
        changed = start["unix"] + max((r.get("elapsed_s", 0) for r in rows), default=0)
        finished = record is not None and record.get("finished_unix", -math.inf) >= start["unix"]
    else:
        changed = path.stat().st_mtime
        finished = record is not None and metrics_path.stat().st_mtime >= changed
    if finished:
        state = "finished"
    elif last.get("event") == "stopped":
        state = "stopped"
    else:
        state = "training"
    counted = next((r for r in reversed(rows) if any(k in r for k in ("trial", "epoch", "step"))), None)
    if counted is None:
        where = "starting (no epoch finished yet)"
    else:
        unit = next(k for k in ("trial", "epoch", "step") if k in counted)
        total = f" of {counted['total']}" if counted.get("total") else ""
        run = f" ({counted['run']})" if counted.get("run") else ""
        figures = ", ".join(f"{k} {v:.4g}" for k, v in counted.items()
                            if isinstance(v, float)
                            and (k.startswith(("train_loss", "val_", "test_")) or k == "loss"))
        where = f"{unit} {counted[unit]}{total}{run}" + (f", {figures}" if figures else "")
    age = now - changed
    ago = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200 else f"{age / 3600:.1f} h"
    if state == "stopped":
        line = f"stopped ({last.get('reason', '?')}) at {where}; last update {ago} ago"
    elif state == "training" and age > STALE_AFTER_S:
        line = f"training? {where}; no update for {ago} (the process may have been killed)"
    else:
        line = f"{state}: {where}; last update {ago} ago"
    return {"state": state, "line": line, "rows": len(rows), "age_s": age}


def live_section(root: Path, found: list) -> str:
    """Every run under `root` (--quick runs aside) that its own records say has not finished: still
    training, stopped (Ctrl-C, a non-finite loss) or silent; with its live training_curves.png."""
    body = ""
    for path in sorted(root.rglob("progress.jsonl")):
        if "quick" in path.relative_to(root).parts:          # --quick smoke tests stay off the page
            continue
        status = progress_status(path)
        if status["state"] == "finished":
            continue
        folder = path.parent
        name = str(folder.relative_to(root))
        body += f'<div class="live"><b>{esc(name)}</b>: {esc(status["line"])}</div>'
        curves = folder / "training_curves.png"
        if curves.is_file():
            body += img_tag(curves, f"{name}: training curves so far")
            found.append((f"{name}（训练中） / {name} (live)", curves))
    return body or "<p>没有正在训练的运行 · No run is training now (a run's progress.jsonl newer than its " \
                    "metrics.json would show here, with its curves so far).</p>"


def study_section(root: Path, found: list) -> str:
    """06_comparison/hyperparameter_study: the ranking, the conclusions beside Greff et al. 2017, the
    plots."""
    folder = root / "06_comparison" / "hyperparameter_study"
    record = read_json(folder / "metrics.json")
    if not record:
        return not_run(["06_comparison/hyperparameter_study.py"])
    m = record.get("metrics", {})
    body = (f"<p>{esc(m.get('task'))}: {esc(m.get('runs'))} runs, {esc(m.get('seeds'))} seeds per point, "
            f"metric {esc(m.get('metric'))}; quick settings: {esc(record.get('config', {}).get('QUICK'))}; "
            f"finished {esc(record.get('finished'))} on {esc(record.get('device'))}.</p>")
    body += html_table([{"cell": r["cell"].upper(), "rank": r.get("rank"),
                         "hyperparameter": r["hyperparameter"], "range of means": f"{r['range']:.3f}",
                         "p (permutation)": f"{r.get('p_value', float('nan')):.3g}",
                         "eta²": f"{r['eta_squared']:.2f}",
                         "best value": f"{r['best_value']:g}"} for r in m.get("ranking", [])])
    body += "<ul>" + "".join(f"<li>{esc(c)}</li>"
                             for c in m.get("conclusions", []) + m.get("greff_2017", [])) + "</ul>"
    for name in m.get("plots", []):
        if (folder / name).is_file():
            body += img_tag(folder / name, name)
            if name == "study_grid.png":
                found.append(("超参数研究 / hyperparameter study", folder / name))
    return body


# ----------------------------------------------------------------------------------------------------
# New figures: LSTM and GRU training curves on the same axes
# ----------------------------------------------------------------------------------------------------
def twin_pairs(case: str) -> list[tuple[str, str]]:
    stems = {p.stem for p in case_scripts(case)}
    return [(s, s[:-5] + "_gru") for s in sorted(stems) if s.endswith("_lstm")]


def plot_twin_curves(case: str, records: dict, path: Path) -> Path:
    """Left: train (dashed) and validation (solid) loss; right: a validation metric; LSTM blue, GRU red."""
    metric = next((m for m in PREFERRED_METRICS
                   if any(m in (r["history"][0] or {}) for r in records.values())), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(11 if metric else 6, 3.6), squeeze=False)
    for cell, record in records.items():
        hist = record["history"]
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
        color = COLORS[cell]
        axes[0, 0].plot(epochs, [h.get("train_loss") for h in hist], "--", color=color,
                        label=f"{cell.upper()} 训练 / train")
        if "val_loss" in hist[0]:
            axes[0, 0].plot(epochs, [h.get("val_loss") for h in hist], "-o", ms=3, color=color,
                            label=f"{cell.upper()} 验证 / validation")
        if metric and metric in hist[0]:
            axes[0, 1].plot(epochs, [h.get(metric) for h in hist], "-o", ms=3, color=color,
                            label=cell.upper())
    axes[0, 0].set_ylabel("损失 / loss")
    if metric:
        axes[0, 1].set_ylabel(metric_label(metric))
    for ax in axes[0]:
        ax.set_xlabel("轮次 / epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{case}：LSTM 与 GRU 的训练曲线 / {case}: LSTM vs GRU training curves")
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------------
def esc(text) -> str:
    return html.escape(str(text))


def img_tag(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def not_run(scripts: list[str]) -> str:
    items = "".join(f"<li><code>python {esc(s)}</code></li>" for s in scripts)
    return f'<div class="missing">尚未运行 · not run yet:<ul>{items}</ul></div>'


def html_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(r.get(h, ''))}</td>" for h in headers) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;\
padding:0 1em;color:#222}
h1{border-bottom:2px solid #1f77b4}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f0f4f8}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:100%}
img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555}
.missing{background:#fff6e0;border-left:4px solid #e0a000;padding:.5em 1em;margin:.5em 0}
.live{background:#e8f4fd;border-left:4px solid #1f77b4;padding:.5em 1em;margin:.5em 0}
pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap;font-size:.85em}nav a{margin-right:1em}"""


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def comparison_section(root: Path, found: list) -> str:
    folder = root / "06_comparison" / "model_comparison"
    record = read_json(folder / "metrics.json")
    if not record:
        return not_run(["06_comparison/model_comparison.py"])
    m = record.get("metrics", {})
    body = html_table(m.get("table", []))
    body += "<ul>" + "".join(f"<li>{esc(c)}</li>" for c in m.get("conclusions", [])) + "</ul>"
    seeds = record.get("config", {}).get("SEEDS")
    body += f"<p>Seeds: {esc(seeds)}; quick settings: {esc(record.get('config', {}).get('QUICK'))}; " \
            f"finished {esc(record.get('finished'))} on {esc(record.get('device') or 'cpu')}.</p>"
    if (folder / "comparison.png").is_file():
        body += img_tag(folder / "comparison.png", "LSTM vs GRU per task")
        found.append(("LSTM 对 GRU / LSTM vs GRU", folder / "comparison.png"))
    return body


def benchmark_section(root: Path, found: list) -> str:
    folder = root / "06_comparison" / "performance_benchmark"
    record = read_json(folder / "metrics.json")
    if not record:
        return not_run(["06_comparison/performance_benchmark.py"])
    body = ""
    for dev, sec in record.get("metrics", {}).get("devices", {}).items():
        body += (f"<h3>{esc(sec.get('device', dev))}{' (quick sizes)' if sec.get('quick') else ''}, "
                 f"measured {esc(sec.get('measured'))}</h3>")
        body += html_table([{"check": c["check"], "size": c["size"],
                             "torch ms": f"{c['torch_ms']:.2f}" if c.get("torch_ms") else "",
                             "scratch ms": f"{c['scratch_ms']:.2f}" if c.get("scratch_ms") else "",
                             "verdict": c["verdict"]} for c in sec.get("checks", [])])
        for name in sec.get("plots", {}).values():
            if (folder / name).is_file():
                body += img_tag(folder / name, name)
                found.append((f"速度测试 {dev}：{name} / benchmark {dev}: {name}", folder / name))
    return body


def curves_section(root: Path, out: Path, found: list) -> str:
    body = ""
    for case, title, _ in SECTIONS[1:]:
        for lstm_stem, gru_stem in twin_pairs(case):
            records = {c: run_record(root, case, s) for c, s in (("lstm", lstm_stem), ("gru", gru_stem))}
            have = {c: r for c, r in records.items() if r and r.get("history")}
            missing = [f"{case}/{s}.py" for c, s in (("lstm", lstm_stem), ("gru", gru_stem)) if c not in have]
            body += f"<h3>{esc(title)}</h3>"
            if have:
                # 04: text_ and g2p_ twins
                name = case if len(twin_pairs(case)) == 1 else f"{case}_{lstm_stem[:-5]}"
                png = plot_twin_curves(case, have, out / f"curves_{name}.png")
                body += img_tag(png, f"{name}: training curves")
                found.append((f"{name} 训练曲线 / {name} curves", png))
            if missing:
                body += not_run(missing)
    return body or "<p>No LSTM/GRU twins found.</p>"


def case_section(root: Path, case: str, prefer: tuple, limit: int, found: list) -> str:
    folder = root / case
    pngs = figures(folder, prefer, limit)
    scripts = case_scripts(case)
    missing = [f"{case}/{p.name}" for p in scripts if not (folder / p.stem / "metrics.json").is_file()
               and not full_runs((folder / p.stem).rglob("*.png"))]
    body = "".join(img_tag(p, str(p.relative_to(root))) for p in pngs)
    if pngs:
        found.append((case, pngs[0]))
    if case == "04_text_gen":
        samples = text_samples(root)
        body += "".join(f"<h4>{esc(k)}</h4><pre>{esc(t)}</pre>" for k, t in samples)
    if missing or not scripts:
        body += not_run(missing or [f"{case}/<script>.py (the case has no scripts yet)"])
    return body


def build_html(root: Path, out: Path, limit: int) -> tuple[str, list, list]:
    found: list[tuple[str, Path]] = []
    parts = [("live", "正在训练 · Runs in progress", live_section(root, found)),
             ("comparison", "LSTM 与 GRU 对比 · LSTM vs GRU head-to-head", comparison_section(root, found)),
             ("curves", "训练曲线 · Training curves, LSTM vs GRU", curves_section(root, out, found)),
             ("speed", "速度与内存 · Speed and memory of the hand-written cells",
              benchmark_section(root, found)),
             ("study", "超参数研究 · What each hyperparameter does to LSTM and GRU",
              study_section(root, found))]
    for case, title, prefer in SECTIONS:
        parts.append((case, title, case_section(root, case, prefer, limit, found)))
    nav = "".join(f'<a href="#{a}">{esc(t.split(" · ")[0])}</a>' for a, t, _ in parts)
    missing_count = sum(body.count('class="missing"') for _, _, body in parts)
    page = (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>LSTM &amp; GRU dashboard</title><style>{CSS}</style></head><body>"
            f"<h1>LSTM 与 GRU 实战 · LSTM &amp; GRU in practice: dashboard</h1>"
            f"<p>Built {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} from <code>{esc(root)}</code>; "
            f"{len(found)} result groups found, {missing_count} sections with results still missing.</p>"
            f"<nav>{nav}</nav>" + "".join(section(a, t, b) for a, t, b in parts) + "</body></html>\n")
    return page, found, [a for a, _, b in parts if 'class="missing"' in b]


def plot_overview(found: list, path: Path, columns: int) -> Path:
    """A grid of the key figures (first one per group) as one PNG."""
    n = max(len(found), 1)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, png) in zip(axes.flat, found):
        ax.imshow(plt.imread(png))
        ax.set_title(title, fontsize=10)
    if not found:
        axes[0, 0].text(0.5, 0.5, "还没有结果：先运行各案例的脚本\n"
                        "no results yet: run the case scripts first", ha="center", va="center")
    fig.suptitle("LSTM 与 GRU 实战：总览 / LSTM & GRU in practice: overview")
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    root = Path(OUTPUTS).expanduser().resolve() if OUTPUTS else OUTPUTS_ROOT
    if OUTPUTS and not root.is_dir():
        raise UserError(f"--OUTPUTS={OUTPUTS} is not a folder; "
                        "give the outputs/ folder the scripts wrote to.")
    out = root / "06_comparison" / "visualization_dashboard"
    if cfg["QUICK"]:
        out = out / "quick"  # as output_dir does: a smoke test never replaces the real dashboard
    out.mkdir(parents=True, exist_ok=True)
    page, found, missing = build_html(root, out, MAX_IMAGES_PER_SECTION)
    html_path = atomic_write(out / "dashboard.html", lambda p: p.write_text(page, encoding="utf-8"))
    overview = plot_overview(found, out / "overview.png", OVERVIEW_COLUMNS)
    print(f"dashboard: {html_path} ({html_path.stat().st_size / 1e6:.1f} MB, {len(found)} result groups)")
    print(f"overview:  {overview}")
    if missing:
        print(f"sections still missing results: {', '.join(missing)}")
    save_metrics(out, config=cfg, metrics={"html": html_path.name, "overview": overview.name,
                                           "figure_groups": [t for t, _ in found],
                                           "sections_missing": missing,
                                           "html_bytes": html_path.stat().st_size}, start_time=t0)


if __name__ == "__main__":
    run_main(main)

"""How fast and how memory-hungry are the hand-written ScratchLSTM / ScratchGRU next to torch.nn?

Forward+backward time (interleaved repetitions: median and IQR) and saved-activation memory across batch
size, sequence length and hidden size, log-log slopes of time vs T and H, a profile of where the scratch
time goes, and one training step of every applied case's model with IMPL=torch vs scratch.
Run: python 06_comparison/performance_benchmark.py [--quick] [--DEVICE=cuda|mps]   (CPU default: ~2 min).
Theory: THEORY.md (BPTT costs O(T*H^2) per sequence; what backward has to keep from forward).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import contextlib
import json
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn

from utils.model_utils import count_parameters, make_rnn
from utils.script_utils import (
    AtLeast,
    Items,
    OneOf,
    Positive,
    Seed,
    describe_device,
    get_device,
    import_case_module,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
    synchronize,
)
from utils.visualization import COLORS, plt, save_figure

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                    # random weights and inputs
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # auto: cuda, else Apple's mps, else cpu
                                                      # (mps: CPU targets)
THREADS: AtLeast(1) = 2           # CPU threads (torch.set_num_threads);
                                  # this project's reference machine has 2 cores
REPS: AtLeast(1) = 11             # timed repetitions per configuration
                                  # (the implementations alternate each one)
WARMUP: AtLeast(0) = 2            # untimed runs first (allocator, oneDNN/cuDNN plans, caches)
CELLS: Items(OneOf("lstm", "gru")) = ("lstm", "gru")  # which cells to measure
CPU_HEADLINE: Items(AtLeast(1), length=4) = (64, 100, 64, 128)     # batch, length, input,
                                                                   # hidden: CPU headline
CUDA_HEADLINE: Items(AtLeast(1), length=4) = (256, 200, 256, 512)  # batch, length, input,
                                                                   # hidden: CUDA headline
TARGET_CPU_RATIO: Positive = 1.5  # target: scratch fwd+bwd time <= this x torch.nn on CPU
TARGET_CUDA_RATIO: Positive = 3.0  # target: scratch fwd+bwd time <= this x cuDNN
TARGET_MEMORY_RATIO: Positive = 1.5  # target: scratch saved-activation memory <= this x torch.nn's
SWEEP_BASE: Items(AtLeast(1), length=4) = (32, 50, 64, 128)  # CPU sweep: batch, length, input,
                                                             # hidden (one varies)
CUDA_SWEEP_BASE: Items(AtLeast(1), length=4) = (128, 100, 256, 256)  # CUDA sweep base
                                                                     # (the GPU run must fit in ~3 min)
SWEEP_BATCH: Items(AtLeast(1)) = (8, 32, 128)  # batch sizes tried
SWEEP_LENGTH: Items(AtLeast(1)) = (25, 50, 100, 200)  # sequence lengths tried (log-log slope: ~1 expected)
SWEEP_HIDDEN: Items(AtLeast(1)) = (32, 64, 128, 256, 512)  # hidden sizes tried
                                                           # (slope 1 -> 2 as matmuls dominate)
PROFILE: bool = True              # profile the headline with torch.profiler: where does the time go?
CASE_STEPS: bool = True           # time one training step of each applied case's model, torch vs scratch
CASE_BATCH: AtLeast(1) = 32       # batch size of those training steps
CASE_SMALL: bool = False          # True: shrunken case models (vocab 500, hidden/8) so --quick takes seconds
CASE_LENGTH: AtLeast(1) = 200     # cap on their sequence length (each case uses a typical one: 30-150)

QUICK_SETTINGS = dict(REPS=3, WARMUP=1, CPU_HEADLINE=(8, 12, 8, 16), CUDA_HEADLINE=(16, 12, 16, 32),
                      SWEEP_BASE=(8, 12, 8, 16), CUDA_SWEEP_BASE=(8, 12, 8, 16), SWEEP_BATCH=(4, 8),
                      SWEEP_LENGTH=(6, 12), SWEEP_HIDDEN=(8, 16), CASE_BATCH=4, CASE_LENGTH=8,
                      CASE_SMALL=True, PROFILE=False)

IMPLS = ("torch", "scratch")


# ----------------------------------------------------------------------------------------------------
# One measurement: forward + backward of a layer on a random batch
# ----------------------------------------------------------------------------------------------------
def build_layers(cell, input_size, hidden, device):
    """{impl: layer} with identical weights, or only torch when the scratch cell is not there yet."""
    layers = {"torch": make_rnn(cell, "torch", input_size, hidden, device=device).to(device)}
    try:
        scratch = make_rnn(cell, "scratch", input_size, hidden, device=device).to(device)
    except (FileNotFoundError, AttributeError, ImportError) as e:
        print(f"  scratch {cell.upper()}: not available yet ({type(e).__name__}: {e})")
        return layers
    scratch.load_state_dict(layers["torch"].state_dict())
    layers["scratch"] = scratch
    return layers


def make_batch(batch, length, input_size, hidden, device):
    """x: (B, T, I) needing a gradient (inside a model the layer below wants dL/dx), grad_out: (B, T, H)."""
    x = torch.randn(batch, length, input_size, device=device, requires_grad=True)
    grad_out = torch.randn(batch, length, hidden, device=device)
    return x, grad_out


def forward_backward(layer, x, grad_out):
    layer.zero_grad(set_to_none=True)
    x.grad = None
    out, _ = layer(x)                     # out: (B, T, H)
    out.backward(grad_out)                # BPTT: dL/dx and dL/dW for every weight


def time_interleaved(layers, x, grad_out, device, reps, warmup):
    """Milliseconds per fwd+bwd for each impl. Implementations alternate (and swap order each repetition),
    so a slow phase of the machine (another process, turbo, thermal) hits both alike."""
    times = {k: [] for k in layers}
    names = list(layers)
    for r in range(warmup + reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            synchronize(device)
            t0 = time.perf_counter()
            forward_backward(layers[name], x, grad_out)
            synchronize(device)
            if r >= warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    return times


def summarize(ms):
    q1, med, q3 = np.percentile(ms, [25, 50, 75])
    return {"median_ms": float(med), "iqr_ms": float(q3 - q1), "q1_ms": float(q1), "q3_ms": float(q3),
            "n": len(ms)}


def saved_activation_bytes(layer, x, grad_out):
    """Bytes of the distinct tensors autograd keeps from forward for backward (weights and the input
    excluded).

    `saved_tensors_hooks` sees every tensor saved by built-in ops (oneDNN/cuDNN/native) and by a custom
    Function's `ctx.save_for_backward`; tensors stashed as plain `ctx.attr = t` escape the hooks, so the
    graph is also walked for them. Storages are counted once (views share them).
    """
    skip = {p.untyped_storage().data_ptr() for p in layer.parameters()} | {x.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def add(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip and st.nbytes() > 0:
            seen[st.data_ptr()] = st.nbytes()

    def pack(t):
        add(t)
        return t

    layer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = layer(x)
    stack, visited = [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        for value in getattr(node, "__dict__", {}).values():
            for t in (value if isinstance(value, (tuple, list)) else (value,)):
                if isinstance(t, torch.Tensor):
                    add(t)
        stack.extend(n for n, _ in node.next_functions)
    out.backward(grad_out)
    return sum(seen.values())


def cuda_peak_bytes(layer, x, grad_out, device):
    """Peak GPU memory allocated during one fwd+bwd, above what was allocated before it."""
    forward_backward(layer, x, grad_out)  # gradients exist afterwards: allocate them before measuring
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    forward_backward(layer, x, grad_out)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def measure(cell, size, device, reps, warmup):
    """One configuration (batch, length, input, hidden): time and memory of every impl available."""
    batch, length, input_size, hidden = size
    torch.manual_seed(SEED)
    layers = build_layers(cell, input_size, hidden, device)
    x, grad_out = make_batch(batch, length, input_size, hidden, device)
    times = time_interleaved(layers, x, grad_out, device, reps, warmup)
    row = {"cell": cell, "batch": batch, "length": length, "input": input_size, "hidden": hidden}
    for impl, layer in layers.items():
        row[impl] = summarize(times[impl])
        row[impl]["saved_bytes"] = saved_activation_bytes(layer, x, grad_out)
        if device.type == "cuda":
            row[impl]["cuda_peak_bytes"] = cuda_peak_bytes(layer, x, grad_out, device)
    if "scratch" in layers:
        # paired ratios: repetition r of scratch against repetition r of torch (they ran back to back)
        paired = np.array(times["scratch"]) / np.array(times["torch"])
        q1, med, q3 = np.percentile(paired, [25, 50, 75])
        row["time_ratio"] = row["scratch"]["median_ms"] / row["torch"]["median_ms"]
        row["paired_ratio_median"], row["paired_ratio_iqr"] = float(med), float(q3 - q1)
        row["memory_ratio"] = row["scratch"]["saved_bytes"] / max(row["torch"]["saved_bytes"], 1)
        if device.type == "cuda":
            row["cuda_memory_ratio"] = (row["scratch"]["cuda_peak_bytes"]
                                        / max(row["torch"]["cuda_peak_bytes"], 1))
    return row


# ----------------------------------------------------------------------------------------------------
# Headline, sweeps, slopes, profile
# ----------------------------------------------------------------------------------------------------
def verdict(value, target):
    if value is None:
        return "n/a (scratch cell not available yet)"
    return f"{'PASS' if value <= target else 'FAIL'} ({value:.2f}x, target <= {target}x)"


def run_headline(device, size, target, reps, warmup):
    rows = [measure(cell, size, device, reps, warmup) for cell in CELLS]
    checks = []
    for r in rows:
        checks.append({"check": f"{r['cell'].upper()} fwd+bwd time scratch/torch", "size": size_label(size),
                       "torch_ms": r["torch"]["median_ms"],
                       "scratch_ms": r.get("scratch", {}).get("median_ms"), "ratio": r.get("time_ratio"),
                       "verdict": verdict(r.get("time_ratio"), target),
                       "pass": r.get("time_ratio") is not None and r["time_ratio"] <= target})
        checks.append({"check": f"{r['cell'].upper()} saved-activation memory scratch/torch",
                       "size": size_label(size), "torch_ms": None, "scratch_ms": None,
                       "ratio": r.get("memory_ratio"),
                       "verdict": verdict(r.get("memory_ratio"), TARGET_MEMORY_RATIO),
                       "pass": (r.get("memory_ratio") is not None
                                and r["memory_ratio"] <= TARGET_MEMORY_RATIO)})
    return rows, checks


def size_label(size):
    b, t, i, h = size
    return f"B={b} T={t} I={i} H={h}"


def run_sweeps(device, base, reps, warmup):
    """Vary batch, length and hidden one at a time around `base`."""
    sweeps = {}
    for axis, values, index in (("batch", SWEEP_BATCH, 0), ("length", SWEEP_LENGTH, 1),
                                ("hidden", SWEEP_HIDDEN, 3)):
        rows = []
        for v in values:
            size = list(base)
            size[index] = v
            for cell in CELLS:
                rows.append(measure(cell, tuple(size), device, reps, warmup))
                r = rows[-1]
                print(f"  {axis:6s}={v:<4d} {cell.upper():4s} torch {r['torch']['median_ms']:8.2f} ms"
                      + (f"  scratch {r['scratch']['median_ms']:8.2f} ms  ratio {r['time_ratio']:.2f}"
                         f"  memory ratio {r['memory_ratio']:.2f}" if "scratch" in r else ""))
        sweeps[axis] = rows
    return sweeps


def fit_slopes(sweeps):
    """Log-log slope of median time vs each swept size: time ~ size^slope."""
    slopes = {}
    for axis, rows in sweeps.items():
        for cell in CELLS:
            for impl in IMPLS:
                pts = [(r[axis], r[impl]["median_ms"]) for r in rows if r["cell"] == cell and impl in r]
                if len(pts) >= 2:
                    xs, ys = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
                    slopes[f"{cell}_{impl}_vs_{axis}"] = float(np.polyfit(xs, ys, 1)[0])
    return slopes


@contextlib.contextmanager
def without_usdt_lines():
    """torch.profiler's C++ backend (libkineto) writes a "USDT: ... profiler_start" and "profiler_stop"
    line to the process's stderr (file descriptor 2, below Python's sys.stderr) at every start and stop:
    trace points for system tools, not for the learner. Send fd 2 to a temporary file meanwhile and pass
    every other line on, so real warnings and errors still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith("USDT:")]
            sys.stderr.write("".join(kept))


def profile_headline(device, size, reps=3):
    """Top operators by self time in fwd+bwd of each layer: where the scratch cell spends its time."""
    from torch.profiler import ProfilerActivity, profile

    batch, length, input_size, hidden = size
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    result = {}
    for cell in CELLS:
        layers = build_layers(cell, input_size, hidden, device)
        x, grad_out = make_batch(batch, length, input_size, hidden, device)
        for impl, layer in layers.items():
            forward_backward(layer, x, grad_out)
            synchronize(device)
            t0 = time.perf_counter()
            with without_usdt_lines(), profile(activities=activities) as prof:
                for _ in range(reps):
                    forward_backward(layer, x, grad_out)
                synchronize(device)
            wall_ms = 1000 * (time.perf_counter() - t0) / reps
            events = prof.key_averages()
            key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
            total = sum(getattr(e, key, 0) for e in events) or 1
            top = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:10]
            result[f"{cell}_{impl}"] = {
                "wall_ms_profiled": wall_ms,
                "op_count_per_run": sum(e.count for e in events) / reps,
                "top_ops": [{"op": e.key, "calls_per_run": e.count / reps,
                             "self_ms_per_run": getattr(e, key, 0) / 1000 / reps,
                             "share": getattr(e, key, 0) / total} for e in top]}
    return result


# ----------------------------------------------------------------------------------------------------
# The applied cases: one training step of each case's model, IMPL torch vs scratch
# ----------------------------------------------------------------------------------------------------
def _ids_batch(batch, length, vocab, device):
    """Token ids (B, T) of random lengths (packing: the longest is T), lengths (B,) on CPU."""
    ids = torch.randint(2, vocab, (batch, length), device=device)
    lengths = torch.randint(max(1, length // 2), length + 1, (batch,))
    lengths[0] = length
    return ids, lengths


def _series_batch(batch, length, features, device):
    x = torch.randn(batch, length, features, device=device)
    return x, torch.full((batch,), length, dtype=torch.long)


def _ce(logits, classes, device):
    return nn.functional.cross_entropy(logits, torch.randint(0, classes, (logits.shape[0],), device=device))


# How each case's model is built and fed: its class in the case's own module (02_sentiment/sentiment_model.py
# ...), the case's default sizes, a realistic sequence length, a random batch and a loss.
# (build(module, cell, impl, device), batch(B, T, device), loss(model, data)).
CASE_SPECS = {
    "02_sentiment": dict(module="sentiment_model", length=40,
                         build=lambda m, cell, impl, dev: m.SentimentClassifier(
                             _n(20000), cell=cell, impl=impl, embed_dim=_n(128), hidden_size=_n(128),
                             device=dev),
                         batch=lambda b, t, dev: _ids_batch(b, t, _n(20000), dev),
                         loss=lambda m, d: _ce(m(*d), 2, d[0].device)),
    "03_stock": dict(module="stock_model", length=30,
                     build=lambda m, cell, impl, dev: m.PriceRNN(cell, impl, 4, _n(32), device=dev),
                     batch=lambda b, t, dev: torch.randn(b, t, 4, device=dev),
                     loss=lambda m, x: m(x).pow(2).mean()),
    "04_text_gen": dict(module="char_model", length=100,
                        build=lambda m, cell, impl, dev: m.CharRNN(
                            65, cell=cell, impl=impl, embed_dim=_n(64), hidden_size=_n(256), num_layers=2),
                        batch=lambda b, t, dev: torch.randint(0, 65, (b, t), device=dev),
                        loss=lambda m, ids: _lm_loss(m, ids)),
    "05_seq_classify": dict(module="series_model", length=150,
                            build=lambda m, cell, impl, dev: m.SeriesClassifier(
                                cell, impl, 1, 2, _n(64), 1, True, "last+mean", device=dev),
                            batch=lambda b, t, dev: _series_batch(b, t, 1, dev),
                            loss=lambda m, d: _ce(m(*d), 2, d[0].device)),
}


def _n(size):
    """A case's default size, or a small version of it with CASE_SMALL (--quick)."""
    return max(4, size // 40 if size >= 10000 else size // 8) if CASE_SMALL else size


def _lm_loss(model, ids):
    out = model(ids)
    logits = out[0] if isinstance(out, tuple) else out          # (B, T, vocab)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))


def time_case_steps(device, batch, max_length, reps, warmup):
    """One training step (forward, backward, Adam step) of each case's model with IMPL torch vs scratch."""
    rows, missing = [], []
    for name, spec in CASE_SPECS.items():
        try:
            module = import_case_module(name, spec["module"])
        except ModuleNotFoundError as e:
            print(f"  {name}: {name}/{spec['module']}.py not available ({e})")
            missing.append(name)
            continue
        length = min(spec["length"], max_length)
        for cell in CELLS:
            models, opts = {}, {}
            for impl in IMPLS:
                torch.manual_seed(SEED)
                try:
                    models[impl] = spec["build"](module, cell, impl, device).to(device)
                except (FileNotFoundError, AttributeError, ImportError, TypeError) as e:
                    print(f"  {name} {cell.upper()} {impl}: not available ({type(e).__name__}: {e})")
                    continue
                opts[impl] = torch.optim.Adam(models[impl].parameters(), lr=1e-3)
            if "torch" not in models:
                missing.append(name)
                break
            torch.manual_seed(SEED)
            data = spec["batch"](batch, length, device)
            times = {k: [] for k in models}
            for r in range(warmup + reps):
                for impl in (list(models) if r % 2 == 0 else list(models)[::-1]):
                    synchronize(device)
                    t0 = time.perf_counter()
                    opts[impl].zero_grad(set_to_none=True)
                    spec["loss"](models[impl], data).backward()
                    opts[impl].step()
                    synchronize(device)
                    if r >= warmup:
                        times[impl].append(1000 * (time.perf_counter() - t0))
            row = {"case": name, "cell": cell, "length": length, "batch": batch,
                   "parameters": count_parameters(models["torch"])}
            for impl in models:
                row[impl] = summarize(times[impl])
            if "scratch" in row:
                row["time_ratio"] = row["scratch"]["median_ms"] / row["torch"]["median_ms"]
            rows.append(row)
    return rows, missing


# ----------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------
IMPLS_ZH = {"torch": "torch", "scratch": "手写"}                   # the plots' labels, Chinese first
AXES_ZH = {"batch": "批大小 B / batch", "length": "序列长度 T / length", "hidden": "隐藏层大小 H / hidden"}


def series_style(cell, impl):
    return dict(color=COLORS[cell], linestyle="-" if impl == "torch" else "--",
                marker="o" if impl == "torch" else "s",
                label=f"{cell.upper()} {IMPLS_ZH[impl]} / {cell.upper()} {impl}")


def plot_speed(sweeps, slopes, path, title):
    """Top: median time (IQR bars) vs each swept size on log-log axes, fitted slopes in the legend.
    Bottom: scratch/torch time ratio."""
    fig, axes = plt.subplots(2, len(sweeps), figsize=(5 * len(sweeps), 7.5), squeeze=False)
    for j, (axis, rows) in enumerate(sweeps.items()):
        ax, ax2 = axes[0, j], axes[1, j]
        for cell in CELLS:
            for impl in IMPLS:
                pts = [r for r in rows if r["cell"] == cell and impl in r]
                if not pts:
                    continue
                xs = [r[axis] for r in pts]
                style = series_style(cell, impl)
                slope = slopes.get(f"{cell}_{impl}_vs_{axis}")
                if slope is not None:
                    style["label"] += f" (斜率 / slope {slope:.2f})"
                ax.errorbar(xs, [r[impl]["median_ms"] for r in pts],
                            yerr=[[r[impl]["median_ms"] - r[impl]["q1_ms"] for r in pts],
                                  [r[impl]["q3_ms"] - r[impl]["median_ms"] for r in pts]], capsize=3, **style)
            ratio = [r for r in rows if r["cell"] == cell and "time_ratio" in r]
            if ratio:
                ax2.plot([r[axis] for r in ratio], [r["time_ratio"] for r in ratio], color=COLORS[cell],
                         marker="o", label=f"{cell.upper()} 时间之比 / time scratch/torch")
                ax2.plot([r[axis] for r in ratio], [r["memory_ratio"] for r in ratio], color=COLORS[cell],
                         marker="x", linestyle=":", label=f"{cell.upper()} 内存之比 / memory scratch/torch")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(AXES_ZH.get(axis, axis))
        ax.set_ylabel("前向 + 反向耗时（毫秒） / fwd+bwd time (ms)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        ax2.set_xscale("log")
        ax2.axhline(1.0, color="gray", lw=0.8)
        ax2.set_xlabel(AXES_ZH.get(axis, axis))
        ax2.set_ylabel("手写与 torch 之比 / scratch / torch")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_memory(sweeps, path, title):
    """Saved-activation memory (MB) vs each swept size for every impl."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.8), squeeze=False)
    for j, (axis, rows) in enumerate(sweeps.items()):
        ax = axes[0, j]
        for cell in CELLS:
            for impl in IMPLS:
                pts = [r for r in rows if r["cell"] == cell and impl in r]
                if pts:
                    ax.plot([r[axis] for r in pts], [r[impl]["saved_bytes"] / 2**20 for r in pts],
                            **series_style(cell, impl))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(AXES_ZH.get(axis, axis))
        ax.set_ylabel("为反向传播保存的量（MB） / saved for backward (MB)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_case_steps(rows, path, title):
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows) + 2), 4))
    labels = [f"{r['case']}\n{r['cell'].upper()}" for r in rows]
    xs = np.arange(len(rows))
    for k, impl in enumerate(IMPLS):
        ys = [r[impl]["median_ms"] if impl in r else 0 for r in rows]
        err = [r[impl]["iqr_ms"] / 2 if impl in r else 0 for r in rows]
        ax.bar(xs + (k - 0.5) * 0.4, ys, 0.4, yerr=err, capsize=3, label=f"{IMPLS_ZH[impl]} / {impl}",
               color="#555555" if impl == "torch" else "#ff7f0e")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("训练一步（毫秒，中位数） / training step (ms), median")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
def merge_previous(out, device_key, section):
    """metrics.json keeps one section per device: a CUDA run keeps the CPU results and vice versa."""
    sections = {}
    path = out / "metrics.json"
    if path.is_file():
        try:
            sections = json.loads(path.read_text(encoding="utf-8")).get("metrics", {}).get("devices", {})
        except (json.JSONDecodeError, AttributeError):
            sections = {}
    sections[device_key] = section
    return sections


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    set_seed(SEED)
    torch.set_num_threads(THREADS)
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])
    key = device.type
    headline_size = CUDA_HEADLINE if key == "cuda" else CPU_HEADLINE
    target = TARGET_CUDA_RATIO if key == "cuda" else TARGET_CPU_RATIO
    base = CUDA_SWEEP_BASE if key == "cuda" else SWEEP_BASE
    note = " (quick sizes: not the real headline)" if cfg["QUICK"] else ""
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load_start is not None and key == "cpu" and load_start > os.cpu_count():
        print(f"warning: load average {load_start:.1f} on {os.cpu_count()} cores: other processes compete "
              "for the CPU, so these timings are noisier and slower than on an idle machine.")

    print(f"\n== headline on {describe_device(device)}: {size_label(headline_size)}, float32{note} ==")
    headline_rows, checks = run_headline(device, headline_size, target, REPS, WARMUP)
    print_table([{k: c[k] for k in ("check", "torch_ms", "scratch_ms", "verdict")} for c in checks],
                title=f"Headline {size_label(headline_size)}{note}", floatfmt=".2f")

    profile = profile_headline(device, headline_size) if PROFILE else {}
    for name, p in profile.items():
        if name.endswith("scratch"):
            print(f"where {name} spends its time ({p['op_count_per_run']:.0f} operator calls per fwd+bwd):")
            for op in p["top_ops"][:6]:
                print(f"  {op['op']:40s} {op['self_ms_per_run']:8.2f} ms  {op['share']:6.1%}  "
                      f"{op['calls_per_run']:.0f} calls")

    print(f"\n== sweeps around {size_label(base)} ==")
    sweeps = run_sweeps(device, base, REPS, WARMUP)
    slopes = fit_slopes(sweeps)
    print_table([{"fit": k, "slope": v} for k, v in slopes.items()],
                title="log-log slopes: time ~ size^slope", floatfmt=".2f")

    case_rows, missing = ([], list(CASE_SPECS))
    if CASE_STEPS:
        print(f"\n== training step of each case's model (batch {CASE_BATCH}) ==")
        case_rows, missing = time_case_steps(device, CASE_BATCH, CASE_LENGTH, REPS, WARMUP)
        print_table([{"case": r["case"], "cell": r["cell"], "T": r["length"], "params": r["parameters"],
                      "torch_ms": r["torch"]["median_ms"],
                      "scratch_ms": r.get("scratch", {}).get("median_ms"),
                      "ratio": r.get("time_ratio")} for r in case_rows],
                    title="training step", floatfmt=".2f")

    label = describe_device(device)
    plots = {"speed": plot_speed(sweeps, slopes, out / f"speed_{key}.png",
                                 f"前向 + 反向耗时 / fwd+bwd time, {label}").name,
             "memory": plot_memory(sweeps, out / f"memory_{key}.png",
                                   f"为反向传播保存的激活所占内存 / saved-activation memory, {label}").name}
    if case_rows:
        plots["case_steps"] = plot_case_steps(case_rows, out / f"case_steps_{key}.png",
                                              f"各案例训练一步 / one training step per case, {label}").name
    section = {"device": label, "threads": THREADS if key == "cpu" else None, "quick": cfg["QUICK"],
               "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count(),
               "load_average_start": load_start,
               "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
               "headline_size": list(headline_size),
               "headline": headline_rows, "checks": checks, "sweeps": sweeps, "slopes": slopes,
               "profile": profile, "case_steps": case_rows, "cases_not_available": missing, "plots": plots}
    devices = merge_previous(out, key, section)
    summary = {f"{dev}_{c['check'].split()[0].lower()}_"
               f"{'memory' if 'memory' in c['check'] else 'time'}_ratio": c["ratio"]
               for dev, sec in devices.items() for c in sec.get("checks", [])}
    save_metrics(out, config=cfg, metrics={**summary, "all_checks_pass": all(c["pass"] for c in checks),
                                           "devices": devices},
                 start_time=t0, device=device)
    print(f"results: {out / 'metrics.json'}")


if __name__ == "__main__":
    run_main(main)

"""Script conventions shared by every runnable file in the project.

A script keeps its configuration as plain UPPER_CASE constants at the top (nanoGPT style). This module
turns those constants into a command line (`--NAME=VALUE`, `--quick`, `--help`), seeds everything,
picks the device, and writes results under `outputs/<case folder>/<script name>/` atomically.

    cfg = parse_config(globals())       # applies --quick and --NAME=VALUE to the module's constants
    set_seed(SEED); device = get_device(DEVICE)
    out = output_dir(__file__)          # outputs/02_sentiment/sentiment_lstm/
    save_metrics(out, config=cfg, metrics={...}, history=[...], start_time=t0)
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# LSTM_GRU_OUTPUTS=<folder> redirects every script's results there (06_comparison uses it so its repeated
# seeds never overwrite a learner's own outputs/); unset, results go to <repo>/outputs/.
OUTPUTS_ROOT = (Path(os.environ["LSTM_GRU_OUTPUTS"]).resolve() if os.environ.get("LSTM_GRU_OUTPUTS")
                else REPO_ROOT / "outputs")


class UserError(Exception):
    """A problem the learner can fix (bad option, missing file, wrong format).

    `run_main` prints it as one line, `error: <message>`, and exits with code 2: no traceback.
    """


# ----------------------------------------------------------------------------------------------------
# Command line: --NAME=VALUE overrides of the script's UPPER_CASE constants
# ----------------------------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def _constant_names(namespace: dict) -> list[str]:
    """The script's configuration: UPPER_CASE names bound to simple values, in definition order."""
    simple = (bool, int, float, str, tuple, list, type(None))
    return [k for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and k not in ("QUICK_SETTINGS", "CHOICES")
            and isinstance(v, simple)]


def _comments(source_file: str | None) -> dict[str, str]:
    """`NAME = value  # comment` lines of the script, for --help."""
    if not source_file or not Path(source_file).is_file():
        return {}
    found = {}
    for line in Path(source_file).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)\s*=.*?#\s*(.+)$", line)
        if m and m.group(1) not in found:
            found[m.group(1)] = m.group(2).strip()
    return found


def convert_value(name: str, text: str, default: Any) -> Any:
    """Parse `text` into the type of `default`; raise UserError with a readable message if it can't."""
    kind = type(default)
    try:
        if isinstance(default, bool):
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (tuple, list)):
            text = text.strip()
            value = ast.literal_eval(text) if text[:1] in "([" else [ast.literal_eval(t.strip())
                                                                     if re.match(r"^-?[\d.]+$", t.strip())
                                                                     else t.strip()
                                                                     for t in text.split(",") if t.strip()]
            if not isinstance(value, (tuple, list)):
                value = [value]
            return kind(value)
    except (ValueError, SyntaxError):
        want = {bool: "true or false", int: "an integer", float: "a number",
                tuple: "a comma-separated list", list: "a comma-separated list"}[kind]
        raise UserError(f"--{name} expects {want}, got {text!r}.") from None
    return text  # str, or a constant whose default is None: take the text as it is


def parse_config(namespace: dict, argv: list[str] | None = None) -> dict:
    """Apply the command line to the script's constants and return them as a dict.

    - `--NAME=VALUE` or `--NAME VALUE` (NAME in any case: `--epochs 3` works) overrides a constant, with the
      type of its default; `--quick` applies the script's `QUICK_SETTINGS` (explicit overrides still win);
      `--help` lists every constant with its value and comment.
    - A script may declare `CHOICES = {"IMPL": ("torch", "scratch")}` to restrict values.
    - The new values are written back into `namespace` (the module globals), so the script body simply
      reads its constants.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    names = _constant_names(namespace)
    by_lower = {n.lower(): n for n in names}
    choices = namespace.get("CHOICES", {})
    script = namespace.get("__file__")

    if any(a in ("-h", "--help") for a in argv):
        _print_help(namespace, names, script)
        raise SystemExit(0)

    overrides: dict[str, Any] = {}
    quick = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r}: options look like --NAME=VALUE (see --help).")
        key, eq, text = arg[2:].partition("=")
        if key.lower() == "quick" and "QUICK" not in names:
            quick = _quick_flag(text if eq else "true")
            i += 1
            continue
        name = by_lower.get(key.lower().replace("-", "_"))
        if name is None:
            close = difflib.get_close_matches(key.upper(), names, n=1)
            hint = f" Did you mean --{close[0]}?" if close else " Run with --help to list them."
            raise UserError(f"unknown option --{key}.{hint}")
        if not eq:
            # `--NAME VALUE`, or a bare boolean flag `--NAME`
            if isinstance(namespace[name], bool) and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
                text = "true"
            elif i + 1 < len(argv):
                i += 1
                text = argv[i]
            else:
                raise UserError(f"--{name} needs a value, e.g. --{name}={namespace[name]!r}.")
        overrides[name] = convert_value(name, text, namespace[name])
        i += 1

    if quick or overrides.get("QUICK"):
        for name, value in namespace.get("QUICK_SETTINGS", {}).items():
            if name not in overrides:
                namespace[name] = value
    namespace.update(overrides)
    if "QUICK" in names:
        namespace["QUICK"] = quick or bool(namespace["QUICK"])

    for name, allowed in choices.items():
        if namespace.get(name) not in allowed:
            raise UserError(f"--{name} must be one of {', '.join(map(str, allowed))}; "
                            f"got {namespace.get(name)!r}.")
    config = {n: namespace[n] for n in names}
    config["QUICK"] = bool(quick or namespace.get("QUICK", False))
    return config


def _quick_flag(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UserError(f"--quick expects true or false, got {text!r}.")


def _print_help(namespace: dict, names: list[str], script: str | None) -> None:
    doc = (namespace.get("__doc__") or "").strip()
    prog = Path(script).name if script else "script"
    print(f"usage: python {prog} [--quick] [--NAME=VALUE ...]\n")
    if doc:
        print(doc + "\n")
    comments = _comments(script)
    print("Hyperparameters (edit them at the top of the file, or override here):")
    width = max((len(n) for n in names), default=4) + 2
    for n in names:
        value = repr(namespace[n])
        print(f"  --{n:<{width}} = {value:<14} {comments.get(n, '')}")
    quick = namespace.get("QUICK_SETTINGS")
    if quick:
        print("\n  --quick          tiny data and few epochs for a smoke test: "
              + ", ".join(f"{k}={v!r}" for k, v in quick.items()))
    choices = namespace.get("CHOICES")
    if choices:
        print("\nAllowed values: " + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in choices.items()))


def run_main(main: Callable[[], Any]) -> None:
    """Run a script's main(); a UserError becomes one line on stderr and exit code 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-written was kept (outputs are written atomically).",
              file=sys.stderr)
        raise SystemExit(130)


def apply_device_settings(namespace: dict, defaults: dict, settings: dict, device,
                          quick: bool = False) -> dict:
    """On CUDA, apply a script's GPU_SETTINGS to every constant still at its default (a --NAME=VALUE
    given on the command line wins); never with --quick. Returns {name: value} of what was applied."""
    if device.type != "cuda" or quick:
        return {}
    applied = {k: v for k, v in settings.items() if namespace.get(k) == defaults.get(k)}
    namespace.update(applied)
    if applied:
        print("GPU settings applied: " + ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied


# ----------------------------------------------------------------------------------------------------
# Case folders as modules (their names start with a digit, so they are not packages)
# ----------------------------------------------------------------------------------------------------
def import_case_module(case: str, stem: str):
    """Import <repo>/<case>/<stem>.py, e.g. import_case_module("02_sentiment", "sentiment_model").

    The case folder goes on sys.path, so the module is the same object a script of that folder gets
    with a plain `import sentiment_model` (case module names are unique across folders)."""
    folder = str(REPO_ROOT / case)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(stem)


def load_case_script(script: Path | str, quick: bool = False):
    """Import a runnable script (e.g. 05_seq_classify/sequence_lstm.py) as a module to reuse its
    constants and build_model; with quick=True its QUICK_SETTINGS are applied. Its main() is not run."""
    path = Path(script).resolve()
    if str(path.parent) not in sys.path:  # its sibling case module must be importable
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"case_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if quick:
        for name, value in getattr(module, "QUICK_SETTINGS", {}).items():
            setattr(module, name, value)
    return module


def script_config(module) -> dict:
    """The UPPER_CASE constants of a script module, as parse_config would return them."""
    return {n: getattr(module, n) for n in _constant_names(vars(module))}


# ----------------------------------------------------------------------------------------------------
# Reproducibility and device
# ----------------------------------------------------------------------------------------------------
def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def get_device(preference: str = "auto", verbose: bool = True):
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is unavailable is a UserError."""
    import torch

    preference = (preference or "auto").lower()
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if preference == "auto":
        name = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    elif preference in available:
        if not available[preference]:
            raise UserError(f"--DEVICE={preference} was asked for but is not available here; "
                            "use --DEVICE=auto or --DEVICE=cpu.")
        name = preference
    else:
        raise UserError(f"--DEVICE must be auto, cpu, cuda or mps; got {preference!r}.")
    device = torch.device(name)
    if verbose:
        print(f"device: {describe_device(device)}")
    return device


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device.type


# ----------------------------------------------------------------------------------------------------
# Outputs: every run writes under outputs/<case folder>/<script name>/, atomically
# ----------------------------------------------------------------------------------------------------
def output_dir(script_file: str, sub: str | None = None) -> Path:
    """outputs/<case folder>/<script stem>/ (created). `sub` adds one more level, e.g. a dataset name."""
    script = Path(script_file).resolve()
    out = OUTPUTS_ROOT / script.parent.name / script.stem
    if sub:
        out = out / sub
    out.mkdir(parents=True, exist_ok=True)
    return out


def shown_path(path: Path | str) -> str:
    """A path as a learner would type it: relative to the repo root when inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path) on a temp file beside `path`, then rename it into place.

    A crash or Ctrl-C midway leaves the old file (or none), never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None  # JSON has no NaN/inf
    return x


def save_json(obj: Any, path: Path | str) -> Path:
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False)
    return atomic_write(path, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def save_metrics(out: Path, *, config: dict, metrics: dict, history: list | None = None,
                 extra: dict | None = None, start_time: float | None = None, device=None) -> Path:
    """Write out/metrics.json: config, final metrics, per-epoch history, wall time, device, versions."""
    import torch

    record = {
        "script": out.name,
        "case": out.parent.name if out.parent != OUTPUTS_ROOT else out.name,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_time_s": round(time.time() - start_time, 2) if start_time else None,
        "device": describe_device(device) if device is not None else None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "config": config,
        "metrics": metrics,
        "history": history or [],
    }
    if extra:
        record.update(extra)
    return save_json(record, Path(out) / "metrics.json")


def load_metrics(path: Path | str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def print_table(rows: list[dict], title: str | None = None, floatfmt: str = ".4f") -> str:
    """Print rows of dicts as an aligned text table (and return it)."""
    if not rows:
        return ""
    headers = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    cells = [[fmt(r.get(h)) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = "\n".join("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths))
                     for row in cells)
    text = (f"\n{title}\n" if title else "\n") + f"{line}\n{sep}\n{body}\n"
    print(text)
    return text


def _numeric(s: str) -> bool:
    try:
        float(s.replace("%", "").replace("±", "").split()[0])
        return True
    except (ValueError, IndexError):
        return False

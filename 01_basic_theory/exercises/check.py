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
Exit code 0: everything is right; 1: something is not right (yet); 2: a bad option; 3: a bug in this grader.

中文：检查你写的练习：与本项目自己的实现（01 的参考单元、04 的采样与注意力）和 autograd 逐项对比，float64，
多种随机形状（含 batch 1、有无偏置）。每个量一行：ok，或 wrong 加最大误差和该看 THEORY.md 的哪个公式。
先检查前向，前向对了才检查反向。退出码 0 表示全部正确。
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # repo root on the path

import contextlib
import inspect
import io
import itertools
import traceback
import types
from types import SimpleNamespace

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
                "attention", "topk_topp") = "lstm"  # which exercise (the list: --help)
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
        try:
            code = compile(self.path.read_bytes(), str(self.path), "exec")
            with self._captured():
                exec(code, module.__dict__)
        except (Exception, SystemExit) as e:
            raise NotDone([f"{shown_path(self.path)} could not be loaded: it raised "
                           f"{type(e).__name__} / 文件无法载入:", *self._their_traceback(e)]) from None
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
            self.err[name] = max(self.err[name], err)
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
                what += f" in the rows of gate {gates} (gate order {', '.join(letters)})"
            what += f", {len(failed)} of {len(seen)} cases"
            only = [t for t in failed[0].tags if all(t in c.tags for c in failed)
                    and not any(t in c.tags for i, c in seen.items() if i not in self.failed[name])]
            if only:
                what += f" (only those with {' and '.join(only)})"
        return f"  {name}: wrong \u2014 {what}; {hint(*self.hints[name])}"

    def print_lines(self):
        for name in self.names:
            print(self.line(name))
        return self.all_ok()


def hint(equations, section):
    return f"look at {equations} in THEORY.md {section} / 请检查 THEORY.md {section} 的 {equations}"


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
                           blocks, diagnose=None):
    """The forward's outputs (all but the last, the cache) on every case, then the backward's, if the
    forward is right.

    fwd_spec, bwd_spec: (name, signature, returns, THEORY section); fwd_args(case), bwd_args(case, cache): the
    arguments; probe(case): arguments to tell a blank backward; optional(name, case): None accepted (a bias
    gradient without biases); diagnose(tally): a note after the backward's lines.
    Returns (all right, the quantities, those wrong)."""
    fwd_name, fwd_sig, fwd_out, fwd_sec = fwd_spec
    bwd_name, bwd_sig, bwd_out, bwd_sec = bwd_spec
    fwd_names = list(fwd_out[:-1])
    names = fwd_names + list(bwd_out)
    header(fwd_name, fwd_sig, fwd_out)
    tally, caches, fwd_ok, fwd_wrong = Tally(fwd_names, hints), [], False, []
    try:
        fwd = learner.function(fwd_name, fwd_sig)
        for case in cases:
            args = [a.clone() if isinstance(a, torch.Tensor) else a for a in fwd_args(case)]
            value = unpack(learner.call(fwd, args, case.label, fwd_sec), fwd_out, fwd_name)
            for name, got in zip(fwd_names, value):
                tally.compare(name, got, case.ref[name], case)
            caches.append(value[-1])
        fwd_ok = tally.print_lines()
        fwd_wrong = tally.wrong()
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
            return False, names, fwd_wrong
        for case, cache in zip(cases, caches):
            value = unpack(learner.call(bwd, bwd_args(case, cache), case.label, bwd_sec), bwd_out, bwd_name)
            for name, got in zip(bwd_out, value):
                btally.compare(name, got, case.ref[name], case, optional=optional(name, case))
        ok = btally.print_lines()
        if diagnose:
            diagnose(btally)
        return ok, names, btally.wrong()
    except NotDone as e:
        print("\n".join("  " + line for line in e.lines))
        if not e.blank:
            not_checked(bwd_out, f"{bwd_name} did not finish (above)")
        return False, names, []


def grade_functions(learner, specs):
    """specs: [(name, signature, returns, section, hints, cases)], each case with .args and
    .ref {output: tensor}. Every function is graded on its own; a function that returns one tensor gives
    its own name to the line."""
    ok_all, names, wrong = True, [], []
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
            ok_all &= tally.print_lines()
            wrong += tally.wrong()
        except NotDone as e:
            print("\n".join("  " + line for line in e.lines))
            if not e.blank:
                not_checked(lines, f"{fn_name} did not finish (above)")
            ok_all = False
    return ok_all, names, wrong


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
        diagnose=diagnose_lstm if lstm else None)


def diagnose_lstm(tally):
    """When everything that reads δa_t is wrong, say so: the mistake sits before (LB6), not in it."""
    reads_da = ("dx", "dh", "dw_ih", "dw_hh", "db")
    if all(not tally.ok(n) for n in reads_da) and tally.ok("dc"):
        gates = sorted(set().union(*(tally.bad_blocks[n] for n in ("dw_ih", "dw_hh", "db"))),
                       key="ifgo".index)
        where = f" (gate {', '.join(gates)})" if gates and len(gates) < 4 else ""
        print(f"  note: dx, dh, dw_ih, dw_hh and db all come from δa_t{where}, and dc is right: look at "
              "(LB1), (LB3), (LB5) in THEORY.md §4.1 / 它们都来自 δa_t，请检查 (LB1)、(LB3)、(LB5)")


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


def grade_bptt(learner, gen):
    ref_forward = load_theory_module("lstm_from_scratch").lstm_cell_forward
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
    print(f"{len(cases)} sequences in float64 (1 to 5 steps, batch 1 included, with and without biases); the "
          "reference is 01's lstm_cell_forward step by step, and autograd through the whole sequence")
    for case in cases:
        zeros = torch.zeros(4 * case.H, dtype=torch.float64)
        leaves = [t.clone().requires_grad_(True) for t in (case.x, case.h0, case.c0, case.w_ih, case.w_hh,
                                                          case.b_ih if case.bias else zeros,
                                                          case.b_hh if case.bias else zeros)]
        x, h, c = leaves[:3]
        outs = []
        for t in range(case.T):
            h, c, _ = ref_forward(x[t], h, c, *leaves[3:])
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
        blocks={n: ("i", "f", "g", "o") for n in ("dw_ih", "dw_hh", "db")})


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
    return ok_all, names, wrong


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


def still_to_do(learner, path, wrong):
    """The last line of a grade that is not all right: what to write, what raised, what is wrong."""
    blank, raised = list(dict.fromkeys(learner.blank)), list(dict.fromkeys(learner.raised))
    todo = []
    if blank:
        todo.append(f"write {', '.join(blank)} (the TODOs in {shown_path(path)})")
    if raised:
        todo.append(f"fix {', '.join(raised)}: {'it' if len(raised) == 1 else 'each'} raised an exception "
                    "(above)")
    if wrong:
        todo.append(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong"
                    + ("; start with the first" if len(wrong) > 1 else ""))
    zh = "还没完成：" + "；".join(([f"请按 TODO 写出 {', '.join(blank)}"] if blank else [])
                              + ([f"{', '.join(raised)} 抛出了异常"] if raised else [])
                              + ([f"{len(wrong)} 项不对，先改第一项"] if wrong else [])) + "。"
    if not todo:
        return "Not done yet: see the lines above. / 还没完成，请看上面的提示。"
    return f"Not done yet: {'; '.join(todo)}. / {zh}"


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
        print("\nNot done yet: the file must load first. / 文件需要先能正常载入。")
        return False
    if exercise in ("lstm", "gru"):
        ok, names, wrong = grade_cell(learner, exercise, gen)
    elif exercise == "bptt":
        ok, names, wrong = grade_bptt(learner, gen)
    elif exercise == "tbptt":
        ok, names, wrong = grade_tbptt(learner, gen)
    else:
        specs = {"masked_pool": masked_pool_specs, "attention": attention_specs, "topk_topp": topk_topp_specs}
        ok, names, wrong = grade_functions(learner, specs[exercise](gen))
    printed = learner.printed_lines()
    if printed:
        print(f"\n(your code printed {len(printed)} line{'s' if len(printed) > 1 else ''} while it was "
              "graded; the first ones:)")
        print("\n".join(f"  | {line}" for line in printed[:5]))
    if not ok:
        print("\n" + still_to_do(learner, path, wrong))
        return False
    print(f"\nAll right: {', '.join(names)}. / 全部正确！")
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

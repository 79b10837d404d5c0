"""01_basic_theory/exercises: the grader accepts correct code written by anyone and names exactly what a
bug breaks.

01's own cells pass (run as a learner runs the grader); so do independent implementations written here, with
another cache layout; copies of them with one seeded bug fail on exactly the quantities the bug breaks; the
blank templates say "not implemented yet"; nothing the learner's code does ends in a traceback of the
grader's.
"""
import itertools
import re
import textwrap

import pytest
from conftest import ROOT, run_script

from utils.script_utils import load_case_script

CHECK = "01_basic_theory/exercises/check.py"
check = load_case_script(ROOT / CHECK)
LINE = re.compile(r"^  (\w+): (ok|wrong|not checked)", re.M)


def grade(exercise, source, tmp_path, capsys, name=None):
    """Write `source` to a file of its own and grade it in this process
    -> (all right, output, {name: status})."""
    path = tmp_path / (name or f"{exercise}_answer.py")
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    ok = check.grade(exercise, path)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    return ok, out, dict(LINE.findall(out))


def wrong(status):
    return {name for name, s in status.items() if s == "wrong"}


def seeded(source, old, new):
    """A copy of a correct implementation with one change."""
    assert source.count(old) == 1, old
    return source.replace(old, new)


# ---------------------------------------------------------------------------------------------
# Correct implementations, written independently of 01's (another cache layout)
# ---------------------------------------------------------------------------------------------
LSTM = """
import torch


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    H = h.shape[1]
    pre = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        pre = pre + (b_ih + b_hh)
    i = torch.sigmoid(pre[:, :H])
    f = torch.sigmoid(pre[:, H:2 * H])
    g = torch.tanh(pre[:, 2 * H:3 * H])
    o = torch.sigmoid(pre[:, 3 * H:])
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    cache = {"inputs": (x, h, c), "weights": (w_ih, w_hh), "gates": torch.stack([i, f, g, o]), "c_new": c_new}
    return h_new, c_new, cache


def lstm_cell_backward(dh_new, dc_new, cache):
    x, h, c = cache["inputs"]
    w_ih, w_hh = cache["weights"]
    i, f, g, o = cache["gates"]
    t = torch.tanh(cache["c_new"])
    d_o = dh_new * t
    d_c = dc_new + dh_new * o * (1 - t * t)
    d_pre_i = d_c * g * i * (1 - i)
    d_pre_f = d_c * c * f * (1 - f)
    d_pre_g = d_c * i * (1 - g * g)
    d_pre_o = d_o * o * (1 - o)
    d_pre = torch.cat([d_pre_i, d_pre_f, d_pre_g, d_pre_o], dim=1)
    dc = d_c * f
    return d_pre @ w_ih, d_pre @ w_hh, dc, d_pre.T @ x, d_pre.T @ h, d_pre.sum(0)
"""

GRU = """
from types import SimpleNamespace

import torch


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    H = h.shape[1]
    gi, gh = x @ w_ih.T, h @ w_hh.T
    if b_ih is not None:
        gi, gh = gi + b_ih, gh + b_hh
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:]
    n = torch.tanh(gi[:, 2 * H:] + r * hn)
    h_new = n + z * (h - n)
    return h_new, SimpleNamespace(x=x, h=h, w_ih=w_ih, w_hh=w_hh, r=r, z=z, n=n, hn=hn)


def gru_cell_backward(dh_new, k):
    d_n = dh_new * (1 - k.z)
    d_z = dh_new * (k.h - k.n)
    d_an = d_n * (1 - k.n ** 2)
    d_ar = d_an * k.hn * k.r * (1 - k.r)
    d_az = d_z * k.z * (1 - k.z)
    d_gi = torch.cat([d_ar, d_az, d_an], 1)
    d_gh = torch.cat([d_ar, d_az, d_an * k.r], 1)
    dx = d_gi @ k.w_ih
    dh = dh_new * k.z + d_gh @ k.w_hh
    db_ih = d_gi.sum(0)
    db_hh = d_gh.sum(0)
    return dx, dh, d_gi.T @ k.x, d_gh.T @ k.h, db_ih, db_hh
"""

BPTT = """
import torch

from lstm_from_scratch import lstm_cell_backward, lstm_cell_forward


def bptt_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    h, c, outs, caches = h0, c0, [], []
    for t in range(x.shape[0]):
        h, c, cache = lstm_cell_forward(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        outs.append(h)
        caches.append(cache)
    return torch.stack(outs), h, c, caches


def bptt_backward(d_out, d_hn, d_cn, caches):
    T = len(caches)
    dh, dc = d_hn + d_out[T - 1], d_cn
    dxs, dw_ih, dw_hh, db = [None] * T, 0, 0, 0
    for t in reversed(range(T)):
        dxs[t], dh_prev, dc, gw_ih, gw_hh, gb = lstm_cell_backward(dh, dc, caches[t])
        dw_ih = dw_ih + gw_ih
        dw_hh = dw_hh + gw_hh
        db = db + gb
        dh = dh_prev + d_out[t - 1] if t > 0 else dh_prev
    return torch.stack(dxs), dh, dc, dw_ih, dw_hh, db
"""

MASKED_POOL = """
import torch


def valid(out, lengths):
    return (torch.arange(out.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)


def masked_mean(out, lengths):
    return (out * valid(out, lengths)).sum(1) / lengths[:, None].to(out.dtype)


def masked_max(out, lengths):
    return out.masked_fill(~valid(out, lengths), float("-inf")).amax(1)
"""

TBPTT = """
def detach_state(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def run_chunks(rnn, chunks, state=None):
    outputs = []
    for chunk in chunks:
        out, state = rnn(chunk, detach_state(state))
        outputs.append(out)
    return outputs, state
"""

ATTENTION = """
import torch


def attention_step(d, memory, mask, w_a, w_c, b_c):
    scores = torch.einsum("bh,bsh->bs", d, memory @ w_a.T)
    alpha = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    context = torch.einsum("bs,bsm->bm", alpha, memory)
    tilde = torch.tanh(torch.cat([context, d], dim=1) @ w_c.T + b_c)
    return alpha, context, tilde
"""

TOPK_TOPP = """
import torch


def top_k_filter(probs, k):
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    kth = torch.topk(probs, k, dim=-1).values[..., -1:]
    kept = probs * (probs >= kth)
    return kept / kept.sum(-1, keepdim=True)


def top_p_filter(probs, p):
    if p >= 1:
        return probs
    ranked, order = torch.sort(probs, dim=-1, descending=True)
    before = torch.cumsum(ranked, -1) - ranked
    keep = torch.empty_like(ranked).scatter_(-1, order, (before < p).to(probs.dtype))
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)
"""

CORRECT = {"lstm": LSTM, "gru": GRU, "bptt": BPTT, "masked_pool": MASKED_POOL, "tbptt": TBPTT,
           "attention": ATTENTION, "topk_topp": TOPK_TOPP}


# ---------------------------------------------------------------------------------------------
# As a learner runs it: 01's own cells pass, a template says "not implemented yet"
# ---------------------------------------------------------------------------------------------
def test_01_cells_pass_as_a_learner_runs_it():
    result = run_script(CHECK, "--EXERCISE=lstm", "--FILE=01_basic_theory/lstm_from_scratch.py", timeout=120)
    assert set(LINE.findall(result.stdout)) == {(n, "ok") for n in ("h_new", "c_new", "dx", "dh", "dc",
                                                                    "dw_ih", "dw_hh", "db")}
    assert ("they agree" in result.stdout and "lstm_sequence_forward" in result.stdout
            and "§7" in result.stdout)


def test_a_template_exits_1_saying_not_implemented(capsys):
    with pytest.raises(SystemExit) as exit_:
        check.run_main(lambda: check.main(["--EXERCISE=gru"]))   # what `check.py --EXERCISE=gru` runs
    out, err = capsys.readouterr()
    assert exit_.value.code == 1 and not err
    assert "not implemented yet: gru_cell_forward (THEORY.md §3)" in out
    assert "not implemented yet: gru_cell_backward (THEORY.md §4.2)" in out
    assert "Traceback" not in out


def test_01_gru_cell_passes(capsys):
    assert check.grade("gru", ROOT / "01_basic_theory" / "gru_from_scratch.py")
    out = capsys.readouterr().out
    assert set(dict(LINE.findall(out)).values()) == {"ok"} and "torch.nn.GRU" in out and "they agree" in out


@pytest.mark.parametrize("exercise", sorted(check.EXERCISES))
def test_every_template_is_blank(exercise, capsys):
    assert not check.grade(exercise, check.HERE / check.EXERCISES[exercise][0])
    out = capsys.readouterr().out
    blanks = re.findall(r"not implemented yet: (\w+) \(THEORY\.md §", out)
    assert blanks and "Traceback" not in out and "wrong" not in out
    assert f"Not done yet: write {', '.join(blanks)}" in out


# ---------------------------------------------------------------------------------------------
# Correct code by someone else passes; one bug fails on exactly what it breaks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exercise", sorted(CORRECT))
def test_an_independent_correct_implementation_passes(exercise, tmp_path, capsys):
    ok, out, status = grade(exercise, CORRECT[exercise], tmp_path, capsys)
    assert ok, out
    assert status and set(status.values()) == {"ok"}


def test_04s_own_filters_pass(capsys):
    assert check.grade("topk_topp", ROOT / "04_text_gen" / "char_model.py")


BUGS = {
    # a gate with the wrong nonlinearity: the forward is wrong, so the backward is not checked
    "lstm_nonlinearity": ("lstm", LSTM, "g = torch.tanh(pre", "g = torch.sigmoid(pre", {"h_new", "c_new"}),
    # sigma' without (1 - sigma) on the forget gate: everything that reads da is wrong, dc is not
    "lstm_derivative": ("lstm", LSTM, "d_c * c * f * (1 - f)", "d_c * c * f",
                        {"dx", "dh", "dw_ih", "dw_hh", "db"}),
    "lstm_dc_without_f": ("lstm", LSTM, "dc = d_c * f", "dc = d_c", {"dc"}),
    "gru_db_hh_is_db_ih": ("gru", GRU, "db_hh = d_gh.sum(0)", "db_hh = d_gi.sum(0)", {"db_hh"}),
    "gru_direct_path_dropped": ("gru", GRU, "dh = dh_new * k.z + d_gh @ k.w_hh", "dh = d_gh @ k.w_hh",
                                {"dh"}),
    "bptt_not_summed": ("bptt", BPTT, "dw_ih = dw_ih + gw_ih", "dw_ih = gw_ih", {"dw_ih"}),
    "bptt_output_gradient_dropped": ("bptt", BPTT, "dh = dh_prev + d_out[t - 1] if t > 0 else dh_prev",
                                     "dh = dh_prev", {"dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"}),
    "mean_over_padding": ("masked_pool", MASKED_POOL, "/ lengths[:, None].to(out.dtype)", "/ out.shape[1]",
                          {"masked_mean"}),
    "max_over_padding": ("masked_pool", MASKED_POOL, 'out.masked_fill(~valid(out, lengths), float("-inf"))',
                         "out", {"masked_max"}),
    "no_detach": ("tbptt", TBPTT, "rnn(chunk, detach_state(state))", "rnn(chunk, state)", {"gradient"}),
    "state_not_carried": ("tbptt", TBPTT, "rnn(chunk, detach_state(state))", "rnn(chunk)",
                          {"outputs", "state"}),
    "attention_concat_order": ("attention", ATTENTION, "torch.cat([context, d], dim=1)",
                               "torch.cat([d, context], dim=1)", {"tilde"}),
    "attention_no_mask": ("attention", ATTENTION, 'scores.masked_fill(~mask, float("-inf"))', "scores",
                          {"alpha", "context", "tilde"}),
    "top_k_drops_ties": ("topk_topp", TOPK_TOPP, "probs >= kth", "probs > kth", {"top_k_filter"}),
    "top_p_drops_the_crossing_one": ("topk_topp", TOPK_TOPP, "before < p", "torch.cumsum(ranked, -1) < p",
                                     {"top_p_filter"}),
}


@pytest.mark.parametrize("bug", BUGS)
def test_a_seeded_bug_names_exactly_what_it_breaks(bug, tmp_path, capsys):
    exercise, source, old, new, expected = BUGS[bug]
    ok, out, status = grade(exercise, seeded(source, old, new), tmp_path, capsys)
    assert not ok
    assert wrong(status) == expected, out
    for name in expected:
        line = next(l for l in out.splitlines() if l.startswith(f"  {name}: wrong"))
        assert re.search(r"(max error \d\.\de[+-]\d\d|returned|shape|gradient back)", line), line
        assert "THEORY.md §" in line and "请检查" in line


def test_lstm_hints_point_at_the_equations(tmp_path, capsys):
    _, out, _ = grade("lstm", seeded(LSTM, "dc = d_c * f", "dc = d_c"), tmp_path, capsys)
    assert re.search(r"  dc: wrong \u2014 max error \d\.\de[+-]\d\d, 6 of 6 cases; "
                     r"look at \(LB4\) in THEORY\.md §4\.1 / 请检查 THEORY\.md §4\.1 的 \(LB4\)", out), out
    _, out, _ = grade("lstm", seeded(LSTM, "d_c * c * f * (1 - f)", "d_c * c * f"), tmp_path, capsys)
    assert "db: wrong" in out and "in the rows of gate f (gate order i, f, g, o)" in out
    assert "note: dx, dh, dw_ih, dw_hh and db all come from δa_t (gate f)" in out
    _, out, _ = grade("gru", seeded(GRU, "db_hh = d_gh.sum(0)", "db_hh = d_gi.sum(0)"), tmp_path, capsys)
    assert "db_hh: wrong" in out and "in the rows of gate n (gate order r, z, n)" in out


def test_a_wrong_forward_leaves_the_backward_not_checked(tmp_path, capsys):
    _, out, status = grade("lstm", seeded(LSTM, "g = torch.tanh(pre", "g = torch.sigmoid(pre"), tmp_path,
                           capsys)
    assert all(status[n] == "not checked" for n in ("dx", "dh", "dc", "dw_ih", "dw_hh", "db"))
    assert out.count("not checked: fix the forward first") == 6


def test_a_shape_mistake_says_both_shapes(tmp_path, capsys):
    _, out, status = grade("lstm", seeded(LSTM, "d_pre.T @ h,", "h.T @ d_pre,"), tmp_path, capsys)
    assert wrong(status) == {"dw_hh"}
    assert "dw_hh: wrong \u2014 shape (4, 16), expected (16, 4)" in out  # the first case: hidden 4


def test_a_bias_gradient_may_be_none_without_biases(tmp_path, capsys):
    source = seeded(LSTM, "d_pre.sum(0)\n", "d_pre.sum(0) if cache['biases'] else None\n")
    source = seeded(source, '"c_new": c_new}', '"c_new": c_new, "biases": b_ih is not None}')
    ok, out, _ = grade("lstm", source, tmp_path, capsys)
    assert ok, out
    ok, out, status = grade("lstm", seeded(LSTM, "d_pre.sum(0)\n", "None\n"), tmp_path, capsys)
    assert wrong(status) == {"db"} and "db: wrong \u2014 returned None, expected a tensor of shape" in out


def test_an_exception_in_their_code_shows_their_traceback(tmp_path, capsys):
    source = seeded(LSTM, "    if b_ih is not None:\n        pre = pre + (b_ih + b_hh)",
                    "    pre = pre + (b_ih + b_hh)")
    ok, out, status = grade("lstm", source, tmp_path, capsys, name="student_lstm.py")
    assert not ok
    assert "lstm_cell_forward raised TypeError (case 2: batch 1, input 2, hidden 5, no biases)" in out
    assert re.search(r'File ".*student_lstm\.py", line \d+, in lstm_cell_forward\n'
                     r' +pre = pre \+ \(b_ih \+ b_hh\)', out)
    assert "TypeError: unsupported operand" in out and "check.py" not in out
    assert status == dict.fromkeys(["h_new", "c_new", "dx", "dh", "dc", "dw_ih", "dw_hh", "db"],
                                   "not checked")


@pytest.mark.parametrize("source, says", [
    ("import torch\nraise RuntimeError('left over')\n", "could not be loaded: it raised RuntimeError"),
    ("def lstm_cell_forward(x, h, c:\n    pass\n", "could not be loaded: it raised SyntaxError"),
    ("def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):\n    print('hello'); return x, h\n",
     "lstm_cell_forward returned 2 values; it must return 3: (h_new, c_new, cache)"),
    ("def lstm_cell_forward(x, h, c):\n    return h, c, None\n", "cannot take the 7 arguments"),
    ("def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):\n    import sys; sys.exit(3)\n",
     "lstm_cell_forward raised SystemExit"),
    ("import torch\ndef lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):\n"
     "    return h * float('nan'), c.float(), None\n", "h_new: wrong \u2014 contains nan"),
    ("def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):\n    return [1], c.numpy(), None\n",
     "h_new: wrong \u2014 returned a list, expected a torch tensor of shape (1, 4)"),
])
def test_whatever_their_code_does_is_one_clear_line(source, says, tmp_path, capsys):
    ok, out, _ = grade("lstm", source, tmp_path, capsys)
    assert not ok and says in out, out
    assert "not found: lstm_cell_backward" in out or "could not be loaded" in out


def test_float32_is_named(tmp_path, capsys):
    ok, out, status = grade("lstm", seeded(LSTM, "h_new = o * torch.tanh(c_new)",
                                           "h_new = (o * torch.tanh(c_new)).float()"), tmp_path, capsys)
    assert wrong(status) == {"h_new"} and "dtype torch.float32, expected torch.float64" in out


def test_prints_are_kept_aside(tmp_path, capsys):
    ok, out, _ = grade("lstm",
                       seeded(LSTM, "    H = h.shape[1]\n", "    H = h.shape[1]\n    print('shape', H)\n"),
                       tmp_path, capsys)
    assert ok and "(your code printed" in out and "| shape 4" in out


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["--EXERCISE=lstn"],
     "EXERCISE must be one of lstm, gru, bptt, masked_pool, tbptt, attention, topk_topp"),
    (["--EXERCISE=gru", "--FILE=no/such/file.py"], "--FILE=no/such/file.py: no such file"),
    (["--EXERCISE=gru", f"--FILE={ROOT / 'README.md'}"], "must be a Python file"),
    (["--EXERSISE=gru"], "unknown option --EXERSISE. Did you mean --EXERCISE?"),
])
def test_a_bad_option_is_one_error_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        check.run_main(lambda: check.main(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err


def test_help_lists_the_exercises(capsys):
    with pytest.raises(SystemExit) as exit_:
        check.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert all(f"  {name} " in out for name in check.EXERCISES) and "--FILE" in out


# ---------------------------------------------------------------------------------------------
# Following the gradient: the earliest quantity that explains every wrong one, a number beside each,
# the first time step that goes wrong in BPTT, the common slips of a forward
# ---------------------------------------------------------------------------------------------
WORST = re.compile(r"^      largest error at (\w+)\[[\d, ]+\] \(case \d+(?:, gate \w)?\): "
                   r"yours ([+-]\d+\.\d{4}), expected ([+-]\d+\.\d{4}) / 误差最大处", re.M)


def run_as_a_learner(exercise, files, tmp_path, capsys=None):
    """Write the learner's files into tmp_path and run `check.py --EXERCISE=... --FILE=...` as a learner does
    -> (exit code, output). The first file is the one graded. With capsys: the same command line in this
    process (check.main, as `python check.py` runs it), without the start-up of a new Python."""
    for name, source in files.items():
        (tmp_path / name).write_text(textwrap.dedent(source), encoding="utf-8")
    argv = [f"--EXERCISE={exercise}", f"--FILE={tmp_path / next(iter(files))}"]
    if capsys is None:
        result = run_script(CHECK, *argv, timeout=120, check=False)
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        with pytest.raises(SystemExit) as exit_:
            check.run_main(lambda: check.main(argv))
        (out, err), code = capsys.readouterr(), exit_.value.code
    assert "Traceback" not in out + err, err
    return code, out


def lines_of(out, name):
    """A quantity's line and the line under it."""
    lines = out.splitlines()
    k = next(k for k, line in enumerate(lines) if line.startswith(f"  {name}: "))
    return lines[k], lines[k + 1]


def test_tanh_derivative_missing_in_lb2_names_dc_t(tmp_path):
    source = seeded(LSTM, "d_c = dc_new + dh_new * o * (1 - t * t)", "d_c = dc_new + dh_new * o")
    code, out = run_as_a_learner("lstm", {"lstm_cell.py": source}, tmp_path)
    assert code == 1
    status = dict(LINE.findall(out))
    assert wrong(status) == {"dx", "dh", "dc", "dw_ih", "dw_hh", "db"}, out
    for name in ("dx", "dh", "dc", "dw_ih", "dw_hh", "db"):   # each traced to δc_t, not to its own equation
        assert "comes from δc_t: look at (LB2) in THEORY.md §4.1 / 来自 δc_t" in lines_of(out, name)[0]
    assert "in the rows of gates i, f, g (gate order i, f, g, o)" in lines_of(out, "db")[0]
    assert ("提示：dx、dh、dc、dw_ih、dw_hh 和 db 都来自 δc_t（门 i、f、g 的行错了，门 o 的行是对的）："
            "先查 THEORY.md §4.1 的 (LB2)") in out
    assert "note: dx, dh, dc, dw_ih, dw_hh and db all come from δc_t" in out and "tanh'" in out
    # "start with" is the first gradient in backward order, never dx's (LB6)
    assert "start with δc_t, (LB2) in THEORY.md §4.1." in out
    assert "先从 δc_t（THEORY.md §4.1 的 (LB2)）改起" in out
    assert "start with the first" not in out and "(LB6)" not in out


def test_a_slip_in_gb1_names_dn_t(tmp_path, capsys):
    code, out = run_as_a_learner("gru", {"gru_cell.py": seeded(GRU, "d_n = dh_new * (1 - k.z)",
                                                               "d_n = dh_new * k.z")}, tmp_path, capsys)
    assert code == 1
    assert wrong(dict(LINE.findall(out))) == {"dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"}, out
    assert "in the rows of gates r, n (gate order r, z, n)" in lines_of(out, "dw_ih")[0]
    assert "comes from δn_t: look at (GB1), (GB2) in THEORY.md §4.2" in lines_of(out, "dx")[0]
    assert "note: dx, dh, dw_ih, dw_hh, db_ih and db_hh all come from δn_t" in out
    assert "start with δn_t, (GB1), (GB2) in THEORY.md §4.2." in out


@pytest.mark.parametrize("exercise, source, old, new", [
    ("lstm", LSTM, "d_c = dc_new + dh_new * o * (1 - t * t)", "d_c = dc_new + dh_new * o"),
    ("lstm", LSTM, "dc = d_c * f", "dc = d_c"),
    ("gru", GRU, "dh = dh_new * k.z + d_gh @ k.w_hh", "dh = d_gh @ k.w_hh"),
    ("bptt", BPTT, "dh = dh_prev + d_out[t - 1] if t > 0 else dh_prev", "dh = dh_prev"),
    ("attention", ATTENTION, 'scores.masked_fill(~mask, float("-inf"))', "scores"),
], ids=["lstm_lb2", "lstm_lb4", "gru_gb6", "bptt_d_out", "attention_mask"])
def test_a_number_is_shown_beside_each_wrong_quantity(exercise, source, old, new, tmp_path, capsys):
    _, out, status = grade(exercise, seeded(source, old, new), tmp_path, capsys)
    shown = {m[0]: m for m in WORST.findall(out)}
    assert wrong(status) and set(shown) == wrong(status), out
    for name, yours, expected in shown.values():
        line, under = lines_of(out, name)
        assert under.startswith(f"      largest error at {name}[")         # right under its own line
        max_error = float(re.search(r"max error (\d\.\de[+-]\d\d)", line)[1])
        assert abs(abs(float(yours) - float(expected)) - max_error) <= 0.05 * max_error + 1e-4, (line, under)


def test_bptt_tells_a_dropped_dc_carry_from_a_dropped_output_gradient(tmp_path, capsys):
    no_dc = seeded(BPTT, "dxs[t], dh_prev, dc, gw_ih", "dxs[t], dh_prev, _, gw_ih")
    no_d_out = seeded(BPTT, "dh = dh_prev + d_out[t - 1] if t > 0 else dh_prev", "dh = dh_prev")
    outs = {}
    for name, source in (("no_dc", no_dc), ("no_d_out", no_d_out)):
        (tmp_path / name).mkdir()
        code, outs[name] = run_as_a_learner("bptt", {"lstm_bptt.py": source}, tmp_path / name, capsys)
        assert code == 1
    notes = {name: [line for line in out.splitlines() if line.startswith(("  提示：", "  note:"))]
             for name, out in outs.items()}
    assert notes["no_dc"] != notes["no_d_out"]
    for name in notes:   # both name the step: the first one counting back from T = 4 that goes wrong
        assert "t = 3 is right, and t = 2, step 2 counting back from T, is the first that goes wrong" \
            in outs[name]
        assert "THEORY.md's (LB8) counts from 1 and calls it t = 3" in outs[name]
        assert "往回数第 2 步 t = 2 第一个出错" in outs[name]
        assert "start with t = 2 (counting back from T = 4), (LB8) in THEORY.md §4.1." in outs[name]
    slip = {name: notes[name][1].split("calls it t = 3): ")[1] for name in notes}   # what that step lacks
    assert slip["no_dc"].startswith("every step uses d_cn as its dc") and "(LB4)" in slip["no_dc"]
    assert "d_out" not in slip["no_dc"] and "the dh here is right" in slip["no_dc"]
    assert slip["no_d_out"].startswith("the dh at this step lacks its own output's gradient d_out[2]")
    assert "the dc carried back is right" in slip["no_d_out"]


def test_bptt_grades_an_imported_cell_as_one_step_first(tmp_path, capsys):
    own = seeded(BPTT, "from lstm_from_scratch import", "from my_cell import")
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    (bad / "my_cell.py").write_text(textwrap.dedent(seeded(LSTM, "d_c = dc_new + dh_new * o * (1 - t * t)",
                                                           "d_c = dc_new + dh_new * o")), encoding="utf-8")
    (good / "my_cell.py").write_text(textwrap.dedent(LSTM), encoding="utf-8")
    ok, out, status = grade("bptt", own, bad, capsys)
    assert not ok and "graded as one step first" in out and "all come from δc_t" in out
    assert "bptt_forward / bptt_backward: not checked: fix your one-step cell first" in out
    assert "start with δc_t, (LB2)" in out and "out" not in status
    ok, out, status = grade("bptt", own, good, capsys)                  # a new my_cell.py, not the one above
    assert ok, out
    assert "Your cell is right as one step; now the sequence." in out and set(status.values()) == {"ok"}


@pytest.mark.parametrize("exercise, source, old, new, says", [
    ("gru", GRU, "h_new = n + z * (h - n)", "h_new = h + z * (n - h)",
     "note: your forward is exactly a common slip: z and 1 − z are swapped"),
    ("gru", GRU, "n = torch.tanh(gi[:, 2 * H:] + r * hn)",
     "n = torch.tanh(gi[:, 2 * H:] + (r * h) @ w_hh[2 * H:].T + (0 if b_hh is None else b_hh[2 * H:]))",
     "r acts before the matrix product, W_hn (r_t ⊙ h_{t−1}), as in Cho et al. 2014"),
    ("gru", GRU, "r = torch.sigmoid(gi[:, :H] + gh[:, :H])\n    z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:",
     "z = torch.sigmoid(gi[:, :H] + gh[:, :H])\n    r = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:",
     "your code takes the three blocks of rows as z, r, n, but w_ih, w_hh and the biases stack them r, z, n"),
    ("lstm", LSTM, "g = torch.tanh(pre[:, 2 * H:3 * H])\n    o = torch.sigmoid(pre[:, 3 * H:])",
     "o = torch.sigmoid(pre[:, 2 * H:3 * H])\n    g = torch.tanh(pre[:, 3 * H:])",
     "your code takes the four blocks of rows as i, f, o, g, but w_ih, w_hh and the biases stack them "
     "i, f, g, o"),
    ("lstm", LSTM, "i = torch.sigmoid(pre[:, :H])\n    f = torch.sigmoid(pre[:, H:2 * H])",
     "f = torch.sigmoid(pre[:, :H])\n    i = torch.sigmoid(pre[:, H:2 * H])",
     "your code takes the four blocks of rows as f, i, g, o"),
    ("lstm", LSTM, "g = torch.tanh(pre", "g = torch.sigmoid(pre", "the candidate g goes through a sigmoid"),
], ids=["gru_z_swapped", "gru_reset_before", "gru_order_zrn", "lstm_order_ifog", "lstm_order_figo",
        "lstm_g_sigmoid"])
def test_a_wrong_forward_names_the_common_slip(exercise, source, old, new, says, tmp_path, capsys):
    ok, out, status = grade(exercise, seeded(source, old, new), tmp_path, capsys)
    assert not ok and says in out, out
    assert "提示：你的前向与一个常见的错误完全吻合" in out and "fix the forward first" in out


def test_every_todo_hint_is_chinese_then_english():
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for template in sorted(check.EXERCISES.values()):
        lines = (check.HERE / template[0]).read_text(encoding="utf-8").splitlines()
        for k, line in enumerate(lines):
            if "# TODO" not in line:
                continue
            block = [line] + [rest for rest in itertools.takewhile(
                lambda x: re.match(r"\s*#      \S", x), lines[k + 1:])]
            zh = [bool(cjk.search(b)) for b in block]
            assert zh[0] and not zh[-1] and zh == sorted(zh, reverse=True), (template[0], block)
    bptt = (check.HERE / "lstm_bptt.py").read_text(encoding="utf-8")
    assert "t = T-1, …, 0" in bptt and "t = T, …, 1" in bptt and "t = T-1, ..., 0" in bptt


CRF_SOLUTION = '''
import torch


def crf_log_partition(emissions, transitions, start, end):
    alpha = start + emissions[0]
    for t in range(1, emissions.shape[0]):
        alpha = torch.logsumexp(alpha[:, None] + transitions{slip}, dim=0) + emissions[t]
    return torch.logsumexp(alpha + end, dim=0)


def viterbi(emissions, transitions, start, end):
    delta, pointers = start + emissions[0], []
    for t in range(1, emissions.shape[0]):
        best, where = (delta[:, None] + transitions).max(dim=0)
        pointers.append(where)
        delta = best + emissions[t]
    tag = int((delta + end).argmax())
    path = [tag]
    for where in reversed(pointers):
        tag = int(where[tag])
        path.append(tag)
    return torch.tensor(path[::-1], dtype=torch.long)
'''


@pytest.mark.parametrize("slip", ["", ".t()"])
def test_the_crf_exercise_grades_the_forward_algorithm_and_viterbi(slip, tmp_path):
    """A right solution passes; A[j, i] in place of A[i, j] (transitions transposed) in (CRF2) is caught."""
    learner = tmp_path / "crf.py"
    learner.write_text(CRF_SOLUTION.replace("{slip}", slip), encoding="utf-8")
    r = run_script(CHECK, "--EXERCISE=crf", f"--FILE={learner}", check=False, timeout=120)
    if not slip:
        assert r.returncode == 0 and "All right: crf_log_partition, viterbi." in r.stdout
    else:
        assert r.returncode != 0 and "crf_log_partition: wrong" in r.stdout and "(CRF2)-(CRF3)" in r.stdout
        assert "viterbi: ok" in r.stdout


def test_the_crf_template_says_what_to_write():
    r = run_script(CHECK, "--EXERCISE=crf", check=False, timeout=120)
    assert r.returncode != 0 and "write crf_log_partition, viterbi" in r.stdout

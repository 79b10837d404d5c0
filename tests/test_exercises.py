"""01_basic_theory/exercises: the grader accepts correct code written by anyone and names exactly what a
bug breaks.

01's own cells pass (run as a learner runs the grader); so do independent implementations written here, with
another cache layout; copies of them with one seeded bug fail on exactly the quantities the bug breaks; the
blank templates say "not implemented yet"; nothing the learner's code does ends in a traceback of the
grader's.
"""
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

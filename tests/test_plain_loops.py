"""01's first sequence forward and backward: a plain loop over the cell (lstm_forward / lstm_backward,
gru_forward / gru_backward), checked in float64 against torch.nn + autograd and against the fast path that
ScratchLSTM / ScratchGRU run (the same equations, reorganised)."""
import pytest
import torch
from conftest import load_theory, run_script

LSTM = load_theory("lstm_from_scratch")
GRU = load_theory("gru_from_scratch")


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _data(T, B, I, H, gates, bias, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    w = [r(gates * H, I) * 0.3,
         r(gates * H, H) * 0.3] + ([r(gates * H) * 0.3, r(gates * H) * 0.3] if bias else [])
    return r, w


CASES = [dict(T=7, B=3, I=4, H=5, bias=True), dict(T=1, B=1, I=2, H=3, bias=True),
         dict(T=5, B=2, I=3, H=4, bias=False)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"T{c['T']}B{c['B']}{'' if c['bias'] else 'nobias'}")
def test_lstm_plain_loop_equals_torch_and_fast_path(case):
    T, B, I, H, bias = case["T"], case["B"], case["I"], case["H"], case["bias"]
    r, w = _data(T, B, I, H, 4, bias, seed=T * 10 + B)
    x, h0, c0, d_out, d_hn, d_cn = r(T, B, I), r(B, H), r(B, H), r(T, B, H), r(B, H), r(B, H)
    out, h_n, c_n, caches = LSTM.lstm_forward(x, h0, c0, *w)
    assert len(caches) == T and out.shape == (T, B, H)
    dx, dh0, dc0, dw_ih, dw_hh, db = LSTM.lstm_backward(d_out, d_hn, d_cn, caches)

    ref = torch.nn.LSTM(I, H, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for p, v in zip(ref.parameters(), w):
            p.copy_(v)
    leaves = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
    r_out, (r_h, r_c) = ref(leaves[0], (leaves[1][None], leaves[2][None]))
    torch.autograd.backward((r_out, r_h[0], r_c[0]), (d_out, d_hn, d_cn))
    for mine, theirs in [(out, r_out), (h_n, r_h[0]), (c_n, r_c[0]), (dx, leaves[0].grad),
                         (dh0, leaves[1].grad), (dc0, leaves[2].grad), (dw_ih, ref.weight_ih_l0.grad),
                         (dw_hh, ref.weight_hh_l0.grad)]:
        assert rel(mine, theirs) < 1e-10
    if bias:
        assert rel(db, ref.bias_ih_l0.grad) < 1e-10 and rel(db, ref.bias_hh_l0.grad) < 1e-10

    f_out, f_h, f_c, saved = LSTM.lstm_sequence_forward(x, h0, c0, *w)
    fast = LSTM.lstm_sequence_backward(d_out, d_hn, d_cn, x, h0, c0, w[0], w[1], *saved)
    for mine, theirs in zip((out, h_n, c_n, dx, dh0, dc0, dw_ih, dw_hh, db), (f_out, f_h, f_c, *fast)):
        assert rel(mine, theirs) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"T{c['T']}B{c['B']}{'' if c['bias'] else 'nobias'}")
def test_gru_plain_loop_equals_torch_and_fast_path(case):
    T, B, I, H, bias = case["T"], case["B"], case["I"], case["H"], case["bias"]
    r, w = _data(T, B, I, H, 3, bias, seed=T * 10 + B + 1)
    x, h0, d_out, d_hn = r(T, B, I), r(B, H), r(T, B, H), r(B, H)
    out, h_n, caches = GRU.gru_forward(x, h0, *w)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = GRU.gru_backward(d_out, d_hn, caches)

    ref = torch.nn.GRU(I, H, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for p, v in zip(ref.parameters(), w):
            p.copy_(v)
    leaves = [t.clone().requires_grad_(True) for t in (x, h0)]
    r_out, r_h = ref(leaves[0], leaves[1][None])
    torch.autograd.backward((r_out, r_h[0]), (d_out, d_hn))
    for mine, theirs in [(out, r_out), (h_n, r_h[0]), (dx, leaves[0].grad), (dh0, leaves[1].grad),
                         (dw_ih, ref.weight_ih_l0.grad), (dw_hh, ref.weight_hh_l0.grad)]:
        assert rel(mine, theirs) < 1e-10
    if bias:
        assert rel(db_ih, ref.bias_ih_l0.grad) < 1e-10 and rel(db_hh, ref.bias_hh_l0.grad) < 1e-10

    f_out, f_h, saved = GRU.gru_sequence_forward(x, h0, *w)
    fast = GRU.gru_sequence_backward(d_out, d_hn, x, h0, w[0], w[1], *saved)
    for mine, theirs in zip((out, h_n, dx, dh0, dw_ih, dw_hh, db_ih, db_hh), (f_out, f_h, *fast)):
        assert rel(mine, theirs) < 1e-12


def test_a_slip_in_the_loop_is_caught():
    """The comparison can fail: dropping d_out[t] (each step's own output gradient) changes dx."""
    r, w = _data(4, 2, 3, 3, 4, True, seed=5)
    x, h0, c0, d_out = r(4, 2, 3), r(2, 3), r(2, 3), r(4, 2, 3)
    zero = torch.zeros(2, 3, dtype=torch.float64)
    _, _, _, caches = LSTM.lstm_forward(x, h0, c0, *w)
    right = LSTM.lstm_backward(d_out, zero, zero, caches)[0]
    only_last = d_out.clone()
    only_last[:-1] = 0
    wrong = LSTM.lstm_backward(only_last, zero, zero, caches)[0]
    assert rel(wrong, right) > 1e-3


@pytest.mark.parametrize("script",
                         ["01_basic_theory/lstm_from_scratch.py", "01_basic_theory/gru_from_scratch.py"])
def test_script_section_2_reports_the_loop_and_the_speed_up(script):
    r = run_script(script, "--quick", "--DEVICE=cpu", timeout=240)
    m = r.metrics["metrics"]
    assert m["loop_vs_torch_max_error"] < 1e-10 and m["loop_vs_fast_max_error"] < 1e-10
    assert m["plain_loop_ms"] > 0 and m["fast_path_ms"] > 0
    assert m["fast_path_speedup"] == pytest.approx(m["plain_loop_ms"] / m["fast_path_ms"])
    assert "== 2. A whole sequence as a loop over that step" in r.stdout

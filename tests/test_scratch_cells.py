"""ScratchLSTM / ScratchGRU (01_basic_theory) against torch.nn.LSTM / torch.nn.GRU.

Outputs, final states and every gradient to 1e-10 in float64 (~1e-5 in float32), finite-difference
gradchecks, the one-step cell backward against autograd, state_dict round trips, torch's errors.
"""
import importlib.util
import re
import sys

import pytest
import torch
import torch.nn as nn
from conftest import ROOT, load_theory, run_script
from torch.nn.utils.rnn import pack_padded_sequence

lstm_mod = load_theory("lstm_from_scratch")
gru_mod = load_theory("gru_from_scratch")
import rnn_common  # noqa: E402  (put on sys.path by the modules above)

CELLS = {"lstm": (lstm_mod.ScratchLSTM, nn.LSTM), "gru": (gru_mod.ScratchGRU, nn.GRU)}

# (num_layers, bidirectional, batch_first, packed, with_hx, bias, batch, seq_len)
CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(num_layers=3, bidirectional=True),
    dict(bidirectional=True, batch_first=True),
    dict(packed=True),
    dict(packed=True, num_layers=2, bidirectional=True, batch=5, seq_len=7),
    dict(packed=True, batch_first=True, with_hx=False, bidirectional=True),
    dict(batch=1),
    dict(seq_len=1, num_layers=2, bidirectional=True),
    dict(batch=1, seq_len=1, packed=True),
    dict(with_hx=False, bias=False, num_layers=2),
]
IDS = [",".join(f"{k}={v}" for k, v in c.items()) or "defaults" for c in CONFIGS]


def assert_close(errors, tol):
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"relative errors above {tol:g}: {bad} (all: {errors})"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_matches_torch_float64(cell, config):
    errors = rnn_common.compare_with_torch(*CELLS[cell], dtype=torch.float64, **config)
    expected = {"output", "h_n", "d_input", "d_params"} | ({"c_n"} if cell == "lstm" else set()) \
        | ({"d_hx"} if config.get("with_hx", True) else set())
    assert set(errors) == expected
    assert_close(errors, 1e-10)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2], CONFIGS[5], CONFIGS[10]],
                         ids=[IDS[0], IDS[2], IDS[5], IDS[10]])
def test_matches_torch_float32(cell, config):
    errors = rnn_common.compare_with_torch(*CELLS[cell], dtype=torch.float32, seq_len=20, **{
        k: v for k, v in config.items() if k != "seq_len"})
    assert_close(errors, 1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_comparison_can_fail(cell):
    """The comparison is real: a 1e-6 change in one weight is detected."""
    scratch_cls, torch_cls = CELLS[cell]
    ref = torch_cls(3, 4, dtype=torch.float64)
    mine = scratch_cls(3, 4, dtype=torch.float64)
    mine.load_state_dict(ref.state_dict())
    with torch.no_grad():
        mine.weight_hh_l0[0, 0] += 1e-6
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert rnn_common.max_rel_error(mine(x)[0], ref(x)[0]) > 1e-10


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("packed,num_layers,bidirectional", [(False, 1, False), (True, 2, True)])
def test_gradcheck(cell, packed, num_layers, bidirectional):
    assert rnn_common.gradcheck_layer(CELLS[cell][0], packed=packed, num_layers=num_layers,
                                      bidirectional=bidirectional)


def test_lstm_cell_backward_matches_autograd():
    torch.manual_seed(0)
    B, I, H = 3, 4, 5
    leaves = [torch.randn(*s, dtype=torch.float64, requires_grad=True)
              for s in [(B, I), (B, H), (B, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]
    h, c, cache = lstm_mod.lstm_cell_forward(*leaves)
    dh, dc = torch.randn_like(h), torch.randn_like(c)
    torch.autograd.backward((h, c), (dh, dc))
    dx, dh_prev, dc_prev, dw_ih, dw_hh, db = lstm_mod.lstm_cell_backward(dh, dc, cache)
    for mine, leaf in zip((dx, dh_prev, dc_prev, dw_ih, dw_hh, db, db), leaves):
        torch.testing.assert_close(mine, leaf.grad, rtol=1e-12, atol=1e-12)


def test_gru_cell_backward_matches_autograd():
    torch.manual_seed(0)
    B, I, H = 3, 4, 5
    leaves = [torch.randn(*s, dtype=torch.float64, requires_grad=True)
              for s in [(B, I), (B, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]]
    h, cache = gru_mod.gru_cell_forward(*leaves)
    dh = torch.randn_like(h)
    h.backward(dh)
    for mine, leaf in zip(gru_mod.gru_cell_backward(dh, cache), leaves):
        torch.testing.assert_close(mine, leaf.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_cell_step_matches_torch_cell(cell):
    """One step of the reference cell equals torch.nn.LSTMCell / GRUCell: the equations are torch's."""
    torch.manual_seed(0)
    ref = (nn.LSTMCell if cell == "lstm" else nn.GRUCell)(3, 4, dtype=torch.float64)
    w = [ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh]
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 4, 4))
    with torch.no_grad():
        if cell == "lstm":
            h1, c1, _ = lstm_mod.lstm_cell_forward(x, h, c, *w)
            h_ref, c_ref = ref(x, (h, c))
            torch.testing.assert_close(c1, c_ref, rtol=1e-12, atol=1e-12)
        else:
            h1, _ = gru_mod.gru_cell_forward(x, h, *w)
            h_ref = ref(x, h)
    torch.testing.assert_close(h1, h_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_round_trip_and_same_init(cell):
    scratch_cls, torch_cls = CELLS[cell]
    kwargs = dict(num_layers=2, bidirectional=True, dtype=torch.float64)
    torch.manual_seed(3)
    ref = torch_cls(3, 4, **kwargs)
    torch.manual_seed(3)
    mine = scratch_cls(3, 4, **kwargs)
    # Same names, shapes, order, and (same seed) the same uniform(-1/sqrt(H), 1/sqrt(H)) draws.
    assert list(mine.state_dict()) == list(ref.state_dict())
    for (n1, p1), (n2, p2) in zip(mine.named_parameters(), ref.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert all(p.abs().max() <= 0.5 for p in mine.parameters())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    # scratch -> torch
    mine.reset_parameters()
    ref.load_state_dict(mine.state_dict())
    torch.testing.assert_close(mine(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)
    # torch -> scratch
    ref.reset_parameters()
    mine.load_state_dict(ref.state_dict())
    torch.testing.assert_close(mine(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_unbatched_input(cell, batch_first, with_hx):
    scratch_cls, torch_cls = CELLS[cell]
    ref = torch_cls(3, 4, num_layers=2, batch_first=batch_first, dtype=torch.float64)
    mine = scratch_cls(3, 4, num_layers=2, batch_first=batch_first, dtype=torch.float64)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, dtype=torch.float64)                      # (T, I): no batch dimension
    hx = None
    if with_hx:
        h = torch.randn(2, 4, dtype=torch.float64)
        hx = (h, torch.randn(2, 4, dtype=torch.float64)) if cell == "lstm" else h
    out_m, st_m = mine(x, hx)
    out_r, st_r = ref(x, hx)
    assert out_m.shape == out_r.shape == (6, 4)
    torch.testing.assert_close(out_m, out_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(st_m, st_r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_packed_output_structure(cell):
    scratch_cls, torch_cls = CELLS[cell]
    ref = torch_cls(3, 4, bidirectional=True, dtype=torch.float64)
    mine = scratch_cls(3, 4, bidirectional=True, dtype=torch.float64)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([2, 5, 3, 3]), enforce_sorted=False)
    out_m, out_r = mine(packed)[0], ref(packed)[0]
    assert type(out_m) is type(out_r)
    assert torch.equal(out_m.batch_sizes, out_r.batch_sizes)
    assert torch.equal(out_m.sorted_indices, out_r.sorted_indices)
    assert torch.equal(out_m.unsorted_indices, out_r.unsorted_indices)
    torch.testing.assert_close(out_m.data, out_r.data, rtol=1e-10, atol=1e-12)


def _bad_calls(cell):
    """(description, input, hx) that torch.nn rejects."""
    L, B, H = 2, 3, 4
    x = torch.randn(5, B, 3)
    good_h = torch.zeros(L, B, H)
    wrap = (lambda h, c=None: (h, good_h if c is None else c)) if cell == "lstm" else (lambda h, c=None: h)
    calls = [
        ("wrong input size", torch.randn(5, B, 7), None),
        ("1-D input", torch.randn(5), None),
        ("4-D input", torch.randn(5, B, 3, 1), None),
        ("wrong hx batch", x, wrap(torch.zeros(L, B + 1, H))),
        ("wrong hx layers", x, wrap(torch.zeros(L + 1, B, H))),
        ("2-D hx for 3-D input", x, wrap(torch.zeros(B, H))),
        ("3-D hx for 2-D input", torch.randn(5, 3), wrap(torch.zeros(L, 1, H))),
        ("float64 input, float32 weights", x.double(), None),
    ]
    if cell == "lstm":
        calls.append(("wrong c size", x, wrap(good_h, torch.zeros(L, B, H + 1))))
    return calls


@pytest.mark.parametrize("cell", CELLS)
def test_bad_input_raises_like_torch(cell):
    scratch_cls, torch_cls = CELLS[cell]
    mine, ref = scratch_cls(3, 4, num_layers=2), torch_cls(3, 4, num_layers=2)
    for what, x, hx in _bad_calls(cell):
        with pytest.raises(Exception) as expected:
            ref(x, hx)
        with pytest.raises(Exception) as got:
            mine(x, hx)
        assert type(got.value) is type(expected.value), f"{what}: {got.value!r} vs torch {expected.value!r}"
        assert str(got.value) == str(expected.value), what


@pytest.mark.parametrize("cell", CELLS)
def test_bad_constructor_arguments(cell):
    scratch_cls, torch_cls = CELLS[cell]
    for args, kwargs in [((3, 0), {}), ((3, 4), dict(num_layers=0)), ((3, 4), dict(dropout=1.5)),
                         ((3.0, 4), {}), ((3, 4), dict(bias=1))]:
        with pytest.raises(Exception) as expected:
            torch_cls(*args, **kwargs)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value)[:20])):
            scratch_cls(*args, **kwargs)


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_eval_matches_and_train_drops(cell):
    scratch_cls, torch_cls = CELLS[cell]
    ref = torch_cls(3, 4, num_layers=3, dropout=0.5, dtype=torch.float64).eval()
    mine = scratch_cls(3, 4, num_layers=3, dropout=0.5, dtype=torch.float64).eval()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(mine(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)
    mine.train()
    torch.manual_seed(0)
    a = mine(x)[0]
    torch.manual_seed(0)
    b = mine(x)[0]
    torch.testing.assert_close(a, b)                       # reproducible under a seed
    assert not torch.allclose(a, ref(x)[0])                # and dropout really acts in training mode


@pytest.mark.parametrize("cell", CELLS)
def test_check_against_torch(cell):
    module = lstm_mod if cell == "lstm" else gru_mod
    assert module.check_against_torch() < 1e-10
    assert module.check_against_torch(dtype=torch.float32) < 1e-4


def test_init_forget_bias_on_both_implementations():
    for layer in (nn.LSTM(3, 4, num_layers=2, bidirectional=True),
                  lstm_mod.ScratchLSTM(3, 4, num_layers=2, bidirectional=True)):
        lstm_mod.init_forget_bias(layer, 1.0)
        for name, p in layer.named_parameters():
            if name.startswith("bias_ih"):
                assert torch.all(p[4:8] == 1.0), name
            if name.startswith("bias_hh"):
                assert torch.all(p[4:8] == 0.0), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda(cell, dtype):
    errors = rnn_common.compare_with_torch(*CELLS[cell], dtype=dtype, device="cuda", packed=True,
                                           num_layers=2, bidirectional=True, seq_len=12, batch=6)
    assert_close(errors, 1e-10 if dtype == torch.float64 else 1e-5)


def test_modules_import_without_side_effects_from_any_cwd(tmp_cwd):
    for stem in ("lstm_from_scratch", "gru_from_scratch"):
        spec = importlib.util.spec_from_file_location(f"fresh_{stem}",
                                                      ROOT / "01_basic_theory" / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(module.main) and callable(module.check_against_torch)
    assert not any(tmp_cwd.iterdir()), "importing must not write files"
    assert not (ROOT / "outputs" / "01_basic_theory" / "fresh_lstm_from_scratch").exists()
    sys.modules.pop("fresh_lstm_from_scratch", None)


@pytest.mark.parametrize("stem", ["lstm_from_scratch", "gru_from_scratch"])
def test_script_runs_end_to_end_quick(stem):
    """The script as a learner runs it: every check passes and the side-by-side curves coincide."""
    m = run_script(f"01_basic_theory/{stem}.py", "--quick", timeout=240).metrics["metrics"]
    assert m["gradcheck"] is True
    assert m["max_error_float64"] < 1e-10 and m["max_error_float32"] < 1e-4
    assert m["max_loss_gap"] < 1e-5
    assert abs(m["final_val_loss_scratch"] - m["final_val_loss_torch"]) < 1e-5

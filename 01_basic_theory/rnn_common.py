"""Shared layer machinery for ScratchLSTM / ScratchGRU (the twins differ only in their cell).

What lives here: parameter registration and init exactly like torch.nn.RNNBase, input / hx checks
with torch's error messages, PackedSequence handling (variable lengths via a per-step mask),
multi-layer / bidirectional stacking with inter-layer dropout, plus small helpers the two demo
scripts share (comparison against torch.nn, the sine-wave task, side-by-side training).
Theory: THEORY.md section 5 (packing) and section 6 (stacking).

ScratchLSTM 和 ScratchGRU 只是循环单元（cell）不同，其余的层级代码都放在这里：和 torch.nn.RNNBase
一模一样的参数注册与初始化；输入和 hx 的检查，报错信息与 torch 相同；PackedSequence 的处理（变长序列
靠逐步的掩码）；多层、双向的堆叠和层间 dropout；还有两个演示脚本共用的小工具（与 torch.nn 对照、
正弦波任务、并排训练）。这个文件不单独运行，由 lstm_from_scratch.py 和 gru_from_scratch.py 导入。
它做的是与 torch 兼容的琐碎工作，第一次阅读可以跳过，先读那两个单元文件。
对应的理论：THEORY.md 第 5 节（打包）和第 6 节（多层与双向）。
"""
import contextlib
import math
import numbers
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


# ---------------------------------------------------------------------------------------------
# Small tensor helpers used by both cells
# ---------------------------------------------------------------------------------------------
def lengths_to_mask(lengths, seq_len, device, dtype):
    """lengths: (B,) int  ->  mask: (T, B, 1) with 1.0 where t < length (the step is real)."""
    steps = torch.arange(seq_len, device=device).unsqueeze(1)            # (T, 1)
    return (steps < lengths.to(device).unsqueeze(0)).unsqueeze(2).to(dtype)  # (T, B, 1)


def previous_states(states, initial, reverse):
    """states: (T, B, H) state after each step, initial: (B, H)  ->  (T, B, H) state *before* each step.

    Forward direction: step t reads state t-1 (initial at t=0). Reverse direction walks t = T-1..0,
    so step t reads state t+1 (initial at t=T-1).
    """
    if reverse:
        return torch.cat([states[1:], initial.unsqueeze(0)], dim=0)
    return torch.cat([initial.unsqueeze(0), states[:-1]], dim=0)


@contextlib.contextmanager
def full_float32():
    """Compare in true float32 on CUDA: cuDNN's RNNs (and, where enabled, matrix products) otherwise use
    TF32 on Ampere-or-newer GPUs, a ~1e-3 relative error that no 1e-4 check survives. A no-op on the CPU."""
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = saved


def max_rel_error(a, b):
    """max |a - b| / max |b|: the error relative to the scale of the reference tensor b."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()   # on the CPU: MPS has no float64
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


# ---------------------------------------------------------------------------------------------
# The layer: a drop-in for torch.nn.LSTM / torch.nn.GRU
# ---------------------------------------------------------------------------------------------
class ScratchRNNBase(nn.Module):
    """Mechanics shared by ScratchLSTM and ScratchGRU (mirrors torch.nn.RNNBase).

    A subclass sets MODE ("LSTM" / "GRU"), GATES (4 / 3), NUM_STATES (2: (h, c) / 1: h) and implements
    `_layer_forward(x, state, weights, mask, reverse) -> (out, state)` for one layer and one direction:
      x: (T, B, I_layer), state: tuple of (B, H), mask: (T, B, 1) or None, out: (T, B, H).
    """
    MODE = None
    GATES = None
    NUM_STATES = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        # Same argument checks (and messages) as torch.nn.RNNBase.
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size != 0:
            raise NotImplementedError(f"{type(self).__name__} does not implement proj_size "
                                      f"(got proj_size={proj_size}); use torch.nn.LSTM for projections")

        self.mode = self.MODE
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        num_directions = 2 if bidirectional else 1

        # Same names, shapes and registration order as torch, so state_dicts are interchangeable
        # and, with the same seed, reset_parameters() draws the very same numbers.
        factory = dict(device=device, dtype=dtype)
        gate_size = self.GATES * hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input = input_size if layer == 0 else hidden_size * num_directions
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                for name, shape in shapes:
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self):
        """torch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self):
        """No-op kept for drop-in compatibility (torch uses it to pack weights for cuDNN)."""

    @property
    def all_weights(self):
        """[[w_ih, w_hh, b_ih, b_hh], ...] per layer and direction, like torch.nn.RNNBase.all_weights."""
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[k:k + per]] for k in range(0, len(names), per)]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def _weights(self, layer, direction):
        """(w_ih (G*H, I_l), w_hh (G*H, H), b_ih (G*H,) | None, b_hh (G*H,) | None)."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        get = lambda name: getattr(self, name + suffix) if self.bias or "weight" in name else None
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    # ---- input checks: same exception types and messages as torch.nn --------------------------
    def _check_input(self, x, expected_dim):
        if x.dtype != self.weight_ih_l0.dtype:
            raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype "
                             f"({self.weight_ih_l0.dtype}). Convert input: "
                             f"input.to({self.weight_ih_l0.dtype}), or convert model: model.to({x.dtype})")
        if x.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {x.dim()}")
        if x.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {x.size(-1)}")

    def _prepare_hx(self, hx, batch, is_batched, like):
        """hx: None | tensor | (h, c)  ->  tuple of NUM_STATES tensors, each (L*D, B, H)."""
        num_directions = 2 if self.bidirectional else 1
        expected = (self.num_layers * num_directions, batch, self.hidden_size)
        if hx is None:
            zeros = torch.zeros(expected, dtype=like.dtype, device=like.device)
            return (zeros,) * self.NUM_STATES
        states = tuple(hx) if self.NUM_STATES == 2 else (hx,)
        if len(states) != self.NUM_STATES or not all(isinstance(s, torch.Tensor) for s in states):
            raise TypeError(f"{self.MODE}: hx must be " +
                            ("a tuple (h_0, c_0) of tensors" if self.NUM_STATES == 2 else "a tensor"))
        want = 3 if is_batched else 2
        if any(s.dim() != want for s in states):
            kind = "batched 3-D" if is_batched else "unbatched 2-D"
            if self.NUM_STATES == 2:
                got = f"({states[0].dim()}-D, {states[1].dim()}-D) tensors"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got {got}")
            raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got "
                               f"{states[0].dim()}-D tensor")
        if not is_batched:
            states = tuple(s.unsqueeze(1) for s in states)
        for k, s in enumerate(states):
            if s.size() != expected:
                which = f"hidden[{k}] size" if self.NUM_STATES == 2 else "hidden size"
                raise RuntimeError(f"Expected {which} {expected}, got {list(s.size())}")
        return states

    # ---- forward: validate, unpack, run every layer and direction, pack back -------------------
    def forward(self, input, hx=None):
        """input: (T, B, I) | (B, T, I) if batch_first | (T, I) unbatched | PackedSequence.

        Returns (output, h_n) for GRU and (output, (h_n, c_n)) for LSTM, exactly like torch.nn:
        output (T, B, D*H) (or PackedSequence), h_n / c_n (L*D, B, H).
        """
        packed = isinstance(input, PackedSequence)
        if packed:
            self._check_input(input.data, expected_dim=2)
            # Padded, in the caller's (unsorted) batch order; lengths: (B,) on the CPU.
            x, lengths = pad_packed_sequence(input)                       # x: (T, B, I)
            is_batched = True
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{self.MODE}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            x = input if is_batched else input.unsqueeze(0 if self.batch_first else 1)
            self._check_input(x, expected_dim=3)
            if self.batch_first:
                x = x.transpose(0, 1)                                      # (B, T, I) -> (T, B, I)
            lengths = None
        seq_len, batch = x.shape[0], x.shape[1]
        states = self._prepare_hx(hx, batch, is_batched, x)

        # Variable lengths (section 5): step t updates only sequences with length > t.
        mask = None
        if lengths is not None and bool((lengths < seq_len).any()):
            mask = lengths_to_mask(lengths, seq_len, x.device, x.dtype)   # (T, B, 1)

        num_directions = 2 if self.bidirectional else 1
        final = [[] for _ in range(self.NUM_STATES)]                     # per state: L*D tensors (B, H)
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(num_directions):
                k = layer * num_directions + direction
                out, new_state = self._layer_forward(
                    layer_input, tuple(s[k] for s in states), self._weights(layer, direction),
                    mask, reverse=direction == 1)
                outputs.append(out)
                for store, s in zip(final, new_state):
                    store.append(s)
            # Bidirectional: concatenate forward and backward features, (T, B, H) x2 -> (T, B, 2H).
            layer_input = torch.cat(outputs, dim=2) if num_directions == 2 else outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        output = layer_input                                               # (T, B, D*H)
        hidden = tuple(torch.stack(store, dim=0) for store in final)      # each (L*D, B, H)

        if packed:
            sorted_indices = input.sorted_indices
            if sorted_indices is not None:                                 # back to the packed order
                output = output.index_select(1, sorted_indices)
                lengths = lengths[sorted_indices.cpu()]
            data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
            output = PackedSequence(data, input.batch_sizes, sorted_indices, input.unsorted_indices)
        else:
            if self.batch_first:
                output = output.transpose(0, 1)
            if not is_batched:
                output = output.squeeze(0 if self.batch_first else 1)
                hidden = tuple(h.squeeze(1) for h in hidden)
        return output, (hidden if self.NUM_STATES == 2 else hidden[0])

    def _layer_forward(self, x, state, weights, mask, reverse):
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Shared by the two demo scripts and the tests: comparisons against torch.nn
# ---------------------------------------------------------------------------------------------
def compare_with_torch(scratch_cls, torch_cls, *, input_size=3, hidden_size=4, num_layers=1,
                       bidirectional=False, batch_first=False, packed=False, batch=3, seq_len=5,
                       with_hx=True, bias=True, dtype=torch.float64, device="cpu", seed=0):
    """Run scratch and torch.nn with identical weights and inputs; return max relative errors.

    Compares output, final states, and gradients of a random linear loss w.r.t. the input, hx and
    every parameter. Returns {"output": e, "h_n": e, ["c_n": e,] "d_input": e, "d_hx": e, "d_params": e}.
    """
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype).to(device)
    ref = torch_cls(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                    bidirectional=bidirectional, device=device, dtype=dtype)
    mine = scratch_cls(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                       bidirectional=bidirectional, device=device, dtype=dtype)
    mine.load_state_dict(ref.state_dict())
    is_lstm = scratch_cls.NUM_STATES == 2
    num_directions = 2 if bidirectional else 1

    x = rand(batch, seq_len, input_size) if batch_first else rand(seq_len, batch, input_size)
    hx = [rand(num_layers * num_directions, batch, hidden_size) for _ in range(scratch_cls.NUM_STATES)]
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
    lengths[torch.randint(0, batch, (1,), generator=gen)] = seq_len       # at least one full length

    def run(model):
        xi = x.clone().requires_grad_(True)
        hi = [h.clone().requires_grad_(True) for h in hx]
        inp = (pack_padded_sequence(xi, lengths, batch_first=batch_first, enforce_sorted=False)
               if packed else xi)
        state = (tuple(hi) if is_lstm else hi[0]) if with_hx else None
        out, hidden = model(inp, state)
        hidden = hidden if is_lstm else (hidden,)
        out_t = out.data if packed else out
        # A random linear loss makes every output element's gradient distinct.
        g = torch.Generator().manual_seed(seed + 1)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=dtype).to(device)).sum()
                   for t in (out_t, *hidden))
        model.zero_grad()
        loss.backward()
        grads = dict(d_input=xi.grad, d_params=torch.cat([p.grad.flatten() for p in model.parameters()]))
        if with_hx:
            grads["d_hx"] = torch.cat([h.grad.flatten() for h in hi])
        return out_t, hidden, grads

    # On CUDA, torch.nn uses cuDNN, which by default computes float32 in TF32 (~1e-3 relative error):
    # compare against full float32 instead.
    with full_float32():
        out_m, hid_m, g_m = run(mine)
        out_r, hid_r, g_r = run(ref)
    errors = {"output": max_rel_error(out_m, out_r), "h_n": max_rel_error(hid_m[0], hid_r[0])}
    if is_lstm:
        errors["c_n"] = max_rel_error(hid_m[1], hid_r[1])
    for key in g_r:
        errors[key] = max_rel_error(g_m[key], g_r[key])
    return errors


def check_against_torch_impl(scratch_cls, torch_cls, device="cpu", dtype=torch.float64):
    """The fast self-check behind each file's check_against_torch(): packed, unsorted,
    variable-length batch through a bidirectional 2-layer stack. Returns the max relative error."""
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    errors = compare_with_torch(scratch_cls, torch_cls, num_layers=2, bidirectional=True, packed=True,
                                batch=4, seq_len=6, dtype=dtype, device=device)
    worst = max(errors.values())
    if not worst <= tol:
        raise AssertionError(f"{scratch_cls.__name__} differs from {torch_cls.__name__} on {device}/{dtype}: "
                             f"max relative error {worst:.2e} > tolerance {tol:.0e} ({errors})")
    return worst


def gradcheck_layer(scratch_cls, packed=True, num_layers=2, bidirectional=True, device="cpu"):
    """torch.autograd.gradcheck on a tiny float64 layer (default: packed, bidirectional, 2 layers): the
    hand-written BPTT against finite differences for input, hx and every weight. Returns True or raises."""
    torch.manual_seed(0)
    hidden, num_directions = 2, 2 if bidirectional else 1
    model = scratch_cls(2, hidden, num_layers=num_layers, bidirectional=bidirectional, device=device,
                        dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(4, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    hx = [torch.randn(num_layers * num_directions, 3, hidden, dtype=torch.float64, device=device,
                      requires_grad=True) for _ in range(scratch_cls.NUM_STATES)]
    lengths = torch.tensor([2, 4, 1])

    def f(x, *rest):
        states, params = rest[:len(hx)], rest[len(hx):]
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        out, hidden = torch.func.functional_call(
            model, dict(zip(names, params)), (inp, states if len(states) == 2 else states[0]))
        hidden = hidden if isinstance(hidden, tuple) else (hidden,)
        return (out.data if packed else out, *hidden)

    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    return torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Shared by the two demo scripts: a small real task, trained twice side by side
# ---------------------------------------------------------------------------------------------
def median_ms(functions, device, reps=5):
    """Time each of functions = {name: fn} `reps` times, interleaved (one round of each, then the next round,
    so a slower moment of the machine hits all alike) after one warm-up round; the median in milliseconds."""
    device = torch.device(device)
    times = {name: [] for name in functions}
    for round_ in range(reps + 1):
        for name, fn in functions.items():
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_:                              # round 0 warms up (allocations, caches)
                times[name].append(time.perf_counter() - t0)
    return {name: sorted(v)[len(v) // 2] * 1e3 for name, v in times.items()}


def make_sine_task(num_series, seq_len, seed=0, noise=0.02):
    """Next-value prediction on sine waves with random frequency and phase.

    Returns x: (N, T, 1) the first T values, y: (N, 1) the value that follows.
    """
    gen = torch.Generator().manual_seed(seed)
    freq = 0.05 + 0.25 * torch.rand(num_series, 1, generator=gen)       # radians per step
    phase = 2 * math.pi * torch.rand(num_series, 1, generator=gen)
    t = torch.arange(seq_len + 1, dtype=torch.float32).unsqueeze(0)      # (1, T+1)
    wave = torch.sin(freq * t + phase) + noise * torch.randn(num_series, seq_len + 1, generator=gen)
    return wave[:, :-1].unsqueeze(2), wave[:, -1:]


class SequenceRegressor(nn.Module):
    """rnn (batch_first) -> last time step's hidden state (B, H) -> Linear -> (B, 1)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 1)

    def forward(self, x):                       # x: (B, T, 1)
        out, _ = self.rnn(x)                    # out: (B, T, D*H)
        return self.head(out[:, -1])            # (B, 1)


def train_side_by_side(scratch_rnn, torch_rnn, x_train, y_train, x_val, y_val, *, epochs, batch_size,
                       lr, seed, log=print, progress=None):
    """Train scratch and torch.nn models from the same init on the same batch order.

    Returns history: one dict per epoch with train/val MSE of both models, their gradient norms and
    their max weight gap. `progress` (a utils.training.ProgressLog) watches both as two runs,
    "scratch" and "torch", whose curves should coincide.
    """
    torch.manual_seed(seed)
    device = next(torch_rnn.parameters()).device
    models = {"scratch": SequenceRegressor(scratch_rnn).to(device),
              "torch": SequenceRegressor(torch_rnn).to(device)}
    models["scratch"].load_state_dict(models["torch"].state_dict())   # identical starting point
    # see compare_with_torch
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        return _train_loop(models, x_train, y_train, x_val, y_val, epochs, batch_size, lr, seed, device, log,
                           progress)


def _grad_norm(model) -> float:
    """||g||: the norm of all the model's gradients as one vector (what clipping would compare,
    THEORY.md §9)."""
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()
                                                       if p.grad is not None])))


def _train_loop(models, x_train, y_train, x_val, y_val, epochs, batch_size, lr, seed, device, log, progress):
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    runs = {k: progress.for_run(k) for k in models} if progress is not None else {}
    for run in runs.values():
        run.start(epochs)
    loss_fn = nn.MSELoss()
    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + epoch))
        sums = {k: 0.0 for k in models}       # loss x batch size
        norms = {k: 0.0 for k in models}      # gradient norms, summed over steps
        seconds = {k: 0.0 for k in models}    # each model's own training time
        steps = 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            for k, model in models.items():                            # same batch for both
                t0 = time.perf_counter()
                model.train()
                loss = loss_fn(model(xb), yb)
                optimizers[k].zero_grad()
                loss.backward()
                norms[k] += _grad_norm(model)                          # measured only: no clipping here
                optimizers[k].step()
                sums[k] += loss.item() * len(idx)
                seconds[k] += time.perf_counter() - t0
            steps += 1
        row = {"epoch": epoch}
        for k, model in models.items():
            model.eval()
            with torch.no_grad():
                row[f"{k}_train_loss"] = sums[k] / len(order)
                row[f"{k}_val_loss"] = loss_fn(model(x_val.to(device)), y_val.to(device)).item()
            row[f"{k}_grad_norm"] = norms[k] / steps                    # mean over the epoch's steps
        row["max_weight_gap"] = max((a - b).abs().max().item() for a, b in
                                    zip(models["scratch"].parameters(), models["torch"].parameters()))
        history.append(row)
        log(f"  epoch {epoch:3d}  train MSE scratch {row['scratch_train_loss']:.6f}  "
            f"torch {row['torch_train_loss']:.6f}  | val scratch {row['scratch_val_loss']:.6f}  "
            f"torch {row['torch_val_loss']:.6f}")
        for k, run in runs.items():                                    # one row per model, same columns
            run.epoch({"epoch": epoch, "train_loss": row[f"{k}_train_loss"], "val_loss": row[f"{k}_val_loss"],
                       "lr": lr, "grad_norm": row[f"{k}_grad_norm"], "clipped": 0.0,
                       "samples_per_s": round(len(order) / max(seconds[k], 1e-9), 1),
                       "max_weight_gap": row["max_weight_gap"]})
    for k, run in runs.items():
        run.end({"final_val_loss": history[-1][f"{k}_val_loss"],
                 "max_weight_gap": history[-1]["max_weight_gap"]})
    return history

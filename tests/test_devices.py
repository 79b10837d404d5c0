"""The GPU and Mac paths, tested on the CPU: float64 checks go to the CPU where the device has no float64
(Apple's MPS), clocks wait for MPS too, whole splits go through a model in bounded batches, 06 keys reuse and
parameter matching on the device, cuDNN comparisons run without TF32, and one script trains with its
GPU_SETTINGS applied (at a reduced data size) so that path runs in CI at all."""
import json
import sys

import pytest
import torch
from conftest import ROOT, load_theory

from utils import model_utils, script_utils
from utils.script_utils import UserError, float64_device, load_case_script

MPS = torch.device("mps")          # a device object needs no hardware; nothing may allocate on it here


def test_float64_device_moves_only_mps_to_the_cpu():
    assert float64_device(MPS) == torch.device("cpu")
    assert float64_device("mps") == torch.device("cpu")
    assert float64_device("cuda") == torch.device("cuda")
    assert float64_device(torch.device("cpu")) == torch.device("cpu")


def test_synchronize_waits_for_mps_and_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("cuda"))
    for device in (MPS, torch.device("cuda"), torch.device("cpu"), "mps"):
        script_utils.synchronize(device)
    assert calls == ["mps", "cuda", "mps"]


@pytest.mark.parametrize("stem, cls",
                         [("lstm_from_scratch", "ScratchLSTM"), ("gru_from_scratch", "ScratchGRU")])
def test_the_float64_comparisons_run_on_the_cpu_on_a_mac(stem, cls, monkeypatch):
    module = load_theory(stem)
    seen = []

    def fake_compare(scratch_cls, torch_cls, *, dtype, device, **kw):
        seen.append((dtype, torch.device(device).type))
        return {"output": 0.0}
    monkeypatch.setattr(module, "compare_with_torch", fake_compare)
    module.compare_configurations(MPS)
    assert {d for t, d in seen if t == torch.float64} == {"cpu"}      # float64: the CPU
    assert {d for t, d in seen if t == torch.float32} == {"mps"}      # float32: the learner's device


def test_check_scratch_runs_its_float64_check_on_the_cpu_and_explains_a_failure(monkeypatch, capsys):
    lstm = model_utils.load_theory_module("lstm_from_scratch")
    asked = []
    monkeypatch.setattr(lstm, "check_against_torch", lambda device="cpu": asked.append(device) or 1e-16)
    monkeypatch.setattr(model_utils, "_CHECKED", set())
    model_utils.check_scratch("lstm", MPS)
    assert asked == ["cpu"] and "float64 on the CPU" in capsys.readouterr().out

    def broken(device="cpu"):
        raise RuntimeError("some device failure\nmore lines")
    monkeypatch.setattr(lstm, "check_against_torch", broken)
    monkeypatch.setattr(model_utils, "_CHECKED", set())
    with pytest.raises(UserError, match="could not run on cpu \\(some device failure\\)"):
        model_utils.check_scratch("lstm", MPS)


def test_theory_comparisons_gradient_norms_run_in_float64_on_the_cpu_on_a_mac(monkeypatch):
    tc = load_theory("theory_comparison")
    monkeypatch.setattr(tc, "GRAD_SAMPLES", 4)
    monkeypatch.setattr(tc, "GRAD_SEQ_LEN", 6)
    built = []
    real_build = tc.build_model
    monkeypatch.setattr(tc, "build_model", lambda name, device: built.append(torch.device(device).type)
                        or real_build(name, device))
    curves, summary = tc.experiment_gradients(MPS)       # would fail if anything were put on "mps"
    assert set(built) == {"cpu"} and set(summary) == set(tc.MODELS)


def test_full_float32_turns_tf32_off_and_restores_it():
    from rnn_common import full_float32
    matmul = torch.backends.cuda.matmul
    before = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32 = True
    try:
        with full_float32():
            assert not matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 == before[1]
    finally:
        matmul.allow_tf32 = before[0]


def test_the_benchmark_and_the_theory_scripts_accept_mps():
    from utils.script_utils import parse_config
    for script in ("06_comparison/performance_benchmark.py", "01_basic_theory/theory_comparison.py",
                   "01_basic_theory/lstm_from_scratch.py"):
        module = load_case_script(ROOT / script)
        assert parse_config(vars(module), ["--DEVICE=mps"])["DEVICE"] == "mps"


def test_sentiment_predict_proba_is_batched_and_keeps_the_order():
    import sentiment_model
    torch.manual_seed(0)
    model = sentiment_model.SentimentClassifier(50, cell="gru", embed_dim=8, hidden_size=6)
    largest = []
    model.register_forward_pre_hook(lambda m, args: largest.append(tuple(args[0].shape)))
    gen = torch.Generator().manual_seed(1)
    encoded = [torch.randint(2, 50, (int(n),), generator=gen).tolist()
               for n in torch.randint(1, 40, (70,), generator=gen)]
    batched = sentiment_model.predict_proba(model, encoded, "cpu", batch_size=16)
    assert max(s[0] for s in largest) <= 16 and len(largest) == 5          # 70 reviews in 5 batches
    assert max(s[1] for s in largest) < 40                                 # short reviews batch
                                                                           # with short ones
    one_by_one = [sentiment_model.predict_proba(model, [e], "cpu")[0] for e in encoded]
    assert batched == pytest.approx(one_by_one, abs=1e-6)                  # the caller's order, same values


def test_06_reuse_keys_on_the_device():
    comparison = load_case_script(ROOT / "06_comparison/model_comparison.py")
    command = ["03_stock/stock_lstm.py", "--SEED=0"]
    cpu = comparison.run_signature(command, "lstm", device="cpu")
    assert cpu == comparison.run_signature(command, "lstm", device="cpu")
    assert cpu != comparison.run_signature(command, "lstm", device="cuda")
    assert comparison.run_signature(command, "lstm")["device"] == comparison.run_device() == "cpu"


def test_06_match_params_counts_with_the_settings_the_runs_use_on_cuda():
    comparison = load_case_script(ROOT / "06_comparison/model_comparison.py")
    lstm = load_case_script(ROOT / "04_text_gen/g2p_lstm.py")
    gru = load_case_script(ROOT / "04_text_gen/g2p_gru.py")
    gpu = {k: v[1] for k, v in lstm.GPU_SETTINGS.items()}
    record = {"config": {**{k: getattr(lstm, k) for k in lstm.GPU_SETTINGS}, **gpu}}  # an LSTM run on CUDA
    comparison.use_run_settings(lstm, record, "cuda", False, "HIDDEN_SIZE")
    comparison.use_run_settings(gru, None, "cuda", False, "HIDDEN_SIZE")
    assert (lstm.NUM_LAYERS, lstm.EMBED_DIM, lstm.HIDDEN_SIZE) == (gpu["NUM_LAYERS"], gpu["EMBED_DIM"],
                                                                   gpu["HIDDEN_SIZE"])
    assert (gru.NUM_LAYERS, gru.EMBED_DIM) == (gru.GPU_SETTINGS["NUM_LAYERS"][1],
                                               gru.GPU_SETTINGS["EMBED_DIM"][1])
    assert gru.HIDDEN_SIZE == gru.GPU_SETTINGS["HIDDEN_SIZE"][0]           # left to the matcher
    count = comparison.parameter_counter("04_pronounce", gru, record)
    shipped = comparison.parameter_counter("04_pronounce",
                                           load_case_script(ROOT / "04_text_gen/g2p_gru.py"), {})
    assert count(256) > shipped(256)                                       # two layers, wider embeddings
    cpu_gru = load_case_script(ROOT / "04_text_gen/g2p_gru.py")
    comparison.use_run_settings(cpu_gru, None, "cpu", False, "HIDDEN_SIZE")
    assert cpu_gru.NUM_LAYERS == cpu_gru.GPU_SETTINGS["NUM_LAYERS"][0]     # nothing changes on the CPU


def test_a_script_trains_with_its_gpu_settings_applied(monkeypatch, tmp_path):
    """g2p_lstm.py with GPU_SETTINGS applied as on CUDA (2 layers, 512 units, ...), run on the CPU with a
    reduced data size and one epoch given on the command line (which the settings respect). Its results go
    to a folder of its own: other tests read the tests' g2p_lstm/ folder as a full run's."""
    monkeypatch.setattr(script_utils, "OUTPUTS_ROOT", tmp_path)
    script = load_case_script(ROOT / "04_text_gen/g2p_lstm.py")
    real = script_utils.apply_gpu_settings
    monkeypatch.setattr(script, "get_device", lambda preference="auto": torch.device("cpu"))
    as_if_cuda = lambda ns, settings, device, quick=False: real(ns, settings, torch.device("cuda"), quick)
    monkeypatch.setattr(script, "apply_gpu_settings", as_if_cuda)
    monkeypatch.setattr(sys, "argv",
                        ["g2p_lstm.py", "--MAX_TRAIN_WORDS=300", "--MAX_EVAL_WORDS=20", "--EPOCHS=1",
                         "--BEAM=2", "--EXAMPLES=knight"])
    script.main()
    saved = json.loads((tmp_path / "04_text_gen" / "g2p_lstm" / "metrics.json").read_text())
    config = saved["config"]
    for name, (_, gpu) in script.GPU_SETTINGS.items():
        assert config[name] == (1 if name == "EPOCHS" else gpu), name
    assert 0.0 <= saved["metrics"]["test_wer"] <= 1.0

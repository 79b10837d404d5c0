"""04_text_gen: Markdown stripping, the char vocabulary, TBPTT batching, the n-gram baseline, sampling
filters on hand-made distributions, and the three scripts end to end with --quick (interactive via stdin)."""
import math

import pytest
import torch
from conftest import ROOT, run_script
from torch import nn

from char_model import (
    BudgetSchedule,
    CharRNN,
    CharStreams,
    CharVocab,
    apply_temperature,
    char_ngram_baseline,
    detach_state,
    distinct_n,
    evaluate_char_model,
    one_step_friendly,
    repeated_ngram_rate,
    sampling_distribution,
    saved_checkpoint,
    text_log_likelihood,
    top_k_filter,
    top_p_filter,
    train_char_model,
    train_step,
)
from utils.data_utils import load_text_corpus, read_text_file, shakespeare_play_to_text
from utils.script_utils import UserError, output_dir
from utils.training import NonFiniteLoss

BR = "  "  # Markdown's hard line break: two spaces at the end of a line
PLAY = f"""# A Play

## ACT I

### SCENE I. Verona. A public place.

_Enter SAMPSON and GREGORY, of the house of Capulet, armed with swords and
bucklers_

**SAMPSON**{BR}
Gregory, o' my word, we'll not carry coals.

**GREGORY**{BR}
_\\[Aside]_{BR}
No, for then we should be colliers;{BR}
'Ladies,'\\--or 'Fair-ladies.'

*Exit Sampson.*

More words of Gregory.

**FIRST CITIZEN**{BR}
*Exeunt.*
"""


def test_markdown_play_becomes_speaker_colon_text():
    assert shakespeare_play_to_text(PLAY) == (
        "SAMPSON:\nGregory, o' my word, we'll not carry coals.\n\n"
        "GREGORY:\nNo, for then we should be colliers;\n'Ladies,'--or 'Fair-ladies.'\n"
        "More words of Gregory.\n")


def test_shakespeare_split_is_by_play_and_clean():
    corpus = load_text_corpus("")
    assert len(corpus["val_plays"]) == 4 and 3_500_000 < len(corpus["train"]) < 5_000_000
    assert 300_000 < len(corpus["val"]) < 900_000
    assert "ROMEO:\n" in corpus["train"] and "CORIOLANUS:\n" in corpus["val"]
    assert "CORIOLANUS:\n" not in corpus["train"]  # a validation play's hero never speaks in training
    for junk in ("**", "_", "#", "\\", "  \n"):
        assert junk not in corpus["train"]


def test_char_vocab_roundtrip_and_unknowns():
    v = CharVocab.build("banana\n")
    assert v.itos == [CharVocab.UNK, "\n", "a", "b", "n"] and len(v) == 5
    assert v.encode("nab").tolist() == [4, 2, 3] and v.decode([3, 2, 4]) == "ban"
    assert v.encode("bé").tolist() == [3, 0] and v.unknown("béé!") == ["é", "!"]
    assert CharVocab(v.chars).itos == v.itos


def test_char_streams_are_contiguous_across_chunks():
    with pytest.raises(UserError, match="too short"):
        CharStreams(torch.arange(25), batch_size=8, seq_len=4)
    s = CharStreams(torch.arange(41), batch_size=2, seq_len=4)  # 2 streams of 20 -> 5 chunks
    chunks = list(s)
    assert len(chunks) == 5 and [c[2] for c in chunks] == [True, False, False, False, False]
    x = torch.cat([c[0] for c in chunks], dim=1)
    y = torch.cat([c[1] for c in chunks], dim=1)
    assert x.tolist() == [list(range(20)), list(range(20, 40))]  # row b is one contiguous stretch
    assert torch.equal(y, x + 1)
    # a fixed number of chunks per "epoch", wrapping around to a new pass (reset) at the end
    s = CharStreams(torch.arange(401), batch_size=4, seq_len=10, chunks_per_epoch=7)
    first, second = list(s), list(s)
    assert [c[2] for c in first] == [True] + [False] * 6
    assert second[0][0][0, 0] == first[-1][0][0, -1] + 1 and [c[2] for c in second].count(True) == 1


def test_ngram_baseline_by_hand():
    # train "abab": after 'a' always 'b'. With n=2, k=1, V = 2 chars + unknown = 3:
    # P(b|a) = (2+1)/(2+3) = 0.6, P(a|b) = (1+1)/(2+3) = 0.4; the first val char's context is "\n"
    # (seen once, followed by 'a'): P(a|\n) = (1+1)/(1+3) = 0.5
    res = char_ngram_baseline("abab", "ab", n=2, k=1.0)
    assert res["nats_per_char"] == pytest.approx(-(math.log(0.5) + math.log(0.6)) / 2)
    assert res["bits_per_char"] == pytest.approx(res["nats_per_char"] / math.log(2))


def test_sampling_filters_on_hand_made_distributions():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    assert torch.allclose(top_k_filter(probs, 2), torch.tensor([0.625, 0.375, 0, 0]))
    assert torch.equal(top_k_filter(probs, 0), probs)
    assert torch.allclose(top_p_filter(probs, 0.75), torch.tensor([0.625, 0.375, 0, 0]))  # 0.5 < 0.75 <= 0.8
    assert torch.allclose(top_p_filter(probs, 0.8), torch.tensor([0.625, 0.375, 0, 0]))
    assert torch.allclose(top_p_filter(probs, 0.81), torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95)
    assert torch.allclose(top_p_filter(probs, 0.1), torch.tensor([1.0, 0, 0, 0]))  # the top one always stays
    shuffled = torch.tensor([0.05, 0.5, 0.15, 0.3])  # order must not matter
    assert torch.allclose(top_p_filter(shuffled, 0.75), torch.tensor([0, 0.625, 0, 0.375]))
    logits = torch.log(probs)
    assert torch.allclose(apply_temperature(logits, 1.0), probs)
    sharp, flat = apply_temperature(logits, 0.5), apply_temperature(logits, 2.0)
    assert torch.allclose(sharp, probs ** 2 / (probs ** 2).sum())  # T=0.5 squares the probabilities
    assert sharp[0] > probs[0] > flat[0]
    assert apply_temperature(logits, 0).tolist() == [1, 0, 0, 0]
    assert torch.allclose(sampling_distribution(logits, 1.0, top_k=3, top_p=0.7),
                          torch.tensor([0.625, 0.375, 0, 0]))


def test_text_metrics_by_hand():
    assert distinct_n("abab", 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n("abcd", 2) == 1.0 and distinct_n("a", 2) == 0.0
    assert repeated_ngram_rate("to be or not to be or", 2) == pytest.approx(2 / 6)  # 'to be', 'be or' again
    assert repeated_ngram_rate("a b c d", 2) == 0.0


def test_budget_schedule_warms_up_then_decays_on_time():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = BudgetSchedule(opt, 1.0, total_steps=100, max_minutes=0, warmup_steps=10, min_frac=0.0)
    lrs = []
    for _ in range(100):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(lrs[9]) and lrs[-1] < 0.01
    assert sched.done()
    timed = BudgetSchedule(opt, 1.0, total_steps=10**9, max_minutes=1e-9)
    assert timed.done()  # the time budget alone ends training


def test_carried_state_is_detached_and_reset_and_generation_works():
    torch.manual_seed(0)
    vocab = CharVocab.build("abc \n")
    model = CharRNN(len(vocab), cell="gru", embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0)
    x = torch.randint(1, len(vocab), (2, 5))

    def loss_of(state):
        logits, state = model(x, state)
        return nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), x.reshape(-1)), state

    loss1, state = loss_of(None)
    carried = detach_state(state)
    assert state.requires_grad and not carried.requires_grad and torch.equal(carried, state)  # values kept
    loss2, _ = loss_of(carried)   # same chunk, but now with the carried state
    loss3, _ = loss_of(None)      # reset: the first result again
    assert loss1.item() != pytest.approx(loss2.item()) and loss3.item() == pytest.approx(loss1.item())
    h, c = detach_state((state, state.clone()))  # an LSTM's (h, c): both cut
    assert not h.requires_grad and not c.requires_grad and detach_state(None) is None
    text = model.generate(vocab, "ab😀", 30, temperature=1.0, top_k=2, seed=1)
    assert len(text) == 30 and set(text) <= set(vocab.chars)
    assert text == model.generate(vocab, "ab", 30, temperature=1.0, top_k=2, seed=1)  # unknown chars skipped
    assert text_log_likelihood(model, vocab, "ab", text) < 0


def test_evaluation_carries_the_state_across_chunks_and_resets_per_pass():
    torch.manual_seed(0)
    vocab = CharVocab.build("abcd \n")
    model = CharRNN(len(vocab), cell="lstm", embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0).double()
    streams = CharStreams(torch.randint(1, len(vocab), (203,)), batch_size=2, seq_len=10)  # 10 chunks
    res = evaluate_char_model(model, streams)
    with torch.no_grad():
        carried, fresh, state = [], [], None
        for x, y, _ in streams:
            logits, state = model(x, state)
            carried.append(float(nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))))
            logits, _ = model(x)
            fresh.append(float(nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))))
    assert res["nats_per_char"] == pytest.approx(sum(carried) / 10, rel=1e-12)
    assert res["nats_per_char"] != pytest.approx(sum(fresh) / 10, rel=1e-6)
    assert res["bits_per_char"] == pytest.approx(res["nats_per_char"] / math.log(2), rel=1e-12)
    assert res["perplexity"] == pytest.approx(math.exp(res["nats_per_char"]), rel=1e-12)
    assert evaluate_char_model(model, streams) == res  # every pass starts from a zero state


def test_training_ends_when_the_budget_is_spent(tmp_path):
    torch.manual_seed(0)
    vocab = CharVocab.build("abcd \n")
    ids = torch.randint(1, len(vocab), (2000,))
    data = {"vocab": vocab, "corpus": {"source": "random"},
            "streams": {"train": CharStreams(ids, 4, 10, chunks_per_epoch=5),
                        "val": CharStreams(ids[:500], 4, 10)}}
    model = CharRNN(len(vocab), cell="gru", embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_char_model(model, data, epochs=3, lr=1e-2, weight_decay=0.0, clip=1.0, max_minutes=1e-9,
                           patience=3, checkpoint_path=tmp_path / "m.pt")
    # the budget is spent before the first chunk: no training step, one report, then the end
    assert res["epochs_run"] == 1 and res["chars_seen"] == 0 and res["history"][0]["train_loss"] == 0.0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert (tmp_path / "m.pt").is_file()
    res = train_char_model(model, data, epochs=3, lr=1e-2, weight_decay=0.0, clip=1.0, max_minutes=0,
                           patience=3, checkpoint_path=tmp_path / "m.pt")
    assert res["epochs_run"] == 3 and res["chars_seen"] == 3 * 5 * 4 * 10  # no budget: the steps decide
    assert [r["epoch"] for r in res["history"]] == [1, 2, 3] and res["history"][-1]["lr"] < 1e-2


def test_train_step_cuts_the_carried_state_and_updates_once():
    """One chunk: the (T2) loss from the carried state's values, one update; backward never reaches the
    previous chunk (the state comes in detached); the returned state is where the next chunk starts."""
    torch.manual_seed(0)
    vocab = CharVocab.build("abcd \n")
    model = CharRNN(len(vocab), cell="lstm", embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randint(1, len(vocab), (2, 2, 5)).unbind(0)              # (B, T) each
    h = torch.randn(1, 2, 8, requires_grad=True)                          # the previous chunk's state,
    state = (h * 1.0, h * 0.5)                                            # still attached to its graph
    with torch.no_grad():
        logits, _ = model(x, (h, h * 0.5))
        expected = float(nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1)))
    before = [p.detach().clone() for p in model.parameters()]
    loss, norm, new_state = train_step(model, x, y, state, opt, clip=1.0)
    assert loss == pytest.approx(expected, rel=1e-6) and norm > 0
    assert h.grad is None                                                 # cut at the chunk boundary
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert isinstance(new_state, tuple) and new_state[0].shape == (1, 2, 8)
    loss2, _, _ = train_step(model, x, y, new_state, opt, clip=1.0)       # the next chunk carries it on
    assert math.isfinite(loss2)


def test_a_nan_loss_stops_training_and_says_where(tmp_path):
    torch.manual_seed(0)
    vocab = CharVocab.build("abcd \n")
    ids = torch.randint(1, len(vocab), (2000,))
    data = {"vocab": vocab, "corpus": {"source": "random"},
            "streams": {"train": CharStreams(ids, 4, 10, chunks_per_epoch=5),
                        "val": CharStreams(ids[:500], 4, 10)}}
    model = CharRNN(len(vocab), cell="gru", embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0)
    with torch.no_grad():
        model.head.bias[2] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at report 1, chunk 1: .* --LR="):
        train_char_model(model, data, epochs=2, lr=1e-2, weight_decay=0.0, clip=1.0, max_minutes=0,
                         patience=2, checkpoint_path=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_saved_checkpoint_looks_at_the_full_run_then_the_quick_one(tmp_path):
    script = ROOT / "04_text_gen" / "text_gru.py"
    full, quick = (output_dir(script, quick=q, create=False) / "model.pt" for q in (False, True))
    path, looked = saved_checkpoint(script, quick=True)
    assert looked == [full, quick] and path in (None, full, quick)
    assert saved_checkpoint(script)[1] == [full]
    (tmp_path / "text_gru").mkdir()
    assert saved_checkpoint(script, str(tmp_path)) == (None, [tmp_path / "text_gru" / "model.pt"])
    (tmp_path / "text_gru" / "model.pt").write_bytes(b"x")
    assert saved_checkpoint(script, str(tmp_path), quick=True)[0] == tmp_path / "text_gru" / "model.pt"


@pytest.mark.parametrize("content, message", [(b"", "has only 0 characters"), (b"ab\x00cd" * 1000, "binary"),
                                              (b"\xff\xfe" + b"a" * 3000, "not valid UTF-8"),
                                              (b"short text", "has only")], ids=["empty", "nul", "latin1",
                                                                                 "short"])
def test_bad_text_files_are_refused(tmp_path, content, message):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_text_file(path)


def test_text_scripts_quick_end_to_end(tmp_path):
    for name in ("text_lstm", "text_gru"):
        res = run_script(f"04_text_gen/{name}.py", "--quick", timeout=120)
        m = res.metrics
        assert m["config"]["QUICK"] and m["history"] and "val_bits_per_char" in m["history"][0]
        met = m["metrics"]
        assert met["val_bits_per_char"] == pytest.approx(met["val_nats_per_char"] / math.log(2))
        assert met["val_perplexity"] == pytest.approx(math.exp(met["val_nats_per_char"]))
        assert 0 < met["baseline_nats_per_char"] < 5 and met["chars_seen"] > 0
        assert (res.out_dir / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
        assert (res.out_dir / "model.pt").is_file() and "baseline: add-0.1 character 5-gram" in res.stdout
    # a user's text file, split by position
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 2000, encoding="utf-8")
    res = run_script("04_text_gen/text_gru.py", "--quick", f"--TEXT={text}", "--MAX_TRAIN_CHARS=0",
                     timeout=120)
    assert res.metrics["source"] == str(text) and res.metrics["metrics"]["vocab_size"] < 30


def test_creative_writing_one_shot_interactive_and_fallback(tmp_path):
    res = run_script("04_text_gen/creative_writing.py", "--quick", "--PROMPT=JULIET:\\nO Rome😀o",
                     "--LENGTH=40", timeout=120)
    m = res.metrics
    assert "never saw '😀'" in res.stdout and set(m["continuations"]) == {"lstm", "gru"}
    assert all(len(t) == 40 for t in m["continuations"].values())
    assert "LSTM" in res.stdout and "|  GRU" in res.stdout  # side by side
    sweep = m["metrics"]["temperature_sweep"]
    assert set(sweep) == {"LSTM", "GRU"} and len(sweep["LSTM"]["log_likelihood"]) == 3
    assert (res.out_dir / "temperature_sweep.png").read_bytes()[:4] == b"\x89PNG"
    # interactive: commands piped to stdin, then end of input
    import subprocess
    import sys
    commands = (":help\n:temp 0.5\n:len 25\n:topk 5\n:topp 0.9\n:model gru\n:temp abc\n:bogus\n"
                "ROMEO:\\nI\n:show\n")
    proc = subprocess.run([sys.executable, "04_text_gen/creative_writing.py", "--quick", "--INTERACTIVE"],
                          input=commands, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert ":temp 0.8" in out and "temp = 0.5" in out and "len = 25" in out and "model = gru" in out
    assert "error: temp needs a float" in out and "unknown command :bogus" in out
    assert "GRU" in out.split("model = gru")[1] and "temp=0.5" in out and out.rstrip().endswith("bye.")
    proc = subprocess.run([sys.executable, "04_text_gen/creative_writing.py", "--quick", "--INTERACTIVE"],
                          input=":quit\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "bye." in proc.stdout
    # no checkpoint: a short model is trained first, and says so
    res = run_script("04_text_gen/creative_writing.py", "--quick", f"--CHECKPOINTS={tmp_path}",
                     "--MODEL=lstm", "--LENGTH=20", timeout=120)
    assert "no checkpoint at" in res.stdout


@pytest.mark.parametrize("script, args, message", [
    ("text_lstm.py", ["--quick", "--TEXT=/no/such/file.txt"], "does not exist"),
    ("text_gru.py", ["--quick", "--IMPL=keras"], "--IMPL must be one of"),
    ("creative_writing.py", ["--quick", "--TOP_P=1.5"], "--TOP_P=1.5: must be a number in (0, 1]"),
    ("creative_writing.py", ["--quick", "--MODEL=rnn"], "--MODEL must be one of"),
])
def test_bad_options_fail_cleanly(script, args, message, tmp_path):
    res = run_script(f"04_text_gen/{script}", *args, check=False, timeout=60)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_binary_text_file_fails_cleanly(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(b"\x00\x01" * 5000)
    res = run_script("04_text_gen/text_lstm.py", "--quick", f"--TEXT={path}", check=False, timeout=60)
    assert res.returncode == 2 and "binary" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_text_lstm_scratch_quick():
    res = run_script("04_text_gen/text_lstm.py", "--quick", "--IMPL=scratch", timeout=300)
    assert res.metrics["config"]["IMPL"] == "scratch" and "matches torch.nn" in res.stdout


def test_one_step_generation_switches_onednn_off_only_inside():
    before = torch.backends.mkldnn.enabled
    with one_step_friendly(torch.device("cpu")):
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled == before
    with pytest.raises(RuntimeError), one_step_friendly(torch.device("cpu")):
        raise RuntimeError("a failing generation")
    assert torch.backends.mkldnn.enabled == before                 # restored after an error too
    with one_step_friendly(torch.device("cuda")):                  # a device object needs no GPU
        assert torch.backends.mkldnn.enabled == before             # only the CPU path is changed


def test_baseline_and_model_score_the_same_characters():
    """The model's evaluation streams score whole chunks only (B streams, n // T chunks each); the n-gram
    baseline must score exactly those characters, not the whole split with its tail."""
    ids = torch.arange(1, 204) % 5 + 1                                   # 203 characters
    streams = CharStreams(ids, batch_size=3, seq_len=10)                 # n = 202 // 3 = 67 -> 6 chunks a row
    pos = streams.scored_positions()
    scored = torch.cat([y.reshape(-1) for _, y, _ in streams])
    assert len(pos) == 3 * 60 and len(pos) < len(ids) - 1
    by_row = torch.cat([y for _, y, _ in streams], dim=1).reshape(-1)   # row b's targets, in order
    assert torch.equal(ids[pos], by_row) and sorted(scored.tolist()) == sorted(ids[pos].tolist())
    train, val = "abcab" * 50, "abcba" * 10
    everywhere = char_ngram_baseline(train, val, n=3, k=0.5)
    subset = char_ngram_baseline(train, val, n=3, k=0.5, positions=[1, 2, 3, 7])
    by_hand = char_ngram_baseline(train, val[:8], n=3, k=0.5)            # the same counts, one position at a
                                                                         # time
    assert everywhere["chars_scored"] == len(val) and subset["chars_scored"] == 4
    assert subset["nats_per_char"] != pytest.approx(everywhere["nats_per_char"])
    one = lambda p: char_ngram_baseline(train, val, n=3, k=0.5, positions=[p])["nats_per_char"]
    assert subset["nats_per_char"] == pytest.approx(sum(one(p) for p in (1, 2, 3, 7)) / 4)
    assert by_hand["nats_per_char"] == pytest.approx(sum(one(p) for p in range(8)) / 8)

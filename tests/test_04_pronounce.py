"""04_text_gen, pronunciation: the CMUdict reader, the split, word checks, teacher-forcing batches, the
encoder-decoder (packing, attention masks, parallel = step-by-step decoding, beam search), the error rates
by hand, a tiny model that learns, and the three scripts end to end with --quick (interactive via stdin)."""
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_script

import g2p_model
from g2p_model import (
    BOS,
    EOS,
    PAD,
    PHONEMES,
    Seq2Seq,
    WordBatches,
    by_length,
    check_word,
    closest_reference,
    decode_phonemes,
    edit_distance,
    encode_phonemes,
    encode_word,
    error_rates,
    eval_step,
    g2p_split,
    make_examples,
    predict,
    score_words,
    summarize,
    train_step,
)
from utils.data_utils import load_cmudict
from utils.script_utils import UserError
from utils.training import NonFiniteLoss


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for these in-process checks: their models are tiny, and pytest may share the
    machine with other jobs, where a second thread mostly waits for the first."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cmudict():
    return load_cmudict()


def test_cmudict_reader_strips_stress_merges_variants_and_drops_odd_words(cmudict):
    assert len(cmudict) == 124_926                                   # letters and ' only (of 126,052)
    assert cmudict["read"] == [("R", "EH", "D"), ("R", "IY", "D")]    # read / read(2)
    assert cmudict["knight"] == [("N", "AY", "T")]
    assert sorted({p for prons in cmudict.values() for pr in prons for p in pr}) == sorted(PHONEMES)
    assert "a.m." not in cmudict and "x-ray" not in cmudict and "aalborg" in cmudict   # comment stripped
    with_stress = load_cmudict(keep_stress=True)
    assert with_stress["read"] == [("R", "EH1", "D"), ("R", "IY1", "D")]
    # two pronunciations that differ only in stress become one
    merged = [w for w in cmudict if len(cmudict[w]) < len(with_stress[w])]
    assert merged and all(len(set(with_stress[w])) > len(cmudict[w]) for w in merged[:20])


def test_split_is_by_word_fixed_and_saved(tmp_path, cmudict, monkeypatch):
    monkeypatch.setattr(g2p_model, "load_cmudict", lambda keep_stress=False: cmudict)  # read once per module
    split = g2p_split(cache=tmp_path)
    sizes = {p: len(split[p]) for p in split}
    assert sum(sizes.values()) == len(cmudict) and sizes["val"] == pytest.approx(0.05 * len(cmudict), abs=2)
    assert not (set(split["train"]) & set(split["test"])) and not (set(split["val"]) & set(split["test"]))
    saved = (tmp_path / "cmudict_split.json").read_text()
    again = g2p_split(cache=tmp_path)                                 # read back, not rebuilt
    assert list(again["test"]) == list(split["test"])
    assert (tmp_path / "cmudict_split.json").read_text() == saved
    (tmp_path / "cmudict_split.json").write_text('{"seed": 1, "train": [], "val": [], "test": []}')
    assert list(g2p_split(cache=tmp_path)["test"]) == list(split["test"])  # a stale file is rebuilt
    old_rule = json.loads(saved)
    del old_rule["grouped_by"]                                       # a split made by exact spelling
    (tmp_path / "cmudict_split.json").write_text(json.dumps(old_rule))
    assert list(g2p_split(cache=tmp_path)["test"]) == list(split["test"])  # ... is rebuilt by the grouping
                                                                           # rule


def test_split_keeps_apostrophe_variants_together(tmp_path, cmudict, monkeypatch):
    monkeypatch.setattr(g2p_model, "load_cmudict", lambda keep_stress=False: cmudict)
    split = g2p_split(cache=tmp_path)
    part_of = {w: p for p in split for w in split[p]}
    groups = {}
    for w in cmudict:
        groups.setdefault(w.replace("'", ""), set()).add(part_of[w])
    assert all(len(parts) == 1 for parts in groups.values())
    assert part_of["'em"] == part_of["em"] and part_of["americas'"] == part_of["americas"]
    train_keys = {w.replace("'", "") for w in split["train"]}
    assert not any(w.replace("'", "") in train_keys for w in split["test"])


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   ", "empty"), ("b4", "digits"), ("2024", "digits"), ("привет", "letters outside a-z"),
    ("naïve", "letters outside a-z"), ("new york", "spaces"), ("c++", "symbols"), ("'''", "no letters"),
    ("a" * 41, "at most 40"),
])
def test_bad_words_get_a_clear_message(text, message):
    with pytest.raises(UserError, match=message):
        check_word(text)


def test_good_words_are_normalised():
    assert check_word("  Knight ") == "knight" and check_word("o'clock") == "o'clock"
    assert encode_word("ab'") == [2, 3, 1]
    assert decode_phonemes([BOS] + list(encode_phonemes(["N", "AY", "T"])) + [EOS, PAD, 7]) == ["N", "AY",
                                                                                                "T"]


def test_edit_distance_and_error_rates_by_hand():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], [1, 2]) == 2
    assert edit_distance("ab", "ab") == 0
    assert closest_reference((5, 6), [(5, 6, 7), (5, 6)]) == (0, 2, (5, 6))   # any accepted pronunciation
                                                                              # counts
    assert closest_reference((5, 9), [(5, 6, 7), (5, 6)]) == (1, 2, (5, 6))
    # a tie in distance goes to the first-listed pronunciation, not to the shorter one
    assert closest_reference((5, 6, 8), [(5, 6, 7), (5, 6)]) == (1, 3, (5, 6, 7))
    assert closest_reference((5, 6, 8), [(5, 6), (5, 6, 7)]) == (1, 2, (5, 6))
    rates = error_rates(torch.tensor([0, 2, 0, 1]), torch.tensor([3, 4, 2, 1]))
    assert rates["wer"] == 0.5 and rates["per"] == pytest.approx(3 / 10)
    part = {"ab": [("AE", "B")], "abcdefghijklm": [("AE",)]}
    rows = score_words(part, [encode_phonemes(["AE", "B"]), encode_phonemes(["AE", "B"])])
    assert [r["distance"] for r in rows] == [0, 1] and summarize(rows)["wer"] == 0.5
    assert by_length(rows) == {"1-4": {"wer": 0.0, "per": 0.0, "words": 1},
                               "13+": {"wer": 1.0, "per": 1.0, "words": 1}}


def test_batches_shift_the_target_for_teacher_forcing():
    part = {"ab": [("AE", "B")], "abc": [("AE", "B", "K"), ("EY", "B", "IY", "S", "IY")],
            "x": [("EH", "K", "S")]}
    train = make_examples(part, every_pronunciation=True)
    assert len(train) == 4 and len(make_examples(part, every_pronunciation=False)) == 3
    letters, lengths, dec_in, dec_out, refs = next(iter(WordBatches(train, 4, shuffle=False)))
    assert letters.shape == (4, 3) and lengths.tolist() == [1, 2, 3, 3]          # sorted by length
    assert (dec_in[:, 0] == BOS).all()
    for i in range(4):                                  # dec_out = dec_in shifted left, then </s>,
                                                        # then padding
        n = int((dec_out[i] != PAD).sum())
        assert dec_out[i, n - 1] == EOS and torch.equal(dec_out[i, :n - 1], dec_in[i, 1:n])
    # both of abc's pronunciations
    assert len(refs[2]) == 2


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packing_and_attention_masks_make_padding_invisible(cell):
    torch.manual_seed(0)
    model = Seq2Seq(cell=cell, hidden_size=16, embed_dim=8, enc_layers=2, dropout=0.0).eval()
    words = ["knight", "ox"]
    letters, lengths = g2p_model.pad_batch([encode_word(w) for w in words])
    dec_in = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, 10]])
    with torch.no_grad():
        logits, alpha = model(letters, lengths, dec_in)                         # (2, 4, V), (2, 4, 6)
        alone, alpha_alone = model(letters[1:, :2], lengths[1:], dec_in[1:])     # "ox" without padding
    assert torch.allclose(alpha.sum(-1), torch.ones(2, 4), atol=1e-6)          # (E5): a distribution
    assert (alpha[1, :, 2:] == 0).all()                                          # padding gets no weight
    assert torch.allclose(logits[1], alone[0], atol=1e-5) and torch.allclose(alpha[1, :, :2], alpha_alone[0],
                                                                             atol=1e-6)


@pytest.mark.parametrize("attention", [True, False])
def test_teacher_forced_decoder_equals_step_by_step(attention):
    """Luong attention without input feeding: running the decoder over all steps at once (training) gives
    exactly what feeding the same phonemes one step at a time gives (decoding)."""
    torch.manual_seed(1)
    model = Seq2Seq(cell="gru", hidden_size=12, embed_dim=6, attention=attention, dropout=0.0).eval()
    letters, lengths = g2p_model.pad_batch([encode_word("phoenix"), encode_word("ax")])
    dec_in = torch.tensor([[BOS, 20, 21, 22, 23], [BOS, 24, 25, 26, PAD]])
    with torch.no_grad():
        logits, _ = model(letters, lengths, dec_in)
        memory, mask, summary, state = model.encode(letters, lengths)
        for t in range(dec_in.shape[1]):
            logp, state, _ = model.step(dec_in[:, t], state, memory, mask, summary)
            assert torch.allclose(logp, decoding_log_softmax(logits[:, t]), atol=1e-5)
            assert (logp[:, [PAD, BOS]] == float("-inf")).all()                  # never emitted when decoding


def decoding_log_softmax(logits):
    """What decoding scores: the log-softmax over phonemes and </s> only (<pad> and <s> get -inf)."""
    logits = logits.clone()
    logits[..., [PAD, BOS]] = float("-inf")
    return torch.log_softmax(logits, -1)


def test_beam_of_one_is_greedy_and_beam_scores_are_the_models_log_probability():
    torch.manual_seed(2)
    model = Seq2Seq(cell="lstm", hidden_size=16, embed_dim=8, dropout=0.0).eval()
    words = ["knight", "phoenix", "ox", "thoroughfare"]
    letters, lengths = g2p_model.pad_batch([encode_word(w) for w in words])
    max_len = g2p_model.max_output_len(lengths)
    greedy, _ = model.greedy(letters, lengths, max_len)
    beam1, _ = model.beam_search(letters, lengths, max_len, beam=1)
    decoded = lambda ids: [g2p_model.decode_ids(r) for r in ids.tolist()]
    assert decoded(greedy) == decoded(beam1)
    best, score = model.beam_search(letters, lengths, max_len, beam=4)
    for i, row in enumerate(best.tolist()):
        ids = list(g2p_model.decode_ids(row))
        finished = len(ids) < len(row) and row[len(ids)] == EOS
        target = ids + ([EOS] if finished else [])
        with torch.no_grad():
            logits, _ = model(letters[i:i + 1, :lengths[i]], lengths[i:i + 1],
                              torch.tensor([[BOS] + target[:-1]]))
        logp = decoding_log_softmax(logits[0]).gather(1, torch.tensor(target)[:, None]).sum()
        assert float(score[i]) == pytest.approx(float(logp), abs=1e-4)      # (B1): the sum of log p


def test_a_tiny_model_learns_a_few_words(cmudict):
    torch.manual_seed(0)
    part = {w: cmudict[w] for w in ("cat", "dog", "fish", "bird", "knight", "phone", "ox", "tree")}
    examples = make_examples(part, every_pronunciation=True)
    model = Seq2Seq(cell="gru", hidden_size=32, embed_dim=16, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        for batch in WordBatches(examples, 8, shuffle=True):
            model.train()
            train_step(model, batch, opt, None)                        # clip None: measured, never clipped
    rows = score_words(part, predict(model, list(part), "cpu", beam=3))
    assert summarize(rows)["wer"] == 0.0, rows


def test_train_step_is_one_teacher_forced_update_and_eval_step_scores_greedy_output(cmudict):
    """train_step: the (E9) loss, one update, (loss, norm before clipping, words); a NaN stops it before the
    weights change. eval_step: the same loss without an update, and each word's edit distance."""
    torch.manual_seed(0)
    part = {w: cmudict[w] for w in ("cat", "knight", "ox")}
    batch = next(iter(WordBatches(make_examples(part, every_pronunciation=False), 8, shuffle=False)))
    model = Seq2Seq(cell="lstm", hidden_size=16, embed_dim=8, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    letters, lengths, dec_in, dec_out, _ = batch
    refs_order = sorted(part, key=len)                                  # the batch holds the words by length
    with torch.no_grad():
        logits, _ = model(letters, lengths, dec_in)
        expected = float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                           dec_out.reshape(-1), ignore_index=PAD))
    before = [p.detach().clone() for p in model.parameters()]
    loss, norm, n = train_step(model, batch, opt, 1e-3)
    assert loss == pytest.approx(expected, rel=1e-6) and n == 3 and norm > 1e-3
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    model.eval()
    val_loss, dist, ref_len = eval_step(model, batch)
    assert dist.shape == ref_len.shape == (3,) and torch.isfinite(val_loss)
    assert ref_len.tolist() == [len(cmudict[w][0]) for w in refs_order]  # the first pronunciation's length
    with torch.no_grad():
        model.out.bias[3] = float("nan")                               # a broken weight: the loss is NaN
    kept = [p.detach().clone() for p in model.parameters()]
    model.train()
    with pytest.raises(NonFiniteLoss):
        train_step(model, batch, opt, 1.0)
    assert all(torch.equal(k.nan_to_num(), p.nan_to_num()) for k, p in zip(kept, model.parameters()))


def test_g2p_scripts_quick_end_to_end():
    res = run_script("04_text_gen/g2p_gru.py", "--quick", timeout=180)
    m = res.metrics
    met = m["metrics"]
    assert m["config"]["QUICK"] and m["history"] and {"val_wer", "val_per"} <= set(m["history"][0])
    assert 0 <= met["test_wer"] <= 1 and 0 <= met["test_per"] and met["test_words"] == 100
    assert set(met["wer_by_length"]) == {"greedy",
                                         "beam"} and 0 < met["test_teacher_forced_phoneme_accuracy"] <= 1
    assert [e["word"] for e in m["examples"]] == ["knight", "phoenix"] and "exposure bias" in res.stdout
    out = res.out_dir                                   # .../g2p_gru/quick/: a smoke test never replaces a
                                                        # full run
    assert out.name == "quick"
    for png in ("training_curves.png", "wer_by_length.png", "attention.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "model.pt").is_file() and (out / "progress.jsonl").is_file()
    # without attention: its own folder, no heatmap; the length plot then shows both runs
    res = run_script("04_text_gen/g2p_lstm.py", "--quick", "--ATTENTION=false", "--EPOCHS=1", timeout=180)
    out = res.out_dir / "no_attention"
    assert (out / "metrics.json").is_file() and (out / "model.pt").is_file()
    assert not (out / "attention.png").exists()
    # pronounce.py with the quick GRU just trained; a word not in the dictionary; then interactively
    res = run_script("04_text_gen/pronounce.py", "--quick", "--MODEL=gru", "--WORD=Blorptastic", timeout=120)
    said = res.metrics
    assert "not in the dictionary" in res.stdout and said["word"] == "blorptastic" and "quick" in res.stdout
    assert set(said["metrics"]) == {"gru"} and (res.out_dir / "attention.png").is_file()
    proc = subprocess.run([sys.executable, "04_text_gen/pronounce.py", "--quick", "--MODEL=gru",
                           "--INTERACTIVE"],
                          input=":help\n:beam 3\n:beam x\nknight\nb4\n:model rnn\n:key\n:bogus\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert ":beam 3" in out and "beam = 3" in out and "error: the beam width" in out and "beam 3" in out
    assert "dictionary (" in out and "error: 'b4' contains digits" in out
    assert "error: the model must be" in out
    assert "AA odd" in out and "unknown command :bogus" in out and out.rstrip().endswith("bye.")


def test_pronounce_trains_a_fallback_when_no_model_exists(tmp_path):
    res = run_script("04_text_gen/pronounce.py", "--quick", f"--CHECKPOINTS={tmp_path}", "--MODEL=lstm",
                     "--WORD=knight", timeout=180)
    assert "no checkpoint at" in res.stdout and (tmp_path / "fallback_lstm.pt").is_file()
    assert "dictionary (" in res.stdout


@pytest.mark.parametrize("script, args, message", [
    ("g2p_gru.py", ["--HIDDEN_SIZE=1"], "--HIDDEN_SIZE=1: must be an integer >= 2"),
    ("g2p_lstm.py", ["--EPOCHS=0"], "--EPOCHS=0: must be an integer >= 1"),
    ("g2p_lstm.py", ["--DROPOUT=1"], "--DROPOUT=1: must be a number in [0, 1)"),
    ("g2p_gru.py", ["--EXAMPLES=knight,r2d2"], "EXAMPLES must be words of the letters a-z"),
    ("g2p_gru.py", ["--IMPL=keras"], "--IMPL must be one of"),
    ("pronounce.py", ["--BEAM=0"], "--BEAM=0: must be an integer >= 1"),
    ("pronounce.py", ["--MODEL=rnn"], "--MODEL must be one of"),
])
def test_bad_options_are_refused_before_anything_runs(script, args, message):
    from utils.script_utils import load_case_script, parse_config
    module = load_case_script(ROOT / "04_text_gen" / script)
    with pytest.raises(UserError) as e:
        parse_config(vars(module), args)
    assert message in str(e.value)


@pytest.mark.parametrize("script, args, message", [
    ("pronounce.py", ["--WORD=2nd"], "error: '2nd' contains digits"),
    ("g2p_lstm.py", ["--quick", "--EXAMPLES=knight,r2d2"],
     "error: EXAMPLES must be words of the letters a-z"),
])
def test_bad_words_and_options_are_one_line_and_exit_2(script, args, message):
    res = run_script(f"04_text_gen/{script}", *args, check=False, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith(message), res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_g2p_scratch_cells_quick():
    res = run_script("04_text_gen/g2p_lstm.py", "--quick", "--IMPL=scratch", "--EPOCHS=1", timeout=300)
    assert res.metrics["config"]["IMPL"] == "scratch" and "matches torch.nn" in res.stdout

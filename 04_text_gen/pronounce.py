"""Pronounce any English word with the trained encoder-decoders: the LSTM and the GRU side by side.

Teaches what a sequence-to-sequence model generalises to: type a word that is not in the dictionary (a
name, a brand, a made-up word) and see its phonemes, greedy and with beam search, and where attention
looked. Interactive: --INTERACTIVE (type :help). Models come from g2p_lstm.py / g2p_gru.py.
Run: python 04_text_gen/pronounce.py --WORD=quixotic [--INTERACTIVE] [--quick]
Theory: THEORY.md §13 (E1)-(E8), (B1).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time
from pathlib import Path

import torch

import g2p_model
from char_model import saved_checkpoint
from utils.script_utils import (
    AtLeast,
    OneOf,
    Seed,
    UserError,
    get_device,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
    shown_path,
)

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                  # random seed (only a fallback model's training draws anything)
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to run
THREADS: AtLeast(0) = 1         # CPU threads for torch (0 = torch's default)
IMPL: OneOf("torch", "scratch") = "torch"  # run with torch.nn cells, or the scratch cells of 01_basic_theory
WORD: str = "quixotic"          # the word to pronounce (letters a-z and the apostrophe); one-shot mode
BEAM: AtLeast(1) = 5            # beam width (1 = greedy only)
MODEL: OneOf("lstm", "gru", "both") = "both"  # which model pronounces (both: side by side)
INTERACTIVE: bool = False       # a word -> pronunciation loop on stdin (:help lists the commands)
CHECKPOINTS: str = ""           # folder with g2p_lstm/model.pt, g2p_gru/model.pt ('' = the full runs' in
                                # outputs/04_text_gen); fallbacks go there
FALLBACK_WORDS: AtLeast(100) = 20_000  # no checkpoint: train a small model on this many words first
FALLBACK_EPOCHS: AtLeast(1) = 2  # ... for this many epochs
QUICK_SETTINGS = dict(FALLBACK_WORDS=600, FALLBACK_EPOCHS=1, BEAM=2)

_COMMANDS = """commands:
  <word>        pronounce it (letters a-z and ')
  :beam 3       beam width (1 = greedy only)
  :model gru    lstm | gru | both
  :key          what the ARPAbet symbols sound like
  :help         this list
  :quit         leave (Ctrl-D too)"""


def train_fallback(cell, path, device):
    """No trained model: a small one on FALLBACK_WORDS words with the same training (g2p_model), saved."""
    print(f"training a small {cell.upper()} on {FALLBACK_WORDS:,} words for {FALLBACK_EPOCHS} epoch(s) "
          f"first; expect poor pronunciations (run 04_text_gen/g2p_{cell}.py for a good one).")
    data = g2p_model.prepare_g2p_data(64, max_train_words=FALLBACK_WORDS, max_eval_words=200, seed=SEED)
    model = g2p_model.Seq2Seq(cell=cell, impl=IMPL, hidden_size=128, embed_dim=32, dropout=0.0,
                              device=device).to(device)
    g2p_model.train_g2p_model(model, data, epochs=FALLBACK_EPOCHS, lr=5e-3, weight_decay=0.0, clip=1.0,
                              patience=FALLBACK_EPOCHS, checkpoint_path=path,
                              checkpoint_extra=g2p_model.g2p_checkpoint_extra(model))


def load_models(device, out, quick=False):
    """{'lstm': model, 'gru': model} for the chosen MODEL: the trained checkpoints (the full runs'), else a
    fallback trained now; each line printed names the file used."""
    models = {}
    for cell in (("lstm", "gru") if MODEL == "both" else (MODEL,)):
        # g2p_<cell>.py's full run (or CHECKPOINTS/g2p_<cell>/); with --quick, a --quick run's second
        path, looked = saved_checkpoint(pathlib.Path(__file__).with_name(f"g2p_{cell}.py"), CHECKPOINTS,
                                        quick=quick)
        if path is None:
            path = (Path(CHECKPOINTS) if CHECKPOINTS else out) / f"fallback_{cell}.pt"
            if not path.is_file():
                print(f"no checkpoint at {' or '.join(shown_path(p) for p in looked)}.")
                train_fallback(cell, path, device)
        model, ckpt = g2p_model.load_g2p_model(path, device, impl=IMPL, cell=cell,
                                               script=pathlib.Path(__file__).name)
        h = ckpt["hparams"]
        print(f"{cell.upper()}: using {shown_path(path)} (hidden {h['hidden_size']}, "
              f"{'attention' if h['attention'] else 'no attention'}, epoch {ckpt.get('epoch')})")
        models[cell] = model
    return models


def where_in_dictionary(word, split):
    """The dictionary's pronunciations of the word and the part it belongs to: a training word was seen."""
    for part, name in (("train", "training"), ("val", "validation"), ("test", "test")):
        if word in split[part]:
            return [" ".join(p) for p in split[part][word]], name
    return [], None


def say(models, word, beam, split):
    """Pronounce one word with each model; print a table and the dictionary's answer. -> results."""
    word = g2p_model.check_word(word)
    results = {cell: g2p_model.pronounce(model, word, next(model.parameters()).device, beam)
               for cell, model in models.items()}
    rows = [{"model": cell.upper(), "greedy": r["greedy"], f"beam {beam}": r["beam"]} for cell,
            r in results.items()]
    truth, part = where_in_dictionary(word, split)
    print_table(rows, title=f"{word}")
    if part:
        seen = ": the models saw it" if part == "training" else ", never trained on"
        print(f"dictionary ({part} word{seen}): " + " | ".join(truth))
    else:
        print("not in the dictionary: the models have never seen this word.")
    used = dict.fromkeys(p for r in results.values() for p in r["beam"].split())
    print("key: " + ", ".join(f"{p} as in {g2p_model.PHONEME_EXAMPLES[p]}" for p in used))
    return results, truth, part


def interactive(models, beam, split):
    """Read words and :commands from stdin until :quit or end of input (Ctrl-D, or a closed pipe)."""
    print("interactive mode: type a word, or :help.")
    chosen = dict(models)
    while True:
        try:
            line = input("word> ").strip()
        except EOFError:
            print("\nbye.")
            return
        if not line:
            continue
        if not line.startswith(":"):
            try:
                say(chosen, line, beam, split)
            except UserError as e:
                print(f"error: {e}")
            continue
        cmd, _, arg = line[1:].strip().partition(" ")
        cmd, arg = cmd.lower(), arg.strip()
        if cmd in ("quit", "q", "exit"):
            print("bye.")
            return
        if cmd == "help":
            print(_COMMANDS)
        elif cmd == "key":
            print(", ".join(f"{p} {w}" for p, w in g2p_model.PHONEME_EXAMPLES.items()))
        elif cmd == "beam":
            if not arg.isdigit() or int(arg) < 1:
                print(f"error: the beam width must be an integer >= 1, got {arg!r}.")
                continue
            beam = int(arg)
            print(f"beam = {beam}")
        elif cmd == "model":
            if arg not in ("lstm", "gru", "both") or (arg != "both" and arg not in models):
                print(f"error: the model must be one of {', '.join(list(models) + ['both'])}, got {arg!r}.")
                continue
            chosen = dict(models) if arg == "both" else {arg: models[arg]}
            print(f"model = {arg}")
        else:
            print(f"unknown command :{cmd}; type :help.")


def main():
    t0 = time.time()
    cfg = parse_config(globals())
    if not INTERACTIVE:
        g2p_model.check_word(WORD)                     # says what is wrong with a bad word,
                                                       # before any model loads
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, quick=cfg["QUICK"])
    models = load_models(device, out, cfg["QUICK"])
    split = g2p_model.g2p_split()
    if INTERACTIVE:
        interactive(models, BEAM, split)
        return
    word = g2p_model.check_word(WORD)
    results, truth, part = say(models, word, BEAM, split)
    g2p_model.plot_attention([dict(r, label=f"{cell.upper()}: {word}") for cell, r in results.items()],
                             out / "attention.png", title=f"'{word}' 的每个音素在看哪些字母（贪心解码）\n"
                                                          f"Where each phoneme of '{word}' looked (greedy)")
    save_metrics(out, config=cfg, start_time=t0, device=device,
                 metrics={cell: {"greedy": r["greedy"], "beam": r["beam"]} for cell, r in results.items()},
                 extra={"word": word, "dictionary": truth, "dictionary_part": part,
                        "plots": ["attention.png"]})


if __name__ == "__main__":
    run_main(main)

"""A creative-writing tool on the trained character models: continue a prompt with the LSTM and the GRU.

Teaches how sampling shapes generated text: temperature, top-k and nucleus (top-p) sampling, and the
diversity/coherence trade-off measured by a temperature sweep. Interactive: --INTERACTIVE (type :help).
Run: python 04_text_gen/creative_writing.py [--PROMPT="JULIET:\\n"] [--INTERACTIVE] [--quick]
Theory: THEORY.md §11 (temperature, top-k, top-p); the models come from text_lstm.py / text_gru.py.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root on the path

import time
from pathlib import Path

import char_model
from utils.script_utils import (
    AtLeast,
    Interval,
    Items,
    OneOf,
    Seed,
    UserError,
    apply_dataset_settings,
    constant_rules,
    get_device,
    output_dir,
    parse_config,
    print_table,
    run_main,
    save_metrics,
    set_seed,
    shown_path,
)
from utils.visualization import color_for, plt, save_figure

# ==== Hyperparameters (edit me) ====
# (each annotation is what the constant accepts, checked before anything runs; --help lists them all)
SEED: Seed = 0                  # random seed of the samples
DEVICE: OneOf("auto", "cpu", "cuda", "mps") = "auto"  # where to generate
IMPL: OneOf("torch", "scratch") = "torch"  # generate with torch.nn cells (fast), or 01's scratch cells
DATASET: OneOf("shakespeare", "peoples_daily") = "shakespeare"  # whose models: text_lstm/gru.py's run on
                                # Shakespeare, or on People's Daily (--DATASET=peoples_daily: Chinese)
PROMPT: str = "ROMEO:\\n"       # what to continue ("\n" written as \n); one-shot mode
LENGTH: Interval("[1, 100000]", int) = 300  # characters to generate
TEMPERATURE: AtLeast(0.0) = 0.8  # < 1 safer and more repetitive, > 1 bolder with more misspellings, 0 greedy
TOP_K: AtLeast(0) = 0           # sample only among the k likeliest characters (0 = all)
TOP_P: Interval("(0, 1]") = 1.0  # nucleus: the likeliest characters covering this probability (1 = all)
MODEL: OneOf("lstm", "gru", "both") = "both"  # which model continues the prompt (both: side by side)
INTERACTIVE: bool = False       # a prompt -> continuation loop on stdin (:help lists the commands)
CHECKPOINTS: str = ""           # folder of text_lstm/model.pt, text_gru/model.pt ('' = the full runs' in
                                # outputs/04_text_gen); fallbacks go there
FALLBACK_MINUTES: AtLeast(0.0) = 1.5  # no checkpoint: train a small model this long first (0 = no limit)
SWEEP_TEMPERATURES: Items(AtLeast(0.0)) = (0.2, 0.5, 0.8, 1.0, 1.3, 1.6)  # the diversity/coherence sweep
SWEEP_SAMPLES: AtLeast(1) = 2   # samples per temperature and model
SWEEP_LEN: AtLeast(1) = 400     # characters per sweep sample
DATASET_SETTINGS = {"peoples_daily": dict(PROMPT=("ROMEO:\\n", "新华社北京1月1日电"))}
QUICK_SETTINGS = dict(LENGTH=80, FALLBACK_MINUTES=0.15, SWEEP_TEMPERATURES=(0.5, 1.0, 1.5), SWEEP_SAMPLES=1,
                      SWEEP_LEN=120)

_COMMANDS = """commands:
  <text>        continue this prompt (write a line break as \\n)
  :temp 0.8     temperature          :len 300    characters to generate
  :topk 20      top-k (0 = off)      :topp 0.9   nucleus top-p (1 = off)
  :model gru    lstm | gru | both    :seed 3     random seed
  :show         current settings     :help       this list
  :quit         leave (Ctrl-D too)"""


def dataset_folder():
    """The subfolder the training scripts write a DATASET's run to (none for Shakespeare)."""
    return None if DATASET == "shakespeare" else DATASET


def train_fallback(cell, path, device):
    """No trained model: a small one for FALLBACK_MINUTES with the same training loop (char_model)."""
    print(f"training a small {cell.upper()} for {FALLBACK_MINUTES:g} min first "
          f"(run 04_text_gen/text_{cell}.py for a good one).")
    data = char_model.prepare_char_data("", 32, 64, 40, device, max_train_chars=500_000,
                                        val_chars_per_epoch=20_000, dataset=DATASET)
    model = char_model.CharRNN(len(data["vocab"]), cell=cell, impl=IMPL, embed_dim=32, hidden_size=128,
                               num_layers=1, dropout=0.0, device=device).to(device)
    char_model.train_char_model(model, data, epochs=50, lr=5e-3, weight_decay=0.0, clip=1.0,
                                max_minutes=FALLBACK_MINUTES, patience=50, checkpoint_path=path)


def load_models(device, out, quick=False):
    """{'lstm': (model, vocab), 'gru': ...}: the trained checkpoints (the full runs'), else a fallback trained
    now; each line printed names the file used."""
    models = {}
    for cell in ("lstm", "gru"):
        # text_<cell>.py's full run (or CHECKPOINTS/text_<cell>/); with --quick, a --quick run's second
        path, looked = char_model.saved_checkpoint(pathlib.Path(__file__).with_name(f"text_{cell}.py"),
                                                   CHECKPOINTS, quick=quick, sub=dataset_folder())
        if path is None:
            path = (Path(CHECKPOINTS) if CHECKPOINTS else out) / f"fallback_{cell}.pt"
            if not path.is_file():
                print(f"no checkpoint at {' or '.join(shown_path(p) for p in looked)}.")
                train_fallback(cell, path, device)
        model, vocab, ckpt = char_model.load_char_model(path, device, impl=IMPL, cell=cell,
                                                        script=pathlib.Path(__file__).name)
        h = ckpt["hparams"]
        print(f"{cell.upper()}: using {shown_path(path)} ({h['num_layers']}x{h['hidden_size']}, "
              f"epoch {ckpt.get('epoch')})")
        models[cell] = (model, vocab)
    return models


def continue_prompt(models, prompt, settings):
    """Continuations of one prompt by each chosen model, printed side by side; returns {cell: text}."""
    texts = {}
    for cell in (("lstm", "gru") if settings["model"] == "both" else (settings["model"],)):
        model, vocab = models[cell]
        unknown = vocab.unknown(prompt)
        if unknown:
            print(f"note: the {cell.upper()} never saw {', '.join(map(repr, unknown))}: skipped in the "
                  f"prompt.")
        texts[cell] = model.generate(vocab, prompt, settings["length"], temperature=settings["temp"],
                                     top_k=settings["topk"], top_p=settings["topp"], seed=settings["seed"])
    print_side_by_side({c.upper(): prompt + t for c, t in texts.items()})
    return texts


def print_side_by_side(columns, width=48):
    """Texts in columns (wrapped at `width`), so two models' continuations read next to each other."""
    import textwrap

    lines = {name: [w for para in text.split("\n") for w in (textwrap.wrap(para, width) or [""])]
             for name, text in columns.items()}
    print("  |  ".join(name.ljust(width) for name in lines))
    print("--+--".join("-" * width for _ in lines))
    for row in range(max(len(v) for v in lines.values())):
        print("  |  ".join((v[row] if row < len(v) else "").ljust(width) for v in lines.values()))
    print()


def interactive(models, settings):
    """Read prompts and :commands from stdin until :quit or end of input (Ctrl-D, or a closed pipe)."""
    print("interactive mode: type a prompt, or :help.")
    kinds = {"temp": float, "len": int, "topk": int, "topp": float, "seed": int, "model": str}
    names = {"len": "length"}
    while True:
        try:
            line = input("prompt> ")
        except EOFError:
            print("\nbye.")
            return
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.startswith(":"):
            continue_prompt(models, line.replace("\\n", "\n"), settings)
            continue
        cmd, _, arg = line[1:].strip().partition(" ")
        cmd = cmd.lower()
        if cmd in ("quit", "q", "exit"):
            print("bye.")
            return
        if cmd == "help":
            print(_COMMANDS)
        elif cmd == "show":
            print("  ".join(f"{k}={v}" for k, v in settings.items()))
        elif cmd in kinds:
            try:
                value = kinds[cmd](arg.strip())
                check_setting(cmd, value)
            except (ValueError, UserError) as e:
                why = e if isinstance(e, UserError) else f"{cmd} needs a {kinds[cmd].__name__}, got {arg!r}"
                print(f"error: {why}")
                continue
            settings[names.get(cmd, cmd)] = value
            print(f"{cmd} = {value}")
        else:
            print(f"unknown command :{cmd}; type :help.")


INTERACTIVE_CONSTANTS = {"temp": "TEMPERATURE", "len": "LENGTH", "topk": "TOP_K", "topp": "TOP_P",
                         "model": "MODEL"}


def check_setting(name, value):
    """An interactive :command's value against its constant's annotation (one place for the ranges)."""
    rule = constant_rules(globals())[INTERACTIVE_CONSTANTS[name]]
    if not rule.accepts(value):
        raise UserError(f"{name} must be {rule.text}; got {value!r}.")


def time_generation(models, n=500):
    """Seconds to generate n characters with each model (step by step, no gradients)."""
    times = {}
    for cell, (model, vocab) in models.items():
        model.generate(vocab, "ROMEO:\n", 10, seed=SEED)  # warm-up: the first call pays one-off setup costs
        t = time.time()
        model.generate(vocab, "ROMEO:\n", n, temperature=0.8, seed=SEED)
        times[cell] = round(time.time() - t, 3)
    print("generating 500 characters: " + ", ".join(f"{c.upper()} {s:.2f}s" for c, s in times.items()))
    return times


def temperature_sweep(models, prompt, out):
    """Diversity (distinct 4-grams, repeated word 3-grams) and coherence (the model's own log-likelihood
    of what it wrote) at each temperature: low T loops on safe phrases, high T invents non-words."""
    results, rows = {}, []
    for cell, (model, vocab) in models.items():
        res = {"log_likelihood": [], "distinct_4": [], "repeated_3gram": []}
        for temp in SWEEP_TEMPERATURES:
            texts = [model.generate(vocab, prompt, SWEEP_LEN, temperature=temp, seed=SEED + s)
                     for s in range(SWEEP_SAMPLES)]
            ll = sum(char_model.text_log_likelihood(model, vocab, prompt, t) for t in texts) / len(texts)
            d4 = sum(char_model.distinct_n(t, 4) for t in texts) / len(texts)
            rep = sum(char_model.repeated_ngram_rate(t, 3) for t in texts) / len(texts)
            for key, v in zip(res, (ll, d4, rep)):
                res[key].append(v)
            rows.append({"model": cell.upper(), "temperature": temp, "log-lik (nats/char)": ll,
                         "distinct-4": d4, "repeated 3-grams": rep,
                         "sample": texts[0][:40].replace("\n", " / ")})
        results[cell.upper()] = res
    print_table(rows, title="Temperature sweep: diversity vs coherence", floatfmt=".3f")
    plot_temperature_sweep(SWEEP_TEMPERATURES, results, out / "temperature_sweep.png",
                           title=f"采样温度：多样性与连贯性（{SWEEP_SAMPLES}x{SWEEP_LEN} 个字符）\n"
                                 f"Sampling temperature: diversity vs coherence "
                                 f"({SWEEP_SAMPLES}x{SWEEP_LEN} chars)")
    return results, rows


def plot_temperature_sweep(temperatures, results: dict[str, dict[str, list[float]]], path: Path,
                           title: str = "") -> Path:
    """Diversity vs coherence as the sampling temperature rises, one line per model.
    results: {model: {'log_likelihood': [...], 'distinct_4': [...], 'repeated_3gram': [...]}}, one value per
    temperature."""
    panels = (("log_likelihood", "模型自己算的对数似然，越高越合理\n"
                                 "model's own log-likelihood (nats/char)\nhigher = more plausible to it"),
              ("distinct_4", "不重复的字符 4-gram，越高越多样\n"
                             "distinct character 4-grams\nhigher = more varied"),
              ("repeated_3gram", "重复的词 3-gram，越高越绕圈子\n"
                                 "repeated word 3-grams\nhigher = more looping"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (key, label) in zip(axes, panels):
        for name, res in results.items():
            ax.plot(temperatures, res[key], "o-", label=name, color=color_for(name))
        ax.set_xlabel("采样温度 / temperature")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def main():
    t0 = time.time()
    cfg = parse_config(globals())       # TEMPERATURE, LENGTH, TOP_K, TOP_P are checked there (annotations)
    cfg.update(apply_dataset_settings(globals(), DATASET, quick=cfg["QUICK"]))  # a Chinese prompt
    set_seed(SEED)
    device = get_device(DEVICE)
    out = output_dir(__file__, dataset_folder(), quick=cfg["QUICK"])
    models = load_models(device, out, cfg["QUICK"])
    settings = {"temp": TEMPERATURE, "length": LENGTH, "topk": TOP_K, "topp": TOP_P, "model": MODEL,
                "seed": SEED}
    if INTERACTIVE:
        interactive(models, settings)
        return
    prompt = PROMPT.replace("\\n", "\n")
    texts = continue_prompt(models, prompt, settings)
    gen_times = time_generation(models)
    sweep, rows = temperature_sweep(models, prompt, out)
    save_metrics(out, config=cfg, start_time=t0, device=device,
                 metrics={"generate_500_chars_s": gen_times, "temperature_sweep": sweep,
                          "sweep_temperatures": list(SWEEP_TEMPERATURES)},
                 extra={"prompt": prompt, "continuations": texts, "sweep_rows": rows})


if __name__ == "__main__":
    run_main(main)

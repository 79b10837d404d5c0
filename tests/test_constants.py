"""Editing a constant is safe: every script's hyperparameters are checked before anything is loaded or
trained.

The sweep loads each script as a module (its main() is not run, as 06 does) and tries 0, -1, nan and inf for
every numeric constant through the script's own parse_config: each value is refused with one UserError line
naming the constant, or accepted as valid; nothing else may happen. A few real runs then prove the exit
code, the single `error:` line, and that nothing was printed, loaded or written before the refusal.
"""
import ast
import math

import pytest
from conftest import ROOT, run_script

from utils.script_utils import (
    Allowed,
    AtLeast,
    Fraction,
    Interval,
    Items,
    OneOf,
    Positive,
    UserError,
    constant_rules,
    load_case_script,
    parse_config,
    script_config,
)

BLOCK = "# ==== Hyperparameters (edit me) ===="
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("0[1-6]_*/*.py")
                 if BLOCK in p.read_text(encoding="utf-8"))
PROBES = ("0", "-1", "nan", "inf")
# constants that are sizes, counts or rates wherever they appear: 0 and -1 must be refused
NEVER_ZERO = {"EPOCHS", "BATCH_SIZE", "HIDDEN_SIZE", "PATIENCE", "WINDOW", "SEQ_LEN", "MAX_LEN", "HORIZON",
              "NUM_LAYERS", "EMBED_DIM", "LR", "ENSEMBLE", "SAMPLE_LEN", "N_SEEDS", "REPS"}
NEVER_NEGATIVE = {"CLIP", "WEIGHT_DECAY", "DROPOUT", "EMBED_DROPOUT", "SEED", "TEMPERATURE", "MAX_MINUTES"}

_modules = {}


def script_module(script: str):
    """The script as a module (its constants, build_model, ...), loaded once per test session."""
    if script not in _modules:
        _modules[script] = load_case_script(ROOT / script)
    return _modules[script]


def try_value(module, name: str, text: str):
    """parse_config(--NAME=text) on the module's own namespace (its CHECKS read it), restored afterwards.
    -> None if accepted, else the UserError's message."""
    namespace = vars(module)
    saved = dict(namespace)
    try:
        parse_config(namespace, [f"--{name}={text}"])
        return None
    except UserError as e:
        return str(e)
    finally:
        namespace.clear()
        namespace.update(saved)


def numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(numeric(v) for v in value)


def block_names(script: str) -> list[str]:
    """UPPER_CASE names assigned in the hyperparameter block (from its heading to the first settings table:
    QUICK_SETTINGS, GPU_SETTINGS or DATASET_SETTINGS)."""
    source = (ROOT / script).read_text(encoding="utf-8")
    start = source[:source.index(BLOCK)].count("\n") + 1
    names, inside = [], False
    for node in ast.parse(source).body:
        inside = inside or node.lineno > start
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if not inside or not isinstance(target, ast.Name):
            continue
        if target.id in ("QUICK_SETTINGS", "GPU_SETTINGS", "DATASET_SETTINGS", "CHECKS", "CHOICES"):
            break
        names.append(target.id)
    return names


def test_the_sweep_sees_every_script():
    assert (len(SCRIPTS) >= 20 and "03_stock/stock_lstm.py" in SCRIPTS
            and "06_comparison/model_comparison.py" in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_constant_shows_what_it_accepts(script):
    """Each constant of the block is annotated, so its allowed range sits beside it, and it is one of the
    script's command-line constants (06 reads them with script_config)."""
    module = script_module(script)
    names = block_names(script)
    rules = constant_rules(vars(module))
    missing = [n for n in names if n not in rules]
    assert not missing, f"{script}: annotate {', '.join(missing)} (e.g. EPOCHS: AtLeast(1) = 12)"
    assert list(script_config(module)) == names
    for name in names:
        assert rules[name].accepts(getattr(module, name)), f"{script}: the shipped {name} breaks its own rule"


@pytest.mark.parametrize("script", SCRIPTS)
def test_sweep_zero_minus_one_nan_inf(script):
    module = script_module(script)
    config = script_config(module)
    checked = 0
    for name, value in config.items():
        if not numeric(value):
            continue
        for text in PROBES:
            try:
                refused = try_value(module, name, text)
            except SystemExit as e:  # parse_config may only exit for --help
                pytest.fail(f"{script} --{name}={text}: SystemExit({e.code})")
            except Exception as e:  # noqa: BLE001 - the point: nothing but UserError
                pytest.fail(f"{script} --{name}={text}: {type(e).__name__}: {e}")
            checked += 1
            if refused is not None:
                assert "\n" not in refused and name in refused, refused
            if text in ("nan", "inf"):
                assert refused, f"{script} accepted --{name}={text}"
            if name in NEVER_ZERO and text in ("0", "-1"):
                assert refused, f"{script} accepted --{name}={text}"
            if name in NEVER_NEGATIVE and text == "-1":
                assert refused, f"{script} accepted --{name}={text}"
    assert checked > 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_settings_are_valid(script):
    module = script_module(script)
    namespace = vars(module)
    saved = dict(namespace)
    try:
        cfg = parse_config(namespace, ["--quick"])
        assert cfg["QUICK"] is True
    finally:
        namespace.clear()
        namespace.update(saved)


def test_an_edit_in_the_file_is_checked_too():
    """A learner edits the file rather than the command line: the same check, naming the constant."""
    module = load_case_script(ROOT / "03_stock/stock_lstm.py")
    module.HORIZON = 0                                      # as if the file said HORIZON: AtLeast(1) = 0
    with pytest.raises(UserError,
                       match=r"^HORIZON = 0: must be an integer >= 1 \(trading days ahead to forecast\)\.$"):
        parse_config(vars(module), [])
    module.HORIZON, module.LR = 1, 12                       # an int where a float is expected is fine
    assert parse_config(vars(module), [])["LR"] == 12
    module.EPOCHS = 2.5                                     # a float where an integer is expected is not
    with pytest.raises(UserError, match="EPOCHS = 2.5: must be an integer >= 1"):
        parse_config(vars(module), [])


def test_cross_constraints_name_the_values():
    module = load_case_script(ROOT / "03_stock/stock_gru.py")
    module.TEST_FRAC = 0.5                                  # edited in the file; VAL_FRAC on the command line
    with pytest.raises(UserError,
                       match=r"VAL_FRAC \+ TEST_FRAC must be below 1.*now --VAL_FRAC=0.6, TEST_FRAC=0.5"):
        parse_config(vars(module), ["--VAL_FRAC=0.6"])


def test_help_shows_the_allowed_range(capsys):
    module = load_case_script(ROOT / "04_text_gen/text_lstm.py")
    with pytest.raises(SystemExit) as done:
        parse_config(vars(module), ["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "[an integer >= 1]" in out and "[a number in [0, 1)]" in out and "[one of torch, scratch]" in out
    assert "each a number >= 0" in out                      # TEMPERATURES: Items(AtLeast(0.0))


@pytest.mark.parametrize("rule, good, bad", [
    (AtLeast(1), (1, 7), (0, -1, 1.5, True, "3")),
    (AtLeast(0.0), (0, 0.0, 2.5), (-0.1, math.nan, math.inf)),
    (Positive, (1e-9, 3), (0, -1, math.nan, math.inf)),
    (Fraction, (0, 0.5), (1, 1.0, -0.1, math.nan)),
    (Interval("(0, 1]"), (1, 0.3), (0, 1.01)),
    (Interval("[1, 100000]", int), (1, 100000), (0, 100001, 5.0)),
    (OneOf("torch", "scratch"), ("torch",), ("keras", 1)),
    (Items(AtLeast(0.0)), ((0.5, 1), [2.0]), ((), ("hot",), (-1.0,), 0.5)),
    (Items(AtLeast(1), length=4), ((1, 2, 3, 4),), ((1, 2, 3),)),
    (Allowed(str), ("", "x"), (1,)),
])
def test_rules(rule, good, bad):
    assert all(rule.accepts(v) for v in good), rule
    assert not any(rule.accepts(v) for v in bad), rule


# ---- real runs: exit 2, one line, and nothing before it ---------------------------------------------------
@pytest.mark.parametrize("script, option, message", [
    ("03_stock/stock_lstm.py", "--HORIZON=0",
     "error: --HORIZON=0: must be an integer >= 1 (trading days ahead to forecast)."),
    ("04_text_gen/text_lstm.py", "--TEMPERATURES=hot",
     "error: --TEMPERATURES=hot: the item 'hot' must be a number >= 0"),
    ("02_sentiment/sentiment_gru.py", "--LR=nan", "error: --LR=nan: must be a number > 0"),
])
def test_a_bad_value_stops_before_anything_runs(script, option, message, tmp_path):
    outputs, data = tmp_path / "outputs", tmp_path / "data"
    r = run_script(script, option, check=False, timeout=120,
                   env={"LSTM_GRU_OUTPUTS": str(outputs), "LSTM_GRU_DATA": str(data)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(message), r.stderr
    assert r.stdout == ""                     # not even "device: ...": no data, no model, no training
    assert not outputs.exists() and not data.exists()


@pytest.mark.parametrize("text, expected", [
    ("3e-4,1e-3", (3e-4, 1e-3)), ("1E3, .5, 5.", (1000.0, 0.5, 5.0)), ("+1,2,1_000", (1, 2, 1000)),
    ("[3e-4, 1e-2]", (3e-4, 1e-2)),
])
def test_list_items_accept_every_spelling_a_single_value_accepts(text, expected):
    """--LR_GRID=3e-4,1e-3 was refused ('the item '3e-4' must be a number > 0'): scientific notation and the
    other spellings float()/int() take are numbers in a list too; the list is then checked as usual."""
    from utils.script_utils import load_case_script, parse_config
    study = load_case_script(ROOT / "06_comparison/hyperparameter_study.py")
    assert parse_config(vars(study), [f"--LR_GRID={text}"])["LR_GRID"] == pytest.approx(expected)
    for spelled in text.strip("[]").split(","):
        parsed = parse_config(vars(study), [f"--LR_GRID={spelled}"])["LR_GRID"]
        assert float(spelled) == pytest.approx(parsed[0])

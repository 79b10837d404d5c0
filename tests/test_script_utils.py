"""The command-line convention every script shares: --NAME=VALUE, --quick, --help, clear errors."""
import json
import subprocess
import sys

import pytest

from utils.script_utils import (
    UserError,
    atomic_write,
    convert_value,
    output_dir,
    parse_config,
    print_table,
    save_metrics,
)


def namespace(**extra):
    ns = {"__file__": None, "__doc__": "demo", "EPOCHS": 10, "LR": 1e-3, "IMPL": "torch",
          "BIDIRECTIONAL": False, "HIDDEN_SIZES": (64, 32), "CSV": "", "QUICK_SETTINGS": {"EPOCHS": 1},
          "CHOICES": {"IMPL": ("torch", "scratch")}, "lowercase": 5}
    ns.update(extra)
    return ns


def test_defaults_are_returned_unchanged():
    ns = namespace()
    cfg = parse_config(ns, [])
    assert cfg == {"EPOCHS": 10, "LR": 1e-3, "IMPL": "torch", "BIDIRECTIONAL": False,
                   "HIDDEN_SIZES": (64, 32), "CSV": "", "QUICK": False}


@pytest.mark.parametrize("argv, name, value", [
    (["--EPOCHS=3"], "EPOCHS", 3),
    (["--epochs", "4"], "EPOCHS", 4),
    (["--LR=0.5"], "LR", 0.5),
    (["--LR=2"], "LR", 2.0),
    (["--IMPL=scratch"], "IMPL", "scratch"),
    (["--BIDIRECTIONAL"], "BIDIRECTIONAL", True),
    (["--bidirectional=no"], "BIDIRECTIONAL", False),
    (["--HIDDEN_SIZES=128,64,32"], "HIDDEN_SIZES", (128, 64, 32)),
    (["--HIDDEN_SIZES=(8, 4)"], "HIDDEN_SIZES", (8, 4)),
    (["--csv", "my prices.csv"], "CSV", "my prices.csv"),
])
def test_overrides_are_typed_and_written_back(argv, name, value):
    ns = namespace()
    cfg = parse_config(ns, argv)
    assert cfg[name] == value and ns[name] == value
    assert type(ns[name]) is type(value)


def test_quick_applies_quick_settings_but_explicit_values_win():
    ns = namespace()
    assert parse_config(ns, ["--quick"])["EPOCHS"] == 1
    ns = namespace()
    cfg = parse_config(ns, ["--quick", "--EPOCHS=2"])
    assert cfg["EPOCHS"] == 2 and cfg["QUICK"] is True


@pytest.mark.parametrize("argv, message", [
    (["--EPOCHS=abc"], "--EPOCHS expects an integer, got 'abc'"),
    (["--LR=fast"], "--LR expects a number"),
    (["--BIDIRECTIONAL=maybe"], "--BIDIRECTIONAL expects true or false"),
    (["--EPOCH=3"], "unknown option --EPOCH. Did you mean --EPOCHS?"),
    (["--lowercase=1"], "unknown option --lowercase"),
    (["--IMPL=cuda"], "--IMPL must be one of torch, scratch"),
    (["EPOCHS=3"], "unexpected argument 'EPOCHS=3'"),
    (["--EPOCHS"], "--EPOCHS needs a value"),
])
def test_bad_values_are_one_clear_error(argv, message):
    with pytest.raises(UserError) as err:
        parse_config(namespace(), argv)
    assert message in str(err.value)


def test_convert_value_keeps_strings():
    assert convert_value("X", "a b", "") == "a b"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_text("old")

    def broken(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_save_metrics_is_valid_json(tmp_path):
    import math
    path = save_metrics(tmp_path, config={"A": 1}, metrics={"acc": 0.5, "nan": math.nan},
                        history=[{"epoch": 1}], start_time=0.0)
    data = json.loads(path.read_text())
    assert data["metrics"] == {"acc": 0.5, "nan": None}
    assert data["config"] == {"A": 1} and "torch_version" in data


def test_output_dir_is_case_and_script(tmp_path):
    out = output_dir("/somewhere/02_sentiment/sentiment_lstm.py")
    assert out.parts[-3:] == ("outputs", "02_sentiment", "sentiment_lstm")


def test_print_table_aligns(capsys):
    text = print_table([{"model": "LSTM", "acc": 0.5}, {"model": "GRU", "acc": 0.75}], title="t")
    assert "LSTM" in text and "0.7500" in text


SCRIPT = '''"""Demo script."""
import pathlib
import sys

sys.path.insert(0, {root!r})
from utils.script_utils import parse_config, run_main, UserError
EPOCHS = 10  # passes over the data
NAME = "x"  # a name
QUICK_SETTINGS = dict(EPOCHS=1)
def main():
    cfg = parse_config(globals())
    if NAME == "bad":
        raise UserError("NAME may not be bad.")
    print("EPOCHS", EPOCHS)
if __name__ == "__main__":
    run_main(main)
'''


@pytest.fixture
def demo(tmp_path):
    from conftest import ROOT
    path = tmp_path / "demo.py"
    path.write_text(SCRIPT.format(root=str(ROOT)))
    return path


def run(path, *args):
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=60)


def test_script_help_lists_constants_with_comments(demo):
    p = run(demo, "--help")
    assert p.returncode == 0
    assert "--EPOCHS" in p.stdout and "passes over the data" in p.stdout and "--quick" in p.stdout


def test_script_errors_are_one_line_exit_2(demo):
    for args in (["--EPOCHS=x"], ["--NAME=bad"], ["--nope=1"]):
        p = run(demo, *args)
        assert p.returncode == 2
        assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
        assert "Traceback" not in p.stderr


def test_script_quick(demo):
    assert run(demo, "--quick").stdout.strip() == "EPOCHS 1"


def test_the_lock_file_pins_every_requirement_within_its_range():
    """requirements.txt: ranges a learner installs with; requirements-lock.txt: the exact versions the
    README's figures were measured with (CI installs it). Every requirement is pinned there, inside its
    range."""
    import re

    from conftest import ROOT
    from packaging.requirements import Requirement

    def entries(name):
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        return [Requirement(re.split(r"\s+#", line)[0].strip()) for line in lines
                if line.strip() and not line.lstrip().startswith("#")]
    norm = lambda n: n.lower().replace("_", "-")                                    # noqa: E731
    lock = {norm(r.name): r for r in entries("requirements-lock.txt")}
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in lock.values())
    for req in entries("requirements.txt"):
        assert norm(req.name) in lock, f"{req.name} is not pinned in requirements-lock.txt"
        pinned = next(iter(lock[norm(req.name)].specifier)).version
        assert req.specifier.contains(pinned,
                                      prereleases=True), f"{req.name}=={pinned} is outside {req.specifier}"


def test_metrics_record_the_key_package_versions(tmp_path):
    import json
    from importlib import metadata

    from utils.script_utils import save_metrics
    path = save_metrics(tmp_path, config={}, metrics={})
    versions = json.loads(path.read_text())["versions"]
    assert versions["torch"] == metadata.version("torch") and versions["numpy"] == metadata.version("numpy")
    assert {"scikit-learn", "pandas", "sktime"} <= set(versions)

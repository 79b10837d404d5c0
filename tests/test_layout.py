"""The code reads like the lesson: checks of the layout a learner relies on (the training step in sight, a
case's code in its folder, 01's sequence as a loop over the cell, no import cycle between 01 and utils)."""
import ast

import pytest
from conftest import ROOT

CASE_MODULES = ["02_sentiment/sentiment_model.py", "03_stock/stock_model.py", "04_text_gen/char_model.py",
                "04_text_gen/g2p_model.py", "05_seq_classify/series_model.py",
                "05_seq_classify/segment_model.py"]


def functions(path):
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def calls(fn):
    """Names of the functions and methods a function calls: 'backward', 'zero_grad', 'clip_gradients', ..."""
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


@pytest.mark.parametrize("path", CASE_MODULES)
def test_each_case_module_holds_a_short_readable_training_step(path):
    """forward -> loss -> zero_grad -> backward -> clip -> step, in one short function of the case's own
    module."""
    steps = [fn for fn in functions(path).values()
             if {"zero_grad", "backward", "clip_gradients", "step"} <= calls(fn)]
    assert steps, f"{path} has no function with zero_grad, backward, clip_gradients and step"
    fn = min(steps, key=lambda f: f.end_lineno - f.lineno)
    assert fn.end_lineno - fn.lineno + 1 <= 40, f"{path}: {fn.name} is {fn.end_lineno - fn.lineno + 1} lines"
    assert "stop_if_not_finite" in calls(fn), f"{path}: {fn.name} must stop on a NaN loss before the update"


def test_utils_never_calls_backward():
    """The driver (utils/training.py fit) runs the case's step; the backward pass itself is in the case
    folder."""
    for path in (ROOT / "utils").glob("*.py"):
        for fn in functions(path.relative_to(ROOT)).values():
            assert "backward" not in calls(fn), f"{path.name}: {fn.name} calls backward()"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_01_first_sequence_forward_is_a_loop_over_the_cell(cell):
    path = f"01_basic_theory/{cell}_from_scratch.py"
    fns = functions(path)
    assert f"{cell}_cell_forward" in calls(fns[f"{cell}_forward"])
    assert f"{cell}_cell_backward" in calls(fns[f"{cell}_backward"])
    assert any(isinstance(n, ast.For) for n in ast.walk(fns[f"{cell}_forward"]))
    # read first: the plain loop comes before the fast path in the file
    assert fns[f"{cell}_forward"].lineno < fns[f"{cell}_sequence_forward"].lineno


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_import_cycle_between_01_and_utils():
    """utils.model_utils loads 01's cells by path (make_rnn, IMPL="scratch"); 01 must not import it back."""
    for name in ("lstm_from_scratch.py", "gru_from_scratch.py", "rnn_common.py"):
        assert "utils.model_utils" not in _imports(ROOT / "01_basic_theory" / name), name
    for name in ("training.py", "script_utils.py", "visualization.py"):
        assert "utils.model_utils" not in _imports(ROOT / "utils" / name), name


def test_every_utils_module_serves_two_or_more_folders():
    """A module that serves one case lives in that case's folder (STYLE.md, 'Where code goes')."""
    folders = [p for p in ROOT.iterdir() if p.is_dir() and p.name[:2].isdigit()] + [ROOT / "figures"]
    for module in sorted((ROOT / "utils").glob("*.py")):
        if module.stem == "__init__":
            continue
        users = {f.name for f in folders for py in f.rglob("*.py") if f"utils.{module.stem}" in _imports(py)}
        assert len(users) >= 2, f"utils/{module.name} is used by {sorted(users) or 'no folder'} only"

"""Chinese in every plot: the CJK font comes from a pip package (requirements.txt), not from the system.

utils/visualization.py registers Noto Sans SC from pylopdf-fonts-zh-cn when it is imported; every plot a
script draws, and figures/draw_theory_figures.py, use it as the fallback font for Chinese glyphs.
"""
import importlib.util
import warnings
from pathlib import Path

import pytest
from conftest import ROOT
from matplotlib import font_manager

import utils.visualization as vis

CHINESE = "训练损失 / training loss：中文"


def test_the_package_font_is_there_and_registered():
    path = vis.cjk_font_file()
    assert path is not None, "pip install pylopdf-fonts-zh-cn (requirements.txt) brings the CJK font"
    assert path.suffix == ".otf" and path.stat().st_size > 1_000_000
    registered = [f for f in font_manager.fontManager.ttflist if Path(str(f.fname)) == path]
    assert registered and registered[0].name == vis.CJK_FAMILY == "Noto Sans SC"


def test_the_cjk_family_resolves_to_the_package_file_not_a_system_font():
    found = font_manager.findfont(font_manager.FontProperties(family=vis.CJK_FAMILY),
                                  fallback_to_default=False)
    assert Path(str(found)) == vis.cjk_font_file()


def test_latin_first_then_chinese():
    """A list of families: matplotlib takes each glyph from the first font that has it."""
    import matplotlib.pyplot as plt
    assert list(plt.rcParams["font.family"]) == ["DejaVu Sans", "Noto Sans SC"]


def test_a_chinese_label_draws_without_a_missing_glyph(tmp_path):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.set_title(CHINESE)
    ax.set_xlabel("轮次 / epoch")
    ax.plot([1, 2], [3, 4], label="验证损失 / validation loss")
    ax.legend()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = vis.save_figure(fig, tmp_path / "chinese.png")
    missing = [str(w.message) for w in caught if "missing" in str(w.message).lower()]
    assert not missing, missing
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_chinese_character_is_in_the_font():
    """What the fallback would otherwise hide: the font itself has a glyph for each character of a label."""
    from matplotlib.ft2font import FT2Font
    font = FT2Font(str(vis.cjk_font_file()))
    chars = {ord(c) for c in CHINESE if ord(c) > 0x2e80}
    assert chars and chars <= set(font.get_charmap())


def test_without_a_cjk_font_the_labels_stay_drawable(capsys):
    """choice='none': Latin only (the theory figures then draw English labels); back to the package font."""
    import matplotlib.pyplot as plt
    try:
        assert vis.use_chinese_font("none") == ""
        assert list(plt.rcParams["font.family"]) == ["DejaVu Sans"]
    finally:
        assert vis.use_chinese_font() == "Noto Sans SC"
    assert capsys.readouterr().out == ""


def test_the_theory_figures_use_the_same_font():
    spec = importlib.util.spec_from_file_location("draw_theory_figures",
                                                  ROOT / "figures" / "draw_theory_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.setup_fonts("auto") == vis.CJK_FAMILY and module.HAS_CJK
    assert module.bi("遗忘门", "forget gate").startswith("遗忘门")


def test_the_font_package_is_required_and_pinned():
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "pylopdf-fonts-zh-cn" in text
    assert "pylopdf-fonts-zh-cn==" in (ROOT / "requirements-lock.txt").read_text(encoding="utf-8")


if __name__ == "__main__":
    pytest.main([__file__])

"""figures/draw_theory_figures.py draws every THEORY.md diagram; every image a document links to exists."""
import importlib.util
import re
import struct
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import ROOT, run_script

SCRIPT = "figures/draw_theory_figures.py"
SCHEMATIC = ("rnn_unrolled", "gradient_decay", "adding_problem", "lstm_cell", "gru_cell", "activations",
             "lstm_backward_graph", "gru_backward_graph", "padding_packing", "bidirectional_stacked",
             "tbptt_streams", "attention", "beam_search", "crf_lattice")
MEASURED = "gradient_vs_lag"  # drawn from theory_comparison.py's run, absent from the tests' outputs/
MAX_FIGURE = 300 * 1024
MAX_LINKED = 600 * 1024


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header; fails unless the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def load_script():
    spec = importlib.util.spec_from_file_location("draw_theory_figures", ROOT / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_draws_every_schematic_figure_into_the_given_folder(tmp_path):
    committed = {p.name: p.stat().st_mtime_ns for p in (ROOT / "figures" / "theory").glob("*.png")}
    result = run_script(SCRIPT, f"--OUT_DIR={tmp_path}", timeout=120)
    for name in SCHEMATIC:
        path = tmp_path / f"{name}.png"
        assert path.is_file(), f"{name}.png was not drawn.\n{result.stdout}\n{result.stderr}"
        width, height = png_size(path)
        assert width > 300 and height > 200
        assert path.stat().st_size <= MAX_FIGURE, f"{name}.png is {path.stat().st_size / 1024:.0f} kB"
    # The measured figure needs theory_comparison.py's run, which the tests' outputs/ folder lacks: one line.
    assert not (tmp_path / f"{MEASURED}.png").exists()
    assert sum(f"skipped {MEASURED}.png" in line for line in result.stdout.splitlines()) == 1
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"
    # The committed figures were not rewritten by the test.
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "figures" / "theory").glob("*.png")} == committed


def test_committed_figures_are_small_pngs():
    folder = ROOT / "figures" / "theory"
    for name in SCHEMATIC + (MEASURED,):
        path = folder / f"{name}.png"
        assert path.is_file(), f"{path} is missing: run python {SCRIPT}"
        png_size(path)
        assert path.stat().st_size <= MAX_FIGURE, f"{name}.png is {path.stat().st_size / 1024:.0f} kB"


def test_packed_layout_drawn_is_what_torch_packs():
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence
    figures = load_script()
    for lengths in ([len(r) for r in figures.REVIEWS], [1], [2, 7, 4], [3, 3, 1, 5, 2]):
        B, T = len(lengths), max(lengths)
        ids = torch.arange(B * T, dtype=torch.float32).view(B, T, 1)        # id = b*T + t
        packed = pack_padded_sequence(ids, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        order, batch_sizes, sorted_indices = figures.pack_layout(lengths)
        assert batch_sizes == packed.batch_sizes.tolist()
        if len(set(lengths)) == len(lengths):  # with ties, the order among equals is torch's own business
            assert sorted_indices == packed.sorted_indices.tolist()
            assert order == [divmod(int(v), T) for v in packed.data[:, 0]]


def test_a_line_never_mixes_chinese_and_math():
    figures = load_script()
    assert figures.checked("遗忘门 f (L2)\nforget gate $f_t$") == "遗忘门 f (L2)\nforget gate $f_t$"
    with pytest.raises(ValueError, match="mixes Chinese"):
        figures.checked("遗忘门 $f_t$")


# ---- every image a document shows must be there, and small --------------------------------------------
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))(?:\s+[\"'][^\"']*[\"'])?\s*\)")
HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)


def documents() -> list[Path]:
    found = [ROOT / "THEORY.md", *ROOT.glob("README.md"), *ROOT.glob("*/README.md")]
    return sorted({p for p in found if p.is_file()})


def image_links(text: str) -> list[str]:
    return [a or b for a, b in IMAGE_LINK.findall(text)] + HTML_IMAGE.findall(text)


def test_image_link_parser():
    text = ('![a](figures/theory/lstm_cell.png) ![b](<../x y.png> "title") <img src="p.png" width=300>\n'
            "[not an image](README.md) ![web](https://example.org/a.png)")
    assert image_links(text) == ["figures/theory/lstm_cell.png", "../x y.png", "https://example.org/a.png",
                                 "p.png"]


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_image_link_in_the_documents_resolves(doc):
    problems = []
    for link in image_links(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", link, re.I):  # http(s):, data: ... not a file of this repository
            continue
        path = (doc.parent / unquote(link.split("#")[0].split("?")[0])).resolve()
        if not path.is_file():
            problems.append(f"{link}: no such file")
        elif path.stat().st_size > MAX_LINKED:
            problems.append(f"{link}: {path.stat().st_size / 1024:.0f} kB > {MAX_LINKED // 1024} kB")
    assert not problems, f"{doc.relative_to(ROOT)}: " + "; ".join(problems)


# ---- figures/collect_results_figures.py: the READMEs' pictures of real runs, from outputs/ ---------------
COLLECT = "figures/collect_results_figures.py"


def tiny_png() -> bytes:
    """A valid 1x1 white PNG, built by hand (no image library needed)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(b"IEND", b""))


def test_collect_script_copies_what_exists_and_names_what_is_missing(tmp_path):
    collect = importlib.util.spec_from_file_location("collect_results_figures", ROOT / COLLECT)
    module = importlib.util.module_from_spec(collect)
    collect.loader.exec_module(module)
    copied = next(f for f in module.RESULTS if f.how == "copy")
    runs, out = tmp_path / "outputs", tmp_path / "results"
    (runs / copied.source).parent.mkdir(parents=True)
    (runs / copied.source).write_bytes(tiny_png())
    committed = {p.name: p.stat().st_mtime_ns for p in (ROOT / "figures" / "results").glob("*.png")}

    result = run_script(COLLECT, f"--OUTPUTS={runs}", f"--OUT_DIR={out}", "--CJK_FONT=none", timeout=60)

    assert (out / copied.name).read_bytes() == tiny_png()
    lines = result.stdout.splitlines()
    assert sum(line.startswith("copied") and copied.name in line for line in lines) == 1, result.stdout
    for figure in module.RESULTS:
        if figure.source.startswith("repo:") or figure is copied:
            continue
        said = [line for line in lines if figure.name in line]
        assert len(said) == 1 and said[0].startswith("missing") and figure.made_by in said[0], result.stdout
        assert not (out / figure.name).exists()
    assert "Traceback" not in result.stderr
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "figures" / "results").glob("*.png")} == committed

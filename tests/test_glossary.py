"""One vocabulary: THEORY.md's glossary is the one list of Chinese terms, and its last column, 不用的说法 /
avoid, names the variants no learner-facing document may use (`literal` or `/regex/`, each in backticks).

These tests read that column and fail, naming file, line and variant, when the top README, THEORY.md (outside
the glossary table itself), a case's README or the exercises' README uses one.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY_HEADING = re.compile(r"^##\s+术语表")
AVOID_HEADER = "不用的说法"


@dataclass(frozen=True)
class Variant:
    text: str               # as written in the glossary: a literal, or /regex/
    pattern: re.Pattern
    term: str               # the glossary's term to use instead


def glossary_table(text: str) -> tuple[list[str], int, int]:
    """The glossary's table: its lines, and the 1-based numbers of its first and last line."""
    lines = text.splitlines()
    start = next((k for k, line in enumerate(lines) if GLOSSARY_HEADING.match(line)), None)
    if start is None:
        raise ValueError("no '## 术语表 / Glossary' section")
    first = next((k for k in range(start, len(lines)) if lines[k].startswith("|")), None)
    if first is None:
        raise ValueError("the glossary section has no table")
    last = first
    while last + 1 < len(lines) and lines[last + 1].startswith("|"):
        last += 1
    return lines[first:last + 1], first + 1, last + 1


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def parse_avoid_column(text: str) -> list[Variant]:
    """Every variant of the glossary's avoid column, with the term to use instead (the row's first cell)."""
    table, _, _ = glossary_table(text)
    header = cells(table[0])
    column = next((k for k, name in enumerate(header) if AVOID_HEADER in name), None)
    if column is None:
        raise ValueError(f"the glossary table has no '{AVOID_HEADER}' column: {header}")
    variants = []
    for row in table[2:]:                           # skip the header and the | --- | line
        row_cells = cells(row)
        if len(row_cells) <= column:
            continue
        for item in re.findall(r"`([^`]+)`", row_cells[column]):
            if len(item) > 2 and item.startswith("/") and item.endswith("/"):
                pattern = re.compile(item[1:-1])
            else:
                pattern = re.compile(re.escape(item))
            variants.append(Variant(item, pattern, row_cells[0]))
    return variants


def find_variants(path: Path, variants: list[Variant], skip: range = range(0)) -> list[str]:
    """'file:line: variant (use term)' for every use of a variant in `path`, outside the lines in `skip`."""
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if number in skip:
            continue
        for v in variants:
            for m in v.pattern.finditer(line):
                try:
                    name = path.relative_to(ROOT)
                except ValueError:
                    name = path
                problems.append(f"{name}:{number}: '{m.group(0)}' (glossary variant {v.text}; use {v.term})")
    return problems


def documents() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "THEORY.md", *sorted(ROOT.glob("0*/README.md")),
             ROOT / "01_basic_theory" / "exercises" / "README.md"]
    return [p for p in found if p.is_file()]


THEORY_TEXT = (ROOT / "THEORY.md").read_text(encoding="utf-8")
VARIANTS = parse_avoid_column(THEORY_TEXT)


def test_the_glossary_lists_the_variants_not_to_use():
    listed = {v.text for v in VARIANTS}
    # the decisions of the one vocabulary: each of these must stay in the avoid column
    for variant in ("四个门", "候选状态", "预激活", "持久性", "功劳分配", "读音", "某个单元"):
        assert variant in listed, f"THEORY.md's glossary no longer lists '{variant}' as a variant to avoid"
    dimension = next(v for v in VARIANTS if v.text.startswith("/"))
    for text in ("第 1 个单元", "第1个单元", "第 $3$ 个单元"):
        assert dimension.pattern.search(text), f"{dimension.text} should catch '{text}'"
    assert not dimension.pattern.search("LSTM 单元"), "the cell itself is 单元"


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_document_uses_a_variant(doc):
    skip = range(0)
    if doc.name == "THEORY.md" and doc.parent == ROOT:
        _, first, last = glossary_table(THEORY_TEXT)
        skip = range(first, last + 1)               # the table names the variants on purpose
    problems = find_variants(doc, VARIANTS, skip)
    assert not problems, "variants the glossary (THEORY.md, 术语表) says not to use:\n" + "\n".join(problems)


def test_the_checker_catches_a_variant_and_spares_its_own_table(tmp_path):
    theory = tmp_path / "THEORY.md"
    theory.write_text(
        "# 讲义\n\nLSTM 有三个门和一个候选值。\n\n## 术语表 / Glossary\n\n"
        "| 中文术语 | English | 不用的说法 / avoid |\n| --- | --- | --- |\n"
        "| 三个门和一个候选值 | three gates and a candidate | `四个门` |\n"
        "| 隐藏单元 / 第 k 维 | hidden unit | `/第 ?\\$?\\d+\\$? ?个单元/`, `某个单元` |\n",
        encoding="utf-8")
    variants = parse_avoid_column(theory.read_text(encoding="utf-8"))
    assert [v.text for v in variants] == ["四个门", "/第 ?\\$?\\d+\\$? ?个单元/", "某个单元"]
    _, first, last = glossary_table(theory.read_text(encoding="utf-8"))
    assert find_variants(theory, variants, range(first, last + 1)) == []

    doc = tmp_path / "README.md"
    doc.write_text("LSTM 单元很好。\n四个门的权重叠在一起。\n看第 3 个单元：0.365。\n", encoding="utf-8")
    problems = find_variants(doc, variants)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{doc}:2: '四个门'") and "use 三个门和一个候选值" in problems[0]
    assert problems[1].startswith(f"{doc}:3: '第 3 个单元'") and "use 隐藏单元 / 第 k 维" in problems[1]


def test_a_glossary_without_the_avoid_column_is_an_error():
    with pytest.raises(ValueError, match="no '不用的说法' column"):
        parse_avoid_column("## 术语表 / Glossary\n\n| 中文术语 | English |\n| --- | --- |\n| 门 | gate |\n")

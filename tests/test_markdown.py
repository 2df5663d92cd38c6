"""mango_lite.markdown: the one table helper of every Markdown writer (issue "one configuration, one task
registry, one run executor", item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mango_lite.markdown import BLANK, row, separator, table

PACKAGE = Path(__file__).resolve().parents[1] / "mango_lite"


def test_a_table_is_its_header_its_separator_then_its_rows():
    assert table(["model", "params"], [["mango", "1.2 M"], ["concat", 0.9]]) == [
        "| model | params |", "|---|---|", "| mango | 1.2 M |", "| concat | 0.9 |"]


def test_cells_are_written_with_str():
    assert table(["n", "x", "none"], [[3, 1.5, None]])[2] == "| 3 | 1.5 | None |"


def test_a_table_without_rows_is_its_header_and_separator():
    assert table(("a", "b"), []) == ["| a | b |", "|---|---|"]


def test_columns_align_right_when_asked():
    assert table(["task", "model", "total"], [["genre", "mango", "1.00"]], align="llr")[1] == "|---|---|---:|"
    assert table(["task", "total"], [], align=["l", "r"])[1] == "|---|---:|"
    assert separator("rl") == "|---:|---|"


def test_a_row_of_the_wrong_length_is_refused_naming_it_and_both_lengths():
    with pytest.raises(ValueError, match=r"row 1 \['b', 2, 3\] has 3 cells, the header 2"):
        table(["name", "value"], [["a", 1], ["b", 2, 3]])
    with pytest.raises(ValueError, match="row 0 .* has 1 cells, the header 2"):
        table(["name", "value"], [["a"]])


def test_alignments_must_match_the_header_and_be_l_or_r():
    with pytest.raises(ValueError, match="2 alignments"):
        table(["a", "b", "c"], [], align="lr")
    with pytest.raises(ValueError, match="'c'"):
        table(["a", "b"], [], align="lc")
    with pytest.raises(ValueError, match="no cells"):
        table([], [])


def test_row_and_the_two_empty_cells():
    """An empty string is an empty cell with a space either side; BLANK is written with one space, as the
    paper's rows of results.md leave their parameter column."""
    assert row(["a", 1]) == "| a | 1 |"
    assert row(["a", ""]) == "| a |  |"
    assert row(["a", BLANK]) == "| a | |"
    assert table(["a", "params"], [["x", BLANK]])[2] == "| x | |"


def test_no_module_but_the_helper_writes_a_table_separator():
    """Every Markdown writer builds its tables with mango_lite.markdown.table, so the next one does too."""
    writers = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
               if p != PACKAGE / "markdown.py" and "|---" in p.read_text(encoding="utf-8")]
    assert not writers, f"build these tables with mango_lite.markdown.table: {writers}"

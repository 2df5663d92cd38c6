"""Markdown tables: the one place mango_lite writes a table's pipes and separator.

Every writer of a Markdown file (``results.md``, the studies' summaries, the README's result views) builds its
tables with :func:`table`, so a table's header, separator and rows always have the same number of cells and
look alike everywhere::

    >>> print("\\n".join(table(["model", "params"], [["mango", "1.2 M"], ["concat", 0.9]], align="lr")))
    | model | params |
    |---|---:|
    | mango | 1.2 M |
    | concat | 0.9 |

Cells are written with ``str()``, one space either side; an empty string gives an empty cell (``|  |``) and
:data:`BLANK` a blank one written with a single space (``| |``, as the paper's rows leave their parameter
column). A writer that puts other lines between rows writes each with :func:`row`. Standard library only: this
module sits at the foundations of the layer contract (``tests/test_layers.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["BLANK", "row", "separator", "table"]

#: the separator cell of each alignment: ``l`` left (the default), ``r`` right
_RULES = {"l": "---", "r": "---:"}


class _Blank:
    """The type of :data:`BLANK`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "BLANK"

    def __str__(self) -> str:
        return ""


#: a blank cell written with one space (``| |``) where an empty string is written with two (``|  |``)
BLANK = _Blank()


def _cell(value: object) -> str:
    return " " if value is BLANK else f" {value} "


def row(cells: Iterable[object]) -> str:
    """One table row: ``row(["mango", 1.5])`` is ``"| mango | 1.5 |"``."""
    return "|" + "|".join(_cell(c) for c in cells) + "|"


def separator(align: str | Sequence[str]) -> str:
    """The line under the header, one ``---`` (``l``) or ``---:`` (``r``) per column: ``separator("lr")`` is
    ``"|---|---:|"``."""
    bad = [a for a in align if a not in _RULES]
    if bad:
        raise ValueError(f"separator: alignments are 'l' or 'r', got {bad} in {list(align)}")
    return "|" + "".join(_RULES[a] + "|" for a in align)


def table(header: Sequence[object], rows: Iterable[Sequence[object]],
          align: str | Sequence[str] | None = None) -> list[str]:
    """The lines of a GitHub-flavoured Markdown table: the header, the separator, then one line per row.

    ``align`` gives each column's alignment, ``"l"`` (``---``) or ``"r"`` (``---:``), as a string (``"llr"``)
    or a sequence; ``None`` aligns every column left. Every row must have as many cells as the header: a row of
    another length raises ``ValueError`` naming the row and both lengths.

    >>> table(["a", "b"], [[1, 2]], align="lr")
    ['| a | b |', '|---|---:|', '| 1 | 2 |']
    """
    n = len(header)
    if n == 0:
        raise ValueError("table: the header has no cells")
    align = "l" * n if align is None else align
    if len(align) != n:
        raise ValueError(f"table: {len(align)} alignments ({list(align)}) for a header of {n} cells")
    lines = [row(header), separator(align)]
    for i, cells in enumerate(rows):
        cells = list(cells)
        if len(cells) != n:
            raise ValueError(f"table: row {i} {cells!r} has {len(cells)} cells, the header {n} ({list(header)!r})")
        lines.append(row(cells))
    return lines

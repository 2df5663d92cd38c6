"""Keep result tables in README.md identical to the results files they come from.

A block in a Markdown file::

    <!-- include: results/mechanisms/goals.md -->
    ...anything...
    <!-- end include -->

is replaced by the named file's text (its first ``# `` heading line dropped, since the README has its own
headings). ``<!-- include: results/cpu/results.json headline -->`` instead renders a view of a JSON
results file (:data:`mango_lite.reporting.views.VIEWS`): tables and the comparative sentences
computed from them. The files are written by code (``python -m mango_lite mechanisms ...``), so a number in such a
block cannot drift from its source; ``tests/test_readme_tables.py`` fails when README.md differs from what
this module writes.

    python -m mango_lite.reporting.readme            # rewrite README.md in place
    python -m mango_lite.reporting.readme --check    # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..errors import MangoLiteError
from ..utils import atomic_write_text

_BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+)(?: (?P<view>\w+))? -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def _included(root: Path, rel: str, view: str | None = None) -> str:
    path = root / rel
    if path.is_dir() and view is not None:
        from .views import FOLDER_VIEWS

        if view not in FOLDER_VIEWS:
            raise MangoLiteError(f"README include: unknown folder view {view!r} for {rel}/ (expected one of "
                                 f"{sorted(FOLDER_VIEWS)})")
        return FOLDER_VIEWS[view](path).rstrip() + "\n"
    if not path.is_file():
        raise MangoLiteError(f"README include: {rel} does not exist (relative to {root.name}/)")
    if view is not None:
        from .views import VIEWS

        if view not in VIEWS:
            raise MangoLiteError(f"README include: unknown view {view!r} for {rel} (expected one of {sorted(VIEWS)})")
        return VIEWS[view](json.loads(path.read_text(encoding="utf-8"))).rstrip() + "\n"
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return "\n".join(lines).rstrip() + "\n"


def render(text: str, root: str | Path) -> str:
    """``text`` with every include block filled from the files under ``root``."""
    root = Path(root)
    return _BLOCK.sub(lambda m: m.group(1) + _included(root, m.group("path"), m.group("view")) + m.group(5), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mango_lite.reporting.readme", description=__doc__.splitlines()[0])
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--check", action="store_true", help="only report whether the file is up to date (exit 1 if not)")
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    old = readme.read_text()
    new = render(old, readme.resolve().parent)
    if args.check:
        if new != old:
            print(f"{readme} is out of date with its included results; run python -m mango_lite.reporting.readme",
                  file=sys.stderr)
            return 1
        return 0
    if new != old:
        atomic_write_text(readme, new)
        print(f"rewrote {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

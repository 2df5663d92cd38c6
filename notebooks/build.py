"""Build the notebooks from their reviewable sources and (optionally) execute them.

    python notebooks/build.py                       # src/*.py -> *.ipynb (no outputs)
    python notebooks/build.py --execute --preset cpu [NAME ...]   # also run them, keeping outputs
    python notebooks/build.py --text-only [NAME ...]   # refresh markdown, keep the committed outputs

``--text-only`` is for prose edits after a long run: it refuses when any code cell differs from the
committed notebook's, so outputs always belong to the code shown above them.

Sources use the py:percent convention: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell
whose lines are commented with ``# ``. Execution uses the current Python environment's kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def parse_source(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cells: list[tuple[str, list[str]]] = []
    kind, buf = None, []
    for line in text.splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, buf))
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
            continue
        if kind is None:
            continue  # module header before the first cell
        buf.append(line)
    if kind is not None:
        cells.append((kind, buf))
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
            nb.cells.append(nbformat.v4.new_markdown_cell(body))
        else:
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines)))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", help="notebook stems (default: all sources)")
    ap.add_argument("--execute", action="store_true")
    ap.add_argument("--preset", default=None, help="MANGO_LITE_PRESET while executing")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--text-only", action="store_true", help="update markdown cells, keep code cells and outputs")
    args = ap.parse_args()
    if args.text_only and args.execute:
        ap.error("--text-only and --execute exclude each other")
    srcs = sorted((HERE / "src").glob("*.py"))
    if args.names:
        srcs = [s for s in srcs if any(s.stem.startswith(n) for n in args.names)]
    for src in srcs:
        nb = parse_source(src.read_text())
        out = HERE / f"{src.stem}.ipynb"
        if args.text_only:
            old = nbformat.read(out, as_version=4)
            new_code = [c.source for c in nb.cells if c.cell_type == "code"]
            old_code = [c for c in old.cells if c.cell_type == "code"]
            if new_code != [c.source for c in old_code]:
                sys.exit(f"{out.name}: code cells differ from the source; execute it instead of --text-only")
            it = iter(old_code)
            nb.cells = [next(it) if c.cell_type == "code" else c for c in nb.cells]
            nb.metadata = old.metadata
        if args.execute:
            from nbclient import NotebookClient

            if args.preset:
                os.environ["MANGO_LITE_PRESET"] = args.preset
            os.environ.pop("CI", None) if args.preset and args.preset != "quick" else None
            t0 = time.time()
            NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
            print(f"executed {out.name} in {time.time() - t0:.0f} s", file=sys.stderr)
        tmp = out.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, out)
        print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()

"""Build the notebooks from their reviewable sources and (optionally) execute them.

    python notebooks/build.py                       # src/*.py -> *.ipynb (no outputs)
    python notebooks/build.py --execute --preset cpu [NAME ...]   # also run them, keeping outputs
    python notebooks/build.py --text-only [NAME ...]   # refresh markdown, keep the committed outputs
    python notebooks/build.py --clean-outputs [NAME ...]   # drop stderr / progress-bar outputs only

Every build also writes ``notebooks/student/NAME.ipynb`` for a source with exercises: the same notebook
without outputs, each exercise's solution replaced by its stub (see ``_split_regions``), the checks kept.

Executed notebooks are written without stderr streams and progress-bar frames (tqdm is disabled in
the kernel), and never when an output names this checkout's absolute path.

``--text-only`` is for prose edits after a long run: it refuses when any code cell differs from the
committed notebook's, so outputs always belong to the code shown above them.

Sources use jupytext's py:percent format (``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell
whose lines are commented with ``# ``), read with jupytext; ``jupytext --to ipynb`` opens them too. Execution
uses the current Python environment's kernel.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


# Exercise regions (as nbgrader marks them). In a code cell, the lines between ``# BEGIN SOLUTION`` and
# ``# END SOLUTION`` are the solution; ``# STUB: code`` lines inside the region are what the student
# version shows instead (default: ``raise NotImplementedError``). Markdown cells mark a written answer with
# ``<!-- BEGIN SOLUTION -->`` / ``<!-- END SOLUTION -->``. The full notebook drops the markers and stubs.
_BEGIN = re.compile(r"^(\s*)(?:# BEGIN SOLUTION|<!-- BEGIN SOLUTION -->)\s*$")
_END = re.compile(r"^\s*(?:# END SOLUTION|<!-- END SOLUTION -->)\s*$")
_STUB = re.compile(r"^(\s*)# STUB: ?(.*)$")
EXERCISE = re.compile(r"^#{2,4} Exercise (\d+[a-z]?\.\d+)\s*[·:-]\s*(.+)$", re.M)
STUDENT_NOTE = ("> **Student version.** The solutions of the exercises are removed and the cells carry no outputs: "
                "fill in the marked places and run the checks below them, which fail until your answer is right "
                "and never print the expected value. Your instructor has the version with solutions.")
#: what the instructor version's header says about itself, and what the student version says instead
INSTRUCTOR_HEADER = "(solutions in this version; students get `notebooks/student/`)"
STUDENT_HEADER = "(this student version has no solutions)"


def _split_regions(lines: list[str], student: bool, markdown: bool) -> list[str]:
    out: list[str] = []
    inside, indent, stubs = False, "", []
    for line in lines:
        begin = _BEGIN.match(line)
        if begin and not inside:
            inside, indent, stubs = True, begin.group(1), []
            continue
        if inside and _END.match(line):
            inside = False
            if student:
                if markdown:
                    out.append("*Your answer here.*")
                else:
                    out.extend(stubs or [f'{indent}raise NotImplementedError("exercise: your code here")'])
            continue
        if inside:
            stub = _STUB.match(line)
            if stub:
                stubs.append(stub.group(1) + stub.group(2))
            elif not student:
                out.append(line)
            continue
        out.append(line)
    if inside:
        raise ValueError("a SOLUTION region is not closed")
    return out


def exercises(text: str) -> list[tuple[str, str]]:
    """``[(number, title)]`` of the exercises in a notebook source (markdown headings "Exercise N.M · title")."""
    return [(m.group(1), m.group(2).strip()) for m in EXERCISE.finditer(parse_markdown_text(text))]


def parse_markdown_text(text: str) -> str:
    nb = parse_source(text)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def parse_source(text: str, student: bool = False) -> nbformat.NotebookNode:
    """py:percent source -> notebook (read by jupytext); ``student=True`` replaces the exercise solutions by
    their stubs, otherwise the exercise markers are dropped."""
    import jupytext

    read = jupytext.reads(text, fmt="py:percent")
    nb = nbformat.v4.new_notebook()
    for cell in read.cells:
        lines = cell.source.splitlines()
        if cell.cell_type == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(_split_regions(lines, student, True))))
        elif cell.cell_type == "code":
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(_split_regions(lines, student, False))))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def fill_runtime(nb: nbformat.NotebookNode, record_from: nbformat.NotebookNode | None) -> None:
    """Write the runtime of ``record_from`` (the executed full notebook: its execution record) where a
    markdown cell of ``nb`` holds the marker, so the header's runtime is measured, never typed."""
    from mango_lite.notebook import RUNTIME_MARKER, run_record, runtime_sentence

    text = runtime_sentence(run_record(record_from) if record_from is not None else None)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and RUNTIME_MARKER in cell.source:
            cell.source = cell.source.replace(RUNTIME_MARKER, text)


def stable_cell_ids(nb: nbformat.NotebookNode) -> None:
    """Give every cell an id made from its type and text (nbformat 4.5 wants one per cell). nbformat's
    random ids change on every build and fill each notebook diff with noise; these change only with the
    cell, so a prose edit shows as the lines it changed."""
    seen: set[str] = set()
    for cell in nb.cells:
        base = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        cid, n = base, 1
        while cid in seen:  # two cells with the same text
            n += 1
            cid = f"{base}-{n}"
        seen.add(cid)
        cell["id"] = cid


_BAR = re.compile(r"\d+%\|")


def _is_progress_bar(output: dict) -> bool:
    """A tqdm widget frame saved as an output ("epoch 1/12:   0%|    | 0/28 [...]")."""
    data = output.get("data", {}) if output.get("output_type") == "display_data" else {}
    return "application/vnd.jupyter.widget-view+json" in data and bool(_BAR.search(str(data.get("text/plain", ""))))


def clean_outputs(nb: nbformat.NotebookNode, root: Path) -> list[str]:
    """Drop stderr streams (warnings and logs are for the person running it, not for readers of the
    committed notebook) and return the problems a committed notebook must not have: an output that
    names ``root`` (a machine-specific absolute path)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs
                        if not (o.get("output_type") == "stream" and o.get("name") == "stderr") and not _is_progress_bar(o)]
        for o in cell.outputs:
            text = o.get("text", "") if o.get("output_type") == "stream" else str(o.get("data", {}).get("text/plain", ""))
            if str(root) in text:
                problems.append(f"cell {i}: output names the machine path {root}")
    _prune_widget_state(nb)
    return problems


def _prune_widget_state(nb: nbformat.NotebookNode) -> None:
    """Keep only the saved widget models that a remaining output shows (and their children), so the
    state of dropped progress bars does not stay behind in the notebook's metadata."""
    key = "application/vnd.jupyter.widget-state+json"
    state = nb.metadata.get("widgets", {}).get(key, {}).get("state")
    if not state:
        return
    todo = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    keep: set[str] = set()
    while todo:
        mid = todo.pop()
        if mid in keep or mid not in state:
            continue
        keep.add(mid)
        todo.extend(re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[mid])))
    nb.metadata["widgets"][key]["state"] = {k: v for k, v in state.items() if k in keep}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", help="notebook stems (default: all sources)")
    ap.add_argument("--execute", action="store_true")
    ap.add_argument("--preset", default=None, help="MANGO_LITE_PRESET while executing")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--text-only", action="store_true", help="update markdown cells, keep code cells and outputs")
    ap.add_argument("--clean-outputs", action="store_true",
                    help="only drop stderr and progress-bar outputs of the committed notebooks (no execution)")
    args = ap.parse_args()
    if args.text_only and args.execute:
        ap.error("--text-only and --execute exclude each other")
    srcs = sorted((HERE / "src").glob("*.py"))
    if args.names:
        srcs = [s for s in srcs if any(s.stem.startswith(n) for n in args.names)]
    if args.clean_outputs:
        for src in srcs:
            out = HERE / f"{src.stem}.ipynb"
            nb = nbformat.read(out, as_version=4)
            problems = clean_outputs(nb, HERE.parent.resolve())
            nbformat.write(nb, out)
            print(f"cleaned {out.relative_to(HERE.parent)}" + (f" (still: {'; '.join(problems)})" if problems else ""))
        return
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
            # committed outputs carry results, not progress-bar frames (a reader running the notebook
            # still sees the bars: this only applies to the kernel started here)
            os.environ["TQDM_DISABLE"] = "1"
            t0 = time.time()
            NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
            print(f"executed {out.name} in {time.time() - t0:.0f} s", file=sys.stderr)
            problems = clean_outputs(nb, HERE.parent.resolve())
            if problems:
                sys.exit(f"{out.name}: not written, " + "; ".join(problems))
        # the header's runtime: this execution's record, or (text only / no execution) the committed one's
        fill_runtime(nb, nb if args.execute else (nbformat.read(out, as_version=4) if out.is_file() else None))
        stable_cell_ids(nb)
        tmp = out.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, out)
        print(f"wrote {out.relative_to(HERE.parent)}")
        write_student(src)
    write_exercise_index()


def student_notebook(src: Path) -> nbformat.NotebookNode | None:
    """The student version of a source (solutions replaced by stubs, no outputs), or None without exercises."""
    text = src.read_text()
    if not exercises(text):
        return None
    nb = parse_source(text, student=True)
    full = HERE / f"{src.stem}.ipynb"  # the runtime the instructor copy's outputs took
    fill_runtime(nb, nbformat.read(full, as_version=4) if full.is_file() else None)
    for cell in nb.cells:  # the header speaks of the instructor version's solutions and outputs
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(INSTRUCTOR_HEADER, STUDENT_HEADER).replace(
                ", as these outputs were made", " when the instructor version was run")
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(STUDENT_NOTE))
    for cell in nb.cells:  # cell ids are random: fixed ones keep rebuilds byte-identical
        cell.pop("id", None)
    nb.nbformat_minor = 4
    return nb


def exercise_index() -> str:
    """Markdown: every notebook's exercises (number and title), and how an instructor gets the student
    versions. Written to ``notebooks/student/EXERCISES.md`` by every build; the README includes it."""
    lines = ["# Exercises", "",
             "Each notebook's exercises sit where the material they practise is taught (the written answers at "
             "the end of a part). For instructors: the full notebooks in `notebooks/` carry the solutions and "
             "their outputs, so ship only `notebooks/student/` to a class; "
             "`notebooks/student/` holds the same notebooks without outputs and with every solution replaced "
             "by a stub, the checks kept, so each check fails until the exercise is solved "
             "(`tests/test_exercises.py` runs the student version of every notebook from 01 on at the quick preset to "
             "prove it; each check is also tested to reject named wrong answers, `tests/test_exercise_checks.py`). "
             "`python notebooks/build.py` rebuilds both from `notebooks/src/`, where solutions are marked "
             "`# BEGIN SOLUTION` / `# END SOLUTION` (optional `# STUB:` lines give the student's starting code).",
             "", "| notebook | exercises |", "|---|---|"]
    for src in sorted((HERE / "src").glob("*.py")):
        found = exercises(src.read_text())
        if found:
            lines.append(f"| `{src.stem}` | " + "; ".join(f"{n} {t}" for n, t in found) + " |")
    return "\n".join(lines) + "\n"


def write_exercise_index() -> None:
    out = HERE / "student" / "EXERCISES.md"
    out.parent.mkdir(exist_ok=True)
    text = exercise_index()
    if not out.is_file() or out.read_text() != text:
        tmp = out.with_suffix(".md.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
        print(f"wrote {out.relative_to(HERE.parent)}")


def write_student(src: Path) -> None:
    nb = student_notebook(src)
    out = HERE / "student" / f"{src.stem}.ipynb"
    if nb is None:
        return
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()

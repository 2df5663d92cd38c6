"""Exercises: the student notebooks are built from the sources, and their checks fail until solved."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.conftest import execute_notebook, notebook_build

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted((NB_DIR / "src").glob("*.py"))
#: exercises each notebook must have once it has any (the issue's course plan: 3 in 01-04, 2 in 05-08 and in
#: the part-notebooks such as 04b), by the notebook's number
#: notebooks whose coded exercises are graded by mango_lite.exercises (the others follow)
GRADED = {"01", "02", "03", "04", "04b", "05", "06", "07", "08"}
MINIMUM = {"00": 0, "01": 3, "02": 3, "03": 3, "04": 3, "05": 2, "06": 2, "07": 2, "08": 2}


def _number(src: Path) -> str:
    """The exercise prefix of a notebook: ``04_multiscale_flow`` -> "4", ``04b_when_...`` -> "4b"."""
    return src.stem.split("_")[0].lstrip("0") or "0"


WITH_EXERCISES = [s for s in SOURCES if notebook_build().exercises(s.read_text())]


def test_some_notebook_has_exercises():
    assert WITH_EXERCISES, "no notebook source marks an exercise"


@pytest.mark.parametrize("src", WITH_EXERCISES, ids=lambda p: p.stem)
def test_a_student_copy_speaks_of_itself_and_points_to_no_solution(src):
    """The header and banner of a student copy: no 'solutions in this version', no 'these outputs' (it has
    none), and no path to the instructor notebook that holds the solutions and their printed answers."""
    build = notebook_build()
    text = "\n".join(c.source for c in build.student_notebook(src).cells if c.cell_type == "markdown")
    assert build.INSTRUCTOR_HEADER not in text and build.STUDENT_HEADER in text
    assert "as these outputs were made" not in text
    assert f"notebooks/{src.stem}.ipynb" not in text


@pytest.mark.parametrize("src", WITH_EXERCISES, ids=lambda p: p.stem)
def test_student_notebook_is_built_from_its_source(src):
    build = notebook_build()
    text = src.read_text()
    found = build.exercises(text)
    assert len(found) >= MINIMUM.get(src.stem.split("_")[0], 2), f"{src.stem}: {len(found)} exercises"
    numbers = [n for n, _ in found]
    assert len(set(numbers)) == len(numbers) and all(n.startswith(_number(src) + ".") for n in numbers), numbers
    want = build.student_notebook(src)
    path = NB_DIR / "student" / f"{src.stem}.ipynb"
    assert path.is_file(), f"{path.name} missing: run `python notebooks/build.py {src.stem}`"
    got = nbformat.read(path, as_version=4)
    assert [(c.cell_type, c.source) for c in got.cells] == [(c.cell_type, c.source) for c in want.cells], \
        f"student/{path.name} is stale: run `python notebooks/build.py {src.stem}`"
    full = build.parse_source(text)
    for cell in full.cells:  # the full notebook shows no markers
        assert "SOLUTION" not in cell.source and "# STUB:" not in cell.source
    assert not any(c.get("outputs") for c in got.cells if c.cell_type == "code")


def test_exercise_index_is_current():
    """notebooks/student/EXERCISES.md (included in the README) lists what the sources hold."""
    path = NB_DIR / "student" / "EXERCISES.md"
    assert path.is_file() and path.read_text() == notebook_build().exercise_index(), \
        "notebooks/student/EXERCISES.md is stale: run `python notebooks/build.py`"


def test_markers_are_checked():
    build = notebook_build()
    with pytest.raises(ValueError, match="not closed"):
        build.parse_source("# %%\n# BEGIN SOLUTION\nx = 1\n")
    src = "# %%\ndef f():\n    # BEGIN SOLUTION\n    # STUB: return None\n    return 1\n    # END SOLUTION\n"
    assert build.parse_source(src).cells[0].source == "def f():\n    return 1"
    assert build.parse_source(src, student=True).cells[0].source == "def f():\n    return None"


def _exercise_spans(nb) -> list[tuple[str, list[int]]]:
    """(heading, code-cell indices) of each exercise: from its heading to the next markdown heading. An
    exercise's heading may share its cell with the part's ("## Exercises" then "### Exercise 8.1 ...")."""
    spans: list[tuple[str, list[int]]] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            heads = [m.group(0) for m in notebook_build().EXERCISE.finditer(cell.source)]
            spans.append((heads[-1] if heads else cell.source.lstrip().splitlines()[0], []))
        elif cell.cell_type == "code" and spans:
            spans[-1][1].append(i)
    return [(h, idx) for h, idx in spans if " Exercise " in f" {h.lstrip('#').strip()}"]


@pytest.mark.parametrize("src", [s for s in WITH_EXERCISES if s.stem[:2] != "00"], ids=lambda p: p.stem)
def test_student_checks_fail_until_solved(src):
    """Executed with the stubs in place, every exercise that has code fails in one of its cells: the
    checks can fail. (The full notebooks, solutions in place, pass under nbval.)"""
    nb = execute_notebook(notebook_build().student_notebook(src), folder=NB_DIR)
    # a written answer has no check; the code cells after it (the notebook's closing cells) are not its own
    coded = [(h, idx) for h, idx in _exercise_spans(nb) if idx and "(written answer)" not in h]
    assert coded, f"{src.stem}: no exercise with code"
    for head, idx in coded:
        failing = [i for i in idx if any(o.get("output_type") == "error" for o in nb.cells[i].outputs)]
        assert failing, f"{src.stem}: {head!r} passes with the stubs in place"
        errors = [o for o in nb.cells[failing[0]].outputs if o.get("output_type") == "error"]
        if src.stem.split("_")[0] in GRADED:  # graded by mango_lite.exercises: the stub is reported as unanswered, and
            # nothing is printed up to the failure (a printed measurement would be the answer)
            assert errors[0]["ename"] == "NotAnswered", f"{src.stem}: {head!r} failed with {errors[0]['ename']}"
            printed = [o for i in idx if i <= failing[0] for o in nb.cells[i].outputs if o.get("output_type") == "stream"]
            assert not printed, f"{src.stem}: {head!r} prints before its check fails: {printed}"

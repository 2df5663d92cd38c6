"""Committed notebooks must be built from their sources and carry the outputs of a real run."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import MACHINE_PATH, notebook_build

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted((NB_DIR / "src").glob("*.py"))


def test_every_source_has_a_notebook_and_vice_versa():
    built = {p.stem for p in NB_DIR.glob("*.ipynb")}
    assert built == {p.stem for p in SOURCES} and len(built) >= 10  # 00-08 and 04b


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_code_matches_its_source_and_has_outputs(src):
    parse = notebook_build().parse_source
    want = [c.source for c in parse(src.read_text()).cells if c.cell_type == "code"]
    nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
    got = [c.source for c in nb.cells if c.cell_type == "code"]
    assert got == want, f"{src.stem}.ipynb is stale: rebuild with `python notebooks/build.py --execute {src.stem}`"
    executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(executed) == len(got), f"{src.stem}.ipynb has cells that were never executed"
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "committed without outputs"


def test_cell_ids_follow_the_cells_text():
    """Ids change with a cell's text only, and two cells of the same text still get two ids."""
    build = notebook_build()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# a"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("b")])
    build.stable_cell_ids(nb)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == 4 and ids[2] == ids[1] + "-2"
    nb.cells[3].source = "b, edited"
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("new first cell"))
    build.stable_cell_ids(nb)
    assert [c.id for c in nb.cells][1:4] == ids[:3] and nb.cells[4].id != ids[3]
    nbformat.validate(nb)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_notebooks_carry_the_stable_cell_ids(src):
    """Built by notebooks/build.py, so a rebuild after a prose edit changes the edited cells only."""
    nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
    got = [c.get("id") for c in nb.cells]
    notebook_build().stable_cell_ids(nb)
    assert got == [c.id for c in nb.cells], f"rebuild {src.stem}.ipynb with `python notebooks/build.py --text-only {src.stem}`"


_BAR = re.compile(r"\d+%\|")


def _output_text(o) -> str:
    if o.get("output_type") == "stream":
        return o.get("text", "")
    data = o.get("data", {})
    return "\n".join(str(data.get(k, "")) for k in ("text/plain", "text/html", "text/markdown"))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_outputs_are_clean(src):
    """No stderr streams, no progress-bar frames, no machine paths in what a reader of the committed
    notebook sees (``python notebooks/build.py --execute`` writes them so)."""
    nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for o in cell.outputs:
            assert not (o.get("output_type") == "stream" and o.get("name") == "stderr"), f"code cell {i}: stderr output"
            text = _output_text(o)
            assert not _BAR.search(text) or "widget-view" not in str(o.get("data", {})), f"code cell {i}: progress bar"
            hit = MACHINE_PATH.search(text)
            assert hit is None, f"code cell {i}: machine path {hit.group(0)!r} in an output"


GUARDED = ("04", "05", "06", "07", "08")  # notebooks whose headline asserts run only above the quick preset


@pytest.mark.parametrize("src", [s for s in SOURCES if s.stem[:2] in GUARDED], ids=lambda p: p.stem)
def test_committed_task_notebooks_ran_above_quick_so_their_guarded_asserts_ran(src):
    """CI executes the notebooks at ``quick``, where the headline asserts (``if preset.name != "quick"``)
    are skipped. They are checked instead by the committed run: build.py writes a notebook only when every
    cell passed, so a committed cpu (or gpu) run is a run in which those asserts held."""
    nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.get("output_type") == "stream")
    hit = re.search(r"preset[=: ]+(\w+)", text)
    assert hit and hit.group(1) in ("cpu", "gpu", "paper"), f"{src.stem}: committed outputs are not from a cpu/gpu run"
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_the_header_runtime_is_the_execution_record(src):
    """Each source's header says {{runtime}}; its notebook (and student copy) carries the sentence built from
    the notebook's own execution record, never a typed time."""
    from mango_lite.notebook import RUNTIME_MARKER, run_record, runtime_sentence

    assert RUNTIME_MARKER in src.read_text()
    nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
    want = runtime_sentence(run_record(nb))
    assert "as these outputs were made" in want
    header = next(c.source for c in nb.cells if c.cell_type == "markdown")
    assert want in header and RUNTIME_MARKER not in header
    student = NB_DIR / "student" / f"{src.stem}.ipynb"
    if student.is_file():  # the same time, said of the instructor version (the student copy has no outputs)
        said = want.replace(", as these outputs were made", " when the instructor version was run")
        assert said in next(c.source for c in nbformat.read(student, as_version=4).cells if c.cell_type == "markdown")


def test_output_checked_cells_print_something_and_read_no_preset():
    """Cells marked ``# NBVAL_CHECK_OUTPUT`` are compared by nbval with their committed output at CI's preset, so
    each must have a text output to compare and must not depend on the preset (the committed run was at cpu)."""
    marked = 0
    for src in SOURCES:
        nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code" or "# NBVAL_CHECK_OUTPUT" not in cell.source.splitlines():
                continue
            marked += 1
            texts = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                     or "text/plain" in o.get("data", {}) or "text/html" in o.get("data", {})]
            assert texts, f"{src.stem}: a cell marked NBVAL_CHECK_OUTPUT has no text output to compare"
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("#"))
            assert not re.search(r"\bpreset\b|MANGO_LITE_PRESET", code), \
                f"{src.stem}: a cell marked NBVAL_CHECK_OUTPUT reads the preset, so CI's output cannot match"
    assert marked >= 5

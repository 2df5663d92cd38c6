"""Committed notebooks must be built from their sources and carry the outputs of a real run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted((NB_DIR / "src").glob("*.py"))


def _parse_source():
    spec = importlib.util.spec_from_file_location("nb_build", NB_DIR / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.parse_source


def test_every_source_has_a_notebook_and_vice_versa():
    built = {p.stem for p in NB_DIR.glob("*.ipynb")}
    assert built == {p.stem for p in SOURCES} and len(built) == 9


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_code_matches_its_source_and_has_outputs(src):
    parse = _parse_source()
    want = [c.source for c in parse(src.read_text()).cells if c.cell_type == "code"]
    nb = nbformat.read(NB_DIR / f"{src.stem}.ipynb", as_version=4)
    got = [c.source for c in nb.cells if c.cell_type == "code"]
    assert got == want, f"{src.stem}.ipynb is stale: rebuild with `python notebooks/build.py --execute {src.stem[:2]}`"
    executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(executed) == len(got), f"{src.stem}.ipynb has cells that were never executed"
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "committed without outputs"

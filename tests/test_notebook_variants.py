"""Notebook runs an instructor can choose (nbval executes each notebook only as committed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import execute_notebook, notebook_build

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name: str, env: dict[str, str]):
    return execute_notebook(notebook_build().parse_source((NB_DIR / "src" / f"{name}.py").read_text()), env)


def _errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.get("output_type") == "error"]


def _stdout(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.get("output_type") == "stream" and o.get("name") == "stdout")


@pytest.mark.slow
def test_translation_notebook_trains_the_pairs_and_epochs_asked_for():
    """MANGO_LITE_PAIRS with two pairs, a non-RGB target first, and MANGO_LITE_EPOCHS=1: notebook 06 trains
    and discusses both pairs (twelve runs of one epoch), every cell passing."""
    nb = _execute("06_image_translation", {"MANGO_LITE_PAIRS": "rgb_edge_to_depth, shade_texture_to_rgb",
                                           "MANGO_LITE_EPOCHS": "1"})
    assert _errors(nb) == []
    out = _stdout(nb)
    assert "RGB+Edge→Depth: MAE×10 ranking" in out and "Shade+Texture→RGB: MAE×10 ranking" in out
    assert "12 runs, " in out and "1 of its 2 epochs" in out


@pytest.mark.slow
def test_translation_notebook_names_an_unknown_pair():
    nb = _execute("06_image_translation", {"MANGO_LITE_PAIRS": "rgb_to_nothing"})
    errors = _errors(nb)
    assert errors and "unknown translation pair 'rgb_to_nothing'" in errors[0]

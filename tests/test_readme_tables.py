"""README.md's result tables are the results files' text, never typed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from mango_lite.errors import MangoLiteError
from mango_lite.training.readme_tables import render

ROOT = Path(__file__).resolve().parents[1]


def test_readme_blocks_match_their_results_files():
    text = (ROOT / "README.md").read_text()
    assert "<!-- include: " in text
    assert render(text, ROOT) == text, "README.md is out of date: run python -m mango_lite.training.readme_tables"


def test_render_replaces_blocks_and_drops_the_title(tmp_path):
    (tmp_path / "t.md").write_text("# Title\n\n| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- include: t.md -->\nstale\n<!-- end include -->\nafter\n"
    assert render(text, tmp_path) == "intro\n<!-- include: t.md -->\n| a |\n|---|\n| 1 |\n<!-- end include -->\nafter\n"
    with pytest.raises(MangoLiteError, match="missing.md"):
        render("<!-- include: missing.md -->\n<!-- end include -->", tmp_path)

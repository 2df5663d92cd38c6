"""The book's offline check (run by `make book` on the built site) catches MathJax from a CDN or missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check():
    spec = importlib.util.spec_from_file_location("check_offline", ROOT / "book" / "check_offline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.check


def test_the_offline_check_accepts_bundled_mathjax_and_rejects_a_cdn(tmp_path):
    check = _check()
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    (tmp_path / "_static" / "mathjax" / "tex-chtml.js").write_text("//")
    (tmp_path / "nb").mkdir()
    page = tmp_path / "nb" / "a.html"
    page.write_text('<script defer="defer" src="../_static/mathjax/tex-chtml.js"></script>')
    assert check(tmp_path) == []
    page.write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>')
    assert "from the network" in check(tmp_path)[0]
    page.write_text('<script src="../_static/mathjax/missing.js"></script>')
    assert "not in the site" in check(tmp_path)[0]
    page.write_text("<p>no maths</p>")
    assert "found nothing to check" in check(tmp_path)[0]


def test_the_book_bundles_mathjax():
    conf = (ROOT / "book" / "conf.py").read_text()
    assert '"sphinx-mathjax-offline"' in conf
    assert "check_offline.py" in (ROOT / "Makefile").read_text()

"""The "Use MANGO in your own model" example: README shows its code, it trains, and the likelihood's
gradient reaches the flow only."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mango_in_your_model.py"


def _load():
    spec = importlib.util.spec_from_file_location("mango_in_your_model", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_shows_the_example_code():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use MANGO in your own model"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block.strip() in EXAMPLE.read_text(), "README's block differs from examples/mango_in_your_model.py"
    namespace: dict = {}
    exec(compile(block, "README", "exec"), namespace)  # the block runs on its own
    assert "TwoModalityClassifier" in namespace


def test_the_example_trains_and_its_likelihood_never_reaches_the_encoders():
    ex = _load()
    out = ex.main(steps=150, batch=32)
    assert out["last_task"] < 0.5 * out["first_task"] and torch.isfinite(torch.tensor(out["last_nll_bpd"]))
    torch.manual_seed(0)
    model = ex.TwoModalityClassifier()
    a, b, _ = ex.two_modality_task(8)
    _, nll = model(a, b)
    nll.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.encode_a.parameters())
    assert all(p.grad is None or not p.grad.any() for p in model.encode_b.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.flow.parameters())


def test_the_api_reference_documents_what_the_example_uses():
    """The book's API pages (autodoc, built with warnings as errors by `make book`) name the objects a
    researcher builds on, and each of them imports from where the page says."""
    import importlib

    pages = "".join(p.read_text() for p in (ROOT / "book" / "api").glob("*.md"))
    targets = re.findall(r"\.\. auto(?:class|function):: (\S+)", pages)
    for name in ("InvertibleCrossAttention", "MangoBlock", "MangoFlow", "MultiscaleMango", "MangoFusion",
                 "FlowOnlyLikelihood", "build_model"):
        assert any(t.endswith("." + name) for t in targets), name
    for t in targets:
        module, attr = t.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), attr), t
    assert "api/flows" in (ROOT / "book" / "index.md").read_text()

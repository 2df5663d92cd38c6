"""Packaging: the core install (torch, numpy, pillow, tqdm) runs the library, and every package the code
imports is declared in the core dependencies or in an extra."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mango_lite"
#: import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "sklearn": "scikit-learn", "IPython": "ipython", "yaml": "pyyaml"}
#: what a core install must not bring (tests/test_packaging.py blocks them in the smoke run below)
OPTIONAL = ("matplotlib", "seaborn", "pandas", "ipywidgets", "IPython", "scipy", "sklearn", "h5py", "submitit",
            "transformers", "timm", "safetensors", "nbformat", "jupytext")


def _requirement_name(req: str) -> str:
    name = req.split(";")[0].split("[")[0]
    for sep in "<>=!~ ":
        name = name.split(sep)[0]
    return name.strip().lower().replace("_", "-")


def _project() -> dict:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(n) for n in tree.body}
    for n in tree.body:  # imports guarded by try/if at module level count as module level too
        if isinstance(n, (ast.Try, ast.If)):
            top_level |= {id(m) for m in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], id(node) in top_level))
    return out


def _third_party(name: str) -> bool:
    return name not in sys.stdlib_module_names and name not in ("mango_lite", "__future__")


def test_the_core_dependencies_are_the_four_the_library_needs():
    core = {_requirement_name(r) for r in _project()["dependencies"]}
    assert core == {"torch", "numpy", "pillow", "tqdm"}


def test_every_imported_package_is_declared_and_the_core_modules_import_optional_ones_lazily():
    project = _project()
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {_requirement_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    undeclared, eager = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        viz_module = rel.startswith("mango_lite/viz/") or rel == "mango_lite/notebook.py"
        for name, top in _imports(path):
            if not _third_party(name):
                continue
            dist = DISTRIBUTION.get(name, name).lower().replace("_", "-")
            if dist not in core | extras:
                undeclared.append(f"{rel}: {name}")
            if top and dist not in core and not viz_module:
                eager.append(f"{rel}: {name}")
    assert not undeclared, f"imported but declared nowhere in pyproject.toml: {undeclared}"
    assert not eager, f"optional packages imported at module level outside viz/notebook: {eager}"


def test_a_core_install_imports_every_module_trains_and_reproduces(tmp_path):
    """Without any optional package (as if not installed), every module outside ``viz`` imports, a MANGO run
    trains (no curves.png) and a reproduction writes its numbers (no figures)."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        for name in {OPTIONAL!r}:
            sys.modules[name] = None  # import raises ImportError, importlib.util.find_spec answers None
        import mango_lite
        from pathlib import Path
        failed = []
        for m in pkgutil.walk_packages(mango_lite.__path__, "mango_lite."):
            if m.name.endswith("__main__") or m.name.startswith("mango_lite.viz."):
                continue
            try:
                importlib.import_module(m.name)
            except Exception as exc:
                failed.append(f"{{m.name}}: {{exc!r}}")
        assert not failed, failed
        from mango_lite.presets import get_preset
        from mango_lite.training.reproduce import reproduce
        from mango_lite.training.runspec import RunOptions, RunSpec
        from mango_lite.training.tasks import train_task
        tiny = get_preset("quick").with_overrides(image_size=16, n_train=16, n_val=8, width=8, blocks=1, scales=1,
                                                  epochs=1)
        out = Path({str(tmp_path)!r})
        run = train_task(RunSpec("segmentation", "mango", tiny), out / "run",
                         options=RunOptions(cache_dir=out / "data", progress=False, verbose=False))
        assert (out / "run" / "metrics.json").is_file() and not (out / "run" / "curves.png").exists()
        res = reproduce(tiny, out / "rep", cache_dir=out / "data", tasks=["segmentation"], models=["concat"],
                        progress=False)
        assert (out / "rep" / "results.md").is_file() and res["figures"] == []
        print("core install ok", round(run.metrics["miou"], 3))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "core install ok" in proc.stdout


def test_the_version_is_written_once():
    import mango_lite

    assert "version" in _project().get("dynamic", []) and "version" not in _project()
    assert mango_lite.__version__ and (ROOT / "mango_lite" / "__init__.py").read_text().count("__version__ =") == 1

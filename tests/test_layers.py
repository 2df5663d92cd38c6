"""The layer contract: mango_lite's imports run one way, from the edges down to the foundations.

    foundations   errors, utils, presets, timing, tasks (the task registry), paper_tables (the paper's numbers),
                  markdown (the one table helper of every Markdown writer)
    building      datasets, metrics, flows
    models        models
    engine        engine (trainer, checkpoints, history, distributed runs, a model's cost on one batch)
    figures       viz
    experiments   training (one run from its specification, the executor, reproduction, ablations, studies)
    reporting     reporting (README and notebook views of the committed results)
    edges         notebook, exercises (the notebooks' checks), environment (the environment variables), cli,
                  __main__, the package's __init__ (and training/cli.py, the CLI's commands)

A module may import from its own layer or any layer below it, never above, whether the import sits at the top
of the file or inside a function. The few upward imports that remain are listed in :data:`KNOWN_UPWARD`; the
list may only shrink (a new upward import fails, and so does an entry that no longer exists).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mango_lite"

LAYERS = {
    "errors": 0, "utils": 0, "presets": 0, "timing": 0, "tasks": 0, "paper_tables": 0, "markdown": 0,
    "datasets": 1, "metrics": 1, "flows": 1,
    "models": 2,
    "engine": 3,
    "viz": 4,
    "training": 5,
    "reporting": 6,
    "notebook": 7, "exercises": 7, "environment": 7, "cli": 7, "__main__": 7, "": 7,
}
#: modules that are edges although they live deeper in the tree
EDGE_MODULES = {"training.cli": 7}

#: upward imports still to be removed (importer, imported); empty since the engine reports through callbacks and
#: the experiments (training) sit above the figures they draw
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return mods


def _layer(module: str) -> int:
    if module in EDGE_MODULES:
        return EDGE_MODULES[module]
    top = module.split(".")[0]
    assert top in LAYERS, f"mango_lite.{module} belongs to no layer: add its package to LAYERS in {__file__}"
    return LAYERS[top]


def _imports(module: str, path: Path, is_package: bool) -> set[str]:
    """The mango_lite modules ``module`` imports anywhere in its file (relative or absolute imports)."""
    known = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if module else []
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            elif node.module and (node.module == "mango_lite" or node.module.startswith("mango_lite.")):
                base = node.module.removeprefix("mango_lite").removeprefix(".")
            else:
                continue
            # ``from .. import paper_tables`` imports the module mango_lite.paper_tables, not the package
            subs = {f"{base}.{a.name}".lstrip(".") for a in node.names} & set(known)
            found |= subs if subs else {base}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("mango_lite").removeprefix(".") for a in node.names
                      if a.name == "mango_lite" or a.name.startswith("mango_lite.")}
    return found


def _upward() -> set[tuple[str, str]]:
    up = set()
    for module, (path, is_package) in _modules().items():
        for target in _imports(module, path, is_package):
            if _layer(target) > _layer(module):
                up.add((module, target))
    return up


def test_imports_run_one_way():
    up = _upward()
    new = sorted(up - KNOWN_UPWARD)
    assert not new, f"imports from a higher layer (see this file's docstring): {new}"


def test_the_list_of_known_upward_imports_only_shrinks():
    gone = sorted(KNOWN_UPWARD - _upward())
    assert not gone, f"these upward imports are gone: remove them from KNOWN_UPWARD: {gone}"


def test_the_contract_sees_an_upward_import(tmp_path):
    """The checker itself: an import of viz from flows is caught, at module level or inside a function."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..viz.plots import plot_history\n")
    assert "viz.plots" in _imports("flows.bad", bad, False)
    assert _layer("viz.plots") > _layer("flows.bad")


#: the longest a function of the training layer may be (issue "one configuration, one task registry, one run
#: executor": a newcomer reads a launcher in one screen or two)
MAX_FUNCTION_LINES = 80


def test_no_function_of_the_training_layer_is_longer_than_the_limit():
    long = []
    for path in sorted((PACKAGE / "training").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_model_and_run_builders_take_a_configuration_object_and_few_other_parameters():
    import inspect

    from mango_lite.models import build_model
    from mango_lite.training import train_task

    for fn, config in ((build_model, "config"), (train_task, "spec")):
        params = list(inspect.signature(fn).parameters)
        assert params[0] == config and len(params) - 1 <= 8, (fn.__name__, params)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), less a package with its own modules
    (its __init__ re-exporting them is not a cycle of two concepts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]


def test_no_import_cycles():
    """No two modules import each other, directly or through others (imports inside functions count too: a
    cycle hidden in a function still ties the two modules together)."""
    graph = {m: {t for t in _imports(m, p, pkg) if t != m} for m, (p, pkg) in _modules().items()}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_the_cycle_finder_sees_a_cycle_through_three_modules():
    graph = {"a.x": {"a.y"}, "a.y": {"b.z"}, "b.z": {"a.x"}, "c": {"c.inner"}, "c.inner": {"c"}}
    assert _cycles(graph) == [["a.x", "a.y", "b.z"]]

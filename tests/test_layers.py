"""The layer contract: mango_lite's imports run one way, from the edges down to the foundations.

    foundations   errors, utils, presets, timing, tasks (the task registry)
    building      datasets, metrics, flows
    models        models
    training      training
    figures       viz
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
    "errors": 0, "utils": 0, "presets": 0, "timing": 0, "tasks": 0,
    "datasets": 1, "metrics": 1, "flows": 1,
    "models": 2,
    "training": 3,
    "viz": 4,
    "reporting": 5,
    "notebook": 5, "exercises": 5, "environment": 5, "cli": 5, "__main__": 5, "": 5,
}
#: modules that are edges although they live deeper in the tree
EDGE_MODULES = {"training.cli": 5}

#: upward imports still to be removed (importer, imported); see the issue "one configuration, one task registry,
#: one run executor", item 5: the engine should report through callbacks, the figures of a reproduction and the
#: README's notebook runtimes belong to a reporting layer above the figures
KNOWN_UPWARD = {
    ("training.reproduce", "viz.plots"),
}


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
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if module else []
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                found.add(".".join(package + ([node.module] if node.module else [])))
            elif node.module and (node.module == "mango_lite" or node.module.startswith("mango_lite.")):
                found.add(node.module.removeprefix("mango_lite").removeprefix("."))
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

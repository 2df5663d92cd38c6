"""The task registry: one description per task, one headline metric everywhere, and task-name branches
that only go down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mango_lite.errors import MangoLiteError
from mango_lite.tasks import TASKS, get_task, task_names

PACKAGE = Path(__file__).resolve().parents[1] / "mango_lite"

#: comparisons with a task's name outside mango_lite/tasks/ (``task == "genre"``, ``task in ("genre", ...)``, a
#: ``case "genre":``), counted over the package: each layer asks the registry (a task's output kind, whether it has
#: pairs, whether modality B is text) instead, so a new task of a known kind is one entry in the registry
BRANCH_BUDGET = 0


def test_every_task_is_described_once_and_found_by_name():
    assert task_names() == ("segmentation", "translation", "genre")
    assert get_task(" Genre ") is TASKS["genre"] and get_task(TASKS["genre"]) is TASKS["genre"]
    with pytest.raises(MangoLiteError, match="expected one of"):
        get_task("depth")
    assert TASKS["segmentation"].default_dataset == "nyudv2"
    assert TASKS["translation"].unimodal_names(("rgb", "edge_texture")) == ("rgb", "edge_texture")
    with pytest.raises(MangoLiteError, match="pair"):
        TASKS["translation"].unimodal_names()


def test_one_headline_metric_per_task_everywhere():
    """The tables that rank models (reproduction, seed spread, mechanisms, the selection study, the results
    check, the paper comparison) all use the registry's headline metric and its direction."""
    import importlib

    from mango_lite.training import mechanisms, selection
    from mango_lite.viz import reproduction as viz

    reproduce = importlib.import_module("mango_lite.training.reproduce")  # the package exports a function of that name

    for name, task in TASKS.items():
        h = task.headline
        assert reproduce.HEADLINE[name] == (h.key, h.higher_is_better)
        assert mechanisms.METRIC[name] == (h.key, h.higher_is_better)
        assert selection.METRICS[name] == (h.key, h.history_key, h.higher_is_better)
        assert viz._MAIN[name] == h.key
        if not task.has_pairs:  # translation compares with the paper's FID column for RGB targets
            key, _, _, mode = viz.group_metric({"task": name, "pair": None})
            assert (key, mode) == (h.key, h.mode)


def test_the_adapters_select_checkpoints_by_the_registry_metric():
    from mango_lite.training.tasks import GenreAdapter, SegmentationAdapter, TranslationAdapter

    for adapter, name in ((SegmentationAdapter, "segmentation"), (TranslationAdapter, "translation"),
                          (GenreAdapter, "genre")):
        assert adapter.select_metric == TASKS[name].select_metric


def _task_name_comparisons() -> list[str]:
    names = set(TASKS)
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "tasks":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(_names_a_task(c, names) for c in (node.left, *node.comparators)):
                hits.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            elif isinstance(node, ast.match_case) and any(
                    isinstance(n, ast.MatchValue) and _names_a_task(n.value, names) for n in ast.walk(node.pattern)):
                hits.append(f"{path.relative_to(PACKAGE)}:{node.pattern.lineno}")
    return hits


def _names_a_task(node: ast.AST, names: set[str]) -> bool:
    """A task's name as a constant, or inside a literal tuple / list / set (``task in ("genre", ...)``)."""
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_task(e, names) for e in node.elts)
    return False


def test_the_branch_counter_sees_comparisons_memberships_and_match_cases():
    names = set(TASKS)
    code = ("if task == 'genre': pass\nif task in ('segmentation', 'x'): pass\n"
            "match task:\n    case 'translation': pass\nif task == 'other': pass\n")
    tree = ast.parse(code)
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)
                and any(_names_a_task(c, names) for c in (n.left, *n.comparators))]
    cases = [n for n in ast.walk(tree) if isinstance(n, ast.match_case)
             and any(isinstance(m, ast.MatchValue) and _names_a_task(m.value, names) for m in ast.walk(n.pattern))]
    assert len(compares) == 2 and len(cases) == 1


def test_no_branch_on_a_task_name_outside_the_registry():
    hits = _task_name_comparisons()
    assert len(hits) <= BRANCH_BUDGET, (
        f"{len(hits)} comparisons with a task's name outside mango_lite/tasks/ (budget {BRANCH_BUDGET}); ask the "
        f"task registry instead: {hits}")


def test_each_task_names_its_output_kind_and_a_bad_kind_is_refused():
    from mango_lite.tasks import CLASS_MAP, IMAGE, LABELS, Metric, Task

    assert [TASKS[n].output for n in task_names()] == [CLASS_MAP, IMAGE, LABELS]
    assert [TASKS[n].spatial for n in task_names()] == [True, True, False]
    assert [TASKS[n].text_b for n in task_names()] == [False, False, True]
    with pytest.raises(MangoLiteError, match="output must be one of .* got 'points'"):
        Task(name="depth", label="depth", datasets=("nyudv2",), headline=Metric("mae", "MAE", False),
             select_metric="val_mae", unimodal=("rgb", "depth"), output="points")


def test_every_layer_has_a_part_for_every_output_kind():
    """The tables that replace task-name branches: each covers every output kind, so a new task of a known kind
    needs no edit outside the registry."""
    import importlib

    from mango_lite.models import interpret, task_models
    from mango_lite.tasks import OUTPUTS

    reproduce = importlib.import_module("mango_lite.training.reproduce")  # the package exports a function of that name
    tasks = importlib.import_module("mango_lite.training.tasks")

    for table in (task_models._TASK_LOSSES, task_models._HEADS, interpret._READOUT, interpret._DISTANCE,
                  interpret._SCORE, tasks._DATA, tasks._ADAPTERS, tasks._READOUT, reproduce._QUALITATIVE):
        assert set(table) == set(OUTPUTS)

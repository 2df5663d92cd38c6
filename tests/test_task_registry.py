"""The task registry: one description per task, one headline metric everywhere, and task-name branches
that only go down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mango_lite.errors import MangoLiteError
from mango_lite.tasks import TASKS, get_task, task_names

PACKAGE = Path(__file__).resolve().parents[1] / "mango_lite"

#: comparisons with a task's name outside mango_lite/tasks/ (``task == "genre"``), counted over the package.
#: The registry's goal is 0; this budget may only go down as behaviour moves into the registry.
BRANCH_BUDGET = 38


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
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in names for c in (node.left, *node.comparators)):
                hits.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return hits


def test_branches_on_task_names_do_not_grow():
    hits = _task_name_comparisons()
    assert len(hits) <= BRANCH_BUDGET, (
        f"{len(hits)} comparisons with a task's name outside mango_lite/tasks/ (budget {BRANCH_BUDGET}); ask the "
        f"task registry instead: {hits}")

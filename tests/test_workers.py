"""Several models trained at once in worker processes (mango_lite.training.workers.train_models)."""

from __future__ import annotations

import json

import pytest
import torch

from mango_lite.errors import MangoLiteError
from mango_lite.presets import get_preset
from mango_lite.training import RunOptions, RunSpec, build_task_data, train_task
from mango_lite.training.workers import _longest_first, train_models

# the smallest sizes the models accept (as in test_cli.py)
TINY = get_preset("quick").with_overrides(name="quick", image_size=16, n_train=12, n_val=8, epochs=1, batch_size=4,
                                          width=8, blocks=1, scales=1)
MODELS = ["concat", "text", "mango"]


@pytest.fixture
def genre_data(tmp_path):
    torch.set_num_threads(1)
    return build_task_data("genre", TINY, cache_dir=tmp_path / "data")


def test_two_workers_give_the_numbers_of_one_process_in_the_order_asked(tmp_path, genre_data) -> None:
    lines: list[str] = []
    one = train_models("genre", MODELS, TINY, tmp_path / "one", genre_data, jobs=1, log=lines.append)
    two = train_models("genre", MODELS, TINY, tmp_path / "two", genre_data, jobs=2, log=lines.append)
    assert list(one) == list(two) == MODELS
    for m in MODELS:
        assert two[m].epochs_run == 1 and len(two[m].history) == 1
        assert one[m].metrics["macro_f1"] == pytest.approx(two[m].metrics["macro_f1"], abs=1e-9), m
        assert one[m].history[-1]["train_loss"] == pytest.approx(two[m].history[-1]["train_loss"], rel=1e-6), m
        assert (tmp_path / "two" / m / "train.log").is_file()  # each worker's log in its run folder
    assert any("2 worker processes" in line for line in lines)
    assert sum("done" in line for line in lines) == 2 * len(MODELS)


def test_finished_runs_are_reloaded_and_stale_ones_trained_again(tmp_path, genre_data) -> None:
    first = train_models("genre", ["concat"], TINY, tmp_path, genre_data, jobs=1, log=None)
    again = train_models("genre", ["concat"], TINY, tmp_path, genre_data, jobs=1, log=None)
    assert again["concat"].epochs_run == 0  # reloaded, not retrained
    assert again["concat"].metrics["macro_f1"] == pytest.approx(first["concat"].metrics["macro_f1"], abs=1e-9)
    # a folder holding a run of a differently built model (an older mango_lite, another width)
    for jobs in (1, 2):
        stale = tmp_path / f"stale{jobs}"
        train_task(RunSpec("genre", "concat", TINY, model_overrides={"width": 12}), stale / "concat",
                   options=RunOptions(progress=False, verbose=False), data=genre_data)
        lines: list[str] = []
        res = train_models("genre", ["concat", "text"], TINY, stale, genre_data, jobs=jobs, log=lines.append)
        assert res["concat"].epochs_run == 1, jobs
        assert res["concat"].metrics["macro_f1"] == pytest.approx(first["concat"].metrics["macro_f1"], abs=1e-9)


def test_epochs_sets_the_schedule_in_both_paths(tmp_path, genre_data) -> None:
    """A lab-length run: ``epochs`` reaches train_task in this process and in the workers alike, and a
    folder holding a longer finished run is trained again rather than handed back as the shorter one."""
    two = TINY.with_overrides(epochs=2)
    for jobs in (1, 2):
        longer = train_models("genre", ["concat", "text"], two, tmp_path / str(jobs), genre_data, jobs=jobs, log=None)
        assert [len(r.history) for r in longer.values()] == [2, 2], jobs  # the preset's schedule
        res = train_models("genre", ["concat", "text"], two, tmp_path / str(jobs), genre_data, jobs=jobs, epochs=1,
                           log=None)
        assert [len(r.history) for r in res.values()] == [1, 1], jobs
        assert all(r.epochs_run == 1 for r in res.values()), jobs


def test_an_existing_run_is_refused_without_resume(tmp_path, genre_data) -> None:
    train_models("genre", ["text"], TINY, tmp_path, genre_data, jobs=1, log=None)
    with pytest.raises(MangoLiteError, match="--overwrite"):
        train_models("genre", ["text"], TINY, tmp_path, genre_data, jobs=1, resume=False, log=None)
    res = train_models("genre", ["text"], TINY, tmp_path, genre_data, jobs=1, resume=False, overwrite=True, log=None)
    assert res["text"].epochs_run == 1


def test_the_longest_runs_start_first() -> None:
    """Measured run costs order the work, so MANGO (the longest) never starts last and leaves a core idle."""
    order = _longest_first("segmentation", ["rgb", "concat", "mango", "tokenfusion"], get_preset("cpu"))
    assert order[0] == "mango" and order[-1] == "rgb"
    assert _longest_first("genre", ["b", "a"], TINY.with_overrides(name="no-such-preset")) == ["b", "a"]


def test_built_with_reads_the_stored_configuration_as_it_was_meant():
    """A tuple asked for matches the list JSON stored; a version-1 MANGO configuration without a flow option
    was built with the paper's value of it, not today's default."""
    from mango_lite.models import ModelConfig
    from mango_lite.training.results_store import built_with

    stored = json.loads(json.dumps(ModelConfig(task="segmentation", fusion="mango", num_outputs=5, image_size=32,
                                               partitions=("mmca",)).to_dict()))
    assert built_with({"model_config": stored}, {"partitions": ("mmca",), "flow_alternate": True})
    assert not built_with({"model_config": stored}, {"partitions": ("imca",)})
    v1 = {k: v for k, v in stored.items() if k not in ("config_version", "flow_alternate")}
    assert built_with({"model_config": v1}, {"flow_alternate": False})
    assert built_with({"model_kwargs": {"flow_weight": 0.1}}, {"flow_weight": 0.1})  # runs that stored no config

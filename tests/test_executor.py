"""The run specification (RunSpec / RunOptions) and the one executor every launcher uses."""

from __future__ import annotations

import inspect
import math
import pickle

import pytest

from mango_lite.errors import MangoLiteError, TrainingError
from mango_lite.presets import get_preset
from mango_lite.training import Outcome, RunOptions, RunSpec, execute, train_task


def _square_or_diverge(x: float) -> float:
    """A work function for the executor: module level, so worker processes can unpickle it."""
    if x < 0:
        raise TrainingError(f"diverged at {x}")
    return x * x


def _broken(x: float) -> float:
    raise ValueError(f"not a training failure: {x}")


# ------------------------------------------------------------------------------------------ RunSpec
def test_a_spec_normalises_names_and_resolves_its_preset():
    spec = RunSpec(" Segmentation ", "MANGO", "quick", seed=3)
    assert (spec.task, spec.model, spec.preset, spec.seed) == ("segmentation", "mango", get_preset("quick"), 3)
    assert pickle.loads(pickle.dumps(spec)) == spec  # what a worker process receives
    assert spec.to_dict()["preset"] == get_preset("quick").to_dict()
    assert spec.replace(seed=4).seed == 4 and spec.seed == 3


@pytest.mark.parametrize("bad, match", [
    (dict(task="segmentatoin"), "unknown task 'segmentatoin'"),
    (dict(model=""), "RunSpec.model: expected a model name"),
    (dict(preset="fast"), "unknown preset 'fast'"),
    (dict(seed=-1), "RunSpec.seed: expected an integer >= 0, got -1"),
    (dict(seed=1.5), "RunSpec.seed"),
    (dict(epochs=-1), "RunSpec.epochs: expected an integer >= 0 or None, got -1"),
    (dict(batch_size=0), "RunSpec.batch_size: expected an integer > 0 or None, got 0"),
    (dict(lr=float("nan")), "RunSpec.lr: expected a number > 0"),
    (dict(model_overrides=[("width", 8)]), "RunSpec.model_overrides: expected a mapping"),
])
def test_a_bad_spec_is_refused_by_field_name(bad, match):
    kw = dict(task="segmentation", model="mango", preset="quick") | bad
    with pytest.raises(MangoLiteError, match=match):
        RunSpec(**kw)


def test_replace_validates_like_a_new_spec():
    with pytest.raises(MangoLiteError, match="RunSpec.batch_size"):
        RunSpec("genre", "concat", "quick").replace(batch_size=0)


def test_a_spec_is_frozen():
    spec = RunSpec("genre", "concat", "quick")
    with pytest.raises(AttributeError):
        spec.seed = 2  # type: ignore[misc]


def test_options_are_checked_and_a_path_becomes_a_string(tmp_path):
    assert RunOptions(cache_dir=tmp_path).cache_dir == str(tmp_path)
    with pytest.raises(MangoLiteError, match="RunOptions.num_workers: expected an integer >= 0, got -1"):
        RunOptions(num_workers=-1)


def test_after_fit_takes_callables_and_names_them_in_its_record():
    from mango_lite.viz.plots import write_run_curves

    options = RunOptions(after_fit=[write_run_curves])
    assert options.after_fit == (write_run_curves,) and pickle.loads(pickle.dumps(options)) == options
    assert options.to_dict()["after_fit"] == ["mango_lite.viz.plots.write_run_curves"]
    with pytest.raises(MangoLiteError, match="RunOptions.after_fit: expected callables"):
        RunOptions(after_fit=("curves.png",))


def test_train_task_refuses_anything_but_a_spec():
    assert list(inspect.signature(train_task).parameters)[0] == "spec"
    with pytest.raises(MangoLiteError, match="train_task: expected a RunSpec"):
        train_task("segmentation", "mango")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ execute
@pytest.mark.parametrize("workers", [0, 2])
def test_execute_returns_outcomes_in_the_order_asked_and_a_diverged_job_as_an_error(workers):
    jobs = {"c": 3.0, "a": -1.0, "b": 2.0}
    started, finished = [], []
    out = execute(_square_or_diverge, jobs, workers=workers, on_start=lambda key, k, n: started.append((key, k, n)),
                  on_done=lambda key, outcome: finished.append(key))
    assert list(out) == ["c", "a", "b"]
    assert out["c"].value == 9.0 and out["c"].ok and out["b"].value == 4.0
    assert out["a"].value is None and not out["a"].ok and out["a"].error == "diverged at -1.0"
    assert all(isinstance(o, Outcome) and o.seconds >= 0 for o in out.values())
    assert sorted(started) == [("a", 2, 3), ("b", 3, 3), ("c", 1, 3)] and sorted(finished) == ["a", "b", "c"]


@pytest.mark.parametrize("workers", [0, 2])
def test_execute_raises_an_error_that_is_not_a_diverged_run(workers):
    with pytest.raises(ValueError, match="not a training failure"):
        execute(_broken, {"x": 1.0}, workers=workers)


def test_execute_with_nothing_to_do_starts_nothing():
    assert execute(_broken, {}, workers=2) == {}


def test_execute_as_a_local_submitit_job_array(tmp_path):
    pytest.importorskip("submitit")
    out = execute(math.sqrt, {"four": 4.0, "nine": 9.0}, cluster={"executor": "local", "timeout_min": 5},
                  cluster_folder=tmp_path / "jobs")
    assert {k: o.value for k, o in out.items()} == {"four": 2.0, "nine": 3.0}
    with pytest.raises(MangoLiteError, match="cluster executor must be 'slurm' or 'local', got 'pbs'"):
        execute(math.sqrt, {"x": 1.0}, cluster={"executor": "pbs"}, cluster_folder=tmp_path / "bad")
    with pytest.raises(MangoLiteError, match="needs cluster_folder"):
        execute(math.sqrt, {"x": 1.0}, cluster={"executor": "local"})


def test_readmes_training_block_runs(tmp_path, monkeypatch):
    """README's "Training runs from Python" block, on a tiny preset in a scratch folder: the API it shows exists
    and works (two seeds in worker processes give two results, neither diverged)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Training runs from Python"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"quick"' in block
    monkeypatch.chdir(tmp_path)
    tiny = get_preset("quick").with_overrides(image_size=16, n_train=8, n_val=4, epochs=1, batch_size=4, width=8,
                                              blocks=1, scales=1)
    namespace: dict = {"TINY": tiny}
    exec(compile(block.replace('"quick"', "TINY"), "README", "exec"), namespace)
    assert math.isfinite(namespace["res"].metrics["miou"])
    outcomes = namespace["outcomes"]
    assert list(outcomes) == [0, 1] and all(o.ok and o.value.model == "mango" for o in outcomes.values())
    assert (tmp_path / "runs" / "seg-mango-1" / "metrics.json").is_file()


# ------------------------------------------------------------------------------------------ results store
def test_the_results_store_knows_a_finished_run_by_its_spec_and_schedule(tmp_path):
    """finished_run: the folder's metrics.json counts for a spec only when model, seed, preset training fields and
    overrides agree; asked for the whole schedule, a history that stops early does not count."""
    import json

    from mango_lite.training.results_store import finished_run, read_metrics

    preset = get_preset("quick")
    spec = RunSpec("segmentation", "mango", preset, seed=2, model_overrides={"flow_weight": 0.1})
    assert read_metrics(tmp_path) is None and finished_run(tmp_path, spec) is None
    (tmp_path / "metrics.json").write_text("{not json")
    assert read_metrics(tmp_path) is None  # a torn file is no result
    stored = {"model": "mango", "seed": 2, "preset": preset.to_dict(), "model_config": {"flow_weight": 0.1}}
    (tmp_path / "metrics.json").write_text(json.dumps({"spec": stored, "metrics": {"miou": 1.0}, "epochs_run": 1}))
    assert finished_run(tmp_path, spec)["metrics"] == {"miou": 1.0}
    assert finished_run(tmp_path, spec.replace(seed=3)) is None
    assert finished_run(tmp_path, spec.replace(model="mango-noattn")) is None
    assert finished_run(tmp_path, spec.replace(model_overrides={"flow_weight": 0.2})) is None
    assert finished_run(tmp_path, spec.replace(preset=preset.with_overrides(epochs=preset.epochs + 1))) is None
    # the schedule: the history must reach the last epoch
    epochs = preset.epochs
    (tmp_path / "history.json").write_text(json.dumps([{"epoch": e} for e in range(1, epochs)]))
    assert finished_run(tmp_path, spec, whole_schedule=True) is None
    (tmp_path / "history.json").write_text(json.dumps([{"epoch": e} for e in range(1, epochs + 1)]))
    assert finished_run(tmp_path, spec, whole_schedule=True) is not None

"""Several training runs on the executor (:mod:`~mango_lite.training.executor`): a notebook's models, a study's runs.

* :func:`study_run_job`: one run of a pre-registered study (resumable, a folder of an older build retrained,
  the best checkpoint chosen on the selection split); whether its folder already holds it finished is the
  results store's :func:`~mango_lite.training.results_store.finished_run`.
* :func:`train_study_runs`: a study's runs in worker processes, a line per finished run.
* :func:`train_models`: several models on one task's data, for notebooks and scripts: the models that
  take longest start first, a line per finished run, the results in the order asked for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import TrainingError
from ..presets import Preset
from .executor import Outcome, RunJob, default_jobs, job_count, train_runs
from .runspec import RunOptions, RunSpec, resolve_preset
from .tasks import DataInfo, RunResult, TaskData

__all__ = ["default_jobs", "train_models", "study_run_job", "train_study_runs"]


def study_run_job(spec: RunSpec, folder: str | os.PathLike, info: DataInfo | None = None,
                  device: str | None = None) -> RunJob:
    """One run of a study as a :class:`~mango_lite.training.executor.RunJob`: resumable, a folder of an older
    build retrained, the best checkpoint chosen on the selection split (when the preset holds one out), one
    checkpoint kept; ``info``: where its data already are."""
    return RunJob(spec, folder, RunOptions(device=device, resume=True, overwrite=False, retrain_stale=True,
                                           save_best=True, keep_checkpoints=1), data=info)


def train_study_runs(jobs: Mapping[str, RunJob], workers: int | None, device: str | None,
                     log: Callable[[str], None], describe: Callable[[RunResult], str] | None = None
                     ) -> tuple[int, dict[str, str]]:
    """Train a study's runs (run name -> :func:`study_run_job`) in worker processes, a line per finished run
    (``describe(result)`` adds to it); returns ``(runs finished, {run name: error})``."""
    failed: dict[str, str] = {}
    count = {"done": 0}
    t0 = time.perf_counter()

    def done(name: str, outcome: Outcome) -> None:
        if outcome.error is not None:
            failed[name] = outcome.error
            log(f"{name}: FAILED: {outcome.error}")
            return
        count["done"] += 1
        what = describe(outcome.value) if describe is not None else "done"
        log(f"{name}: {what} ({outcome.seconds:.0f} s); {count['done']} of {len(jobs)} after "
            f"{time.perf_counter() - t0:.0f} s")

    if jobs:
        # in worker processes even one at a time: one torch thread and a log file each, whatever the caller's process
        train_runs(jobs, workers=job_count(workers, len(jobs), device), on_done=done)
    return count["done"], failed


def _longest_first(task: str, models: Sequence[str], preset: Preset) -> list[str]:
    """``models`` ordered by their measured run time at ``preset`` (longest first, unknown last), so the
    slowest run does not start last and leave the other workers idle at the end."""
    from .run_costs import load_run_costs, model_kind

    seconds = ((load_run_costs().get(preset.name) or {}).get("seconds") or {}).get(task, {})
    return sorted(models, key=lambda m: -float(seconds.get(model_kind(m), 0.0)))


def train_models(
    task: str,
    models: Sequence[str],
    preset: str | Preset | None,
    out: str | os.PathLike,
    data: TaskData,
    *,
    seed: int = 0,
    jobs: int | None = None,
    device: str | None = None,
    resume: bool = True,
    overwrite: bool = False,
    amp: bool = True,
    epochs: int | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, RunResult]:
    """Train every model of ``models`` on ``data`` into ``out/<model>`` and return their results, in
    the order of ``models``.

    ``jobs``: runs at once (``None``: :func:`default_jobs`, every core on a CPU-only machine, 1 on a GPU).
    With one job the runs train in this process, one after another; otherwise in spawned workers with one
    torch thread each, the longest (by measured run cost) first. ``resume``: a finished run of the same
    configuration is reloaded, an unfinished one continued; a folder holding a run of a differently
    configured model (an older mango_lite) is trained again from scratch. Without ``resume``, a folder that
    holds checkpoints is refused unless ``overwrite``. ``epochs``: the length of the schedule (``None``: the
    preset's), e.g. a shorter run for a lab. ``log``: one line per finished
    run (``None``: silent); a worker's own log goes to ``out/<model>/train.log``. Each run is seeded by
    ``seed`` alone, so the numbers do not depend on ``jobs``. Raises TrainingError if a run diverged."""
    from ..utils import pick_device

    preset = resolve_preset(preset)
    out = Path(out)
    say = log or (lambda msg: None)
    n_jobs = job_count(jobs, len(models), pick_device(device))
    options = RunOptions(device=device, resume=resume, overwrite=overwrite, retrain_stale=resume, progress=None,
                         verbose=False)
    order = models if n_jobs == 1 else _longest_first(task, models, preset)
    run_jobs = {name: RunJob(RunSpec(task, name, preset, seed=seed, pair=data.pair.name if data.pair else None,
                                     dataset=data.info.name, epochs=epochs, amp=amp), out / name, options)
                for name in order}
    if n_jobs > 1:
        say(f"training {len(models)} models in {n_jobs} worker processes (one torch thread each; "
            f"each run's log: train.log in its folder)")
    results: dict[str, RunResult] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()

    def done(name: str, outcome: Outcome) -> None:
        if outcome.error is not None:
            errors[name] = outcome.error
            say(f"{name}: FAILED: {outcome.error}")
            return
        results[name] = r = outcome.value
        how = "reloaded finished run" if not r.epochs_run else f"{r.wall_time_s:6.1f} s"
        say(f"{name:12s} done ({how}); {len(results)} of {len(models)} after {time.perf_counter() - t0:5.0f} s")

    train_runs(run_jobs, workers=0 if n_jobs == 1 else n_jobs, data={name: data for name in run_jobs},
               log=say if n_jobs == 1 else None, on_done=done)
    if errors:
        raise TrainingError("; ".join(f"{k}: {v}" for k, v in errors.items()))
    return {name: results[name] for name in models}

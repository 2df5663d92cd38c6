"""Training several runs at once, each in its own worker process with one torch thread.

On a CPU-only machine one run per core, one thread each, measured faster than one run after another
with every thread (small convolutions and matmuls do not scale across threads). Workers are *spawned*
(no fork of a process holding torch's thread pools or a notebook kernel) and rebuild their data from its
:class:`~mango_lite.datasets.DataInfo` (a folder on disk), so nothing large is pickled. Each run is seeded
by its own seed alone: its numbers do not depend on how many workers there are or which finishes first.

* :func:`default_jobs`: how many runs at once on this machine.
* :func:`train_in_worker`: the worker's body, one run.
* :func:`run_in_workers`: the pool loop shared by ``reproduce`` and :func:`train_models`.
* :func:`study_run_spec` / :func:`finished_run`: one run of a pre-registered study (resumable, the best
  checkpoint chosen on the selection split) and whether its folder already holds it finished.
* :func:`train_models`: several models on one task's data, for notebooks and scripts: the models that
  take longest start first, a line per finished run, the results in the order asked for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import MangoLiteError, TrainingError
from ..models.config import ModelConfig
from ..presets import Preset, training_fields
from ..utils import json_normal
from .tasks import DataInfo, RunResult, TaskData, _preset, build_task_data, train_task

__all__ = ["WORKER_MEMORY_BYTES", "default_jobs", "train_in_worker", "run_in_workers", "train_models",
           "study_run_spec", "finished_run", "same_setting", "built_with", "train_study_runs"]

#: memory one CPU training run may need at the larger presets (workers are capped so they all fit)
WORKER_MEMORY_BYTES = 2 * 2**30


def default_jobs(device: torch.device | str = "cpu") -> int:
    """How many runs to train at once: every core this process may use on a CPU-only run (each run
    gets one torch thread, which measured faster than one run with many threads on small machines),
    capped by available memory at :data:`WORKER_MEMORY_BYTES` per run; 1 on a GPU (the runs would share
    it). (The command line's default for ``--jobs``, ``MANGO_LITE_JOBS``, is read at the edge.)"""
    if torch.device(device).type != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        by_memory = max(1, free // WORKER_MEMORY_BYTES)
    except (AttributeError, ValueError, OSError):
        by_memory = cores
    return int(max(1, min(cores, by_memory)))


def train_in_worker(spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, float]:
    """Worker: train one run (one torch thread); ``(result, None, seconds)`` or ``(None, error, seconds)``
    when it diverged. Its log lines go to ``train.log`` in the run folder.

    ``spec``: ``task, model, preset, run_dir, pair, dataset, info`` (a :class:`DataInfo` dict), ``device,
    seed, resume, amp``; optional ``retrain_stale`` (a folder holding a run of a differently configured
    model, e.g. from an older mango_lite, is trained again from scratch instead of refused) and
    ``save_best`` / ``keep_checkpoints`` (defaults: False / 1, as a reproduction keeps them), ``overwrite``
    (default True: a reproduction has already decided which runs to redo), ``epochs`` and
    ``model_overrides`` (an ablation's variant), as :func:`~mango_lite.training.train_task` takes them."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a", encoding="utf-8") as fh:
        def log(msg: str) -> None:
            fh.write(msg + "\n")
            fh.flush()

        td = build_task_data(spec["task"], spec["preset"], pair=spec["pair"], dataset=spec["dataset"],
                             info=DataInfo(**spec["info"]))
        kw = dict(pair=spec["pair"], dataset=spec["dataset"], device=spec["device"], seed=spec["seed"],
                  overwrite=spec.get("overwrite", True), data=td, progress=False, verbose=True,
                  save_best=spec.get("save_best", False), keep_checkpoints=spec.get("keep_checkpoints", 1),
                  amp=spec["amp"], epochs=spec.get("epochs"), model_overrides=spec.get("model_overrides"), log=log)
        try:
            res = _train_or_retrain(spec["task"], spec["model"], spec["preset"], run_dir, spec["resume"],
                                    bool(spec.get("retrain_stale")), kw, log)
        except TrainingError as exc:
            log(f"FAILED: {exc}")
            return None, str(exc), time.perf_counter() - t0
    return res.to_dict(), None, time.perf_counter() - t0


def _is_stale(exc: Exception) -> bool:
    """A resume refused because the folder holds a run of a differently built model."""
    return isinstance(exc, MangoLiteError) and not isinstance(exc, TrainingError) and (
        "different configuration" in str(exc) or "do not fit" in str(exc))


def _train_or_retrain(task: str, model: str, preset: Preset | str, run_dir: Path, resume: bool,
                      retrain_stale: bool, kw: dict[str, Any], log: Callable[[str], None]) -> RunResult:
    """:func:`train_task`; with ``retrain_stale``, a folder refused as holding a run of a differently built
    model is trained again from scratch instead (the one place both the workers and the in-process path
    decide it)."""
    try:
        return train_task(task, model, preset, run_dir, resume=resume, **kw)
    except MangoLiteError as exc:
        if not (retrain_stale and _is_stale(exc)):
            raise
        log(f"{model}: stale run folder of a differently built model ({exc}); training from scratch")
        return train_task(task, model, preset, run_dir, resume=False, **{**kw, "overwrite": True})


def run_in_workers(specs: Mapping[Hashable, dict[str, Any]], jobs: int,
                   on_done: Callable[[Hashable, dict[str, Any] | None, str | None, float], None],
                   on_start: Callable[[Hashable, int, int], None] | None = None) -> None:
    """Train every spec of ``specs`` (key -> :func:`train_in_worker` spec) in ``jobs`` spawned worker
    processes, started in the mapping's order. ``on_start(key, k, n)`` when the k-th of n runs starts,
    ``on_done(key, result, error, seconds)`` as each finishes. Any error other than a diverged run (or an
    interruption) cancels the runs not yet started and is raised."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    keys = list(specs)
    pool = ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=mp.get_context("spawn"))
    try:
        futures = {pool.submit(train_in_worker, specs[key]): key for key in keys}
        started = min(jobs, len(keys))
        for k, key in enumerate(keys[:started], 1):
            if on_start is not None:
                on_start(key, k, len(keys))
        running = set(futures)
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                res, error, seconds = fut.result()
                on_done(futures[fut], res, error, seconds)
                if started < len(keys):
                    started += 1
                    if on_start is not None:
                        on_start(keys[started - 1], started, len(keys))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def study_run_spec(task: str, model: str, preset: Preset, seed: int, folder: str | os.PathLike,
                   info: dict[str, Any], device: str | None, *, dataset: str, pair: str | None = None,
                   model_overrides: Mapping[str, Any] | None = None, epochs: int | None = None) -> dict[str, Any]:
    """A :func:`train_in_worker` spec of one run of a study: resumable, a folder of an older build retrained,
    the best checkpoint chosen on the selection split (when the preset holds one out), one checkpoint kept."""
    return dict(task=task, model=model, preset=preset, run_dir=str(folder), pair=pair, dataset=dataset, info=info,
                device=device, seed=int(seed), resume=True, amp=True, retrain_stale=True, overwrite=False,
                save_best=True, keep_checkpoints=1, epochs=epochs,
                model_overrides=dict(model_overrides) if model_overrides else None)


def same_setting(spec: Mapping[str, Any], preset: Preset, seed: int) -> bool:
    """Whether a stored run description ``spec`` was trained at ``seed`` with ``preset``'s training fields
    (:func:`~mango_lite.presets.training_fields`: sizes, schedule, data, protocol; a field added later counts
    with the value the run trained under). The one test every resume path applies."""
    return spec.get("seed") == seed and training_fields(spec.get("preset") or {}) == training_fields(preset.to_dict())


def built_with(spec: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether the run's model was built with ``values`` (ModelConfig fields): read from the full stored
    configuration (a version-1 one as it was meant), so a value asked for explicitly matches a run that got it
    as the default of its day; runs that stored none are read from the keywords they were passed."""
    stored = spec.get("model_config")
    if stored:
        try:
            built = ModelConfig.from_dict(stored).to_dict()
        except (TypeError, ValueError):
            built = dict(stored)
    else:
        built = dict(spec.get("model_kwargs") or {})
    return all(json_normal(built.get(k)) == json_normal(v) for k, v in dict(values).items())


def finished_run(folder: str | os.PathLike, preset: Preset, model: str, seed: int,
                 model_overrides: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The run's final ``metrics.json``, parsed, when ``folder`` holds one of the same model, seed and preset
    (:func:`same_setting`) and, given ``model_overrides``, built with those values (:func:`built_with`);
    otherwise None."""
    import json

    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return None
    done = json.loads(path.read_text(encoding="utf-8"))
    spec = done.get("spec", {})
    same = spec.get("model") == model and same_setting(spec, preset, seed) and built_with(spec, model_overrides or {})
    return done if same else None


def train_study_runs(specs: Mapping[str, dict[str, Any]], jobs: int | None, device: str | None,
                     log: Callable[[str], None], describe: Callable[[dict[str, Any]], str] | None = None
                     ) -> tuple[int, dict[str, str]]:
    """Train a study's runs (run name -> :func:`study_run_spec`) in worker processes, a line per finished run
    (``describe(result)`` adds to it); returns ``(runs finished, {run name: error})``."""
    failed: dict[str, str] = {}
    count = {"done": 0}
    t0 = time.perf_counter()

    def done(name: Hashable, res: dict[str, Any] | None, error: str | None, seconds: float) -> None:
        if error is not None:
            failed[str(name)] = error
            log(f"{name}: FAILED: {error}")
            return
        count["done"] += 1
        what = describe(res) if describe is not None and res is not None else "done"
        log(f"{name}: {what} ({seconds:.0f} s); {count['done']} of {len(specs)} after {time.perf_counter() - t0:.0f} s")

    if specs:
        run_in_workers(specs, max(1, min(jobs or default_jobs(device or "cpu"), len(specs))), done)
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

    preset = _preset(preset)
    out = Path(out)
    say = log or (lambda msg: None)
    dev = pick_device(device)
    n_jobs = max(1, min(int(jobs) if jobs else default_jobs(dev), len(models)))
    results: dict[str, RunResult] = {}
    t0 = time.perf_counter()

    def report(name: str, r: RunResult) -> None:
        how = "reloaded finished run" if not r.epochs_run else f"{r.wall_time_s:6.1f} s"
        say(f"{name:12s} done ({how}); {len(results)} of {len(models)} after {time.perf_counter() - t0:5.0f} s")

    if n_jobs == 1:
        for name in models:
            kw = dict(pair=data.pair.name if data.pair else None, dataset=data.info.name, device=device, seed=seed,
                      data=data, amp=amp, progress=None, verbose=False, overwrite=overwrite, epochs=epochs)
            results[name] = _train_or_retrain(task, name, preset, out / name, resume, resume, kw, say)
            report(name, results[name])
        return results
    specs = {name: dict(task=task, model=name, preset=preset, run_dir=str(out / name),
                        pair=data.pair.name if data.pair else None, dataset=data.info.name, info=data.info.to_dict(),
                        device=device, seed=seed, resume=resume, amp=amp, retrain_stale=resume, overwrite=overwrite,
                        save_best=True,
                        keep_checkpoints=2, epochs=epochs)
             for name in _longest_first(task, models, preset)}
    say(f"training {len(models)} models in {n_jobs} worker processes (one torch thread each; "
        f"each run's log: train.log in its folder)")
    errors: dict[str, str] = {}

    def done(name: Hashable, res: dict[str, Any] | None, error: str | None, seconds: float) -> None:
        if error is not None:
            errors[str(name)] = error
            say(f"{name}: FAILED: {error}")
            return
        results[str(name)] = RunResult(**res)  # type: ignore[arg-type]
        report(str(name), results[str(name)])

    run_in_workers(specs, n_jobs, done)
    if errors:
        raise TrainingError("; ".join(f"{k}: {v}" for k, v in errors.items()))
    return {name: results[name] for name in models}

"""One executor for every set of runs: in this process, in spawned worker processes, or as a submitit job array.

Every launcher (``reproduce``, ``run_ablation``, the mechanism, registration and selection studies, the density
study and the notebooks' :func:`~mango_lite.training.workers.train_models`) hands its runs to :func:`execute`::

    outcomes = execute(train_run, {"mango": RunJob(spec, "runs/mango"), ...}, workers=2)  # 2 worker processes
    outcomes["mango"].value  # a RunResult, or None with outcomes["mango"].error when the run diverged

* :func:`execute`: any module-level work function over a mapping of jobs; ``on_start`` / ``on_done`` as runs
  start and finish (a launcher records progress there), a :class:`Outcome` per job.
* :class:`RunJob` + :func:`train_run`: the work of one training run (:func:`~mango_lite.training.train_task`
  with its :class:`~mango_lite.training.runspec.RunSpec` and :class:`~mango_lite.training.runspec.RunOptions`).
* :func:`default_jobs`: how many runs at once on this machine.

Why worker processes: on a CPU-only machine one run per core, one torch thread each, measured faster than one
run after another with every thread (small convolutions and matmuls do not scale across threads). Workers are
*spawned* (no fork of a process holding torch's thread pools or a notebook kernel) and rebuild their data from
its :class:`~mango_lite.training.tasks.DataInfo` (a folder on disk), so nothing large is pickled. Each run is
seeded by its spec alone: its numbers do not depend on the backend, the number of workers or the order in
which runs finish. A run that diverges (TrainingError) is an outcome with its error; any other error (or an
interruption) cancels the runs not yet started and is raised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..errors import MangoLiteError, TrainingError
from ..utils import display_path
from .runspec import RunOptions, RunSpec
from .tasks import DataInfo, RunResult, TaskData, build_task_data, train_task

__all__ = ["Outcome", "RunJob", "execute", "train_run", "train_runs", "default_jobs", "WORKER_MEMORY_BYTES", "job_count"]

K = TypeVar("K", bound=Hashable)

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


def job_count(jobs: int | None, runs: int, device: torch.device | str | None = "cpu") -> int:
    """Runs at once for ``runs`` runs: ``jobs`` (None or 0: :func:`default_jobs`), never more than the runs."""
    wanted = int(jobs) if jobs else default_jobs(device or "cpu")
    return max(1, min(wanted, runs))


@dataclass(frozen=True)
class Outcome:
    """How one job ended: ``value`` (what the work function returned) or ``error`` (a diverged run's message),
    and the seconds it took where it ran."""

    value: Any
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def _timed(work: Callable[[Any], Any], job: Any) -> Outcome:
    """``work(job)`` as an :class:`Outcome` (module level: what a worker process or a cluster job runs)."""
    t0 = time.perf_counter()
    try:
        return Outcome(work(job), None, time.perf_counter() - t0)
    except TrainingError as exc:
        return Outcome(None, str(exc), time.perf_counter() - t0)


def execute(
    work: Callable[[Any], Any],
    jobs: Mapping[K, Any],
    *,
    workers: int = 0,
    cluster: Mapping[str, Any] | None = None,
    cluster_folder: str | os.PathLike | None = None,
    on_start: Callable[[K, int, int], None] | None = None,
    on_done: Callable[[K, Outcome], None] | None = None,
) -> dict[K, Outcome]:
    """Run ``work(job)`` for every job of ``jobs``, started in the mapping's order; returns ``{key: Outcome}``
    in that order.

    Backends: ``workers == 0`` in this process, one job after another; ``workers >= 1`` in that many spawned
    worker processes (one is still a process of its own: a fresh torch, its own thread setting); ``cluster``
    (``executor``: ``"slurm"`` or ``"local"``, plus submitit parameters such as ``timeout_min``,
    ``slurm_partition``, ``gpus_per_node``) as one submitit job array, logs and pickles in ``cluster_folder``.
    ``work`` must be a module-level function (it is pickled) for the last two.
    ``on_start(key, k, n)`` when the k-th of n jobs starts (for a job array: when submitted), ``on_done(key,
    outcome)`` as each finishes."""
    keys = list(jobs)
    outcomes: dict[K, Outcome] = {}

    def finish(key: K, outcome: Outcome) -> None:
        outcomes[key] = outcome
        if on_done is not None:
            on_done(key, outcome)

    if not keys:
        return outcomes
    if cluster is not None:
        _on_cluster(work, jobs, cluster, cluster_folder, on_start, finish)
    elif workers <= 0:
        for k, key in enumerate(keys, 1):
            if on_start is not None:
                on_start(key, k, len(keys))
            finish(key, _timed(work, jobs[key]))
    else:
        _in_processes(work, jobs, workers, on_start, finish)
    return {key: outcomes[key] for key in keys}


def _in_processes(work: Callable[[Any], Any], jobs: Mapping[K, Any], workers: int,
                  on_start: Callable[[K, int, int], None] | None, finish: Callable[[K, Outcome], None]) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    keys = list(jobs)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    try:
        futures = {pool.submit(_timed, work, jobs[key]): key for key in keys}
        started = min(workers, len(keys))
        for k, key in enumerate(keys[:started], 1):
            if on_start is not None:
                on_start(key, k, len(keys))
        running = set(futures)
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                finish(futures[fut], fut.result())
                if started < len(keys):
                    started += 1
                    if on_start is not None:
                        on_start(keys[started - 1], started, len(keys))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _on_cluster(work: Callable[[Any], Any], jobs: Mapping[K, Any], cluster: Mapping[str, Any],
                folder: str | os.PathLike | None, on_start: Callable[[K, int, int], None] | None,
                finish: Callable[[K, Outcome], None]) -> None:
    """One submitit job array; each job's outcome collected as it completes (submitit's own ``as_completed``)."""
    try:
        import submitit
        from submitit.helpers import as_completed
    except ImportError as exc:
        raise MangoLiteError("a cluster sweep needs submitit: pip install 'mango_lite[cluster]'") from exc
    if folder is None:
        raise MangoLiteError("execute: a cluster run needs cluster_folder (where job logs and pickles go)")
    opts = dict(cluster)
    kind = str(opts.pop("executor", "slurm"))
    if kind not in ("slurm", "local"):
        raise MangoLiteError(f"cluster executor must be 'slurm' or 'local', got {kind!r}")
    executor = submitit.AutoExecutor(folder=str(folder), cluster=kind)
    opts.setdefault("timeout_min", 240)
    opts.setdefault("name", "mango_lite")
    executor.update_parameters(**opts)
    keys = list(jobs)
    with executor.batch():  # one job array
        submitted = [executor.submit(_timed, work, jobs[key]) for key in keys]
    for k, key in enumerate(keys, 1):
        if on_start is not None:
            on_start(key, k, len(keys))
    by_job = {id(job): key for job, key in zip(submitted, keys)}
    for job in as_completed(submitted, poll_frequency=2):
        key = by_job[id(job)]
        try:
            outcome = job.result()
        except Exception as exc:  # the job itself failed (not a diverged run): stop, naming its log
            raise MangoLiteError(f"{key}: job {job.job_id} failed ({type(exc).__name__}); see "
                                 f"{display_path(Path(folder))} for its stderr") from exc
        finish(key, outcome)


# ------------------------------------------------------------------------------ training runs
@dataclass(frozen=True)
class RunJob:
    """One training run for :func:`execute` with :func:`train_run`: what (``spec``), where (``run_dir``), how
    (``options``), and where its data already are (``data``: a prepared dataset folder, from which the loaders
    are rebuilt; None: prepared from the spec). ``log_file``: the run's log lines go to ``run_dir/train.log``
    (what a worker process does) instead of ``options.verbose``'s stderr. ``threads``: torch threads for the
    run (1 in a worker process; None leaves the process's setting)."""

    spec: RunSpec
    run_dir: str
    options: RunOptions = field(default_factory=RunOptions)
    data: DataInfo | None = None
    log_file: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", os.fspath(self.run_dir))


def _is_stale(exc: Exception) -> bool:
    """A resume refused because the folder holds a run of a differently built model."""
    return isinstance(exc, MangoLiteError) and not isinstance(exc, TrainingError) and (
        "different configuration" in str(exc) or "do not fit" in str(exc))


def train_run(job: RunJob, data: TaskData | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train one :class:`RunJob`: the work function of training runs for :func:`execute`. ``data``: loaders
    already built for this job's spec (runs in one process share them); ``log``: where its lines go (default:
    ``train.log`` in the run folder with ``job.log_file``, else as ``options.verbose`` says). With
    ``options.retrain_stale``, a folder refused as holding a run of a differently built model (an older
    mango_lite) is trained again from scratch instead."""
    if job.threads:
        torch.set_num_threads(int(job.threads))
    if log is None and job.log_file:
        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "a", encoding="utf-8") as fh:
            def to_file(msg: str) -> None:
                fh.write(msg + "\n")
                fh.flush()

            return _train_or_retrain(job, data, to_file)
    return _train_or_retrain(job, data, log)


def _train_or_retrain(job: RunJob, data: TaskData | None, log: Callable[[str], None] | None) -> RunResult:
    spec, options = job.spec, job.options
    if data is None and job.data is not None:
        data = build_task_data(spec.task, spec.preset, pair=spec.pair, dataset=spec.dataset, info=job.data)
    try:
        return train_task(spec, job.run_dir, options=options, data=data, log=log)
    except MangoLiteError as exc:
        if not (options.retrain_stale and _is_stale(exc)):
            raise
        if log is not None:
            log(f"{spec.model}: stale run folder of a differently built model ({exc}); training from scratch")
        return train_task(spec, job.run_dir, options=options.replace(resume=False, overwrite=True), data=data, log=log)


def train_runs(jobs: Mapping[K, RunJob], *, workers: int = 0, cluster: Mapping[str, Any] | None = None,
               cluster_folder: str | os.PathLike | None = None, data: Mapping[K, TaskData] | None = None,
               log: Callable[[str], None] | None = None, on_start: Callable[[K, int, int], None] | None = None,
               on_done: Callable[[K, Outcome], None] | None = None) -> dict[K, Outcome]:
    """:func:`execute` of training runs, the one way every launcher trains several: in this process
    (``workers == 0``; ``data[key]``: loaders already built, ``log`` for the runs' lines), else each run in one
    of ``workers`` worker processes or a cluster job, with one torch thread and its log in ``train.log`` (workers rebuild their
    data from ``RunJob.data``, filled from ``data[key]`` when the job has none)."""
    data = dict(data or {})
    if workers <= 0 and cluster is None:
        return execute(lambda key: train_run(jobs[key], data.get(key), log), {key: key for key in jobs},
                       on_start=on_start, on_done=on_done)
    remote = {key: replace(job, log_file=True, threads=1, options=job.options.replace(progress=False, verbose=True),
                           data=job.data if job.data is not None or key not in data else data[key].info)
              for key, job in jobs.items()}
    return execute(train_run, remote, workers=workers, cluster=cluster, cluster_folder=cluster_folder,
                   on_start=on_start, on_done=on_done)

"""``python -m mango_lite reproduce``: train MANGO and the baselines on all three tasks and write our
tables beside the paper's Tables 1-3; plus :func:`run_ablation` (partitions, number of blocks).

Output folder (``OUT``)::

    results.json        {"preset", "device", "wall_time_s", "git_commit", ..., "results": {
                           "segmentation/nyudv2": {"task", "dataset", "pair", "data", "data_info",
                                                   "models": {"mango": {"miou": ..., ...}, ...}}, ...}}
                        i.e. task -> model -> metric -> value, one entry per (task, dataset or pair)
    results.md          our rows beside the paper's rows (labelled "paper (as printed)"), each row
                        saying what data it was measured on
    figures/*.png       learning curves (overlay per task) and bar charts
    runs/<task>/<dataset or pair>/<model>/   checkpoints, history.json/.csv, curves.png, metrics.json
    data/               generated stand-ins (unless --data-cache / real data are given)

Which runs: segmentation on NYUDv2 (and SUN RGB-D at every preset but ``quick``), translation on
Shade+Texture->RGB and RGB+Edge->Depth at ``quick`` and all five pairs otherwise, genres on MM-IMDb;
each with ``mango``, ``concat``, ``tokenfusion``, ``crossattn`` and the two unimodal models. A preset can
narrow this with ``tasks["reproduce"] = {"models": [...], "segmentation_datasets": [...],
"pairs": [...]}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import paper_tables as P
from ..datasets.constants import DATASET_LABELS
from ..engine.history import History
from ..errors import MangoLiteError
from ..markdown import BLANK, table
from ..presets import Preset
from ..tasks import CLASS_MAP, IMAGE, LABELS, TASKS, get_task
from ..utils import atomic_write_json, atomic_write_text, checked_device, device_name, display_path, pick_device
from .executor import Outcome, RunJob, job_count, train_runs
from .results_store import finished_run
from .runspec import RunOptions, RunSpec, resolve_preset
from .tasks import (
    CONTROL_MODELS,
    FUSION_MODELS,
    GENERATED,
    PAIRS,
    TASK_NAMES,
    DataInfo,
    TaskData,
    build_task_data,
    check_dataset,
    check_task,
    prepare_data,
    resolve_pair,
    run_model_config,
    unimodal_names,
)

QUICK_PAIRS = ("shade_texture_to_rgb", "rgb_edge_to_depth")



# ------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class RunGroup:
    """Models trained on the same data: one (task, dataset, pair) entry of results.json."""

    task: str
    dataset: str
    pair: str | None
    models: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.task}/{self.pair or self.dataset}"


def plan_runs(preset: str | Preset | None, tasks: Sequence[str] | None = None, models: Sequence[str] | None = None,
              pairs: Sequence[str] | None = None) -> list[RunGroup]:
    """The run groups of a reproduction at ``preset`` (see module docstring). ``models`` restricts the
    models by name; the generic names ``unimodal`` / ``a`` / ``b`` select the task's unimodal models and
    ``controls`` MANGO's controls (:data:`~mango_lite.training.tasks.CONTROL_MODELS`)."""
    preset = resolve_preset(preset)
    knobs = dict((preset.tasks or {}).get("reproduce", {}))
    tasks = [check_task(t) for t in (tasks or TASK_NAMES)]
    wanted = [m.lower() for m in (models or knobs.get("models") or [])]
    groups: list[RunGroup] = []

    def pick(task: str, pair: str | None) -> tuple[str, ...]:
        ua, ub = unimodal_names(task, pair)
        allm = FUSION_MODELS + (ua, ub) + tuple(CONTROL_MODELS)
        if not wanted:
            return FUSION_MODELS + (ua, ub)
        sel = tuple(m for m in allm if m in wanted or (m == ua and ("a" in wanted or "unimodal" in wanted))
                    or (m == ub and ("b" in wanted or "unimodal" in wanted))
                    or (m in CONTROL_MODELS and "controls" in wanted))
        return sel

    for task in tasks:
        spec = get_task(task)
        if spec.has_pairs:  # one group per pair, on the task's dataset
            ps = pairs or knobs.get("pairs") or (QUICK_PAIRS if preset.name == "quick" else tuple(PAIRS))
            for p in ps:
                name = resolve_pair(p).name
                groups.append(RunGroup(task, spec.default_dataset, name, pick(task, name)))
            continue
        # one group per dataset: the default one at quick, every one otherwise (a preset may name them)
        ds = knobs.get(f"{task}_datasets") or (spec.datasets[:1] if preset.name == "quick" else spec.datasets)
        for d in ds:
            groups.append(RunGroup(task, check_dataset(task, d), None, pick(task, None)))
    groups = [g for g in groups if g.models]
    if not groups:
        raise MangoLiteError(f"nothing to run: no model of {list(models or [])} fits tasks {tasks}")
    return groups


# -------------------------------------------------------------------------------- metadata
def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository holding this package (None when unavailable)."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def data_description(info: DataInfo | Mapping[str, Any], task_data: TaskData | None = None) -> str:
    """One line saying what a row was measured on, e.g.
    ``generated stand-in NYUDv2 (53 train / 43 val, 32 px)`` or ``real NYUDv2 (795 train / 654 val)``."""
    d = info.to_dict() if isinstance(info, DataInfo) else dict(info)
    label = DATASET_LABELS.get(d["name"], d["name"])
    parts = []
    if task_data is not None:
        parts.append(f"{len(task_data.train)} train / {len(task_data.test)} {task_data.test_split}")  # type: ignore[arg-type]
    meta = d.get("meta") or {}
    if d.get("source") == GENERATED:
        size = meta.get("size") or (meta.get("poster_size_hw") or [None])[0]
        if size:
            parts.append(f"{size} px")
    return f"{d.get('source', '?')} {label}" + (f" ({', '.join(parts)})" if parts else "")


# ------------------------------------------------------------------------------- reproduce
def _log_default(msg: str) -> None:
    import sys

    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)


def _finished_run_count(out: Path) -> int:
    """Runs recorded as finished in ``out/results.json`` (0 when there is none or it cannot be read)."""
    try:
        old = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return 0
    return sum(1 for e in (old.get("results") or {}).values() for m in (e.get("models") or {}).values()
               if "error" not in m)


def _data_report(groups: Sequence[RunGroup], data_root: str | os.PathLike | None, allow_stand_ins: bool,
                 log: Callable[[str], None]) -> None:
    """Say, dataset by dataset, whether ``data_root`` holds it or a stand-in will be generated; refuse a
    root that holds none of the planned datasets unless ``allow_stand_ins``."""
    if data_root is None:
        return
    root = Path(data_root)
    if not root.is_dir():
        raise MangoLiteError(f"--data-root {data_root}: not a folder (expected sub-folders "
                             f"nyudv2/ sunrgbd/ taskonomy/ mmimdb/)")
    needed = list(dict.fromkeys(g.dataset for g in groups))
    found = [d for d in needed if (root / d).is_dir()]
    for d in needed:
        log(f"  {d}: " + (f"real data in {display_path(root / d)}" if d in found else
                          f"no {display_path(root / d)}, a generated stand-in will be used"))
    if not found and not allow_stand_ins:
        raise MangoLiteError(
            f"--data-root {data_root}: holds none of {', '.join(d + '/' for d in needed)}; point it at the folder "
            f"that contains them, or pass --allow-stand-ins to train on generated stand-ins")


def _plan_lines(preset: Preset, dev: torch.device, seed: int, out: Path, groups: Sequence[RunGroup],
                estimate: tuple[float | None, str | None], workers: int = 1) -> list[str]:
    n_runs = sum(len(g.models) for g in groups)
    lines = [f"reproduce: preset {preset.name}, device {device_name(dev)}, seed {seed}, {n_runs} runs in "
             f"{len(groups)} groups ({preset.epochs} epochs each) -> {display_path(out)}"]
    for g in groups:
        lines.append(f"  {g.key:34s} {', '.join(g.models)}")
    sec, where = estimate
    if sec is None:
        lines.append("  estimated time: unknown (no measured runs at this preset in mango_lite/training/run_costs.json)")
    else:
        parallel = (f", about {_duration(sec / workers)} in {workers} worker processes at full speed"
                    if workers > 1 else "")
        lines.append(f"  estimated time: {_duration(sec)} one run after another{parallel} (measured on {where}; "
                     f"more on a slower or busier machine)")
    return lines


def _duration(sec: float) -> str:
    return f"{sec / 60:.0f} min" if sec >= 90 else f"{sec:.0f} s"


def reproduce(
    preset: str | Preset | None = "quick",
    out: str | os.PathLike | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    pairs: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_stand_ins: bool = False,
    jobs: int | None = None,
    cluster: Mapping[str, Any] | None = None,
    amp: bool = True,
    num_workers: int = 0,
    progress: bool | None = None,
    verbose: bool = True,
    log: Callable[[str], None] | None = None,
    checkpoint_flow: bool = False,
) -> dict[str, Any]:
    """Run the reproduction (see module docstring) and return the results.json content.

    Before any work it logs the plan (preset, device, every run) and an estimated time from measured
    runs (:mod:`~mango_lite.training.run_costs`); an overall progress bar with an ETA runs above the
    per-epoch bars. After every finished run ``results.json`` and ``results.md`` (marked partial until the
    end) and the learning-curve figures are rewritten, so an interruption loses at most the run in progress.

    ``data_root``: folder with real datasets in sub-folders ``nyudv2/``, ``sunrgbd/``, ``taskonomy/``,
    ``mmimdb/``; each planned dataset is reported as found or replaced by its generated stand-in (and
    labelled so); a folder holding none of them is refused unless ``allow_stand_ins``. ``resume``: keep
    finished runs (same preset, seed and model configuration) and continue unfinished ones from their last
    checkpoint. Without it, a folder that holds finished runs is refused unless ``overwrite`` (start
    over). A run that diverges (TrainingError) is recorded with its error and the reproduction goes on.

    ``jobs``: runs trained at once, each in its own worker process with one torch thread (``None``:
    :func:`default_jobs`, every core on a CPU machine as memory allows, 1 on a GPU). Each run is seeded
    by ``seed`` alone, so its numbers do not depend on ``jobs``; a worker's log goes to ``train.log`` in
    its run folder. ``cluster``: instead, submit the runs as a Slurm job array through submitit
    (:func:`~mango_lite.training.executor.execute`; ``{"executor": "local"}`` runs them as local jobs) and
    collect them here. ``checkpoint_flow``: as in :class:`~mango_lite.training.RunOptions` (the same numbers)."""
    from tqdm.auto import tqdm

    from .run_costs import load_run_costs

    t0 = time.perf_counter()
    preset = resolve_preset(preset)
    out = Path(out) if out is not None else Path("results") / preset.name
    log = log or (_log_default if verbose else (lambda m: None))
    groups = plan_runs(preset, tasks, models, pairs)
    dev = checked_device(device)
    _check_out(out, resume, overwrite)
    runs = [(g.task, m) for g in groups for m in g.models]
    costs = load_run_costs()  # measured seconds per run, read once for the estimate and the ETA
    estimate = _announce(preset, dev, seed, out, groups, costs, 1 if cluster else job_count(jobs, len(runs), dev), log)
    _data_report(groups, data_root, allow_stand_ins, log)
    results = _results_header(preset, seed, dev, amp, len(runs))
    if resume:
        results["results"].update(_earlier_groups(out, preset, seed))
    overall = tqdm(total=len(runs), desc="reproduce", unit="run", disable=progress is False or not verbose,
                   position=0, leave=True, dynamic_ncols=True)
    # 1. data and the runs still to do (finished runs of an earlier attempt are kept under --resume)
    options = RunOptions(device=device, resume=resume, overwrite=True, save_best=False, keep_checkpoints=1, progress=progress,
                         verbose=verbose, num_workers=num_workers, checkpoint_flow=checkpoint_flow, after_fit=_run_figures())
    tds: dict[str, TaskData] = {}
    pending = _pending_runs(groups, preset, seed, amp, options, out, data_root,
                            Path(cache_dir) if cache_dir is not None else out / "data", results, tds, overall, log)
    workers = 0 if not pending else job_count(jobs, len(pending), dev)
    if workers > 1 and cluster is None:
        log(f"  {len(pending)} runs to train in {workers} worker processes (one torch thread each)")
    progress_of = _RunRecorder(results, groups, pending, out, costs.get(preset.name) or {}, estimate, workers, overall, t0, log)
    try:  # 2. train them: one after another in this process, in worker processes, or as cluster jobs
        train_runs(pending, workers=0 if workers == 1 and cluster is None else workers, cluster=cluster,
                   cluster_folder=out / "submitit", data={key: tds[key[0]] for key in pending}, log=log,
                   on_start=progress_of.started, on_done=progress_of.done)
    finally:
        overall.close()
    return _finish(results, groups, tds, out, t0, log)


def _run_figures() -> tuple[Callable[[Any], Any], ...]:
    """What each run of a reproduction draws when it finishes: its learning curves."""
    from ..viz.plots import write_run_curves

    return (write_run_curves,)


def _announce(preset: Preset, dev: torch.device, seed: int, out: Path, groups: Sequence[RunGroup],
              costs: Mapping[str, Any], workers: int, log: Callable[[str], None]) -> float | None:
    """Log the plan and its estimated time (from measured runs); return the estimate in seconds (None: unknown)."""
    from .run_costs import estimate_seconds

    estimate = estimate_seconds(preset.name, [(g.task, m) for g in groups for m in g.models], costs)
    for line in _plan_lines(preset, dev, seed, out, groups, estimate, workers):
        log(line)
    return estimate[0]


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an OUT holding finished runs of an earlier reproduction unless told what to do with them."""
    finished_before = _finished_run_count(out)
    if finished_before and not (resume or overwrite):
        raise MangoLiteError(
            f"{display_path(out)} already holds {finished_before} finished runs of an earlier reproduction; pass "
            f"--resume to keep them and train the rest, --overwrite to start again, or choose another --out")


def _results_header(preset: Preset, seed: int, dev: torch.device, amp: bool, runs: int) -> dict[str, Any]:
    return {
        "preset": preset.name, "preset_config": preset.to_dict(), "seed": seed, "device": device_name(dev),
        "amp_bf16": bool(amp and dev.type == "cuda"),
        "torch": torch.__version__, "python": platform.python_version(), "git_commit": git_commit(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": None, "paper_source": P.SOURCE, "runs_planned": runs, "results": {},
    }


def _earlier_groups(out: Path, preset: Preset, seed: int) -> dict[str, Any]:
    """The groups of an earlier (partial) reproduction in ``out`` at the same preset and seed."""
    try:
        old = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return dict(old.get("results") or {}) if old.get("preset") == preset.name and old.get("seed") == seed else {}


def _pending_runs(groups: Sequence[RunGroup], preset: Preset, seed: int, amp: bool, options: RunOptions, out: Path,
                  data_root: str | os.PathLike | None, cache: Path, results: dict[str, Any], tds: dict[str, TaskData],
                  overall: Any, log: Callable[[str], None]) -> dict[tuple[str, str], RunJob]:
    """Prepare each group's data (into ``tds``) and its entry in ``results``; return the runs still to train,
    (group key, model) -> :class:`~mango_lite.training.executor.RunJob`. Under ``options.resume`` a finished
    run of the same preset, seed and model configuration is kept (and counted on ``overall``)."""
    infos: dict[str, DataInfo] = {}
    pending: dict[tuple[str, str], RunJob] = {}
    for group in groups:
        if group.dataset not in infos:
            real = Path(data_root) / group.dataset if data_root is not None else None
            domains = None
            if group.dataset == "taskonomy":  # verify every domain the planned pairs need
                domains = sorted({d for g in groups if g.pair for d in (*PAIRS[g.pair].inputs, PAIRS[g.pair].target)})
            infos[group.dataset] = prepare_data(group.dataset, preset, real if real is not None and real.is_dir() else None,
                                                cache, domains=domains, log=log)
        td = tds[group.key] = build_task_data(group.task, preset, pair=group.pair, dataset=group.dataset,
                                              info=infos[group.dataset])
        entry = {
            "task": group.task, "dataset": group.dataset, "pair": group.pair,
            "pair_label": PAIRS[group.pair].label if group.pair else None,
            "data": infos[group.dataset].source, "data_description": data_description(infos[group.dataset], td),
            "data_info": infos[group.dataset].to_dict(), "test_split": td.test_split, "models": {},
        }
        prev_entry = results["results"].get(group.key) or {}
        for model in group.models:
            run_dir = out / "runs" / group.task / (group.pair or group.dataset) / model
            spec = RunSpec(group.task, model, preset, seed=seed, pair=group.pair, dataset=group.dataset, amp=amp)
            prev = None
            if options.resume:
                current = run_model_config(group.task, model, td, preset)  # what train_task will build
                prev = finished_run(run_dir, spec, model_config=current.to_dict(), whole_schedule=True)
            if prev is not None:
                entry["models"][model] = _model_entry(prev, out)
                log(f"    {group.key} {model}: finished earlier, kept ({display_path(run_dir / 'metrics.json')})")
                overall.update(1)
            else:
                pending[(group.key, model)] = RunJob(spec, run_dir, options, data=infos[group.dataset])
        if options.resume:  # rows of models outside this plan stay as they were
            entry["models"].update({m: v for m, v in (prev_entry.get("models") or {}).items() if m not in group.models})
        results["results"][group.key] = entry
    return pending


class _RunRecorder:
    """A reproduction's bookkeeping as runs start and finish: a line per start, each finished run's entry in
    ``results`` (in the plan's model order), the overall bar's ETA, and results.json / results.md / the
    figures rewritten so an interruption loses at most the runs in progress."""

    def __init__(self, results: dict[str, Any], groups: Sequence[RunGroup], pending: Mapping[tuple[str, str], RunJob],
                 out: Path, costs: Mapping[str, Any], estimate: float | None, workers: int, overall: Any, t0: float,
                 log: Callable[[str], None]) -> None:
        self.results, self.pending, self.out, self.overall, self.t0, self.log = results, pending, out, overall, t0, log
        self.groups = {g.key: g for g in groups}
        self.per_run = costs.get("seconds", {})
        self.estimate, self.workers = estimate, max(1, workers)
        self.spent = self.spent_est = 0.0  # actual and estimated seconds of the runs trained so far (for the ETA)

    def _cost(self, key: tuple[str, str]) -> float:
        from .run_costs import model_kind

        return float(self.per_run.get(self.groups[key[0]].task, {}).get(model_kind(key[1]), 0.0))

    def started(self, key: tuple[str, str], k: int, n: int) -> None:
        where = " (worker)" if self.workers > 1 else ""
        self.log(f"[{k}/{n}] {key[0]} {key[1]} -> {display_path(self.pending[key].run_dir)}{where}")

    def done(self, key: tuple[str, str], outcome: Outcome) -> None:
        group, model = self.groups[key[0]], key[1]
        run_dir = Path(self.pending[key].run_dir)
        entry = self.results["results"][group.key]
        if outcome.error is not None:
            self.log(f"    {group.key} {model} FAILED: {outcome.error}")
            entry["models"][model] = {"error": outcome.error, "run_dir": _rel(run_dir, self.out)}
        else:
            entry["models"][model] = _model_entry(outcome.value.to_dict(), self.out)
        entry["models"] = {m: entry["models"][m] for m in group.models if m in entry["models"]} | {
            m: v for m, v in entry["models"].items() if m not in group.models}
        self.spent += outcome.seconds
        self.spent_est += self._cost(key)
        self.overall.update(1)
        if self.estimate is not None and self.spent_est > 0:
            left = sum(self._cost(k) for k in self.pending) - self.spent_est
            left_s = max(0.0, left) * self.spent / self.spent_est / self.workers
            self.overall.set_postfix_str(f"about {_duration(left_s)} left")
        self.results["wall_time_s"] = time.perf_counter() - self.t0
        atomic_write_json(self.out / "results.json", self.results)
        atomic_write_text(self.out / "results.md", results_markdown(self.results))
        try:
            if can_plot():
                write_figures(self.results, self.out)
        except Exception as exc:  # figures are a nicety; never lose the numbers to them
            self.log(f"    figures not updated: {type(exc).__name__}: {exc}")


def _finish(results: dict[str, Any], groups: Sequence[RunGroup], tds: Mapping[str, TaskData], out: Path, t0: float,
            log: Callable[[str], None]) -> dict[str, Any]:
    """The qualitative and summary figures, and the final results.json / results.md."""
    for group in groups if can_plot() else ():
        try:
            fig = qualitative_figure(results["results"][group.key], tds[group.key], out)
            if fig is not None:
                results["results"][group.key]["qualitative_figure"] = str(fig.relative_to(out))
        except Exception as exc:  # a figure must never cost the numbers of a finished reproduction
            log(f"    qualitative figure for {group.key} failed: {type(exc).__name__}: {exc}")
    results["wall_time_s"] = time.perf_counter() - t0
    results["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    figures: list[Path] = []
    if can_plot():
        figures = write_figures(results, out)
    else:
        log("    figures skipped: matplotlib is not installed (pip install 'mango_lite[viz]'); the numbers are complete")
    figures += [out / e["qualitative_figure"] for e in results["results"].values() if e.get("qualitative_figure")]
    results["figures"] = [str(p.relative_to(out)) for p in figures]
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", results_markdown(results))
    log(f"reproduction finished in {results['wall_time_s']:.0f}s -> {display_path(out / 'results.md')}")
    return results


def _rel(path: str | os.PathLike, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (result files stay valid when OUT is moved)."""
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _model_entry(run: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Flat metric dict of one run for results.json: metrics, params, wall time, run folder (relative
    to ``out``)."""
    m = {k: v for k, v in (run.get("metrics") or {}).items() if isinstance(v, (int, float))}
    m["params"] = run.get("params")
    m["wall_time_s"] = run.get("wall_time_s")
    m["run_dir"] = _rel(run.get("out_dir") or "", out)
    return m


# ------------------------------------------------------------------------------------ figures
def can_plot() -> bool:
    """Whether the plotting extra (matplotlib) is installed: the figures are optional, the numbers are not."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def qualitative_figure(entry: Mapping[str, Any], data: TaskData, out: Path, n: int = 4) -> Path | None:
    """The paper's qualitative figure for one group: predictions of every trained model on the first
    ``n`` validation / test items (segmentation: RGB, depth, models, GT; translation: inputs, models,
    GT; genre: posters with true genres and MANGO's top-3). Returns the PNG path (None: no model)."""
    from .tasks import load_model, predict_samples

    models = {}
    for name, m in entry["models"].items():
        if "error" in m or not m.get("run_dir"):
            continue
        rd = Path(m["run_dir"])
        models[name] = load_model(rd if rd.is_absolute() else out / rd, "cpu")[0]
    if not models:
        return None
    batch, preds = predict_samples(models, data, n, "test")  # the reported split, never a selection split
    # unimodal models are named after an input; say so, so a column "rgb" is not read as the input
    uni = set(unimodal_names(data.task, data.pair))
    preds = {(f"{k} only" if k in uni else k): v for k, v in preds.items()}
    slug = f"{entry['task']}_{entry.get('pair') or entry['dataset']}"
    path = out / "figures" / f"{slug}_qualitative.png"
    _QUALITATIVE[get_task(data.task).output](batch, preds, data, n, path)
    return path


def _class_map_grid(batch: Mapping[str, Any], preds: Mapping[str, Any], data: TaskData, n: int, path: Path) -> None:
    from ..viz.plots import segmentation_grid

    segmentation_grid(batch[data.a_key], batch[data.b_key], batch[data.target_key], preds, data.num_outputs, n=n,
                      path=path, close=True)


def _image_grid(batch: Mapping[str, Any], preds: Mapping[str, Any], data: TaskData, n: int, path: Path) -> None:
    from ..viz.plots import translation_grid

    assert data.pair is not None
    translation_grid({d: batch[d] for d in data.pair.inputs}, batch[data.pair.target], preds,
                     target_name=f"GT ({data.pair.target})", n=n, path=path, close=True)


def _labels_grid(batch: Mapping[str, Any], preds: Mapping[str, Any], data: TaskData, n: int, path: Path) -> None:
    from ..datasets.transforms import MMIMDB_MEAN, MMIMDB_STD
    from ..viz.plots import genre_grid

    key = "mango" if "mango" in preds else next(iter(preds))
    genre_grid(batch[data.a_key], batch[data.target_key], preds[key], data.class_names, n=n, mean=MMIMDB_MEAN,
               std=MMIMDB_STD, path=path, close=True)


#: the qualitative figure of each output kind: inputs, every model's prediction and the ground truth
_QUALITATIVE = {CLASS_MAP: _class_map_grid, IMAGE: _image_grid, LABELS: _labels_grid}


def write_figures(results: Mapping[str, Any], out: str | os.PathLike) -> list[Path]:
    """Per (task, data) group: overlay of the main validation metric and of the training loss across
    models (from each run's history.json), and a bar chart of our test metric beside the paper's."""
    from ..viz.plots import plot_curves_overlay, plot_results

    out = Path(out)
    paths: list[Path] = []
    for key, entry in results.get("results", {}).items():
        task = entry["task"]
        metric = get_task(task).headline.key
        slug = key.replace("/", "_")
        hists = {}
        for model, m in entry["models"].items():
            rd = m.get("run_dir")
            if rd and not Path(rd).is_absolute():
                rd = out / rd
            if rd and (Path(rd) / "history.json").is_file():
                hists[model] = History.load(rd)
        title = f"{task} — {entry.get('pair_label') or DATASET_LABELS.get(entry['dataset'], entry['dataset'])} ({entry['data']})"
        if hists:
            p = out / "figures" / f"{slug}_val_{metric}.png"
            plot_curves_overlay(hists, f"val_{metric}", path=p, title=title, close=True)
            paths.append(p)
            p = out / "figures" / f"{slug}_train_loss.png"
            plot_curves_overlay(hists, "train_loss", path=p, title=title, close=True)
            paths.append(p)
        ours = {mo: v for mo, v in entry["models"].items() if metric in v}
        if ours:
            paper = None
            if metric in P.PAPER_METRICS.get(task, ()):  # the paper prints this number: draw it beside ours
                paper = {mo: P.paper_value(task, mo, entry.get("pair") or entry["dataset"], metric) for mo in ours}
            if paper is not None:
                paper = {k: v for k, v in paper.items() if v is not None} or None
            p = out / "figures" / f"{slug}_{metric}_bars.png"
            plot_results(ours, metric, paper=paper, path=p, title=title, close=True)
            paths.append(p)
    return paths


# ------------------------------------------------------------------------------------ markdown
def _f(v: Any, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:.{nd}f}"
    return str(v)


def _ours_label(preset: str) -> str:
    return f"mango_lite ({preset})"


def results_markdown(results: Mapping[str, Any]) -> str:
    """results.md: our tables beside the paper's Tables 1-3 (see module docstring)."""
    preset = results.get("preset", "?")
    res = results.get("results", {})
    lines: list[str] = []
    w = lines.append
    w(f"# mango_lite reproduction — preset `{preset}`")
    w("")
    _md_header(results, res, w)
    for task, section in _MD_SECTIONS.items():  # the paper's Tables 1, 2 and 3
        section({k: e for k, e in res.items() if e["task"] == task}, preset, w)
    _md_runs(results, res, w)
    return "\n".join(lines)


def _md_header(results: Mapping[str, Any], res: Mapping[str, Any], w: Callable[[str], None]) -> None:
    wall = results.get("wall_time_s")
    w(f"- device: {results.get('device')}; wall time: {_f(wall, 0)} s; torch {results.get('torch')}; "
      f"git commit: `{results.get('git_commit') or 'n/a'}`; seed {results.get('seed')}")
    w(f"- started {results.get('started')}, finished {results.get('finished', 'n/a')}")
    if not results.get("finished"):
        got = sum(1 for e in res.values() for m in e.get("models", {}).values() if "error" not in m)
        planned = results.get("runs_planned")
        w("")
        w(f"> **Partial results**: {got}{f' of {planned}' if planned else ''} planned runs finished so far "
          "(the reproduction is still running or was interrupted; `reproduce --resume` continues it).")
    sources = sorted({e["data"] for e in res.values()})
    w(f"- data: {', '.join(sources)} (per row below)")
    if GENERATED in sources:
        w("")
        w("> **Rows measured on generated stand-ins are not comparable to the paper's numbers.** The stand-ins are "
          "procedurally rendered scenes / posters written in the real datasets' on-disk layouts (so the same "
          "loaders and metrics run), with far fewer and smaller images; our models are small and trained from "
          "scratch for a few epochs. The paper's rows (labelled *paper (as printed)*) were measured on the real "
          "datasets at 256×256 with pretrained backbones. Compare mango_lite rows with each other, not with the "
          "paper.")
    w("")


def _md_segmentation(seg: Mapping[str, Any], preset: str, w: Callable[[str], None]) -> None:
    if seg:
        w("## Table 1 — RGB-D semantic segmentation (Pixel Acc. / mAcc. / mIoU, %)")
        w("")
        for e in seg.values():
            ds = e["dataset"]
            w(f"### {DATASET_LABELS.get(ds, ds)}")
            w("")
            rows = [[P.LABEL, row, P.TABLE1_INPUTS.get(row, "RGB+D"), f"real {DATASET_LABELS[ds]}, 256×256",
                     *(_f(v) for v in vals[ds]), BLANK] for row, vals in P.TABLE1_SEGMENTATION.items() if ds in vals]
            inputs = {"rgb": "RGB", "depth": "D"}
            rows += [[_ours_label(preset), model, inputs.get(model, "RGB+D"), e["data_description"],
                      _cell(m, "pixel_acc"), _cell(m, "mean_acc"), _cell(m, "miou"), _params(m)]
                     for model, m in e["models"].items()]
            for line in table(["source", "method", "inputs", "measured on", "Pixel Acc.", "mAcc.", "mIoU", "params"],
                              rows):
                w(line)
            w("")


def _md_translation(tr: Mapping[str, Any], preset: str, w: Callable[[str], None]) -> None:
    if tr:
        w("## Table 2 — Multimodal image translation on Taskonomy (all ↓)")
        w("")
        w("Paper: RGB targets FID / KID(×10⁻²), other targets MAE(×10⁻¹) / MSE(×10⁻¹). Ours: for RGB targets "
          "FID / KID×100 computed with a **proxy** feature extractor (fixed random-init CNN, 64-d; the Inception "
          "weights are never downloaded by mango_lite) — **not comparable to the paper's FID/KID**, only to each other; "
          "for other targets MAE×10 / RMSE×10 on the [-1, 1] scale of the TokenFusion loader. (Every printed "
          "\"MSE\" in the paper exceeds its MAE by more than an MSE of errors bounded by 2 could, so we read the "
          "second number as TokenFusion's RMSE; results.json also holds the MSE.)")
        w("")
        pair_keys = [e["pair"] for e in tr.values()]
        head = [PAIRS[p].label for p in pair_keys]
        rows = [[P.LABEL, row, "real Taskonomy subset, 256×256",
                 *(f"{_f(vals[p][0], 2)} / {_f(vals[p][1], 2)}" if vals.get(p) else "-" for p in pair_keys)]
                for row, vals in P.TABLE2_TRANSLATION.items()]
        models = list(dict.fromkeys(m for e in tr.values() for m in e["models"]))
        desc = next(iter(tr.values()))["data_description"]
        rows += [[_ours_label(preset), model, desc, *(_translation_cell(e, model) for e in tr.values())]
                 for model in models]
        for line in table(["source", "method", "measured on", *head], rows):
            w(line)
        w("")
        w("Ours, MAE×10 / RMSE×10 for every pair (including RGB targets):")
        w("")
        ours = [[model, *(f"{_f(m.get('mae_x10'), 2)} / {_f(m.get('rmse_x10'), 2)}" if "mae_x10" in m else "-"
                          for m in (e["models"].get(model) or {} for e in tr.values()))] for model in models]
        for line in table(["method", *head], ours):
            w(line)
        w("")
        _unimodal_note = ", ".join(f"{PAIRS[e['pair']].label}: {'/'.join(PAIRS[e['pair']].inputs)}" for e in tr.values())
        w(f"Unimodal models are named after their input domain ({_unimodal_note}).")
        w("")


def _translation_cell(e: Mapping[str, Any], model: str) -> str:
    """One pair's cell of ``model`` in Table 2: FID / KID (proxy) for RGB targets, else MAE×10 / RMSE×10."""
    m = e["models"].get(model)
    if m is None:
        return "n/a"
    if "error" in m:
        return "diverged"
    if PAIRS[e["pair"]].rgb_target and "fid_proxy" in m:
        return f"{_f(m['fid_proxy'], 2)} / {_f(m.get('kid_x100_proxy'), 2)} (proxy)"
    return f"{_f(m.get('mae_x10'), 2)} / {_f(m.get('rmse_x10'), 2)}"


def _md_genre(ge: Mapping[str, Any], preset: str, w: Callable[[str], None]) -> None:
    if ge:
        w("## Table 3 — Movie genre classification on MM-IMDb (Micro-F1 %, Macro-F1 %)")
        w("")
        rows = [[P.LABEL, row, mod, "real MM-IMDb", _f(mi), _f(ma), BLANK]
                for row, (mod, mi, ma) in P.TABLE3_GENRE.items()]
        mods = {"image": "I", "text": "T"}
        rows += [[_ours_label(preset), model, mods.get(model, "I+T"), e["data_description"], _cell(m, "micro_f1"),
                  _cell(m, "macro_f1"), _params(m)] for e in ge.values() for model, m in e["models"].items()]
        for line in table(["source", "method", "modality", "measured on", "Micro F1", "Macro F1", "params"], rows):
            w(line)
        w("")


#: each task's section of results.md, beside the paper's table for it
_MD_SECTIONS = {"segmentation": _md_segmentation, "translation": _md_translation, "genre": _md_genre}


def _md_runs(results: Mapping[str, Any], res: Mapping[str, Any], w: Callable[[str], None]) -> None:
    w("## Runs")
    w("")
    for line in table(["task", "data", "model", "params", "wall time (s)", "run folder"],
                      [[e["task"], e.get("pair_label") or DATASET_LABELS.get(e["dataset"], e["dataset"]), model,
                        _params(m), _f(m.get("wall_time_s"), 0), f"`{m.get('run_dir', '')}`"]
                       for e in res.values() for model, m in e["models"].items()]):
        w(line)
    w("")
    figs = results.get("figures") or []
    if figs:
        w("## Figures")
        w("")
        for f in figs:
            w(f"- [{Path(f).stem}]({f})")
        w("")
    w("Model names: `mango` = MANGO fusion (invertible cross-attention flow, loss = task + λ·bits/dim); `concat` = "
      "two streams fused by concatenation (Feature Concat); `tokenfusion` = TokenFusion-style token exchange; "
      "`crossattn` = ordinary bidirectional cross-attention; unimodal rows read one modality (W/O fusion). "
      "All share encoders and heads, so rows differ only in the fusion.")
    w("")


def _cell(m: Mapping[str, Any], key: str) -> str:
    if "error" in m:
        return "diverged"
    return _f(m.get(key))


def _params(m: Mapping[str, Any]) -> str:
    p = m.get("params")
    return f"{p / 1e3:.0f}k" if isinstance(p, (int, float)) else ""


# ------------------------------------------------------------------------------------ ablation
#: MANGO options an ablation variant may set (ModelConfig fields)
FLOW_OPTIONS = ("flow_gamma", "flow_learn_gamma", "flow_gamma_rate", "flow_alternate", "flow_positions",
                "flow_conditioner", "flow_noise", "flow_hidden", "flow_qk_dim")


def parse_variant(v: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(name, ModelConfig overrides)`` of an ablation variant.

    Strings: ``"all"`` (the paper's block: 2 MMCA + 4 IMCA + 2 LICA), a partition or a ``+``-joined
    subset (``"mmca"``, ``"imca+lica"``), ``"blocks=N"``, or both joined by a comma
    (``"mmca,blocks=2"``). Dicts: ``{"name": ..., "partitions": [...], "blocks": N, "layers": [...]}``."""
    from ..flows import PARTITIONS

    if isinstance(v, Mapping):
        d = dict(v)
        name = str(d.pop("name", None) or ",".join(f"{k}={x}" for k, x in d.items()))
        allowed = {"partitions", "blocks", "layers", "heads", "scales", "width", "flow_weight", *FLOW_OPTIONS}
        bad = set(d) - allowed
        if bad:
            raise MangoLiteError(f"ablation variant {v!r}: unknown keys {sorted(bad)}; expected some of {sorted(allowed)}")
        return name, d
    s = str(v).strip().lower()
    over: dict[str, Any] = {}
    for part in filter(None, (x.strip() for x in s.split(","))):
        if part.startswith("blocks="):
            try:
                over["blocks"] = int(part.split("=", 1)[1])
            except ValueError as exc:
                raise MangoLiteError(f"ablation variant {v!r}: blocks must be an integer") from exc
            if over["blocks"] < 1:
                raise MangoLiteError(f"ablation variant {v!r}: blocks must be >= 1")
        elif part == "all":
            over["partitions"] = None
        else:
            names = [x.strip() for x in part.split("+")]
            bad = [x for x in names if x not in PARTITIONS]
            if bad:
                raise MangoLiteError(f"ablation variant {v!r}: unknown partition(s) {bad}; expected a '+'-joined "
                                     f"subset of {tuple(PARTITIONS)}, 'all' or 'blocks=N'")
            over["partitions"] = names
    if over.get("partitions", "x") is None:
        over.pop("partitions")
    return s, over


def run_ablation(
    task: str,
    variants: Iterable[str | Mapping[str, Any]] = ("mmca", "imca", "lica", "all"),
    preset: str | Preset | None = None,
    out: str | os.PathLike = "runs/ablation",
    *,
    data_root: str | os.PathLike | None = None,
    pair: str | None = None,
    dataset: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    resume: bool = False,
    jobs: int | None = 1,
    progress: bool | None = None,
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the MANGO model of ``task`` once per variant (partition subsets, number of blocks; see
    :func:`parse_variant`) on the same data and return/write ``OUT/ablation.json``::

        {"task", "dataset", "pair", "preset", "data", "metric", "variants": {name: {"overrides",
         "metrics", "params", "wall_time_s", "run_dir"}}}

    plus ``OUT/ablation.md`` and ``OUT/figures/ablation_<metric>.png``. ``jobs``: variants trained at
    once in worker processes with one torch thread each (``None``: every core on a CPU-only machine, see
    :func:`~mango_lite.training.executor.default_jobs`); each run is seeded by ``seed`` alone, so the
    numbers do not depend on it. ``ablation.json`` is rewritten after every finished variant."""
    task = check_task(task)
    preset = resolve_preset(preset)
    parsed = [parse_variant(v) for v in variants]
    if not parsed:
        raise MangoLiteError("run_ablation: no variants given")
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise MangoLiteError(f"run_ablation: duplicate variant names {names}")
    out = Path(out)
    log = log or (_log_default if verbose else (lambda m: None))
    td = build_task_data(task, preset, data_root, pair, dataset, cache_dir if cache_dir is not None else out / "data",
                         log=log)
    metric, mode = get_task(task).headline.key, get_task(task).headline.mode
    report: dict[str, Any] = {
        "task": task, "dataset": td.info.name, "pair": td.pair.name if td.pair else None, "preset": preset.name,
        "data": td.info.source, "data_description": data_description(td.info, td), "metric": metric,
        "mode": mode, "seed": seed, "variants": {},
    }
    run_dirs = {name: out / "runs" / name.replace("+", "_").replace(",", "__").replace("=", "") for name, _ in parsed}
    overrides = dict(parsed)

    def record(name: str, res: Mapping[str, Any] | None, error: str | None) -> None:
        entry: dict[str, Any] = {"overrides": overrides[name], "run_dir": str(run_dirs[name])}
        entry.update({"error": error} if error is not None else
                     {"metrics": res["metrics"], "params": res["params"], "wall_time_s": res["wall_time_s"]})  # type: ignore[index]
        done = {**report["variants"], name: entry}
        report["variants"] = {n: done[n] for n in names if n in done}  # the variants' order, whatever finished first
        atomic_write_json(out / "ablation.json", report)

    n_jobs = job_count(jobs, len(parsed), pick_device(device))
    options = RunOptions(device=device, resume=resume, overwrite=True, save_best=False, keep_checkpoints=1,
                         progress=progress, verbose=verbose)
    pair_name = td.pair.name if td.pair else None
    jobs_ = {name: RunJob(RunSpec(task, "mango", preset, seed=seed, pair=pair_name, dataset=td.info.name, epochs=epochs,
                                  model_overrides=over), run_dirs[name], options)
             for name, over in parsed}
    if n_jobs > 1:
        log(f"ablation {task}: {len(jobs_)} variants in {n_jobs} worker processes")
    train_runs(jobs_, workers=0 if n_jobs == 1 else n_jobs, data={name: td for name in jobs_}, log=log,
               on_start=lambda name, k, n: log(f"ablation {task}: [{k}/{n}] {name} -> {display_path(run_dirs[name])}"),
               on_done=lambda name, o: record(name, None if o.value is None else o.value.to_dict(), o.error))
    _write_ablation(report, out)
    return report


def _write_ablation(report: Mapping[str, Any], out: Path) -> None:
    """An ablation's figure (the headline metric per variant), ``ablation.md`` and ``ablation.json``."""
    from ..viz.plots import plot_results

    task, metric = report["task"], report["metric"]
    ok = {n: v["metrics"] for n, v in report["variants"].items() if "metrics" in v}
    if ok:
        plot_results(ok, metric, path=out / "figures" / f"ablation_{metric}.png",
                     title=f"{task} ablation ({report['data']})", close=True)
    lines = [f"# MANGO ablation — {task} ({report['preset']})", "", f"Measured on: {report['data_description']}", ""]
    lines += table(["variant", "overrides", metric, "params", "wall time (s)"],
                   [[n, f"`{json.dumps(v['overrides'])}`", "diverged" if "error" in v else _f(v["metrics"].get(metric), 2),
                     _params(v), _f(v.get("wall_time_s"), 0)] for n, v in report["variants"].items()])
    atomic_write_text(out / "ablation.md", "\n".join(lines) + "\n")
    atomic_write_json(out / "ablation.json", report)


# ------------------------------------------------------------------------------------ seeds
#: the headline metric of each task, and whether higher is better
#: each task's headline metric and whether higher is better, from the task registry (:mod:`mango_lite.tasks`)
HEADLINE = {name: (task.headline.key, task.headline.higher_is_better) for name, task in TASKS.items()}


def seed_summary(results: Sequence[Mapping[str, Any] | str | os.PathLike]) -> dict[str, Any]:
    """Combine reproductions that differ only in ``seed`` (same preset and data) into per-model
    statistics of each group's headline metric (:data:`HEADLINE`).

    Returns ``{"preset", "seeds", "groups": {group: {"metric", "higher_is_better", "models": {model:
    {"values", "mean", "std", "n"}}, "rank_by_seed": [[model, ...] per seed]}}}``; ``std`` is the sample
    standard deviation (``None`` for one seed). Only models present in every reproduction are kept,
    so a partial extra seed (e.g. only the fused models) still combines."""
    loaded = [json.loads(Path(r).read_text(encoding="utf-8")) if isinstance(r, (str, os.PathLike)) else r
              for r in results]
    if not loaded:
        raise MangoLiteError("seed_summary: no results given")
    presets = {r.get("preset") for r in loaded}
    if len(presets) != 1:
        raise MangoLiteError(f"seed_summary: the reproductions are for different presets {sorted(map(str, presets))}")
    seeds = [r.get("seed") for r in loaded]
    if len(set(seeds)) != len(seeds):
        raise MangoLiteError(f"seed_summary: seeds must differ, got {seeds}")
    groups: dict[str, Any] = {}
    for key in loaded[0]["results"]:
        if not all(key in r["results"] for r in loaded):
            continue
        task = loaded[0]["results"][key]["task"]
        metric, higher = HEADLINE[task]
        per = [r["results"][key]["models"] for r in loaded]
        names = [m for m in per[0] if all(m in p and metric in p[m] for p in per)]
        if not names:
            continue
        models = {}
        for m in names:
            vals = [float(p[m][metric]) for p in per]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
            models[m] = {"values": vals, "mean": mean, "std": std, "n": len(vals)}
        ranks = [sorted(names, key=lambda m, p=p: p[m][metric], reverse=higher) for p in per]
        groups[key] = {"metric": metric, "higher_is_better": higher, "models": models, "rank_by_seed": ranks}
    return {"preset": presets.pop(), "seeds": seeds, "groups": groups}


def seed_summary_markdown(summary: Mapping[str, Any], reference: str = "concat") -> str:
    """A markdown table per group: mean ± std over seeds, every seed's value, how often each model
    ranked first and last, and in how many seeds it beat ``reference`` (computed, never typed)."""
    lines = [f"# Seed spread — preset `{summary['preset']}`, seeds {', '.join(map(str, summary['seeds']))}", "",
             "Same data and settings; only the training seed (initialisation, data order, augmentation) differs.", ""]
    for key, g in summary["groups"].items():
        arrow = "↑" if g["higher_is_better"] else "↓"
        ref = reference if reference in g["models"] else None
        lines += [f"## {key} — {g['metric']} {arrow}", ""]
        rows = []
        firsts = [r[0] for r in g["rank_by_seed"]]
        lasts = [r[-1] for r in g["rank_by_seed"]]
        order = sorted(g["models"], key=lambda m: g["models"][m]["mean"], reverse=g["higher_is_better"])
        nd = 3 if max(abs(g["models"][m]["mean"]) for m in order) < 10 else 2  # MAE x10 ~ 0.3-2: 3 decimals
        sign = 1.0 if g["higher_is_better"] else -1.0
        for m in order:
            s = g["models"][m]
            spread = f"{s['mean']:.{nd}f} ± {s['std']:.{nd}f}" if s["std"] is not None else f"{s['mean']:.{nd}f}"
            row = [m, spread, " / ".join(f"{v:.{nd}f}" for v in s["values"]), f"{firsts.count(m)} of {len(firsts)}",
                   f"{lasts.count(m)} of {len(lasts)}"]
            if ref:
                pairs = list(zip(s["values"], g["models"][ref]["values"]))
                row.append("-" if m == ref else f"{sum(sign * (v - r) > 0 for v, r in pairs)} of {len(pairs)}")
            rows.append(row)
        header = ["model", "mean ± std", "per seed", "first in", "last in"] + ([f"better than {ref} in"] if ref else [])
        lines += table(header, rows)
        lines.append("")
    return "\n".join(lines)

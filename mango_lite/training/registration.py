"""The registration study: does cross-modal attention gain as the two modalities drift apart?

On pixel-aligned stand-ins a fusion that pairs position i of RGB with position i of depth already has the
right partner, and MANGO's attention can only add information from *other* positions, which no task
needs. This study misregisters the depth stand-in by a stereo baseline (:mod:`mango_lite.datasets.synth.
misregistration`: each point shifted by its disparity f b / z, hidden pixels missing) at four levels of
median disparity, and trains MANGO, its no-attention control and the fusion baselines on each level with
several seeds. Its hypothesis, levels, models, metric and decision rules are fixed in
``results/registration/PROTOCOL.md``, committed before the first run; this module carries them out. A
second study (:data:`TRANSLATION`, ``results/registration-translation/PROTOCOL.md``) asks the same of image
translation, Shade+Texture -> RGB with the texture displaced; a :class:`StudyTask` says what each trains
and scores, and every function reads it from the study's ``plan.json``.

* :func:`study_plan`: the runs (level x model x seed), the baselines that give each level, as JSON.
* :func:`run_study`: trains the runs not yet finished (resumable; worker processes, one torch thread each),
  the primary comparison (MANGO and its no-attention control) first.
* :func:`attention_offsets`: where each MANGO model's trained attention looks at each level, from the runs'
  own checkpoints, against where the displaced partners moved.
* :func:`summarize`: per level and model the test metric over seeds; the paired per-seed differences of
  MANGO against every other model with their t intervals; the slope of the attention's gain over the
  levels; the protocol's verdicts, computed. Writes ``summary.json`` and ``summary.md``.

Reported numbers come from the test split (the stand-in's ``val`` list, never used for a choice); best-checkpoint
selection sees a held-out part of the training split (``Preset.selection_split``), and the reported
metric is the last epoch's, so no number is chosen on the split it is reported on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..markdown import table
from ..metrics.paired import paired_difference, slope_interval
from ..presets import Preset
from ..utils import atomic_write_json, atomic_write_text
from .executor import Outcome, job_count, train_runs
from .results_store import finished_run
from .runspec import RunSpec, resolve_preset
from .tasks import DATA_SEED, default_cache_dir, prepare_data
from .workers import study_run_job

#: median disparity of the misregistered modality, pixels at REFERENCE_SIZE (scales with the image size)
DISPARITY_LEVELS_PX = (0.0, 2.0, 4.0, 8.0)
REFERENCE_SIZE = 64
#: MANGO and its no-attention control (the primary comparison), then the fusions it is compared with
PRIMARY = ("mango", "mango-noattn")
MODELS = PRIMARY + ("concat", "concat-context", "crossattn", "tokenfusion", "mango-gamma-token",
                    # added after the first runs (PROTOCOL.md, Deviations): the per-row gamma with a diagonal offset
                    "mango-gamma-token-diag")
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class StudyTask:
    """What one registration study trains and scores: the task, its stand-in (and translation pair), the
    test metric and its direction, the models and levels its protocol fixes. ``plan.json`` records all of it,
    so a summary reads its task from the plan, never from a default."""

    task: str
    dataset: str
    metric: str
    metric_label: str  # for tables and axes, e.g. "test mIoU (%)"
    unit: str  # the metric's name in sentences, e.g. "mIoU"
    higher_is_better: bool
    models: tuple[str, ...]
    levels_px: tuple[float, ...]
    pair: str | None = None
    displaced: str = "depth"  # the modality seen from the second camera, for sentences and axes
    decimals: int = 2  # the metric's printed precision
    change_decimals: int = 1  # ... of how much a model loses between levels

    @property
    def key(self) -> str:
        return self.task if self.pair is None else f"{self.task}/{self.pair}"


SEGMENTATION = StudyTask("segmentation", "nyudv2", "miou", "test mIoU (%)", "mIoU", True, MODELS, DISPARITY_LEVELS_PX)
#: the translation study (results/registration-translation/PROTOCOL.md): the texture
#: (edge_texture) is seen from the second camera, the target RGB and the shading stay in the first frame
TRANSLATION = StudyTask("translation", "taskonomy", "mae_x10", "test MAE x10 (lower is better)", "MAE x10", False,
                        # mango-nll1 added after the first 24 runs (PROTOCOL.md, Deviations)
                        PRIMARY + ("concat", "concat-context", "mango-nll1"), (0.0, 8.0), pair="shade_texture_to_rgb",
                        displaced="texture", decimals=3, change_decimals=3)
STUDY_TASKS = {t.key: t for t in (SEGMENTATION, TRANSLATION)}
# the segmentation study's names, kept for its callers (notebook 04b)
TASK, DATASET, METRIC = SEGMENTATION.task, SEGMENTATION.dataset, SEGMENTATION.metric


def default_folder(study: str | StudyTask | None = None) -> Path:
    """Where the study's files are committed: ``results/registration`` (segmentation) or
    ``results/registration-<task>`` (relative to the repository root)."""
    st = study_task(study)
    return Path("results") / ("registration" if st is SEGMENTATION else f"registration-{st.task}")


def study_task(key: str | StudyTask | None) -> StudyTask:
    """The study of ``key`` ("segmentation", "translation/shade_texture_to_rgb" or "translation"); None = segmentation."""
    if isinstance(key, StudyTask):
        return key
    if key is None:
        return SEGMENTATION
    if key in STUDY_TASKS:
        return STUDY_TASKS[key]
    matches = [t for t in STUDY_TASKS.values() if t.task == key]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"registration study: unknown task {key!r}; expected one of {sorted(STUDY_TASKS)}")


def task_of_plan(plan: dict[str, Any]) -> StudyTask:
    """The study a ``plan.json`` belongs to (plans written before the translation study name no pair)."""
    return study_task(plan["task"] if plan.get("pair") is None else f"{plan['task']}/{plan['pair']}")


def calibrate_baselines(levels_px: Sequence[float] = DISPARITY_LEVELS_PX, size: int = REFERENCE_SIZE,
                        frames: int = 64, seed: int = DATA_SEED, study: str | StudyTask | None = None) -> list[float]:
    """The stereo baseline (metres) whose median disparity over the study's stand-in (NYUDv2 for segmentation,
    Taskonomy for translation), its first ``frames`` frames at ``size`` px, is each level: disparity = f b / z,
    so the median is b * median(f / z)."""
    from ..datasets.synth.misregistration import disparity_px, focal_px
    from ..datasets.synth.scenes import render_scene
    from ..datasets.synth.writers import _rng, iter_taskonomy_views

    dataset = study_task(study).dataset
    if dataset == "taskonomy":
        depths = (out["depth_clean"] for _, _, out, _ in iter_taskonomy_views(frames, size, seed))
    else:
        depths = (render_scene(_rng(seed, dataset, i), size)["depth_clean"] for i in range(1, frames + 1))
    per_metre = []  # disparity of every pixel for a 1 m baseline: f / z
    for z in depths:
        per_metre.append(disparity_px(z, focal_px(size), 1.0).ravel())
    px_per_metre = float(np.median(np.concatenate(per_metre)))
    return [round(float(level) / px_per_metre, 4) for level in levels_px]


def level_name(level_px: float) -> str:
    return f"d{level_px:g}px"


def study_preset(preset: str | Preset, baseline_m: float) -> Preset:
    """The study's preset: ``preset`` with the depth seen from ``baseline_m`` metres away and a selection
    split held out of the training split."""
    return resolve_preset(preset).with_overrides(sensor_baseline_m=float(baseline_m), selection_split=True)


def study_plan(preset: str | Preset = "cpu", models: Sequence[str] | None = None, seeds: Sequence[int] = SEEDS,
               levels_px: Sequence[float] | None = None, study: str | StudyTask | None = None) -> dict[str, Any]:
    """Everything that decides the runs, as JSON: task (and pair), metric, preset, levels and their baselines,
    models, seeds, and the run order (the primary pair over every level and seed first). ``models`` and
    ``levels_px`` default to the study's protocol."""
    st = study_task(study)
    models = st.models if models is None else tuple(models)
    levels_px = st.levels_px if levels_px is None else tuple(levels_px)
    p = resolve_preset(preset)
    baselines = calibrate_baselines(levels_px, study=st)
    runs = []
    for group in (PRIMARY, tuple(m for m in models if m not in PRIMARY)):
        for seed in seeds:
            for level in levels_px:
                runs += [{"level_px": float(level), "model": m, "seed": int(seed)} for m in group if m in models]
    pair = {} if st.pair is None else {"pair": st.pair}  # the segmentation plan keeps the keys it always had
    return {"task": st.task, "dataset": st.dataset, **pair, "metric": st.metric, "higher_is_better": st.higher_is_better,
            "preset": p.name,
            "preset_config": p.to_dict(),
            "reference_size": REFERENCE_SIZE, "levels_px": [float(v) for v in levels_px], "baselines_m": baselines,
            "models": list(models), "seeds": [int(s) for s in seeds], "runs": runs}


def run_dir(out: str | Path, run: dict[str, Any]) -> Path:
    return Path(out) / "runs" / level_name(run["level_px"]) / run["model"] / f"seed{run['seed']}"


def _read_plan(out: Path) -> dict[str, Any]:
    return json.loads((out / "plan.json").read_text(encoding="utf-8"))


def _level_presets(plan: dict[str, Any]) -> dict[float, Preset]:
    """The preset each level of ``plan`` trains with: the plan's base preset, its baseline, a selection split."""
    base = Preset(**plan["preset_config"])
    return {lv: study_preset(base, b) for lv, b in zip(plan["levels_px"], plan["baselines_m"])}


def _spec(st: StudyTask, preset: Preset, model: str, seed: int, epochs: int | None = None) -> RunSpec:
    return RunSpec(st.task, model, preset, seed=seed, dataset=st.dataset, pair=st.pair, epochs=epochs)


def _finished(folder: Path, st: StudyTask, preset: Preset, model: str, seed: int) -> dict[str, Any] | None:
    """This run's final ``metrics.json``, parsed, when the folder holds it; otherwise None."""
    return finished_run(folder, _spec(st, preset, model, seed))


def run_study(out: str | Path, preset: str | Preset = "cpu", models: Sequence[str] | None = None,
              seeds: Sequence[int] = SEEDS, levels_px: Sequence[float] | None = None, jobs: int | None = None,
              device: str | None = "cpu", cache_dir: str | Path | None = None, max_runs: int | None = None,
              log: Callable[[str], None] = print, study: str | StudyTask | None = None) -> dict[str, Any]:
    """Train every run of :func:`study_plan` that has no finished folder under ``out/runs`` (a killed run
    continues from its last epoch), at most ``max_runs`` of them; returns ``{"done", "left", "failed"}``.
    ``plan.json`` is written first; runs go to ``out/runs/d{level}px/{model}/seed{k}``."""
    from .workers import train_study_runs

    out = Path(out)
    st = study_task(study)
    plan = study_plan(preset, models, seeds, levels_px, st)
    atomic_write_json(out / "plan.json", plan)
    presets = _level_presets(plan)
    todo = [r for r in plan["runs"] if _finished(run_dir(out, r), st, presets[r["level_px"]], r["model"], r["seed"]) is None]
    left_after = max(0, len(todo) - max_runs) if max_runs is not None else 0
    todo = todo[:max_runs] if max_runs is not None else todo
    log(f"registration study ({st.key}): {len(plan['runs']) - len(todo) - left_after} of {len(plan['runs'])} runs finished, "
        f"{len(todo)} to train now" + (f", {left_after} left for later" if left_after else ""))
    if not todo:
        return {"done": 0, "left": left_after, "failed": {}}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    infos = {lv: prepare_data(st.dataset, presets[lv], cache_dir=cache, log=log)
             for lv in sorted({r["level_px"] for r in todo})}
    runs = {f"{level_name(r['level_px'])}/{r['model']}/seed{r['seed']}": study_run_job(
        _spec(st, presets[r["level_px"]], r["model"], r["seed"]), run_dir(out, r), infos[r["level_px"]], device)
        for r in todo}
    done, failed = train_study_runs(runs, jobs, device, log, lambda res: f"{st.metric} {res.metrics[st.metric]:.3f}")
    return {"done": done, "left": left_after, "failed": failed}


def train_at_levels(out: str | Path, preset: str | Preset = "cpu", levels_px: Sequence[float] = (0.0, 8.0),
                    model: str = "mango", seed: int = 0, epochs: int | None = None, jobs: int | None = None,
                    device: str | None = "cpu", cache_dir: str | Path | None = None,
                    baselines_m: Sequence[float] | None = None,
                    log: Callable[[str], None] | None = print, study: str | StudyTask | None = None) -> dict[float, Path]:
    """One ``model`` trained as the study trains it at each of ``levels_px`` (``epochs``: a shorter schedule
    than the preset's, for a notebook), the levels in parallel worker processes. Runs go to
    ``out/d{level}px/{model}``; a finished run is reused. Returns ``{level: run folder}`` (for
    :func:`~mango_lite.training.load_model`) and raises TrainingError naming a run that diverged.
    ``baselines_m``: the levels' baselines when the caller has them (default: :func:`calibrate_baselines`)."""
    from ..errors import TrainingError

    out = Path(out)
    st = study_task(study)
    levels = [float(lv) for lv in levels_px]
    if baselines_m is not None and len(baselines_m) != len(levels):
        raise ValueError(f"train_at_levels: expected one baseline per level ({len(levels)}), got {len(baselines_m)}")
    baselines = [float(b) for b in baselines_m] if baselines_m is not None else calibrate_baselines(levels, study=st)
    presets = {lv: study_preset(preset, b) for lv, b in zip(levels, baselines)}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folders = {lv: out / level_name(lv) / model for lv in levels}

    def finished(lv: float) -> bool:  # this run, trained for the epochs asked for (a resume would re-evaluate it)
        return finished_run(folders[lv], _spec(st, presets[lv], model, seed, epochs), whole_schedule=True) is not None

    runs = {lv: study_run_job(_spec(st, presets[lv], model, seed, epochs), folders[lv],
                              prepare_data(st.dataset, presets[lv], cache_dir=cache, log=log), device)
            for lv in levels if not finished(lv)}
    if not runs:
        return folders
    failed: dict[str, str] = {}

    def done(lv: float, outcome: Outcome) -> None:
        if outcome.error is not None:
            failed[level_name(lv)] = outcome.error
        elif log is not None:
            log(f"{level_name(lv)}/{model}: {st.metric} {outcome.value.metrics[st.metric]:.3f} ({outcome.seconds:.0f} s)")

    train_runs(runs, workers=job_count(jobs, len(runs), device), on_done=done)
    if failed:
        raise TrainingError(f"train_at_levels: {model} diverged at {', '.join(f'{k} ({v})' for k, v in failed.items())}")
    return folders


# ------------------------------------------------------------------------------------------ attention
def attention_models(plan: dict[str, Any]) -> list[str]:
    """The models of a plan whose attention can be measured: MANGO and its variants, not those with gamma fixed
    at 0 (whose attention mixes nothing)."""
    from .tasks import control_overrides, resolve_model

    task, pair = plan["task"], plan.get("pair")
    return [m for m in plan["models"]
            if resolve_model(task, m, pair) == "mango" and control_overrides(m).get("flow_gamma") != 0.0]


def attention_offsets(out: str | Path, models: Sequence[str] | None = None, samples: int = 16,
                      cache_dir: str | Path | None = None, device: str | None = "cpu") -> dict[str, Any]:
    """Where the attention of the study's own trained runs looks, for every model in ``models`` (default:
    :func:`attention_models` of the plan), at every level and seed whose last-epoch checkpoint is still on
    disk (the epoch the study reports; checkpoints are not committed, so this runs where the study was
    trained). Over the first ``samples`` test images and the IMCA layers of the flow's first token grid,
    :func:`~mango_lite.models.cross_modal_offsets` gives the attention mass of the displaced modality's
    tokens on the other modality's tokens by column offset; a displaced token's partner sits
    ``median disparity * grid width / image size`` tokens to the right.

    Per model and run: the mean offset of that mass (``b_to_a_mean_dc``, tokens), the offset the disparity
    predicts, and the mass on it; then, per seed, the shift of the mean offset from the aligned level to each
    other level against the shift of the partners, with a t interval over seeds. Written to
    ``attention.json`` as ``{model: result}``."""
    import torch

    from .tasks import build_task_data

    out = Path(out)
    plan = _read_plan(out)
    st = task_of_plan(plan)
    presets = _level_presets(plan)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    batches = {}  # level -> (modality A, modality B, the data's median disparity): one read per level for every model
    for lv, preset in presets.items():
        data = build_task_data(st.task, preset, pair=st.pair, dataset=st.dataset,
                               info=prepare_data(st.dataset, preset, cache_dir=cache))
        items = [data.test[i] for i in range(min(samples, len(data.test)))]
        batches[lv] = (torch.stack([it[data.a_key] for it in items]), torch.stack([it[data.b_key] for it in items]),
                       float(data.info.meta.get("median_disparity_px", 0.0)))
    result = {m: {"model": m, "samples": samples, "displaced": st.displaced, "task": st.key,
                  **_attention_of(out, plan, st, presets, batches, m, device)}
              for m in (attention_models(plan) if models is None else models)}
    atomic_write_json(out / "attention.json", result)
    return result


def _attention_of(out: Path, plan: dict[str, Any], st: StudyTask, presets: dict[float, Preset],
                  batches: dict[float, tuple[Any, Any, float]], model: str, device: str | None) -> dict[str, Any]:
    """:func:`attention_offsets`' ``runs`` and ``shift_from_aligned`` of one model."""
    from ..engine.checkpoint import CHECKPOINT_DIR
    from ..metrics.paired import paired_difference
    from ..models import attention_maps, cross_modal_offsets
    from .tasks import load_model

    per_run: dict[str, dict[str, Any]] = {}
    for lv, preset in presets.items():
        batch_a, batch_b, disparity = batches[lv]
        for seed in plan["seeds"]:
            folder = run_dir(out, {"level_px": lv, "model": model, "seed": seed})
            ckpts = sorted((folder / CHECKPOINT_DIR).glob("epoch_*.pt"))
            if not ckpts or _finished(folder, st, preset, model, seed) is None:  # only finished runs: their last epoch
                continue
            net, _, _ = load_model(ckpts[-1], device=device)
            on = next(net.parameters()).device
            grid = tuple(int(x) // 2 for x in net.fusion.size)  # the flow's first token grid (one squeeze)
            got = cross_modal_offsets(attention_maps(net, batch_a.to(on), batch_b.to(on)), grid)
            expected = disparity * grid[1] / preset.image_size
            per_run.setdefault(level_name(lv), {})[str(seed)] = {
                "b_to_a_mean_dc": got["b_to_a_mean_dc"], "a_to_b_mean_dc": got["a_to_b_mean_dc"],
                "expected_dc": expected, "mass_at_expected": float(got["b_to_a"].get(int(round(expected)), 0.0)),
                "layers": got["layers"], "epoch_checkpoint": ckpts[-1].name}
    zero = level_name(min(plan["levels_px"]))
    shifts = {}
    for lv in per_run:
        common = sorted(set(per_run[lv]) & set(per_run.get(zero, {})), key=int)
        if lv == zero or not common:
            continue
        moved = [per_run[lv][s]["b_to_a_mean_dc"] for s in common]
        before = [per_run[zero][s]["b_to_a_mean_dc"] for s in common]
        res = paired_difference(moved, before)
        shifts[lv] = {**{k: v for k, v in res.to_dict().items() if k != "verdict"}, "seeds": [int(s) for s in common],
                      "partners_moved": float(np.mean([per_run[lv][s]["expected_dc"] - per_run[zero][s]["expected_dc"]
                                                       for s in common]))}
    return {"runs": per_run, "shift_from_aligned": shifts}


def attention_markdown(attention: dict[str, Any]) -> str:
    """One sentence per model and level (``attention``: :func:`attention_offsets`' result): how far the displaced
    modality's attention moved, against its partners, and what the interval says."""
    lines = []
    for att in attention.values():
        for lv, d in att["shift_from_aligned"].items():
            ci = f" [{d['low']:+.2f}, {d['high']:+.2f}]" if d["n"] > 1 else ""
            reached = d["low"] <= d["partners_moved"] <= d["high"]
            verdict = ("" if d["n"] < 2 else
                       ": the interval excludes the partners' move, so the attention did not follow them" if not reached
                       and d["low"] <= 0 else
                       ": it moved towards them, but the interval excludes the partners' move" if not reached else
                       ": it moved with them (the interval excludes 0 and holds the partners' move)" if d["low"] > 0 else
                       ": the interval holds both 0 and the partners' move (not decided)")
            lines.append(f"Inside the attention (`{att['model']}`'s own runs, {d['n']} seed(s), last epoch, {att['samples']} "
                         f"test images): from the aligned level to {lv} the {att['displaced']} tokens' attention to the "
                         f"other modality moved {d['mean']:+.2f} tokens{ci}, where their partners moved "
                         f"{d['partners_moved']:+.2f}{verdict}.")
    return "\n\n".join(lines) + ("\n" if lines else "")


# ------------------------------------------------------------------------------------------ summary
def collect(out: str | Path) -> dict[str, Any]:
    """The finished runs under ``out/runs`` that belong to ``out/plan.json``: ``{level: {model: {seed: metrics}}}``,
    plus each run's trainable parameters and wall time."""
    out = Path(out)
    plan = _read_plan(out)
    st = task_of_plan(plan)
    presets = _level_presets(plan)
    runs: dict[float, dict[str, dict[int, dict[str, Any]]]] = {}
    for r in plan["runs"]:
        m = _finished(run_dir(out, r), st, presets[r["level_px"]], r["model"], r["seed"])
        if m is None:
            continue
        runs.setdefault(r["level_px"], {}).setdefault(r["model"], {})[r["seed"]] = {
            "metrics": m["metrics"], "params": m["params"], "wall_time_s": m["wall_time_s"],
            "median_disparity_px": (m.get("data", {}).get("meta", {}) or {}).get("median_disparity_px", 0.0),
            "device": m.get("device")}
    return {"plan": plan, "runs": runs}


def summarize(out: str | Path, effective_params: dict[str, dict[str, int]] | None = None,
              reference: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """Per level and model: mean and sd of the test metric over the finished seeds; MANGO against every
    other model, paired by seed, with 95 % t intervals; the attention's gain (MANGO - no-attention) against
    the level (per-seed slopes, t interval); the protocol's verdicts. Writes ``summary.json`` / ``summary.md``.
    ``effective_params``: model -> {"nominal", "receiving_gradient"} (see
    :func:`~mango_lite.training.parameters.parameters_receiving_gradient`);
    ``reference``: model -> per-seed aligned results of the older protocol (:func:`aligned_reference`)."""
    got = collect(out)
    plan, runs = got["plan"], got["runs"]
    metric = task_of_plan(plan).metric
    levels = [lv for lv in plan["levels_px"] if lv in runs]
    table: dict[str, dict[str, Any]] = {}
    for lv in levels:
        row = {}
        for model, seeds in runs[lv].items():
            vals = [seeds[s]["metrics"][metric] for s in sorted(seeds)]
            row[model] = {"n": len(vals), "mean": float(np.mean(vals)),
                          "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                          "seeds": sorted(seeds), "values": vals,
                          "median_disparity_px": float(np.mean([seeds[s]["median_disparity_px"] for s in seeds])),
                          "params": int(next(iter(seeds.values()))["params"])}
        table[level_name(lv)] = row
    paired: dict[str, dict[str, Any]] = {}
    for lv in levels:
        mango = runs[lv].get("mango", {})
        for other, seeds in runs[lv].items():
            common = sorted(set(mango) & set(seeds))
            if other == "mango" or len(common) < 1:
                continue
            res = paired_difference([mango[s]["metrics"][metric] for s in common],
                                    [seeds[s]["metrics"][metric] for s in common], plan["higher_is_better"])
            paired.setdefault(level_name(lv), {})[other] = {**res.to_dict(), "seeds": common}
    trend = _gain_trend(plan, runs)
    st = task_of_plan(plan)
    # the plan as the figures need it: what is measured and which modality moved, in words
    described = {**{k: v for k, v in plan.items() if k not in ("runs", "preset_config")},
                 "metric_label": st.metric_label, "displaced": st.displaced}
    summary = {"plan": described, "runs_planned": len(plan["runs"]),
               "runs_finished": sum(len(s) for lv in runs.values() for s in lv.values()), "table": table,
               "mango_minus": paired, "attention_gain_trend": trend,
               "verdicts": _verdicts(plan, paired, trend, table), "effective_params": effective_params or {},
               "aligned_check": _aligned_check(table, level_name(min(plan["levels_px"])), reference or {},
                                               plan["higher_is_better"]),
               "devices": sorted({r["device"] for lv in runs.values() for s in lv.values() for r in s.values()
                                  if r.get("device")})}
    attention = Path(out) / "attention.json"  # written by attention_offsets where the checkpoints are
    if attention.is_file():
        summary["attention"] = json.loads(attention.read_text(encoding="utf-8"))
    atomic_write_json(Path(out) / "summary.json", summary)
    atomic_write_text(Path(out) / "summary.md", summary_markdown(summary))
    return summary


def aligned_reference(results_dir: str | Path, study: str | StudyTask | None = None) -> dict[str, list[float]]:
    """Per-seed test metric of the pixel-aligned stand-in under the older protocol (no selection split,
    the reported split also selecting; the training split 15 % larger): ``results/cpu-seeds`` for the fusions
    and ``results/mechanisms/<task>-<dataset or pair>`` for MANGO's controls. The protocol's secondary check 3."""
    st = study_task(study)
    root = Path(results_dir)
    out: dict[str, list[float]] = {}
    seeds = root / "cpu-seeds" / "seeds.json"
    group_key = f"{st.task}/{st.pair or st.dataset}"
    if seeds.is_file():
        group = json.loads(seeds.read_text(encoding="utf-8"))["groups"].get(group_key, {})
        for model, row in group.get("models", {}).items():
            out[model] = [float(v) for v in row["values"]]
    mech = root / "mechanisms" / group_key.replace("/", "-") / "mechanisms.json"
    if mech.is_file():
        for model, row in json.loads(mech.read_text(encoding="utf-8"))["rows"].items():
            if model not in out:
                out[model] = [float(r["metric"]) for _, r in sorted(row["runs"].items()) if r.get("metric") is not None]
    return out


def _aligned_check(table: dict[str, Any], zero: str, reference: dict[str, list[float]],
                   higher_is_better: bool = True) -> dict[str, Any]:
    """Each model at the aligned level against its result under the older protocol: the difference of the
    means and whether it is worse by more than the older runs' seed sd (secondary check 3)."""
    sign = 1.0 if higher_is_better else -1.0
    out = {}
    for model, row in table.get(zero, {}).items():
        ref = reference.get(model)
        if not ref or len(ref) < 2:
            continue
        mean = float(np.mean(ref))
        sd = float(np.std(ref, ddof=1))
        diff = row["mean"] - mean
        out[model] = {"now": row["mean"], "before": mean, "before_sd": sd, "difference": diff, "n_now": row["n"],
                      "worse_by_more_than_sd": bool(sign * diff < -sd)}
    return out


def _gain_trend(plan: dict[str, Any], runs: dict[float, Any]) -> dict[str, Any] | None:
    """Slope of the per-seed gain of mango over mango-noattn (positive = mango better) over the levels, over the
    seeds that finished every level."""
    levels = plan["levels_px"]
    if not all(lv in runs and "mango" in runs[lv] and "mango-noattn" in runs[lv] for lv in levels):
        return None
    seeds = sorted(set.intersection(*(set(runs[lv]["mango"]) & set(runs[lv]["mango-noattn"]) for lv in levels)))
    if len(seeds) < 2:
        return None
    metric, sign = task_of_plan(plan).metric, (1.0 if plan["higher_is_better"] else -1.0)
    # signed like every paired difference of the study: positive = the attention helps
    per_seed = [[sign * (runs[lv]["mango"][s]["metrics"][metric] - runs[lv]["mango-noattn"][s]["metrics"][metric])
                 for lv in levels] for s in seeds]
    return {**slope_interval(levels, per_seed), "seeds": seeds, "gains": per_seed, "unit": "metric points per px"}


def _verdicts(plan: dict[str, Any], paired: dict[str, Any], trend: dict[str, Any] | None,
              table: dict[str, Any]) -> dict[str, Any]:
    """The protocol's decision rules, computed (None where the runs they need have not finished)."""
    top = level_name(max(plan["levels_px"]))
    zero = level_name(min(plan["levels_px"]))
    at_top = paired.get(top, {})
    full = len(plan["seeds"])

    def ready(model: str) -> bool:
        return model in at_top and at_top[model]["n"] == full

    def verdict(model: str, variant: bool) -> str | None:
        if not ready(model):
            return None
        said = at_top[model]["verdict"]
        # an ICA variant is read the other way round: "better" means the variant beats MANGO
        return {"better": "worse", "worse": "better"}.get(said, "no difference shown") if variant else said

    gain = at_top["mango-noattn"] if ready("mango-noattn") else None
    rises = None if trend is None or len(trend["seeds"]) < full else trend["verdict"] == "rises"
    h1 = None if gain is None or rises is None else bool(gain["low"] > 0 and rises)
    refuted = None if gain is None else bool(gain["high"] <= 0 or (rises is not None and trend["high"] <= 0))
    planned = set(plan["models"])
    secondary = {  # key -> (model, is an ICA variant); only the comparisons of models this study trains
        "mango_vs_concat_context_at_largest_level": ("concat-context", False),
        "mango_vs_crossattn_at_largest_level": ("crossattn", False),
        "mango_gamma_token_vs_mango_at_largest_level": ("mango-gamma-token", True),
        "mango_gamma_token_diag_vs_mango_at_largest_level": ("mango-gamma-token-diag", True),
    }
    return {
        "largest_level": top,
        "attention_gain_at_largest_level": None if gain is None else gain["verdict"],
        "attention_gain_trend": None if rises is None else trend["verdict"],
        "hypothesis": (None if h1 is None else "confirmed" if h1 else "refuted" if refuted else "not shown"),
        **{key: verdict(model, variant) for key, (model, variant) in secondary.items() if model in planned},
        "aligned_level": zero,
        "aligned_models": sorted(table.get(zero, {})),
    }


def conclusion_markdown(s: dict[str, Any]) -> str:
    """The study's answer in a few sentences, every number and every comparative word computed from the
    summary ``s`` (:func:`summarize`): H1's verdict, the attention's paired gain at the aligned and the
    largest level, its slope, how much each model loses between them, and MANGO against the large-context
    concat and cross-attention at the largest level."""

    st = task_of_plan(s["plan"])
    k = st.decimals

    def interval(d: dict[str, Any]) -> str:
        return (f"{d['mean']:+.{k}f} [{d['low']:+.{k}f}, {d['high']:+.{k}f}]" if d["n"] > 1
                else f"{d['mean']:+.{k}f} (one seed)")

    v = s["verdicts"]
    top, zero = v["largest_level"], v["aligned_level"]
    gain = {lv: row["mango-noattn"] for lv, row in s["mango_minus"].items() if "mango-noattn" in row}
    sign_note = "" if st.higher_is_better else ", signed so that positive = lower error"
    lines = [f"**H1 (the attention's gain grows with the misregistration): "
             f"{v['hypothesis'] or 'not decided yet (runs missing)'}.**"
             + (f" The gain of attention over its γ = 0 control is {interval(gain[zero])} {st.unit} at {zero} and "
                f"{interval(gain[top])} at {top} (paired by seed, 95 % t interval{sign_note})."
                if zero in gain and top in gain else "")]
    trend = s.get("attention_gain_trend")
    if trend is not None:
        word = {"rises": "it rises", "falls": "it falls"}.get(trend["verdict"], "no trend is shown")
        lines.append(f"Its slope over the levels is {trend['mean']:+.{k + 1}f} points per px [{trend['low']:+.{k + 1}f}, "
                     f"{trend['high']:+.{k + 1}f}]: {word}.")
    table = s["table"]
    if zero in table and top in table:
        sign = 1.0 if st.higher_is_better else -1.0
        change = {m: table[top][m]["mean"] - table[zero][m]["mean"] for m in table[top] if m in table[zero]}
        losing = sum(1 for c in change.values() if sign * c < 0)
        who = "every model" if losing == len(change) else f"{losing} of {len(change)} models"
        verb = f"loses {st.unit}" if st.higher_is_better else f"loses accuracy ({st.unit} rises)"
        lines.append(f"From {zero} to {top} {who} {verb} (change of the mean over seeds, points): "
                     + ", ".join(f"{m} {c:+.{st.change_decimals}f}"
                                 for m, c in sorted(change.items(), key=lambda kv: -sign * kv[1])) + ".")
    for key, name in (("mango_vs_concat_context_at_largest_level", "concat-context"),
                      ("mango_vs_crossattn_at_largest_level", "crossattn")):
        d = s["mango_minus"].get(top, {}).get(name)
        if d is not None and key in v:
            lines.append(f"At {top}, MANGO − {name} = {interval(d)}: {v[key] or 'not decided yet (seeds missing)'}.")
    if s.get("attention"):
        lines.append(attention_markdown(s["attention"]).rstrip())
    return "\n\n".join(lines) + "\n"


def summary_markdown(s: dict[str, Any]) -> str:
    plan = s["plan"]
    st = task_of_plan(plan)
    k = st.decimals
    what = plan["dataset"] if st.pair is None else f"{plan['dataset']} ({st.pair})"
    lines = [f"# Registration study: {plan['task']} on the {what} stand-in, `{plan['preset']}` preset", "",
             f"{s['runs_finished']} of {s['runs_planned']} runs finished; generated stand-in data, device "
             f"{', '.join(s['devices']) or '-'}. Metric: {st.metric_label} on the test split (last epoch); selection "
             "on a split held out of training. Protocol: `PROTOCOL.md` (committed before the first run).", "",
             "## In short", "", conclusion_markdown(s).rstrip(), "",
             "## Test metric per disparity level (mean ± sd over seeds, n)", ""]
    models = [m for m in plan["models"] if any(m in row for row in s["table"].values())]
    rows = []
    for lv, b in zip(plan["levels_px"], plan["baselines_m"]):
        row = s["table"].get(level_name(lv))
        if not row:
            continue
        cells = []
        for m in models:
            c = row.get(m)
            cells.append("-" if c is None else f"{c['mean']:.{k}f} ± {c['sd']:.{k}f} ({c['n']})" if c["n"] > 1
                         else f"{c['mean']:.{k}f} (1)")
        measured = max((c["median_disparity_px"] for c in row.values()), default=0.0)
        rows.append([f"{lv:g} px (measured {measured:.1f})", f"{b:g}", *cells])
    lines += table(["level (median disparity)", "baseline (m)", *models], rows)
    lines += ["", "## MANGO minus each model, paired by seed (95 % t interval; positive = MANGO better"
              + ("" if st.higher_is_better else f", i.e. a lower {st.unit}") + ")", ""]
    others = [m for m in models if m != "mango"]
    rows = []
    for lv in plan["levels_px"]:
        row = s["mango_minus"].get(level_name(lv))
        if not row:
            continue
        cells = []
        for m in others:
            d = row.get(m)
            cells.append("-" if d is None else
                         f"{d['mean']:+.{k}f} [{d['low']:+.{k}f}, {d['high']:+.{k}f}] {d['verdict']} (n={d['n']})"
                         if d["n"] > 1 else f"{d['mean']:+.{k}f} (n=1)")
        rows.append([f"{lv:g} px", *cells])
    lines += table(["level", *others], rows)
    t = s["attention_gain_trend"]
    lines += ["", "## Does the attention's gain grow with the disparity?", ""]
    if t is None:
        lines.append("Not yet computable: needs MANGO and mango-noattn at every level for at least two seeds.")
    else:
        span = max(plan["levels_px"]) - min(plan["levels_px"])
        lines.append(f"Slope of (mango - mango-noattn) against the median disparity, per seed then averaged over "
                     f"{len(t['seeds'])} seeds: {t['mean']:+.{k + 1}f} {t['unit']} [{t['low']:+.{k + 1}f}, "
                     f"{t['high']:+.{k + 1}f}]: {t['verdict']}. Over the {span:g} px of the study the interval allows a "
                     f"change of the gain between {t['low'] * span:+.{k}f} and {t['high'] * span:+.{k}f} points.")
        gains = ", ".join(f"seed {s_}: " + " / ".join(f"{g:+.{k}f}" for g in row) for s_, row in zip(t["seeds"], t["gains"]))
        lines.append("")
        lines.append(f"Per-seed gains at {' / '.join(f'{lv:g}' for lv in plan['levels_px'])} px: {gains}.")
    v = s["verdicts"]
    lines += ["", "## Verdicts (the protocol's rules, computed)", ""]
    for key, value in v.items():
        if key not in ("aligned_models",):
            lines.append(f"- {key.replace('_', ' ')}: {'not yet (runs missing)' if value is None else value}")
    if s.get("aligned_check"):
        largest = max(abs(c["difference"]) for c in s["aligned_check"].values())
        lines += ["", "## At 0 px, against the committed aligned runs (secondary check 3)", "",
                  f"The aligned runs of `results/cpu-seeds` and `results/mechanisms` give the numbers of this study's "
                  f"aligned level to {largest:.1e}: they used this study's protocol and seeds, and trained again they "
                  "give the same result." if largest < 1e-6 else
                  "Those runs come from other commands (`results/cpu-seeds`, `results/mechanisms`), whose checkpoint "
                  "choice, splits and reported epoch may differ from this study's (see their folders).", ""]
        lines += table(["model", "now (mean, n)", "before (mean ± sd)", "difference", "below by more than the sd"
                        if st.higher_is_better else "worse by more than the sd"],
                       [[m, f"{c['now']:.{k}f} ({c['n_now']})", f"{c['before']:.{k}f} ± {c['before_sd']:.{k}f}",
                         f"{c['difference']:+.{k}f}", "yes" if c["worse_by_more_than_sd"] else "no"]
                        for m, c in s["aligned_check"].items()])
    if s.get("effective_params"):
        lines += ["", "## Trainable parameters: nominal and receiving a gradient", ""]
        lines += table(["model", "nominal", "receiving gradient"],
                       [[m, f"{p['nominal']:,}", f"{p['receiving_gradient']:,}"] for m, p in s["effective_params"].items()],
                       align="lrr")
    return "\n".join(lines) + "\n"


def effective_parameters(preset: str | Preset, models: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                         batch: int = 4, study: str | StudyTask | None = None) -> dict[str, dict[str, int]]:
    """:func:`~mango_lite.training.parameters.parameters_receiving_gradient` of every model, built as the study
    builds it (registered level, seed 0), on the first ``batch`` samples of the evaluation split."""
    from .parameters import effective_parameters as of_rows

    st = study_task(study)
    models = st.models if models is None else models
    return of_rows(st.task, study_preset(preset, 0.0), {m: (m, {}) for m in models}, dataset=st.dataset, pair=st.pair,
                   cache_dir=cache_dir, batch=batch)

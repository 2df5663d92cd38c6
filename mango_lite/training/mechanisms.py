"""Does each of MANGO's mechanisms do work? Variants of the MANGO task model trained on the same data and
seeds, with the numbers that answer it: the task metric, the flow's validation bits/dim beside the
identity baseline (the same standardised, noised features under N(0, I)), gamma per ICA layer and its
trajectory, and the training time per step.

Two uses (both write ``OUT/mechanisms.json`` after every run, and ``OUT/mechanisms.md``):

* **a ladder**: the changes applied one at a time, each row on top of the previous
  (:data:`LADDER`), one seed - what each change does;
* **controls**: the final model against itself with one mechanism switched off (``mango-noattn``,
  ``mango-nonll``), against the paper's joint objective (``mango-nll-encoders``;
  :data:`~mango_lite.training.tasks.CONTROL_MODELS`) and against concat, over several seeds, mean +- sample
  std - whether the mechanism is needed.

``python -m mango_lite mechanisms --task segmentation --study ladder --out results/mechanisms/...``
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engine.trainer import config_differences
from ..errors import MangoLiteError
from ..markdown import table
from ..presets import Preset, training_fields
from ..tasks import TASKS
from ..utils import atomic_write_json, atomic_write_text
from .executor import Outcome, RunJob, train_runs
from .results_store import read_metrics
from .runspec import RunOptions, RunSpec, resolve_preset
from .tasks import (
    CONTROL_MODELS,
    STUDY_MODELS,
    build_task_data,
    check_task,
    control_overrides,
    run_model_config,
)

#: The changes of issue "make MANGO's mechanisms do work", in the order they are applied; each entry is
#: (name, overrides added to the previous rows'). Row 0 is the model as it was (the paper's upper
#: triangle, no positions, gamma = tanh(g) from 0.1, token-sequence conditioner, NLL weight 0.01, the NLL's
#: gradient into the encoders as in the paper's joint objective).
LADDER: tuple[tuple[str, dict[str, Any]], ...] = (
    ("before", {"flow_weight": 0.01, "flow_alternate": False, "flow_positions": False, "flow_gamma_rate": 1.0,
                "flow_conditioner": "tokens", "flow_nll_to_encoders": True}),
    ("+ NLL weight 0.1", {"flow_weight": 0.1}),
    ("+ alternating triangles", {"flow_alternate": True}),
    ("+ 2-D positions on Q/K", {"flow_positions": True}),
    ("+ gamma rate 10", {"flow_gamma_rate": 10.0}),
    ("+ 3x3 grid conditioner", {"flow_conditioner": "grid"}),
    ("+ NLL trains the flow only", {"flow_nll_to_encoders": False}),
)

#: the headline metric of each task and whether higher is better (the task registry's)
METRIC = {name: (task.headline.key, task.headline.higher_is_better) for name, task in TASKS.items()}


def ladder_variants(ladder: Sequence[tuple[str, Mapping[str, Any]]] = LADDER) -> list[tuple[str, str, dict[str, Any]]]:
    """``[(row name, model, cumulative overrides)]`` of a ladder (every row keeps the previous rows' changes)."""
    acc: dict[str, Any] = {}
    rows = []
    for name, over in ladder:
        acc = {**acc, **dict(over)}
        rows.append((name, "mango", dict(acc)))
    return rows


def control_variants(base: Mapping[str, Any] | None = None,
                     models: Sequence[str] = ("mango", "mango-noattn", "mango-nonll", "mango-nll-encoders", "concat")
                     ) -> list[tuple[str, str, dict[str, Any]]]:
    """``[(name, model, overrides)]``: each model with ``base`` overrides (MANGO options; not given to
    concat) plus the control's own (:data:`CONTROL_MODELS`)."""
    rows = []
    for m in models:
        over = {} if not m.startswith("mango") else {**dict(base or {}), **control_overrides(m)}
        if m not in CONTROL_MODELS and m not in STUDY_MODELS and m not in ("mango", "concat", "tokenfusion", "crossattn"):
            raise MangoLiteError(f"mechanism study: unknown model {m!r}")
        rows.append((m, m, over))
    return rows


def model_defaults() -> dict[str, Any]:
    """:class:`~mango_lite.models.ModelConfig`'s field defaults (those JSON can hold), as JSON."""
    import json
    from dataclasses import MISSING, fields

    from ..models import ModelConfig

    out = {f.name: f.default for f in fields(ModelConfig)
           if f.default is not MISSING and isinstance(f.default, (bool, int, float, str, type(None)))}
    return json.loads(json.dumps(out))


def _last(history: Sequence[Mapping[str, Any]], key: str) -> float | None:
    for rec in reversed(history):
        if key in rec and rec[key] is not None:
            return float(rec[key])
    return None


def _run_record(res: Any, metric: str) -> dict[str, Any]:
    hist = res.history
    steps = max(1, int(hist[-1].get("global_step", 0))) if hist else 1
    train_s = sum(float(r.get("train_time_s", 0.0)) for r in hist)
    rec: dict[str, Any] = {
        "metric": res.metrics.get(metric), "metrics": res.metrics, "params": res.params,
        "val_flow_bpd": _last(hist, "val_flow_bpd"), "val_identity_bpd": _last(hist, "val_identity_bpd"),
        "gamma_trajectory": [r.get("train_gamma_mean") for r in hist],
        "step_ms": 1000.0 * train_s / steps if train_s else None, "wall_time_s": res.wall_time_s,
        "device": res.device,
    }
    import json

    stored = Path(res.out_dir) / "metrics.json"
    if stored.is_file():  # the model the run built, read back when a resumed study decides whether to keep it
        rec["model_config"] = (json.loads(stored.read_text()).get("spec") or {}).get("model_config")
    from .tasks import load_model

    try:  # the trained gammas per layer (flow order: scale, block, layer), first head
        net, _, _ = load_model(res.out_dir)
        gam = getattr(net.fusion, "gammas", None)
        if gam is not None:
            rec["gammas"] = [round(float(g), 4) for g in gam()[:, 0]]
    except MangoLiteError:
        pass
    return rec


def run_study(
    task: str,
    variants: Sequence[tuple[str, str, Mapping[str, Any]]],
    seeds: Sequence[int] = (0,),
    preset: str | Preset | None = None,
    out: str | os.PathLike = "runs/mechanisms",
    *,
    dataset: str | None = None,
    pair: str | None = None,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    resume: bool = True,
    title: str = "",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every ``(name, model, overrides)`` variant once per seed on one dataset; write and return
    ``{"task", "dataset", "pair", "preset", "data", "metric", "higher_is_better", "seeds", "rows":
    {name: {"model", "overrides", "runs": {seed: record}, "summary"}}}``. With ``resume`` a finished run
    (same model configuration) is read back instead of retrained."""
    from .reproduce import data_description

    task = check_task(task)
    preset = resolve_preset(preset)
    out = Path(out)
    log = log or (lambda m: None)
    names = [n for n, _, _ in variants]
    if len(set(names)) != len(names) or not names:
        raise MangoLiteError(f"mechanism study: variant names must be distinct and non-empty, got {names}")
    td = build_task_data(task, preset, data_root, pair, dataset, cache_dir, log=log)
    metric, higher = METRIC[task]
    path = out / "mechanisms.json"
    report: dict[str, Any] = {
        "title": title, "task": task, "dataset": td.info.name, "pair": td.pair.name if td.pair else None,
        "preset": preset.name, "data": td.info.source, "data_description": data_description(td.info, td),
        "metric": metric, "higher_is_better": higher, "seeds": list(seeds), "rows": {},
        "preset_config": training_fields(preset.to_dict()), "model_defaults": model_defaults(),
    }
    if resume and path.exists():
        report["rows"].update(_kept_rows(path, report, variants, td, preset, out))
    options = RunOptions(overwrite=True, verbose=False, progress=False, save_best=False, keep_checkpoints=1)
    todo: dict[tuple[str, int], RunJob] = {}
    for seed in seeds:
        for name, model, over in variants:
            row = report["rows"].setdefault(name, {"model": model, "overrides": dict(over), "runs": {}})
            if row.get("model") != model or row.get("overrides") != dict(over):
                row.update(model=model, overrides=dict(over), runs={})
            if str(seed) in row["runs"] and resume:
                continue
            spec = RunSpec(task, model, preset, seed=seed, pair=td.pair.name if td.pair else None,
                           dataset=td.info.name, model_overrides=_study_overrides(model, over), fid=False)
            todo[(name, seed)] = RunJob(spec, out / "runs" / _slug(name) / f"seed{seed}", options)

    def record(key: tuple[str, int], outcome: Outcome) -> None:
        name, seed = key
        row = report["rows"][name]
        row["runs"][str(seed)] = ({"error": outcome.error} if outcome.error is not None else
                                  {**_run_record(outcome.value, metric), "run_dir": _rel(Path(todo[key].run_dir), out)})
        row["summary"] = summarise(row["runs"])
        atomic_write_json(path, report)
        atomic_write_text(out / "mechanisms.md", study_markdown(report))

    train_runs(todo, data={key: td for key in todo},
               on_start=lambda key, k, n: log(f"mechanisms {task}/{td.info.name}: {key[0]} seed {key[1]}"),
               on_done=record)
    for row in report["rows"].values():
        row["summary"] = summarise(row["runs"])
    atomic_write_json(path, report)
    atomic_write_text(out / "mechanisms.md", study_markdown(report))
    return report


def _kept_rows(path: Path, report: Mapping[str, Any], variants: Sequence[tuple[str, str, Mapping[str, Any]]],
               td: Any, preset: Preset, out: Path) -> dict[str, Any]:
    """The rows of an earlier ``mechanisms.json`` whose finished runs a resumed study keeps: only those trained
    under the same preset and protocol, and each only when the model it stored is the one its variant builds
    today (a changed default retrains it; a field added with the value the run had does not)."""
    import json

    old = json.loads(path.read_text())
    if not all(old.get(k) == report[k] for k in ("task", "dataset", "preset_config")):
        return {}
    kept = {}
    for n, row in old.get("rows", {}).items():
        variant = next(((m, o) for name, m, o in variants if name == n), None)
        want = None if variant is None else run_model_config(
            report["task"], variant[0], td, preset, _study_overrides(variant[0], variant[1])).to_dict()
        runs = {s: r for s, r in row.get("runs", {}).items() if want is None or _same_model(r, out, want, old, report)}
        kept[n] = {**row, "runs": runs}
    return kept


def _study_overrides(model: str, over: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's overrides less those its model (a control) sets itself."""
    return {k: v for k, v in over.items() if k not in control_overrides(model)}


def _same_model(record: Mapping[str, Any], out: Path, want: Mapping[str, Any], old: Mapping[str, Any],
                report: Mapping[str, Any]) -> bool:
    """Whether a finished run's model (its record's ``model_config``, else its run folder's metrics.json) is the
    configuration ``want``; a run that stored neither counts only under the same ``model_defaults``."""
    stored = record.get("model_config")
    if stored is None and record.get("run_dir"):
        stored = ((read_metrics(out / record["run_dir"]) or {}).get("spec") or {}).get("model_config")
    if stored is None:
        return old.get("model_defaults") == report["model_defaults"]
    return not config_differences(stored, want)


def load_study(src: str | os.PathLike) -> dict[str, Any]:
    """A study's ``mechanisms.json`` (given the file or its folder)."""
    import json

    path = Path(src) / "mechanisms.json" if Path(src).is_dir() else Path(src)
    if not path.is_file():
        raise MangoLiteError(f"mechanisms: expected a mechanisms.json (or a folder holding one), got {src}")
    return json.loads(path.read_text())


#: what two studies must share for their runs to be compared or merged
STUDY_KEY = ("task", "dataset", "pair", "preset", "data")


def _check_same_data(one: Mapping[str, Any], other: Mapping[str, Any], what: str) -> None:
    diff = [k for k in STUDY_KEY if one.get(k) != other.get(k)]
    if diff:
        raise MangoLiteError(f"{what} differ in {diff}: {[one.get(k) for k in diff]} vs {[other.get(k) for k in diff]}")


def merge_studies(sources: Sequence[str | os.PathLike | Mapping[str, Any]], title: str | None = None) -> dict[str, Any]:
    """One report from studies run separately (e.g. one process per variant or seed) on the same task,
    data and preset: rows are united, runs of the same row and seed must not disagree."""
    reports = [dict(src) if isinstance(src, Mapping) else load_study(src) for src in sources]
    if not reports:
        raise MangoLiteError("mechanisms merge: nothing to merge")
    first = reports[0]
    for r in reports[1:]:
        _check_same_data(first, r, "mechanisms merge: studies")
    merged = {**{k: v for k, v in first.items() if k != "rows"}, "rows": {}}
    if title is not None:
        merged["title"] = title
    seeds: set[int] = set()
    for r in reports:
        for name, row in r["rows"].items():
            into = merged["rows"].setdefault(name, {"model": row["model"], "overrides": row["overrides"], "runs": {}})
            if into["model"] != row["model"] or into["overrides"] != row["overrides"]:
                raise MangoLiteError(f"mechanisms merge: row {name!r} has different models/overrides in two studies")
            for seed, run in row["runs"].items():
                if seed in into["runs"] and into["runs"][seed] != run:
                    raise MangoLiteError(f"mechanisms merge: row {name!r} seed {seed} differs between two studies")
                into["runs"][seed] = run
                seeds.add(int(seed))
    for row in merged["rows"].values():
        row["runs"] = dict(sorted(row["runs"].items(), key=lambda kv: int(kv[0])))
        row["summary"] = summarise(row["runs"])
    merged["seeds"] = sorted(seeds)
    return merged


def add_effective_params(out: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Add to ``OUT/mechanisms.json`` every row's trainable parameters that receive a gradient beside the nominal
    count (:func:`~mango_lite.training.parameters.effective_parameters`: the row's model built as its runs were,
    one backward pass on the study's data; nothing is trained) and rewrite ``OUT/mechanisms.md``."""
    import json

    from .parameters import effective_parameters

    out = Path(out)
    report = json.loads((out / "mechanisms.json").read_text())
    rows = {name: (row["model"], row.get("overrides") or {}) for name, row in report["rows"].items()}
    report["effective_params"] = effective_parameters(report["task"], report["preset"], rows,
                                                      dataset=report.get("dataset"), pair=report.get("pair"),
                                                      cache_dir=cache_dir)
    atomic_write_json(out / "mechanisms.json", report)
    atomic_write_text(out / "mechanisms.md", study_markdown(report))
    return report


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def refresh_density(out: str | os.PathLike, rows: Sequence[str] | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Re-evaluate the flow's and the identity baseline's validation bits/dim of finished runs from their
    checkpoints (``rows``: only these) and rewrite ``OUT/mechanisms.json`` / ``.md``. For studies whose
    logged values predate a fix of how they are computed; training is not repeated."""
    import json

    from .tasks import evaluate_checkpoint

    out = Path(out)
    report = json.loads((out / "mechanisms.json").read_text())
    for name, row in report["rows"].items():
        if rows is not None and name not in rows:
            continue
        for seed, run in row["runs"].items():
            if "error" in run:
                continue
            run_dir = out / run.get("run_dir", Path("runs") / _slug(name) / f"seed{seed}")
            res = evaluate_checkpoint(run_dir, split="val", log=log)
            m = res["metrics"]
            run["val_flow_bpd"], run["val_identity_bpd"] = m.get("flow_bpd"), m.get("identity_bpd")
            run["run_dir"] = _rel(run_dir, out)
        row["summary"] = summarise(row["runs"])
    atomic_write_json(out / "mechanisms.json", report)
    atomic_write_text(out / "mechanisms.md", study_markdown(report))
    return report


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() else "_" for c in name.lower())
    return "_".join(filter(None, keep.split("_")))


def _stats(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None, "n": len(vals)}


def summarise(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds of the metric, bits/dim, identity bits/dim, step time, mean |gamma|."""
    ok = [r for r in runs.values() if "error" not in r]
    out = {k: _stats([r.get(k) for r in ok]) for k in ("metric", "val_flow_bpd", "val_identity_bpd", "step_ms")}
    out["gamma_abs_mean"] = _stats([statistics.fmean(abs(g) for g in r["gammas"]) for r in ok if r.get("gammas")])
    out["failed"] = len(runs) - len(ok)
    return out


def compare(report: Mapping[str, Any], a: str, b: str) -> dict[str, Any] | None:
    """Row ``a`` against row ``b`` over the seeds both finished, paired by seed.

    Returns ``{"diff", "std", "better_by_more_than_std", "seeds_a_better", "seeds", "paired"}`` (diff > 0
    means a is better, whatever the metric's direction) or None when fewer than two seeds are shared.
    ``paired`` is :func:`~mango_lite.metrics.paired.paired_difference`'s record: the per-seed differences,
    their sd and 95 % t interval and a verdict ("better" / "worse" / "no difference shown") -- the statistic
    the tables report. ``std`` (the larger of the two rows' unpaired sample stds) and
    ``better_by_more_than_std`` are the older, weaker criterion, kept for comparison."""
    from ..metrics.paired import paired_difference

    rows = report["rows"]
    if a not in rows or b not in rows:
        return None
    pairs = [v for _, v in _paired_metrics(report, a, b)]
    if len(pairs) < 2:
        return None
    va, vb = [x for x, _ in pairs], [y for _, y in pairs]
    sign = 1.0 if report["higher_is_better"] else -1.0
    diff = sign * (statistics.fmean(va) - statistics.fmean(vb))
    std = max(statistics.stdev(va), statistics.stdev(vb))
    wins = sum(1 for x, y in zip(va, vb) if sign * (x - y) > 0)
    paired = paired_difference(va, vb, higher_is_better=bool(report["higher_is_better"])).to_dict()
    return {"diff": diff, "std": std, "better_by_more_than_std": diff > std, "seeds_a_better": wins,
            "seeds": len(pairs), "paired": paired}


def _verdict_words(verdict: str) -> str:
    return {"better": "mango better", "worse": "mango worse"}.get(verdict, "no difference shown")


def _pm(s: Mapping[str, Any], nd: int) -> str:
    if s.get("mean") is None:
        return "-"
    if s.get("std") is None:
        return f"{s['mean']:.{nd}f}"
    return f"{s['mean']:.{nd}f} ± {s['std']:.{nd}f}"


def _settings(row: Mapping[str, Any], first: Mapping[str, Any]) -> str:
    """``model``, then the overrides in which ``row`` differs from ``first`` as ``key=value`` (the
    ``flow_`` prefix dropped); ``-`` for the first row itself."""
    if row is first:
        return "-"
    base = dict(first.get("overrides") or {})
    diff = [f"{'nll_weight' if k == 'flow_weight' else k.removeprefix('flow_')}={v}"
            for k, v in (row.get("overrides") or {}).items() if base.get(k, object()) != v]
    model = row.get("model", "")
    head = [] if model == first.get("model") else [model]
    return ", ".join(head + diff) or "-"


def study_markdown(report: Mapping[str, Any]) -> str:
    """The study as a Markdown table (one row per variant) plus, for controls, the computed comparisons."""
    metric = report["metric"]
    arrow = "↑" if report["higher_is_better"] else "↓"
    nd = 3 if metric == "mae_x10" else 2
    where = report.get("pair") or report.get("dataset")
    first = next(iter(report["rows"].values()), {}) if report["rows"] else {}
    live = report.get("effective_params") or {}
    lines = [f"# {report.get('title') or 'MANGO mechanisms'} — {report['task']} / {where} ({report['preset']})", "",
             f"Measured on: {report['data_description']}. Mean ± sample std over the seeds of each row. "
             "Flow and identity bits/dim: the validation features under the trained flow and under N(0, I) "
             "without a flow. Train step: optimisation time per step as logged during the run (shared machine: "
             "a rough figure; `mango_lite.training.cost.task_costs` measures it on an idle machine, see notebook 08).",
             ""]
    if first:
        shown = ", ".join(f"{'nll_weight' if k == 'flow_weight' else k.removeprefix('flow_')}={v}"
                          for k, v in (first.get("overrides") or {}).items()) or "the defaults"
        lines += [f"First row: `{first.get('model')}` with {shown}; the settings column lists what each "
                  "other row changes.", ""]
    if live:
        lines += ["Params: nominal trainable parameters, and in brackets those the training loss reaches "
                  "(`mango_lite.training.parameters`; the no-attention control's query and key weights get none).", ""]
    params_head = "params (receiving a gradient)" if live else "params"
    body = []
    for name, row in report["rows"].items():
        s = row.get("summary") or summarise(row["runs"])
        params = next((r.get("params") for r in row["runs"].values() if r.get("params")), None)
        seeds = ", ".join(k for k, r in row["runs"].items() if "error" not in r)
        shown = "-" if params is None else f"{params / 1e6:.2f} M"
        if name in live:
            shown += f" ({live[name]['receiving_gradient'] / 1e6:.2f} M)"
        body.append([name, _settings(row, first), seeds, _pm(s["metric"], nd), _pm(s["val_flow_bpd"], 3),
                     _pm(s["val_identity_bpd"], 3), _pm(s["gamma_abs_mean"], 3), _pm(s["step_ms"], 0), shown])
    lines += table(["variant", "settings (vs the first row)", "seeds", f"{metric} {arrow}", "val flow bits/dim",
                    "identity bits/dim", "mean abs gamma", "train step (ms)", params_head], body)
    rows = report["rows"]
    if "mango" in rows:
        lines.append("")
        for other in [n for n in rows if n != "mango"]:
            c = compare(report, "mango", other)
            if c is None:
                continue
            pd = c["paired"]
            lines.append(f"- mango vs {other}: paired difference {pd['mean']:+.{nd}f} (positive = mango better), sd "
                         f"{pd['sd']:.{nd}f}, 95 % t interval [{pd['low']:+.{nd}f}, {pd['high']:+.{nd}f}]: "
                         f"{_verdict_words(pd['verdict'])}; mango better in {c['seeds_a_better']} of {c['seeds']} seeds.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- across tasks
def goals_summary(reports: Sequence[Mapping[str, Any]], controls: Sequence[str] = ("mango-noattn", "mango-nonll"),
                  baseline: str = "concat") -> dict[str, Any]:
    """The mechanisms goals over several control studies (one per task group), computed:

    * per group: MANGO against each control, paired by seed with a 95 % t interval (:func:`compare`), MANGO not below
      ``baseline`` (mean), the flow's validation bits/dim below the identity baseline, MANGO's training step
      over the baseline's;
    * per task: a goal holds for a task when it holds on every group of that task (translation has two).
    """
    groups: dict[str, Any] = {}
    for rep in reports:
        name = f"{rep['task']}/{rep.get('pair') or rep.get('dataset')}"
        rows = rep["rows"]
        g: dict[str, Any] = {"task": rep["task"], "metric": rep["metric"], "higher_is_better": rep["higher_is_better"],
                             "data": rep.get("data"), "seeds": rep.get("seeds"), "controls": {}}
        for c in controls:
            g["controls"][c] = compare(rep, "mango", c)
        base = compare(rep, "mango", baseline)
        g["vs_baseline"] = base
        g["not_below_baseline"] = None if base is None else base["diff"] >= 0
        m = rows.get("mango", {}).get("summary", {})
        flow, ident = (m.get("val_flow_bpd") or {}).get("mean"), (m.get("val_identity_bpd") or {}).get("mean")
        g["flow_bpd"], g["identity_bpd"] = flow, ident
        g["flow_beats_identity"] = None if flow is None or ident is None else flow < ident
        step_m = (m.get("step_ms") or {}).get("mean")
        step_b = ((rows.get(baseline, {}).get("summary") or {}).get("step_ms") or {}).get("mean")
        g["step_ratio"] = None if not step_m or not step_b else step_m / step_b
        g["beats_every_control"] = (all(v is not None and v["paired"]["verdict"] == "better"
                                        for v in g["controls"].values()) if g["controls"] else None)
        groups[name] = g
    tasks: dict[str, dict[str, Any]] = {}
    for g in groups.values():
        t = tasks.setdefault(g["task"], {"groups": 0})
        t["groups"] += 1
        for key in ("beats_every_control", "not_below_baseline", "flow_beats_identity"):
            t[key] = bool(t.get(key, True) and bool(g[key]))
        for c, v in g["controls"].items():
            t[f"beats_{c}"] = bool(t.get(f"beats_{c}", True) and v is not None and v["paired"]["verdict"] == "better")
            t[f"worse_than_{c}"] = bool(t.get(f"worse_than_{c}", False) or (v is not None
                                                                          and v["paired"]["verdict"] == "worse"))
    return {"groups": groups, "tasks": tasks, "controls": list(controls), "baseline": baseline}


def goals_markdown(summary: Mapping[str, Any]) -> str:
    """The goals summary as Markdown: one row per group (MANGO minus each control, paired by seed, with its
    95 % t interval and verdict), then the per-task tally."""
    ctl = summary["controls"]
    base = summary["baseline"]
    header = ["group", "metric", "paired seeds", *(f"mango − {c} [95 % interval]" for c in ctl), f"mango − {base}",
              "flow / identity bits/dim", f"step / {base}"]

    def d(v: Mapping[str, Any] | None, nd: int) -> str:
        if v is None:
            return "-"
        if "paired" not in v:  # a summary written before the paired statistics
            return f"{v['diff']:+.{nd}f} (std {v['std']:.{nd}f})"
        p = v["paired"]
        mark = {"better": " **better**", "worse": " **worse**"}.get(p["verdict"], "")
        return f"{p['mean']:+.{nd}f} [{p['low']:+.{nd}f}, {p['high']:+.{nd}f}]{mark}"

    rows = []
    for name, g in summary["groups"].items():
        nd = 3 if g["metric"] == "mae_x10" else 2
        vs = g["vs_baseline"]
        flow = "-" if g["flow_bpd"] is None else f"{g['flow_bpd']:.2f} / {g['identity_bpd']:.2f}"
        ratio = "-" if g["step_ratio"] is None else f"{g['step_ratio']:.1f}×"
        counts = sorted({v["seeds"] for v in [*g["controls"].values(), vs] if v is not None})
        paired = "-" if not counts else "/".join(map(str, counts))
        rows.append([name, g["metric"], paired, *(d(g["controls"][c], nd) for c in ctl), d(vs, nd), flow, ratio])
    lines = table(header, rows)
    tasks = summary["tasks"]
    n = len(tasks)
    lines.append("")
    lines.append("Differences are signed so that positive means MANGO is better (MAE: lower): the mean of the "
                 "per-seed differences with its 95 % Student t interval; **better** / **worse** where the interval "
                 "excludes 0, otherwise no difference is shown.")
    for c in ctl:
        cmp = {name: g["controls"][c] for name, g in summary["groups"].items() if g["controls"].get(c)}
        if not cmp:
            continue
        verdicts = {name: (v.get("paired") or {}).get("verdict") for name, v in cmp.items()}
        better = [k for k, v in verdicts.items() if v == "better"]
        worse = [k for k, v in verdicts.items() if v == "worse"]
        wins, pairs = sum(v["seeds_a_better"] for v in cmp.values()), sum(v["seeds"] for v in cmp.values())
        lines.append(f"- Against {c}: MANGO better in {len(better)} of {len(cmp)} groups"
                     + (f" ({', '.join(better)})" if better else "")
                     + f", worse in {len(worse)}" + (f" ({', '.join(worse)})" if worse else "")
                     + f"; ahead in {wins} of {pairs} paired seeds ({c} ahead in {pairs - wins}).")
    k = sum(1 for t in tasks.values() if t["not_below_baseline"])
    lines.append(f"- MANGO not below {base} on {k} of {n} tasks.")
    k = sum(1 for t in tasks.values() if t["flow_beats_identity"])
    lines.append(f"- Flow bits/dim below the identity baseline on {k} of {n} tasks.")
    reading = goals_reading(summary)
    if reading:
        lines += ["", reading]
    return "\n".join(lines) + "\n"


#: the mechanism each control switches off and how, for :func:`goals_reading`
CONTROL_MEANING: dict[str, tuple[str, str]] = {
    "mango-noattn": ("the attention", "every γ fixed at 0, which also leaves the queries and keys untrained, so "
                                      "the control trains fewer parameters; the capacity study asks what that costs"),
    "mango-nonll": ("the likelihood term", "NLL weight 0"),
    "mango-nll-encoders": ("keeping the NLL out of the encoders", "the paper's joint objective, the NLL's gradient "
                                                                   "reaching the encoders"),
}


def goals_reading(summary: Mapping[str, Any]) -> str:
    """One sentence per control, its wording chosen by the paired verdicts and seed counts of ``summary``
    (:func:`summarize_goals`): whether the mechanism the control switches off shows a gain, a loss or
    neither, in which groups, and which way the paired seeds lean. Empty for a summary without paired
    statistics."""
    out = []
    for c in summary["controls"]:
        cmp = {name: g["controls"][c] for name, g in summary["groups"].items() if (g["controls"].get(c) or {}).get("paired")}
        if not cmp:
            continue
        verdicts = {name: v["paired"]["verdict"] for name, v in cmp.items()}
        better = [k for k, v in verdicts.items() if v == "better"]
        worse = [k for k, v in verdicts.items() if v == "worse"]
        wins = sum(v["paired"]["wins"] for v in cmp.values())
        pairs = sum(v["paired"]["n"] for v in cmp.values())
        what, how = CONTROL_MEANING.get(c, (f"what {c} switches off", c))
        if better and not worse:
            verdict = f"shows a gain in {len(better)} of {len(cmp)} groups ({', '.join(better)}) and a loss in none"
        elif worse and not better:
            verdict = f"shows a loss in {len(worse)} of {len(cmp)} groups ({', '.join(worse)}) and a gain in none"
        elif better and worse:
            verdict = (f"shows a gain in {len(better)} groups ({', '.join(better)}) and a loss in {len(worse)} "
                       f"({', '.join(worse)})")
        else:
            verdict = f"shows neither a gain nor a loss in any of the {len(cmp)} groups (every interval contains 0)"
        lean = ("MANGO" if 2 * wins > pairs else c if 2 * wins < pairs else "neither")
        out.append(f"- **{what[0].upper() + what[1:]}** (against `{c}`: {how}) {verdict}; the paired seeds favour "
                   + (f"{lean} ({max(wins, pairs - wins)} of {pairs})." if lean != "neither" else
                      f"neither side ({wins} of {pairs} each way)."))
    if not out:
        return ""
    k = sum(1 for g in summary["groups"].values() for v in g["controls"].values() if (v or {}).get("paired"))
    level = next(v["paired"]["level"] for g in summary["groups"].values() for v in g["controls"].values()
                 if (v or {}).get("paired"))
    chance = 1 - level ** k
    return ("What the intervals say, mechanism by mechanism (generated from the rows above):\n\n" + "\n".join(out)
            + f"\n\nThe table holds {k} such intervals at {100 * level:.0f} %: if no mechanism did anything, at least one "
            f"would exclude 0 by chance with probability about {chance:.2f} (treating them as independent), so a "
            "single verdict is a lead to test again with more seeds, not a finding on its own.")


#: what a replication's interval means, by its verdict (see ``replication_summary``)
REPLICATION_VERDICTS = {"better": "replicated", "no difference shown": "not replicated", "worse": "reversed"}


def replication_summary(first: Mapping[str, Any], again: Mapping[str, Any], a: str = "mango",
                        b: str = "mango-noattn") -> dict[str, Any]:
    """Row ``a`` against row ``b`` in a first study and in its replication on new seeds, paired by seed.

    The verdict is read from the replication alone: "replicated" when its interval lies on the side the first
    study found, "reversed" when it lies on the other side, "not replicated" when it contains 0. The two studies
    must share task, dataset, pair, preset and data and have no seed in common. ``pooled`` is the paired
    difference over the seeds of both, shown beside the verdict, never instead of it."""
    from ..metrics.paired import paired_difference

    _check_same_data(first, again, "replication: the two studies")
    shared = set(map(str, first.get("seeds", []))) & set(map(str, again.get("seeds", [])))
    if shared:
        raise MangoLiteError(f"replication: expected new seeds, got seeds {sorted(shared)} in both studies")
    one, two = compare(first, a, b), compare(again, a, b)
    if one is None or two is None:
        raise MangoLiteError(f"replication: expected rows {a!r} and {b!r} with at least two finished seeds in each "
                             f"study, got {'none in the first' if one is None else 'none in the replication'}")
    found = one["paired"]["verdict"]
    v = two["paired"]["verdict"]
    if found == "worse":  # the first study found a loss: replicated means the loss again
        verdict = {"worse": "replicated", "better": "reversed"}.get(v, "not replicated")
    else:
        verdict = REPLICATION_VERDICTS[v]
    runs = [(s, r) for rep in (first, again) for s, r in _paired_metrics(rep, a, b)]
    pooled = paired_difference([x for _, (x, _) in runs], [y for _, (_, y) in runs],
                               higher_is_better=bool(first["higher_is_better"])).to_dict()
    return {"task": first["task"], "dataset": first.get("dataset"), "metric": first["metric"], "a": a, "b": b,
            "first": {"seeds": one["paired"]["n"], "paired": one["paired"],
                      "devices": _devices(first, (a, b))},
            "replication": {"seeds": two["paired"]["n"], "paired": two["paired"],
                            "devices": _devices(again, (a, b))},
            "first_verdict": found, "verdict": verdict, "pooled": pooled}


def _paired_metrics(report: Mapping[str, Any], a: str, b: str) -> list[tuple[str, tuple[float, float]]]:
    ra, rb = report["rows"][a]["runs"], report["rows"][b]["runs"]
    return [(k, (float(ra[k]["metric"]), float(rb[k]["metric"]))) for k in ra
            if k in rb and ra[k].get("metric") is not None and rb[k].get("metric") is not None]


def _devices(report: Mapping[str, Any], rows: Sequence[str]) -> list[str]:
    return sorted({str(r.get("device")) for n in rows for r in report["rows"][n]["runs"].values() if r.get("device")})


def replication_markdown(summary: Mapping[str, Any]) -> str:
    """The replication as a short Markdown section: both studies' paired differences, the verdict, the pooled
    figure labelled as such."""

    def line(label: str, part: Mapping[str, Any]) -> list[object]:
        p = part["paired"]
        return [label, p["n"], f"{p['mean']:+.2f}", f"{p['sd']:.2f}", f"[{p['low']:+.2f}, {p['high']:+.2f}]",
                f"{p['wins']} of {p['n']}", ", ".join(part.get("devices") or ["-"])]

    a, b = summary["a"], summary["b"]
    pooled = summary["pooled"]
    where = {"better": "lies above 0", "worse": "lies below 0"}
    now = where.get(summary["replication"]["paired"]["verdict"], "contains 0")
    before = {"better": "lay above 0", "worse": "lay below 0"}.get(summary["first_verdict"], "contained 0")
    return "\n".join([
        f"### Replication: `{a}` against `{b}` on new seeds ({summary['task']} / {summary['dataset']})", "",
        f"Paired difference of {summary['metric']} ({a} minus {b}; positive = {a} better), 95 % t interval.", "",
        *table(["study", "seeds", "mean", "sd", "95 % interval", f"seeds with {a} ahead", "device"],
               [line("first (chose the question)", summary["first"]),
                line("replication (pre-registered)", summary["replication"])]), "",
        f"Verdict, from the replication alone: **{summary['verdict']}** (its interval {now}; the first study's "
        f"{before}). "
        f"Pooled over both studies' {pooled['n']} seeds and their devices, for orientation only: "
        f"{pooled['mean']:+.2f} [{pooled['low']:+.2f}, {pooled['high']:+.2f}], {a} ahead in {pooled['wins']} of {pooled['n']}.",
        ""])


#: what the matched control's interval means (``capacity_summary``), by the paired verdict of MANGO against it
CAPACITY_VERDICTS = {"better": "attention beyond capacity", "no difference shown": "capacity not ruled out",
                     "worse": "capacity more than attention"}


def capacity_summary(report: Mapping[str, Any], control: str = "mango-noattn",
                     matched: str = "mango-noattn-h408", a: str = "mango", pooled: bool = False) -> dict[str, Any]:
    """MANGO against its no-attention control and against the same control with as many parameters receiving a
    gradient (``matched``), paired by seed: the verdict of ``a`` - ``matched`` (:data:`CAPACITY_VERDICTS`), what
    the extra capacity alone does (``matched`` - ``control``) and the share of the gain ``a`` - ``control`` that
    remains against ``matched``. ``pooled``: the report pools seeds of readings already seen, so its interval is
    shown for orientation and no verdict is drawn from it."""
    gain, against, alone = compare(report, a, control), compare(report, a, matched), compare(report, matched, control)
    if gain is None or against is None or alone is None:
        raise MangoLiteError(f"capacity: expected rows {a!r}, {control!r} and {matched!r} with at least two shared "
                             f"finished seeds, got rows {sorted(report.get('rows', {}))}")
    # a share of the gain only where its interval shows one (a share of noise, or of a loss, means nothing)
    share = against["paired"]["mean"] / gain["paired"]["mean"] if gain["paired"]["verdict"] == "better" else None
    return {"task": report["task"], "dataset": report.get("dataset"), "metric": report["metric"], "a": a,
            "control": control, "matched": matched, "gain": gain["paired"], "against_matched": against["paired"],
            "capacity_alone": alone["paired"], "share_remaining": share, "title": report.get("title") or "",
            "seeds": sorted(int(k) for k in report["rows"][a]["runs"]), "pooled": pooled,
            "verdict": None if pooled else CAPACITY_VERDICTS[against["paired"]["verdict"]]}


def capacity_markdown(summary: Mapping[str, Any]) -> str:
    """:func:`capacity_summary` as a short Markdown section."""

    nd = 3 if str(summary["metric"]).startswith(("mae", "rmse")) else 2  # MAE x10 differences are ~0.001-0.01

    def row(label: str, p: Mapping[str, Any]) -> list[object]:
        return [label, p["n"], f"{p['mean']:+.{nd}f}", f"{p['sd']:.{nd}f}", f"[{p['low']:+.{nd}f}, {p['high']:+.{nd}f}]",
                f"{p['wins']} of {p['n']}"]

    a, c, m = summary["a"], summary["control"], summary["matched"]
    share = summary["share_remaining"]
    seeds = summary.get("seeds") or []
    which = (f", seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1
             else f", seeds {', '.join(map(str, seeds))}" if seeds else "")
    head = ("Pooled reading, for orientation only (these seeds include readings already seen; no verdict is drawn "
            "from it)." if summary.get("pooled") else
            f"Verdict (the protocol's rule on the second row): **{summary['verdict']}**.")
    return "\n".join([
        f"### Attention or capacity? `{a}` against `{c}` and against `{m}` ({summary['task']} / "
        f"{summary['dataset']}{which})",
        "", f"Paired differences of {summary['metric']} (positive = the first model better), 95 % t interval.", "",
        *table(["difference", "seeds", "mean", "sd", "95 % interval", "seeds with the first ahead"],
               [row(f"{a} − {c} (the gain)", summary["gain"]),
                row(f"{a} − {m} (same trainable size, no attention)", summary["against_matched"]),
                row(f"{m} − {c} (the extra capacity alone)", summary["capacity_alone"])]), "",
        head
        + (f" (No gain of `{a}` over `{c}` is shown here, so no share of it is computed.)" if share is None else
           f" Against the matched control, {a} keeps {100 * share:.0f} % of its gain over `{c}`." if share > 0 else
           f" Against the matched control none of {a}'s gain over `{c}` remains."), ""])

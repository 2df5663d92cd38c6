"""Choosing the NLL weight on the selection split, never on the split that is reported.

MANGO's task models add the flow's likelihood to the task loss with a weight lambda per task
(:data:`~mango_lite.presets.TASK_FLOW_WEIGHTS`). This study trains MANGO at each candidate weight, on
every task group, with several seeds, with a selection split held out of the training data
(``Preset.selection_split``; genre: MM-IMDb's ``dev``), and chooses each task's weight from the selection
split's headline metric at the last epoch alone. The test split's numbers are collected beside the choice
and decide nothing. Its weights, groups, seeds and rule are fixed in ``results/selection/PROTOCOL.md``,
committed before the first run; this module carries them out.

* :func:`study_plan`: the runs (group x weight x seed) as JSON.
* :func:`run_study`: trains the runs not yet finished (resumable; worker processes, one torch thread each).
* :func:`choose`: the protocol's rule on the collected runs: per task the weights' selection scores, the
  paired per-seed differences with their t intervals, the chosen weight.
* :func:`summarize`: writes ``summary.json`` and ``summary.md``.
* Stage 2, the ladder's other defaults (:data:`SWITCHES`), each switched off alone from the chosen model:
  :func:`defaults_plan`, :func:`run_defaults_study`, :func:`choose_defaults`, :func:`summarize_defaults`.

``python -m mango_lite select-weights --preset cpu --out results/selection``
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..markdown import table
from ..metrics.paired import paired_difference
from ..presets import TASK_FLOW_WEIGHTS, Preset
from ..tasks import TASKS
from ..utils import atomic_write_json, atomic_write_text
from .results_store import finished_run
from .runspec import RunSpec, resolve_preset
from .tasks import default_cache_dir, prepare_data
from .workers import study_run_job, train_study_runs


@dataclass(frozen=True)
class Group:
    """One task, dataset and (translation) pair that the study trains on."""

    task: str
    dataset: str
    pair: str | None = None

    @property
    def name(self) -> str:
        return f"{self.task}-{self.pair or self.dataset}"


GROUPS = (Group("segmentation", "nyudv2"), Group("translation", "taskonomy", "shade_texture_to_rgb"),
          Group("translation", "taskonomy", "rgb_edge_to_depth"), Group("genre", "mmimdb"))
WEIGHTS = (0.01, 0.1)
SEEDS = (0, 1, 2)
MODEL = "mango"
#: each task's headline metric (the task registry's), its selection-split history key and whether higher is better
METRICS: dict[str, tuple[str, str, bool]] = {
    name: (t.headline.key, t.headline.history_key, t.headline.higher_is_better) for name, t in TASKS.items()}


def study_preset(preset: str | Preset) -> Preset:
    """``preset`` with a selection split held out of the training split."""
    return resolve_preset(preset).with_overrides(selection_split=True)


def study_plan(preset: str | Preset = "cpu", weights: Sequence[float] = WEIGHTS, seeds: Sequence[int] = SEEDS,
               groups: Sequence[Group] = GROUPS) -> dict[str, Any]:
    """Everything that decides the runs, as JSON; runs ordered seed by seed, so a study cut short after
    k seeds holds complete pairs."""
    p = study_preset(preset)
    runs = [{"group": g.name, "task": g.task, "dataset": g.dataset, "pair": g.pair, "weight": float(w), "seed": int(s)}
            for s in seeds for g in groups for w in weights]
    return {"model": MODEL, "preset": p.name, "preset_config": p.to_dict(), "weights": [float(w) for w in weights],
            "seeds": [int(s) for s in seeds], "groups": [g.name for g in groups],
            "weights_in_use": {t: TASK_FLOW_WEIGHTS[t] for t in sorted({g.task for g in groups})}, "runs": runs}


def run_dir(out: str | Path, run: dict[str, Any]) -> Path:
    return Path(out) / "runs" / run["group"] / f"nll{run['weight']:g}" / f"seed{run['seed']}"


def _finished(out: Path, preset: Preset, run: dict[str, Any]) -> dict[str, Any] | None:
    return finished_run(run_dir(out, run), RunSpec(run["task"], MODEL, preset, seed=run["seed"],
                                                   model_overrides={"flow_weight": run["weight"]}))


def run_study(out: str | Path, preset: str | Preset = "cpu", weights: Sequence[float] = WEIGHTS,
              seeds: Sequence[int] = SEEDS, groups: Sequence[Group] = GROUPS, jobs: int | None = None,
              device: str | None = "cpu", cache_dir: str | Path | None = None, max_runs: int | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every run of :func:`study_plan` without a finished folder under ``out/runs`` (a killed run
    continues from its last epoch), at most ``max_runs`` of them; returns ``{"done", "left", "failed"}``."""
    out = Path(out)
    plan = study_plan(preset, weights, seeds, groups)
    atomic_write_json(out / "plan.json", plan)
    return _train_plan(out, plan, lambda r: run_dir(out, r), lambda r: {"flow_weight": r["weight"]},
                       "selection study", jobs, device, cache_dir, max_runs, log)


def _train_plan(out: Path, plan: dict[str, Any], folder: Callable[[dict[str, Any]], Path],
                overrides: Callable[[dict[str, Any]], dict[str, Any]], title: str, jobs: int | None,
                device: str | None, cache_dir: str | Path | None, max_runs: int | None,
                log: Callable[[str], None]) -> dict[str, Any]:
    """Train the runs of ``plan`` whose ``folder`` holds no finished run built with ``overrides``."""
    p = Preset(**plan["preset_config"])
    todo = [r for r in plan["runs"]
            if finished_run(folder(r), RunSpec(r["task"], MODEL, p, seed=r["seed"], model_overrides=overrides(r))) is None]
    left_after = max(0, len(todo) - max_runs) if max_runs is not None else 0
    todo = todo[:max_runs] if max_runs is not None else todo
    log(f"{title}: {len(plan['runs']) - len(todo) - left_after} of {len(plan['runs'])} runs finished, "
        f"{len(todo)} to train now" + (f", {left_after} left for later" if left_after else ""))
    if not todo:
        return {"done": 0, "left": left_after, "failed": {}}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    infos = {d: prepare_data(d, p, cache_dir=cache, log=log) for d in sorted({r["dataset"] for r in todo})}
    runs = {str(folder(r).relative_to(out / "runs")): study_run_job(
        RunSpec(r["task"], MODEL, p, seed=r["seed"], dataset=r["dataset"], pair=r["pair"], model_overrides=overrides(r)),
        folder(r), infos[r["dataset"]], device) for r in todo}
    done, failed = train_study_runs(runs, jobs, device, log)
    return {"done": done, "left": left_after, "failed": failed}


# ------------------------------------------------------------------------------------------ the choice
def collect(out: str | Path) -> dict[str, Any]:
    """The finished runs of ``out/plan.json``: ``{group: {weight: {seed: {"selection", "test", "flow_bpd"}}}}``
    (the selection split's headline metric at the last epoch, the test split's, the flow's selection-split
    bits/dim), plus the plan."""
    out = Path(out)
    plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    p = Preset(**plan["preset_config"])
    runs: dict[str, dict[float, dict[int, dict[str, float | None]]]] = {}
    for r in plan["runs"]:
        done = _finished(out, p, r)
        if done is None:
            continue
        metric, key, _ = METRICS[r["task"]]
        history = json.loads((run_dir(out, r) / "history.json").read_text(encoding="utf-8"))
        last = history[-1]
        runs.setdefault(r["group"], {}).setdefault(r["weight"], {})[r["seed"]] = {
            "selection": float(last[key]), "test": float(done["metrics"][metric]),
            "flow_bpd": None if last.get("val_flow_bpd") is None else float(last["val_flow_bpd"])}
    return {"plan": plan, "runs": runs}


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values))


def choose(collected: dict[str, Any]) -> dict[str, Any]:
    """The protocol's rule, per task: each weight's selection score (the mean over seeds; translation: the
    mean over its pairs of those means), the paired per-seed differences (the larger weight minus the
    smaller, positive favouring the larger) per group on the selection split, the chosen weight (an exact
    tie keeps the weight in use) and, after the choice, the test split's means."""
    plan, runs = collected["plan"], collected["runs"]
    weights = sorted(plan["weights"])
    groups_of: dict[str, list[str]] = {}
    for r in plan["runs"]:
        if r["group"] not in groups_of.setdefault(r["task"], []):
            groups_of[r["task"]].append(r["group"])
    tasks: dict[str, Any] = {}
    for task, groups in groups_of.items():
        metric, _, higher = METRICS[task]
        complete = all(len(runs.get(g, {}).get(w, {})) == len(plan["seeds"]) for g in groups for w in weights)
        per_group: dict[str, Any] = {}
        for g in groups:
            by_w = runs.get(g, {})
            entry: dict[str, Any] = {
                "selection_mean": {f"{w:g}": _mean([v["selection"] for v in by_w[w].values()]) for w in weights if by_w.get(w)},
                "test_mean": {f"{w:g}": _mean([v["test"] for v in by_w[w].values()]) for w in weights if by_w.get(w)},
                "seeds": {f"{w:g}": len(by_w.get(w, {})) for w in weights}}
            if len(weights) == 2 and all(by_w.get(w) for w in weights):
                small, large = (by_w[w] for w in weights)
                common = sorted(set(small) & set(large))
                if len(common) >= 2:
                    entry["paired_selection"] = paired_difference(
                        [large[s]["selection"] for s in common], [small[s]["selection"] for s in common], higher).to_dict()
                    entry["paired_test"] = paired_difference(
                        [large[s]["test"] for s in common], [small[s]["test"] for s in common], higher).to_dict()
            per_group[g] = entry
        score = {f"{w:g}": _mean([per_group[g]["selection_mean"][f"{w:g}"] for g in groups])
                 for w in weights if all(f"{w:g}" in per_group[g]["selection_mean"] for g in groups)}
        in_use = float(plan["weights_in_use"][task])
        chosen = None
        if complete and score:
            best = (max if higher else min)(score.values())
            tied = [w for w in weights if score[f"{w:g}"] == best]
            chosen = in_use if in_use in tied else tied[0]
        told_apart = [g for g in groups if _excludes_zero(per_group[g].get("paired_selection"))]
        tasks[task] = {"metric": metric, "higher_is_better": higher, "groups": per_group, "selection_score": score,
                       "in_use": in_use, "chosen": chosen, "complete": complete, "told_apart_in": told_apart}
    return {"weights": weights, "seeds": plan["seeds"], "preset": plan["preset"], "tasks": tasks}


def _excludes_zero(diff: dict[str, Any] | None) -> bool:
    return bool(diff) and (diff["low"] > 0 or diff["high"] < 0)


def summarize(out: str | Path) -> dict[str, Any]:
    """Apply :func:`choose` to the finished runs; write ``summary.json`` and ``summary.md``."""
    out = Path(out)
    summary = choose(collect(out))
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The choice in sentences and the numbers behind it, from :func:`choose`'s result."""
    w = [f"{x:g}" for x in summary["weights"]]
    lines = [f"# The NLL weight chosen on the selection split ({summary['preset']}, generated stand-ins)", "",
             "Protocol: `PROTOCOL.md` (committed before the runs). Score: the selection split's headline metric at the "
             "last epoch; the test split's numbers are shown after the choice and decided nothing. Differences: "
             f"lambda = {w[-1]} minus lambda = {w[0]} per seed, signed so that positive favours {w[-1]}, mean with its "
             "95 % Student t interval.", ""]
    for task, t in summary["tasks"].items():
        arrow = "higher is better" if t["higher_is_better"] else "lower is better"
        if t["chosen"] is None:
            lines.append(f"- **{task}**: not all runs finished; no choice yet (weight in use {t['in_use']:g}).")
        else:
            change = (f"keeps lambda = {t['chosen']:g}" if t["chosen"] == t["in_use"]
                      else f"changes from lambda = {t['in_use']:g} to {t['chosen']:g}")
            apart = ("the weights are told apart on the selection split in " + ", ".join(
                f"{g} ({_favoured(t['groups'][g]['paired_selection'], summary['weights'])} better)"
                for g in t["told_apart_in"]) if t["told_apart_in"]
                else "the two weights are not told apart on the selection split (every interval contains 0): the "
                     "choice is the better mean, nothing more")
            lines.append(f"- **{task}** {change} ({t['metric']}, {arrow}); {apart}.")
    header = ["group", "seeds", *(f"selection, lambda={x}" for x in w), "selection difference [95 %]",
              *(f"test, lambda={x}" for x in w), "test difference [95 %]"]
    rows = [[g, "/".join(str(e["seeds"][x]) for x in w), *(_fmt(e["selection_mean"].get(x)) for x in w),
             _fmt_diff(e.get("paired_selection")), *(_fmt(e["test_mean"].get(x)) for x in w),
             _fmt_diff(e.get("paired_test"))]
            for t in summary["tasks"].values() for g, e in t["groups"].items()]
    lines += [""] + table(header, rows)
    lines += ["", "Metrics: segmentation mIoU (%), translation MAE x10 on the [-1, 1] scale, genre macro-F1 (%)."]
    return "\n".join(lines) + "\n"


def _favoured(diff: dict[str, Any], weights: Sequence[float]) -> str:
    """The weight a paired difference (larger minus smaller weight, positive favouring the larger) favours."""
    return f"lambda = {max(weights) if diff['mean'] > 0 else min(weights):g}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def _fmt_diff(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


# ------------------------------------------------------------------------- stage 2: the ladder's defaults
@dataclass(frozen=True)
class Switch:
    """A default of the MANGO task model at the protocol's commit: the :class:`~mango_lite.models.ModelConfig`
    values that switch it on (the reference's) and off (those it had before the earlier ladder)."""

    default: str
    variant: str
    on: tuple[tuple[str, Any], ...]
    off: tuple[tuple[str, Any], ...]


#: the reference and every variant state these values explicitly, so the study means the same models after a
#: default changes (as it did after this study: gamma rate 10 -> 1)
SWITCHES = (
    Switch("alternating triangles", "upper-only", (("flow_alternate", True),), (("flow_alternate", False),)),
    Switch("2-D positions on Q/K", "no-positions", (("flow_positions", True),), (("flow_positions", False),)),
    Switch("gamma rate 10", "gamma-rate-1", (("flow_gamma_rate", 10.0),), (("flow_gamma_rate", 1.0),)),
    Switch("3x3 grid conditioner", "token-conditioner", (("flow_conditioner", "grid"),),
           (("flow_conditioner", "tokens"),)),
    Switch("NLL trains the flow only", "nll-to-encoders", (("flow_nll_to_encoders", False),),
           (("flow_nll_to_encoders", True),)),
)
DEFAULTS_GROUP = GROUPS[0]
REFERENCE = "reference"
COMBINED = "combined"


def defaults_plan(preset: str | Preset = "cpu", seeds: Sequence[int] = SEEDS,
                  switches: Sequence[Switch] = SWITCHES, group: Group = DEFAULTS_GROUP,
                  combine: Sequence[str] = ()) -> dict[str, Any]:
    """Stage 2's runs as JSON: the reference (the stage-1 model at the task's weight in use) and each default
    switched off alone, seed by seed; with ``combine`` (variants), also those switched off together."""
    p = study_preset(preset)
    weight = float(TASK_FLOW_WEIGHTS[group.task])
    offs = {s.variant: dict(s.off) for s in switches}
    unknown = sorted(set(combine) - set(offs))
    if unknown:
        raise ValueError(f"defaults_plan: combine names variants {sorted(offs)}, got unknown {unknown}")
    reference = {"flow_weight": weight, **{k: v for s in switches for k, v in s.on}}
    variants: dict[str, dict[str, Any]] = {REFERENCE: {}, **offs}
    if combine:
        variants[COMBINED] = {k: v for name in combine for k, v in offs[name].items()}
    runs = [{"group": group.name, "task": group.task, "dataset": group.dataset, "pair": group.pair, "weight": weight,
             "variant": v, "overrides": {**reference, **off}, "seed": int(s)}
            for s in seeds for v, off in variants.items()]
    return {"model": MODEL, "preset": p.name, "preset_config": p.to_dict(), "group": group.name, "task": group.task,
            "weight": weight, "seeds": [int(s) for s in seeds], "combine": list(combine),
            "switches": [{"default": s.default, "variant": s.variant, "on": dict(s.on), "off": dict(s.off)}
                         for s in switches],
            "runs": runs}


def defaults_run_dir(out: str | Path, run: dict[str, Any]) -> Path:
    """The reference's runs are stage 1's (same folder); a switched-off variant's sit beside them."""
    if run["variant"] == REFERENCE:
        return run_dir(out, run)
    return Path(out) / "runs" / run["group"] / f"nll{run['weight']:g}-{run['variant']}" / f"seed{run['seed']}"


def run_defaults_study(out: str | Path, preset: str | Preset = "cpu", seeds: Sequence[int] = SEEDS,
                       switches: Sequence[Switch] = SWITCHES, group: Group = DEFAULTS_GROUP, jobs: int | None = None,
                       device: str | None = "cpu", cache_dir: str | Path | None = None, max_runs: int | None = None,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train stage 2's unfinished runs (resumable). Once every single switch-off has finished and the rule
    switches off more than one default, the plan gains their combination (the protocol's confirmation) and
    its runs are trained in the same call when ``max_runs`` leaves room."""
    out = Path(out)
    combine: Sequence[str] = ()
    if (out / "plan-defaults.json").is_file():
        combine = json.loads((out / "plan-defaults.json").read_text(encoding="utf-8")).get("combine", [])
    total = {"done": 0, "left": 0, "failed": {}}
    for _ in range(2):
        plan = defaults_plan(preset, seeds, switches, group, combine)
        atomic_write_json(out / "plan-defaults.json", plan)
        res = _train_plan(out, plan, lambda r: defaults_run_dir(out, r), lambda r: r["overrides"],
                          "defaults study", jobs, device, cache_dir, max_runs, log)
        total = {"done": total["done"] + res["done"], "left": res["left"], "failed": {**total["failed"], **res["failed"]}}
        if max_runs is not None:
            max_runs = max(0, max_runs - res["done"])
        if combine or res["failed"] or res["left"]:
            break
        choice = choose_defaults(collect_defaults(out))
        if not choice["complete"] or len(choice["switched_off"]) < 2:
            break
        combine = choice["switched_off"]
        log(f"defaults study: {len(combine)} defaults switched off one at a time ({', '.join(combine)}); "
            "training them switched off together, as the protocol says")
    return total


def collect_defaults(out: str | Path) -> dict[str, Any]:
    """The finished runs of ``out/plan-defaults.json``: ``{variant: {seed: {"selection", "test", "flow_bpd"}}}``."""
    out = Path(out)
    plan = json.loads((out / "plan-defaults.json").read_text(encoding="utf-8"))
    p = Preset(**plan["preset_config"])
    metric, key, _ = METRICS[plan["task"]]
    runs: dict[str, dict[int, dict[str, float | None]]] = {}
    for r in plan["runs"]:
        folder = defaults_run_dir(out, r)
        done = finished_run(folder, RunSpec(plan["task"], MODEL, p, seed=r["seed"], model_overrides=r["overrides"]))
        if done is None:
            continue
        last = json.loads((folder / "history.json").read_text(encoding="utf-8"))[-1]
        runs.setdefault(r["variant"], {})[r["seed"]] = {
            "selection": float(last[key]), "test": float(done["metrics"][metric]),
            "flow_bpd": None if last.get("val_flow_bpd") is None else float(last["val_flow_bpd"])}
    return {"plan": plan, "runs": runs}


def choose_defaults(collected: dict[str, Any]) -> dict[str, Any]:
    """Stage 2's rule: per switch, the reference's and the switched-off model's mean selection score, their
    paired per-seed differences (reference minus switched off, positive favouring the default) on the selection
    and test splits, and whether the default is kept (switched off only when that has the better mean); then
    what is adopted (none, the one switch-off, or - when several are switched off - their combination if it
    beats the reference, else the best single one)."""
    plan, runs = collected["plan"], collected["runs"]
    metric, _, higher = METRICS[plan["task"]]
    seeds = plan["seeds"]
    ref = runs.get(REFERENCE, {})

    def better(a: float, b: float) -> bool:
        return a > b if higher else a < b

    def compare(variant: str) -> dict[str, Any]:
        got = runs.get(variant, {})
        entry: dict[str, Any] = {"seeds": len(got), "complete": len(got) == len(seeds) and len(ref) == len(seeds)}
        if got:
            entry["selection_mean"] = _mean([v["selection"] for v in got.values()])
            entry["test_mean"] = _mean([v["test"] for v in got.values()])
        common = sorted(set(ref) & set(got))
        if len(common) >= 2:
            for split in ("selection", "test"):
                entry[f"paired_{split}"] = paired_difference(
                    [ref[s][split] for s in common], [got[s][split] for s in common], higher).to_dict()
        return entry

    reference = {"seeds": len(ref)}
    if ref:
        reference |= {"selection_mean": _mean([v["selection"] for v in ref.values()]),
                      "test_mean": _mean([v["test"] for v in ref.values()])}
    switches: dict[str, Any] = {}
    for s in plan["switches"]:
        e = compare(s["variant"]) | {"default": s["default"], "off": s["off"]}
        e["kept"] = (not better(e["selection_mean"], reference["selection_mean"])) if e["complete"] else None
        e["told_apart"] = _excludes_zero(e.get("paired_selection"))
        switches[s["variant"]] = e
    complete = all(e["complete"] for e in switches.values())
    off = [v for v, e in switches.items() if e["kept"] is False]
    result: dict[str, Any] = {"task": plan["task"], "group": plan["group"], "metric": metric, "higher_is_better": higher,
                              "weight": plan["weight"], "seeds": seeds, "preset": plan["preset"], "complete": complete,
                              "reference": reference, "switches": switches, "switched_off": off}
    adopted: list[str] | None = [] if complete else None
    if complete and len(off) == 1:
        adopted = off
    elif complete and len(off) > 1:
        combined = compare(COMBINED) if plan.get("combine") else {"seeds": 0, "complete": False}
        result["combined"] = combined
        if not combined["complete"]:
            adopted = None
        elif better(combined["selection_mean"], reference["selection_mean"]):
            adopted = list(off)
        else:
            pick = max if higher else min
            adopted = [pick(off, key=lambda v: switches[v]["selection_mean"])]
    result["adopted"] = adopted
    return result


def summarize_defaults(out: str | Path) -> dict[str, Any]:
    """Apply :func:`choose_defaults` to the finished runs; write ``summary-defaults.json`` and ``.md``."""
    out = Path(out)
    summary = choose_defaults(collect_defaults(out))
    atomic_write_json(out / "summary-defaults.json", summary)
    atomic_write_text(out / "summary-defaults.md", defaults_markdown(summary))
    return summary


def defaults_markdown(summary: dict[str, Any]) -> str:
    """Stage 2's choice in sentences and the numbers behind it, from :func:`choose_defaults`'s result."""
    arrow = "higher is better" if summary["higher_is_better"] else "lower is better"
    lines = [f"# The ladder's defaults re-checked on the selection split ({summary['preset']}, generated stand-ins)", "",
             f"Protocol: `PROTOCOL.md`, stage 2 (committed before its runs). {summary['group']}, MANGO at lambda = "
             f"{summary['weight']:g}, seeds {', '.join(map(str, summary['seeds']))}; each default switched off alone. "
             f"Score: the selection split's {summary['metric']} at the last epoch ({arrow}); the test split's numbers "
             "are shown after the choice and decided nothing. Differences: the reference (every default on) minus "
             "the switched-off model per seed, signed so that positive favours the default, mean with its 95 % "
             "Student t interval.", ""]
    for e in summary["switches"].values():
        if e["kept"] is None:
            lines.append(f"- **{e['default']}**: not all runs finished; no choice yet.")
            continue
        verdict = "kept" if e["kept"] else "switched off (the model without it has the better mean)"
        apart = ("told apart on the selection split" if e["told_apart"]
                 else "not told apart on the selection split (the interval contains 0)")
        lines.append(f"- **{e['default']}** {verdict}; {apart}.")
    adopted = summary["adopted"]
    if adopted is None:
        lines.append("- **Adopted**: nothing yet" + (" (the combination of the switched-off defaults is still to train)."
                                                     if summary["complete"] else "."))
    elif not adopted:
        lines.append("- **Adopted**: no change; every default stays as it is.")
    else:
        names = ", ".join(summary["switches"][v]["default"] for v in adopted)
        lines.append(f"- **Adopted**: switched off: {names}.")
    ref = summary["reference"]
    rows = [(f"without {e['default']}", e) for e in summary["switches"].values()]
    if "combined" in summary:
        rows.append(("without " + " and ".join(summary["switches"][v]["default"] for v in summary["switched_off"]),
                     summary["combined"]))
    lines += [""] + table(["model", "seeds", "selection", "selection difference [95 %]", "test", "test difference [95 %]"],
                          [["reference (every default on)", ref["seeds"], _fmt(ref.get("selection_mean")), "-",
                            _fmt(ref.get("test_mean")), "-"]]
                          + [[name, e["seeds"], _fmt(e.get("selection_mean")), _fmt_diff(e.get("paired_selection")),
                              _fmt(e.get("test_mean")), _fmt_diff(e.get("paired_test"))] for name, e in rows])
    lines += ["", "Metric: segmentation mIoU (%) on generated stand-ins, cpu preset."]
    return "\n".join(lines) + "\n"

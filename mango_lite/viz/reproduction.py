"""Reading a reproduction (``results.json`` of :func:`mango_lite.training.reproduce`) against the paper's
claims, plus tables and figures for ablations and computational cost (notebook 08).

* :func:`load_results` / :func:`check_results`: open a results.json and list everything that is
  missing or out of range (every planned task and model present, metrics finite and in range).
* :func:`claim_rows`: per (task, data) group the paper's claim "MANGO beats the baselines" checked on
  our numbers: MANGO's rank, the best baseline, MANGO - Concat / MANGO - TokenFusion gaps, ours beside
  the paper's (as printed), with the direction of the metric taken into account.
* :func:`plot_gains`: MANGO's relative gain over a baseline, ours vs the paper's, one bar pair per group.
* :func:`ablation_rows` / :func:`plot_ablation`: variants of :func:`mango_lite.training.run_ablation`.
* :func:`cost_rows` / :func:`cost_ratios` / :func:`plot_costs`: dicts of
  :func:`mango_lite.training.cost.measure_cost`.

Rows are plain lists of dicts (``pandas.DataFrame(rows)`` turns them into tables) so the package
does not need pandas.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import paper_tables as P
from ..errors import MangoLiteError
from ..tasks import TASKS
from .plots import _finish, _plt

__all__ = [
    "load_results", "check_results", "group_metric", "claim_rows", "plot_gains", "ablation_rows",
    "plot_ablation", "cost_rows", "cost_ratios", "plot_costs",
]

# metric -> (low, high) inclusive bounds a finished run must respect
_RANGES: dict[str, tuple[float, float]] = {
    "pixel_acc": (0.0, 100.0), "mean_acc": (0.0, 100.0), "miou": (0.0, 100.0),
    "micro_f1": (0.0, 100.0), "macro_f1": (0.0, 100.0), "weighted_f1": (0.0, 100.0), "samples_f1": (0.0, 100.0),
    # translation targets live on [-1, 1]: |error| <= 2
    "mae": (0.0, 2.0), "mse": (0.0, 4.0), "rmse": (0.0, 2.0), "mae_x10": (0.0, 20.0), "rmse_x10": (0.0, 20.0),
    "fid_proxy": (0.0, math.inf),
}
_MAIN = {name: task.headline.key for name, task in TASKS.items()}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


# ------------------------------------------------------------------------------- results.json
def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """The content of ``path`` (a results.json or the folder holding one); MangoLiteError naming the file
    when it is missing, not JSON, or lacks the ``results`` mapping."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise MangoLiteError(f"{p}: no results.json (expected the output of "
                             f"`python -m mango_lite reproduce --out DIR`)")
    try:
        res = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MangoLiteError(f"{p}: not readable as JSON ({exc})") from exc
    if not isinstance(res, dict) or not isinstance(res.get("results"), dict):
        raise MangoLiteError(f"{p}: expected an object with a 'results' mapping (task/data -> models), "
                             f"got keys {sorted(res) if isinstance(res, dict) else type(res).__name__}")
    return res


def check_results(results: Mapping[str, Any], expected: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Problems of a reproduction, empty when it is complete and sane.

    ``expected``: ``{group key: [model, ...]}`` that must be present (e.g. from
    :func:`mango_lite.training.plan_runs`: ``{g.key: g.models for g in groups}``); default: every group
    of ``results`` must hold the four fusions. Checks: the reproduction finished; every expected model
    has metrics (not a divergence error); every metric of :data:`_RANGES` it reports is finite and in
    range; the group's main metric is present; ``params`` is a positive int."""
    probs: list[str] = []
    if not results.get("finished"):
        probs.append("the reproduction did not finish (no 'finished' time stamp)")
    res = results.get("results") or {}
    if expected is None:
        expected = {k: ("mango", "concat", "tokenfusion", "crossattn") for k in res}
    for key, models in expected.items():
        entry = res.get(key)
        if entry is None:
            probs.append(f"{key}: group missing")
            continue
        for model in models:
            m = (entry.get("models") or {}).get(model)
            if m is None:
                probs.append(f"{key}/{model}: missing")
                continue
            if "error" in m:
                probs.append(f"{key}/{model}: training failed ({m['error']})")
                continue
            main = _MAIN.get(entry.get("task", ""))
            if main and main not in m:
                probs.append(f"{key}/{model}: main metric {main!r} missing")
            for k, (lo, hi) in _RANGES.items():
                if k in m and not (_finite(m[k]) and lo <= float(m[k]) <= hi):
                    probs.append(f"{key}/{model}: {k}={m[k]!r} not finite or outside [{lo}, {hi}]")
            if not (isinstance(m.get("params"), int) and m["params"] > 0):
                probs.append(f"{key}/{model}: params={m.get('params')!r} is not a positive integer")
    return probs


def group_metric(entry: Mapping[str, Any]) -> tuple[str, str, int, str]:
    """``(our metric key, label, index into the paper's tuple, mode)`` of the number that compares a
    group's rows with the paper's: the task's headline metric (mIoU, macro-F1; :mod:`mango_lite.tasks`),
    except translation, whose paper columns are MAE×10 for non-RGB targets and FID for RGB targets (ours:
    FID on proxy features). ``mode`` is "max" or "min"."""
    if entry["task"] in _GROUP_METRIC:
        return _GROUP_METRIC[entry["task"]]
    from ..datasets.pairs import PAIRS

    if PAIRS[entry["pair"]].rgb_target:
        return "fid_proxy", "FID (ours: proxy features)", 0, "min"
    return "mae_x10", "MAE ×10", 0, "min"


#: the paper-comparable number of the tasks whose paper column is one metric (translation's depends on the pair)
_GROUP_METRIC = {
    "segmentation": ("miou", "mIoU %", P.TABLE1_METRICS.index("miou"), "max"),
    "genre": ("macro_f1", "Macro-F1 %", 2, "max"),
}


def _paper(task: str, key: str, row: str, idx: int) -> float | None:
    """The paper's printed value of ``row`` for a group (dataset / pair name) at tuple index ``idx``."""
    cell = P.printed_cell(task, row, key)  # genre: (modality, micro, macro), idx 1 = micro, 2 = macro
    return None if cell is None else cell[idx]


def _label(entry: Mapping[str, Any]) -> str:
    """Readable group name: the pair label (translation) or the dataset's name (NYUDv2, MM-IMDb)."""
    from ..datasets.constants import DATASET_LABELS

    return entry.get("pair_label") or DATASET_LABELS.get(entry.get("dataset", ""), str(entry.get("dataset")))


def _gain(mango: float | None, base: float | None, mode: str) -> float | None:
    """MANGO's relative improvement over ``base`` in percent, positive = MANGO better in ``mode``."""
    if mango is None or base is None or not (_finite(mango) and _finite(base)) or base == 0:
        return None
    d = (mango - base) if mode == "max" else (base - mango)
    return 100.0 * d / abs(base)


_PAPER_ROWS = {  # the paper rows MANGO is set beside: (concat row, tokenfusion row); genre has neither
    "segmentation": ("Feature Concat (Tiny)", "TokenFusion (Tiny)"),
    "translation": ("Feature Concat (Tiny)", "TokenFusion (Tiny)"),
    "genre": ("Late Fusion [24]", None),
}


def claim_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per group (task/data) of ``results``: does our run support the paper's claim that
    MANGO beats the fusion baselines?

    Keys: ``group``, ``task``, ``measured on``, ``metric``, ``mode``, ``mango`` (ours), ``best baseline``,
    ``best baseline value``, ``mango rank`` (1 = best among every trained model), ``models``,
    ``mango best`` (bool), ``gain vs concat %`` / ``gain vs tokenfusion %`` (ours, relative, positive =
    MANGO better), ``paper mango``, ``paper gain vs concat %`` / ``paper gain vs tokenfusion %`` (from the
    paper's printed Tiny rows; genre: vs Late Fusion, no TokenFusion row)."""
    rows = []
    for e in (results.get("results") or {}).values():
        ours_key, label, idx, mode = group_metric(e)
        vals = {m: float(v[ours_key]) for m, v in (e.get("models") or {}).items()
                if "error" not in v and _finite(v.get(ours_key))}
        if "mango" not in vals:
            continue
        order = sorted(vals, key=lambda m: vals[m], reverse=(mode == "max"))
        others = [m for m in order if m != "mango"]
        best = others[0] if others else None
        dkey = e.get("pair") or e["dataset"]
        crow, trow = _PAPER_ROWS[e["task"]]
        pm, pc = _paper(e["task"], dkey, "MANGO", idx), _paper(e["task"], dkey, crow, idx)
        pt = _paper(e["task"], dkey, trow, idx) if trow else None
        rows.append({
            "group": _label(e), "task": e["task"], "measured on": e.get("data_description", e.get("data")),
            "metric": label, "mode": mode, "mango": vals["mango"], "best baseline": best,
            "best baseline value": vals.get(best) if best else None, "mango rank": order.index("mango") + 1,
            "models": len(order), "mango best": order[0] == "mango",
            "gain vs concat %": _gain(vals["mango"], vals.get("concat"), mode),
            "gain vs tokenfusion %": _gain(vals["mango"], vals.get("tokenfusion"), mode),
            "paper mango": pm, "paper baseline rows": f"{crow}" + (f", {trow}" if trow else ""),
            "paper gain vs concat %": _gain(pm, pc, mode), "paper gain vs tokenfusion %": _gain(pm, pt, mode),
        })
    return rows


def plot_gains(rows: Sequence[Mapping[str, Any]], baseline: str = "concat", path: str | os.PathLike | None = None,
               title: str | None = None, close: bool | None = None) -> Any:
    """Bars of MANGO's relative gain over ``baseline`` ("concat" or "tokenfusion") per group, ours beside
    the paper's (as printed). Positive = MANGO better, whatever the metric's direction."""
    plt = _plt()
    groups = [r["group"] for r in rows]
    ours = [r.get(f"gain vs {baseline} %") for r in rows]
    paper = [r.get(f"paper gain vs {baseline} %") for r in rows]
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 1.5), 3.6))
    f = lambda v: np.nan if v is None else v  # noqa: E731
    ax.bar(x - 0.2, [f(v) for v in ours], 0.4, label="mango_lite (this run)", color="C0")
    ax.bar(x + 0.2, [f(v) for v in paper], 0.4, label="paper (as printed)", color="C7", hatch="//", alpha=0.7)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"MANGO gain over {baseline} (%)")
    ax.set_title(title or f"MANGO vs {baseline}: relative gain on each group's main metric")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, close)


# ------------------------------------------------------------------------------------ ablation
def ablation_rows(report: Mapping[str, Any], reference: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> list[dict[str, Any]]:
    """Rows of a :func:`mango_lite.training.run_ablation` report: ``variant``, ``partitions``, ``blocks``,
    the task's main metric (``report["metric"]``), ``params``, ``wall time (s)``; failed variants carry
    ``error``. ``reference``: extra rows ``{name: {"metrics": ..., "params": ..., "wall_time_s": ...}}``
    (e.g. a Concat run or a second seed) appended with their ``partitions`` when given (a second seed of MANGO),
    else "-" (a model without partitions)."""
    metric = report["metric"]
    rows = []
    for name, v in (report.get("variants") or {}).items():
        over = v.get("overrides") or {}
        parts = over.get("partitions")
        row = {"variant": name, "partitions": "+".join(parts) if parts else "mmca+imca+lica",
               "blocks": over.get("blocks"), metric: (v.get("metrics") or {}).get(metric),
               "params": v.get("params"), "wall time (s)": v.get("wall_time_s")}
        if "error" in v:
            row["error"] = v["error"]
        rows.append(row)
    for name, v in (reference or {}).items():
        rows.append({"variant": name, "partitions": v.get("partitions", "-"), "blocks": v.get("blocks"),
                     metric: (v.get("metrics") or {}).get(metric), "params": v.get("params"),
                     "wall time (s)": v.get("wall_time_s")})
    return rows


def plot_ablation(rows: Sequence[Mapping[str, Any]], metric: str, x: str = "variant", spread: float | None = None,
                  path: str | os.PathLike | None = None, title: str | None = None, close: bool | None = None) -> Any:
    """Bar chart of ``metric`` per row (label ``rows[i][x]``), with params (k) written on each bar;
    ``spread``: a seed-to-seed difference drawn as an error bar on every bar (to read what is noise)."""
    plt = _plt()
    labels = [str(r[x]) for r in rows]
    vals = [np.nan if r.get(metric) is None else float(r[metric]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.4))
    colors = ["C1" if r.get("partitions") == "-" else "C0" for r in rows]
    ax.bar(np.arange(len(rows)), vals, 0.6, color=colors, yerr=None if spread is None else [spread] * len(rows),
           capsize=3)
    for i, r in enumerate(rows):
        if r.get("params"):
            ax.text(i, 0, f"{r['params'] / 1e3:.0f}k", ha="center", va="bottom", fontsize=7, color="w")
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title or f"ablation: {metric}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, close)


# ---------------------------------------------------------------------------------------- cost
def cost_rows(costs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per model of a ``{model: measure_cost dict}`` mapping, in readable units: params (M),
    fusion params (M), forward GFLOPs, train step / inference ms (median and IQR), peak MiB."""
    rows = []
    for name, c in costs.items():
        iqr = c.get("train_step_ms_iqr") or (None, None)
        iqi = c.get("infer_ms_iqr") or (None, None)
        rows.append({
            "model": name, "params (M)": c["params"] / 1e6,
            "fusion params (M)": None if c.get("params_fusion") is None else c["params_fusion"] / 1e6,
            "forward GFLOPs": c.get("forward_gflops"), "train step ms": c.get("train_step_ms"),
            "train IQR ms": f"{iqr[0]:.0f}-{iqr[1]:.0f}" if iqr[0] is not None else "-",
            "inference ms": c.get("infer_ms"),
            "inference IQR ms": f"{iqi[0]:.0f}-{iqi[1]:.0f}" if iqi[0] is not None else "-",
            "peak train MiB": c.get("peak_train_mb"), "peak inference MiB": c.get("peak_infer_mb"),
        })
    return rows


def cost_ratios(costs: Mapping[str, Mapping[str, Any]], num: str = "mango",
                den: str = "tokenfusion") -> dict[str, float]:
    """``costs[num][k] / costs[den][k]`` for the numeric keys of :data:`mango_lite.training.cost.COST_KEYS`
    (e.g. "MANGO needs 6.2x the parameters of TokenFusion"); keys where either value is missing are
    left out. MangoLiteError when ``num`` or ``den`` is not in ``costs``."""
    from ..engine.cost import COST_KEYS

    for m in (num, den):
        if m not in costs:
            raise MangoLiteError(f"cost_ratios: no model {m!r}; measured: {sorted(costs)}")
    out = {}
    for k in COST_KEYS:
        a, b = costs[num].get(k), costs[den].get(k)
        if _finite(a) and _finite(b) and float(b) != 0:
            out[k] = float(a) / float(b)
    return out


def plot_costs(costs: Mapping[str, Mapping[str, Any]], path: str | os.PathLike | None = None,
               title: str | None = None, close: bool | None = None) -> Any:
    """Five panels (params, forward GFLOPs, train step ms with IQR, inference ms with IQR, peak train
    MiB), one bar per model; MANGO in orange."""
    plt = _plt()
    models = list(costs)
    panels = [("params", "parameters (M)", 1e-6, None), ("forward_gflops", "forward GFLOPs", 1.0, None),
              ("train_step_ms", "train step (ms)", 1.0, "train_step_ms_iqr"),
              ("infer_ms", "inference (ms)", 1.0, "infer_ms_iqr"),
              ("peak_train_mb", "peak train memory (MiB)", 1.0, None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2))
    colors = ["C1" if m == "mango" else "C0" for m in models]
    x = np.arange(len(models))
    for ax, (k, lab, s, iq) in zip(axes, panels):
        v = np.array([np.nan if costs[m].get(k) is None else float(costs[m][k]) * s for m in models])
        err = None
        if iq is not None and all(costs[m].get(iq) for m in models):
            lo = np.array([costs[m][iq][0] for m in models])
            hi = np.array([costs[m][iq][1] for m in models])
            err = np.clip(np.stack([v - lo, hi - v]), 0, None)
        ax.bar(x, v, 0.65, color=colors, yerr=err, capsize=2)
        ax.set_xticks(x)
        ax.set_xticklabels(models, rotation=35, ha="right", fontsize=8)
        ax.set_title(lab, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, close)


# ----------------------------------------------------------------------------- curves / summary
def plot_group_curves(results: Mapping[str, Any], base: str | os.PathLike, key: str = "val",
                      path: str | os.PathLike | None = None, title: str | None = None,
                      close: bool | None = None) -> Any:
    """One panel per group of ``results``: the validation curve of the group's main metric
    (``key="val"``) or the training loss (``key="train_loss"``) of every model, read from the
    ``history.json`` of each run folder (``run_dir`` relative to ``base``, the reproduction's OUT).
    Models whose history is gone are skipped; returns None when no history is found."""
    from ..engine.history import History

    plt = _plt()
    panels = []
    for e in (results.get("results") or {}).values():
        metric = group_metric(e)[0]
        k = "train_loss" if key == "train_loss" else f"val_{'mae' if metric in ('mae_x10', 'fid_proxy') else metric}"
        hists = {}
        for model, m in (e.get("models") or {}).items():
            rd = m.get("run_dir")
            if not rd:
                continue
            rd = Path(rd) if Path(rd).is_absolute() else Path(base) / rd
            if (rd / "history.json").is_file():
                hists[model] = History.load(rd).records
        if hists:
            panels.append((_label(e), k, hists))
    if not panels:
        return None
    ncol = min(4, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for ax, (name, k, hists) in zip(axes.flat, panels):
        for j, (model, recs) in enumerate(hists.items()):
            pts = [(int(r.get("epoch", i + 1)), float(r[k])) for i, r in enumerate(recs) if _finite(r.get(k))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "-o", ms=2.5, lw=2.2 if model == "mango" else 1.2,
                        color="C1" if model == "mango" else f"C{[0, 2, 3, 4, 5, 6][j % 6]}", label=model)
        ax.set_title(f"{name}: {k}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, close)


def summarize_claims(rows: Sequence[Mapping[str, Any]], ratios: Mapping[str, float] | None = None) -> str:
    """A short markdown list stating, from the measured ``rows`` of :func:`claim_rows` (and optionally the
    MANGO / TokenFusion :func:`cost_ratios`), which of the paper's claims this run reproduces."""
    if not rows:
        return "- no group has a MANGO result: nothing to compare."
    n = len(rows)
    best = [r["group"] for r in rows if r["mango best"]]
    lines = [f"- **MANGO best on the main metric in {len(best)} of {n} groups**"
             + (f" ({', '.join(best)})" if best else "")
             + "; the paper prints MANGO in bold (best) for every one of these groups."]
    for b in ("concat", "tokenfusion"):
        g = [r for r in rows if r.get(f"gain vs {b} %") is not None]
        if g:
            pos = [r for r in g if r[f"gain vs {b} %"] > 0]
            med = float(np.median([r[f"gain vs {b} %"] for r in g]))
            pg = [r[f"paper gain vs {b} %"] for r in g if r.get(f"paper gain vs {b} %") is not None]
            ptxt = f"; paper: median {np.median(pg):+.1f} %" if pg else ""
            lines.append(f"- MANGO better than {b} in {len(pos)} of {len(g)} groups, median relative gain "
                         f"{med:+.1f} %{ptxt}.")
    ranks = ", ".join(f"{r['group']}: {r['mango rank']}/{r['models']}" for r in rows)
    lines.append(f"- MANGO's rank among all trained models: {ranks}.")
    if ratios:
        parts = [f"{k.replace('_', ' ')} ×{v:.1f}" for k, v in ratios.items()]
        more = all(v > 1 for k, v in ratios.items() if k in ("params", "infer_ms"))
        lines.append(f"- Cost, MANGO / TokenFusion: {', '.join(parts)} — "
                     + ("MANGO is the heavier model, as the paper's cost table says." if more else
                        "not uniformly heavier, unlike the paper's cost table."))
    return "\n".join(lines)

"""Figures of the registration study (:mod:`mango_lite.training.registration`): the dose-response curve."""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..metrics.paired import t_quantile
from .plots import _finish, _plt

#: one colour per model, MANGO and its control first and strongest
_STYLE = {"mango": ("#c0392b", "o", "-"), "mango-noattn": ("#e59866", "o", "--"),
          "mango-gamma-token": ("#884ea0", "D", "-"), "mango-gamma-token-diag": ("#d35400", "D", "--"),
          "concat": ("#5d6d7e", "s", "-"),
          "concat-context": ("#1f618d", "s", "--"), "crossattn": ("#229954", "^", "-"),
          "tokenfusion": ("#b7950b", "v", "-")}


def plot_dose_response(summary: Mapping[str, Any], path: str | os.PathLike | None = None,
                       close: bool | None = None) -> Any:
    """Left: the test metric against the median disparity per model (mean over seeds, 95 % t interval of
    the mean). Right: MANGO minus each model, paired by seed, with its 95 % t interval (0 = no difference),
    where at least two seeds are paired."""
    plt = _plt()
    plan = summary["plan"]
    levels = plan["levels_px"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    models = [m for m in plan["models"] if any(m in row for row in summary["table"].values())]
    width = 0.12 * (max(levels) - min(levels) or 1) / max(len(models), 1)
    for k, m in enumerate(models):
        colour, marker, line = _STYLE.get(m, ("#333333", "o", "-"))
        xs, ys, err = [], [], []
        for lv in levels:
            c = summary["table"].get(f"d{lv:g}px", {}).get(m)
            if c is None:
                continue
            xs.append(lv + (k - len(models) / 2) * width)
            ys.append(c["mean"])
            err.append(t_quantile(0.975, c["n"] - 1) * c["sd"] / c["n"] ** 0.5 if c["n"] > 1 else 0.0)
        ax.errorbar(xs, ys, yerr=err, color=colour, marker=marker, linestyle=line, capsize=3, label=m, lw=1.5, ms=5)
    ax.set_xlabel("median disparity of the depth (px at 64 px)")
    ax.set_ylabel("test mIoU (%)")
    ax.set_xticks(levels)
    ax.set_title("Segmentation on misregistered stand-ins")
    others = [m for m in models if m != "mango"]
    for k, m in enumerate(others):
        colour, marker, _ = _STYLE.get(m, ("#333333", "o", "-"))
        xs, ys, lo, hi = [], [], [], []
        for lv in levels:
            d = summary["mango_minus"].get(f"d{lv:g}px", {}).get(m)
            if d is None or d["n"] < 2:  # a single seed has no interval: not drawn here (the table lists it)
                continue
            xs.append(lv + (k - len(others) / 2) * width)
            ys.append(d["mean"])
            lo.append(d["mean"] - d["low"] if d["n"] > 1 else 0.0)
            hi.append(d["high"] - d["mean"] if d["n"] > 1 else 0.0)
        bx.errorbar(xs, ys, yerr=[lo, hi], color=colour, marker=marker, linestyle="none", capsize=3, label=f"− {m}")
    bx.axhline(0.0, color="black", lw=0.8)
    bx.set_xlabel("median disparity of the depth (px at 64 px)")
    bx.set_ylabel("MANGO − model, mIoU points (paired)")
    bx.set_xticks(levels)
    bx.set_title("MANGO against each model (95 % t interval)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return _finish(fig, path, close)

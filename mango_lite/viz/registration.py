"""Figures of the registration study (:mod:`mango_lite.training.registration`): the dose-response curve, one
misregistered frame, and where the depth tokens' attention lands in RGB."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

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
    # summaries written before the translation study name neither: they are the segmentation study's
    moved = plan.get("displaced", "depth")
    ax.set_xlabel(f"median disparity of the {moved} (px at 64 px)")
    ax.set_ylabel(plan.get("metric_label", "test mIoU (%)"))
    ax.set_xticks(levels)
    ax.set_title(f"{plan['task'].capitalize()} on misregistered stand-ins")
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
    bx.set_xlabel(f"median disparity of the {moved} (px at 64 px)")
    bx.set_ylabel("MANGO − model, points (paired; > 0: MANGO better)")
    bx.set_xticks(levels)
    bx.set_title("MANGO against each model (95 % t interval)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return _finish(fig, path, close)


def plot_misregistered_frame(registered: Mapping[str, Any], displaced: Mapping[str, Any], tag: str = "",
                             path: str | os.PathLike | None = None, close: bool | None = None) -> Any:
    """One stand-in frame rendered twice (:func:`~mango_lite.datasets.synth.misregistration.render_scene_misregistered`
    with baseline 0 and b): the colour image, the registered depth, the depth of the displaced sensor (missing
    pixels black in both: the simulated sensor's dropouts, and in the displaced one also the points the colour
    camera cannot see) and each second-view pixel's disparity f b / z (pixels; hidden pixels white)."""
    from ..datasets.synth.misregistration import disparity_px

    plt = _plt()
    focal, baseline = float(displaced["focal_px"]), float(displaced["baseline_m"])
    disparity = disparity_px(displaced["second_depth_clean"], focal, baseline)
    hidden = np.asarray(displaced["second_hidden"])
    depth_max = float(max(np.max(registered["depth"]), np.max(displaced["depth"])))
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
    axes[0].imshow(registered["rgb"])
    axes[0].set_title("RGB (first camera)")
    depth_cmap = plt.get_cmap("viridis").with_extremes(bad="black")  # missing pixels (sensor dropouts, holes)
    for ax, depth in ((axes[1], registered["depth"]), (axes[2], displaced["depth"])):
        ax.imshow(np.ma.masked_where(np.asarray(depth) <= 0, depth), cmap=depth_cmap, vmin=0, vmax=depth_max)
    axes[1].set_title("depth, same camera (b = 0)")
    axes[2].set_title(f"depth, camera {baseline:.2f} m to the right")
    d = np.ma.masked_where(hidden, disparity)
    im = axes[3].imshow(d, cmap=plt.get_cmap("magma").with_extremes(bad="white"))
    axes[3].set_title(f"disparity f b / z (px), median {np.median(disparity[~hidden]):.1f}")
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if tag:
        fig.suptitle(tag, fontsize=9, y=1.02)
    fig.tight_layout()
    return _finish(fig, path, close)


def plot_offset_mass(offsets: Mapping[str, Mapping[str, Any]], expected: Mapping[str, float], tag: str = "",
                     path: str | os.PathLike | None = None, close: bool | None = None) -> Any:
    """Where the depth tokens look in RGB: per label (e.g. a disparity level), the attention mass of depth's
    rows on RGB tokens of the same grid row by column offset (:func:`~mango_lite.models.cross_modal_offsets`'s
    ``b_to_a``), as bars side by side, with a dashed line at the offset the disparity predicts."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    labels = list(offsets)
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        dist = offsets[label]["b_to_a"]
        xs = np.array(sorted(dist), dtype=float)
        colour = f"C{k}"
        ax.bar(xs + (k - (len(labels) - 1) / 2) * width, [dist[int(x)] for x in xs], width, color=colour,
               label=f"{label}: mean offset {offsets[label]['b_to_a_mean_dc']:+.2f}")
        if label in expected:
            ax.axvline(expected[label], color=colour, ls="--", lw=1.2)
    ax.set_xlabel("column of the RGB token attended - column of the depth token (tokens)")
    ax.set_ylabel("share of the attention mass")
    ax.set_title("IMCA layers: where the depth tokens' attention to RGB lands (dashed: the disparity)"
                 + (f"\n{tag}" if tag else ""), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, close)

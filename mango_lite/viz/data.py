"""Figures and small measurements for the data tour (notebook ``00_data_tour``).

Two kinds of helpers live here, both used by the notebook so that it only narrates:

* **Figures** (return a matplotlib ``Figure``): :func:`rgbd_grid` (NYUDv2 / SUN RGB-D samples with a
  class legend), :func:`taskonomy_grid` (every domain of a few views), :func:`poster_grid` (MM-IMDb
  posters with genres and a plot snippet), :func:`render_breakdown` (the renderer's intermediate
  outputs), :func:`fusion_case_figure` (crops of camouflaged objects and flush decals),
  :func:`contrast_scatter`, :func:`sample_figure` and the optional ipywidgets :func:`sample_browser`;
  :func:`layout_tree` prints a dataset folder the way ``ls`` would, in short.
* **Measurements** that show why the stand-ins need fusion: :func:`band_contrast` /
  :func:`fusion_contrast_table` (how much a camouflaged object or a decal differs from the surface
  around it, in colour and in depth), :func:`pixel_features` + :func:`pixel_probe` (a tiny per-pixel
  classifier on RGB-only, depth-only or both features), and :func:`poster_features`,
  :func:`build_vocab`, :func:`bag_of_words`, :func:`genre_probe` (a linear multi-label probe on poster
  colour statistics, plot words, or both).

Everything is deterministic given its ``seed`` and uses only the core dependencies (numpy, torch,
matplotlib, seaborn / pandas, ipywidgets for the browser). Every figure is titled "generated stand-in"
unless told otherwise (``tag``), because numbers measured on these data are not the real datasets'.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..datasets.constants import MMIMDB_GENRES, NYU40_CLASSES, TASKONOMY_DOMAINS
from ..datasets.taskonomy import decode_taskonomy
from ..datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, MMIMDB_MEAN, MMIMDB_STD
from ..errors import DataError
from ..metrics.segmentation import segmentation_scores
from .plots import label_palette, to_display

__all__ = [
    "STANDIN", "layout_tree", "rgbd_grid", "taskonomy_grid", "poster_grid", "render_breakdown",
    "render_with_scene", "find_fusion_cases", "fusion_case_figure", "band_contrast", "fusion_contrast_table",
    "contrast_scatter", "pixel_features", "stack_items", "pixel_probe", "poster_features", "build_vocab",
    "bag_of_words", "genre_probe", "sample_figure", "sample_browser",
]

STANDIN = "generated stand-in"
ArrayLike = Any  # numpy array or torch tensor


def _np(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _off(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ------------------------------------------------------------------------------------ layout
def layout_tree(root: str | os.PathLike, max_entries: int = 3, list_suffixes: Sequence[str] = (".txt",)) -> str:
    """A short text picture of a dataset folder: each sub-folder with its file count and first file
    names, each top-level file with its size; list files (``*.txt``) also show their line count and
    first line (tabs shown as ``<TAB>``). Raises DataError if ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: expected a dataset folder, but it does not exist or is not a folder")
    lines = [f"{root.name}/"]
    for p in sorted(root.iterdir(), key=lambda q: (q.is_file(), q.name)):
        if p.is_dir():
            names = sorted(q.name for q in p.iterdir())
            more = ", ..." if len(names) > max_entries else ""
            lines.append(f"  {p.name + '/':<22}{len(names):>6} files: {', '.join(names[:max_entries])}{more}")
        elif p.suffix in list_suffixes:
            text = p.read_text(encoding="utf-8").splitlines()
            first = text[0].replace("\t", "<TAB>") if text else ""
            lines.append(f"  {p.name:<22}{len(text):>6} lines: {first}")
        else:
            lines.append(f"  {p.name:<22}{p.stat().st_size:>6} bytes")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ sample grids
def _legend(fig: Figure, ids: Iterable[int], class_names: Sequence[str], ncol: int = 1) -> None:
    pal = label_palette(len(class_names))
    handles = [Patch(color=pal[i] / 255.0, label=f"{i} {class_names[i]}") for i in sorted(set(ids))]
    handles.append(Patch(color="black", label="255 ignore"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, ncol=ncol,
               title="classes shown", frameon=False)


def rgbd_grid(samples: Sequence[Mapping[str, Any]], class_names: Sequence[str], title: str = "",
              tag: str = STANDIN, cell: float = 2.0) -> Figure:
    """RGB / depth / label of RGB-D loader items (:class:`~mango_lite.datasets.NYUDv2`,
    :class:`~mango_lite.datasets.SUNRGBD`), one row per sample, with a legend of the classes present.

    Each item: ``rgb`` float32 (3, H, W) ImageNet-normalised, ``depth`` float32 (1, H, W) normalised
    (pixels at the minimum value -1, i.e. a 0 in the file = no sensor reading, are drawn black),
    ``label`` int64 (H, W) with 255 = ignore, ``name``."""
    n = len(samples)
    if n == 0:
        raise ValueError("rgbd_grid: expected at least one sample, got none")
    num_classes = len(class_names)
    pal = label_palette(num_classes)
    fig, axes = plt.subplots(n, 3, figsize=(3 * cell, n * cell), squeeze=False)
    present: set[int] = set()
    cmap = plt.get_cmap("magma").with_extremes(bad="black")
    for i, s in enumerate(samples):
        rgb = to_display(s["rgb"], IMAGENET_MEAN, IMAGENET_STD)
        d = _np(s["depth"])[0]
        lab = _np(s["label"]).astype(np.int64)
        ok = (lab >= 0) & (lab < num_classes)
        present.update(np.unique(lab[ok]).tolist())
        axes[i, 0].imshow(rgb, interpolation="nearest")
        axes[i, 1].imshow(np.ma.masked_where(d <= -1.0 + 1e-6, d), cmap=cmap, interpolation="nearest")
        axes[i, 2].imshow(pal[np.where(ok, lab, num_classes)], interpolation="nearest")
        axes[i, 0].set_ylabel(str(s.get("name", i)), fontsize=8)
        for j, t in enumerate(("RGB", "depth (black = no reading)", "label")):
            _off(axes[i, j])
            if i == 0:
                axes[i, j].set_title(t, fontsize=9)
    fig.suptitle(f"{title} - {tag}" if title else tag, fontsize=10)
    fig.tight_layout()
    _legend(fig, present, class_names, ncol=1 if len(present) <= 16 else 2)
    return fig


def _domain_image(domain: str, x: ArrayLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Loader tensor (C, H, W) in [-1, 1] -> (image, imshow kwargs) for one Taskonomy domain."""
    x = _np(x)
    if domain == "principal_curvature":
        # R = 127 + 4 k1 (k1 in 1/m) is the informative channel (B is constant); planes are 0
        k1 = (_np(decode_taskonomy(domain, x[0], unit="file")) - 127.0) / 4.0
        return k1, {"cmap": "magma", "vmin": 0.0, "vmax": 10.0, "interpolation": "nearest"}
    if x.shape[0] == 3:
        return to_display(x, value_range=(-1.0, 1.0)), {}
    if domain.startswith("segment"):
        ids = np.rint(_np(decode_taskonomy(domain, x[0], unit="file")))  # cluster ids 0..7
        return ids, {"cmap": "tab10", "vmin": 0, "vmax": 9, "interpolation": "nearest"}
    if domain.startswith("depth"):
        return _np(decode_taskonomy(domain, x[0], unit="metres")), {"cmap": "viridis"}
    img = to_display(x[0:1])  # per-image min-max: edges and shading use a small part of [-1, 1]
    return img, {"cmap": "gray"}


def taskonomy_grid(samples: Sequence[Mapping[str, Any]], domains: Sequence[str] = TASKONOMY_DOMAINS,
                   tag: str = STANDIN, cell: float = 1.45) -> Figure:
    """Every domain (columns) of a few Taskonomy views (rows). Items come from
    :class:`~mango_lite.datasets.Taskonomy` (``{domain: float32 (C, H, W) in [-1, 1], "name"}``).
    Depth is shown in metres (decoded), segment maps as cluster ids, curvature as the first principal
    curvature k1 in 1/m (channel R; 0 = plane, 10 = a 10 cm radius), edges and shading per-image scaled."""
    n = len(samples)
    fig, axes = plt.subplots(n, len(domains), figsize=(cell * len(domains), cell * n + 0.4), squeeze=False)
    for i, s in enumerate(samples):
        for j, dom in enumerate(domains):
            img, kw = _domain_image(dom, s[dom])
            axes[i, j].imshow(img, **kw)
            _off(axes[i, j])
            if i == 0:
                axes[i, j].set_title(dom.replace("_", "\n", 1), fontsize=8)
        axes[i, 0].set_ylabel(str(s.get("name", i)), fontsize=7)
    fig.suptitle(f"Taskonomy layout, every domain of {n} views - {tag}", fontsize=10)
    fig.tight_layout()
    return fig


def poster_grid(items: Sequence[Mapping[str, Any]], genres: Sequence[str] = MMIMDB_GENRES, ncols: int = 4,
                snippet: int = 110, max_lines: int = 4, tag: str = STANDIN) -> Figure:
    """MM-IMDb posters with their genre list (title) and the first ``snippet`` characters of the plot
    (below, at most ``max_lines`` lines). Items come from :class:`~mango_lite.datasets.MMIMDB` (raw source): ``image`` float32
    (3, H, W) MMBT-normalised, ``plot`` str, ``labels`` float32 (23,), ``id``."""
    n = len(items)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 4.7 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, it in enumerate(items):
        ax = axes.ravel()[k]
        ax.imshow(to_display(it["image"], MMIMDB_MEAN, MMIMDB_STD), interpolation="nearest")
        g = [genres[j] for j in np.flatnonzero(_np(it["labels"]) > 0.5)]
        ax.set_title("\n".join(textwrap.wrap(", ".join(g) or "-", 26)), fontsize=8)
        text = it["plot"] if len(it["plot"]) <= snippet else it["plot"][:snippet].rsplit(" ", 1)[0] + " ..."
        lines = textwrap.wrap(text, 30, max_lines=max_lines, placeholder=" ...")
        ax.text(0.0, -0.03, "\n".join(lines), transform=ax.transAxes, fontsize=6.5, va="top", family="serif")
    fig.suptitle(f"MM-IMDb layout: poster, genres (title) and plot (below) - {tag}", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- the renderer, step by step
def render_with_scene(seed: int, size: int) -> tuple[Any, dict[str, np.ndarray]]:
    """``(scene, render output)`` for ``seed``: the same draws as
    :func:`mango_lite.datasets.synth.scenes.render_scene` (so ``out`` equals ``render_scene(seed, size)``),
    but the :class:`~mango_lite.datasets.synth.scenes.Scene` is returned too, for its ``fusion`` lists."""
    from ..datasets.synth.scenes import render, sample_camera, sample_scene

    rng = np.random.default_rng(seed)
    scene = sample_scene(rng)
    cam = sample_camera(scene, rng)
    return scene, render(scene, cam, size, rng)


def render_breakdown(out: Mapping[str, np.ndarray], class_names: Sequence[str] = NYU40_CLASSES,
                     tag: str = STANDIN) -> Figure:
    """Eight panels of one :func:`~mango_lite.datasets.synth.scenes.render` output: albedo (texture),
    reshading (geometry under a canonical light), the final RGB, normals, exact depth, sensor depth
    (black = hole), sensor error (sensor - exact, where a reading exists) and labels."""
    z, zs = out["depth_clean"], out["depth"]
    err = np.where(zs > 0, zs - z, np.nan)
    lim = float(np.nanpercentile(np.abs(err), 99)) if np.isfinite(err).any() else 0.01
    pal = label_palette(len(class_names))
    lab = out["labels"].astype(np.int64)
    panels = [
        ("albedo (procedural texture)", np.clip(out["albedo"], 0, 1) ** (1 / 2.2), {}),
        ("reshading (geometry only)", out["reshading"], {"cmap": "gray", "vmin": 0, "vmax": 1}),
        ("RGB: lights, shadows, gamma", out["rgb"], {}),
        ("normals (camera frame)", 0.5 * (out["normal"] + 1.0), {}),
        ("exact depth [m]", z, {"cmap": "magma"}),
        ("sensor depth [m]", np.ma.masked_where(zs <= 0, zs), {"cmap": plt.get_cmap("magma").with_extremes(bad="black")}),
        (f"sensor - exact [m] (+-{lim:.3f})", err, {"cmap": "coolwarm", "vmin": -lim, "vmax": lim}),
        ("labels (NYU-40 ids)", pal[np.where(lab < len(class_names), lab, len(class_names))], {}),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(11, 6))
    for ax, (t, img, kw) in zip(axes.ravel(), panels):
        ax.imshow(img, interpolation="nearest", **kw)
        ax.set_title(t, fontsize=9)
        _off(ax)
    fig.suptitle(f"one procedurally rendered scene, step by step - {tag}", fontsize=10)
    fig.tight_layout()
    return fig


def find_fusion_cases(seeds: Iterable[int], size: int, per_kind: int = 2, min_pixels: int | None = None,
                      ) -> list[dict[str, Any]]:
    """Up to ``per_kind`` well-visible examples of each fusion case, from scenes rendered with
    :func:`render_with_scene`: ``"rgb_ambiguous"`` (an object with the wall's / floor's material) and
    ``"depth_ambiguous"`` (a flush decal). An instance qualifies when it covers at least ``min_pixels``
    pixels (default 4 % of the image). Each case: ``{"seed", "kind", "instance", "label" (NYU-40 id),
    "out" (render output)}``."""
    min_pixels = int(0.04 * size * size) if min_pixels is None else int(min_pixels)
    found: dict[str, list[dict[str, Any]]] = {"rgb_ambiguous": [], "depth_ambiguous": []}
    for seed in seeds:
        scene, out = render_with_scene(int(seed), size)
        for kind, ids in scene.fusion.items():
            for inst in ids:
                if len(found[kind]) < per_kind and int((out["instance"] == inst).sum()) >= min_pixels:
                    found[kind].append({"seed": int(seed), "kind": kind, "instance": int(inst),
                                        "label": int(scene.instance_labels[inst]), "out": out})
                    break  # at most one case per scene and kind: more variety
        if all(len(v) >= per_kind for v in found.values()):
            break
    return found["rgb_ambiguous"] + found["depth_ambiguous"]


def fusion_case_figure(cases: Sequence[Mapping[str, Any]], class_names: Sequence[str] = NYU40_CLASSES,
                       pad: float = 0.35, tag: str = STANDIN) -> Figure:
    """One row per case of :func:`find_fusion_cases`: the full RGB frame with the crop box, then the RGB,
    sensor-depth and label crops around the instance, its outline drawn on each. ``pad``: crop margin
    as a fraction of the instance's bounding box."""
    fig, axes = plt.subplots(len(cases), 4, figsize=(9, 2.3 * len(cases)), squeeze=False)
    pal = label_palette(len(class_names))
    names = {"rgb_ambiguous": "camouflaged (host's material)", "depth_ambiguous": "flush decal (no depth step)"}
    for row, c in zip(axes, cases):
        out, m = c["out"], c["out"]["instance"] == c["instance"]
        ys, xs = np.nonzero(m)
        H, W = m.shape
        py, px = int(pad * (np.ptp(ys) + 1)) + 2, int(pad * (np.ptp(xs) + 1)) + 2
        y0, y1 = max(ys.min() - py, 0), min(ys.max() + py + 1, H)
        x0, x1 = max(xs.min() - px, 0), min(xs.max() + px + 1, W)
        sl = (slice(y0, y1), slice(x0, x1))
        lab = out["labels"].astype(np.int64)
        zs = out["depth"]
        row[0].imshow(out["rgb"])
        row[0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red", lw=1.2))
        row[1].imshow(out["rgb"][sl], interpolation="nearest")
        row[2].imshow(np.ma.masked_where(zs[sl] <= 0, zs[sl]),
                      cmap=plt.get_cmap("magma").with_extremes(bad="black"), interpolation="nearest")
        row[3].imshow(pal[np.where(lab < len(class_names), lab, len(class_names))][sl], interpolation="nearest")
        for ax in row[1:]:
            ax.contour(m[sl], [0.5], colors="cyan", linewidths=1.0)
        for ax in row:
            _off(ax)
        row[0].set_ylabel(f"{class_names[c['label']]}\n(scene {c['seed']})", fontsize=9)
        row[1].set_title(f"RGB: {names[c['kind']]}", fontsize=8)
        row[2].set_title("sensor depth crop", fontsize=8)
        row[3].set_title("label crop", fontsize=8)
    fig.suptitle(f"the two built-in fusion cases (cyan = the object's outline) - {tag}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------- contrast across a boundary
def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of a bool (H, W) mask by a (2r+1)^2 square."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.max_pool2d(t, 2 * r + 1, stride=1, padding=r)[0, 0].numpy() > 0.5


def band_contrast(out: Mapping[str, np.ndarray], instance: int, width: int = 3,
                  min_pixels: int = 10) -> tuple[float, float] | None:
    """How much instance ``instance`` stands out from the surface around it, in colour and in depth.

    Bands of ``width`` pixels on both sides of its outline are compared: the *outer* band keeps only
    the most common neighbouring instance (the host: the wall behind a cabinet, the wall under a
    picture), the *inner* band the instance's pixels next to that host. Returns
    ``(colour, depth)``: the mean over RGB channels of |median(inner) - median(outer)| in [0, 1]
    sRGB units, and |median exact depth(inner) - median(outer)| / median(outer). ``None`` when either
    band has fewer than ``min_pixels`` pixels. ``out`` is a render output (``instance`` uint16 (H, W),
    ``rgb`` uint8 (H, W, 3), ``depth_clean`` float32 (H, W) metres)."""
    inst = out["instance"].astype(np.int64)
    m = inst == instance
    if m.sum() < min_pixels:
        return None
    outer = _dilate(m, width) & ~m
    if outer.sum() < min_pixels:
        return None
    host = int(np.bincount(inst[outer]).argmax())
    outer &= inst == host
    inner = m & _dilate(outer, width)
    if outer.sum() < min_pixels or inner.sum() < min_pixels:
        return None
    rgb = out["rgb"].astype(np.float32) / 255.0
    z = out["depth_clean"]
    colour = float(np.abs(np.median(rgb[inner], axis=0) - np.median(rgb[outer], axis=0)).mean())
    zo = float(np.median(z[outer]))
    depth = abs(float(np.median(z[inner])) - zo) / zo
    return colour, depth


def fusion_contrast_table(seeds: Iterable[int], size: int = 64, width: int = 3) -> Any:
    """A pandas DataFrame with one row per visible object (instance id >= 7) of the scenes rendered
    from ``seeds``: ``seed``, ``instance``, ``cls`` (NYU-40 name), ``kind`` ("camouflaged",
    "flush decal" or "other object", from ``Scene.fusion``), ``colour`` and ``depth`` from
    :func:`band_contrast`. Objects too small for the bands are left out."""
    import pandas as pd

    rows = []
    for seed in seeds:
        scene, out = render_with_scene(int(seed), size)
        camo, decal = set(scene.fusion.get("rgb_ambiguous", [])), set(scene.fusion.get("depth_ambiguous", []))
        for inst in np.unique(out["instance"]):
            inst = int(inst)
            if inst < 7:  # 1..6 are the room's faces
                continue
            bc = band_contrast(out, inst, width)
            if bc is None:
                continue
            kind = "camouflaged" if inst in camo else "flush decal" if inst in decal else "other object"
            rows.append({"seed": int(seed), "instance": inst, "cls": NYU40_CLASSES[scene.instance_labels[inst]],
                         "kind": kind, "colour": bc[0], "depth": bc[1]})
    return pd.DataFrame(rows)


def contrast_scatter(table: Any, tag: str = STANDIN) -> Figure:
    """Scatter of :func:`fusion_contrast_table` (colour contrast vs relative depth step, log axes),
    one colour per kind, with each kind's median as a large marker."""
    import seaborn as sns

    t = table.copy()
    t["colour"] = t["colour"].clip(lower=2e-3)
    t["depth"] = t["depth"].clip(lower=1e-3)
    order = ["other object", "camouflaged", "flush decal"]
    pal = dict(zip(order, ("#9e9e9e", "#d62728", "#1f77b4")))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    sns.scatterplot(data=t, x="colour", y="depth", hue="kind", hue_order=order, palette=pal, s=18, alpha=0.6,
                    ax=ax, edgecolor="none")
    med = t.groupby("kind")[["colour", "depth"]].median()
    for k in order:
        if k in med.index:
            ax.scatter(med.loc[k, "colour"], med.loc[k, "depth"], s=220, marker="X", color=pal[k],
                       edgecolor="black", linewidth=1.0, zorder=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("colour contrast with the surrounding surface (sRGB, 0-1)")
    ax.set_ylabel("depth step to the surrounding surface (relative)")
    ax.set_title(f"how much each object stands out, per modality (X = median) - {tag}", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ per-pixel probe
def stack_items(dataset: Any, keys: Sequence[str], limit: int | None = None) -> dict[str, torch.Tensor]:
    """Load items ``0..limit-1`` of a map-style dataset and stack each of ``keys`` along a new batch
    dimension (every item must have the same shapes). Returns ``{key: tensor (N, ...)}``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise DataError(f"{dataset!r}: no items to stack")
    items = [dataset[i] for i in range(n)]
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in keys}


def _local_stats(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
    s = (F.avg_pool2d(x * x, k, 1, k // 2, count_include_pad=False) - m * m).clamp_min(0).sqrt()
    return m, s


def pixel_features(rgb: torch.Tensor, depth: torch.Tensor, k: int = 5,
                   hole_value: float = -1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-made per-pixel features of each modality, for :func:`pixel_probe`.

    rgb: float32 (N, 3, H, W) and depth: float32 (N, 1, H, W), as the RGB-D loaders return them.
    Returns ``(f_rgb, f_depth)``: f_rgb float32 (N, 9, H, W) = colour, its k x k local mean and local
    std (texture); f_depth float32 (N, 6, H, W) = depth, its local mean and std, the horizontal and
    vertical gradient of the local mean (surface slant) and a no-reading flag (depth <= ``hole_value``:
    a 0 in the depth file becomes -1 with the loaders' default depth mean/std of 0.5)."""
    if rgb.ndim != 4 or rgb.shape[1] != 3 or depth.ndim != 4 or depth.shape[1] != 1 \
            or rgb.shape[-2:] != depth.shape[-2:] or rgb.shape[0] != depth.shape[0]:
        raise ValueError(f"pixel_features: expected rgb (N,3,H,W) and depth (N,1,H,W) of equal N, H, W, "
                         f"got {tuple(rgb.shape)} and {tuple(depth.shape)}")
    m, s = _local_stats(rgb, k)
    f_rgb = torch.cat([rgb, m, s], 1)
    dm, ds = _local_stats(depth, k)
    gx = F.pad(dm[..., :, 2:] - dm[..., :, :-2], (1, 1, 0, 0), mode="replicate")
    gy = F.pad(dm[..., 2:, :] - dm[..., :-2, :], (0, 0, 1, 1), mode="replicate")
    hole = (depth <= hole_value + 1e-6).float()
    f_depth = torch.cat([depth, dm, ds, gx, gy, hole], 1)
    return f_rgb, f_depth


def pixel_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                num_classes: int, steps: int = 600, hidden: int = 64, batch: int = 2048, lr: float = 3e-3,
                seed: int = 0, ignore_index: int = 255) -> dict[str, Any]:
    """A tiny per-pixel classifier: an MLP (F -> hidden -> hidden -> num_classes, ReLU) trained with
    Adam on random batches of labelled training pixels, then scored on every validation pixel.

    train_x / val_x: float32 (N, F, H, W) features (standardised here with the training mean/std);
    train_y / val_y: int64 (N, H, W) with ``ignore_index`` for void. Returns the dict of
    :func:`mango_lite.metrics.segmentation_scores` (pixel_acc, mean_acc, miou, per-class arrays, in
    percent) plus ``pred`` int64 (N_val, H, W). Deterministic given ``seed`` (single-threaded use
    reproduces bit for bit; thread counts can change the last digits)."""
    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).float()

    X, Y = flat(train_x), train_y.reshape(-1)
    keep = (Y != ignore_index) & (Y >= 0) & (Y < num_classes)
    X, Y = X[keep], Y[keep]
    if X.shape[0] == 0:
        raise ValueError("pixel_probe: no labelled training pixel")
    mu, sd = X.mean(0), X.std(0) + 1e-6
    X = (X - mu) / sd
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))
    opt = torch.optim.Adam(net.parameters(), lr)
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (min(batch, X.shape[0]),), generator=g)
        loss = F.cross_entropy(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net((flat(val_x) - mu) / sd).argmax(1).reshape(val_y.shape)
    scores = segmentation_scores(pred, val_y, num_classes, ignore_index=ignore_index)
    scores["pred"] = pred
    return scores


# ------------------------------------------------------------------------------ MM-IMDb probe
def poster_features(images: torch.Tensor, bins: int = 4, grid: tuple[int, int] = (4, 3)) -> np.ndarray:
    """Simple colour statistics of posters, vectorised over the batch.

    images: float (N, 3, H, W) in [0, 1] (undo the loader's normalisation first). Returns float32
    (N, bins^3 + 3*grid[0]*grid[1] + 5): the square root of the joint RGB histogram (``bins`` per
    channel, fractions of pixels), the mean colour of each cell of a ``grid`` (rows, cols) layout, and
    the mean / std of saturation (max - min channel) and of luminance plus the mean absolute
    horizontal pixel difference (film grain vs flat cartoon colours)."""
    x = images.float().clamp(0, 1)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"poster_features: expected images (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
    n = x.shape[0]
    q = (x * (bins - 1e-3)).long()
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]                      # (N, H, W) joint bin
    idx = idx.reshape(n, -1) + (torch.arange(n) * bins ** 3)[:, None]      # one bincount for the batch
    hist = torch.bincount(idx.reshape(-1), minlength=n * bins ** 3).reshape(n, -1).float()
    hist = (hist / hist.sum(1, keepdim=True)).sqrt()
    layout = F.adaptive_avg_pool2d(x, grid).reshape(n, -1)
    sat = x.amax(1) - x.amin(1)
    lum = x.mean(1)
    grain = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))
    extra = torch.stack([sat.mean((1, 2)), sat.std((1, 2)), lum.mean((1, 2)), lum.std((1, 2)), grain], 1)
    return torch.cat([hist, layout, extra], 1).numpy().astype(np.float32)


def build_vocab(texts: Sequence[str], min_count: int = 2) -> list[str]:
    """Sorted words (``mango_lite.datasets.synth.mmimdb.tokenize``: lower case, numbers -> "N") that
    occur in at least ``min_count`` of ``texts``."""
    from ..datasets.synth.mmimdb import tokenize

    df: dict[str, int] = {}
    for t in texts:
        for w in set(tokenize(t)):
            df[w] = df.get(w, 0) + 1
    return sorted(w for w, c in df.items() if c >= min_count)


def bag_of_words(texts: Sequence[str], vocab: Sequence[str]) -> np.ndarray:
    """Binary bag of words: float32 (len(texts), len(vocab)), 1 where the word occurs in the text;
    words outside ``vocab`` are dropped."""
    from ..datasets.synth.mmimdb import tokenize

    index = {w: j for j, w in enumerate(vocab)}
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    rows = [(i, index[w]) for i, t in enumerate(texts) for w in set(tokenize(t)) if w in index]
    if rows:
        r, c = np.array(rows).T
        out[r, c] = 1.0
    return out


def genre_probe(train_blocks: Sequence[np.ndarray], y_train: np.ndarray, test_blocks: Sequence[np.ndarray],
                l2: float = 1e-6, iters: int = 500, seed: int = 0) -> np.ndarray:
    """Linear multi-label probe (one logistic regression per genre, fitted jointly).

    train_blocks / test_blocks: the same list of feature blocks, float (N, D_b) each (e.g. poster
    features, bag of words, or both). Each block is standardised with its training mean/std and
    divided by sqrt(D_b), so that a block's size does not decide its weight; the blocks are then
    concatenated. y_train: (N, K) 0/1. Minimises mean binary cross-entropy + ``l2`` * ||W||^2 with
    full-batch L-BFGS (float64); per genre this is scikit-learn's ``LogisticRegression(C=1 / (2 * l2 * K * N))``
    on the scaled features. Returns float64 (N_test, K) probabilities; a genre absent from the training
    labels gets probability 0."""
    if len(train_blocks) != len(test_blocks) or not train_blocks:
        raise ValueError(f"genre_probe: expected the same non-zero number of train and test blocks, "
                         f"got {len(train_blocks)} and {len(test_blocks)}")
    tr, te = [], []
    for a, b in zip(train_blocks, test_blocks):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        mu, sd = a.mean(0), a.std(0) + 1e-6
        tr.append((a - mu) / sd / np.sqrt(a.shape[1]))
        te.append((b - mu) / sd / np.sqrt(a.shape[1]))
    X, Xt = torch.from_numpy(np.hstack(tr)), torch.from_numpy(np.hstack(te))
    Y = torch.as_tensor(np.asarray(y_train), dtype=torch.float64)
    torch.manual_seed(seed)
    W = torch.zeros(X.shape[1], Y.shape[1], dtype=torch.float64, requires_grad=True)
    prior = Y.mean(0).clamp(1e-4, 1 - 1e-4)
    b = torch.log(prior / (1 - prior)).clone().requires_grad_(True)   # start at the base rates
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(X @ W + b, Y) + l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        p = torch.sigmoid(Xt @ W + b)
        p[:, Y.sum(0) == 0] = 0.0
    return p.numpy()


# ----------------------------------------------------------------------------------- browser
def sample_figure(name: str, item: Mapping[str, Any], class_names: Sequence[str] | None = None,
                  tag: str = STANDIN) -> Figure:
    """One loader item of any of the four datasets, every modality side by side. ``name`` is the
    dataset ("nyudv2", "sunrgbd", "taskonomy", "mmimdb"); ``class_names`` is needed for the RGB-D sets."""
    if name in ("nyudv2", "sunrgbd"):
        if class_names is None:
            raise ValueError(f"sample_figure: {name} needs class_names")
        return rgbd_grid([item], class_names, title=f"{name} {item.get('name', '')}", tag=tag, cell=2.6)
    if name == "taskonomy":
        doms = [d for d in TASKONOMY_DOMAINS if d in item]
        return taskonomy_grid([item], doms, tag=tag, cell=1.6)
    if name == "mmimdb":
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 4), gridspec_kw={"width_ratios": [1, 2]})
        a.imshow(to_display(item["image"], MMIMDB_MEAN, MMIMDB_STD), interpolation="nearest")
        _off(a)
        b.set_axis_off()
        g = [MMIMDB_GENRES[j] for j in np.flatnonzero(_np(item["labels"]) > 0.5)]
        head = "\n".join(textwrap.wrap("genres: " + (", ".join(g) or "-"), 60))
        text = "\n".join(textwrap.wrap(item["plot"], 60, max_lines=16, placeholder=" ..."))
        b.text(0.0, 1.0, f"{head}\n\n{text}", va="top", fontsize=9, family="serif", transform=b.transAxes)
        fig.suptitle(f"MM-IMDb {item.get('id', '')} - {tag}", fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.03, wspace=0.08)
        return fig
    raise ValueError(f"sample_figure: unknown dataset {name!r}; expected nyudv2, sunrgbd, taskonomy or mmimdb")


def sample_browser(datasets: Mapping[str, Any], class_names: Mapping[str, Sequence[str]] | None = None) -> Any:
    """An ipywidgets browser: a dropdown over ``datasets`` (name -> loader) and a slider over the item
    index; the figure of :func:`sample_figure` is redrawn on every change. Returns the widget (a
    ``VBox``), already showing item 0 of the first dataset, so a notebook run without interaction
    still displays something."""
    import ipywidgets as widgets
    from IPython.display import display

    if not datasets:
        raise ValueError("sample_browser: expected at least one dataset")
    class_names = dict(class_names or {})
    names = list(datasets)
    pick = widgets.Dropdown(options=names, value=names[0], description="dataset")
    index = widgets.IntSlider(value=0, min=0, max=len(datasets[names[0]]) - 1, description="index",
                              continuous_update=False)
    out = widgets.Output()

    def draw(*_: Any) -> None:
        ds = datasets[pick.value]
        index.max = len(ds) - 1
        with out:
            out.clear_output(wait=True)
            fig = sample_figure(pick.value, ds[min(index.value, len(ds) - 1)], class_names.get(pick.value))
            display(fig)
            plt.close(fig)

    pick.observe(draw, names="value")
    index.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([pick, index]), out])

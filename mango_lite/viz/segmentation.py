"""Predictions, per-image scores and attention figures of RGB-D segmentation models (notebook ``05_segmentation``).

* :func:`predict_segmentation` - every model over a whole split, in order: inputs, labels and class maps
  (:class:`SegPredictions`), plus each model's inference time.
* :func:`per_image_pixel_acc` - one pixel accuracy per image, for titles and the browser. (Split-level
  scores always come from one confusion matrix: :func:`mango_lite.metrics.segmentation_scores`.)
* :func:`fusion_case_iou` - each model's mean IoU over the classes of each designed fusion case of the
  stand-in (camouflaged objects only depth tells apart, flush decals only colour does).
* :func:`ica_record_label`, :func:`ica_summary` - a readable name for each ICA layer of a MANGO model and a
  table of its attention weight gamma, cross-modal share and the share expected from content-free attention
  (:func:`uniform_cross_modal_share`).
* :func:`ica_query_map`, :func:`plot_query_attention` - where one transformed token of an MMCA / IMCA layer
  takes its mixture from, drawn at the tokens' places on the image grid of both modalities.
* :func:`plot_contributions` - stacked bars of each model's RGB vs depth share
  (:func:`mango_lite.models.modality_contribution`).
* :func:`segmentation_browser` - an ipywidgets slider over a split: RGB, depth, ground truth and every
  model's prediction.

Conventions: RGB ``float32 (N, 3, H, W)`` ImageNet-normalised, depth ``float32 (N, 1, H, W)`` (the
:class:`~mango_lite.datasets.NYUDv2` loader's), labels ``uint8 (N, H, W)`` with 255 = ignore, class maps
``uint8 (N, H, W)`` (40 / 37 classes fit; uint8 keeps a whole real split in memory).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DataError, MangoLiteError
from ..models.interpret import AttentionRecord, cross_modal_share
from .plots import IMAGENET_MEAN, IMAGENET_STD, _plt, label_palette, segmentation_grid, to_display

__all__ = [
    "STANDIN", "FUSION_CASE_LABELS", "SegPredictions", "predict_segmentation", "per_image_pixel_acc",
    "fusion_case_iou", "ica_record_label",
    "uniform_cross_modal_share", "ica_summary", "ica_query_map", "plot_query_attention", "plot_contributions",
    "segmentation_browser",
]

STANDIN = "generated stand-in"

#: column names of :func:`fusion_case_iou`, by key of :data:`~mango_lite.datasets.synth.scenes.FUSION_CASE_CLASSES`
FUSION_CASE_LABELS = {"rgb_ambiguous": "camouflaged (depth tells)", "depth_ambiguous": "flush (colour tells)"}


def fusion_case_iou(iou: Any) -> Any:
    """Mean IoU of each model over the classes of each designed fusion case.

    ``iou``: pandas DataFrame, one row per model, one column per class name, IoU in percent (NaN where a
    class is absent from both prediction and ground truth). Returns a DataFrame with one row per model and
    one column per case (:data:`FUSION_CASE_LABELS`): the mean over that case's classes
    (:data:`~mango_lite.datasets.synth.scenes.FUSION_CASE_CLASSES`) that are columns of ``iou`` and scored by
    every model; ``result.attrs["classes"]`` names them per column. A case with no such class is NaN."""
    import pandas as pd

    from ..datasets.synth.scenes import FUSION_CASE_CLASSES

    out, used = {}, {}
    for case, classes in FUSION_CASE_CLASSES.items():
        cols = [c for c in classes if c in iou.columns and iou[c].notna().all()]
        label = FUSION_CASE_LABELS[case]
        out[label] = iou[cols].mean(axis=1) if cols else pd.Series(np.nan, index=iou.index)
        used[label] = tuple(cols)
    frame = pd.DataFrame(out)
    frame.attrs["classes"] = used
    return frame


# ------------------------------------------------------------------------------ predictions
@dataclass
class SegPredictions:
    """Inputs, ground truth and every model's class map for the first ``len(self)`` items of a split.

    ``rgb`` float32 (N, 3, H, W), ``depth`` float32 (N, 1, H, W), ``label`` uint8 (N, H, W) (255 = ignore),
    ``preds[name]`` uint8 (N, H, W) class ids, ``seconds[name]`` wall time of that model's forward passes,
    ``names`` the items' file stems."""

    rgb: Tensor
    depth: Tensor
    label: Tensor
    preds: dict[str, Tensor]
    seconds: dict[str, float] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.label.shape[0])


@torch.no_grad()
def predict_segmentation(models: Mapping[str, nn.Module], dataset: Any, a_key: str = "rgb", b_key: str = "depth",
                         target_key: str = "label", batch_size: int = 16, limit: int | None = None) -> SegPredictions:
    """Run every model (eval mode, restored afterwards) over ``dataset`` in order (the first ``limit``
    items, all by default) and collect inputs, labels and ``argmax`` class maps on the CPU.

    Items must hold ``a_key`` float (3, H, W), ``b_key`` float (1, H, W), ``target_key`` int (H, W) and
    optionally ``name``. Raises DataError on an empty dataset or class ids that do not fit uint8."""
    from torch.utils.data import DataLoader, Subset

    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n <= 0:
        raise DataError(f"predict_segmentation: nothing to predict (dataset has {len(dataset)} items, limit={limit})")
    subset = dataset if n == len(dataset) else Subset(dataset, range(n))
    rgb, depth, label, names = [], [], [], []
    preds: dict[str, list[Tensor]] = {k: [] for k in models}
    seconds = {k: 0.0 for k in models}
    was = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
            a, b, y = batch[a_key], batch[b_key], batch[target_key]
            rgb.append(a.float())
            depth.append(b.float())
            label.append(y.to(torch.uint8))
            names.extend(str(s) for s in batch.get("name", [""] * len(y)))
            for k, m in models.items():
                dev = next(m.parameters()).device
                t0 = time.perf_counter()
                out = m(a.to(dev), b.to(dev))
                p = out.pred.argmax(1).cpu()  # (B, C, H, W) logits -> (B, H, W) ids
                seconds[k] += time.perf_counter() - t0
                if p.numel() and int(p.max()) > 255:
                    raise DataError(f"predict_segmentation: model {k!r} predicts class {int(p.max())}; "
                                    "uint8 maps hold ids up to 255")
                preds[k].append(p.to(torch.uint8))
    finally:
        for k, m in models.items():
            m.train(was[k])
    return SegPredictions(torch.cat(rgb), torch.cat(depth), torch.cat(label),
                          {k: torch.cat(v) for k, v in preds.items()}, seconds, names)


def per_image_pixel_acc(pred: Tensor | np.ndarray, label: Tensor | np.ndarray, num_classes: int,
                        ignore_index: int = 255) -> np.ndarray:
    """Pixel accuracy (percent) of each image: float64 (N,) from ``pred``, ``label`` int (N, H, W); pixels with
    ``label == ignore_index`` or outside ``[0, num_classes)`` are skipped; NaN for an image with none left."""
    p = np.asarray(pred.cpu() if isinstance(pred, Tensor) else pred).astype(np.int64)
    y = np.asarray(label.cpu() if isinstance(label, Tensor) else label).astype(np.int64)
    if p.shape != y.shape or p.ndim != 3:
        raise ValueError(f"per_image_pixel_acc: expected pred and label of the same shape (N, H, W), got "
                         f"{p.shape} and {y.shape}")
    valid = (y != ignore_index) & (y >= 0) & (y < num_classes)
    n = valid.sum((1, 2))
    hit = ((p == y) & valid).sum((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, 100.0 * hit / np.maximum(n, 1), np.nan)


# ----------------------------------------------------------------------------- ICA records
_NAME = re.compile(r"stages\.(\d+)\.layers\.(\d+)\.")


def ica_record_label(records: Sequence[AttentionRecord]) -> list[str]:
    """Short labels "s0 b1 IMCA#2" (scale, block within the scale, ordinal of that partition within the
    block, all 0-based) for MANGO records in module order; records whose name does not follow the
    ``stages.S.layers.K.`` pattern keep their name."""
    out: list[str] = []
    blocks: dict[int, list[int]] = {}
    seen: dict[tuple[int, int, str], int] = {}
    for r in records:
        m = _NAME.search(r.name)
        if m is None:
            out.append(r.name)
            continue
        s, k = int(m.group(1)), int(m.group(2))
        ks = blocks.setdefault(s, [])
        if k not in ks:
            ks.append(k)
        key = (s, k, r.partition)
        j = seen.get(key, 0)
        seen[key] = j + 1
        out.append(f"s{s} b{ks.index(k)} {r.partition.upper()}#{j}")
    return out


def _normalised_s(att: Tensor) -> Tensor:
    """S from a recorded A = I + gamma S (..., T, T): identity removed, rows rescaled to sum to 1."""
    a = att.double()
    s = a - torch.eye(a.shape[-1], dtype=a.dtype)
    return s / s.sum(-1, keepdim=True)


def uniform_cross_modal_share(record: AttentionRecord) -> float | None:
    """:func:`~mango_lite.models.cross_modal_share` of ``record``'s partition if the attention ignored the
    content: every row spreads its mass evenly over the tokens the mask allows (j >= i for the upper
    triangle, j <= i for the lower). The
    reference a learned share is compared against (a layer that prefers its own modality falls below it).
    ``None`` where the share is undefined (LICA, cross-attention records)."""
    if record.index is None or record.partition not in ("mmca", "imca"):
        return None
    t = record.attention.shape[-1]
    ones = torch.ones(t, t, dtype=torch.float64)
    tri = ones.tril() if record.triangle == "lower" else ones.triu()
    s = tri / tri.sum(-1, keepdim=True)
    return cross_modal_share(AttentionRecord(record.name, record.partition, record.index,
                                             (torch.eye(t, dtype=torch.float64) + 0.5 * s)[None, None], record.triangle))


def ica_summary(records: Sequence[AttentionRecord]) -> Any:
    """pandas DataFrame, one row per record: ``layer`` (:func:`ica_record_label`), ``partition``, ``tokens``
    (T per modality), ``gamma`` (mean row sum of A minus 1, i.e. the layer's learned attention weight -
    rows of S sum to 1), ``cross_modal_share`` (learned) and ``uniform_share`` (content-free reference)."""
    import pandas as pd

    rows = []
    for label, r in zip(ica_record_label(records), records):
        rows.append({
            "layer": label, "partition": r.partition, "tokens": int(r.attention.shape[-1]),
            "gamma": float(r.attention.double().sum(-1).mean() - 1.0),
            "cross_modal_share": cross_modal_share(r), "uniform_share": uniform_cross_modal_share(r),
        })
    return pd.DataFrame(rows)


def full_row(record: AttentionRecord) -> int:
    """The X2 slot whose attention row the triangular mask leaves whole (it may attend to every X2
    token): 0 for an upper-triangular ICA matrix, T - 1 for a lower one."""
    return int(record.attention.shape[-1]) - 1 if record.triangle == "lower" else 0


def ica_query_map(record: AttentionRecord, grid: tuple[int, int], position: int | None = None, sample: int = 0,
                  head: int = 0) -> tuple[np.ndarray, int]:
    """Where one transformed token of an MMCA / IMCA layer takes its mixture from.

    The layer computes ``Y2 = (I + gamma S) X2``: row ``i`` of ``S`` (rows sum to 1) says how much of every
    X2 token is mixed into X2 token ``i``. This places that row back on the tokens' spatial positions.

    Args:
        record: an ICA record with a token index (MMCA / IMCA; LICA has no fixed token -> place map).
        grid: (h, w) of the token grid of one modality at the record's scale (h * w = T).
        position: original token position (0 .. 2T-1, modality A first, row-major in the grid) of the
            query; it must be an X2 token. ``None``: the X2 token whose row the mask leaves whole (the
            first for an upper-triangular layer, the last for a lower one), so its row is the most
            informative.
        sample, head: which batch item / head of ``record.attention`` (B, heads, T, T).

    Returns:
        (maps float64 (2, h, w): weight on each position of modality A (0) and B (1), NaN at X1 tokens,
        which this layer does not mix; the query position used).
    """
    if record.index is None or record.partition not in ("mmca", "imca"):
        raise MangoLiteError(f"ica_query_map: {record.name} ({record.partition}) has no fixed token -> position "
                             "map (only MMCA and IMCA layers do)")
    h, w = int(grid[0]), int(grid[1])
    t = int(record.attention.shape[-1])
    if h * w != t:
        raise MangoLiteError(f"ica_query_map: grid {h}x{w} = {h * w} positions, but the record has T = {t} tokens")
    x2 = record.index[1].long()
    if position is None:
        row = full_row(record)
        position = int(x2[row])
    else:
        hits = torch.nonzero(x2 == int(position)).flatten()
        if hits.numel() == 0:
            raise MangoLiteError(f"ica_query_map: position {position} is not an X2 (transformed) token of "
                                 f"{record.name}; X2 holds {sorted(x2.tolist())[:8]}...")
        row = int(hits[0])
    s = _normalised_s(record.attention[sample, head])[row]  # (T,) over X2 tokens in X2 order
    flat = np.full(2 * t, np.nan)
    flat[x2.numpy()] = s.numpy()
    return flat.reshape(2, h, w), int(position)


def plot_query_attention(items: Sequence[tuple[str, AttentionRecord]], grid: tuple[int, int], rgb: Any, depth: Any,
                         position: int | None = None, sample: int = 0, names: tuple[str, str] = ("RGB", "depth"),
                         tag: str = STANDIN, cell: float = 2.4) -> Any:
    """One row per ICA record: the query token's mixing weights (:func:`ica_query_map`) over modality A's
    tokens drawn on the RGB image and over modality B's drawn on the depth map (X1 tokens transparent;
    the query marked by a red cross). ``rgb`` (3, H, W) ImageNet-normalised, ``depth`` (1, H, W)."""
    plt = _plt()
    if not items:
        raise ValueError("plot_query_attention: no records given")
    img = to_display(rgb, IMAGENET_MEAN, IMAGENET_STD)
    dep = to_display(depth)
    hh, ww = img.shape[:2]
    h, w = grid
    fig, axes = plt.subplots(len(items), 2, figsize=(2 * cell + 1.0, cell * len(items)), squeeze=False)
    for r, (title, rec) in enumerate(items):
        maps, pos = ica_query_map(rec, grid, position, sample)
        vmax = float(np.nanmax(maps)) if np.isfinite(maps).any() else 1.0
        share = cross_modal_share(rec)
        for m, (bg, cmap_bg) in enumerate(((img, None), (dep, "gray"))):
            ax = axes[r, m]
            ax.imshow(bg, cmap=cmap_bg, extent=(0, ww, hh, 0), interpolation="nearest")
            im = ax.imshow(np.ma.masked_invalid(maps[m]), cmap="magma", alpha=0.75, vmin=0.0, vmax=vmax,
                           extent=(0, ww, hh, 0), interpolation="nearest")
            if pos // (h * w) == m:
                qy, qx = divmod(pos % (h * w), w)
                ax.plot((qx + 0.5) * ww / w, (qy + 0.5) * hh / h, "x", color="red", ms=9, mew=2.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if m == 0:
                extra = "" if share is None else f"\ncross-modal share {share:.2f}"
                ax.set_ylabel(title + extra, fontsize=8)
            ax.set_title(f"{names[m]} tokens", fontsize=8)
        fig.colorbar(im, ax=axes[r, :].tolist(), fraction=0.03, pad=0.02)
    fig.suptitle(f"where the query token (red x) takes its mixture from - {tag}", fontsize=9)
    return fig


# ------------------------------------------------------------------------------ contributions
def plot_contributions(shares: Mapping[str, Mapping[str, Mapping[str, float]]], names: tuple[str, str] = ("RGB", "depth"),
                       tag: str = STANDIN) -> Any:
    """Stacked horizontal bars: ``shares[method][model] = {"a": share_a, "b": share_b}`` (as returned by
    :func:`~mango_lite.models.modality_contribution`), one panel per method, the share of A on the left."""
    plt = _plt()
    methods = list(shares)
    if not methods:
        raise ValueError("plot_contributions: no shares given")
    models = list(shares[methods[0]])
    fig, axes = plt.subplots(1, len(methods), figsize=(4.4 * len(methods), 0.45 * len(models) + 1.4),
                             squeeze=False, sharey=True)
    y = np.arange(len(models))
    for ax, method in zip(axes[0], methods):
        a = np.array([shares[method][m]["a"] for m in models], dtype=float)
        b = np.array([shares[method][m]["b"] for m in models], dtype=float)
        ax.barh(y, a, color="C1", label=names[0])
        ax.barh(y, b, left=a, color="C0", label=names[1])
        for i, v in enumerate(a):
            ax.text(0.02, i, f"{v:.2f}", va="center", fontsize=8, color="white" if v > 0.12 else "black")
        ax.axvline(0.5, color="k", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
        ax.set_yticks(y)
        ax.set_yticklabels(models)
        ax.invert_yaxis()
        ax.set_xlabel(f"share of the output change ({method})")
        ax.set_title(method, fontsize=9)
    axes[0, -1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"modality contribution - {tag}", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ browser
def segmentation_browser(preds: SegPredictions, num_classes: int, class_names: Sequence[str] | None = None,
                         tag: str = STANDIN, ignore_index: int = 255) -> Any:
    """An ipywidgets browser over the items of ``preds``: a slider redraws RGB, depth, every model's
    prediction (titled with its pixel accuracy on this image) and the ground truth, with a legend of the
    classes in the ground truth. Returns a ``VBox`` already showing item 0, so a notebook run without
    interaction still displays something."""
    import ipywidgets as widgets
    from IPython.display import display
    from matplotlib.patches import Patch

    plt = _plt()
    if len(preds) == 0:
        raise ValueError("segmentation_browser: no items")
    acc = {k: per_image_pixel_acc(p, preds.label, num_classes, ignore_index) for k, p in preds.preds.items()}
    pal = label_palette(num_classes)
    index = widgets.IntSlider(value=0, min=0, max=len(preds) - 1, description="sample", continuous_update=False)
    info = widgets.HTML()
    out = widgets.Output()

    def draw(*_: Any) -> None:
        i = int(index.value)
        with out:
            out.clear_output(wait=True)
            titled = {f"{k} ({acc[k][i]:.0f}%)": p[i:i + 1].long() for k, p in preds.preds.items()}
            fig = segmentation_grid(preds.rgb[i:i + 1], preds.depth[i:i + 1], preds.label[i:i + 1].long(), titled,
                                    num_classes, ignore_index, n=1)
            y = preds.label[i].numpy()
            ids = np.unique(y[(y < num_classes)])
            handles = [Patch(color=pal[c] / 255.0, label=class_names[c] if class_names else str(c)) for c in ids]
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
            display(fig)
            plt.close(fig)
        name = preds.names[i] if i < len(preds.names) else str(i)
        info.value = f"<b>{name}</b> (item {i} of {len(preds)}); percentages: this image's pixel accuracy &nbsp; <i>{tag}</i>"

    index.observe(draw, names="value")
    draw()
    return widgets.VBox([index, info, out])

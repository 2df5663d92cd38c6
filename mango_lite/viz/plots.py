"""Figures for notebooks and result folders: learning curves, result bars, qualitative grids
(segmentation, translation, genres) and ICA attention maps.

Every function returns a matplotlib ``Figure`` (shown inline in Jupyter) and, given ``path``, also
saves it atomically as PNG. Images come in as torch tensors or numpy arrays, channel-first
``(N, C, H, W)`` (or a single ``(C, H, W)``); the functions undo the loaders' normalisation when told
the mean/std, or the ``[-1, 1]`` scaling of Taskonomy domains.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_write

ArrayLike = Any  # numpy array or torch tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _plt() -> Any:
    import matplotlib

    if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower() \
            and "ipykernel" not in matplotlib.get_backend().lower():
        # headless (CLI, CI): a non-interactive backend, never a GUI window
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _np(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Atomically save ``fig`` as PNG at ``path`` (parent folders are created)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))


def _finish(fig: Any, path: str | os.PathLike | None, close: bool | None) -> Any:
    if path is not None:
        save_figure(fig, path)
    # when saving from a script, free the figure; in a notebook (no path) keep it for display
    if close if close is not None else path is not None:
        _plt().close(fig)
    return fig


# ------------------------------------------------------------------------------- curves
def write_run_curves(trainer: Any) -> Path | None:
    """A :class:`~mango_lite.training.Trainer` callback (``on_fit_end``, or ``RunOptions(after_fit=...)``): the
    finished run's learning curves as ``OUT/curves.png`` (:func:`plot_history`, titled by the run). Returns
    the path; None, writing nothing, for a run without an output folder or history, or without matplotlib
    (plotting is a nicety: a finished run never fails on it)."""
    if getattr(trainer, "out_dir", None) is None or not len(trainer.history):
        return None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    path = Path(trainer.out_dir) / "curves.png"
    plot_history(trainer.history, path=path, title=trainer.spec.get("title"), close=True)
    return path


def plot_history(history: Any, path: str | os.PathLike | None = None, title: str | None = None,
                 close: bool | None = None) -> Any:
    """Learning curves of a :class:`~mango_lite.engine.history.History` (or a list of records).

    One panel per training loss term ``train_X`` (with ``val_X`` beside it when present) and one panel
    per remaining validation metric (``val_*`` without a training counterpart, e.g. mIoU, F1, MAE)."""
    plt = _plt()
    records = list(getattr(history, "records", history))
    keys: dict[str, None] = {}
    for r in records:
        for k in r:
            keys.setdefault(k, None)
    losses = [k[len("train_"):] for k in keys if k.startswith("train_")]
    # "*_x10" keys only rescale another metric for tables; they would repeat a panel
    metrics = [k for k in keys if k.startswith("val_") and k[len("val_"):] not in losses and not k.endswith("_x10")]
    panels = len(losses) + len(metrics)
    if panels == 0:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.text(0.5, 0.5, "no history yet", ha="center", va="center")
        ax.set_axis_off()
        return _finish(fig, path, close)
    ncols = min(4, panels)
    nrows = math.ceil(panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), squeeze=False)
    flat = axes.ravel()

    def series(key: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for i, r in enumerate(records):
            v = r.get(key)
            if v is not None and isinstance(v, (int, float)):
                xs.append(int(r.get("epoch", i + 1)))
                ys.append(float(v))
        return xs, ys

    i = 0
    for name in losses:
        ax = flat[i]
        i += 1
        for split, style in (("train", "-o"), ("val", "--s")):
            xs, ys = series(f"{split}_{name}")
            if xs:
                ax.plot(xs, ys, style, ms=3, label=split)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for key in metrics:
        ax = flat[i]
        i += 1
        xs, ys = series(key)
        ax.plot(xs, ys, "-o", ms=3, color="C2")
        ax.set_title(key[len("val_"):] + " (val)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in flat[:i]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in flat[i:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path, close)


def plot_curves_overlay(histories: Mapping[str, Any], key: str, path: str | os.PathLike | None = None,
                        title: str | None = None, close: bool | None = None) -> Any:
    """One panel comparing ``key`` (e.g. ``"val_miou"``, ``"train_loss"``) across runs (name -> History)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, h in histories.items():
        recs = list(getattr(h, "records", h))
        pts = [(int(r.get("epoch", j + 1)), float(r[key])) for j, r in enumerate(recs)
               if isinstance(r.get(key), (int, float))]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "-o", ms=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or key)
    fig.tight_layout()
    return _finish(fig, path, close)


def plot_results(results: Mapping[str, Mapping[str, float]], metric: str, paper: Mapping[str, float] | None = None,
                 path: str | os.PathLike | None = None, title: str | None = None, close: bool | None = None) -> Any:
    """Bar chart of one ``metric`` per model (``results[model][metric]``), with the paper's value
    (``paper[model]``) as a hatched bar beside it when given."""
    plt = _plt()
    models = [m for m in results if metric in results[m]]
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(models) + 1.5), 3.2))
    ours = [results[m][metric] for m in models]
    w = 0.38 if paper else 0.6
    ax.bar(x - (w / 2 if paper else 0), ours, w, label="mango_lite (this run)", color="C0")
    if paper:
        vals = [paper.get(m, np.nan) for m in models]
        ax.bar(x + w / 2, vals, w, label="paper (as printed)", color="C7", hatch="//", alpha=0.7)
    ax.set_xticks(x)
    ax.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, close)


def plot_metric_table(rows: Sequence[Sequence[Any]], columns: Sequence[str], path: str | os.PathLike | None = None,
                      title: str | None = None, close: bool | None = None) -> Any:
    """Render a small table (list of rows, column names) as a figure (floats shown with 2 decimals)."""
    plt = _plt()
    cells = [[f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else ("-" if v is None or
              (isinstance(v, float) and not math.isfinite(v)) else str(v)) for v in row] for row in rows]
    fig, ax = plt.subplots(figsize=(min(14, 1.4 * len(columns) + 1), 0.35 * len(rows) + 0.9))
    ax.set_axis_off()
    tab = ax.table(cellText=cells, colLabels=list(columns), loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1.0, 1.25)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, close)


# ------------------------------------------------------------------------- image helpers
def label_palette(num_classes: int, seed: int = 7) -> np.ndarray:
    """uint8 (num_classes + 1, 3) colours: a fixed seaborn ``husl`` ordering shuffled by ``seed`` so
    neighbouring ids differ; the last row (black) is used for ignored pixels."""
    import seaborn as sns

    cols = np.asarray(sns.color_palette("husl", num_classes)) * 255.0
    order = np.random.default_rng(seed).permutation(num_classes)
    pal = np.zeros((num_classes + 1, 3), dtype=np.uint8)
    pal[:num_classes] = cols[order].round().astype(np.uint8)
    return pal


def colorize_labels(labels: ArrayLike, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """int (H, W) class ids -> uint8 (H, W, 3); ids outside ``[0, num_classes)`` (incl. ignore) are black."""
    y = _np(labels).astype(np.int64)
    pal = label_palette(num_classes)
    idx = np.where((y >= 0) & (y < num_classes) & (y != ignore_index), y, num_classes)
    return pal[idx]


def to_display(img: ArrayLike, mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
               value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Channel-first image (C, H, W) -> float (H, W, 3) or (H, W) in [0, 1] for ``imshow``.

    ``mean``/``std`` undo a normalisation (``x * std + mean``); otherwise ``value_range`` (e.g.
    ``(-1, 1)`` for Taskonomy) is mapped to [0, 1]; with neither, min-max scaling per image."""
    x = _np(img).astype(np.float64)
    if x.ndim == 2:
        x = x[None]
    c = x.shape[0]
    if mean is not None and std is not None:
        m = np.asarray(mean, dtype=np.float64).reshape(-1, 1, 1)
        s = np.asarray(std, dtype=np.float64).reshape(-1, 1, 1)
        if m.shape[0] not in (1, c):
            m, s = m[:1], s[:1]
        x = x * s + m
    elif value_range is not None:
        lo, hi = value_range
        x = (x - lo) / (hi - lo)
    else:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    x = np.clip(x, 0.0, 1.0)
    return x[0] if c == 1 else np.transpose(x[:3], (1, 2, 0))


def _grid(nrows: int, ncols: int, cell: float = 1.8) -> tuple[Any, np.ndarray]:
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _show(ax: Any, img: np.ndarray, title: str | None) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1 if img.dtype != np.uint8 else 255,
              interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=8)


def segmentation_grid(rgb: ArrayLike, depth: ArrayLike, target: ArrayLike, preds: Mapping[str, ArrayLike],
                      num_classes: int, ignore_index: int = 255, n: int = 4,
                      rgb_mean: Sequence[float] = IMAGENET_MEAN, rgb_std: Sequence[float] = IMAGENET_STD,
                      path: str | os.PathLike | None = None, close: bool | None = None) -> Any:
    """The paper's qualitative NYUDv2 figure: rows = samples; columns RGB, Depth, one per model, GT.

    rgb (N,3,H,W) ImageNet-normalised; depth (N,1,H,W); target int (N,H,W); preds: name -> int (N,H,W)
    class maps (take ``argmax(1)`` of logits first)."""
    n = min(n, len(target))
    cols = 3 + len(preds)
    fig, axes = _grid(n, cols)
    for i in range(n):
        _show(axes[i, 0], to_display(rgb[i], rgb_mean, rgb_std), "RGB" if i == 0 else None)
        _show(axes[i, 1], to_display(depth[i]), "Depth" if i == 0 else None)
        for j, (name, p) in enumerate(preds.items()):
            _show(axes[i, 2 + j], colorize_labels(p[i], num_classes, ignore_index), name if i == 0 else None)
        _show(axes[i, cols - 1], colorize_labels(target[i], num_classes, ignore_index), "GT" if i == 0 else None)
    fig.tight_layout()
    return _finish(fig, path, close)


def translation_grid(inputs: Mapping[str, ArrayLike], target: ArrayLike, preds: Mapping[str, ArrayLike],
                     target_name: str = "GT", n: int = 4, value_range: tuple[float, float] = (-1.0, 1.0),
                     path: str | os.PathLike | None = None, close: bool | None = None) -> Any:
    """The paper's Taskonomy figure: columns = the two inputs, one per model, ground truth.

    Every image is (N, C, H, W) in ``value_range`` ([-1, 1] for the Taskonomy loader)."""
    n = min(n, len(target))
    cols = len(inputs) + len(preds) + 1
    fig, axes = _grid(n, cols)
    for i in range(n):
        j = 0
        for name, x in inputs.items():
            _show(axes[i, j], to_display(x[i], value_range=value_range), name if i == 0 else None)
            j += 1
        for name, p in preds.items():
            _show(axes[i, j], to_display(p[i], value_range=value_range), name if i == 0 else None)
            j += 1
        _show(axes[i, j], to_display(target[i], value_range=value_range), target_name if i == 0 else None)
    fig.tight_layout()
    return _finish(fig, path, close)


def genre_grid(images: ArrayLike, labels: ArrayLike, probs: ArrayLike, genres: Sequence[str], n: int = 6,
               top_k: int = 3, threshold: float = 0.5, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, path: str | os.PathLike | None = None,
               close: bool | None = None) -> Any:
    """Posters with their true genres and the model's top-k predicted probabilities
    (green = correct positive at ``threshold``, red = false positive, grey = below threshold).

    images (N,3,H,W); labels (N,K) 0/1; probs (N,K) sigmoid probabilities."""
    lab, pr = _np(labels), _np(probs)
    n = min(n, len(lab))
    ncols = min(n, 6)
    nrows = math.ceil(n / ncols)
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(to_display(images[i], mean, std))
        true = [genres[k] for k in np.flatnonzero(lab[i] > 0.5)]
        top = np.argsort(-pr[i])[:top_k]
        lines = []
        colours = []
        for k in top:
            hit = pr[i, k] > threshold
            colours.append("green" if hit and lab[i, k] > 0.5 else ("red" if hit else "grey"))
            lines.append(f"{genres[k]} {pr[i, k]:.2f}")
        ax.set_title("true: " + (", ".join(true) if true else "-"), fontsize=7)
        for j, (line, col) in enumerate(zip(lines, colours)):
            ax.text(0.0, -0.06 - 0.09 * j, line, transform=ax.transAxes, fontsize=7, color=col, va="top")
    fig.tight_layout()
    return _finish(fig, path, close)


# ------------------------------------------------------------------------------ attention
def collect_attention(model: Any) -> list[tuple[str, np.ndarray]]:
    """``[(label, A (T, T) of sample 0, head 0), ...]`` from every module of ``model`` that recorded
    an attention matrix (``last_attention`` set; see :func:`mango_lite.flows.record_attention`)."""
    out = []
    for name, mod in model.named_modules():
        a = getattr(mod, "last_attention", None)
        if a is None:
            continue
        part = getattr(mod, "last_partition", None)
        short = ".".join(name.split(".")[-3:])  # full module paths are too long for a panel title
        label = f"{short} ({part})" if part else short
        out.append((label, _np(a)[0, 0]))
    return out


def plot_attention(maps: Iterable[tuple[str, ArrayLike]] | Sequence[ArrayLike], titles: Sequence[str] | None = None,
                   max_maps: int = 8, log_scale: bool = False, without_identity: bool = False,
                   path: str | os.PathLike | None = None, close: bool | None = None) -> Any:
    """Heatmaps of ICA attention matrices (each (T, T), triangular with the +I diagonal).

    ``maps``: list of matrices or of ``(title, matrix)`` pairs (as :func:`collect_attention` returns).
    ``without_identity``: subtract the +I so the learned attention weights are not drowned by the
    unit diagonal."""
    import seaborn as sns

    items = list(maps)
    if items and isinstance(items[0], tuple):
        titles = [t for t, _ in items]
        mats = [_np(m) for _, m in items]
    else:
        mats = [_np(m) for m in items]
        titles = list(titles) if titles is not None else [f"map {i}" for i in range(len(mats))]
    mats, titles = mats[:max_maps], titles[:max_maps]
    if not mats:
        raise ValueError("plot_attention: no attention maps given (enable record_attention and run a forward pass)")
    ncols = min(4, len(mats))
    nrows = math.ceil(len(mats) / ncols)
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, m, t in zip(axes.ravel(), mats, titles):
        ax.set_axis_on()
        if without_identity and m.ndim == 2 and m.shape[0] == m.shape[1]:
            m = m - np.eye(m.shape[0])
        data = np.log10(np.maximum(m, 1e-6)) if log_scale else m
        sns.heatmap(data, ax=ax, cmap="viridis", square=True, cbar=True, xticklabels=False, yticklabels=False)
        ax.set_title(t, fontsize=7)
    fig.tight_layout()
    return _finish(fig, path, close)

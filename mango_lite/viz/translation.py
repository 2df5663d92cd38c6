"""Where each modality matters, per-sample errors, baselines and Table 2 rows of image-translation models
(notebook ``06_image_translation``).

* :func:`ablation_maps` - *where* in the image each input modality matters: the per-pixel version of
  :func:`mango_lite.models.modality_contribution` (``method="ablation"``). Its spatial mean over the
  image equals that function's ``raw_a`` / ``raw_b``.
* :func:`attention_row_maps` - one row of an ICA attention matrix put back on the image grid: which
  token positions of each modality a re-mixed token draws from.
* :func:`per_sample_mae` - one MAE per image, for ranking and titling samples.
* :func:`median_baseline` - the metrics of a model that ignores its inputs and always predicts the
  per-pixel median training target (the best constant under L1): the floor a trained model must beat.
* :func:`table2_comparison` - our metrics beside the paper's Table 2 rows (as printed), one long table,
  every row saying which data and which feature extractor it was measured with.
* :func:`contrast_stretch` - put predictions and ground truth on the ground truth's own value range, so
  narrow-range targets (log depth occupies a few hundredths of [-1, 1]) are visible in a figure.
* :func:`ablation_grid` - the maps of :func:`ablation_maps` for several models, one row each.
* :func:`translation_panel` / :func:`translation_browser` - one validation sample (inputs, ground truth,
  every model's prediction and its error map) as a figure, and an ipywidgets browser over the
  validation set that redraws it.

Images follow the Taskonomy loader's convention: float tensors (N, C, H, W) (or (C, H, W) for one sample)
in [-1, 1]; translation models output the same range (tanh head).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import MangoLiteError
from ..tasks import IMAGE, TASKS
from .plots import to_display

__all__ = [
    "ablation_maps", "ablation_grid", "attention_row_maps", "contrast_stretch", "median_baseline", "per_sample_mae",
    "table2_comparison", "translation_panel", "translation_browser",
    "STANDIN",
]

STANDIN = "generated stand-in"


# ------------------------------------------------------------------------------- attribution
@torch.no_grad()
def ablation_maps(model: Any, batch_a: Tensor, batch_b: Tensor) -> Tensor:
    """Per-pixel effect of removing each modality from a translation model.

    For modality ``m`` its standardised encoder features are replaced by their population mean (zero,
    exactly as :func:`mango_lite.models.modality_contribution` does) and the output is recomputed; the map
    is the absolute change of the output, averaged over output channels.

    Args:
        model: a translation :class:`~mango_lite.models.TaskModel` (``encode`` / ``decode`` / ``out_size``).
        batch_a, batch_b: float (B, C_a, H, W), (B, C_b, H, W) on the model's device, in [-1, 1].

    Returns:
        float32 (B, 2, H_out, W_out) on the CPU: channel 0 = effect of removing modality A, 1 = B.
        A modality the model does not read (unimodal baselines) gets an all-zero map.
        ``maps[:, m].mean()`` equals ``modality_contribution(model, a, b)["raw_a" / "raw_b"]``.
    """
    task = getattr(model, "task", None)
    if task not in TASKS or TASKS[task].output != IMAGE:
        raise MangoLiteError(f"ablation_maps: expected a translation TaskModel (an image output), got task={task!r}")
    if batch_a.ndim != 4 or batch_b.ndim != 4 or batch_a.shape[0] != batch_b.shape[0]:
        raise MangoLiteError(f"ablation_maps: expected two (B, C, H, W) batches of equal B, got "
                             f"{tuple(batch_a.shape)} and {tuple(batch_b.shape)}")
    was = model.training
    model.eval()
    try:
        size = model.out_size(batch_a, batch_b)
        fa, fb = model.encode(batch_a, batch_b)
        base = model.decode(fa, fb, size).pred.float()
        maps = torch.zeros(base.shape[0], 2, *base.shape[-2:], dtype=torch.float32)
        if fa is not None:
            maps[:, 0] = (model.decode(torch.zeros_like(fa), fb, size).pred.float() - base).abs().mean(1).cpu()
        if fb is not None:
            maps[:, 1] = (model.decode(fa, torch.zeros_like(fb), size).pred.float() - base).abs().mean(1).cpu()
    finally:
        model.train(was)
    return maps


def attention_row_maps(record: Any, row: int, grid: tuple[int, int], sample: int = 0) -> dict[str, Any]:
    """Row ``row`` of one MMCA/IMCA attention record, placed on the token grid of each modality.

    ICA computes ``Y2 = (I + gamma S) X2`` (see :mod:`mango_lite.flows.ica`); row ``i`` of ``S`` says how
    much of each X2 token ``j`` (``j >= i`` for an upper-triangular layer, ``j <= i`` for a lower one) is
    mixed into X2 token ``i``,
    with weights computed from the X1 tokens only. Here ``S`` is recovered as in
    :func:`mango_lite.models.cross_modal_share` (identity removed, rows renormalised, heads averaged) and
    scattered back to the original token positions.

    Args:
        record: an :class:`~mango_lite.models.AttentionRecord` with an ``index`` (MMCA / IMCA; LICA mixes
            tokens with a learned matrix first and has no fixed position map).
        row: the X2 slot (0..T-1) whose weights to show. grid: (h, w) token grid of one modality, h*w = T.

    Returns:
        ``{"maps": float32 (2, h, w)`` - weights on modality A's / B's positions, NaN where the position is
        not in X2 (not attended by construction) - ``"query": (modality 0/1, y, x)`` of the row's own token,
        ``"cross": float`` - the weight mass on the other modality``}``.
    """
    if record.index is None or record.partition not in ("mmca", "imca"):
        raise MangoLiteError(f"attention_row_maps: needs an MMCA/IMCA record with a token index, got "
                             f"partition {record.partition!r}")
    att = record.attention[sample].double().mean(0) if record.attention.ndim == 4 else record.attention[sample].double()
    t = att.shape[-1]
    h, w = int(grid[0]), int(grid[1])
    if h * w != t:
        raise MangoLiteError(f"attention_row_maps: grid {grid} holds {h * w} tokens, the record has T={t}")
    if not 0 <= row < t:
        raise MangoLiteError(f"attention_row_maps: row must be in [0, {t}), got {row}")
    s = att - torch.eye(t, dtype=att.dtype)
    s = s / s.sum(-1, keepdim=True)  # gamma * S -> S (rows sum to 1)
    pos = record.index[1].long()  # original positions 0..2T-1 of the X2 tokens (A first)
    maps = torch.full((2, t), float("nan"), dtype=torch.float64)
    maps[pos // t, pos % t] = s[row]
    q = int(pos[row])
    qmod = q // t
    cross = float(torch.nan_to_num(maps[1 - qmod]).sum())
    return {"maps": maps.reshape(2, h, w).float(), "query": (qmod, (q % t) // w, (q % t) % w), "cross": cross}


def per_sample_mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of each image: (N, C, H, W) x2 -> float64 (N,) (same [-1, 1] scale as the
    table's MAE, so their mean over N equals the dataset MAE for equal-sized images)."""
    if pred.shape != target.shape:
        raise MangoLiteError(f"per_sample_mae: shapes differ, prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
    return (pred.detach().double() - target.detach().double()).abs().flatten(1).mean(1).cpu()


def median_baseline(train_targets: Tensor, val_targets: Tensor) -> dict[str, float]:
    """Metrics of the input-blind predictor ``y_hat = per-pixel median of the training targets``.

    The median minimises the L1 loss among constants, so this is the best a model can do without looking
    at its inputs (per pixel). Args: float (N_train, C, H, W) and (N_val, C, H, W) in [-1, 1].
    Returns ``mae``, ``mse``, ``rmse`` and the table's ``mae_x10`` / ``rmse_x10`` on the validation set."""
    if train_targets.ndim != 4 or val_targets.ndim != 4 or train_targets.shape[1:] != val_targets.shape[1:]:
        raise MangoLiteError(f"median_baseline: expected (N, C, H, W) train/val targets of equal image shape, got "
                             f"{tuple(train_targets.shape)} and {tuple(val_targets.shape)}")
    # torch.median returns the lower of the two middle values for even N; any value between them is an
    # L1 minimiser, so this is still the best constant per pixel
    med = train_targets.double().median(dim=0).values
    d = val_targets.double() - med
    mae, mse = float(d.abs().mean()), float((d * d).mean())
    return {"mae": mae, "mse": mse, "rmse": mse ** 0.5, "mae_x10": 10 * mae, "rmse_x10": 10 * mse ** 0.5}


# ------------------------------------------------------------------------------------ tables
def table2_comparison(ours: Mapping[str, Mapping[str, Mapping[str, float]]], pairs: Sequence[str],
                      data_label: str = STANDIN, size: int | None = None) -> Any:
    """Our translation metrics beside the paper's Table 2 rows, as a long ``pandas.DataFrame``.

    Args:
        ours: ``{pair name: {model name: metrics}}`` with the keys of
            :class:`~mango_lite.training.TranslationAdapter` (``mae_x10``, ``rmse_x10``, and for RGB
            targets ``fid_proxy``, ``kid_x100_proxy``).
        pairs: pair names (``mango_lite.training.PAIRS`` keys) to include, in order.
        data_label: what our rows were measured on; ``size`` their image side (for the label).

    Returns:
        DataFrame indexed by (pair, source, method) with columns ``metrics`` (what the two numbers are),
        ``value 1``, ``value 2`` and, for our rows, ``MAE×10`` / ``RMSE×10``. Paper rows are labelled
        ``paper (as printed)``; for RGB targets the paper's pair is Inception FID / KID×100 and ours the
        PROXY FID / KID×100 of a random-init CNN - on different scales, never to be compared.
    """
    import pandas as pd

    from .. import paper_tables as P
    from ..datasets.pairs import resolve_pair

    rows: list[dict[str, Any]] = []
    ours_src = f"mango_lite, {data_label}" + (f", {size}px" if size else "")
    for name in pairs:
        pair = resolve_pair(name)
        rgb = pair.rgb_target
        for method, vals in P.TABLE2_TRANSLATION.items():
            v = vals.get(pair.name)
            rows.append({
                "pair": pair.label, "source": f"{P.LABEL}, real Taskonomy 256px", "method": method,
                "metrics": "FID / KID×100 (Inception)" if rgb else "MAE×10 / 'MSE'×10",
                "value 1": None if v is None else v[0], "value 2": None if v is None else v[1],
                "MAE×10": None, "RMSE×10": None,
            })
        for model, m in ours.get(pair.name, {}).items():
            if rgb:
                v1, v2, label = m.get("fid_proxy"), m.get("kid_x100_proxy"), "FID / KID×100 (PROXY features)"
            else:
                v1, v2, label = m.get("mae_x10"), m.get("rmse_x10"), "MAE×10 / RMSE×10"
            rows.append({
                "pair": pair.label, "source": ours_src, "method": model, "metrics": label,
                "value 1": v1, "value 2": v2, "MAE×10": m.get("mae_x10"), "RMSE×10": m.get("rmse_x10"),
            })
    if not rows:
        raise MangoLiteError(f"table2_comparison: no rows for pairs {list(pairs)}")
    return pd.DataFrame(rows).set_index(["pair", "source", "method"])


# ---------------------------------------------------------------------------------- figures
def _one(x: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """(C, H, W) in ``value_range`` -> displayable (H, W) or (H, W, 3) in [0, 1]."""
    return to_display(x, value_range=value_range)


def contrast_stretch(images: Mapping[str, Tensor], reference: Tensor) -> tuple[dict[str, Tensor], tuple[float, float]]:
    """Map ``reference`` and every image in ``images`` by the same affine map that sends the reference's
    ``[min, max]`` to ``[-1, 1]``, clipping what falls outside. Predictions and ground truth stay on one
    scale, so the figure remains an honest comparison. Returns ``(stretched images with the reference
    under key "reference", (min, max))``; a constant reference leaves everything unchanged."""
    lo, hi = float(reference.min()), float(reference.max())
    if not hi > lo:
        return {**{k: v for k, v in images.items()}, "reference": reference}, (lo, hi)

    def f(x: Tensor) -> Tensor:
        return ((x.float() - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)

    return {**{k: f(v) for k, v in images.items()}, "reference": f(reference)}, (lo, hi)


def translation_panel(inputs: Mapping[str, Tensor], target: Tensor, preds: Mapping[str, Tensor],
                      target_name: str = "ground truth", show_error: bool = True, title: str = "",
                      stretch: bool = False, cell: float = 1.75) -> Figure:
    """One sample: top row the inputs and the ground truth, then each model's prediction (titled with its
    MAE on this image), and with ``show_error`` a row of |prediction - truth| maps (mean over channels,
    on the [-1, 1] scale, one colour scale shared by all models, from 0 to the largest error shown).

    inputs: name -> (C, H, W); target (C, H, W); preds: name -> (C, H, W); all in [-1, 1].
    ``stretch``: show the ground truth and the predictions on the ground truth's own value range
    (:func:`contrast_stretch`) instead of [-1, 1]; the MAE titles and error maps are unaffected."""
    if target.ndim != 3:
        raise MangoLiteError(f"translation_panel: expected one (C, H, W) target, got {tuple(target.shape)}")
    ncols = max(len(inputs) + 1, len(preds))
    nrows = 2 + int(show_error)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for j, (name, x) in enumerate(inputs.items()):
        axes[0, j].imshow(_one(x), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"input: {name}", fontsize=7)
    vr = (float(target.min()), float(target.max())) if stretch and float(target.max()) > float(target.min()) else (-1.0, 1.0)
    axes[0, len(inputs)].imshow(_one(target, vr), cmap="gray", vmin=0, vmax=1)
    axes[0, len(inputs)].set_title(target_name + (f"\nshown on [{vr[0]:.2f}, {vr[1]:.2f}]" if stretch else ""), fontsize=7)
    errs = {name: (p.float() - target.float()).abs().mean(0) for name, p in preds.items()}
    emax = max([float(e.max()) for e in errs.values()] + [1e-6])
    for j, (name, p) in enumerate(preds.items()):
        err = float((p.double() - target.double()).abs().mean())
        axes[1, j].imshow(_one(p, vr), cmap="gray", vmin=0, vmax=1)
        axes[1, j].set_title(f"{name}\nMAE {err:.3f}", fontsize=7)
        if show_error:
            axes[2, j].imshow(errs[name].numpy(), cmap="magma", vmin=0, vmax=emax)
            axes[2, j].set_title(f"|error| {name}\n(scale 0..{emax:.2f})", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def ablation_grid(maps: Mapping[str, Tensor], names: tuple[str, str], image: Tensor | None = None,
                  image_name: str = "ground truth", title: str = "", cell: float = 1.7) -> Figure:
    """Rows = models; columns = the effect of removing modality A, of removing B (both on one colour scale
    per row), and their difference B - A (red: B matters more, blue: A matters more).

    maps: model name -> float (2, H, W) from :func:`ablation_maps` (one sample); names: the two
    modalities' names; image: optional (C, H, W) in [-1, 1] shown in a first column for orientation."""
    if not maps:
        raise MangoLiteError("ablation_grid: no maps given")
    first = 1 if image is not None else 0
    ncols = first + 3
    fig, axes = plt.subplots(len(maps), ncols, figsize=(cell * ncols + 0.6, cell * len(maps) + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for i, (model, m) in enumerate(maps.items()):
        if m.ndim != 3 or m.shape[0] != 2:
            raise MangoLiteError(f"ablation_grid: maps[{model!r}] should be (2, H, W), got {tuple(m.shape)}")
        m = m.float()
        if image is not None:
            axes[i, 0].imshow(_one(image), cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, 0].set_title(image_name, fontsize=7)
        vmax = max(float(m.max()), 1e-6)
        for j in range(2):
            im = axes[i, first + j].imshow(m[j].numpy(), cmap="viridis", vmin=0, vmax=vmax)
            axes[i, first + j].set_title(f"remove {names[j]}\nmean {float(m[j].mean()):.3f}", fontsize=7)
        fig.colorbar(im, ax=axes[i, first + 1], fraction=0.046, pad=0.02)
        diff = (m[1] - m[0]).numpy()
        lim = max(float(np.abs(diff).max()), 1e-6)
        im2 = axes[i, first + 2].imshow(diff, cmap="coolwarm", vmin=-lim, vmax=lim)
        axes[i, first + 2].set_title(f"{names[1]} - {names[0]}", fontsize=7)
        fig.colorbar(im2, ax=axes[i, first + 2], fraction=0.046, pad=0.02)
        axes[i, 0].set_ylabel(model, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def _predict_item(models: Mapping[str, Any], item: Mapping[str, Any], a_key: str, b_key: str) -> dict[str, Tensor]:
    """Each model's prediction (C, H, W) for one dataset item (models in eval mode on their device)."""
    out: dict[str, Tensor] = {}
    for name, m in models.items():
        dev = next(m.parameters()).device
        was = m.training
        m.eval()
        try:
            out[name] = m(item[a_key][None].to(dev), item[b_key][None].to(dev)).pred[0].float().cpu()
        finally:
            m.train(was)
    return out


def translation_browser(dataset: Any, models: Mapping[str, Any], a_key: str, b_key: str, target_key: str,
                        title: str = "", tag: str = STANDIN, stretch: bool = False) -> Any:
    """ipywidgets browser over ``dataset`` (a Taskonomy loader: items ``{domain: (C, H, W)}``): a slider
    over the index and a checkbox for the error maps; each change runs every model on the item and redraws
    :func:`translation_panel` (``stretch`` is passed on). Returns the widget (``VBox``), already showing item 0, so a notebook run
    without interaction still displays a figure."""
    import ipywidgets as widgets
    from IPython.display import display

    if len(dataset) == 0:
        raise MangoLiteError("translation_browser: the dataset is empty")
    if not models:
        raise MangoLiteError("translation_browser: expected at least one model")
    index = widgets.IntSlider(value=0, min=0, max=len(dataset) - 1, description="val index",
                              continuous_update=False)
    errors = widgets.Checkbox(value=True, description="error maps")
    out = widgets.Output()

    def draw(*_: Any) -> None:
        item = dataset[index.value]
        preds = _predict_item(models, item, a_key, b_key)
        name = item.get("name", index.value)
        with out:
            out.clear_output(wait=True)
            fig = translation_panel({a_key: item[a_key], b_key: item[b_key]}, item[target_key], preds,
                                    target_name=f"ground truth: {target_key}", show_error=errors.value, stretch=stretch,
                                    title=f"{title} - {name} ({tag})".strip(" -"))
            display(fig)
            plt.close(fig)

    index.observe(draw, names="value")
    errors.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([index, errors]), out])

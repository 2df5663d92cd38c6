"""Genre-classification analysis for notebook ``07_genre_classification``: whole-split predictions,
per-genre F1 grouped by which modality can see a genre, per-genre modality reliance, qualitative panels
and an ipywidgets browser.

The MM-IMDb stand-in (:mod:`mango_lite.datasets.synth.mmimdb`) renders every genre through cue bits,
and ``GENRE_CUES`` says which modality carries them: ``"image"`` (poster only), ``"text"`` (plot only),
``"both"`` (an independent noisy copy in each) or ``"synergy"`` (poster bit XOR plot bit). Grouping the
per-genre scores by that design is what makes "does fusion help, and where" measurable:

* :func:`predict_split` - sigmoid probabilities of several models on a whole split, batched.
* :func:`per_genre_f1`, :func:`cue_group_f1` - per-genre F1 (NaN where the split has no positive),
  and micro / macro F1 inside each cue group; :func:`per_genre_auc` (threshold-free ROC-AUC) and
  :func:`group_mean` (mean of any per-genre table over each group); :func:`bootstrap_f1` and
  :func:`bootstrap_table` (paired bootstrap intervals, to tell a gap from test-set noise).
* :func:`read_cues`, :func:`cue_reader` - the generator's cue bits, and readers that see them
  perfectly and learn from the training films which bit patterns mean which genre (a reference that a
  model reading one or both modalities can approach).
* :func:`genre_reliance`, :func:`reliance_by_group` - per genre, how much a model's probabilities move
  when the poster or the plot features are removed (the per-genre version of
  :func:`mango_lite.models.modality_contribution`'s ablation measure).
* :func:`plot_genre_heatmap`, :func:`prediction_figure`, :func:`prediction_browser` - figures.

Scores are in percent, computed with :func:`mango_lite.metrics.multilabel_report` (scikit-learn's
arithmetic, threshold ``p > 0.5``). Every figure carries a ``tag`` saying what data it was measured on.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..datasets.constants import MMIMDB_GENRES
from ..datasets.synth.mmimdb import GENRE_CUES
from ..datasets.transforms import MMIMDB_MEAN, MMIMDB_STD
from ..errors import DataError
from ..metrics.classification import multilabel_f1, multilabel_report
from .plots import _plt, to_display

__all__ = [
    "CUE_GROUPS", "GROUP_LABELS", "GenrePredictions", "genres_by_cue", "genre_order", "predict_split",
    "per_genre_f1", "cue_group_f1", "per_genre_auc", "group_mean", "bootstrap_f1", "bootstrap_table", "read_cues",
    "cue_reader", "genre_reliance", "reliance_by_group",
    "plot_genre_heatmap", "prediction_panel", "prediction_figure", "prediction_browser",
]

CUE_GROUPS: tuple[str, ...] = ("image", "text", "both", "synergy")
GROUP_LABELS: dict[str, str] = {
    "image": "image-only", "text": "text-only", "both": "both (redundant)", "synergy": "synergy (XOR)",
}
STANDIN = "generated stand-in"


# ----------------------------------------------------------------------------------- groups
def genres_by_cue(cues: Mapping[str, str] = GENRE_CUES, genres: Sequence[str] = MMIMDB_GENRES) -> dict[str, list[str]]:
    """``{group: [genre, ...]}`` for the groups of :data:`CUE_GROUPS`, genres in ``genres`` order.
    Raises ValueError when a genre has no cue or an unknown cue kind."""
    out: dict[str, list[str]] = {g: [] for g in CUE_GROUPS}
    for name in genres:
        kind = cues.get(name)
        if kind not in out:
            raise ValueError(f"genres_by_cue: genre {name!r} has cue {kind!r}; expected one of {CUE_GROUPS}")
        out[kind].append(name)
    return out


def genre_order(cues: Mapping[str, str] = GENRE_CUES, genres: Sequence[str] = MMIMDB_GENRES) -> list[str]:
    """Genres sorted by cue group (image, text, both, synergy), frequency order inside a group."""
    return [g for grp in genres_by_cue(cues, genres).values() for g in grp]


# ------------------------------------------------------------------------------ predictions
@dataclass
class GenrePredictions:
    """Predictions of several models on one split.

    ``ids``: (N,) item ids; ``labels``: float32 (N, K) multi-hot; ``probs``: model name -> float32
    (N, K) sigmoid probabilities; ``texts``: (N,) plot strings when modality B is raw text, else None."""

    ids: list[str]
    labels: np.ndarray
    probs: dict[str, np.ndarray]
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def _to(x: Any, dev: torch.device) -> Any:
    return x.to(dev) if isinstance(x, Tensor) else x


@torch.no_grad()
def predict_split(models: Mapping[str, nn.Module], dataset: Any, a_key: str = "image", b_key: str = "plot",
                  target_key: str = "labels", batch_size: int = 32) -> GenrePredictions:
    """Run every model (eval mode, restored afterwards) over the whole ``dataset`` in order.

    Items must hold ``a_key`` (poster, float (3, H, W)), ``b_key`` (plot str or feature vector) and
    ``target_key`` (float (K,)). Returns :class:`GenrePredictions` (probabilities on the CPU)."""
    from torch.utils.data import DataLoader

    if len(dataset) == 0:
        raise DataError("predict_split: the dataset is empty")
    ids: list[str] = []
    texts: list[str] = []
    labels: list[Tensor] = []
    probs: dict[str, list[Tensor]] = {name: [] for name in models}
    was = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            ids.extend(str(i) for i in batch.get("id", [""] * len(batch[target_key])))
            labels.append(batch[target_key].float().cpu())
            b = batch[b_key]
            if isinstance(b, (list, tuple)) and b and isinstance(b[0], str):
                texts.extend(b)
            for name, m in models.items():
                dev = next(m.parameters()).device
                out = m(_to(batch[a_key], dev), _to(b, dev))
                probs[name].append(torch.sigmoid(out.pred.float()).cpu())
    finally:
        for name, m in models.items():
            m.train(was[name])
    return GenrePredictions(
        ids, torch.cat(labels).numpy(), {k: torch.cat(v).numpy() for k, v in probs.items()},
        texts if len(texts) == len(ids) else None,
    )


# ---------------------------------------------------------------------------------- scores
def per_genre_f1(labels: np.ndarray, probs: Mapping[str, np.ndarray], genres: Sequence[str] = MMIMDB_GENRES,
                 threshold: float = 0.5) -> tuple[Any, Any]:
    """Per-genre F1 (%) of every model: ``(table, support)``.

    ``table``: pandas DataFrame, index = model names, columns = ``genres``; a genre with no positive in
    ``labels`` gets NaN (its F1 is 0 or 0/0 whatever the model does, so it measures nothing).
    ``support``: pandas Series genre -> number of positives. ``labels`` (N, K) 0/1, ``probs[m]`` (N, K)."""
    import pandas as pd

    rows = {}
    support = None
    for name, p in probs.items():
        rep = multilabel_report(labels, p, threshold, class_names=list(genres))["per_class"]
        f1 = np.asarray(rep["f1"], dtype=np.float64)
        support = np.asarray(rep["support"])
        rows[name] = np.where(support > 0, f1, np.nan)
    if support is None:
        raise ValueError("per_genre_f1: no model predictions given")
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(genres)), pd.Series(support, index=list(genres))


def cue_group_f1(labels: np.ndarray, probs: Mapping[str, np.ndarray], genres: Sequence[str] = MMIMDB_GENRES,
                 cues: Mapping[str, str] = GENRE_CUES, average: str = "micro", threshold: float = 0.5) -> Any:
    """F1 (%) of every model inside each cue group: DataFrame, index = models, columns = groups.

    ``average="micro"``: counts pooled over the group's genres (stable on small splits);
    ``"macro"``: mean per-genre F1 over the group's genres that have a positive in ``labels``."""
    import pandas as pd

    if average not in ("micro", "macro"):
        raise ValueError(f"cue_group_f1: average must be 'micro' or 'macro', got {average!r}")
    groups = genres_by_cue(cues, genres)
    col = {g: i for i, g in enumerate(genres)}
    if average == "macro":
        return group_mean(per_genre_f1(labels, probs, genres, threshold)[0], cues)
    out: dict[str, dict[str, float]] = {}
    for name, p in probs.items():
        out[name] = {}
        for grp, names in groups.items():
            idx = [col[g] for g in names]
            out[name][grp] = multilabel_f1(labels[:, idx], p[:, idx], threshold)["micro"]
    return pd.DataFrame.from_dict(out, orient="index")[list(groups)]


def per_genre_auc(labels: np.ndarray, probs: Mapping[str, np.ndarray], genres: Sequence[str] = MMIMDB_GENRES) -> Any:
    """Per-genre ROC-AUC (%) of every model: DataFrame, index = models, columns = ``genres``.

    Threshold-free: how well the probabilities *rank* the films of a genre above the others (50 =
    chance), so it still shows what an under-trained model has learned about a rare genre whose
    probabilities never pass 0.5. Mann-Whitney form with mid-ranks for ties (equal to
    ``sklearn.metrics.roc_auc_score``); NaN where the split has no positive or no negative."""
    import pandas as pd
    from scipy.stats import rankdata

    y = np.asarray(labels) > 0.5
    n_pos = y.sum(0).astype(np.float64)  # (K,)
    n_neg = y.shape[0] - n_pos
    rows = {}
    for name, p in probs.items():
        p = np.asarray(p, dtype=np.float64)
        if p.shape != y.shape:
            raise ValueError(f"per_genre_auc: probabilities of {name!r} have shape {p.shape}, labels {y.shape}")
        ranks = rankdata(p, axis=0)  # (N, K) mid-ranks per genre column
        u = (ranks * y).sum(0) - n_pos * (n_pos + 1) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            rows[name] = np.where((n_pos > 0) & (n_neg > 0), 100.0 * u / (n_pos * n_neg), np.nan)
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(genres))


def group_mean(table: Any, cues: Mapping[str, str] = GENRE_CUES) -> Any:
    """Mean of a models x genres table (per-genre F1 or AUC) over each cue group's genres, NaN cells
    skipped: DataFrame, index = models, columns = groups."""
    import pandas as pd

    groups = genres_by_cue(cues, list(table.columns))
    return pd.DataFrame({grp: table[names].mean(axis=1, skipna=True) for grp, names in groups.items()})


def bootstrap_f1(labels: np.ndarray, probs: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0,
                 threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Micro and macro F1 (%) of every model on ``n_boot`` bootstrap resamples of the films.

    Every model is scored on the *same* resamples (paired), so differences between models can be read
    off directly. Resample b draws N films with replacement; it is a multiplicity vector
    ``w_b`` (N,), so the counts are ``TP = w_b @ (pred & y)`` etc. - one matrix product per model, no
    loop over resamples. Scores follow :func:`mango_lite.metrics.multilabel_f1` (macro over all K
    genres, a 0/0 genre scores 0). Returns model -> float64 (n_boot, 2): columns micro, macro."""
    y = np.asarray(labels) > 0.5
    if y.ndim != 2 or n_boot < 1:
        raise ValueError(f"bootstrap_f1: expected (N, K) labels and n_boot >= 1, got {y.shape} and {n_boot}")
    n = y.shape[0]
    w = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, N)
    out: dict[str, np.ndarray] = {}
    for name, p in probs.items():
        pred = np.asarray(p) > threshold
        if pred.shape != y.shape:
            raise ValueError(f"bootstrap_f1: probabilities of {name!r} have shape {pred.shape}, labels {y.shape}")
        tp = w @ (pred & y)  # (B, K)
        den = 2 * tp + w @ (pred & ~y) + w @ (~pred & y)
        with np.errstate(invalid="ignore", divide="ignore"):
            micro = np.where(den.sum(1) > 0, 2 * tp.sum(1) / den.sum(1), 0.0)
            macro = np.where(den > 0, 2 * tp / den, 0.0).mean(1)
        out[name] = 100.0 * np.stack([micro, macro], axis=1)
    return out


def bootstrap_table(boot: Mapping[str, np.ndarray], reference: str = "mango", level: float = 0.95) -> Any:
    """Percentile intervals from :func:`bootstrap_f1`: per model the ``level`` interval of micro and
    macro F1, and of the paired difference ``reference - model`` with the share of resamples in which
    ``reference`` is ahead. DataFrame, index = models."""
    import pandas as pd

    if reference not in boot:
        raise ValueError(f"bootstrap_table: reference {reference!r} not among {list(boot)}")
    lo, hi = 50 * (1 - level), 100 - 50 * (1 - level)
    rows = {}
    for name, b in boot.items():
        row: dict[str, Any] = {}
        for j, metric in enumerate(("micro", "macro")):
            row[f"{metric} F1 CI"] = f"[{np.percentile(b[:, j], lo):.1f}, {np.percentile(b[:, j], hi):.1f}]"
            if name != reference:
                d = boot[reference][:, j] - b[:, j]
                row[f"{reference} - model, {metric} CI"] = f"[{np.percentile(d, lo):+.1f}, {np.percentile(d, hi):+.1f}]"
                row[f"P({reference} ahead, {metric})"] = float((d > 0).mean())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


# ------------------------------------------------------------------------------ cue readers
def read_cues(root: str | Path, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The generator's cue bits of items ``ids`` from ``root/synthetic_cues.npz`` (written by
    :func:`mango_lite.datasets.synth.mmimdb.write_mmimdb`; real MM-IMDb has no such file).

    Returns ``{"labels", "image_cue", "text_cue"}``, each bool (len(ids), 23), rows in ``ids`` order.
    Raises DataError when the file is missing or an id is not in it."""
    path = Path(root) / "synthetic_cues.npz"
    if not path.is_file():
        raise DataError(f"{path}: not found - cue bits exist only for the generated MM-IMDb stand-in")
    with np.load(path) as z:
        all_ids = [str(i) for i in z["ids"]]
        pos = {i: k for k, i in enumerate(all_ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DataError(f"{path}: {len(missing)} ids not found (e.g. {missing[:3]})")
        rows = np.asarray([pos[i] for i in ids], dtype=np.int64)
        return {k: np.asarray(z[k][rows], dtype=bool) for k in ("labels", "image_cue", "text_cue")}


def cue_reader(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], prior: float = 1.0
               ) -> dict[str, np.ndarray]:
    """Probabilities (N_test, K) of three *cue readers*: per genre, a lookup table from the generator's
    cue bits to the frequency of the genre among the training films with the same bits.

    * ``"cue reader: poster"`` reads the poster bit, ``"cue reader: plot"`` the plot bit;
    * ``"cue reader: both"`` reads the pair (4 patterns), so it can learn OR / AND for the redundant
      genres and XOR for the synergy genres by itself.

    ``train`` / ``test``: ``{"labels", "image_cue", "text_cue"}`` bool (N, K) as :func:`read_cues`
    returns. The frequency is smoothed towards the genre's training prior with weight ``prior`` films,
    so an unseen pattern gets the prior. Thresholded at 0.5 this is the Bayes decision from the cue
    bits alone - what a perfect, calibrated reader of one or both modalities trained on the same films
    would predict (models also see label co-occurrence, so they can beat it on a hidden genre)."""
    y = np.asarray(train["labels"], dtype=bool)
    if y.ndim != 2:
        raise ValueError(f"cue_reader: expected (N, K) training labels, got shape {y.shape}")
    n, k = y.shape
    for src in (train, test):
        for key in ("image_cue", "text_cue"):
            if np.asarray(src[key]).shape[1:] != (k,):
                raise ValueError(f"cue_reader: {key} must be (N, {k}), got {np.asarray(src[key]).shape}")
    base = (y.sum(0) + 0.5) / (n + 1.0)  # (K,) smoothed prior, never exactly 0 or 1

    def lookup(code_tr: np.ndarray, code_te: np.ndarray, patterns: int) -> np.ndarray:
        out = np.empty(code_te.shape, dtype=np.float64)
        for c in range(patterns):  # a handful of patterns: vectorised over films and genres
            m = code_tr == c
            den = m.sum(0) + prior  # (K,); 0 only for an unseen pattern without smoothing
            rate = np.where(den > 0, ((y & m).sum(0) + prior * base) / np.maximum(den, 1e-12), base)
            out = np.where(code_te == c, rate[None, :], out)
        return out.astype(np.float32)

    ia, ta = np.asarray(train["image_cue"], bool).astype(np.int64), np.asarray(train["text_cue"], bool).astype(np.int64)
    ib, tb = np.asarray(test["image_cue"], bool).astype(np.int64), np.asarray(test["text_cue"], bool).astype(np.int64)
    return {"cue reader: poster": lookup(ia, ib, 2), "cue reader: plot": lookup(ta, tb, 2),
            "cue reader: both": lookup(2 * ia + ta, 2 * ib + tb, 4)}


# --------------------------------------------------------------------------------- reliance
@torch.no_grad()
def genre_reliance(model: Any, batch_a: Any, batch_b: Any) -> np.ndarray:
    """Per-genre modality reliance of a genre :class:`~mango_lite.models.TaskModel` on one batch.

    Row 0 (poster) / row 1 (plot): mean over the batch of ``|p_k - p_k'|`` where ``p`` are the sigmoid
    probabilities (B, K) and ``p'`` those with that modality's standardised encoder features replaced by
    their mean (zero) - the ablation of :func:`mango_lite.models.modality_contribution`, kept per genre.
    Returns float64 (2, K); a modality the model does not read gets an exact 0 row."""
    was = model.training
    model.eval()
    try:
        fa, fb = model.encode(batch_a, batch_b)
        base = torch.sigmoid(model.decode(fa, fb, None).pred.float())
        out = np.zeros((2, base.shape[1]))
        if fa is not None:
            out[0] = (base - torch.sigmoid(model.decode(torch.zeros_like(fa), fb, None).pred.float())).abs().mean(0).cpu().numpy()
        if fb is not None:
            out[1] = (base - torch.sigmoid(model.decode(fa, torch.zeros_like(fb), None).pred.float())).abs().mean(0).cpu().numpy()
    finally:
        model.train(was)
    return out


def reliance_by_group(reliance: Mapping[str, np.ndarray], genres: Sequence[str] = MMIMDB_GENRES,
                      cues: Mapping[str, str] = GENRE_CUES) -> Any:
    """Poster share of the reliance per cue group: DataFrame, index = models, columns = groups,
    value = sum of poster reliance / (poster + plot) over the group's genres (NaN if both are 0).
    ``reliance[m]``: (2, K) from :func:`genre_reliance`."""
    import pandas as pd

    groups = genres_by_cue(cues, genres)
    col = {g: i for i, g in enumerate(genres)}
    out: dict[str, dict[str, float]] = {}
    for name, r in reliance.items():
        r = np.asarray(r, dtype=np.float64)
        out[name] = {}
        for grp, names in groups.items():
            idx = [col[g] for g in names]
            a, b = r[0, idx].sum(), r[1, idx].sum()
            out[name][grp] = float(a / (a + b)) if a + b > 0 else math.nan
    return pd.DataFrame.from_dict(out, orient="index")[list(groups)]


# ---------------------------------------------------------------------------------- figures
def plot_genre_heatmap(table: Any, support: Any | None = None, cues: Mapping[str, str] = GENRE_CUES,
                       title: str = "", tag: str = STANDIN, fmt: str = ".0f", cmap: str = "rocket",
                       vmin: float = 0.0, vmax: float = 100.0) -> Any:
    """Heatmap of a models x genres table (e.g. per-genre F1 from :func:`per_genre_f1`), genres
    ordered by cue group with the groups marked above the columns; NaN cells (no positive in the split)
    are left blank. ``support``: Series genre -> positives, shown in the column labels."""
    import seaborn as sns

    plt = _plt()
    order = [g for g in genre_order(cues, list(table.columns)) if g in table.columns]
    data = table[order]
    fig, ax = plt.subplots(figsize=(0.55 * len(order) + 2.5, 0.42 * len(data) + 2.0))
    sns.heatmap(data, ax=ax, annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, cbar=True,
                annot_kws={"fontsize": 7}, linewidths=0.4, linecolor="white")
    labels = [f"{g} ({int(support[g])})" if support is not None else g for g in order]
    ax.set_xticks(np.arange(len(order)) + 0.5)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    start = 0
    for grp, names in genres_by_cue(cues, order).items():
        if not names:
            continue
        end = start + len(names)
        if start:
            ax.axvline(start, color="white", lw=3)
        ax.text((start + end) / 2, -0.25, GROUP_LABELS[grp], ha="center", va="bottom", fontsize=8,
                fontweight="bold", transform=ax.transData, clip_on=False)
        start = end
    ax.set_title(f"{title} - {tag}" if title else tag, fontsize=10, pad=22)
    fig.tight_layout()
    return fig


def _active_genres(label: np.ndarray, probs: Mapping[str, np.ndarray], genres: Sequence[str],
                   cues: Mapping[str, str], threshold: float, max_rows: int) -> list[int]:
    """Rows of a panel: genres that are true or predicted by some model, by cue group, then the
    highest-probability remaining genres until there are at least 3."""
    col = {g: i for i, g in enumerate(genres)}
    on = label > 0.5
    for p in probs.values():
        on = on | (p > threshold)
    rows = [col[g] for g in genre_order(cues, genres) if on[col[g]]]
    if len(rows) < 3:
        best = np.max(np.stack(list(probs.values())), axis=0) if probs else np.zeros(len(genres))
        rows += [int(k) for k in np.argsort(-best) if int(k) not in rows][: 3 - len(rows)]
    return rows[:max_rows]


def prediction_panel(ax_img: Any, ax_tab: Any, image: Any, label: np.ndarray, probs: Mapping[str, np.ndarray],
                     genres: Sequence[str] = MMIMDB_GENRES, cues: Mapping[str, str] = GENRE_CUES,
                     plot: str | None = None, threshold: float = 0.5, max_rows: int = 10,
                     mean: Sequence[float] = MMIMDB_MEAN, std: Sequence[float] = MMIMDB_STD,
                     snippet: int = 160) -> None:
    """One sample: the poster (``ax_img``) and a genre x model grid of probabilities (``ax_tab``).

    ``image`` float (3, H, W) normalised with ``mean``/``std``; ``label`` (K,) 0/1; ``probs``: model ->
    (K,). Rows: genres that are true or predicted (``> threshold``) by any model, tagged with their cue
    group; a first column "truth"; cells above the threshold are boxed (green = correct, red = wrong)."""
    from matplotlib.patches import Rectangle

    ax_img.imshow(to_display(image, mean, std))
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    if plot:
        text = plot if len(plot) <= snippet else plot[:snippet].rsplit(" ", 1)[0] + " ..."
        ax_img.set_xlabel("\n".join(textwrap.wrap(text, 34)), fontsize=6, family="serif")
    rows = _active_genres(label, probs, genres, cues, threshold, max_rows)
    names = list(probs)
    grid = np.stack([label[rows].astype(np.float64)] + [np.asarray(probs[m])[rows] for m in names], axis=1)
    ax_tab.imshow(grid, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    short = {"image": "img", "text": "txt", "both": "both", "synergy": "xor"}
    ax_tab.set_yticks(range(len(rows)))
    ax_tab.set_yticklabels([f"{genres[k]} [{short[cues[genres[k]]]}]" for k in rows], fontsize=7)
    ax_tab.set_xticks(range(len(names) + 1))
    ax_tab.set_xticklabels(["truth"] + names, rotation=60, ha="right", fontsize=7)
    for i, k in enumerate(rows):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            # probabilities in percent keep the narrow cells readable; the truth column shows 1 / blank
            txt = ("1" if v > 0.5 else "") if j == 0 else f"{100 * v:.0f}"
            ax_tab.text(j, i, txt, ha="center", va="center", fontsize=6, color="white" if v > 0.6 else "black")
            if j > 0 and v > threshold:
                ok = label[k] > 0.5
                ax_tab.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.6,
                                           edgecolor="#1a9641" if ok else "#d7191c"))


def prediction_figure(images: Any, labels: np.ndarray, probs: Mapping[str, np.ndarray],
                      genres: Sequence[str] = MMIMDB_GENRES, cues: Mapping[str, str] = GENRE_CUES,
                      plots: Sequence[str] | None = None, threshold: float = 0.5, title: str = "",
                      tag: str = STANDIN, max_rows: int = 10) -> Any:
    """Several samples side by side (:func:`prediction_panel`): posters on top, probability grids below.

    ``images`` (n, 3, H, W) normalised; ``labels`` (n, K); ``probs``: model -> (n, K); ``plots``: n strings."""
    plt = _plt()
    n = len(labels)
    fig, axes = plt.subplots(2, n, figsize=(2.7 * n, 7.0), squeeze=False,
                             gridspec_kw={"height_ratios": [0.9, 1.2]})
    for i in range(n):
        prediction_panel(axes[0, i], axes[1, i], images[i], np.asarray(labels[i]),
                         {m: np.asarray(p)[i] for m, p in probs.items()}, genres, cues,
                         None if plots is None else plots[i], threshold, max_rows)
    fig.suptitle((f"{title} - " if title else "") + f"{tag}; boxes: p > {threshold} (green correct, red wrong)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def prediction_browser(dataset: Any, preds: GenrePredictions, genres: Sequence[str] = MMIMDB_GENRES,
                       cues: Mapping[str, str] = GENRE_CUES, threshold: float = 0.5, tag: str = STANDIN) -> Any:
    """An ipywidgets browser over ``dataset`` (the split ``preds`` was computed on, same order): a genre
    filter (only samples that have it) and a slider; redraws :func:`prediction_panel` plus a line of
    per-sample F1 for every model. Returns a ``VBox`` already showing the first sample, so a notebook
    run without interaction still displays something."""
    import ipywidgets as widgets
    from IPython.display import display

    plt = _plt()
    if len(dataset) != len(preds):
        raise ValueError(f"prediction_browser: dataset has {len(dataset)} items but predictions {len(preds)}")
    col = {g: i for i, g in enumerate(genres)}
    options = ["(any)"] + [f"{g} [{GROUP_LABELS[cues[g]]}]" for g in genre_order(cues, genres)]
    pick = widgets.Dropdown(options=options, value="(any)", description="genre")
    index = widgets.IntSlider(value=0, min=0, max=len(preds) - 1, description="sample", continuous_update=False)
    info = widgets.HTML()
    out = widgets.Output()

    def candidates() -> np.ndarray:
        if pick.value == "(any)":
            return np.arange(len(preds))
        g = pick.value.split(" [")[0]
        return np.flatnonzero(preds.labels[:, col[g]] > 0.5)

    def draw(*_: Any) -> None:
        cand = candidates()
        with out:
            out.clear_output(wait=True)
            if cand.size == 0:
                info.value = f"no sample of this split has {pick.value}"
                return
            index.max = max(0, cand.size - 1)
            i = int(cand[min(index.value, cand.size - 1)])
            item = dataset[i]
            p = {m: pr[i] for m, pr in preds.probs.items()}
            scores = {m: multilabel_f1(preds.labels[i:i + 1], v[None], threshold)["samples"] for m, v in p.items()}
            info.value = (f"<b>id {preds.ids[i]}</b> (sample {i}; {cand.size} match) &nbsp; per-sample F1: "
                          + ", ".join(f"{m} {s:.0f}" for m, s in scores.items()) + f" &nbsp; <i>{tag}</i>")
            fig, (a0, a1) = plt.subplots(1, 2, figsize=(8.5, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
            prediction_panel(a0, a1, item["image"], preds.labels[i], p, genres, cues,
                             preds.texts[i] if preds.texts else None, threshold, max_rows=12, snippet=400)
            fig.tight_layout()
            display(fig)
            plt.close(fig)

    def on_pick(*_: Any) -> None:
        index.value = 0
        draw()

    pick.observe(on_pick, names="value")
    index.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([pick, index]), info, out])

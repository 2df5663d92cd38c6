"""Multi-label classification scores (MM-IMDb genres), equal to scikit-learn's.

Conventions (scikit-learn's ``f1_score``; MM-IMDb's evaluation in GMU, Arevalo et al. 2017):

* **Threshold: strictly greater.** A label is predicted when ``probability > threshold`` (0.5).
  This is what the references do: GMU ``report_performance`` uses ``y_prob > threshold``;
  MultiBench uses ``sigmoid(out).round()`` and ``torch.round`` rounds half to even, so 0.5 -> 0,
  i.e. also ``> 0.5``; MMBT uses ``> 0.5``. The only case where ``>`` and ``>=`` differ is a
  probability of exactly 0.5 (a logit of exactly 0, or a float32 sigmoid that rounds to 0.5 for
  ``|logit| < ~3e-8``): it is NOT predicted here.
* F1, precision and recall follow ``sklearn.metrics.precision_recall_fscore_support`` with
  ``zero_division=0`` (default here): per-class F1 = ``2 tp / (2 tp + fp + fn)`` and a 0/0 ratio
  takes the ``zero_division`` value; ``macro`` = plain mean over classes, ``weighted`` = mean
  weighted by the class support (number of true positives + false negatives; if every support is
  zero, a plain mean), ``micro`` = from summed counts, ``samples`` = mean over samples of the
  per-sample F1. The arithmetic is the same as scikit-learn's, so the numbers are identical, not
  just close. Everything is returned in **percent** (MultiBench / MANGO tables print x100).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

ArrayLike = np.ndarray | Tensor | Sequence[Sequence[float]]

AVERAGES: tuple[str, ...] = ("micro", "macro", "weighted", "samples")

__all__ = ["multilabel_f1", "multilabel_report", "binarize", "AVERAGES"]


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (num_samples, num_labels) array, got shape {arr.shape}")
    return arr


def binarize(y_score: ArrayLike, threshold: float = 0.5, from_logits: bool = False) -> np.ndarray:
    """Predicted label matrix ``(N, K)`` bool from scores.

    Args:
        y_score: ``(N, K)`` probabilities in [0, 1] (sigmoid outputs), or logits if ``from_logits``,
            or already-binary bool predictions (returned as they are).
        threshold: probability threshold; a label is on when ``p > threshold`` (strict, as GMU).
        from_logits: compare logits with ``log(t / (1 - t))`` instead (``> 0`` for t = 0.5); equal
            to thresholding the exact sigmoid.
    """
    s = _to_numpy(y_score, "y_score")
    if s.dtype == np.bool_:
        return s.copy()
    if not (np.issubdtype(s.dtype, np.number)):
        raise ValueError(f"y_score must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"y_score has {int((~np.isfinite(s)).sum())} non-finite values (NaN/inf)")
    if from_logits:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1) with from_logits=True, got {threshold}")
        return s > math.log(threshold / (1.0 - threshold))
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(
            f"y_score must be probabilities in [0, 1] (apply a sigmoid, or pass from_logits=True), "
            f"got range [{s.min():.4g}, {s.max():.4g}]"
        )
    return s > threshold


def _labels(y_true: ArrayLike) -> np.ndarray:
    t = _to_numpy(y_true, "y_true")
    if t.dtype != np.bool_:
        if not np.issubdtype(t.dtype, np.number):
            raise ValueError(f"y_true must be a 0/1 matrix, got dtype {t.dtype}")
        bad = ~np.isin(t, (0, 1))
        if bad.any():
            raise ValueError(f"y_true must contain only 0 and 1, found e.g. {t[bad].flat[0]!r}")
    return t.astype(bool)


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    """``num / den`` in float64 with ``zero_division`` where ``den == 0`` (sklearn _prf_divide)."""
    den = den.astype(np.float64)
    mask = den == 0.0
    out = num.astype(np.float64) / np.where(mask, 1.0, den)
    out[mask] = zero_division
    return out


def _average(values: np.ndarray, weights: np.ndarray | None) -> float:
    """sklearn ``_nanaverage``: NaN entries are dropped; all-zero weights fall back to a plain mean."""
    if values.shape[0] == 0:
        return float("nan")
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None:
        return float(np.nanmean(values))
    v, w = values[keep], weights[keep]
    if w.sum() == 0:
        return float(np.average(v))
    return float(np.average(v, weights=w))


def _prf(
    tp: np.ndarray, pred_sum: np.ndarray, true_sum: np.ndarray, zero_division: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision = _divide(tp, pred_sum, zero_division)
    recall = _divide(tp, true_sum, zero_division)
    # F1 from the counts, 2 tp / (|true| + |pred|), exactly as sklearn >= 1.3 computes it.
    f1 = _divide(2.0 * tp.astype(np.float64), true_sum.astype(np.float64) + pred_sum, zero_division)
    return precision, recall, f1


def _averaged_prf(
    t: np.ndarray, p: np.ndarray, zero_division: float
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Per-class counts/scores and the four averages (fractions, not percent)."""
    tp = (t & p).sum(axis=0).astype(np.int64)
    pred_sum = p.sum(axis=0).astype(np.int64)
    true_sum = t.sum(axis=0).astype(np.int64)
    prec_c, rec_c, f1_c = _prf(tp, pred_sum, true_sum, zero_division)
    out: dict[str, dict[str, float]] = {}
    out["macro"] = {"precision": _average(prec_c, None), "recall": _average(rec_c, None), "f1": _average(f1_c, None)}
    out["weighted"] = {
        "precision": _average(prec_c, true_sum),
        "recall": _average(rec_c, true_sum),
        "f1": _average(f1_c, true_sum),
    }
    mp, mr, mf = _prf(tp.sum(keepdims=True), pred_sum.sum(keepdims=True), true_sum.sum(keepdims=True), zero_division)
    out["micro"] = {"precision": float(mp[0]), "recall": float(mr[0]), "f1": float(mf[0])}
    tp_s = (t & p).sum(axis=1).astype(np.int64)
    sp, sr, sf = _prf(tp_s, p.sum(axis=1).astype(np.int64), t.sum(axis=1).astype(np.int64), zero_division)
    out["samples"] = {"precision": _average(sp, None), "recall": _average(sr, None), "f1": _average(sf, None)}
    per_class = {"precision": prec_c, "recall": rec_c, "f1": f1_c, "support": true_sum}
    return out, per_class


def _prepare(
    y_true: ArrayLike, y_score: ArrayLike, threshold: float, from_logits: bool
) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true)
    p = binarize(y_score, threshold=threshold, from_logits=from_logits)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_score must have the same shape, got {t.shape} and {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("y_true is empty (0 samples)")
    return t, p


def multilabel_f1(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float = 0.5,
    *,
    from_logits: bool = False,
    zero_division: float = 0.0,
) -> dict[str, float]:
    """Multi-label F1 (percent) with the four scikit-learn averages.

    Args:
        y_true: ``(N, K)`` 0/1 (or bool) ground-truth label matrix.
        y_score: ``(N, K)`` sigmoid probabilities (thresholded ``> threshold``), logits with
            ``from_logits=True``, or bool predictions.
        threshold: 0.5 in every MM-IMDb reference.
        from_logits: see :func:`binarize`.
        zero_division: value of a 0/0 ratio (0 = sklearn ``zero_division=0``; 1.0 or NaN allowed).

    Returns:
        ``{"micro", "macro", "weighted", "samples"}`` -> F1 in percent; equal to
        ``100 * sklearn.metrics.f1_score(y_true, y_score > threshold, average=..., zero_division=...)``.
    """
    t, p = _prepare(y_true, y_score, threshold, from_logits)
    avg, _ = _averaged_prf(t, p, zero_division)
    return {name: avg[name]["f1"] * 100.0 for name in AVERAGES}


def multilabel_report(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float = 0.5,
    *,
    class_names: Sequence[str] | None = None,
    from_logits: bool = False,
    zero_division: float = 0.0,
) -> dict[str, Any]:
    """Per-class and averaged precision / recall / F1, Hamming loss and subset accuracy.

    Like GMU's ``report_performance`` (without ROC-AUC). All scores are in **percent**.

    Returns:
        dict with
        ``per_class``: ``{"name", "precision", "recall", "f1", "support"}`` -> ``(K,)`` arrays
        (``support`` int64 = number of true occurrences, ``name`` list of str);
        ``averages``: ``{"micro"|"macro"|"weighted"|"samples": {"precision", "recall", "f1"}}``;
        ``hamming_loss``: percent of wrong (sample, label) cells (sklearn ``hamming_loss`` x100);
        ``subset_accuracy``: percent of samples with every label right (sklearn ``accuracy_score`` x100);
        ``threshold``, ``num_samples``, ``num_labels``.
    """
    t, p = _prepare(y_true, y_score, threshold, from_logits)
    n, k = t.shape
    if class_names is None:
        names = [str(i) for i in range(k)]
    else:
        names = [str(c) for c in class_names]
        if len(names) != k:
            raise ValueError(f"class_names has {len(names)} entries but there are {k} labels")
    avg, per = _averaged_prf(t, p, zero_division)
    wrong = t != p
    return {
        "per_class": {
            "name": names,
            "precision": per["precision"] * 100.0,
            "recall": per["recall"] * 100.0,
            "f1": per["f1"] * 100.0,
            "support": per["support"],
        },
        "averages": {a: {m: v * 100.0 for m, v in avg[a].items()} for a in AVERAGES},
        "hamming_loss": float(wrong.mean()) * 100.0,
        "subset_accuracy": float((~wrong).all(axis=1).mean()) * 100.0,
        "threshold": float(threshold),
        "num_samples": int(n),
        "num_labels": int(k),
    }

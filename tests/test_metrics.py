"""Tests of mango_lite.metrics against hand-worked cases, scikit-learn and scipy."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from mango_lite.errors import MangoLiteError
from mango_lite.metrics import (
    KID_TABLE_SCALE,
    CallableFeatures,
    ConfusionMatrix,
    FeatureExtractor,
    InceptionFeatures,
    PixelFeatures,
    RandomConvFeatures,
    fid_kid,
    frechet_distance,
    frechet_distance_from_stats,
    image as image_mod,
    kernel_distance,
    mae,
    mse,
    multilabel_f1,
    multilabel_report,
    rmse,
    scores_from_confusion,
    segmentation_scores,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_linalg = pytest.importorskip("scipy.linalg")

# ================================================================================================
# Segmentation
# ================================================================================================


def test_hand_worked_three_classes_with_ignored_pixels():
    # valid pairs (gt, pred): (0,0) (0,0) (0,1) (1,1) (1,2) (2,2) (2,0); the last two pixels are
    # ignored: gt 255 (void) and gt 5 >= num_classes (TokenFusion drops gt >= C).
    target = np.array([0, 0, 0, 1, 1, 2, 2, 255, 5], dtype=np.uint8)
    pred = np.array([0, 0, 1, 1, 2, 2, 0, 1, 1])
    s = segmentation_scores(pred, target, num_classes=3)
    np.testing.assert_array_equal(s["confusion"], [[2, 1, 0], [0, 1, 1], [1, 0, 1]])
    assert s["num_pixels"] == 7
    assert s["pixel_acc"] == pytest.approx(100 * 4 / 7)
    assert s["mean_acc"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1 / 2) / 3)
    np.testing.assert_allclose(s["iou_per_class"], [50.0, 100 / 3, 100 / 3])
    assert s["miou"] == pytest.approx(100 * (1 / 2 + 1 / 3 + 1 / 3) / 3)


def test_absent_class_and_prediction_only_class_tokenfusion_vs_deliver():
    # 4 classes: class 2 appears only in the prediction, class 3 nowhere.
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    tf = segmentation_scores(pred, target, num_classes=4, empty_class="nan")
    dl = segmentation_scores(pred, target, num_classes=4, empty_class="zero")
    # IoU: c0 1/(2+1-1), c1 2/2, c2 0/(0+1-0) = 0 (a false positive costs), c3 0/0 = NaN.
    np.testing.assert_allclose(tf["iou_per_class"], [50.0, 100.0, 0.0, np.nan])
    np.testing.assert_allclose(tf["acc_per_class"], [50.0, 100.0, np.nan, np.nan])
    assert tf["miou"] == pytest.approx(100 * (0.5 + 1 + 0) / 3)  # nanmean skips class 3 only
    assert tf["mean_acc"] == pytest.approx(75.0)  # classes absent from the target are skipped
    assert dl["miou"] == pytest.approx(100 * (0.5 + 1 + 0 + 0) / 4)  # DELIVER: NaN -> 0
    assert dl["mean_acc"] == pytest.approx(100 * (0.5 + 1 + 0 + 0) / 4)
    assert tf["pixel_acc"] == dl["pixel_acc"] == pytest.approx(75.0)
    np.testing.assert_array_equal(np.isnan(dl["iou_per_class"]), [False, False, False, True])


def _reference_scores(pred: np.ndarray, target: np.ndarray, n: int, ignore: int) -> tuple:
    """Independent re-derivation: explicit per-class pixel counting (no bincount)."""
    keep = (target != ignore) & (target < n) & (target >= 0)
    p, t = pred[keep], target[keep]
    inter = np.array([np.sum((p == c) & (t == c)) for c in range(n)], float)
    in_t = np.array([np.sum(t == c) for c in range(n)], float)
    in_p = np.array([np.sum(p == c) for c in range(n)], float)
    union = in_t + in_p - inter
    ious = [inter[c] / union[c] for c in range(n) if union[c] > 0]
    accs = [inter[c] / in_t[c] for c in range(n) if in_t[c] > 0]
    ious0 = [inter[c] / union[c] if union[c] > 0 else 0.0 for c in range(n)]
    return 100 * inter.sum() / len(t), 100 * np.mean(accs), 100 * np.mean(ious), 100 * np.mean(ious0)


@pytest.mark.parametrize("seed", range(5))
def test_matches_direct_rederivation_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 6
    target = rng.integers(0, n + 2, size=(3, 17, 19))  # ids n, n+1 must be ignored
    target[rng.random(target.shape) < 0.1] = 255
    target[target == 4] = 0  # class 4 absent from the target
    pred = rng.integers(0, n, size=target.shape)
    pred[pred == 5] = 1  # class 5 absent from the prediction
    s = segmentation_scores(pred, target, n)
    pa, ma, mi, mi0 = _reference_scores(pred, target, n, 255)
    assert s["pixel_acc"] == pytest.approx(pa, abs=1e-10)
    assert s["mean_acc"] == pytest.approx(ma, abs=1e-10)
    assert s["miou"] == pytest.approx(mi, abs=1e-10)
    assert segmentation_scores(pred, target, n, empty_class="zero")["miou"] == pytest.approx(mi0, abs=1e-10)

    keep = (target != 255) & (target < n)
    t, p = target[keep], pred[keep]
    np.testing.assert_array_equal(s["confusion"], sklearn_metrics.confusion_matrix(t, p, labels=range(n)))
    jac = sklearn_metrics.jaccard_score(t, p, labels=list(range(n)), average=None, zero_division=0)
    assert not np.isnan(s["iou_per_class"]).any()  # every class is in target or prediction
    np.testing.assert_allclose(s["iou_per_class"], 100 * jac)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the prediction-only class
        bal = sklearn_metrics.balanced_accuracy_score(t, p)
    assert s["mean_acc"] == pytest.approx(100 * bal, abs=1e-10)


@pytest.mark.parametrize("torch_route", [False, True])
def test_accumulation_lists_torch_and_batches_agree(monkeypatch, torch_route):
    from mango_lite.metrics import segmentation as seg_mod

    monkeypatch.setattr(seg_mod, "_TORCH_BINCOUNT_ON_CPU", torch_route)  # True: the GPU code path
    rng = np.random.default_rng(3)
    n = 5
    maps_t = [rng.integers(0, n, size=(h, w)).astype(np.uint8) for h, w in [(7, 9), (12, 5), (4, 4)]]
    maps_p = [rng.integers(0, n, size=m.shape) for m in maps_t]
    maps_t[1][:2] = 255
    ref = np.zeros((n, n), np.int64)
    for p, t in zip(maps_p, maps_t):
        ref += ConfusionMatrix(n).update(p, t).matrix
    cm_list = ConfusionMatrix(n).update(maps_p, maps_t)  # list of differently sized images
    cm_torch = ConfusionMatrix(n)
    for p, t in zip(maps_p, maps_t):
        cm_torch.update(torch.from_numpy(p), torch.from_numpy(t))
    flat_p = np.concatenate([m.ravel() for m in maps_p])
    flat_t = np.concatenate([m.ravel() for m in maps_t])
    np.testing.assert_array_equal(cm_list.matrix, ref)
    np.testing.assert_array_equal(cm_torch.matrix, ref)
    np.testing.assert_array_equal(segmentation_scores(flat_p, flat_t, n)["confusion"], ref)
    assert cm_list.total == int(ref.sum()) == flat_t.size - 2 * 5
    cm_list.reset()
    assert cm_list.total == 0


def test_ignore_index_inside_class_range_and_negative_targets():
    target = np.array([0, 0, 1, 1, -1])
    pred = np.array([1, 1, 1, 0, 0])
    s = segmentation_scores(pred, target, 2, ignore_index=0)  # class-0 pixels are void
    np.testing.assert_array_equal(s["confusion"], [[0, 0], [1, 1]])
    assert s["pixel_acc"] == pytest.approx(50.0)
    # ignore_index=None still drops out-of-range targets (255 here)
    s2 = segmentation_scores(np.array([0, 1]), np.array([0, 255]), 2, ignore_index=None)
    assert s2["num_pixels"] == 1 and s2["pixel_acc"] == 100.0


def test_prediction_at_ignored_pixel_is_not_checked_but_valid_pixels_are(monkeypatch):
    target = np.array([0, 255])
    segmentation_scores(np.array([0, 255]), target, 3)  # pred 255 only where void: fine
    with pytest.raises(ValueError, match=r"\[0, 3\).*found 7"):
        segmentation_scores(np.array([7, 0]), target, 3)
    with pytest.raises(ValueError, match="found -1"):
        ConfusionMatrix(3).update(torch.tensor([-1, 0]), torch.tensor([1, 255]))
    from mango_lite.metrics import segmentation as seg_mod

    monkeypatch.setattr(seg_mod, "_TORCH_BINCOUNT_ON_CPU", True)  # the GPU code path
    with pytest.raises(ValueError, match="found 3"):
        ConfusionMatrix(3).update(torch.tensor([3, 0]), torch.tensor([1, 255]))


def test_segmentation_errors_name_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"pred \(2, 3\).*target \(3, 2\)"):
        segmentation_scores(np.zeros((2, 3), int), np.zeros((3, 2), int), 4)
    with pytest.raises(ValueError, match="argmax"):
        segmentation_scores(np.zeros((2, 3)), np.zeros((2, 3), int), 4)
    with pytest.raises(ValueError, match="2 maps but target has 1"):
        ConfusionMatrix(4).update([np.zeros(2, int)] * 2, [np.zeros(2, int)])
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty_class"):
        scores_from_confusion(np.eye(2), empty_class="drop")


def test_empty_evaluation_is_nan_not_zero():
    s = segmentation_scores(np.array([1, 2]), np.array([255, 255]), 3)
    assert s["num_pixels"] == 0
    assert all(math.isnan(s[k]) for k in ("pixel_acc", "mean_acc", "miou"))


# ================================================================================================
# Multi-label classification
# ================================================================================================

AVGS = ("micro", "macro", "weighted", "samples")


def _random_multilabel(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # K >= 2: sklearn reads an (N, 1) column as a binary target, not as multilabel
    n, k = int(rng.integers(1, 40)), int(rng.integers(2, 9))
    y_true = (rng.random((n, k)) < rng.uniform(0.05, 0.6)).astype(int)
    y_prob = rng.random((n, k))
    if k >= 3:  # degenerate columns: no true label / no prediction / neither
        y_true[:, 0] = 0
        y_prob[:, 1] = rng.uniform(0, 0.5, n)
        y_true[:, 2] = 0
        y_prob[:, 2] = 0.1
    if n >= 2:  # a sample with neither true nor predicted labels
        y_true[0] = 0
        y_prob[0] = 0.2
    y_prob[rng.random((n, k)) < 0.05] = 0.5  # exact threshold ties: NOT predicted
    return y_true, y_prob


@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_f1_identical_to_sklearn_over_many_seeds(zero_division):
    for seed in range(60):
        y_true, y_prob = _random_multilabel(seed)
        ours = multilabel_f1(y_true, y_prob, zero_division=zero_division)
        y_pred = (y_prob > 0.5).astype(int)
        for avg in AVGS:
            ref = 100 * sklearn_metrics.f1_score(y_true, y_pred, average=avg, zero_division=zero_division)
            assert ours[avg] == ref, (seed, avg, ours[avg], ref)  # identical, not just close


def test_f1_all_zero_matrices_and_nan_zero_division():
    y = np.zeros((4, 3), int)
    for zd in (0.0, 1.0, np.nan):
        ours = multilabel_f1(y, np.zeros((4, 3)), zero_division=zd)
        for avg in AVGS:
            ref = 100 * sklearn_metrics.f1_score(y, y, average=avg, zero_division=zd)
            np.testing.assert_equal(ours[avg], ref)


def test_f1_hand_worked():
    y_true = [[1, 0, 0], [1, 1, 0]]
    y_prob = [[0.9, 0.1, 0.2], [0.3, 0.8, 0.7]]  # predictions [[1,0,0],[0,1,1]]
    f = multilabel_f1(y_true, y_prob)
    assert f["macro"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)
    assert f["weighted"] == pytest.approx(100 * (2 * 2 / 3 + 1 * 1 + 0 * 0) / 3)
    assert f["micro"] == pytest.approx(100 * 4 / 6)
    assert f["samples"] == pytest.approx(100 * (1 + 0.5) / 2)


def test_threshold_is_strict_like_gmu_and_multibench():
    y_true = np.array([[1, 1]])
    prob = torch.tensor([[0.5, 0.50001]])
    f = multilabel_f1(y_true, prob)
    # GMU: y_prob > 0.5; MultiBench: torch.round (half to even) -> 0.5 becomes 0.
    multibench_pred = prob.round().numpy().astype(int)
    np.testing.assert_array_equal(multibench_pred, [[0, 1]])
    assert f["micro"] == pytest.approx(100 * sklearn_metrics.f1_score(y_true, multibench_pred, average="micro"))
    assert f["micro"] == pytest.approx(100 * 2 / 3)


def test_from_logits_matches_sigmoid_threshold():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 6)) * 3
    y = (rng.random((50, 6)) < 0.4).astype(int)
    probs = 1 / (1 + np.exp(-logits))
    assert multilabel_f1(y, logits, from_logits=True) == multilabel_f1(y, probs)
    assert multilabel_f1(y, logits, 0.3, from_logits=True) == multilabel_f1(y, probs, 0.3)


def test_report_matches_sklearn():
    y_true, y_prob = _random_multilabel(11)
    y_pred = (y_prob > 0.5).astype(int)
    rep = multilabel_report(y_true, y_prob, class_names=[f"g{i}" for i in range(y_true.shape[1])])
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    np.testing.assert_array_equal(rep["per_class"]["precision"], 100 * p)
    np.testing.assert_array_equal(rep["per_class"]["recall"], 100 * r)
    np.testing.assert_array_equal(rep["per_class"]["f1"], 100 * f)
    np.testing.assert_array_equal(rep["per_class"]["support"], s)
    for avg in AVGS:
        ref = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        got = rep["averages"][avg]
        assert (got["precision"], got["recall"], got["f1"]) == tuple(100 * v for v in ref[:3])
    assert rep["hamming_loss"] == pytest.approx(100 * sklearn_metrics.hamming_loss(y_true, y_pred))
    assert rep["subset_accuracy"] == pytest.approx(100 * sklearn_metrics.accuracy_score(y_true, y_pred))
    assert rep["per_class"]["name"][0] == "g0"


def test_classification_errors():
    with pytest.raises(ValueError, match="same shape"):
        multilabel_f1(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_f1(np.full((2, 2), 2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="from_logits"):
        multilabel_f1(np.zeros((2, 2)), np.full((2, 2), 3.0))
    with pytest.raises(ValueError, match="non-finite"):
        multilabel_f1(np.zeros((2, 2)), np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        multilabel_f1(np.zeros(3), np.zeros(3))


# ================================================================================================
# Pixel errors
# ================================================================================================


def test_mae_mse_rmse_hand_and_mask():
    pred = np.array([0.0, 1.0, 2.0])
    target = np.array([1.0, 1.0, 0.0])
    assert mae(pred, target) == pytest.approx(1.0)
    assert mse(pred, target) == pytest.approx(5 / 3)
    assert rmse(pred, target) == pytest.approx(math.sqrt(5 / 3))
    m = np.array([True, False, True])
    assert mae(pred, target, m) == pytest.approx(1.5)
    assert mse(torch.tensor(pred), torch.tensor(target), torch.tensor(m)) == pytest.approx(2.5)


def test_mae_broadcast_mask_torch_equals_numpy():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 5)).astype(np.float32)
    b = rng.random((2, 3, 4, 5)).astype(np.float32)
    mask = rng.random((2, 1, 4, 5)) < 0.5
    full = np.broadcast_to(mask, a.shape)
    ref = np.abs(a.astype(np.float64) - b)[full].mean()
    assert mae(a, b, mask) == pytest.approx(ref, rel=1e-12)
    assert mae(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(mask)) == pytest.approx(ref, rel=1e-12)
    assert mse(torch.from_numpy(a), b) == pytest.approx(((a.astype(np.float64) - b) ** 2).mean(), rel=1e-12)


def test_pixel_error_input_checks():
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(2,\)"):
        mae(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="boolean"):
        mse(np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="no element"):
        mse(np.zeros(3), np.zeros(3), np.zeros(3, bool))


# ================================================================================================
# Frechet distance
# ================================================================================================


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("method", ["auto", "svd", "eigh", "sqrtm"])
def test_fid_of_identical_sets_is_zero_and_symmetric(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    y = rng.normal(size=(250, 16)) + 0.3
    assert abs(frechet_distance(x, x, method=method)) < 1e-6
    assert frechet_distance(x, y, method=method) == pytest.approx(frechet_distance(y, x, method=method), rel=1e-10)
    assert frechet_distance(x, y, method=method) > 1.0


def test_fid_from_stats_closed_forms():
    rng = np.random.default_rng(1)
    d = 6
    # commuting (diagonal) covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2 exactly
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for method in ("eigh", "sqrtm"):
        assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b), method) == pytest.approx(exact, rel=1e-12)
    # general SPD covariances: compare with the scipy.linalg.sqrtm formula
    a1, a2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a1 @ a1.T + 0.1 * np.eye(d), a2 @ a2.T + 0.1 * np.eye(d)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-10)


def test_fid_of_large_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    d, n = 4, 20000
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    l1, l2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = l1 @ l1.T + np.eye(d), l2 @ l2.T + np.eye(d)
    x = rng.multivariate_normal(mu1, s1, size=n)
    y = rng.multivariate_normal(mu2, s2, size=n)
    truth = _scipy_fid(mu1, s1, mu2, s2)
    assert frechet_distance(x, y) == pytest.approx(truth, rel=0.05)


def test_fid_routes_match_pytorch_fid_sqrtm_including_rank_deficient():
    rng = np.random.default_rng(3)
    for n_a, n_b, d in [(200, 150, 20), (30, 25, 64)]:  # 2nd: N < D, singular covariances (500 < 2048)
        x = rng.normal(size=(n_a, d))
        y = rng.normal(size=(n_b, d)) * 1.2 + 0.1
        ref = frechet_distance(x, y, method="sqrtm")
        mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
        mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
        assert ref == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-8)  # pytorch-fid formula
        for method in ("svd", "eigh", "auto"):
            assert frechet_distance(x, y, method=method) == pytest.approx(ref, rel=1e-6), method


def test_fid_errors():
    with pytest.raises(ValueError, match="dims differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(5), np.zeros(5))


# ================================================================================================
# Kernel distance
# ================================================================================================


def _direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """O(m^2) unbiased MMD^2 with explicit pair loops and k = (x.y/d + 1)^3."""
    m, d = x.shape
    k = lambda u, v: (float(u @ v) / d + 1.0) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m)


def test_kid_equals_direct_rederivation_single_subset():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.4
    mean, std = kernel_distance(x, y, subsets=1, subset_size=12)
    assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-12)
    assert std == 0.0
    # the same with sklearn's polynomial kernel (the MMD-GAN / TokenFusion code path)
    pk = sklearn_metrics.pairwise.polynomial_kernel
    kxx, kyy, kxy = pk(x, x, degree=3, coef0=1), pk(y, y, degree=3, coef0=1), pk(x, y, degree=3, coef0=1)
    m = 12
    ref = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    assert mean == pytest.approx(ref, rel=1e-12)


def test_kid_subsets_are_drawn_without_replacement_with_the_seeded_rng():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(15, 3))
    mean, std = kernel_distance(x, y, subsets=4, subset_size=8, seed=7)
    r = np.random.default_rng(7)
    vals = []
    for _ in range(4):
        ia, ib = r.choice(20, 8, replace=False), r.choice(15, 8, replace=False)
        assert len(set(ia)) == 8 and len(set(ib)) == 8
        vals.append(_direct_mmd2(x[ia], y[ib]))
    assert mean == pytest.approx(np.mean(vals), rel=1e-12)
    assert std == pytest.approx(np.std(vals), rel=1e-9)


@pytest.mark.parametrize("n_a, n_b, subsets, expected_kernel_calls", [(200, 180, 3, 9), (30, 25, 40, 3)])
def test_kid_both_code_paths_equal_direct_rederivation(monkeypatch, n_a, n_b, subsets, expected_kernel_calls):
    # large sets: kernels per subset (3 per subset); small sets: 3 full kernels indexed per subset
    calls = []
    real_kernel = image_mod._poly_kernel
    monkeypatch.setattr(image_mod, "_poly_kernel", lambda *a: calls.append(1) or real_kernel(*a))
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(n_a, 4)), rng.normal(size=(n_b, 4)) + 0.2
    mean, std = kernel_distance(x, y, subsets=subsets, subset_size=10, seed=3)
    assert len(calls) == expected_kernel_calls
    r = np.random.default_rng(3)
    vals = []
    for _ in range(subsets):
        ia, ib = r.choice(n_a, 10, replace=False), r.choice(n_b, 10, replace=False)
        vals.append(_direct_mmd2(x[ia], y[ib]))
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals), rel=1e-8)


def test_kid_unbiased_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(8)
    same = []
    for _ in range(200):
        same.append(kernel_distance(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), subsets=1)[0])
    same = np.array(same)
    # an unbiased estimator: the mean over independent draws is 0 within its standard error
    assert abs(same.mean()) < 4 * same.std() / np.sqrt(len(same))
    shifted = kernel_distance(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 0.5, subsets=20, subset_size=100)
    assert shifted[0] > 10 * same.std()


def test_kid_subset_size_clipped_and_std_zero_when_subsets_are_whole_sets():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    mean, std = kernel_distance(x, y, subsets=10, subset_size=1000)  # -> min(1000, 30) = 30
    assert std == pytest.approx(0.0, abs=1e-12)
    assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-10)


def test_kid_errors():
    with pytest.raises(ValueError, match="dims differ"):
        kernel_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kernel_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# ================================================================================================
# Extractors and fid_kid
# ================================================================================================


def test_pixel_features_are_block_means():
    img = torch.rand(2, 3, 16, 16)
    f = PixelFeatures(size=4)(img)
    assert f.shape == (2, 48)
    ref = img.reshape(2, 3, 4, 4, 4, 4).mean(dim=(3, 5)).flatten(1)
    torch.testing.assert_close(f, ref)


def test_random_conv_features_deterministic_and_leave_global_rng_alone():
    img = torch.rand(3, 3, 40, 40)
    state = torch.get_rng_state()
    a, b = RandomConvFeatures(dim=32, seed=1), RandomConvFeatures(dim=32, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    fa, fb = a(img), b(img)
    assert fa.shape == (3, 32)
    torch.testing.assert_close(fa, fb, rtol=0, atol=0)
    assert not torch.allclose(fa, RandomConvFeatures(dim=32, seed=2)(img))
    for ext in (a, PixelFeatures()):
        assert isinstance(ext, FeatureExtractor)
        assert ext.name.startswith("proxy:") and not ext.comparable_to_paper


def test_fid_kid_with_proxy_extractor():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, size=(40, 3, 16, 16), dtype=np.uint8)
    out = fid_kid(real, real.astype(np.float32) / 255.0, PixelFeatures(size=4), batch_size=16)
    assert abs(out["fid"]) < 1e-6  # uint8 and float [0, 1] inputs mean the same images
    assert out["comparable_to_paper"] is False and out["kind"] == "proxy"
    assert out["extractor"] == "proxy:pixels(4x4)"
    assert out["kid_subset_size"] == 40 and out["n_a"] == out["n_b"] == 40
    dark = (real // 2).astype(np.uint8)
    out2 = fid_kid(list(torch.from_numpy(dark)), real, PixelFeatures(size=4))  # list of (C, H, W)
    assert out2["fid"] > 100 * max(abs(out["fid"]), 1e-3)
    assert out2["kid_mean"] > 0
    assert out2["kid_mean_x100"] == pytest.approx(KID_TABLE_SCALE * out2["kid_mean"])


def test_fid_kid_image_checks():
    imgs = np.random.default_rng(0).uniform(-1, 1, size=(4, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        fid_kid(imgs, imgs, PixelFeatures())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fid_kid(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 3, 8, 8), np.uint8), PixelFeatures())


def test_inception_requires_user_weights(monkeypatch):
    monkeypatch.delenv("MANGO_LITE_FID_WEIGHTS", raising=False)
    with pytest.raises(MangoLiteError, match="pt_inception-2015-12-05-6726825d.pth"):
        InceptionFeatures(None)
    with pytest.raises(MangoLiteError, match="no file at"):
        InceptionFeatures("/nonexistent/pt_inception.pth")


def test_inception_loads_state_dict_in_torchvision_naming(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = image_mod._FIDInceptionV3()
    assert sum(p.numel() for p in net.parameters()) == 21_785_568  # torchvision Inception3 trunk
    state = net.state_dict()
    state["fc.weight"] = torch.zeros(1008, 2048)  # the pytorch-fid file carries the classifier
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="SHA-256"):
        ext = InceptionFeatures(path)
    assert not ext.comparable_to_paper and "unverified" in ext.name
    for k, v in net.state_dict().items():
        assert torch.equal(ext.net.state_dict()[k], v), k
    # pretend the file were the pytorch-fid release: now labelled comparable
    monkeypatch.setattr(image_mod, "_PYTORCH_FID_SHA256_PREFIX", image_mod._sha256_prefix(path))
    ext = InceptionFeatures(path)
    assert ext.comparable_to_paper and isinstance(ext, FeatureExtractor)
    assert ext(torch.rand(1, 3, 32, 32)).shape == (1, 2048)  # one 299x299 forward (slow on CPU)
    bad = tmp_path / "bad.pth"
    torch.save(RandomConvFeatures(dim=8).state_dict(), bad)
    with pytest.raises(MangoLiteError, match="not an InceptionV3"):
        InceptionFeatures(bad)


def test_callable_features_wraps_any_model_and_label_follows_the_flag():
    ext = CallableFeatures(lambda x: x.mean(dim=(2, 3)), dim=3, name="mean-colour")
    assert isinstance(ext, FeatureExtractor)
    imgs = torch.rand(10, 3, 8, 8)
    out = fid_kid(imgs, torch.rand(10, 3, 8, 8), ext)
    assert out["extractor"] == "mean-colour" and out["kind"] == "proxy" and not out["comparable_to_paper"]
    paper = CallableFeatures(lambda x: x.mean(dim=(2, 3)), dim=3, name="pytorch-fid", comparable_to_paper=True)
    out = fid_kid(imgs, imgs.flip(-1), paper)
    assert out["kind"] == "inception" and out["comparable_to_paper"] is True


def test_many_segmentation_shapes_accumulate_like_one():
    # product of small shapes: a (B, H, W) batch equals the sum of its images
    rng = np.random.default_rng(12)
    for b, h, w in itertools.product([1, 3], [1, 5], [2, 7]):
        p = rng.integers(0, 3, (b, h, w))
        t = rng.integers(0, 4, (b, h, w))
        cm = ConfusionMatrix(3).update(p, t).matrix
        per = sum(ConfusionMatrix(3).update(p[i], t[i]).matrix for i in range(b))
        np.testing.assert_array_equal(cm, per)

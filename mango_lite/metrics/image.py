"""Image-translation metrics: MAE / MSE / RMSE, Frechet distance (FID) and kernel distance (KID).

Reference semantics (TokenFusion / CEN ``image2image_translation``, github.com/yikaiw/TokenFusion):

* **L1 / RMSE.** TokenFusion averages ``L1Loss`` and ``MSELoss`` per image (batch 1) over the 500
  val images and prints ``sqrt(mean MSE)``. For equally sized images this equals the global
  :func:`mae` and :func:`rmse` here. Note that it works on tensors normalised with mean 0.5 /
  std 0.5, i.e. in [-1, 1]: on that scale MAE is 2x and MSE 4x the [0, 1] values.
* **FID** (pytorch-fid / TTUR): ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` with the
  unbiased (N-1) covariances of 2048-d InceptionV3 pool3 features. Only the trace of the matrix
  square root is needed; by default it is the nuclear norm of an ``N_a x N_b`` cross-product of
  centred features (exact, real arithmetic, no complex residue), which for 500 vs 500 images of
  2048-d took 0.18 s against 73 s for pytorch-fid's ``scipy.linalg.sqrtm`` on this 2-core machine,
  agreeing to 5e-8 relative. ``method="sqrtm"`` reproduces pytorch-fid's route exactly.
* **KID** (Binkowski et al. 2018, the MMD-GAN code that TokenFusion copies): unbiased MMD^2 with
  the cubic kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets drawn **without
  replacement** of size ``min(subset_size, n_a, n_b)`` (TokenFusion: 50 subsets of
  ``min(1000, n)`` = 500 images). :func:`kernel_distance` returns the raw value; the papers'
  tables print **KID x 100** (TokenFusion ``mmd2s.mean() * 100``), see :data:`KID_TABLE_SCALE`.
  With ``n_a = n_b <= subset_size`` every subset is the whole set, so the std is ~0 and the
  number of subsets does not matter.
* **Features.** Numbers are comparable to the papers only with the pytorch-fid Inception weights
  (``pt_inception-2015-12-05-6726825d.pth``), which mango_lite never downloads:
  :class:`InceptionFeatures` takes the file from the user. :class:`RandomConvFeatures` and
  :class:`PixelFeatures` are offline *proxies*: use them to compare runs with each other, never
  with the papers' numbers; :func:`fid_kid` labels them ``"proxy"``.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mango_lite.errors import MangoLiteError

ArrayLike = np.ndarray | Tensor

KID_TABLE_SCALE: float = 100.0
"""The papers' tables (TokenFusion, CEN, MANGO) print KID multiplied by this factor."""

PYTORCH_FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + PYTORCH_FID_WEIGHTS_FILE
)
_PYTORCH_FID_SHA256_PREFIX = "6726825d"  # torch.hub convention: the hash prefix is in the file name

__all__ = [
    "KID_TABLE_SCALE",
    "mae",
    "mse",
    "rmse",
    "kid_for_table",
    "gaussian_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kernel_distance",
    "FeatureExtractor",
    "PixelFeatures",
    "RandomConvFeatures",
    "InceptionFeatures",
    "CallableFeatures",
    "extract_features",
    "fid_kid",
]


# ----------------------------------------------------------------------------------------------
# Pixel errors
# ----------------------------------------------------------------------------------------------


def _masked_mean(err: ArrayLike, mask: ArrayLike | None, name: str) -> float:
    """Mean of an elementwise error in float64 over all elements, or over ``mask`` (broadcast)."""
    if isinstance(err, Tensor):
        if mask is None:
            if err.numel() == 0:
                raise ValueError(f"{name}: inputs are empty")
            return float(err.double().mean())
        m = torch.as_tensor(mask, device=err.device)
        if m.dtype != torch.bool:
            raise ValueError(f"{name}: mask must be boolean, got dtype {m.dtype}")
        try:
            m = torch.broadcast_to(m, err.shape)
        except RuntimeError as exc:
            raise ValueError(f"{name}: mask shape {tuple(m.shape)} does not broadcast to {tuple(err.shape)}") from exc
        count = int(m.sum())
        if count == 0:
            raise ValueError(f"{name}: mask selects no element")
        return float(err.double()[m].sum() / count)
    if mask is None:
        if err.size == 0:
            raise ValueError(f"{name}: inputs are empty")
        return float(err.mean(dtype=np.float64))
    m = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise ValueError(f"{name}: mask must be boolean, got dtype {m.dtype}")
    try:
        m = np.broadcast_to(m, err.shape)
    except ValueError as exc:
        raise ValueError(f"{name}: mask shape {m.shape} does not broadcast to {err.shape}") from exc
    count = int(m.sum())
    if count == 0:
        raise ValueError(f"{name}: mask selects no element")
    return float(err[m].sum(dtype=np.float64) / count)


def _diff(pred: ArrayLike, target: ArrayLike, name: str) -> ArrayLike:
    """``pred - target`` in float64 (torch stays on its device; mps lacks float64 so goes to cpu)."""
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"{name}: pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if isinstance(pred, Tensor) or isinstance(target, Tensor):
        p = torch.as_tensor(pred)
        t = torch.as_tensor(target, device=p.device)
        if p.device.type == "mps":
            p, t = p.cpu(), t.cpu()
        return p.detach().double() - t.detach().double()
    return np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)


def mae(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean absolute error over all elements (or the ``mask``-selected ones).

    Args:
        pred, target: same-shape arrays/tensors, e.g. ``(N, 3, H, W)``; any real dtype
            (computed in float64).
        mask: optional bool array broadcastable to ``pred.shape`` (e.g. ``(N, 1, H, W)`` valid
            pixels); the mean is over selected elements after broadcasting.
    """
    d = _diff(pred, target, "mae")
    return _masked_mean(d.abs() if isinstance(d, Tensor) else np.abs(d), mask, "mae")


def mse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean squared error over all elements (or the ``mask``-selected ones); see :func:`mae`."""
    d = _diff(pred, target, "mse")
    return _masked_mean(d * d, mask, "mse")


def rmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """``sqrt(mse)``: TokenFusion's ``rl2`` (sqrt of the mean of per-image MSEs; equal for
    equally sized images)."""
    return math.sqrt(mse(pred, target, mask))


def kid_for_table(kid: float) -> float:
    """Raw KID (as returned by :func:`kernel_distance`) -> the x100 value the papers print."""
    return float(kid) * KID_TABLE_SCALE


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------


def _features(x: ArrayLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (num_samples, dim) feature array, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values (NaN/inf)")
    return arr


def gaussian_stats(feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``(N, D)`` features, N >= 2
    (``np.cov(rowvar=False)`` as pytorch-fid)."""
    f = _features(feats, "feats")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {f.shape[0]}")
    mu = f.mean(axis=0)
    c = f - mu
    sigma = (c.T @ c) / (f.shape[0] - 1)
    return mu, sigma


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via eigh (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((s + s.T) * 0.5)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((S1 S2)^{1/2})`` for PSD S1, S2 without a general matrix square root.

    ``S1 S2 = R (R S2)`` with ``R = S1^{1/2}`` has the same non-zero eigenvalues as the symmetric
    PSD matrix ``R S2 R``, so the trace of the principal square root is the sum of the square roots
    of ``eigvalsh(R S2 R)``: real arithmetic only, no complex residue, fine for singular
    covariances (N < D).
    """
    r = _sqrt_psd(s1)
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) * 0.5)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def _trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """pytorch-fid's route: ``scipy.linalg.sqrtm(S1 S2)``, eps on the diagonals if that is not
    finite, and the imaginary round-off dropped when it is small."""
    try:
        from scipy import linalg
    except ImportError as exc:  # pragma: no cover - scipy is installed in the test env
        raise MangoLiteError("method='sqrtm' needs scipy; use method='eigh' (no scipy needed)") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-matrix warnings are handled below
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.all(np.isfinite(covmean)):
            off = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(
                f"sqrtm(S1 S2) has a large imaginary part ({np.abs(covmean.imag).max():.3g}); "
                "use method='eigh'"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance_from_stats(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    method: Literal["eigh", "sqrtm"] = "eigh",
    eps: float = 1e-6,
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64).

    Args:
        mu1, mu2: ``(D,)`` means. sigma1, sigma2: ``(D, D)`` covariances.
        method: ``"eigh"`` (default; symmetric eigendecompositions, numpy only, no complex
            residue) or ``"sqrtm"`` (``scipy.linalg.sqrtm`` exactly as pytorch-fid; needs scipy).
            They agree to round-off on well-conditioned inputs.
        eps: diagonal offset pytorch-fid adds when sqrtm fails (``"sqrtm"`` only).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"means differ in shape: {mu1.shape} vs {mu2.shape}")
    if s1.shape != s2.shape or s1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must both be ({mu1.shape[0]}, {mu1.shape[0]}), got {s1.shape} and {s2.shape}")
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    elif method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(s1, s2, eps)
    else:
        raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def _trace_sqrt_product_samples(ca: np.ndarray, cb: np.ndarray) -> float:
    """``tr((S_a S_b)^{1/2})`` from centred samples, never forming a D x D matrix.

    With ``A = C_a / sqrt(N_a - 1)`` and ``B = C_b / sqrt(N_b - 1)`` (so ``S_a = A^T A``), the
    non-zero eigenvalues of ``S_a S_b = A^T (A B^T B)`` equal those of ``A B^T B A^T = M M^T`` with
    ``M = A B^T`` (``N_a x N_b``), i.e. the squared singular values of M. The trace of the square
    root is therefore the nuclear norm of M: exact, and cheap when N < D (500 images, 2048 dims).
    """
    a = ca / math.sqrt(ca.shape[0] - 1)
    b = cb / math.sqrt(cb.shape[0] - 1)
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())


def frechet_distance(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    method: Literal["auto", "svd", "eigh", "sqrtm"] = "auto",
) -> float:
    """FID-style Frechet distance between the Gaussian fits of two feature sets.

    Args:
        feats_a: ``(N_a, D)`` features (e.g. 2048-d Inception pool3), N_a >= 2.
        feats_b: ``(N_b, D)`` features, same D.
        method: how ``tr((S_a S_b)^{1/2})`` is computed; all agree to round-off:
            ``"svd"``: nuclear norm of the ``N_a x N_b`` cross-product of centred samples (fast when
            N < D); ``"eigh"``: symmetric eigendecompositions of ``D x D`` covariances;
            ``"sqrtm"``: ``scipy.linalg.sqrtm`` exactly as pytorch-fid; ``"auto"``: the cheaper of
            ``"svd"`` and ``"eigh"``.

    Returns:
        the distance (float; >= 0 up to round-off; the value pytorch-fid gives for the same features).
    """
    fa, fb = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dims differ: feats_a {fa.shape} vs feats_b {fb.shape}")
    for name, f in (("feats_a", fa), ("feats_b", fb)):
        if f.shape[0] < 2:
            raise ValueError(f"{name}: need at least 2 samples for a covariance, got {f.shape[0]}")
    if method not in ("auto", "svd", "eigh", "sqrtm"):
        raise ValueError(f"method must be 'auto', 'svd', 'eigh' or 'sqrtm', got {method!r}")
    na, nb, d = fa.shape[0], fb.shape[0], fa.shape[1]
    if method == "auto":
        # rough flop counts: cross-product + SVD of N_a x N_b versus ~3 D x D eigen-problems
        svd_cost = na * nb * d + min(na, nb) ** 2 * max(na, nb)
        method = "svd" if svd_cost < 10 * d**3 else "eigh"
    if method == "svd":
        mu1, mu2 = fa.mean(axis=0), fb.mean(axis=0)
        ca, cb = fa - mu1, fb - mu2
        diff = mu1 - mu2
        tr1 = float(np.einsum("ij,ij->", ca, ca)) / (na - 1)
        tr2 = float(np.einsum("ij,ij->", cb, cb)) / (nb - 1)
        return float(diff @ diff + tr1 + tr2 - 2.0 * _trace_sqrt_product_samples(ca, cb))
    mu1, s1 = gaussian_stats(fa)
    mu2, s2 = gaussian_stats(fb)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, method=method)


# ----------------------------------------------------------------------------------------------
# Kernel distance
# ----------------------------------------------------------------------------------------------


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 of the MMD-GAN code (``mmd_est='unbiased'``): within-set sums drop the
    diagonal, the cross term keeps it."""
    m = kxx.shape[0]
    sxx = kxx.sum() - np.trace(kxx)
    syy = kyy.sum() - np.trace(kyy)
    return float((sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_distance(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> tuple[float, float]:
    """KID: mean and std of the unbiased polynomial-kernel MMD^2 over random subsets (raw scale).

    Args:
        feats_a: ``(N_a, D)``; feats_b: ``(N_b, D)`` features (float64 inside).
        subsets: number of subsets (torch-fidelity 100; TokenFusion 50).
        subset_size: clipped to ``min(subset_size, N_a, N_b)`` (TokenFusion), must end up >= 2.
        seed: seeds ``numpy.random.default_rng``; each subset draws its indices of A then of B
            without replacement.
        degree, gamma, coef0: kernel ``(gamma x.y + coef0)^degree``; gamma None = 1/D.

    Returns:
        ``(mean, std)`` of the per-subset MMD^2 (std with ddof 0, as TokenFusion prints it).
        Multiply by :data:`KID_TABLE_SCALE` for the papers' tables.
    """
    fa, fb = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dims differ: feats_a {fa.shape} vs feats_b {fb.shape}")
    if int(subsets) < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    na, nb, d = fa.shape[0], fb.shape[0], fa.shape[1]
    m = min(int(subset_size), na, nb)
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 samples, got min(subset_size, N_a, N_b) = {m}")
    g = 1.0 / d if gamma is None else float(gamma)
    rng = np.random.default_rng(seed)
    idx = [(rng.choice(na, m, replace=False), rng.choice(nb, m, replace=False)) for _ in range(int(subsets))]
    # Cheaper to build the full kernels once when they are small compared with the per-subset
    # work (e.g. 500 vs 500 images: 3 Gram matrices instead of 3 x subsets of them).
    full_cost = na * na + nb * nb + na * nb
    if full_cost <= 3 * m * m * int(subsets) and full_cost <= 3 * 4096 * 4096:
        kaa = _poly_kernel(fa, fa, degree, g, coef0)
        kbb = _poly_kernel(fb, fb, degree, g, coef0)
        kab = _poly_kernel(fa, fb, degree, g, coef0)
        vals = [
            _mmd2_unbiased(kaa[np.ix_(ia, ia)], kbb[np.ix_(ib, ib)], kab[np.ix_(ia, ib)]) for ia, ib in idx
        ]
    else:
        vals = []
        for ia, ib in idx:
            x, y = fa[ia], fb[ib]
            vals.append(
                _mmd2_unbiased(
                    _poly_kernel(x, x, degree, g, coef0),
                    _poly_kernel(y, y, degree, g, coef0),
                    _poly_kernel(x, y, degree, g, coef0),
                )
            )
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


# ----------------------------------------------------------------------------------------------
# Feature extractors
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images to feature vectors for FID/KID.

    ``__call__(images)``: ``images`` is a ``(B, 3, H, W)`` float32 CPU tensor in [0, 1]; returns a
    ``(B, dim)`` tensor or array. ``name`` is recorded in results; ``comparable_to_paper`` is True
    only for the pytorch-fid Inception weights.
    """

    name: str
    dim: int
    comparable_to_paper: bool

    def __call__(self, images: Tensor) -> Tensor | np.ndarray: ...


class PixelFeatures:
    """Proxy extractor: area-downsampled raw pixels, ``(B, 3 * size * size)``.

    Sensitive to colour and layout only; cheap and fully deterministic (no weights).
    """

    comparable_to_paper = False

    def __init__(self, size: int = 8) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = int(size)
        self.dim = 3 * self.size * self.size
        self.name = f"proxy:pixels({self.size}x{self.size})"

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(images.float(), (self.size, self.size))
        return x.flatten(1)


class RandomConvFeatures(nn.Module):
    """Proxy extractor: a fixed, randomly initialised 4-layer CNN (He-normal weights from ``seed``).

    Input resized to ``size`` x ``size`` (bilinear) and mapped to [-1, 1]; four 3x3 stride-2
    conv + ReLU layers (3 -> 32 -> 64 -> 128 -> ``dim``), then global average pooling -> ``(B, dim)``.
    Random conv features are a known cheap stand-in for learned ones (they react to texture and
    edges, not only colour), but the values are NOT on the Inception scale.
    """

    comparable_to_paper = False

    def __init__(self, dim: int = 256, seed: int = 0, size: int = 64, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if int(dim) < 1 or int(size) < 16:
            raise ValueError(f"need dim >= 1 and size >= 16, got dim={dim}, size={size}")
        self.dim, self.seed, self.size = int(dim), int(seed), int(size)
        self.name = f"proxy:random_conv(dim={self.dim},seed={self.seed},size={self.size})"
        gen = torch.Generator().manual_seed(self.seed)
        chans = [3, 32, 64, 128, self.dim]
        self.convs = nn.ModuleList()
        # Own generator, and nn.Conv2d's default init runs inside fork_rng: the features depend only
        # on ``seed`` and building the extractor does not disturb the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for cin, cout in zip(chans[:-1], chans[1:]):
                conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / (cin * 9)))
                conv.bias.zero_()
                self.convs.append(conv)
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:  # noqa: D401 - nn.Module API
        dev = next(self.parameters()).device
        x = images.to(dev, torch.float32)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.mean(dim=(2, 3))


class CallableFeatures:
    """Wrap any callable ``(B, 3, H, W) in [0, 1] -> (B, dim)`` as an extractor, e.g. pytorch-fid's
    ``InceptionV3([3])`` (``lambda x: model(x)[0].flatten(1)``) when torchvision is available.
    Set ``comparable_to_paper=True`` only for that model with the pytorch-fid weights."""

    def __init__(
        self, fn: Callable[[Tensor], Tensor | np.ndarray], dim: int, name: str, comparable_to_paper: bool = False
    ) -> None:
        self.fn, self.dim, self.name = fn, int(dim), str(name)
        self.comparable_to_paper = bool(comparable_to_paper)

    def __call__(self, images: Tensor) -> Tensor | np.ndarray:
        return self.fn(images)


# --- InceptionV3 (pytorch-fid "FID Inception") written out without torchvision ---------------


class _BasicConv(nn.Module):
    """Conv (no bias) + BatchNorm(eps 1e-3) + ReLU; attribute names match torchvision's state dict."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's average pool (which the FID weights come from) ignores zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _BasicConv(cin, 64, 1)
        self.branch5x5_1 = _BasicConv(cin, 48, 1)
        self.branch5x5_2 = _BasicConv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _BasicConv(cin, 64, 1)
        self.branch3x3dbl_2 = _BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _BasicConv(96, 96, 3, padding=1)
        self.branch_pool = _BasicConv(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class _ReductionB(nn.Module):
    """35 -> 17 reduction (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _BasicConv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _BasicConv(cin, 64, 1)
        self.branch3x3dbl_2 = _BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _BasicConv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class _MixedC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..e)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _BasicConv(cin, 192, 1)
        self.branch7x7_1 = _BasicConv(cin, c7, 1)
        self.branch7x7_2 = _BasicConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _BasicConv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _BasicConv(cin, c7, 1)
        self.branch7x7dbl_2 = _BasicConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _BasicConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _BasicConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _BasicConv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _BasicConv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _ReductionD(nn.Module):
    """17 -> 8 reduction (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _BasicConv(cin, 192, 1)
        self.branch3x3_2 = _BasicConv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _BasicConv(cin, 192, 1)
        self.branch7x7x3_2 = _BasicConv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _BasicConv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _BasicConv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (Mixed_7b, 7c). The FID weights' last block
    (Mixed_7c) pools with MAX instead of average (a quirk of the TF graph pytorch-fid ports)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _BasicConv(cin, 320, 1)
        self.branch3x3_1 = _BasicConv(cin, 384, 1)
        self.branch3x3_2a = _BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _BasicConv(cin, 448, 1)
        self.branch3x3dbl_2 = _BasicConv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _BasicConv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class _FIDInceptionV3(nn.Module):
    """InceptionV3 up to the 2048-d pool3 output, in the FID variant of pytorch-fid."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _BasicConv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _BasicConv(32, 32, 3)
        self.Conv2d_2b_3x3 = _BasicConv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _BasicConv(64, 80, 1)
        self.Conv2d_4a_3x3 = _BasicConv(80, 192, 3)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _ReductionB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.Mixed_7a = _ReductionD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, 2048)``: bilinear resize to 299, scale to [-1, 1]."""
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def _sha256_prefix(path: Path, n: int = 8) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


class InceptionFeatures(nn.Module):
    """InceptionV3 pool3 (2048-d) features with the pytorch-fid weights supplied by the user.

    Nothing is downloaded. Get ``pt_inception-2015-12-05-6726825d.pth`` (from
    :data:`PYTORCH_FID_WEIGHTS_URL` on a machine with internet, or from a pytorch-fid cache such as
    ``~/.cache/torch/hub/checkpoints/``) and pass its path.
    The network is written out here (no torchvision needed) with torchvision's parameter names, so
    the file loads directly. ``comparable_to_paper`` is True only when the file's SHA-256 starts
    with ``6726825d`` (the pytorch-fid release); other weights load but are labelled unverified.

    Args:
        weights_path: the ``.pth`` state dict.
        device: where the network runs.
    """

    dim = 2048

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if weights_path is None or not Path(weights_path).is_file():
            raise MangoLiteError(
                "InceptionFeatures needs the pytorch-fid Inception weights file "
                f"'{PYTORCH_FID_WEIGHTS_FILE}', which mango_lite never downloads"
                + (f" (no file at {weights_path})" if weights_path is not None else "")
                + f". Fetch it elsewhere from {PYTORCH_FID_WEIGHTS_URL} and pass its path; alternatively wrap "
                "pytorch-fid's InceptionV3 with CallableFeatures when torchvision is installed. Offline, use "
                "RandomConvFeatures or PixelFeatures (results are then labelled 'proxy', not comparable to the paper)."
            )
        path = Path(weights_path)
        self.net = _FIDInceptionV3()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise MangoLiteError(f"cannot read Inception weights {path}: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise MangoLiteError(f"{path} does not hold a state dict (got {type(state).__name__})")
        # The classifier (fc, 1008 classes) and the auxiliary head are not needed for pool3.
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
        own = self.net.state_dict()
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise MangoLiteError(
                f"{path} is not an InceptionV3 (pytorch-fid) state dict: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                f"shape mismatches {wrong[:5]}"
            )
        self.net.load_state_dict(state, strict=False)
        self.weights_path = str(path)
        self.verified = _sha256_prefix(path) == _PYTORCH_FID_SHA256_PREFIX
        self.comparable_to_paper = self.verified
        self.name = (
            "inception_v3_pool3(pytorch-fid)" if self.verified else f"inception_v3_pool3(unverified:{path.name})"
        )
        if not self.verified:
            warnings.warn(
                f"{path} loads as InceptionV3 but its SHA-256 does not start with "
                f"{_PYTORCH_FID_SHA256_PREFIX}; FID/KID are not labelled comparable to the paper",
                stacklevel=2,
            )
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        dev = next(self.parameters()).device
        return self.net(images.to(dev, torch.float32))


# ----------------------------------------------------------------------------------------------
# FID / KID on images
# ----------------------------------------------------------------------------------------------


def _image_batches(images: Any, batch_size: int, name: str) -> Iterable[Tensor]:
    """Yield ``(b, 3, H, W)`` float32 CPU tensors in [0, 1] from a 4-D array/tensor or an iterable
    of 3-D images / 4-D batches (uint8 is divided by 255; 1 channel is repeated to 3)."""

    def norm(x: Any) -> Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
        t = t.detach().cpu()
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise ValueError(f"{name}: expected images shaped (N, 3, H, W) or (N, 1, H, W), got {tuple(t.shape)}")
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif t.dtype.is_floating_point:
            t = t.float()
            lo, hi = float(t.min()), float(t.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise ValueError(
                    f"{name}: float images must be in [0, 1], got range [{lo:.3g}, {hi:.3g}] "
                    "(outputs normalised with mean 0.5 / std 0.5 are in [-1, 1]: pass (x + 1) / 2)"
                )
            t = t.clamp(0.0, 1.0)
        else:
            raise ValueError(f"{name}: images must be uint8 or float, got dtype {t.dtype}")
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        return t

    if isinstance(images, (np.ndarray, Tensor)):
        if images.ndim != 4:
            raise ValueError(f"{name}: expected a (N, C, H, W) array, got shape {tuple(images.shape)}")
        for i in range(0, images.shape[0], batch_size):
            yield norm(images[i: i + batch_size])
    else:
        for item in images:
            yield norm(item)


def extract_features(images: Any, extractor: FeatureExtractor, batch_size: int = 50) -> np.ndarray:
    """Run ``extractor`` over all images; returns ``(N, extractor.dim)`` float64."""
    feats = []
    with torch.no_grad():
        for batch in _image_batches(images, int(batch_size), "images"):
            f = extractor(batch)
            f = f.detach().cpu().numpy() if isinstance(f, Tensor) else np.asarray(f)
            f = f.reshape(f.shape[0], -1)
            if f.shape[0] != batch.shape[0]:
                raise ValueError(f"extractor {extractor.name} returned {f.shape[0]} rows for {batch.shape[0]} images")
            feats.append(f.astype(np.float64))
    if not feats:
        raise ValueError("no images given")
    return np.concatenate(feats, axis=0)


def fid_kid(
    images_a: Any,
    images_b: Any,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 50,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    fid_method: Literal["auto", "svd", "eigh", "sqrtm"] = "auto",
) -> dict[str, Any]:
    """FID and KID between two image sets with a pluggable feature extractor.

    Args:
        images_a: generated images, ``(N, C, H, W)`` uint8 (0..255) or float in [0, 1] (numpy or
            torch, C in {1, 3}), or an iterable of such batches / ``(C, H, W)`` images.
            TokenFusion scores PNG files, i.e. uint8-quantised outputs: pass uint8 for parity.
        images_b: real images, same conventions.
        extractor: a :class:`FeatureExtractor`.
        batch_size: images per extractor call (array inputs).
        kid_subsets, kid_subset_size, seed: see :func:`kernel_distance`.
        fid_method: see :func:`frechet_distance`.

    Returns:
        ``{"fid", "kid_mean", "kid_std"}`` (raw), ``"kid_mean_x100"``, ``"kid_std_x100"`` (table
        scale), ``"extractor"`` (its name), ``"kind"`` (``"inception"`` or ``"proxy"``),
        ``"comparable_to_paper"`` (True only for the verified pytorch-fid Inception weights),
        ``"n_a"``, ``"n_b"``, ``"feature_dim"``, ``"kid_subset_size"`` (after clipping),
        ``"kid_subsets"``.
    """
    fa = extract_features(images_a, extractor, batch_size)
    fb = extract_features(images_b, extractor, batch_size)
    fid = frechet_distance(fa, fb, method=fid_method)
    kid_mean, kid_std = kernel_distance(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    comparable = bool(getattr(extractor, "comparable_to_paper", False))
    return {
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_mean_x100": kid_for_table(kid_mean),
        "kid_std_x100": kid_for_table(kid_std),
        "extractor": str(getattr(extractor, "name", type(extractor).__name__)),
        "kind": "inception" if comparable else "proxy",
        "comparable_to_paper": comparable,
        "n_a": int(fa.shape[0]),
        "n_b": int(fb.shape[0]),
        "feature_dim": int(fa.shape[1]),
        "kid_subset_size": int(min(kid_subset_size, fa.shape[0], fb.shape[0])),
        "kid_subsets": int(kid_subsets),
    }

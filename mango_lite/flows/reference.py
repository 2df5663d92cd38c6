"""The published way of computing ICA's log-determinant and inverse, kept for comparison only.

The official MANGO code computes ``slogdet(A) * L / 2`` (L = total tokens) and inverts with
``pinv(A)``. Both are reproduced here so tests, benchmarks and notebook 02 can measure them against
the exact structure-based answers of :class:`~mango_lite.flows.ica.InvertibleCrossAttention`. Nothing
in the library's flows uses this module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ica import InvertibleCrossAttention


def attention_matrix(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    """The layer's matrix A = S + I (B, heads, T, T) for input tokens x (B, 2T, D)."""
    x1, _, _ = layer.partition.partition(x)
    s = layer.attention(x1)
    return s + torch.eye(layer.tokens, dtype=s.dtype, device=s.device)


def published_logdet(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    """The official code's log-det: slogdet(A) * (total tokens) / 2, per sample (B,)."""
    a = attention_matrix(layer, x)
    return torch.linalg.slogdet(a)[1].sum(1) * (2 * layer.tokens) / 2


def dense_logdet(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    """D * log|det A| via slogdet, i.e. the right factor computed the expensive way (B,)."""
    a = attention_matrix(layer, x)
    return layer.head_dim * torch.linalg.slogdet(a)[1].sum(1)


def published_inverse(layer: InvertibleCrossAttention, z: Tensor) -> Tensor:
    """The official way to invert: recompute the attention, then multiply by pinv(A)."""
    y1, y2, _ = layer.partition.partition(z)
    s = layer.attention(y1)
    a = s + torch.eye(layer.tokens, dtype=s.dtype, device=s.device)
    x2 = torch.linalg.pinv(a) @ layer._heads(y2)
    x, _ = layer.partition.merge(y1, layer._unheads(x2))
    return x


def causal_attention(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    """Plain (non-invertible) masked cross-attention with the same projections: Y2 = S X2, no +I,
    no log-det. The baseline cost an ICA forward is compared with in the benchmarks."""
    x1, x2, _ = layer.partition.partition(x)
    s = layer.attention_probs(x1)
    y2 = layer._unheads(s @ layer._heads(x2))
    return layer.partition.merge(x1, y2)[0]


def fused_causal_attention(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    """The same masked cross-attention through PyTorch's fused ``scaled_dot_product_attention`` (no T x T
    matrix held): what a user's transformer layer with these projections would cost. No +I, no log-det."""
    import torch.nn.functional as F

    x1, x2, _ = layer.partition.partition(x)
    q, k = layer._queries_keys(x1)
    v = layer._heads(x2)
    if layer.upper:  # row i reads j >= i: the causal mask on the reversed order
        q, k, v = q.flip(-2), k.flip(-2), v.flip(-2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
    y2 = layer._unheads(y.flip(-2) if layer.upper else y)
    return layer.partition.merge(x1, y2)[0]


# -- dense references used to verify every module (notebook 02, tests) ------------------------------


def _flat_fn(module, shape):
    def fn(v):
        z = module(v.view(1, *shape))[0]
        parts = z if isinstance(z, (list, tuple)) else [z]
        return torch.cat([p.reshape(-1) for p in parts])

    return fn


def autograd_logdet(module, x: Tensor) -> Tensor:
    """slogdet of the autograd Jacobian of ``module`` at each sample of x (B,). O(n^3): tiny shapes only."""
    shape = x.shape[1:]
    fn = _flat_fn(module, shape)
    return torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(fn, xi.reshape(-1)))[1] for xi in x])


def finite_difference_logdet(module, x: Tensor, eps: float = 1e-6) -> Tensor:
    """slogdet of the central finite-difference Jacobian (B,), independent of autograd."""
    shape = x.shape[1:]
    fn = _flat_fn(module, shape)
    out = []
    for xi in x:
        v = xi.reshape(-1)
        cols = []
        with torch.no_grad():
            for i in range(v.numel()):
                e = torch.zeros_like(v)
                e[i] = eps
                cols.append((fn(v + e) - fn(v - e)) / (2 * eps))
        out.append(torch.linalg.slogdet(torch.stack(cols, 1))[1])
    return torch.stack(out)


def verify_invertible(module, x: Tensor, finite_differences: bool = True) -> dict[str, float]:
    """The three checks (plus finite differences) for one module at inputs x; returns max errors.

    keys: roundtrip (max |f^-1(f(x)) - x|), cancellation (max |logdet + logdet_inv|),
    autograd (max |logdet - slogdet(J)|), finite_diff (same with a finite-difference Jacobian).
    ``module`` may take a tensor or, like MultiscaleMango, return a list of latents.
    """
    with torch.no_grad():
        z, ld = module(x)
        xr, ld_inv = module.inverse(z)
    xr_t = torch.stack(list(xr), 1) if isinstance(xr, tuple) else xr
    x_t = x
    res = {
        "roundtrip": (xr_t.reshape(x_t.shape) - x_t).abs().max().item(),
        "cancellation": (ld + ld_inv).abs().max().item(),
        "autograd": (ld - autograd_logdet(module, x)).abs().max().item(),
    }
    if finite_differences:
        res["finite_diff"] = (ld - finite_difference_logdet(module, x)).abs().max().item()
    res["logdet"] = ld.abs().max().item()
    return res

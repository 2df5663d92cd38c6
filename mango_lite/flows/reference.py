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
    s = layer.attention(x1)
    y2 = layer._unheads(s @ layer._heads(x2))
    return layer.partition.merge(x1, y2)[0]

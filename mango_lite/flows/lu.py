"""Invertible linear maps in LU form (Glow's 1x1 convolution), over channels or over tokens."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..utils import check_finite
from .base import InvertibleModule, soft_clamp, soft_clamp_inverse

Axis = Literal["channels", "tokens"]


class InvertibleLinearLU(InvertibleModule):
    """``y = W x`` along one axis of (B, N, D) tokens, with ``W = P L U`` (Kingma & Dhariwal 2018).

    * ``axis="channels"``: W is D x D and mixes the channels of every token (a 1x1 convolution when
      tokens are pixels). log|det| = N * sum(log|s|).
    * ``axis="tokens"``: W is N x N and mixes tokens, the same way for every channel. This is LICA's
      learnable partition: after it, "the first half of the tokens" is a learned combination of both
      modalities. log|det| = D * sum(log|s|).

    P is a fixed permutation, L unit lower triangular, U upper triangular with diagonal
    ``sign(s) * exp(log|s|)``; the log-determinant is read off the diagonal and the inverse is two
    triangular solves, never a general inverse. The stored ``log_s`` is soft-clamped to +-``max_log_s``
    (:func:`~mango_lite.flows.base.soft_clamp`), so no diagonal entry leaves [exp(-8), exp(8)]. Initialised from a
    random orthogonal matrix
    (``init="orthogonal"``, volume-preserving) or the identity.
    """

    def __init__(
        self, size: int, axis: Axis = "channels", init: Literal["orthogonal", "permutation", "identity"] = "orthogonal",
        max_log_s: float = 8.0,
    ) -> None:
        super().__init__()
        if axis not in ("channels", "tokens"):
            raise ValueError(f"InvertibleLinearLU: axis must be 'channels' or 'tokens', got {axis!r}")
        if size < 1:
            raise ValueError(f"InvertibleLinearLU: expected size >= 1, got {size}")
        self.size = size
        self.axis = axis
        if max_log_s <= 0:
            raise ValueError(f"InvertibleLinearLU: max_log_s must be > 0, got {max_log_s}")
        self.max_log_s = float(max_log_s)
        if init == "orthogonal":
            w0, _ = torch.linalg.qr(torch.randn(size, size, dtype=torch.float64))
        elif init == "identity":
            w0 = torch.eye(size, dtype=torch.float64)
        elif init == "permutation":
            w0 = torch.eye(size, dtype=torch.float64)[torch.randperm(size)]
        else:
            raise ValueError(f"InvertibleLinearLU: init must be 'orthogonal', 'permutation' or 'identity', got {init!r}")
        p, lower, upper = torch.linalg.lu(w0)
        s = torch.diagonal(upper)
        perm = p.argmax(0)  # W = P L U with P[perm[j], j] = 1  ->  (P v)[i] = v[inv[i]]
        self.register_buffer("perm", perm)
        self.register_buffer("perm_inv", torch.argsort(perm))
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(size, size), -1))
        self.register_buffer("eye", torch.eye(size))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(soft_clamp_inverse(torch.log(torch.abs(s)), self.max_log_s).float())

    # -- the factors -------------------------------------------------------------------------------
    def log_abs_diag(self) -> Tensor:
        """log|s| (size,): the stored ``log_s`` soft-clamped to +-``max_log_s``; log|det W| is its sum."""
        return soft_clamp(self.log_s, self.max_log_s)

    def factors(self) -> tuple[Tensor, Tensor]:
        """(L, U): L unit lower triangular, U upper triangular with diagonal sign(s) exp(log|s|)."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_abs_diag()))
        return lower.to(self.log_s.dtype), upper

    def weight(self) -> Tensor:
        """The full matrix W = P L U (size x size)."""
        lower, upper = self.factors()
        return (lower @ upper)[self.perm_inv]

    def inverse_weight(self) -> Tensor:
        """W^-1 = U^-1 L^-1 P^-1 (size x size), from two triangular solves of the identity - never a
        general inverse. Applying it is one matrix product: cheaper than solving for every column of
        a (B, size, D) input whenever B * D exceeds ``size`` (LICA's merge in the forward direction)."""
        lower, upper = self.factors()
        eye = self.eye.to(upper.dtype)
        inv = torch.linalg.solve_triangular(upper, torch.linalg.solve_triangular(lower, eye, upper=False,
                                                                                  unitriangular=True), upper=True)
        return inv[:, self.perm_inv]  # (LU)^-1 P^-1: column j is column perm_inv[j] of (LU)^-1

    # -- maps ---------------------------------------------------------------------------------------
    def apply_matrix(self, m: Tensor, x: Tensor) -> Tensor:
        """``m`` (size x size) applied along this layer's axis of x (B, N, D). Over tokens, a batched
        product with ``m`` broadcast (stride 0: neither ``m`` nor ``x`` is copied, unlike ``m @ x``, which
        folds x into one matrix first); over channels, ``x @ m^T``."""
        if self.axis == "tokens":
            return torch.bmm(m.expand(x.shape[0], -1, -1), x)
        return x @ m.T

    def _moved(self, x: Tensor) -> Tensor:
        """View with the mixed axis at position -2: (B, size, other)."""
        return x if self.axis == "tokens" else x.transpose(1, 2)

    def _count(self, x: Tensor) -> int:
        return x.shape[2] if self.axis == "tokens" else x.shape[1]

    def _check(self, x: Tensor, name: str) -> None:
        ax = 1 if self.axis == "tokens" else 2
        if x.dim() != 3 or x.shape[ax] != self.size:
            want = f"(B, {self.size}, D)" if self.axis == "tokens" else f"(B, N, {self.size})"
            raise ValueError(f"InvertibleLinearLU({self.axis}): expected {name} of shape {want}, got {tuple(x.shape)}")
        check_finite(x, name)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(x, "x")
        y = self.apply_matrix(self.weight(), x)
        logdet = (self._count(x) * self.log_abs_diag().sum()).expand(x.shape[0])
        return y, logdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(z, "z")
        lower, upper = self.factors()
        v = self._moved(z)[:, self.perm]  # P^-1 z
        v = torch.linalg.solve_triangular(lower, v, upper=False, unitriangular=True)
        v = torch.linalg.solve_triangular(upper, v, upper=True)
        x = v if self.axis == "tokens" else v.transpose(1, 2)
        logdet = -(self._count(z) * self.log_abs_diag().sum()).expand(z.shape[0])
        return x, logdet

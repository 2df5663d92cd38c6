"""Shape bijections for the multiscale flow: squeeze (space -> channels) and split (factor out)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..utils import check_finite
from .base import InvertibleModule, soft_clamp


def squeeze2d(x: Tensor) -> Tensor:
    """(..., C, H, W) -> (..., 4C, H/2, W/2): every 2x2 patch becomes 4 channels (a permutation)."""
    *lead, c, h, w = x.shape
    x = x.reshape(*lead, c, h // 2, 2, w // 2, 2)
    n = len(lead)
    x = x.permute(*range(n), n + 0, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*lead, c * 4, h // 2, w // 2)


def unsqueeze2d(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze2d`: (..., 4C, H, W) -> (..., C, 2H, 2W)."""
    *lead, c4, h, w = x.shape
    c = c4 // 4
    n = len(lead)
    x = x.reshape(*lead, c, 2, 2, h, w)
    x = x.permute(*range(n), n + 0, n + 3, n + 1, n + 4, n + 2)
    return x.reshape(*lead, c, h * 2, w * 2)


class Squeeze(InvertibleModule):
    """Space-to-depth on (B, ..., C, H, W); log|det| = 0 (it only moves numbers)."""

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() < 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"Squeeze: expected {name} of shape (B, ..., C, H, W) with even H and W, got {tuple(x.shape)}")
        check_finite(x, name)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(x, "x")
        return squeeze2d(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs and (z.dim() < 4 or z.shape[-3] % 4):
            raise ValueError(f"Squeeze.inverse: expected (B, ..., 4C, H, W), got {tuple(z.shape)}")
        return unsqueeze2d(z), z.new_zeros(z.shape[0])


class Unsqueeze(InvertibleModule):
    """Depth-to-space, the inverse of :class:`Squeeze` as a module of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._squeeze = Squeeze()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._squeeze.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._squeeze(z)


class Split(InvertibleModule):
    """Factor out half of the channels of tokens (B, N, D) with a learned conditional Gaussian prior.

    Glow's split writes ``p(x_out | x_keep) = N(mu(x_keep), sigma(x_keep)^2)``. We fold that prior into
    the bijection: ``eps = (x_out - mu(x_keep)) / sigma(x_keep)`` is standard normal, so the whole
    multiscale flow ends in N(0, I) latents and the split is an ordinary invertible module:

        (keep, eps), logdet = split(x)     logdet = -sum(log sigma)
        x, -logdet = split.inverse((keep, eps))

    mu and log sigma come from a per-token linear map of ``x_keep`` that starts at zero (standard normal
    prior at initialisation); log sigma is soft-clamped to +-``max_log_sigma`` (sigma within
    [exp(-3), exp(3)]), so an extreme ``x_keep`` cannot make the division overflow.
    """

    def __init__(self, dim: int, max_log_sigma: float = 3.0) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"Split: expected dim >= 2, got {dim}")
        if max_log_sigma <= 0:
            raise ValueError(f"Split: max_log_sigma must be > 0, got {max_log_sigma}")
        self.max_log_sigma = float(max_log_sigma)
        self.dim = dim
        self.n_keep = dim // 2
        self.n_out = dim - self.n_keep
        self.prior = nn.Linear(self.n_keep, 2 * self.n_out)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)

    def _stats(self, keep: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = self.prior(keep).chunk(2, dim=-1)
        return mu, soft_clamp(log_sigma, self.max_log_sigma)

    def forward(self, x: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:  # type: ignore[override]
        if self.check_inputs:
            if x.dim() != 3 or x.shape[-1] != self.dim:
                raise ValueError(f"Split: expected x of shape (B, N, {self.dim}), got {tuple(x.shape)}")
            check_finite(x, "x")
        keep, out = x[..., : self.n_keep], x[..., self.n_keep :]
        mu, log_sigma = self._stats(keep)
        eps = (out - mu) * torch.exp(-log_sigma)
        return (keep, eps), -log_sigma.flatten(1).sum(1)

    def inverse(self, z: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        keep, eps = z
        if self.check_inputs and (keep.shape[-1] != self.n_keep or eps.shape[-1] != self.n_out):
            raise ValueError(
                f"Split.inverse: expected (keep, eps) with {self.n_keep} and {self.n_out} channels, "
                f"got {tuple(keep.shape)} and {tuple(eps.shape)}"
            )
        mu, log_sigma = self._stats(keep)
        out = eps * torch.exp(log_sigma) + mu
        return torch.cat([keep, out], -1), log_sigma.flatten(1).sum(1)

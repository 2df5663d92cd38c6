"""ActNorm (Glow): per-channel affine map with data-dependent initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..utils import check_finite
from .base import InvertibleModule


class ActNorm(InvertibleModule):
    """``z = (x + bias) * exp(log_scale)`` over the last (channel) axis.

    Input: (B, ..., D), e.g. tokens (B, N, D). On the first forward call in training mode, bias and
    scale are set so that the output of that batch has zero mean and unit variance per channel
    (Kingma & Dhariwal 2018); after that they are ordinary parameters. This is what keeps a deep stack
    of volume-expanding attention layers at a sane scale at initialisation.

    log|det| = (number of positions per sample) * sum(log_scale), the same for every sample.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"ActNorm: expected dim >= 1, got {dim}")
        self.dim = dim
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() < 2 or x.shape[-1] != self.dim:
            raise ValueError(f"ActNorm: expected {name} of shape (B, ..., {self.dim}), got {tuple(x.shape)}")
        check_finite(x, name)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent init from a batch ``x`` of shape (B, ..., D)."""
        flat = x.reshape(-1, self.dim)
        mean = flat.mean(0)
        std = flat.std(0, unbiased=False) if flat.shape[0] > 1 else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def _logdet(self, x: Tensor) -> Tensor:
        positions = x[0, ..., 0].numel()
        return (positions * self.log_scale.sum()).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(x, "x")
        if self.training and not bool(self.initialized):
            self.initialize(x)
        z = (x + self.bias) * torch.exp(self.log_scale)
        return z, self._logdet(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(z, "z")
        x = z * torch.exp(-self.log_scale) - self.bias
        return x, -self._logdet(z)

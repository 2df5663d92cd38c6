"""ActNorm (Glow): per-channel affine map with data-dependent initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..utils import check_finite
from .base import InvertibleModule, soft_clamp, soft_clamp_inverse


class ActNorm(InvertibleModule):
    """``z = (x + bias) * exp(s)`` over the last (channel) axis, ``s = soft_clamp(log_scale, max_log_scale)``.

    Input: (B, ..., D), e.g. tokens (B, N, D). On the first forward call in training mode, bias and
    scale are set so that the output of that batch has zero mean and unit variance per channel
    (Kingma & Dhariwal 2018); after that they are ordinary parameters. This is what keeps a deep stack
    of volume-expanding attention layers at a sane scale at initialisation.

    The stored parameter ``log_scale`` is soft-clamped to +-``max_log_scale`` (slope 1 near 0, so
    ordinary values are unchanged): one ActNorm scales by at most exp(8) ~ 3000, so a perturbed or
    diverging parameter cannot overflow a deep stack.

    log|det| = (number of positions per sample) * sum(s), the same for every sample.
    """

    def __init__(self, dim: int, eps: float = 1e-6, max_log_scale: float = 8.0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"ActNorm: expected dim >= 1, got {dim}")
        self.dim = dim
        self.eps = eps
        if max_log_scale <= 0:
            raise ValueError(f"ActNorm: max_log_scale must be > 0, got {max_log_scale}")
        self.max_log_scale = float(max_log_scale)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))
        # a host copy of ``initialized`` once it has been read True: reading the buffer is a device-to-host copy,
        # which on a GPU waits for every queued kernel, and every ActNorm asked on every training call
        self._known_initialized = False

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # a loaded buffer may say either: read it again

    def is_initialized(self) -> bool:
        """Whether the data-dependent init has run (the ``initialized`` buffer, read from the device only until
        it is first found True; set the buffer through :meth:`initialize` or ``load_state_dict``)."""
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

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
        self.log_scale.copy_(soft_clamp_inverse(-torch.log(std + self.eps), self.max_log_scale))
        self.initialized.fill_(True)
        self._known_initialized = True

    def scale_log(self) -> Tensor:
        """The log-scale actually applied, (D,): the clamped ``log_scale``."""
        return soft_clamp(self.log_scale, self.max_log_scale)

    def _logdet(self, x: Tensor, s: Tensor) -> Tensor:
        positions = x[0, ..., 0].numel()
        return (positions * s.sum()).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(x, "x")
        if self.training and not self.is_initialized():
            self.initialize(x)
        s = self.scale_log()
        z = (x + self.bias) * torch.exp(s)
        return z, self._logdet(x, s)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(z, "z")
        s = self.scale_log()
        x = z * torch.exp(-s) - self.bias
        return x, -self._logdet(z, s)

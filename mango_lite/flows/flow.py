"""MangoFlow: a stack of MANGO blocks on two-modality tokens with a standard-normal prior."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..utils import check_tokens
from .base import FlowSequence, InvertibleModule, silence_children, standard_normal_log_prob
from .block import MangoBlock
from .config import BLOCK_FIELDS, FlowConfig, resolve


class MangoFlow(InvertibleModule):
    """``blocks`` MANGO blocks mapping tokens x (B, 2T, D) to z ~ N(0, I) of the same shape.

    log p(x) = log N(z; 0, I) + log|det dz/dx|  (nats). The paper uses 12 blocks (96 ICA layers).
    ``config`` (:class:`~mango_lite.flows.FlowConfig`, default ``FlowConfig()``) and any of its fields as keywords
    (``heads``, ``gamma``, ``alternate``, ...): passed to every :class:`MangoBlock`; ``grid`` = (h, w) of each
    modality's tokens, for ``positions`` and the grid conditioner.
    """

    def __init__(
        self,
        dim: int,
        tokens: int,
        blocks: int = 12,
        *,
        config: FlowConfig | None = None,
        grid: tuple[int, int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"MangoFlow: expected blocks >= 1, got {blocks}")
        self.dim, self.tokens = dim, tokens
        self.config = cfg = resolve(config, options, owner="MangoFlow", reads=BLOCK_FIELDS)
        self.stack = FlowSequence(
            MangoBlock(dim, tokens, config=cfg, grid=grid, flip_coupling=bool(i % 2)) for i in range(blocks)
        )
        silence_children(self)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.stack.layers

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(x, self.tokens, self.dim)
        return self.stack(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(z, self.tokens, self.dim, name="z")
        return self.stack.inverse(z)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density of x in nats, shape (B,)."""
        z, logdet = self(x)
        return standard_normal_log_prob(z) + logdet

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Negative log-likelihood in bits per dimension, shape (B,)."""
        return -self.log_prob(x) / (x[0].numel() * math.log(2.0))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw n samples (n, 2T, D); ``temperature`` scales the prior's standard deviation."""
        p = next(self.parameters())
        z = torch.randn(n, 2 * self.tokens, self.dim, dtype=p.dtype, device=p.device) * temperature
        return self.inverse(z)[0]

"""Affine coupling over channels with a token-aware conditioner (RealNVP / Glow style)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..utils import check_finite
from .base import InvertibleModule, soft_clamp


class TokenConditioner(nn.Module):
    """(B, N, c_in) -> (B, N, c_out): pointwise MLP with one convolution along the token axis, so
    each token's scale/shift also sees its neighbours. The last layer starts at zero, which makes the
    coupling the identity at initialisation (Glow's ZeroConv trick; essential for deep stacks)."""

    def __init__(self, c_in: int, c_out: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(c_in, hidden)
        self.mix = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.out = nn.Linear(hidden, c_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        h = nn.functional.gelu(self.inp(h))
        h = nn.functional.gelu(self.mix(h.transpose(1, 2)).transpose(1, 2))
        return self.out(h)


class GridConditioner(nn.Module):
    """(B, m*h*w, c_in) -> (B, m*h*w, c_out) for tokens that are m maps of h x w cells (raster order, one
    map per modality): pointwise in-layer, a 3x3 depthwise convolution on each map (zero padding: no
    wrap across rows and no mixing across modalities), a pointwise layer, and a zero-initialised out-layer
    (identity coupling at initialisation, as :class:`TokenConditioner`). This is the 2-D neighbourhood
    of Glow's 3x3 conditioners; the modalities exchange information only through the attention layers."""

    def __init__(self, c_in: int, c_out: int, hidden: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.inp = nn.Linear(c_in, hidden)
        self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, c_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        b, n, _ = h.shape
        gh, gw = self.grid
        if n % (gh * gw):
            raise ValueError(f"GridConditioner: {n} tokens are not whole {gh}x{gw} maps")
        h = nn.functional.gelu(self.inp(h))
        c = h.shape[-1]
        maps = h.view(b * (n // (gh * gw)), gh, gw, c).permute(0, 3, 1, 2)
        h = self.spatial(maps).permute(0, 2, 3, 1).reshape(b, n, c)
        h = nn.functional.gelu(self.mix(nn.functional.gelu(h)))
        return self.out(h)


class Coupling(InvertibleModule):
    """Affine coupling on the channel axis of tokens x: (B, N, D).

    The channels are cut into ``x_id`` (kept) and ``x_ch`` (changed); ``(s, t) = net(x_id)``;
    ``y_ch = x_ch * exp(s) + t``. The log-scale is soft-clamped, ``s = c * tanh(s_raw / c)``, so one
    layer can scale by at most ``exp(+-c)`` (stability). ``flip=True`` swaps the roles of the halves.
    log|det| = sum of s over tokens and changed channels.

    The conditioner: :class:`TokenConditioner` (a convolution along the token sequence) by default; with
    ``grid=(h, w)``, :class:`GridConditioner` (3x3 on each modality's h x w map).
    """

    def __init__(
        self, dim: int, hidden: int | None = None, flip: bool = False, clamp: float = 2.0,
        grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"Coupling: expected dim >= 2 (channels are split in two), got {dim}")
        self.dim = dim
        self.flip = flip
        self.clamp = clamp
        self.n_id = dim // 2 if not flip else dim - dim // 2
        self.n_ch = dim - self.n_id
        self.hidden = hidden or max(32, 2 * dim)
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.net: nn.Module = self._conditioner(self.n_id, 2 * self.n_ch, self.hidden)

    def _conditioner(self, c_in: int, c_out: int, hidden: int) -> nn.Module:
        """The network ``(B, N, c_in) -> (B, N, c_out)`` that reads the kept channels; subclasses that
        condition differently (:class:`~mango_lite.flows.cross_coupling.CrossModalCoupling`) override it."""
        if self.grid is None:
            return TokenConditioner(c_in, c_out, hidden)
        return GridConditioner(c_in, c_out, hidden, self.grid)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.flip:
            return x[..., self.n_ch :], x[..., : self.n_ch]
        return x[..., : self.n_id], x[..., self.n_id :]

    def _join(self, x_id: Tensor, x_ch: Tensor) -> Tensor:
        return torch.cat([x_ch, x_id], -1) if self.flip else torch.cat([x_id, x_ch], -1)

    def _scale_shift(self, x_id: Tensor) -> tuple[Tensor, Tensor]:
        s_raw, t = self.net(x_id).chunk(2, dim=-1)
        s = soft_clamp(s_raw, self.clamp)
        return s, t

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"Coupling: expected {name} of shape (B, N, {self.dim}), got {tuple(x.shape)}")
        check_finite(x, name)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(x, "x")
        x_id, x_ch = self._split(x)
        s, t = self._scale_shift(x_id)
        y_ch = x_ch * torch.exp(s) + t
        return self._join(x_id, y_ch), s.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            self._check(z, "z")
        z_id, z_ch = self._split(z)
        s, t = self._scale_shift(z_id)
        x_ch = (z_ch - t) * torch.exp(-s)
        return self._join(z_id, x_ch), -s.flatten(1).sum(1)



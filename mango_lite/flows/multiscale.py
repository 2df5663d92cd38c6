"""Multiscale two-modality MANGO flow for images or encoder feature maps (the paper's latent MANGO).

Per scale s (both modalities in lock-step)::

    squeeze (C -> 4C, H -> H/2)  ->  ActNorm -> channel LU (1x1 conv)  ->  `blocks` MangoBlocks over the
    h*w spatial tokens of A followed by those of B  ->  [not at the last scale] Split: half the channels
    leave as a latent (learned conditional Gaussian prior, folded into the bijection), half go on.

Everything ends in standard-normal latents, so
``log p(xa, xb) = sum_s log N(latent_s; 0, I) + log|det|`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..utils import check_finite
from .actnorm import ActNorm
from .base import FlowSequence, InvertibleModule, silence_children, standard_normal_log_prob
from .block import MangoBlock
from .config import BLOCK_FIELDS, FlowConfig, resolve
from .lu import InvertibleLinearLU
from .reshape import Split, squeeze2d, unsqueeze2d


def to_tokens(x: Tensor) -> Tensor:
    """Paired maps (B, 2, C, h, w) -> tokens (B, 2*h*w, C): modality A's pixels (raster order) then B's."""
    b, m, c, h, w = x.shape
    return x.permute(0, 1, 3, 4, 2).reshape(b, m * h * w, c)


def from_tokens(t: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_tokens`: (B, 2*h*w, C) -> (B, 2, C, h, w)."""
    b, n, c = t.shape
    return t.reshape(b, n // (h * w), h, w, c).permute(0, 1, 4, 2, 3)


@dataclass
class MultiscaleEncoding:
    """What :meth:`MultiscaleMango.encode` returns (B = batch)."""

    latents: list[Tensor]  # latents[s]: (B, 2, C_s, H_s, W_s), standard normal under the model
    features: list[Tensor]  # features[s]: (B, 2, D_s, H_s, W_s), full transformed map before the split
    logdet: Tensor  # (B,)
    log_prob: Tensor  # (B,) nats
    bits_per_dim: Tensor  # (B,)


class MultiscaleMango(InvertibleModule):
    """Two-modality multiscale MANGO flow.

    Args:
        channels: channels C of each modality's input map.
        size: (H, W) or H of the input maps; both must be divisible by 2**scales, and the coarsest
            scale must keep an even number (>= 2) of tokens per modality (IMCA's even/odd halves).
        scales: number of squeeze/split levels.
        blocks: MangoBlocks per scale.
        config: the flow's options (:class:`~mango_lite.flows.FlowConfig`, default ``FlowConfig()``), passed to
            every MangoBlock with the grid of scale s, (H / 2**(s+1), W / 2**(s+1)); ``qk_dim`` is a cap here,
            ``min(qk_dim, D_s)`` at scale s (``None`` = D_s).
        **options: any FlowConfig field, applied on top of ``config``.

    forward(x) with x = (xa, xb), each (B, C, H, W)  ->  (latents, logdet).
    """

    def __init__(
        self,
        channels: int,
        size: int | tuple[int, int],
        scales: int = 2,
        blocks: int = 1,
        *,
        config: FlowConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.config = cfg = resolve(config, options, owner="MultiscaleMango", reads=BLOCK_FIELDS)
        heads, qk_dim = cfg.heads, cfg.qk_dim
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if channels < 1 or scales < 1 or blocks < 1:
            raise ValueError(f"MultiscaleMango: expected channels, scales, blocks >= 1, got {channels}, {scales}, {blocks}")
        if h % (2**scales) or w % (2**scales):
            raise ValueError(f"MultiscaleMango: size {(h, w)} must be divisible by 2**scales = {2**scales}")
        coarse = (h >> scales) * (w >> scales)
        if coarse < 2 or coarse % 2:
            raise ValueError(
                f"MultiscaleMango: the coarsest scale has {h >> scales}x{w >> scales} = {coarse} tokens per modality; "
                "IMCA needs an even number >= 2 (use fewer scales or larger maps)"
            )
        self.channels, self.size, self.scales = channels, (h, w), scales

        def mango_blocks(d: int, hs: int, ws: int, s: int) -> list[InvertibleModule]:
            if d % heads:
                raise ValueError(f"MultiscaleMango: scale {s} has {d} channels, not divisible by heads={heads}")
            scale_config = cfg.replace(qk_dim=None if qk_dim is None else min(qk_dim, d))
            return [MangoBlock(d, hs * ws, config=scale_config, grid=(hs, ws), flip_coupling=bool(i % 2))
                    for i in range(blocks)]

        self._build_stages(mango_blocks)

    def _build_stages(self, make_blocks: Callable[[int, int, int, int], list[InvertibleModule]]) -> None:
        """The multiscale skeleton shared with other two-modality flows (e.g. the cross-modal Glow control):
        per scale s, squeeze (in ``encode``) -> ActNorm -> channel LU -> ``make_blocks(D_s, h_s, w_s, s)`` on A's
        then B's h_s*w_s tokens -> a split prior except at the last scale. Sets ``stages``, ``splits``,
        ``feature_channels`` and ``latent_shapes`` from ``channels``, ``size`` and ``scales``."""
        h, w = self.size
        self.stages = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.feature_channels: list[int] = []
        self.latent_shapes: list[tuple[int, int, int]] = []
        c = self.channels
        for s in range(self.scales):
            d, hs, ws = 4 * c, h >> (s + 1), w >> (s + 1)
            mods: list[InvertibleModule] = [ActNorm(d), InvertibleLinearLU(d, axis="channels")]
            mods += make_blocks(d, hs, ws, s)
            self.stages.append(FlowSequence(mods))
            self.feature_channels.append(d)
            if s < self.scales - 1:
                split = Split(d)
                self.splits.append(split)
                self.latent_shapes.append((split.n_out, hs, ws))
                c = split.n_keep
            else:
                self.latent_shapes.append((d, hs, ws))
        silence_children(self)

    # -- helpers --------------------------------------------------------------------------------------
    def _pair(self, x: tuple[Tensor, Tensor] | Tensor) -> Tensor:
        if isinstance(x, Tensor):
            pair = x
            if pair.dim() != 5 or pair.shape[1] != 2:
                raise ValueError(f"MultiscaleMango: expected (xa, xb) or a (B, 2, C, H, W) tensor, got shape {tuple(pair.shape)}")
        else:
            if len(x) != 2:
                raise ValueError(f"MultiscaleMango: expected two modalities (xa, xb), got {len(x)} tensors")
            xa, xb = x
            if xa.shape != xb.shape:
                raise ValueError(f"MultiscaleMango: modalities must have equal shapes, got {tuple(xa.shape)} and "
                                 f"{tuple(xb.shape)}")
            pair = torch.stack([xa, xb], 1)
        want = (self.channels, *self.size)
        if tuple(pair.shape[2:]) != want:
            raise ValueError(f"MultiscaleMango: expected each modality of shape (B, {want[0]}, {want[1]}, "
                             f"{want[2]}), got {tuple(pair.shape[:1] + pair.shape[2:])}")
        check_finite(pair, "x")
        return pair

    @property
    def num_dims(self) -> int:
        return 2 * self.channels * self.size[0] * self.size[1]

    # -- bijection ------------------------------------------------------------------------------------
    def encode(self, x: tuple[Tensor, Tensor] | Tensor) -> MultiscaleEncoding:
        pair = self._pair(x)
        logdet = pair.new_zeros(pair.shape[0])
        latents: list[Tensor] = []
        features: list[Tensor] = []
        for s, stage in enumerate(self.stages):
            pair = squeeze2d(pair)
            hs, ws = pair.shape[-2:]
            t, ld = stage(to_tokens(pair))
            logdet = logdet + ld
            features.append(from_tokens(t, hs, ws))
            if s < self.scales - 1:
                (keep, eps), ld = self.splits[s](t)
                logdet = logdet + ld
                latents.append(from_tokens(eps, hs, ws))
                pair = from_tokens(keep, hs, ws)
            else:
                latents.append(features[-1])
        log_prob = logdet + sum(standard_normal_log_prob(z) for z in latents)
        bpd = -log_prob / (self.num_dims * math.log(2.0))
        return MultiscaleEncoding(latents, features, logdet, log_prob, bpd)

    def forward(self, x: tuple[Tensor, Tensor] | Tensor) -> tuple[list[Tensor], Tensor]:  # type: ignore[override]
        enc = self.encode(x)
        return enc.latents, enc.logdet

    def inverse(self, latents: Sequence[Tensor]) -> tuple[tuple[Tensor, Tensor], Tensor]:  # type: ignore[override]
        if len(latents) != self.scales:
            raise ValueError(f"MultiscaleMango.inverse: expected {self.scales} latents, got {len(latents)}")
        for s, (z, shape) in enumerate(zip(latents, self.latent_shapes)):
            if z.dim() != 5 or tuple(z.shape[1:]) != (2, *shape):
                raise ValueError(f"MultiscaleMango.inverse: latent {s} must be (B, 2, {shape[0]}, {shape[1]}, "
                                 f"{shape[2]}), got {tuple(z.shape)}")
        logdet = latents[0].new_zeros(latents[0].shape[0])
        pair: Tensor | None = None
        for s in reversed(range(self.scales)):
            hs, ws = latents[s].shape[-2:]
            if s == self.scales - 1:
                t = to_tokens(latents[s])
            else:
                assert pair is not None
                t, ld = self.splits[s].inverse((to_tokens(pair), to_tokens(latents[s])))
                logdet = logdet + ld
            t, ld = self.stages[s].inverse(t)
            logdet = logdet + ld
            pair = unsqueeze2d(from_tokens(t, hs, ws))
        assert pair is not None
        return (pair[:, 0], pair[:, 1]), logdet

    # -- density --------------------------------------------------------------------------------------
    def log_prob(self, x: tuple[Tensor, Tensor] | Tensor) -> Tensor:
        return self.encode(x).log_prob

    def bits_per_dim(self, x: tuple[Tensor, Tensor] | Tensor, n_bins: int | None = None) -> Tensor:
        """NLL in bits/dim, (B,). With ``n_bins`` (e.g. 256 for 8-bit images scaled to [0, 1] and
        dequantised with uniform noise of width 1/n_bins) the discrete bits/dim is returned."""
        bpd = self.encode(x).bits_per_dim
        return bpd + math.log2(n_bins) if n_bins else bpd

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        p = next(self.parameters())
        zs = [torch.randn(n, 2, *shape, dtype=p.dtype, device=p.device) * temperature for shape in self.latent_shapes]
        return self.inverse(zs)[0]

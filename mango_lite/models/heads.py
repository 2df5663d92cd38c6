"""Task heads shared by every fusion: they read the fused multiscale features
``features[s]: (B, in_channels[s], h_s, w_s)`` with ``h_0 > h_1 > ...`` (finest first)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoders import group_norm

__all__ = ["SegformerHead", "TranslationHead", "GenreHead"]


def _check_features(features: Sequence[Tensor], in_channels: Sequence[int], who: str) -> None:
    if len(features) != len(in_channels):
        raise ValueError(f"{who}: expected {len(in_channels)} feature scales, got {len(features)}")
    for s, (f, c) in enumerate(zip(features, in_channels)):
        if f.dim() != 4 or f.shape[1] != c:
            raise ValueError(f"{who}: features[{s}] should be (B, {c}, h, w), got shape {tuple(f.shape)}")


class _AllMLPFuse(nn.Module):
    """SegFormer's all-MLP decoder trunk: per-scale 1x1 "linear" to ``embed`` -> bilinear upsampling to
    the finest scale -> concat -> 1x1 fuse -> GN -> GELU. ``list[(B, C_s, h_s, w_s)] -> (B, embed, h_0, w_0)``."""

    def __init__(self, in_channels: Sequence[int], embed: int) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.linear = nn.ModuleList(nn.Conv2d(c, embed, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(embed * len(in_channels), embed, 1, bias=False), group_norm(embed), nn.GELU()
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        ups = [
            F.interpolate(lin(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size else lin(f)
            for lin, f in zip(self.linear, features)
        ]
        return self.fuse(torch.cat(ups, dim=1))


class SegformerHead(nn.Module):
    """All-MLP segmentation head (SegFormer).

    ``forward(features, out_size) -> logits (B, num_classes, *out_size)`` float: the trunk at the finest
    feature scale, dropout, a 1x1 classifier, then bilinear upsampling to the input size.
    """

    def __init__(self, in_channels: Sequence[int], embed: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.trunk = _AllMLPFuse(in_channels, embed)
        self.drop = nn.Dropout2d(dropout)
        self.cls = nn.Conv2d(embed, num_classes, 1)

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int]) -> Tensor:
        _check_features(features, self.in_channels, "SegformerHead")
        logits = self.cls(self.drop(self.trunk(features)))
        return F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=False)


class TranslationHead(nn.Module):
    """Upsampling image decoder for image-to-image translation.

    ``forward(features, out_size) -> image (B, out_channels, *out_size)`` in ``[-1, 1]`` (tanh).
    All-MLP trunk at the finest scale (stride ``stride`` w.r.t. the image), then ``log2(stride)`` stages of
    [nearest x2 upsampling -> 3x3 conv -> GN -> GELU] halving the width (min 8), then a 3x3 conv and tanh.
    """

    def __init__(self, in_channels: Sequence[int], embed: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"TranslationHead: stride must be a power of two, got {stride}")
        self.in_channels = list(in_channels)
        self.trunk = _AllMLPFuse(in_channels, embed)
        stages: list[nn.Module] = []
        c = embed
        for _ in range(int(math.log2(stride))):
            c_out = max(c // 2, 8)
            stages.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(c, c_out, 3, padding=1, bias=False),
                    group_norm(c_out),
                    nn.GELU(),
                )
            )
            c = c_out
        self.up = nn.Sequential(*stages)
        self.out = nn.Conv2d(c, out_channels, 3, padding=1)

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int]) -> Tensor:
        _check_features(features, self.in_channels, "TranslationHead")
        x = self.up(self.trunk(features))
        if tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode="bilinear", align_corners=False)
        return torch.tanh(self.out(x))


class GenreHead(nn.Module):
    """Multi-label classifier: global average pool of every scale -> concat -> MLP -> logits.

    ``forward(features, out_size=None) -> logits (B, num_genres)`` float, for ``BCEWithLogitsLoss``
    (sigmoid > 0.5 = predicted genre, as in GMU / MultiBench)."""

    def __init__(self, in_channels: Sequence[int], num_genres: int = 23, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.mlp = nn.Sequential(
            nn.LayerNorm(sum(in_channels)),
            nn.Linear(sum(in_channels), hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_genres),
        )

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int] | None = None) -> Tensor:
        _check_features(features, self.in_channels, "GenreHead")
        pooled = torch.cat([f.mean(dim=(-2, -1)) for f in features], dim=1)
        return self.mlp(pooled)

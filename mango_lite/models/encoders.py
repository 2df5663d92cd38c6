"""Per-modality image encoders trained from scratch (pretrained ones: :mod:`mango_lite.models.pretrained`).

Every encoder maps an image batch ``(B, in_channels, H, W)`` (float32) to a feature map
``(B, width, H / stride, W / stride)`` that ends with :class:`FlowStandardize`, a normalisation *without*
learnable affine parameters. Why: in MANGO the encoder features ``F = E(X)`` are the data of the
normalizing flow and the loss contains the flow's negative log-likelihood of ``F``. With a learnable
output scale the encoder could shrink ``F`` towards zero: every halving of the features lowers the
NLL by ``log 2`` per dimension while carrying no information, so the "density" term would be won by
collapsing the features instead of modelling them. A fixed standardisation pins each channel to zero
mean and unit variance, so the NLL can only fall by the flow finding real structure (see also the small
training noise added in :class:`mango_lite.models.fusion.MangoFusion`, which bounds the NLL from below).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = [
    "group_norm",
    "FlowStandardize",
    "ConvBlock",
    "ConvEncoder",
]


def group_norm(channels: int, max_groups: int = 8, affine: bool = True) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``.

    GroupNorm instead of BatchNorm inside the networks: the statistics do not depend on the batch, so
    batch size 1 (translation) and train/eval behave the same."""
    return nn.GroupNorm(math.gcd(channels, max_groups), channels, affine=affine)


class FlowStandardize(nn.BatchNorm2d):
    """Per-channel standardisation with no learnable scale or shift (``BatchNorm2d(affine=False)``).

    Input and output ``(B, C, h, w)`` float. In training mode every channel has zero mean and unit
    variance over the batch and positions; in eval mode the running statistics are used. Batch
    statistics rather than a per-sample GroupNorm/LayerNorm on purpose: a per-sample norm puts every
    sample exactly on a sphere inside a hyper-plane (sum = 0, sum of squares fixed), a measure-zero set
    whose density a flow can make arbitrarily large; standardising across the batch imposes no exact
    constraint on any single sample.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=False, track_running_stats=True, momentum=0.1)


class ConvBlock(nn.Module):
    """Residual ConvNeXt-style block: depthwise 3x3 -> GroupNorm -> 1x1 (x2 width) -> GELU -> 1x1.

    ``(B, C, h, w) -> (B, C, h, w)``. The last 1x1 is zero-initialised so a fresh block is the identity
    (stable start when several are stacked)."""

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = group_norm(channels)
        self.pw1 = nn.Conv2d(channels, channels * expansion, 1)
        self.act = nn.GELU()
        self.pw2 = nn.Conv2d(channels * expansion, channels, 1)
        nn.init.zeros_(self.pw2.weight)
        nn.init.zeros_(self.pw2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pw2(self.act(self.pw1(self.norm(self.dw(x)))))


def _conv_gn_gelu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), group_norm(c_out), nn.GELU()
    )


class ConvEncoder(nn.Module):
    """Small convolutional stem, trained from scratch (no pretrained weights are available offline).

    ``(B, in_channels, H, W) float -> (B, width, H/stride, W/stride) float``, standardised per channel
    (:class:`FlowStandardize`). ``stride`` must be a power of two in {2, 4, 8, 16}; each factor 2 is one
    conv(3x3, stride 2)-GN-GELU stage, followed by ``depth`` residual :class:`ConvBlock` s.
    H and W must be divisible by ``stride``.
    """

    def __init__(self, in_channels: int, width: int, stride: int = 4, depth: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"ConvEncoder: in_channels and width must be >= 1, got {in_channels}, {width}")
        if stride not in (2, 4, 8, 16):
            raise ValueError(f"ConvEncoder: stride must be one of 2, 4, 8, 16, got {stride}")
        self.in_channels = in_channels
        self.width = width
        self.stride = stride
        n_down = int(math.log2(stride))
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(n_down):
            # widths ramp up to `width` at the last stage (cheap early stages at full resolution)
            c_out = max(width // 2 ** (n_down - 1 - i), min(width, 8))
            layers.append(_conv_gn_gelu(c, c_out, 2))
            c = c_out
        layers.extend(ConvBlock(c) for _ in range(depth))
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c, width, 1)
        self.standardize = FlowStandardize(width)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvEncoder: expected an image batch (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(
                f"ConvEncoder: H and W must be divisible by the stride {self.stride}, got {tuple(x.shape[-2:])}"
            )
        return self.standardize(self.proj(self.body(x)))

"""Concatenation with a large receptive field: the control that attention must beat on misregistered inputs.

:class:`~mango_lite.models.fusion.ConcatFusion` fuses the two streams with a 1x1 convolution of their
concatenation: position i of modality A meets position i of modality B and nothing else. When the second
modality is displaced (a stereo rig's disparity, :mod:`mango_lite.datasets.synth.misregistration`), the
partner of A's position i sits some cells away, so a local fusion pairs the wrong features. Attention can
look there; so can a convolution whose receptive field is wide enough. This module is that convolution:
at every scale the concatenated streams also go through parallel dilated 3x3 convolutions (an atrous
spatial pyramid, as DeepLab's ASPP, arXiv 1706.05587) and a globally pooled branch, summed, normalised and
added to the 1x1 fusion. It adds no cross-modal attention, only reach, so "MANGO beats concat" on
displaced data can be told apart from "anything that looks further beats concat".

``hidden`` sets the branches' width; :func:`context_hidden_for_budget` picks it so that the whole task
model has about as many trainable parameters as a reference (MANGO's), which keeps the comparison fair.

Shapes: forward(fa: (B, C, h, w), fb: (B, C, h, w)) -> FusionOutput with one map per scale,
(B, out_channels[s], h / 2**(s+1), w / 2**(s+1)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from .encoders import group_norm
from .fusion import _TwoStream


class _ContextBranches(nn.Module):
    """Sum of dilated 3x3 convolutions and a pooled 1x1 branch over the concatenated streams, then
    GroupNorm -> GELU -> 1x1 (zero-initialised, so a fresh model is plain concat fusion)."""

    def __init__(self, c_in: int, hidden: int, c_out: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        self.branches = nn.ModuleList(nn.Conv2d(c_in, hidden, 3, padding=d, dilation=d, bias=False)
                                      for d in self.dilations)
        self.pooled = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.norm = group_norm(hidden)
        self.act = nn.GELU()
        self.out = nn.Conv2d(hidden, c_out, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pooled(x.mean((2, 3), keepdim=True))  # (B, hidden, 1, 1): broadcast over positions
        for conv in self.branches:
            y = y + conv(x)
        return self.out(self.act(self.norm(y)))


class ContextConcatFusion(_TwoStream):
    """Two streams fused by concatenation + 1x1 conv, plus a dilated-context term (see the module doc).

    Args beyond :class:`~mango_lite.models.fusion.ConcatFusion`'s: ``dilations`` of the 3x3 branches
    (cells of the scale's grid), ``hidden`` channels of the branches at the first scale (doubling with the
    scale's channels, as the streams do)."""

    who = "ContextConcatFusion"

    def __init__(self, channels: int, size: int | Sequence[int], scales: int = 2, blocks: int = 1,
                 out_channels: Sequence[int] | None = None, dilations: Sequence[int] = (1, 2, 3),
                 hidden: int | None = None) -> None:
        super().__init__(channels, size, scales, blocks, out_channels)
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"{self.who}: dilations must be positive integers, got {tuple(dilations)}")
        base = self.out_channels[0] if hidden is None else int(hidden)
        if base < 1:
            raise ValueError(f"{self.who}: hidden must be >= 1, got {hidden}")
        self.hidden = [base * c // self.out_channels[0] for c in self.out_channels]
        self.context = nn.ModuleList(_ContextBranches(2 * c, max(1, h), c, dilations)
                                     for c, h in zip(self.out_channels, self.hidden))

    def _fuse(self, s: int, both: Tensor) -> Tensor:
        return self.fuse[s](both) + self.context[s](both)


def context_hidden_for_budget(build: Callable[[int], nn.Module], target_params: int, limit: int = 4096) -> int:
    """The branch width ``hidden`` whose model ``build(hidden)`` has the number of trainable parameters
    closest to ``target_params`` (the count grows with ``hidden``: bisection)."""
    def count(h: int) -> int:
        return sum(p.numel() for p in build(h).parameters() if p.requires_grad)

    if count(limit) < target_params:
        raise ValueError(f"context_hidden_for_budget: no width up to {limit} reaches {target_params} parameters")
    lo, hi = 1, limit  # invariant: count(hi) >= target
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) >= target_params:
            hi = mid
        else:
            lo = mid + 1
    if hi > 1 and target_params - count(hi - 1) < count(hi) - target_params:
        return hi - 1
    return hi

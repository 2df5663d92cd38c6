"""Whole-image segmentation with a model that reads one input size: overlapping windows, averaged logits.

TokenFusion and GeminiFusion score NYUDv2 and SUN RGB-D on the whole validation image. Their backbones take
any size; MANGO's flow does not (LICA's token-mixing matrix and the positional codes are sized to one
feature map). The standard answer (mmsegmentation's ``slide`` mode) is to resize the image to the training
scale, run the model on overlapping windows of its training size, average the logits where windows
overlap, and resize the logits back to the label's resolution, so every pixel of the original label is
scored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks import CLASS_MAP, get_task

__all__ = ["SlidingWindow", "window_starts"]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of size ``window`` that cover ``[0, length)`` with step ``stride``; the last
    window ends exactly at ``length`` (``length <= window`` gives ``[0]``)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


class SlidingWindow(nn.Module):
    """Wraps a segmentation :class:`~mango_lite.models.TaskModel` for whole-image evaluation.

    ``forward(a (B, C_a, H, W), b (B, C_b, H, W)) -> ModelOutput`` with ``pred`` (B, classes, H, W): both
    inputs are resized (bilinear) so that their shorter side is ``window`` (the scale the model was trained
    at), cut into ``window x window`` windows ``stride`` apart (default 2/3 of the window), the logits averaged over
    overlaps and resized back to ``(H, W)``. Scalar entries of ``aux`` (flow bits/dim ...) are averaged over the
    windows. ``loss`` is the wrapped model's, on the whole-image prediction."""

    def __init__(self, model: nn.Module, window: int, stride: int | None = None) -> None:
        super().__init__()
        if get_task(getattr(model, "task", "segmentation")).output != CLASS_MAP:
            raise ValueError(f"SlidingWindow: whole-image evaluation is for per-pixel classes (segmentation), got "
                             f"task {model.task!r}")
        self.model = model
        self.window = int(window)
        self.stride = int(stride) if stride else max(1, (2 * self.window) // 3)

    def loss(self, output: Any, target: Tensor) -> Any:
        return self.model.loss(output, target)

    @staticmethod
    def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False).to(x.dtype)

    def forward(self, a: Tensor, b: Tensor) -> Any:
        from .task_models import ModelOutput

        if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
            raise ValueError(f"SlidingWindow: expected two image batches of one size, got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        H, W = int(a.shape[-2]), int(a.shape[-1])
        s = self.window / min(H, W)
        h, w = max(self.window, round(H * s)), max(self.window, round(W * s))
        a_s, b_s = self._resize(a, (h, w)), self._resize(b, (h, w))
        logits: Tensor | None = None
        count = torch.zeros(1, 1, h, w, device=a.device)
        aux_sum: dict[str, Tensor] = {}
        n = 0
        for top in window_starts(h, self.window, self.stride):
            for left in window_starts(w, self.window, self.stride):
                sl = (..., slice(top, top + self.window), slice(left, left + self.window))
                out = self.model(a_s[sl], b_s[sl])
                if logits is None:
                    logits = torch.zeros(a.shape[0], out.pred.shape[1], h, w, device=a.device, dtype=torch.float32)
                logits[sl] += out.pred.float()
                count[sl] += 1
                n += 1
                for k, v in out.aux.items():
                    if isinstance(v, Tensor) and v.numel() == 1:
                        aux_sum[k] = aux_sum.get(k, 0.0) + v.detach().float()
        assert logits is not None
        pred = self._resize(logits / count, (H, W))
        return ModelOutput(pred, {k: v / n for k, v in aux_sum.items()})

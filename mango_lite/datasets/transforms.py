"""Paired transforms for multimodal samples (torch only, no torchvision).

A *sample* is a ``dict[str, Any]``. The transforms look at its values by type and key:

* **images** - any float ``Tensor`` of shape ``(C, H, W)`` (rgb, depth, Taskonomy domains, posters).
  Resized bilinearly (antialiased when shrinking), padded with a per-key fill value.
* **labels** - entries whose key is in ``label_keys`` (default ``("label",)``): int64 ``Tensor`` of
  shape ``(H, W)``. Resized with nearest neighbour only (a label is never interpolated, so the set of
  values can only shrink), padded with ``ignore_index``.
* anything else (strings, 1-D label vectors, feature vectors, ...) is passed through untouched.

Every geometric transform applies *one* draw of its random parameters to all image and label entries,
so modalities and labels stay pixel-aligned; all spatial entries must share ``(H, W)`` (checked).

Randomness: every random transform takes an optional ``generator: torch.Generator``. With ``None``
(default) the torch global RNG is used, which ``torch.utils.data.DataLoader`` seeds per worker from its
own base seed, so ``torch.manual_seed(k)`` (or ``mango_lite.utils.seed_everything(k)``) before building
the loader makes a run repeatable. Pass a seeded generator to make a transform repeatable on its own
(single process only: DataLoader workers would each get a copy of the same generator state and so
draw identical augmentations - leave ``generator=None`` when ``num_workers > 0``).

The loaders decode files to *unnormalised* tensors (rgb in [0, 1], depth in the dataset's scale,
Taskonomy domains in [0, 1]), apply the user ``transform`` (geometry), and normalise last with
:class:`Normalize`, so padding fills are given in the unnormalised scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Sample = dict[str, Any]
SizeLike = int | tuple[int, int]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MMBT / HF mm-imdb poster statistics.
MMIMDB_MEAN = (0.4678, 0.4453, 0.4066)
MMIMDB_STD = (0.1222, 0.1215, 0.1438)
DEFAULT_LABEL_KEYS = ("label",)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "MMIMDB_MEAN", "MMIMDB_STD",
    "Compose", "Resize", "RandomScale", "RandomCrop", "CenterCrop", "HorizontalFlip", "Normalize",
    "ToTensor", "segmentation_transforms", "translation_transforms", "poster_transforms",
    "spatial_size",
]


# ----------------------------------------------------------------------------------------- helpers
def _pair(size: SizeLike, name: str = "size") -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{name}: expected a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _is_image(key: str, value: Any, label_keys: Sequence[str]) -> bool:
    return key not in label_keys and isinstance(value, Tensor) and value.dim() == 3


def _is_label(key: str, value: Any, label_keys: Sequence[str]) -> bool:
    return key in label_keys and isinstance(value, Tensor)


def spatial_size(sample: Mapping[str, Any], label_keys: Sequence[str] = DEFAULT_LABEL_KEYS) -> tuple[int, int]:
    """The common ``(H, W)`` of all images ``(C,H,W)`` and labels ``(H,W)`` in ``sample``.

    Raises ValueError naming the keys and shapes when they disagree or when there is none."""
    sizes: dict[str, tuple[int, int]] = {}
    for k, v in sample.items():
        if _is_image(k, v, label_keys):
            sizes[k] = (int(v.shape[-2]), int(v.shape[-1]))
        elif _is_label(k, v, label_keys):
            if v.dim() != 2:
                raise ValueError(f"label {k!r}: expected an int64 tensor (H, W), got shape {tuple(v.shape)}")
            sizes[k] = (int(v.shape[0]), int(v.shape[1]))
    if not sizes:
        raise ValueError(f"sample has no image (C,H,W) or label (H,W) tensors; keys: {sorted(sample)}")
    distinct = set(sizes.values())
    if len(distinct) != 1:
        raise ValueError(f"paired entries have different spatial sizes (H, W): {sizes}")
    return distinct.pop()


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator | None, high_inclusive: int) -> int:
    if high_inclusive <= 0:
        return 0
    return int(torch.randint(0, high_inclusive + 1, (), generator=generator))


def _resize_image(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a float (C,H,W) tensor; antialiased when shrinking (like PIL / torchvision)."""
    if tuple(x.shape[-2:]) == size:
        return x
    antialias = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    y = F.interpolate(x[None].float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return y[0].to(x.dtype)


def _nearest_index(n_in: int, n_out: int) -> Tensor:
    # Pixel-centre nearest neighbour (same as PIL NEAREST and torch "nearest-exact").
    idx = torch.floor((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).long()
    return idx.clamp_(0, n_in - 1)


def _resize_label(y: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of an (H, W) integer label map by index gathering (values copied, never mixed)."""
    if tuple(y.shape) == size:
        return y
    rows = _nearest_index(y.shape[0], size[0])
    cols = _nearest_index(y.shape[1], size[1])
    return y.index_select(0, rows).index_select(1, cols)


def _fill_tensor(fill: float | Sequence[float], channels: int, key: str) -> Tensor:
    f = torch.as_tensor(fill, dtype=torch.float32).flatten()
    if f.numel() == 1:
        f = f.expand(channels)
    if f.numel() != channels:
        raise ValueError(f"pad fill for {key!r}: expected 1 or {channels} values, got {f.numel()}")
    return f.view(channels, 1, 1)


# ------------------------------------------------------------------------------------- transforms
class Compose:
    """Apply transforms in order: ``Compose([Resize(64), HorizontalFlip()])(sample)``."""

    def __init__(self, transforms: Iterable[Callable[[Sample], Sample]]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class _Spatial:
    """Base: apply ``_image`` to images and ``_label`` to labels with shared parameters."""

    def __init__(self, label_keys: Sequence[str] = DEFAULT_LABEL_KEYS):
        self.label_keys = tuple(label_keys)

    def _apply(self, sample: Sample, image_fn: Callable[[str, Tensor], Tensor],
               label_fn: Callable[[str, Tensor], Tensor]) -> Sample:
        out = dict(sample)
        for k, v in sample.items():
            if _is_image(k, v, self.label_keys):
                out[k] = image_fn(k, v)
            elif _is_label(k, v, self.label_keys):
                out[k] = label_fn(k, v)
        return out


class Resize(_Spatial):
    """Resize all images (bilinear) and labels (nearest).

    ``size``: int -> the *shorter* side becomes ``size``, aspect ratio kept (rounded);
    ``(h, w)`` -> exactly that size."""

    def __init__(self, size: SizeLike, label_keys: Sequence[str] = DEFAULT_LABEL_KEYS):
        super().__init__(label_keys)
        if isinstance(size, (int, np.integer)):
            if size <= 0:
                raise ValueError(f"Resize: expected a positive shorter side, got {size}")
            self.size: SizeLike = int(size)
        else:
            self.size = _pair(size)

    def target_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        if isinstance(self.size, tuple):
            return self.size
        h, w = hw
        s = self.size
        if h <= w:
            return s, max(1, int(round(w * s / h)))
        return max(1, int(round(h * s / w))), s

    def __call__(self, sample: Sample) -> Sample:
        size = self.target_size(spatial_size(sample, self.label_keys))
        return self._apply(sample, lambda k, x: _resize_image(x, size), lambda k, y: _resize_label(y, size))

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class RandomScale(_Spatial):
    """Scale the whole sample by one factor drawn uniformly from ``[low, high]`` (TokenFusion 0.5-2.0)."""

    def __init__(self, low: float = 0.5, high: float = 2.0, label_keys: Sequence[str] = DEFAULT_LABEL_KEYS,
                 generator: torch.Generator | None = None):
        super().__init__(label_keys)
        if not 0 < low <= high:
            raise ValueError(f"RandomScale: expected 0 < low <= high, got low={low}, high={high}")
        self.low, self.high, self.generator = float(low), float(high), generator

    def __call__(self, sample: Sample) -> Sample:
        h, w = spatial_size(sample, self.label_keys)
        s = _uniform(self.generator, self.low, self.high)
        size = (max(1, int(round(h * s))), max(1, int(round(w * s))))
        return self._apply(sample, lambda k, x: _resize_image(x, size), lambda k, y: _resize_label(y, size))

    def __repr__(self) -> str:
        return f"RandomScale({self.low}, {self.high})"


class _Crop(_Spatial):
    """Shared pad-then-crop logic for RandomCrop / CenterCrop."""

    def __init__(self, size: SizeLike, pad_fill: Mapping[str, float | Sequence[float]] | None = None,
                 default_fill: float = 0.0, ignore_index: int = 255,
                 label_keys: Sequence[str] = DEFAULT_LABEL_KEYS):
        super().__init__(label_keys)
        self.size = _pair(size)
        self.pad_fill = dict(pad_fill or {})
        self.default_fill = float(default_fill)
        self.ignore_index = int(ignore_index)

    def _pad(self, sample: Sample) -> Sample:
        h, w = spatial_size(sample, self.label_keys)
        ph, pw = max(0, self.size[0] - h), max(0, self.size[1] - w)
        if ph == 0 and pw == 0:
            return sample
        top, left = ph // 2, pw // 2  # centred padding: the crop may then cut into either side

        def pad_image(k: str, x: Tensor) -> Tensor:
            fill = _fill_tensor(self.pad_fill.get(k, self.default_fill), x.shape[0], k).to(x.dtype)
            out = fill.expand(x.shape[0], h + ph, w + pw).clone()
            out[:, top:top + h, left:left + w] = x
            return out

        def pad_label(k: str, y: Tensor) -> Tensor:
            out = torch.full((h + ph, w + pw), self.ignore_index, dtype=y.dtype)
            out[top:top + h, left:left + w] = y
            return out

        return self._apply(sample, pad_image, pad_label)

    def _crop(self, sample: Sample, top: int, left: int) -> Sample:
        th, tw = self.size
        return self._apply(sample, lambda k, x: x[:, top:top + th, left:left + tw].contiguous(),
                           lambda k, y: y[top:top + th, left:left + tw].contiguous())


class RandomCrop(_Crop):
    """Crop ``size`` at a uniformly random position (same for all entries).

    Smaller samples are first padded (centred): images with ``pad_fill[key]`` (scalar or per channel,
    default ``default_fill``), labels with ``ignore_index`` so padding never counts as a class."""

    def __init__(self, size: SizeLike, pad_fill: Mapping[str, float | Sequence[float]] | None = None,
                 default_fill: float = 0.0, ignore_index: int = 255,
                 label_keys: Sequence[str] = DEFAULT_LABEL_KEYS, generator: torch.Generator | None = None):
        super().__init__(size, pad_fill, default_fill, ignore_index, label_keys)
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        sample = self._pad(sample)
        h, w = spatial_size(sample, self.label_keys)
        top = _randint(self.generator, h - self.size[0])
        left = _randint(self.generator, w - self.size[1])
        return self._crop(sample, top, left)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class CenterCrop(_Crop):
    """Crop ``size`` from the centre (padding as in :class:`RandomCrop` when the sample is smaller)."""

    def __call__(self, sample: Sample) -> Sample:
        sample = self._pad(sample)
        h, w = spatial_size(sample, self.label_keys)
        return self._crop(sample, (h - self.size[0]) // 2, (w - self.size[1]) // 2)

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class HorizontalFlip(_Spatial):
    """Mirror all images and labels left-right together with probability ``p`` (``p=1``: always)."""

    def __init__(self, p: float = 0.5, label_keys: Sequence[str] = DEFAULT_LABEL_KEYS,
                 generator: torch.Generator | None = None):
        super().__init__(label_keys)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"HorizontalFlip: expected 0 <= p <= 1, got {p}")
        self.p, self.generator = float(p), generator

    def __call__(self, sample: Sample) -> Sample:
        if self.p < 1.0 and float(torch.rand((), generator=self.generator)) >= self.p:
            return sample
        return self._apply(sample, lambda k, x: x.flip(-1), lambda k, y: y.flip(-1))

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


class Normalize:
    """Per-modality ``(x - mean) / std`` on (C,H,W) float tensors.

    ``stats`` maps key -> (mean, std), each a scalar or one value per channel. Keys missing from the
    sample are skipped, so one Normalize serves samples with a subset of modalities."""

    def __init__(self, stats: Mapping[str, tuple[float | Sequence[float], float | Sequence[float]]]):
        self.stats = {k: (mean, std) for k, (mean, std) in stats.items()}
        for k, (_, std) in self.stats.items():
            if (torch.as_tensor(std, dtype=torch.float32) <= 0).any():
                raise ValueError(f"Normalize: std for {k!r} must be positive, got {std}")

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        for k, (mean, std) in self.stats.items():
            if k not in sample:
                continue
            x = sample[k]
            if not isinstance(x, Tensor) or x.dim() != 3:
                raise ValueError(f"Normalize {k!r}: expected a float tensor (C,H,W), got "
                                 f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
            c = x.shape[0]
            out[k] = (x - _fill_tensor(mean, c, k)) / _fill_tensor(std, c, k)
        return out

    def __repr__(self) -> str:
        return f"Normalize({self.stats})"


class ToTensor:
    """numpy -> torch: images ``(H,W)`` / ``(H,W,C)`` -> float32 ``(C,H,W)`` times ``scale[key]``
    (default 1), labels ``(H,W)`` -> int64. Non-array entries pass through."""

    def __init__(self, scale: Mapping[str, float] | None = None, label_keys: Sequence[str] = DEFAULT_LABEL_KEYS):
        self.scale = dict(scale or {})
        self.label_keys = tuple(label_keys)

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        for k, v in sample.items():
            if not isinstance(v, np.ndarray):
                continue
            if k in self.label_keys:
                if v.ndim != 2:
                    raise ValueError(f"ToTensor: label {k!r} must be 2-D (H, W), got shape {v.shape}")
                out[k] = torch.from_numpy(v.astype(np.int64, copy=False))
            elif v.ndim in (2, 3):
                arr = v[None] if v.ndim == 2 else np.ascontiguousarray(v.transpose(2, 0, 1))
                t = torch.from_numpy(arr.astype(np.float32, copy=False))
                s = self.scale.get(k, 1.0)
                out[k] = t * s if s != 1.0 else t
        return out


# ------------------------------------------------------------------------------------- recipes
def segmentation_transforms(size: SizeLike, train: bool, scale: tuple[float, float] = (0.5, 2.0),
                            ignore_index: int = 255, generator: torch.Generator | None = None) -> Compose:
    """RGB-D segmentation recipe (TokenFusion, scaled down to ``size``).

    train: shorter side -> ``min(size)``, RandomScale(``scale``), pad (rgb with the ImageNet mean so it
    normalises to 0, depth with 0, label with ``ignore_index``) + RandomCrop(``size``), HorizontalFlip.
    val: shorter side -> ``min(size)``, CenterCrop(``size``) so batches are square; for the full
    image (TokenFusion's validation) use ``transform=None`` and batch size 1."""
    hw = _pair(size)
    fills = {"rgb": IMAGENET_MEAN, "depth": 0.0}
    if train:
        return Compose([
            Resize(min(hw)),
            RandomScale(scale[0], scale[1], generator=generator),
            RandomCrop(hw, pad_fill=fills, ignore_index=ignore_index, generator=generator),
            HorizontalFlip(0.5, generator=generator),
        ])
    return Compose([Resize(min(hw)), CenterCrop(hw, pad_fill=fills, ignore_index=ignore_index)])


def translation_transforms(size: SizeLike, train: bool, generator: torch.Generator | None = None) -> Compose:
    """Taskonomy translation recipe (TokenFusion / pix2pix): train Resize(size*286/256) ->
    RandomCrop(size) -> HorizontalFlip; val Resize(size) (square Taskonomy views give size x size)."""
    hw = _pair(size)
    if train:
        load = (int(round(hw[0] * 286 / 256)), int(round(hw[1] * 286 / 256)))
        return Compose([Resize(load), RandomCrop(hw, generator=generator), HorizontalFlip(0.5, generator=generator)])
    return Compose([Resize(hw)])


def poster_transforms(size: SizeLike, train: bool, generator: torch.Generator | None = None) -> Compose:
    """MM-IMDb poster recipe (MMBT: Resize 256 -> CenterCrop 224, i.e. shorter side ``size*256/224``).

    train: shorter side -> ``min(size)*256/224``, RandomCrop(``size``), HorizontalFlip;
    val: shorter side -> ``min(size)*256/224``, CenterCrop(``size``). ``size`` may be ``(h, w)``
    (e.g. ``(256, 160)`` for the GMU poster shape)."""
    hw = _pair(size)
    short = max(1, int(math.floor(min(hw) * 256 / 224 + 0.5)))
    if train:
        return Compose([Resize(short), RandomCrop(hw, generator=generator), HorizontalFlip(0.5, generator=generator)])
    return Compose([Resize(short), CenterCrop(hw)])

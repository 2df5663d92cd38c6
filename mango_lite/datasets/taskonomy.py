"""Taskonomy sample-model subset for image-to-image translation, in the TokenFusion / CEN layout.

Layout (``root``)::

    train_domain.txt  val_domain.txt     # 1000 / 500 lines: {domain}/point_407_view_2_domain_{domain}.png
    rgb/point_P_view_V_domain_rgb.png    # one folder per domain, same template

Decoding (TokenFusion ``utils/dataset.py``), every domain to ``u`` in [0, 1] and then to ``2u - 1``
(the mean 0.5 / std 0.5 normalisation), i.e. values in [-1, 1]:

==================================  =========================================  ========
domain                              u = ...                                    channels
==================================  =========================================  ========
rgb, normal (127-centred),          pixel / 255 (16-bit files: / 65535)        3
principal_curvature (127 = zero)
reshading, segment_unsup2d/25d      pixel / 255 (16-bit files: / 65535)        1
depth_euclidean, depth_zbuffer      log(1 + d) / 11.1, d in 1/512 m (16-bit)   1
edge_texture                        e / 11355 (16-bit)                          1
edge_occlusion                      e / 11584 (16-bit)                          1
==================================  =========================================  ========

Differences from TokenFusion, on purpose: values are kept as float (TokenFusion re-quantises to uint8
before normalising) and clipped to [0, 1]; greyscale domains keep **one** channel by default
(``tile_gray=True`` tiles them to 3 channels as TokenFusion does). :meth:`Taskonomy.channels` gives
the channel count per domain. :func:`decode_taskonomy` inverts the encoding so errors can be reported in
file units or metres.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from . import _io
from .constants import TASKONOMY_DOMAINS

Transform = Callable[[dict[str, Any]], dict[str, Any]]

DEPTH_LOG_MAX = 11.1  # log(1 + 65535) = 11.09: the 16-bit range maps into [0, 1]
DEPTH_UNITS_PER_METRE = 512.0
EDGE_MAX = {"edge_texture": 11355.0, "edge_occlusion": 11584.0}
_THREE_CHANNEL = frozenset({"rgb", "normal", "principal_curvature"})
_LOG_DEPTH = frozenset({"depth_euclidean", "depth_zbuffer"})
_SIXTEEN_BIT = _LOG_DEPTH | frozenset(EDGE_MAX)
SPLIT_FILES = {"train": "train_domain.txt", "val": "val_domain.txt"}


def _check_domain(domain: str) -> None:
    if domain not in TASKONOMY_DOMAINS:
        raise DataError(f"unknown Taskonomy domain {domain!r}; expected one of {TASKONOMY_DOMAINS}")


def domain_channels(domain: str, tile_gray: bool = False) -> int:
    """Channels a decoded ``domain`` has: 3 for rgb / normal / principal_curvature, else 1 (3 with ``tile_gray``)."""
    _check_domain(domain)
    return 3 if (domain in _THREE_CHANNEL or tile_gray) else 1


def encode_taskonomy(domain: str, raw: np.ndarray) -> np.ndarray:
    """File values -> ``u`` in [0, 1] (float32, same shape), per the table in the module docstring.

    ``raw`` is the array PIL decodes: uint8 for 8-bit PNGs, uint16 / int32 for 16-bit ones."""
    _check_domain(domain)
    x = raw.astype(np.float64)
    if domain in _LOG_DEPTH:
        u = np.log1p(np.maximum(x, 0.0)) / DEPTH_LOG_MAX
    elif domain in EDGE_MAX:
        u = x / EDGE_MAX[domain]
    else:
        u = x / (255.0 if raw.dtype == np.uint8 else 65535.0)
    return np.clip(u, 0.0, 1.0).astype(np.float32)


def decode_taskonomy(domain: str, x: Tensor | np.ndarray, unit: str = "file") -> Tensor | np.ndarray:
    """Invert the encoding of a normalised tensor ``x`` in [-1, 1] (any shape; torch or numpy).

    ``unit``: ``"unit"`` -> u in [0, 1]; ``"file"`` -> the PNG's own values (0..255 for 8-bit domains,
    16-bit edge counts, depth in 1/512 m); ``"metres"`` -> depth domains in metres. Values are not
    clipped, so a prediction outside [-1, 1] maps outside the file range."""
    _check_domain(domain)
    is_np = isinstance(x, np.ndarray)
    t = torch.as_tensor(x, dtype=torch.float64) if is_np else x.double()
    u = (t + 1.0) / 2.0
    if unit == "unit":
        out = u
    elif unit == "file":
        if domain in _LOG_DEPTH:
            out = torch.expm1(u * DEPTH_LOG_MAX)
        elif domain in EDGE_MAX:
            out = u * EDGE_MAX[domain]
        else:
            out = u * 255.0
    elif unit == "metres":
        if domain not in _LOG_DEPTH:
            raise ValueError(f"unit 'metres' applies to depth domains {sorted(_LOG_DEPTH)}, not {domain!r}")
        out = torch.expm1(u * DEPTH_LOG_MAX) / DEPTH_UNITS_PER_METRE
    else:
        raise ValueError(f"unit: expected 'unit', 'file' or 'metres', got {unit!r}")
    if is_np:
        return out.numpy()
    return out.to(x.dtype if x.is_floating_point() else torch.float32)


def read_taskonomy(path: str | os.PathLike, domain: str, tile_gray: bool = False) -> Tensor:
    """Read one domain image as float32 (C, H, W) in [0, 1] (C from :func:`domain_channels`)."""
    img = _io.open_image(path)
    if domain in _THREE_CHANNEL:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            raw = np.repeat(_io.image_to_gray(img, path)[..., None], 3, axis=2)
        else:
            raw = _io.image_to_rgb(img, path)
    else:
        raw = _io.image_to_gray(img, path)
        if domain in _SIXTEEN_BIT and raw.dtype == np.uint8:
            raise DataError(f"{path}: expected a 16-bit PNG for domain {domain!r}, got 8-bit (mode {img.mode!r})")
        raw = raw[..., None]
    u = torch.from_numpy(np.ascontiguousarray(encode_taskonomy(domain, raw).transpose(2, 0, 1)))
    if tile_gray and u.shape[0] == 1:
        u = u.repeat(3, 1, 1)
    return u


def sample_name(template: str) -> str:
    """``'{domain}/point_407_view_2_domain_{domain}.png'`` -> ``'point_407_view_2'``."""
    base = Path(template).name
    stem = base[: -len(Path(base).suffix)] if Path(base).suffix else base
    return stem.replace("_domain_{domain}", "").replace("{domain}", "")


class Taskonomy(Dataset):
    """Paired Taskonomy views: ``{domain: float32 (C,H,W) in [-1,1], ..., "name": str}``.

    ``split``: "train" (``train_domain.txt``) or "val" (``val_domain.txt``; ``test`` is an alias).
    ``domains``: which domains to load (inputs and target). ``transform``: paired geometry applied to
    the [0,1] tensors before the ``2u - 1`` normalisation (e.g. :func:`translation_transforms`).

    Misregistered stand-ins (``data synth taskonomy --sensor-baseline B``) render the domains of
    ``TASKONOMY_DISPLACED`` (``edge_texture``) from a camera ``B`` metres to the right, each point shifted by
    its disparity ``f B / z``; every other domain, the targets included, stays in the first camera's frame.
    They load like any other folder; ``meta.json`` records the baseline and the median disparity."""

    aliases = {"test": "val"}

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 domains: Sequence[str] = ("reshading", "edge_texture", "rgb"),
                 transform: Transform | None = None, tile_gray: bool = False, check_files: bool = True):
        self.root = _io.require_dir(root, "the Taskonomy subset (train_domain.txt, val_domain.txt, one folder per domain)")
        split = self.aliases.get(split, split)
        if split not in SPLIT_FILES:
            raise DataError(f"Taskonomy: unknown split {split!r}; expected one of {sorted(SPLIT_FILES)}")
        if not domains:
            raise DataError("Taskonomy: expected at least one domain")
        for d in domains:
            _check_domain(d)
        self.split = split
        self.domains = tuple(domains)
        self.tile_gray = bool(tile_gray)
        self.transform = transform
        self.list_file = self.root / SPLIT_FILES[split]
        self.templates = [row[0] for row in _io.parse_list(self.list_file, 1, "Taskonomy list of '{domain}' path templates")]
        for lineno, t in enumerate(self.templates, start=1):
            if "{domain}" not in t:
                raise DataError(f"{self.list_file}:{lineno}: expected a path template containing '{{domain}}', got {t!r}")
        for d in self.domains:
            _io.require_dir(self.root / d, f"Taskonomy domain {d!r} images")
        if check_files:
            for t in self.templates:
                for d in self.domains:
                    p = self.root / t.format(domain=d)
                    if not p.is_file():
                        raise DataError(f"{p}: file listed but not found")
        self.channel_counts = {d: domain_channels(d, self.tile_gray) for d in self.domains}

    @staticmethod
    def channels(domain: str, tile_gray: bool = False) -> int:
        """Channel count of ``domain`` as this loader returns it (see :func:`domain_channels`)."""
        return domain_channels(domain, tile_gray)

    def path(self, index: int, domain: str) -> Path:
        return self.root / self.templates[index].format(domain=domain)

    def __len__(self) -> int:
        return len(self.templates)

    def load_raw(self, index: int) -> dict[str, Any]:
        """Decoded item before transform and normalisation: {domain: float32 (C,H,W) in [0,1], "name"}."""
        sample: dict[str, Any] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for d in self.domains:
            p = self.path(index, d)
            sample[d] = read_taskonomy(p, d, self.tile_gray)
            sizes[str(p)] = tuple(sample[d].shape[-2:])
        if len(set(sizes.values())) != 1:
            raise DataError(f"{self.path(index, self.domains[0])}: paired domain images differ in size (H, W): {sizes}")
        sample["name"] = sample_name(self.templates[index])
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_raw(index)
        if self.transform is not None:
            sample = self.transform(sample)
        for d in self.domains:
            sample[d] = sample[d] * 2.0 - 1.0
        return sample

    def __repr__(self) -> str:
        return f"Taskonomy(root={str(self.root)!r}, split={self.split!r}, domains={self.domains}, n={len(self)})"

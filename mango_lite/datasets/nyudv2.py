"""NYUDv2 (40 classes) in the TokenFusion / CEN on-disk layout, plus the RGB-D base class shared with SUN RGB-D.

Layout (``root``)::

    train.txt  val.txt            # 795 / 654 lines: rgb/000003.png<TAB>masks/000003.png<TAB>depth/000003.png
    rgb/NNNNNN.png                # uint8 RGB
    masks/NNNNNN.png              # single channel, ids 0..39, 255 = void/ignore
    depth/NNNNNN.png              # uint16 (scaled by 1/5000, TokenFusion/CEN) or 8-bit (scaled by 1/255)

Each item is ``{"rgb": float32 (3,H,W) ImageNet-normalised, "depth": float32 (1,H,W) normalised,
"label": int64 (H,W) with 255 = ignore, "name": str}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from . import _io
from .constants import NYU40_CLASSES, NYU_IGNORE_INDEX
from .transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize

Transform = Callable[[dict[str, Any]], dict[str, Any]]

# TokenFusion config.py NORMALISE_PARAMS: depth scale 1/5000 for 16-bit depth PNGs.
TOKENFUSION_DEPTH_SCALE = 1.0 / 5000.0
# After scaling, depth is standardised with these; TokenFusion's exact depth mean/std is not documented,
# so (0.5, 0.5) maps the nominal [0, 1] range to [-1, 1]. Override with depth_mean / depth_std.
DEFAULT_DEPTH_MEAN = 0.5
DEFAULT_DEPTH_STD = 0.5


def scale_depth(raw: np.ndarray, depth_scale: float = TOKENFUSION_DEPTH_SCALE) -> np.ndarray:
    """float32 (H, W) depth from a decoded depth PNG: 8-bit files are divided by 255, 16-bit (or wider
    integer) files multiplied by ``depth_scale``; float images are taken as they are."""
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0
    if np.issubdtype(raw.dtype, np.integer):
        return raw.astype(np.float32) * np.float32(depth_scale)
    return raw.astype(np.float32)


class RGBDSegmentation(Dataset):
    """Base class: list file of ``rgb<TAB>label<TAB>depth`` rows relative to ``root``.

    Subclasses set ``splits`` (split name -> list file), ``aliases``, ``num_classes``, ``classes``
    and implement :meth:`map_label` (on-disk ids -> training ids with 255 = ignore).

    Pipeline per item: decode (rgb in [0,1], depth scaled, label mapped) -> ``transform`` (paired
    geometry from :mod:`mango_lite.datasets.transforms`) -> normalise (rgb ImageNet, depth
    ``(d - depth_mean) / depth_std``)."""

    splits: dict[str, str] = {}
    aliases: dict[str, str] = {}
    num_classes: int = 0
    classes: tuple[str, ...] = ()
    ignore_index: int = NYU_IGNORE_INDEX
    dataset_name: str = "rgbd"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 depth_scale: float = TOKENFUSION_DEPTH_SCALE, depth_mean: float = DEFAULT_DEPTH_MEAN,
                 depth_std: float = DEFAULT_DEPTH_STD, check_files: bool = True):
        self.root = _io.require_dir(root, f"the {self.dataset_name} dataset ({', '.join(self.splits.values())})")
        split = self.aliases.get(split, split)
        if split not in self.splits:
            raise DataError(f"{self.dataset_name}: unknown split {split!r}; expected one of {sorted(self.splits)}")
        self.split = split
        self.list_file = self.root / self.splits[split]
        self.rows = _io.parse_list(self.list_file, 3, f"{self.dataset_name} {split} list (rgb, label, depth per line)")
        if check_files:
            _io.check_pairs_exist(self.root, self.rows)
        self.transform = transform
        self.depth_scale = float(depth_scale)
        self.normalize = Normalize({"rgb": (IMAGENET_MEAN, IMAGENET_STD), "depth": (depth_mean, depth_std)})

    def __len__(self) -> int:
        return len(self.rows)

    def map_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        """On-disk label ids (int64 (H,W)) -> training ids in [0, num_classes) or ``ignore_index``."""
        raise NotImplementedError

    def paths(self, index: int) -> tuple[Path, Path, Path]:
        """Absolute (rgb, label, depth) paths of item ``index``."""
        rgb, lab, dep = self.rows[index]
        return self.root / rgb, self.root / lab, self.root / dep

    def load_raw(self, index: int) -> dict[str, Any]:
        """Decoded, unnormalised, untransformed item: rgb float32 (3,H,W) in [0,1], depth float32 (1,H,W)
        scaled, label int64 (H,W) mapped, name str. Raises DataError on unreadable / mismatched files."""
        rgb_p, lab_p, dep_p = self.paths(index)
        rgb = _io.read_rgb(rgb_p)
        depth = scale_depth(_io.read_gray(dep_p), self.depth_scale)
        label = self.map_label(_io.read_label(lab_p), lab_p)
        shapes = {str(rgb_p): rgb.shape[:2], str(lab_p): label.shape, str(dep_p): depth.shape}
        if len(set(shapes.values())) != 1:
            raise DataError(f"{lab_p}: paired files differ in size (H, W): {shapes}")
        return {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0),
            "depth": torch.from_numpy(depth)[None],
            "label": torch.from_numpy(label),
            "name": Path(self.rows[index][0]).stem,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_raw(index)
        if self.transform is not None:
            sample = self.transform(sample)
        return self.normalize(sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


class NYUDv2(RGBDSegmentation):
    """NYUDv2-40 in the TokenFusion layout (``train.txt`` 795 / ``val.txt`` 654; ``test`` is an alias of
    ``val``). Masks hold ids 0..39 and 255 = ignore; any other value raises DataError naming the mask.

    Misregistered stand-ins (``python -m mango_lite data synth nyudv2 --sensor-baseline B``, or
    ``Preset.sensor_baseline_m``) are read the same way: their depth was rendered from a camera ``B`` metres to
    the colour camera's right, so each point sits ``f B / z`` pixels away from its colour, and the pixels the
    colour camera cannot see are 0 (missing), like the sensor's dropouts. RGB and masks stay in the colour
    camera's frame; ``meta.json`` records ``baseline_m`` and ``median_disparity_px``
    (:mod:`mango_lite.datasets.synth.misregistration`)."""

    splits = {"train": "train.txt", "val": "val.txt"}
    aliases = {"test": "val"}
    num_classes = 40
    classes = NYU40_CLASSES
    dataset_name = "NYUDv2"

    def map_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        bad = ((label >= self.num_classes) & (label != self.ignore_index)) | (label < 0)
        if bad.any():
            vals = np.unique(label[bad])[:8].tolist()
            raise DataError(f"{path}: label values {vals} outside 0..{self.num_classes - 1} and {self.ignore_index} (ignore)")
        return label

"""SUN RGB-D (37 classes) in the DFormer layout used by GeminiFusion.

Layout (``root``)::

    train.txt  test.txt           # 5285 / 5050 lines: RGB/train_0.jpg<TAB>labels/train_0.png<TAB>Depth/train_0.png
    RGB/*.jpg                     # uint8 RGB
    labels/*.png                  # single channel, 0 = unlabeled, 1..37 = classes
    Depth/*.png                   # 8-bit greyscale (DFormer: per-image normalised, may be RGB(A) with R=G=B)
                                  # or 16-bit; scaled like NYUDv2 (1/255 or depth_scale)

Labels are shifted as GeminiFusion's uint8 ``mask -= 1``: 0 -> 255 (ignore), k -> k-1, giving ids 0..36.
Each item is ``{"rgb", "depth", "label", "name"}`` with the same types as :class:`NYUDv2`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .constants import SUN37_CLASSES
from .nyudv2 import RGBDSegmentation


def shift_sun_labels(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """On-disk SUN ids (0 = unlabeled, 1..37) -> training ids 0..36 with ``ignore_index`` for unlabeled.
    int64 (H, W) in, int64 (H, W) out."""
    out = label.astype(np.int64) - 1
    out[label == 0] = ignore_index
    return out


class SUNRGBD(RGBDSegmentation):
    """SUN RGB-D-37 (``train.txt`` / ``test.txt``; ``val`` is an alias of ``test``). On-disk label values
    above 37 raise DataError naming the file."""

    splits = {"train": "train.txt", "test": "test.txt"}
    aliases = {"val": "test"}
    num_classes = 37
    classes = SUN37_CLASSES
    dataset_name = "SUNRGBD"

    def map_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        bad = (label < 0) | (label > self.num_classes)
        if bad.any():
            vals = np.unique(label[bad])[:8].tolist()
            raise DataError(f"{path}: label values {vals} outside 0..{self.num_classes} (0 = unlabeled)")
        return shift_sun_labels(label, self.ignore_index)

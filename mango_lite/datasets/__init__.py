"""Real-dataset loaders (torch Datasets, PIL / numpy only), paired transforms, verifier and downloader.

Loaders read the exact on-disk layouts of the reference code (TokenFusion NYUDv2, DFormer/GeminiFusion
SUN RGB-D, TokenFusion Taskonomy lists, MM-IMDb raw or GMU hdf5); the generated stand-ins in
:mod:`mango_lite.datasets.synth` are written in the same layouts, so the same code runs on both.
"""

from .constants import (
    MMIMDB_GENRES,
    NYU40_CLASSES,
    SUN37_CLASSES,
    TASKONOMY_DOMAINS,
    TRANSLATION_PAIRS,
)

# ``download()`` itself is not re-exported: it would shadow the ``datasets.download`` submodule.
from .download import SOURCES, extract_archive, fetch_dataset, instructions, sha256sum
from .mmimdb import MMIMDB, genre_vector
from .nyudv2 import NYUDv2, RGBDSegmentation
from .sunrgbd import SUNRGBD, shift_sun_labels
from .taskonomy import Taskonomy, decode_taskonomy, domain_channels, encode_taskonomy
from .transforms import (
    CenterCrop,
    Compose,
    HorizontalFlip,
    Normalize,
    RandomCrop,
    RandomScale,
    Resize,
    ToTensor,
    poster_transforms,
    segmentation_transforms,
    translation_transforms,
)
from .verify import VerifyReport, verify_dataset

__all__ = [
    "MMIMDB_GENRES", "NYU40_CLASSES", "SUN37_CLASSES", "TASKONOMY_DOMAINS", "TRANSLATION_PAIRS",
    "NYUDv2", "SUNRGBD", "Taskonomy", "MMIMDB", "RGBDSegmentation",
    "genre_vector", "shift_sun_labels", "decode_taskonomy", "encode_taskonomy", "domain_channels",
    "Compose", "Resize", "RandomScale", "RandomCrop", "CenterCrop", "HorizontalFlip", "Normalize", "ToTensor",
    "segmentation_transforms", "translation_transforms", "poster_transforms",
    "verify_dataset", "VerifyReport",
    "fetch_dataset", "instructions", "extract_archive", "sha256sum", "SOURCES",
    "get_dataset",
]


def get_dataset(name: str, root: str, split: str = "train", **kwargs):
    """Construct the loader for ``name`` ("nyudv2", "sunrgbd", "taskonomy", "mmimdb")."""
    from ..errors import DataError

    classes = {"nyudv2": NYUDv2, "sunrgbd": SUNRGBD, "taskonomy": Taskonomy, "mmimdb": MMIMDB}
    if name not in classes:
        raise DataError(f"unknown dataset {name!r}; expected one of {tuple(classes)}")
    return classes[name](root, split=split, **kwargs)

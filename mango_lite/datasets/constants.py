"""Label sets and domain names of the real datasets (order matters: it is the label id)."""

from __future__ import annotations

# NYUDv2, 40 classes (Gupta et al. 2013), ids 0..39, 255 = ignore (TokenFusion layout).
NYU40_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
NYU_IGNORE_INDEX = 255
NYU_SPLIT_SIZES = {"train": 795, "val": 654}

# SUN RGB-D, 37 classes (NYU-40 minus the three "other*" classes). On disk (DFormer layout) labels are
# 0 = unlabeled and 1..37; loaders shift to 0..36 with 255 = ignore.
SUN37_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor_mat", "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain",
    "box", "whiteboard", "person", "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
)
SUN_SPLIT_SIZES = {"train": 5285, "test": 5050}

# Taskonomy domain indices as in CEN / TokenFusion (``--img-types 2 7 0`` = shade + texture -> rgb).
TASKONOMY_DOMAINS: tuple[str, ...] = (
    "rgb", "normal", "reshading", "depth_euclidean", "depth_zbuffer", "principal_curvature",
    "edge_occlusion", "edge_texture", "segment_unsup2d", "segment_unsup25d",
)
TASKONOMY_SPLIT_SIZES = {"train": 1000, "val": 500}
# The five translation pairs of the paper's Table 2: (input domains, target domain).
#: each dataset's name as tables and figures print it
DATASET_LABELS = {"nyudv2": "NYUDv2", "sunrgbd": "SUN RGB-D", "taskonomy": "Taskonomy", "mmimdb": "MM-IMDb"}

TRANSLATION_PAIRS: tuple[tuple[tuple[str, str], str], ...] = (
    (("reshading", "edge_texture"), "rgb"),       # Shade+Texture -> RGB
    (("depth_euclidean", "normal"), "rgb"),       # Depth+Normal -> RGB
    (("rgb", "reshading"), "normal"),             # RGB+Shade -> Normal
    (("rgb", "normal"), "reshading"),             # RGB+Normal -> Shade
    (("rgb", "edge_texture"), "depth_euclidean"), # RGB+Edge -> Depth
)

# MM-IMDb, 23 genres of the GMU hdf5, in frequency order.
MMIMDB_GENRES: tuple[str, ...] = (
    "Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
    "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music", "Animation",
    "Musical", "Western", "Sport", "Short", "Film-Noir",
)
MMIMDB_SPLIT_SIZES = {"train": 15552, "dev": 2608, "test": 7799}

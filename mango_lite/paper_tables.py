"""The paper's Tables 1-3, **as printed** (MANGO, NeurIPS 2025, arXiv 2508.10133).

Only MANGO and the rows a mango_lite model can be set beside are copied: W/O Fusion, Feature Concat and
TokenFusion (Tiny and Small, quoted by MANGO from the TokenFusion paper [65]), the CNN "Concat" row of
Table 2, and the image-only / text-only / late-fusion rows of Table 3. These numbers were measured on
the REAL datasets at 256x256 with pretrained transformer backbones; mango_lite rows measured on
generated stand-ins are not comparable to them in absolute value. ``"-"`` in the paper is ``None``.

``OURS`` maps each paper row to the mango_lite model that plays the same role (``None``: no
counterpart). Every consumer must label these values ``"paper (as printed)"`` (:data:`LABEL`).
"""

from __future__ import annotations

LABEL = "paper (as printed)"
SOURCE = "MANGO (Truong et al., NeurIPS 2025), Tables 1-3, numbers exactly as printed"

# ---------------------------------------------------------------------------------- Table 1
# Method -> {dataset: (pixel_acc, mean_acc, miou)} in percent.
TABLE1_SEGMENTATION: dict[str, dict[str, tuple[float | None, float | None, float | None]]] = {
    "W/O Fusion (Tiny)": {"nyudv2": (75.2, 62.5, 49.7), "sunrgbd": (82.3, 60.6, 47.0)},
    "Feature Concat (Tiny)": {"nyudv2": (76.5, 63.4, 50.8), "sunrgbd": (82.8, 61.4, 47.9)},
    "TokenFusion (Tiny)": {"nyudv2": (78.6, 66.2, 53.3), "sunrgbd": (84.0, 63.3, 51.4)},
    "W/O fusion (Small)": {"nyudv2": (76.0, 63.0, 50.6), "sunrgbd": (82.9, 61.3, 48.1)},
    "Feature Concat (Small)": {"nyudv2": (77.1, 63.8, 51.4), "sunrgbd": (83.5, 62.0, 49.0)},
    "TokenFusion (Small)": {"nyudv2": (79.0, 66.9, 54.2), "sunrgbd": (84.7, 64.1, 53.0)},
    "MANGO": {"nyudv2": (81.5, 71.6, 59.2), "sunrgbd": (83.9, 67.2, 54.1)},
}
TABLE1_INPUTS = {"W/O Fusion (Tiny)": "RGB", "W/O fusion (Small)": "RGB"}  # others: RGB+D
TABLE1_METRICS = ("pixel_acc", "mean_acc", "miou")

# ---------------------------------------------------------------------------------- Table 2
# Method -> {pair name: (v1, v2)}: RGB targets FID / KID(x10^-2, i.e. KID x 100);
# others MAE(x10^-1) / "MSE"(x10^-1) as printed (see RMSE note in reproduce.py).
TABLE2_TRANSLATION: dict[str, dict[str, tuple[float, float] | None]] = {
    "Concat (CNN) [66]": {
        "shade_texture_to_rgb": (78.82, 3.13), "depth_normal_to_rgb": (99.08, 4.28),
        "rgb_shade_to_normal": (1.34, 2.85), "rgb_normal_to_shade": (1.28, 2.02), "rgb_edge_to_depth": (0.33, 0.75),
    },
    "Feature Concat (Tiny)": {
        "shade_texture_to_rgb": (76.13, 2.85), "depth_normal_to_rgb": (102.70, 4.74),
        "rgb_shade_to_normal": (1.52, 3.15), "rgb_normal_to_shade": (1.33, 2.20), "rgb_edge_to_depth": (0.40, 0.83),
    },
    "TokenFusion (Tiny)": {
        "shade_texture_to_rgb": (50.40, 1.03), "depth_normal_to_rgb": (76.35, 2.19),
        "rgb_shade_to_normal": (0.73, 1.83), "rgb_normal_to_shade": (0.95, 1.54), "rgb_edge_to_depth": (0.21, 0.57),
    },
    "Feature Concat (Small)": {
        "shade_texture_to_rgb": (72.55, 2.39), "depth_normal_to_rgb": (96.04, 4.09),
        "rgb_shade_to_normal": (1.18, 2.73), "rgb_normal_to_shade": (1.30, 2.07), "rgb_edge_to_depth": (0.35, 0.68),
    },
    "TokenFusion (Small)": {
        "shade_texture_to_rgb": (43.92, 0.94), "depth_normal_to_rgb": (70.13, 1.92),
        "rgb_shade_to_normal": (0.58, 1.51), "rgb_normal_to_shade": (0.79, 1.33), "rgb_edge_to_depth": (0.16, 0.47),
    },
    "MANGO": {
        "shade_texture_to_rgb": (39.61, 0.77), "depth_normal_to_rgb": (67.61, 1.54),
        "rgb_shade_to_normal": (0.52, 1.12), "rgb_normal_to_shade": (0.62, 0.96), "rgb_edge_to_depth": (0.17, 0.33),
    },
}

# ---------------------------------------------------------------------------------- Table 3
# Method -> (modality, micro_f1, macro_f1) in percent.
TABLE3_GENRE: dict[str, tuple[str, float, float]] = {
    "Image Network [70]": ("I", 40.0, 25.3),
    "Text Network [70]": ("T", 59.2, 47.2),
    "Late Fusion [24]": ("I+T", 59.6, 51.0),
    "MANGO": ("I+T", 71.7, 68.2),
}

# -------------------------------------------------------------------- paper row -> our model
OURS: dict[str, dict[str, str | None]] = {
    "segmentation": {
        "W/O Fusion (Tiny)": "rgb", "W/O fusion (Small)": "rgb", "Feature Concat (Tiny)": "concat",
        "Feature Concat (Small)": "concat", "TokenFusion (Tiny)": "tokenfusion", "TokenFusion (Small)": "tokenfusion",
        "MANGO": "mango",
    },
    "translation": {
        "Concat (CNN) [66]": "concat", "Feature Concat (Tiny)": "concat", "Feature Concat (Small)": "concat",
        "TokenFusion (Tiny)": "tokenfusion", "TokenFusion (Small)": "tokenfusion", "MANGO": "mango",
    },
    "genre": {"Image Network [70]": "image", "Text Network [70]": "text", "Late Fusion [24]": None, "MANGO": "mango"},
}


#: each task's printed cell of a row and group (dataset / pair; Table 3 has one group): a tuple, or None
_CELLS = {
    "segmentation": lambda row, key: TABLE1_SEGMENTATION.get(row, {}).get(key),
    "translation": lambda row, key: TABLE2_TRANSLATION.get(row, {}).get(key),
    "genre": lambda row, key: TABLE3_GENRE.get(row),  # (modality, micro, macro)
}
#: the position of a metric in each task's printed cell
_INDEX = {
    "segmentation": TABLE1_METRICS.index,
    "translation": lambda metric: 0 if metric == "first" else 1,
    "genre": lambda metric: 1 if metric == "micro_f1" else 2,
}


def printed_cell(task: str, row: str, key: str) -> tuple | None:
    """The paper's printed cell of ``row`` (a method as the paper names it) for group ``key`` (dataset for
    segmentation, pair name for translation, ignored for genre), or None where it prints none."""
    cells = _CELLS.get(task)
    return None if cells is None else cells(row, key)
#: the metrics of ours that each task's table prints (the others have no paper value to draw beside ours)
PAPER_METRICS = {"segmentation": TABLE1_METRICS, "translation": ("first", "second"), "genre": ("micro_f1", "macro_f1")}


def paper_value(task: str, model: str, key: str, metric: str) -> float | None:
    """The paper's MANGO-comparable number for our ``model`` (first matching row, the "Tiny" one where
    there are two), or None. ``key``: dataset (segmentation), pair name (translation), ignored (genre).
    ``metric``: segmentation ``pixel_acc``/``mean_acc``/``miou``; translation ``first``/``second``;
    genre ``micro_f1``/``macro_f1``."""
    for row, ours in OURS.get(task, {}).items():
        if ours == model and task in _INDEX:
            cell = printed_cell(task, row, key)
            return None if cell is None else cell[_INDEX[task](metric)]
    return None

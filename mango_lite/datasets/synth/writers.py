"""Write rendered scenes (:mod:`.scenes`) to disk in the exact layouts of the real datasets.

Each writer has the signature ``writer(root, n, size=128, seed=0) -> Path`` (returns ``root``):
``n`` samples in total, split in the real dataset's proportions (at least one per split), images
``size`` x ``size``. Sample ``i`` is rendered from ``SeedSequence([seed, dataset_salt, i])``, so it does
not depend on ``n``, and the whole folder is a pure function of ``(n, size, seed)``. Every file is
written atomically (temporary file + ``os.replace``), and ``meta.json`` records the generator, seed,
size, split counts, the encodings below and ``"synthetic": true``.

Layouts and encodings
---------------------
* :func:`write_nyudv2` - TokenFusion/CEN layout::

      rgb/000001.png    uint8 RGB
      depth/000001.png  uint16 grey, millimetres (metres = value / 1000), 0 = missing (sensor holes)
      masks/000001.png  uint8 grey, NYU-40 ids 0..39, 255 = void/ignore
      train.txt, val.txt  "rgb/000003.png<TAB>masks/000003.png<TAB>depth/000003.png"

  Files are numbered 000001..n like the NYU index; which indices are train and which are val is a
  seeded shuffle (the real split interleaves them too), 795:654. The depth unit is an assumption (the
  real archive's depth bit depth is unverified); with TokenFusion's ``DEPTH SCALE = 1/5000`` a 10 m
  reading maps to 2.0.
* :func:`write_sunrgbd` - DFormer/GeminiFusion layout::

      RGB/train_0.jpg     uint8 RGB JPEG (quality 95)
      Depth/train_0.png   what ``plt.imsave(path, depth, cmap='Greys_r')`` writes: an RGBA uint8 PNG with
                          R = G = B = per-image min-max normalised depth through the Greys_r colour map
                          (black = nearest/missing, white = farthest), A = 255
      labels/train_0.png  uint8 grey, 0 = unlabeled, 1..37 = SUN-37 classes
      train.txt, test.txt "RGB/train_0.jpg<TAB>labels/train_0.png<TAB>Depth/train_0.png"

  NYU-40 id ``c`` <= 36 becomes ``c + 1``; the three "other*" classes (37..39) and void (255) become 0.
  Split 5285:5050. The depth PNG is RGBA exactly as matplotlib saves it; DFormer reads it with
  ``cv2.IMREAD_GRAYSCALE`` (a PIL reader should ``convert("L")`` or take channel 0).
* :func:`write_taskonomy` - taskonomy-sample-model-1 layout ``{domain}/point_{P}_view_{V}_domain_{domain}.png``
  for every domain of ``constants.TASKONOMY_DOMAINS``; one room per point, 1-3 camera views per point,
  all domains of a view from the same render. Lists ``train_domain.txt`` / ``val_domain.txt`` hold
  ``{domain}/point_P_view_V_domain_{domain}.png`` template lines, split 1000:500. Encodings
  (:data:`TASKONOMY_ENCODINGS`):

  ==================== ====================================================================================
  rgb                  uint8 RGB
  normal               uint8 RGB, ``floor(127.5 (n + 1))`` per axis of the OpenGL camera-frame normal
                       (x right, y up, z towards the viewer), so 0 -> 127
  reshading            uint8 grey, ``round(255 * shade)``
  depth_euclidean      uint16 grey, ``round(512 * metres)`` (1/512 m, clipped at 65535 = 128 m), exact depth
  depth_zbuffer        uint16 grey, same units, z-depth
  principal_curvature  uint8 RGB: R = ``clip(round(127 + 4 k1))``, G = ``clip(round(127 + 4 k2))`` with k in
                       1/m (planes 127, spheres of radius r: 127 + 4/r; radii below ~3 cm saturate at 255),
                       B = 127 (constant, carries no information)
  edge_texture         uint16 grey, ``round(40000 * e)``, e = Sobel/8 magnitude of albedo luma (typical max
                       ~11000, the real data's loader scale is 11355)
  edge_occlusion       uint16 grey, ``round(16000 * e)`` (typical max ~11000; real scale 11584)
  segment_unsup2d      uint8 grey, k-means (k = 8) cluster id of RGB, clusters numbered by size (0 = largest)
  segment_unsup25d     uint8 grey, k-means (k = 8) on RGB + normal + scaled depth, same numbering
  ==================== ====================================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError
from ...utils import atomic_write, atomic_write_json, atomic_write_text
from ..constants import NYU_SPLIT_SIZES, SUN_SPLIT_SIZES, TASKONOMY_DOMAINS, TASKONOMY_SPLIT_SIZES
from .misregistration import disparity_px, render_misregistered, render_scene_misregistered
from .scenes import GENERATOR_NAME, GENERATOR_VERSION, USED_CLASS_IDS, render, render_scene, sample_camera, sample_scene

__all__ = [
    "write_nyudv2",
    "write_sunrgbd",
    "write_taskonomy",
    "nyu40_to_sun37",
    "greys_r_png_rgba",
    "encode_taskonomy",
    "kmeans_labels",
    "split_counts",
    "iter_taskonomy_views",
    "taskonomy_name",
    "TASKONOMY_ENCODINGS",
]

_SALT = {"nyudv2": 1, "sunrgbd": 2, "taskonomy": 3}

NYU_DEPTH_UNITS_PER_M = 1000.0
TASKONOMY_DEPTH_UNITS_PER_M = 512.0
CURVATURE_UNITS_PER_INV_M = 4.0
EDGE_TEXTURE_SCALE = 40000.0
EDGE_OCCLUSION_SCALE = 16000.0
KMEANS_K = 8

TASKONOMY_ENCODINGS: dict[str, str] = {
    "rgb": "uint8 RGB",
    "normal": "uint8 RGB floor(127.5*(n+1)), OpenGL camera frame (x right, y up, z towards viewer); 0 -> 127",
    "reshading": "uint8 L round(255*shade)",
    "depth_euclidean": "uint16 I;16 round(512*metres), 1/512 m, max 65535 = 128 m",
    "depth_zbuffer": "uint16 I;16 round(512*metres) z-depth, 1/512 m, max 65535 = 128 m",
    "principal_curvature": "uint8 RGB: R = clip(round(127+4*k1)), G = clip(round(127+4*k2)), k in 1/m, "
                           "k1 >= k2; B = 127 constant",
    "edge_texture": "uint16 I;16 round(40000*e), e = Sobel/8 magnitude of albedo luma",
    "edge_occlusion": "uint16 I;16 round(16000*e), e = blurred relative depth jump + normal crease",
    "segment_unsup2d": "uint8 L k-means (k=8) on RGB, clusters numbered by size",
    "segment_unsup25d": "uint8 L k-means (k=8) on RGB+normal+depth, clusters numbered by size",
}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _check_args(root, n, size, seed, name: str) -> Path:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise DataError(f"{name}: n must be an int >= 2 (at least one sample per split), got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise DataError(f"{name}: size must be an int >= 8 pixels, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"{name}: seed must be a non-negative int, got {seed!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{name}: root {str(root)!r} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_baseline(baseline: float, name: str) -> float:
    try:
        value = float(baseline)
    except (TypeError, ValueError):
        raise DataError(f"{name}: baseline must be a number of metres >= 0, got {baseline!r}") from None
    if not (value >= 0 and np.isfinite(value)):
        raise DataError(f"{name}: baseline must be a number of metres >= 0, got {baseline!r}")
    return value


def _misregistration_meta(baseline: float, displaced: tuple[str, ...], disparities: list[np.ndarray]) -> dict:
    """meta.json entries of misregistered data (none for registered data, so b = 0 writes the old file)."""
    if not baseline:
        return {}
    return {"baseline_m": float(baseline), "misregistered": list(displaced),
            "median_disparity_px": float(np.median(np.concatenate(disparities))),
            "misregistration": "the listed modalities are seen from a camera baseline_m metres to the right of "
                               "the first modality's (each point shifted left by f b / z px); their pixels "
                               "hidden from the first camera are missing (depth 0)"}


def split_counts(n: int, ratio: tuple[int, int]) -> tuple[int, int]:
    """Split ``n`` samples in proportion ``ratio`` = (a, b), with at least one in each part."""
    a = int(round(n * ratio[0] / (ratio[0] + ratio[1])))
    a = min(max(a, 1), n - 1)
    return a, n - a


def _rng(seed: int, dataset: str, i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SALT[dataset], int(i)]))


def _save_png(path: Path, arr: np.ndarray) -> None:
    """Atomically save ``arr`` as PNG: uint8 (H, W) -> L, (H, W, 3) -> RGB, (H, W, 4) -> RGBA,
    uint16 (H, W) -> 16-bit greyscale (PIL mode I;16)."""
    atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG"))


def _save_jpg(path: Path, arr: np.ndarray, quality: int = 95) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="JPEG", quality=quality))


def _meta(name: str, layout: str, seed: int, size: int, counts: dict[str, int], **extra) -> dict:
    return {
        "dataset": name,
        "layout": layout,
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "seed": int(seed),
        "size": int(size),
        "counts": counts,
        "n": int(sum(counts.values())),
        **extra,
    }


# --------------------------------------------------------------------------------------------------
# encodings
# --------------------------------------------------------------------------------------------------
def nyu40_to_sun37(labels: np.ndarray) -> np.ndarray:
    """NYU-40 ids (uint8, 0..39, 255 void) -> SUN RGB-D on-disk labels (uint8, 0 unlabeled, 1..37)."""
    lab = np.asarray(labels)
    return np.where(lab <= 36, lab.astype(np.int16) + 1, 0).astype(np.uint8)


# matplotlib's "Greys" colour map (ColorBrewer, 9 anchors from white to black); Greys_r reverses it.
_GREYS_ANCHORS = np.array([1.0, 0.9411764705882353, 0.8509803921568627, 0.7411764705882353,
                           0.5882352941176471, 0.45098039215686275, 0.3215686274509804,
                           0.1450980392156863, 0.0])


def _greys_r_lut() -> np.ndarray:
    """(256,) uint8 lookup table of Greys_r as matplotlib builds it (piecewise-linear segment data
    sampled at 256 points, then ``(lut * 255).astype(uint8)`` for byte output)."""
    vals = _GREYS_ANCHORS[::-1]
    xs = np.linspace(0.0, 1.0, vals.size)
    lut = np.interp(np.linspace(0.0, 1.0, 256), xs, vals)
    return (lut * 255).astype(np.uint8)


_GREYS_R_LUT = _greys_r_lut()


def greys_r_png_rgba(depth: np.ndarray) -> np.ndarray:
    """Emulate ``plt.imsave(path, depth, cmap='Greys_r')`` without matplotlib.

    depth: (H, W) float. Normalised per image to [0, 1] with its own min and max (float32 arithmetic,
    as ``matplotlib.colors.Normalize`` does for float32 input), mapped to 256 colour-map bins
    (``int(x * 256)``, 1.0 -> bin 255). Returns (H, W, 4) uint8 RGBA with R = G = B and A = 255.
    """
    x = np.asarray(depth, dtype=np.float32)
    vmin, vmax = x.min(), x.max()
    if vmax > vmin:
        xn = (x - vmin) / (vmax - vmin)
    else:
        xn = np.zeros_like(x)
    xa = xn * np.float32(256)
    xa[xa == 256] = 255
    idx = np.clip(xa, 0, 255).astype(np.int64)
    g = _GREYS_R_LUT[idx]
    return np.stack([g, g, g, np.full_like(g, 255)], axis=-1)


def kmeans_labels(feat: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10,
                  n_fit: int = 2048) -> np.ndarray:
    """Quick Lloyd k-means for unsupervised segment maps.

    feat: (H, W, C) float features. Fits on ``n_fit`` random pixels (k-means++ seeding), then assigns
    every pixel. Returns (H, W) uint8 cluster ids renumbered by cluster size (0 = largest).
    """
    H, W, C = feat.shape
    X = feat.reshape(-1, C).astype(np.float32)
    sub = X[rng.choice(X.shape[0], size=min(n_fit, X.shape[0]), replace=False)]
    # k-means++ seeding
    centres = [sub[rng.integers(sub.shape[0])]]
    d2 = ((sub - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        tot = float(d2.sum())
        j = int(rng.choice(sub.shape[0], p=d2 / tot)) if tot > 0 else int(rng.integers(sub.shape[0]))
        centres.append(sub[j])
        d2 = np.minimum(d2, ((sub - sub[j]) ** 2).sum(1))
    cen = np.stack(centres)
    for _ in range(iters):
        a = ((sub[:, None, :] - cen[None]) ** 2).sum(-1).argmin(1)
        for c in range(k):
            m = a == c
            if m.any():
                cen[c] = sub[m].mean(0)
    lab = ((X[:, None, :] - cen[None]) ** 2).sum(-1).argmin(1)
    order = np.argsort(-np.bincount(lab, minlength=k), kind="stable")
    remap = np.empty(k, np.int64)
    remap[order] = np.arange(k)
    return remap[lab].reshape(H, W).astype(np.uint8)


def _signed_u8(x: np.ndarray, units: float) -> np.ndarray:
    return np.clip(np.round(127.0 + units * x), 0, 255).astype(np.uint8)


def encode_taskonomy(out: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Encode one render (:func:`.scenes.render` output) into the ten Taskonomy domain arrays, exactly as
    written to disk (see :data:`TASKONOMY_ENCODINGS`). ``rng`` seeds the k-means of the segment maps."""
    n = out["normal"]
    curv = out["principal_curvature"]
    H, W = out["depth_clean"].shape
    rgb01 = out["rgb"].astype(np.float32) / 255.0
    z = out["depth_clean"]
    enc = {
        "rgb": out["rgb"],
        "normal": np.clip(np.floor(127.5 * (n + 1.0)), 0, 255).astype(np.uint8),
        "reshading": np.clip(np.round(255.0 * out["reshading"]), 0, 255).astype(np.uint8),
        "depth_euclidean": np.clip(np.round(TASKONOMY_DEPTH_UNITS_PER_M * out["depth_euclidean"]), 0,
                                   65535).astype(np.uint16),
        "depth_zbuffer": np.clip(np.round(TASKONOMY_DEPTH_UNITS_PER_M * z), 0, 65535).astype(np.uint16),
        "principal_curvature": np.stack([_signed_u8(curv[..., 0], CURVATURE_UNITS_PER_INV_M),
                                         _signed_u8(curv[..., 1], CURVATURE_UNITS_PER_INV_M),
                                         np.full((H, W), 127, np.uint8)], axis=-1),
        "edge_texture": np.clip(np.round(EDGE_TEXTURE_SCALE * out["edge_texture"]), 0, 65535).astype(np.uint16),
        "edge_occlusion": np.clip(np.round(EDGE_OCCLUSION_SCALE * out["edge_occlusion"]), 0,
                                  65535).astype(np.uint16),
        "segment_unsup2d": kmeans_labels(rgb01, KMEANS_K, rng),
    }
    # 2.5D features: colour, normal (scaled like colour) and log-depth, so geometry weighs as much as colour
    logz = np.log(z)[..., None]
    f25 = np.concatenate([rgb01, 0.5 * (n + 1.0), (logz - logz.mean()) / (logz.std() + 1e-6) * 0.3], axis=-1)
    enc["segment_unsup25d"] = kmeans_labels(f25, KMEANS_K, rng)
    return enc


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------
def write_nyudv2(root: str | os.PathLike, n: int, size: int = 128, seed: int = 0, height: int | None = None,
                 baseline: float = 0.0) -> Path:
    """Write ``n`` NYUDv2 stand-in samples in TokenFusion's layout under ``root`` (see module doc).

    ``height``: frames ``height x size`` (the central rows of the ``size x size`` rendering), e.g.
    ``size=640, height=480`` for frames of the real dataset's 480 x 640.
    ``baseline``: metres between the colour camera and the depth camera (:mod:`.misregistration`): the
    depth maps are seen from a camera that far to the right, unregistered (each point shifted by its
    disparity f b / z, pixels hidden from the colour camera missing); RGB and labels stay in the colour
    camera's frame. 0 (default) writes registered data, bit for bit as before the option existed."""
    root = _check_args(root, n, size, seed, "write_nyudv2")
    baseline = _check_baseline(baseline, "write_nyudv2")
    if height is not None and not 8 <= int(height) <= size:
        raise DataError(f"write_nyudv2: height must be between 8 and size={size}, got {height!r}")
    top = 0 if height is None else (size - int(height)) // 2
    rows = slice(top, None if height is None else top + int(height))
    n_tr, n_va = split_counts(n, (NYU_SPLIT_SIZES["train"], NYU_SPLIT_SIZES["val"]))
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), _SALT["nyudv2"], 10**9])).permutation(n) + 1
    train_ids, val_ids = sorted(perm[:n_tr].tolist()), sorted(perm[n_tr:].tolist())
    disparities: list[np.ndarray] = []
    for i in range(1, n + 1):
        full = (render_scene(_rng(seed, "nyudv2", i), size) if baseline == 0
                else render_scene_misregistered(_rng(seed, "nyudv2", i), size, baseline, ("depth",)))
        out = {k: v[rows] for k, v in full.items() if k in ("rgb", "depth", "labels")}
        if baseline:
            disparities.append(disparity_px(full["depth_clean"][rows], float(full["focal_px"]), baseline).ravel())
        stem = f"{i:06d}.png"
        depth_mm = np.clip(np.round(out["depth"] * NYU_DEPTH_UNITS_PER_M), 0, 65535).astype(np.uint16)
        _save_png(root / "rgb" / stem, out["rgb"])
        _save_png(root / "depth" / stem, depth_mm)
        _save_png(root / "masks" / stem, out["labels"])

    def lines(ids: list[int]) -> str:
        return "".join(f"rgb/{i:06d}.png\tmasks/{i:06d}.png\tdepth/{i:06d}.png\n" for i in ids)

    atomic_write_text(root / "train.txt", lines(train_ids))
    atomic_write_text(root / "val.txt", lines(val_ids))
    atomic_write_json(root / "meta.json", _meta(
        "nyudv2", "TokenFusion rgb/ masks/ depth/ + train.txt/val.txt", seed, size,
        {"train": n_tr, "val": n_va},
        depth_encoding="uint16 PNG, millimetres (metres = value / 1000), 0 = missing",
        label_encoding="uint8 PNG, NYU-40 ids 0..39 (constants.NYU40_CLASSES order), 255 = ignore",
        rgb_encoding="uint8 RGB PNG",
        classes_used=list(USED_CLASS_IDS),
        split_ratio=[NYU_SPLIT_SIZES["train"], NYU_SPLIT_SIZES["val"]],
        **({} if height is None else {"height": int(height)}),
        **_misregistration_meta(baseline, ("depth",), disparities),
    ))
    return root


def write_sunrgbd(root: str | os.PathLike, n: int, size: int = 128, seed: int = 0) -> Path:
    """Write ``n`` SUN RGB-D stand-in samples in DFormer's layout under ``root`` (see module doc)."""
    root = _check_args(root, n, size, seed, "write_sunrgbd")
    n_tr, n_te = split_counts(n, (SUN_SPLIT_SIZES["train"], SUN_SPLIT_SIZES["test"]))
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for i in range(n):
        split, j = ("train", i) if i < n_tr else ("test", i - n_tr)
        out = render_scene(_rng(seed, "sunrgbd", i), size)
        name = f"{split}_{j}"
        _save_jpg(root / "RGB" / f"{name}.jpg", out["rgb"])
        _save_png(root / "Depth" / f"{name}.png", greys_r_png_rgba(out["depth"]))
        _save_png(root / "labels" / f"{name}.png", nyu40_to_sun37(out["labels"]))
        lines[split].append(f"RGB/{name}.jpg\tlabels/{name}.png\tDepth/{name}.png\n")
    atomic_write_text(root / "train.txt", "".join(lines["train"]))
    atomic_write_text(root / "test.txt", "".join(lines["test"]))
    atomic_write_json(root / "meta.json", _meta(
        "sunrgbd", "DFormer RGB/ Depth/ labels/ + train.txt/test.txt", seed, size,
        {"train": n_tr, "test": n_te},
        depth_encoding="plt.imsave(cmap='Greys_r') emulation: RGBA uint8 PNG, R=G=B = per-image min-max "
                       "normalised sensor depth (holes = 0 m -> black), A = 255; not metric",
        label_encoding="uint8 PNG, 0 = unlabeled, 1..37 = SUN-37 (NYU-40 id + 1; NYU 37..39 and 255 -> 0)",
        rgb_encoding="JPEG quality 95",
        split_ratio=[SUN_SPLIT_SIZES["train"], SUN_SPLIT_SIZES["test"]],
    ))
    return root


def taskonomy_name(domain: str, point: int, view: int) -> str:
    """Relative path of one Taskonomy file, e.g. ``rgb/point_3_view_1_domain_rgb.png``."""
    return f"{domain}/point_{point}_view_{view}_domain_{domain}.png"


def iter_taskonomy_views(n: int, size: int, seed: int, baseline: float = 0.0,
                         displaced: tuple[str, ...] = ()):
    """Yield ``(point, view, render_output, kmeans_rng)`` for the ``n`` Taskonomy views of ``seed``:
    point ``P`` is one room sampled from ``SeedSequence([seed, 3, P])`` and seen by 1-3 cameras
    (views 0, 1, 2). ``kmeans_rng`` is a separate generator for the view's segment maps, so what a
    consumer does with it cannot change later views. ``baseline`` > 0 renders the domains in ``displaced``
    from a camera that far to the right (:func:`.misregistration.render_misregistered`)."""
    done, point = 0, 0
    while done < n:
        rng = _rng(seed, "taskonomy", point)
        scene = sample_scene(rng)
        n_views = min(int(rng.integers(1, 4)), n - done)
        for view in range(n_views):
            cam = sample_camera(scene, rng)
            out = (render(scene, cam, size, rng) if not baseline
                   else render_misregistered(scene, cam, size, rng, baseline, displaced))
            krng = np.random.default_rng(np.random.SeedSequence([int(seed), _SALT["taskonomy"], point, 1000 + view]))
            yield point, view, out, krng
            done += 1
        point += 1


#: the Taskonomy domains a misregistered stand-in renders from the second camera: the second input of both
#: translation pairs that read it (Shade+Texture -> RGB, RGB+Edge -> Depth); targets stay in the first frame
TASKONOMY_DISPLACED = ("edge_texture",)


def write_taskonomy(root: str | os.PathLike, n: int, size: int = 128, seed: int = 0, baseline: float = 0.0) -> Path:
    """Write ``n`` Taskonomy stand-in views (all ten domains each) under ``root`` (see module doc).

    Views are grouped into points (one room each, 1-3 camera views); the first ``n_train`` views in
    point order form ``train_domain.txt``, the rest ``val_domain.txt`` (a point can straddle the cut).
    ``baseline``: the domains of :data:`TASKONOMY_DISPLACED` are seen from a camera that many metres to the
    right of the others' (see :func:`write_nyudv2`); 0 (default) writes registered views, bit for bit.
    """
    root = _check_args(root, n, size, seed, "write_taskonomy")
    baseline = _check_baseline(baseline, "write_taskonomy")
    disparities: list[np.ndarray] = []
    n_tr, n_va = split_counts(n, (TASKONOMY_SPLIT_SIZES["train"], TASKONOMY_SPLIT_SIZES["val"]))
    templates: list[str] = []
    points = set()
    for point, view, out, krng in iter_taskonomy_views(n, size, seed, baseline, TASKONOMY_DISPLACED):
        if baseline:
            disparities.append(disparity_px(out["depth_clean"], float(out["focal_px"]), baseline).ravel())
        enc = encode_taskonomy(out, krng)
        for dom in TASKONOMY_DOMAINS:
            _save_png(root / taskonomy_name(dom, point, view), enc[dom])
        templates.append(taskonomy_name("{domain}", point, view))
        points.add(point)
    atomic_write_text(root / "train_domain.txt", "".join(t + "\n" for t in templates[:n_tr]))
    atomic_write_text(root / "val_domain.txt", "".join(t + "\n" for t in templates[n_tr:]))
    atomic_write_json(root / "meta.json", _meta(
        "taskonomy", "taskonomy-sample-model-1 {domain}/point_P_view_V_domain_{domain}.png + "
                     "train_domain.txt/val_domain.txt", seed, size,
        {"train": n_tr, "val": n_va},
        points=len(points), domains=list(TASKONOMY_DOMAINS), encodings=TASKONOMY_ENCODINGS,
        split_ratio=[TASKONOMY_SPLIT_SIZES["train"], TASKONOMY_SPLIT_SIZES["val"]],
        **_misregistration_meta(baseline, TASKONOMY_DISPLACED, disparities),
    ))
    return root

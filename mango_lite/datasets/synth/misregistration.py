"""Misregistered modalities: the second sensor of a rig sits beside the first.

A real RGB-D rig has two cameras a baseline ``b`` apart. Unless the depth map is re-projected into the
colour camera (a calibration step that can fail or be skipped), a scene point seen at pixel ``(r, c)`` by
the first camera appears at ``(r, c - f b / z)`` in the second: a horizontal shift, the *disparity*
``f b / z`` (pixels; ``f`` the focal length in pixels, ``z`` the point's depth along the optical axis).
Near things move more than far ones, so no single shift re-aligns the images, and the second camera sees
surfaces the first cannot (and the reverse): where the second camera looks at a point that a nearer
surface hides from the first, the rig has no measurement registered to the first view. A real sensor
leaves those pixels empty; we mark them invalid (depth 0, the stand-ins' "missing").

With the second modality misregistered, fusing position by position (a 1x1 convolution over both
modalities, what concatenation does) pairs each pixel with the wrong partner, and a model must look
``f b / z`` pixels away to find the right one: the situation where cross-modal attention has something to
add. ``b = 0`` renders nothing twice and gives the registered data bit for bit.

Geometry. The second camera is the first translated by ``b`` metres along the first camera's right
axis, with the same orientation and focal length. For a point with camera-frame coordinates
``(x, y, -z)`` in the first camera, the second sees ``(x - b, y, -z)``: the same depth ``z``, the same row,
and the column ``c2 = c1 - f b / z`` (:func:`disparity_px`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .scenes import Camera, Scene, render, sample_camera, sample_scene

F32 = np.float32

#: a point of the second view is hidden from the first when the first camera's surface at its pixel is
#: nearer by more than this fraction of the point's depth (a few times the renderer's depth noise)
OCCLUSION_TOLERANCE = 0.03

#: the stand-ins whose writers take a sensor baseline (``write_nyudv2`` / ``write_taskonomy(baseline=...)``)
MISREGISTERED_DATASETS = ("nyudv2", "taskonomy")


def displaced_camera(cam: Camera, baseline: float) -> Camera:
    """``cam`` moved ``baseline`` metres along its own right axis (the first column of ``cam.rot``)."""
    return replace(cam, position=(cam.position + F32(baseline) * cam.rot[:, 0]).astype(F32))


def disparity_px(depth: np.ndarray, focal: float, baseline: float) -> np.ndarray:
    """Horizontal shift ``f b / z`` (pixels) of each point between the two views; 0 where ``depth`` <= 0."""
    depth = np.asarray(depth, dtype=np.float64)
    out = np.zeros_like(depth)
    ok = depth > 0
    out[ok] = float(focal) * float(baseline) / depth[ok]
    return out


def hidden_from_first(depth_second: np.ndarray, depth_first: np.ndarray, focal: float, baseline: float,
                      tolerance: float = OCCLUSION_TOLERANCE) -> np.ndarray:
    """Pixels of the second view whose scene point the first camera cannot see (bool, (H, W)).

    ``depth_second`` / ``depth_first``: exact z-depths (metres) of the two views. Each second-view pixel at
    ``(r, c2)`` with depth ``z`` is the point the first camera would see at ``(r, c2 + f b / z)``; it is
    hidden when the first view's surface there is nearer than ``z`` by more than ``tolerance * z``. Points
    outside the first camera's frame are not hidden (nothing occludes them; the first camera just does not
    look there)."""
    h, w = depth_second.shape
    cols = np.arange(w)[None, :] + disparity_px(depth_second, focal, baseline)
    c1 = np.rint(cols).astype(np.int64)
    inside = (c1 >= 0) & (c1 < w)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    seen = depth_first[rows[inside], c1[inside]]
    hidden = np.zeros((h, w), dtype=bool)
    hidden[inside] = seen < depth_second[inside] * (1.0 - tolerance)
    return hidden


def render_misregistered(scene: Scene, cam: Camera, size: int, rng: np.random.Generator, baseline: float,
                         displaced: tuple[str, ...] = ("depth",)) -> dict[str, np.ndarray]:
    """Every modality of ``scene`` from ``cam``, except those in ``displaced``, rendered from the camera
    ``baseline`` metres to its right (:func:`displaced_camera`).

    The first view is rendered first with ``rng``, exactly as :func:`~.scenes.render` would (so labels and
    every first-view modality are the registered data's, bit for bit); the second view's sensor noise is
    drawn afterwards from the same generator. In the displaced sensor depth, pixels whose point is hidden
    from the first camera (:func:`hidden_from_first`) are 0 (missing). Extra keys: ``second_hidden`` (bool,
    the second view's pixels hidden from the first), ``second_depth_clean`` (the second view's exact
    z-depth), ``baseline_m`` and ``focal_px``. ``baseline == 0`` returns :func:`render`'s output unchanged."""
    first = render(scene, cam, size, rng)
    if baseline == 0:
        return first
    unknown = set(displaced) - set(first)
    if unknown:
        raise ValueError(f"render_misregistered: unknown modalities {sorted(unknown)}; expected some of {sorted(first)}")
    focal = cam.focal(int(size))
    second = render(scene, displaced_camera(cam, baseline), size, rng)
    hidden = hidden_from_first(second["depth_clean"], first["depth_clean"], focal, baseline)
    out = dict(first)
    for key in displaced:
        out[key] = second[key]
    if "depth" in displaced:
        out["depth"] = np.where(hidden, F32(0.0), second["depth"]).astype(F32)
    out.update(second_hidden=hidden, second_depth_clean=second["depth_clean"], baseline_m=np.float32(baseline),
               focal_px=np.float32(focal))
    return out


def render_scene_misregistered(seed: int | np.random.Generator, size: int = 128, baseline: float = 0.0,
                               displaced: tuple[str, ...] = ("depth",)) -> dict[str, np.ndarray]:
    """:func:`~.scenes.render_scene` with the modalities in ``displaced`` seen from a camera ``baseline``
    metres to the right (:func:`render_misregistered`); ``baseline=0`` is ``render_scene`` bit for bit."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    scene = sample_scene(rng)
    cam = sample_camera(scene, rng)
    return render_misregistered(scene, cam, size, rng, baseline, displaced)


def focal_px(size: int, fov_deg: float = 60.0) -> float:
    """Focal length (pixels) of the stand-ins' cameras (:func:`~.scenes.sample_camera`'s field of view) for a
    ``size``-pixel image."""
    return Camera(np.zeros(3, F32), np.eye(3, dtype=F32), fov_deg).focal(int(size))


def median_disparity_px(depth: np.ndarray, size: int, baseline: float, fov_deg: float = 60.0) -> float:
    """Median disparity (pixels) of the valid pixels of ``depth`` (metres) for a ``size``-pixel image: the
    misregistration a baseline amounts to, in the unit a model sees."""
    d = disparity_px(depth, focal_px(size, fov_deg), baseline)
    valid = np.asarray(depth) > 0
    return float(np.median(d[valid])) if valid.any() else 0.0


__all__ = ["displaced_camera", "disparity_px", "hidden_from_first", "render_misregistered",
           "render_scene_misregistered", "focal_px", "median_disparity_px", "OCCLUSION_TOLERANCE", "MISREGISTERED_DATASETS"]

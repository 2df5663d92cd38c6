"""Procedural indoor scenes rendered by vectorised analytic ray casting (pure NumPy, float32).

Scene model
-----------
* **Room shell.** An axis-aligned box ``[0, W] x [0, H] x [0, D]`` seen from inside (y is up): four walls
  (NYU-40 ``wall``), ``floor`` and ``ceiling``. All walls share one material, so an object "painted like
  the wall" continues the wall's pattern seamlessly.
* **Furniture and props** are unions of analytic convex primitives: axis-aligned boxes, vertical capped
  cylinders and spheres (5-30 per scene, about 15 on average). Templates: bed (+ pillows), sofa
  (+ cushion), table (rectangular or round) with chairs, desk (+ monitor/``television``, desk lamp),
  cabinet (low ones sometimes with a ``counter`` top), bookshelf (+ rows of ``books``), box, floor lamp,
  ball / vase (``otherprop``), ceiling lamp fixtures. A room type (bedroom, living room, office, kitchen)
  picks the main piece and the odds of the others.
* **Flush decals** are zero-thickness rectangles on a wall, the floor or a box face: ``picture``,
  ``whiteboard``, ``window``, ``blinds`` (over a window), ``door``, ``floor mat``, ``books`` on a bookshelf
  front. They change label and material but not geometry.
* **Textures** are procedural and evaluated in world space on the two axes orthogonal to the dominant
  normal axis: plain, checker, stripes, 2-octave value noise, wood bands and random bands (book spines).
* **Camera**: pinhole, 60 degree field of view, placed in the near part of the room at 1.1-1.7 m height,
  looking at a camouflaged object, at the main piece or at a random point in the far part of the room
  (downward pitch, small roll).
* **Lighting**: 1-2 point lights below the ceiling (each under a ``lamp`` fixture) plus ambient;
  Lambert shading with hard shadows (shadow rays cast from the light against every primitive), a small
  Blinn-Phong specular term on glossy materials, emissive windows, auto-exposure, sRGB gamma and a
  little sensor noise.
* **Kinect-like depth**: axial noise ``sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2`` m (Nguyen et al. 2012),
  disparity quantisation to 1/8 pixel of a 580 px / 7.5 cm Kinect, and holes (0) at grazing angles,
  in the projector shadow beside foreground edges, at depth discontinuities, below 0.45 m, beyond a
  per-scene maximum range and as random speckle.

Fusion cases (why both modalities are needed)
---------------------------------------------
* **RGB-ambiguous / depth-distinct** ("camouflage"): in most scenes a cabinet against a wall and/or a
  box on the floor gets *exactly the material of the wall / floor behind it*. Because textures live in
  world space, the pattern continues across the boundary; the front face has the same normal as the wall,
  so only small lighting differences remain in RGB, while depth jumps by the object's depth (0.3-0.6 m).
  Only depth (or the geometry it implies) separates ``cabinet``/``box`` from ``wall``/``floor``.
* **Depth-ambiguous / RGB-distinct** ("flush decals"): ``picture``, ``whiteboard``, ``window``,
  ``blinds`` and ``door`` are flush with the wall, the ``floor mat`` lies flat on the floor and ``books``
  are flush with the bookshelf front. Depth and normals are identical across the boundary; only colour
  and texture tell the classes apart.

Measured over seeds 0-199 at 64 px: a camouflaged object is in view in about 65 % of frames, a flush
decal in about 80 %. ``Scene.fusion`` lists the instance ids of both kinds in each scene, so tests and notebooks can find
them. :func:`render_scene` is the one-call entry point; :func:`sample_scene`, :func:`sample_camera` and
:func:`render` expose the steps (for instance several views of one room for Taskonomy ``point/view``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import NYU40_CLASSES, NYU_IGNORE_INDEX

__all__ = [
    "FUSION_CASE_CLASSES",
    "Camera",
    "Scene",
    "USED_CLASS_IDS",
    "render",
    "render_scene",
    "sample_camera",
    "sample_scene",
]

#: the classes of each designed fusion case (module docstring): the keys of ``Scene.fusion``, each with the
#: NYU-40 class names whose objects can be that case. Camouflaged objects are told apart by depth only,
#: flush decals by colour only; notebooks score each group per model to show which modality a model uses.
FUSION_CASE_CLASSES: dict[str, tuple[str, ...]] = {
    "rgb_ambiguous": ("cabinet", "box"),
    "depth_ambiguous": ("picture", "whiteboard", "window", "blinds", "door", "floor mat", "books"),
}

GENERATOR_NAME = "mango_lite.synth.scenes"
GENERATOR_VERSION = "1.0"

F32 = np.float32


def _cid(name: str) -> int:
    return NYU40_CLASSES.index(name)


WALL, FLOOR, CEILING = _cid("wall"), _cid("floor"), _cid("ceiling")
CABINET, BED, CHAIR, SOFA, TABLE = _cid("cabinet"), _cid("bed"), _cid("chair"), _cid("sofa"), _cid("table")
DOOR, WINDOW, BOOKSHELF, PICTURE = _cid("door"), _cid("window"), _cid("bookshelf"), _cid("picture")
COUNTER = _cid("counter")
BLINDS, DESK, PILLOW, FLOOR_MAT = _cid("blinds"), _cid("desk"), _cid("pillow"), _cid("floor mat")
BOOKS, TELEVISION, BOX, WHITEBOARD = _cid("books"), _cid("television"), _cid("box"), _cid("whiteboard")
LAMP, OTHERPROP = _cid("lamp"), _cid("otherprop")

#: NYU-40 ids the renderer can emit (23 of 40), plus 255 (void) on some annotator-gap boundaries.
USED_CLASS_IDS: tuple[int, ...] = tuple(sorted({
    WALL, FLOOR, CEILING, CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW, BOOKSHELF, PICTURE, BLINDS, COUNTER,
    DESK, PILLOW, FLOOR_MAT, BOOKS, TELEVISION, BOX, WHITEBOARD, LAMP, OTHERPROP,
}))

BOX_K, CYL_K, SPH_K = 0, 1, 2  # primitive kinds
# texture types
T_PLAIN, T_CHECKER, T_STRIPES, T_NOISE, T_WOOD, T_BANDS = range(6)
# (u, v) world axes used as texture/decal coordinates for a face whose normal is along axis 0, 1, 2:
# walls get (horizontal, vertical), floor and ceiling get (x, z).
UV_AXES = ((2, 1), (0, 2), (0, 1))
NOISE_RES = 32  # value-noise lattice size (wraps)

# Kinect v1 constants used for disparity quantisation (native 640 px image, focal 580 px, baseline 7.5 cm).
KINECT_FB = 580.0 * 0.075
KINECT_SUBPIXEL = 8.0


# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    """One room. Arrays are float32 unless stated. ``K`` primitives, ``M`` materials, ``L`` lights.

    room: (3,) room size (W, H, D) in metres; kinds: (K,) int 0 box / 1 cylinder / 2 sphere;
    lo, hi: (K, 3) axis-aligned bounds of each primitive; labels, materials, instances: (K,) int;
    room_face_mat / room_face_label / room_face_inst: (6,) for faces x=0, x=W, y=0, y=H, z=0, z=D;
    decals: list of dicts (host: primitive index or -1 for the room, code: face code axis*2+side,
    rect: (u0, u1, v0, v1) in the face's UV_AXES world coordinates, label, material, instance);
    mat_*: material table (type (M,), col_a/col_b (M, 3) linear albedo, freq (M,), orient (M,) 0 = vary
    along u / 1 = along v, spec (M,), emit (M,), offset (M, 2)); noise: (NOISE_RES, NOISE_RES) lattice;
    lights: (L, 3) positions, light_rgb: (L, 3) intensities, ambient: scalar;
    fusion: {"rgb_ambiguous": [instance ids], "depth_ambiguous": [instance ids]};
    max_range: depth beyond which the simulated sensor drops out; void_boundary: whether instance
    boundaries get ragged 255 annotator gaps.
    """

    room: np.ndarray
    kinds: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    labels: np.ndarray
    materials: np.ndarray
    instances: np.ndarray
    room_face_mat: np.ndarray
    room_face_label: np.ndarray
    room_face_inst: np.ndarray
    decals: list[dict]
    mat_type: np.ndarray
    mat_col_a: np.ndarray
    mat_col_b: np.ndarray
    mat_freq: np.ndarray
    mat_orient: np.ndarray
    mat_spec: np.ndarray
    mat_emit: np.ndarray
    mat_offset: np.ndarray
    noise: np.ndarray
    lights: np.ndarray
    light_rgb: np.ndarray
    ambient: float
    fusion: dict[str, list[int]] = field(default_factory=dict)
    max_range: float = 5.5
    void_boundary: bool = False
    instance_labels: dict[int, int] = field(default_factory=dict)
    focus: list[int] = field(default_factory=list)
    room_type: str = ""

    @property
    def n_prims(self) -> int:
        return int(self.kinds.shape[0])


@dataclass
class Camera:
    """Pinhole camera. position: (3,) world metres; rot: (3, 3) world-from-camera rotation whose
    columns are the camera's right, up and backward axes (OpenGL camera frame: the camera looks along
    -z); fov_deg: horizontal = vertical field of view (square images)."""

    position: np.ndarray
    rot: np.ndarray
    fov_deg: float = 60.0

    def focal(self, size: int) -> float:
        """Focal length in pixels for a ``size`` x ``size`` image."""
        return 0.5 * size / float(np.tan(np.radians(self.fov_deg) / 2.0))


class _Builder:
    """Accumulates primitives, decals and materials while a scene is sampled."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.prims: list[tuple[int, np.ndarray, np.ndarray, int, int, int]] = []
        self.decals: list[dict] = []
        self.mats: list[tuple] = []
        self.next_inst = 7  # 1..6 are the room faces
        self.inst_label: dict[int, int] = {}
        self.footprints: list[tuple[float, float, float, float]] = []

    # materials ---------------------------------------------------------------------------------
    def material(self, ttype: int, col_a, col_b=None, freq: float = 4.0, orient: int = 0,
                 spec: float = 0.0, emit: float = 0.0) -> int:
        col_a = np.clip(np.asarray(col_a, dtype=F32), 0.0, 1.0)
        col_b = col_a if col_b is None else np.clip(np.asarray(col_b, dtype=F32), 0.0, 1.0)
        off = self.rng.uniform(0, NOISE_RES, size=2).astype(F32)
        self.mats.append((ttype, col_a, col_b, float(freq), int(orient), float(spec), float(emit), off))
        return len(self.mats) - 1

    def instance(self, label: int) -> int:
        i = self.next_inst
        self.next_inst += 1
        self.inst_label[i] = label
        return i

    # geometry ----------------------------------------------------------------------------------
    def box(self, lo, hi, label: int, mat: int, inst: int) -> int:
        self.prims.append((BOX_K, np.asarray(lo, F32), np.asarray(hi, F32), label, mat, inst))
        return len(self.prims) - 1

    def cylinder(self, cx: float, cz: float, r: float, y0: float, y1: float, label: int, mat: int,
                 inst: int) -> int:
        self.prims.append((CYL_K, np.array([cx - r, y0, cz - r], F32), np.array([cx + r, y1, cz + r], F32),
                           label, mat, inst))
        return len(self.prims) - 1

    def sphere(self, c, r: float, label: int, mat: int, inst: int) -> int:
        c = np.asarray(c, F32)
        self.prims.append((SPH_K, c - r, c + r, label, mat, inst))
        return len(self.prims) - 1

    def decal(self, host: int, code: int, rect, label: int, mat: int, inst: int) -> None:
        self.decals.append(dict(host=int(host), code=int(code), rect=tuple(float(x) for x in rect),
                                label=int(label), material=int(mat), instance=int(inst)))

    def free(self, x0: float, x1: float, z0: float, z1: float, margin: float = 0.05) -> bool:
        for a0, a1, b0, b1 in self.footprints:
            if x0 < a1 + margin and a0 < x1 + margin and z0 < b1 + margin and b0 < z1 + margin:
                return False
        return True


# --------------------------------------------------------------------------------------------------
# Colour helpers
# --------------------------------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV (all in [0, 1]) -> linear-ish RGB (3,) float32."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb, dtype=F32)


def _rand_col(rng: np.random.Generator, s=(0.1, 0.5), v=(0.3, 0.8), h=None) -> np.ndarray:
    hue = rng.uniform(0, 1) if h is None else (h + rng.uniform(-0.04, 0.04)) % 1.0
    return _hsv(hue, rng.uniform(*s), rng.uniform(*v))


def _wood(b: _Builder) -> int:
    rng = b.rng
    base = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.45, 0.7), rng.uniform(0.35, 0.7))
    return b.material(T_WOOD, base, base * rng.uniform(0.55, 0.75), freq=rng.uniform(3, 7),
                      orient=int(rng.integers(2)), spec=0.08)


def _fabric(b: _Builder) -> int:
    rng = b.rng
    c = _rand_col(rng, s=(0.2, 0.7), v=(0.25, 0.75))
    if rng.uniform() < 0.5:
        return b.material(T_NOISE, c, c * 0.75, freq=rng.uniform(6, 14))
    return b.material(T_STRIPES, c, _rand_col(rng, s=(0.1, 0.6)), freq=rng.uniform(3, 8),
                      orient=int(rng.integers(2)))


def _painted(b: _Builder) -> int:
    rng = b.rng
    c = _rand_col(rng, s=(0.05, 0.4), v=(0.4, 0.9))
    return b.material(T_NOISE if rng.uniform() < 0.5 else T_PLAIN, c, c * 0.9, freq=8.0,
                      spec=0.15 if rng.uniform() < 0.5 else 0.0)


# --------------------------------------------------------------------------------------------------
# Scene sampling
# --------------------------------------------------------------------------------------------------
# Walls are addressed by side: 0 -> x=0, 1 -> x=W, 4 -> z=0 (behind the camera), 5 -> z=D (far).
def _wall_frame(side: int, room: np.ndarray):
    """Local (a along the wall, b out of the wall) -> world x/z mapping for a wall ``side``.
    Returns (length of wall, function mapping (a0, a1, b0, b1) -> (x0, x1, z0, z1), face code of a box
    face looking into the room)."""
    W, _, D = room
    if side == 0:
        return D, (lambda a0, a1, b0, b1: (b0, b1, a0, a1)), 1   # front face: axis x, side hi
    if side == 1:
        return D, (lambda a0, a1, b0, b1: (W - b1, W - b0, a0, a1)), 0
    if side == 4:
        return W, (lambda a0, a1, b0, b1: (a0, a1, b0, b1)), 5
    return W, (lambda a0, a1, b0, b1: (a0, a1, D - b1, D - b0)), 4


def _place_on_wall(b: _Builder, room, side: int, width: float, depth: float, cam_xz, keep: float = 0.7):
    """Find a free slot of ``width`` along wall ``side`` for a ``depth``-deep object and reserve it.
    Returns ``((x0, x1, z0, z1), front_face_code, to_world, a0)`` (world footprint, face code of the
    side facing the room, the wall's local->world mapping and the slot start along the wall) or None."""
    length, to_world, code = _wall_frame(side, room)
    if width > length - 0.2:
        return None
    for _ in range(12):
        a0 = b.rng.uniform(0.05, length - width - 0.05)
        x0, x1, z0, z1 = to_world(a0, a0 + width, 0.0, depth)
        if not b.free(x0, x1, z0, z1):
            continue
        # keep the camera out of the object (and not right against it)
        cx = min(max(cam_xz[0], x0), x1)
        cz = min(max(cam_xz[1], z0), z1)
        if (cx - cam_xz[0]) ** 2 + (cz - cam_xz[1]) ** 2 < keep ** 2:
            continue
        b.footprints.append((x0, x1, z0, z1))
        return (x0, x1, z0, z1), code, to_world, a0
    return None


def _place_free(b: _Builder, room, wx: float, wz: float, cam_xz, keep: float = 0.8):
    """Free-standing footprint of size wx x wz somewhere in the room (not near the camera)."""
    W, _, D = room
    if wx > W - 0.7 or wz > D - 0.7:
        return None
    for _ in range(20):
        x0 = b.rng.uniform(0.3, W - wx - 0.3)
        z0 = b.rng.uniform(0.3, D - wz - 0.3)
        if not b.free(x0, x0 + wx, z0, z0 + wz, margin=0.15):
            continue
        cx = min(max(cam_xz[0], x0), x0 + wx)
        cz = min(max(cam_xz[1], z0), z0 + wz)
        if (cx - cam_xz[0]) ** 2 + (cz - cam_xz[1]) ** 2 < keep ** 2:
            continue
        b.footprints.append((x0, x0 + wx, z0, z0 + wz))
        return x0, x0 + wx, z0, z0 + wz
    return None


def _front_rect(code: int, x0, x1, y0, y1, z0, z1):
    """(u0, u1, v0, v1) rectangle of the world box [x0,x1]x[y0,y1]x[z0,z1] projected on a face of
    code ``code`` (UV_AXES convention)."""
    rng3 = ((x0, x1), (y0, y1), (z0, z1))
    ua, va = UV_AXES[code // 2]
    return (*rng3[ua], *rng3[va])


ROOM_TYPES = ("bedroom", "living_room", "office", "kitchen")
# room type -> (main piece, {optional piece: probability}, counter-top probability, whiteboard probability)
ROOM_RECIPES: dict[str, tuple[str, dict[str, float], float, float]] = {
    "bedroom": ("bed", {"desk": 0.4, "bookshelf": 0.3, "floor_lamp": 0.4, "ball": 0.2, "table": 0.2}, 0.2, 0.1),
    "living_room": ("sofa", {"table": 0.6, "bookshelf": 0.5, "floor_lamp": 0.4, "ball": 0.4, "desk": 0.2},
                    0.2, 0.1),
    "office": ("desk", {"desk": 0.4, "bookshelf": 0.6, "table": 0.5, "floor_lamp": 0.2, "ball": 0.2}, 0.3, 0.7),
    "kitchen": ("table", {"bookshelf": 0.1, "sofa": 0.1, "ball": 0.4, "desk": 0.1}, 0.9, 0.2),
}


def _pick_wall(rng: np.random.Generator) -> int:
    # the far wall and the side walls are in view; the wall behind the camera rarely is
    return int(rng.choice([0, 1, 5, 5, 4], p=[0.28, 0.28, 0.2, 0.19, 0.05]))


def sample_scene(rng: np.random.Generator) -> Scene:
    """Sample a room (type bedroom / living room / office / kitchen) with furniture, decals, materials
    and lights. Deterministic given ``rng``'s state. Furniture keeps clear of the strip where
    :func:`sample_camera` puts cameras (the near part of the room along z, around the centre line)."""
    b = _Builder(rng)
    W, H, D = rng.uniform(3.0, 5.0), rng.uniform(2.5, 3.0), rng.uniform(3.5, 5.5)
    room = np.array([W, H, D], F32)
    # cameras stand in this strip; keep a clearance circle around its centre line
    cam_xz = (W / 2.0, 0.18 * D)

    # --- room materials
    wall_col = _rand_col(rng, s=(0.03, 0.3), v=(0.55, 0.9))
    wtype = int(rng.choice([T_PLAIN, T_NOISE, T_STRIPES, T_CHECKER], p=[0.3, 0.35, 0.2, 0.15]))
    wall_mat = b.material(wtype, wall_col, wall_col * rng.uniform(0.7, 0.9), freq=rng.uniform(2, 6),
                          orient=int(rng.integers(2)))
    if rng.uniform() < 0.5:
        floor_mat = _wood(b)
    else:
        c = _rand_col(rng, s=(0.0, 0.3), v=(0.3, 0.75))
        floor_mat = b.material(int(rng.choice([T_CHECKER, T_NOISE])), c, _rand_col(rng, s=(0.0, 0.3)),
                               freq=rng.uniform(1.2, 3.0), spec=0.1)
    ceil_c = _rand_col(rng, s=(0.0, 0.08), v=(0.75, 0.95))
    ceil_mat = b.material(T_PLAIN, ceil_c)
    room_face_mat = np.array([wall_mat, wall_mat, floor_mat, ceil_mat, wall_mat, wall_mat], np.int32)
    room_face_label = np.array([WALL, WALL, FLOOR, CEILING, WALL, WALL], np.int32)
    room_face_inst = np.arange(1, 7, dtype=np.int32)
    inst_label = {1: WALL, 2: WALL, 3: FLOOR, 4: CEILING, 5: WALL, 6: WALL}
    rgb_amb: list[int] = []
    depth_amb: list[int] = []

    # --- wall-side furniture ---------------------------------------------------------------------
    def add_cabinet(camouflage: bool, counter_p: float = 0.4) -> None:
        side = _pick_wall(rng) if not camouflage else int(rng.choice([0, 1, 5]))
        tall = rng.uniform() < 0.4
        w, d = rng.uniform(0.5, 1.3), rng.uniform(0.35, 0.6)
        h = rng.uniform(1.5, 2.1) if tall else rng.uniform(0.6, 1.0)
        slot = _place_on_wall(b, room, side, w, d, cam_xz)
        if slot is None:
            return
        (x0, x1, z0, z1), code, _, _ = slot
        mat = wall_mat if camouflage else (_wood(b) if rng.uniform() < 0.5 else _painted(b))
        inst = b.instance(CABINET)
        b.box((x0, 0.0, z0), (x1, h, z1), CABINET, mat, inst)
        if camouflage:
            rgb_amb.append(inst)
        elif rng.uniform() < counter_p and not tall:  # a counter top on a low cabinet
            ti = b.instance(COUNTER)
            b.box((x0 - 0.02, h, z0 - 0.02), (x1 + 0.02, h + 0.04, z1 + 0.02), COUNTER, _painted(b), ti)

    def add_bookshelf() -> None:
        side = _pick_wall(rng)
        w, d, h = rng.uniform(0.7, 1.3), rng.uniform(0.28, 0.4), rng.uniform(1.6, 2.2)
        slot = _place_on_wall(b, room, side, w, d, cam_xz)
        if slot is None:
            return
        (x0, x1, z0, z1), code, _, _ = slot
        k = b.box((x0, 0.0, z0), (x1, h, z1), BOOKSHELF, _wood(b), b.instance(BOOKSHELF))
        rows = int(rng.integers(2, 5))
        books_mat = b.material(T_BANDS, _rand_col(rng, s=(0.5, 0.9), v=(0.3, 0.8)),
                               _rand_col(rng, s=(0.5, 0.9), v=(0.2, 0.7)), freq=rng.uniform(18, 30))
        for r in range(rows):
            y0 = 0.1 + r * (h - 0.15) / rows
            y1 = y0 + (h - 0.15) / rows * rng.uniform(0.55, 0.8)
            inset = 0.05
            bx0, bx1, bz0, bz1 = x0 + inset, x1 - inset, z0 + inset, z1 - inset
            fill = rng.uniform(0.5, 1.0)  # books fill part of the row
            rect = list(_front_rect(code, bx0, bx1, y0, y1, bz0, bz1))
            rect[1] = rect[0] + (rect[1] - rect[0]) * fill
            inst = b.instance(BOOKS)
            b.decal(k, code, rect, BOOKS, books_mat, inst)
            depth_amb.append(inst)

    def add_bed() -> None:
        side = int(rng.choice([0, 1, 5]))
        w, d = rng.uniform(1.0, 1.8), rng.uniform(1.9, 2.1)
        slot = _place_on_wall(b, room, side, w, d, cam_xz, keep=0.9)
        if slot is None:
            return
        (x0, x1, z0, z1), code, to_world, a0 = slot
        inst = b.instance(BED)
        hb = rng.uniform(0.4, 0.6)
        b.box((x0, 0.0, z0), (x1, hb, z1), BED, _fabric(b), inst)
        hx0, hx1, hz0, hz1 = to_world(a0, a0 + w, 0.0, 0.08)
        b.box((hx0, 0.0, hz0), (hx1, hb + rng.uniform(0.3, 0.6), hz1), BED, _wood(b), inst)
        pm = _fabric(b)
        npil = 1 if w < 1.3 else 2
        for i in range(npil):
            pa0 = a0 + 0.1 + i * (w - 0.2) / npil
            px0, px1, pz0, pz1 = to_world(pa0, pa0 + (w - 0.2) / npil - 0.05, 0.1, 0.45)
            b.box((px0, hb, pz0), (px1, hb + 0.14, pz1), PILLOW, pm, b.instance(PILLOW))

    def add_sofa() -> None:
        side = _pick_wall(rng)
        w, d = rng.uniform(1.4, 2.2), rng.uniform(0.8, 1.0)
        slot = _place_on_wall(b, room, side, w, d, cam_xz)
        if slot is None:
            return
        (x0, x1, z0, z1), code, to_world, a0 = slot
        m = _fabric(b)
        inst = b.instance(SOFA)
        seat = rng.uniform(0.4, 0.5)
        b.box((x0, 0.0, z0), (x1, seat, z1), SOFA, m, inst)
        bx0, bx1, bz0, bz1 = to_world(a0, a0 + w, 0.0, 0.22)
        b.box((bx0, seat, bz0), (bx1, seat + rng.uniform(0.35, 0.5), bz1), SOFA, m, inst)
        if rng.uniform() < 0.6:
            px0, px1, pz0, pz1 = to_world(a0 + 0.15, a0 + 0.55, 0.22, 0.4)
            b.box((px0, seat, pz0), (px1, seat + 0.35, pz1), PILLOW, _fabric(b), b.instance(PILLOW))

    def add_desk() -> None:
        side = _pick_wall(rng)
        w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.75), rng.uniform(0.72, 0.78)
        slot = _place_on_wall(b, room, side, w, d, cam_xz)
        if slot is None:
            return
        (x0, x1, z0, z1), code, to_world, a0 = slot
        m = _wood(b) if rng.uniform() < 0.6 else _painted(b)
        inst = b.instance(DESK)
        b.box((x0, h - 0.04, z0), (x1, h, z1), DESK, m, inst)
        for pa in (a0, a0 + w - 0.05):  # two side panels
            px0, px1, pz0, pz1 = to_world(pa, pa + 0.05, 0.0, d)
            b.box((px0, 0.0, pz0), (px1, h - 0.04, pz1), DESK, m, inst)
        if rng.uniform() < 0.6:  # monitor / TV
            tw = rng.uniform(0.45, 0.8)
            ta = a0 + rng.uniform(0.05, w - tw - 0.05)
            tx0, tx1, tz0, tz1 = to_world(ta, ta + tw, 0.08, 0.12)
            b.box((tx0, h + 0.08, tz0), (tx1, h + 0.08 + tw * 0.6, tz1), TELEVISION,
                  b.material(T_PLAIN, _hsv(0.6, 0.2, rng.uniform(0.02, 0.08)), spec=0.4),
                  b.instance(TELEVISION))
        if rng.uniform() < 0.5:  # desk lamp: stem + shade
            la = a0 + w - 0.2
            lx0, lx1, lz0, lz1 = to_world(la, la + 0.1, 0.15, 0.25)
            cx, cz = (lx0 + lx1) / 2, (lz0 + lz1) / 2
            lm = _painted(b)
            li = b.instance(LAMP)
            b.cylinder(cx, cz, 0.015, h, h + 0.35, LAMP, lm, li)
            b.cylinder(cx, cz, rng.uniform(0.08, 0.12), h + 0.3, h + 0.45, LAMP, lm, li)

    # --- free-standing furniture -----------------------------------------------------------------
    def add_table_and_chairs() -> None:
        wx, wz = rng.uniform(0.7, 1.4), rng.uniform(0.6, 1.1)
        fp = _place_free(b, room, wx + 1.0, wz + 1.0, cam_xz, keep=0.5)  # room for chairs around
        if fp is None:
            return
        x0, x1, z0, z1 = fp[0] + 0.5, fp[1] - 0.5, fp[2] + 0.5, fp[3] - 0.5
        h = rng.uniform(0.7, 0.78)
        m = _wood(b)
        inst = b.instance(TABLE)
        if rng.uniform() < 0.35:  # round pedestal table
            r = min(wx, wz) / 2
            cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
            b.cylinder(cx, cz, r, h - 0.04, h, TABLE, m, inst)
            b.cylinder(cx, cz, 0.06, 0.0, h - 0.04, TABLE, m, inst)
        else:
            b.box((x0, h - 0.04, z0), (x1, h, z1), TABLE, m, inst)
            for lx, lz in ((x0, z0), (x1 - 0.05, z0), (x0, z1 - 0.05), (x1 - 0.05, z1 - 0.05)):
                b.box((lx, 0.0, lz), (lx + 0.05, h - 0.04, lz + 0.05), TABLE, m, inst)
        if rng.uniform() < 0.5:  # a round prop on the table (vase / ball)
            pm = _painted(b)
            cx, cz = rng.uniform(x0 + 0.15, x1 - 0.15), rng.uniform(z0 + 0.15, z1 - 0.15)
            if rng.uniform() < 0.5:
                r = rng.uniform(0.06, 0.12)
                b.sphere((cx, h + r, cz), r, OTHERPROP, pm, b.instance(OTHERPROP))
            else:
                b.cylinder(cx, cz, rng.uniform(0.04, 0.08), h, h + rng.uniform(0.15, 0.3), OTHERPROP, pm,
                           b.instance(OTHERPROP))
        cm = _painted(b) if rng.uniform() < 0.5 else _wood(b)
        nchairs = int(rng.integers(1, 5))
        sides = rng.permutation(4)[:nchairs]
        for s in sides:
            sw = 0.42
            cxm, czm = (x0 + x1) / 2, (z0 + z1) / 2
            # chair centre on side s of the table, back on the far side from the table
            if s == 0:
                cx, cz, back = cxm, z0 - 0.28, (0, 0, -1)
            elif s == 1:
                cx, cz, back = cxm, z1 + 0.28, (0, 0, 1)
            elif s == 2:
                cx, cz, back = x0 - 0.28, czm, (-1, 0, 0)
            else:
                cx, cz, back = x1 + 0.28, czm, (1, 0, 0)
            seat = rng.uniform(0.42, 0.48)
            ci = b.instance(CHAIR)
            b.box((cx - sw / 2, seat - 0.05, cz - sw / 2), (cx + sw / 2, seat, cz + sw / 2), CHAIR, cm, ci)
            bxc, bzc = cx + back[0] * (sw / 2 - 0.02), cz + back[2] * (sw / 2 - 0.02)
            ex, ez = (0.02, sw / 2) if back[0] != 0 else (sw / 2, 0.02)
            b.box((bxc - ex, seat, bzc - ez), (bxc + ex, seat + rng.uniform(0.4, 0.5), bzc + ez), CHAIR, cm, ci)
            b.box((cx - 0.03, 0.0, cz - 0.03), (cx + 0.03, seat - 0.05, cz + 0.03), CHAIR, cm, ci)

    def add_floor_box(camouflage: bool) -> None:
        wx, wz = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        fp = _place_free(b, room, wx, wz, cam_xz)
        if fp is None:
            return
        x0, x1, z0, z1 = fp
        h = rng.uniform(0.2, 0.5)
        mat = floor_mat if camouflage else (_painted(b) if rng.uniform() < 0.5 else _fabric(b))
        inst = b.instance(BOX)
        b.box((x0, 0.0, z0), (x1, h, z1), BOX, mat, inst)
        if camouflage:
            rgb_amb.append(inst)

    def add_floor_lamp() -> None:
        fp = _place_free(b, room, 0.3, 0.3, cam_xz)
        if fp is None:
            return
        cx, cz = (fp[0] + fp[1]) / 2, (fp[2] + fp[3]) / 2
        m = _painted(b)
        li = b.instance(LAMP)
        top = rng.uniform(1.3, 1.7)
        b.cylinder(cx, cz, 0.15, 0.0, 0.03, LAMP, m, li)
        b.cylinder(cx, cz, 0.02, 0.03, top, LAMP, m, li)
        b.cylinder(cx, cz, rng.uniform(0.12, 0.2), top, top + 0.25, LAMP, _fabric(b), li)

    def add_ball() -> None:
        r = rng.uniform(0.1, 0.25)
        fp = _place_free(b, room, 2 * r, 2 * r, cam_xz)
        if fp is None:
            return
        b.sphere(((fp[0] + fp[1]) / 2, r, (fp[2] + fp[3]) / 2), r, OTHERPROP, _painted(b), b.instance(OTHERPROP))

    # --- decals (flush: depth-ambiguous) ---------------------------------------------------------
    def wall_decal(label: int, mat: int, w: float, h: float, y0: float, side: int | None = None,
                   inset: float = 0.0) -> tuple[int, tuple] | None:
        side = _pick_wall(rng) if side is None else side
        length, to_world, _ = _wall_frame(side, room)
        if w > length - 0.3:
            return None
        code = {0: 0, 1: 1, 4: 4, 5: 5}[side]  # room faces: x=0 -> 0, x=W -> 1, z=0 -> 4, z=D -> 5
        for _ in range(8):
            a0 = rng.uniform(0.15, length - w - 0.15)
            x0, x1, z0, z1 = to_world(a0, a0 + w, 0.0, 0.0)
            # avoid furniture standing in front of a door
            if label == DOOR and not b.free(*to_world(a0, a0 + w, 0.0, 0.8)):
                continue
            rect = _front_rect(code, x0, x1, y0, y0 + h, z0, z1)
            inst = b.instance(label)
            b.decal(-1, code, rect, label, mat, inst)
            depth_amb.append(inst)
            if label == DOOR:
                b.footprints.append(tuple(to_world(a0, a0 + w, 0.0, 0.8)))
            return code, rect
        return None

    def add_picture() -> None:
        c1, c2 = _rand_col(rng, s=(0.4, 0.9), v=(0.3, 0.9)), _rand_col(rng, s=(0.4, 0.9), v=(0.2, 0.8))
        mat = b.material(int(rng.choice([T_NOISE, T_CHECKER, T_STRIPES])), c1, c2, freq=rng.uniform(4, 12),
                         orient=int(rng.integers(2)))
        w, h = rng.uniform(0.35, 1.0), rng.uniform(0.3, 0.8)
        wall_decal(PICTURE, mat, w, h, rng.uniform(1.1, 1.5))

    def add_whiteboard() -> None:
        c = _hsv(0.6, 0.02, rng.uniform(0.85, 0.95))
        mat = b.material(T_NOISE, c, c * 0.96, freq=3.0, spec=0.35)
        wall_decal(WHITEBOARD, mat, rng.uniform(1.0, 1.8), rng.uniform(0.7, 1.1), rng.uniform(0.85, 1.0))

    def add_door() -> None:
        wall_decal(DOOR, _wood(b) if rng.uniform() < 0.6 else _painted(b), rng.uniform(0.8, 0.95),
                   rng.uniform(1.95, 2.1), 0.0)

    def add_window() -> None:
        sky = _hsv(rng.uniform(0.52, 0.62), rng.uniform(0.1, 0.4), rng.uniform(0.75, 0.95))
        win_mat = b.material(T_NOISE, sky, sky * 0.85, freq=2.0, emit=rng.uniform(0.5, 0.9))
        w, h, y0 = rng.uniform(0.8, 1.6), rng.uniform(0.9, 1.3), rng.uniform(0.85, 1.1)
        out = wall_decal(WINDOW, win_mat, w, h, y0)
        if out is not None and rng.uniform() < 0.5:  # blinds pulled down over the top part
            code, (u0, u1, v0, v1) = out
            frac = rng.uniform(0.3, 0.7)
            bc = _rand_col(rng, s=(0.0, 0.3), v=(0.5, 0.9))
            bm = b.material(T_STRIPES, bc, bc * 0.6, freq=rng.uniform(14, 22), orient=1)
            inst = b.instance(BLINDS)
            b.decal(-1, code, (u0, u1, v1 - (v1 - v0) * frac, v1), BLINDS, bm, inst)
            depth_amb.append(inst)

    def add_floor_mat() -> None:
        W_, _, D_ = room
        wx, wz = rng.uniform(0.8, 2.0), rng.uniform(0.6, 1.5)
        x0, z0 = rng.uniform(0.2, W_ - wx - 0.2), rng.uniform(0.25 * D_, D_ - wz - 0.2)
        c1, c2 = _rand_col(rng, s=(0.4, 0.9), v=(0.25, 0.8)), _rand_col(rng, s=(0.3, 0.9), v=(0.2, 0.7))
        mat = b.material(int(rng.choice([T_STRIPES, T_CHECKER, T_NOISE])), c1, c2, freq=rng.uniform(3, 8),
                         orient=int(rng.integers(2)))
        inst = b.instance(FLOOR_MAT)
        b.decal(-1, 2, (x0, x0 + wx, z0, z0 + wz), FLOOR_MAT, mat, inst)
        depth_amb.append(inst)

    # --- compose the room: doors/windows first (they reserve wall space), then furniture ---------
    if rng.uniform() < 0.6:
        add_door()
    for _ in range(int(rng.integers(0, 3))):
        add_window()
    # room type: the main piece goes first (it needs the most space), then the camouflaged cabinet,
    # then optional pieces with type-dependent probabilities
    room_type = ROOM_TYPES[int(rng.integers(len(ROOM_TYPES)))]
    fns = {"bed": add_bed, "sofa": add_sofa, "desk": add_desk, "bookshelf": add_bookshelf,
           "table": add_table_and_chairs, "floor_lamp": add_floor_lamp, "ball": add_ball}
    main, optional, counter_p, whiteboard_p = ROOM_RECIPES[room_type]
    first_main = b.next_inst
    fns[main]()
    focus = [i for i in range(first_main, b.next_inst) if b.inst_label[i] not in (PILLOW, TELEVISION, LAMP)]
    if rng.uniform() < 0.8:  # RGB-ambiguous cabinet
        add_cabinet(camouflage=True)
    names = list(optional)
    for i in np.flatnonzero(rng.uniform(size=len(names)) < np.array([optional[k] for k in names])):
        fns[names[i]]()
    for _ in range(int(rng.integers(0, 4))):
        add_cabinet(camouflage=False, counter_p=counter_p)
    if rng.uniform() < 0.6:  # RGB-ambiguous box on the floor
        add_floor_box(camouflage=True)
    for _ in range(int(rng.integers(0, 3))):
        add_floor_box(camouflage=False)
    # depth-ambiguous decals, at least one flush wall decal or floor mat per scene
    n_dec = 0
    if rng.uniform() < 0.7:
        add_picture()
        n_dec += 1
    if rng.uniform() < whiteboard_p:
        add_whiteboard()
        n_dec += 1
    if rng.uniform() < 0.5 or n_dec == 0:
        add_floor_mat()

    # --- lights: 1-2 ceiling lights, each just below a small lamp fixture -------------------------
    n_l = int(rng.integers(1, 3))
    lights = np.zeros((n_l, 3), F32)
    light_rgb = np.zeros((n_l, 3), F32)
    fix_mat = b.material(T_PLAIN, _hsv(0.1, 0.05, 0.95), emit=0.8)
    for i in range(n_l):
        lx, lz = rng.uniform(0.25 * W, 0.75 * W), rng.uniform(0.3 * D, 0.85 * D)
        lights[i] = (lx, H - 0.22, lz)
        tint = _hsv(rng.uniform(0.05, 0.6), rng.uniform(0.0, 0.15), 1.0)
        light_rgb[i] = tint * rng.uniform(0.8, 1.3) / n_l ** 0.5
        if rng.uniform() < 0.4:  # globe fixture (its bottom 2 cm above the light)
            b.sphere((lx, H - 0.1, lz), 0.1, LAMP, fix_mat, b.instance(LAMP))
        else:
            b.cylinder(lx, lz, rng.uniform(0.12, 0.2), H - 0.12, H, LAMP, fix_mat, b.instance(LAMP))
    ambient = float(rng.uniform(0.12, 0.3))

    # --- pack ---------------------------------------------------------------------------------
    kinds = np.array([p[0] for p in b.prims], np.int32)
    lo = np.stack([p[1] for p in b.prims]).astype(F32)
    hi = np.stack([p[2] for p in b.prims]).astype(F32)
    mats = b.mats
    inst_label.update(b.inst_label)
    noise = rng.uniform(0.0, 1.0, size=(NOISE_RES, NOISE_RES)).astype(F32)
    return Scene(
        room=room, kinds=kinds, lo=lo, hi=hi,
        labels=np.array([p[3] for p in b.prims], np.int32),
        materials=np.array([p[4] for p in b.prims], np.int32),
        instances=np.array([p[5] for p in b.prims], np.int32),
        room_face_mat=room_face_mat, room_face_label=room_face_label, room_face_inst=room_face_inst,
        decals=b.decals,
        mat_type=np.array([m[0] for m in mats], np.int32),
        mat_col_a=np.stack([m[1] for m in mats]).astype(F32),
        mat_col_b=np.stack([m[2] for m in mats]).astype(F32),
        mat_freq=np.array([m[3] for m in mats], F32),
        mat_orient=np.array([m[4] for m in mats], np.int32),
        mat_spec=np.array([m[5] for m in mats], F32),
        mat_emit=np.array([m[6] for m in mats], F32),
        mat_offset=np.stack([m[7] for m in mats]).astype(F32),
        noise=noise, lights=lights, light_rgb=light_rgb, ambient=ambient,
        fusion={"rgb_ambiguous": rgb_amb, "depth_ambiguous": depth_amb},
        max_range=float(rng.uniform(4.5, 6.5)),
        void_boundary=bool(rng.uniform() < 0.3),
        instance_labels=inst_label,
        focus=focus,
        room_type=room_type,
    )


def _look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World-from-camera rotation (columns right, up, back) for a camera at ``eye`` looking at
    ``target`` with world up +y, then rolled by ``roll`` radians about the viewing axis."""
    fwd = target - eye
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    c, s = np.cos(roll), np.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    return np.stack([right, up, -fwd], axis=1).astype(F32)


def sample_camera(scene: Scene, rng: np.random.Generator, fov_deg: float = 60.0) -> Camera:
    """A hand-held-Kinect-like view: eye in the near part of the room (z in 10-28 % of D, away from the
    side walls, 1.1-1.7 m high, outside every primitive), looking at a camouflaged object (40 %, when
    the scene has one), at the room's main piece (35 %) or at a random point 0.3-1.0 m high in the far
    part of the room; pitch follows from the target, roll within +-4 degrees."""
    W, H, D = (float(v) for v in scene.room)
    for _ in range(50):
        eye = np.array([rng.uniform(0.35 * W, 0.65 * W), rng.uniform(1.1, 1.7), rng.uniform(0.1 * D, 0.28 * D)])
        inside = np.all((eye >= scene.lo - 0.15) & (eye <= scene.hi + 0.15), axis=1)
        if not inside.any():
            break
    target = np.array([rng.uniform(0.1 * W, 0.9 * W), rng.uniform(0.3, 1.0), rng.uniform(0.55 * D, 0.95 * D)])
    camo = scene.fusion.get("rgb_ambiguous", [])
    r = rng.uniform()
    # about 40 % of views look towards a camouflaged object (so the RGB-ambiguous case is in frame),
    # 35 % towards the room's main piece (bed, sofa, desk or table), the rest at a random point
    pool = camo if (camo and r < 0.4) else (scene.focus if r < 0.75 else [])
    if pool:
        k = np.flatnonzero(scene.instances == pool[int(rng.integers(len(pool)))])
        c = 0.5 * (scene.lo[k].min(axis=0) + scene.hi[k].max(axis=0))
        target = np.array([c[0], min(float(c[1]), 1.0), c[2]]) + rng.uniform(-0.4, 0.4, size=3) * (1, 0.2, 1)
    rot = _look_at(eye, target, roll=float(np.radians(rng.uniform(-4, 4))))
    return Camera(position=eye.astype(F32), rot=rot, fov_deg=fov_deg)


# --------------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------------
def _interval(kind: int, lo: np.ndarray, hi: np.ndarray, o, d, inv):
    """Entry/exit ray parameters (tn, tf) of rays ``o + t d`` through a convex primitive.
    o: 3 scalars (shared origin); d, inv: 3 arrays (direction and its reciprocal), any common shape.
    Misses give tn >= tf (or NaN-free garbage with tn > tf)."""
    if kind == BOX_K:
        a = (lo[0] - o[0]) * inv[0]
        c = (hi[0] - o[0]) * inv[0]
        tn, tf = np.minimum(a, c), np.maximum(a, c)
        for ax in (1, 2):
            a = (lo[ax] - o[ax]) * inv[ax]
            c = (hi[ax] - o[ax]) * inv[ax]
            np.maximum(tn, np.minimum(a, c), out=tn)
            np.minimum(tf, np.maximum(a, c), out=tf)
        return tn, tf
    if kind == CYL_K:
        r = 0.5 * (hi[0] - lo[0])
        ox, oz = o[0] - 0.5 * (lo[0] + hi[0]), o[2] - 0.5 * (lo[2] + hi[2])
        qa = d[0] * d[0] + d[2] * d[2]
        qb = ox * d[0] + oz * d[2]
        disc = qb * qb - qa * F32(ox * ox + oz * oz - r * r)
        sq = np.sqrt(np.maximum(disc, 0.0))
        iqa = 1.0 / np.maximum(qa, F32(1e-12))
        tn, tf = (-qb - sq) * iqa, (-qb + sq) * iqa
        a = (lo[1] - o[1]) * inv[1]
        c = (hi[1] - o[1]) * inv[1]
        np.maximum(tn, np.minimum(a, c), out=tn)
        np.minimum(tf, np.maximum(a, c), out=tf)
        tf[disc <= 0] = -1.0
        return tn, tf
    # sphere
    r = 0.5 * (hi[0] - lo[0])
    oc = (o[0] - 0.5 * (lo[0] + hi[0]), o[1] - 0.5 * (lo[1] + hi[1]), o[2] - 0.5 * (lo[2] + hi[2]))
    qa = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    qb = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
    disc = qb * qb - qa * F32(oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - r * r)
    sq = np.sqrt(np.maximum(disc, 0.0))
    iqa = 1.0 / qa
    tn, tf = (-qb - sq) * iqa, (-qb + sq) * iqa
    tf[disc <= 0] = -1.0
    return tn, tf


_GAMMA_LUT = (np.arange(65536, dtype=np.float64) / 65535.0) ** (1 / 2.2)
_GAMMA_LUT = _GAMMA_LUT.astype(F32)

_RAY_CACHE: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}


def _camera_rays(size: int, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame pixel offsets x' = (col + 0.5 - size/2) / f and y' = -(row + 0.5 - size/2) / f,
    each (size, size) float32; the camera-frame ray is (x', y', -1), so the ray parameter equals z-depth."""
    key = (size, round(focal, 6))
    if key not in _RAY_CACHE:
        c = (np.arange(size, dtype=F32) + F32(0.5) - F32(size / 2)) / F32(focal)
        xs = np.broadcast_to(c[None, :], (size, size)).astype(F32)
        ys = np.broadcast_to(-c[:, None], (size, size)).astype(F32)
        _RAY_CACHE[key] = (xs, ys)
    return _RAY_CACHE[key]


def _screen_rect(lo, hi, cam: Camera, focal: float, size: int):
    """Pixel rectangle (r0, r1, c0, c1) covering the projection of the AABB [lo, hi]; the whole image
    when a corner is near or behind the camera; None when the box is entirely off screen."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])],
                       dtype=F32)
    pc = (corners - cam.position) @ cam.rot  # camera frame, (8, 3)
    zd = -pc[:, 2]
    if np.all(zd < 0.05):
        return None
    if np.any(zd < 0.05):
        return 0, size, 0, size
    col = size / 2 + focal * pc[:, 0] / zd
    row = size / 2 - focal * pc[:, 1] / zd
    c0, c1 = int(np.floor(col.min())) - 1, int(np.ceil(col.max())) + 1
    r0, r1 = int(np.floor(row.min())) - 1, int(np.ceil(row.max())) + 1
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, size), min(r1, size)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _value_noise(u: np.ndarray, v: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Bilinear value noise with smoothstep fade on a wrapping lattice; u, v: (N,) -> (N,) in [0, 1]."""
    n = lattice.shape[0]  # a power of two, so "& (n - 1)" wraps (negative indices included)
    flat = lattice.ravel()
    fu, fv = np.floor(u), np.floor(v)
    su, sv = u - fu, v - fv
    su = su * su * (3 - 2 * su)
    sv = sv * sv * (3 - 2 * sv)
    i0 = (fu.astype(np.int32) & (n - 1)) * n
    j0 = fv.astype(np.int32) & (n - 1)
    i1, j1 = (i0 + n) & (n * n - 1), (j0 + 1) & (n - 1)
    l00, l10, l01, l11 = flat[i0 + j0], flat[i1 + j0], flat[i0 + j1], flat[i1 + j1]
    a = l00 + (l10 - l00) * su
    c = l01 + (l11 - l01) * su
    return a + (c - a) * sv


def _pattern(ttype: int, u, v, freq, orient, off, lattice) -> np.ndarray:
    """Blend weight in [0, 1] between a material's two colours; all inputs (N,) (off: (N, 2))."""
    s = np.where(orient == 0, u, v)
    if ttype == T_CHECKER:
        return ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(F32)
    if ttype == T_STRIPES:
        return np.clip(F32(0.5) + F32(1.5) * np.sin(F32(2 * np.pi) * freq * s), 0, 1)
    if ttype == T_NOISE:
        uu, vv = u * freq + off[:, 0], v * freq + off[:, 1]
        return F32(0.65) * _value_noise(uu, vv, lattice) + F32(0.35) * _value_noise(2.1 * uu, 2.1 * vv, lattice)
    if ttype == T_WOOD:
        t = np.where(orient == 0, v, u)
        wob = _value_noise(s * 1.5 + off[:, 0], t * 6.0 + off[:, 1], lattice)
        ring = freq * (s + 0.25 * wob)
        return np.abs(np.sin(F32(np.pi) * ring)) ** 3
    if ttype == T_BANDS:  # one random value per band (book spines)
        n = lattice.shape[0]
        idx = np.floor(s * freq).astype(np.int64)
        return lattice[idx % n, off[:, 1].astype(np.int64) % n]
    return np.zeros_like(u)


def _shift_max_abs_diff(a: np.ndarray) -> np.ndarray:
    """max over the 4-neighbours of |a - a_nb| for an (H, W) array (edge-replicated)."""
    p = np.pad(a, 1, mode="edge")
    c = p[1:-1, 1:-1]
    out = np.abs(c - p[:-2, 1:-1])
    np.maximum(out, np.abs(c - p[2:, 1:-1]), out=out)
    np.maximum(out, np.abs(c - p[1:-1, :-2]), out=out)
    np.maximum(out, np.abs(c - p[1:-1, 2:]), out=out)
    return out


def _sobel_mag(a: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of an (H, W) image, kernels normalised by 1/8 (units per pixel)."""
    p = np.pad(a, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:] - p[:-2, :-2] - 2 * p[1:-1, :-2] - p[2:, :-2]) * F32(0.125)
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:] - p[:-2, :-2] - 2 * p[:-2, 1:-1] - p[:-2, 2:]) * F32(0.125)
    return np.sqrt(gx * gx + gy * gy)


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box blur of an (H, W) array (edge-replicated)."""
    p = np.pad(a, 1, mode="edge")
    s = p[:-2] + p[1:-1] + p[2:]
    return (s[:, :-2] + s[:, 1:-1] + s[:, 2:]) * F32(1.0 / 9.0)


def render(scene: Scene, cam: Camera, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Render every modality of ``scene`` seen from ``cam`` at ``size`` x ``size`` pixels.

    ``rng`` drives only the sensor simulation (depth noise, holes, RGB noise, void gaps).
    Returns the dictionary documented in :func:`render_scene`.
    """
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size: expected an int >= 8 (pixels per side), got {size!r}")
    size = int(size)
    focal = cam.focal(size)
    xs, ys = _camera_rays(size, focal)
    R = cam.rot
    o = tuple(float(x) for x in cam.position)
    # world ray directions with unit forward component: t == z-depth
    d = tuple((R[i, 0] * xs + R[i, 1] * ys - R[i, 2]).astype(F32) for i in range(3))
    tiny = F32(1e-12)
    inv = tuple(F32(1.0) / np.where(np.abs(di) < tiny, tiny, di) for di in d)
    K = scene.n_prims

    # --- primary visibility: room shell first (exit of the inside box), then every primitive ----
    room = scene.room
    tb = None
    for ax in range(3):
        ta = (np.where(d[ax] > 0, room[ax], F32(0.0)) - F32(o[ax])) * inv[ax]
        tb = ta if tb is None else np.minimum(tb, ta)
    pid = np.full((size, size), K, np.int32)  # K = room shell
    for k in range(K):
        rect = _screen_rect(scene.lo[k], scene.hi[k], cam, focal, size)
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        sl = (slice(r0, r1), slice(c0, c1))
        tn, tf = _interval(int(scene.kinds[k]), scene.lo[k], scene.hi[k], o,
                           (d[0][sl], d[1][sl], d[2][sl]), (inv[0][sl], inv[1][sl], inv[2][sl]))
        tbs = tb[sl]
        hit = (tn < tf) & (tn > 0.02) & (tn < tbs)
        tbs[hit] = tn[hit]
        pid[sl][hit] = k

    z = tb.astype(F32)  # z-depth, metres
    P = [F32(o[i]) + z * d[i] for i in range(3)]

    # --- per-pixel geometry: normals (world), face codes, curvature --------------------------------
    lo_all = np.concatenate([scene.lo, np.zeros((1, 3), F32)])
    hi_all = np.concatenate([scene.hi, room[None, :]])
    kind_all = np.concatenate([scene.kinds, np.array([BOX_K], np.int32)])
    c_all = 0.5 * (lo_all + hi_all)
    h_all = 0.5 * (hi_all - lo_all)
    kind = kind_all[pid]
    cen = [c_all[:, i][pid] for i in range(3)]
    half = [h_all[:, i][pid] for i in range(3)]
    rel = [P[i] - cen[i] for i in range(3)]
    # box-like (boxes and room): the face is the axis whose plane is nearest to the point
    dist = np.stack([half[i] - np.abs(rel[i]) for i in range(3)])
    axis = np.argmin(np.abs(dist), axis=0)
    rel_ax = np.choose(axis, rel)
    side = (rel_ax > 0).astype(np.int32)
    code = axis * 2 + side
    is_room = pid == K
    sgn = np.where(side == 1, F32(1.0), F32(-1.0))
    sgn = np.where(is_room, -sgn, sgn)  # room normals point inwards
    n = [np.where(axis == i, sgn, F32(0.0)) for i in range(3)]
    # cylinders: side or cap (nearest surface in metres)
    cyl = kind == CYL_K
    sph = kind == SPH_K
    curv = np.zeros((2, size, size), F32)
    if cyl.any():
        ii = np.flatnonzero(cyl)
        rx, rz, ry = rel[0].flat[ii], rel[2].flat[ii], rel[1].flat[ii]
        r = half[0].flat[ii]
        rho = np.sqrt(rx * rx + rz * rz)
        cap = (half[1].flat[ii] - np.abs(ry)) < (r - rho)
        inv_rho = 1.0 / np.maximum(rho, F32(1e-6))
        n[0].flat[ii] = np.where(cap, 0.0, rx * inv_rho)
        n[1].flat[ii] = np.where(cap, np.sign(ry), 0.0)
        n[2].flat[ii] = np.where(cap, 0.0, rz * inv_rho)
        code.flat[ii] = np.where(cap, 2 + (ry > 0), -1)
        curv[0].flat[ii] = np.where(cap, 0.0, 1.0 / r)
    if sph.any():
        ii = np.flatnonzero(sph)
        r = half[0].flat[ii]
        for i in range(3):
            n[i].flat[ii] = rel[i].flat[ii] / r
        code.flat[ii] = -1
        curv[0].flat[ii] = 1.0 / r
        curv[1].flat[ii] = 1.0 / r
    nn = np.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    n = [ni / nn for ni in n]

    # --- labels, instances, materials (+ flush decals) --------------------------------------------
    face_of_room = np.where(is_room, code, 0)
    labels = np.where(is_room, scene.room_face_label[face_of_room],
                      np.append(scene.labels, 0)[pid]).astype(np.int32)
    inst = np.where(is_room, scene.room_face_inst[face_of_room], np.append(scene.instances, 0)[pid])
    mat = np.where(is_room, scene.room_face_mat[face_of_room], np.append(scene.materials, 0)[pid])
    dom = np.argmax(np.stack([np.abs(n[0]), np.abs(n[1]), np.abs(n[2])]), axis=0)
    # texture coordinates: the two world axes orthogonal to the dominant normal axis (UV_AXES)
    u = np.choose(dom, [P[UV_AXES[0][0]], P[UV_AXES[1][0]], P[UV_AXES[2][0]]])
    v = np.choose(dom, [P[UV_AXES[0][1]], P[UV_AXES[1][1]], P[UV_AXES[2][1]]])
    for dc in scene.decals:
        host = K if dc["host"] < 0 else dc["host"]
        u0, u1, v0, v1 = dc["rect"]
        m = (pid == host) & (code == dc["code"]) & (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
        labels[m] = dc["label"]
        inst[m] = dc["instance"]
        mat[m] = dc["material"]

    # --- albedo from procedural textures --------------------------------------------------------
    mtype = scene.mat_type[mat]
    weight = np.zeros((size, size), F32)
    for t in np.unique(mtype):
        if t == T_PLAIN:
            continue
        ii = np.flatnonzero(mtype == t)
        mm = mat.flat[ii]
        weight.flat[ii] = _pattern(int(t), u.flat[ii], v.flat[ii], scene.mat_freq[mm], scene.mat_orient[mm],
                                   scene.mat_offset[mm], scene.noise)
    ca, cb = scene.mat_col_a[mat], scene.mat_col_b[mat]  # (H, W, 3)
    albedo = (ca + (cb - ca) * weight[..., None]).astype(F32)

    # --- lighting --------------------------------------------------------------------------------
    dn = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    view = [-d[i] / dn for i in range(3)]  # unit vector towards the camera
    spec_k = scene.mat_spec[mat]
    glossy = bool(spec_k.any())
    diffuse = np.full((size, size, 3), scene.ambient, F32)
    specular = np.zeros((size, size), F32)
    # bounding spheres of the primitives, for culling shadow rays
    b_cen = 0.5 * (scene.lo + scene.hi)
    b_rad = np.linalg.norm(0.5 * (scene.hi - scene.lo), axis=1)
    for li in range(scene.lights.shape[0]):
        L = scene.lights[li]
        lv = [F32(L[i]) - P[i] for i in range(3)]
        dist2 = lv[0] * lv[0] + lv[1] * lv[1] + lv[2] * lv[2]
        idist = F32(1.0) / np.sqrt(dist2)
        ndl = (n[0] * lv[0] + n[1] * lv[1] + n[2] * lv[2]) * idist
        lit = np.flatnonzero(ndl > 0)
        # hard shadows: rays from the light to each lit point (shared origin, t = 1 at the point);
        # a point is shadowed when any primitive is entered before it
        sd = tuple(-lv[i].flat[lit] for i in range(3))
        sinv = tuple(F32(1.0) / np.where(np.abs(x) < tiny, tiny, x) for x in sd)
        s_len = F32(1.0) / idist.flat[lit]
        s_dir = tuple(x * idist.flat[lit] for x in sd)
        blocked = np.zeros(lit.shape[0], bool)
        Lt = tuple(float(x) for x in L)
        for k in range(K):
            if scene.labels[k] == LAMP and scene.lo[k][1] > L[1]:  # the fixture above this light
                continue
            # cull: only rays inside the cone from the light around the primitive's bounding sphere
            cl = b_cen[k] - L
            dc = float(np.linalg.norm(cl))
            if dc > b_rad[k]:
                cos_t = np.sqrt(1.0 - (b_rad[k] / dc) ** 2)
                cand = np.flatnonzero(((s_dir[0] * F32(cl[0] / dc) + s_dir[1] * F32(cl[1] / dc)
                                        + s_dir[2] * F32(cl[2] / dc)) > cos_t) & (s_len > dc - b_rad[k]))
                if cand.size == 0:
                    continue
            else:
                cand = np.arange(lit.shape[0])
            tn, tf = _interval(int(scene.kinds[k]), scene.lo[k], scene.hi[k], Lt,
                               tuple(x[cand] for x in sd), tuple(x[cand] for x in sinv))
            blocked[cand] |= (tn < tf) & (tn < 0.999) & (tf > 1e-4)
        vis = np.zeros((size, size), F32)
        vis.flat[lit] = (~blocked).astype(F32)
        atten = F32(6.0) / (F32(3.0) + dist2)  # softened inverse square
        irr = np.maximum(ndl, F32(0.0)) * vis * atten
        diffuse += irr[..., None] * scene.light_rgb[li]
        if glossy:  # Blinn-Phong highlight (exponent 24) on glossy materials
            hv = [lv[i] * idist + view[i] for i in range(3)]
            hn = np.sqrt(hv[0] * hv[0] + hv[1] * hv[1] + hv[2] * hv[2]) + F32(1e-6)
            ndh = np.maximum((n[0] * hv[0] + n[1] * hv[1] + n[2] * hv[2]) / hn, F32(0.0))
            p8 = ndh * ndh
            p8 *= p8
            p8 *= p8
            specular += spec_k * (p8 * p8 * p8) * vis * atten * F32(scene.light_rgb[li].mean())
    emit = scene.mat_emit[mat][..., None] * albedo
    linear = albedo * diffuse + specular[..., None] + emit
    # auto exposure: mean luminance to ~0.25 linear, then sRGB-like gamma 1/2.2 through a 16-bit LUT
    exposure = F32(0.25) / max(float(linear.mean()), 1e-3)
    q = (np.clip(linear * exposure, F32(0.0), F32(1.0)) * F32(65535.0) + F32(0.5)).astype(np.uint16)
    img = _GAMMA_LUT[q]
    img += rng.standard_normal(img.shape, dtype=F32) * F32(1.2 / 255.0)
    rgb = np.clip(img * F32(255.0) + F32(0.5), 0, 255).astype(np.uint8)

    # --- canonical reshading: albedo 1, point light 0.5 m above the camera, no shadows ------------
    Lc = cam.position + 0.5 * R[:, 1]
    lv = [F32(Lc[i]) - P[i] for i in range(3)]
    dist2 = lv[0] ** 2 + lv[1] ** 2 + lv[2] ** 2
    ndl = (n[0] * lv[0] + n[1] * lv[1] + n[2] * lv[2]) / np.sqrt(dist2)
    reshading = np.clip(F32(0.08) + F32(0.92) * np.maximum(ndl, 0.0) * (F32(10.0) / (F32(9.0) + dist2)), 0, 1)

    # --- camera-frame normals (OpenGL: x right, y up, z towards the viewer) ------------------------
    n_cam = np.stack([R[0, j] * n[0] + R[1, j] * n[1] + R[2, j] * n[2] for j in range(3)], axis=-1).astype(F32)
    depth_euclid = (z * dn).astype(F32)

    # --- edges ---------------------------------------------------------------------------------
    grey = albedo @ np.array([0.299, 0.587, 0.114], F32)
    edge_texture = _sobel_mag(grey)
    jump = _shift_max_abs_diff(z)
    crease = np.maximum.reduce([_shift_max_abs_diff(n_cam[..., j]) for j in range(3)])
    edge_occ = _box3(np.maximum(jump / z - F32(0.03), 0.0) + F32(0.5) * np.minimum(crease, 1.0))

    # --- Kinect-like sensor depth ---------------------------------------------------------------
    sigma = F32(0.0012) + F32(0.0019) * (z - F32(0.4)) ** 2
    zn = z + rng.standard_normal(z.shape, dtype=F32) * sigma
    disp = np.round(F32(KINECT_FB * KINECT_SUBPIXEL) / np.maximum(zn, F32(0.3)))
    depth = (F32(KINECT_FB * KINECT_SUBPIXEL) / np.maximum(disp, 1.0)).astype(F32)
    u_rand = rng.random(z.shape, dtype=F32)
    cos_inc = np.abs(n[0] * view[0] + n[1] * view[1] + n[2] * view[2])
    holes = cos_inc < F32(0.08) + F32(0.12) * u_rand                               # grazing angles
    holes |= (z - F32(scene.max_range)) > u_rand                                   # far range
    holes |= z < F32(0.45)                                                         # below minimum range
    holes |= (jump > F32(0.04) * z) & (u_rand < 0.5)                              # object edges
    holes |= u_rand > F32(0.997)                                                   # speckle
    # projector shadow: background pixels just left of a nearer surface lose the IR pattern
    fb_img = F32(0.075) * F32(focal)
    for s in range(1, 4):
        gap = z[:, :-s] - z[:, s:]
        width = F32(0.5) * fb_img * (1.0 / z[:, s:] - 1.0 / z[:, :-s])
        holes[:, :-s] |= (gap > F32(0.05) * z[:, :-s]) & (width >= s)
    depth[holes] = 0.0

    # --- annotator gaps (void) on some scenes -----------------------------------------------------
    labels8 = labels.astype(np.uint8)
    if scene.void_boundary:
        bnd = _shift_max_abs_diff(inst.astype(F32)) > 0
        labels8[bnd & (rng.uniform(size=bnd.shape) < 0.5)] = NYU_IGNORE_INDEX

    return {
        "rgb": rgb,
        "depth": depth,
        "depth_clean": z,
        "depth_euclidean": depth_euclid,
        "normal": n_cam,
        "reshading": reshading.astype(F32),
        "albedo": albedo,
        "edge_texture": edge_texture.astype(F32),
        "edge_occlusion": edge_occ.astype(F32),
        "principal_curvature": np.moveaxis(curv, 0, -1).copy(),
        "labels": labels8,
        "instance": inst.astype(np.uint16),
    }


def render_scene(seed: int | np.random.Generator, size: int = 128) -> dict[str, np.ndarray]:
    """Sample a room and a camera from ``seed`` and render all modalities at ``size`` x ``size``.

    Same ``seed`` (int) -> bit-identical output. Returned arrays (H = W = size):

    * ``rgb`` (H, W, 3) uint8 - shaded, shadowed, auto-exposed, gamma-encoded colour image.
    * ``depth`` (H, W) float32 metres - Kinect-like sensor depth (noise, 1/8-px disparity quantisation),
      0 = missing (grazing angles, projector shadow, edges, closer than 0.45 m, far range, speckle).
    * ``depth_clean`` (H, W) float32 metres - exact z-depth (along the optical axis), always > 0.
    * ``depth_euclidean`` (H, W) float32 metres - exact ray length; ``depth_clean / depth_euclidean``
      is the cosine of the pixel ray's angle to the optical axis.
    * ``normal`` (H, W, 3) float32 - unit surface normals in the OpenGL camera frame (x right, y up,
      z towards the viewer), so visible surfaces mostly have z > 0.
    * ``reshading`` (H, W) float32 in [0, 1] - same geometry, albedo 1, canonical point light 0.5 m
      above the camera, no shadows.
    * ``albedo`` (H, W, 3) float32 in [0, 1] - procedural texture colour (linear).
    * ``edge_texture`` (H, W) float32 >= 0 - Sobel magnitude (per pixel, kernels / 8) of albedo luma.
    * ``edge_occlusion`` (H, W) float32 >= 0 - 3x3-blurred relative depth jumps (|dz|/z - 0.03)+ plus
      half the normal change across 4-neighbours.
    * ``principal_curvature`` (H, W, 2) float32 1/m - (k1, k2), k1 >= k2 >= 0: (1/r, 1/r) on spheres,
      (1/r, 0) on cylinder sides, 0 on planes (boxes, caps, room).
    * ``labels`` (H, W) uint8 - NYU-40 ids 0..39 (see :data:`USED_CLASS_IDS`), 255 = void (ragged
      annotator gaps along instance boundaries in about 30 % of scenes).
    * ``instance`` (H, W) uint16 - instance ids (room faces 1..6, objects and decals >= 7).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    scene = sample_scene(rng)
    cam = sample_camera(scene, rng)
    return render(scene, cam, size, rng)

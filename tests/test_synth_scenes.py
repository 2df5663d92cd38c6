"""Procedural scene renderer (mango_lite.datasets.synth.scenes) and the dataset writers built on it.

Independent references: camera geometry recomputed from the 60 degree field of view; floor plane fitted
with an SVD to back-projected depth; sphere curvature from the scene's own radius; matplotlib's real
``plt.imsave(cmap='Greys_r')`` for the SUN depth PNGs; scikit-learn's KMeans for the k-means helper.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mango_lite.datasets.constants import NYU40_CLASSES, TASKONOMY_DOMAINS
from mango_lite.datasets.synth import scenes as S, writers as Wr
from mango_lite.errors import DataError

SIZE = 48
KEYS = {
    "rgb": ((SIZE, SIZE, 3), np.uint8),
    "depth": ((SIZE, SIZE), np.float32),
    "depth_clean": ((SIZE, SIZE), np.float32),
    "depth_euclidean": ((SIZE, SIZE), np.float32),
    "normal": ((SIZE, SIZE, 3), np.float32),
    "reshading": ((SIZE, SIZE), np.float32),
    "albedo": ((SIZE, SIZE, 3), np.float32),
    "edge_texture": ((SIZE, SIZE), np.float32),
    "edge_occlusion": ((SIZE, SIZE), np.float32),
    "principal_curvature": ((SIZE, SIZE, 2), np.float32),
    "labels": ((SIZE, SIZE), np.uint8),
    "instance": ((SIZE, SIZE), np.uint16),
}


def _render(seed: int, size: int = SIZE):
    rng = np.random.default_rng(seed)
    scene = S.sample_scene(rng)
    cam = S.sample_camera(scene, rng)
    return scene, cam, S.render(scene, cam, size, rng)


@pytest.fixture(scope="module")
def batch():
    return [_render(s) for s in range(12)]


def _camera_xy(size: int, fov_deg: float = 60.0):
    f = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    c = (np.arange(size) + 0.5 - size / 2) / f
    return np.meshgrid(c, -c)  # x' (cols), y' (rows, up positive)


# ------------------------------------------------------------------------------------------ renderer
def test_deterministic_per_seed_and_seed_sensitive():
    a, b, c = S.render_scene(5, 40), S.render_scene(5, 40), S.render_scene(6, 40)
    assert set(a) == set(KEYS)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["rgb"], c["rgb"]) and not np.array_equal(a["depth_clean"], c["depth_clean"])
    # a Generator is accepted and behaves like the int seed
    g = S.render_scene(np.random.default_rng(5), 40)
    np.testing.assert_array_equal(g["labels"], a["labels"])


def test_shapes_dtypes_ranges(batch):
    for _, _, out in batch:
        for k, (shape, dtype) in KEYS.items():
            assert out[k].shape == shape and out[k].dtype == dtype, k
            if out[k].dtype.kind == "f":
                assert np.isfinite(out[k]).all(), k
        assert (out["depth"] >= 0).all()
        assert (out["reshading"] >= 0).all() and (out["reshading"] <= 1).all()
        assert (out["albedo"] >= 0).all() and (out["albedo"] <= 1).all()
        assert (out["edge_texture"] >= 0).all() and (out["edge_occlusion"] >= 0).all()
        k1, k2 = out["principal_curvature"][..., 0], out["principal_curvature"][..., 1]
        assert (k2 >= 0).all() and (k1 >= k2).all()
        assert out["rgb"].std() > 5  # not a blank image


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="size"):
        S.render_scene(0, 4)


def test_normals_unit_and_facing_the_camera(batch):
    xs, ys = _camera_xy(SIZE)
    ray = np.stack([xs, ys, -np.ones_like(xs)], -1)  # camera-frame rays (OpenGL)
    for _, _, out in batch:
        n = out["normal"].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-4)
        facing = (n * ray).sum(-1) <= 1e-3  # visible surfaces face against the viewing ray
        assert facing.mean() > 0.995


def test_depth_clean_positive_and_consistent_with_euclidean(batch):
    xs, ys = _camera_xy(SIZE)
    cos = 1.0 / np.sqrt(xs**2 + ys**2 + 1.0)
    for _, _, out in batch:
        z, r = out["depth_clean"], out["depth_euclidean"]
        assert (z > 0.02).all() and (z < 12).all()
        np.testing.assert_allclose(z / r, cos, rtol=1e-5)


def test_floor_is_a_plane_matching_the_normal_map(batch):
    """Back-project the floor pixels with the 60 degree pinhole model, fit a plane by SVD, and compare
    the plane normal with the rendered normals there (independent of the renderer's normal code)."""
    xs, ys = _camera_xy(SIZE)
    checked = 0
    for _, cam, out in batch:
        # the room floor is instance 3; floor mats are flush decals on it
        floor = (out["instance"] == 3) | (out["labels"] == NYU40_CLASSES.index("floor mat"))
        if floor.sum() < 50:
            continue
        z = out["depth_clean"].astype(np.float64)
        pts = np.stack([xs * z, ys * z, -z], -1)[floor]
        centred = pts - pts.mean(0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        normal = vt[-1] * np.sign(vt[-1] @ out["normal"][floor].mean(0))
        assert sv[-1] / np.sqrt(len(pts)) < 1e-3  # planar to < 1 mm rms
        np.testing.assert_allclose(out["normal"][floor], np.broadcast_to(normal, (floor.sum(), 3)), atol=1e-3)
        # and the floor normal is the world up vector seen from the camera
        np.testing.assert_allclose(normal, cam.rot.T @ np.array([0.0, 1.0, 0.0]), atol=1e-3)
        checked += 1
    assert checked >= 6


def test_labels_legal_and_varied(batch):
    legal = set(S.USED_CLASS_IDS) | {255}
    seen: set[int] = set()
    for _, _, out in batch:
        u = set(np.unique(out["labels"]).tolist())
        assert u <= legal, u - legal
        seen |= u
    assert len(seen - {255}) >= 12
    assert {NYU40_CLASSES.index(c) for c in ("wall", "floor")} <= seen
    assert len(S.USED_CLASS_IDS) >= 12 and max(S.USED_CLASS_IDS) <= 39


def test_sensor_depth_has_holes_and_follows_clean_depth(batch):
    hole_fracs = []
    for _, _, out in batch:
        d, z = out["depth"], out["depth_clean"]
        valid = d > 0
        hole_fracs.append(1 - valid.mean())
        # noise model: sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2, plus 1/8-pixel disparity quantisation
        sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2
        quant = z**2 / (S.KINECT_FB * S.KINECT_SUBPIXEL)
        err = np.abs(d - z)[valid]
        assert (err <= 6 * sigma[valid] + quant[valid] + 1e-4).mean() > 0.999
        assert err.mean() > 0  # it is noisy, not a copy
    assert np.mean([h > 0 for h in hole_fracs]) >= 0.9
    assert 0.001 < np.mean(hole_fracs) < 0.25


def test_sphere_curvature_is_inverse_radius():
    found = 0
    for seed in range(60):
        scene, _, out = _render(seed, 64)
        for k in np.flatnonzero(scene.kinds == S.SPH_K):
            m = out["instance"] == scene.instances[k]
            m &= out["labels"] == scene.labels[k]
            if m.sum() < 3:
                continue
            r = 0.5 * (scene.hi[k][0] - scene.lo[k][0])
            np.testing.assert_allclose(out["principal_curvature"][m], 1.0 / r, rtol=1e-5)
            found += 1
        if found:
            break
    assert found, "no visible sphere in 60 scenes"
    # planes (walls, floor, ceiling: instances 1..6) have zero curvature
    _, _, out = _render(0)
    assert (out["principal_curvature"][out["instance"] <= 6] == 0).all()


def _adjacent_pairs(out):
    """All ordered 4-neighbour pairs (p, q) with different labels, neither void. Returns arrays over the
    pairs: instance of p, label of q, max-channel |rgb_p - rgb_q|, |z_p - z_q| and a planarity residual.
    For a plane, inverse depth is affine in pixel coordinates, so the second differences of 1/z over the
    four pixels (before p, p, q, after q) vanish exactly when p and q lie on one plane."""
    res = []
    for t in (lambda a: a, lambda a: np.swapaxes(a, 0, 1)):  # horizontal, then vertical neighbours
        L, inst, C = t(out["labels"].astype(int)), t(out["instance"].astype(int)), t(out["rgb"].astype(int))
        iz = 1.0 / t(out["depth_clean"].astype(np.float64))
        planar = (np.abs(iz[:, 2:-1] - 2 * iz[:, 1:-2] + iz[:, :-3])
                  + np.abs(iz[:, 3:] - 2 * iz[:, 2:-1] + iz[:, 1:-2])) / iz[:, 1:-2]
        Z = 1.0 / iz
        for p, q in ((slice(1, -2), slice(2, -1)), (slice(2, -1), slice(1, -2))):
            diff = (L[:, p] != L[:, q]) & (L[:, p] != 255) & (L[:, q] != 255)
            res.append((inst[:, p][diff], L[:, q][diff], np.abs(C[:, p] - C[:, q]).max(-1)[diff],
                        np.abs(Z[:, p] - Z[:, q])[diff], planar[diff]))
    return [np.concatenate(x) for x in zip(*res)]


def test_fusion_cases_occur(batch):
    """RGB-ambiguous/depth-distinct and depth-ambiguous/RGB-distinct class boundaries both exist.

    RGB-ambiguous: along real occlusion boundaries (depth step > 10 cm) between a camouflaged cabinet/box
    and the wall/floor, colours differ far less than along the same boundaries of ordinary cabinets/boxes.
    Depth-ambiguous: a flush decal and its host lie on one plane across the boundary, yet differ in colour.
    """
    wall_floor = [NYU40_CLASSES.index("wall"), NYU40_CLASSES.index("floor")]
    box_like = (NYU40_CLASSES.index("cabinet"), NYU40_CLASSES.index("box"))
    camo, plain = [], []
    rgb_amb_scenes = depth_amb_scenes = 0
    for scene, _, out in batch:
        inst, lab_q, drgb, dz, planar = _adjacent_pairs(out)
        occl = np.isin(lab_q, wall_floor) & (dz > 0.1)
        is_camo = occl & np.isin(inst, scene.fusion["rgb_ambiguous"])
        ordinary = [i for i, lab in scene.instance_labels.items()
                    if lab in box_like and i not in scene.fusion["rgb_ambiguous"]]
        camo.append(drgb[is_camo])
        plain.append(drgb[occl & np.isin(inst, ordinary)])
        rgb_amb_scenes += bool(is_camo.any())
        is_decal = np.isin(inst, scene.fusion["depth_ambiguous"])
        if (is_decal & (planar < 1e-4) & (drgb >= 40)).any():
            depth_amb_scenes += 1
        visible = set(np.unique(out["instance"]).tolist())
        assert set(scene.fusion) == set(S.FUSION_CASE_CLASSES)
        for case, classes in S.FUSION_CASE_CLASSES.items():  # the class lists notebooks score per fusion case
            for i in set(scene.fusion[case]) & visible:
                assert NYU40_CLASSES[scene.instance_labels[i]] in classes, (case, NYU40_CLASSES[scene.instance_labels[i]])
        for i in set(scene.fusion["depth_ambiguous"]) & visible:
            assert (out["principal_curvature"][out["instance"] == i] == 0).all()  # flat, on a flat host
    camo, plain = np.concatenate(camo), np.concatenate(plain)
    assert rgb_amb_scenes >= 4 and camo.size >= 30 and plain.size >= 30, (rgb_amb_scenes, camo.size, plain.size)
    assert np.median(camo) <= 0.6 * np.median(plain), (np.median(camo), np.median(plain))
    assert np.mean(camo <= 10) >= 0.2 and np.mean(camo <= 10) >= 5 * np.mean(plain <= 10)
    assert depth_amb_scenes >= 6, depth_amb_scenes


def test_camouflaged_objects_use_the_material_behind_them():
    """The camouflage bookkeeping: cabinets carry the wall material, boxes the floor material."""
    hits = 0
    for seed in range(30):
        scene, _, out = _render(seed, 64)
        for inst in scene.fusion["rgb_ambiguous"]:
            k = np.flatnonzero(scene.instances == inst)[0]
            host = scene.room_face_mat[0] if scene.labels[k] == NYU40_CLASSES.index("cabinet") \
                else scene.room_face_mat[2]
            assert scene.materials[k] == host
            hits += 1
    assert hits >= 15


# ------------------------------------------------------------------------------------------- writers
def test_split_counts():
    assert Wr.split_counts(1449, (795, 654)) == (795, 654)
    assert Wr.split_counts(10335, (5285, 5050)) == (5285, 5050)
    assert Wr.split_counts(1500, (1000, 500)) == (1000, 500)
    assert Wr.split_counts(2, (1000, 500)) == (1, 1)
    assert Wr.split_counts(3, (1, 1000)) == (1, 2)


def test_writer_argument_errors(tmp_path):
    with pytest.raises(DataError, match="n must be an int >= 2"):
        Wr.write_nyudv2(tmp_path / "a", 1, 16)
    with pytest.raises(DataError, match="size must be"):
        Wr.write_sunrgbd(tmp_path / "b", 4, 4)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        Wr.write_taskonomy(f, 3, 16)


def _read_lines(p: Path) -> list[list[str]]:
    text = p.read_text()
    assert text.endswith("\n")
    return [ln.split("\t") for ln in text.splitlines()]


def test_nyudv2_layout_and_values(tmp_path):
    root = Wr.write_nyudv2(tmp_path / "nyu", 5, 32, seed=3)
    tr, va = _read_lines(root / "train.txt"), _read_lines(root / "val.txt")
    assert (len(tr), len(va)) == (3, 2)
    ids = []
    for rgb, mask, depth in tr + va:
        stem = rgb[4:-4]
        assert len(stem) == 6 and stem.isdigit()
        assert (rgb, mask, depth) == (f"rgb/{stem}.png", f"masks/{stem}.png", f"depth/{stem}.png")
        ids.append(int(stem))
    assert sorted(ids) == [1, 2, 3, 4, 5]
    meta = json.loads((root / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["counts"] == {"train": 3, "val": 2} and meta["seed"] == 3
    for i in (1, 4):
        ref = S.render_scene(Wr._rng(3, "nyudv2", i), 32)
        im_rgb, im_d, im_m = (Image.open(root / f"{d}/{i:06d}.png") for d in ("rgb", "depth", "masks"))
        assert (im_rgb.mode, im_d.mode, im_m.mode) == ("RGB", "I;16", "L")
        np.testing.assert_array_equal(np.array(im_rgb), ref["rgb"])
        np.testing.assert_array_equal(np.array(im_m), ref["labels"])
        d = np.array(im_d)
        assert d.dtype == np.uint16
        np.testing.assert_allclose(d / 1000.0, ref["depth"], atol=5e-4)  # millimetres
        assert (d == 0).any() and set(np.unique(np.array(im_m)).tolist()) <= set(S.USED_CLASS_IDS) | {255}


def test_writers_deterministic(tmp_path):
    a = Wr.write_nyudv2(tmp_path / "a", 3, 24, seed=1)
    b = Wr.write_nyudv2(tmp_path / "b", 3, 24, seed=1)
    c = Wr.write_nyudv2(tmp_path / "c", 3, 24, seed=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 3 * 3 + 3
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "rgb/000001.png").read_bytes() != (c / "rgb/000001.png").read_bytes()
    assert not list(a.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_sun37_mapping_by_hand():
    nyu = np.array([0, 1, 36, 37, 38, 39, 255, 21], np.uint8)
    np.testing.assert_array_equal(Wr.nyu40_to_sun37(nyu), [1, 2, 37, 0, 0, 0, 0, 22])


def test_greys_r_matches_matplotlib_imsave():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    for depth in (S.render_scene(1, 32)["depth"], rng.uniform(0.3, 9.0, (20, 30)).astype(np.float32)):
        buf = io.BytesIO()
        plt.imsave(buf, depth, cmap="Greys_r", format="png")
        ref = np.array(Image.open(io.BytesIO(buf.getvalue())))
        np.testing.assert_array_equal(Wr.greys_r_png_rgba(depth), ref)


def test_sunrgbd_layout_and_values(tmp_path):
    root = Wr.write_sunrgbd(tmp_path / "sun", 4, 32, seed=0)
    tr, te = _read_lines(root / "train.txt"), _read_lines(root / "test.txt")
    assert [r[0] for r in tr] == ["RGB/train_0.jpg", "RGB/train_1.jpg"]
    assert te == [["RGB/test_0.jpg", "labels/test_0.png", "Depth/test_0.png"],
                  ["RGB/test_1.jpg", "labels/test_1.png", "Depth/test_1.png"]]
    ref = S.render_scene(Wr._rng(0, "sunrgbd", 2), 32)  # test_0 is sample 2
    rgb = Image.open(root / "RGB/test_0.jpg")
    assert rgb.format == "JPEG" and rgb.mode == "RGB"
    assert np.abs(np.array(rgb).astype(int) - ref["rgb"]).mean() < 6  # lossy but close
    lab = Image.open(root / "labels/test_0.png")
    assert lab.mode == "L"
    lab = np.array(lab)
    np.testing.assert_array_equal(lab, Wr.nyu40_to_sun37(ref["labels"]))
    assert lab.max() <= 37 and lab.min() >= 0
    dep = Image.open(root / "Depth/test_0.png")
    assert dep.mode == "RGBA"
    dep = np.array(dep)
    assert (dep[..., 0] == dep[..., 1]).all() and (dep[..., 0] == dep[..., 2]).all() and (dep[..., 3] == 255).all()
    # per-image normalised: holes (0 m) are black, the farthest reading is white
    assert dep[..., 0].max() == 255 and dep[..., 0].min() == 0
    assert (dep[..., 0][ref["depth"] == 0] == 0).all()
    assert json.loads((root / "meta.json").read_text())["counts"] == {"train": 2, "test": 2}


def test_taskonomy_layout_and_decoding(tmp_path):
    root = Wr.write_taskonomy(tmp_path / "task", 4, 32, seed=0)
    tr = (root / "train_domain.txt").read_text().splitlines()
    va = (root / "val_domain.txt").read_text().splitlines()
    assert (len(tr), len(va)) == (3, 1)
    refs = {(p, v): out for p, v, out, _ in Wr.iter_taskonomy_views(4, 32, 0)}
    assert len(refs) == 4
    names = [f"{{domain}}/point_{p}_view_{v}_domain_{{domain}}.png" for p, v in refs]
    assert tr + va == names
    modes = {"rgb": "RGB", "normal": "RGB", "principal_curvature": "RGB", "reshading": "L",
             "segment_unsup2d": "L", "segment_unsup25d": "L", "depth_euclidean": "I;16",
             "depth_zbuffer": "I;16", "edge_texture": "I;16", "edge_occlusion": "I;16"}
    assert set(modes) == set(TASKONOMY_DOMAINS)
    for (p, v), out in refs.items():
        arr = {}
        for dom in TASKONOMY_DOMAINS:
            path = root / dom / f"point_{p}_view_{v}_domain_{dom}.png"
            im = Image.open(path)
            assert im.mode == modes[dom], (dom, im.mode)
            arr[dom] = np.array(im)
        np.testing.assert_array_equal(arr["rgb"], out["rgb"])
        np.testing.assert_allclose(arr["depth_zbuffer"] / 512.0, out["depth_clean"], atol=1 / 1024 + 1e-6)
        np.testing.assert_allclose(arr["depth_euclidean"] / 512.0, out["depth_euclidean"], atol=1 / 1024 + 1e-6)
        np.testing.assert_allclose((arr["normal"] + 0.5) / 127.5 - 1.0, out["normal"], atol=1 / 127.5 + 1e-6)
        assert (arr["normal"][np.abs(out["normal"]) < 1e-3] == 127).all()  # 127-centred
        np.testing.assert_allclose(arr["reshading"] / 255.0, out["reshading"], atol=0.5 / 255 + 1e-6)
        curv = (arr["principal_curvature"][..., :2].astype(float) - 127) / 4.0
        ok = arr["principal_curvature"][..., :2] < 255
        np.testing.assert_allclose(curv[ok], out["principal_curvature"][ok], atol=0.125 + 1e-6)
        assert (arr["principal_curvature"][..., 2] == 127).all()
        np.testing.assert_allclose(arr["edge_texture"] / 40000.0, out["edge_texture"], atol=0.5 / 40000 + 1e-6)
        np.testing.assert_allclose(arr["edge_occlusion"] / 16000.0, out["edge_occlusion"],
                                   atol=0.5 / 16000 + 1e-6)
        for dom in ("segment_unsup2d", "segment_unsup25d"):
            ids, counts = np.unique(arr[dom], return_counts=True)
            assert ids.max() < Wr.KMEANS_K and len(ids) >= 3
            assert (np.diff(np.bincount(arr[dom].ravel(), minlength=Wr.KMEANS_K)) <= 0).all()  # size order


def test_kmeans_matches_sklearn_on_separated_clusters():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1, (4, 3)) * 10
    truth = rng.integers(0, 4, 900)
    x = centres[truth] + rng.normal(0, 0.05, (900, 3))
    ours = Wr.kmeans_labels(x.reshape(30, 30, 3), 4, np.random.default_rng(1)).ravel()
    ref = KMeans(4, n_init=4, random_state=0).fit_predict(x)
    assert adjusted_rand_score(ref, ours) == pytest.approx(1.0)
    assert adjusted_rand_score(truth, ours) == pytest.approx(1.0)

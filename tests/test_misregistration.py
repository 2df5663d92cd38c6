"""Misregistered stand-ins: the second modality seen from a camera a baseline b to the right."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mango_lite.datasets.synth import scenes as S, writers as W
from mango_lite.datasets.synth.misregistration import (
    disparity_px,
    hidden_from_first,
    median_disparity_px,
    render_scene_misregistered,
)
from mango_lite.errors import DataError


def test_zero_baseline_is_the_registered_render_bit_for_bit():
    for seed in (0, 3):
        ref, got = S.render_scene(seed, 32), render_scene_misregistered(seed, 32, 0.0)
        assert ref.keys() == got.keys()
        for k in ref:
            assert np.array_equal(ref[k], got[k]), k


def test_zero_baseline_writers_write_the_registered_files(tmp_path):
    W.write_nyudv2(tmp_path / "a", 4, 24, seed=1)
    W.write_nyudv2(tmp_path / "b", 4, 24, seed=1, baseline=0.0)
    for f in sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


@pytest.mark.parametrize("baseline", [0.1, 0.3])
def test_the_second_view_shows_each_point_shifted_by_f_b_over_z(baseline):
    """Pixel (r, c) of the first view with depth z is seen at (r, c - f b / z) in the second, at the same
    depth (the cameras differ by a translation along x): checked on the rendered geometry, not on the formula."""
    size = 48
    first = S.render_scene(4, size)
    both = render_scene_misregistered(4, size, baseline)
    z1, z2, f = first["depth_clean"], both["second_depth_clean"], float(both["focal_px"])
    assert f == pytest.approx(0.5 * size / np.tan(np.radians(30.0)), rel=1e-6)
    shift = disparity_px(z1, f, baseline)
    assert np.allclose(shift, f * baseline / z1)
    cols = np.rint(np.arange(size)[None, :] - shift).astype(int)
    inside = (cols >= 0) & (cols < size)
    rows = np.broadcast_to(np.arange(size)[:, None], z1.shape)
    rel = np.abs(z2[rows[inside], cols[inside]] - z1[inside]) / z1[inside]
    assert np.mean(rel < 0.03) > 0.9  # the rest: rounding at depth edges and points hidden from the second view
    # a wrong sign or scale of the shift does not match the geometry
    for wrong in (-shift, 2 * shift):
        c = np.rint(np.arange(size)[None, :] - wrong).astype(int)
        ok = (c >= 0) & (c < size)
        assert np.mean(np.abs(z2[rows[ok], c[ok]] - z1[ok]) / z1[ok] < 0.03) < np.mean(rel < 0.03) - 0.05
    # near points move more: the shift falls with depth
    assert shift[z1 < np.median(z1)].mean() > shift[z1 >= np.median(z1)].mean()


def test_points_hidden_from_the_first_camera_are_missing_depth():
    both = render_scene_misregistered(1, 48, 0.3)
    hidden = both["second_hidden"]
    assert hidden.any() and not hidden.all()
    assert np.all(both["depth"][hidden] == 0)
    # labels and RGB are the first camera's, unchanged
    first = S.render_scene(1, 48)
    assert np.array_equal(both["labels"], first["labels"]) and np.array_equal(both["rgb"], first["rgb"])
    assert not np.array_equal(both["depth"], first["depth"])


def test_hidden_from_first_on_a_step():
    """A near slab (z = 1) in front of a wall (z = 4): the second camera, to the right, sees wall points just
    right of the slab that the slab hides from the first camera."""
    f, b = 50.0, 0.2
    first = np.full((4, 40), 4.0)
    first[:, 10:20] = 1.0  # the slab, columns 10-19 in the first view
    second = np.full((4, 40), 4.0)
    second[:, 0:10] = 1.0  # the same slab, shifted by f b / z = 10 px
    hidden = hidden_from_first(second, first, f, b)
    # wall pixels c2 in 10..17 map to c1 = c2 + 2.5 -> 12.5..19.5, behind the slab
    assert hidden[0, 10:17].all() and not hidden[0, :10].any() and not hidden[0, 19:].any()


def test_writers_record_the_baseline_and_the_median_disparity(tmp_path):
    root = W.write_nyudv2(tmp_path / "nyu", 4, 32, seed=0, baseline=0.15)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["baseline_m"] == 0.15 and meta["misregistered"] == ["depth"]
    assert 0.5 < meta["median_disparity_px"] < 10
    reg = W.write_nyudv2(tmp_path / "reg", 4, 32, seed=0)
    assert "baseline_m" not in json.loads((reg / "meta.json").read_text())
    for sub in ("rgb", "masks"):
        assert np.array_equal(np.asarray(Image.open(root / sub / "000001.png")),
                              np.asarray(Image.open(reg / sub / "000001.png")))
    assert not np.array_equal(np.asarray(Image.open(root / "depth" / "000001.png")),
                              np.asarray(Image.open(reg / "depth" / "000001.png")))
    tk = W.write_taskonomy(tmp_path / "tk", 3, 24, seed=0, baseline=0.15)
    assert json.loads((tk / "meta.json").read_text())["misregistered"] == list(W.TASKONOMY_DISPLACED)


def test_median_disparity_scales_with_baseline_and_image_size():
    z = np.array([[1.0, 2.0, 0.0], [4.0, 2.0, 2.0]])
    d1 = median_disparity_px(z, 64, 0.1)
    assert median_disparity_px(z, 64, 0.2) == pytest.approx(2 * d1)
    assert median_disparity_px(z, 128, 0.1) == pytest.approx(2 * d1)
    assert d1 == pytest.approx(0.5 * 64 / np.tan(np.radians(30.0)) * 0.1 / 2.0)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "far"])
def test_a_bad_baseline_is_refused_by_name(tmp_path, bad):
    with pytest.raises(DataError, match="baseline must be a number of metres >= 0"):
        W.write_nyudv2(tmp_path, 2, 16, baseline=bad)

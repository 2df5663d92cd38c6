"""Randomised damage to dataset folders in the real layouts (hypothesis): whatever file is broken and
however, ``data verify`` and the loaders refuse it with a DataError that names the file, and write
nothing into the folder."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

from mango_lite.datasets import NYUDv2, verify_dataset  # noqa: E402
from mango_lite.errors import DataError  # noqa: E402
from tests.test_datasets import make_mmimdb_raw, make_nyu, make_sun, make_taskonomy  # noqa: E402

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
MAKERS = {"nyudv2": make_nyu, "sunrgbd": make_sun, "taskonomy": make_taskonomy, "mmimdb": make_mmimdb_raw}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(name: str, root: Path, broken: Path) -> None:
    """verify_dataset raises a DataError naming ``broken``; the folder is left exactly as it was."""
    before = _files(root)
    with pytest.raises(DataError) as err:
        verify_dataset(name, root)
    assert broken.name in str(err.value), str(err.value)
    assert _files(root) == before, "verify wrote into the dataset folder"


def _images(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg")]


@contextlib.contextmanager
def _fresh(name: str):
    """A freshly written ``name`` folder in the real layout, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        MAKERS[name](root)
        yield root


def _choose(paths, pick: int) -> Path:
    """The file ``pick`` selects among ``paths`` (in a fixed order)."""
    paths = sorted(paths)
    return paths[pick % len(paths)]


@SETTINGS
@given(name=st.sampled_from(["nyudv2", "sunrgbd", "taskonomy", "mmimdb"]), pick=st.integers(0, 10**6),
       frac=st.floats(0.0, 0.6))
def test_truncated_image_is_named(name, pick, frac):
    with _fresh(name) as root:
        victim = _choose(_images(root), pick)
        data = victim.read_bytes()
        victim.write_bytes(data[: int(len(data) * frac)])
        _refused(name, root, victim)


@SETTINGS
@given(name=st.sampled_from(["nyudv2", "sunrgbd"]), pick=st.integers(0, 10**6),
       value=st.integers(41, 254), where=st.tuples(st.integers(0, 11), st.integers(0, 15)))
def test_label_out_of_range_is_named(name, pick, value, where):
    with _fresh(name) as root:
        victim = _choose((root / ("masks" if name == "nyudv2" else "labels")).glob("*.png"), pick)
        lab = np.array(Image.open(victim))
        lab[where[0] % lab.shape[0], where[1] % lab.shape[1]] = value
        Image.fromarray(lab).save(victim)
        _refused(name, root, victim)


@SETTINGS
@given(pick=st.integers(0, 10**6), dh=st.integers(1, 5), dw=st.integers(0, 5))
def test_mismatched_depth_size_is_named(pick, dh, dw):
    with _fresh("nyudv2") as root:
        victim = _choose((root / "depth").glob("*.png"), pick)
        h, w = np.array(Image.open(victim)).shape
        Image.fromarray(np.zeros((h + dh, w + dw), np.uint16)).save(victim)
        _refused("nyudv2", root, victim)


@SETTINGS
@given(pick=st.integers(0, 10**6), dtype=st.sampled_from(["float", "rgb"]))
def test_wrong_bit_depth_mask_is_named(pick, dtype):
    """A label mask must be a single 8-bit channel: float (mode F) or RGB masks are refused."""
    with _fresh("nyudv2") as root:
        victim = _choose((root / "masks").glob("*.png"), pick)
        lab = np.array(Image.open(victim))
        if dtype == "float":
            Image.fromarray(lab.astype(np.float32)).save(victim.with_suffix(".tiff"))
            victim.write_bytes(victim.with_suffix(".tiff").read_bytes())  # a TIFF behind a .png name
            victim.with_suffix(".tiff").unlink()
        else:
            Image.fromarray(np.dstack([lab, lab, lab])).save(victim)
        _refused("nyudv2", root, victim)


@SETTINGS
@given(pick=st.integers(0, 10**6), drop=st.integers(0, 2))
def test_missing_listed_file_is_named(pick, drop):
    with _fresh("nyudv2") as root:
        rows = (root / "train.txt").read_text().split()
        victim = root / rows[(pick % 3) * 3 + drop]
        victim.unlink()
        _refused("nyudv2", root, victim)


@SETTINGS
@given(pick=st.integers(0, 10**6), junk=st.binary(min_size=1, max_size=20))
def test_non_utf8_json_is_named(pick, junk):
    with _fresh("mmimdb") as root:
        victim = _choose((root / "dataset").glob("*.json"), pick)
        victim.write_bytes(b'{"plot": ["\xff\xfe' + junk + b'"], "genres": ["Drama"]}')
        _refused("mmimdb", root, victim)


@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_split_is_refused_naming_its_list(tmp_path, split):
    make_nyu(tmp_path)
    (tmp_path / f"{split}.txt").write_text("")
    _refused("nyudv2", tmp_path, tmp_path / f"{split}.txt")
    with pytest.raises(DataError, match=f"{split}.txt"):
        NYUDv2(tmp_path, split)


def test_split_json_not_utf8_is_named(tmp_path):
    make_mmimdb_raw(tmp_path)
    (tmp_path / "split.json").write_bytes(b'{"train": ["\xff"]}')
    _refused("mmimdb", tmp_path, tmp_path / "split.json")

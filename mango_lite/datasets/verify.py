"""Check a dataset folder against the reference layout before training on it.

``verify_dataset(name, root)`` opens every list file, decodes every referenced file, checks that paired
images have the same size and that label values are legal, and returns a :class:`VerifyReport`; the
first problem raises :class:`mango_lite.errors.DataError` with the message ``"<file>: <reason>"``.

Checks per dataset:

* ``nyudv2``  - ``train.txt`` / ``val.txt`` (3 paths per line); rgb 8-bit colour; mask single channel
  with values in 0..39 or 255; depth greyscale; all three the same (H, W).
* ``sunrgbd`` - ``train.txt`` / ``test.txt``; as NYU with label values 0..37 (0 = unlabeled).
* ``taskonomy`` - ``train_domain.txt`` / ``val_domain.txt`` templates with ``{domain}``; every domain
  folder present (or those asked for) has every view; depth / edge files are 16-bit; sizes agree.
* ``mmimdb`` - raw: ``split.json`` with train/dev/test lists, no id in two splits, every id has a
  readable ``.jpeg`` and a ``.json`` with a ``plot`` list and a ``genres`` list; genres outside the 23
  are counted as warnings (errors with ``strict=True``). hdf5: the datasets and shapes of the GMU
  schema, genres in {0, 1}, images in 0..255.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import _io
from .constants import MMIMDB_GENRES, TASKONOMY_DOMAINS
from .mmimdb import HDF5_NAME, SPLITS as MMIMDB_SPLITS, hdf5_split_indices, longest_plot, read_movie_json, read_split_json
from .taskonomy import SPLIT_FILES as TASKONOMY_SPLIT_FILES, read_taskonomy

DATASET_NAMES = ("nyudv2", "sunrgbd", "taskonomy", "mmimdb")


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found.

    ``splits``: samples per split; ``image_sizes``: split -> Counter of (H, W); ``label_values``: sorted
    distinct label values seen on disk (segmentation) or genre counts (MM-IMDb) - for the summary;
    ``warnings``: non-fatal findings (e.g. MM-IMDb genres outside the 23)."""

    name: str
    root: Path
    splits: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, Counter] = field(default_factory=dict)
    files_checked: int = 0
    label_values: list[int] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.name}: OK ({self.root})"]
        for split, n in self.splits.items():
            sizes = self.image_sizes.get(split, Counter())
            common = ", ".join(f"{h}x{w}" + (f" ({c})" if len(sizes) > 1 else "") for (h, w), c in sizes.most_common(3))
            more = f" and {len(sizes) - 3} other sizes" if len(sizes) > 3 else ""
            size_txt = f", image size (HxW) {common}{more}" if common else ""
            lines.append(f"  {split}: {n} samples{size_txt}")
        if self.domains:
            lines.append(f"  domains: {', '.join(self.domains)}")
        if self.sources:
            lines.append(f"  sources: {', '.join(self.sources)}")
        if self.label_values:
            lines.append(f"  label values on disk: {_ranges(self.label_values)}")
        lines.append(f"  files checked: {self.files_checked}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _ranges(values: Sequence[int]) -> str:
    """[0,1,2,3,7,255] -> '0..3, 7, 255'."""
    out: list[str] = []
    vals = sorted(set(int(v) for v in values))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}..{vals[j]}")
        i = j + 1
    return ", ".join(out)


def _take(rows: list, limit: int | None) -> list:
    return rows if limit is None else rows[: max(0, int(limit))]


# ------------------------------------------------------------------------------- segmentation
def _verify_rgbd(name: str, root: Path, splits: dict[str, str], legal: np.ndarray, legal_text: str,
                 limit: int | None) -> VerifyReport:
    report = VerifyReport(name, root)
    seen = np.zeros(65536, dtype=bool)
    for split, list_name in splits.items():
        rows = _io.parse_list(root / list_name, 3, f"{name} {split} list (rgb, label, depth per line)")
        dup = [r for r, c in Counter(rows).items() if c > 1]
        if dup:
            report.warnings.append(f"{root / list_name}: {len(dup)} duplicated lines (first: {dup[0][0]})")
        sizes: Counter = Counter()
        for rgb_rel, lab_rel, dep_rel in _take(rows, limit):
            rgb_p, lab_p, dep_p = root / rgb_rel, root / lab_rel, root / dep_rel
            rgb = _io.read_rgb(rgb_p)
            lab = _io.read_label(lab_p)
            dep = _io.read_gray(dep_p)
            hw = rgb.shape[:2]
            for p, arr in ((lab_p, lab), (dep_p, dep)):
                if arr.shape != hw:
                    raise DataError(f"{p}: size (H, W) = {arr.shape} differs from {rgb_p} {hw}")
            if lab.min() < 0 or lab.max() >= legal.size:
                raise DataError(f"{lab_p}: label values {int(lab.min())}..{int(lab.max())} outside {legal_text}")
            present = np.bincount(lab.ravel(), minlength=legal.size).astype(bool)
            illegal = np.flatnonzero(present & ~legal)
            if illegal.size:
                raise DataError(f"{lab_p}: illegal label values {illegal[:8].tolist()} (legal: {legal_text})")
            seen[: present.size] |= present
            sizes[hw] += 1
            report.files_checked += 3
        report.splits[split] = len(rows)
        report.image_sizes[split] = sizes
    report.label_values = np.flatnonzero(seen).tolist()
    return report


def _verify_nyudv2(root: Path, limit: int | None) -> VerifyReport:
    legal = np.zeros(256, dtype=bool)
    legal[:40] = True
    legal[255] = True
    return _verify_rgbd("nyudv2", root, {"train": "train.txt", "val": "val.txt"}, legal, "0..39 or 255", limit)


def _verify_sunrgbd(root: Path, limit: int | None) -> VerifyReport:
    legal = np.zeros(38, dtype=bool)
    legal[:] = True
    return _verify_rgbd("sunrgbd", root, {"train": "train.txt", "test": "test.txt"}, legal,
                        "0..37 (0 = unlabeled)", limit)


# ------------------------------------------------------------------------------------ taskonomy
def _verify_taskonomy(root: Path, limit: int | None, domains: Sequence[str] | None) -> VerifyReport:
    if domains is None:
        domains = [d for d in TASKONOMY_DOMAINS if (root / d).is_dir()]
        if not domains:
            raise DataError(f"{root}: no Taskonomy domain folders found (expected some of {TASKONOMY_DOMAINS})")
    else:
        for d in domains:
            if d not in TASKONOMY_DOMAINS:
                raise DataError(f"unknown Taskonomy domain {d!r}; expected one of {TASKONOMY_DOMAINS}")
            _io.require_dir(root / d, f"Taskonomy domain {d!r} images")
    report = VerifyReport("taskonomy", root, domains=list(domains))
    for split, list_name in TASKONOMY_SPLIT_FILES.items():
        list_p = root / list_name
        templates = [r[0] for r in _io.parse_list(list_p, 1, "Taskonomy list of '{domain}' path templates")]
        sizes: Counter = Counter()
        for lineno, t in enumerate(templates, start=1):
            if "{domain}" not in t:
                raise DataError(f"{list_p}:{lineno}: expected a path template containing '{{domain}}', got {t!r}")
        for t in _take(templates, limit):
            ref: tuple[Path, tuple[int, int]] | None = None
            for d in domains:
                p = root / t.format(domain=d)
                hw = tuple(read_taskonomy(p, d).shape[-2:])
                if ref is None:
                    ref = (p, hw)
                elif hw != ref[1]:
                    raise DataError(f"{p}: size (H, W) = {hw} differs from {ref[0]} {ref[1]}")
                report.files_checked += 1
            sizes[ref[1]] += 1
        report.splits[split] = len(templates)
        report.image_sizes[split] = sizes
    return report


# --------------------------------------------------------------------------------------- mmimdb
def _verify_mmimdb_raw(root: Path, report: VerifyReport, limit: int | None, strict: bool) -> None:
    split_p = root / "split.json"
    split = read_split_json(split_p)
    owner: dict[str, str] = {}
    for name, ids in split.items():
        for i in ids:
            if i in owner and owner[i] != name:
                raise DataError(f"{split_p}: id {i!r} is in both {owner[i]!r} and {name!r}")
            owner[i] = name
    data = _io.require_dir(root / "dataset", "MM-IMDb posters and metadata ({id}.jpeg, {id}.json)")
    unknown: Counter = Counter()
    genre_counts = np.zeros(len(MMIMDB_GENRES), dtype=np.int64)
    for name, ids in split.items():
        sizes: Counter = Counter()
        for i in _take(ids, limit):
            meta_p, img_p = data / f"{i}.json", data / f"{i}.jpeg"
            if not meta_p.is_file():
                raise DataError(f"{meta_p}: listed in {split_p} ({name}) but not found")
            meta = read_movie_json(meta_p)
            longest_plot(meta["plot"], meta_p)
            bad = [g for g in meta["genres"] if g not in MMIMDB_GENRES]
            if bad and strict:
                raise DataError(f"{meta_p}: genres {bad} are not among the 23 MM-IMDb genres")
            unknown.update(bad)
            genre_counts += np.isin(np.array(MMIMDB_GENRES), meta["genres"])
            sizes[_io.read_rgb(img_p).shape[:2]] += 1
            report.files_checked += 2
        report.splits[name] = len(ids)
        report.image_sizes[name] = sizes
    if unknown:
        top = ", ".join(f"{g} ({c})" for g, c in unknown.most_common(5))
        report.warnings.append(f"genres outside the 23 are ignored by the loader: {top}")
    empty = [g for g, c in zip(MMIMDB_GENRES, genre_counts) if c == 0]
    if empty and limit is None:
        report.warnings.append(f"genres with no movie: {', '.join(empty)}")
    report.sources.append("raw (split.json + dataset/)")


def _verify_mmimdb_hdf5(root: Path, report: VerifyReport, limit: int | None) -> None:
    from .mmimdb import MMIMDB  # the constructor checks datasets and shapes

    path = root / HDF5_NAME
    ds = MMIMDB(root, "train", source="hdf5")
    h5 = ds._file()
    try:
        n = h5["genres"].shape[0]
        chunk = 64  # rows per read: 64 x 3 x 256 x 160 int32 = 31 MB
        stop = n if limit is None else min(n, int(limit))
        for a in range(0, stop, chunk):
            b = min(stop, a + chunk)
            g = np.asarray(h5["genres"][a:b])
            if not np.isin(g, (0, 1)).all():
                raise DataError(f"{path}: 'genres' rows {a}..{b - 1} hold values other than 0/1")
            im = np.asarray(h5["images"][a:b])
            if im.min() < 0 or im.max() > 255:
                raise DataError(f"{path}: 'images' rows {a}..{b - 1} hold values {im.min()}..{im.max()}, expected 0..255")
        hw = tuple(int(s) for s in h5["images"].shape[2:])
        src = ""
        for name in MMIMDB_SPLITS:
            idx, src = hdf5_split_indices(h5, name, path)
            key = name if "raw (split.json + dataset/)" not in report.sources else f"{name} (hdf5)"
            report.splits[key] = int(idx.size)
            report.image_sizes[key] = Counter({hw: int(idx.size)})
        report.files_checked += 1
        report.sources.append(f"hdf5 ({HDF5_NAME}, split from {src})")
    finally:
        ds.close()


def _verify_mmimdb(root: Path, limit: int | None, strict: bool) -> VerifyReport:
    report = VerifyReport("mmimdb", root)
    has_raw, has_h5 = (root / "split.json").exists(), (root / HDF5_NAME).exists()
    if not has_raw and not has_h5:
        raise DataError(f"{root / 'split.json'}: not found, and no {HDF5_NAME} either "
                        "(expected the raw mmimdb layout or the GMU hdf5)")
    if has_raw:
        _verify_mmimdb_raw(root, report, limit, strict)
    if has_h5:
        _verify_mmimdb_hdf5(root, report, limit)
    return report


# -------------------------------------------------------------------------------------- public
def verify_dataset(name: str, root: str | os.PathLike, *, limit: int | None = None, strict: bool = False,
                   domains: Sequence[str] | None = None) -> VerifyReport:
    """Verify dataset ``name`` ("nyudv2", "sunrgbd", "taskonomy", "mmimdb") at ``root``.

    ``limit``: decode at most this many samples per split (list files and split files are always
    parsed whole); ``strict``: MM-IMDb genres outside the 23 become errors; ``domains``: Taskonomy
    domains to check (default: every domain folder present). Raises DataError("<file>: <reason>")."""
    name = name.lower()
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    root_p = _io.require_dir(root, f"the {name} dataset")
    if name == "nyudv2":
        return _verify_nyudv2(root_p, limit)
    if name == "sunrgbd":
        return _verify_sunrgbd(root_p, limit)
    if name == "taskonomy":
        return _verify_taskonomy(root_p, limit, domains)
    return _verify_mmimdb(root_p, limit, strict)

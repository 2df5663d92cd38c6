"""MM-IMDb (poster + plot -> 23 genres, multi-label), raw layout or the GMU / MultiBench HDF5.

Raw layout (``source="raw"``, the ``mmimdb.tar.gz`` archive)::

    split.json                    # {"train": [ids], "dev": [ids], "test": [ids]}
    dataset/{id}.jpeg             # poster
    dataset/{id}.json             # {"plot": [str, ...], "genres": [str, ...], "title": str, ...}

Item: ``{"image": float32 (3,H,W) normalised with the MMBT mean/std, "plot": str (the longest entry of
``plot``, as GMU and MMBT do), "labels": float32 (23,) multi-hot over constants.MMIMDB_GENRES,
"id": str}``. Genres outside the 23 (News, Talk-Show, ...) are ignored; a movie left with none gets an
all-zero vector (it is kept, unlike MMBT which drops "News"-only movies).

HDF5 (``source="hdf5"``, ``multimodal_imdb.hdf5``): ``features`` (N,300) float, ``vgg_features``
(N,4096, optional), ``images`` (N,3,256,160) int, ``genres`` (N,23), ``imdb_ids`` (N,) bytes.
Item: ``{"image": float32 (3,256,160) normalised, "features": float32 (300,), "labels": float32 (23,),
"id": str}`` plus ``"vgg_features"`` with ``with_vgg=True``. The split is taken, in this order, from

1. a Fuel ``split`` attribute on the file (structured rows ``split, source, start, stop, ...``);
2. a dataset named ``split`` holding one entry per row ("train"/"dev"/"test" strings or 0/1/2);
3. otherwise contiguous index ranges in the proportions 15552 / 2608 / 7799 of the original
   (for N = 25959 exactly MultiBench's [0,15552), [15552,18160), [18160,25959)).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from . import _io
from .constants import MMIMDB_GENRES, MMIMDB_SPLIT_SIZES
from .transforms import MMIMDB_MEAN, MMIMDB_STD, Normalize

Transform = Callable[[dict[str, Any]], dict[str, Any]]

SPLITS = ("train", "dev", "test")
ALIASES = {"val": "dev"}
HDF5_NAME = "multimodal_imdb.hdf5"
_GENRE_INDEX = {g: i for i, g in enumerate(MMIMDB_GENRES)}


def genre_vector(genres: list[str]) -> np.ndarray:
    """float32 (23,) multi-hot over MMIMDB_GENRES; unknown genres are ignored."""
    v = np.zeros(len(MMIMDB_GENRES), dtype=np.float32)
    idx = [_GENRE_INDEX[g] for g in genres if g in _GENRE_INDEX]
    v[idx] = 1.0
    return v


def longest_plot(plots: Any, path: Path) -> str:
    """The longest string of the ``plot`` list (GMU / MMBT); a bare string is accepted as is."""
    if isinstance(plots, str):
        return plots
    if not isinstance(plots, list) or not plots or not all(isinstance(p, str) for p in plots):
        raise DataError(f"{path}: 'plot' must be a non-empty list of strings, got {type(plots).__name__}")
    return max(plots, key=len)


def read_movie_json(path: Path) -> dict[str, Any]:
    """Parse one ``dataset/{id}.json``; DataError naming the file on bad JSON or missing keys."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for key in ("plot", "genres"):
        if key not in meta:
            raise DataError(f"{path}: missing key {key!r}")
    if not isinstance(meta["genres"], list) or not all(isinstance(g, str) for g in meta["genres"]):
        raise DataError(f"{path}: 'genres' must be a list of strings")
    return meta


def read_split_json(path: Path) -> dict[str, list[str]]:
    try:
        split = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: missing split file (expected {{\"train\": [...], \"dev\": [...], \"test\": [...]}})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(split, dict):
        raise DataError(f"{path}: expected a JSON object with keys {SPLITS}")
    for key in SPLITS:
        ids = split.get(key)
        if not isinstance(ids, list):
            raise DataError(f"{path}: expected key {key!r} with a list of ids, got {type(ids).__name__}")
    return {k: [str(i) for i in split[k]] for k in SPLITS}


def proportional_ranges(n: int) -> dict[str, tuple[int, int]]:
    """[start, stop) per split in the 15552 / 2608 / 7799 proportions of the original HDF5."""
    total = sum(MMIMDB_SPLIT_SIZES.values())
    n_train = int(round(n * MMIMDB_SPLIT_SIZES["train"] / total))
    n_dev = int(round(n * MMIMDB_SPLIT_SIZES["dev"] / total))
    return {"train": (0, n_train), "dev": (n_train, n_train + n_dev), "test": (n_train + n_dev, n)}


def _decode(x: Any) -> str:
    if isinstance(x, (bytes, np.bytes_)):
        return x.decode("utf-8").strip("\x00").strip()
    return str(x).strip()


def hdf5_split_indices(h5: Any, split: str, path: Path) -> tuple[np.ndarray, str]:
    """Row indices of ``split`` in an open h5py File and a word on where they came from."""
    n = int(h5["genres"].shape[0])
    attr = h5.attrs.get("split")
    if attr is not None and getattr(attr, "dtype", None) is not None and attr.dtype.names \
            and {"split", "start", "stop"} <= set(attr.dtype.names):
        rows = [r for r in attr if _decode(r["split"]) == split]
        if not rows:
            raise DataError(f"{path}: Fuel 'split' attribute has no rows for split {split!r}")
        start, stop = int(rows[0]["start"]), int(rows[0]["stop"])
        if not 0 <= start <= stop <= n:
            raise DataError(f"{path}: Fuel split {split!r} range [{start}, {stop}) outside 0..{n}")
        return np.arange(start, stop), "fuel split attribute"
    if "split" in h5:
        raw = h5["split"][()]
        if raw.shape != (n,):
            raise DataError(f"{path}: dataset 'split' has shape {raw.shape}, expected ({n},)")
        if raw.dtype.kind in "SOU":
            names = np.array([_decode(s) for s in raw])
            names = np.where(names == "val", "dev", names)
            return np.flatnonzero(names == split), "split dataset"
        return np.flatnonzero(raw == SPLITS.index(split)), "split dataset (0/1/2)"
    start, stop = proportional_ranges(n)[split]
    return np.arange(start, stop), "proportional ranges"


def _require_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # optional dependency (extra "hdf5")
        raise DataError("the MM-IMDb hdf5 source needs h5py: pip install h5py (or mango_lite[hdf5])") from exc
    return h5py


class MMIMDB(Dataset):
    """MM-IMDb posters + plots (``source="raw"``) or the GMU HDF5 (``source="hdf5"``).

    ``split``: "train", "dev" (alias "val") or "test". ``transform``: paired geometry on the image
    (e.g. :func:`poster_transforms`) applied before the MMBT normalisation; raw posters differ in size,
    so batching raw items needs a transform that fixes the size."""

    num_classes = len(MMIMDB_GENRES)
    classes = MMIMDB_GENRES

    def __init__(self, root: str | os.PathLike, split: str = "train", source: str = "raw",
                 transform: Transform | None = None, with_vgg: bool = False,
                 hdf5_name: str = HDF5_NAME, check_files: bool = True):
        self.root = _io.require_dir(root, "MM-IMDb (split.json + dataset/ for raw, or multimodal_imdb.hdf5)")
        split = ALIASES.get(split, split)
        if split not in SPLITS:
            raise DataError(f"MM-IMDb: unknown split {split!r}; expected one of {SPLITS}")
        if source not in ("raw", "hdf5"):
            raise DataError(f"MM-IMDb: unknown source {source!r}; expected 'raw' or 'hdf5'")
        self.split, self.source, self.transform, self.with_vgg = split, source, transform, bool(with_vgg)
        self.normalize = Normalize({"image": (MMIMDB_MEAN, MMIMDB_STD)})
        self._h5: Any = None
        self._h5_pid: int | None = None
        if source == "raw":
            self._init_raw(check_files)
        else:
            self._init_hdf5(hdf5_name)

    # ------------------------------------------------------------------ raw
    def _init_raw(self, check_files: bool) -> None:
        self.split_file = self.root / "split.json"
        self.ids = read_split_json(self.split_file)[self.split]
        self.data_dir = _io.require_dir(self.root / "dataset", "MM-IMDb posters and metadata ({id}.jpeg, {id}.json)")
        if check_files:
            for i in self.ids:
                for ext in (".jpeg", ".json"):
                    p = self.data_dir / f"{i}{ext}"
                    if not p.is_file():
                        raise DataError(f"{p}: listed in {self.split_file} ({self.split}) but not found")

    def _raw_item(self, index: int) -> dict[str, Any]:
        mid = self.ids[index]
        meta_p = self.data_dir / f"{mid}.json"
        meta = read_movie_json(meta_p)
        rgb = _io.read_rgb(self.data_dir / f"{mid}.jpeg")
        return {
            "image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0),
            "plot": longest_plot(meta["plot"], meta_p),
            "labels": torch.from_numpy(genre_vector(meta["genres"])),
            "id": mid,
        }

    def label_matrix(self) -> np.ndarray:
        """float32 (N, 23) multi-hot labels of the whole split (reads every JSON / the genres dataset)."""
        if self.source == "raw":
            return np.stack([genre_vector(read_movie_json(self.data_dir / f"{i}.json")["genres"])
                             for i in self.ids]) if self.ids else np.zeros((0, self.num_classes), np.float32)
        h5 = self._file()
        return np.asarray(h5["genres"][()], dtype=np.float32)[self.indices]  # N x 23 is small: read whole

    # ----------------------------------------------------------------- hdf5
    def _init_hdf5(self, hdf5_name: str) -> None:
        h5py = _require_h5py()
        self.h5_path = _io.require_file(self.root / hdf5_name, "MM-IMDb HDF5 file (multimodal_imdb.hdf5)")
        try:
            with h5py.File(self.h5_path, "r") as h5:
                required = ["features", "images", "genres", "imdb_ids"] + (["vgg_features"] if self.with_vgg else [])
                for key in required:
                    if key not in h5:
                        raise DataError(f"{self.h5_path}: missing dataset {key!r} (have {sorted(h5.keys())})")
                n = h5["genres"].shape[0]
                expect = {"features": (n, 300), "genres": (n, self.num_classes)}
                for key, shape in expect.items():
                    if tuple(h5[key].shape) != shape:
                        raise DataError(f"{self.h5_path}: dataset {key!r} has shape {h5[key].shape}, expected {shape}")
                if h5["images"].ndim != 4 or h5["images"].shape[:2] != (n, 3):
                    raise DataError(f"{self.h5_path}: dataset 'images' has shape {h5['images'].shape}, expected ({n}, 3, H, W)")
                if h5["imdb_ids"].shape[0] != n:
                    raise DataError(f"{self.h5_path}: 'imdb_ids' has {h5['imdb_ids'].shape[0]} rows, expected {n}")
                self.indices, self.split_source = hdf5_split_indices(h5, self.split, self.h5_path)
        except OSError as exc:
            raise DataError(f"{self.h5_path}: unreadable HDF5 file ({exc})") from exc
        self.ids = []  # filled lazily for hdf5 (ids live in the file)

    def _file(self) -> Any:
        # h5py handles must not cross a fork: reopen in each DataLoader worker process.
        if self._h5 is None or self._h5_pid != os.getpid():
            self._h5 = _require_h5py().File(self.h5_path, "r")
            self._h5_pid = os.getpid()
        return self._h5

    def _hdf5_item(self, index: int) -> dict[str, Any]:
        h5 = self._file()
        row = int(self.indices[index])
        img = np.asarray(h5["images"][row], dtype=np.float32) / 255.0
        item: dict[str, Any] = {
            "image": torch.from_numpy(img),
            "features": torch.from_numpy(np.asarray(h5["features"][row], dtype=np.float32)),
            "labels": torch.from_numpy(np.asarray(h5["genres"][row], dtype=np.float32)),
            "id": _decode(h5["imdb_ids"][row]),
        }
        if self.with_vgg:
            item["vgg_features"] = torch.from_numpy(np.asarray(h5["vgg_features"][row], dtype=np.float32))
        return item

    # ---------------------------------------------------------------- common
    def __len__(self) -> int:
        return len(self.ids) if self.source == "raw" else len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._raw_item(index) if self.source == "raw" else self._hdf5_item(index)
        if self.transform is not None:
            item = self.transform(item)
        return self.normalize(item)

    def close(self) -> None:
        """Close the HDF5 handle if one is open (items reopen it on demand)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None  # never pickle an open h5py handle (spawned DataLoader workers)
        return state

    def __repr__(self) -> str:
        return f"MMIMDB(root={str(self.root)!r}, split={self.split!r}, source={self.source!r}, n={len(self)})"

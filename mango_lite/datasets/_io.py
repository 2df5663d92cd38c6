"""File readers shared by the loaders and the verifier (PIL + numpy only).

Every reader raises :class:`mango_lite.errors.DataError` whose message starts with the file path,
``"<path>: <reason>"``, so the command line can print ``error: <path>: <reason>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

PathLike = str | os.PathLike


def require_dir(path: PathLike, what: str) -> Path:
    """``path`` as a Path if it is a directory, else DataError naming it and ``what`` it should hold."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{p}: expected a folder with {what}, but it does not exist or is not a folder")
    return p


def require_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: missing {what}")
    return p


def open_image(path: PathLike) -> Image.Image:
    """Open and fully decode an image (so truncated files fail here, not later in a worker)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{p}: unreadable image ({type(exc).__name__}: {exc})") from exc
    return img


def image_to_rgb(img: Image.Image, path: PathLike) -> np.ndarray:
    """uint8 (H, W, 3). Greyscale / palette / RGBA are converted; 16-bit or float images are refused
    (an RGB modality stored at 16 bits is almost surely a depth or label file in the wrong column)."""
    if img.mode in ("RGB",):
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("L", "P", "RGBA", "LA", "CMYK", "YCbCr", "1"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    raise DataError(f"{path}: expected an 8-bit colour image, got PIL mode {img.mode!r}")


def image_to_gray(img: Image.Image, path: PathLike) -> np.ndarray:
    """Single-channel array (H, W) in the file's own dtype: uint8, uint16 (16-bit PNG), int32 or float32.

    Colour-encoded greyscale (e.g. DFormer's SUN depth written by ``plt.imsave(cmap='Greys_r')``,
    RGB(A) with R = G = B) is read from its first channel."""
    mode = img.mode
    if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img)
        if arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr
    if mode == "1":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("RGB", "RGBA", "LA"):
        return np.ascontiguousarray(np.asarray(img)[..., 0])
    if mode == "P":
        return np.asarray(img.convert("L"))
    raise DataError(f"{path}: expected a greyscale image, got PIL mode {mode!r}")


def image_to_label(img: Image.Image, path: PathLike) -> np.ndarray:
    """int64 (H, W) class ids. Palette ('P') images give their indices, as PIL reads them; colour (RGB)
    masks are refused: the reference loaders assert single-channel masks without a colour map."""
    if img.mode in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img).astype(np.int64)
    raise DataError(f"{path}: expected a single-channel label image of class ids, got PIL mode {img.mode!r}")


def read_rgb(path: PathLike) -> np.ndarray:
    return image_to_rgb(open_image(path), path)


def read_gray(path: PathLike) -> np.ndarray:
    return image_to_gray(open_image(path), path)


def read_label(path: PathLike) -> np.ndarray:
    return image_to_label(open_image(path), path)


def parse_list(path: PathLike, n_fields: int, what: str) -> list[tuple[str, ...]]:
    """Parse a list file of ``n_fields`` relative paths per line.

    Fields are tab-separated (TokenFusion / GeminiFusion); lines without a tab are split on any
    whitespace. Blank lines are skipped. Raises DataError ``<path>:<line>: ...`` on a malformed line,
    or when the file is missing or empty."""
    p = require_file(path, what)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: unreadable list file ({exc})") from exc
    rows: list[tuple[str, ...]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) != n_fields:
            raise DataError(f"{p}:{lineno}: expected {n_fields} tab-separated paths, got {len(fields)}: {line!r}")
        rows.append(tuple(fields))
    if not rows:
        raise DataError(f"{p}: list file is empty")
    return rows


def check_pairs_exist(root: Path, rows: list[tuple[str, ...]]) -> None:
    """DataError naming the first file referenced by ``rows`` (relative to ``root``) that is missing."""
    for row in rows:
        for rel in row:
            if not (root / rel).is_file():
                raise DataError(f"{root / rel}: file listed but not found")

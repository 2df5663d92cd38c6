"""Resumable downloads (urllib only) and the registry of official sources for the four datasets.

:func:`download` writes to ``<dest>.part``, resumes an existing ``.part`` with an HTTP ``Range``
request, checks the size and (when given) the SHA-256, and only then renames the ``.part`` to ``dest``
in one ``os.replace`` - a file at ``dest`` is therefore always complete. Sources may be ``http(s)://``,
``file://`` URLs or plain local paths.

:data:`SOURCES` lists where each dataset comes from (reference/data.md). Published checksums exist for
none of these files, so every ``sha256`` is ``None`` and only sizes are checked; pass ``sha256=`` to
:func:`download` once you have recorded one. NYUDv2 (TokenFusion's preprocessed Google Drive folder),
SUN RGB-D (DFormer's package) and the Taskonomy sample (a 24.9 GB git repository) need manual steps,
which :func:`instructions` spells out; MM-IMDb downloads automatically from archive.org.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

Progress = Callable[[int, "int | None"], None]
USER_AGENT = "mango_lite-downloader/0.1 (+https://github.com)"


# ------------------------------------------------------------------------------------- download
def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _local_source(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # plain path or Windows drive path
        return Path(url)
    return None


def _finish(part: Path, dest: Path, sha256: str | None, url: str) -> Path:
    if sha256 is not None:
        got = sha256sum(part)
        if got.lower() != sha256.lower():
            part.unlink()
            raise DataError(f"{dest}: sha256 mismatch for {url}: expected {sha256.lower()}, got {got} "
                            "(the partial file was deleted; run again to download afresh)")
    os.replace(part, dest)
    return dest


def _copy_stream(src, fh, chunk: int, done: int, total: int | None, progress: Progress | None) -> int:
    while True:
        block = src.read(chunk)
        if not block:
            return done
        fh.write(block)
        done += len(block)
        if progress is not None:
            progress(done, total)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000)."""
    if not header:
        return None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, resume: bool = True,
             chunk: int = 1 << 20, timeout: float = 60.0, progress: Progress | None = None,
             overwrite: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` and return ``dest``.

    * An existing ``dest`` is kept (and checked against ``sha256`` when given) unless ``overwrite``.
    * Bytes go to ``dest + ".part"``; with ``resume`` an existing ``.part`` is continued with
      ``Range: bytes=<size>-``. A server that answers 200 instead of 206 restarts the file.
    * After the transfer the size is compared with the server's length, the SHA-256 with ``sha256``
      (mismatch: the ``.part`` is deleted and DataError raised), then ``.part`` is renamed to ``dest``.
    * ``progress(done_bytes, total_bytes_or_None)`` is called after each ``chunk``.
    Network failures raise DataError naming the URL; an interrupted transfer keeps its ``.part`` so the
    next call resumes."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.exists() and not overwrite:
        if sha256 is not None and sha256sum(dest).lower() != sha256.lower():
            raise DataError(f"{dest}: exists but its sha256 differs from {sha256.lower()}; "
                            "delete it or pass overwrite=True")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not resume and part.exists():
        part.unlink()
    offset = part.stat().st_size if part.exists() else 0

    local = _local_source(url)
    if local is not None:
        if not local.is_file():
            raise DataError(f"{local}: source file not found")
        total = local.stat().st_size
        if offset > total:
            offset = 0
        with open(local, "rb") as src, open(part, "ab" if offset else "wb") as fh:
            src.seek(offset)
            done = _copy_stream(src, fh, chunk, offset, total, progress)
        if done != total:
            raise DataError(f"{part}: copied {done} of {total} bytes from {local}")
        return _finish(part, dest, sha256, url)

    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range not satisfiable: the .part may already be complete (or longer than the file).
            _, total = _content_range(exc.headers.get("Content-Range"))
            exc.close()
            if total == offset:
                return _finish(part, dest, sha256, url)
            part.unlink()
            return download(url, dest, sha256, resume=False, chunk=chunk, timeout=timeout,
                            progress=progress, overwrite=overwrite)
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: cannot connect ({exc.reason})") from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DataError(f"{url}: connection failed ({exc})") from exc

    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        if offset and status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise DataError(f"{url}: asked to resume at byte {offset}, server answered "
                                f"Content-Range {resp.headers.get('Content-Range')!r}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # no range support: start over
            total = int(length) if length is not None else None
        if total is None and length is not None:
            total = offset + int(length)
        try:
            with open(part, mode) as fh:
                done = _copy_stream(resp, fh, chunk, offset, total, progress)
        except (TimeoutError, ConnectionError, http.client.HTTPException, urllib.error.URLError, OSError) as exc:
            size = part.stat().st_size if part.exists() else 0
            raise DataError(f"{url}: transfer interrupted after {size} bytes ({exc}); "
                            f"run again to resume from {part}") from exc
    if total is not None and done != total:
        raise DataError(f"{url}: received {done} of {total} bytes; run again to resume from {part}")
    return _finish(part, dest, sha256, url)


def download_first(urls: tuple[str, ...], dest: str | os.PathLike, sha256: str | None = None, **kw) -> Path:
    """:func:`download` from the first mirror that works; DataError listing every failure otherwise."""
    errors = []
    for url in urls:
        try:
            return download(url, dest, sha256=sha256, **kw)
        except DataError as exc:
            if "sha256 mismatch" in str(exc):
                raise
            errors.append(str(exc))
    raise DataError(f"{dest}: every source failed:\n  " + "\n  ".join(errors))


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike, strip_single_top: bool = True) -> Path:
    """Extract a .tar(.gz) or .zip into ``dest`` safely (no absolute paths / '..' / links out).

    Extraction goes to a temporary folder inside ``dest`` first; with ``strip_single_top`` an archive
    whose members all sit under one folder (``mmimdb/...``) has that folder's contents moved to ``dest``."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".extract-{archive.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    inside = tmp.resolve()
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for m in tf.getmembers():
                    if not (tmp / m.name).resolve().is_relative_to(inside) or m.issym() or m.islnk():
                        raise DataError(f"{archive}: refusing unsafe member {m.name!r}")
                tf.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(tmp)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if not (tmp / name).resolve().is_relative_to(inside):
                        raise DataError(f"{archive}: refusing unsafe member {name!r}")
                zf.extractall(tmp)
        else:
            raise DataError(f"{archive}: not a tar or zip archive")
        top = list(tmp.iterdir())
        src = top[0] if (strip_single_top and len(top) == 1 and top[0].is_dir()) else tmp
        for child in src.iterdir():
            target = dest / child.name
            if target.exists():
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            os.replace(child, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive}: corrupt archive ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: saved as ``filename`` under the dataset root, fetched from the first
    working URL of ``urls``. ``sha256`` None = no published checksum (size is still checked)."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: str = "unknown size"
    extract: bool = False
    note: str = ""


@dataclass(frozen=True)
class DatasetSource:
    name: str
    homepage: str
    licence: str
    automatic: bool
    files: tuple[RemoteFile, ...] = ()      # what `data download NAME` fetches (MM-IMDb)
    lists: tuple[RemoteFile, ...] = ()      # split list files from the reference repositories
    official: tuple[RemoteFile, ...] = ()   # official raw release (not in the loader layout)
    alternatives: dict[str, tuple[RemoteFile, ...]] = field(default_factory=dict)
    manual: str = ""                        # step-by-step text; {root} is replaced


def _gh_raw(repo: str, path: str) -> tuple[str, ...]:
    # Default branch names of these repositories are not recorded in data.md: try main, then master.
    return tuple(f"https://raw.githubusercontent.com/{repo}/{b}/{path}" for b in ("main", "master"))


SOURCES: dict[str, DatasetSource] = {
    "nyudv2": DatasetSource(
        name="nyudv2",
        homepage="https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html",
        licence="not stated by the sources (research use); do not redistribute",
        automatic=False,
        lists=(
            RemoteFile("train.txt", _gh_raw("yikaiw/TokenFusion", "semantic_segmentation/data/nyudv2/train.txt"),
                       size="795 lines"),
            RemoteFile("val.txt", _gh_raw("yikaiw/TokenFusion", "semantic_segmentation/data/nyudv2/val.txt"),
                       size="654 lines"),
        ),
        official=(
            RemoteFile("nyu_depth_v2_labeled.mat",
                       ("http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",),
                       size="~2.8 GB", note="MATLAB v7.3 (HDF5): images, depths (m), labels (894 raw classes)"),
            RemoteFile("splits.mat", ("http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat",),
                       size="small", note="trainNdxs (795) / testNdxs (654), 1-based"),
        ),
        manual="""\
NYUDv2 (40 classes) must be fetched by hand: the loader reads TokenFusion's preprocessed copy,
which is only on Google Drive.

1. Open https://drive.google.com/drive/folders/1mXmOXVsd5l9-gYHk92Wpn6AcKAbE0m3X
   (TokenFusion README, "Datasets"; preprocessed by DrSleep/light-weight-refinenet, depth added).
2. Download the folder and unpack it so that these exist:
     {root}/rgb/000003.png      (uint8 RGB, white borders cropped)
     {root}/masks/000003.png    (single channel, ids 0..39, 255 = ignore)
     {root}/depth/000003.png    (depth PNG)
3. Put the split lists next to them (tab-separated rgb, mask, depth per line):
     {root}/train.txt  (795 lines)   {root}/val.txt  (654 lines)
   They ship with the data on Drive, and in the TokenFusion repository at
   semantic_segmentation/data/nyudv2/{{train,val}}.txt; to fetch those two files run
     python -m mango_lite data download nyudv2 --root {root} --lists
4. Check the result:
     python -m mango_lite data verify nyudv2 --root {root}

The official release (labeled .mat, 894 raw classes, + splits.mat) can be saved to {root}/official with
--official, but turning it into the 40-class layout needs the Gupta et al. 2013 class mapping, which
mango_lite does not ship: use the Drive copy.""",
    ),
    "sunrgbd": DatasetSource(
        name="sunrgbd",
        homepage="http://rgbd.cs.princeton.edu/",
        licence="not stated by the sources (research use)",
        automatic=False,
        lists=(
            RemoteFile("train.txt", _gh_raw("JiaDingCN/GeminiFusion", "data/sun/train.txt"), size="5285 lines"),
            RemoteFile("test.txt", _gh_raw("JiaDingCN/GeminiFusion", "data/sun/test.txt"), size="5050 lines"),
        ),
        official=(
            RemoteFile("SUNRGBD.zip", ("http://rgbd.cs.princeton.edu/data/SUNRGBD.zip",), size="~6.4 GB"),
            RemoteFile("SUNRGBDtoolbox.zip", ("http://rgbd.cs.princeton.edu/data/SUNRGBDtoolbox.zip",),
                       note="splits, seg37list and 2D segmentation annotations"),
        ),
        manual="""\
SUN RGB-D (37 classes) must be fetched by hand: the loader reads DFormer's packaged version, as
GeminiFusion does.

1. Open the DFormer README (https://github.com/VCIP-RGBD/DFormer, section "Get Start") and download
   the SUNRGBD package from one of its links (Google Drive / OneDrive / Baidu).
2. Unpack it so that these exist:
     {root}/RGB/train_0.jpg        (uint8 RGB)
     {root}/labels/train_0.png     (single channel, 0 = unlabeled, 1..37)
     {root}/Depth/train_0.png      (greyscale depth PNG)
   (If the package names a folder differently, e.g. Label/ instead of labels/, rename it or edit the lists.)
3. Put the split lists in {root} (tab-separated rgb, label, depth per line):
     {root}/train.txt  (5285 lines)   {root}/test.txt  (5050 lines)
   They are GeminiFusion's data/sun/{{train,test}}.txt; to fetch them run
     python -m mango_lite data download sunrgbd --root {root} --lists
4. Check the result:
     python -m mango_lite data verify sunrgbd --root {root}

The official SUNRGBD.zip and toolbox (--official, into {root}/official) are not in this layout and
mango_lite does not convert them.""",
    ),
    "taskonomy": DatasetSource(
        name="taskonomy",
        homepage="https://github.com/alexsax/taskonomy-sample-model-1",
        licence="not stated in the sample repository (research use)",
        automatic=False,
        lists=(
            RemoteFile("train_domain.txt", _gh_raw("yikaiw/TokenFusion", "image2image_translation/data/train_domain.txt"),
                       size="1000 lines"),
            RemoteFile("val_domain.txt", _gh_raw("yikaiw/TokenFusion", "image2image_translation/data/val_domain.txt"),
                       size="500 lines"),
        ),
        manual="""\
The Taskonomy sample building (Cauthron) is a 24.9 GB git repository; clone only the domains you need.

1. Clone without checking files out, then pick domains (here shade + texture -> rgb, and more):
     git clone --filter=blob:none --no-checkout https://github.com/alexsax/taskonomy-sample-model-1 {root}
     cd {root}
     git sparse-checkout set rgb reshading edge_texture normal depth_euclidean
     git checkout
   so that {root}/rgb/point_407_view_2_domain_rgb.png etc. exist (512x512 PNGs; depth and edges 16-bit).
2. Put TokenFusion's lists in {root} (one '{{domain}}' path template per line):
     {root}/train_domain.txt  (1000 lines)   {root}/val_domain.txt  (500 lines)
   from image2image_translation/data/ in the TokenFusion repository; to fetch them run
     python -m mango_lite data download taskonomy --root {root} --lists
3. Check the result:
     python -m mango_lite data verify taskonomy --root {root}""",
    ),
    "mmimdb": DatasetSource(
        name="mmimdb",
        homepage="https://github.com/johnarevalo/gmu-mmimdb",
        licence="IMDb-derived posters and plots, research use; licence not stated",
        automatic=True,
        files=(
            RemoteFile("mmimdb.tar.gz", ("https://archive.org/download/mmimdb/mmimdb.tar.gz",
                                         "http://lisi1.unal.edu.co/mmimdb/mmimdb.tar.gz"),
                       extract=True, note="raw posters (dataset/{id}.jpeg), metadata (dataset/{id}.json), split.json"),
        ),
        alternatives={
            "hdf5": (
                RemoteFile("multimodal_imdb.hdf5", ("https://archive.org/download/mmimdb/multimodal_imdb.hdf5",
                                                    "http://lisi1.unal.edu.co/mmimdb/multimodal_imdb.hdf5"),
                           note="GMU / MultiBench features, images 3x256x160, genres"),
                RemoteFile("metadata.npy", ("https://archive.org/download/mmimdb/metadata.npy",
                                            "http://lisi1.unal.edu.co/mmimdb/metadata.npy")),
            ),
        },
        manual="""\
MM-IMDb downloads automatically:
     python -m mango_lite data download mmimdb --root {root}                 # raw: split.json + dataset/
     python -m mango_lite data download mmimdb --root {root} --source hdf5   # multimodal_imdb.hdf5
Interrupted downloads resume when the command is run again (a .part file is kept).
If archive.org and lisi1.unal.edu.co are both unreachable:
1. Download the Kaggle copy (dataset johnarevalo/mmimdb, needs a Kaggle account), or copy
   mmimdb.tar.gz from another machine.
2. Unpack it so that {root}/split.json and {root}/dataset/<id>.jpeg / <id>.json exist
   (the archive's top folder mmimdb/ becomes {root}).
3. Check the result:
     python -m mango_lite data verify mmimdb --root {root}""",
    ),
}


def instructions(name: str, root: str | os.PathLike) -> str:
    """Step-by-step text for getting dataset ``name`` into ``root``."""
    src = _source(name)
    files = "\n".join(f"  - {f.filename}: {f.urls[0]} ({f.size}){' - ' + f.note if f.note else ''}"
                      for f in src.files + src.lists + src.official)
    head = f"{src.name}  (homepage {src.homepage}; licence: {src.licence})"
    tail = f"\nKnown files (no published checksums; sizes are checked):\n{files}" if files else ""
    return head + "\n\n" + src.manual.format(root=str(root)) + "\n" + tail


def _source(name: str) -> DatasetSource:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; expected one of {tuple(SOURCES)}")
    return SOURCES[name]


def fetch_dataset(name: str, root: str | os.PathLike, *, source: str = "raw", lists: bool = False,
                  official: bool = False, keep_archive: bool = False, progress: Progress | None = None,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Download what can be downloaded for ``name`` into ``root`` and return the paths written.

    MM-IMDb: the raw archive (extracted into ``root``) or, with ``source="hdf5"``, the HDF5 files.
    Other datasets: nothing unless ``lists`` (the reference split lists, small) or ``official`` (the
    official raw release, into ``root/official``); their main data needs :func:`instructions`."""
    src = _source(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[RemoteFile, Path]] = []
    if src.automatic:
        files = src.files if source == "raw" else src.alternatives.get(source)
        if files is None:
            raise DataError(f"{name}: unknown source {source!r}; expected 'raw' or one of {sorted(src.alternatives)}")
        todo += [(f, root) for f in files]
    if lists:
        todo += [(f, root) for f in src.lists]
    if official:
        todo += [(f, root / "official") for f in src.official]
    written: list[Path] = []
    for f, folder in todo:
        dest = folder / f.filename
        log(f"downloading {f.filename} ({f.size}) from {f.urls[0]}")
        path = download_first(f.urls, dest, sha256=f.sha256, progress=progress)
        if f.extract:
            log(f"extracting {path.name} into {root}")
            extract_archive(path, root)
            if not keep_archive:
                path.unlink()
            written.append(root)
        else:
            written.append(path)
    return written

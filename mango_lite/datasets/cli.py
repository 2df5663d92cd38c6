"""``python -m mango_lite data {verify,download,synth}``.

* ``data verify NAME --root DIR [--limit N] [--strict] [--domains ...]`` - check a dataset folder;
  prints a summary and exits 0, or prints ``error: <file>: <reason>`` and exits 2 (via mango_lite.cli).
* ``data download NAME --root DIR [--instructions] [--lists] [--official] [--source raw|hdf5]`` -
  MM-IMDb downloads (resumable); NYUDv2 / SUN RGB-D / Taskonomy print step-by-step instructions,
  ``--lists`` fetches their split lists, ``--official`` the official raw release.
* ``data synth NAME --root DIR --n N --size S --seed K`` - write a generated stand-in in the real
  layout (mango_lite.datasets.synth writers).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .synth.misregistration import MISREGISTERED_DATASETS

DATASETS = ("nyudv2", "sunrgbd", "taskonomy", "mmimdb")


def add_data_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data`` with sub-commands ``verify``, ``download`` and ``synth`` to ``subparsers``."""
    data = subparsers.add_parser("data", help="verify, download or generate datasets",
                                 description="Dataset tools: verify a folder, download, or write a generated stand-in.")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    v = sub.add_parser("verify", help="check a dataset folder against the reference layout")
    v.add_argument("name", choices=DATASETS, help="which dataset layout to check")
    v.add_argument("--root", required=True, help="dataset folder")
    v.add_argument("--limit", type=int, default=None, help="decode at most N samples per split (default: all)")
    v.add_argument("--strict", action="store_true", help="MM-IMDb: genres outside the 23 are errors")
    v.add_argument("--domains", nargs="+", default=None, help="Taskonomy domains to check (default: all present)")
    v.set_defaults(func=cmd_verify)

    d = sub.add_parser("download", help="download a dataset or print how to get it")
    d.add_argument("name", choices=DATASETS, help="which dataset to download")
    d.add_argument("--root", required=True, help="dataset folder to fill")
    d.add_argument("--instructions", action="store_true", help="only print the step-by-step instructions")
    d.add_argument("--lists", action="store_true", help="also fetch the reference split list files")
    d.add_argument("--official", action="store_true", help="also fetch the official raw release into ROOT/official")
    d.add_argument("--source", default="raw", choices=("raw", "hdf5"), help="MM-IMDb: raw archive or hdf5")
    d.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive after extracting")
    d.set_defaults(func=cmd_download)

    s = sub.add_parser("synth", help="write a generated stand-in dataset in the real on-disk layout")
    s.add_argument("name", choices=DATASETS, help="which dataset layout to write")
    s.add_argument("--root", required=True, help="output folder")
    s.add_argument("--n", type=int, default=300, help="number of samples over all splits (default 300)")
    s.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--sensor-baseline", type=float, default=0.0,
                   help="nyudv2, taskonomy: metres between the first modality's camera and the camera that sees the "
                        "second (depth / edge texture); each point shifts by its disparity f*b/z px, pixels the "
                        "first camera cannot see are missing (default 0: pixel-aligned)")
    s.set_defaults(func=cmd_synth)
    return data


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_dataset

    report = verify_dataset(args.name, args.root, limit=args.limit, strict=args.strict, domains=args.domains)
    print(report.summary())
    return 0


class _Progress:
    """Prints 'name: 12.0 / 40.0 MB (30%)' to stderr at most every 2 s (and at the end)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 2.0 and done != total:
            return
        self.last = now
        mb = done / 2**20
        if total:
            print(f"  {mb:.1f} / {total / 2**20:.1f} MB ({100 * done / total:.0f}%)", file=sys.stderr)
        else:
            print(f"  {mb:.1f} MB", file=sys.stderr)


def cmd_download(args: argparse.Namespace) -> int:
    from .download import SOURCES, fetch_dataset, instructions

    src = SOURCES[args.name]
    if args.instructions or (not src.automatic and not (args.lists or args.official)):
        print(instructions(args.name, args.root))
        return 0
    written = fetch_dataset(args.name, args.root, source=args.source, lists=args.lists, official=args.official,
                            keep_archive=args.keep_archive, progress=_Progress())
    for p in written:
        print(f"wrote {p}")
    if not src.automatic:
        print()
        print(instructions(args.name, args.root))
    else:
        print(f"next: python -m mango_lite data verify {args.name} --root {args.root}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from .synth import get_writer

    if args.n <= 0 or args.size <= 0:
        raise DataError(f"--n and --size must be positive, got n={args.n}, size={args.size}")
    writer = get_writer(args.name)
    if args.sensor_baseline:
        if args.name not in MISREGISTERED_DATASETS:
            raise DataError(f"--sensor-baseline: only the {' and '.join(MISREGISTERED_DATASETS)} stand-ins can be "
                            f"misregistered, not {args.name}")
        root = writer(args.root, args.n, args.size, args.seed, baseline=args.sensor_baseline)
    else:
        root = writer(args.root, args.n, args.size, args.seed)
    shift = ""
    if args.sensor_baseline:
        import json

        meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
        shift = (f", second modality from {args.sensor_baseline:g} m to the right: "
                 f"median disparity {meta['median_disparity_px']:.1f} px")
    print(f"wrote {args.name} stand-in ({args.n} samples, {args.size} px, seed {args.seed}{shift}) to {root}")
    print(f"next: python -m mango_lite data verify {args.name} --root {root}")
    return 0

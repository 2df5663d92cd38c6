"""Per-epoch metric history, written atomically to ``history.json`` and ``history.csv``.

One record per completed epoch, a flat dict of JSON scalars, e.g.::

    {"epoch": 1, "global_step": 4, "lr": 0.002, "time_s": 3.1,
     "train_loss": 2.9, "train_task": 2.8, "train_flow_bpd": 5.1,
     "val_loss": 2.7, "val_miou": 4.2, ...}

The CSV has one column per key (union over all records, in order of first appearance); a record
without a key leaves the cell empty.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import MangoLiteError
from ..utils import atomic_write_json, atomic_write_text

JSON_NAME = "history.json"
CSV_NAME = "history.csv"


def _scalar(v: Any) -> Any:
    """Make ``v`` a JSON scalar: tensors/numpy numbers -> float/int; non-finite floats kept as float
    (JSON gets ``NaN``/``Infinity``, which Python's json reads back)."""
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"history values must be scalars, got {type(v).__name__}: {v!r}") from exc


class History:
    """A list of per-epoch records with JSON/CSV persistence and a few queries."""

    def __init__(self, records: Iterable[dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in (records or [])]

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        rec = {k: _scalar(v) for k, v in record.items()}
        self.records.append(rec)
        return rec

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def columns(self) -> list[str]:
        """Union of keys over all records, in order of first appearance."""
        cols: dict[str, None] = {}
        for r in self.records:
            for k in r:
                cols.setdefault(k, None)
        return list(cols)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(epochs, values)`` of the records that hold ``key``."""
        xs, ys = [], []
        for r in self.records:
            if key in r and r[key] is not None:
                xs.append(int(r.get("epoch", len(xs) + 1)))
                ys.append(float(r[key]))
        return xs, ys

    def best(self, key: str, mode: str = "max") -> dict[str, Any] | None:
        """The record with the best finite ``key`` (``mode`` "max" or "min"), or None."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        cands = [r for r in self.records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not cands:
            return None
        return (max if mode == "max" else min)(cands, key=lambda r: r[key])

    def to_csv_text(self) -> str:
        cols = self.columns()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
        w.writeheader()
        for r in self.records:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        return buf.getvalue()

    def save(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Atomically write ``OUT/history.json`` and ``OUT/history.csv``; returns both paths."""
        out = Path(out_dir)
        pj = atomic_write_json(out / JSON_NAME, self.records)
        pc = atomic_write_text(out / CSV_NAME, self.to_csv_text())
        return pj, pc

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read ``history.json`` (or the folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / JSON_NAME
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MangoLiteError(f"{p}: history file not found") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise MangoLiteError(f"{p}: unreadable history ({exc})") from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise MangoLiteError(f"{p}: expected a JSON list of per-epoch records")
        return cls(data)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, columns={self.columns()})"

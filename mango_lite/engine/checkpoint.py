"""Checkpoints: atomic save, validated load, RNG capture/restore, per-epoch file naming.

A checkpoint is a plain dict (loadable with ``torch.load(..., weights_only=True)``: only tensors,
numbers, strings, lists, tuples and dicts inside)::

    {"format": "mango_lite-checkpoint", "version": 1,
     "model": state_dict, "optimizer": state_dict, "scheduler": state_dict | None,
     "epoch": int (epochs completed), "global_step": int (optimizer steps taken),
     "rng": {"python": ..., "numpy": ..., "torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "generators": [ByteTensor, ...]      # states of extra torch.Generators (augmentation)
     "history": [record, ...], "best": {"metric", "value", "epoch"} | None,
     "config": TrainConfig as dict, "spec": run description (task, model, preset, data...)}

Writing goes through :func:`mango_lite.utils.atomic_write`, so a crash mid-save leaves the previous
checkpoint intact and no half-written file.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MangoLiteError
from ..utils import atomic_write

FORMAT = "mango_lite-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.pt$")


# --------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + every CUDA device) RNG states in a weights_only-safe form.

    numpy's Mersenne-Twister key (uint32 (624,)) is stored as an int64 tensor, because the safe
    unpickler refuses numpy arrays."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA states are restored only when the same number of
    devices is present (a CPU resume of a GPU run keeps going, just not bit-identically on the GPU)."""
    py = state["python"]
    # the safe unpickler gives lists back where python had tuples; random.setstate wants tuples
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["key"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ----------------------------------------------------------------------------------- save / load
def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """Serialise ``state`` once (so the same bytes can go to several files)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buf)
    return buf.getvalue()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (temporary file in the same folder, then one rename)."""

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, _w)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write a checkpoint dict (see module docstring) to ``path``."""
    return write_bytes_atomic(path, checkpoint_bytes(state))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises MangoLiteError naming the file when it is missing, unreadable or not a mango_lite checkpoint."""
    p = Path(path)
    if p.is_dir():
        found = find_checkpoint(p)
        if found is None:
            raise MangoLiteError(f"{p}: no checkpoint in this folder (expected {BEST_NAME} or "
                                 f"{CHECKPOINT_DIR}/epoch_NNN.pt)")
        p = found
    if not p.is_file():
        raise MangoLiteError(f"{p}: checkpoint file not found")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, foreign pickle ...
        raise MangoLiteError(f"{p}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise MangoLiteError(f"{p}: not a mango_lite checkpoint (expected a dict with format={FORMAT!r})")
    if int(obj.get("version", -1)) > VERSION:
        raise MangoLiteError(f"{p}: checkpoint version {obj.get('version')} is newer than this code ({VERSION})")
    for key in ("model", "epoch", "global_step"):
        if key not in obj:
            raise MangoLiteError(f"{p}: checkpoint lacks the {key!r} entry")
    obj["path"] = str(p)
    return obj


# ------------------------------------------------------------------------------------ file names
def epoch_checkpoint_path(out_dir: str | os.PathLike, epoch: int) -> Path:
    """``OUT/checkpoints/epoch_NNN.pt`` for ``epoch`` completed epochs (1-based)."""
    return Path(out_dir) / CHECKPOINT_DIR / f"epoch_{epoch:03d}.pt"


def list_epoch_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(epoch, path), ...]`` of the per-epoch checkpoints in ``OUT/checkpoints``, oldest first."""
    d = Path(out_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _EPOCH_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The per-epoch checkpoint with the highest epoch in ``out_dir``, or None."""
    ckpts = list_epoch_checkpoints(out_dir)
    return ckpts[-1][1] if ckpts else None


def find_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """For evaluation: ``OUT/best.pt`` if present, else the latest per-epoch checkpoint."""
    best = Path(out_dir) / BEST_NAME
    return best if best.is_file() else latest_checkpoint(out_dir)


def prune_epoch_checkpoints(out_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` per-epoch checkpoints (``keep <= 0`` keeps all).
    Returns the removed paths. Called only after the newest one was written successfully."""
    if keep <= 0:
        return []
    ckpts = list_epoch_checkpoints(out_dir)
    removed = []
    for _, p in ckpts[:-keep]:
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed

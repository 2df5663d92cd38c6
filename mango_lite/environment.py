"""Every environment variable mango_lite reads, read here, by the edges only.

The library (flows, models, data, metrics, training) takes each setting as an argument and reads no
environment variable; the edges resolve them: the command line (:mod:`mango_lite.cli`), the notebooks'
start-up (:mod:`mango_lite.notebook`, :func:`get_preset` as the notebooks import it) and the notebooks
themselves. ``tests/test_environment.py`` keeps it so and checks README documents each of
:data:`VARIABLES`. Outside this module only three standard variables are read where their meaning lives:
torchrun's ``WORLD_SIZE`` / ``LOCAL_RANK`` (``engine/distributed.py``) and ``DISPLAY`` (the plotting
backend, ``viz/plots.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MangoLiteError
from .presets import PRESET_NAMES, Preset, default_preset_name, get_preset as _named_preset

#: name -> what it sets (README's "Environment variables" section lists the same)
VARIABLES: dict[str, str] = {
    "MANGO_LITE_PRESET": "the preset of the command line and the notebooks when none is named (quick, cpu, gpu, paper)",
    "CI": "set (to anything but 0/false/no) by CI services: the preset defaults to quick",
    "MANGO_LITE_JOBS": "runs trained at once by reproduce and the studies when --jobs is not given",
    "MANGO_LITE_DATA_CACHE": "where generated stand-ins go when --data-cache is not given (default data/generated)",
    "MANGO_LITE_THREADS": "torch intra-op threads of the command line and the notebooks (default: 1 on small CPU machines)",
    "MANGO_LITE_RUNS": "where notebooks keep their run folders (default: `runs/` of the repository)",
    "MANGO_LITE_EPOCHS": "epochs of the notebooks' lab-length runs (default: a fraction of the preset's)",
    "MANGO_LITE_PAIRS": "translation pairs notebook 06 trains (comma-separated)",
    "MANGO_LITE_NYUDV2": "a real NYUDv2 folder for notebook 05 (default: the generated stand-in)",
    "MANGO_LITE_DATA_ROOT": "a folder of real datasets (nyudv2/, sunrgbd/, ...) for notebook 08",
}


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def in_ci() -> bool:
    """``CI`` is set to something other than ``""``, ``0``, ``false`` or ``no``."""
    return _raw("CI").lower() not in ("", "0", "false", "no")


def preset_name() -> str:
    """``MANGO_LITE_PRESET`` if set, else ``quick`` under CI, else the device's default (gpu with CUDA, cpu)."""
    name = _raw("MANGO_LITE_PRESET").lower()
    if name:
        if name not in PRESET_NAMES:
            raise MangoLiteError(f"MANGO_LITE_PRESET must be one of {PRESET_NAMES}, got {name!r}")
        return name
    return "quick" if in_ci() else default_preset_name()


def get_preset(name: str | None = None) -> Preset:
    """The preset a notebook or script runs at: ``name``, else :func:`preset_name` (the environment's).
    Library functions given no preset use :func:`mango_lite.presets.get_preset` instead, which reads nothing."""
    return _named_preset(name or preset_name())


def _positive_int(name: str) -> int | None:
    raw = _raw(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise MangoLiteError(f"{name} must be a positive integer, got {raw!r}")
    return value


def jobs() -> int | None:
    """``MANGO_LITE_JOBS`` (None when unset: the library chooses by cores and memory)."""
    return _positive_int("MANGO_LITE_JOBS")


def threads() -> int | None:
    """``MANGO_LITE_THREADS`` (None when unset: :func:`~mango_lite.utils.configure_threads` chooses)."""
    return _positive_int("MANGO_LITE_THREADS")


def epochs() -> int | None:
    """``MANGO_LITE_EPOCHS`` (None when unset: the notebook's lab-length fraction of the preset's epochs)."""
    return _positive_int("MANGO_LITE_EPOCHS")


def data_cache() -> Path | None:
    """``MANGO_LITE_DATA_CACHE`` (None when unset: ``data/generated``)."""
    raw = _raw("MANGO_LITE_DATA_CACHE")
    return Path(raw) if raw else None


def runs_dir(default: Path) -> Path:
    """``MANGO_LITE_RUNS``, else ``default``."""
    raw = _raw("MANGO_LITE_RUNS")
    return Path(raw) if raw else default


def pairs() -> list[str] | None:
    """``MANGO_LITE_PAIRS`` split at commas (None when unset)."""
    raw = _raw("MANGO_LITE_PAIRS")
    return [p.strip() for p in raw.split(",") if p.strip()] or None

"""The common start and end of the task notebooks: one call instead of a setup cell of thread pinning,
seeding, preset, device and folders.

    from mango_lite.notebook import start_notebook
    session = start_notebook("05_segmentation", keep_runs=True)   # prints one line: preset, device, threads, sizes
    ...                          # session.preset, session.device, session.work, session.tag("NYUDv2")
    print(session.finish())                                     # "notebook ran in 5.2 min (preset cpu, cpu (2 cores))"

Nothing here is needed to use the library; it keeps the notebooks' first cell about the notebook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from . import environment
from .presets import Preset
from .utils import configure_threads, device_name, pick_device, seed_everything

__all__ = ["NotebookSession", "start_notebook", "repository_root", "committed_run", "lab_epochs"]


def repository_root(cwd: str | os.PathLike | None = None) -> Path:
    """The folder the notebooks' relative paths start from: the repository root when run from
    ``notebooks/`` (Jupyter's default) or from the root itself (nbval, scripts), else the working folder."""
    here = Path(cwd) if cwd is not None else Path.cwd()
    return here.parent if here.name == "notebooks" else here


@dataclass
class NotebookSession:
    """What a task notebook needs from its first cell.

    ``preset``: from ``MANGO_LITE_PRESET``; ``device`` / ``device_label`` (e.g. ``cpu (2 cores)``);
    ``root``: :func:`repository_root`; ``work``: this notebook's folder for data and run folders
    (``runs/<name>/<preset>`` when runs are kept, else a temporary folder that :meth:`finish` removes);
    ``threads``: torch's intra-op threads in this kernel."""

    name: str
    preset: Preset
    device: torch.device
    device_label: str
    root: Path
    work: Path
    temporary: bool
    threads: int
    started: float = field(default_factory=time.time)

    def tag(self, data: str) -> str:
        """A figure label naming the data, the preset and the device: every figure says what it shows."""
        return f"{data}, preset {self.preset.name}, {self.device_label}"

    def shown(self, path: str | os.PathLike) -> str:
        """``path`` relative to the repository root, or only its name: outputs carry no machine paths."""
        p = Path(path)
        try:
            return str(p.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return p.name

    def minutes(self) -> float:
        return (time.time() - self.started) / 60

    def finish(self) -> str:
        """Remove the temporary work folder (kept runs stay) and return the closing line with the time."""
        if self.temporary:
            shutil.rmtree(self.work, ignore_errors=True)
        return f"notebook ran in {self.minutes():.1f} min (preset {self.preset.name}, {self.device_label})"


def start_notebook(name: str, *, seed: int = 0, keep_runs: bool = False, theme: bool = True,
                   verbose: bool = True) -> NotebookSession:
    """Set up a task notebook: seaborn's theme, torch threads (:func:`~mango_lite.utils.configure_threads`:
    one on small CPU-only machines), the global seed, the preset (``MANGO_LITE_PRESET``), the device, and
    the work folder. ``keep_runs``: run folders under ``MANGO_LITE_RUNS`` (default ``<root>/runs``)
    ``/<name>/<preset>``, reused by the next execution (a finished run is reloaded, not retrained);
    otherwise a temporary folder. Prints one line saying what was chosen unless ``verbose=False``."""
    if theme:
        try:
            import seaborn as sns

            sns.set_theme(style="whitegrid", context="notebook")
        except ImportError:  # plots keep matplotlib's defaults
            pass
    threads = configure_threads(environment.threads())
    seed_everything(seed)
    preset = environment.get_preset()
    device = pick_device()
    root = repository_root()
    if keep_runs:
        work = environment.runs_dir(root / "runs") / name / preset.name
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix=f"mango_lite_{name}_"))
    nb = NotebookSession(name=name, preset=preset, device=device, device_label=device_name(device), root=root,
                         work=work, temporary=not keep_runs, threads=threads)
    if verbose:
        p = preset
        print(f"preset={p.name}  device={nb.device_label}  threads={threads}  image={p.image_size}px  "
              f"epochs={p.epochs}  batch={p.batch_size}  width={p.width}  blocks/scale={p.blocks}  scales={p.scales}"
              + (f"\nruns -> {nb.shown(work)}" if keep_runs else ""))
    return nb


def lab_epochs(preset: Preset, fraction: float = 0.5, minimum: int = 2) -> int:
    """Epochs of a lab-length run: ``MANGO_LITE_EPOCHS`` when it is set, else ``fraction`` of the preset's
    epochs (rounded), at least ``minimum`` and at most the preset's.

    For a notebook that would not fit a lab session at the preset's full schedule: it trains this many
    epochs and says so, while the main job (``python -m mango_lite reproduce``) always trains the preset's.
    Raises MangoLiteError naming the variable when it is not a positive integer."""
    value = environment.epochs()
    if value is not None:
        return value
    return max(1, min(preset.epochs, max(minimum, round(fraction * preset.epochs))))


def committed_run(path: str | os.PathLike) -> dict[str, Any]:
    """How a committed notebook (``.ipynb``) was run, read from the notebook itself: ``preset`` and
    ``device`` from its first output line that names them (``None`` when it names none), ``seconds`` from
    the first cell's start to the last cell's reply in the execution metadata Jupyter records (``None``
    when it recorded none), and ``cells`` executed."""
    return run_record(json.loads(Path(path).read_text(encoding="utf-8")))


def run_record(nb: dict[str, Any]) -> dict[str, Any]:
    """:func:`committed_run` of a notebook already read (a JSON dict or an nbformat node)."""
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    text = "\n".join("".join(o.get("text", "")) for c in code for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")
    preset = re.search(r"preset[=: ]+(\w+)", text)
    device = re.search(r"device[=: ]+(\S+(?: \(\d+ cores\))?)", text)
    stamps = [c.get("metadata", {}).get("execution", {}) for c in code]
    stamps = [t for t in stamps if "iopub.execute_input" in t and "shell.execute_reply" in t]

    def when(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    seconds = None
    if stamps:
        seconds = (when(stamps[-1]["shell.execute_reply"]) - when(stamps[0]["iopub.execute_input"])).total_seconds()
    return {"preset": preset.group(1) if preset else None, "device": device.group(1) if device else None,
            "seconds": seconds, "cells": sum(1 for c in code if c.get("execution_count"))}


#: the place in a notebook source's header where the build writes the measured runtime
RUNTIME_MARKER = "{{runtime}}"


def runtime_sentence(record: dict[str, Any] | None) -> str:
    """How long the committed outputs took to make, from :func:`run_record`: "1.1 min at `cpu` on cpu
    (2 cores), as these outputs were made" (the preset and device as the notebook printed them)."""
    if not record or record.get("seconds") is None:
        return "not measured yet (no execution record)"
    s = float(record["seconds"])
    took = f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
    where = (f" at `{record['preset']}`" if record.get("preset") else "") + (
        f" on {record['device']}" if record.get("device") else "")
    return f"{took}{where}, as these outputs were made"


def interact_with_static(fn: Any, static: list[dict[str, Any]], **controls: Any) -> None:
    """``fn`` drawn once per setting in ``static`` (plain outputs, which a static rendering such as GitHub's
    or the book shows), then the same function behind ipywidgets controls for a running kernel (skipped,
    with a note, where ipywidgets is not installed). ``controls``: ``widgets.interact``'s keyword arguments."""
    for setting in static:
        fn(**setting)
    try:
        import ipywidgets as widgets
    except ImportError:
        print("(ipywidgets is not installed: the settings above are the static view; pip install 'mango_lite[notebooks]')")
        return
    widgets.interact(fn, **controls)

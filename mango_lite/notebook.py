"""The common start and end of the task notebooks: one call instead of a setup cell of thread pinning,
seeding, preset, device and folders.

    from mango_lite.notebook import start_notebook
    session = start_notebook("05_segmentation", keep_runs=True)   # prints one line: preset, device, threads, sizes
    ...                          # session.preset, session.device, session.work, session.tag("NYUDv2")
    print(session.finish())                                     # "notebook ran in 5.2 min (preset cpu, cpu (2 cores))"

Nothing here is needed to use the library; it keeps the notebooks' first cell about the notebook.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import environment
from .presets import Preset
from .reporting.notebook_runs import RUNTIME_MARKER, committed_run, run_record, runtime_sentence
from .utils import configure_threads, device_name, pick_device, seed_everything

__all__ = ["NotebookSession", "start_notebook", "repository_root", "committed_run", "run_record", "runtime_sentence",
           "RUNTIME_MARKER", "lab_epochs"]


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

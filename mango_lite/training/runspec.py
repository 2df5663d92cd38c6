"""What one training run computes (:class:`RunSpec`) and how it is carried out (:class:`RunOptions`).

Every launcher (one run, a reproduction, an ablation, a pre-registered study, a notebook's several models)
describes its runs with these two objects and hands them to :func:`~mango_lite.training.train_task` or the
executor (:mod:`~mango_lite.training.executor`), so a new option is added in one place::

    spec = RunSpec("segmentation", "mango", "quick", seed=1)
    train_task(spec, "runs/seg-mango", options=RunOptions(resume=True))

The split is by effect: two runs with equal :class:`RunSpec` (on the same data) give the same numbers;
:class:`RunOptions` say where and how they run, what is kept on disk and what is printed, and change no
metric. (``device`` is an option although bf16 autocast on CUDA moves the last digits: which machine runs
a spec is the caller's choice, recorded in every result.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import MangoLiteError
from ..presets import PRESET_NAMES, Preset, get_preset
from ..tasks import get_task

__all__ = ["RunSpec", "RunOptions", "resolve_preset"]


def resolve_preset(preset: str | Preset | None) -> Preset:
    """``preset`` as a :class:`~mango_lite.presets.Preset`: a name, a Preset, or None for the library's default
    (by device only; the ``MANGO_LITE_PRESET`` variable is read by the command line and notebooks, not here)."""
    if isinstance(preset, Preset):
        return preset
    try:
        return get_preset(preset)
    except ValueError as exc:
        raise MangoLiteError(f"unknown preset {preset!r}; expected one of {PRESET_NAMES}") from exc


def _optional_number(name: str, value: Any, kind: type, minimum: float = 0.0, strict: bool = True) -> Any:
    """``value`` as ``kind`` when it is None or a number above ``minimum`` (at least, unless ``strict``)."""
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (kind is not int or int(value) == value)
    if not ok or not (value > minimum if strict else value >= minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise MangoLiteError(f"RunSpec.{name}: expected {'an integer' if kind is int else 'a number'} {bound} or None, "
                             f"got {value!r}")
    return kind(value)


@dataclass(frozen=True)
class RunSpec:
    """One training run, as far as its numbers depend on it.

    ``task``: a registered task (:mod:`mango_lite.tasks`); ``model``: a model name of that task (fusion, unimodal,
    control or study variant, see :func:`~mango_lite.training.tasks.model_names`); ``preset``: a name or
    :class:`~mango_lite.presets.Preset` (None: the library default for this machine); ``seed``: initialisation,
    batch order and augmentation. ``pair`` (translation) and ``dataset`` pick the data (None: the task's
    default); ``data_root``: a folder holding the real dataset (None: the generated stand-in). ``epochs``,
    ``batch_size``, ``lr``, ``max_steps_per_epoch``: the preset's schedule changed for this run (None: the
    preset's). ``model_overrides``: model configuration fields (an ablation's variant). ``amp``: bf16 autocast
    on CUDA (ignored elsewhere). ``fid``: compute the FID/KID proxies of RGB translation targets."""

    task: str
    model: str
    preset: Preset = field(default=None)  # type: ignore[assignment]  # resolved in __post_init__
    seed: int = 0
    pair: str | None = None
    dataset: str | None = None
    data_root: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_steps_per_epoch: int | None = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    amp: bool = True
    fid: bool = True

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__  # a frozen dataclass normalises its own fields here only
        setattr_(self, "task", get_task(self.task).name)
        if not isinstance(self.model, str) or not self.model.strip():
            raise MangoLiteError(f"RunSpec.model: expected a model name, got {self.model!r}")
        setattr_(self, "model", self.model.strip().lower())
        setattr_(self, "preset", resolve_preset(self.preset))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise MangoLiteError(f"RunSpec.seed: expected an integer >= 0, got {self.seed!r}")
        pair = getattr(self.pair, "name", self.pair)  # a TranslationPair is stored by its name
        if pair is not None and not isinstance(pair, str):
            raise MangoLiteError(f"RunSpec.pair: expected a translation pair name or None, got {self.pair!r}")
        setattr_(self, "pair", pair)
        if self.data_root is not None:
            setattr_(self, "data_root", os.fspath(self.data_root))
        setattr_(self, "epochs", _optional_number("epochs", self.epochs, int, strict=False))
        setattr_(self, "batch_size", _optional_number("batch_size", self.batch_size, int))
        setattr_(self, "lr", _optional_number("lr", self.lr, float))
        setattr_(self, "max_steps_per_epoch", _optional_number("max_steps_per_epoch", self.max_steps_per_epoch, int))
        if not isinstance(self.model_overrides, Mapping):
            raise MangoLiteError(f"RunSpec.model_overrides: expected a mapping of model configuration fields, "
                                 f"got {type(self.model_overrides).__name__}")
        setattr_(self, "model_overrides", dict(self.model_overrides))

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with ``changes`` (validated like a new spec)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the preset as its full dictionary."""
        d = asdict(self)
        d["preset"] = self.preset.to_dict()
        return d


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out; none of these changes its metrics.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or None (the best available). ``resume``: continue
    from the run folder's last checkpoint (a finished run is evaluated again); without it a folder holding
    checkpoints is refused unless ``overwrite``. ``retrain_stale``: a folder refused as holding a run of a
    differently built model (an older mango_lite) is trained again from scratch instead. ``save_best`` /
    ``keep_checkpoints``: what stays on disk (``best.pt``; the newest per-epoch checkpoints, <= 0 all).
    ``progress`` (tqdm bars; None: in a terminal or notebook), ``verbose`` (a line per epoch), ``num_workers``
    (DataLoader workers), ``cache_dir`` (where stand-in data are generated; None: the default cache).
    ``checkpoint_flow``: MANGO's flow keeps only its blocks' inputs for the backward and recomputes the rest there
    (:func:`mango_lite.flows.use_activation_checkpointing`: less memory, a slower step, the same gradients).
    ``after_fit``: callables given the finished :class:`~mango_lite.training.Trainer` on the main process, e.g.
    :func:`mango_lite.viz.plots.write_run_curves` for ``curves.png`` (module-level functions, so a worker
    process receives them); the library adds none itself."""

    device: str | None = None
    resume: bool = False
    overwrite: bool = False
    retrain_stale: bool = False
    save_best: bool = True
    keep_checkpoints: int = 2
    progress: bool | None = None
    verbose: bool = True
    num_workers: int = 0
    cache_dir: str | None = None
    checkpoint_flow: bool = False
    after_fit: tuple[Callable[[Any], Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "after_fit", tuple(self.after_fit))
        if not all(callable(f) for f in self.after_fit):
            raise MangoLiteError(f"RunOptions.after_fit: expected callables, got {self.after_fit!r}")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise MangoLiteError(f"RunOptions.num_workers: expected an integer >= 0, got {self.num_workers!r}")
        if isinstance(self.keep_checkpoints, bool) or not isinstance(self.keep_checkpoints, int):
            raise MangoLiteError(f"RunOptions.keep_checkpoints: expected an integer, got {self.keep_checkpoints!r}")

    def replace(self, **changes: Any) -> RunOptions:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each ``after_fit`` callable by its dotted name."""
        d = asdict(self)
        d["after_fit"] = [f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}" for f in self.after_fit]
        return d

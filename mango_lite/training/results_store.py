"""The results store: how every launcher reads a run folder back, one set of rules for "this run is done".

A run folder written by :func:`~mango_lite.training.train_task` holds ``metrics.json`` (written atomically as the
run's last step, so it exists only for a finished run), whose ``spec`` entry describes the run: task, model, seed,
preset, data and the model configuration it was built with. Resuming a reproduction or a study, and summarising
one, asks this module instead of parsing the file itself:

* :func:`read_metrics`: the parsed ``metrics.json`` of a folder (None when there is none or it cannot be read).
* :func:`finished_run`: that, when it is a finished run of a :class:`~mango_lite.training.runspec.RunSpec`: the
  same model and seed, the preset's training fields (:func:`same_setting`), built with the spec's model
  overrides (:func:`built_with`), and, when asked, with exactly a given model configuration and every epoch of
  its schedule recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.history import History
from ..engine.trainer import config_differences
from ..models.config import ModelConfig
from ..presets import Preset, training_fields
from ..utils import json_normal
from .runspec import RunSpec

__all__ = ["read_metrics", "finished_run", "same_setting", "built_with", "METRICS_FILE"]

#: the file a finished run leaves in its folder (:func:`~mango_lite.training.train_task` writes it last)
METRICS_FILE = "metrics.json"


def read_metrics(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``folder/metrics.json`` parsed; None when the folder holds none or it cannot be read."""
    try:
        return json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def same_setting(spec: Mapping[str, Any], preset: Preset, seed: int) -> bool:
    """Whether a stored run description ``spec`` was trained at ``seed`` with ``preset``'s training fields
    (:func:`~mango_lite.presets.training_fields`: sizes, schedule, data, protocol; a field added later counts
    with the value the run trained under). The one test every resume path applies."""
    return spec.get("seed") == seed and training_fields(spec.get("preset") or {}) == training_fields(preset.to_dict())


def built_with(spec: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether the run's model was built with ``values`` (ModelConfig fields): read from the full stored
    configuration (a version-1 one as it was meant), so a value asked for explicitly matches a run that got it
    as the default of its day; runs that stored none are read from the keywords they were passed."""
    stored = spec.get("model_config")
    if stored:
        try:
            built = ModelConfig.from_dict(stored).to_dict()
        except (TypeError, ValueError):
            built = dict(stored)
    else:
        built = dict(spec.get("model_kwargs") or {})
    return all(json_normal(built.get(k)) == json_normal(v) for k, v in dict(values).items())


def finished_run(folder: str | os.PathLike, spec: RunSpec, *, model_config: Mapping[str, Any] | None = None,
                 whole_schedule: bool = False) -> dict[str, Any] | None:
    """The parsed ``metrics.json`` of ``folder`` when it holds a finished run of ``spec`` (same model, seed and
    preset training fields, built with ``spec.model_overrides``); otherwise None.

    ``model_config``: also require exactly this model configuration (a run of an older build of the model is
    then trained again, never reported under the current one). ``whole_schedule``: also require a history that
    reaches the schedule's last epoch (``spec.epochs`` when it sets one, else the stored preset's)."""
    done = read_metrics(folder)
    if done is None:
        return None
    stored = done.get("spec") or {}
    if stored.get("model") != spec.model or not same_setting(stored, spec.preset, spec.seed):
        return None
    if not built_with(stored, spec.model_overrides):
        return None
    if model_config is not None and config_differences(stored.get("model_config") or {"?": None}, model_config):
        return None
    if whole_schedule and not _whole_schedule(Path(folder), done, spec):
        return None
    return done


def _whole_schedule(folder: Path, done: Mapping[str, Any], spec: RunSpec) -> bool:
    if int(done.get("epochs_run", 0)) == 0 and not done.get("metrics"):
        return False
    history = History.load(folder).records if (folder / "history.json").is_file() else []
    epochs = spec.epochs or ((done.get("spec") or {}).get("preset") or {}).get("epochs", spec.preset.epochs)
    return bool(history) and history[-1].get("epoch") == epochs

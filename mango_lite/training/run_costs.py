"""Measured wall time per run, for the plan and the estimate a reproduction prints before it starts.

``run_costs.json`` (beside this module) holds, per preset, task and kind of model (``mango``, ``concat``,
``tokenfusion``, ``crossattn``, ``unimodal``), the median seconds of one finished run of a whole
reproduction, with the device it was measured on. Each run is timed in the worker that trained it, so
with runs sharing the machine the sum divided by the workers is the wall time to expect. It is written
from results files, never typed:

    python -m mango_lite.training.run_costs results/quick/results.json results/cpu/results.json
    python benchmarks/time_reproduction.py --preset cpu --keep runs/cpu --out ...   # a fresh cpu timing
    python -m mango_lite.training.run_costs results/quick/results.json runs/cpu/results.json

A plan at a preset without measurements gets no estimate rather than a guessed one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .tasks import CONTROL_MODELS, FUSION_MODELS

COSTS_PATH = Path(__file__).with_name("run_costs.json")


def model_kind(model: str) -> str:
    """``mango`` for MANGO and its controls, the fusion's name for a baseline, else ``unimodal``."""
    if model == "mango" or model in CONTROL_MODELS:
        return "mango"
    return model if model in FUSION_MODELS else "unimodal"


def measure_run_costs(results: Sequence[Mapping[str, Any] | str | os.PathLike]) -> dict[str, Any]:
    """``{preset: {"device", "source", "seconds": {task: {kind: median seconds}}}}`` from reproductions'
    ``results.json`` (their per-run ``wall_time_s``)."""
    out: dict[str, Any] = {}
    for r in results:
        res = json.loads(Path(r).read_text(encoding="utf-8")) if isinstance(r, (str, os.PathLike)) else r
        samples: dict[str, dict[str, list[float]]] = {}
        for entry in res["results"].values():
            for model, m in entry["models"].items():
                if "error" in m or not m.get("wall_time_s"):
                    continue
                samples.setdefault(entry["task"], {}).setdefault(model_kind(model), []).append(float(m["wall_time_s"]))
        out[res["preset"]] = {
            "device": res.get("device"), "git_commit": res.get("git_commit"),
            "seconds": {t: {k: round(statistics.median(v), 1) for k, v in kinds.items()} for t, kinds in samples.items()},
        }
    return out


def load_run_costs(path: str | os.PathLike | None = None) -> dict[str, Any]:
    p = Path(path) if path is not None else COSTS_PATH
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def estimate_seconds(preset: str, runs: Sequence[tuple[str, str]], costs: Mapping[str, Any] | None = None
                     ) -> tuple[float | None, str | None]:
    """Estimated total seconds of ``runs`` ((task, model) pairs) at ``preset`` run one after another,
    and the device the costs were measured on; ``(None, None)`` when any run has no measurement."""
    table = (costs if costs is not None else load_run_costs()).get(preset)
    if not table:
        return None, None
    total = 0.0
    for task, model in runs:
        sec = table["seconds"].get(task, {}).get(model_kind(model))
        if sec is None:
            return None, None
        total += sec
    return total, table.get("device")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mango_lite.training.run_costs", description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="results.json of finished reproductions (one per preset)")
    ap.add_argument("--out", default=str(COSTS_PATH))
    args = ap.parse_args(argv)
    from ..utils import atomic_write_json

    atomic_write_json(args.out, measure_run_costs(args.results))
    from ..utils import display_path

    print(f"wrote {display_path(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

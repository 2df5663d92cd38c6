"""How long the main job takes: one whole reproduction, timed, and compared run by run with a reference.

Runs ``reproduce(preset, jobs=N)`` into a scratch folder (nothing committed is touched), then writes a
summary: the wall time a user waits, the sum of the runs' own times, the plan's estimate printed before
the start, and how many runs reproduce the reference's metrics (default: the committed
``results/<preset>/results.json``). Every run is seeded by itself, so a difference means the code changed
what a run computes, not that it ran in a worker.

    python benchmarks/time_reproduction.py --preset cpu --jobs 2 --out benchmarks/results/reproduce_cpu_wall.json

The cpu preset takes tens of minutes on 2 cores; split nothing: the point is the time of the whole job.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

from mango_lite.training.executor import default_jobs
from mango_lite.training.reproduce import HEADLINE, plan_runs, reproduce
from mango_lite.training.run_costs import estimate_seconds
from mango_lite.utils import atomic_write_json, device_name


def compare(results: dict, reference: dict) -> dict:
    """Per run, whether the headline metric equals the reference's (to 1e-6 relative); the runs that
    differ with both values, and the largest relative difference. A reference trained in another
    environment (other CPU kernels, another build of a library) differs in the last digits, not more."""
    same, differ, missing = [], [], []
    for key, entry in results["results"].items():
        metric = HEADLINE[entry["task"]][0]
        ref_models = (reference.get("results", {}).get(key) or {}).get("models", {})
        for model, m in entry["models"].items():
            ref = ref_models.get(model, {}).get(metric)
            if ref is None or metric not in m:
                missing.append(f"{key}/{model}")
            elif math.isclose(m[metric], ref, rel_tol=1e-6, abs_tol=1e-9):
                same.append(f"{key}/{model}")
            else:
                differ.append({"run": f"{key}/{model}", "metric": metric, "value": m[metric], "reference": ref})
    largest = max((abs(d["value"] - d["reference"]) / max(abs(d["reference"]), 1e-12) for d in differ), default=0.0)
    return {"same": len(same), "differ": differ, "missing": missing, "max_rel_diff": largest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: every core)")
    ap.add_argument("--reference", default=None, help="results.json to compare with (default: results/<preset>/)")
    ap.add_argument("--keep", default=None, help="keep the reproduction in this folder instead of a scratch one")
    ap.add_argument("--out", required=True, help="write the summary as JSON here")
    args = ap.parse_args()
    jobs = args.jobs or default_jobs("cpu")
    groups = plan_runs(args.preset)
    runs = [(g.task, m) for g in groups for m in g.models]
    estimate, measured_on = estimate_seconds(args.preset, runs)
    ref_path = Path(args.reference or Path("results") / args.preset / "results.json")
    reference = json.loads(ref_path.read_text(encoding="utf-8")) if ref_path.is_file() else {"results": {}}
    with tempfile.TemporaryDirectory(prefix="mango_lite_time_reproduction_") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "reproduction"
        t0 = time.perf_counter()
        res = reproduce(args.preset, out, jobs=jobs, device="cpu", progress=False, verbose=True, overwrite=True)
        wall = time.perf_counter() - t0
    run_seconds = [m["wall_time_s"] for e in res["results"].values() for m in e["models"].values() if "wall_time_s" in m]
    summary = {
        "preset": args.preset, "jobs": jobs, "runs": len(runs), "wall_time_s": wall,
        "sum_of_run_times_s": sum(run_seconds), "plan_estimate_one_after_another_s": estimate,
        "plan_estimate_measured_on": measured_on, "reference": str(ref_path),
        "reference_commit": reference.get("git_commit"), "git_commit": res.get("git_commit"),
        "compared_with_reference": compare(res, reference),
        "device": device_name("cpu"), "torch": torch.__version__, "machine": platform.machine(),
    }
    c = summary["compared_with_reference"]
    print(f"{len(runs)} runs at preset {args.preset} in {jobs} workers: {wall / 60:.1f} min wall "
          f"({sum(run_seconds) / 60:.1f} min of runs); same headline metric as {ref_path}: {c['same']} of "
          f"{len(runs)} ({len(c['differ'])} differ, {len(c['missing'])} without a reference)")
    atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()

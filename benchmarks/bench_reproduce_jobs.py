"""Wall time of a reproduction trained in worker processes (``--jobs N``) against one run after another.

Each round runs the same reduced reproduction twice into fresh folders, first with ``jobs=1`` and then
with ``jobs=N`` (A B A B ...), so a noisy neighbour slows both alike; the speed-up is taken per round and
reported as median [min - max]. The stand-in data are generated once, before the first round, and
shared. Runs are seeded by themselves, so the two modes must also agree on every metric: the script
checks it.

    python benchmarks/bench_reproduce_jobs.py                        # quick preset, 3 rounds, N = cores
    python benchmarks/bench_reproduce_jobs.py --preset cpu --tasks genre --rounds 1
    python benchmarks/bench_reproduce_jobs.py --tasks genre --cluster local   # the sweep path through submitit

With ``--cluster local`` the second mode submits the runs as a job array through submitit's local
executor (the path a Slurm sweep takes, ``reproduce --cluster``), which starts every job at once: on a
small machine this measures the path's overhead and its agreement with one process, not a cluster's
speed-up.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mango_lite.training.executor import default_jobs
from mango_lite.training.reproduce import reproduce
from mango_lite.utils import atomic_write_json, device_name

GOAL = 1.7  # speed-up on 2 cores


def _metrics(res: dict) -> dict[str, float]:
    return {f"{k}:{m}": v.get("loss") for k, e in res["results"].items() for m, v in e["models"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--tasks", nargs="+", default=None, help="restrict the reproduction (default: all tasks)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None, help="workers of the parallel mode (default: every core)")
    ap.add_argument("--cluster", choices=["local"], default=None,
                    help="second mode: the runs as submitit local jobs instead of worker processes")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    jobs = args.jobs or default_jobs("cpu")
    if jobs < 2:
        sys.exit("bench_reproduce_jobs: needs at least 2 cores (or --jobs 2)")
    kw = dict(tasks=args.tasks, device="cpu", progress=False, verbose=False)
    with tempfile.TemporaryDirectory(prefix="mango_lite_bench_jobs_") as tmp:
        cache = Path(tmp) / "data"
        reproduce(args.preset, Path(tmp) / "warm", cache_dir=cache, jobs=1, **{**kw, "models": ["text"], "tasks": None})
        rows = []
        mode = f"submitit {args.cluster} jobs" if args.cluster else f"{jobs} workers"
        for r in range(args.rounds):
            t0 = time.perf_counter()
            serial = reproduce(args.preset, Path(tmp) / f"serial{r}", cache_dir=cache, jobs=1, **kw)
            t1 = time.perf_counter()
            if args.cluster:
                parallel = reproduce(args.preset, Path(tmp) / f"parallel{r}", cache_dir=cache,
                                     cluster={"executor": args.cluster, "timeout_min": 60}, **kw)
            else:
                parallel = reproduce(args.preset, Path(tmp) / f"parallel{r}", cache_dir=cache, jobs=jobs, **kw)
            t2 = time.perf_counter()
            same = _metrics(serial) == _metrics(parallel)
            rows.append({"serial_s": t1 - t0, "parallel_s": t2 - t1, "speedup": (t1 - t0) / (t2 - t1), "same_metrics": same})
            print(f"round {r + 1}: one after another {t1 - t0:.0f} s, {mode} {t2 - t1:.0f} s, "
                  f"speed-up {rows[-1]['speedup']:.2f}x, same metrics: {same}", flush=True)
    sp = [r["speedup"] for r in rows]
    runs = sum(len(e["models"]) for e in serial["results"].values())
    summary = {
        "preset": args.preset, "tasks": args.tasks or "all", "runs": runs, "jobs": jobs, "rounds": rows,
        "speedup_median": statistics.median(sp), "speedup_min": min(sp), "speedup_max": max(sp), "goal": GOAL,
        "device": device_name("cpu"), "torch": torch.__version__, "machine": platform.machine(),
        "same_metrics_every_round": all(r["same_metrics"] for r in rows),
        "cluster": args.cluster,
    }
    print(f"{runs} runs, {mode}: speed-up {summary['speedup_median']:.2f}x "
          f"[{summary['speedup_min']:.2f}-{summary['speedup_max']:.2f}]" + ("; " if args.cluster else f" (goal {GOAL}x); ")
          + f"identical metrics in every round: {summary['same_metrics_every_round']}")
    if args.out:
        atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()

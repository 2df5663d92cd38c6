"""Wall time of one training run on several processes (DDP, started by ``torchrun``) against one process.

Each round trains the same run twice into fresh folders, exactly as a user types it,
``torchrun --standalone --nproc_per_node N -m mango_lite train ...``, first with N = 1 and then with
N = ``--procs`` (A B A B ...), one torch thread per process, so a noisy neighbour slows both alike. The
speed-up is taken per round and reported as median [min - max], for the whole command (start-up and
validation included) and for the optimisation alone (the epochs' ``train_time_s`` in the run's history).
The stand-in data are generated once, before the first round, and shared.

DDP splits every global batch of the same seeded order across the processes, so both modes optimise the
same objective; dropout and augmentation draw other random numbers on each process, so the metrics are
close, not equal. The script reports the relative difference of the final validation loss.

    python benchmarks/bench_ddp.py                                 # segmentation MANGO, cpu preset, 2 epochs
    python benchmarks/bench_ddp.py --model concat --epochs 4 --rounds 3 --out benchmarks/results/bench_ddp_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mango_lite.training.tasks import default_dataset, prepare_data
from mango_lite.utils import atomic_write_json, device_name


def _train(procs: int, args: argparse.Namespace, out: Path, cache: Path) -> tuple[float, dict, float]:
    torchrun = shutil.which("torchrun")
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node", str(procs), "-m", "mango_lite", "train",
           "--task", args.task, "--model", args.model, "--preset", args.preset, "--epochs", str(args.epochs),
           "--device", "cpu", "--quiet", "--data-cache", str(cache), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench_ddp: {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return wall, json.loads((out / "metrics.json").read_text(encoding="utf-8")), sum(h["train_time_s"] for h in history)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="segmentation")
    ap.add_argument("--model", default="mango")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of every run (default 2: the time is per step)")
    ap.add_argument("--procs", type=int, default=2, help="processes of the DDP mode")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if args.procs < 2:
        sys.exit("bench_ddp: --procs must be at least 2")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mango_lite_bench_ddp_") as tmp:
        cache = Path(tmp) / "data"
        prepare_data(default_dataset(args.task), args.preset, cache_dir=cache)  # not inside the first round
        for r in range(args.rounds):
            one_wall, one, one_train = _train(1, args, Path(tmp) / f"one{r}", cache)
            many_wall, many, many_train = _train(args.procs, args, Path(tmp) / f"many{r}", cache)
            if many["spec"]["processes"] != args.procs:
                sys.exit(f"bench_ddp: expected a run on {args.procs} processes, metrics.json says "
                         f"{many['spec']['processes']}")
            loss1, loss2 = one["metrics"]["loss"], many["metrics"]["loss"]
            rows.append({"one_process_s": one_wall, "ddp_s": many_wall, "speedup": one_wall / many_wall,
                         "one_process_train_s": one_train, "ddp_train_s": many_train,
                         "train_speedup": one_train / many_train,
                         "one_process_run_s": one["wall_time_s"], "ddp_run_s": many["wall_time_s"],
                         "val_loss_one": loss1, "val_loss_ddp": loss2,
                         "val_loss_rel_diff": abs(loss2 - loss1) / max(abs(loss1), 1e-12)})
            print(f"round {r + 1}: 1 process {one_wall:.1f} s, {args.procs} processes {many_wall:.1f} s "
                  f"(x{rows[-1]['speedup']:.2f}; optimisation alone x{rows[-1]['train_speedup']:.2f}); validation "
                  f"loss {loss1:.4f} vs {loss2:.4f}", flush=True)
    speedups = [row["speedup"] for row in rows]
    train_speedups = [row["train_speedup"] for row in rows]
    summary = {
        "task": args.task, "model": args.model, "preset": args.preset, "epochs": args.epochs,
        "procs": args.procs, "backend": "gloo", "rounds": rows,
        "speedup_median": statistics.median(speedups), "speedup_min": min(speedups), "speedup_max": max(speedups),
        "train_speedup_median": statistics.median(train_speedups), "train_speedup_min": min(train_speedups),
        "train_speedup_max": max(train_speedups),
        "val_loss_rel_diff_max": max(row["val_loss_rel_diff"] for row in rows),
        "device": device_name("cpu"), "cores": os.cpu_count(), "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(f"{args.task}/{args.model} at {args.preset}, {args.epochs} epochs: {args.procs} DDP processes "
          f"x{summary['speedup_median']:.2f} [{min(speedups):.2f}-{max(speedups):.2f}] over one process; "
          f"validation loss within {100 * summary['val_loss_rel_diff_max']:.1f} %")
    if args.out:
        atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()

"""Throughput of the procedural scene renderer (all modalities) and of the dataset writers.

Renders frames ``seed = 0 .. N-1`` with :func:`mango_lite.datasets.synth.scenes.render_scene` (scene
sampling + camera + every returned modality) and prints frames per second against the 50 fps goal at
128 x 128. ``--workers 2`` splits the seeds over two processes (the goal is stated for 2 cores).
``--writers`` also times the three writers (rendering + encoding + PNG/JPEG writes) per sample.

    python benchmarks/bench_renderer.py                 # 200 frames, 128 px, 1 process
    python benchmarks/bench_renderer.py --workers 2
    python benchmarks/bench_renderer.py --n 50 --writers
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

GOAL_FPS = 50.0


def _render_range(args: tuple[int, int, int]) -> int:
    from mango_lite.datasets.synth.scenes import render_scene

    start, stop, size = args
    for s in range(start, stop):
        render_scene(s, size)
    return stop - start


def bench_render(n: int, size: int, workers: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock frames per second of ``repeats`` runs over ``n`` frames each, and (one process only)
    frames per CPU-second of this process, which is less sensitive to other jobs sharing the cores."""
    _render_range((10**6, 10**6 + 2, size))  # warm-up: imports and ray cache in this process
    rates, cpu_rates = [], []
    for _ in range(repeats):
        if workers <= 1:
            t0, c0 = time.perf_counter(), time.process_time()
            _render_range((0, n, size))
            rates.append(n / (time.perf_counter() - t0))
            cpu_rates.append(n / (time.process_time() - c0))
        else:
            chunks = [(n * w // workers, n * (w + 1) // workers, size) for w in range(workers)]
            with ProcessPoolExecutor(workers) as ex:
                list(ex.map(_render_range, [(10**6, 10**6 + 1, size)] * workers))  # warm the workers
                t0 = time.perf_counter()
                done = sum(ex.map(_render_range, chunks))
                rates.append(done / (time.perf_counter() - t0))
    return rates, cpu_rates


def bench_writers(n: int, size: int) -> dict[str, float]:
    from mango_lite.datasets.synth.writers import write_nyudv2, write_sunrgbd, write_taskonomy

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("nyudv2", write_nyudv2), ("sunrgbd", write_sunrgbd), ("taskonomy", write_taskonomy)):
            t0 = time.perf_counter()
            fn(os.path.join(tmp, name), n, size, 0)
            out[name] = n / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="frames per run")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--writers", action="store_true", help="also time the three dataset writers")
    args = ap.parse_args()

    rates, cpu_rates = bench_render(args.n, args.size, args.workers, args.repeats)
    fps = statistics.median(rates)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"renderer: {args.n} frames of {args.size}x{args.size}, all modalities, {args.workers} process(es), "
          f"{os.cpu_count()} cpu(s) visible, 1-min load average {load:.2f}")
    print(f"  runs (wall-clock fps): {', '.join(f'{r:.1f}' for r in rates)}")
    if cpu_rates:
        print(f"  frames per CPU-second of this process: {statistics.median(cpu_rates):.1f} "
              f"(x {os.cpu_count()} cores = {statistics.median(cpu_rates) * (os.cpu_count() or 1):.0f} fps "
              f"if the cores were free)")
    verdict = "PASS" if fps >= GOAL_FPS else "MISS"
    note = "" if args.size == 128 else " (goal is stated for 128 px)"
    print(f"  median: {fps:.1f} frames/s  ({1000.0 / fps:.1f} ms/frame)  goal {GOAL_FPS:.0f} fps: {verdict}{note}")
    if args.writers:
        wn = max(4, min(args.n, 40))
        for name, r in bench_writers(wn, args.size).items():
            print(f"  writer {name}: {r:.1f} samples/s ({wn} samples, files included)")


if __name__ == "__main__":
    main()

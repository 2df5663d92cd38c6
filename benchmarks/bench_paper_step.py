"""Training-step time of MANGO against TokenFusion at the ``paper`` preset, and what one real-data run costs.

Both models are built as ``train --preset paper`` builds them (segmentation, NYUDv2 shapes, batch 8 at
256 px), with the encoders trained from scratch: pretrained weights are not part of the repository, and the
encoders are the same in both models, so the ratio is the fusions'. The two steps are interleaved
(:func:`mango_lite.timing.interleaved`) and the ratio reported as median [min - max] over the pairs; each
model's forward FLOPs and the peak memory of one step are recorded beside it. MANGO is timed a second time with
its flow's activations recomputed in the backward (``mango+checkpointed``, interleaved with MANGO): what
activation checkpointing saves in memory and costs in time. One run =
the preset's 100 epochs over NYUDv2's 795 (SUN RGB-D's 5,285) training images at that step time.

    python benchmarks/bench_paper_step.py --out benchmarks/results/bench_paper_step_cpu.json
    python benchmarks/bench_paper_step.py --device cuda --out benchmarks/results/bench_paper_step_gpu.json
"""

from __future__ import annotations

import argparse
import platform

import torch

from mango_lite.presets import get_preset
from mango_lite.training.cost import train_step_timings
from mango_lite.utils import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved MANGO / TokenFusion pairs after a warm-up")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on the CPU (default: all cores)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset("paper").with_encoders(encoder="conv")
    r = train_step_timings(args.device, preset, models=("mango", "tokenfusion", "mango+checkpointed"), pairs=args.pairs)
    r.update(threads=torch.get_num_threads(), torch=torch.__version__, pairs=args.pairs,
             machine=platform.processor() or platform.machine(), encoders="trained from scratch (ConvEncoder)")
    q = r["first_over"]["tokenfusion"]
    print(f"paper preset, segmentation, batch {r['batch']} at {r['image_size']} px on {r['device']}, "
          f"{r['threads']} threads:")
    for name, m in r["models"].items():
        print(f"  {name:12s} {m['step_ms'] / 1e3:8.2f} s per step   {m['params'] / 1e6:6.2f} M params   "
              f"{m['forward_gflops']:6.1f} forward GFLOPs   peak step memory {m['peak_step_mib']:7.0f} MiB")
    c = r["first_over"]["mango+checkpointed"]
    print(f"  MANGO / TokenFusion {q['ratio']:.2f}x [{q['ratio_min']:.2f}-{q['ratio_max']:.2f}]; "
          f"MANGO / MANGO checkpointed {c['ratio']:.2f}x [{c['ratio_min']:.2f}-{c['ratio_max']:.2f}]")
    for ds, minutes in r["run_minutes"].items():
        print(f"  one {ds} run of MANGO: {minutes / 60:.1f} h")
    if args.out:
        atomic_write_json(args.out, r)


if __name__ == "__main__":
    main()

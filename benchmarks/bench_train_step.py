"""Training-step time of MANGO's task model against concat (and MANGO's earlier layout), interleaved.

The models are built exactly as ``train_task`` builds them at the preset (segmentation, NYUDv2-sized
inputs, the preset's batch), one torch thread. Each round times one optimizer step of every model in
turn (A B C A B C ...), so a noisy neighbour slows all of them alike; after the warm-up rounds the
ratios to concat are taken per round and reported as median [min - max]. A ratio whose spread reaches
past the goal is flagged: it cannot be told apart from the goal on this machine.

    python benchmarks/bench_train_step.py                  # cpu preset, 9 rounds
    python benchmarks/bench_train_step.py --preset quick --rounds 3
    python benchmarks/bench_train_step.py --preset gpu --device cuda --out results/gpu/bench_train_step_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from mango_lite.engine.cost import forward_flops
from mango_lite.models import ModelConfig, build_model, count_parameters
from mango_lite.presets import get_preset
from mango_lite.utils import device_name

#: MANGO's task-model layout before the mechanisms study (the paper's upper triangle, no positions,
#: gamma = tanh(g), token-sequence coupling conditioner, NLL weight 0.01, the NLL's gradient into the encoders)
BEFORE = {"flow_alternate": False, "flow_positions": False, "flow_gamma_rate": 1.0, "flow_conditioner": "tokens",
          "flow_weight": 0.01, "flow_nll_to_encoders": True}
GOAL = 2.0  # MANGO's step at most 2x concat's


def device_sync(device: torch.device):
    """A function that waits for ``device``'s queued work (CUDA calls return before it is done); a no-op on the CPU."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def segmentation_model(fusion: str, preset, device: torch.device, **overrides) -> torch.nn.Module:
    """The segmentation model ``fusion`` at ``preset`` (NYUDv2's RGB + depth, 40 classes), seed 0, in training
    mode on ``device``: the model every step benchmark times (this one, profile_train_step, bench_compile)."""
    kw = dict(in_channels=(3, 1), num_outputs=40, image_size=preset.image_size, width=preset.width,
              blocks=preset.blocks, scales=preset.scales, flow_weight=preset.flow_weight)
    torch.manual_seed(0)
    return build_model(ModelConfig(task="segmentation", fusion=fusion, **{**kw, **overrides})).to(device).train()


def segmentation_batch(preset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch (RGB, depth, labels) of the preset's size from a seeded generator, on ``device``."""
    g = torch.Generator().manual_seed(0)
    size, bs = preset.image_size, preset.batch_size
    a, b = torch.randn(bs, 3, size, size, generator=g), torch.randn(bs, 1, size, size, generator=g)
    y = torch.randint(0, 40, (bs, size, size), generator=g)
    return a.to(device), b.to(device), y.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds after the warm-up")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (synchronised around every timed step)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)

    sync = device_sync(device)

    p = get_preset(args.preset)
    size, bs = p.image_size, p.batch_size
    # MANGO's default keeps the likelihood's gradient out of the encoders (a nested pass back through the flow, input
    # gradients only); mango-nll-encoders is the same model with the paper's joint objective, so the pair shows its cost
    variants = {"concat": ("concat", {}), "mango": ("mango", {}),
                "mango-nll-encoders": ("mango", {"flow_nll_to_encoders": True}), "mango (before)": ("mango", BEFORE)}
    a, b, y = segmentation_batch(p, device)
    models, opts = {}, {}
    for name, (fusion, over) in variants.items():
        models[name] = segmentation_model(fusion, p, device, **over)
        opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)

    def step(name: str) -> float:
        m, opt = models[name], opts[name]
        sync()
        t0 = time.perf_counter()
        loss, _ = m.loss(m(a, b), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {n: [] for n in models}
    for r in range(args.warmup + args.rounds):
        for n in models:
            t = step(n)
            if r >= args.warmup:
                times[n].append(t)
    print(f"training step, segmentation at preset {p.name}: batch {bs}, {size} px, {device_name(device)}, 1 thread, "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up")
    rows = {}
    for n in models:
        ratios = [t / c for t, c in zip(times[n], times["concat"])]
        med, lo, hi = statistics.median(ratios), min(ratios), max(ratios)
        flag = ""
        if n != "concat" and lo <= GOAL <= hi:
            flag = f"  (spread straddles the goal {GOAL}x: undecided on this machine)"
        # the arithmetic of one forward pass: a step ratio below the FLOP ratio needs MANGO's FLOPs to run faster
        # than concat's, so the FLOP ratio is what the step ratio comes to at equal efficiency
        rows[n] = {"median_ms": 1000 * statistics.median(times[n]), "ratio_to_concat": med, "ratio_min": lo,
                   "ratio_max": hi, "params": count_parameters(models[n])["total"],
                   "forward_gflops": forward_flops(models[n], a, b) / 1e9}
        print(f"  {n:16s} {rows[n]['median_ms']:7.0f} ms   / concat {med:5.2f}x [{lo:.2f}-{hi:.2f}]   "
              f"{rows[n]['params'] / 1e6:.2f} M params   {rows[n]['forward_gflops']:.2f} forward GFLOPs{flag}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"preset": p.name, "batch": bs, "image_size": size, "threads": 1, "rounds": args.rounds,
                   "goal_ratio": GOAL, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                   "device": device_name(device), "models": rows}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(out)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

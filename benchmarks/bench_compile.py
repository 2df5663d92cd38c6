"""``torch.compile`` on MANGO's training step: compile time, step time against eager, same gradients.

Two copies of MANGO's segmentation model from one seed (built as ``bench_train_step.py`` builds them); one is
wrapped in ``torch.compile``. The gradients of one step are compared first (largest difference relative to each
gradient's largest entry), then the two steps are timed interleaved (eager, compiled, eager, ...) after the
compiled one's warm-up, which is reported as the compile time.

    python benchmarks/bench_compile.py --preset quick
    python benchmarks/bench_compile.py --preset gpu --device cuda --out results/gpu/bench_compile_gpu.json
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from bench_train_step import device_sync, segmentation_batch, segmentation_model  # benchmarks/ (this script's folder)

from mango_lite.presets import get_preset
from mango_lite.timing import interleaved
from mango_lite.utils import atomic_write_json, device_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--mode", default=None, help="torch.compile mode (default: its default)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    p = get_preset(args.preset)
    eager = segmentation_model("mango", p, device)
    base = copy.deepcopy(eager)
    # the fusion adds Gaussian noise to the features in training: inductor draws its own random numbers unless
    # told to use eager's, and the gradient comparison needs the same draws (reseeded before each step)
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    compiled = torch.compile(base, mode=args.mode, dynamic=False)  # the step's shapes never change
    size, bs = p.image_size, p.batch_size
    a, b, y = segmentation_batch(p, device)

    sync = device_sync(device)

    def grads(model, owner) -> dict[str, torch.Tensor]:
        torch.manual_seed(1)  # the same training noise for both
        owner.zero_grad(set_to_none=True)
        loss, _ = owner.loss(model(a, b), y)
        loss.backward()
        return {n: q.grad.detach().clone() for n, q in owner.named_parameters() if q.grad is not None}

    report = {"preset": p.name, "batch": bs, "image_size": size, "device": device_name(device), "torch": torch.__version__,
              "mode": args.mode, "same_noise": True}
    t0 = time.perf_counter()
    try:
        gc = grads(compiled, base)
        sync()
        report["compile_s"] = time.perf_counter() - t0
    except Exception as exc:  # a finding, not a crash: what failed to compile
        report["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        print(f"torch.compile failed: {report['error']}")
        if args.out:
            atomic_write_json(Path(args.out), report)
        return
    ge = grads(eager, eager)
    # relative to the largest gradient entry of the whole model (a zero-initialised layer's own gradient can be
    # ~0, where any rounding is "large"), and the parameter where compiled and eager differ most
    scale = max(float(v.abs().max()) for v in ge.values())
    diffs = {n: float((gc[n] - ge[n]).abs().max()) for n in ge}
    name = max(diffs, key=diffs.get)
    worst = diffs[name] / scale
    report.update(gradient_max_rel_diff=worst, gradients_compared=len(ge), worst_parameter=name,
                  worst_parameter_grad_max=float(ge[name].abs().max()), worst_parameter_diff=diffs[name],
                  missing_in_compiled=sorted(set(ge) - set(gc)))

    def step(model, owner, opt) -> None:
        loss, _ = owner.loss(model(a, b), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    oe = torch.optim.AdamW(eager.parameters(), lr=1e-4)
    oc = torch.optim.AdamW(base.parameters(), lr=1e-4)
    r = interleaved(lambda: step(compiled, base, oc), lambda: step(eager, eager, oe), args.pairs, sync=sync)
    report.update(compiled_ms=1e3 * r["a_s"], eager_ms=1e3 * r["b_s"], compiled_over_eager=r["ratio"],
                  ratio_min=r["ratio_min"], ratio_max=r["ratio_max"], pairs=args.pairs)
    print(f"torch.compile, MANGO at preset {p.name} on {report['device']}: compile {report['compile_s']:.0f} s, "
          f"step {report['compiled_ms']:.1f} ms vs eager {report['eager_ms']:.1f} ms = {r['ratio']:.2f}x "
          f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]; gradients differ by at most {worst:.1e} (relative)")
    if args.out:
        atomic_write_json(Path(args.out), report)


if __name__ == "__main__":
    main()

"""Where MANGO's training step spends its time, by phase, by module and by operator, on one device.

The models are built as ``train`` builds them at the preset (segmentation, NYUDv2-sized inputs, the preset's
batch; at ``paper`` with the encoders trained from scratch, as ``bench_paper_step.py``). Four views of the same
step:

* **phases** (no hooks): forward, loss, backward (MANGO's includes the flow-only likelihood's second
  backward) and the optimizer, each bracketed by device synchronisation; medians over the timed steps, for
  MANGO and for concat as the reference;
* **modules**: the forward time of the encoders, the flow, the rest of the fusion and the head, and inside the
  flow by layer type (ICA, coupling, ActNorm, ...), from forward hooks that synchronise the device. The
  hooks cost time themselves, so read the shares, not the totals;
* **operators**: ``torch.profiler`` over a few steps: kernels launched per step and the operators with the
  most self time on the device (CPU time on the CPU);
* **dispatched operators**: every operator one step sends to the backend, views left out (on a GPU each of
  the rest is a kernel launch, so this counts launches on any device), by phase, and per flow layer of each
  type in the forward: what a layer costs in launches where the device waits for them.

    python benchmarks/profile_train_step.py --preset cpu
    python benchmarks/profile_train_step.py --preset paper --steps 3 --out benchmarks/results/profile_train_step_paper_cpu.json
    python benchmarks/profile_train_step.py --preset gpu --device cuda --out results/gpu/profile_train_step_gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from bench_train_step import device_sync, segmentation_batch  # benchmarks/ (this script's folder)
from torch.utils._python_dispatch import TorchDispatchMode

from mango_lite.presets import get_preset
from mango_lite.training.cost import preset_model
from mango_lite.utils import atomic_write_json, device_name


def phase_times(model: torch.nn.Module, batch: tuple, steps: int, warmup: int, sync: Callable[[], None]) -> dict:
    """Median milliseconds of each phase of an optimizer step."""
    a, b, y = batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times: dict[str, list[float]] = defaultdict(list)
    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        sync()
        out = model(a, b)
        sync()
        marks.append(time.perf_counter())
        loss, _ = model.loss(out, y)
        sync()
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        opt.step()
        sync()
        marks.append(time.perf_counter())
        if i >= warmup:
            for name, t0, t1 in zip(("forward", "loss", "backward", "optimizer"), marks, marks[1:]):
                times[name].append(1e3 * (t1 - t0))
    med = {k: statistics.median(v) for k, v in times.items()}
    med["step"] = sum(med.values())
    return med


def module_times(model: torch.nn.Module, batch: tuple, steps: int, sync: Callable[[], None]) -> dict:
    """Forward milliseconds per step: top-level parts, and the flow's layers summed by type (hooks synchronise)."""
    a, b, _ = batch
    parts = {n: m for n, m in model.named_children()}
    flow = getattr(getattr(model, "fusion", None), "flow", None)
    layer_types: dict[str, list[torch.nn.Module]] = defaultdict(list)
    if flow is not None:
        for m in flow.modules():
            if m is not flow and not list(m.children()) or type(m).__name__ in ("InvertibleCrossAttention", "Coupling"):
                layer_types[type(m).__name__].append(m)
        # a module counted inside a counted parent is left out (ICA's and the coupling's inner layers)
        counted = {id(m) for name in ("InvertibleCrossAttention", "Coupling") for m in layer_types.get(name, [])}
        inner = {id(c) for m in flow.modules() if id(m) in counted for c in m.modules() if c is not m}
        layer_types = defaultdict(list, {k: [m for m in v if id(m) not in inner] for k, v in layer_types.items()})
    totals: dict[str, float] = defaultdict(float)
    handles = []

    def watch(label: str, module: torch.nn.Module) -> None:
        start: list[float] = []

        def pre(*_):
            sync()
            start.append(time.perf_counter())

        def post(*_):
            sync()
            totals[label] += 1e3 * (time.perf_counter() - start.pop())

        handles.extend([module.register_forward_pre_hook(pre), module.register_forward_hook(post)])

    for n, m in parts.items():
        watch(n, m)
    if flow is not None:
        watch("fusion.flow", flow)
        for t, mods in layer_types.items():
            for m in mods:
                watch(f"flow: {t}", m)
    with torch.no_grad():
        model(a, b)  # warm-up
    totals.clear()
    with torch.no_grad():
        for _ in range(steps):
            model(a, b)
    for h in handles:
        h.remove()
    return {k: v / steps for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def operator_table(model: torch.nn.Module, batch: tuple, steps: int, device: torch.device, top: int = 15) -> dict:
    """torch.profiler over ``steps`` optimizer steps: kernels per step and the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    a, b, y = batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss, _ = model.loss(model(a, b), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    on_device = device.type == "cuda"

    def self_time(e) -> float:
        if on_device:
            return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))
        return float(e.self_cpu_time_total)

    rows = sorted(events, key=self_time, reverse=True)[:top]
    total = sum(self_time(e) for e in events)
    kernels = None
    if on_device:
        kernels = sum(e.count for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
        kernels = kernels / steps
    return {"time_kind": "self device time" if on_device else "self CPU time", "kernels_per_step": kernels,
            "operators": [{"name": e.key, "calls_per_step": e.count / steps, "ms_per_step": self_time(e) / 1e3 / steps,
                           "share": self_time(e) / total if total else None} for e in rows]}


class _DispatchCounter(TorchDispatchMode):
    """Counts the non-view operators dispatched below autograd, under the label the hooks set."""

    def __init__(self) -> None:
        super().__init__()
        self.label = "forward"
        self.counts: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if not func.is_view:
            self.counts[self.label] += 1
        return func(*args, **(kwargs or {}))


def dispatched_operators(model: torch.nn.Module, batch: tuple) -> dict:
    """Non-view operators of one optimizer step, by phase (forward with the loss, backward, optimizer), and in the
    forward per flow layer of each type (ICA by partition): a GPU launches one kernel for each."""
    a, b, y = batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    layers: dict[str, list[torch.nn.Module]] = defaultdict(list)
    for m in model.modules():
        name = type(m).__name__
        if name == "InvertibleCrossAttention":
            layers[f"ICA {m.partition_name}"].append(m)
        elif name in ("ActNorm", "Coupling"):
            layers[name].append(m)
    counter = _DispatchCounter()
    handles = []
    for label, mods in layers.items():
        for m in mods:
            def pre(*_, label=label) -> None:
                counter.label = label

            def post(*_) -> None:
                counter.label = "forward"

            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    model.loss(model(a, b), y)[0].backward()  # ActNorm's initialisation and the optimizer's state, not counted
    opt.step()
    opt.zero_grad(set_to_none=True)
    with counter:
        loss, _ = model.loss(model(a, b), y)
        counter.label = "backward"
        loss.backward()
        counter.label = "optimizer"
        opt.step()
    for h in handles:
        h.remove()
    c = counter.counts
    per_layer = {label: c.get(label, 0) / len(mods) for label, mods in sorted(layers.items())}
    forward = c.get("forward", 0) + sum(c.get(label, 0) for label in layers)
    return {"forward": forward, "backward": c.get("backward", 0), "optimizer": c.get("optimizer", 0),
            "step": forward + c.get("backward", 0) + c.get("optimizer", 0), "per_layer_forward": per_layer,
            "layers": {label: len(mods) for label, mods in sorted(layers.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per view")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    p = get_preset(args.preset)
    if p.name == "paper":  # no pretrained weights travel with the repository: encoders from scratch in both models
        p = p.with_encoders(encoder="conv")

    def build(fusion: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return preset_model("segmentation", fusion, p).to(device).train()

    sync = device_sync(device)

    size, bs = p.image_size, p.batch_size
    batch = segmentation_batch(p, device)
    report = {"preset": p.name, "batch": bs, "image_size": size, "device": device_name(device), "torch": torch.__version__,
              "steps": args.steps, "phases": {}}
    for fusion in ("concat", "mango"):
        report["phases"][fusion] = phase_times(build(fusion), batch, args.steps, 2, sync)
    mango = build("mango")
    report["modules"] = module_times(mango, batch, args.steps, sync)
    report["operators"] = operator_table(mango, batch, max(2, args.steps // 2), device)
    report["dispatched"] = {fusion: dispatched_operators(build(fusion), batch) for fusion in ("concat", "mango")}
    print(f"MANGO's training step at preset {p.name} (batch {bs}, {size} px) on {report['device']}")
    for fusion, ph in report["phases"].items():
        print(f"  {fusion:7s} " + "  ".join(f"{k} {v:7.1f} ms" for k, v in ph.items()))
    print("  forward by module (hooks synchronise; shares matter):")
    for k, v in report["modules"].items():
        print(f"    {k:36s} {v:8.2f} ms")
    ops = report["operators"]
    kernels = f", {ops['kernels_per_step']:.0f} kernels per step" if ops["kernels_per_step"] else ""
    print(f"  operators by {ops['time_kind']}{kernels}")
    for o in ops["operators"]:
        print(f"    {o['name'][:48]:48s} {o['ms_per_step']:8.2f} ms  {o['calls_per_step']:7.0f} calls  {100 * o['share']:5.1f} %")
    for fusion, d in report["dispatched"].items():
        print(f"  {fusion}: {d['step']} operators dispatched per step (views left out): forward {d['forward']}, "
              f"backward {d['backward']}, optimizer {d['optimizer']}")
    per_layer = report["dispatched"]["mango"]["per_layer_forward"]
    print("  MANGO's forward, operators per flow layer: " + ", ".join(f"{k} {v:.0f}" for k, v in per_layer.items()))
    if args.out:
        atomic_write_json(Path(args.out), json.loads(json.dumps(report, default=float)))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

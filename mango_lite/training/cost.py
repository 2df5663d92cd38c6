"""Computational cost of a model on one batch: parameters, forward FLOPs, train-step and inference time,
peak memory (the paper's Table 8 asks the same of MANGO vs TokenFusion).

    from mango_lite.training.cost import measure_cost, task_costs
    c = measure_cost(model, rgb, depth, labels, steps=10)      # one model, one batch
    rows = task_costs("segmentation", ["mango", "concat"], "cpu")  # every model of a task at a preset

What is measured (``measure_cost``), all on a deep copy so the caller's model is left untouched
(ActNorm's data-dependent initialisation on the first batch would otherwise change it):

* ``train_step_ms``: median wall time of forward + loss + backward (+ an AdamW step with
  ``optimizer=True``) over ``steps`` repetitions after ``warmup`` ones; ``train_step_ms_iqr`` = (25 %,
  75 %) quantiles. CUDA is synchronised around each repetition.
* ``infer_ms``: median of a forward pass in ``eval()`` mode under ``torch.no_grad()``.
* ``peak_train_mb`` / ``peak_infer_mb``: the peak of the bytes allocated by torch *during* one train step
  / one inference pass, above what was allocated before it (parameters, inputs and the optimizer state
  are therefore not included; activations kept for backward, gradients and temporaries are). On CUDA
  from ``torch.cuda.max_memory_allocated``; on the CPU from the allocation / free events that
  ``torch.profiler`` records with ``profile_memory=True``, summed in time order (``tracemalloc`` does not
  see torch's allocator and the process RSS is dominated by the allocator's caching, so neither is used).
* ``forward_gflops``: FLOPs of one forward pass counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls, convolutions, attention; element-wise ops, ``solve_triangular`` and ``slogdet`` are not
  counted, so this is a lower bound that favours neither MANGO nor the baselines much).

Timings on a shared CPU are noisy: compare models measured in the same call, and read the IQR.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import MangoLiteError
from ..utils import device_name, pick_device

__all__ = ["measure_cost", "peak_memory_bytes", "forward_flops", "task_costs", "COST_KEYS"]

COST_KEYS = ("params", "forward_gflops", "train_step_ms", "infer_ms", "peak_train_mb", "peak_infer_mb")
_MB = 1024.0**2


# --------------------------------------------------------------------------------- helpers
def _to(x: Any, device: torch.device) -> Any:
    """Tensors (also inside lists/tuples/dicts) to ``device``; strings and others unchanged."""
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], Tensor):
        return type(x)(_to(v, device) for v in x)
    return x


def _pred(output: Any) -> Tensor:
    """The prediction tensor of a model output (``ModelOutput.pred``, a tensor, or the first of a tuple)."""
    if isinstance(output, Tensor):
        return output
    if hasattr(output, "pred"):
        return output.pred
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise MangoLiteError(f"measure_cost: cannot find a tensor in the model output of type {type(output).__name__}")


def _default_loss(model: nn.Module, target: Any) -> Callable[[Any], Tensor]:
    """``model.loss(output, target)`` (first element if it returns a tuple) when the model has a
    ``loss`` method and a target is given, else the mean square of the prediction (any scalar with a graph
    costs the same backward pass through the model)."""
    if target is not None and callable(getattr(model, "loss", None)):
        def f(out: Any) -> Tensor:
            res = model.loss(out, target)  # type: ignore[operator]
            return (res[0] if isinstance(res, tuple) else res).float()
        return f
    return lambda out: _pred(out).float().pow(2).mean()


def _call(model: nn.Module, a: Any, b: Any) -> Any:
    """``model(a)`` when there is no second input (plain modules), else ``model(a, b)``."""
    return model(a) if b is None else model(a, b)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _time_ms(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Wall times (ms) of ``steps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's C++ side prints start/stop lines and a
    "block allocated before profiling" warning there, which would clutter notebooks and logs.
    Python exceptions are unaffected (they are raised, not printed, inside the block)."""
    import os
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (some embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by torch while ``fn()`` runs, above the allocation level before it (>= 0).

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: the ``[memory]`` events of
    ``torch.profiler`` (one per allocation, positive, and per free, negative ``nbytes``), cumulated in
    time order; the maximum of that running sum is the peak. Only allocations made inside ``fn`` count,
    so a tensor freed inside ``fn`` that was allocated before it can make the running sum negative - the
    peak is then clipped at 0."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return max(0, int(torch.cuda.max_memory_allocated(device)) - int(base))
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr_fd(), profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                     record_shapes=False) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    if not events:
        return 0
    events.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for e in events:
        # events of other devices (none on a CPU-only run) would carry a device_type other than CPU
        if int(e.device_type()) != int(torch._C._autograd.DeviceType.CPU):  # type: ignore[attr-defined]
            continue
        running += int(e.nbytes())
        peak = max(peak, running)
    return int(peak)


def forward_flops(model: nn.Module, batch_a: Any, batch_b: Any = None) -> int:
    """FLOPs of one forward pass (``FlopCounterMode``; see the module docstring for what it counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _call(model, batch_a, batch_b)
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------- measure
def _quantile(ts: Sequence[float], p: float) -> float:
    """The ``p`` quantile of ``ts``, linear between order statistics."""
    s = sorted(ts)
    k = (len(s) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _step_functions(net: nn.Module, a: Any, b: Any, loss_fn: Callable[[Any], Tensor], params: Sequence[Tensor],
                    opt: torch.optim.Optimizer | None) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one training step, one inference) of ``net`` on the batch, as :func:`measure_cost` times them."""
    def train_step() -> None:
        net.train()
        out = _call(net, a, b)
        loss = loss_fn(out)
        if not torch.isfinite(loss.detach()):
            raise MangoLiteError(f"measure_cost: non-finite loss ({float(loss.detach())}) on the given batch")
        loss.backward()
        if opt is not None:
            opt.step()
        # free the gradients so every repetition allocates them afresh (as zero_grad(set_to_none) does)
        for p in params:
            p.grad = None

    @torch.no_grad()
    def infer() -> None:
        net.eval()
        _call(net, a, b)

    return train_step, infer


def measure_cost(
    model: nn.Module,
    batch_a: Any,
    batch_b: Any = None,
    target: Any = None,
    *,
    steps: int = 10,
    warmup: int = 2,
    device: str | torch.device | None = None,
    loss_fn: Callable[[Any], Tensor] | None = None,
    optimizer: bool = False,
    memory: bool = True,
    flops: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Parameters, FLOPs, time and peak memory of ``model`` on one batch.

    Args:
        model: ``forward(batch_a, batch_b)`` (``forward(batch_a)`` when ``batch_b`` is None); a
            :class:`mango_lite.models.TaskModel` or any module. It is deep-copied, so the caller's weights
            and buffers are not changed.
        batch_a, batch_b: the model inputs, e.g. RGB (B, 3, H, W) float32 and depth (B, 1, H, W) float32;
            ``batch_b`` may be a list of str (genre plots) or None (a unimodal model reading ``a`` only).
        target: passed to ``model.loss(output, target)`` for the train step (segmentation labels
            (B, H, W) int64, ...). Without it (or without ``model.loss``) ``loss_fn(output)`` is used,
            default the mean square of the prediction.
        steps, warmup: timed and untimed repetitions (>= 1 and >= 0).
        device: where to measure (None: :func:`mango_lite.utils.pick_device`).
        optimizer: also time an AdamW step (its state is excluded from the memory peak).
        memory, flops: skip the (slower) memory profile / FLOP count when False (values None).
        threads: torch intra-op threads during the measurement (None: unchanged).

    Returns:
        ``{"params", "forward_gflops", "train_step_ms", "train_step_ms_iqr": (q25, q75), "infer_ms",
        "infer_ms_iqr", "peak_train_mb", "peak_infer_mb", "batch_size", "device", "steps", "threads",
        "memory_method"}`` - times in milliseconds, memory in MiB (2**20 bytes), params an int.
    """
    if int(steps) < 1 or int(warmup) < 0:
        raise MangoLiteError(f"measure_cost: steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if not isinstance(model, nn.Module):
        raise MangoLiteError(f"measure_cost: model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        dev = pick_device(None if device is None else str(device))
    except (ValueError, RuntimeError) as exc:
        raise MangoLiteError(f"measure_cost: device: {exc}") from exc
    net = copy.deepcopy(model).to(dev)
    a, b, y = _to(batch_a, dev), _to(batch_b, dev), _to(target, dev)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-12) if optimizer and params else None  # tiny lr: weights barely move
    train_step, infer = _step_functions(net, a, b, loss_fn or _default_loss(net, y), params, opt)
    bs = next((int(x.shape[0]) for x in (a, b) if isinstance(x, Tensor)), len(b) if isinstance(b, Sequence) else None)
    with _threads(threads):
        train_step()  # first call: data-dependent initialisations (ActNorm), optimizer state creation
        t_train = _time_ms(train_step, int(steps), int(warmup), dev)
        t_inf = _time_ms(infer, int(steps), int(warmup), dev)
        peak_train = peak_memory_bytes(train_step, dev) if memory else None
        peak_inf = peak_memory_bytes(infer, dev) if memory else None
        gflops = None
        if flops:
            net.eval()
            gflops = forward_flops(net, a, b) / 1e9

    q = _quantile
    return {
        "params": int(sum(p.numel() for p in params)),
        "forward_gflops": gflops,
        "train_step_ms": statistics.median(t_train),
        "train_step_ms_iqr": (q(t_train, 0.25), q(t_train, 0.75)),
        "infer_ms": statistics.median(t_inf),
        "infer_ms_iqr": (q(t_inf, 0.25), q(t_inf, 0.75)),
        "peak_train_mb": None if peak_train is None else peak_train / _MB,
        "peak_infer_mb": None if peak_inf is None else peak_inf / _MB,
        "batch_size": bs,
        "device": device_name(dev),
        "steps": int(steps),
        "threads": torch.get_num_threads() if threads is None else int(threads),
        "optimizer_step": opt is not None,
        "memory_method": None if not memory else ("cuda max_memory_allocated" if dev.type == "cuda"
                                                   else "torch.profiler [memory] events"),
    }


def task_costs(
    task: str,
    models: Sequence[str] | None = None,
    preset: Any = None,
    *,
    data: Any = None,
    data_root: Any = None,
    pair: str | None = None,
    dataset: str | None = None,
    cache_dir: Any = None,
    batch_size: int | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    **measure_kw: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`measure_cost` for every model of ``task`` (default: the four fusions and the two unimodal
    models) built exactly as :func:`mango_lite.training.train_task` builds them at ``preset``, on the
    first training batch (``batch_size``, default the preset's) of the task's data. Returns
    ``{model: cost dict}`` plus, per model, ``"params_fusion"`` (parameters of the fusion module alone),
    ``"task"`` and ``"data"`` (what the batch came from). ``measure_kw`` go to :func:`measure_cost`."""
    from torch.utils.data import DataLoader

    from ..models import count_parameters
    from ..utils import seed_everything
    from .tasks import (
        FUSION_MODELS,
        _preset,
        build_task_data,
        build_task_model,
        check_task,
        control_overrides,
        make_adapter,
        model_kwargs,
        resolve_model,
        unimodal_names,
    )

    task = check_task(task)
    preset = _preset(preset)
    if data is None:
        data = build_task_data(task, preset, data_root, pair, dataset, cache_dir, log=log)
    names = list(models) if models else list(FUSION_MODELS + unimodal_names(task, data.pair))
    bs = int(batch_size or preset.batch_size)
    loader = DataLoader(data.train, batch_size=min(bs, len(data.train)), shuffle=False)  # type: ignore[arg-type]
    batch = next(iter(loader))
    adapter = make_adapter(data, fid=False)
    cpu = torch.device("cpu")
    a, b = adapter.inputs(batch, cpu)
    y = adapter.target(batch, cpu)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        fusion = resolve_model(task, name, data.pair)
        seed_everything(seed)
        over = {**control_overrides(name), **dict(model_overrides or {})}
        net = build_task_model(task, fusion, model_kwargs(task, data, preset, over))
        if log:
            log(f"cost {task} {name}")
        c = measure_cost(net, a if fusion != "b" else None, b if fusion != "a" else None, y, **measure_kw)
        c["params_fusion"] = count_parameters(net).get("fusion")
        c["task"] = task
        c["data"] = data.info.source
        out[name] = c
    return out


#: what the models of each task read when no data is at hand: (input channels, outputs, extra ModelConfig
#: keywords): NYUDv2 RGB + depth -> 40 classes; Shade + Texture -> RGB; MM-IMDb poster + 300-d plot vector
#: (the GMU release) -> 23 genres
_COUNT_SHAPES: dict[str, tuple[tuple[int, int], int, dict[str, Any]]] = {
    "segmentation": ((3, 1), 40, {}),
    "translation": ((1, 3), 3, {}),
    "genre": ((3, 3), 23, {"text_encoder": "vector", "text_dim": 300}),
}

#: what the paper says about its Table 8 (the numbers themselves are not in the public sources)
TABLE8_CLAIM = "MANGO has more parameters (and a longer inference time) than lighter fusions such as TokenFusion"


def preset_model(task: str, name: str, preset: Any) -> nn.Module:
    """Model ``name`` (a fusion or a MANGO control) of ``task`` built as ``train`` builds it at ``preset``, with
    the data shapes of :data:`_COUNT_SHAPES` (no data needed)."""
    from types import SimpleNamespace

    from .tasks import _preset, build_task_model, control_overrides, model_kwargs, resolve_model

    preset = _preset(preset)
    channels, outputs, extra = _COUNT_SHAPES[task]
    data = SimpleNamespace(in_channels=channels, num_outputs=outputs, model_kwargs=extra)
    return build_task_model(task, resolve_model(task, name), model_kwargs(task, data, preset, control_overrides(name)))


def parameter_counts(preset: Any = None, tasks: Sequence[str] | None = None,
                     models: Sequence[str] = ("mango", "tokenfusion", "crossattn", "concat")) -> dict[str, Any]:
    """Trainable parameters of ``models`` on ``tasks`` exactly as ``train`` / ``reproduce`` build them at
    ``preset`` (no data needed: the shapes of NYUDv2, Shade + Texture -> RGB and MM-IMDb's vectors).

    A preset whose encoders need weights that were not given (the ``paper`` preset without
    ``with_encoders(encoder_weights=...)``) is counted with encoders trained from scratch, and says so in
    ``"encoders"``. Returns ``{"preset", "encoders", "claim", "tasks": {task: {model: {"total", "encoders",
    "fusion", "head"}}}, "claim_holds": {task: bool}}`` (MANGO heavier than TokenFusion)."""
    from ..models import count_parameters
    from .tasks import TASK_NAMES, _preset

    preset = _preset(preset)
    encoders = "as the preset builds them"
    needs_weights = any(
        dict(v.get("model", {})).get("encoder", "conv") != "conv" and not dict(v.get("model", {})).get("encoder_weights")
        for k, v in (preset.tasks or {}).items() if k in TASK_NAMES
    )
    if needs_weights:
        preset = preset.with_encoders(encoder="conv")
        encoders = "trained from scratch (ConvEncoder): no pretrained weights given"
    out: dict[str, Any] = {"preset": preset.name, "encoders": encoders, "claim": TABLE8_CLAIM, "tasks": {},
                           "claim_holds": {}}
    for task in tasks or TASK_NAMES:
        rows: dict[str, dict[str, int]] = {}
        for name in models:
            net = preset_model(task, name, preset)
            rows[name] = count_parameters(net)
            del net
        out["tasks"][task] = rows
        if "mango" in rows and "tokenfusion" in rows:
            out["claim_holds"][task] = rows["mango"]["total"] > rows["tokenfusion"]["total"]
    return out


def parameter_markdown(counts: Mapping[str, Any]) -> str:
    """The counts of :func:`parameter_counts` as a Markdown table (millions), with Table 8's claim checked."""
    lines = [f"# Parameters at the `{counts['preset']}` preset", "",
             f"Encoders: {counts['encoders']}. Millions of trainable parameters, built as `train` builds them.", "",
             "| task | model | total | encoders | fusion | head |", "|---|---|---:|---:|---:|---:|"]
    for task, rows in counts["tasks"].items():
        for name, c in rows.items():
            lines.append(f"| {task} | {name} | {c['total'] / 1e6:.2f} | {c['encoders'] / 1e6:.2f} | "
                         f"{c['fusion'] / 1e6:.2f} | {c['head'] / 1e6:.2f} |")
    holds = counts.get("claim_holds", {})
    if holds:
        yes = [t for t, v in holds.items() if v]
        lines += ["", f"Paper, Table 8: {counts['claim']}. Here MANGO has more parameters than TokenFusion on "
                      f"{len(yes)} of {len(holds)} tasks" + (f" ({', '.join(yes)})." if yes else ".")]
    return "\n".join(lines) + "\n"


#: training samples of one epoch of the real datasets (NYUDv2 795, SUN RGB-D 5,285, Taskonomy subset 1,000,
#: MM-IMDb 15,552), to turn a step time into the time of one run
REAL_TRAIN_SIZES: dict[str, int] = {"nyudv2": 795, "sunrgbd": 5285, "taskonomy": 1000, "mmimdb": 15552}


def train_step_timings(device: str | torch.device, preset: Any, models: Sequence[str] = ("mango", "tokenfusion"),
                       task: str = "segmentation", pairs: int = 5, amp: bool = True) -> dict[str, Any]:
    """One optimizer step (forward, loss, backward, AdamW) of each of ``models`` at ``preset``'s batch and image
    size on ``device``, interleaved (:func:`mango_lite.timing.interleaved`, the first model against each
    other one), bf16 autocast on CUDA when ``amp``. Segmentation models get NYUDv2's shapes.

    Returns ``{"preset", "device", "batch", "image_size", "models": {name: {"step_ms", "params"}},
    "first_over": {name: {"ratio", "ratio_min", "ratio_max"}} (the first model's step over ``name``'s),
    "run_minutes": {dataset: minutes of one run of the first model at the preset's epochs}}``."""
    from ..timing import interleaved
    from ..utils import device_name
    from .tasks import _preset

    preset = _preset(preset)
    dev = torch.device(device)
    bs, size = int(preset.batch_size), int(preset.image_size)
    channels, outputs, _ = _COUNT_SHAPES[task]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(bs, channels[0], size, size, generator=g).to(dev)
    b = torch.randn(bs, channels[1], size, size, generator=g).to(dev)
    y = torch.randint(0, outputs, (bs, size, size), generator=g).to(dev)
    use_amp = amp and dev.type == "cuda"

    def stepper(name: str) -> tuple[Callable[[], None], int]:
        torch.manual_seed(0)
        net = preset_model(task, name, preset).to(dev).train()
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-12)

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
                loss, _ = net.loss(net(a, b), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step, int(sum(p.numel() for p in net.parameters() if p.requires_grad))

    steps = {name: stepper(name) for name in models}
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    first = models[0]
    out: dict[str, Any] = {"preset": preset.name, "device": device_name(dev), "batch": bs, "image_size": size,
                           "task": task, "amp": use_amp, "first": models[0], "models": {}, "first_over": {}}
    first_ms: list[float] = []
    for name in models[1:]:
        r = interleaved(steps[first][0], steps[name][0], pairs, sync=sync)
        first_ms.append(1e3 * r["a_s"])
        out["models"][name] = {"step_ms": 1e3 * r["b_s"], "params": steps[name][1]}
        out["first_over"][name] = {"ratio": r["ratio"], "ratio_min": r["ratio_min"], "ratio_max": r["ratio_max"]}
    out["models"][first] = {"step_ms": statistics.median(first_ms) if first_ms else float("nan"),
                            "params": steps[first][1]}
    ms = out["models"][first]["step_ms"]
    out["run_minutes"] = {ds: math.ceil(n / bs) * int(preset.epochs) * ms / 6e4
                          for ds, n in REAL_TRAIN_SIZES.items() if ds in ("nyudv2", "sunrgbd")}
    return out

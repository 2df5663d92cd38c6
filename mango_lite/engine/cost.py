"""Computational cost of a model on one batch: parameters, forward FLOPs, train-step and inference time,
peak memory (the paper's Table 8 asks the same of MANGO vs TokenFusion).

    from mango_lite.engine.cost import measure_cost
    c = measure_cost(model, rgb, depth, labels, steps=10)      # one model, one batch
    # every model of a task at a preset: mango_lite.training.cost.task_costs("segmentation", preset="cpu")

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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import MangoLiteError
from ..utils import device_name, pick_device

__all__ = ["measure_cost", "peak_memory_bytes", "saved_for_backward_bytes", "forward_flops", "COST_KEYS"]

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


def saved_for_backward_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the tensors autograd keeps for the backward while ``fn()`` runs (a forward pass), each storage
    counted once (a saved-tensors hook): the training memory a module holds between its forward and its
    backward, on any device and independent of the allocator."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


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

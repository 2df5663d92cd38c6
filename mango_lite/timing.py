"""Paired timing for ratios that survive a noisy machine.

On a shared machine the speed of one side of a comparison drifts with its neighbours. Timing the two
sides alternately (A B A B ...) exposes both to the same drift, and the per-round ratio A/B cancels most of
it; its median with the min-max says how far the figure can be trusted. Used by ``benchmarks/`` and by
the GPU window (:mod:`mango_lite.training.accelerator`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["interleaved"]


def interleaved(a: Callable[[], Any], b: Callable[[], Any], pairs: int,
                sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Time ``a`` and ``b`` alternately for ``pairs`` rounds after one warm-up call of each.

    ``sync`` is called before and after every timed call (``torch.cuda.synchronize`` on a GPU, where calls
    return before the work is done). Returns seconds: ``a_s`` and ``b_s`` (medians), ``ratio`` (median of the
    per-round a/b), ``ratio_min``, ``ratio_max`` and ``pairs``."""
    if pairs < 1:
        raise ValueError(f"interleaved: pairs must be >= 1, got {pairs}")
    wait = sync or (lambda: None)
    a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(pairs):
        wait()
        t0 = time.perf_counter()
        a()
        wait()
        t1 = time.perf_counter()
        b()
        wait()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    ratios = [x / y for x, y in zip(ta, tb)]
    return {"a_s": statistics.median(ta), "b_s": statistics.median(tb), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "pairs": pairs}

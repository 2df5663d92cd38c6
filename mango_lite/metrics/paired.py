"""Paired comparisons over seeds: the statistic every "A beats B" sentence of the studies rests on.

Two models trained with the same seeds (same data, same initialisation seed, same batch order) give paired
scores ``a_k``, ``b_k``. What varies from seed to seed is largely shared, so the question "is A better than
B" is about the differences ``d_k = a_k - b_k``: their mean, their sample standard deviation ``s`` and the
Student t interval ``mean +- t_{1 - alpha/2, n - 1} s / sqrt(n)``. (Comparing the two models' unpaired
standard deviations instead hides a small but consistent difference under the seed-to-seed spread.)

:func:`t_quantile` computes the Student t quantile from the regularised incomplete beta function (a
continued fraction, Numerical Recipes section 6.4) and bisection, so no SciPy is needed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["PairedDifference", "paired_difference", "t_quantile", "t_cdf", "slope_interval"]


def _betacf(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-15) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = ``p`` (Student, ``df`` degrees of freedom), by bisection on :func:`t_cdf`."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must lie in (0, 1), got {p}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class PairedDifference:
    """Differences ``a - b`` over ``n`` paired seeds: mean, sample sd, t interval at ``level``, and the
    count of seeds where ``a`` is ahead (``wins``, by the direction ``higher_is_better``)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    level: float
    wins: int
    differences: tuple[float, ...]

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval excludes 0 (in the metric's good direction, as given to
        :func:`paired_difference`), else "no difference shown"."""
        if self.n < 2:
            return "no difference shown"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no difference shown"

    def to_dict(self) -> dict:
        return {**asdict(self), "differences": list(self.differences), "verdict": self.verdict}


def paired_difference(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True,
                      level: float = 0.95) -> PairedDifference:
    """Paired differences of two models' per-seed scores, signed so that positive means ``a`` is better.

    ``a[k]`` and ``b[k]`` must come from the same seed. The interval is Student's t at ``level`` on the
    ``n - 1`` degrees of freedom of the differences (no interval, ``low = high = mean``, when n = 1)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference: expected two equally long, non-empty score lists, got {len(a)} and {len(b)}")
    sign = 1.0 if higher_is_better else -1.0
    d = [sign * (float(x) - float(y)) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n == 1:
        return PairedDifference(1, mean, float("nan"), mean, mean, level, int(d[0] > 0), tuple(d))
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return PairedDifference(n, mean, sd, mean - half, mean + half, level, sum(x > 0 for x in d), tuple(d))


def unpaired_half_width(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the interval of ``mean(a) - mean(b)`` when the pairing by seed is ignored: Welch's t
    (the two samples' variances added, Welch-Satterthwaite degrees of freedom). Beside
    :func:`paired_difference`'s interval it shows what pairing buys when the seeds move both models together."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"unpaired_half_width: expected at least 2 scores per model, got {len(a)} and {len(b)}")
    va = statistics.variance([float(x) for x in a]) / len(a)
    vb = statistics.variance([float(x) for x in b]) / len(b)
    if va + vb == 0:
        return 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t_quantile(0.5 + level / 2.0, df) * math.sqrt(va + vb)


def slope_interval(levels: Sequence[float], per_seed: Sequence[Sequence[float]], level: float = 0.95) -> dict:
    """Does a per-seed quantity rise with ``levels``? The least-squares slope of ``per_seed[k]`` (one value per
    level) for each seed k, then the mean slope with its t interval over seeds."""
    x = [float(v) for v in levels]
    xm = sum(x) / len(x)
    sxx = sum((v - xm) ** 2 for v in x)
    if sxx == 0:
        raise ValueError("slope_interval: needs at least two different levels")
    slopes = []
    for ys in per_seed:
        ym = sum(ys) / len(ys)
        slopes.append(sum((v - xm) * (y - ym) for v, y in zip(x, ys)) / sxx)
    res = paired_difference(slopes, [0.0] * len(slopes), True, level)
    return {"slopes": slopes, "mean": res.mean, "sd": res.sd, "low": res.low, "high": res.high, "level": level,
            "verdict": {"better": "rises", "worse": "falls"}.get(res.verdict, "no trend shown")}

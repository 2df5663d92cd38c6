"""Small text helpers for the prose that notebooks and analyses write from a run's numbers.

* :func:`ordinal` - 1 -> "first", ..., 10 -> "tenth", then "11th", "12th", ...
* :func:`span` - the range of some values as printed: "19.0 to 21.3", or one number when both ends
  print the same.

Plain Python and NumPy only (no plotting import), so any module or notebook cell can use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["ordinal", "span"]

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def ordinal(n: int) -> str:
    """1 -> "first", ..., 10 -> "tenth", then "11th", "12th", ..."""
    return _ORDINALS[n - 1] if 1 <= n <= len(_ORDINALS) else f"{n}th"


def span(values: Iterable[float], digits: int = 1, *, fmt: Callable[[float], str] | None = None,
         sep: str = " to ") -> str:
    """The smallest and largest of ``values`` (NaN ignored) as they print: "0.40 to 0.51", or one number
    when both ends print the same ("0.4" for 0.41 and 0.43 at ``digits=1``).

    ``digits``: decimals of each end; ``fmt``: a formatter used instead (e.g. a percentage); ``sep``: what
    stands between the two ends."""
    arr = np.asarray(list(values), dtype=float)
    show = fmt or (lambda v: f"{v:.{digits}f}")
    lo, hi = show(float(np.nanmin(arr))), show(float(np.nanmax(arr)))
    return lo if lo == hi else f"{lo}{sep}{hi}"

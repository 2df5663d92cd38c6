"""mango_lite.viz.words: the ordinal and range wording that notebook prose is written with."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mango_lite.viz import genres as gx
from mango_lite.viz.words import ordinal, span


def test_ordinal_words_then_suffix():
    assert [ordinal(n) for n in (1, 2, 3, 4, 10)] == ["first", "second", "third", "fourth", "tenth"]
    assert ordinal(11) == "11th" and ordinal(0) == "0th"
    assert gx.ordinal is ordinal  # viz.genres uses the shared helper


def test_span_collapses_when_both_ends_print_the_same():
    assert span([20.71, 20.74]) == "20.7"
    assert span([0.401, 0.404], 2) == "0.40"
    assert span([3.0]) == "3.0"


def test_span_range_and_digits():
    assert span([21.3, 19.04, 20.7]) == "19.0 to 21.3"
    assert span([0.4, 0.514], 2) == "0.40 to 0.51"
    assert span([2.4, 7.6], 0) == "2 to 8"
    assert span([1.0, 2.0], sep="-") == "1.0-2.0"


def test_span_reads_series_and_arrays_and_skips_nan():
    assert span(pd.Series([0.25, 0.5]), 2) == "0.25 to 0.50"
    assert span(np.array([np.nan, 1.0, 2.0])) == "1.0 to 2.0"
    assert span([0.123, 0.456], fmt=lambda v: f"{100 * v:.0f} %") == "12 % to 46 %"

"""Paired per-seed statistics (mango_lite.metrics.paired)."""

from __future__ import annotations

import math

import pytest

from mango_lite.metrics.paired import paired_difference, slope_interval, t_cdf, t_quantile


@pytest.mark.parametrize("df, q975", [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (10, 2.2281389), (1000, 1.9623391)])
def test_t_quantiles_match_the_tables(df, q975):
    assert t_quantile(0.975, df) == pytest.approx(q975, rel=1e-6)
    assert t_quantile(0.025, df) == pytest.approx(-q975, rel=1e-6)
    assert t_cdf(0.0, df) == pytest.approx(0.5)


def test_t_cdf_of_one_degree_is_the_cauchy_cdf():
    for t in (-3.0, -0.4, 0.7, 5.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-10)


def test_paired_difference_interval_and_verdicts():
    a, b = [10.0, 11.0, 12.5], [9.0, 10.2, 11.3]
    r = paired_difference(a, b)
    d = [1.0, 0.8, 1.2]
    sd = math.sqrt(sum((x - 1.0) ** 2 for x in d) / 2)
    assert r.mean == pytest.approx(1.0) and r.sd == pytest.approx(sd)
    assert r.low == pytest.approx(1.0 - 4.3026527 * sd / math.sqrt(3), rel=1e-6)
    assert r.verdict == "better" and r.wins == 3
    # lower is better (an error): the same numbers read the other way are "worse"
    assert paired_difference(a, b, higher_is_better=False).verdict == "worse"
    # a consistent small gain is shown, though the unpaired spreads overlap widely
    assert paired_difference([50.1, 60.1, 70.1], [50.0, 60.0, 70.0]).verdict == "better"
    assert paired_difference([1.0, 2.0, 0.0], [1.5, 1.0, 0.5]).verdict == "no difference shown"
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([1.0], [1.0, 2.0])


def test_slope_interval_sees_a_rise_over_levels():
    levels = [0, 2, 4, 8]
    rising = [[0.0, 0.2, 0.4, 0.8], [0.1, 0.3, 0.4, 0.9], [0.0, 0.1, 0.5, 0.7]]
    r = slope_interval(levels, rising)
    assert r["verdict"] == "rises" and r["low"] > 0
    flat = [[0.0, 0.2, -0.1, 0.0], [0.1, -0.2, 0.1, 0.0], [0.0, 0.1, 0.0, -0.1]]
    assert slope_interval(levels, flat)["verdict"] == "no trend shown"


def test_unpaired_half_width_is_welchs_interval():
    from mango_lite.metrics.paired import unpaired_half_width

    a, b = [18.0, 18.5, 19.1], [17.2, 18.0, 18.2]
    # scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval() gives (-0.4917, 1.9584)
    assert unpaired_half_width(a, b) == pytest.approx((1.9584034748 + 0.4917368082) / 2, rel=1e-6)
    # the seeds move both models together: the paired interval is far narrower than the unpaired one
    shared = [0.0, 3.0, -2.0]
    pa, pb = [20 + s for s in shared], [19.5 + s + e for s, e in zip(shared, (0.1, -0.1, 0.05))]
    paired = paired_difference(pa, pb)
    assert (paired.high - paired.low) / 2 < 0.2 * unpaired_half_width(pa, pb)
    with pytest.raises(ValueError, match="at least 2 scores"):
        unpaired_half_width([1.0], [2.0, 3.0])

"""The paired timer behind every benchmark ratio: call pattern and report, not speed."""

from __future__ import annotations

import pytest

from mango_lite.timing import interleaved


def test_interleaved_alternates_after_one_warm_up_and_reports_the_ratio_spread():
    calls: list[str] = []
    syncs: list[int] = []
    r = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), pairs=4, sync=lambda: syncs.append(1))
    assert calls == ["a", "b"] * 5  # one warm-up pair, then 4 timed pairs, always A before B
    assert len(syncs) == 3 * 4
    assert r["pairs"] == 4
    assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
    assert r["a_s"] > 0 and r["b_s"] > 0


def test_interleaved_refuses_zero_pairs():
    with pytest.raises(ValueError, match="pairs must be >= 1, got 0"):
        interleaved(lambda: None, lambda: None, pairs=0)

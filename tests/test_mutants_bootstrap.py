"""flarelens.bootstrap: the cases mutation testing found unguarded (see docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from flarelens import bootstrap
from flarelens.errors import FlareLensError


def test_blocks_of_naive_times_are_utc_days_and_empty_has_none():
    # Naive times are UTC; an offset time is converted first (23:30 at -02:00 is 01:30 UTC).
    block, n = bootstrap.block_index(["2011-01-01 00:10", "2011-01-01 23:50", "2011-01-02 00:00"])
    assert block.tolist() == [0, 0, 1] and n == 2
    block, n = bootstrap.block_index(["2011-01-01T23:30:00-02:00", "2011-01-02T00:10:00-02:00"])
    assert block.tolist() == [0, 0] and n == 1
    block, n = bootstrap.block_index([])
    assert block.size == 0 and n == 0
    with pytest.raises(FlareLensError, match="needs the time of every instance; some are unknown"):
        bootstrap.block_index(["2011-01-01", None])
    with pytest.raises(FlareLensError, match=r"whole number of days >= 1, got 0"):
        bootstrap.block_index(["2011-01-01"], block_days=0)


def test_every_block_can_be_drawn_and_one_resample_is_enough():
    (one,) = bootstrap.multiplicities([1], resamples=1)
    assert one.tolist() == [[1]]
    (m,) = bootstrap.multiplicities([3], resamples=300, seed=5)
    assert (m.sum(axis=1) == 3).all() and (m[:, 0] > 0).any() and (m.sum(axis=0) > 0).all()
    with pytest.raises(FlareLensError, match="resamples must be >= 1, got 0"):
        bootstrap.multiplicities([3], resamples=0)


def test_interval_ignores_undefined_values():
    assert bootstrap.interval([None, np.nan, 1.0, 3.0], level=1.0) == [1.0, 3.0]
    assert bootstrap.interval([None, float("nan")]) is None

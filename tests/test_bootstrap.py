"""Day-block bootstrap: whole days drawn, seeded and reproducible, intervals around the estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flarelens import bootstrap
from flarelens.errors import FlareLensError
from flarelens.evaluate import Forecast, intervals, score


def test_blocks_are_whole_utc_days():
    times = pd.date_range("2011-03-01 00:00", periods=72, freq="h", tz="UTC")
    index, n = bootstrap.block_index(times)
    assert n == 3 and index.tolist() == [0] * 24 + [1] * 24 + [2] * 24
    index, n = bootstrap.block_index(times[::-1])  # numbered in time order whatever the row order
    assert index.tolist() == [2] * 24 + [1] * 24 + [0] * 24
    assert bootstrap.block_index(times, block_days=2)[1] == 2
    with pytest.raises(FlareLensError, match="whole number of days"):
        bootstrap.block_index(times, block_days=0)


def test_multiplicities_draw_each_file_within_itself_reproducibly():
    a = bootstrap.multiplicities([5, 3], resamples=50, seed=7)
    b = bootstrap.multiplicities([5, 3], resamples=50, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (50, 5) and a[1].shape == (50, 3)
    assert (a[0].sum(axis=1) == 5).all() and (a[1].sum(axis=1) == 3).all()
    c = bootstrap.multiplicities([5, 3], resamples=50, seed=8)
    assert not np.array_equal(a[0], c[0])


def _forecasts(seed: int, days: int = 40):
    rng = np.random.default_rng(seed)
    times = pd.Series(pd.date_range("2011-04-01", periods=24 * days, freq="h", tz="UTC"))
    flaring_day = rng.random(days) < 0.3
    y = np.repeat(flaring_day, 24).astype(float)  # flaring status persists over the day
    # how well a day is forecast is a property of the day (its regions), plus hourly noise
    day_error = np.repeat(rng.random(days), 24)
    prob = np.clip(0.3 * y + 0.5 * day_error + 0.2 * rng.random(y.size), 0, 1)
    return Forecast(y, prob, np.full(y.size, 0.3)), times


def test_intervals_reproducible_and_around_the_estimate():
    (f1, t1), (f2, t2) = _forecasts(0), _forecasts(1)
    kinds = {"model": [f1, f2]}
    a = intervals(kinds, [t1, t2], 0.5, resamples=300, seed=3)
    b = intervals(kinds, [t1, t2], 0.5, resamples=300, seed=3)
    assert a == b
    assert intervals(kinds, [t1, t2], 0.5, resamples=300, seed=4) != a
    points = [score(f1, 0.5), score(f2, 0.5)]
    for point, ci in zip(points, a["model"][:2]):
        for name in ("tss", "hss", "bss", "auc"):
            low, high = ci[name]
            assert low < point[name] < high, name
    assert len(a["model"]) == 3  # both files, then the pooled set


def test_paired_difference_of_a_forecast_with_itself_is_exactly_zero():
    f, t = _forecasts(5)
    ci = intervals({"model": [f], "same": [f]}, [t], 0.5, resamples=100, differences=[("model", "same")])
    assert ci["model-same"][0] == {"tss": [0.0, 0.0], "hss": [0.0, 0.0], "bss": [0.0, 0.0], "auc": [0.0, 0.0]}


def test_day_blocks_give_wider_intervals_than_hours_when_days_are_correlated():
    f, t = _forecasts(2, days=60)
    by_day = intervals({"model": [f]}, [t], 0.5, resamples=400, seed=0)["model"][0]["tss"]
    # every hour its own "day": the dependence within a day is ignored
    hours = pd.Series(pd.Timestamp("2000-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(t)), unit="D"))
    by_hour = intervals({"model": [f]}, [hours], 0.5, resamples=400, seed=0)["model"][0]["tss"]
    assert by_day[1] - by_day[0] > 2 * (by_hour[1] - by_hour[0])


def test_interval_ignores_undefined_values():
    assert bootstrap.interval([None, float("nan")]) is None
    assert bootstrap.interval([1.0, None, 3.0], level=0.5) == [1.5, 2.5]

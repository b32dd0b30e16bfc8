"""Persistence and climatology from the flare catalog: the window edges of the definition."""

from __future__ import annotations

import pandas as pd
import pytest

from flarelens import baselines
from flarelens.catalog import read_catalog
from flarelens.errors import FlareLensError

# An SWPC-style list: an M1.0 at 2011-01-02 00:00, a C5.0 (below M1.0) on the 4th, an X1.0 on the 6th.
CATALOG = """start,peak,end,class
2011-01-01 00:00,2011-01-01 00:10,2011-01-01 00:20,C1.0
2011-01-02 00:00,2011-01-02 00:10,2011-01-02 00:20,M1.0
2011-01-04 12:00,2011-01-04 12:10,2011-01-04 12:20,C5.0
2011-01-06 00:00,2011-01-06 00:10,2011-01-06 00:20,X1.0
2011-01-20 00:00,2011-01-20 00:10,2011-01-20 00:20,C1.0
"""


@pytest.fixture()
def catalog(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(CATALOG)
    return read_catalog(path)


@pytest.mark.parametrize(
    "time, want",
    [
        ("2011-01-01 23:59", False),  # the M1.0 starts after t
        ("2011-01-02 00:00", True),   # starting exactly at t counts (start <= t)
        ("2011-01-02 23:59", True),
        ("2011-01-03 00:00", False),  # started exactly at t - 24 h: outside (t - window < start)
        ("2011-01-05 00:00", False),  # only a C5.0 in the window: below M1.0
        ("2011-01-06 00:00", True),   # X1.0 at t
        ("2011-01-06 23:00", True),
        ("2011-01-07 00:00", False),
    ],
)
def test_persistence_window_edges(catalog, time, want):
    assert baselines.persistence_state([pd.Timestamp(time, tz="UTC")], catalog).tolist() == [want]


def test_persistence_threshold_and_window_options(catalog):
    t = [pd.Timestamp("2011-01-05 00:00", tz="UTC")]
    assert baselines.persistence_state(t, catalog, flare_class="C5.0").tolist() == [True]
    assert baselines.persistence_state([pd.Timestamp("2011-01-03 00:00", tz="UTC")], catalog, window="25h").tolist() == [True]


def test_times_outside_the_catalog_are_refused(catalog):
    with pytest.raises(FlareLensError, match="catalog covers 2011-01-01 00:00 to 2011-01-21 00:00"):
        baselines.persistence_state([pd.Timestamp("2011-02-01", tz="UTC")], catalog)
    assert baselines.covered(pd.to_datetime(["2010-12-31", "2011-01-10", "2011-01-22"], utc=True), catalog).tolist() == [
        False, True, False]


def test_probabilistic_persistence_is_the_training_share_of_each_state():
    train_state = [True, True, True, False, False, False, False]
    train_target = [1, 1, 0, 0, 0, 1, 0]
    prob, info = baselines.persistence_probability([True, False, True], train_state, train_target)
    assert prob.tolist() == pytest.approx([2 / 3, 1 / 4, 2 / 3])
    assert info == {"n": 7, "rate_yes": pytest.approx(2 / 3), "rate_no": pytest.approx(1 / 4)}
    # a state no training instance had gets the overall training rate
    prob, info = baselines.persistence_probability([True], [False, False], [1, 0])
    assert prob.tolist() == [0.5] and info["rate_yes"] is None


def test_climatology_is_the_rate_everywhere():
    assert baselines.climatology_probability(3, 0.2).tolist() == [0.2, 0.2, 0.2]
    with pytest.raises(FlareLensError):
        baselines.climatology_probability(3, 1.2)

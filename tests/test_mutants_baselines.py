"""flarelens.baselines: the cases mutation testing found unguarded (see docs/mutation.md).

The span's closed ends, the first flare of the catalog, a flare exactly at the threshold,
naive times read as UTC, a training set with one persistence state only, and the messages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flarelens import baselines
from flarelens.catalog import read_catalog
from flarelens.errors import FlareLensError

# The first flare is the only one >= M1.0, and it is exactly M1.0.
CATALOG = """start,peak,end,class
2011-01-02 00:00,2011-01-02 00:10,2011-01-02 00:20,M1.0
2011-01-04 12:00,2011-01-04 12:10,2011-01-04 12:20,C5.0
"""


@pytest.fixture()
def catalog(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(CATALOG)
    return read_catalog(path)


def test_span_ends_are_inside_and_naive_times_are_utc(catalog):
    first, last = baselines.span(catalog)
    assert first == pd.Timestamp("2011-01-02", tz="UTC") and last == pd.Timestamp("2011-01-05 12:00", tz="UTC")
    # Exactly at the first start and at the last start + window: covered, and told.
    naive = ["2011-01-02 00:00", "2011-01-05 12:00", "2011-01-05 12:01"]
    assert baselines.covered(naive, catalog).tolist() == [True, True, False]
    assert baselines.persistence_state(naive[:2], catalog).tolist() == [True, False]
    assert baselines.covered(naive, catalog, window="48h").tolist() == [True, True, True]
    with pytest.raises(FlareLensError, match="2011-01-01 23:59; give a catalog covering them"):
        baselines.persistence_state(["2011-01-01 23:59"], catalog)


def test_first_flare_of_the_catalog_at_exactly_the_threshold_counts(catalog):
    # Its window reaches back before the catalog's first start (the count starts at 0 there).
    times = ["2011-01-02 06:00", "2011-01-02 23:59", "2011-01-03 06:00"]
    assert baselines.persistence_state(times, catalog).tolist() == [True, True, False]
    assert baselines.persistence_state(times, catalog, window="36h").tolist() == [True, True, True]
    # The span follows the window: 2011-01-05 18:00 is told with 36 h, refused with 24 h.
    assert baselines.persistence_state(["2011-01-05 18:00"], catalog, window="36h").tolist() == [False]
    assert baselines.persistence_state(times, catalog, flare_class="M1.1").tolist() == [False] * 3


def test_bad_window_is_named(catalog):
    with pytest.raises(FlareLensError, match="window"):
        baselines.persistence_state(["2011-01-03"], catalog, window="soon")
    with pytest.raises(FlareLensError, match="window"):
        baselines.span(catalog, window="soon")
    with pytest.raises(FlareLensError, match="the catalog holds no flares"):
        baselines.span(catalog.iloc[:0])
    with pytest.raises(FlareLensError, match="time of every instance; some are unknown"):
        baselines.persistence_state([None], catalog)


def test_load_catalog_keeps_a_table_and_reads_a_file(tmp_path, catalog):
    assert baselines.load_catalog(catalog) is catalog
    path = tmp_path / "events.csv"
    pd.testing.assert_frame_equal(baselines.load_catalog(path), catalog)


def test_training_rows_all_in_one_state_give_the_overall_rate_to_the_other():
    prob, info = baselines.persistence_probability([True, False], [True, True, True, True], [1, 0, 0, 1])
    assert info == {"n": 4, "rate_yes": 0.5, "rate_no": None}
    assert prob.tolist() == [0.5, 0.5]
    prob, info = baselines.persistence_probability([True, False], [False, False, False, False], [1, 0, 0, 0])
    assert info["rate_yes"] is None and prob.tolist() == [0.25, 0.25]
    prob, info = baselines.persistence_probability([True, False], [True], [1])
    assert info == {"n": 1, "rate_yes": 1.0, "rate_no": None} and prob.tolist() == [1.0, 1.0]
    with pytest.raises(FlareLensError, match="needs training instances; none were given"):
        baselines.persistence_probability([True], [], [])


@pytest.mark.parametrize("rate", [0.0, 1.0, 0.3])
def test_climatology_accepts_every_probability(rate):
    assert baselines.climatology_probability(3, rate).tolist() == [rate] * 3


@pytest.mark.parametrize("rate", [-0.01, 1.01, float("nan")])
def test_climatology_rejects_what_is_not_a_probability(rate):
    with pytest.raises(FlareLensError, match="is not a probability"):
        baselines.climatology_probability(3, rate)
    assert np.isfinite(baselines.climatology_probability(0, 0.5)).all()

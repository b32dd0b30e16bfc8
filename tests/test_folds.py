"""flarelens.folds: held-out fold, inner validation block, purged rows — checked against the rule, not our code."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flarelens.errors import FlareLensError
from flarelens.folds import ROLES, role_counts, roles_from_config, row_roles


def _hourly(start="2011-01-01", end="2012-12-31 23:00", freq="1h") -> pd.DataFrame:
    times = pd.date_range(start, end, freq=freq, tz="UTC")
    # The quarter of the year, computed here by hand (not with flarelens.labels.fold_of).
    return pd.DataFrame({"timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "fold": (times.month - 1) // 3 + 1})


def _quarter_span(t: datetime) -> tuple[datetime, datetime]:
    first_month = 3 * ((t.month - 1) // 3) + 1
    q0 = datetime(t.year, first_month, 1)
    q1 = datetime(t.year + (first_month == 10), (first_month + 3 - 1) % 12 + 1, 1)
    return q0, q1


def _times(frame) -> list[datetime]:
    return [datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ") for s in frame["timestamp"]]


@pytest.mark.parametrize("fold", [1, 2, 3, 4])
def test_roles_follow_the_documented_rule(fold):
    labels = _hourly()
    inner, window = 0.1, timedelta(hours=24)
    roles = row_roles(labels, fold, inner=inner, window="24h")
    assert list(roles.index) == list(labels.index) and set(roles) <= set(ROLES)
    times = _times(labels)

    # Held out: exactly the rows of the fold.
    assert ((roles == "heldout") == (labels["fold"] == fold)).all()
    # Inner: exactly the training-quarter rows in the last 10 % of their calendar quarter.
    expected_inner = []
    for t, f in zip(times, labels["fold"]):
        q0, q1 = _quarter_span(t)
        expected_inner.append(f != fold and t >= q1 - inner * (q1 - q0))
    expected_inner = np.array(expected_inner)
    assert ((roles == "inner").to_numpy() == expected_inner).all()
    # One contiguous stretch per training quarter and year, ending at the quarter's last hour.
    inner_times = [t for t, r in zip(times, roles) if r == "inner"]
    stretches = {(t.year, (t.month - 1) // 3) for t in inner_times}
    assert len(stretches) == 2 * 3
    # Purged: exactly the training-quarter rows closer than one window to an inner row.
    inner_arr = np.array(inner_times, dtype="datetime64[ns]")
    for t, r, f in zip(times, roles, labels["fold"]):
        if f == fold or r == "inner":
            continue
        near = np.abs(inner_arr - np.datetime64(t, "ns")).min() < np.timedelta64(window)
        assert (r == "purged") == near, (t, r)
    # The acceptance rule: no inner row within one label window of a training row.
    train_arr = np.array([t for t, r in zip(times, roles) if r == "train"], dtype="datetime64[ns]")
    gaps = np.abs(train_arr[:, None] - inner_arr[None, :])
    assert gaps.min() >= np.timedelta64(window)
    counts = role_counts(roles)
    assert sum(counts.values()) == len(labels) and counts["purged"] > 0 and counts["train"] > counts["inner"] > 0


def test_gap_purges_the_rows_whose_window_reaches_the_held_out_quarter():
    labels = _hourly(freq="1h")
    fold, gap = 2, timedelta(hours=30)
    roles = row_roles(labels, fold, inner=0, gap="30h")
    for t, r, f in zip(_times(labels), roles, labels["fold"]):
        reach = t + gap - timedelta(microseconds=1)
        reaches = f != fold and (reach.month - 1) // 3 + 1 == fold
        assert (r == "purged") == reaches, t
    # Without a gap and without an inner block: the study's split, every other-quarter row trains.
    plain = row_roles(labels, fold, inner=0)
    assert ((plain == "train") == (labels["fold"] != fold)).all()
    # t + 30 h reaches April for t after 30 March 18:00: 19:00 .. 31 March 23:00, 29 hours, two years.
    assert role_counts(roles)["purged"] == 2 * 29


def test_a_wider_window_purges_more_and_inner_zero_purges_nothing():
    labels = _hourly(freq="6h")
    narrow = role_counts(row_roles(labels, 3, window="24h"))
    wide = role_counts(row_roles(labels, 3, window="72h"))
    assert wide["purged"] > narrow["purged"] > 0 and wide["inner"] == narrow["inner"]
    assert role_counts(row_roles(labels, 3, inner=0, window="72h"))["purged"] == 0


def test_roles_from_a_stored_configuration():
    labels = _hourly(freq="3h")
    config = {"fold": 4, "inner": 0.2, "gap": "24h", "window": "48h"}
    assert roles_from_config(labels, config).equals(row_roles(labels, 4, inner=0.2, gap="24h", window="48h"))
    # A run from before the inner block (no "inner" key) trained on all other-quarter rows.
    old = roles_from_config(labels, {"fold": 4})
    assert ((old == "train") == (labels["fold"] != 4)).all()


def test_bad_settings_are_one_line():
    labels = _hourly(freq="12h")
    for kwargs, needle in (({"inner": 1.0}, "--inner"), ({"inner": -0.1}, "--inner"), ({"inner": float("nan")}, "--inner"),
                           ({"window": "soon"}, "window"), ({"gap": "-1h"}, "positive")):
        with pytest.raises(FlareLensError, match=needle):
            row_roles(labels, 1, **kwargs)
    with pytest.raises(FlareLensError, match="fold"):
        row_roles(labels, 5)

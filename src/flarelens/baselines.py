"""Reference forecasts from the flare catalog alone: persistence and climatology.

Definitions (docs/design.md, "Definitions that must stay exact"):

* **persistence** at time t says "yes" when a flare >= the threshold class (M1.0) started
  in the window up to t: t - window < start <= t (window 24 h). A flare starting exactly
  at t counts; one starting exactly at t - window does not. Its probabilistic version
  gives each instance the flaring fraction of the *training* instances that had the same
  persistence state.
* **climatology** forecasts the base rate of the training rows for every instance: the
  reference of the Brier skill score.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from flarelens.catalog import parse_threshold, read_catalog
from flarelens.errors import FlareLensError

#: Persistence window and flare-size threshold by default: those of the labels.
WINDOW = "24h"
FLARE_CLASS = "M1.0"


def load_catalog(catalog: str | os.PathLike | pd.DataFrame | None = None) -> pd.DataFrame:
    """A normalised catalog: the bundled one for None, a file, or a table already read."""
    return catalog if isinstance(catalog, pd.DataFrame) else read_catalog(catalog)


def span(catalog: pd.DataFrame, window=WINDOW) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The UTC times persistence can be told at from ``catalog``: from its first flare's start
    to its last's plus ``window``."""
    from flarelens.labels import parse_duration

    if catalog.empty:
        raise FlareLensError("the catalog holds no flares")
    starts = pd.DatetimeIndex(pd.to_datetime(catalog["start"], utc=True))
    return starts.min(), starts.max() + parse_duration(window, "window")


def covered(times, catalog: pd.DataFrame, window=WINDOW) -> np.ndarray:
    """Which UTC times lie within the catalog's :func:`span`."""
    first, last = span(catalog, window)
    t = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    return np.asarray((t >= first) & (t <= last), dtype=bool)


def persistence_state(times, catalog: pd.DataFrame, window=WINDOW, flare_class=FLARE_CLASS) -> np.ndarray:
    """Persistence forecast (bool) at each UTC time: a flare >= ``flare_class`` started in
    ``(t - window, t]`` according to ``catalog`` (:func:`flarelens.catalog.read_catalog`).

    Raises :class:`FlareLensError` when a time lies outside the catalog's span (from its
    first flare's start to its last's), where "no flare" could not be told from "no data".
    """
    from flarelens.labels import parse_duration

    window = parse_duration(window, "window")
    flux_min = parse_threshold(flare_class)
    t = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    if t.isna().any():
        raise FlareLensError("persistence needs the time of every instance; some are unknown")
    first, last = span(catalog, window)
    if len(t) and (t.min() < first or t.max() > last):
        raise FlareLensError(
            f"the catalog covers {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} but the instances run from "
            f"{t.min():%Y-%m-%d %H:%M} to {t.max():%Y-%m-%d %H:%M}; give a catalog covering them (--catalog)"
        )
    cat = catalog.sort_values("start", kind="stable")
    starts = cat["start"].to_numpy(dtype="datetime64[ns]")
    # Same comparison as the labels: by flux, with a relative tolerance for M1.0 written as 1e-5.
    big = cat["peak_flux"].to_numpy(dtype=float) >= flux_min * (1 - 1e-12)
    cumulative = np.concatenate([[0], np.cumsum(big)])
    tn = t.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    lo = np.searchsorted(starts, tn - np.timedelta64(window.value, "ns"), side="right")  # first start > t - window
    hi = np.searchsorted(starts, tn, side="right")  # first start > t
    return (cumulative[hi] - cumulative[lo]) > 0


def persistence_probability(state, train_state, train_target) -> tuple[np.ndarray, dict]:
    """Probabilistic persistence: each instance gets the flaring fraction of the training
    instances in its persistence state.

    Returns the probabilities and ``{"n", "rate_yes", "rate_no"}`` (None for a state no
    training instance had; such instances then get the overall training base rate).
    """
    state = np.asarray(state, dtype=bool)
    train_state = np.asarray(train_state, dtype=bool)
    y = np.asarray(train_target, dtype=float)
    if y.size == 0:
        raise FlareLensError("probabilistic persistence needs training instances; none were given")
    overall = float(y.mean())
    rate_yes = float(y[train_state].mean()) if train_state.any() else None
    rate_no = float(y[~train_state].mean()) if (~train_state).any() else None
    prob = np.where(state, overall if rate_yes is None else rate_yes, overall if rate_no is None else rate_no)
    return prob.astype(float), {"n": int(y.size), "rate_yes": rate_yes, "rate_no": rate_no}


def climatology_probability(n: int, rate: float) -> np.ndarray:
    """The climatological forecast: ``rate`` (the training base rate) for all ``n`` instances."""
    if not (0.0 <= rate <= 1.0):
        raise FlareLensError(f"climatological rate {rate!r} is not a probability")
    return np.full(n, float(rate))

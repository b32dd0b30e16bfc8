"""Block bootstrap over whole days: confidence intervals that respect autocorrelation.

Hourly instances are strongly autocorrelated: consecutive labels share the flares of
their overlapping 24-hour windows, and a flaring region stays flaring for days. Drawing
single hours would treat 24 copies of one flare as 24 independent cases and give far too
narrow intervals, so whole UTC days (or ``block_days`` days) are drawn with replacement
instead — within each file, so that a pooled resample keeps every fold's share. Days are
the smallest block the labelling itself makes dependent; longer blocks (e.g. 7 days) are
more conservative about region persistence, at the price of fewer blocks per quarter.

Intervals are percentile intervals (95 % by default) over ``resamples`` draws from a
seeded numpy generator: the same inputs and seed give the same intervals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
BLOCK_DAYS = 1


def block_index(times, block_days: int = BLOCK_DAYS) -> tuple[np.ndarray, int]:
    """Block of each UTC time (consecutive ``block_days``-day spans from 1970-01-01, numbered
    0.. in time order among those present) and the number of blocks."""
    if int(block_days) != block_days or block_days < 1:
        raise FlareLensError(f"block length must be a whole number of days >= 1, got {block_days!r}")
    t = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    if t.isna().any():
        raise FlareLensError("the day-block bootstrap needs the time of every instance; some are unknown")
    days = (t.tz_convert(None).to_numpy(dtype="datetime64[D]").astype(np.int64)) // int(block_days)
    _, inverse = np.unique(days, return_inverse=True)
    inverse = inverse.ravel()
    return inverse, int(inverse.max()) + 1 if inverse.size else 0


def multiplicities(n_blocks: Sequence[int], resamples: int = RESAMPLES, seed: int = SEED) -> list[np.ndarray]:
    """How often each block is drawn in each resample: one (resamples, blocks) array per
    group (file), each group resampled within itself, all from one seeded generator."""
    if resamples < 1:
        raise FlareLensError(f"resamples must be >= 1, got {resamples!r}")
    rng = np.random.default_rng(seed)
    out = []
    for b in n_blocks:
        counts = np.zeros((resamples, b), dtype=np.int64)
        if b:
            draws = rng.integers(0, b, size=(resamples, b))
            np.add.at(counts, (np.repeat(np.arange(resamples), b), draws.ravel()), 1)
        out.append(counts)
    return out


def interval(values, level: float = LEVEL):
    """Percentile interval ``[low, high]`` of the defined (non-None, finite) values; None if none."""
    v = np.array([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(v, [tail, 100 - tail])
    return [float(low), float(high)]

"""Which rows of a labels table a model of fold k trained on, chose its epoch on, or is scored on.

Every row gets one role for fold k (:func:`row_roles`):

``heldout``
    the rows of fold k (the k-th quarter of every year): scored, never used to choose.
``inner``
    the inner validation block, carved out of the training quarters: the last ``inner``
    fraction of every calendar quarter of the other folds (with the default 0.1, the
    last ~9 days of each such quarter: e.g. 22-31 December). One stretch per quarter and
    year spreads the block over the whole solar cycle, so it holds flaring rows whenever
    the training quarters do, and it is contiguous in time. The epoch is chosen on it.
``purged``
    rows used for nothing: training-quarter rows whose prediction window reaches into
    quarter k (only with ``gap``), and training rows closer than one label ``window`` to
    an inner row (before or after it), so that no training label's window overlaps an
    inner label's window.
``train``
    the rest: the rows the model learns from.

``inner=0`` gives the study's split: every row of the other quarters trains (``gap``
still applies). The same call with the settings a run stored (:func:`roles_from_config`)
tells predict, explain and evaluate which rows a checkpoint saw.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError
from flarelens.labels import parse_duration, window_reaches_fold

ROLES = ("train", "inner", "heldout", "purged")
#: Fraction of every training quarter that forms the inner validation block.
DEFAULT_INNER = 0.1
#: The label window of labels.csv (``flarelens label --window``).
DEFAULT_WINDOW = "24h"


def check_inner(inner: float) -> float:
    """``inner`` as a float in [0, 1); one clear error otherwise."""
    try:
        value = float(inner)
    except (TypeError, ValueError):
        raise FlareLensError(f"--inner must be a fraction in [0, 1), got {inner!r}") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise FlareLensError(f"--inner must be a fraction in [0, 1) (0: no inner block), got {inner!r}")
    return value


def inner_block(timestamps, inner: float = DEFAULT_INNER) -> np.ndarray:
    """Whether each UTC time lies in the last ``inner`` fraction of its calendar quarter.

    A quarter runs from its first instant q0 to the next quarter's first instant q1; its
    inner stretch is ``q1 - inner * (q1 - q0) <= t < q1``.
    """
    inner = check_inner(inner)
    times = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True)).tz_convert(None)
    if inner == 0 or len(times) == 0:
        return np.zeros(len(times), dtype=bool)
    quarters = times.to_period("Q")
    q0 = quarters.start_time
    q1 = (quarters + 1).start_time
    cutoff = q1 - (q1 - q0) * inner
    return np.asarray(times >= cutoff)


def row_roles(
    labels: pd.DataFrame,
    fold: int,
    inner: float = DEFAULT_INNER,
    gap=None,
    window=DEFAULT_WINDOW,
) -> pd.Series:
    """The role of every row of ``labels`` for a model of ``fold``: train, inner, heldout or purged.

    ``labels`` needs ``timestamp`` (UTC) and ``fold`` (1-4). ``inner``: fraction of each
    training quarter forming the inner validation block (0: none). ``gap``: a window
    length (e.g. ``"24h"``) or None; training-quarter rows whose window reaches into
    quarter ``fold`` are purged (the study used none). ``window``: the label window
    (24 h by default); training rows closer than that to an inner row are purged.
    Returns a string Series named ``role`` with the index of ``labels``.
    """
    if fold not in (1, 2, 3, 4):
        raise FlareLensError(f"fold must be 1, 2, 3 or 4, got {fold!r}")
    window = parse_duration(window, "label window")
    folds = labels["fold"].to_numpy()
    times = pd.DatetimeIndex(pd.to_datetime(labels["timestamp"], utc=True)).tz_convert(None)
    role = np.full(len(labels), "train", dtype=object)
    role[folds == fold] = "heldout"
    if gap is not None:
        role[(folds != fold) & (window_reaches_fold(labels["timestamp"], gap) == fold)] = "purged"
    role[(role == "train") & inner_block(times, inner)] = "inner"

    inner_times = np.sort(times[role == "inner"].to_numpy(dtype="datetime64[ns]"))
    train = np.flatnonzero(role == "train")
    if len(inner_times) and len(train):
        t = times[train].to_numpy(dtype="datetime64[ns]")
        # The nearest inner time on either side of each training time.
        pos = np.searchsorted(inner_times, t)
        w = np.timedelta64(window.value, "ns")
        after = np.where(pos < len(inner_times), inner_times[np.minimum(pos, len(inner_times) - 1)] - t, w)
        before = np.where(pos > 0, t - inner_times[np.maximum(pos - 1, 0)], w)
        role[train[(after < w) | (before < w)]] = "purged"
    return pd.Series(role, index=labels.index, name="role")


def roles_from_config(labels: pd.DataFrame, config: dict) -> pd.Series:
    """:func:`row_roles` with the settings a training run stored (config.json or a checkpoint).

    Runs made before the inner block existed (no ``inner`` key) trained on every row of
    the other quarters: ``inner`` 0.
    """
    return row_roles(
        labels,
        int(config["fold"]),
        inner=config.get("inner", 0.0) or 0.0,
        gap=config.get("gap"),
        window=config.get("window") or DEFAULT_WINDOW,
    )


def role_counts(roles: pd.Series) -> dict[str, int]:
    """Number of rows of each role, in the order of :data:`ROLES`."""
    return {r: int((roles == r).sum()) for r in ROLES}

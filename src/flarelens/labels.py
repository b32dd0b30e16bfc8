"""Prediction-window labels for full-disk magnetograms, and the tri-monthly folds.

The label at time t looks at the flares whose **start** time s satisfies
``t < s < t + window`` (24 h by default). The largest of them (by peak flux; the earliest
of equal ones) decides the target: 1 when its flux is >= the threshold (M1.0 = 1e-5 W/m²
by default). Its position comes with the catalog's cleaning (``fl_pos_source``: read from
the catalog, taken from its NOAA region, or unknown). The other flares of the window are
kept for later analysis.

Folds follow the original study: fold k (1-4) is the k-th quarter of the year
(Jan-Mar, Apr-Jun, Jul-Sep, Oct-Dec) over all years; fold k validates on its own rows and
trains on the others.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.catalog import (
    check_covers,
    flux_to_class,
    parse_threshold,
    parse_time,
    position_counts,
    read_catalog,
    repair_positions,
)
from flarelens.errors import FlareLensError
from flarelens.images import find_image, image_relpath

logger = logging.getLogger(__name__)

DEFAULT_START = "2010-12-01 00:00"
DEFAULT_END = "2018-12-31 23:00"

#: Columns of labels.csv, in order (docs/design.md, "labels.csv").
LABEL_COLUMNS = [
    "timestamp", "file", "target", "goes_class", "peak_flux", "fl_lon", "fl_lat", "fl_pos_source",
    "fl_start", "other_flares", "fold",
]

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def fold_of(times) -> np.ndarray:
    """Fold (1-4) of each UTC time: the quarter of the year it falls in."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).quarter.to_numpy().astype(int)


def parse_duration(value, what: str = "duration") -> pd.Timedelta:
    """A positive duration from ``"24h"``, ``"90min"``, ``"1d"``, a Timedelta, ..."""
    try:
        delta = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise FlareLensError(f"cannot read {what} {value!r} (expected e.g. 1h, 30min, 24h, 1d)") from None
    if delta is pd.NaT or delta <= pd.Timedelta(0):
        raise FlareLensError(f"{what} must be positive, got {value!r}")
    return delta


def sample_times(start, end, cadence="1h") -> pd.DatetimeIndex:
    """UTC times from ``start`` to ``end`` inclusive every ``cadence``."""
    start, end = parse_time(start, "start"), parse_time(end, "end")
    cadence = parse_duration(cadence, "cadence")
    if end < start:
        raise FlareLensError(f"end {end:%Y-%m-%d %H:%M} is before start {start:%Y-%m-%d %H:%M}")
    return pd.date_range(start, end, freq=cadence)


@dataclass(frozen=True)
class LabelSummary:
    """Counts printed after labelling."""

    rows: int
    per_fold: pd.DataFrame  # index fold 1-4; columns positives, negatives, leaking_train_rows
    dropped_missing_images: int = 0
    dropped_gap: int = 0
    #: pos_source counts (catalog, region, none) of the catalog's flares that start in the
    #: labelled windows, all of them and those >= the threshold.
    positions: dict = field(default_factory=dict)
    positions_above: dict = field(default_factory=dict)
    threshold: str = ""

    @property
    def imbalance(self) -> float:
        """Negatives per positive over all rows (inf when there are no positives)."""
        pos = int(self.per_fold["positives"].sum())
        neg = int(self.per_fold["negatives"].sum())
        return neg / pos if pos else float("inf")

    def format(self) -> str:
        lines = [f"{self.rows} rows labelled"]
        if self.dropped_missing_images:
            lines.append(f"{self.dropped_missing_images} times dropped: no image file under the naming convention")
        if self.dropped_gap:
            lines.append(f"{self.dropped_gap} rows dropped by --gap (window reaching into another quarter)")
        lines.append("fold  positives  negatives  train rows whose window reaches into this fold")
        for fold, row in self.per_fold.iterrows():
            lines.append(f"{fold:>4}  {row.positives:>9}  {row.negatives:>9}  {row.leaking_train_rows:>10}")
        lines.append(f"imbalance (negatives per positive): {self.imbalance:.2f}")
        for what, counts in ((f"the {sum(self.positions.values())} flares of the labelled windows", self.positions),
                             (f"the {sum(self.positions_above.values())} of them >= {self.threshold}", self.positions_above)):
            if counts:
                lines.append(f"positions of {what}: {counts.get('catalog', 0)} from the catalog, "
                             f"{counts.get('region', 0)} repaired from their NOAA region's other flares, "
                             f"{counts.get('none', 0)} unknown")
        return "\n".join(lines)


def label_times(
    times,
    catalog: pd.DataFrame,
    window="24h",
    threshold="M1.0",
    image_ext: str = ".jpg",
) -> pd.DataFrame:
    """Label each UTC time with the largest flare starting in ``(t, t + window)``.

    ``catalog`` is a normalised table from :func:`flarelens.catalog.read_catalog`;
    ``threshold`` a GOES class or a flux in W/m². Of flares with equal peak flux the one
    starting first decides. Returns a frame with the columns of :data:`LABEL_COLUMNS`
    (times as ISO 8601 UTC strings; ``fl_pos_source`` empty when no flare).
    """
    window = parse_duration(window, "window")
    threshold_flux = parse_threshold(threshold)
    times = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    cat = catalog.sort_values("start", kind="stable").reset_index(drop=True)
    starts = cat["start"].to_numpy(dtype="datetime64[ns]")
    flux = cat["peak_flux"].to_numpy(dtype=float)
    t = times.tz_convert(None).to_numpy(dtype="datetime64[ns]")

    # Window rows [lo, hi): first flare starting strictly after t, first starting at or after t + window.
    lo = np.searchsorted(starts, t, side="right")
    hi = np.searchsorted(starts, t + np.timedelta64(window.value, "ns"), side="left")
    largest = _range_argmax(flux, lo, hi)
    has = largest >= 0
    idx = np.where(has, largest, 0)

    out = pd.DataFrame({"timestamp": times.strftime(TIME_FORMAT)})
    out["file"] = [image_relpath(x, image_ext) for x in times]
    peak = np.where(has, flux[idx] if len(flux) else 0.0, 0.0)
    out["target"] = (peak >= threshold_flux * (1 - 1e-12)).astype(int)
    out["goes_class"] = np.where(has, cat["goes_class"].to_numpy()[idx] if len(cat) else "", "")
    out["peak_flux"] = peak
    out["fl_lon"] = np.where(has, cat["lon"].to_numpy()[idx] if len(cat) else np.nan, np.nan)
    out["fl_lat"] = np.where(has, cat["lat"].to_numpy()[idx] if len(cat) else np.nan, np.nan)
    if "pos_source" in cat:
        sources = cat["pos_source"].to_numpy(dtype=str)
    else:  # a table built by hand: its positions as given
        sources = np.where(cat["lon"].notna() & cat["lat"].notna(), "catalog", "none")
    out["fl_pos_source"] = np.where(has, sources[idx] if len(cat) else "", "")
    fl_start = cat["start"].dt.strftime(TIME_FORMAT).to_numpy() if len(cat) else np.array([""])
    out["fl_start"] = np.where(has, fl_start[idx], "")
    out["other_flares"] = _other_flares(cat, lo, hi, largest)
    out["fold"] = fold_of(times)
    return out[LABEL_COLUMNS]


def _range_argmax(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Index of the maximum of ``values[lo[i]:hi[i]]`` for every i (-1 for an empty range).

    A sparse table answers each query in O(1) after O(n log n) set-up, so labelling all
    hours of a solar cycle stays vectorised. Ties go to the earlier flare.
    """
    n = len(values)
    result = np.full(len(lo), -1, dtype=np.int64)
    nonempty = hi > lo
    if n == 0 or not nonempty.any():
        return result
    table = [np.arange(n)]
    span = 1
    while 2 * span <= n:
        prev = table[-1]
        left, right = prev[: n - 2 * span + 1], prev[span : n - span + 1]
        table.append(np.where(values[right] > values[left], right, left))
        span *= 2
    a, b = lo[nonempty], hi[nonempty]
    length = b - a
    level = np.floor(np.log2(length)).astype(int)
    first = np.empty(len(a), dtype=np.int64)
    second = np.empty(len(a), dtype=np.int64)
    for k in np.unique(level):
        sel = level == k
        first[sel] = table[k][a[sel]]
        second[sel] = table[k][b[sel] - (1 << k)]
    result[nonempty] = np.where(values[second] > values[first], second, first)
    return result


def _other_flares(cat: pd.DataFrame, lo: np.ndarray, hi: np.ndarray, largest: np.ndarray) -> list[str]:
    """``CLASS@START(lon,lat)`` of each window's flares other than the largest, ``;``-separated."""
    if len(cat) == 0:
        return [""] * len(lo)
    text = (
        cat["goes_class"]
        + "@"
        + cat["start"].dt.strftime(TIME_FORMAT)
        + "("
        + cat["lon"].map(_deg)
        + ","
        + cat["lat"].map(_deg)
        + ")"
    ).to_numpy()
    out = [""] * len(lo)
    for i in np.flatnonzero(hi - lo > 1):
        out[i] = ";".join(text[j] for j in range(lo[i], hi[i]) if j != largest[i])
    return out


def _deg(value: float) -> str:
    return "" if np.isnan(value) else f"{value:g}"


def parse_other_flares(text: str) -> list[dict]:
    """Split an ``other_flares`` cell into dicts with ``goes_class``, ``start``, ``lon``, ``lat``."""
    flares = []
    if not isinstance(text, str) or not text:
        return flares
    for item in text.split(";"):
        cls, rest = item.split("@", 1)
        start, pos = rest.split("(", 1)
        lon, lat = pos.rstrip(")").split(",")
        flares.append({
            "goes_class": cls,
            "start": pd.Timestamp(start),
            "lon": float(lon) if lon else np.nan,
            "lat": float(lat) if lat else np.nan,
        })
    return flares


def window_reaches_fold(timestamps, window="24h") -> np.ndarray:
    """For each time, the fold its window reaches into when that differs from its own, else 0.

    The window ``(t, t + window)`` reaches into a quarter when its last instant (just
    before ``t + window``) falls there: these rows' labels depend on flares of that quarter.
    """
    window = parse_duration(window, "window")
    times = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    own = times.quarter.to_numpy()
    reach = (times + window - pd.Timedelta(1, "ns")).quarter.to_numpy()
    return np.where(reach != own, reach, 0).astype(int)


def train_val(labels: pd.DataFrame, k: int, gap=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows (folds other than ``k``) and validation rows (fold ``k``) of labels.

    ``gap`` (a window length such as ``"24h"``, or None) additionally drops the training
    rows whose prediction window reaches into quarter ``k``, so that no training label
    depends on a flare of the validation period. The study used no gap.
    """
    if k not in (1, 2, 3, 4):
        raise FlareLensError(f"fold must be 1, 2, 3 or 4, got {k!r}")
    folds = labels["fold"].to_numpy()
    train_mask = folds != k
    if gap is not None:
        train_mask &= window_reaches_fold(labels["timestamp"], gap) != k
    return labels[train_mask], labels[folds == k]


def make_labels(
    catalog: str | os.PathLike | None = None,
    start=DEFAULT_START,
    end=DEFAULT_END,
    cadence="1h",
    window="24h",
    threshold="M1.0",
    images: str | os.PathLike | None = None,
    gap: bool = False,
    date_order: str | None = None,
    catalog_span=None,
) -> tuple[pd.DataFrame, LabelSummary]:
    """Label every ``cadence`` from ``start`` to ``end`` (UTC) from a GOES catalog.

    ``catalog`` None uses the bundled solar-cycle-24 catalog; ``date_order`` (``"dmy"`` /
    ``"mdy"``) states how its year-last dates are meant. A period outside the catalog's
    span (:func:`flarelens.catalog.check_covers`; ``catalog_span`` = (first, last) states
    it) is refused. With ``images`` (a directory holding ``YYYY/MM/DD/HMI.m...`` files) only
    times whose image exists are kept, and ``file`` names the file found. ``gap`` drops
    rows whose window reaches into another quarter. Returns the labels and their summary.
    """
    window_td = parse_duration(window, "window")
    threshold_flux = parse_threshold(threshold)
    start, end = parse_time(start, "start"), parse_time(end, "end")
    cat = read_catalog(catalog, date_order=date_order, repair=False)
    if end >= start:  # else sample_times says so
        check_covers(cat, start, end, span=catalog_span)
    times = sample_times(start, end, cadence)
    cat = repair_positions(cat)
    labels = label_times(times, cat, window_td, threshold)
    in_windows = cat[(cat["start"] > times[0]) & (cat["start"] < times[-1] + window_td)]
    positions = position_counts(in_windows)
    positions_above = position_counts(in_windows[in_windows["peak_flux"] >= threshold_flux * (1 - 1e-12)])
    logger.debug("flare positions in the labelled windows: %s (>= threshold: %s)", positions, positions_above)

    dropped_images = 0
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise FlareLensError(f"--images {root}: no such directory")
        found = [find_image(root, t) for t in times]
        keep = np.array([f is not None for f in found])
        labels["file"] = [f.relative_to(root).as_posix() if f is not None else "" for f in found]
        dropped_images = int((~keep).sum())
        labels = labels[keep]

    reaches = window_reaches_fold(labels["timestamp"], window_td)
    per_fold = pd.DataFrame(
        {
            "positives": [int(((labels["fold"] == k) & (labels["target"] == 1)).sum()) for k in (1, 2, 3, 4)],
            "negatives": [int(((labels["fold"] == k) & (labels["target"] == 0)).sum()) for k in (1, 2, 3, 4)],
            "leaking_train_rows": [int((reaches == k).sum()) for k in (1, 2, 3, 4)],
        },
        index=pd.Index([1, 2, 3, 4], name="fold"),
    )
    dropped_gap = 0
    if gap:
        dropped_gap = int((reaches != 0).sum())
        labels = labels[reaches == 0]
        per_fold["positives"] = [int(((labels["fold"] == k) & (labels["target"] == 1)).sum()) for k in (1, 2, 3, 4)]
        per_fold["negatives"] = [int(((labels["fold"] == k) & (labels["target"] == 0)).sum()) for k in (1, 2, 3, 4)]
    labels = labels.reset_index(drop=True)
    summary = LabelSummary(len(labels), per_fold, dropped_images, dropped_gap, positions, positions_above,
                           flux_to_class(threshold_flux))
    return labels, summary


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read a labels.csv written by :func:`make_labels` (or by hand with its columns).

    Checks what the later steps rely on, naming the file's line in one-line
    :class:`FlareLensError` messages: ``timestamp`` readable as UTC times, ``target`` 0 or
    1, ``fold`` (computed when absent) 1-4.
    """
    path = Path(path)
    try:
        labels = pd.read_csv(path, dtype={"goes_class": str, "other_flares": str, "file": str, "fl_start": str,
                                          "fl_pos_source": str, "timestamp": str},
                             keep_default_na=False, na_values={"fl_lon": [""], "fl_lat": [""]})
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such labels file (make one with `flarelens label`)") from None
    except IsADirectoryError:
        raise FlareLensError(f"{path}: is a directory, not a labels file") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise FlareLensError(f"{path}: cannot read labels ({' '.join(str(exc).split())})") from None
    missing = [c for c in ("timestamp", "file", "target") if c not in labels.columns]
    if missing:
        raise FlareLensError(f"{path}: missing column(s) {', '.join(missing)}")

    def fail(bad: pd.Series, what: str) -> None:
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{path}, line {file_lines(path)[i]}: {what(i)}")

    times = pd.to_datetime(labels["timestamp"], utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        fail(times.isna(), lambda i: f"cannot read timestamp {labels['timestamp'].iloc[i]!r} "
                                     "(expected ISO 8601 UTC, e.g. 2011-02-15T01:00:00Z)")
    if "fold" not in labels.columns:
        labels["fold"] = fold_of(times)
    target = pd.to_numeric(labels["target"], errors="coerce")
    bad = ~target.isin([0, 1])
    if bad.any():
        fail(bad, lambda i: f"target must be 0 or 1, got {str(labels['target'].iloc[i])!r}")
    fold = pd.to_numeric(labels["fold"], errors="coerce")
    bad = ~fold.isin([1, 2, 3, 4])
    if bad.any():
        fail(bad, lambda i: f"fold must be 1, 2, 3 or 4, got {str(labels['fold'].iloc[i])!r}")
    labels["target"], labels["fold"] = target.astype(int), fold.astype(int)
    return labels


def file_lines(path: str | os.PathLike) -> np.ndarray:
    """The line of the file (1-based, header = line 1, blank lines counted) of each data row
    of a CSV as pandas reads it (blank lines skipped), so messages can point at the file."""
    lines, previous, header = [], 0, False
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for record in reader:
            first, previous = previous + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header:
                lines.append(first)
            header = True  # pandas takes the first non-blank line as the header
    return np.asarray(lines, dtype=np.int64)

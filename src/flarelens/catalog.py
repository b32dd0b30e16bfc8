"""GOES flare catalogs: read them into one normalised table, and convert class <-> peak flux.

A GOES class is a letter for the decade of the 1-8 Å peak flux and a multiplier:
A = 1e-8, B = 1e-7, C = 1e-6, M = 1e-5, X = 1e-4 W/m², so ``M2.5`` is 2.5e-5 W/m² and
``X10.0`` is 1e-3 W/m². Flares are always compared by flux, never by the class string
(``"X10.0" < "X9.9"`` as strings).

Three catalog formats are read (the format is recognised from the header):

* the bundled solar-cycle-24 catalog (``event_starttime, event_peaktime, event_endtime,
  goes_class, hgs_lat, hgs_lon, noaa_ar, ...``), the default;
* the original full-disk study's format (``start_time, goes_class, fl_lon, fl_lat``;
  ``UNK`` or empty = unknown position);
* a plain SWPC-style event list (``start, peak, end, class``; no position).

All become a table with columns ``start, peak, end`` (UTC timestamps; NaT when the format
has none), ``goes_class`` (normalised, e.g. ``M1.0``), ``peak_flux`` (W/m²), ``lon``,
``lat`` (Stonyhurst heliographic degrees, NaN when unknown), ``noaa_ar`` (string, empty
when unassigned) and ``pos_source`` (where the position comes from, see below), sorted by
start time.

Dates must be unambiguous: year first (``2011-08-09 12:00``, ``2011/08/09``, ISO 8601) or
with the month's name (``09-Aug-2011``). ``09/08/2011`` may be 9 August or 8 September,
so a year-last date is read only with a stated order (``date_order="dmy"`` or ``"mdy"``).

Flare positions are cleaned as the catalog is read (:func:`repair_positions`): a missing
position, or an impossible one (|latitude| > 60°: active regions stay within about ±45°),
is replaced by the position of the same NOAA region from its flare nearest in time that
has a sane position, turned by differential rotation to the flare's start time
(``pos_source`` ``"region"``); positions read as they are get ``"catalog"``, and those left
unknown (NaN) ``"none"``.
"""

from __future__ import annotations

import csv
import importlib.resources
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError

#: Peak flux (W/m²) of class 1.0 of each GOES letter.
CLASS_BASE_FLUX = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}

#: How catalogs spell an unknown position or region (compared in upper case), besides "".
UNKNOWN_WORDS = ("UNK", "NAN", "NONE", "NA")

logger = logging.getLogger(__name__)

#: Column order of a normalised catalog.
CATALOG_COLUMNS = ["start", "peak", "end", "goes_class", "peak_flux", "lon", "lat", "noaa_ar", "pos_source"]

#: Values of ``pos_source``: read from the catalog, taken from the flare's NOAA region, unknown.
POSITION_SOURCES = ("catalog", "region", "none")

#: Largest plausible |heliographic latitude| of a flare, degrees (active regions: about ±45°).
MAX_FLARE_LATITUDE = 60.0

BUNDLED_CATALOG_NAME = "goes_flares_sc24.csv"
#: The period the bundled catalog covers (its source lists flares from 2010-01-01 to
#: 2018-12-31; its last flare, 2018-07-06, is followed by a quiet end of the cycle).
BUNDLED_CATALOG_SPAN = (pd.Timestamp("2010-01-01", tz="UTC"), pd.Timestamp("2018-12-31 23:59:59", tz="UTC"))

DATE_ORDERS = ("dmy", "mdy")

_CLASS_RE = re.compile(r"^\s*([ABCMX])\s*(\d+(?:\.\d*)?|\.\d+)\s*$", re.IGNORECASE)


def parse_class(goes_class: str) -> tuple[str, float]:
    """Split a GOES class into its letter and multiplier: ``" x2.2 "`` -> ``("X", 2.2)``.

    Accepts any case, surrounding spaces and a missing decimal (``X1``). Raises
    ``ValueError`` for anything else (empty, unknown letter, no or non-positive number).
    """
    if not isinstance(goes_class, str):
        raise ValueError(f"not a GOES class: {goes_class!r}")
    match = _CLASS_RE.match(goes_class)
    if not match:
        raise ValueError(f"not a GOES class: {goes_class!r} (expected e.g. C1.0, M2.5, X10)")
    number = float(match.group(2))
    if number <= 0:
        raise ValueError(f"not a GOES class: {goes_class!r} (the multiplier must be > 0)")
    return match.group(1).upper(), number


def class_to_flux(goes_class: str) -> float:
    """Peak 1-8 Å flux in W/m² of a GOES class: ``"M1.0"`` -> 1e-5, ``"X10"`` -> 1e-3."""
    letter, number = parse_class(goes_class)
    # Multiply in decimal, then convert once, so that e.g. M1.1 is exactly float("1.1e-5").
    exponent = round(math.log10(CLASS_BASE_FLUX[letter]))
    return float(f"{number!r}e{exponent}")


def normalise_class(goes_class: str) -> str:
    """Canonical spelling of a class with one decimal at least: ``" x1 "`` -> ``"X1.0"``."""
    letter, number = parse_class(goes_class)
    # Positional, never exponent notation: "A1e-05" would not parse back as a class.
    text = f"{number:.1f}" if round(number, 1) == number else np.format_float_positional(number, trim="-")
    return f"{letter}{text}"


def flux_to_class(flux: float) -> str:
    """GOES class of a peak flux in W/m², to one decimal: 2.2e-4 -> ``"X2.2"``, 1e-3 -> ``"X10.0"``.

    Fluxes below A1.0 are written as A-class with a multiplier below 1 (``"A0.5"``).
    """
    if not np.isfinite(flux) or flux <= 0:
        raise ValueError(f"peak flux must be a positive number of W/m², got {flux!r}")
    letter = "A"
    for name, base in CLASS_BASE_FLUX.items():
        # A tiny relative tolerance keeps 1e-5 (exactly M1.0 in decimal) from reading as C9.99.
        if flux >= base * (1 - 1e-9):
            letter = name
    number = round(flux / CLASS_BASE_FLUX[letter], 1)
    letters = list(CLASS_BASE_FLUX)
    if number >= 10 and letter != letters[-1]:
        # 9.96e-6 rounds to 10.0 of C: that is M1.0, the next letter's first step.
        letter = letters[letters.index(letter) + 1]
        number = round(flux / CLASS_BASE_FLUX[letter], 1)
    return f"{letter}{number:.1f}"


def parse_threshold(value: str | float) -> float:
    """A flare-size threshold given as a class (``M1.0``, ``x1``) or as a flux in W/m² (``1e-5``)."""
    if isinstance(value, (int, float)):
        flux = float(value)
    else:
        try:
            flux = float(value)
        except ValueError:
            try:
                return class_to_flux(value)
            except ValueError as exc:
                raise FlareLensError(
                    f"threshold {value!r} is neither a GOES class (C1.0, M1.0, X1.0, ...) nor a flux in W/m²"
                ) from exc
    if not np.isfinite(flux) or flux <= 0:
        raise FlareLensError(f"threshold must be a positive flux in W/m², got {value!r}")
    return flux


def bundled_catalog_path() -> Path:
    """Path of the bundled GOES catalog of solar cycle 24 (MIT, (c) 2021 Laura Hayes)."""
    return Path(str(importlib.resources.files("flarelens.resources").joinpath(BUNDLED_CATALOG_NAME)))


# Column names of each format, lower-cased; the first present name of each tuple is used.
_SWPC_COLUMNS = {
    "start": ("start", "begin", "start_time", "begin_time", "event_starttime"),
    "peak": ("peak", "max", "peak_time", "max_time", "event_peaktime"),
    "end": ("end", "end_time", "event_endtime"),
    "goes_class": ("class", "goes_class", "xray_class", "particulars"),
}


def detect_format(columns) -> str:
    """Name the catalog format of a header: ``"bundled"``, ``"study"`` or ``"swpc"``."""
    cols = {str(c).strip().lower() for c in columns}
    if {"event_starttime", "goes_class"} <= cols:
        return "bundled"
    if {"start_time", "goes_class"} <= cols and ({"fl_lon", "fl_lat"} & cols):
        return "study"
    if any(c in cols for c in _SWPC_COLUMNS["start"]) and any(c in cols for c in _SWPC_COLUMNS["goes_class"]):
        return "swpc"
    raise FlareLensError(
        "unrecognised catalog columns "
        f"{sorted(cols)}; expected the bundled format (event_starttime, goes_class, hgs_lon, hgs_lat), "
        "the study's (start_time, goes_class, fl_lon, fl_lat) or an SWPC list (start, peak, end, class)"
    )


def read_catalog(path: str | os.PathLike | None = None, *, date_order: str | None = None,
                 repair: bool = True) -> pd.DataFrame:
    """Read a GOES flare catalog (any of the three formats) into the normalised table.

    ``path=None`` reads the bundled solar-cycle-24 catalog. ``date_order`` (``"dmy"`` or
    ``"mdy"``) states how year-last dates such as ``09/08/2011`` are meant; without it they
    are refused. ``repair`` cleans missing and impossible positions (:func:`repair_positions`).
    Raises :class:`FlareLensError` naming the file and the line (blank lines counted) for an
    unreadable or empty file, a row with more fields than the header, an unknown format, a
    bad or ambiguous time, an unknown class or a bad position.
    """
    if date_order is not None and date_order not in DATE_ORDERS:
        raise FlareLensError(f"date order must be 'dmy' (day/month/year) or 'mdy' (month/day/year), got {date_order!r}")
    bundled = path is None
    path = bundled_catalog_path() if bundled else Path(path)
    raw, lines = _read_rows(path)
    if raw.empty:
        raise FlareLensError(f"{path}: the catalog holds no flares")
    try:
        fmt = detect_format(raw.columns)
    except FlareLensError as exc:
        raise FlareLensError(f"{path}: {exc}") from None

    def col(*names: str) -> pd.Series | None:
        for name in names:
            if name in raw.columns:
                return raw[name]
        return None

    if fmt == "bundled":
        start, peak, end = raw["event_starttime"], col("event_peaktime"), col("event_endtime")
        classes, lon, lat, ar = raw["goes_class"], col("hgs_lon"), col("hgs_lat"), col("noaa_ar")
    elif fmt == "study":
        start, peak, end = raw["start_time"], col("peak_time"), col("end_time")
        classes, lon, lat, ar = raw["goes_class"], col("fl_lon"), col("fl_lat"), col("noaa_ar", "ar")
    else:
        start, peak, end = (col(*_SWPC_COLUMNS[k]) for k in ("start", "peak", "end"))
        classes, lon, lat, ar = col(*_SWPC_COLUMNS["goes_class"]), None, None, col("noaa_ar", "region", "noaa")

    where = _Where(path, lines)
    n = len(raw)
    table = pd.DataFrame(index=pd.RangeIndex(n))
    for name, series, required in (("start", start, True), ("peak", peak, False), ("end", end, False)):
        table[name] = parse_times(series, name, required, date_order, where) if series is not None else \
            pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    fluxes, names = np.empty(n), []
    for i, value in enumerate(classes):
        try:
            fluxes[i] = class_to_flux(value)
            names.append(normalise_class(value))
        except ValueError as exc:
            raise FlareLensError(f"{where.line(i)}: {exc}") from None
    table["goes_class"] = names
    table["peak_flux"] = fluxes
    table["lon"] = _parse_degrees(lon, n, where, "longitude", 180.0)
    table["lat"] = _parse_degrees(lat, n, where, "latitude", 90.0)
    if ar is not None:
        region = ar.str.strip()
        # An unknown region ("NA", "UNK", 0, ...) must not group unrelated flares in repair_positions.
        table["noaa_ar"] = region.where(~region.str.upper().isin((*UNKNOWN_WORDS, "0")), "")
    else:
        table["noaa_ar"] = ""
    table["pos_source"] = np.where(np.isfinite(table["lon"]) & np.isfinite(table["lat"]), "catalog", "none")
    table = table.sort_values("start", kind="stable").reset_index(drop=True)
    if repair:
        table = repair_positions(table)
    table = table[CATALOG_COLUMNS]
    if bundled:
        table.attrs["span"] = BUNDLED_CATALOG_SPAN
    table.attrs["name"] = "the bundled catalog" if bundled else str(path)
    return table


class _Where:
    """Names a data row of a catalog file by its line: ``"cat.csv, line 7"``."""

    def __init__(self, path: Path, lines: np.ndarray):
        self.path, self.lines = path, lines

    def line(self, i: int) -> str:
        return f"{self.path}, line {int(self.lines[i])}"


def _read_rows(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The catalog's data rows as strings under its lower-cased header, and the file line of
    each row (1-based, blank lines counted)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header, rows, lines, previous = None, [], [], 0
            try:
                for record in reader:
                    first, previous = previous + 1, reader.line_num
                    if not any(cell.strip() for cell in record):
                        continue  # a blank line
                    if header is None:
                        header = [cell.strip().lower() for cell in record]
                    else:
                        rows.append(record)
                        lines.append(first)
            except csv.Error as exc:
                raise FlareLensError(f"{path}, line {reader.line_num}: cannot read the catalog as CSV ({exc})") from None
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such catalog file") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise FlareLensError(f"{path}: cannot read the catalog as CSV ({exc})") from None
    if header is None:
        raise FlareLensError(f"{path}: cannot read the catalog as CSV (the file is empty)")
    width, lead = len(header), 0
    counts = Counter(len(row) for row in rows)
    if counts[width + 1] > counts[width]:
        # Most rows have one field more than the header: a trailing comma on every row, or
        # an unnamed row-number column first (the bundled file), which is how pandas reads it.
        if all(not row[-1].strip() for row in rows if len(row) == width + 1):
            rows = [row[:width] if len(row) == width + 1 else row for row in rows]
        else:
            lead = 1
            rows = [row[1:] for row in rows]
    for row, line in zip(rows, lines):
        if len(row) > width:
            named = f"{width + 1} (a row number and {width} named columns)" if lead else str(width)
            raise FlareLensError(f"{path}, line {line}: {len(row) + lead} fields where the header has {named} "
                                 "(an extra comma, or a value with a comma that needs quotes?)")
    # A short row: its last fields are unknown, as pandas reads it.
    rows = [row + [""] * (width - len(row)) for row in rows]
    return pd.DataFrame(rows, columns=header, dtype=str), np.asarray(lines, dtype=np.int64)


_MISSING_TIME = ("", "NAN", "NAT", "NONE", "UNK")
_YEAR_FIRST_DASHED = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?=$|[T\s])")
_YEAR_FIRST = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?=$|[T\s])")
_YEAR_FIRST_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?=$|T)")
_YEAR_LAST = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?=$|[T\s])")
_SHORT_YEAR = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{2})(?=$|[T\s])")
_MONTH_NAME = re.compile(r"(?i)\b\d{0,2}[-\s]*(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b")
_YEAR4 = re.compile(r"\d{4}")


def parse_times(series: pd.Series, name: str = "start", required: bool = True, date_order: str | None = None,
                where=None) -> pd.Series:
    """UTC times of a catalog column (strings), refusing anything ambiguous.

    Accepted: year first (``2011-08-09``, ``2011/08/09``, ``20110809``, with an optional
    ``HH:MM[:SS[.fff]]``, ``T`` or space, ``Z`` or an offset), the month by name with a
    four-digit year (``09-Aug-2011 12:00``), and year last (``09/08/2011``) only with
    ``date_order`` ``"dmy"`` or ``"mdy"``. Naive times are UTC. Empty, ``NaN``, ``UNK`` are
    missing (NaT), an error when ``required``. ``where`` names rows in messages (a file and
    its lines); raises :class:`FlareLensError` at the first bad value.
    """
    where = where or _Where(Path("catalog"), np.arange(2, len(series) + 2))
    text = series.fillna("").astype(str).str.strip().reset_index(drop=True)
    missing = text.str.upper().isin(_MISSING_TIME)
    dashed = text.str.match(_YEAR_FIRST_DASHED)
    year_first = dashed | text.str.match(_YEAR_FIRST) | text.str.match(_YEAR_FIRST_COMPACT)
    iso = text.copy()
    respell = year_first & ~dashed  # 2011/08/09, 2011.08.09, 20110809 -> 2011-08-09
    if respell.any():
        iso[respell] = text[respell].str.replace(_YEAR_FIRST, r"\1-\2-\3", regex=True).str.replace(
            _YEAR_FIRST_COMPACT, r"\1-\2-\3", regex=True)
    year_last = text.str.match(_YEAR_LAST)
    named = pd.Series(False, index=text.index)
    other = ~year_first & ~year_last & ~missing
    if other.any():
        named[other] = text[other].str.contains(_MONTH_NAME) & text[other].str.contains(_YEAR4)

    def fail(mask, message):
        i = int(np.flatnonzero(mask.to_numpy())[0])
        raise FlareLensError(f"{where.line(i)}: {message(series.iloc[i])}")

    short = ~missing & text.str.match(_SHORT_YEAR)
    if short.any():
        fail(short, lambda v: f"{name} time {v!r} has a two-digit year; write the year in full (YYYY-MM-DD HH:MM)")
    if year_last.any():
        if date_order is None:
            fail(year_last, lambda v: f"{name} time {v!r} may be day/month/year or month/day/year; state which with "
                                      "--date-order dmy or mdy (or write dates as YYYY-MM-DD)")
        parts = text[year_last].str.extract(_YEAR_LAST.pattern + r"(.*)$")
        day, month = (parts[0], parts[2]) if date_order == "dmy" else (parts[2], parts[0])
        iso[year_last] = parts[3] + "-" + month + "-" + day + parts[4]
    times = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    numeric = (year_first | year_last) & ~missing
    bad = ~missing & ~numeric & ~named
    for mask, fmt in ((numeric, "ISO8601"), (named, "mixed")):
        if mask.any():
            parsed = pd.to_datetime(iso[mask], utc=True, format=fmt, errors="coerce")
            # Outside 1900-2199 is a typo, and beyond the range of nanosecond timestamps.
            plausible = parsed.notna() & (parsed.dt.year >= 1900) & (parsed.dt.year < 2200)
            bad[mask] = ~plausible
            times[mask] = parsed.where(plausible).astype("datetime64[ns, UTC]")
    if required:
        bad |= missing
    if bad.any():
        fail(bad, lambda v: f"cannot read {name} time {v!r} (expected YYYY-MM-DD HH:MM[:SS], UTC)")
    return times


def _parse_degrees(series: pd.Series | None, n: int, where: _Where, name: str, limit: float) -> np.ndarray:
    if series is None:
        return np.full(n, np.nan)
    text = series.str.strip()
    missing = text.eq("") | text.str.upper().isin(UNKNOWN_WORDS)
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = (values.isna() & ~missing) | (values.abs() > limit)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{where.line(i)}: cannot read {name} {series.iloc[i]!r} (degrees, |value| <= {limit:g}, or UNK)")
    return values.to_numpy(dtype=float)


def repair_positions(catalog: pd.DataFrame, max_lat: float = MAX_FLARE_LATITUDE) -> pd.DataFrame:
    """Replace missing and impossible flare positions by their NOAA region's.

    A position is sane when both coordinates are known and |lat| <= ``max_lat`` degrees.
    Every other flare with a NOAA number gets the position of the flare of the same region
    nearest in start time (the earlier on a tie) that has a sane position, carried by
    differential rotation (:func:`flarelens.geometry.position_at`) from that flare's start
    to its own; ``pos_source`` becomes ``"region"``. Flares left without one get NaN and
    ``"none"``; sane positions are kept (``"catalog"``). Returns a new table.
    """
    out = catalog.copy()
    lon = out["lon"].to_numpy(dtype=float).copy()
    lat = out["lat"].to_numpy(dtype=float).copy()
    sane = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= max_lat)
    lon[~sane], lat[~sane] = np.nan, np.nan
    source = np.where(sane, "catalog", "none").astype(object)
    ar = np.array(["" if pd.isna(v) else str(v).strip() for v in out["noaa_ar"]], dtype=object)
    starts = out["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    needy, donors = [], []
    for region in np.unique(ar[~sane & (ar != "")]):
        own = np.flatnonzero(ar == region)
        have, lack = own[sane[own]], own[~sane[own]]
        if not len(have):
            continue
        have = have[np.argsort(starts[have], kind="stable")]
        t = starts[have]
        k = np.clip(np.searchsorted(t, starts[lack], side="left"), 1, len(have)) - 1
        after = np.minimum(k + 1, len(have) - 1)
        # The earlier neighbour wins ties: only a strictly nearer later one replaces it.
        later = np.abs(t[after] - starts[lack]) < np.abs(starts[lack] - t[k])
        needy.append(lack)
        donors.append(have[np.where(later, after, k)])
    if needy:
        from flarelens.geometry import position_at

        needy, donors = np.concatenate(needy), np.concatenate(donors)
        times = out["start"]
        new_lon, new_lat = position_at(lon[donors], lat[donors], times.iloc[donors].to_numpy(),
                                       times.iloc[needy].to_numpy())
        lon[needy], lat[needy] = new_lon, new_lat
        source[needy] = "region"
    out["lon"], out["lat"], out["pos_source"] = lon, lat, source.astype(str)
    logger.debug("flare positions: %d taken from their NOAA region, %d unknown",
                 int((source == "region").sum()), int((source == "none").sum()))
    return out


def position_counts(catalog: pd.DataFrame) -> dict[str, int]:
    """How many flares of ``catalog`` have each ``pos_source`` (``catalog``, ``region``, ``none``)."""
    counts = catalog["pos_source"].value_counts() if "pos_source" in catalog else pd.Series(dtype=int)
    return {name: int(counts.get(name, 0)) for name in POSITION_SOURCES}


def catalog_span(catalog: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The period (UTC) a catalog covers: its declared span (the bundled catalog's is
    2010-01-01 to 2018-12-31), else from the day of its first flare to the end of the day
    of its last."""
    span = catalog.attrs.get("span")
    if span is not None:
        return span
    starts = catalog["start"].dropna()
    if starts.empty:
        raise FlareLensError("the catalog holds no flare with a start time")
    return starts.min().floor("D"), starts.max().floor("D") + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


def check_covers(catalog: pd.DataFrame, start, end, span=None) -> None:
    """Refuse (one-line :class:`FlareLensError`) a period ``start``..``end`` (UTC) that reaches
    outside the span of ``catalog`` (:func:`catalog_span`, or ``span``, a (first, last) pair
    stated by the user): every label there would be negative for want of flares."""
    first, last = (catalog_span(catalog) if span is None else tuple(parse_time(t) for t in span))
    start, end = parse_time(start), parse_time(end)
    if start >= first and end <= last:
        return
    name = catalog.attrs.get("name", "the catalog")
    raise FlareLensError(
        f"{name} covers {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, but the period asked for is "
        f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}: outside the catalog every label would be negative. "
        "Choose --start/--end within it, or another catalog (--catalog-span states a catalog's span when it "
        "is longer than its first to last flare)"
    )


def parse_time(value, what: str = "time") -> pd.Timestamp:
    """A UTC timestamp from a string (ISO 8601, ``YYYY-MM-DD[ HH:MM[:SS]]``) or datetime."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise FlareLensError(f"cannot read {what} {value!r} (expected e.g. 2011-02-15 or 2011-02-15T01:00)") from None
    if stamp is pd.NaT:
        raise FlareLensError(f"cannot read {what} {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

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
``lat`` (Stonyhurst heliographic degrees, NaN when unknown) and ``noaa_ar`` (string, empty
when unassigned), sorted by start time.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError

#: Peak flux (W/m²) of class 1.0 of each GOES letter.
CLASS_BASE_FLUX = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}

#: Column order of a normalised catalog.
CATALOG_COLUMNS = ["start", "peak", "end", "goes_class", "peak_flux", "lon", "lat", "noaa_ar"]

BUNDLED_CATALOG_NAME = "goes_flares_sc24.csv"

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
    text = f"{number:.1f}" if round(number, 1) == number else repr(number)
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


def read_catalog(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read a GOES flare catalog (any of the three formats) into the normalised table.

    ``path=None`` reads the bundled solar-cycle-24 catalog. Raises :class:`FlareLensError`
    naming the file (and the row, counting the header as line 1) for an unreadable or empty
    file, an unknown format, a bad time or an unknown class.
    """
    path = bundled_catalog_path() if path is None else Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such catalog file") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, IsADirectoryError, OSError) as exc:
        raise FlareLensError(f"{path}: cannot read the catalog as CSV ({exc})") from None
    # The bundled file's header lacks a name for its row-index column, which pandas then
    # takes as the index; the row number used in messages is the position instead.
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
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

    n = len(raw)
    table = pd.DataFrame(index=pd.RangeIndex(n))
    for name, series, required in (("start", start, True), ("peak", peak, False), ("end", end, False)):
        table[name] = _parse_times(series, n, path, name, required)
    fluxes, names = np.empty(n), []
    for i, value in enumerate(classes):
        try:
            fluxes[i] = class_to_flux(value)
            names.append(normalise_class(value))
        except ValueError as exc:
            raise FlareLensError(f"{path}, row {i + 2}: {exc}") from None
    table["goes_class"] = names
    table["peak_flux"] = fluxes
    table["lon"] = _parse_degrees(lon, n, path, "longitude", 180.0)
    table["lat"] = _parse_degrees(lat, n, path, "latitude", 90.0)
    table["noaa_ar"] = ar.str.strip().replace({"nan": "", "0": ""}) if ar is not None else ""
    return table.sort_values("start", kind="stable").reset_index(drop=True)[CATALOG_COLUMNS]


def _parse_times(series: pd.Series | None, n: int, path: Path, name: str, required: bool) -> pd.Series:
    if series is None:
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    text = series.str.strip()
    missing = text.eq("") | text.str.upper().isin(["NAN", "NAT", "NONE", "UNK"])
    times = pd.to_datetime(text.where(~missing), utc=True, errors="coerce", format="mixed")
    bad = times.isna() & ~missing
    if required:
        bad |= missing
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{path}, row {i + 2}: cannot read {name} time {series.iloc[i]!r} (expected YYYY-MM-DD HH:MM[:SS], UTC)")
    return times.astype("datetime64[ns, UTC]")


def _parse_degrees(series: pd.Series | None, n: int, path: Path, name: str, limit: float) -> np.ndarray:
    if series is None:
        return np.full(n, np.nan)
    text = series.str.strip()
    missing = text.eq("") | text.str.upper().isin(["UNK", "NAN", "NONE", "NA"])
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = (values.isna() & ~missing) | (values.abs() > limit)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{path}, row {i + 2}: cannot read {name} {series.iloc[i]!r} (degrees, |value| <= {limit:g}, or UNK)")
    return values.to_numpy(dtype=float)

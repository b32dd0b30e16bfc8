"""Scoring prediction files: skill scores per file and over folds, and where on the disk
the flares that were missed lie.

Three prediction-file formats are read; the format is recognised from the header:

* ``flarelens`` — our predictions.csv (docs/design.md): ``timestamp, file, flare_prob, target,
  goes_class, fl_lon, fl_lat, fold`` (+ any other label columns). ``fl_lon``/``fl_lat``
  are Stonyhurst heliographic degrees of the window's largest flare, empty when unknown.
* ``study`` — the original study's per-fold validation predictions:
  ``timestamp, flare_prob, target``, ``timestamp`` holding an image path
  (``.../2011/01/01/HMI.m2011.01.01_00.00.00.jpg``) or a time.
* ``study-class`` — the study's per-class files for the location analysis
  (``x_class.csv``, ``m_class.csv``, ...): ``timestamp, flare_prob, goes_class,
  fl_location, flare_start`` with ``fl_location`` written ``"(lon, lat)"`` in degrees
  (``unk`` or empty when unknown) and ``goes_class`` ``NF`` for no flare; no ``target``
  column (an optional one is read).

:func:`read_predictions` turns each into one normalised table; :func:`evaluate_files`
scores files (TSS, HSS per file, mean and population standard deviation over files);
:func:`location_analysis`, :func:`recall_cells` and :func:`recall_map` look at the
instances whose largest flare is X or M class: hits (``flare_prob >= threshold``, TP) and
misses (FN), split into central (|lon| <= 70°) and near-limb (|lon| > 70°) flares.
Counts are per instance (one image), as in the study: a flare forecast from 24 hourly
images counts 24 times.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from flarelens import metrics
from flarelens.catalog import normalise_class
from flarelens.errors import FlareLensError

FLARELENS = "flarelens"
STUDY = "study"
STUDY_CLASS = "study-class"

#: Columns of a normalised prediction table, in order (others carried through after them).
NORMALISED_COLUMNS = ["timestamp", "time", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fold"]

_NO_FLARE = {"", "NF", "NONE", "NAN", "UNK", "N/A", "NA", "-"}
_UNKNOWN_POSITION = {"", "UNK", "UNKNOWN", "NAN", "NONE", "N/A", "NA", "-"}
_LOCATION_RE = r"^\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$"
_IMAGE_TIME_RE = r"HMI\.m(\d{4})\.(\d{2})\.(\d{2})_(\d{2})\.(\d{2})\.(\d{2})"

_FORMATS_HELP = (
    "expected flarelens predictions (timestamp, file, flare_prob, target, goes_class, fl_lon, fl_lat, fold), "
    "the study's fold predictions (timestamp, flare_prob, target) or its per-class files "
    "(timestamp, flare_prob, goes_class, fl_location)"
)


# --------------------------------------------------------------------------- reading


def detect_format(columns: Iterable[str]) -> str:
    """The prediction-file format of a header: ``flarelens``, ``study`` or ``study-class``.

    Raises :class:`FlareLensError` for a header of none of them.
    """
    cols = {c.strip() for c in columns}
    if "flare_prob" in cols:
        if "fl_location" in cols:
            return STUDY_CLASS
        if "target" in cols and cols & {"file", "fl_lon", "fl_lat", "fold"}:
            return FLARELENS
        if "target" in cols:
            return STUDY
    raise FlareLensError(f"unknown prediction file format (columns: {', '.join(sorted(cols)) or 'none'}); {_FORMATS_HELP}")


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prediction file of any supported format into one normalised table.

    Columns: ``timestamp`` (as written), ``time`` (UTC, from the image name or the time
    written; NaT when neither), ``file``, ``flare_prob`` (float in [0, 1]), ``target``
    (Int8 0/1, <NA> when the file has none), ``goes_class`` (normalised, e.g. ``M1.0``;
    ``""`` when no flare), ``fl_lon``, ``fl_lat`` (degrees, NaN when unknown), ``fold``
    (Int64, <NA> when unknown), then any other columns of the file. ``frame.attrs`` holds
    ``path`` and ``format``.

    Raises :class:`FlareLensError` naming the file (and line) for a missing or unreadable
    file, an unknown format, a probability that is not a number in [0, 1], a target
    that is not 0/1, an unreadable flare class or position.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such prediction file") from None
    except IsADirectoryError:
        raise FlareLensError(f"{path}: is a directory, not a prediction CSV file") from None
    except pd.errors.EmptyDataError:
        raise FlareLensError(f"{path}: empty file (no header); {_FORMATS_HELP}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FlareLensError(f"{path}: not a readable CSV file ({str(exc).strip().splitlines()[-1]})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    try:
        fmt = detect_format(raw.columns)
    except FlareLensError as exc:
        raise FlareLensError(f"{path}: {exc}") from None
    if fmt == FLARELENS and ("fl_lon" in raw.columns) != ("fl_lat" in raw.columns):
        raise FlareLensError(f"{path}: has only one of fl_lon, fl_lat; write both (empty where unknown)")

    n = len(raw)
    out = pd.DataFrame(index=raw.index)
    out["timestamp"] = raw["timestamp"] if "timestamp" in raw else pd.Series([""] * n, index=raw.index, dtype=object)
    out["time"] = _parse_times(out["timestamp"])
    out["file"] = raw["file"] if "file" in raw else out["timestamp"].where(out["time"].notna() & out["timestamp"].str.contains(r"HMI\.m\d", regex=True), "")
    out["flare_prob"] = _parse_probabilities(raw["flare_prob"], path)
    if "target" in raw:
        out["target"] = _parse_targets(raw["target"], path)
    else:
        out["target"] = pd.array([pd.NA] * n, dtype="Int8")
    out["goes_class"] = _parse_classes(raw["goes_class"], path) if "goes_class" in raw else ""
    if fmt == STUDY_CLASS:
        out["fl_lon"], out["fl_lat"] = _parse_locations(raw["fl_location"], path)
    elif "fl_lon" in raw:
        out["fl_lon"] = _parse_degrees(raw["fl_lon"], path, "fl_lon", 180.0)
        out["fl_lat"] = _parse_degrees(raw["fl_lat"], path, "fl_lat", 90.0)
    else:
        out["fl_lon"] = np.nan
        out["fl_lat"] = np.nan
    if "fold" in raw:
        fold = pd.to_numeric(raw["fold"].str.strip(), errors="coerce").astype(float)
        out["fold"] = fold.where(fold == fold.round()).astype("Int64")
    else:
        out["fold"] = pd.array([pd.NA] * n, dtype="Int64")
    for col in raw.columns:
        if col not in out.columns:
            out[col] = raw[col]
    out.attrs["path"] = str(path)
    out.attrs["format"] = fmt
    return out.reset_index(drop=True)


def _line(index: int) -> str:
    # Data row i (0-based) sits on line i + 2 of the file: line 1 is the header.
    return f"line {index + 2} (data row {index + 1})"


def _parse_times(stamps: pd.Series) -> pd.Series:
    parts = stamps.str.extract(_IMAGE_TIME_RE)
    from_name = pd.to_datetime(
        parts[0] + "-" + parts[1] + "-" + parts[2] + "T" + parts[3] + ":" + parts[4] + ":" + parts[5],
        format="%Y-%m-%dT%H:%M:%S", errors="coerce", utc=True,
    )
    written = pd.to_datetime(stamps.where(parts[0].isna(), None), format="ISO8601", errors="coerce", utc=True)
    return from_name.where(from_name.notna(), written)


def _parse_probabilities(values: pd.Series, path: Path) -> pd.Series:
    prob = pd.to_numeric(values.str.strip(), errors="coerce").astype(float)
    bad = ~(np.isfinite(prob) & (prob >= 0) & (prob <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(
            f"{path}, {_line(i)}: flare_prob {values.iloc[i]!r} is not a probability (a number in [0, 1]); "
            "write the model's flare-class probability (softmax), not a logit or a label"
        )
    return prob


def _parse_targets(values: pd.Series, path: Path) -> pd.Series:
    num = pd.to_numeric(values.str.strip(), errors="coerce").astype(float)
    bad = ~num.isin([0.0, 1.0])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{path}, {_line(i)}: target {values.iloc[i]!r} is not 0 or 1 (1 = flare in the window)")
    return num.astype("Int8")


def _parse_classes(values: pd.Series, path: Path) -> pd.Series:
    mapping = {}
    for value in values.unique():
        text = str(value).strip()
        if text.upper() in _NO_FLARE:
            mapping[value] = ""
            continue
        try:
            mapping[value] = normalise_class(text)
        except ValueError:
            i = int(np.flatnonzero((values == value).to_numpy())[0])
            raise FlareLensError(
                f"{path}, {_line(i)}: goes_class {value!r} is not a GOES class (e.g. M1.0, X2.2; empty or NF for none)"
            ) from None
    return values.map(mapping).astype(object)


def _parse_degrees(values: pd.Series, path: Path, column: str, limit: float) -> pd.Series:
    text = values.str.strip()
    unknown = text.str.upper().isin(_UNKNOWN_POSITION)
    deg = pd.to_numeric(text.where(~unknown, None), errors="coerce").astype(float)
    bad = ~unknown & ~(np.isfinite(deg) & (deg.abs() <= limit))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(
            f"{path}, {_line(i)}: {column} {values.iloc[i]!r} is not a heliographic angle in degrees "
            f"within ±{limit:g} (leave it empty when unknown)"
        )
    return deg.where(~unknown, np.nan)


def _parse_locations(values: pd.Series, path: Path) -> tuple[pd.Series, pd.Series]:
    text = values.str.strip()
    unknown = text.str.upper().isin(_UNKNOWN_POSITION)
    parts = text.str.extract(_LOCATION_RE)
    lon = pd.to_numeric(parts[0], errors="coerce").astype(float)
    lat = pd.to_numeric(parts[1], errors="coerce").astype(float)
    ok = np.isfinite(lon) & np.isfinite(lat) & (lon.abs() <= 180) & (lat.abs() <= 90)
    bad = ~unknown & ~ok
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(
            f"{path}, {_line(i)}: fl_location {values.iloc[i]!r} is not \"(lon, lat)\" in degrees (or unk when unknown)"
        )
    return lon.where(~unknown, np.nan), lat.where(~unknown, np.nan)


def _as_frames(predictions) -> list[pd.DataFrame]:
    """A list of normalised tables from a table, a path, or a sequence of either."""
    if isinstance(predictions, (pd.DataFrame, str, os.PathLike)):
        predictions = [predictions]
    frames = []
    for item in predictions:
        frames.append(item if isinstance(item, pd.DataFrame) else read_predictions(item))
    return frames


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in [0, 1], or :class:`FlareLensError`."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise FlareLensError(f"threshold {threshold!r} is not a number; give a probability in [0, 1], e.g. 0.5") from None
    if not (0.0 <= t <= 1.0):
        raise FlareLensError(f"threshold {threshold!r} is not a probability in [0, 1]")
    return t


# --------------------------------------------------------------------------- skill scores


def evaluate_frame(frame: pd.DataFrame, threshold: float = metrics.THRESHOLD) -> metrics.Confusion:
    """Confusion counts of one normalised prediction table at ``threshold``.

    Raises :class:`FlareLensError` when the table has no targets (the study's per-class
    files have none: they are for :func:`location_analysis`).
    """
    threshold = check_threshold(threshold)
    target = frame["target"]
    if len(frame) and target.isna().any():
        where = frame.attrs.get("path", "predictions")
        raise FlareLensError(
            f"{where}: has no target column ({frame.attrs.get('format', 'unknown')} format); skill scores need "
            "targets: give predictions.csv or the study's fold files (per-class files are for `flarelens locations`)"
        )
    return metrics.confusion(target.to_numpy(dtype=float, na_value=0), frame["flare_prob"].to_numpy(dtype=float), threshold)


def evaluate_files(paths, threshold: float = metrics.THRESHOLD, ddof: int = metrics.STD_DDOF) -> dict:
    """Score prediction files (one per fold, typically) at ``threshold``.

    ``paths`` are prediction files (any supported format with targets) or normalised
    tables. Returns the structure ``flarelens evaluate --json`` prints::

        {"files": [{"path", "tp", "fp", "tn", "fn", "tss", "hss"}, ...],
         "mean": {"tss", "hss"}, "std": {"tss", "hss"}, "std_kind": "population"}

    where mean and std are over the files (population standard deviation, ``ddof=0``;
    ``ddof=1`` gives the sample one and ``"std_kind": "sample"``).
    """
    threshold = check_threshold(threshold)
    if ddof not in (0, 1):
        raise ValueError("ddof must be 0 (population) or 1 (sample)")
    items = [paths] if isinstance(paths, (pd.DataFrame, str, os.PathLike)) else list(paths)
    files = []
    for item in items:
        frame = item if isinstance(item, pd.DataFrame) else read_predictions(item)
        label = str(item) if not isinstance(item, pd.DataFrame) else frame.attrs.get("path", f"table {len(files) + 1}")
        files.append({"path": label, **evaluate_frame(frame, threshold).as_dict()})
    tss_mean, tss_std = metrics.aggregate([f["tss"] for f in files], ddof=ddof)
    hss_mean, hss_std = metrics.aggregate([f["hss"] for f in files], ddof=ddof)
    return {
        "files": files,
        "mean": {"tss": tss_mean, "hss": hss_mean},
        "std": {"tss": tss_std, "hss": hss_std},
        "std_kind": "population" if ddof == 0 else "sample",
    }


def format_evaluation(result: dict) -> str:
    """The table ``flarelens evaluate`` prints for an :func:`evaluate_files` result."""
    names = [f["path"] for f in result["files"]]
    width = max([len("file"), len(f"std ({result['std_kind']})")] + [len(n) for n in names])
    counts = [[f[k] for k in ("tp", "fp", "tn", "fn")] for f in result["files"]]
    cw = max([6] + [len(str(c)) + 1 for row in counts for c in row])
    head = f"{'file':<{width}}" + "".join(f"{k:>{cw}}" for k in ("TP", "FP", "TN", "FN")) + f"{'TSS':>9}{'HSS':>9}"
    lines = [head, "-" * len(head)]
    for f in result["files"]:
        lines.append(
            f"{f['path']:<{width}}" + "".join(f"{f[k]:>{cw}}" for k in ("tp", "fp", "tn", "fn"))
            + f"{f['tss']:>9.4f}{f['hss']:>9.4f}"
        )
    lines.append("-" * len(head))
    pad = " " * (4 * cw)
    lines.append(f"{'mean':<{width}}{pad}{result['mean']['tss']:>9.4f}{result['mean']['hss']:>9.4f}")
    lines.append(f"{'std (' + result['std_kind'] + ')':<{width}}{pad}{result['std']['tss']:>9.4f}{result['std']['hss']:>9.4f}")
    return "\n".join(lines)


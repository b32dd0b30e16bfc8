"""predictions.csv: its columns, reading (ours and the original study's formats), checking
and writing, and where each row came from. The only module that knows the format
(docs/design.md, "predictions.csv"); evaluate, locations, explain and report read through it.

Three formats are read; the format is recognised from the header:

* ``flarelens`` — our predictions.csv: ``timestamp, file, flare_prob,
  [flare_prob_calibrated,] target, goes_class, fl_lon, fl_lat, fold``, the other label
  columns, then the provenance ``model_fold, role``; beside it the sidecar
  ``<stem>.meta.json`` (checkpoint, model fold, training base rate, calibration).
  ``fl_lon``/``fl_lat`` are Stonyhurst heliographic degrees of the window's largest
  flare, empty when unknown.
* ``study`` — the original study's per-fold validation predictions:
  ``timestamp, flare_prob, target``, ``timestamp`` holding an image path
  (``.../2011/01/01/HMI.m2011.01.01_00.00.00.jpg``) or a time.
* ``study-class`` — the study's per-class files for the location analysis
  (``x_class.csv``, ``m_class.csv``, ...): ``timestamp, flare_prob, goes_class,
  fl_location, flare_start`` with ``fl_location`` written ``"(lon, lat)"`` in degrees
  (``unk`` or empty when unknown) and ``goes_class`` ``NF`` for no flare; no ``target``
  column (an optional one is read).

Provenance: ``role`` says what each row was for the model that scored it (``heldout``:
its validation quarter; ``inner``: the inner validation block that chose its epoch,
threshold and calibration; ``train``; ``purged``). Reading refuses rows that are not
held out unless asked for (``rows="any"``), and then marks the table contaminated.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from flarelens.catalog import normalise_class
from flarelens.errors import FlareLensError
from flarelens.fileio import write_csv, write_text

logger = logging.getLogger(__name__)

FLARELENS = "flarelens"
STUDY = "study"
STUDY_CLASS = "study-class"

#: Leading columns of predictions.csv as written; the other label columns follow in their
#: order, then :data:`PROVENANCE_COLUMNS`.
COLUMNS = ["timestamp", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fold"]

#: The calibrated probability, written right after ``flare_prob`` by ``flarelens calibrate``.
CALIBRATED = "flare_prob_calibrated"

#: Where each row came from: the fold the model was trained for, and the row's role for it.
PROVENANCE_COLUMNS = ["model_fold", "role"]

#: Row roles (``flarelens.folds.row_roles``); only ``heldout`` rows may be scored.
ROLES = ("heldout", "inner", "train", "purged")
HELD_OUT = "heldout"
INNER = "inner"

#: File names in a run directory: held-out predictions and the inner block's.
PREDICTIONS_NAME = "predictions.csv"
INNER_NAME = "inner_predictions.csv"

#: Columns of a normalised prediction table, in order (others carried through after them).
NORMALISED_COLUMNS = [
    "timestamp", "time", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fl_start", "fold",
    "model_fold", "role",
]

_NO_FLARE = {"", "NF", "NONE", "NAN", "UNK", "N/A", "NA", "-", "<NA>"}
_UNKNOWN = {"", "UNK", "UNKNOWN", "NAN", "NONE", "N/A", "NA", "-", "<NA>", "NAT"}
_LOCATION_RE = r"^\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$"
_IMAGE_TIME_RE = r"HMI\.m(\d{4})\.(\d{2})\.(\d{2})_(\d{2})\.(\d{2})\.(\d{2})"

FORMATS_HELP = (
    "expected flarelens predictions (timestamp, file, flare_prob, target, goes_class, fl_lon, fl_lat, fold), "
    "the study's fold predictions (timestamp, flare_prob, target) or its per-class files "
    "(timestamp, flare_prob, goes_class, fl_location)"
)


# --------------------------------------------------------------------------- reading


def detect_format(columns: Iterable[str]) -> str:
    """The prediction-file format of a header: ``flarelens``, ``study`` or ``study-class``.

    Raises :class:`FlareLensError` for a header of none of them.
    """
    cols = {str(c).strip() for c in columns}
    if "flare_prob" in cols:
        if "fl_location" in cols:
            return STUDY_CLASS
        if "target" in cols and cols & {"file", "fl_lon", "fl_lat", "fold"}:
            return FLARELENS
        if "target" in cols:
            return STUDY
    raise FlareLensError(f"unknown prediction file format (columns: {', '.join(sorted(cols)) or 'none'}); {FORMATS_HELP}")


def meta_path(path: str | os.PathLike) -> Path:
    """The sidecar of a predictions file: ``predictions.csv`` -> ``predictions.meta.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def read_meta(path: str | os.PathLike) -> dict:
    """The sidecar of a predictions file as a dict (``{}`` when there is none)."""
    side = meta_path(path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FlareLensError(f"{side}: unreadable predictions sidecar ({exc}); remove it or predict again") from None
    if not isinstance(meta, dict):
        raise FlareLensError(f"{side}: not a JSON object; remove it or predict again")
    return meta


def read_predictions(path: str | os.PathLike, rows: str = HELD_OUT) -> pd.DataFrame:
    """Read a prediction file of any supported format into one normalised table.

    Columns (:data:`NORMALISED_COLUMNS`): ``timestamp`` (as written), ``time`` (UTC, from
    the image name or the time written; NaT when neither), ``file``, ``flare_prob``
    (float in [0, 1]), ``flare_prob_calibrated`` (when the file has it), ``target`` (Int8
    0/1, <NA> when the file has none), ``goes_class`` (normalised, e.g. ``M1.0``; ``""``
    when no flare), ``fl_lon``, ``fl_lat`` (degrees, NaN when unknown), ``fl_start``
    (string, ``""`` when unknown), ``fold``, ``model_fold`` (Int64, <NA> when unknown),
    ``role`` (``""`` when unknown), then any other columns of the file. ``frame.attrs``
    holds ``path``, ``format``, ``meta`` (the sidecar) and ``contaminated``.

    ``rows``: ``"heldout"`` (default) refuses rows that were not held out from the model
    that scored them; ``"inner"`` wants inner-validation-block rows only (for choosing a
    threshold or a calibration); ``"any"`` takes every row and sets
    ``attrs["contaminated"]`` when some were not held out.

    Raises :class:`FlareLensError` naming the file (and line) for a missing, unreadable or
    header-only file, an unknown format, a probability that is not a finite number in
    [0, 1], a target that is not 0/1, a fold other than 1-4, an unreadable flare class
    or position, or rows of the wrong role.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such prediction file") from None
    except IsADirectoryError:
        raise FlareLensError(f"{path}: is a directory, not a prediction CSV file") from None
    except pd.errors.EmptyDataError:
        raise FlareLensError(f"{path}: empty file (no header); {FORMATS_HELP}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FlareLensError(f"{path}: not a readable CSV file ({str(exc).strip().splitlines()[-1]})") from None
    frame = _normalise_text(raw, str(path))
    frame.attrs["meta"] = read_meta(path)
    return check_rows(frame, rows)


def normalise(frame: pd.DataFrame, source: str | None = None, rows: str = "any") -> pd.DataFrame:
    """A predictions table held in memory (e.g. from :func:`flarelens.predict.predict_labels`)
    normalised exactly as :func:`read_predictions` normalises a file; ``source`` names it in
    messages. An already normalised table is returned as it is (after the ``rows`` check).
    """
    if frame.attrs.get("format") and "time" in frame.columns:
        return check_rows(frame, rows)
    source = source or frame.attrs.get("path") or "predictions table"
    text = frame.astype(object).where(pd.notna(frame), "")
    raw = text.apply(lambda col: col.map(_as_text)).reset_index(drop=True)
    out = _normalise_text(raw, source)
    out.attrs["meta"] = dict(frame.attrs.get("meta", {}))
    return check_rows(out, rows)


def _as_text(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def as_frames(predictions, rows: str = HELD_OUT) -> list[pd.DataFrame]:
    """A list of normalised tables from a table, a path, or a sequence of either."""
    if isinstance(predictions, (pd.DataFrame, str, os.PathLike)):
        predictions = [predictions]
    return [normalise(item, rows=rows) if isinstance(item, pd.DataFrame) else read_predictions(item, rows)
            for item in predictions]


def check_rows(frame: pd.DataFrame, rows: str = HELD_OUT) -> pd.DataFrame:
    """Check the roles of a normalised table's rows (see :func:`read_predictions`'s ``rows``).

    Rows of unknown provenance (the study's files, tables without ``role``) count as held out.
    """
    if rows not in (HELD_OUT, INNER, "any"):
        raise ValueError(f"rows must be 'heldout', 'inner' or 'any', got {rows!r}")
    where = frame.attrs.get("path", "predictions")
    role = frame["role"].astype(str).to_numpy() if "role" in frame else np.full(len(frame), "")
    not_held = role[(role != "") & (role != HELD_OUT)]
    frame.attrs["contaminated"] = bool(not_held.size)
    if rows == INNER:
        if len(frame) and not (role == INNER).all():
            n = int((role != INNER).sum())
            raise FlareLensError(
                f"{where}: {n} of {len(frame)} rows are not inner-validation-block rows (role inner); a threshold "
                "or calibration is chosen only there: write them with `flarelens predict --rows inner`"
            )
        return frame
    if not_held.size and rows == HELD_OUT:
        kinds = ", ".join(f"{int((not_held == r).sum())} {r}" for r in ROLES if (not_held == r).any())
        fold = _first(frame.get("model_fold"))
        raise FlareLensError(
            f"{where}: {not_held.size} of {len(frame)} rows were not held out from the model that scored them "
            f"({kinds}; model trained for fold {fold}); score its held-out fold only, or pass "
            "--include-training-rows to score them anyway (the output is then marked contaminated)"
        )
    if not_held.size:
        logger.warning("%s: %d of %d rows were not held out from the model: scores are CONTAMINATED",
                       where, not_held.size, len(frame))
    return frame


def _first(series):
    if series is None:
        return "unknown"
    values = series.dropna()
    return int(values.iloc[0]) if len(values) else "unknown"


def require_times(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` unchanged, or :class:`FlareLensError` naming the first row without a time."""
    bad = frame["time"].isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FlareLensError(
            f"{frame.attrs.get('path', 'predictions')}, {line_of(i)}: cannot read a time from timestamp "
            f"{frame['timestamp'].iloc[i]!r} (expected ISO 8601 UTC or an HMI.mYYYY.MM.DD_HH.MM.SS image name)"
        )
    return frame


def line_of(index: int) -> str:
    """Where data row ``index`` (0-based) sits in its CSV file: line 1 is the header."""
    return f"line {index + 2} (data row {index + 1})"


def _normalise_text(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    raw = raw.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    try:
        fmt = detect_format(raw.columns)
    except FlareLensError as exc:
        raise FlareLensError(f"{source}: {exc}") from None
    if fmt == FLARELENS and ("fl_lon" in raw.columns) != ("fl_lat" in raw.columns):
        raise FlareLensError(f"{source}: has only one of fl_lon, fl_lat; write both (empty where unknown)")
    n = len(raw)
    if n == 0:
        raise FlareLensError(f"{source}: has a header but no rows; there is nothing to score (predict again)")

    out = pd.DataFrame(index=raw.index)
    out["timestamp"] = raw["timestamp"] if "timestamp" in raw else pd.Series([""] * n, index=raw.index, dtype=object)
    out["time"] = parse_times(out["timestamp"])
    if "file" in raw:
        out["file"] = raw["file"]
    else:
        named = out["time"].notna() & out["timestamp"].str.contains(r"HMI\.m\d", regex=True)
        out["file"] = out["timestamp"].where(named, "")
    out["flare_prob"] = _probabilities(raw["flare_prob"], source, "flare_prob")
    if CALIBRATED in raw:
        out[CALIBRATED] = _probabilities(raw[CALIBRATED], source, CALIBRATED)
    if "target" in raw:
        out["target"] = _targets(raw["target"], source)
    else:
        out["target"] = pd.array([pd.NA] * n, dtype="Int8")
    out["goes_class"] = _classes(raw["goes_class"], source) if "goes_class" in raw else ""
    if fmt == STUDY_CLASS:
        out["fl_lon"], out["fl_lat"] = _locations(raw["fl_location"], source)
    elif "fl_lon" in raw:
        out["fl_lon"] = _degrees(raw["fl_lon"], source, "fl_lon", 180.0)
        out["fl_lat"] = _degrees(raw["fl_lat"], source, "fl_lat", 90.0)
    else:
        out["fl_lon"] = np.nan
        out["fl_lat"] = np.nan
    start = raw["fl_start"] if "fl_start" in raw else raw["flare_start"] if "flare_start" in raw else None
    out["fl_start"] = "" if start is None else start.str.strip().where(~start.str.strip().str.upper().isin(_UNKNOWN), "")
    out["fold"] = _folds(raw["fold"], source, "fold") if "fold" in raw else pd.array([pd.NA] * n, dtype="Int64")
    if "model_fold" in raw:
        out["model_fold"] = _folds(raw["model_fold"], source, "model_fold")
    else:
        out["model_fold"] = pd.array([pd.NA] * n, dtype="Int64")
    out["role"] = _roles(raw, out, source)
    for col in raw.columns:
        if col not in out.columns:
            out[col] = raw[col]
    out.attrs["path"] = source
    out.attrs["format"] = fmt
    out.attrs["meta"] = {}
    out.attrs["contaminated"] = False
    return out.reset_index(drop=True)


def parse_times(stamps: pd.Series) -> pd.Series:
    """UTC times of timestamps: from an ``HMI.mYYYY.MM.DD_HH.MM.SS`` image name inside them,
    else the ISO 8601 time written; NaT when neither."""
    stamps = stamps.astype(str)
    parts = stamps.str.extract(_IMAGE_TIME_RE)
    from_name = pd.to_datetime(
        parts[0] + "-" + parts[1] + "-" + parts[2] + "T" + parts[3] + ":" + parts[4] + ":" + parts[5],
        format="%Y-%m-%dT%H:%M:%S", errors="coerce", utc=True,
    )
    written = pd.to_datetime(stamps.where(parts[0].isna(), None), format="ISO8601", errors="coerce", utc=True)
    return from_name.where(from_name.notna(), written)


def _bad(mask, values: pd.Series, source: str, message: str):
    if mask.any():
        i = int(np.flatnonzero(np.asarray(mask))[0])
        raise FlareLensError(f"{source}, {line_of(i)}: {message.format(value=values.iloc[i])}")


def _probabilities(values: pd.Series, source: str, column: str) -> pd.Series:
    prob = pd.to_numeric(values.str.strip(), errors="coerce").astype(float)
    bad = ~(np.isfinite(prob) & (prob >= 0) & (prob <= 1))
    _bad(bad, values, source, column + " {value!r} is not a probability (a finite number in [0, 1]); "
         "write the model's flare-class probability (softmax), not a logit, a label or NaN")
    return prob


def _targets(values: pd.Series, source: str) -> pd.Series:
    num = pd.to_numeric(values.str.strip(), errors="coerce").astype(float)
    _bad(~num.isin([0.0, 1.0]), values, source, "target {value!r} is not 0 or 1 (1 = flare in the window)")
    return num.astype("Int8")


def _folds(values: pd.Series, source: str, column: str) -> pd.Series:
    text = values.str.strip()
    unknown = text.str.upper().isin(_UNKNOWN)
    num = pd.to_numeric(text.where(~unknown, None), errors="coerce").astype(float)
    _bad(~unknown & ~num.isin([1.0, 2.0, 3.0, 4.0]), values, source,
         column + " {value!r} is not a fold number 1, 2, 3 or 4 (the quarter of the year)")
    return num.where(~unknown).astype("Int64")


def _roles(raw: pd.DataFrame, out: pd.DataFrame, source: str) -> pd.Series:
    if "role" in raw:
        role = raw["role"].str.strip().str.lower()
        _bad(~role.isin(("",) + ROLES), raw["role"], source,
             "role {value!r} is not one of " + ", ".join(ROLES) + " (empty when unknown)")
        return role.astype(object)
    # No roles written (older files): the fold the model was trained for still tells
    # held-out rows (its validation quarter) from training rows.
    known = out["model_fold"].notna() & out["fold"].notna()
    same = (out["model_fold"] == out["fold"]).fillna(False).to_numpy(dtype=bool)
    return pd.Series(np.where(known.to_numpy(dtype=bool), np.where(same, HELD_OUT, "train"), ""),
                     index=out.index, dtype=object)


def _classes(values: pd.Series, source: str) -> pd.Series:
    mapping = {}
    for value in values.unique():
        text = str(value).strip()
        if text.upper() in _NO_FLARE:
            mapping[value] = ""
            continue
        try:
            mapping[value] = normalise_class(text)
        except ValueError:
            _bad(values == value, values, source,
                 "goes_class {value!r} is not a GOES class (e.g. M1.0, X2.2; empty or NF for none)")
    return values.map(mapping).astype(object)


def _degrees(values: pd.Series, source: str, column: str, limit: float) -> pd.Series:
    text = values.str.strip()
    unknown = text.str.upper().isin(_UNKNOWN)
    deg = pd.to_numeric(text.where(~unknown, None), errors="coerce").astype(float)
    _bad(~unknown & ~(np.isfinite(deg) & (deg.abs() <= limit)), values, source,
         column + " {value!r} is not a heliographic angle in degrees " + f"within ±{limit:g} (leave it empty when unknown)")
    return deg.where(~unknown, np.nan)


def _locations(values: pd.Series, source: str) -> tuple[pd.Series, pd.Series]:
    text = values.str.strip()
    unknown = text.str.upper().isin(_UNKNOWN)
    parts = text.str.extract(_LOCATION_RE)
    lon = pd.to_numeric(parts[0], errors="coerce").astype(float)
    lat = pd.to_numeric(parts[1], errors="coerce").astype(float)
    ok = np.isfinite(lon) & np.isfinite(lat) & (lon.abs() <= 180) & (lat.abs() <= 90)
    _bad(~unknown & ~ok, values, source, 'fl_location {value!r} is not "(lon, lat)" in degrees (or unk when unknown)')
    return lon.where(~unknown, np.nan), lat.where(~unknown, np.nan)


# --------------------------------------------------------------------------- writing


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s columns in the written order: :data:`COLUMNS` (with ``flare_prob_calibrated``
    after ``flare_prob``), the other columns, then :data:`PROVENANCE_COLUMNS`."""
    lead = [c for c in COLUMNS if c in frame.columns]
    if CALIBRATED in frame.columns:
        lead.insert(lead.index("flare_prob") + 1, CALIBRATED)
    tail = [c for c in PROVENANCE_COLUMNS if c in frame.columns]
    return frame[lead + [c for c in frame.columns if c not in lead and c not in tail] + tail]


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write a predictions table (and its sidecar, when ``meta`` is given) atomically.

    Refuses (:class:`FlareLensError`) an empty table, a missing contract column, and any
    probability that is not a finite number in [0, 1] — nothing non-finite is ever written.
    """
    path = Path(path)
    missing = [c for c in ("timestamp", "file", "flare_prob", "target") if c not in frame.columns]
    if missing:
        raise FlareLensError(f"{path}: predictions need column(s) {', '.join(missing)}")
    if frame.empty:
        raise FlareLensError(f"{path}: no predictions to write")
    for col in ("flare_prob", CALIBRATED):
        if col in frame.columns:
            check_probabilities(frame[col], f"{path}: {col}")
    out = order_columns(frame.drop(columns=[c for c in ("time",) if c in frame.columns]))
    write_csv(out, path)
    if meta is not None:
        write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", meta_path(path))
    return path


def check_probabilities(values, what: str) -> np.ndarray:
    """``values`` as a float array, or :class:`FlareLensError` when one is not finite or not in [0, 1]."""
    p = np.asarray(values, dtype=float)
    bad = ~(np.isfinite(p) & (p >= 0) & (p <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FlareLensError(
            f"{what}: {int(bad.sum())} of {p.size} probabilities are not finite numbers in [0, 1] "
            f"(first: row {i + 1}, {p[i]!r}); a diverged model? retrain it (lower --lr) rather than score it"
        )
    return p

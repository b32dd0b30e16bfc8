"""Which predictions to explain, and their images: selection, predictions, backgrounds.

An *instance* is one row of predictions.csv (one image and the model's probability for
it). :func:`select_instances` filters them by flare class, outcome, time, position and
count; :func:`load_images` reads their images as the model saw them; :func:`background_rows`
gives the non-flaring training rows a Deep SHAP background is drawn from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flarelens.errors import FlareLensError
from flarelens.explain import scores

OUTCOMES = ("TP", "FN", "FP", "TN")
CLASSES = ("X", "M", "C", "B", "A", "none")
POSITIONS = ("central", "limb")


@dataclass
class Selection:
    """Which predictions to explain. ``None`` means no filter.

    ``classes``: largest-flare class letters (X, M, C, B, A, none); ``outcomes``: TP, FN,
    FP, TN at ``threshold`` on ``flare_prob``; ``start``/``end``: UTC time range
    (inclusive); ``position``: ``central`` (|fl_lon| <= 70 degrees) or ``limb`` (rows with
    an unknown position are dropped by either); ``limit``: the first N rows in time order.
    """

    classes: list[str] | None = None
    outcomes: list[str] | None = None
    start: str | None = None
    end: str | None = None
    position: str | None = None
    limit: int | None = None
    threshold: float = 0.5

    def describe(self) -> str:
        """The filters in force, as command-line options (e.g. ``--class X,M --limit 5``)."""
        parts = []
        for flag, value in (("--class", self.classes), ("--outcome", self.outcomes)):
            if value:
                parts.append(f"{flag} {','.join(value)}")
        for flag, value in (("--start", self.start), ("--end", self.end), ("--position", self.position),
                            ("--limit", self.limit)):
            if value is not None:
                parts.append(f"{flag} {value}")
        return " ".join(parts) or "no filter"


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """predictions.csv (``flarelens predict``) with times parsed; checks the needed columns."""
    path = Path(path)
    if not path.is_file():
        raise FlareLensError(f"{path}: no such predictions file (write one with `flarelens predict`)")
    try:
        frame = pd.read_csv(path, keep_default_na=True, dtype={"goes_class": str, "file": str})
    except Exception as exc:  # noqa: BLE001 - parser errors of any kind are bad input
        raise FlareLensError(f"{path}: cannot read as CSV ({exc})") from None
    return normalise_predictions(frame, str(path))


def normalise_predictions(frame: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """A predictions table with the columns explain needs (missing label columns empty) and
    times parsed into ``time``; ``source`` names it in error messages."""
    frame = frame.copy()
    path = source
    missing = [c for c in ("timestamp", "file", "flare_prob", "target") if c not in frame.columns]
    if missing:
        raise FlareLensError(f"{path}: missing column(s) {', '.join(missing)}; expected the output of `flarelens predict`")
    for col, default in (("goes_class", ""), ("fl_lon", np.nan), ("fl_lat", np.nan), ("fl_start", "")):
        if col not in frame.columns:
            frame[col] = default
    frame["goes_class"] = frame["goes_class"].fillna("").astype(str)
    frame["fl_start"] = frame["fl_start"].fillna("").astype(str)
    times = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    bad = times.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{path}, row {row + 2}: cannot read timestamp {frame['timestamp'].iloc[row]!r} (expected ISO 8601 UTC)")
    frame["time"] = times
    return frame


def select_instances(pred: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The rows of ``pred`` (see :func:`read_predictions`) that ``selection`` keeps.

    Adds the columns ``flare_class``, ``outcome`` and ``position`` used by the filters.
    """
    threshold = float(selection.threshold)
    if not 0.0 < threshold < 1.0:
        raise FlareLensError(f"--threshold must be a probability strictly between 0 and 1, got {selection.threshold!r}")
    if selection.limit is not None and selection.limit < 0:
        raise FlareLensError(f"--limit must be >= 0, got {selection.limit}")
    start = _utc(selection.start, "start") if selection.start is not None else None
    end = _utc(selection.end, "end") if selection.end is not None else None
    if start is not None and end is not None and start > end:
        raise FlareLensError(f"nothing selected: --start {selection.start} is after --end {selection.end}")
    frame = pred.copy()
    if "time" not in frame.columns:
        frame["time"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["flare_class"] = scores.flare_class(frame["goes_class"].fillna("").to_numpy())
    frame["outcome"] = scores.outcome(frame["flare_prob"].to_numpy(), frame["target"].to_numpy(), selection.threshold)
    frame["position"] = scores.position_class(frame["fl_lon"].to_numpy())
    keep = np.ones(len(frame), dtype=bool)
    if selection.classes:
        wanted = [c.strip() for c in selection.classes]
        wanted = ["none" if c.lower() == "none" else c.upper() for c in wanted]
        bad = [c for c in wanted if c not in CLASSES]
        if bad:
            raise FlareLensError(f"unknown flare class {', '.join(bad)}: choose from {', '.join(CLASSES)}")
        keep &= frame["flare_class"].isin(wanted).to_numpy()
    if selection.outcomes:
        wanted = [o.strip().upper() for o in selection.outcomes]
        bad = [o for o in wanted if o not in OUTCOMES]
        if bad:
            raise FlareLensError(f"unknown outcome {', '.join(bad)}: choose from {', '.join(OUTCOMES)}")
        keep &= frame["outcome"].isin(wanted).to_numpy()
    if start is not None:
        keep &= (frame["time"] >= start).to_numpy()
    if end is not None:
        keep &= (frame["time"] <= end).to_numpy()
    if selection.position is not None:
        if selection.position not in POSITIONS:
            raise FlareLensError(f"unknown position {selection.position!r}: choose central or limb")
        keep &= (frame["position"] == selection.position).to_numpy()
    out = frame[keep].sort_values("time", kind="stable")
    if selection.limit is not None:
        out = out.head(selection.limit)
    return out.reset_index(drop=True)


def nothing_selected(pred: pd.DataFrame, selection: Selection, source: str) -> FlareLensError:
    """The one-line error for a selection that kept no row of ``pred`` (read from ``source``)."""
    if selection.limit == 0:
        return FlareLensError("nothing selected: --limit 0 asks for no instance")
    if pred.empty:
        return FlareLensError(f"nothing selected: {source} has no predictions")
    return FlareLensError(f"nothing selected: none of the {len(pred)} predictions of {source} matches "
                          f"{selection.describe()}")


def row_folds(frame: pd.DataFrame) -> np.ndarray:
    """Fold (1-4) of each row: its ``fold`` column, or the quarter of its time where that is empty."""
    from flarelens.labels import fold_of

    quarters = fold_of(frame["time"] if "time" in frame.columns else frame["timestamp"])
    if "fold" not in frame.columns:
        return quarters
    given = pd.to_numeric(frame["fold"], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(given), given, quarters).astype(int)


def training_rows(frame: pd.DataFrame, model_fold) -> np.ndarray:
    """True for the rows of ``frame`` a model trained for fold ``model_fold`` may have seen
    in training: every row outside its held-out quarter (its training quarters, and within
    them the inner validation block that chose its epoch)."""
    if model_fold is None:
        return np.ones(len(frame), dtype=bool)
    return row_folds(frame) != int(model_fold)


def check_held_out(frame: pd.DataFrame, model_fold, checkpoint: str, allow: bool = False) -> np.ndarray:
    """The training-row mask of :func:`training_rows`; refuses any such row unless ``allow``.

    The error is one line naming the checkpoint's fold, how many selected rows are
    training rows and the first of them.
    """
    mask = training_rows(frame, model_fold)
    if mask.any() and not allow:
        if model_fold is None:
            raise FlareLensError(f"{checkpoint} records no validation fold, so any row may be one it trained on; "
                                 "pass --allow-training-rows to explain them anyway, marked as training data")
        k = int(model_fold)
        first = int(np.flatnonzero(mask)[0])
        others = ", ".join(str(f) for f in (1, 2, 3, 4) if f != k)
        raise FlareLensError(
            f"{int(mask.sum())} of the {len(frame)} selected rows are training rows of {checkpoint}: it is the fold-{k} "
            f"model (validated on fold {k}, trained on folds {others}) and e.g. {frame['timestamp'].iloc[first]} is "
            f"in fold {row_folds(frame.iloc[[first]])[0]}; explain fold-{k} rows (`flarelens predict --fold {k}`) "
            "or pass --allow-training-rows to explain them marked as training data"
        )
    return mask


def _utc(value, what) -> pd.Timestamp:
    from flarelens.labels import parse_time

    return parse_time(value, what)


def stem_of(row) -> str:
    """Output name of an instance: its image name without extension (HMI.mYYYY.MM.DD_HH.MM.SS)."""
    from flarelens.images import image_relpath

    return Path(image_relpath(row["time"], "")).name


def image_path(root: Path, row, source: str = "predictions") -> Path:
    """The image file of a row: ``root/file``, or the naming convention's file of its time."""
    from flarelens.images import find_image

    path = root / str(row["file"])
    if path.is_file():
        return path
    found = find_image(root, row["time"])
    if found is not None:
        return found
    raise FlareLensError(
        f"{source}: image {row['file']} of {row['timestamp']} not found under {root} (check --images)"
    )


def load_images(root: Path, rows: pd.DataFrame, image_size: int | None) -> tuple[torch.Tensor, list[int]]:
    """(B, 1, S, S) uint8 images of ``rows`` resized as for training, and their file sizes (px)."""
    from flarelens.data import read_image, resize_image

    images, sizes = [], []
    for _, row in rows.iterrows():
        img = read_image(image_path(root, row))
        if img.shape[-1] != img.shape[-2]:
            raise FlareLensError(f"{row['file']}: full-disk images must be square, got {tuple(img.shape[-2:])}")
        sizes.append(int(img.shape[-1]))
        images.append(resize_image(img, image_size))
    return torch.stack(images), sizes


def draw_background(background: pd.DataFrame | None, k: int, seed: int) -> pd.DataFrame:
    """``k`` rows drawn without replacement (seeded) from ``background``, in table order."""
    if background is None or background.empty:
        raise FlareLensError("Deep SHAP needs non-flaring training images as background: pass --labels labels.csv")
    if k < 2:
        raise FlareLensError(f"--background must be >= 2 images, got {k}")
    if len(background) < k:
        raise FlareLensError(f"only {len(background)} non-flaring training images for a background of {k}; lower --background")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(background), size=k, replace=False))
    rows = background.iloc[pick].copy()
    if "time" not in rows.columns:
        rows["time"] = pd.to_datetime(rows["timestamp"], utc=True)
    return rows.reset_index(drop=True)


def background_rows(labels: pd.DataFrame, fold: int | None, exclude=()) -> pd.DataFrame:
    """Non-flaring training rows of a labels table: target 0, fold != ``fold`` (when given),
    times not in ``exclude``."""
    frame = labels[labels["target"].astype(int) == 0]
    if fold is not None and "fold" in frame.columns:
        frame = frame[frame["fold"].astype(int) != int(fold)]
    if len(exclude):
        frame = frame[~frame["timestamp"].isin(set(exclude))]
    return frame.reset_index(drop=True)

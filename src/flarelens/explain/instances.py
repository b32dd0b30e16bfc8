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


def load_predictions(predictions: str | os.PathLike | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The predictions to explain and where they came from (a path, or words for a table).

    Read through :mod:`flarelens.predictions` (the one reader of predictions.csv, the study's
    formats included), every row whatever its role for the model that scored it: which rows
    the *explained* checkpoint trained on is :func:`check_held_out`'s question. Every row
    needs a time and a target (one line naming the first that has none).
    """
    from flarelens import predictions as pr

    if isinstance(predictions, pd.DataFrame):
        frame = pr.normalise(predictions, rows="any")
        source = str(frame.attrs.get("path") or "the predictions table")
    else:
        frame = pr.read_predictions(predictions, rows="any")
        source = str(predictions)
    pr.require_times(frame)
    missing = frame["target"].isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise FlareLensError(f"{source}, {pr.line_of(i)}: no target (0/1); explain needs each row's label "
                             "(predictions of `flarelens predict`, or the study's fold files)")
    frame["target"] = frame["target"].astype(int)
    return frame, source


def select_instances(pred: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The rows of ``pred`` (see :func:`load_predictions`) that ``selection`` keeps.

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
    given = pd.to_numeric(frame["fold"], errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(given), given, quarters).astype(int)


def row_roles_for(frame: pd.DataFrame, config: dict) -> np.ndarray:
    """Each row's role for the checkpoint whose training configuration is ``config``:
    ``heldout`` (its validation fold), ``train``, ``inner`` (the inner block that chose its
    epoch) or ``purged`` (:func:`flarelens.folds.roles_from_config`)."""
    from flarelens.folds import roles_from_config

    rows = pd.DataFrame({"timestamp": frame["time"].to_numpy(), "fold": row_folds(frame)})
    return roles_from_config(rows, config).to_numpy()


def check_held_out(frame: pd.DataFrame, config: dict, checkpoint: str, allow: bool = False) -> np.ndarray:
    """True for the rows of ``frame`` the checkpoint (training configuration ``config``) was
    not held out from: its training quarters, the inner block that chose its epoch included.

    Refuses any such row with one line naming the checkpoint's fold unless ``allow``. A
    checkpoint recording no fold may have seen any row.
    """
    if config.get("fold") is None:
        if not allow:
            raise FlareLensError(f"{checkpoint} records no validation fold, so any row may be one it trained on; "
                                 "pass --allow-training-rows to explain them anyway, marked as training data")
        return np.ones(len(frame), dtype=bool)
    roles = row_roles_for(frame, config)
    mask = roles != "heldout"
    if mask.any() and not allow:
        k = int(config["fold"])
        first = int(np.flatnonzero(mask)[0])
        others = ", ".join(str(f) for f in (1, 2, 3, 4) if f != k)
        kinds = ", ".join(f"{int((roles == r).sum())} {r}" for r in ("train", "inner", "purged") if (roles == r).any())
        raise FlareLensError(
            f"{int(mask.sum())} of the {len(frame)} selected rows are not held out from {checkpoint} ({kinds}): it is "
            f"the fold-{k} model (validated on fold {k}, trained on folds {others}) and e.g. "
            f"{frame['timestamp'].iloc[first]} is in fold {row_folds(frame.iloc[[first]])[0]}; explain fold-{k} rows "
            "(`flarelens predict --fold "
            f"{k}`) or pass --allow-training-rows to explain them marked as training data"
        )
    return mask


def _utc(value, what) -> pd.Timestamp:
    from flarelens.labels import parse_time

    return parse_time(value, what)


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
    from flarelens.pack import is_pack, read_images

    if is_pack(root):
        return read_images(root, rows["file"], image_size)

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

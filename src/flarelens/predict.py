"""Flare probabilities from a trained checkpoint: for a labelled set, or for image files.

:func:`predict_labels` gives the predictions contract of docs/design.md (columns owned by
:mod:`flarelens.predictions`): ``timestamp``, ``file``, ``flare_prob``, ``target``, the
label metadata carried through, and where each row stands for this model: ``model_fold``
(the fold it was trained for) and ``role`` (``heldout``, ``inner``, ``train``, ``purged``).
Rows that are not held out are predicted only when asked, with a loud warning, and stay
marked so that evaluation refuses them. :func:`predict_files` is the operational use: the
probability of a flare >= the threshold in the next window for each image file (JPEG,
PNG, JPEG 2000, FITS; any size, resized to the model's). A model giving a non-finite
probability (a diverged training) is refused: nothing non-finite is written or printed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from flarelens import __version__, predictions
from flarelens.checkpoint import load_model
from flarelens.data import MagnetogramDataset, read_image, resize_image, to_unit
from flarelens.distributed import resolve_device
from flarelens.errors import FlareLensError
from flarelens.labels import read_labels
from flarelens.progress import bar
from flarelens.rundir import read_config

logger = logging.getLogger(__name__)

#: Leading columns of predictions.csv (the contract lives in flarelens.predictions).
PREDICTION_COLUMNS = predictions.COLUMNS

#: Which labelled rows to predict: the model's held-out fold, its inner validation block, every row.
ROWS = ("heldout", "inner", "all")


def probabilities(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device="cpu",
    workers: int = 0,
    progress: bool = True,
    desc: str = "predicting",
) -> np.ndarray:
    """Flare probability (softmax of class 1) of every item of ``dataset``, in order.

    Raises :class:`FlareLensError` when the model gives a non-finite probability.
    """
    device = torch.device(device)
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    out = []
    with torch.no_grad():
        for x, _ in bar(loader, progress=progress, desc=desc, unit="batch", leave=False):
            logits = model(to_unit(x.to(device, non_blocking=True))).float()
            out.append(torch.softmax(logits, dim=1)[:, 1].cpu())
    prob = torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
    bad = ~np.isfinite(prob)
    if bad.any():
        raise FlareLensError(
            f"the model gives non-finite probabilities (NaN) for {int(bad.sum())} of {prob.size} images: its "
            "training diverged; retrain it (e.g. a lower --lr) — nothing was written"
        )
    return prob


def row_roles(labels: pd.DataFrame, config: dict) -> pd.Series:
    """What each labels row was for the model of ``config``: ``heldout``, ``inner``, ``train``
    or ``purged`` (:func:`flarelens.folds.roles_from_config`: the run's fold, inner block,
    gap and window; runs made before inner blocks trained on every other-quarter row)."""
    from flarelens.folds import roles_from_config

    if config.get("fold") not in (1, 2, 3, 4):
        raise FlareLensError(f"the checkpoint records no fold 1-4 (fold {config.get('fold')!r}); cannot tell held-out rows")
    return roles_from_config(labels, config).astype(object)


def train_base_rate(labels: pd.DataFrame, roles: pd.Series, config: dict) -> tuple[float | None, str]:
    """Flaring share of the model's training rows (the BSS climatology) and where it came from."""
    rate = config.get("train_base_rate")
    if isinstance(rate, (int, float)) and 0 <= rate <= 1:
        return float(rate), "run config"
    train = labels["target"].to_numpy()[(roles == "train").to_numpy()]
    if train.size == 0:
        return None, "none"
    return float(train.mean()), "labels (training rows of the model's fold)"


def predict_labels(
    checkpoint: str | os.PathLike,
    labels: str | os.PathLike | pd.DataFrame,
    images: str | os.PathLike,
    fold: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    progress: bool = True,
    rows: str | None = None,
) -> pd.DataFrame:
    """Predictions for labelled rows: the model's held-out fold by default.

    ``rows``: ``"heldout"`` (the fold the model was trained for), ``"inner"`` (its inner
    validation block, for choosing a threshold or a calibration) or ``"all"``; ``fold``
    (1-4) instead takes that fold's rows. Rows that are not held out from the model are
    predicted with a loud warning and marked (``role``). Returns the predictions contract
    (:func:`flarelens.predictions.order_columns`), one row per selected labels row, in
    order; ``attrs["meta"]`` holds the sidecar to write with it
    (:func:`flarelens.predictions.write_predictions`).
    """
    if rows is not None and rows not in ROWS:
        raise FlareLensError(f"rows must be one of {', '.join(ROWS)}, got {rows!r}")
    if fold is not None and fold not in (1, 2, 3, 4):
        raise FlareLensError(f"--fold must be 1, 2, 3 or 4, got {fold!r}")
    if fold is not None and rows is not None:
        raise FlareLensError("give --fold K or --rows, not both")
    table = read_labels(labels) if not isinstance(labels, pd.DataFrame) else labels.copy()
    bad_fold = ~pd.Series(table["fold"]).isin([1, 2, 3, 4])
    if bad_fold.any():
        i = int(np.flatnonzero(bad_fold.to_numpy())[0])
        raise FlareLensError(f"{labels if not isinstance(labels, pd.DataFrame) else 'labels'}, row {i + 2}: "
                             f"fold {table['fold'].iloc[i]!r} is not 1, 2, 3 or 4")
    dev = resolve_device(device)
    model, config = load_model(checkpoint, device=dev)
    # config.json beside the checkpoint also holds the run's facts (training base rate).
    config = {**config, **read_config(checkpoint)}
    roles = row_roles(table, config)
    model_fold = int(config["fold"])
    rate, rate_source = train_base_rate(table, roles, config)
    if fold is not None:
        keep = (table["fold"] == fold).to_numpy()
        selected = f"fold {fold}"
    else:
        selected = rows or "heldout"
        keep = np.ones(len(table), dtype=bool) if selected == "all" else (roles == selected).to_numpy()
    table, roles = table[keep], roles[keep]
    if table.empty:
        hint = " (it was trained without an inner block: --inner 0)" if selected == "inner" else ""
        raise FlareLensError(f"{labels if not isinstance(labels, pd.DataFrame) else 'labels'}: no rows selected "
                             f"({selected}) for this fold-{model_fold} model{hint}")
    seen = int((roles != predictions.HELD_OUT).sum())
    if seen and selected != "inner":
        logger.warning(
            "WARNING: %d of %d rows are NOT held out from this model (trained for fold %d): they are marked "
            "(role column) and evaluate refuses them; their scores would be contaminated",
            seen, len(table), model_fold,
        )
    dataset = MagnetogramDataset(table, images, int(config["image_size"]), augment="none", cache=False, as_uint8=True)
    prob = probabilities(model, dataset, batch_size, dev, workers, progress)
    frame = predictions_frame(table, prob)
    frame["model_fold"] = model_fold
    frame["role"] = roles.to_numpy()
    frame = predictions.order_columns(frame)
    frame.attrs["meta"] = {
        "checkpoint": str(checkpoint),
        "model_fold": model_fold,
        "rows": selected,
        "train_base_rate": rate,
        "train_base_rate_source": rate_source,
        "labels": str(labels) if not isinstance(labels, pd.DataFrame) else None,
        "model": config.get("model"),
        "image_size": int(config["image_size"]),
        "flarelens_version": __version__,
    }
    return frame


def predictions_frame(labels: pd.DataFrame, prob) -> pd.DataFrame:
    """``labels`` with a ``flare_prob`` column, ordered as the predictions contract."""
    frame = labels.reset_index(drop=True).copy()
    frame["flare_prob"] = np.asarray(prob, dtype=float)
    for col in ("goes_class", "fl_lon", "fl_lat", "fold"):
        if col not in frame.columns:
            frame[col] = np.nan if col in ("fl_lon", "fl_lat") else ""
    return predictions.order_columns(frame)


def default_output(rows: str | None) -> str:
    """predictions.csv, or inner_predictions.csv for the inner block's rows."""
    return predictions.INNER_NAME if rows == "inner" else predictions.PREDICTIONS_NAME


class _FileDataset(Dataset):
    def __init__(self, files, image_size: int):
        self.files = [Path(f) for f in files]
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        if not path.is_file():
            raise FlareLensError(f"{path}: no such image file")
        return resize_image(read_image(path), self.image_size), 0


def predict_files(
    checkpoint: str | os.PathLike,
    files,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Flare probability of each image file: a frame with columns ``file``, ``flare_prob``.

    Files may be JPEG, PNG, JPEG 2000 or FITS (anything :func:`flarelens.images.load`
    reads); each is resized to the model's image size.
    """
    files = [str(f) for f in files]
    for f in files:
        if not Path(f).is_file():
            raise FlareLensError(f"{f}: no such image file")
    dev = resolve_device(device)
    model, config = load_model(checkpoint, device=dev)
    prob = probabilities(model, _FileDataset(files, int(config["image_size"])), batch_size, dev, 0, progress)
    return pd.DataFrame({"file": files, "flare_prob": prob.astype(float)})

"""Flare probabilities from a trained checkpoint: for a labelled set, or for image files.

:func:`predict_labels` writes the predictions contract of docs/design.md — ``timestamp``,
``file``, ``flare_prob``, ``target`` and the label metadata carried through
(``goes_class``, ``fl_lon``, ``fl_lat``, ``fold``, ...) — so evaluation and location
analysis need no join. :func:`predict_files` is the operational use: the probability of a
flare >= the threshold in the next window for each image file (JPEG, PNG, JPEG 2000,
FITS; any size, resized to the model's).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from flarelens.checkpoint import load_model
from flarelens.data import MagnetogramDataset, read_image, resize_image, to_unit
from flarelens.errors import FlareLensError
from flarelens.labels import read_labels

#: Leading columns of predictions.csv; the other label columns follow in their order.
PREDICTION_COLUMNS = ["timestamp", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fold"]


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def probabilities(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device="cpu",
    workers: int = 0,
    progress: bool = True,
    desc: str = "predicting",
) -> np.ndarray:
    """Flare probability (softmax of class 1) of every item of ``dataset``, in order."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    out = []
    with torch.no_grad():
        for x, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            logits = model(to_unit(x.to(device, non_blocking=True))).float()
            out.append(torch.softmax(logits, dim=1)[:, 1].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def predict_labels(
    checkpoint: str | os.PathLike,
    labels: str | os.PathLike | pd.DataFrame,
    images: str | os.PathLike,
    fold: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Predictions for the rows of a labels table (with ``fold``: only that fold's rows).

    Returns the predictions contract: ``timestamp, file, flare_prob, target, goes_class,
    fl_lon, fl_lat, fold`` followed by any other label columns; one row per labels row, in
    order.
    """
    table = read_labels(labels) if not isinstance(labels, pd.DataFrame) else labels.copy()
    if fold is not None:
        if fold not in (1, 2, 3, 4):
            raise FlareLensError(f"--fold must be 1, 2, 3 or 4, got {fold!r}")
        table = table[table["fold"] == fold]
        if table.empty:
            raise FlareLensError(f"{labels}: no rows in fold {fold}")
    dev = _device(device)
    model, config = load_model(checkpoint, device=dev)
    dataset = MagnetogramDataset(table, images, int(config["image_size"]), augment="none", cache=False, as_uint8=True)
    prob = probabilities(model, dataset, batch_size, dev, workers, progress)
    return predictions_frame(table, prob)


def predictions_frame(labels: pd.DataFrame, prob) -> pd.DataFrame:
    """``labels`` with a ``flare_prob`` column, ordered as the predictions contract."""
    frame = labels.reset_index(drop=True).copy()
    frame["flare_prob"] = np.asarray(prob, dtype=float)
    for col in ("goes_class", "fl_lon", "fl_lat", "fold"):
        if col not in frame.columns:
            frame[col] = np.nan if col in ("fl_lon", "fl_lat") else ""
    lead = [c for c in PREDICTION_COLUMNS if c in frame.columns]
    return frame[lead + [c for c in frame.columns if c not in lead]]


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
    dev = _device(device)
    model, config = load_model(checkpoint, device=dev)
    prob = probabilities(model, _FileDataset(files, int(config["image_size"])), batch_size, dev, 0, progress)
    return pd.DataFrame({"file": files, "flare_prob": prob.astype(float)})

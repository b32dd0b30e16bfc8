"""Monotone calibration of flare probabilities, fitted on the inner validation block only.

:func:`fit` learns a non-decreasing map from ``flare_prob`` to the observed flaring
frequency on ``inner_predictions.csv`` (isotonic regression, scipy's pool-adjacent-violators,
or temperature scaling of the logit); :func:`apply` evaluates it (linear between the fitted
knots, clipped at the ends); :func:`calibrate_run` writes ``flare_prob_calibrated`` next to
``flare_prob`` in both the inner file and the held-out predictions (atomically, sidecar
updated), so that ``flarelens evaluate`` scores both. Nothing is fitted on the held-out fold.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from flarelens import predictions
from flarelens.errors import FlareLensError

logger = logging.getLogger(__name__)

METHODS = ("isotonic", "temperature")

#: Knots of a temperature map (it is smooth: a fine grid interpolates it exactly enough).
_GRID = np.linspace(0.0, 1.0, 1001)


def fit(target, prob, method: str = "isotonic") -> dict:
    """Fit a monotone map on (probability, 0/1 target) pairs of the inner block.

    Returns ``{"method", "x", "y"}``: knots (probability in, calibrated probability out),
    non-decreasing, to be interpolated linearly by :func:`apply`; for temperature scaling
    also ``"temperature"`` (the logit is divided by it).
    """
    if method not in METHODS:
        raise FlareLensError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    y = np.asarray(target, dtype=float).ravel()
    p = predictions.check_probabilities(prob, "calibration inputs")
    if y.size < 2 or y.min() == y.max():
        raise FlareLensError(
            f"cannot fit a calibration on {y.size} inner-block instances of one class only; "
            "the inner block needs flaring and non-flaring instances"
        )
    if method == "isotonic":
        from scipy.optimize import isotonic_regression

        order = np.argsort(p, kind="stable")
        # Equal probabilities must get one value: average their targets first (weights = counts).
        x, start, counts = np.unique(p[order], return_index=True, return_counts=True)
        means = np.add.reduceat(y[order], start) / counts
        fitted = isotonic_regression(means, weights=counts.astype(float), increasing=True).x
        return {"method": method, "x": x.tolist(), "y": np.clip(fitted, 0.0, 1.0).tolist()}
    from scipy.optimize import minimize_scalar

    logit = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))

    def nll(log_t):
        q = 1 / (1 + np.exp(-logit / np.exp(log_t)))
        q = np.clip(q, 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))

    t = float(np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))
    grid_logit = np.log(np.clip(_GRID, 1e-7, 1 - 1e-7) / np.clip(1 - _GRID, 1e-7, 1))
    return {"method": method, "temperature": t, "x": _GRID.tolist(),
            "y": (1 / (1 + np.exp(-grid_logit / t))).tolist()}


def apply(calibration: dict, prob) -> np.ndarray:
    """Calibrated probabilities: the fitted map at ``prob`` (linear between knots, clipped)."""
    x = np.asarray(calibration["x"], dtype=float)
    y = np.asarray(calibration["y"], dtype=float)
    p = predictions.check_probabilities(prob, "probabilities to calibrate")
    return np.clip(np.interp(p, x, y), 0.0, 1.0)


def calibrate_run(
    inner: str | os.PathLike,
    targets: list[str | os.PathLike] = (),
    method: str = "isotonic",
) -> dict:
    """Fit on ``inner`` (inner_predictions.csv: only ``role`` = inner rows) and add
    ``flare_prob_calibrated`` to it and to each of ``targets`` (held-out predictions of the
    same model), rewriting them atomically with the calibration in their sidecars.

    Refuses targets of another model (fold or checkpoint). Returns the calibration.
    """
    inner = Path(inner)
    table = predictions.read_predictions(inner, rows=predictions.INNER)
    if table["target"].isna().any():
        raise FlareLensError(f"{inner}: has no targets; calibration needs the inner block's outcomes")
    calibration = fit(table["target"].to_numpy(dtype=float), table["flare_prob"].to_numpy(dtype=float), method)
    calibration["fitted_on"] = str(inner)
    calibration["n"] = int(len(table))
    fold, ckpt = _model(table)
    checked = []
    for path in [inner, *map(Path, targets)]:  # check every file before rewriting any
        rows = predictions.INNER if path == inner else predictions.HELD_OUT
        frame = predictions.read_predictions(path, rows=rows)
        other_fold, other_ckpt = _model(frame)
        if (fold and other_fold and fold != other_fold) or (ckpt and other_ckpt and ckpt != other_ckpt):
            raise FlareLensError(
                f"{path}: predictions of another model (fold {other_fold}, {other_ckpt}) than {inner} "
                f"(fold {fold}, {ckpt}); calibrate each model on its own inner block"
            )
        checked.append((path, frame))
    for path, frame in checked:
        raw = _raw(path)
        raw[predictions.CALIBRATED] = apply(calibration, frame["flare_prob"].to_numpy(dtype=float))
        meta = dict(frame.attrs.get("meta", {}))
        meta["calibration"] = calibration
        predictions.write_predictions(raw, path, meta)
        logger.info("%s: flare_prob_calibrated written (%s fitted on %d inner-block instances)",
                    path, calibration["method"], calibration["n"])
    return calibration


def _model(frame):
    meta = frame.attrs.get("meta", {})
    folds = frame["model_fold"].dropna().unique()
    return (int(folds[0]) if len(folds) == 1 else meta.get("model_fold")), meta.get("checkpoint")


def _raw(path: Path):
    import pandas as pd

    # The file's own columns as written (not the normalised table), so that rewriting it
    # changes nothing but the calibrated column.
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")

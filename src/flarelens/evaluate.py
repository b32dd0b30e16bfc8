"""Scoring prediction files: the skill of the model and of the catalog's baselines, with
intervals, per file and over files; and (below, moving to ``flarelens.locations``) where on
the disk the flares that were missed lie.

Prediction files are read by :mod:`flarelens.predictions` (ours and the original study's
formats). :func:`evaluate_files` scores them: TP/FP/TN/FN, TSS and HSS at the threshold
(mean and population standard deviation over files, as the study reported), and per file
and pooled over files the probabilistic scores (Brier, BSS against the training
climatology, ROC and AUC, reliability, skill against the threshold), the threshold chosen
on the run's inner validation block applied to the held-out fold, the calibrated
probabilities when present, persistence and climatology from the flare catalog on exactly
the same instances, and 95 % day-block bootstrap intervals (docs/design.md has the JSON).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from flarelens import bootstrap, metrics
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_csv, write_text
from flarelens.metrics import check_threshold
from flarelens.predictions import (  # noqa: F401 - FLARELENS, STUDY_CLASS, detect_format: names kept for importers
    CALIBRATED, FLARELENS, HELD_OUT, INNER, INNER_NAME, STUDY, STUDY_CLASS, as_frames, detect_format,
    read_predictions,
)

logger = logging.getLogger(__name__)

#: The location functions below still use this name until they move to flarelens.locations.
_as_frames = as_frames

#: Flare classes of the location analysis, largest first.
LOCATION_CLASSES = ("X", "M")

#: A flare is central when |longitude| <= LIMB_LONGITUDE degrees (docs/design.md), near-limb beyond.
LIMB_LONGITUDE = 70.0

#: Recall-map cell size in degrees of longitude and latitude.
CELL_DEG = 5.0

#: Scores that get bootstrap intervals (``ci``) and a model - persistence difference.
CI_SCORES = ("tss", "hss", "bss", "auc")

#: Reliability-diagram bins.
RELIABILITY_BINS = 10


# --------------------------------------------------------------------------- one forecast


@dataclass
class Forecast:
    """One probabilistic forecast of a set of instances.

    ``y``: 0/1 targets; ``prob``: flare probabilities; ``reference``: the climatological
    probability of each instance (the BSS reference); ``yes``: yes/no forecasts to count
    instead of ``prob >= threshold`` (persistence), or None.
    """

    y: np.ndarray
    prob: np.ndarray
    reference: np.ndarray
    yes: np.ndarray | None = None

    def counts(self, threshold: float, rows=slice(None)) -> metrics.Counts:
        """Summable counts of the instances ``rows``."""
        yes = None if self.yes is None else self.yes[rows]
        return metrics.counts(self.y[rows], self.prob[rows], threshold, self.reference[rows], yes)


def concatenate(forecasts: Sequence[Forecast]) -> Forecast:
    """The forecasts of several sets of instances as one."""
    yes = None if any(f.yes is None for f in forecasts) else np.concatenate([f.yes for f in forecasts])
    return Forecast(*(np.concatenate([getattr(f, k) for f in forecasts]) for k in ("y", "prob", "reference")), yes)


def score(forecast: Forecast, threshold: float) -> dict:
    """Point scores of one forecast: counts, TSS/HSS/POD/FAR at ``threshold``, Brier, BSS,
    AUC, ROC, threshold curve, reliability (keys of a FILE in docs/design.md)."""
    c = forecast.counts(threshold)
    out = {k: getattr(c, k) for k in ("tp", "fp", "tn", "fn")}
    out.update(tss=c.score("tss"), hss=c.score("hss"), n=c.n, positives=c.positives, pod=c.score("pod"),
               far=c.score("far"), brier=c.score("brier"), bss=c.score("bss"),
               auc=metrics.auc(forecast.y, forecast.prob))
    out["roc"] = metrics.roc_curve(forecast.y, forecast.prob)
    out["threshold_curve"] = metrics.threshold_curve(forecast.y, forecast.prob)
    out["reliability"] = metrics.reliability(forecast.y, forecast.prob, RELIABILITY_BINS)
    return out


class _Resampled:
    """A forecast per file, cut into day blocks, scored under bootstrap multiplicities."""

    def __init__(self, forecasts: Sequence[Forecast], blocks: Sequence[tuple[np.ndarray, int]], threshold: float):
        self.sums, self.terms = [], []
        for f, (index, n) in zip(forecasts, blocks):
            order = np.argsort(index, kind="stable")
            bounds = np.searchsorted(index[order], np.arange(n + 1))
            self.sums.append(np.array([f.counts(threshold, order[a:b]).to_list() for a, b in zip(bounds[:-1], bounds[1:])]))
            self.terms.append(metrics.auc_terms(f.y, f.prob, index, n))
        offsets = np.cumsum([0] + [n for _, n in blocks])
        pooled = concatenate(forecasts)
        pooled_blocks = np.concatenate([index + o for (index, _), o in zip(blocks, offsets[:-1])])
        self.pooled_terms = metrics.auc_terms(pooled.y, pooled.prob, pooled_blocks, int(offsets[-1]))

    def scores(self, mult: Sequence[np.ndarray]) -> list[list[dict]]:
        """CI scores of each file, then of the pooled set, for every resample (rows of ``mult``)."""
        per_set, total = [], None
        for sums, terms, m in zip(self.sums, self.terms, mult):
            c = m @ sums
            total = c if total is None else total + c
            per_set.append((c, metrics.auc_of_terms(terms, m)))
        per_set.append((total, metrics.auc_of_terms(self.pooled_terms, np.hstack(list(mult)))))
        return [[_ci_scores(metrics.Counts.from_sequence(c[r]), auc[r]) for c, auc in per_set]
                for r in range(len(mult[0]))]


def _ci_scores(c: metrics.Counts, auc) -> dict:
    return {"tss": c.score("tss"), "hss": c.score("hss"), "bss": c.score("bss"),
            "auc": None if not np.isfinite(auc) else float(auc)}


def intervals(kinds: dict[str, Sequence[Forecast]], times: Sequence, threshold: float,
              resamples: int = bootstrap.RESAMPLES, seed: int = bootstrap.SEED,
              block_days: int = bootstrap.BLOCK_DAYS, level: float = bootstrap.LEVEL,
              differences: Sequence[tuple[str, str]] = ()) -> dict:
    """Day-block bootstrap intervals of TSS, HSS, BSS, AUC for several forecasts of the same
    files (``kinds``: name -> one :class:`Forecast` per file), all under the same resampled
    days, and of the paired differences ``a - b`` for each ``(a, b)`` of ``differences``.

    Returns ``{name: [ci of file 1, ..., ci of the pooled set]}`` with each ci
    ``{score: [low, high] or None}``; differences under the name ``"a-b"``.
    """
    blocks = [bootstrap.block_index(t, block_days) for t in times]
    mult = bootstrap.multiplicities([n for _, n in blocks], resamples, seed)
    resampled = {name: _Resampled(fs, blocks, threshold) for name, fs in kinds.items()}
    draws = {name: rs.scores(mult) for name, rs in resampled.items()}
    n_sets = len(times) + 1
    out = {}
    for name, samples in draws.items():
        out[name] = [{s: bootstrap.interval([d[i][s] for d in samples], level) for s in CI_SCORES} for i in range(n_sets)]
    for a, b in differences:
        out[f"{a}-{b}"] = [
            {s: bootstrap.interval([_minus(da[i][s], db[i][s]) for da, db in zip(draws[a], draws[b])], level)
             for s in CI_SCORES}
            for i in range(n_sets)
        ]
    return out


def _minus(a, b):
    return None if a is None or b is None else a - b


# --------------------------------------------------------------------------- reading what a file needs


def evaluate_frame(frame: pd.DataFrame, threshold: float = metrics.THRESHOLD) -> metrics.Confusion:
    """Confusion counts of one normalised prediction table at ``threshold``.

    Raises :class:`FlareLensError` when the table has no targets (the study's per-class
    files have none: they are for the location analysis).
    """
    threshold = check_threshold(threshold)
    _require_targets(frame)
    return metrics.confusion(frame["target"].to_numpy(dtype=float), frame["flare_prob"].to_numpy(dtype=float), threshold)


def _require_targets(frame: pd.DataFrame) -> None:
    if frame["target"].isna().any():
        where = frame.attrs.get("path", "predictions")
        raise FlareLensError(
            f"{where}: has no target column ({frame.attrs.get('format', 'unknown')} format); skill scores need "
            "targets: give predictions.csv or the study's fold files (per-class files are for `flarelens locations`)"
        )


def climatology_of(frame: pd.DataFrame) -> tuple[float, str]:
    """The BSS reference of a file: ``(rate, source)``. The training base rate of the model's
    fold recorded with the run (source ``"run"``), else the scored file's own base rate
    (source ``"scored file"``)."""
    meta = frame.attrs.get("meta", {})
    rate = meta.get("train_base_rate")
    if isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0:
        return float(rate), "run"
    return float(frame["target"].to_numpy(dtype=float).mean()), "scored file"


def model_fold_of(frame: pd.DataFrame):
    """The fold the model that scored ``frame`` was trained for (int), or None when unknown."""
    folds = frame["model_fold"].dropna().unique() if "model_fold" in frame else []
    if len(folds) == 1:
        return int(folds[0])
    meta_fold = frame.attrs.get("meta", {}).get("model_fold")
    return int(meta_fold) if meta_fold in (1, 2, 3, 4) else None


def quarters_of(frame: pd.DataFrame) -> set:
    """The quarters (folds 1-4) a file's instances lie in: its ``fold`` column, else its times."""
    if frame["fold"].notna().all():
        return {int(f) for f in frame["fold"].unique()}
    t = pd.DatetimeIndex(frame["time"].dropna())
    return {int(q) for q in t.quarter.unique()}


def find_inner(frame: pd.DataFrame, inner="auto"):
    """The inner-validation-block predictions of the model that scored ``frame``, or None.

    ``inner``: ``"auto"`` (``inner_predictions.csv`` beside the scored file), a path, a
    table, or None (none). Refuses a file whose model (fold, checkpoint) differs.
    """
    if inner is None:
        return None
    if isinstance(inner, str) and inner == "auto":
        path = frame.attrs.get("path")
        if not path or not Path(path).is_file():
            return None
        candidate = Path(path).parent / INNER_NAME
        if not candidate.is_file() or candidate.resolve() == Path(path).resolve():
            return None
        inner = candidate
    table = as_frames(inner, rows=INNER)[0]
    _require_targets(table)
    mine, theirs = model_fold_of(frame), model_fold_of(table)
    ck_mine, ck_theirs = frame.attrs.get("meta", {}).get("checkpoint"), table.attrs.get("meta", {}).get("checkpoint")
    if (mine and theirs and mine != theirs) or (ck_mine and ck_theirs and ck_mine != ck_theirs):
        raise FlareLensError(
            f"{table.attrs.get('path')}: inner-block predictions of another model (fold {theirs}, {ck_theirs}) "
            f"than {frame.attrs.get('path')} (fold {mine}, {ck_mine}); predict both with the same checkpoint"
        )
    return table


def inner_threshold(frame: pd.DataFrame, inner: pd.DataFrame | None, column: str = "flare_prob"):
    """TSS-maximising threshold chosen on ``inner`` and the scores it gives on ``frame``."""
    if inner is None or column not in inner or column not in frame:
        return None
    t = metrics.best_threshold(inner["target"].to_numpy(dtype=float), inner[column].to_numpy(dtype=float))
    c = metrics.counts(frame["target"].to_numpy(dtype=float), frame[column].to_numpy(dtype=float), t)
    return {"threshold": t, "source": str(inner.attrs.get("path", "inner block")),
            **{k: getattr(c, k) for k in ("tp", "fp", "tn", "fn")}, "tss": c.score("tss"), "hss": c.score("hss")}


def _pooled_inner(items: list):
    if not items or any(i is None for i in items):
        return None
    c = sum((metrics.Counts(i["tp"], i["fp"], i["tn"], i["fn"]) for i in items[1:]),
            metrics.Counts(items[0]["tp"], items[0]["fp"], items[0]["tn"], items[0]["fn"]))
    return {"threshold": None, "source": "per file", **{k: getattr(c, k) for k in ("tp", "fp", "tn", "fn")},
            "tss": c.score("tss"), "hss": c.score("hss")}


# --------------------------------------------------------------------------- baselines of the files


def _training_pool(frames: list[pd.DataFrame], i: int, labels, catalog, window):
    """(times, targets, source) of the training instances of file ``i`` for persistence."""
    from flarelens import baselines
    from flarelens.labels import fold_of, read_labels

    frame = frames[i]
    fold = model_fold_of(frame)
    if fold is None:
        quarters = quarters_of(frame)
        fold = quarters.pop() if len(quarters) == 1 else None
    source_labels = labels if labels is not None else frame.attrs.get("meta", {}).get("labels")
    if source_labels is not None and fold is not None and (isinstance(source_labels, pd.DataFrame) or Path(source_labels).is_file()):
        table = source_labels if isinstance(source_labels, pd.DataFrame) else read_labels(source_labels)
        times = pd.to_datetime(table["timestamp"], utc=True, format="ISO8601")
        folds = table["fold"].to_numpy() if "fold" in table else fold_of(times)
        keep = (folds != fold) & baselines.covered(times, catalog, window)
        if keep.any():
            return times[keep], table["target"].to_numpy(dtype=float)[keep], "run"
    mine = quarters_of(frame)
    times, targets = [], []
    for j, other in enumerate(frames):
        if j == i or other["time"].isna().any():
            continue
        keep = (~pd.DatetimeIndex(other["time"]).quarter.isin(list(mine))) & baselines.covered(other["time"], catalog, window)
        times.append(other["time"][keep])
        targets.append(other["target"].to_numpy(dtype=float)[keep])
    if times and sum(len(t) for t in times):
        return pd.concat(times), np.concatenate(targets), "other files"
    return frame["time"], frame["target"].to_numpy(dtype=float), "scored file"


def baseline_forecasts(frames: list[pd.DataFrame], references: list[np.ndarray], catalog=None, labels=None,
                       window="24h", flare_class="M1.0") -> tuple[dict, list[dict]]:
    """Persistence and climatology forecasts of every file, from the catalog alone.

    Returns ``({"persistence": [Forecast per file], "climatology": [...]}, [training info
    per file])``. Raises :class:`FlareLensError` when they cannot be made (unknown times,
    times outside the catalog).
    """
    from flarelens import baselines

    cat = baselines.load_catalog(catalog)
    persistence, climatology, info = [], [], []
    for i, (frame, ref) in enumerate(zip(frames, references)):
        if frame["time"].isna().any():
            raise FlareLensError(f"{frame.attrs.get('path')}: some instances have no time; persistence needs them all")
        y = frame["target"].to_numpy(dtype=float)
        state = baselines.persistence_state(frame["time"], cat, window, flare_class)
        t_times, t_target, source = _training_pool(frames, i, labels, cat, window)
        t_state = baselines.persistence_state(t_times, cat, window, flare_class)
        prob, train = baselines.persistence_probability(state, t_state, t_target)
        persistence.append(Forecast(y, prob, ref, yes=state))
        climatology.append(Forecast(y, baselines.climatology_probability(len(y), float(ref[0])), ref))
        info.append({"source": source, **train})
    return {"persistence": persistence, "climatology": climatology}, info


# --------------------------------------------------------------------------- all files


def evaluate_files(
    paths,
    threshold: float = metrics.THRESHOLD,
    ddof: int = metrics.STD_DDOF,
    *,
    baselines: bool = True,
    catalog=None,
    labels=None,
    inner="auto",
    resamples: int = bootstrap.RESAMPLES,
    seed: int = bootstrap.SEED,
    block_days: int = bootstrap.BLOCK_DAYS,
    level: float = bootstrap.LEVEL,
    include_training_rows: bool = False,
    window: str = "24h",
    flare_class: str = "M1.0",
) -> dict:
    """Score prediction files (one per fold, typically) at ``threshold``.

    ``paths``: prediction files (any supported format with targets) or normalised tables.
    Returns the structure ``flarelens evaluate --json`` prints (docs/design.md, "evaluate
    --json"): as before ``{"files": [{"path", "tp", "fp", "tn", "fn", "tss", "hss", ...}],
    "mean": {"tss", "hss"}, "std": {"tss", "hss"}, "std_kind"}`` (mean and population
    standard deviation over the files, ``ddof=1`` for the sample one), plus per file and
    ``"pooled"`` the probabilistic scores, intervals, inner-block threshold and calibrated
    scores, and ``"baselines"``.

    ``baselines``: persistence and climatology from ``catalog`` (None: the bundled one)
    with ``window`` and ``flare_class``; ``labels`` (labels.csv or its table) gives the
    training instances of probabilistic persistence when the run did not record them.
    ``inner``: where the inner-block predictions are (``"auto"``: ``inner_predictions.csv``
    beside each file; None: no inner threshold). ``resamples`` (0: no intervals),
    ``seed``, ``block_days``, ``level``: the day-block bootstrap. Rows that were not held
    out from the model are refused unless ``include_training_rows`` (then every result is
    marked ``"contaminated": true``).
    """
    threshold = check_threshold(threshold)
    if ddof not in (0, 1):
        raise ValueError("ddof must be 0 (population) or 1 (sample)")
    if not (0 < level < 1):
        raise FlareLensError(f"confidence level must lie strictly between 0 and 1, got {level!r}")
    items = [paths] if isinstance(paths, (pd.DataFrame, str, os.PathLike)) else list(paths)
    if not items:
        raise FlareLensError("no prediction files to score")
    rows = "any" if include_training_rows else HELD_OUT
    frames, names = [], []
    for item in items:
        frame = as_frames(item, rows=rows)[0]
        _require_targets(frame)
        frames.append(frame)
        names.append(str(item) if not isinstance(item, pd.DataFrame) else frame.attrs.get("path", f"table {len(names) + 1}"))

    warnings = []
    model, calibrated, refs, files = [], [], [], []
    for frame, name in zip(frames, names):
        y = frame["target"].to_numpy(dtype=float)
        rate, source = climatology_of(frame)
        ref = np.full(len(y), rate)
        refs.append(ref)
        model.append(Forecast(y, frame["flare_prob"].to_numpy(dtype=float), ref))
        calibrated.append(Forecast(y, frame[CALIBRATED].to_numpy(dtype=float), ref) if CALIBRATED in frame else None)
        notes = []
        if not y.any():
            notes.append(f"{name}: no flaring instance (target 1): TSS, HSS, POD and AUC say nothing about "
                         "forecasting flares here (the hit rate counts as 0)")
        elif y.all():
            notes.append(f"{name}: every instance flared (target 1): TSS, HSS and AUC say nothing here")
        if frame.attrs.get("contaminated"):
            notes.append(f"{name}: CONTAMINATED: rows that were not held out from the model are scored")
        if source == "scored file":
            notes.append(f"{name}: no training base rate recorded (no run): the BSS reference is the scored file's own rate")
        warnings += notes
        inner_table = find_inner(frame, inner)
        entry = {"path": name, **score(model[-1], threshold),
                 "climatology": {"rate": rate, "source": source},
                 "inner_threshold": inner_threshold(frame, inner_table),
                 "calibrated": None,
                 "model_fold": model_fold_of(frame),
                 "contaminated": bool(frame.attrs.get("contaminated")),
                 "warnings": notes}
        if calibrated[-1] is not None:
            entry["calibrated"] = {**score(calibrated[-1], threshold),
                                   "inner_threshold": inner_threshold(frame, inner_table, CALIBRATED)}
        files.append(entry)
    for note in warnings:
        logger.warning("%s", note)

    pooled = {"path": "pooled", **score(concatenate(model), threshold),
              "climatology": {"rate": None, "source": "per file"},
              "inner_threshold": _pooled_inner([f["inner_threshold"] for f in files]),
              "calibrated": None, "model_fold": None,
              "contaminated": any(f["contaminated"] for f in files), "warnings": []}
    has_calibrated = all(c is not None for c in calibrated)
    if has_calibrated:
        pooled["calibrated"] = {**score(concatenate(calibrated), threshold),
                                "inner_threshold": _pooled_inner([f["calibrated"]["inner_threshold"] for f in files])}

    result_baselines = None
    kinds = {"model": model}
    if has_calibrated:
        kinds["calibrated"] = calibrated
    if baselines:
        try:
            forecasts, info = baseline_forecasts(frames, refs, catalog, labels, window, flare_class)
        except FlareLensError as exc:
            result_baselines = {"error": str(exc)}
            warnings.append(f"baselines: {exc}")
            logger.warning("baselines not computed: %s", exc)
        else:
            kinds.update(forecasts)
            result_baselines = {"catalog": str(catalog) if catalog is not None and not isinstance(catalog, pd.DataFrame)
                                else ("bundled GOES SC24" if catalog is None else "table"),
                                "window": str(window), "flare_class": str(flare_class)}
            for name, fs in forecasts.items():
                entries = []
                for frame_entry, f, name_i, inf in zip(files, fs, names, info):
                    e = {"path": name_i, **score(f, threshold), "climatology": frame_entry["climatology"],
                         "inner_threshold": None, "calibrated": None, "model_fold": frame_entry["model_fold"],
                         "contaminated": frame_entry["contaminated"], "warnings": []}
                    if name == "persistence":
                        e["training"] = inf
                    entries.append(e)
                pooled_b = {"path": "pooled", **score(concatenate(fs), threshold),
                            "climatology": {"rate": None, "source": "per file"}, "inner_threshold": None,
                            "calibrated": None, "model_fold": None, "contaminated": pooled["contaminated"],
                            "warnings": []}
                result_baselines[name] = {"files": entries, **_mean_std(entries, ddof), "pooled": pooled_b}

    ci = None
    if resamples:
        times = [frame["time"] for frame in frames]
        if any(t.isna().any() for t in times):
            warnings.append("intervals: some instances have no time, so days cannot be resampled; no intervals")
        else:
            diffs = [("model", "persistence")] if "persistence" in kinds else []
            ci = intervals(kinds, times, threshold, resamples, seed, block_days, level, diffs)
    all_entries = files + [pooled]
    for i, entry in enumerate(all_entries):
        entry["ci"] = ci["model"][i] if ci else None
        if entry["calibrated"] is not None:
            entry["calibrated"]["ci"] = ci["calibrated"][i] if ci else None
    if result_baselines and "error" not in result_baselines:
        for name in ("persistence", "climatology"):
            group = result_baselines[name]["files"] + [result_baselines[name]["pooled"]]
            for i, entry in enumerate(group):
                entry["ci"] = ci[name][i] if ci else None
                if name == "persistence":
                    m = all_entries[i]
                    entry["difference"] = {s: _minus(m[s], entry[s]) for s in CI_SCORES}
                    entry["difference"]["ci"] = ci["model-persistence"][i] if ci else None

    result = {"files": files, **_mean_std(files, ddof), "pooled": pooled, "threshold": threshold,
              "bootstrap": {"resamples": int(resamples), "seed": int(seed), "block_days": int(block_days), "level": level},
              "contaminated": pooled["contaminated"], "warnings": warnings, "baselines": result_baselines}
    return result


def _mean_std(entries: list[dict], ddof: int) -> dict:
    tss_mean, tss_std = metrics.aggregate([f["tss"] for f in entries], ddof=ddof)
    hss_mean, hss_std = metrics.aggregate([f["hss"] for f in entries], ddof=ddof)
    return {"mean": {"tss": tss_mean, "hss": hss_mean}, "std": {"tss": tss_std, "hss": hss_std},
            "std_kind": "population" if ddof == 0 else "sample"}


# --------------------------------------------------------------------------- tables


def format_evaluation(result: dict) -> str:
    """The TP/FP/TN/FN, TSS, HSS table (mean and std over files) of an :func:`evaluate_files` result."""
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


def _num(value, width: int = 7) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


def _with_ci(entry: dict, name: str) -> str:
    ci = (entry.get("ci") or {}).get(name)
    text = _num(entry.get(name))
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else " " * 16)


def _with_diff_ci(diff: dict, name: str) -> str:
    ci = (diff.get("ci") or {}).get(name)
    text = f"{diff[name]:>+7.4f}" if diff.get(name) is not None else f"{'-':>7}"
    return text + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else " " * 18)


def format_skill(result: dict) -> str:
    """Per file and pooled: model, calibrated model, persistence, climatology and model −
    persistence, with TSS, HSS, BSS, AUC and their intervals, Brier, and the inner-block
    threshold — the table ``flarelens evaluate`` prints after the TSS/HSS table."""
    b = result["bootstrap"]
    lines = []
    if b["resamples"] and result["files"][0].get("ci") is not None:
        lines.append(f"{b['level'] * 100:g} % intervals: block bootstrap over {b['block_days']}-day blocks, "
                     f"{b['resamples']} resamples, seed {b['seed']}")
    head = f"  {'forecast':<22}" + "".join(f"{s.upper():>7}{'':19}" for s in CI_SCORES) + f"{'Brier':>7}"
    base = result.get("baselines") or {}
    for i, entry in enumerate(result["files"] + [result["pooled"]]):
        clim = entry["climatology"]
        what = (f"climatology {clim['rate']:.4f} from the {clim['source']}" if clim["rate"] is not None
                else "climatology per file")
        lines += ["", f"{entry['path']}: {entry['n']} instances, {entry['positives']} flaring; {what}", head]
        rows = [("model", entry)]
        if entry.get("calibrated"):
            rows.append(("model calibrated", entry["calibrated"]))
        for name in ("persistence", "climatology"):
            if name in base:
                group = base[name]["files"] + [base[name]["pooled"]]
                rows.append((name, group[i]))
        for label, e in rows:
            lines.append(f"  {label:<22}" + "".join(f"{_with_ci(e, s):<26}" for s in CI_SCORES) + _num(e.get("brier")))
        if "persistence" in base:
            diff = (base["persistence"]["files"] + [base["persistence"]["pooled"]])[i]["difference"]
            lines.append(f"  {'model - persistence':<22}" + "".join(f"{_with_diff_ci(diff, s):<26}" for s in CI_SCORES))
        for label, e in (("", entry), (" (calibrated)", entry.get("calibrated") or {})):
            chosen = e.get("inner_threshold")
            if chosen:
                at = f"threshold {chosen['threshold']:g} chosen on {chosen['source']}" if chosen["threshold"] is not None \
                    else "each file's inner-block threshold"
                lines.append(f"  inner-block threshold{label}: TSS {chosen['tss']:.4f}, HSS {chosen['hss']:.4f} ({at})")
    if base.get("error"):
        lines += ["", f"baselines not computed: {base['error']}"]
    elif base:
        lines += ["", f"persistence: a flare >= {base['flare_class']} started in the {base['window']} up to t "
                  f"({base['catalog']}); its probabilistic version: flaring share of the training instances in that state"]
    for note in result.get("warnings", []):
        lines.append(f"warning: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- locations


def flare_instances(predictions, classes: Sequence[str] = LOCATION_CLASSES) -> pd.DataFrame:
    """The instances whose largest flare is of one of ``classes`` (GOES letters).

    ``predictions``: a normalised table, a prediction file, or a sequence of either (they
    are concatenated). Returns columns ``flare_class`` (the letter), ``goes_class``,
    ``flare_prob``, ``fl_lon``, ``fl_lat``, ``timestamp``, ``path``. Raises
    :class:`FlareLensError` for a table without flare classes (the study's fold files).
    """
    classes = tuple(c.upper() for c in classes)
    parts = []
    for frame in _as_frames(predictions):
        if frame.attrs.get("format") == STUDY or "goes_class" not in frame:
            raise FlareLensError(
                f"{frame.attrs.get('path', 'predictions')}: has no flare classes or positions (study fold file); "
                "the location analysis needs our predictions.csv or the study's per-class files (x_class.csv, m_class.csv)"
            )
        letter = frame["goes_class"].astype(str).str[:1]
        sel = frame.loc[letter.isin(classes), ["goes_class", "flare_prob", "fl_lon", "fl_lat", "timestamp"]].copy()
        sel.insert(0, "flare_class", letter[sel.index])
        sel["path"] = frame.attrs.get("path", "")
        parts.append(sel)
    columns = ["flare_class", "goes_class", "flare_prob", "fl_lon", "fl_lat", "timestamp", "path"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def location_analysis(
    predictions,
    threshold: float = metrics.THRESHOLD,
    classes: Sequence[str] = LOCATION_CLASSES,
    limb: float = LIMB_LONGITUDE,
) -> dict:
    """Hits and misses of X- and M-class flare instances, central vs near-limb.

    For each class, among the instances whose largest flare is of that class: TP
    (``flare_prob >= threshold``) and FN (below) for central flares (|lon| <= ``limb``,
    70° by default, boundary included) and near-limb flares (|lon| > ``limb``); instances
    whose position is unknown (no longitude or latitude) are counted apart. Returns::

        {"X": {"central": {"tp", "fn"}, "limb": {"tp", "fn"}, "unknown": n}, "M": {...}}
    """
    threshold = check_threshold(threshold)
    inst = flare_instances(predictions, classes)
    hit = inst["flare_prob"].to_numpy(dtype=float) >= threshold
    lon = inst["fl_lon"].to_numpy(dtype=float)
    known = np.isfinite(lon) & np.isfinite(inst["fl_lat"].to_numpy(dtype=float))
    central = known & (np.abs(np.where(known, lon, 0.0)) <= limb)
    near_limb = known & ~central
    result = {}
    for cls in (c.upper() for c in classes):
        of = inst["flare_class"].to_numpy() == cls
        result[cls] = {
            "central": {"tp": int(np.sum(of & central & hit)), "fn": int(np.sum(of & central & ~hit))},
            "limb": {"tp": int(np.sum(of & near_limb & hit)), "fn": int(np.sum(of & near_limb & ~hit))},
            "unknown": int(np.sum(of & ~known)),
        }
    return result


def format_locations(result: dict, limb: float = LIMB_LONGITUDE) -> str:
    """The table ``flarelens locations`` prints for a :func:`location_analysis` result."""
    lines = [f"{'class':<6}{'region':<22}{'TP':>8}{'FN':>8}{'recall':>9}"]
    lines.append("-" * len(lines[0]))
    for cls, parts in result.items():
        for region, label in (("central", f"central |lon|<={limb:g}°"), ("limb", f"limb |lon|>{limb:g}°")):
            tp, fn = parts[region]["tp"], parts[region]["fn"]
            recall = f"{tp / (tp + fn):>9.4f}" if tp + fn else f"{'-':>9}"
            lines.append(f"{cls:<6}{label:<22}{tp:>8}{fn:>8}{recall}")
        lines.append(f"{cls:<6}{'position unknown':<22}{parts['unknown']:>8} instance(s)")
    return "\n".join(lines)


def cell_index(degrees, cell: float = CELL_DEG) -> np.ndarray:
    """Grid cell of each angle: cell k covers [k·cell, (k+1)·cell] degrees.

    A value on a cell boundary goes to the cell nearer 0°, so that with 5° cells +-70°
    falls in the central cells (65-70 and -70--65), as the central/limb split says, and
    0° in the cell 0-5. NaN gives a NaN index.
    """
    v = np.asarray(degrees, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(v >= 0, np.maximum(np.ceil(v / cell) - 1, 0), -np.ceil(-v / cell))


def recall_cells(
    predictions,
    threshold: float = metrics.THRESHOLD,
    classes: Sequence[str] = LOCATION_CLASSES,
    cell: float = CELL_DEG,
) -> pd.DataFrame:
    """Hits and misses per ``cell``° × ``cell``° longitude-latitude cell (cells with flares only).

    Columns ``lon_min, lon_max, lat_min, lat_max`` (degrees), ``tp``, ``fn``, ``recall``
    (TP/(TP+FN)), ``no_hit`` (flares but no correct forecast), sorted by latitude then
    longitude. Instances of unknown position are left out. Cell boundaries: see
    :func:`cell_index`.
    """
    threshold = check_threshold(threshold)
    if not cell > 0:
        raise FlareLensError(f"cell size must be positive degrees, got {cell!r}")
    inst = flare_instances(predictions, classes)
    lon = inst["fl_lon"].to_numpy(dtype=float)
    lat = inst["fl_lat"].to_numpy(dtype=float)
    known = np.isfinite(lon) & np.isfinite(lat)
    table = pd.DataFrame({
        "i": cell_index(lon[known], cell).astype(int),
        "j": cell_index(lat[known], cell).astype(int),
        "hit": inst["flare_prob"].to_numpy(dtype=float)[known] >= threshold,
    })
    grouped = table.groupby(["j", "i"])["hit"].agg(tp="sum", n="size").reset_index()
    out = pd.DataFrame({
        "lon_min": grouped["i"] * cell, "lon_max": (grouped["i"] + 1) * cell,
        "lat_min": grouped["j"] * cell, "lat_max": (grouped["j"] + 1) * cell,
        "tp": grouped["tp"].astype(int), "fn": (grouped["n"] - grouped["tp"]).astype(int),
    })
    out["recall"] = out["tp"] / (out["tp"] + out["fn"])
    out["no_hit"] = out["tp"] == 0
    return out.astype({"lon_min": float, "lon_max": float, "lat_min": float, "lat_max": float}).reset_index(drop=True)


def recall_map(
    predictions,
    threshold: float = metrics.THRESHOLD,
    out_png: str | os.PathLike = "recall_map.png",
    classes: Sequence[str] = LOCATION_CLASSES,
    cell: float = CELL_DEG,
    limb: float = LIMB_LONGITUDE,
    title: str | None = None,
) -> Path:
    """Draw the recall of flare instances per longitude-latitude cell and save it as PNG.

    Colour: TP/(TP+FN) of the instances whose largest flare lies in the cell (blank where
    none); a red star marks cells with flares but no correct forecast; dashed lines mark
    the central/limb boundary at ±``limb``°. Axes: Stonyhurst longitude from -90° to 90°
    and latitude from -40° to 40° at least, widened to hold every flare. Written
    atomically; returns the path.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    cells = recall_cells(predictions, threshold, classes, cell)
    n_unknown = sum(v["unknown"] for v in location_analysis(predictions, threshold, classes, limb).values())
    i = np.rint(cells["lon_min"].to_numpy() / cell).astype(int)
    j = np.rint(cells["lat_min"].to_numpy() / cell).astype(int)
    i0 = min([int(math.floor(-90 / cell))] + list(i))
    i1 = max([int(math.ceil(90 / cell))] + list(i + 1))
    j0 = min([int(math.floor(-40 / cell))] + list(j))
    j1 = max([int(math.ceil(40 / cell))] + list(j + 1))
    grid = np.full((j1 - j0, i1 - i0), np.nan)
    grid[j - j0, i - i0] = cells["recall"].to_numpy(dtype=float)
    lon_edges = np.arange(i0, i1 + 1) * cell
    lat_edges = np.arange(j0, j1 + 1) * cell

    fig = Figure(figsize=(11, 5.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(lon_edges, lat_edges, np.ma.masked_invalid(grid), cmap="Blues", vmin=0, vmax=1,
                         edgecolors="#dddddd", linewidth=0.3)
    fig.colorbar(mesh, ax=ax, label="recall TP/(TP+FN)", shrink=0.9, pad=0.01)
    miss = cells[cells["no_hit"]]
    ax.scatter((miss["lon_min"] + miss["lon_max"]) / 2, (miss["lat_min"] + miss["lat_max"]) / 2,
               marker="*", s=70, color="red", zorder=3)
    for x in (-limb, limb):
        ax.axvline(x, color="red", linestyle="--", linewidth=1)
    ax.set_xlim(lon_edges[0], lon_edges[-1])
    ax.set_ylim(lat_edges[0], lat_edges[-1])
    ax.set_aspect("equal")
    step = 15 if (lon_edges[-1] - lon_edges[0]) > 120 else 10
    ax.set_xticks(np.arange(math.ceil(lon_edges[0] / step) * step, lon_edges[-1] + 1e-9, step))
    ax.set_xlabel("heliographic longitude (degrees from central meridian)")
    ax.set_ylabel("heliographic latitude (degrees)")
    n = int((cells["tp"] + cells["fn"]).sum())
    names = " and ".join(c.upper() for c in classes)
    ax.set_title(title or f"Recall of {names}-class flare instances at threshold {threshold:g} "
                 f"({n} with position, {cell:g}° cells)")
    handles = [Line2D([], [], marker="*", color="red", linestyle="None", markersize=9, label="flares, none forecast"),
               Line2D([], [], color="red", linestyle="--", label=f"central/limb boundary ±{limb:g}°")]
    if n_unknown:
        handles.append(Line2D([], [], linestyle="None", label=f"{n_unknown} instance(s) of unknown position not shown"))
    # Outside the axes, so that it never hides a cell.
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png


def write_locations(
    predictions,
    out_dir: str | os.PathLike,
    threshold: float = metrics.THRESHOLD,
    cell: float = CELL_DEG,
) -> dict:
    """Write the location analysis of X and M flares to ``out_dir`` and return its result.

    Files: ``locations.json`` (the :func:`location_analysis` structure), ``recall_cells.csv``
    (the :func:`recall_cells` table for X, M and both together, told apart by the
    ``classes`` column: ``X``, ``M``, ``X+M``), and the maps ``recall_map.png`` (X and M
    together), ``recall_map_X.png``, ``recall_map_M.png``.
    """
    threshold = check_threshold(threshold)
    frames = _as_frames(predictions)
    out_dir = Path(out_dir)
    result = location_analysis(frames, threshold)
    cells = []
    for classes, name in ((("X",), "X"), (("M",), "M"), (("X", "M"), "X+M")):
        table = recall_cells(frames, threshold, classes, cell)
        table.insert(0, "classes", name)
        cells.append(table)
        suffix = "" if name == "X+M" else f"_{name}"
        recall_map(frames, threshold, out_dir / f"recall_map{suffix}.png", classes, cell)
    write_csv(pd.concat(cells, ignore_index=True), out_dir / "recall_cells.csv")
    write_text(json.dumps(result, indent=2) + "\n", out_dir / "locations.json")
    return result

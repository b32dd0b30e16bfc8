"""Scoring prediction files: the skill of the model and of the catalog's baselines, with
intervals, per file and over files (where on the disk the flares that were missed lie is
:mod:`flarelens.locations`).

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

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from flarelens import bootstrap, metrics
from flarelens.errors import FlareLensError
from flarelens.metrics import check_threshold
from flarelens.predictions import CALIBRATED, HELD_OUT, INNER, INNER_NAME, as_frames

logger = logging.getLogger(__name__)

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


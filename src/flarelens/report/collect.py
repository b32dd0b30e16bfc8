"""What a run directory holds, as the report sees it, and what is wrong with it.

:func:`collect` walks a run directory once and returns a :class:`RunContents`: the
training runs (``history.csv`` with the run's ``config.json``), the prediction files,
explanation outputs and ``locations.json`` files, plus the problems a reader must see
before any number (:class:`Problem`): predictions holding rows the scoring model trained
on, predictions with non-finite probabilities, training runs that diverged. Files with
problems are set apart here, so that no score on the page includes them.

A run's configuration is read from its ``config.json`` only: checkpoints are never
loaded just for their configuration (a VGG16 checkpoint is ~0.5 GB).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens import rundir
from flarelens.errors import FlareLensError
from flarelens.predictions import HELD_OUT, read_predictions

logger = logging.getLogger(__name__)

SKIP_DIRS = {".git", "__pycache__", ".venv"}

#: history.csv columns whose non-finite values mean the run diverged.
LOSS_COLUMNS = ("train_loss", "val_loss", "inner_loss")


@dataclass
class TrainingRun:
    """One training run directory (it holds a history.csv) and its config.json."""

    name: str
    path: Path
    history: pd.DataFrame
    config: dict = field(default_factory=dict)

    @property
    def fold(self) -> int | None:
        """The fold the run was trained for (validated on), when its config says."""
        fold = self.config.get("fold")
        try:
            return int(fold)
        except (TypeError, ValueError):
            return None


@dataclass
class PredictionFile:
    """One predictions*.csv: its normalised table (scored rows only) and where it came from.

    ``frame`` is None when the file cannot be scored at all (see the run's problems);
    ``training_rows`` counts rows left out because they were not held out from the scoring
    model (it trained on them, or chose its epoch on them).
    """

    name: str
    path: Path
    frame: pd.DataFrame | None
    run: TrainingRun | None = None
    training_rows: int = 0


@dataclass
class ExplainRun:
    """One explanation output directory (scores.csv and summary.json)."""

    name: str
    path: Path
    summary: dict
    scores: pd.DataFrame | None
    figures: list[Path]


@dataclass
class Problem:
    """Something a reader must know before trusting a number: ``kind`` and one sentence."""

    kind: str  # "training-rows", "non-finite", "diverged", "unreadable"
    where: str
    text: str


@dataclass
class RunContents:
    """Everything the report found under one run directory."""

    root: Path
    runs: list[TrainingRun]
    predictions: list[PredictionFile]
    explanations: list[ExplainRun]
    locations: list[tuple[str, dict]]
    labels: Path | None
    problems: list[Problem]

    @property
    def scored(self) -> list[PredictionFile]:
        """The prediction files whose (held-out) rows are scored on the page."""
        return [p for p in self.predictions if p.frame is not None and len(p.frame)]

    @property
    def empty(self) -> bool:
        """True when there is nothing at all to report."""
        return not (self.runs or self.predictions or self.explanations or self.locations or self.labels)


def walk(root: Path):
    """``(directory, sorted file names)`` under ``root``, hidden and tool directories skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        yield Path(dirpath), sorted(filenames)


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (``.`` for the root itself)."""
    r = path.relative_to(root).as_posix()
    return "." if r == "." else r


def read_config(path: Path) -> dict:
    """A training run's configuration from its config.json (``{}`` when absent or unreadable).

    Only config.json is read (through :mod:`flarelens.rundir`): a run made before config.json
    existed keeps its settings inside its checkpoint, which is not loaded for a page.
    """
    run = rundir.RunDir(path)
    if not run.config.is_file():
        return {}
    try:
        return rundir.read_config(path)
    except FlareLensError as exc:
        logger.warning("%s; the run's configuration is left out", exc)
        return {}


def diverged(history: pd.DataFrame, config: dict, log: str = "") -> str | None:
    """Why a training run counts as diverged, else None.

    A non-finite training or held-out loss in history.csv (runs before ``train`` stopped on
    divergence wrote such rows; an inner loss counts only where the run has an inner block),
    ``"status": "diverged"`` in config.json, or a "training diverged" line in train.log.
    """
    if str(config.get("status", "")).lower() == "diverged":
        return "its config.json records that training diverged"
    for col in LOSS_COLUMNS:
        if col not in history:
            continue
        values = pd.to_numeric(history[col], errors="coerce").to_numpy(float)
        if col == "inner_loss" and not np.isfinite(values).any():
            continue  # no inner block (--inner 0): never computed
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            epoch = history["epoch"].iloc[i] if "epoch" in history else i + 1
            return f"{col} is not finite from epoch {epoch}"
    if "training diverged" in log:
        line = next(ln for ln in log.splitlines() if "training diverged" in ln)
        return f"train.log: {line.strip()[:160]}"
    return None


def stopped_early(history: pd.DataFrame, config: dict) -> str | None:
    """Why a run's history ends before the epochs its config.json asked for, else None."""
    try:
        wanted = int(config.get("epochs"))
    except (TypeError, ValueError):
        return None
    done = int(history["epoch"].max()) if "epoch" in history and len(history) else len(history)
    if done < wanted:
        return (f"history.csv ends at epoch {done} of {wanted}: the run stopped (interrupted, diverged, or still "
                "running; see its train.log) and its checkpoints are those of the epochs it finished")
    return None


def non_finite_rows(path: Path) -> int:
    """How many rows of a prediction CSV have a ``flare_prob`` that is not a finite number in [0, 1]."""
    try:
        raw = pd.read_csv(path, usecols=["flare_prob"], dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, OSError, pd.errors.ParserError):
        return 0  # no flare_prob column or unreadable: read_predictions names the problem
    prob = pd.to_numeric(raw["flare_prob"].str.strip(), errors="coerce").to_numpy(float)
    return int(np.sum(~(np.isfinite(prob) & (prob >= 0) & (prob <= 1))))


def not_held_out(frame: pd.DataFrame, run: TrainingRun | None) -> pd.Series:
    """For each row of a prediction table, what it was to the scoring model if not held out, else ``""``.

    The ``role`` of :mod:`flarelens.predictions` (``heldout``, ``inner``, ``train``, ``purged``;
    docs/design.md) is taken at its word. Where it is unknown, a row whose ``fold`` differs
    from the fold of the run directory holding the file (its config.json) is a ``train``
    row: the model trained on every other quarter.
    """
    n = len(frame)
    role = (frame["role"].fillna("").astype(str).str.strip().str.lower() if "role" in frame
            else pd.Series([""] * n, index=frame.index))
    out = role.where(role != HELD_OUT, "")
    if run is not None and run.fold is not None and "fold" in frame:
        fold = pd.to_numeric(frame["fold"], errors="coerce").to_numpy(float)
        trained = (role == "").to_numpy() & np.isfinite(fold) & (fold != float(run.fold))
        out = out.where(~trained, "train")
    return out


def _owning_run(path: Path, runs: list[TrainingRun]) -> TrainingRun | None:
    """The training run whose directory holds ``path`` (the nearest one above it)."""
    best = None
    for run in runs:
        if path.parent == run.path or run.path in path.parents:
            if best is None or len(run.path.parts) > len(best.path.parts):
                best = run
    return best


def collect(root: str | os.PathLike) -> RunContents:
    """Walk ``root`` and gather what the report shows, with the problems found on the way."""
    root = Path(root)
    runs: list[TrainingRun] = []
    pred_paths: list[Path] = []
    explanations: list[ExplainRun] = []
    locations: list[tuple[str, dict]] = []
    problems: list[Problem] = []
    for path, files in walk(root):
        is_explain = "summary.json" in files and "scores.csv" in files
        if "history.csv" in files:
            try:
                history = pd.read_csv(path / "history.csv")
            except (ValueError, OSError, pd.errors.ParserError) as exc:
                problems.append(Problem("unreadable", rel(path / "history.csv", root), f"unreadable ({exc}); left out"))
            else:
                runs.append(TrainingRun(rel(path, root), path, history, read_config(path)))
        if is_explain:
            try:
                summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
                scores = pd.read_csv(path / "scores.csv")
            except (ValueError, OSError, pd.errors.ParserError) as exc:
                problems.append(Problem("unreadable", rel(path, root), f"explanation output unreadable ({exc}); left out"))
            else:
                figures = sorted(path.glob("comparison*.png"))
                explanations.append(ExplainRun(rel(path, root), path, summary, scores, figures))
                if isinstance(summary, dict) and summary.get("training_data"):
                    problems.append(Problem("training-rows", rel(path, root), f"{int(summary.get('training_rows') or 0):,} "
                                            "explained images are training rows of the explained model"))
            continue  # its predictions-like files are explain's, not a model's
        if "locations.json" in files:
            try:
                locations.append((rel(path, root), json.loads((path / "locations.json").read_text(encoding="utf-8"))))
            except (ValueError, OSError) as exc:
                problems.append(Problem("unreadable", rel(path / "locations.json", root), f"unreadable ({exc}); left out"))
        pred_paths += [path / f for f in files if f.startswith("predictions") and f.endswith(".csv")]

    for run in runs:
        log = run.path / rundir.LOG
        try:
            text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        except OSError:
            text = ""
        why = diverged(run.history, run.config, text)
        if why:
            problems.append(Problem("diverged", run.name, f"training diverged ({why}): its checkpoints and anything "
                                    "predicted with them are not a trained model"))
            continue
        why = stopped_early(run.history, run.config)
        if why:
            problems.append(Problem("stopped", run.name, why))

    predictions = []
    for path in pred_paths:
        name = rel(path, root)
        run = _owning_run(path, runs)
        bad = non_finite_rows(path)
        if bad:
            problems.append(Problem("non-finite", name, f"{bad:,} row{'s' if bad != 1 else ''} with a flare "
                                    "probability that is not a finite number in [0, 1]; the file is left out of every score"))
            predictions.append(PredictionFile(name, path, None, run))
            continue
        try:
            frame = read_predictions(path, rows="any")
        except FlareLensError as exc:
            problems.append(Problem("unreadable", name, f"{exc}; left out"))
            predictions.append(PredictionFile(name, path, None, run))
            continue
        roles = not_held_out(frame, run)
        mask = (roles != "").to_numpy()
        n_train = int(mask.sum())
        if n_train:
            model = f"the model of {run.name}" if run is not None else "the model that scored them"
            kinds = ", ".join(f"{k} {v:,}" for k, v in roles[mask].value_counts().sort_index().items())
            problems.append(Problem("training-rows", name, f"{n_train:,} of {len(frame):,} rows are not held out from "
                                    f"{model} ({kinds}); they are left out of every score on this page"))
            kept = frame.loc[~mask].reset_index(drop=True)
            kept.attrs.update(frame.attrs)
            frame = kept
        predictions.append(PredictionFile(name, path, frame, run, n_train))

    labels = root / "labels.csv"
    return RunContents(root, runs, predictions, explanations, locations, labels if labels.is_file() else None, problems)

"""Assembling the page: collect the run directory, score it with the library, render the sections.

Order on the page: warnings (if any), then the answer (Skill: model vs persistence vs
climatology), where the flares were (central vs near-limb), where the model looks,
training and how the scored model was selected, the data, and last the configuration
table, folded.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens import __version__, evaluate, locations
from flarelens.errors import FlareLensError
from flarelens.fileio import write_text
from flarelens.metrics import check_threshold
from flarelens.predictions import STUDY
from flarelens.report import figures
from flarelens.report.collect import Problem, RunContents, collect
from flarelens.report.explanations import explanations_section
from flarelens.report.limb import locations_section as render_locations
from flarelens.report.markup import CSS, esc, p, section, table
from flarelens.report.skill import skill_section, skill_view
from flarelens.report.training import config_section, selection, selection_sentence, training_section, training_view

logger = logging.getLogger(__name__)

#: Problem kinds, as the warning box names them.
PROBLEM_TITLES = {
    "training-rows": "Predictions on training rows",
    "non-finite": "Non-finite probabilities",
    "diverged": "Training diverged",
    "stopped": "Training stopped early",
    "unreadable": "Unreadable file",
    "selection": "Model chosen on the scored fold",
    "verification": "Verification",
}


def warnings_block(problems: list[Problem]) -> str:
    """The red box at the top of the page: every problem, one line each (empty when none)."""
    if not problems:
        return ""
    items = "".join(f"<li><strong>{esc(PROBLEM_TITLES.get(pr.kind, pr.kind))}</strong> — <code>{esc(pr.where)}</code>: "
                    f"{esc(pr.text)}</li>" for pr in problems)
    return (f'<div class="warnings" id="warnings" role="alert"><h2>Read this first: {len(problems)} '
            f'problem{"s" if len(problems) != 1 else ""} with this run</h2><ul>{items}</ul></div>')


def data_section(labels: Path | None, synthetic: bool) -> str:
    """Instances, positives and negatives per fold, from labels.csv."""
    if labels is None:
        return p("No labels.csv at the top of the run directory.")
    frame = pd.read_csv(labels, usecols=lambda c: c in {"timestamp", "target", "fold"})
    times = pd.to_datetime(frame["timestamp"], utc=True)
    per_fold = frame.groupby("fold")["target"].agg(instances="size", positives="sum")
    per_fold["negatives"] = per_fold["instances"] - per_fold["positives"]
    per_fold["negatives per positive"] = per_fold["negatives"] / per_fold["positives"].replace(0, np.nan)
    total_pos = int(frame["target"].sum())
    text = (f"{len(frame):,} instances from {times.min():%Y-%m-%d %H:%M} to {times.max():%Y-%m-%d %H:%M} UTC; "
            f"{total_pos:,} positive (a flare >= the threshold starts in the next window), "
            f"{len(frame) - total_pos:,} negative. Fold k holds the k-th quarter of every year.")
    if synthetic:
        text += (" <strong>The images are synthetic</strong> (<code>flarelens simulate</code>): active regions "
                 "placed where the real GOES catalog's flares happened.")
    return p(text) + table(per_fold.reset_index(), floatfmt="{:.2f}")


def _fold_text(frame: pd.DataFrame) -> str:
    folds = sorted(set(pd.to_numeric(frame.get("fold", pd.Series(dtype=float)), errors="coerce").dropna().astype(int)))
    return ", ".join(map(str, folds)) or "—"


def score(contents: RunContents, threshold: float) -> dict:
    """The verification result of the scored prediction files (the library's ``evaluate --json`` structure)."""
    frames = [pf.frame for pf in contents.scored]
    return evaluate.evaluate_files(frames, threshold=threshold, labels=contents.labels)


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, threshold: float = 0.5) -> Path:
    """Write the HTML report of ``run_dir`` (default ``run_dir/report.html``) and return its path.

    Raises :class:`FlareLensError` (one line) for a directory that does not exist or holds
    nothing to report. Problems found in the files (training rows among the predictions,
    non-finite probabilities, a diverged training run) do not stop the page: they head it
    in a warning box, and the files or rows concerned are left out of every score.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FlareLensError(f"{run_dir}: no such run directory")
    threshold = check_threshold(threshold)
    out = Path(out) if out is not None else run_dir / "report.html"
    contents = collect(run_dir)
    if contents.empty:
        raise FlareLensError(
            f"{run_dir}: nothing to report (no labels.csv, history.csv, predictions*.csv, locations.json or "
            "explanation output under it)")
    synthetic = any(run_dir.glob("*/regions.csv")) or (run_dir / "regions.csv").is_file()
    problems = list(contents.problems)

    selections = [(run.name, selection(run.history, run.config)) for run in contents.runs]
    scored = contents.scored
    scoring_runs = {id(pf.run): pf.run for pf in scored if pf.run is not None}
    unrecorded = [run.name for run in scoring_runs.values() if dict(selections)[run.name]["select"] is None]
    if unrecorded:
        problems.append(Problem("selection", ", ".join(unrecorded), "how the scored model was selected is not recorded; "
                                "a run made before honest selection chose best.pt by TSS on the held-out fold itself, "
                                "which inflates its scores"))

    if scored:
        result = score(contents, threshold)
        view = skill_view(result, [pf.name for pf in scored], [_fold_text(pf.frame) for pf in scored])
        # The library names files by their full path; on the page they are relative to the run directory.
        view["warnings"] = [w.replace(f"{run_dir}{os.sep}", "") for w in view["warnings"]]
        pooled = pd.concat([pf.frame[["flare_prob", "target"]] for pf in scored], ignore_index=True)
        prob = pooled["flare_prob"].to_numpy(float)
        target = pooled["target"].to_numpy(float, na_value=0)
        hist = figures.to_png(figures.probability_figure(prob[target == 0], prob[target == 1], threshold))
        owners = {pf.run.name for pf in scored if pf.run is not None}
        sel_text = selection_sentence([(name, s) for name, s in selections if name in owners])
        skill = skill_section(view, threshold, sel_text, hist, len(pooled), synthetic)
        frames = [pf.frame for pf in scored if pf.frame.attrs.get("format") != STUDY]
    else:
        skill = p("No predictions*.csv to score in this directory.")
        frames = []

    if frames:
        try:
            result = locations.location_analysis(frames, threshold=threshold)
        except FlareLensError as exc:
            loc = p(esc(str(exc)))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                png = locations.recall_map(frames, threshold, Path(tmp) / "recall_map.png").read_bytes()
            loc = render_locations(result, png)
    else:
        loc = p("No predictions with flare classes and positions to analyse.")

    runs_view = [training_view(run.name, run.history, s["epoch"]) for run, (_, s) in zip(contents.runs, selections)]
    sections = [
        ("skill", "Skill: the model vs persistence and climatology", skill),
        ("locations", "Central vs near-limb flares", loc),
        ("explanations", "Where the model looks", explanations_section(contents.explanations)),
        ("training", "Training and model selection", training_section(runs_view, selections)),
        ("data", "Data", data_section(contents.labels, synthetic)),
        ("config", "Configuration", config_section([(run.name, run.config) for run in contents.runs])),
    ]
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>flarelens report — {esc(run_dir.name)}</title>
<style>{CSS}</style></head><body>
<h1>flarelens report: {esc(run_dir.name)}</h1>
{warnings_block(problems)}
<p class="lead">The model reads one full-disk line-of-sight magnetogram and gives the probability that a flare of
class M1.0 or above starts on the Sun within the next 24 hours. First: does it beat the forecasts a forecaster
already has (persistence, climatology)? Then: does it also catch flares near the limb, and which part of the disk
does each prediction rest on?</p>
<nav>{nav}</nav>
{body}
<footer>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by flarelens {__version__} from the files in
<code>{esc(run_dir)}</code>; regenerate with <code>flarelens report {esc(run_dir)}</code>.</footer>
</body></html>
"""
    write_text(page, out)
    logger.debug("report written to %s", out)
    return out

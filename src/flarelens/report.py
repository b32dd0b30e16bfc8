"""One self-contained HTML page telling the whole story of a run directory.

The page is built only from files found under the run directory — labels.csv, each
training run's history.csv and checkpoint, predictions*.csv, explanation outputs — so a
demo run and a real-data run on a GPU cluster produce the same page. Every number on it
is recomputed from those files by the library (``flarelens.evaluate``), figures are
embedded as base64 PNG, and no script runs on the page, so it reads offline as it is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens import __version__, evaluate, locations
from flarelens.errors import FlareLensError
from flarelens.fileio import write_text

#: The original study's published validation scores (VGG16, real HMI magnetograms from
#: Helioviewer, 512², 2010-12 to 2018-12, tri-monthly folds), as printed in its notebooks
#: (their confusion matrices reproduce these exactly with flarelens.metrics). Shown beside
#: ours for reference only: theirs are real data at full resolution.
STUDY_REFERENCE = {
    "source": "the original full-disk study (VGG16, real HMI magnetograms 2010-12 to 2018-12, 512², 4 tri-monthly folds)",
    "folds": {1: (0.5751, 0.4401), 2: (0.5308, 0.2956), 3: (0.3843, 0.3017), 4: (0.5303, 0.3750)},
    "tss_mean": 0.51,
    "hss_mean": 0.35,
}

_SKIP_DIRS = {".git", "__pycache__", ".venv"}


@dataclass
class TrainingRun:
    """One training run directory (it holds a history.csv)."""

    name: str
    path: Path
    history: pd.DataFrame
    config: dict = field(default_factory=dict)


@dataclass
class ExplainRun:
    """One explanation output directory (it holds scores.csv and/or summary.json)."""

    name: str
    path: Path
    summary: dict
    scores: pd.DataFrame | None
    figures: list[Path]


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        yield Path(dirpath), sorted(filenames)


def find_training_runs(run_dir: Path) -> list[TrainingRun]:
    """Every directory under ``run_dir`` with a history.csv, with its run configuration."""
    runs = []
    for path, files in _walk(run_dir):
        if "history.csv" not in files:
            continue
        history = pd.read_csv(path / "history.csv")
        runs.append(TrainingRun(_rel(path, run_dir), path, history, _read_config(path)))
    return runs


def _read_config(path: Path) -> dict:
    from flarelens.rundir import read_config

    try:
        config = read_config(path)
    except FlareLensError:  # a configuration we cannot read must not stop the page
        return {}
    # How the run was launched (bars, --resume) is noise on the page; the rest is the run.
    return {k: v for k, v in config.items() if k not in ("progress", "resume")}


def find_predictions(run_dir: Path) -> list[Path]:
    """Prediction files (``predictions*.csv``) under ``run_dir``, outside explanation outputs."""
    found = []
    for path, files in _walk(run_dir):
        if "summary.json" in files and "scores.csv" in files:
            continue
        found += [path / f for f in files if f.startswith("predictions") and f.endswith(".csv")]
    return found


def find_explanations(run_dir: Path) -> list[ExplainRun]:
    """Explanation output directories under ``run_dir`` (scores.csv and summary.json)."""
    runs = []
    for path, files in _walk(run_dir):
        if "summary.json" not in files or "scores.csv" not in files:
            continue
        summary = json.loads((path / "summary.json").read_text())
        scores = pd.read_csv(path / "scores.csv")
        figures = sorted(p for p in path.glob("comparison*.png"))
        runs.append(ExplainRun(_rel(path, run_dir), path, summary, scores, figures))
    return runs


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return "." if rel == "." else rel


# --------------------------------------------------------------------------- figures


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return _img_tag(buf.getvalue())


def _img_tag(data: bytes, alt: str = "figure", width: str | None = None) -> str:
    style = f' style="max-width:{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _training_figure(runs: list[TrainingRun]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 3)
    for run in runs:
        h = run.history
        x = h["epoch"] if "epoch" in h else np.arange(1, len(h) + 1)
        for col in [c for c in h.columns if "loss" in c]:
            axes[0].plot(x, h[col], marker="o", ms=3, label=f"{run.name}: {col}")
        for col in [c for c in h.columns if c.endswith("tss") or c.endswith("hss")]:
            axes[1].plot(x, h[col], marker="o", ms=3, label=f"{run.name}: {col}")
        for col in [c for c in h.columns if c in ("lr", "learning_rate")]:
            axes[2].plot(x, h[col], marker="o", ms=3, label=run.name)
    for ax, title in zip(axes, ("loss", "validation skill", "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    fig.tight_layout()
    return _png(fig)


def _probability_figure(frames: list[pd.DataFrame]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 21)
    pooled = pd.concat(frames)
    prob = pooled["flare_prob"].to_numpy(float)
    target = pooled["target"].to_numpy(float)
    ax.hist(prob[target == 0], bins=bins, alpha=0.6, label="no flare >= M1.0 (NF)", color="tab:blue")
    ax.hist(prob[target == 1], bins=bins, alpha=0.6, label="flare >= M1.0 (FL)", color="tab:red")
    ax.axvline(0.5, color="k", lw=1, ls="--")
    ax.set_xlabel("predicted flare probability")
    ax.set_ylabel("instances")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- sections


def _table(frame: pd.DataFrame, floatfmt: str = "{:.3f}", index: bool = False) -> str:
    formatters = {c: floatfmt.format for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    return frame.to_html(index=index, border=0, classes="t", formatters=formatters, na_rep="—", escape=True)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _p(text: str) -> str:
    return f"<p>{text}</p>"


def _config_section(runs: list[TrainingRun]) -> str:
    if not runs:
        return _p("No training run (no history.csv) in this directory.")
    rows = {}
    for run in runs:
        for key, value in run.config.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value)
            rows.setdefault(key, {})[run.name] = value
    if not rows:
        return _p("The training runs carry no configuration (no config.json or readable checkpoint).")
    frame = pd.DataFrame(rows).T.sort_index()
    frame.index.name = "setting"
    return _table(frame.reset_index())


def _data_section(run_dir: Path) -> str:
    path = run_dir / "labels.csv"
    if not path.is_file():
        return _p("No labels.csv at the top of the run directory.")
    labels = pd.read_csv(path, usecols=lambda c: c in {"timestamp", "target", "fold", "goes_class"})
    times = pd.to_datetime(labels["timestamp"], utc=True)
    per_fold = labels.groupby("fold")["target"].agg(instances="size", positives="sum")
    per_fold["negatives"] = per_fold["instances"] - per_fold["positives"]
    per_fold["negatives per positive"] = per_fold["negatives"] / per_fold["positives"].replace(0, np.nan)
    total_pos = int(labels["target"].sum())
    text = (
        f"{len(labels):,} instances from {times.min():%Y-%m-%d %H:%M} to {times.max():%Y-%m-%d %H:%M} UTC; "
        f"{total_pos:,} positive (a flare >= the threshold starts in the next window), "
        f"{len(labels) - total_pos:,} negative. Fold k holds the k-th quarter of every year."
    )
    if any(run_dir.glob("*/regions.csv")):
        text += (" <strong>The images are synthetic</strong> (<code>flarelens simulate</code>): active regions "
                 "placed where the real GOES catalog's flares happened.")
    return _p(text) + _table(per_fold.reset_index(), floatfmt="{:.2f}")


def _skill_section(pred_paths: list[Path], run_dir: Path, threshold: float) -> tuple[str, list[pd.DataFrame]]:
    if not pred_paths:
        return _p("No predictions*.csv in this directory."), []
    result = evaluate.evaluate_files(pred_paths, threshold=threshold)
    frames = [evaluate.read_predictions(p) for p in pred_paths]
    rows = []
    for item, frame in zip(result["files"], frames):
        folds = sorted(set(pd.to_numeric(frame.get("fold", pd.Series(dtype=float)), errors="coerce").dropna().astype(int)))
        rows.append({
            "predictions": _rel(Path(item["path"]), run_dir),
            "fold": ", ".join(map(str, folds)) or "—",
            "instances": item["tp"] + item["fp"] + item["tn"] + item["fn"],
            "TP": item["tp"], "FP": item["fp"], "TN": item["tn"], "FN": item["fn"],
            "TSS": item["tss"], "HSS": item["hss"],
        })
    table = pd.DataFrame(rows)
    study = STUDY_REFERENCE["folds"]
    table["study TSS (theirs)"] = [study[int(r["fold"])][0] if r["fold"].isdigit() else np.nan for r in rows]
    table["study HSS (theirs)"] = [study[int(r["fold"])][1] if r["fold"].isdigit() else np.nan for r in rows]
    n = len(rows)
    mean, std, kind = result["mean"], result["std"], result["std_kind"]
    summary = (
        f'<div class="cards"><div class="card"><div class="big">{mean["tss"]:.2f} ± {std["tss"]:.2f}</div>TSS, this run '
        f'(mean ± {kind} std over {n} file{"s" if n != 1 else ""})</div>'
        f'<div class="card"><div class="big">{mean["hss"]:.2f} ± {std["hss"]:.2f}</div>HSS, this run</div>'
        f'<div class="card ref"><div class="big">{STUDY_REFERENCE["tss_mean"]:.2f} / {STUDY_REFERENCE["hss_mean"]:.2f}</div>'
        f'TSS / HSS published by the study — <em>theirs, for reference</em>: {html.escape(STUDY_REFERENCE["source"])}</div></div>'
    )
    explain = _p(
        f"Threshold {threshold:g} on the predicted flare probability. TSS = TP/(TP+FN) − FP/(FP+TN) "
        "(1 perfect, 0 no skill, insensitive to class imbalance); HSS = 2(TP·TN − FN·FP) / "
        "((TP+FN)(FN+TN) + (TP+FP)(FP+TN)) (skill over random forecasts). A synthetic demo is not comparable "
        "with the study's real-data numbers."
    )
    matrices = "".join(
        f'<div class="cm"><div class="cmt">{html.escape(r["predictions"])}</div>'
        f'<table class="t"><tr><th></th><th>forecast FL</th><th>forecast NF</th></tr>'
        f'<tr><th>observed FL</th><td class="good">{r["TP"]:,} TP</td><td class="bad">{r["FN"]:,} FN</td></tr>'
        f'<tr><th>observed NF</th><td class="bad">{r["FP"]:,} FP</td><td class="good">{r["TN"]:,} TN</td></tr></table></div>'
        for r in rows
    )
    body = (summary + explain + _table(table) + "<h3>Confusion matrices</h3>" + f'<div class="cms">{matrices}</div>'
            + "<h3>Predicted probabilities</h3>" + _probability_figure(frames))
    return body, frames


def _locations_section(frames: list[pd.DataFrame], threshold: float) -> str:
    if not frames:
        return _p("No predictions to analyse.")
    result = locations.location_analysis(frames, threshold=threshold)
    rows = []
    for cls, parts in result.items():
        for region in ("central", "limb"):
            tp, fn = parts[region]["tp"], parts[region]["fn"]
            rows.append({"class": cls, "region": "central (|lon| ≤ 70°)" if region == "central" else "near-limb (|lon| > 70°)",
                         "TP": tp, "FN": fn, "recall": tp / (tp + fn) if tp + fn else np.nan})
        rows.append({"class": cls, "region": "position unknown", "TP": np.nan, "FN": np.nan, "recall": np.nan,
                     "instances": parts["unknown"]})
    table = pd.DataFrame(rows)
    if "instances" in table:
        table["instances"] = table["instances"].map(lambda v: "" if pd.isna(v) else f"{int(v)}")
    for col in ("TP", "FN"):
        table[col] = table[col].map(lambda v: "" if pd.isna(v) else f"{int(v)}")
    with tempfile.TemporaryDirectory() as tmp:
        png = locations.recall_map(frames, threshold, Path(tmp) / "recall_map.png")
        figure = _img_tag(png.read_bytes(), "recall map", "900px")
    return (
        _p("Instances whose largest flare in the window is X or M class, split by the flare's heliographic "
           "longitude. A forecaster's question: does the model still catch flares from regions near the limb, "
           "where the magnetogram is foreshortened and projected?")
        + _table(table, floatfmt="{:.2f}")
        + "<h3>Recall map (5° cells)</h3>" + figure
    )


def _explain_section(runs: list[ExplainRun]) -> str:
    if not runs:
        return _p("No explanation output (scores.csv + summary.json) in this directory; make one with "
                  "<code>flarelens explain</code>.")
    body = ""
    for run in runs:
        body += f"<h3>{html.escape(run.name)}</h3>"
        body += _p("Attribution to the flare class. Localisation: share of positive attribution within r degrees of "
                   "the flare (and the pointing game: is the maximum there), against a random map. Faithfulness: "
                   "flare probability as the most-attributed pixels are deleted (lower area = more faithful).")
        body += _summary_tables(run.summary)
        for fig in run.figures:
            body += _img_tag(fig.read_bytes(), fig.stem, "100%")
    return body


#: Groups of explain's summary shown on the page, and how they are named there.
EXPLAIN_GROUPS = {
    "flaring": "all flaring", "flaring central": "flaring, central", "flaring limb": "flaring, near-limb",
    "TP": "hits (TP)", "FN": "misses (FN)",
}
#: Columns of explain's per-method statistics shown on the page.
EXPLAIN_STATS = {
    "n": "instances", "mass": "attribution within r", "mass_random": "random map",
    "hit": "pointing game", "hit_random": "random pointing", "gt_mass": "within true region",
    "gt_mass_random": "random (true region)", "deletion_auc": "deletion area", "deletion_auc_random": "random deletion",
}


def _summary_tables(summary: dict) -> str:
    """Explain's summary.json as one compact table: method x group, the main statistics."""
    methods = summary.get("methods", {})
    rows = []
    for method, groups in methods.items():
        for group, name in EXPLAIN_GROUPS.items():
            stats = groups.get(group)
            if not stats:
                continue
            row = {"method": method, "group": name}
            for key, label in EXPLAIN_STATS.items():
                value = stats.get(key)
                row[label] = int(value) if key == "n" and value is not None else value
            rows.append(row)
    radius = summary.get("radius_deg")
    head = _p(f"r = {radius:g}° of heliographic distance from the flare." if isinstance(radius, (int, float)) else "")
    if not rows:
        return head + _p("No explained instance with a flare.")
    frame = pd.DataFrame(rows)
    return head + _table(frame.astype({c: float for c in frame.columns if c not in ("method", "group", "instances")}))


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


_CSS = """
html,body{overflow-x:hidden} table.t{display:block;overflow-x:auto;max-width:100%}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #e07b00;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1em} code{background:#f3f3f3;padding:0 .2em}
table.t{border-collapse:collapse;margin:.6em 0;font-size:.9em} table.t th,table.t td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
table.t th{background:#f6f6f6} td.good{background:#e8f5e9} td.bad{background:#fdecea}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;flex:1;min-width:220px}
.card.ref{background:#fafafa;color:#555}.big{font-size:1.8em;font-weight:600}
.cms{display:flex;gap:1.5em;flex-wrap:wrap}.cmt{font-size:.85em;color:#555}
img{max-width:100%} .lead{font-size:1.1em;background:#fff8ef;border-left:4px solid #e07b00;padding:.6em 1em}
footer{margin-top:3em;color:#777;font-size:.85em}
"""


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, threshold: float = 0.5) -> Path:
    """Write the HTML report of ``run_dir`` (default ``run_dir/report.html``) and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FlareLensError(f"{run_dir}: no such run directory")
    out = Path(out) if out is not None else run_dir / "report.html"
    runs = find_training_runs(run_dir)
    preds = find_predictions(run_dir)
    explains = find_explanations(run_dir)
    if not (runs or preds or explains or (run_dir / "labels.csv").is_file()):
        raise FlareLensError(
            f"{run_dir}: nothing to report (no labels.csv, history.csv, predictions*.csv or explanation output)"
        )
    skill, frames = _skill_section(preds, run_dir, threshold)
    sections = [
        ("config", "Configuration", _config_section(runs)),
        ("data", "Data", _data_section(run_dir)),
        ("training", "Training", _training_figure(runs) if runs else _p("No training history.")),
        ("skill", "Skill: TSS and HSS", skill),
        ("locations", "Central vs near-limb flares", _locations_section(frames, threshold)),
        ("explanations", "Where the model looks", _explain_section(explains)),
    ]
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    body = "".join(_section(a, t, b) for a, t, b in sections)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>flarelens report — {html.escape(run_dir.name)}</title>
<style>{_CSS}</style></head><body>
<h1>flarelens report: {html.escape(run_dir.name)}</h1>
<p class="lead">The model reads one full-disk line-of-sight magnetogram and gives the probability that a flare of
class M1.0 or above starts on the Sun within the next 24 hours. This page shows how well it does that on held-out
quarters of the year, whether it also catches flares near the limb, and which part of the disk each prediction rests on.</p>
<nav>{nav}</nav>
{body}
<footer>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by flarelens {__version__} from the files in
<code>{html.escape(str(run_dir))}</code>; regenerate with <code>flarelens report {html.escape(str(run_dir))}</code>.</footer>
</body></html>
"""
    write_text(page, out)
    return out

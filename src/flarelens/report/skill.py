"""The Skill section: does the model beat persistence and climatology, and by how much.

:func:`skill_view` turns the verification result of the library (the structure
``flarelens evaluate --json`` prints) into the plain numbers the section shows;
:func:`skill_section` renders them. The section is what a forecaster reads first: one
sentence answering "does it beat persistence?", one table (model, persistence, climatology;
TSS, HSS, BSS, AUC with 95 % intervals; the difference model − persistence), one figure
(ROC, reliability, skill vs threshold), then the per-file detail.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from flarelens import metrics
from flarelens.report import figures
from flarelens.report.markup import details, esc, html_table, img, interval, num, p

#: The original study's published validation scores (VGG16, real HMI magnetograms from
#: Helioviewer, 512², 2010-12 to 2018-12, tri-monthly folds), as printed in its notebooks
#: (their confusion matrices reproduce these exactly with flarelens.metrics). Shown beside
#: ours for reference only: theirs are real data at full resolution, selected as the
#: study did (its last epoch).
STUDY_REFERENCE = {
    "source": "the original full-disk study (VGG16, real HMI magnetograms 2010-12 to 2018-12, 512², 4 tri-monthly folds)",
    "folds": {1: (0.5751, 0.4401), 2: (0.5308, 0.2956), 3: (0.3843, 0.3017), 4: (0.5303, 0.3750)},
    "tss_mean": 0.51,
    "hss_mean": 0.35,
}

#: Scores of the main table, in order, with how each is read.
SCORES = {
    "tss": "TSS", "hss": "HSS", "bss": "BSS", "auc": "ROC area",
}

SCORE_HELP = (
    "TSS = POD − POFD (1 perfect, 0 no skill, insensitive to the class imbalance); "
    "HSS = 2(TP·TN − FN·FP)/((TP+FN)(FN+TN) + (TP+FP)(FP+TN)) (skill over random yes/no forecasts); "
    "BSS = 1 − Brier/Brier<sub>climatology</sub> (skill of the probabilities over always forecasting the "
    "training base rate; 0 = no better, negative = worse); ROC area (0.5 = no discrimination, 1 perfect). "
    "TSS and HSS at probability threshold {threshold:g}."
)

#: Forecasts of the main table, as the library names them and as the page does.
FORECASTS = (("model", "model"), ("calibrated", "model (calibrated)"), ("persistence", "persistence"),
             ("climatology", "climatology"))


def _scores(item: Mapping | None) -> dict | None:
    """The scores of one file / pooled entry: ``{"tss", "hss", "bss", "auc", "brier", "ci": {...}}``."""
    if not item:
        return None
    out = {k: item.get(k) for k in ("tss", "hss", "bss", "auc", "brier", "tp", "fp", "tn", "fn")}
    out["ci"] = dict(item.get("ci") or {})
    return out


def _pooled(result: Mapping) -> Mapping | None:
    """The pooled-over-files entry of a result; without one, the pooled confusion counts."""
    if result.get("pooled"):
        return result["pooled"]
    files = result.get("files") or []
    if not files or not all(all(k in f for k in ("tp", "fp", "tn", "fn")) for f in files):
        return None
    c = metrics.Confusion(0, 0, 0, 0)
    for f in files:
        c = c + metrics.Confusion(int(f["tp"]), int(f["fp"]), int(f["tn"]), int(f["fn"]))
    return c.as_dict()


def _curves(item: Mapping | None) -> dict:
    """ROC, reliability and threshold curves of one entry, as the figure takes them."""
    out = {}
    if not item:
        return out
    curve = item.get("threshold_curve")
    if isinstance(curve, Mapping):  # columns
        rows = [dict(zip(curve, vals)) for vals in zip(*curve.values())]
    else:
        rows = list(curve or [])
    if rows:
        t = np.array([r.get("threshold", np.nan) for r in rows], float)
        tss = np.array([r.get("tss", np.nan) for r in rows], float)
        out["thresholds"] = {"threshold": t, "tss": tss, "hss": np.array([r.get("hss", np.nan) for r in rows], float)}
        pod = np.array([r.get("pod", np.nan) for r in rows], float)
        # POFD = POD − TSS by the definition of TSS, when the curve does not carry it.
        pofd = np.array([r.get("pofd", p_ - s) for r, p_, s in zip(rows, pod, tss)], float)
        if np.isfinite(pod).any():
            out["roc"] = {"pofd": pofd, "pod": pod}
    if item.get("roc"):
        roc = item["roc"]
        out["roc"] = {"pofd": np.asarray(roc.get("pofd", roc.get("fpr")), float),
                      "pod": np.asarray(roc.get("pod", roc.get("tpr")), float)}
    bins = item.get("reliability")
    if isinstance(bins, Mapping):
        bins = [dict(zip(bins, vals)) for vals in zip(*bins.values())]
    if bins:
        out["reliability"] = {
            "forecast": np.array([b.get("forecast", b.get("mean_prob", b.get("prob_mean", np.nan))) for b in bins], float),
            "observed": np.array([b.get("observed", b.get("frequency", b.get("obs_freq", np.nan))) for b in bins], float),
            "count": np.array([b.get("count", b.get("n", 0)) or 0 for b in bins], float),
            "bin_low": np.array([b.get("low", b.get("bin_low", np.nan)) for b in bins], float),
        }
        if not np.isfinite(out["reliability"]["bin_low"]).all():
            del out["reliability"]["bin_low"]
    return out


def skill_view(result: Mapping, names: Sequence[str] | None = None, folds: Sequence[str] | None = None) -> dict:
    """The numbers of the Skill section from a verification result (``evaluate --json``'s structure).

    ``names``/``folds``: how each of ``result["files"]`` is called on the page and its fold
    (as text). Returns ``{"forecasts": [{"name", "tss", "hss", "bss", "auc", "brier", "ci"}],
    "difference": {...} | None, "curves": {name: {...}}, "points": {...}, "climatology": base
    rate | None, "per_file": [...], "threshold_tuned": float | None, "base_rate_source": str}``.
    """
    files = list(result.get("files") or [])
    names = list(names) if names is not None else [f.get("path", f"file {i + 1}") for i, f in enumerate(files)]
    folds = list(folds) if folds is not None else ["—"] * len(files)
    baselines = result.get("baselines") or {}
    forecasts, curves = [], {}
    for key, label in FORECASTS:
        if key == "model":
            entry = _pooled(result)
        elif key == "calibrated":
            entry = result.get("calibrated", {}).get("pooled") if isinstance(result.get("calibrated"), Mapping) else None
        else:
            base = baselines.get(key) or {}
            entry = base.get("pooled") or base.get("mean")
        scores = _scores(entry)
        if scores is None:
            continue
        forecasts.append({"name": label, **scores})
        c = _curves(entry)
        if c:
            curves[label] = c
    diff = result.get("difference") or (baselines.get("persistence") or {}).get("difference")
    if isinstance(diff, Mapping) and "pooled" in diff:
        diff = diff["pooled"]
    per_file = []
    pers_files = (baselines.get("persistence") or {}).get("files") or []
    for i, f in enumerate(files):
        row = {"name": names[i], "fold": folds[i], **_scores(f)}
        row["instances"] = sum(int(f.get(k, 0)) for k in ("tp", "fp", "tn", "fn"))
        if i < len(pers_files):
            row["persistence_tss"] = pers_files[i].get("tss")
        per_file.append(row)
    points = {}
    for fc in forecasts:
        if fc["name"] == "persistence" and all(fc.get(k) is not None for k in ("tp", "fp", "tn", "fn")):
            tp, fp, tn, fn = (int(fc[k]) for k in ("tp", "fp", "tn", "fn"))
            points["persistence"] = (fp / (fp + tn) if fp + tn else 0.0, tp / (tp + fn) if tp + fn else 0.0)
    clim = baselines.get("climatology") or {}
    rate = clim.get("base_rate", result.get("base_rate"))
    return {
        "forecasts": forecasts,
        "difference": _scores(diff) if isinstance(diff, Mapping) else None,
        "curves": curves,
        "points": points,
        "climatology": rate,
        "per_file": per_file,
        "threshold_tuned": result.get("threshold_inner", result.get("tuned_threshold")),
        "base_rate_source": clim.get("source", result.get("base_rate_source")),
        "threshold": result.get("threshold"),
    }


def verdict(view: Mapping) -> str:
    """One sentence: does the model beat persistence (on TSS, with the interval of the difference)?"""
    model = next((f for f in view["forecasts"] if f["name"] == "model"), None)
    if model is None:
        return "No scored predictions."
    head = f"Model TSS {interval(model.get('tss'), model['ci'].get('tss'))}"
    if model.get("bss") is not None:
        head += f", BSS {interval(model.get('bss'), model['ci'].get('bss'))}"
    diff = view.get("difference")
    pers = next((f for f in view["forecasts"] if f["name"] == "persistence"), None)
    if pers is None:
        return head + ". Persistence was not scored on these instances (no baseline in the verification result)."
    head += f"; persistence TSS {interval(pers.get('tss'), pers['ci'].get('tss'))}"
    if not diff or diff.get("tss") is None:
        return head + "."
    ci = diff["ci"].get("tss")
    d = f"model − persistence {interval(diff['tss'], ci)}"
    if ci and ci[0] is not None and ci[0] > 0:
        return f"<strong>The model beats persistence.</strong> {head}; {d} (the 95 % interval lies above 0)."
    if ci and ci[1] is not None and ci[1] < 0:
        return f"<strong>Persistence beats the model.</strong> {head}; {d} (the 95 % interval lies below 0)."
    return (f"<strong>The model is not distinguishable from persistence</strong> on these instances. {head}; {d} "
            "(the 95 % interval includes 0).")


def main_table(view: Mapping) -> str:
    """Model, calibrated model, persistence, climatology, the difference and the study's numbers (theirs)."""
    header = ["forecast"] + [SCORES[k] for k in SCORES] + ["Brier"]
    rows, classes = [], []
    for fc in view["forecasts"]:
        rows.append([esc(fc["name"])] + [interval(fc.get(k), fc["ci"].get(k)) for k in SCORES] + [num(fc.get("brier"), 3)])
        classes.append("model" if fc["name"] == "model" else None)
    diff = view.get("difference")
    if diff:
        rows.append(["model − persistence"] + [interval(diff.get(k), diff["ci"].get(k)) for k in SCORES] + [num(diff.get("brier"), 3)])
        classes.append("diff")
    rows.append(["the study's VGG16 — <em>theirs, published</em> (real data)",
                 num(STUDY_REFERENCE["tss_mean"]), num(STUDY_REFERENCE["hss_mean"]), "—", "—", "—"])
    classes.append("theirs")
    return html_table(header, rows, row_classes=classes)


def per_file_table(view: Mapping) -> str:
    """One row per predictions file, with the study's per-fold numbers (theirs) beside ours."""
    study = STUDY_REFERENCE["folds"]
    header = ["predictions", "fold", "instances", "TP", "FP", "TN", "FN", "TSS", "HSS", "BSS", "ROC area",
              "persistence TSS", "study TSS <em>(theirs)</em>", "study HSS <em>(theirs)</em>"]
    rows = []
    for r in view["per_file"]:
        fold = r["fold"]
        theirs = study.get(int(fold)) if str(fold).isdigit() else None
        rows.append([esc(r["name"]), esc(fold), f"{r['instances']:,}"]
                    + [f"{int(r[k]):,}" if r.get(k) is not None else "—" for k in ("tp", "fp", "tn", "fn")]
                    + [interval(r.get(k), r["ci"].get(k)) for k in ("tss", "hss", "bss", "auc")]
                    + [num(r.get("persistence_tss")),
                       num(theirs[0], 4) if theirs else "—", num(theirs[1], 4) if theirs else "—"])
    return html_table(header, rows)


def confusion_matrices(view: Mapping) -> str:
    """The confusion matrix of every file at the threshold."""
    out = ""
    for r in view["per_file"]:
        if any(r.get(k) is None for k in ("tp", "fp", "tn", "fn")):
            continue
        out += (f'<div class="cm"><div class="cmt">{esc(r["name"])}</div>'
                f'<table class="t"><tr><th></th><th>forecast FL</th><th>forecast NF</th></tr>'
                f'<tr><th>observed FL</th><td class="good">{int(r["tp"]):,} TP</td><td class="bad">{int(r["fn"]):,} FN</td></tr>'
                f'<tr><th>observed NF</th><td class="bad">{int(r["fp"]):,} FP</td><td class="good">{int(r["tn"]):,} TN</td></tr>'
                "</table></div>")
    return f'<div class="cms">{out}</div>'


def skill_figure(view: Mapping, threshold: float) -> str:
    """ROC, reliability and skill-vs-threshold panels of the view, or a line saying why there are none."""
    curves = view["curves"]
    roc = {n: c["roc"] for n, c in curves.items() if "roc" in c}
    rel = {n: c["reliability"] for n, c in curves.items() if "reliability" in c}
    thr = {n: c["thresholds"] for n, c in curves.items() if "thresholds" in c}
    if not (roc or rel or thr):
        return p("No ROC, reliability or threshold curves in the verification result.", "note")
    marks = {f"threshold {threshold:g}": threshold}
    if view.get("threshold_tuned") is not None:
        marks[f"threshold chosen on the inner block ({view['threshold_tuned']:.2f})"] = float(view["threshold_tuned"])
    png = figures.skill_figure(roc, rel, thr, points=view.get("points"), marks=marks, climatology=view.get("climatology"))
    return img(png, "ROC, reliability diagram and skill vs threshold")


def skill_section(view: Mapping, threshold: float, selection: str, probability_png: bytes | None, n_instances: int,
                  synthetic: bool) -> str:
    """The whole Skill section (HTML) from :func:`skill_view`'s numbers.

    ``selection``: one sentence (HTML) saying how the scored model was selected;
    ``probability_png``: the histogram of forecast probabilities, or None.
    """
    if not view["forecasts"]:
        return p("No predictions*.csv to score in this directory.")
    n_files = len(view["per_file"])
    source = view.get("base_rate_source")
    body = p(verdict(view), "answer")
    body += p(f"{n_instances:,} held-out instances in {n_files} prediction file{'s' if n_files != 1 else ''}, pooled; "
              "95 % intervals from the verification library's block bootstrap (whole days), not the spread of the folds. "
              + selection)
    body += main_table(view)
    body += p(SCORE_HELP.format(threshold=threshold)
              + (f" Climatology is the base rate of {esc(source)}." if source else "")
              + " The study's numbers are theirs, printed for reference: real magnetograms at 512², not comparable with a "
              "synthetic demo.", "note")
    if synthetic:
        body += p("<strong>Synthetic images</strong>: these scores measure the pipeline, not a forecast of the real Sun.",
                  "note")
    body += skill_figure(view, threshold)
    body += "<h3>Per prediction file</h3>" + per_file_table(view)
    extra = "<h3>Confusion matrices</h3>" + confusion_matrices(view)
    if probability_png is not None:
        extra += "<h3>Predicted probabilities</h3>" + img(probability_png, "histogram of predicted probabilities", "600px")
    body += details("Confusion matrices and the distribution of forecast probabilities", extra)
    return body

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
    """The scores of one FILE entry: ``{"tss", "hss", "bss", "auc", "brier", counts, "ci": {...}}``."""
    if not isinstance(item, Mapping):
        return None
    out = {k: item.get(k) for k in ("tss", "hss", "bss", "auc", "brier", "tp", "fp", "tn", "fn")}
    out["ci"] = dict(item.get("ci") or {})
    return out


def _pooled(result: Mapping) -> Mapping | None:
    """The pooled FILE entry of a result; for a result without one, the pooled confusion counts."""
    if isinstance(result.get("pooled"), Mapping):
        return result["pooled"]
    files = result.get("files") or []
    if not files or not all(all(k in f for k in ("tp", "fp", "tn", "fn")) for f in files):
        return None
    c = metrics.Confusion(0, 0, 0, 0)
    for f in files:
        c = c + metrics.Confusion(int(f["tp"]), int(f["fp"]), int(f["tn"]), int(f["fn"]))
    return c.as_dict()


def _columns(value) -> dict[str, np.ndarray]:
    """A curve given as columns (``{"x": [...], "y": [...]}``), as float arrays (null -> NaN)."""
    if not isinstance(value, Mapping):
        return {}
    return {k: np.array([np.nan if x is None else x for x in v], float) for k, v in value.items()
            if isinstance(v, (list, tuple))}


def _curves(item: Mapping | None) -> dict:
    """ROC, reliability and threshold curves of one FILE entry, as the figure takes them."""
    out = {}
    if not isinstance(item, Mapping):
        return out
    roc = _columns(item.get("roc"))
    if "pofd" in roc and "pod" in roc:
        out["roc"] = {"pofd": roc["pofd"], "pod": roc["pod"]}
    curve = _columns(item.get("threshold_curve"))
    if "threshold" in curve and "tss" in curve:
        out["thresholds"] = {k: curve[k] for k in ("threshold", "tss", "hss") if k in curve}
    rel = _columns(item.get("reliability"))
    if "mean_prob" in rel and "observed" in rel and "count" in rel:
        out["reliability"] = {"forecast": rel["mean_prob"], "observed": rel["observed"],
                              "count": np.nan_to_num(rel["count"])}
        if "bin_low" in rel:
            out["reliability"]["bin_low"] = rel["bin_low"]
    return out


def _inner_threshold(item: Mapping | None) -> dict | None:
    """The entry's scores at the threshold chosen on the inner block (``threshold`` None when per file)."""
    value = item.get("inner_threshold") if isinstance(item, Mapping) else None
    return value if isinstance(value, Mapping) and value.get("tss") is not None else None


def skill_view(result: Mapping, names: Sequence[str] | None = None, folds: Sequence[str] | None = None) -> dict:
    """The numbers of the Skill section from a verification result (``evaluate --json``'s structure,
    docs/design.md).

    ``names``/``folds``: how each of ``result["files"]`` is called on the page and its fold
    (as text). Returns ``{"forecasts": [{"name", "tss", "hss", "bss", "auc", "brier", counts,
    "ci"}], "difference": {...} | None, "curves": {name: {"roc", "reliability", "thresholds"}},
    "points": {name: (pofd, pod)}, "climatology": base rate | None, "per_file": [...],
    "inner_threshold": {...} | None, "baseline_error": str | None, "warnings": [...]}``.
    """
    files = list(result.get("files") or [])
    names = list(names) if names is not None else [f.get("path", f"file {i + 1}") for i, f in enumerate(files)]
    folds = list(folds) if folds is not None else ["—"] * len(files)
    baselines = result.get("baselines") or {}
    model = _pooled(result)
    entries = {
        "model": model,
        "calibrated": model.get("calibrated") if isinstance(model, Mapping) else None,
        "persistence": (baselines.get("persistence") or {}).get("pooled"),
        "climatology": (baselines.get("climatology") or {}).get("pooled"),
    }
    forecasts, curves = [], {}
    for key, label in FORECASTS:
        scores = _scores(entries[key])
        if scores is None:
            continue
        forecasts.append({"name": label, **scores})
        c = _curves(entries[key])
        if c:
            curves[label] = c
    pers = entries["persistence"]
    diff = pers.get("difference") if isinstance(pers, Mapping) else None
    points = {}
    if isinstance(pers, Mapping) and all(pers.get(k) is not None for k in ("tp", "fp", "tn", "fn")):
        tp, fp, tn, fn = (int(pers[k]) for k in ("tp", "fp", "tn", "fn"))
        points["persistence"] = (fp / (fp + tn) if fp + tn else 0.0, tp / (tp + fn) if tp + fn else 0.0)
    pers_files = (baselines.get("persistence") or {}).get("files") or []
    per_file = []
    for i, f in enumerate(files):
        row = {"name": names[i], "fold": folds[i], **_scores(f)}
        row["instances"] = int(f.get("n", sum(int(f.get(k, 0)) for k in ("tp", "fp", "tn", "fn"))))
        if i < len(pers_files) and isinstance(pers_files[i], Mapping):
            row["persistence_tss"] = pers_files[i].get("tss")
            d = pers_files[i].get("difference")
            row["difference"] = _scores(d) if isinstance(d, Mapping) else None
        row["inner_threshold"] = _inner_threshold(f)
        clim = f.get("climatology") if isinstance(f.get("climatology"), Mapping) else {}
        row["base_rate"], row["base_rate_source"] = clim.get("rate"), clim.get("source")
        per_file.append(row)
    clim = model.get("climatology") if isinstance(model, Mapping) and isinstance(model.get("climatology"), Mapping) else {}
    sources = sorted({r["base_rate_source"] for r in per_file if r.get("base_rate_source")})
    return {
        "forecasts": forecasts,
        "difference": _scores(diff),
        "curves": curves,
        "points": points,
        "climatology": clim.get("rate"),
        "base_rate_sources": sources,
        "per_file": per_file,
        "inner_threshold": _inner_threshold(model),
        "baseline_error": baselines.get("error"),
        "warnings": list(result.get("warnings") or []),
        "bootstrap": result.get("bootstrap") or {},
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
    side = _side(ci)
    if side > 0:
        text = f"<strong>The model beats persistence.</strong> {head}; {d} (the 95 % interval lies above 0)."
    elif side < 0:
        text = f"<strong>Persistence beats the model.</strong> {head}; {d} (the 95 % interval lies below 0)."
    else:
        text = (f"<strong>The model is not distinguishable from persistence</strong> on these instances. {head}; {d} "
                "(the 95 % interval includes 0).")
    if diff.get("bss") is not None:
        words = {1: "better than", -1: "worse than", 0: "not distinguishable from"}[_side(diff["ci"].get("bss"))]
        text += (f" As probabilities (BSS) the model is {words} persistence's: "
                 f"difference {interval(diff['bss'], diff['ci'].get('bss'))}.")
    return text


def _side(ci) -> int:
    """+1 when an interval lies above 0, -1 below, 0 when it includes 0 or is unknown."""
    if not ci or len(ci) != 2 or any(c is None for c in ci):
        return 0
    return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0


def main_table(view: Mapping) -> str:
    """Model, calibrated model, persistence, climatology, the difference and the study's numbers (theirs)."""
    header = ["forecast"] + [SCORES[k] for k in SCORES] + ["Brier"]
    rows, classes = [], []
    for fc in view["forecasts"]:
        rows.append([esc(fc["name"])] + [interval(fc.get(k), fc["ci"].get(k)) for k in SCORES] + [num(fc.get("brier"), 3)])
        classes.append("model" if fc["name"] == "model" else None)
    inner = view.get("inner_threshold")
    if inner:
        at = f"{float(inner['threshold']):.2f}" if inner.get("threshold") is not None else "chosen per fold"
        rows.append([f"model, inner-block threshold ({at})", num(inner.get("tss")), num(inner.get("hss")),
                     "—", "—", "—"])
        classes.append(None)
    diff = view.get("difference")
    if diff:
        rows.append(["model − persistence"] + [interval(diff.get(k), diff["ci"].get(k)) for k in SCORES] + [num(diff.get("brier"), 3)])
        classes.append("diff")
    rows.append(["the study's VGG16 — <em>theirs, published</em> (real data)",
                 num(STUDY_REFERENCE["tss_mean"]), num(STUDY_REFERENCE["hss_mean"]), "—", "—", "—"])
    classes.append("theirs")
    return html_table(header, rows, cls="t main", row_classes=classes)


def per_file_table(view: Mapping) -> str:
    """One row per predictions file, with the study's per-fold numbers (theirs) beside ours."""
    study = STUDY_REFERENCE["folds"]
    inner = any(r.get("inner_threshold") for r in view["per_file"])
    header = (["predictions", "fold", "instances", "TSS", "HSS", "BSS", "ROC area",
               "persistence TSS", "model − persistence TSS"]
              + (["TSS at the inner block's threshold"] if inner else [])
              + ["the study's TSS / HSS <em>(theirs)</em>"])
    rows = []
    for r in view["per_file"]:
        fold = r["fold"]
        theirs = study.get(int(fold)) if str(fold).isdigit() else None
        d = r.get("difference")
        row = ([esc(r["name"]), esc(fold), f"{r['instances']:,}"]
               + [interval(r.get(k), r["ci"].get(k)) for k in ("tss", "hss", "bss", "auc")]
               + [num(r.get("persistence_tss")), interval(d.get("tss"), d["ci"].get("tss")) if d else "—"])
        if inner:
            it = r.get("inner_threshold")
            row.append(f"{num(it.get('tss'))} (at {num(it.get('threshold'))})" if it else "—")
        row.append(f'<span class="theirs">{num(theirs[0], 4)} / {num(theirs[1], 4)}</span>' if theirs else "—")
        rows.append(row)
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
    # Climatology is one constant probability: its ROC is the diagonal and its skill 0 at every
    # threshold, so it appears only as the base-rate line of the reliability diagram.
    roc = {n: c["roc"] for n, c in curves.items() if "roc" in c and n != "climatology"}
    rel = {n: c["reliability"] for n, c in curves.items() if "reliability" in c and n != "climatology"}
    # Persistence is a yes/no forecast: a level (its TSS), not a curve over the model's threshold.
    thr = {n: c["thresholds"] for n, c in curves.items() if "thresholds" in c and n not in ("climatology", "persistence")}
    pers = next((f for f in view["forecasts"] if f["name"] == "persistence"), None)
    levels = {"persistence TSS (yes/no)": float(pers["tss"])} if pers and pers.get("tss") is not None else {}
    if not (roc or rel or thr):
        return p("No ROC, reliability or threshold curves in the verification result.", "note")
    marks = {f"threshold {threshold:g}": threshold}
    chosen = sorted({float(r["inner_threshold"]["threshold"]) for r in view["per_file"]
                     if r.get("inner_threshold") and r["inner_threshold"].get("threshold") is not None})
    if len(chosen) == 1:
        marks[f"threshold chosen on the inner block ({chosen[0]:.2f})"] = chosen[0]
    elif chosen:
        marks[f"thresholds chosen on the inner blocks ({', '.join(f'{c:.2f}' for c in chosen)})"] = chosen
    png = figures.to_png(figures.skill_figure(roc, rel, thr, points=view.get("points"), marks=marks, climatology=view.get("climatology"),
                                                      levels=levels))
    return img(png, "ROC, reliability diagram and skill vs threshold")


def _bootstrap_text(boot: Mapping) -> str:
    if not boot:
        return "95 % intervals where the verification result gives them"
    days = boot.get("block_days", 1)
    level = boot.get("level", 0.95)
    return (f"{level:.0%} intervals from a block bootstrap over whole days ({boot.get('resamples', '?')} resamples of "
            f"{days}-day blocks, seed {boot.get('seed', '?')}), not the spread of the folds")


SOURCES = {"run": "the model's training rows", "other files": "the other scored files' rows of other quarters",
           "scored file": "the scored file itself (no run known)"}


def skill_section(view: Mapping, threshold: float, selection: str, probability_png: bytes | None, n_instances: int,
                  synthetic: bool) -> str:
    """The whole Skill section (HTML) from :func:`skill_view`'s numbers.

    ``selection``: one sentence (HTML) saying how the scored model was selected;
    ``probability_png``: the histogram of forecast probabilities, or None.
    """
    if not view["forecasts"]:
        return p("No predictions*.csv to score in this directory.")
    n_files = len(view["per_file"])
    body = p(verdict(view), "answer")
    body += p(f"{n_instances:,} held-out instances in {n_files} prediction file{'s' if n_files != 1 else ''}, pooled; "
              f"{_bootstrap_text(view.get('bootstrap') or {})}. " + selection)
    body += main_table(view)
    notes = SCORE_HELP.format(threshold=threshold)
    sources = [SOURCES.get(s, s) for s in view.get("base_rate_sources") or []]
    if sources:
        notes += f" Climatology (the BSS reference) is the base rate of {esc(' / '.join(sources))}."
    notes += (" Persistence: yes at time t when a flare >= M1.0 started in the 24 h up to t; its probabilities are "
              "the training flare rate of each persistence state.")
    notes += (" The study's numbers are theirs, printed for reference: real magnetograms at 512², not comparable with "
              "a synthetic demo.")
    body += p(notes, "note")
    if view.get("warnings"):
        items = "".join(f"<li>{esc(w)}</li>" for w in view["warnings"])
        body += f'<div class="note">Notes from the verification:<ul>{items}</ul></div>'
    if view.get("baseline_error"):
        body += p(f"<strong>No baselines</strong>: {esc(view['baseline_error'])}", "note")
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

"""Training runs on the page: how the scored model was selected, the curves, the configuration.

The selection sentence answers the question every skill score depends on: was anything
chosen on the rows being scored? ``select`` in a run's config.json says ``inner`` (the
epoch with the highest TSS on an inner validation block carved from the training quarters)
or ``last`` (the last epoch, the study's choice). A run that records neither predates
honest selection: its ``best.pt`` was chosen on the held-out fold itself.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from flarelens.report import figures
from flarelens.report.markup import details, esc, img, p, table

#: history.csv columns per panel of the training figure, and their label on the page.
CURVES = {
    "loss": {"train_loss": "train", "inner_loss": "inner validation", "val_loss": "held-out fold"},
    "skill": {"train_tss": "train", "inner_tss": "inner validation", "val_tss": "held-out fold"},
    "lr": {"lr": "learning rate", "learning_rate": "learning rate"},
}

#: Config keys that are the machine's, not the run's (noise on the page).
HIDDEN_SETTINGS = ("progress", "resume")


def _inner_block(config: Mapping) -> str:
    """The inner block's settings from config.json, in words (empty when not recorded)."""
    parts = []
    inner = config.get("inner")
    if isinstance(inner, (int, float)) and inner > 0:
        parts.append(f"the last {inner:.0%} of each training quarter")
    window = config.get("window")
    if window:
        parts.append(f"its edges purged by the {esc(window)} label window")
    return ", ".join(parts)


def selection(history: pd.DataFrame, config: Mapping) -> dict:
    """How a run's scored model was chosen: ``{"select", "epoch", "epochs", "text"}``.

    ``select`` is ``inner`` (config.json's ``select`` ``best``: the first epoch with the
    highest ``inner_tss``), ``last`` or ``None`` (not recorded: no ``select`` and no inner
    column in history.csv); ``epoch`` the epoch the selected checkpoint holds; ``text`` one
    sentence for the page (HTML).
    """
    epochs = history["epoch"].to_numpy() if "epoch" in history else np.arange(1, len(history) + 1)
    n = int(epochs[-1]) if len(epochs) else 0
    select = {"best": "inner", "inner": "inner", "last": "last"}.get(str(config.get("select")), None)
    inner_tss = pd.to_numeric(history["inner_tss"], errors="coerce") if "inner_tss" in history else None
    has_inner = inner_tss is not None and inner_tss.notna().any()
    if select is None and has_inner:
        select = "inner"
    block = _inner_block(config)
    if select == "inner" and has_inner:
        epoch = int(epochs[int(np.nanargmax(inner_tss.to_numpy(float)))])
        text = (f"best.pt is epoch {epoch} of {n}: the highest TSS on the <em>inner validation block</em> carved from "
                f"the training quarters{' (' + block + ')' if block else ''}; the held-out fold was never used to "
                "choose.")
    elif select == "inner":
        epoch = None
        text = "selected on an inner validation block (its history has no inner TSS to show which epoch)."
    elif select == "last":
        epoch = n or None
        text = f"the last epoch ({n}) is scored (<code>--select last</code>, the study's choice); nothing was chosen."
    else:
        epoch = None
        text = ("<strong>selection not recorded</strong> (no <code>select</code> in config.json, no inner-validation "
                "columns in history.csv): a run made before honest selection chose best.pt by TSS on the held-out fold "
                "itself, which inflates the scores of this page.")
    return {"select": select, "epoch": epoch, "epochs": n, "text": text}


def selection_sentence(runs: Sequence[tuple[str, dict]]) -> str:
    """How the scored models were selected, in one sentence (runs grouped by how they chose)."""
    if not runs:
        return "How the scored models were selected is unknown (no training run holds these predictions)."
    words = {
        "inner": "selected on an inner validation block of the training quarters (never on the fold scored)",
        "last": "the last epoch (nothing selected)",
        None: "<strong>selection not recorded</strong> (see the warning above)",
    }
    groups: dict = {}
    for name, s in runs:
        groups.setdefault(s["select"], []).append(name)
    if len(groups) == 1:
        (kind, _), = groups.items()
        return f"Scored models: {words.get(kind, esc(kind))}."
    parts = "; ".join(f"{', '.join(esc(n) for n in names)}: {words.get(kind, esc(kind))}" for kind, names in groups.items())
    return f"Scored models — {parts}."


def training_view(name: str, history: pd.DataFrame, selected: int | None) -> dict:
    """One run's curves as :func:`flarelens.report.figures.training_figure` takes them."""
    epochs = history["epoch"].to_numpy(float) if "epoch" in history else np.arange(1, len(history) + 1, dtype=float)
    curves = {}
    for kind, cols in CURVES.items():
        for col, label in cols.items():
            if col in history and pd.to_numeric(history[col], errors="coerce").notna().any():
                curves.setdefault(kind, {})[label] = pd.to_numeric(history[col], errors="coerce").to_numpy(float)
    return {"name": name, "epoch": epochs, "curves": curves, "selected": selected}


def training_section(runs: Sequence[dict], selections: Sequence[tuple[str, dict]]) -> str:
    """Selection per run and the training curves (inner validation vs held-out fold)."""
    if not runs:
        return p("No training history (history.csv) in this directory.")
    rows = "".join(f"<li><strong>{esc(name)}</strong>: {s['text']}</li>" for name, s in selections)
    body = f"<h3>How the scored model was selected</h3><ul>{rows}</ul>"
    body += p("Curves per run: loss, TSS and learning rate per epoch on the training rows, the inner validation block "
              "(the selection's rows, when the run has one) and the held-out fold (reported only). A held-out curve "
              "far above the inner one, or a selected epoch at a held-out peak, is a sign of selection on the test set.",
              "note")
    body += img(figures.to_png(figures.training_figure(runs)), "training curves per run")
    return body


def config_table(runs: Sequence[tuple[str, Mapping]]) -> str:
    """Every run's settings side by side (one row per setting)."""
    rows: dict[str, dict] = {}
    for name, config in runs:
        for key, value in config.items():
            if key in HIDDEN_SETTINGS:
                continue
            if isinstance(value, (dict, list)):
                value = json.dumps(value)
            rows.setdefault(key, {})[name] = value
    if not rows:
        return p("The training runs carry no configuration (no config.json).")
    frame = pd.DataFrame(rows).T.sort_index()
    frame.index.name = "setting"
    return table(frame.reset_index())


def config_section(runs: Sequence[tuple[str, Mapping]]) -> str:
    """The configuration table, folded: it is reference material, not the answer."""
    if not runs:
        return p("No training run (no history.csv) in this directory.")
    missing = [name for name, c in runs if not c]
    body = ""
    if missing:
        body = p(f"{esc(', '.join(missing))}: no config.json (a run made before <code>flarelens train</code> wrote one; "
                 "its settings are inside its checkpoint, which the report does not load).", "note")
    with_config = [(name, c) for name, c in runs if c]
    if with_config:
        body += details(f"Settings of {len(with_config)} training run{'s' if len(with_config) != 1 else ''} "
                        "(from config.json) — click to show", config_table(with_config))
    return body

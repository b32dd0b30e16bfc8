"""The whole pipeline on data that ships with flarelens, in minutes on a laptop CPU.

simulate (synthetic magnetograms from the real GOES catalog) -> label -> train ->
predict -> evaluate -> locations -> explain -> report, all under one run directory. Each
step is the same library function the matching subcommand calls, each leaves files with
the contracts of docs/design.md, and a step whose output is already there is skipped, so
running the demo again resumes where it stopped (and is a no-op once complete).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError
from flarelens.fileio import write_csv, write_text

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """What the demo simulates and trains. The defaults fit ~10 minutes on 2 CPU cores.

    One year of synthetic images every ``cadence`` hours, so each tri-monthly fold holds
    one quarter; ``folds`` are trained and validated in turn (all four by default, as in
    the study's cross-validation), and fold ``folds[0]``'s model is explained.
    """

    start: str = "2011-07-01"
    end: str = "2012-06-30 23:00"
    cadence: str = "4h"
    image_size: int = 128
    model: str = "simplecnn"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    folds: tuple[int, ...] = (1, 2, 3, 4)
    explain_limit: int = 24
    explain_methods: tuple[str, ...] = ("guided-gradcam", "deepshap", "ig")
    seed: int = 0


STEPS = ("simulate", "label", "train", "predict", "calibrate", "evaluate", "locations", "explain", "report")


class _Progress:
    """Logs one line per step, with its number, what it does and whether it was already done."""

    def __init__(self, total: int):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def step(self, name: str, detail: str, done: bool) -> None:
        self.n += 1
        state = "already done, skipped" if done else "running"
        logger.info("[%d/%d] %s: %s (%s)", self.n, self.total, name, detail, state)

    def finish(self) -> None:
        logger.info("demo finished in %.0f s", time.perf_counter() - self.t0)


def check_config(config: DemoConfig) -> None:
    """Refuse impossible demo settings (one line) before any work is done or recorded."""
    from flarelens.models import model_names

    if not config.folds or any(k not in (1, 2, 3, 4) for k in config.folds):
        raise FlareLensError(f"folds must be fold numbers 1-4, got {config.folds!r}")
    if config.epochs < 1:
        raise FlareLensError(f"epochs must be at least 1, got {config.epochs}")
    if not 32 <= config.image_size <= 4096:
        raise FlareLensError(f"image size must be between 32 and 4096 px, got {config.image_size}")
    if config.model not in model_names():
        raise FlareLensError(f"unknown model {config.model!r}; choose from {', '.join(model_names())}")
    try:
        step = pd.Timedelta(config.cadence)
    except ValueError:
        raise FlareLensError(f"cadence must be a duration such as 1h or 4h, got {config.cadence!r}") from None
    if step <= pd.Timedelta(0):
        raise FlareLensError(f"cadence must be positive, got {config.cadence!r}")
    if config.explain_limit < 1:
        raise FlareLensError(f"explain limit must be at least 1, got {config.explain_limit}")


def run_demo(out: str | os.PathLike = "runs/demo", config: DemoConfig | None = None, progress: bool = True) -> Path:
    """Run (or resume) the demo pipeline under ``out``; return the report's path.

    Every fold's model is selected on its inner validation block (never on the quarter it
    is scored on), calibrated there too, and scored on its held-out quarter beside the
    persistence and climatology forecasts of the same instances.
    """
    from flarelens import calibrate, evaluate, labels, locations, predict, predictions, report, simulate, train
    from flarelens.settings import check_same_settings

    config = config or DemoConfig()
    check_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_same_settings(out / "demo.json", json.loads(json.dumps(asdict(config))), what="a demo",
                        hint="use another --out or delete it")
    images = out / "images"
    total = 2 + 3 * len(config.folds) + 4
    p = _Progress(total)

    regions = images / "regions.csv"
    p.step("simulate", f"synthetic {config.image_size}² magnetograms {config.start} .. {config.end} every {config.cadence} "
           f"-> {images}", regions.is_file())
    simulate.simulate(config.start, config.end, config.cadence, config.image_size, images, seed=config.seed,
                      progress=progress)

    labels_csv = out / "labels.csv"
    p.step("label", f">= M1.0 within 24 h from the bundled GOES catalog -> {labels_csv}", labels_csv.is_file())
    if not labels_csv.is_file():
        table, summary = labels.make_labels(start=config.start, end=config.end, cadence=config.cadence, images=images)
        write_csv(table, labels_csv)
        logger.info("%s", summary.format())

    pred_files = []
    for k in config.folds:
        run = out / f"fold{k}"
        done = _history_complete(run, config.epochs)
        p.step("train", f"{config.model} at {config.image_size}², fold {k} (held out: quarter {k}; best epoch chosen "
               f"on the inner block of the other quarters) -> {run}", done)
        if not done:
            train.train(
                labels=str(labels_csv), images=str(images), fold=k, model=config.model, image_size=config.image_size,
                epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
                seed=config.seed, out=str(run), resume=(run / "last.pt").is_file(), progress=progress,
            )
        best = run / "best.pt"
        pred_csv, inner_csv = run / predictions.PREDICTIONS_NAME, run / predictions.INNER_NAME
        done = all(f.is_file() and f.stat().st_mtime >= best.stat().st_mtime for f in (pred_csv, inner_csv))
        p.step("predict", f"fold-{k} held-out quarter -> {pred_csv}, inner block -> {inner_csv}", done)
        if not done:
            for rows, path in (("inner", inner_csv), ("heldout", pred_csv)):
                frame = predict.predict_labels(best, labels_csv, images, rows=rows, progress=progress)
                predictions.write_predictions(frame, path, frame.attrs["meta"])
        done = predictions.CALIBRATED in pd.read_csv(pred_csv, nrows=0).columns
        p.step("calibrate", f"isotonic map fitted on fold {k}'s inner block, applied to {pred_csv}", done)
        if not done:
            calibrate.calibrate_run(inner_csv, [pred_csv])
        pred_files.append(pred_csv)

    evaluation = out / "evaluation.json"
    p.step("evaluate", f"skill per fold and pooled, persistence and climatology, 95% intervals -> {evaluation}", False)
    result = evaluate.evaluate_files(pred_files, labels=labels_csv, seed=config.seed)
    write_text(json.dumps(result, indent=2) + "\n", evaluation)
    logger.info("%s", evaluate.format_evaluation(result))
    logger.info("%s", evaluate.format_skill(result))

    loc_dir = out / "locations"
    p.step("locations", f"central vs near-limb X/M flares (source visible or hidden) and the recall map -> {loc_dir}",
           False)
    logger.info("%s", locations.format_locations(locations.write_locations(pred_files, loc_dir)))

    explain_dir = out / "explain"
    p.step("explain", f"{', '.join(config.explain_methods)} on up to {config.explain_limit} flaring held-out "
           f"images -> {explain_dir}", False)
    _explain(out, config, pred_files, images, explain_dir, progress)

    p.step("report", f"{out / 'report.html'}", False)
    path = report.build_report(out)
    p.finish()
    logger.info("open %s in a browser", path)
    return path


def _explain(out: Path, config: DemoConfig, pred_files: list[Path], images: Path, explain_dir: Path, progress: bool):
    from flarelens.explain.run import ExplainSettings, Selection, explain

    result = explain(
        checkpoint=out / f"fold{config.folds[0]}" / "best.pt",
        predictions=spread_instances(pred_files[0], config.explain_limit),
        images=images,
        out=explain_dir,
        selection=Selection(classes=["X", "M"]),
        settings=ExplainSettings(methods=tuple(config.explain_methods), seed=config.seed),
        labels=out / "labels.csv",
        progress=progress,
    )
    return result


def spread_instances(predictions_csv: Path, limit: int) -> pd.DataFrame:
    """X/M-class rows to explain: half central, half near-limb, each spread evenly over the
    quarter (the first rows in time would all come from a few days and, near the limb,
    mostly from sources still behind the east limb)."""
    raw = pd.read_csv(predictions_csv)
    flaring = raw[raw["goes_class"].fillna("").astype(str).str[:1].str.upper().isin(["X", "M"])]
    limb = flaring["fl_lon"].abs() > 70
    parts = []
    for part, n in ((flaring[~limb & flaring["fl_lon"].notna()], limit - limit // 2), (flaring[limb], limit // 2)):
        if len(part):
            parts.append(part.iloc[np.unique(np.linspace(0, len(part) - 1, min(n, len(part))).round().astype(int))])
    return pd.concat(parts).sort_values("timestamp") if parts else flaring.head(0)


def _history_complete(run: Path, epochs: int) -> bool:
    history = run / "history.csv"
    if not (history.is_file() and (run / "best.pt").is_file()):
        return False
    import pandas as pd

    return len(pd.read_csv(history)) >= epochs

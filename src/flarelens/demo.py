"""The whole pipeline on data that ships with flarelens, in minutes on a laptop CPU.

simulate (synthetic magnetograms from the real GOES catalog) -> label -> train ->
predict -> evaluate -> locations -> explain -> report, all under one run directory. Each
step is the same library function the matching subcommand calls, each leaves files with
the contracts of docs/design.md, and a step whose output is already there is skipped, so
running the demo again resumes where it stopped (and is a no-op once complete).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flarelens.errors import FlareLensError
from flarelens.fileio import write_csv, write_text


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


STEPS = ("simulate", "label", "train", "predict", "evaluate", "locations", "explain", "report")


class _Progress:
    """Prints one line per step, with its number, what it does and how long it took."""

    def __init__(self, total: int):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def step(self, name: str, detail: str, done: bool) -> None:
        self.n += 1
        state = "already done, skipped" if done else "running"
        print(f"[{self.n}/{self.total}] {name}: {detail} ({state})", flush=True)

    def finish(self) -> None:
        print(f"demo finished in {time.perf_counter() - self.t0:.0f} s", flush=True)


def run_demo(out: str | os.PathLike = "runs/demo", config: DemoConfig | None = None, progress: bool = True) -> Path:
    """Run (or resume) the demo pipeline under ``out``; return the report's path."""
    from flarelens import evaluate, labels, locations, predict, report, simulate, train

    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_config(out, config)
    images = out / "images"
    total = 2 + 2 * len(config.folds) + 4
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
        print(summary.format())

    pred_files = []
    for k in config.folds:
        run = out / f"fold{k}"
        done = _history_complete(run, config.epochs)
        p.step("train", f"{config.model} at {config.image_size}², fold {k} (validates on quarter {k}) -> {run}", done)
        if not done:
            train.train(
                labels=str(labels_csv), images=str(images), fold=k, model=config.model, image_size=config.image_size,
                epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
                seed=config.seed, out=str(run), resume=(run / "last.pt").is_file(), progress=progress,
            )
        pred_csv = run / "predictions.csv"
        done = pred_csv.is_file() and pred_csv.stat().st_mtime >= (run / "best.pt").stat().st_mtime
        p.step("predict", f"flare probability of every fold-{k} validation image -> {pred_csv}", done)
        if not done:
            frame = predict.predict_labels(run / "best.pt", labels_csv, images, fold=k, progress=progress)
            write_csv(frame, pred_csv)
        pred_files.append(pred_csv)

    evaluation = out / "evaluation.json"
    p.step("evaluate", f"TSS and HSS per fold -> {evaluation}", False)
    result = evaluate.evaluate_files(pred_files)
    write_text(json.dumps(result, indent=2) + "\n", evaluation)
    print(evaluate.format_evaluation(result))

    loc_dir = out / "locations"
    p.step("locations", f"central vs near-limb X/M flares and the recall map -> {loc_dir}", False)
    print(locations.format_locations(locations.write_locations(pred_files, loc_dir)))

    explain_dir = out / "explain"
    p.step("explain", f"{', '.join(config.explain_methods)} on up to {config.explain_limit} flaring validation "
           f"images -> {explain_dir}", False)
    _explain(out, config, pred_files, images, explain_dir, progress)

    p.step("report", f"{out / 'report.html'}", False)
    path = report.build_report(out)
    p.finish()
    print(f"open {path} in a browser")
    return path


def _explain(out: Path, config: DemoConfig, pred_files: list[Path], images: Path, explain_dir: Path, progress: bool):
    from flarelens.explain.run import ExplainSettings, Selection, explain

    result = explain(
        checkpoint=out / f"fold{config.folds[0]}" / "best.pt",
        predictions=pred_files[0],
        images=images,
        out=explain_dir,
        selection=Selection(classes=["X", "M"], limit=config.explain_limit),
        settings=ExplainSettings(methods=tuple(config.explain_methods), seed=config.seed),
        labels=out / "labels.csv",
        progress=progress,
    )
    return result


def _history_complete(run: Path, epochs: int) -> bool:
    history = run / "history.csv"
    if not (history.is_file() and (run / "best.pt").is_file()):
        return False
    import pandas as pd

    return len(pd.read_csv(history)) >= epochs


def _check_same_config(out: Path, config: DemoConfig) -> None:
    """Refuse to mix a run directory made with other settings (its steps would be stale)."""
    path = out / "demo.json"
    current = json.loads(json.dumps(asdict(config)))
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != current:
            changed = sorted(k for k in current if saved.get(k) != current[k])
            raise FlareLensError(
                f"{out} holds a demo made with other settings ({', '.join(changed)}); "
                "use another --out or delete it"
            )
    else:
        write_text(json.dumps(current, indent=2) + "\n", path)

"""Explaining many predictions: the run — batching, resume, and the output files.

Layout of an output directory ``DIR``::

    DIR/settings.json, DIR/maps/<stem>.npz   the maps and what they depend on
                               (:mod:`flarelens.explain.storage`)
    DIR/overlays/<stem>_<method>.png   the map blended on the magnetogram, flare marked
    DIR/comparison.png         rows = instances spread over the selection, columns =
                               magnetogram + methods
    DIR/scores.csv             one row per instance x method
                               (:data:`flarelens.explain.summary.SCORE_COLUMNS`)
    DIR/summary.json           aggregates per method and group
                               (:func:`flarelens.explain.summary.summarise`)

The pieces: :mod:`~flarelens.explain.instances` selects the rows and reads their images,
:mod:`~flarelens.explain.truth` places the flare on each image,
:class:`~flarelens.explain.attributions.Attributor` makes the maps through the method
registry, :mod:`~flarelens.explain.storage` keeps them, :mod:`~flarelens.explain.summary`
scores and aggregates them, :mod:`~flarelens.explain.render` draws them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flarelens import progress as progress_bars
from flarelens.errors import FlareLensError
from flarelens.explain import render, scores, storage, truth
from flarelens.explain.attributions import Attributor, find_layer, last_conv_name, module_name
from flarelens.explain.instances import (
    Selection, background_rows, check_held_out, draw_background, load_images, load_predictions, nothing_selected,
    select_instances,
)
from flarelens.explain.methods import METHODS, NEUTRAL, needs_background
from flarelens.explain.summary import json_safe, score_table, summarise
from flarelens.explain.truth import IMAGE_RADIUS, NEIGHBOURHOODS, flaring_region, instance_geometry, read_regions
from flarelens.fileio import write_csv, write_text

logger = logging.getLogger(__name__)


@dataclass
class ExplainSettings:
    """How maps are made and scored (see :class:`~flarelens.explain.attributions.Attributor`).

    ``batch_size``: instances per captum call; ``neighbourhood``: the flare neighbourhood
    ``mass``/``hit`` are scored on, ``image`` (default: on-disk pixels within
    ``image_radius`` solar radii of the flare's pixel at the image time) or
    ``heliographic`` (within ``radius_deg`` great-circle degrees); both are always in
    scores.csv (see :data:`flarelens.explain.truth.IMAGE_RADIUS` for the default radius and
    ``benchmarks/README.md`` for why ``image`` is the default); ``deletion``: compute deletion curves;
    ``overlays``: write a PNG per instance and method; ``comparison_rows``: instances in
    DIR/comparison.png (evenly spread over the selection); ``seed``: background draw and random deletion order.
    """

    methods: tuple[str, ...] = METHODS
    layer: str | None = None
    background_k: int = 16
    ig_baseline: str = "physical"
    n_steps: int = 50
    internal_batch_size: int = 64
    batch_size: int = 8
    output: str = "logit"
    neighbourhood: str = "image"
    radius_deg: float = 10.0
    image_radius: float = IMAGE_RADIUS
    deletion: bool = True
    overlays: bool = True
    comparison_rows: int = 8
    seed: int = 0
    device: str = "cpu"
    threshold: float = 0.5


def check_settings(settings: ExplainSettings) -> None:
    """Refuse settings that cannot give a meaningful run, each with one clear line."""
    for name, flag in (("radius_deg", "--radius"), ("image_radius", "--image-radius")):
        value = getattr(settings, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise FlareLensError(f"{flag} must be a positive number, got {value!r}")
    if settings.neighbourhood not in NEIGHBOURHOODS:
        raise FlareLensError(f"unknown neighbourhood {settings.neighbourhood!r}: choose {' or '.join(NEIGHBOURHOODS)}")
    if settings.batch_size < 1 or settings.internal_batch_size < 1:
        raise FlareLensError("--batch-size and --internal-batch-size must be >= 1")
    if settings.comparison_rows < 0:
        raise FlareLensError(f"--comparison-rows must be >= 0, got {settings.comparison_rows}")
    if not 0.0 < float(settings.threshold) < 1.0:
        raise FlareLensError(f"--threshold must be a probability strictly between 0 and 1, got {settings.threshold!r}")


@dataclass
class ExplainResult:
    """What a run produced: the scores table, the summary and how many instances were computed."""

    scores: pd.DataFrame
    summary: dict
    computed: int
    skipped: int
    out: Path
    files: dict = field(default_factory=dict)


def explain_instances(
    model: torch.nn.Module,
    frame: pd.DataFrame,
    images: str | os.PathLike,
    out: str | os.PathLike,
    settings: ExplainSettings | None = None,
    image_size: int | None = None,
    background: pd.DataFrame | None = None,
    regions: pd.DataFrame | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExplainResult:
    """Attribution maps, figures and scores for the rows of ``frame`` (from
    :func:`~flarelens.explain.instances.select_instances`), written under ``out`` (layout in
    the module docstring).

    ``model``: (B, 1, H, W) in [0, 1] -> logits (B, 2); ``image_size``: side the images
    are resized to (the checkpoint's; None keeps the files' size); ``background``: rows
    (``file``, ``timestamp``) of non-flaring training images for Deep SHAP, of which
    ``settings.background_k`` are drawn; ``regions``: simulate's ground truth
    (:func:`~flarelens.explain.truth.read_regions`). Instances whose npz holds every
    requested method are skipped. A boolean ``training_data`` column in ``frame`` marks
    rows the model trained on (scores, summary and figures say so).
    """
    settings = settings or ExplainSettings()
    check_settings(settings)
    out = Path(out)
    root = Path(images)
    methods = tuple(settings.methods)
    if not methods:
        raise FlareLensError("no attribution method given")
    if frame.empty:
        raise FlareLensError("nothing selected: no instance to explain")
    device = torch.device(settings.device)
    if image_size is None:
        image_size = int(load_images(root, frame.iloc[:1], None)[0].shape[-1])

    layer = settings.layer or default_layer(model)
    find_layer(model, layer)  # a wrong name fails before anything is written
    bg_rows = draw_background(background, settings.background_k, settings.seed) if needs_background(methods) else None
    bg_files = [str(f) for f in bg_rows["file"]] if bg_rows is not None else []
    storage.check_map_settings(
        out, storage.map_settings(settings, storage.model_fingerprint(model), image_size, layer, bg_files), overwrite)

    maps_dir, overlay_dir = out / "maps", out / "overlays"
    maps_dir.mkdir(parents=True, exist_ok=True)
    stems = [storage.stem_of(row) for _, row in frame.iterrows()]
    pending = [i for i, s in enumerate(stems) if not storage.is_done(storage.map_path(maps_dir, s), methods)]

    attributor = None
    if pending:
        bg_tensor = None
        if bg_rows is not None:
            bg_tensor = load_images(root, bg_rows, image_size)[0].float().div_(255.0)
        example = torch.full((1, 1, image_size, image_size), NEUTRAL)
        attributor = Attributor(
            model, methods, layer=layer, background=bg_tensor, ig_baseline=settings.ig_baseline,
            n_steps=settings.n_steps, internal_batch_size=settings.internal_batch_size,
            output=settings.output, device=device, example=example,
        )
    bar = progress_bars.bar(total=len(pending), desc="explain", unit="img", progress=progress and bool(pending))
    for start in range(0, len(pending), settings.batch_size):
        idx = pending[start:start + settings.batch_size]
        rows = frame.iloc[idx]
        _explain_batch(attributor, rows, [stems[i] for i in idx], root, maps_dir, overlay_dir,
                       image_size, regions, settings)
        bar.update(len(idx))
    bar.close()

    table = score_table(frame, stems, maps_dir, methods, settings)
    summary = summarise(table, methods, settings)
    summary["instances"] = len(frame)
    summary["computed"] = len(pending)
    summary["skipped"] = len(frame) - len(pending)
    summary["map_settings"] = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    files = {"scores": out / "scores.csv", "summary": out / "summary.json"}
    write_csv(table, files["scores"])
    write_text(json.dumps(json_safe(summary), indent=1) + "\n", files["summary"])

    if settings.comparison_rows > 0:
        # Spread over the selection (time order), so one figure spans the period.
        picks = np.unique(np.linspace(0, len(frame) - 1, min(settings.comparison_rows, len(frame))).round().astype(int))
        panels = []
        for i in picks:
            z = storage.read_map(storage.map_path(maps_dir, stems[i]), methods)
            panels.append(_panel(z, frame.iloc[i], methods, settings))
        files["comparison"] = out / "comparison.png"
        render.save_figure(render.comparison_figure(panels, methods), files["comparison"])
    return ExplainResult(table, summary, len(pending), len(frame) - len(pending), out, files)


def default_layer(model: torch.nn.Module) -> str:
    """The name of the Grad-CAM layer: ``models.gradcam_layer`` for flarelens models, else the last Conv2d."""
    try:
        from flarelens.models import gradcam_layer

        return module_name(model, gradcam_layer(model))
    except (ImportError, AttributeError, FlareLensError):
        return last_conv_name(model)


def _panel(z: dict, row, methods, settings: ExplainSettings) -> render.Panel:
    """The figure panel of one instance: its run's neighbourhood drawn, training rows and
    hidden sources said in the title."""
    visible = truth.source_visible(row)
    if visible == 0.0:
        region = None
    elif settings.neighbourhood == "heliographic":
        region = truth.heliographic_neighbourhood(z["flare_distance_deg"], settings.radius_deg)
    else:
        radius_px = settings.image_radius * truth.disk_radius_px(row["time"], z["disk"].shape[-1])
        region = truth.image_neighbourhood(z["flare_xy"], z["disk"], radius_px)
    notes = []
    if visible == 0.0:
        notes.append("source not visible")
    if bool(row.get("training_data", False)):
        notes.append("TRAINING DATA")
    return render.map_panel(z, row, methods, region, notes)


def _explain_batch(attributor: Attributor, rows: pd.DataFrame, stems, root, maps_dir, overlay_dir,
                   image_size, regions, settings: ExplainSettings) -> None:
    methods = attributor.methods
    images_u8, file_sizes = load_images(root, rows, image_size)
    x = images_u8.float().div_(255.0)
    geo = [instance_geometry(row, image_size) for _, row in rows.iterrows()]
    disks = np.stack([g[0] for g in geo])
    results = attributor.attribute(x, torch.from_numpy(disks))
    probs = attributor.flare_probability(x)
    for b, stem in enumerate(stems):
        # A diverged model gives NaN or inf: such a map would score as nonsense, so none is written.
        if not np.isfinite(probs[b]):
            raise FlareLensError(f"{stem}: the model gives a non-finite flare probability ({probs[b]}) for this image; "
                                 "nothing is written for it (a diverged checkpoint? retrain with a lower --lr)")
        for m in methods:
            if not np.isfinite(results[m].maps[b]).all():
                raise FlareLensError(f"{stem}: the {m} map holds non-finite values; nothing is written for it "
                                     "(a diverged checkpoint, or try another --attribute)")
    fractions = scores.DELETION_FRACTIONS
    curves = {}
    if settings.deletion:
        for m in methods:
            curves[m] = scores.deletion_curves(attributor.flare_probability, x, results[m].maps, disks, fractions,
                                               batch_size=settings.internal_batch_size)
        # One random order per instance, seeded by its name: reproducible and resumable.
        rngs = [np.random.default_rng(_seed(stem, settings.seed)) for stem in stems]
        curves["random"] = scores.deletion_curves(attributor.flare_probability, x, None, disks, fractions,
                                                  rngs=rngs, batch_size=settings.internal_batch_size)
    for b, ((_, row), stem) in enumerate(zip(rows.iterrows(), stems)):
        disk, dist, xy = geo[b]
        truth = flaring_region(regions, row["time"], file_sizes[b], image_size)
        arrays = {
            "image": images_u8[b, 0].numpy(), "disk": disk, "flare_distance_deg": dist, "flare_xy": xy,
            "truth_xyr": np.asarray(truth if truth else (np.nan,) * 3, dtype=float),
            "model_prob": np.float64(probs[b]), "timestamp": np.str_(row["timestamp"]), "image_file": np.str_(row["file"]),
            "deletion_fractions": fractions,
        }
        for m in methods:
            arrays[f"map_{m}"] = results[m].maps[b]
            arrays[f"delta_{m}"] = np.float64(results[m].delta[b])
            if settings.deletion:
                arrays[f"deletion_{m}"] = curves[m][b]
        if settings.deletion:
            arrays["deletion_random"] = curves["random"][b]
        if settings.overlays:
            panel = _panel(arrays, row, methods, settings)
            for m in methods:
                render.save_figure(render.overlay_figure(panel, m), overlay_dir / f"{stem}_{m}.png")
        # The npz goes last: its presence means the instance is complete.
        storage.write_map(storage.map_path(maps_dir, stem), arrays)


def _seed(stem: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{stem}".encode()).digest()[:8], "little")


def explain(
    checkpoint: str | os.PathLike,
    predictions: str | os.PathLike | pd.DataFrame,
    images: str | os.PathLike,
    out: str | os.PathLike,
    selection: Selection | None = None,
    settings: ExplainSettings | None = None,
    labels: str | os.PathLike | None = None,
    regions: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    allow_training_rows: bool = False,
) -> ExplainResult:
    """Explain a checkpoint's predictions: the whole ``flarelens explain`` step as one call.

    Loads the model of ``checkpoint`` (on ``settings.device``, resolved by
    :func:`flarelens.distributed.resolve_device`: ``"auto"`` picks CUDA when available), selects rows of ``predictions`` (a predictions.csv or its table), draws the
    Deep SHAP background from the non-flaring rows of ``labels`` outside the checkpoint's
    validation fold (or, without ``labels``, from unselected non-flaring predictions), reads
    simulate's ground truth from ``regions`` (default: ``images/regions.csv`` when present),
    and writes maps, figures and scores under ``out`` (see the module docstring).

    Rows the checkpoint was not held out from (outside its validation fold
    ``config["fold"]``: training rows and the inner block that chose its epoch) are
    refused with one line unless ``allow_training_rows``; then they are explained and every
    output marks them as training data. A selection that keeps nothing is refused too.
    """
    from flarelens.checkpoint import load_model

    settings = settings or ExplainSettings()
    selection = selection or Selection(threshold=settings.threshold)
    check_settings(settings)
    pred, source = load_predictions(predictions)
    frame = select_instances(pred, selection)
    if frame.empty:
        raise nothing_selected(pred, selection, source)
    from flarelens.distributed import resolve_device

    settings = dataclasses.replace(settings, device=str(resolve_device(settings.device)))
    model, config = load_model(checkpoint, device=settings.device)
    frame["training_data"] = check_held_out(frame, config, str(checkpoint), allow_training_rows)
    logger.info("%d of %d predictions selected", len(frame), len(pred))
    if frame["training_data"].any():
        logger.warning("%d selected instance(s) are rows the model trained on: every output marks them as "
                       "training data", int(frame["training_data"].sum()))

    background = None
    if needs_background(settings.methods):
        if labels is not None:
            from flarelens.labels import read_labels

            background = background_rows(read_labels(labels), config.get("fold"))
        else:
            background = background_rows(pred, None, exclude=frame["timestamp"])
            logger.info("note: Deep SHAP background drawn from the non-flaring rows of the predictions "
                        "(pass labels for training images)")

    regions_path = Path(regions) if regions is not None else Path(images) / "regions.csv"
    truth = read_regions(regions_path) if (regions is not None or regions_path.is_file()) else None
    return explain_instances(
        model, frame, images, out, settings, image_size=int(config["image_size"]),
        background=background, regions=truth, overwrite=overwrite, progress=progress,
    )


__all__ = ["Selection", "ExplainSettings", "ExplainResult", "check_settings", "explain_instances", "explain",
           "default_layer"]

"""Explaining many predictions: selection, batching, resume, and the output files.

Layout of an output directory ``DIR``::

    DIR/settings.json          what the maps depend on (model fingerprint, image size, layer,
                               IG baseline and steps, attributed output, background); a rerun
                               with other settings is refused unless told to overwrite
    DIR/maps/<stem>.npz        one per instance (<stem> = HMI.mYYYY.MM.DD_HH.MM.SS); its
                               presence marks the instance done. Arrays (S = model input size):
                                 map_<method> (S, S) float32, delta_<method> () convergence
                                 delta (NaN for Guided Grad-CAM), deletion_<method> (11,) and
                                 deletion_random (11,) flare probabilities at
                                 deletion_fractions (11,) = 0, 0.05, ..., 0.5;
                                 image (S, S) uint8 as the model saw it, disk (S, S) bool,
                                 flare_distance_deg (S, S) float32 great-circle distance to the
                                 flare at the image time (NaN off the disk / no position),
                                 flare_xy (2,) pixel of the flare (NaN if unknown or behind the
                                 limb), truth_xyr (3,) simulate's flaring region (x, y,
                                 radius_px at size S; NaN if none), model_prob (), timestamp,
                                 image_file
    DIR/overlays/<stem>_<method>.png   the map blended on the magnetogram, flare marked
    DIR/comparison.png         rows = instances spread over the selection, columns =
                               magnetogram + methods
    DIR/scores.csv             one row per instance x method (:data:`SCORE_COLUMNS`)
    DIR/summary.json           aggregates per method and group (:func:`summarise`)

Flare positions: ``fl_lon``/``fl_lat`` of the labels are the catalog's position of the
flare, which starts up to 24 h after the image; they are rotated back to the image time
with the differential rotation of :func:`flarelens.geometry.rotate` (from ``fl_start``,
when known) before being compared with the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flarelens.errors import FlareLensError
from flarelens.explain import render, scores
from flarelens.explain.attributions import METHODS, NEUTRAL, Attributor, find_layer
from flarelens.fileio import atomic_path, write_csv, write_text

OUTCOMES = ("TP", "FN", "FP", "TN")
CLASSES = ("X", "M", "C", "B", "A", "none")
POSITIONS = ("central", "limb")

#: Columns of DIR/scores.csv.
SCORE_COLUMNS = [
    "timestamp", "file", "method", "target", "flare_prob", "model_prob", "outcome", "goes_class",
    "flare_class", "fl_lon", "fl_lat", "position", "radius_deg", "mass", "hit", "area",
    "gt_mass", "gt_hit", "gt_area", "deletion_auc", "deletion_auc_random", "conv_delta",
]

#: Groups of instances summarised per method in summary.json and on the console: words
#: combined with "and" — flaring (target 1), central / limb (|fl_lon| <= 70 deg or beyond),
#: TP / FN / FP / TN (outcome at the threshold).
GROUPS = ("all", "flaring", "flaring central", "flaring limb", "central", "limb", "TP", "FN", "FP", "TN",
          "central TP", "central FN", "limb TP", "limb FN")


# --------------------------------------------------------------------------- selection


@dataclass
class Selection:
    """Which predictions to explain. ``None`` means no filter.

    ``classes``: largest-flare class letters (X, M, C, B, A, none); ``outcomes``: TP, FN,
    FP, TN at ``threshold`` on ``flare_prob``; ``start``/``end``: UTC time range
    (inclusive); ``position``: ``central`` (|fl_lon| <= 70 degrees) or ``limb`` (rows with
    an unknown position are dropped by either); ``limit``: the first N rows in time order.
    """

    classes: list[str] | None = None
    outcomes: list[str] | None = None
    start: str | None = None
    end: str | None = None
    position: str | None = None
    limit: int | None = None
    threshold: float = 0.5


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """predictions.csv (``flarelens predict``) with times parsed; checks the needed columns."""
    path = Path(path)
    if not path.is_file():
        raise FlareLensError(f"{path}: no such predictions file (write one with `flarelens predict`)")
    try:
        frame = pd.read_csv(path, keep_default_na=True, dtype={"goes_class": str, "file": str})
    except Exception as exc:  # noqa: BLE001 - parser errors of any kind are bad input
        raise FlareLensError(f"{path}: cannot read as CSV ({exc})") from None
    return normalise_predictions(frame, str(path))


def normalise_predictions(frame: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """A predictions table with the columns explain needs (missing label columns empty) and
    times parsed into ``time``; ``source`` names it in error messages."""
    frame = frame.copy()
    path = source
    missing = [c for c in ("timestamp", "file", "flare_prob", "target") if c not in frame.columns]
    if missing:
        raise FlareLensError(f"{path}: missing column(s) {', '.join(missing)}; expected the output of `flarelens predict`")
    for col, default in (("goes_class", ""), ("fl_lon", np.nan), ("fl_lat", np.nan), ("fl_start", "")):
        if col not in frame.columns:
            frame[col] = default
    frame["goes_class"] = frame["goes_class"].fillna("").astype(str)
    frame["fl_start"] = frame["fl_start"].fillna("").astype(str)
    times = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    bad = times.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise FlareLensError(f"{path}, row {row + 2}: cannot read timestamp {frame['timestamp'].iloc[row]!r} (expected ISO 8601 UTC)")
    frame["time"] = times
    return frame


def select_instances(pred: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The rows of ``pred`` (see :func:`read_predictions`) that ``selection`` keeps.

    Adds the columns ``flare_class``, ``outcome`` and ``position`` used by the filters.
    """
    frame = pred.copy()
    if "time" not in frame.columns:
        frame["time"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["flare_class"] = scores.flare_class(frame["goes_class"].fillna("").to_numpy())
    frame["outcome"] = scores.outcome(frame["flare_prob"].to_numpy(), frame["target"].to_numpy(), selection.threshold)
    frame["position"] = scores.position_class(frame["fl_lon"].to_numpy())
    keep = np.ones(len(frame), dtype=bool)
    if selection.classes:
        wanted = [c.strip() for c in selection.classes]
        wanted = ["none" if c.lower() == "none" else c.upper() for c in wanted]
        bad = [c for c in wanted if c not in CLASSES]
        if bad:
            raise FlareLensError(f"unknown flare class {', '.join(bad)}: choose from {', '.join(CLASSES)}")
        keep &= frame["flare_class"].isin(wanted).to_numpy()
    if selection.outcomes:
        wanted = [o.strip().upper() for o in selection.outcomes]
        bad = [o for o in wanted if o not in OUTCOMES]
        if bad:
            raise FlareLensError(f"unknown outcome {', '.join(bad)}: choose from {', '.join(OUTCOMES)}")
        keep &= frame["outcome"].isin(wanted).to_numpy()
    if selection.start is not None:
        keep &= (frame["time"] >= _utc(selection.start, "start")).to_numpy()
    if selection.end is not None:
        keep &= (frame["time"] <= _utc(selection.end, "end")).to_numpy()
    if selection.position is not None:
        if selection.position not in POSITIONS:
            raise FlareLensError(f"unknown position {selection.position!r}: choose central or limb")
        keep &= (frame["position"] == selection.position).to_numpy()
    out = frame[keep].sort_values("time", kind="stable")
    if selection.limit is not None:
        if selection.limit < 0:
            raise FlareLensError(f"--limit must be >= 0, got {selection.limit}")
        out = out.head(selection.limit)
    return out.reset_index(drop=True)


def _utc(value, what) -> pd.Timestamp:
    from flarelens.labels import parse_time

    return parse_time(value, what)


# --------------------------------------------------------------------------- settings


@dataclass
class ExplainSettings:
    """How maps are made and scored (see :class:`~flarelens.explain.attributions.Attributor`).

    ``batch_size``: instances per captum call; ``radius_deg``: localisation radius around
    the flare (heliographic degrees); ``deletion``: compute deletion curves;
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
    radius_deg: float = 10.0
    deletion: bool = True
    overlays: bool = True
    comparison_rows: int = 8
    seed: int = 0
    device: str = "cpu"
    threshold: float = 0.5


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-1 of the model's state (names, shapes, values): which weights made a map."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _map_settings(settings: ExplainSettings, fingerprint: str, image_size: int, layer: str,
                  background_files: list[str]) -> dict:
    """The settings a map depends on (radius, selection, figures do not)."""
    return {
        "model_fingerprint": fingerprint, "image_size": int(image_size), "layer": layer,
        "ig_baseline": settings.ig_baseline, "n_steps": int(settings.n_steps), "output": settings.output,
        "background": background_files, "deletion": bool(settings.deletion),
    }


def _check_settings(out: Path, current: dict, overwrite: bool) -> None:
    path = out / "settings.json"
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        has_maps = any((out / "maps").glob("*.npz"))
        if previous != current and has_maps:
            if not overwrite:
                differs = sorted(k for k in set(current) | set(previous or {})
                                 if (previous or {}).get(k) != current.get(k))
                raise FlareLensError(
                    f"{out} holds maps made with other settings ({', '.join(differs) or 'unreadable settings.json'} "
                    "differ); use another --out, or --overwrite to replace them"
                )
            for sub in ("maps", "overlays"):
                for f in (out / sub).glob("*"):
                    if f.suffix in (".npz", ".png"):
                        f.unlink()
    write_text(json.dumps(current, indent=1) + "\n", path)


# --------------------------------------------------------------------------- per-instance data


def stem_of(row) -> str:
    """Output name of an instance: its image name without extension (HMI.mYYYY.MM.DD_HH.MM.SS)."""
    from flarelens.images import image_relpath

    return Path(image_relpath(row["time"], "")).name


def image_path(root: Path, row, source: str = "predictions") -> Path:
    """The image file of a row: ``root/file``, or the naming convention's file of its time."""
    from flarelens.images import find_image

    path = root / str(row["file"])
    if path.is_file():
        return path
    found = find_image(root, row["time"])
    if found is not None:
        return found
    raise FlareLensError(
        f"{source}: image {row['file']} of {row['timestamp']} not found under {root} (check --images)"
    )


def load_images(root: Path, rows: pd.DataFrame, image_size: int | None) -> tuple[torch.Tensor, list[int]]:
    """(B, 1, S, S) uint8 images of ``rows`` resized as for training, and their file sizes (px)."""
    from flarelens.data import read_image, resize_image
    from flarelens.pack import is_pack, read_images

    if is_pack(root):
        return read_images(root, rows["file"], image_size)

    images, sizes = [], []
    for _, row in rows.iterrows():
        img = read_image(image_path(root, row))
        if img.shape[-1] != img.shape[-2]:
            raise FlareLensError(f"{row['file']}: full-disk images must be square, got {tuple(img.shape[-2:])}")
        sizes.append(int(img.shape[-1]))
        images.append(resize_image(img, image_size))
    return torch.stack(images), sizes


def read_regions(path: str | os.PathLike) -> pd.DataFrame:
    """Ground truth regions.csv of ``flarelens simulate`` with times parsed."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001
        raise FlareLensError(f"{path}: cannot read regions table ({exc})") from None
    missing = [c for c in ("timestamp", "x", "y", "radius_px", "max_flux_24h") if c not in frame.columns]
    if missing:
        raise FlareLensError(f"{path}: missing column(s) {', '.join(missing)}; expected regions.csv of `flarelens simulate`")
    frame["time"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def flaring_region(regions: pd.DataFrame | None, time: pd.Timestamp, file_size: int, size: int):
    """(x, y, radius_px) at image size ``size`` of the region with the largest flare in the
    next 24 h at ``time`` (regions.csv coordinates are at ``file_size``), or None."""
    if regions is None:
        return None
    rows = regions[regions["time"] == time]
    rows = rows[rows["max_flux_24h"].fillna(0) > 0]
    if rows.empty:
        return None
    top = rows.loc[rows["max_flux_24h"].idxmax()]
    s = size / file_size
    # Pixel centres sit at integer coordinates: scale about the image corner (-0.5, -0.5).
    return ((float(top["x"]) + 0.5) * s - 0.5, (float(top["y"]) + 0.5) * s - 0.5, float(top["radius_px"]) * s)


def flare_at_image_time(row) -> tuple[float, float]:
    """(lon, lat) in degrees of the row's flare rotated back from its start to the image time."""
    from flarelens import geometry

    lon, lat = float(row["fl_lon"]), float(row["fl_lat"])
    if not (np.isfinite(lon) and np.isfinite(lat)):
        return float("nan"), float("nan")
    start = str(row.get("fl_start", "") or "")
    if start and start.lower() != "nan":
        try:
            t0 = pd.Timestamp(start)
        except ValueError:
            t0 = None
        if t0 is not None and t0 is not pd.NaT:
            lon = float(geometry.rotate(lon, lat, t0, row["time"]))
    return lon, lat


def instance_geometry(row, size: int):
    """On-disk mask (S, S), great-circle distance (degrees) of every on-disk pixel to the
    flare at the image time (NaN off the disk or without position) and its pixel (x, y)."""
    from flarelens import geometry

    lon_map, lat_map, _ = geometry.disk_grid(row["time"], size)
    disk = np.isfinite(lon_map)
    lon, lat = flare_at_image_time(row)
    if np.isfinite(lon):
        dist = scores.great_circle_deg(lon_map, lat_map, lon, lat).astype(np.float32)
        xy = geometry.hg_to_pixel(lon, lat, row["time"], size)
    else:
        dist = np.full((size, size), np.nan, dtype=np.float32)
        xy = (float("nan"), float("nan"))
    return disk, dist, np.asarray(xy, dtype=float)


# --------------------------------------------------------------------------- the run


@dataclass
class ExplainResult:
    """What a run produced: the scores table, the summary and how many instances were computed."""

    scores: pd.DataFrame
    summary: dict
    computed: int
    skipped: int
    out: Path
    files: dict = field(default_factory=dict)


def _done(path: Path, methods) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path) as z:
            return all(f"map_{m}" in z.files for m in methods)
    except (OSError, ValueError, EOFError):
        return False  # an unreadable file is redone


def _panel(z: dict, row, methods, radius_deg: float, extra=None) -> render.Panel:
    dist = z["flare_distance_deg"]
    region = np.nan_to_num(dist, nan=np.inf) <= radius_deg
    truth = tuple(z["truth_xyr"]) if np.all(np.isfinite(z["truth_xyr"])) else None
    prob = float(z["model_prob"])
    cls = row["goes_class"] or "no flare"
    title = f"{row['time']:%Y-%m-%d %H:%M} {cls} p={prob:.2f} {row['outcome']}"
    return render.Panel(
        image=z["image"], maps={m: z[f"map_{m}"] for m in methods}, title=title,
        flare_xy=tuple(z["flare_xy"]) if np.all(np.isfinite(z["flare_xy"])) else None,
        region=region if region.any() else None, truth=truth, disk=z["disk"], labels=extra or {},
    )


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
    :func:`select_instances`), written under ``out`` (layout in the module docstring).

    ``model``: (B, 1, H, W) in [0, 1] -> logits (B, 2); ``image_size``: side the images
    are resized to (the checkpoint's; None keeps the files' size); ``background``: rows
    (``file``, ``timestamp``) of non-flaring training images for Deep SHAP, of which
    ``settings.background_k`` are drawn; ``regions``: simulate's ground truth
    (:func:`read_regions`). Instances whose npz holds every requested method are skipped.
    """
    from tqdm.auto import tqdm

    settings = settings or ExplainSettings()
    out = Path(out)
    root = Path(images)
    methods = tuple(settings.methods)
    if not methods:
        raise FlareLensError("no attribution method given")
    device = torch.device(settings.device)
    if image_size is None:
        if frame.empty:
            image_size = 0
        else:
            image_size = int(load_images(root, frame.iloc[:1], None)[0].shape[-1])

    layer = settings.layer or _default_layer(model)
    find_layer(model, layer)  # a wrong name fails before anything is written
    bg_rows = _draw_background(background, settings) if "deepshap" in methods else None
    bg_files = [str(f) for f in bg_rows["file"]] if bg_rows is not None else []
    _check_settings(out, _map_settings(settings, model_fingerprint(model), image_size, layer, bg_files), overwrite)

    maps_dir, overlay_dir = out / "maps", out / "overlays"
    maps_dir.mkdir(parents=True, exist_ok=True)
    stems = [stem_of(row) for _, row in frame.iterrows()]
    pending = [i for i, s in enumerate(stems) if not _done(maps_dir / f"{s}.npz", methods)]

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
    bar = tqdm(total=len(pending), desc="explain", unit="img", disable=not progress or not pending)
    for start in range(0, len(pending), settings.batch_size):
        idx = pending[start:start + settings.batch_size]
        rows = frame.iloc[idx]
        _explain_batch(attributor, rows, [stems[i] for i in idx], root, maps_dir, overlay_dir,
                       image_size, regions, settings)
        bar.update(len(idx))
    bar.close()

    table = score_table(frame, stems, maps_dir, methods, settings.radius_deg)
    summary = summarise(table, methods, settings)
    summary["instances"] = len(frame)
    summary["computed"] = len(pending)
    summary["skipped"] = len(frame) - len(pending)
    summary["map_settings"] = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    files = {"scores": out / "scores.csv", "summary": out / "summary.json"}
    write_csv(table, files["scores"])
    write_text(json.dumps(_json_safe(summary), indent=1) + "\n", files["summary"])

    if settings.comparison_rows > 0 and len(frame):
        # Spread over the selection (time order), so one figure spans the period.
        picks = np.unique(np.linspace(0, len(frame) - 1, min(settings.comparison_rows, len(frame))).round().astype(int))
        panels = []
        for i in picks:
            with np.load(maps_dir / f"{stems[i]}.npz") as z:
                panels.append(_panel(dict(z), frame.iloc[i], methods, settings.radius_deg))
        files["comparison"] = out / "comparison.png"
        render.save_figure(render.comparison_figure(panels, methods), files["comparison"])
    return ExplainResult(table, summary, len(pending), len(frame) - len(pending), out, files)


def _default_layer(model: torch.nn.Module) -> str:
    """The name of the Grad-CAM layer: ``models.gradcam_layer`` for flarelens models, else the last Conv2d."""
    from flarelens.explain.attributions import last_conv_name, module_name

    try:
        from flarelens.models import gradcam_layer

        return module_name(model, gradcam_layer(model))
    except (ImportError, AttributeError, FlareLensError):
        return last_conv_name(model)


def _draw_background(background: pd.DataFrame | None, settings: ExplainSettings) -> pd.DataFrame:
    if background is None or background.empty:
        raise FlareLensError("Deep SHAP needs non-flaring training images as background: pass --labels labels.csv")
    k = settings.background_k
    if k < 2:
        raise FlareLensError(f"--background must be >= 2 images, got {k}")
    if len(background) < k:
        raise FlareLensError(f"only {len(background)} non-flaring training images for a background of {k}; lower --background")
    rng = np.random.default_rng(settings.seed)
    pick = np.sort(rng.choice(len(background), size=k, replace=False))
    rows = background.iloc[pick].copy()
    if "time" not in rows.columns:
        rows["time"] = pd.to_datetime(rows["timestamp"], utc=True)
    return rows.reset_index(drop=True)


def background_rows(labels: pd.DataFrame, fold: int | None, exclude=()) -> pd.DataFrame:
    """Non-flaring training rows of a labels table: target 0, fold != ``fold`` (when given),
    times not in ``exclude``."""
    frame = labels[labels["target"].astype(int) == 0]
    if fold is not None and "fold" in frame.columns:
        frame = frame[frame["fold"].astype(int) != int(fold)]
    if len(exclude):
        frame = frame[~frame["timestamp"].isin(set(exclude))]
    return frame.reset_index(drop=True)


def _explain_batch(attributor: Attributor, rows: pd.DataFrame, stems, root, maps_dir, overlay_dir,
                   image_size, regions, settings: ExplainSettings) -> None:
    methods = attributor.methods
    images_u8, file_sizes = load_images(root, rows, image_size)
    x = images_u8.float().div_(255.0)
    geo = [instance_geometry(row, image_size) for _, row in rows.iterrows()]
    disks = np.stack([g[0] for g in geo])
    results = attributor.attribute(x, torch.from_numpy(disks))
    probs = attributor.flare_probability(x)
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
            panel = _panel(arrays, row, methods, settings.radius_deg)
            for m in methods:
                render.save_figure(render.overlay_figure(panel, m), overlay_dir / f"{stem}_{m}.png")
        # The npz goes last: its presence means the instance is complete.
        with atomic_path(maps_dir / f"{stem}.npz") as tmp:
            np.savez_compressed(tmp, **arrays)


def _seed(stem: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{stem}".encode()).digest()[:8], "little")


# --------------------------------------------------------------------------- scores


def score_table(frame: pd.DataFrame, stems, maps_dir: Path, methods, radius_deg: float) -> pd.DataFrame:
    """One row per instance x method (:data:`SCORE_COLUMNS`) from the npz files."""
    records = []
    for (_, row), stem in zip(frame.iterrows(), stems):
        with np.load(maps_dir / f"{stem}.npz") as z:
            disk = z["disk"]
            dist = z["flare_distance_deg"]
            has_flare = bool(np.isfinite(dist).any())
            region = np.nan_to_num(dist, nan=np.inf) <= radius_deg
            truth = z["truth_xyr"]
            gt = scores.circle_mask(disk.shape, *truth) if np.all(np.isfinite(truth)) else None
            fractions = z["deletion_fractions"]
            random_auc = float(scores.curve_auc(fractions, z["deletion_random"])) if "deletion_random" in z.files else np.nan
            for m in methods:
                attr = z[f"map_{m}"]
                loc = scores.localisation(attr, region, disk) if has_flare else dict.fromkeys(("mass", "hit", "area"), np.nan)
                gtl = scores.localisation(attr, gt, disk) if gt is not None else dict.fromkeys(("mass", "hit", "area"), np.nan)
                key = f"deletion_{m}"
                records.append({
                    "timestamp": row["timestamp"], "file": row["file"], "method": m, "target": int(row["target"]),
                    "flare_prob": float(row["flare_prob"]), "model_prob": float(z["model_prob"]),
                    "outcome": row["outcome"], "goes_class": row["goes_class"], "flare_class": row["flare_class"],
                    "fl_lon": row["fl_lon"], "fl_lat": row["fl_lat"], "position": row["position"],
                    "radius_deg": radius_deg if has_flare else np.nan,
                    "mass": loc["mass"], "hit": loc["hit"], "area": loc["area"],
                    "gt_mass": gtl["mass"], "gt_hit": gtl["hit"], "gt_area": gtl["area"],
                    "deletion_auc": float(scores.curve_auc(fractions, z[key])) if key in z.files else np.nan,
                    "deletion_auc_random": random_auc,
                    "conv_delta": float(z[f"delta_{m}"]),
                })
    return pd.DataFrame.from_records(records, columns=SCORE_COLUMNS)


def _group_mask(table: pd.DataFrame, group: str) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for part in group.split():
        if part == "all":
            continue
        if part == "flaring":
            mask &= table["target"] == 1
        elif part in POSITIONS:
            mask &= table["position"] == part
        else:
            mask &= table["outcome"] == part
    return mask


def group_stats(rows: pd.DataFrame) -> dict:
    """Aggregate scores of one method over some instances (see summary.json)."""
    loc = rows[np.isfinite(rows["mass"]) & np.isfinite(rows["area"])]
    hit_rows = rows[np.isfinite(rows["hit"])]
    gt = rows[np.isfinite(rows["gt_mass"])]
    out = {
        "n": int(len(rows)),
        "n_located": int(len(loc)),
        "mass": _mean(loc["mass"]),
        "mass_random": _mean(loc["area"]),
        "mass_over_random": _ratio(_mean(loc["mass"]), _mean(loc["area"])),
        "mass_p_value": _wilcoxon_greater(loc["mass"], loc["area"]),
        "hit": _mean(hit_rows["hit"]),
        "hit_random": _mean(hit_rows["area"]),
        "n_truth": int(len(gt)),
        "gt_mass": _mean(gt["gt_mass"]),
        "gt_mass_random": _mean(gt["gt_area"]),
        "gt_hit": _mean(rows.loc[np.isfinite(rows["gt_hit"]), "gt_hit"]),
        "gt_hit_random": _mean(rows.loc[np.isfinite(rows["gt_hit"]), "gt_area"]),
        "deletion_auc": _mean(rows["deletion_auc"]),
        "deletion_auc_random": _mean(rows["deletion_auc_random"]),
        "conv_delta_abs_median": float(np.nanmedian(np.abs(rows["conv_delta"]))) if rows["conv_delta"].notna().any() else None,
    }
    return out


def summarise(table: pd.DataFrame, methods, settings: ExplainSettings) -> dict:
    """``{"radius_deg", "threshold", "methods": {method: {group: stats}}}`` over :data:`GROUPS`."""
    summary = {"radius_deg": settings.radius_deg, "threshold": settings.threshold,
               "deletion_fractions": [float(f) for f in scores.DELETION_FRACTIONS], "methods": {}}
    for m in methods:
        rows = table[table["method"] == m]
        groups = {}
        for g in GROUPS:
            sel = rows[_group_mask(rows, g)]
            if len(sel) or g == "all":
                groups[g] = group_stats(sel)
        summary["methods"][m] = groups
    return summary


def _mean(values) -> float | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _ratio(a, b):
    return float(a / b) if a is not None and b else None


def _wilcoxon_greater(a, b) -> float | None:
    """One-sided Wilcoxon signed-rank p-value that ``a`` exceeds ``b`` pairwise."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 5 or not np.any(d):
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(d, alternative="greater").pvalue)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def format_summary(summary: dict) -> str:
    """The console table: per method and group, localisation and deletion against random."""

    def f(v, fmt="{:.2f}"):
        return "   -" if v is None else fmt.format(v)

    r = "{:.3f}"  # random baselines are small: one more digit

    lines = [
        f"localisation within {summary['radius_deg']:g} deg of the flare (random = area share of the disk); "
        "deletion AUC = mean flare probability while deleting the top 0-50 % (lower = more faithful)",
        f"{'method':<15}{'group':<16}{'n':>5}{'loc':>5}  {'mass':>5} {'(rand)':>6}  {'hit':>5} {'(rand)':>6}  "
        f"{'gt mass':>7} {'(rand)':>6}  {'gt hit':>6}  {'del AUC':>7} {'(rand)':>6}",
    ]
    for m, groups in summary["methods"].items():
        for g in ("all", "flaring", "flaring central", "flaring limb", "TP", "FN"):
            s = groups.get(g)
            if s is None or (g != "all" and s["n"] == 0):
                continue
            lines.append(
                f"{m:<15}{g:<16}{s['n']:>5}{s['n_located']:>5}  {f(s['mass']):>5} {f(s['mass_random'], r):>6}  "
                f"{f(s['hit']):>5} {f(s['hit_random'], r):>6}  {f(s['gt_mass']):>7} {f(s['gt_mass_random'], r):>6}  "
                f"{f(s['gt_hit']):>6}  {f(s['deletion_auc']):>7} {f(s['deletion_auc_random']):>6}"
            )
    return "\n".join(lines)




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
    log=print,
) -> ExplainResult:
    """Explain a checkpoint's predictions: the whole ``flarelens explain`` step as one call.

    Loads the model of ``checkpoint`` (on ``settings.device``; ``"auto"`` picks CUDA when
    available), selects rows of ``predictions`` (a predictions.csv or its table), draws the
    Deep SHAP background from the non-flaring rows of ``labels`` outside the checkpoint's
    validation fold (or, without ``labels``, from unselected non-flaring predictions), reads
    simulate's ground truth from ``regions`` (default: ``images/regions.csv`` when present),
    and writes maps, figures and scores under ``out`` (see the module docstring).
    """
    from flarelens.checkpoint import load_model

    settings = settings or ExplainSettings()
    if settings.batch_size < 1 or settings.internal_batch_size < 1:
        raise FlareLensError("--batch-size and --internal-batch-size must be >= 1")
    if settings.device == "auto":
        settings = dataclasses.replace(settings, device="cuda" if torch.cuda.is_available() else "cpu")
    model, config = load_model(checkpoint, device=settings.device)
    pred = normalise_predictions(predictions) if isinstance(predictions, pd.DataFrame) else read_predictions(predictions)
    frame = select_instances(pred, selection or Selection())
    log(f"{len(frame)} of {len(pred)} predictions selected")

    background = None
    if "deepshap" in settings.methods:
        if labels is not None:
            from flarelens.labels import read_labels

            background = background_rows(read_labels(labels), config.get("fold"))
        else:
            background = background_rows(pred, None, exclude=frame["timestamp"])
            log("note: Deep SHAP background drawn from the non-flaring rows of the predictions "
                "(pass labels for training images)")

    regions_path = Path(regions) if regions is not None else Path(images) / "regions.csv"
    truth = read_regions(regions_path) if (regions is not None or regions_path.is_file()) else None
    return explain_instances(
        model, frame, images, out, settings, image_size=int(config["image_size"]),
        background=background, regions=truth, overwrite=overwrite, progress=progress,
    )


__all__ = [
    "Selection", "ExplainSettings", "ExplainResult", "read_predictions", "normalise_predictions", "select_instances",
    "explain_instances", "background_rows", "read_regions", "score_table", "summarise", "format_summary",
    "SCORE_COLUMNS", "explain",
]

"""A simulation run: images every cadence written by worker processes, the ground truth
regions.csv, resuming and refusing to mix settings.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens import geometry
from flarelens.catalog import bundled_catalog_path, check_covers, flux_to_class, read_catalog
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_csv
from flarelens.images import byte_scale, image_relpath
from flarelens.labels import TIME_FORMAT, parse_duration, sample_times
from flarelens.progress import bar as progress_bar
from flarelens.settings import check_same_settings
from flarelens.simulate.evolution import region_states
from flarelens.simulate.regions import RegionModel, build_regions
from flarelens.simulate.rendering import JPEG_QUALITY, encode_jpeg, render_field

logger = logging.getLogger(__name__)

#: Bumped whenever the images a seed gives change; an output directory remembers it.
SIMULATOR_VERSION = 1

#: Columns of regions.csv, in order.
REGION_COLUMNS = [
    "timestamp", "file", "region_id", "noaa_ar", "lon", "lat", "x", "y", "radius_px", "mu",
    "max_class_24h", "max_flux_24h",
]



def ground_truth(model: RegionModel, times: pd.DatetimeIndex, size: int, ext: str = ".jpg",
                 eph: geometry.Ephemeris | None = None) -> pd.DataFrame:
    """regions.csv rows of ``times``: every region whose centre is on the visible disk."""
    times = pd.DatetimeIndex(times)
    eph = geometry.ephemeris(times) if eph is None else eph
    t_ns = times.as_unit("ns").asi8
    rows = []
    layouts: dict = {}
    for k, t in enumerate(times):
        e = eph.at(k)
        radius_px = e.angular_radius / geometry.plate_scale(size)
        stamp = t.strftime(TIME_FORMAT)
        rel = image_relpath(t, ext)
        for st in region_states(model, int(t_ns[k]), e, layouts):
            x, y, z = geometry.heliocentric(st.lon, st.lat, e.b0)
            if not z > 1.0 / e.distance:
                continue
            px, py = geometry.project(x, y, z, e, size)
            mu = (z * e.distance - 1.0) / math.sqrt(x * x + y * y + (e.distance - z) ** 2)
            row = {name: model.columns[name][st.index] for name in ("region_id", "noaa_ar")}
            rows.append({
                "timestamp": stamp, "file": rel, "region_id": row["region_id"], "noaa_ar": row["noaa_ar"],
                "lon": round(st.lon, 4), "lat": round(st.lat, 4), "x": round(float(px), 3), "y": round(float(py), 3),
                "radius_px": round(math.radians(st.radius_deg) * radius_px, 3), "mu": round(float(mu), 4),
                "max_class_24h": flux_to_class(st.max_flux_24h) if st.max_flux_24h > 0 else "",
                "max_flux_24h": st.max_flux_24h,
            })
    return pd.DataFrame(rows, columns=REGION_COLUMNS)


def simulate_image(time, size: int = 512, seed: int = 0, catalog=None, model: RegionModel | None = None):
    """One synthetic magnetogram: (8-bit (N, N) array as it would be written, before JPEG, and
    its regions.csv rows). ``catalog`` is a path or a normalised catalog DataFrame."""
    t = pd.Timestamp(time)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if model is None:
        cat = catalog if isinstance(catalog, pd.DataFrame) else read_catalog(catalog)
        model = build_regions(cat, t, t, seed)
    eph = geometry.ephemeris(t)
    field_g = render_field(int(t.value), eph, size, model)
    return byte_scale(field_g), ground_truth(model, pd.DatetimeIndex([t]), size, eph=geometry.ephemeris(pd.DatetimeIndex([t])))


# Worker state (set once per process by the pool initializer).
_WORKER: dict = {}


def _init_worker(model: RegionModel, size: int, out: str, quality: int) -> None:
    _WORKER.update(model=model, size=size, out=Path(out), quality=quality, layouts={})


def _render_one(task) -> str:
    t_ns, eph_tuple, rel = task
    w = _WORKER
    eph = geometry.Ephemeris(*eph_tuple)
    field_g = render_field(t_ns, eph, w["size"], w["model"], w["layouts"])
    pixels = byte_scale(field_g)
    rng = np.random.default_rng([w["model"].seed, 19, int(t_ns // 10**9)])
    data = encode_jpeg(pixels, np.isnan(field_g), rng, w["quality"])
    path = w["out"] / rel
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return rel


@dataclass(frozen=True)
class SimulationSummary:
    """What a :func:`simulate` run did."""

    out: Path
    images: int
    written: int
    skipped: int
    region_rows: int
    regions: int
    unplaced_flares: int

    def format(self) -> str:
        return (
            f"{self.images} images ({self.written} written, {self.skipped} already there) in {self.out}\n"
            f"{self.region_rows} region rows ({self.regions} regions) -> {self.out / 'regions.csv'}\n"
            f"{self.unplaced_flares} catalog flares have no position and no placed region (not drawn)"
        )


def _catalog_digest(catalog) -> str:
    path = bundled_catalog_path() if catalog is None else Path(catalog)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        raise FlareLensError(f"{path}: no such catalog file") from None


def simulate(start, end, cadence="1h", size: int = 512, out="simulated", seed: int = 0, catalog=None,
             workers: int | None = None, progress: bool = True) -> SimulationSummary:
    """Simulate full-disk magnetograms every ``cadence`` from ``start`` to ``end`` (UTC, inclusive).

    Writes ``OUT/YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jpg`` (N x N, 8-bit, 0 G = 128, +-250 G
    clipped, off-disk exactly 0) and ``OUT/regions.csv`` (columns :data:`REGION_COLUMNS`;
    rows of other times already there are kept). Images already present are skipped, so an
    interrupted run resumes; ``OUT/simulate.json`` records seed, size and catalog, and a run
    with other settings into the same directory is refused. ``catalog``: a GOES catalog file
    (default: the bundled solar-cycle-24 catalog). ``workers``: processes (default: all
    cores). Returns a :class:`SimulationSummary`.
    """
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 4096:
        raise FlareLensError(f"--size must be a whole number of pixels from 16 to 4096, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FlareLensError(f"--seed must be a whole number >= 0, got {seed!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise FlareLensError(f"--workers must be a whole number >= 1, got {workers!r}")
    parse_duration(cadence, "cadence")
    times = sample_times(start, end, cadence)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FlareLensError(f"--out {out}: exists and is not a directory")
    digest = _catalog_digest(catalog)
    cat = read_catalog(catalog)
    check_covers(cat, times[0], times[-1])
    out.mkdir(parents=True, exist_ok=True)
    settings = {"simulator_version": SIMULATOR_VERSION, "seed": int(seed), "size": int(size), "catalog_sha256": digest}
    check_same_settings(out / "simulate.json", settings, what="images simulated",
                        hint="use another --out or the same settings (or delete the images and simulate.json)")

    model = build_regions(cat, times[0], times[-1], int(seed))
    eph = geometry.ephemeris(times)
    truth = ground_truth(model, times, int(size), eph=eph)

    rels = [image_relpath(t) for t in times]
    todo = [k for k, rel in enumerate(rels) if not (out / rel).is_file()]
    t_ns = times.as_unit("ns").asi8
    tasks = [(int(t_ns[k]), eph.at(k).astuple(), rels[k]) for k in todo]
    n_workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(tasks)))
    serial = n_workers == 1 or len(tasks) < 4
    logger.info("simulating %d of %d images (%d already there) with %d process(es) into %s",
                len(tasks), len(times), len(times) - len(tasks), 1 if serial else n_workers, out)
    bar = progress_bar(total=len(tasks), progress=progress, unit="img", desc="simulate", disable=not tasks)
    try:
        if serial:
            _init_worker(model, int(size), str(out), JPEG_QUALITY)
            for task in tasks:
                _render_one(task)
                bar.update()
        else:
            import multiprocessing

            # spawn: safe even when the caller has torch or threads running.
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(16, len(tasks) // (n_workers * 8)))
            with ctx.Pool(n_workers, initializer=_init_worker, initargs=(model, int(size), str(out), JPEG_QUALITY)) as pool:
                for _ in pool.imap_unordered(_render_one, tasks, chunksize=chunk):
                    bar.update()
    finally:
        bar.close()

    regions_csv = out / "regions.csv"
    if regions_csv.exists():
        try:
            old = pd.read_csv(regions_csv, dtype={"noaa_ar": str, "max_class_24h": str, "region_id": str}, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise FlareLensError(f"{regions_csv}: cannot read ({exc}); delete it and run again") from None
        if list(old.columns) == REGION_COLUMNS:
            old = old[~old["timestamp"].isin(set(truth["timestamp"]))]
            truth = pd.concat([old, truth], ignore_index=True).sort_values(["timestamp", "region_id"], kind="stable")
    write_csv(truth, regions_csv)
    return SimulationSummary(out, len(times), len(tasks), len(times) - len(tasks), len(truth),
                             int(truth["region_id"].nunique()) if len(truth) else 0, model.unplaced_flares)

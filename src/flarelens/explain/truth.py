"""Where the flare of an instance was on its image: position at the image time, ground truth.

Flare positions: ``fl_lon``/``fl_lat`` of the labels are the catalog's position of the
flare, which starts up to 24 h after the image; they are rotated back to the image time
with the differential rotation of :func:`flarelens.geometry.rotate` (from ``fl_start``,
when known) before being compared with the image. On simulated images, ``regions.csv`` of
``flarelens simulate`` gives the true flaring region.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError
from flarelens.explain import scores


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


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


def flare_start(row) -> pd.Timestamp | None:
    """The UTC start time of the row's flare (``fl_start``), None when empty or unreadable."""
    text = str(row.get("fl_start", "") or "")
    if not text or text.lower() in ("nan", "nat", "none"):
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        return None
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def flare_at_image_time(row) -> tuple[float, float]:
    """(lon, lat) in degrees of the row's flare rotated back from its start to the image time
    (:func:`flarelens.geometry.position_at`; kept as given without a start time; NaN unknown)."""
    from flarelens import geometry

    lon, lat = float(row["fl_lon"]), float(row["fl_lat"])
    if not (np.isfinite(lon) and np.isfinite(lat)):
        return float("nan"), float("nan")
    start = flare_start(row)
    if start is None:
        return lon, lat
    return geometry.position_at(lon, lat, start, row["time"])


def source_visible(row) -> float:
    """1.0 when the row's flare source lay on the Earth-facing hemisphere at the image time
    (:func:`flarelens.geometry.visible`), 0.0 when it was behind the limb, NaN without a position.

    A flare starting up to 24 h after its image may come from a region that was still
    behind the east limb when the image was taken: no image-based model can see it there.
    """
    from flarelens import geometry

    lon, lat = float(row["fl_lon"]), float(row["fl_lat"])
    if not (np.isfinite(lon) and np.isfinite(lat)):
        return float("nan")
    start = flare_start(row)
    return float(geometry.visible(lon, lat, start if start is not None else row["time"], row["time"]))


def instance_geometry(row, size: int):
    """On-disk mask (S, S), great-circle distance (degrees) of every on-disk pixel to the
    flare at the image time (NaN off the disk or without position) and its pixel (x, y)
    (NaN when unknown or behind the limb)."""
    from flarelens import geometry

    lon_map, lat_map, _ = geometry.disk_grid(row["time"], size)
    disk = np.isfinite(lon_map)
    lon, lat = flare_at_image_time(row)
    if np.isfinite(lon):
        dist = np.asarray(geometry.great_circle(lon_map, lat_map, lon, lat), dtype=np.float32)
        xy = geometry.hg_to_pixel(lon, lat, row["time"], size)
    else:
        dist = np.full((size, size), np.nan, dtype=np.float32)
        xy = (float("nan"), float("nan"))
    return disk, dist, np.asarray(xy, dtype=float)


# --------------------------------------------------------------------------- neighbourhoods

#: The neighbourhoods of the flare a map is scored on (``--neighbourhood``).
NEIGHBOURHOODS = ("image", "heliographic")

#: Default radius of the image-space neighbourhood, as a fraction of the solar radius on
#: the image. sin(10 deg) = 0.174: at disk centre it is the default 10-degree heliographic
#: neighbourhood, so central flares are scored as before; it holds a large active region
#: (simulate's flaring regions keep 95 % of their flux within 0.08-0.21 R, mean 0.13 R)
#: plus a catalog position error of a few degrees; and unlike a heliographic cap it does
#: not shrink to a sliver at the limb, where foreshortening squeezes 10 degrees of
#: longitude into a few pixels (a fixed heliographic radius covers ~0.03 % of the disk
#: there against ~2-3 % at the centre, so a position error of a few degrees moves the whole
#: neighbourhood off the region).
IMAGE_RADIUS = 0.17

#: Field strength (gauss, absolute) from which a pixel counts as strong field, and the
#: growth (fraction of the solar radius) of those pixels into regions: where a model can
#: look besides the flare's own region (plage and active regions are >~ 100 G in HMI
#: magnetograms, the quiet-Sun network mostly below).
STRONG_FIELD_GAUSS = 100.0
STRONG_FIELD_GROW = 0.03


def heliographic_neighbourhood(flare_distance_deg: np.ndarray, radius_deg: float) -> np.ndarray:
    """On-disk pixels within ``radius_deg`` great-circle degrees of the flare (from the
    stored distance map; NaN off the disk or without position)."""
    return np.nan_to_num(flare_distance_deg, nan=np.inf) <= radius_deg


def image_neighbourhood(flare_xy, disk: np.ndarray, radius_px: float) -> np.ndarray:
    """On-disk pixels whose centre lies within ``radius_px`` of the flare's pixel (x, y) at
    the image time (empty when the flare is not on the visible disk)."""
    if not np.all(np.isfinite(flare_xy)):
        return np.zeros(disk.shape, dtype=bool)
    return scores.circle_mask(disk.shape, float(flare_xy[0]), float(flare_xy[1]), radius_px) & disk


def disk_radius_px(time, size: int) -> float:
    """Radius of the solar disk in pixels on an S x S image taken at UTC ``time``."""
    from flarelens import geometry

    return float(geometry.disk(time, size).radius)


def strong_field_regions(image: np.ndarray, disk: np.ndarray, radius_px: float,
                         gauss: float = STRONG_FIELD_GAUSS, grow: float = STRONG_FIELD_GROW) -> np.ndarray:
    """On-disk pixels within ``grow`` solar radii of a pixel whose |field| >= ``gauss``.

    ``image`` is the 8-bit magnetogram as the model saw it (0 G = 127.5, +-250 G at 0/255).
    """
    from scipy.ndimage import binary_dilation

    from flarelens.images import CLIP_GAUSS

    field = (image.astype(np.float64) - 127.5) * (CLIP_GAUSS / 127.5)
    strong = (np.abs(field) >= gauss) & disk
    r = int(round(grow * radius_px))
    if r > 0 and strong.any():
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        strong = binary_dilation(strong, structure=xx**2 + yy**2 <= r * r)
    return strong & disk

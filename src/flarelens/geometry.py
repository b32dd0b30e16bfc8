"""Where a point of the Sun lies on a full-disk image, and how the Sun's surface rotates.

Images are N x N full-disk magnetograms as Helioviewer serves HMI: solar north up, the disk
centre at the image centre ``((N - 1) / 2, (N - 1) / 2)`` with pixel centres at integer
coordinates, ``x`` the column (to the right, solar west) and ``y`` the row counted
**downward** from the top. The plate scale is HMI's 0.504 arcsec per pixel at 4096, scaled
to N, so the disk radius in pixels is the Sun's angular radius seen from Earth (about 944 to
976 arcsec over the year) over that scale.

Positions on the Sun are heliographic Stonyhurst longitude and latitude in degrees (longitude
0 faces Earth, positive to the west, in [-180, 180)). The projection is the exact perspective
one of sunpy's ``HeliographicStonyhurst -> Helioprojective`` transformation for an observer at
Earth, written out in numpy so that thousands of images cost nothing; the tests hold it to
sunpy's frames. The per-date quantities (B0, angular radius, Carrington L0, Earth distance)
come from ``sunpy.coordinates.sun`` every 8 days, computed once per 2048-day block and
interpolated by cubic splines (errors below 1e-5 degree), so sunpy is asked a few times per
process, not once per image.

Differential rotation follows Howard et al. (1990), the default of
``sunpy.sun.models.differential_rotation``: a feature's Carrington longitude drifts at its
sidereal rate minus the Carrington rate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: HMI plate scale at full resolution, arcsec per pixel.
HMI_PLATE_SCALE = 0.504
#: Full HMI image size, pixels.
HMI_SIZE = 4096

#: Sidereal rotation rates A + B sin²(lat) + C sin⁴(lat), in microrad/s, as in sunpy.
ROTATION_MODELS = {
    "howard": (2.894, -0.428, -0.370),
    "snodgrass": (2.851, -0.343, -0.474),
}
#: Carrington (sidereal) rotation rate, degrees per day (sunpy.sun.constants).
CARRINGTON_RATE = 14.1844
#: Nominal solar radius, km (IAU 2015, as sunpy uses).
SUN_RADIUS_KM = 695_700.0

_URAD_PER_S_TO_DEG_PER_DAY = 1e-6 * 86_400.0 * 180.0 / np.pi
_BLOCK_DAYS = 2048
_STEP_DAYS = 8
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Disk:
    """The solar disk on an N x N image: centre (``cx``, ``cy``) and ``radius``, in pixels."""

    cx: float
    cy: float
    radius: float


@dataclass(frozen=True)
class Ephemeris:
    """Per-time quantities, seen from Earth (floats, or arrays for many times).

    ``b0`` (degrees, heliographic latitude of the disk centre), ``angular_radius`` (arcsec),
    ``l0`` (degrees, Carrington longitude of the disk centre, in [0, 360)) and ``distance``
    (observer-Sun distance in solar radii).
    """

    b0: np.ndarray | float
    angular_radius: np.ndarray | float
    l0: np.ndarray | float
    distance: np.ndarray | float

    def at(self, k: int) -> "Ephemeris":
        """The ``k``-th time of an ephemeris of many times, as floats."""
        return Ephemeris(*(float(np.ravel(v)[k]) for v in self.astuple()))

    def astuple(self) -> tuple:
        """(b0, angular_radius, l0, distance), e.g. to send to another process."""
        return (self.b0, self.angular_radius, self.l0, self.distance)


def plate_scale(size: int) -> float:
    """Arcsec per pixel of an N x N full-disk image (HMI's 0.504"/px at 4096, scaled to N)."""
    if size <= 0:
        raise ValueError(f"image size must be a positive number of pixels, got {size!r}")
    return HMI_PLATE_SCALE * HMI_SIZE / size


def to_days(times) -> np.ndarray | float:
    """Days (float) since 1970-01-01 00:00 UTC of a time or of many times.

    Accepts anything ``pandas.to_datetime`` reads; naive times are taken as UTC. A scalar
    gives a float, anything else an array of its shape.
    """
    if isinstance(times, (pd.Index, pd.Series, np.ndarray, list, tuple)):
        shape = np.shape(times)
        flat = times if isinstance(times, pd.DatetimeIndex) else pd.Index(np.ravel(np.asarray(times)))
        if isinstance(flat, pd.DatetimeIndex) or pd.api.types.is_datetime64_any_dtype(flat.dtype):
            stamps = pd.DatetimeIndex(flat)
            stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        else:
            stamps = pd.DatetimeIndex(pd.to_datetime(flat, utc=True, format="mixed"))
    else:
        shape = None
        stamps = pd.DatetimeIndex([pd.Timestamp(times)])
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    ns = stamps.as_unit("ns").asi8
    days = ns // _NS_PER_DAY + (ns % _NS_PER_DAY) / _NS_PER_DAY
    # A missing time (NaT) gives NaN days rather than a date in the year -292 billion.
    days = np.where(np.asarray(stamps.isna()), np.nan, days)
    return float(days[0]) if shape is None else days.reshape(shape)


@functools.lru_cache(maxsize=None)
def _ephemeris_block(block: int):
    """Cubic splines of B0, angular radius, unwrapped L0 and distance over one block of days.

    sunpy is asked every ``_STEP_DAYS`` days (its cost is per time asked); the quantities
    vary over a year, so a cubic through 8-day samples is off by less than 1e-5 degree.
    """
    import astropy.units as u
    from astropy.time import Time
    from scipy.interpolate import CubicSpline
    from sunpy.coordinates import sun

    day0 = block * _BLOCK_DAYS
    # Samples run a few steps past both ends so the spline's end conditions do not matter.
    days = day0 + _STEP_DAYS * np.arange(-3, _BLOCK_DAYS // _STEP_DAYS + 4)
    times = Time(days * 86_400.0, format="unix", scale="utc")
    values = np.stack([
        sun.B0(times).to_value(u.deg),
        sun.angular_radius(times).to_value(u.arcsec),
        np.unwrap(sun.L0(times).to_value(u.deg), period=360.0),
        sun.earth_distance(times).to_value(u.km) / SUN_RADIUS_KM,
    ])
    return CubicSpline(days.astype(float), values, axis=1)


def ephemeris(times) -> Ephemeris:
    """B0, angular radius, Carrington L0 and distance of the Sun seen from Earth at UTC times.

    NaN for a missing time (NaT).
    """
    return _ephemeris_days(np.asarray(to_days(times), dtype=float))


def _ephemeris_days(days: np.ndarray) -> Ephemeris:
    flat = np.atleast_1d(days).ravel()
    out = np.full((4, flat.size), np.nan)
    known = np.isfinite(flat)
    blocks = np.floor(np.where(known, flat, 0.0) / _BLOCK_DAYS).astype(np.int64)
    for block in np.unique(blocks[known]):
        sel = known & (blocks == block)
        out[:, sel] = _ephemeris_block(int(block))(flat[sel])
    out[2] %= 360.0
    if days.ndim == 0:
        return Ephemeris(*(float(v[0]) for v in out))
    return Ephemeris(*(v.reshape(days.shape) for v in out))


def disk(time, size: int) -> Disk:
    """The solar disk (centre and radius, pixels) on an N x N image taken at UTC ``time``."""
    eph = ephemeris(time)
    centre = (size - 1) / 2.0
    return Disk(centre, centre, float(eph.angular_radius) / plate_scale(size))


def disk_mask(time, size: int) -> np.ndarray:
    """Boolean (N, N) array, True where a pixel's centre lies on the disk (within the radius)."""
    d = disk(time, size)
    yy, xx = np.ogrid[0:size, 0:size]
    return (xx - d.cx) ** 2 + (yy - d.cy) ** 2 <= d.radius**2


def heliocentric(lon, lat, b0):
    """Heliocentric cartesian coordinates on the unit sphere of Stonyhurst (lon, lat), degrees.

    ``x`` to the west, ``y`` to solar north as seen (tilted by ``b0``, degrees), ``z``
    towards the observer; in solar radii. Broadcasts.
    """
    lon, lat, b0 = np.radians(lon), np.radians(lat), np.radians(b0)
    clat = np.cos(lat)
    x = clat * np.sin(lon)
    y = np.sin(lat) * np.cos(b0) - clat * np.cos(lon) * np.sin(b0)
    z = np.sin(lat) * np.sin(b0) + clat * np.cos(lon) * np.cos(b0)
    return x, y, z


def project(x, y, z, eph: Ephemeris, size: int):
    """Pixel coordinates (x, y) on an N x N image of heliocentric points (solar radii, as
    :func:`heliocentric` gives them) seen with ephemeris ``eph``; far-side points are
    projected too (see :func:`hg_to_pixel` for NaN there)."""
    scale = np.radians(plate_scale(size) / 3600.0)
    depth = eph.distance - z
    tx = np.arctan2(x, depth)
    ty = np.arctan2(y, np.hypot(x, depth))
    centre = (size - 1) / 2.0
    return centre + tx / scale, centre - ty / scale


def hg_to_pixel(lon, lat, time, size: int, *, far_side_nan: bool = True):
    """Pixel position (x, y) of Stonyhurst (lon, lat) in degrees on an N x N image at ``time``.

    ``lon`` and ``lat`` may be arrays (and ``time`` an array broadcasting with them). Points
    on the far side get NaN; with ``far_side_nan=False`` they are projected anyway (useful
    to place something just behind the limb).
    """
    eph = ephemeris(time)
    x, y, z = heliocentric(np.asarray(lon, float), np.asarray(lat, float), eph.b0)
    px, py = project(x, y, z, eph, size)
    if far_side_nan:
        hidden = ~(z > 1.0 / np.asarray(eph.distance))
        px, py = np.where(hidden, np.nan, px), np.where(hidden, np.nan, py)
    if np.ndim(px) == 0:
        return float(px), float(py)
    return px, py


def pixel_to_hg(x, y, time, size: int):
    """Stonyhurst (lon, lat) in degrees of pixel (x, y) on an N x N image; NaN off the disk."""
    eph = ephemeris(time)
    lon, lat, _ = pixel_to_hg_mu(np.asarray(x, float), np.asarray(y, float), eph, size)
    if np.ndim(lon) == 0:
        return float(lon), float(lat)
    return lon, lat


def pixel_to_hg_mu(x, y, eph: Ephemeris, size: int, clip_limb: bool = False):
    """Stonyhurst lon, lat (degrees) and mu of pixel positions (x, y) on an N x N image seen
    with ephemeris ``eph``; NaN where the line of sight misses the Sun.

    With ``clip_limb`` a line of sight that just misses (pixel centres up to the limb) is
    taken to touch the limb instead, so that every pixel of :func:`disk_mask` has a position.
    """
    scale = np.radians(plate_scale(size) / 3600.0)
    centre = (size - 1) / 2.0
    tx = (x - centre) * scale
    ty = (centre - y) * scale
    a = np.cos(ty) * np.sin(tx)
    b = np.sin(ty)
    c = np.cos(ty) * np.cos(tx)
    dist = eph.distance
    # The line of sight meets the sphere where d² - 2 d D c + D² - 1 = 0; the near root.
    disc = (dist * c) ** 2 - dist**2 + 1.0
    if clip_limb:
        disc = np.maximum(disc, 0.0)
    with np.errstate(invalid="ignore"):
        d = dist * c - np.sqrt(disc)
    hx, hy, hz = d * a, d * b, dist - d * c
    b0 = np.radians(eph.b0)
    lat = np.degrees(np.arcsin(np.clip(hy * np.cos(b0) + hz * np.sin(b0), -1.0, 1.0)))
    lon = np.degrees(np.arctan2(hx, hz * np.cos(b0) - hy * np.sin(b0)))
    # Cosine of the angle between the local vertical and the direction to the observer.
    mu = (hz * dist - 1.0) / np.sqrt(hx**2 + hy**2 + (dist - hz) ** 2)
    off = ~(disc >= 0)
    lat = np.where(off, np.nan, lat)
    lon = np.where(off, np.nan, lon)
    mu = np.where(off, np.nan, np.maximum(mu, 0.0))
    return lon, lat, mu


def disk_grid(time, size: int):
    """Stonyhurst lon, lat (degrees) and mu of every pixel centre of an N x N image.

    Returns three (N, N) float arrays, NaN off the disk (pixel centres outside the disk
    radius, exactly :func:`disk_mask`). ``mu`` is the cosine of the angle between the local
    vertical and the line of sight (1 at disk centre, 0 at the limb).
    """
    eph = ephemeris(time)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    lon, lat, mu = pixel_to_hg_mu(xx, yy, eph, size, clip_limb=True)
    mask = disk_mask(time, size)
    return np.where(mask, lon, np.nan), np.where(mask, lat, np.nan), np.where(mask, mu, np.nan)


def mu(lon, lat, time):
    """Cosine of the heliocentric angle of Stonyhurst (lon, lat) seen from Earth at ``time``.

    1 at disk centre, 0 at the limb, negative on the far side.
    """
    value = _mu(np.asarray(lon, float), np.asarray(lat, float), ephemeris(time))
    return float(value) if np.ndim(value) == 0 else value


def _mu(lon, lat, eph: Ephemeris):
    x, y, z = heliocentric(lon, lat, eph.b0)
    dist = np.asarray(eph.distance)
    return (z * dist - 1.0) / np.sqrt(x**2 + y**2 + (dist - z) ** 2)


def rotation_rate(lat, model: str = "howard"):
    """Sidereal rotation rate (degrees per day) of the solar surface at latitude ``lat`` (degrees)."""
    if model not in ROTATION_MODELS:
        raise ValueError(f"rotation model must be one of {sorted(ROTATION_MODELS)}, got {model!r}")
    a, b, c = ROTATION_MODELS[model]
    # float first: a pandas column of objects (None for unknown) has no sine
    s2 = np.sin(np.radians(pd.to_numeric(np.asarray(lat, dtype=object).ravel(), errors="coerce")
                           .reshape(np.shape(lat)).astype(float))) ** 2
    return (a + b * s2 + c * s2**2) * _URAD_PER_S_TO_DEG_PER_DAY


def wrap_lon(lon):
    """Longitude in degrees wrapped into [-180, 180)."""
    return (np.asarray(lon, float) + 180.0) % 360.0 - 180.0


def carrington_lon(lon, time):
    """Carrington longitude (degrees, [0, 360)) of Stonyhurst longitude ``lon`` at ``time``."""
    return (np.asarray(lon, float) + ephemeris(time).l0) % 360.0


def stonyhurst_lon(carrington, time):
    """Stonyhurst longitude (degrees, [-180, 180)) of a Carrington longitude at ``time``."""
    return wrap_lon(np.asarray(carrington, float) - ephemeris(time).l0)


def rotate(lon, lat, t0, t1, model: str = "howard"):
    """Stonyhurst longitude at ``t1`` of a surface feature at (lon, lat) at ``t0``.

    The feature keeps its latitude and turns with the differential rotation profile
    (Howard et al. 1990 by default), seen from Earth: the Carrington longitude drifts at
    the sidereal rate minus the Carrington rate, and the Earth's own motion enters through
    L0. Arrays broadcast; the result is in [-180, 180).
    """
    return _rotate_days(lon, lat, np.asarray(to_days(t0), float), np.asarray(to_days(t1), float), model)


def carrington_drift(lat, dt_days, model: str = "howard"):
    """Change of Carrington longitude (degrees) of a surface feature at latitude ``lat``
    (degrees) over ``dt_days`` days: its sidereal rotation rate minus the Carrington rate."""
    return (rotation_rate(lat, model) - CARRINGTON_RATE) * dt_days


def _rotate_days(lon, lat, d0, d1, model: str = "howard"):
    drift = carrington_drift(lat, d1 - d0, model)
    return wrap_lon((np.asarray(lon, float) + _ephemeris_days(d0).l0) % 360.0 + drift - _ephemeris_days(d1).l0)


def position_at(lon, lat, from_time, to_time, model: str = "howard"):
    """Stonyhurst (lon, lat) in degrees at UTC ``to_time`` of a surface feature seen at
    (``lon``, ``lat``) degrees at UTC ``from_time``, turned by differential rotation.

    The latitude is kept; the longitude follows :func:`rotate` (Howard et al. 1990 by
    default). Everything broadcasts (arrays of positions and of times). Returns a tuple
    of floats for scalar input, of arrays otherwise; NaN where a position or a time is
    missing (NaN, NaT). Typical use: a flare's catalogue position at its start time,
    ``from_time``, carried back to the image time, ``to_time``.
    """
    return _position_days(lon, lat, np.asarray(to_days(from_time), float), np.asarray(to_days(to_time), float), model)


def _position_days(lon, lat, d0, d1, model):
    lon, lat, d0, d1 = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float), d0, d1)
    known = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(d0) & np.isfinite(d1)
    out_lon = np.full(lon.shape, np.nan)
    if known.any():
        out_lon[known] = _rotate_days(lon[known], lat[known], d0[known], d1[known], model)
    out_lat = np.where(known, lat, np.nan)
    if out_lon.ndim == 0:
        return float(out_lon), float(out_lat)
    return out_lon, out_lat


def visible(lon, lat, flare_start, image_time, model: str = "howard"):
    """True where a flare source lay on the Earth-facing hemisphere when its image was taken.

    The flare's Stonyhurst position (``lon``, ``lat``, degrees) at its start, UTC
    ``flare_start``, is rotated back to UTC ``image_time`` (:func:`position_at`); the source
    is visible when the cosine of its heliocentric angle seen from Earth at that time
    (:func:`mu`: that time's B0 and distance) is positive. A missing ``flare_start`` keeps
    the position as given (no rotation, as when the catalogue has no start time); a missing
    position or image time is not visible. Broadcasts; a bool for scalar input, a bool
    array otherwise.
    """
    start = np.asarray(to_days(flare_start), float)
    image = np.asarray(to_days(image_time), float)
    start = np.where(np.isfinite(start), start, image)
    lon_t, lat_t = _position_days(lon, lat, start, image, model)
    lon_t, lat_t = np.asarray(lon_t), np.asarray(lat_t)
    eph = _ephemeris_days(np.broadcast_to(image, lon_t.shape))
    with np.errstate(invalid="ignore"):
        seen = _mu(lon_t, lat_t, eph) > 0.0
    seen = seen & np.isfinite(lon_t)
    return bool(seen) if seen.ndim == 0 else seen


def great_circle(lon1, lat1, lon2, lat2):
    """Great-circle (angular) distance in degrees between heliographic positions in degrees.

    Haversine form, accurate for small distances; NaN where a position is NaN. Broadcasts;
    an array (0-d for scalars).
    """
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=float)) for v in (lon1, lat1, lon2, lat2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))

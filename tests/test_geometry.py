"""flarelens.geometry against sunpy's own coordinate frames and rotation."""

from __future__ import annotations

import time

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sunpy.coordinates import RotatedSunFrame, frames, get_earth, sun, transform_with_sun_center

from flarelens import geometry

# Dates spread over the year (B0 from -7 to +7 degrees, perihelion and aphelion).
DATES = ["2011-02-15T01:00:00", "2013-06-05T12:34:00", "2014-09-10T17:45:00", "2017-12-24T23:00:00"]


def sunpy_pixels(lon, lat, time, size):
    """Pixel (x, y) of Stonyhurst points through sunpy's frames, observer at Earth."""
    hgs = SkyCoord(np.asarray(lon) * u.deg, np.asarray(lat) * u.deg, frame=frames.HeliographicStonyhurst, obstime=time)
    hpc = hgs.transform_to(frames.Helioprojective(observer=get_earth(time), obstime=time))
    scale = geometry.plate_scale(size)
    centre = (size - 1) / 2
    return centre + hpc.Tx.to_value(u.arcsec) / scale, centre - hpc.Ty.to_value(u.arcsec) / scale


@pytest.mark.parametrize("time", DATES)
def test_hg_to_pixel_matches_sunpy_within_half_a_pixel_at_512(time):
    rng = np.random.default_rng(0)
    lon = rng.uniform(-88, 88, 400)
    lat = rng.uniform(-75, 75, 400)
    x, y = geometry.hg_to_pixel(lon, lat, time, 512)
    xs, ys = sunpy_pixels(lon, lat, time, 512)
    front = np.isfinite(x)
    assert front.mean() > 0.9
    err = np.hypot(x - xs, y - ys)[front]
    assert err.max() < 0.5
    # Hand-written, but the same exact perspective projection: far better than required.
    assert err.max() < 0.01


def test_far_side_is_nan_and_visibility_follows_b0():
    time = DATES[0]  # B0 = -6.8: the south pole is in view, the north pole is not
    x, y = geometry.hg_to_pixel([120.0, -150.0, 0.0, 0.0, 30.0], [0.0, 10.0, -89.0, 89.0, 0.0], time, 512)
    assert np.isnan(x[:2]).all() and np.isnan(y[:2]).all()
    assert np.isfinite(x[2]) and np.isnan(x[3])
    assert x[4] > 255.5  # west is to the right


@pytest.mark.parametrize("time", DATES)
@pytest.mark.parametrize("size", [64, 512, 4096])
def test_disk_radius_is_angular_radius_over_hmi_plate_scale(time, size):
    d = geometry.disk(time, size)
    expected = sun.angular_radius(Time(time)).to_value(u.arcsec) / (0.504 * 4096 / size)
    assert abs(d.radius - expected) < 0.01
    assert d.cx == d.cy == (size - 1) / 2
    # 944-976 arcsec over the year: 234-242 px at 512.
    assert 0.455 * size < d.radius < 0.475 * size


def test_pixel_to_hg_inverts_hg_to_pixel_and_matches_sunpy():
    time = DATES[1]
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(-85, 85, 300), rng.uniform(-70, 70, 300)
    x, y = geometry.hg_to_pixel(lon, lat, time, 512)
    lon2, lat2 = geometry.pixel_to_hg(x, y, time, 512)
    front = np.isfinite(x)
    assert np.allclose(lon2[front], lon[front], atol=1e-6)
    assert np.allclose(lat2[front], lat[front], atol=1e-6)

    # Pixels to heliographic through sunpy: HPC at the pixel's angles -> HGS on the surface.
    px = np.array([255.5, 100.0, 400.0, 300.0])
    py = np.array([255.5, 200.0, 310.0, 60.0])
    scale = geometry.plate_scale(512)
    hpc = SkyCoord((px - 255.5) * scale * u.arcsec, (255.5 - py) * scale * u.arcsec,
                   frame=frames.Helioprojective(observer=get_earth(time), obstime=time))
    hgs = hpc.transform_to(frames.HeliographicStonyhurst(obstime=time))
    lon3, lat3 = geometry.pixel_to_hg(px, py, time, 512)
    assert np.allclose(lon3, hgs.lon.to_value(u.deg), atol=1e-3)
    assert np.allclose(lat3, hgs.lat.to_value(u.deg), atol=1e-3)
    # The disk centre is (0, B0); off the disk is NaN.
    assert lon3[0] == pytest.approx(0.0, abs=1e-6)
    assert lat3[0] == pytest.approx(sun.B0(Time(time)).to_value(u.deg), abs=1e-3)
    off = geometry.pixel_to_hg(np.array([2.0, 509.0]), np.array([2.0, 255.5]), time, 512)
    assert np.isnan(off[0]).all() and np.isnan(off[1]).all()


def test_disk_grid_agrees_with_mask_and_mu():
    time = DATES[2]
    lon, lat, mu = geometry.disk_grid(time, 96)
    mask = geometry.disk_mask(time, 96)
    assert (np.isfinite(lon) == mask).all() and (np.isfinite(mu) == mask).all()
    d = geometry.disk(time, 96)
    assert mask.sum() == pytest.approx(np.pi * d.radius**2, rel=0.02)
    assert np.nanmax(mu) == pytest.approx(1.0, abs=1e-3)
    assert 0 <= np.nanmin(mu) < 0.2
    # mu of the grid agrees with mu() of the grid's own positions.
    sel = np.isfinite(lon)
    assert np.allclose(geometry.mu(lon[sel], lat[sel], time), mu[sel], atol=1e-6)


def test_ephemeris_matches_sunpy_and_is_cached():
    rng = np.random.default_rng(2)
    days = rng.uniform(14_600, 18_000, 50)  # 2010-2019
    times = pd.to_datetime(days * 86_400, unit="s", utc=True)
    eph = geometry.ephemeris(times)
    t = Time(days * 86_400, format="unix", scale="utc")
    assert np.abs(eph.b0 - sun.B0(t).to_value(u.deg)).max() < 1e-3
    assert np.abs(geometry.wrap_lon(eph.l0 - sun.L0(t).to_value(u.deg))).max() < 1e-3
    assert np.abs(eph.angular_radius - sun.angular_radius(t).to_value(u.arcsec)).max() < 0.01
    # Thousands of images: per-time quantities must not go back to sunpy each call.
    start = time.perf_counter()
    for k in range(2000):
        geometry.disk(pd.Timestamp("2012-01-01", tz="UTC") + pd.Timedelta(hours=k), 128)
    assert time.perf_counter() - start < 2.0


def test_rotation_rate_is_howard_profile_of_sunpy():
    from sunpy.sun.models import differential_rotation

    lat = np.linspace(-80, 80, 17)
    ours = geometry.rotation_rate(lat)
    ref = differential_rotation(1 * u.day, lat * u.deg, model="howard", frame_time="sidereal").to_value(u.deg)
    assert np.allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize("time", DATES)
def test_rotate_over_24_hours_matches_sunpy_rotated_sun_frame(time):
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-80, 80, 200), rng.uniform(-70, 70, 200)
    later = (pd.Timestamp(time) + pd.Timedelta(hours=24)).isoformat()
    # Sunpy carries a point fixed relative to the Sun's centre only in this context (else
    # the Sun's barycentric wobble, ~0.05 degree a day, is folded in).
    with transform_with_sun_center():
        rotated = SkyCoord(RotatedSunFrame(lon=lon * u.deg, lat=lat * u.deg, base=frames.HeliographicStonyhurst(obstime=time),
                                           rotated_time=later)).transform_to(frames.HeliographicStonyhurst(obstime=later))
    ours = geometry.rotate(lon, lat, time, later)
    assert np.abs(geometry.wrap_lon(ours - rotated.lon.to_value(u.deg))).max() < 1e-3
    # Seen from Earth a day turns the equator by ~13.2 degrees, 60 degrees latitude by ~10.
    step = geometry.wrap_lon(ours - lon)
    assert np.all((step > 9.5) & (step < 13.5))
    eq = geometry.rotate(0.0, 0.0, time, later)
    assert 13.0 < eq < 13.5


def test_rotate_back_and_forth_and_with_arrays_of_times():
    t0 = pd.Timestamp("2012-03-01", tz="UTC")
    t1 = t0 + pd.Timedelta(days=5)
    lon = geometry.rotate(-40.0, 15.0, t0, t1)
    assert geometry.rotate(lon, 15.0, t1, t0) == pytest.approx(-40.0, abs=1e-9)
    times = pd.date_range(t0, periods=4, freq="1D")
    lons = geometry.rotate(np.full(4, -40.0), np.full(4, 15.0), t0, times)
    assert lons[0] == pytest.approx(-40.0) and np.all(np.diff(lons) > 12)

"""flarelens.geometry against sunpy's own coordinate frames and rotation."""

from __future__ import annotations

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


def test_ephemeris_matches_sunpy_and_is_cached(monkeypatch):
    rng = np.random.default_rng(2)
    days = rng.uniform(14_600, 18_000, 50)  # 2010-2019
    times = pd.to_datetime(days * 86_400, unit="s", utc=True)
    eph = geometry.ephemeris(times)
    t = Time(days * 86_400, format="unix", scale="utc")
    assert np.abs(eph.b0 - sun.B0(t).to_value(u.deg)).max() < 1e-3
    assert np.abs(geometry.wrap_lon(eph.l0 - sun.L0(t).to_value(u.deg))).max() < 1e-3
    assert np.abs(eph.angular_radius - sun.angular_radius(t).to_value(u.arcsec)).max() < 0.01
    # Thousands of images: per-time quantities must not go back to sunpy each call. Counted
    # rather than timed, so a loaded machine (or mutation testing's tracing) cannot fail it.
    calls = []
    real_b0 = sun.B0
    monkeypatch.setattr(sun, "B0", lambda t: calls.append(t) or real_b0(t))
    for k in range(2000):
        geometry.disk(pd.Timestamp("2012-01-01", tz="UTC") + pd.Timedelta(hours=k), 128)
        assert len(calls) <= 2  # at most the one or two blocks of days these hours fall in


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


# --------------------------------------------------------------------------- visibility at image time


def sunpy_mu_at_image(lon, lat, start, image):
    """cos(heliocentric angle) seen from Earth at ``image`` of a point at (lon, lat) at ``start``,
    carried by sunpy's RotatedSunFrame (independent of our rotation and projection)."""
    with transform_with_sun_center():
        hgs = SkyCoord(RotatedSunFrame(lon=lon * u.deg, lat=lat * u.deg, base=frames.HeliographicStonyhurst(obstime=start),
                                       rotated_time=image)).transform_to(frames.HeliographicStonyhurst(obstime=image))
    # Unit vector of the point and direction to Earth in the same Stonyhurst frame.
    b0 = sun.B0(Time(image)).to_value(u.rad)
    d = sun.earth_distance(Time(image)).to_value(u.km) / geometry.SUN_RADIUS_KM
    lo, la = hgs.lon.to_value(u.rad), hgs.lat.to_value(u.rad)
    p = np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
    e = d * np.array([np.cos(b0), 0.0, np.sin(b0)])
    return float(np.dot(p, e - p) / np.linalg.norm(e - p)), float(hgs.lon.to_value(u.deg))


@pytest.mark.parametrize("image", ["2013-06-05T00:00:00", "2017-12-24T03:00:00"])
def test_east_limb_flare_starting_21_h_after_its_image_is_hidden(image):
    start = (pd.Timestamp(image) + pd.Timedelta(hours=21)).isoformat()
    # Rotated back 21 h (~11.5 degrees), E88 lay ~10 degrees behind the east limb.
    assert geometry.visible(-88.0, 12.0, start, image) is False
    ref_mu, ref_lon = sunpy_mu_at_image(-88.0, 12.0, start, image)
    assert ref_mu < 0
    lon, lat = geometry.position_at(-88.0, 12.0, start, image)
    assert lon == pytest.approx(ref_lon, abs=1e-3) and lat == 12.0
    assert -101.0 < lon < -98.0


@pytest.mark.parametrize("image", ["2013-06-05T00:00:00", "2017-12-24T03:00:00"])
def test_west_limb_and_central_flares_starting_21_h_later_are_visible(image):
    start = (pd.Timestamp(image) + pd.Timedelta(hours=21)).isoformat()
    got = geometry.visible([88.0, 5.0, -20.0], [-12.0, 20.0, 0.0], start, image)
    assert got.dtype == bool and got.tolist() == [True, True, True]
    # W88 was at W76 or so when the image was taken: well on the disk.
    assert sunpy_mu_at_image(88.0, -12.0, start, image)[0] > 0.2


def test_visibility_is_decided_at_the_image_time_by_the_sign_of_mu():
    image = pd.Timestamp("2014-09-10T12:00:00", tz="UTC")
    # Flares at E80 and at the equator starting 0..30 h after the image: they cross from
    # behind the limb (hidden) to the disk as the start moves closer to the image time.
    hours = np.arange(0, 31)
    starts = image + pd.to_timedelta(hours, unit="h")
    seen = geometry.visible(np.full(hours.size, -80.0), 0.0, starts, image)
    lon_at_image, _ = geometry.position_at(-80.0, 0.0, starts, image)
    mu_at_image = geometry.mu(lon_at_image, 0.0, image)
    assert np.array_equal(seen, mu_at_image > 0)
    assert seen[0] and not seen[-1]
    # Monotone: once hidden, an earlier image cannot see it again.
    assert np.all(np.diff(seen.astype(int)) <= 0)
    # High latitude near the limb in early June, when B0 changes fastest (~0.12 degree a
    # day): the tilt of the image time, not of the flare start, decides.
    image = pd.Timestamp("2013-06-06T00:00:00", tz="UTC")
    start = image + pd.Timedelta(hours=24)
    lon = np.arange(-80.0, -70.0, 0.005)
    seen = geometry.visible(lon, 65.0, start, image)
    lon_at_image, _ = geometry.position_at(lon, 65.0, start, image)
    expected = geometry.mu(lon_at_image, 65.0, image) > 0
    assert expected.any() and not expected.all()
    assert np.array_equal(seen, expected)


def test_visible_handles_missing_values():
    image = "2014-09-10T12:00:00"
    got = geometry.visible([np.nan, 30.0, 30.0, 89.9], [0.0, np.nan, 0.0, 0.0], [image, image, None, None], image)
    # No position: not visible; no start time: the position is taken as at the image time.
    assert got.tolist() == [False, False, True, geometry.mu(89.9, 0.0, image) > 0]
    lon, lat = geometry.position_at([10.0, 10.0], [5.0, 5.0], [None, image], image)
    assert np.isnan(lon[0]) and np.isnan(lat[0]) and lon[1] == pytest.approx(10.0) and lat[1] == 5.0


def test_position_at_broadcasts_and_agrees_with_rotate():
    t0 = pd.Timestamp("2012-03-01", tz="UTC")
    times = pd.date_range(t0, periods=3, freq="12h")
    lon, lat = geometry.position_at(np.array([-40.0, 0.0, 40.0]), 15.0, times, t0)
    assert np.allclose(lon, geometry.rotate(np.array([-40.0, 0.0, 40.0]), 15.0, times, t0), atol=0, rtol=0)
    assert np.all(lat == 15.0)


def test_great_circle_against_the_spherical_law_of_cosines():
    rng = np.random.default_rng(5)
    lon1, lon2 = rng.uniform(-180, 180, (2, 500))
    lat1, lat2 = rng.uniform(-90, 90, (2, 500))
    r = np.radians
    cos_d = np.sin(r(lat1)) * np.sin(r(lat2)) + np.cos(r(lat1)) * np.cos(r(lat2)) * np.cos(r(lon2 - lon1))
    expected = np.degrees(np.arccos(np.clip(cos_d, -1, 1)))
    got = geometry.great_circle(lon1, lat1, lon2, lat2)
    assert np.allclose(got, expected, atol=1e-6)
    # Small separations (where the law of cosines loses digits): 1 degree of latitude, and
    # 1 degree of longitude at latitude 60 is cos(60) = 0.5 degree (to first order).
    assert float(geometry.great_circle(10.0, 20.0, 10.0, 21.0)) == pytest.approx(1.0, abs=1e-12)
    assert float(geometry.great_circle(0.0, 60.0, 1.0, 60.0)) == pytest.approx(0.5, rel=1e-4)
    # Symmetric, and NaN where a position is unknown.
    assert np.allclose(geometry.great_circle(lon2, lat2, lon1, lat1), got)
    assert np.isnan(geometry.great_circle(np.nan, 0.0, 0.0, 0.0))


def test_rotation_rate_takes_a_column_of_objects_with_unknowns():
    import pandas as pd

    from flarelens.geometry import rotation_rate

    rates = rotation_rate(pd.Series([10.0, None, "20"], dtype=object))
    assert np.isnan(rates[1])
    assert rates[0] == pytest.approx(rotation_rate(10.0)) and rates[2] == pytest.approx(rotation_rate(20.0))
    assert rates[0] > rates[2]  # the equator rotates faster

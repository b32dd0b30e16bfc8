"""flarelens.geometry: the cases mutation testing found unguarded (see docs/mutation.md).

Inputs as a user's tables give them (object columns with None, integer lists, naive and
non-UTC times, mixed-format strings), scalar calls, the default rotation model, and the
limb: each test fails if the corresponding mutant of geometry.py is put back.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sunpy.coordinates import frames, sun

from flarelens import geometry

T = pd.Timestamp("2014-09-10T17:45:00", tz="UTC")
T1 = T + pd.Timedelta(days=2)


def test_object_columns_with_missing_values_are_numbers_not_objects():
    # A pandas column with a missing position is dtype object holding None: it must be read
    # as floats (NaN), not handed to numpy's trigonometry as Python objects.
    lon = pd.Series([10, None], dtype=object)
    lat = pd.Series([-20, None], dtype=object)
    x, y = geometry.hg_to_pixel(lon, lat, T, 256)
    assert np.isfinite(x[0]) and np.isnan(x[1]) and np.isnan(y[1])
    m = geometry.mu(lon, lat, T)
    assert m.dtype == float and m[0] == pytest.approx(geometry.mu(10.0, -20.0, T)) and np.isnan(m[1])
    lon2, lat2 = geometry.pixel_to_hg(pd.Series([128, None], dtype=object), pd.Series([100, None], dtype=object), T, 256)
    assert lon2.dtype == float and np.isnan(lon2[1]) and np.isnan(lat2[1])
    r = geometry.rotate(lon, [-20.0, 0.0], T, T1)
    assert r.dtype == float and np.isnan(r[1]) and r[0] == pytest.approx(geometry.rotate(10.0, -20.0, T, T1))
    plon, plat = geometry.position_at(lon, lat, T, T1)
    assert np.isnan(plon[1]) and np.isnan(plat[1]) and plat[0] == -20.0
    d = geometry.great_circle(lon, lat, pd.Series([10, 0], dtype=object), pd.Series([-10, 0], dtype=object))
    assert d[0] == pytest.approx(10.0) and np.isnan(d[1])


def test_times_as_object_arrays_and_missing_times():
    # Times held as Python objects (a column of Timestamps and NaT) become days, NaN for NaT.
    times = np.array([T, pd.NaT], dtype=object)
    lon, lat = geometry.position_at(10.0, 5.0, times, T1)
    assert np.isfinite(lon[0]) and np.isnan(lon[1])
    rot = geometry.rotate(10.0, 5.0, times[:1], np.array([T1], dtype=object))
    assert rot[0] == pytest.approx(geometry.rotate(10.0, 5.0, T, T1))


@pytest.mark.parametrize("given", [
    np.array(["2014-09-10T17:45:00"], dtype="datetime64[ns]"),            # naive datetime64: UTC
    pd.DatetimeIndex(["2014-09-10 19:45:00"]).tz_localize("Europe/Berlin"),  # +02:00 in September
    pd.Series(["2014-09-10T17:45:00Z"]),                                    # ISO strings, a Series
    ["2014-09-10 17:45:00", "2014-09-10T17:45:00.000000Z"],                 # mixed formats
])
def test_to_days_is_utc_days_since_1970(given):
    expected = (T - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
    got = np.atleast_1d(geometry.to_days(given))
    assert got.dtype == float
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_scalar_calls_give_python_floats():
    x, y = geometry.hg_to_pixel(10.0, 20.0, T, 512)
    assert type(x) is float and type(y) is float
    lon, lat = geometry.pixel_to_hg(x, y, T, 512)
    assert type(lon) is float and type(lat) is float
    assert lon == pytest.approx(10.0, abs=1e-6) and lat == pytest.approx(20.0, abs=1e-6)
    assert type(geometry.mu(10.0, 20.0, T)) is float
    eph = geometry.ephemeris(T)
    assert type(eph.l0) is float and type(eph.distance) is float


def test_ephemeris_keeps_the_shape_and_only_l0_wraps():
    times = pd.date_range("2010-01-01", periods=6, freq="400D", tz="UTC").tz_convert(None).to_numpy().reshape(2, 3)
    eph = geometry.ephemeris(times)
    for v in (eph.b0, eph.angular_radius, eph.l0, eph.distance):
        assert v.shape == (2, 3)
    t = Time(pd.DatetimeIndex(times.ravel()).to_pydatetime())
    expected = sun.earth_distance(t).to_value(u.km) / geometry.SUN_RADIUS_KM
    np.testing.assert_allclose(eph.distance.ravel(), expected, rtol=1e-5)
    # L0 is interpolated unwrapped (it grows by 360 a rotation): only it is wrapped back.
    assert ((0 <= eph.l0) & (eph.l0 < 360)).all()


def test_ephemeris_of_dates_before_1970_and_near_day_zero():
    # Negative days fall in block -1: the block of a date is floor(days / block length).
    times = pd.DatetimeIndex(["1969-12-31T12:00:00", "1970-01-01T12:00:00"], tz="UTC")
    eph = geometry.ephemeris(times)
    t = Time(times.to_pydatetime())
    np.testing.assert_allclose(eph.b0, sun.B0(t).to_value(u.deg), atol=1e-4)
    np.testing.assert_allclose(eph.angular_radius, sun.angular_radius(t).to_value(u.arcsec), atol=0.01)


def test_missing_time_next_to_known_times_in_another_block():
    # NaT is parked at day 0 before choosing blocks; the known times must still get their
    # own block's values (a time of day 1.0 would share block 0 with day 0).
    times = pd.DatetimeIndex([pd.NaT, "2019-06-01"], tz="UTC")
    eph = geometry.ephemeris(times)
    assert np.isnan(eph.b0[0])
    assert eph.b0[1] == pytest.approx(sun.B0(Time("2019-06-01")).to_value(u.deg), abs=1e-4)


def test_carrington_and_stonyhurst_longitudes_match_sunpy():
    lon = np.array([-60.0, 0.0, 45.0, 170.0])
    carr = geometry.carrington_lon(lon, T)
    c = SkyCoord(lon * u.deg, np.zeros(4) * u.deg, frame=frames.HeliographicStonyhurst, obstime=T.to_pydatetime())
    expected = c.transform_to(frames.HeliographicCarrington(observer="earth", obstime=T.to_pydatetime())).lon.to_value(u.deg)
    np.testing.assert_allclose(carr, expected % 360.0, atol=1e-3)
    assert ((0 <= carr) & (carr < 360)).all()
    back = geometry.stonyhurst_lon(carr, T)
    np.testing.assert_allclose(back, lon, atol=1e-9)
    assert geometry.stonyhurst_lon([int(carr[1])], T)[0] == pytest.approx(int(carr[1]) - carr[1], abs=1e-9)


def test_default_rotation_model_is_howard():
    lat, dt = np.array([0.0, 30.0, 60.0]), 3.0
    howard = geometry.carrington_drift(lat, dt, "howard")
    np.testing.assert_allclose(geometry.carrington_drift(lat, dt), howard)
    assert not np.allclose(geometry.carrington_drift(lat, dt, "snodgrass"), howard)
    np.testing.assert_allclose(geometry.rotate(10.0, 60.0, T, T1), geometry.rotate(10.0, 60.0, T, T1, "howard"))
    assert geometry.rotate(10.0, 60.0, T, T1) != pytest.approx(geometry.rotate(10.0, 60.0, T, T1, "snodgrass"))
    snod = geometry.position_at(10.0, 60.0, T, T1, "snodgrass")[0]
    assert snod == pytest.approx(geometry.rotate(10.0, 60.0, T, T1, "snodgrass"))
    assert geometry.position_at(10.0, 60.0, T, T1)[0] != pytest.approx(snod)
    with pytest.raises(ValueError, match=r"one of \['howard', 'snodgrass'\].*'kitt'"):
        geometry.rotation_rate(0.0, "kitt")


def test_plate_scale_needs_a_positive_size():
    assert geometry.plate_scale(1) == pytest.approx(geometry.HMI_PLATE_SCALE * geometry.HMI_SIZE)
    with pytest.raises(ValueError, match="positive number of pixels, got 0"):
        geometry.plate_scale(0)


def test_a_point_half_a_degree_inside_the_limb_is_in_view():
    # Seen from distance D (solar radii) the limb is where z = 1/D: with B0 ~ 7 deg (September)
    # the equator at lon 89.55 deg has z ~ cos(89.55) cos(7.2) = 0.0078, between 1/D and 2/D.
    eph = geometry.ephemeris(T)
    z = geometry.heliocentric(89.55, 0.0, eph.b0)[2]
    assert 1 / eph.distance < z < 2 / eph.distance
    x, y = geometry.hg_to_pixel(89.55, 0.0, T, 4096)
    assert np.isfinite(x) and np.isfinite(y)


def test_disk_grid_gives_every_disk_pixel_a_position_up_to_the_limb():
    # Pixel centres just inside the disk radius miss the sphere by rounding or because the
    # disk radius is angular: clipping to the limb gives them lon/lat and mu 0..small.
    lon, lat, mu = geometry.disk_grid(T, 64)
    mask = geometry.disk_mask(T, 64)
    assert np.isfinite(lon[mask]).all() and np.isfinite(lat[mask]).all() and np.isfinite(mu[mask]).all()
    assert np.isnan(lat[~mask]).all() and np.isnan(mu[~mask]).all()


def test_off_disk_pixels_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lon, lat = geometry.pixel_to_hg([0.0, 255.0], [0.0, 255.0], T, 256)
    assert np.isnan(lon).all() and np.isnan(lat).all()


def test_great_circle_of_antipodes_is_180_not_nan():
    # Rounding can push the haversine term just above 1 for (near-)antipodal points.
    rng = np.random.default_rng(4)
    lon, lat = rng.uniform(-180, 180, 2000), rng.uniform(-89, 89, 2000)
    d = geometry.great_circle(lon, lat, lon + 180.0, -lat)
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d, 180.0, atol=1e-5)


def test_carrington_longitudes_wrap_into_0_to_360_all_round_the_sun():
    # Stonyhurst longitudes all round the Sun: whatever L0 is, some sums pass 360 or fall
    # below 0 and must wrap by exactly 360 degrees (sunpy's Carrington frame, taken mod 360).
    lon = np.linspace(-180.0, 179.0, 37)
    carr = geometry.carrington_lon(lon, T)
    c = SkyCoord(lon * u.deg, np.zeros(lon.size) * u.deg, frame=frames.HeliographicStonyhurst, obstime=T.to_pydatetime())
    expected = c.transform_to(frames.HeliographicCarrington(observer="earth", obstime=T.to_pydatetime())).lon.to_value(u.deg)
    np.testing.assert_allclose(carr, expected % 360.0, atol=1e-3)
    assert ((0 <= carr) & (carr < 360)).all()


def test_one_time_of_a_many_times_ephemeris_is_that_times_ephemeris():
    # simulate's workers receive eph.at(k) for the k-th image: it must be that time's values.
    times = pd.DatetimeIndex(["2011-02-15 01:00", "2014-10-24 21:00", "2017-09-06 12:00"], tz="UTC")
    many = geometry.ephemeris(times)
    for k in range(3):
        one = geometry.ephemeris(times[k:k + 1])
        got = many.at(k)
        assert got.astuple() == pytest.approx(tuple(float(np.ravel(v)[0]) for v in one.astuple()), rel=1e-12)
        assert all(isinstance(v, float) for v in got.astuple())
    assert many.at(0).b0 != many.at(1).b0


def test_visible_of_one_flare_is_a_python_bool_of_its_side():
    # Scalars in, a bool out — True for a flare at disk centre an hour before its image,
    # False for one 120 degrees behind the west limb.
    front = geometry.visible(0.0, 0.0, "2014-10-24 21:00", "2014-10-24 22:00")
    back = geometry.visible(120.0, 0.0, "2014-10-24 21:00", "2014-10-24 22:00")
    assert front is True and back is False


def test_rotation_rate_keeps_the_shape_of_its_latitudes():
    # A (2, 2) grid of latitudes gives a (2, 2) grid of rates, each the rate of its latitude.
    lat = np.array([[0.0, 30.0], [-30.0, 60.0]])
    rates = geometry.rotation_rate(lat)
    assert rates.shape == (2, 2)
    np.testing.assert_allclose(rates.ravel(), [float(geometry.rotation_rate(v)) for v in lat.ravel()])
    assert rates[0, 0] > rates[0, 1] > rates[1, 1] and rates[0, 1] == pytest.approx(rates[1, 0])

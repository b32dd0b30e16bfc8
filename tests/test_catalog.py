import math

import numpy as np
import pandas as pd
import pytest

from flarelens.catalog import (
    BUNDLED_CATALOG_SPAN,
    bundled_catalog_path,
    catalog_span,
    check_covers,
    class_to_flux,
    flux_to_class,
    normalise_class,
    parse_threshold,
    read_catalog,
    repair_positions,
)
from flarelens.errors import FlareLensError


@pytest.mark.parametrize(
    "cls, flux",
    [("A1.0", 1e-8), ("B2.5", 2.5e-7), ("C1.0", 1e-6), ("M1.0", 1e-5), ("M9.9", 9.9e-5),
     ("X1.0", 1e-4), ("X2.2", 2.2e-4), ("X10.0", 1e-3), ("X28", 2.8e-3)],
)
def test_class_to_flux_exact(cls, flux):
    assert math.isclose(class_to_flux(cls), flux, rel_tol=1e-12)


@pytest.mark.parametrize("spelling", ["x1", " M1.0 ", "X1", "m1", "M 1.0", "x1.0"])
def test_lenient_spellings(spelling):
    letter = spelling.strip()[0].upper()
    assert class_to_flux(spelling) == class_to_flux(f"{letter}1.0")
    assert normalise_class(spelling) == f"{letter}1.0"


@pytest.mark.parametrize("bad", ["", "Z1.0", "M", "MX1", "M-1", "M0", "1e-5", "M1.0.0", None, "C 1,2"])
def test_bad_classes_raise(bad):
    with pytest.raises(ValueError):
        class_to_flux(bad)


def test_ordering_by_flux_not_string():
    classes = ["X10.0", "X9.9", "M9.9", "M1.0", "C9.9", "X1.0", "M10"]
    by_flux = sorted(classes, key=class_to_flux, reverse=True)
    assert by_flux == ["X10.0", "X9.9", "X1.0", "M10", "M9.9", "M1.0", "C9.9"]
    # The string order is wrong, which is why classes are never compared as strings.
    assert "X10.0" < "X9.9"
    assert class_to_flux("M10") == class_to_flux("X1.0")


@pytest.mark.parametrize("flux, cls", [(1e-5, "M1.0"), (2.2e-4, "X2.2"), (1e-3, "X10.0"), (9.9e-6, "C9.9"), (5e-9, "A0.5")])
def test_flux_to_class(flux, cls):
    assert flux_to_class(flux) == cls


def test_flux_class_round_trip():
    for letter in "ABCMX":
        for number in (1.0, 1.1, 2.5, 9.9):
            cls = f"{letter}{number:.1f}"
            assert flux_to_class(class_to_flux(cls)) == cls


def test_threshold_accepts_class_or_flux():
    assert parse_threshold("M1.0") == 1e-5
    assert parse_threshold("c1") == 1e-6
    assert parse_threshold("1e-4") == 1e-4
    with pytest.raises(FlareLensError):
        parse_threshold("Q5")
    with pytest.raises(FlareLensError):
        parse_threshold("-1")


def test_bundled_catalog():
    cat = read_catalog(repair=False)
    assert len(cat) == 8606
    assert list(cat.columns) == ["start", "peak", "end", "goes_class", "peak_flux", "lon", "lat", "noaa_ar", "pos_source"]
    assert str(cat["start"].dt.tz) == "UTC"
    assert cat["start"].is_monotonic_increasing
    letters = cat["goes_class"].str[0].value_counts()
    assert (letters["C"], letters["M"], letters["X"]) == (7809, 748, 49)
    assert cat["lon"].isna().sum() == 304
    assert (cat["pos_source"] == "none").sum() == 304 and set(cat["pos_source"]) == {"catalog", "none"}
    first = cat.iloc[0]
    assert first["start"] == pd.Timestamp("2010-01-02 07:09", tz="UTC")
    assert (first["goes_class"], first["lon"], first["lat"], first["noaa_ar"]) == ("C1.0", 41.0, -26.0, "11039")
    assert cat["noaa_ar"].iloc[1] == ""  # blank (spaces) means no region
    # The license ships beside the data.
    assert "MIT License" in bundled_catalog_path().with_suffix(".LICENSE").read_text()


def test_study_format(tmp_path):
    path = tmp_path / "study.csv"
    path.write_text(
        "start_time,end_time,goes_class,fl_lon,fl_lat,noaa_ar\n"
        "2012-03-07 00:02:00,2012-03-07 00:40:00,X5.4,-27,17,11429\n"
        "2012-03-05 02:30:00,,X1.1,UNK,UNK,\n"
        "2012-03-06 12:23:00,,m2.1,,,\n"
    )
    cat = read_catalog(path)
    assert list(cat["goes_class"]) == ["X1.1", "M2.1", "X5.4"]  # sorted by start
    assert np.isnan(cat["lon"].iloc[0]) and np.isnan(cat["lat"].iloc[1])
    assert cat["lon"].iloc[2] == -27 and cat["lat"].iloc[2] == 17
    assert cat["end"].iloc[2] == pd.Timestamp("2012-03-07 00:40", tz="UTC")
    assert cat["peak"].isna().all()


def test_swpc_format(tmp_path):
    path = tmp_path / "swpc.csv"
    path.write_text(
        "Begin,Max,End,Class,Region\n"
        "2017-09-06T11:53,2017-09-06T12:02,2017-09-06T12:10,X9.3,2673\n"
        "2017-09-10T15:35,2017-09-10T16:06,2017-09-10T16:31,X8.2,2673\n"
    )
    cat = read_catalog(path)
    assert list(cat["goes_class"]) == ["X9.3", "X8.2"]
    assert cat["peak"].iloc[0] == pd.Timestamp("2017-09-06 12:02", tz="UTC")
    assert cat["lon"].isna().all() and cat["lat"].isna().all()
    assert list(cat["noaa_ar"]) == ["2673", "2673"]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("start_time,goes_class,fl_lon,fl_lat\n2012-03-07 00:02,X5.4,-27,17\n2012-03-08 01:00,Q1.0,0,0\n", "line 3"),
        ("start_time,goes_class,fl_lon,fl_lat\nnot-a-time,X5.4,-27,17\n", "line 2"),
        # Blank lines count: the bad class is on line 5 of the file.
        ("start_time,goes_class,fl_lon,fl_lat\n\n2012-03-07 00:02,X5.4,-27,17\n\n2012-03-08 01:00,Q1.0,0,0\n", "line 5"),
        ("start_time,goes_class,fl_lon,fl_lat\n2012-03-07 00:02,X5.4,-270,17\n", "longitude"),
        ("start_time,goes_class,fl_lon,fl_lat\n", "no flares"),
        ("", "cannot read"),
        ("time,size\n2012-03-07,X5\n", "unrecognised catalog columns"),
    ],
)
def test_malformed_catalogs_name_file_and_row(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(FlareLensError) as info:
        read_catalog(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_catalog(tmp_path):
    with pytest.raises(FlareLensError, match="no such catalog"):
        read_catalog(tmp_path / "nope.csv")


def test_message_is_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("start_time,goes_class,fl_lon,fl_lat\n2012-03-07 00:02,X5.4,-27,17\n2012-13-45 99:00,X1.0,0,0\n")
    with pytest.raises(FlareLensError) as info:
        read_catalog(path)
    assert len(str(info.value).splitlines()) == 1
    assert "line 3" in str(info.value) and "'2012-13-45 99:00'" in str(info.value)


# ---------------------------------------------------------------------------- rows with extra fields


def test_row_with_an_extra_field_is_reported_as_such(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("start_time,goes_class,fl_lon,fl_lat\n"
                    "2012-03-07 00:02,X5.4,-27,17\n"
                    "2012-03-07 03:00,M1.0,S12,W10,17\n"  # an unquoted position with a comma
                    "2012-03-08 00:02,X1.4,-20,17\n")
    with pytest.raises(FlareLensError) as info:
        read_catalog(path)
    message = str(info.value)
    assert "line 3" in message and "5 fields where the header has 4" in message
    assert "start time" not in message


def test_extra_field_in_the_bundled_layout_with_its_row_number_column(tmp_path):
    lines = bundled_catalog_path().read_text().splitlines()[:6]
    lines[4] = lines[4] + ",surplus"
    path = tmp_path / "cat.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FlareLensError, match=r"line 5: 15 fields where the header has 14 \(a row number"):
        read_catalog(path)
    # Without the surplus field the same rows read fine (the row-number column is dropped).
    lines[4] = lines[4][: -len(",surplus")]
    path.write_text("\n".join(lines) + "\n")
    assert len(read_catalog(path)) == 5


def test_trailing_comma_on_every_row_is_not_an_index_column(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("start_time,goes_class,fl_lon,fl_lat\n2012-03-07 00:02,X5.4,-27,17,\n2012-03-08 00:02,X1.4,-20,16,\n")
    cat = read_catalog(path)
    assert list(cat["goes_class"]) == ["X5.4", "X1.4"] and list(cat["lat"]) == [17, 16]


# ---------------------------------------------------------------------------- dates


def write_study(tmp_path, starts):
    path = tmp_path / "cat.csv"
    path.write_text("start_time,goes_class,fl_lon,fl_lat\n" + "".join(f"{s},M1.0,0,0\n" for s in starts))
    return path


def test_ambiguous_day_month_dates_are_refused(tmp_path):
    path = write_study(tmp_path, ["09/08/2011 10:00", "13/08/2011 10:00"])
    with pytest.raises(FlareLensError) as info:
        read_catalog(path)
    message = str(info.value)
    assert "line 2" in message and "'09/08/2011 10:00'" in message and "--date-order" in message
    assert len(message.splitlines()) == 1


def test_stated_date_order(tmp_path):
    path = write_study(tmp_path, ["09/08/2011 10:00", "13/08/2011 10:00"])
    cat = read_catalog(path, date_order="dmy")
    assert list(cat["start"]) == [pd.Timestamp("2011-08-09 10:00", tz="UTC"), pd.Timestamp("2011-08-13 10:00", tz="UTC")]
    # Month first, the second date has month 13: refused, on its own line.
    with pytest.raises(FlareLensError, match="line 3: cannot read start time '13/08/2011 10:00'"):
        read_catalog(path, date_order="mdy")
    cat = read_catalog(write_study(tmp_path, ["09/08/2011 10:00"]), date_order="mdy")
    assert cat["start"].iloc[0] == pd.Timestamp("2011-09-08 10:00", tz="UTC")
    with pytest.raises(FlareLensError, match="date order"):
        read_catalog(path, date_order="ymd")


@pytest.mark.parametrize("text, expected", [
    ("2011-08-09 10:00", "2011-08-09 10:00"),
    ("2011-08-09T10:00:00Z", "2011-08-09 10:00"),
    ("2011-08-09T12:00:00+02:00", "2011-08-09 10:00"),
    ("2011/08/09 10:00", "2011-08-09 10:00"),
    ("2011.08.09 10:00", "2011-08-09 10:00"),
    ("20110809T100000", "2011-08-09 10:00"),
    ("09-Aug-2011 10:00", "2011-08-09 10:00"),
    ("2011 Aug 9 10:00", "2011-08-09 10:00"),
])
def test_unambiguous_dates_are_read(tmp_path, text, expected):
    cat = read_catalog(write_study(tmp_path, [text]))
    assert cat["start"].iloc[0] == pd.Timestamp(expected, tz="UTC")


@pytest.mark.parametrize("text, fragment", [
    ("09/08/11 10:00", "two-digit year"),
    ("9.8.2011", "--date-order"),
    ("yesterday", "cannot read start time"),
    ("2011-02-30 10:00", "cannot read start time"),
    ("9999-01-01 00:00", "cannot read start time"),
])
def test_unreadable_dates_are_one_line(tmp_path, text, fragment):
    with pytest.raises(FlareLensError) as info:
        read_catalog(write_study(tmp_path, ["2011-08-01 00:00", text]))
    assert fragment in str(info.value) and "line 3" in str(info.value)


# ---------------------------------------------------------------------------- span


def test_bundled_span_and_check_covers():
    cat = read_catalog(repair=False)
    assert catalog_span(cat) == BUNDLED_CATALOG_SPAN
    check_covers(cat, "2010-12-01", "2018-12-31 23:00")  # the study's period
    for start, end in (("2020-01-01", "2020-02-01"), ("2018-06-01", "2019-02-01"), ("2009-06-01", "2010-02-01")):
        with pytest.raises(FlareLensError) as info:
            check_covers(cat, start, end)
        message = str(info.value)
        assert "the bundled catalog covers 2010-01-01 00:00 to 2018-12-31 23:59" in message
        assert len(message.splitlines()) == 1


def test_span_of_a_catalog_is_the_days_of_its_first_and_last_flare(tmp_path):
    cat = read_catalog(write_study(tmp_path, ["2011-08-09 10:00", "2011-08-01 03:00", "2011-08-20 23:30"]))
    assert catalog_span(cat) == (pd.Timestamp("2011-08-01", tz="UTC"), pd.Timestamp("2011-08-20 23:59:59", tz="UTC"))
    check_covers(cat, "2011-08-01 00:00", "2011-08-20 23:00")
    with pytest.raises(FlareLensError, match="covers 2011-08-01 00:00 to 2011-08-20 23:59"):
        check_covers(cat, "2011-08-01", "2011-08-21 00:00")
    # A span stated by the user (a catalog whose last weeks were quiet) is taken as given.
    check_covers(cat, "2011-08-01", "2011-08-31", span=("2011-08-01", "2011-09-01"))


# ---------------------------------------------------------------------------- positions


def hgs_rotate(lon, lat, t0, t1):
    """Independent reference: sunpy's RotatedSunFrame (Howard et al. differential rotation)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import HeliographicStonyhurst, RotatedSunFrame

    base = SkyCoord(lon * u.deg, lat * u.deg, frame=HeliographicStonyhurst(obstime=pd.Timestamp(t0).tz_localize(None)))
    rotated = SkyCoord(RotatedSunFrame(base=base, rotated_time=pd.Timestamp(t1).tz_localize(None)))
    out = rotated.transform_to(HeliographicStonyhurst(obstime=pd.Timestamp(t1).tz_localize(None)))
    return float(out.lon.deg), float(out.lat.deg)


def write_bundled(tmp_path, rows):
    """A catalog in the bundled layout from (start, class, lon, lat, noaa_ar)."""
    path = tmp_path / "cat.csv"
    text = "event_starttime,goes_class,hgs_lon,hgs_lat,noaa_ar\n" + "".join(
        f"{start},{cls},{'' if lon is None else lon},{'' if lat is None else lat},{ar}\n" for start, cls, lon, lat, ar in rows)
    path.write_text(text)
    return path


def test_repair_takes_the_region_flare_nearest_in_time_rotated(tmp_path):
    rows = [
        ("2012-03-01 00:00", "C1.0", -30, 12, "11111"),
        ("2012-03-02 00:00", "M1.0", None, None, "11111"),   # missing: 1 day after the first, 1.5 before the next
        ("2012-03-03 12:00", "C2.0", -10, 14, "11111"),
        ("2012-03-03 18:00", "X1.0", -5, -61, "11111"),      # impossible: the C2.0 6 h earlier is nearest
        ("2012-03-04 00:00", "M2.0", 40, 60, "22222"),       # |lat| = 60 is plausible, kept
        ("2012-03-04 06:00", "M3.0", 41, 85, "22222"),       # impossible; the same region 6 h earlier
        ("2012-03-05 00:00", "M4.0", None, None, ""),        # no region number: unknown
        ("2012-03-05 06:00", "M5.0", 10, 70, "33333"),       # the region has no sane flare: unknown
    ]
    cat = read_catalog(write_bundled(tmp_path, rows)).set_index("goes_class")
    assert dict(cat["pos_source"]) == {"C1.0": "catalog", "M1.0": "region", "C2.0": "catalog", "X1.0": "region",
                                       "M2.0": "catalog", "M3.0": "region", "M4.0": "none", "M5.0": "none"}
    for cls, (lon, lat, t0) in {"M1.0": (-30, 12, "2012-03-01 00:00"), "X1.0": (-10, 14, "2012-03-03 12:00"),
                                "M3.0": (40, 60, "2012-03-04 00:00")}.items():
        t1 = cat.loc[cls, "start"]
        ref_lon, ref_lat = hgs_rotate(lon, lat, t0, t1)
        assert cat.loc[cls, "lat"] == lat
        assert cat.loc[cls, "lon"] == pytest.approx(ref_lon, abs=0.05), cls
    # about 13° a day westward near the equator
    assert cat.loc["M1.0", "lon"] - (-30) == pytest.approx(13.2, abs=0.3)
    assert np.isnan(cat.loc["M4.0", "lon"]) and np.isnan(cat.loc["M5.0", "lat"])
    # unrepaired, the impossible position is still there
    raw = read_catalog(write_bundled(tmp_path, rows), repair=False).set_index("goes_class")
    assert raw.loc["X1.0", "lat"] == -61 and raw.loc["X1.0", "pos_source"] == "catalog"


def test_repair_tie_goes_to_the_earlier_flare_and_later_donors_rotate_back(tmp_path):
    rows = [
        ("2012-03-01 00:00", "C1.0", -30, 12, "11111"),
        ("2012-03-01 06:00", "M1.0", None, None, "11111"),
        ("2012-03-01 12:00", "C2.0", 20, -8, "11111"),
        ("2012-03-02 00:00", "M2.0", None, None, "22222"),
        ("2012-03-02 12:00", "C3.0", 10, 20, "22222"),
    ]
    cat = read_catalog(write_bundled(tmp_path, rows)).set_index("goes_class")
    assert cat.loc["M1.0", "lat"] == 12  # 6 h from both: the earlier one
    ref_lon, _ = hgs_rotate(10, 20, "2012-03-02 12:00", "2012-03-02 00:00")
    assert cat.loc["M2.0", "lon"] == pytest.approx(ref_lon, abs=0.05) and cat.loc["M2.0", "lon"] < 10


def test_repair_positions_leaves_its_input_alone():
    table = pd.DataFrame({"start": pd.to_datetime(["2012-03-01", "2012-03-02"], utc=True), "lon": [10.0, np.nan],
                          "lat": [5.0, np.nan], "noaa_ar": ["1", "1"]})
    out = repair_positions(table)
    assert np.isnan(table["lon"].iloc[1]) and list(out["pos_source"]) == ["catalog", "region"]


@pytest.fixture(scope="module")
def bundled():
    return read_catalog()


def raw_bundled() -> pd.DataFrame:
    """The bundled CSV as pandas reads it, with none of our code."""
    raw = pd.read_csv(bundled_catalog_path())
    raw["ar"] = raw["noaa_ar"].astype(str).str.strip()
    raw["start"] = pd.to_datetime(raw["event_starttime"], utc=True)
    raw["sane"] = raw["hgs_lat"].notna() & raw["hgs_lon"].notna() & (raw["hgs_lat"].abs() <= 60)
    return raw


def test_bundled_no_flare_has_an_impossible_latitude(bundled):
    assert (bundled["lat"].dropna().abs() <= 60).all()
    assert set(bundled["pos_source"]) == {"catalog", "region", "none"}
    assert bundled["lat"].isna().equals(bundled["pos_source"].eq("none"))


def test_bundled_m_and_x_flares_get_their_region_position(bundled):
    raw = raw_bundled()
    regions_with_a_position = set(raw.loc[raw["sane"] & raw["ar"].ne("") & raw["ar"].ne("nan"), "ar"])
    big = raw["goes_class"].str[0].isin(["M", "X"])
    lacking = raw[big & ~raw["sane"]]
    expected = set(lacking.loc[lacking["ar"].isin(regions_with_a_position), "start"])
    assert len(lacking) == 29 and len(expected) == 11  # the numbers
    ours = bundled[bundled["goes_class"].str[0].isin(["M", "X"])]
    assert set(ours.loc[ours["pos_source"] == "region", "start"]) == expected
    assert set(ours.loc[ours["pos_source"] == "none", "start"]) == set(lacking["start"]) - expected
    assert ours.loc[ours["pos_source"] == "region", ["lon", "lat"]].notna().all().all()


def test_bundled_m66_flare_of_2014_10_28_gets_ar12192_position(bundled):
    flare = bundled[(bundled["start"] == pd.Timestamp("2014-10-28 03:23", tz="UTC"))].iloc[0]
    assert (flare["goes_class"], flare["noaa_ar"], flare["pos_source"]) == ("M6.6", "12192", "region")
    # The catalog says S84E15; AR 12192 was on the southern hemisphere, western half, by then.
    assert -20 <= flare["lat"] <= -8 and 0 < flare["lon"] < 90
    # Independently: the region's flare nearest in time with a sane position, rotated by sunpy.
    raw = raw_bundled()
    region = raw[(raw["ar"] == "12192") & raw["sane"]]
    donor = region.iloc[(region["start"] - flare["start"]).abs().argmin()]
    lon, lat = hgs_rotate(donor["hgs_lon"], donor["hgs_lat"], donor["start"], flare["start"])
    assert flare["lat"] == pytest.approx(lat, abs=0.01) and flare["lon"] == pytest.approx(lon, abs=0.05)

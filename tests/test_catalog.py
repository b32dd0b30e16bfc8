import math

import numpy as np
import pandas as pd
import pytest

from flarelens.catalog import (
    bundled_catalog_path,
    class_to_flux,
    flux_to_class,
    normalise_class,
    parse_threshold,
    read_catalog,
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
    cat = read_catalog()
    assert len(cat) == 8606
    assert list(cat.columns) == ["start", "peak", "end", "goes_class", "peak_flux", "lon", "lat", "noaa_ar"]
    assert str(cat["start"].dt.tz) == "UTC"
    assert cat["start"].is_monotonic_increasing
    letters = cat["goes_class"].str[0].value_counts()
    assert (letters["C"], letters["M"], letters["X"]) == (7809, 748, 49)
    assert cat["lon"].isna().sum() == 304
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
        ("start_time,goes_class,fl_lon,fl_lat\n2012-03-07 00:02,X5.4,-27,17\n2012-03-08 01:00,Q1.0,0,0\n", "row 3"),
        ("start_time,goes_class,fl_lon,fl_lat\nnot-a-time,X5.4,-27,17\n", "row 2"),
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

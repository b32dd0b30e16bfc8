"""flarelens.catalog: the cases mutation testing found unguarded (see docs/mutation-notes/catalog.md).

Expected values come from the module's documented rules (class = letter decade x multiplier,
UTC times, positions within +-180/+-90 degrees, the region's nearest sane flare), not from
running the code.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from flarelens.catalog import (
    catalog_span,
    check_covers,
    detect_format,
    flux_to_class,
    normalise_class,
    parse_class,
    parse_threshold,
    parse_time,
    parse_times,
    position_counts,
    read_catalog,
    repair_positions,
)
from flarelens.errors import FlareLensError

STUDY_HEADER = "start_time,goes_class,fl_lon,fl_lat\n"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(tmp_path, text: str, name: str = "cat.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def study(tmp_path, *rows: str, **kwargs) -> pd.DataFrame:
    """Read a study-format catalog of the given data lines (start, class, lon, lat)."""
    return read_catalog(write(tmp_path, STUDY_HEADER + "".join(r + "\n" for r in rows)), **kwargs)


# ---------------------------------------------------------------------------- classes and fluxes


def test_class_errors_say_what_is_wrong():
    # read_catalog puts these messages after the file and line: they are the user's only guide.
    with pytest.raises(ValueError, match=r"^not a GOES class: None$"):
        parse_class(None)
    with pytest.raises(ValueError, match=re.escape("not a GOES class: 'Q1' (expected e.g. C1.0, M2.5, X10)")):
        parse_class("Q1")
    with pytest.raises(ValueError, match=re.escape("not a GOES class: 'M0' (the multiplier must be > 0)")):
        parse_class("M0")


def test_normalised_class_keeps_every_decimal_given():
    # "one decimal at least": extra decimals are kept, not rounded away.
    assert normalise_class("M2.55") == "M2.55"
    assert normalise_class(" x1.25 ") == "X1.25"
    assert normalise_class("c3.125") == "C3.125"
    assert normalise_class("M2.50") == "M2.5" and normalise_class("X10") == "X10.0"


@pytest.mark.parametrize("spelling", ["x1", "M2.55", "A0.5", "X28", "X10000000000000000"])
def test_normalised_class_reads_back_as_the_same_class(spelling):
    # The canonical spelling must itself be a valid class (never exponent notation like X1e+16).
    assert parse_class(normalise_class(spelling)) == parse_class(spelling)


def test_tiny_multiplier_normalises_to_a_readable_class():
    assert parse_class(normalise_class("A0.00001")) == ("A", 1e-5)


@pytest.mark.parametrize("flux", [0.0, -1e-6, float("nan"), float("inf")])
def test_flux_to_class_refuses_fluxes_that_are_not_positive_numbers(flux):
    with pytest.raises(ValueError, match=re.escape(f"peak flux must be a positive number of W/m², got {flux!r}")):
        flux_to_class(flux)


def test_flux_to_class_rounds_the_multiplier_once_to_one_decimal():
    # 2.449 to one decimal is 2.4 (rounding first to 2.45 and then to 2.5 would be wrong).
    assert flux_to_class(2.449e-5) == "M2.4"
    assert flux_to_class(3.349e-6) == "C3.3"
    assert flux_to_class(1.0449e-4) == "X1.0"


def test_flux_at_the_lower_end_of_the_tolerance_reads_as_the_higher_class():
    # The relative tolerance 1e-9 below each decade exists so that 1e-5 reads M1.0, not C10.0.
    assert flux_to_class(1e-5 * (1 - 1e-9)) == "M1.0"
    assert flux_to_class(1e-4 * (1 - 1e-9)) == "X1.0"


def test_flux_that_rounds_up_to_ten_reads_as_the_next_class():
    assert flux_to_class(9.96e-6) == "M1.0"
    assert flux_to_class(9.97e-5) == "X1.0"


def test_threshold_given_as_a_number_is_that_flux():
    assert parse_threshold(1e-5) == 1e-5
    assert parse_threshold(np.float64(2.5e-4)) == 2.5e-4
    assert parse_threshold(1) == 1.0


@pytest.mark.parametrize("value", ["0", 0.0, 0, "-1e-5", float("nan"), "inf"])
def test_threshold_must_be_a_positive_finite_flux(value):
    with pytest.raises(FlareLensError, match=re.escape(f"threshold must be a positive flux in W/m², got {value!r}")):
        parse_threshold(value)


def test_threshold_that_is_neither_class_nor_flux_says_so():
    with pytest.raises(FlareLensError, match=re.escape(
            "threshold 'Q5' is neither a GOES class (C1.0, M1.0, X1.0, ...) nor a flux in W/m²")):
        parse_threshold("Q5")


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("columns, fmt", [
    (["event_starttime", "goes_class"], "bundled"),
    ([" Start_Time ", "GOES_CLASS", "fl_lon"], "study"),   # one position column is enough
    (["start_time", "goes_class", "fl_lat"], "study"),
    (["start_time", "goes_class"], "swpc"),                # no position column: an event list
    (["start", "class", "fl_lon"], "swpc"),
    (["Begin", "xray_class"], "swpc"),
])
def test_detect_format_names_each_layout(columns, fmt):
    assert detect_format(columns) == fmt


@pytest.mark.parametrize("columns", [["start", "size"], ["class", "peak"], ["fl_lon", "fl_lat"], ["time", "class"]])
def test_detect_format_refuses_a_header_without_start_and_class(columns):
    expected = (f"unrecognised catalog columns {sorted(columns)}; expected the bundled format (event_starttime, "
                "goes_class, hgs_lon, hgs_lat), the study's (start_time, goes_class, fl_lon, fl_lat) or an SWPC "
                "list (start, peak, end, class)")
    with pytest.raises(FlareLensError, match=f"^{re.escape(expected)}$"):
        detect_format(columns)


def test_bundled_layout_reads_peak_end_and_flux(tmp_path):
    path = write(tmp_path, "event_starttime,event_peaktime,event_endtime,goes_class,hgs_lon,hgs_lat,noaa_ar\n"
                           "2012-03-07 00:02,2012-03-07 00:24,2012-03-07 00:40,X5.4,-27,17,11429\n"
                           "2012-03-09 03:22,2012-03-09 03:53,2012-03-09 04:18,M6.3,3,15,11429\n")
    cat = read_catalog(path)
    assert list(cat["peak"]) == [utc("2012-03-07 00:24"), utc("2012-03-09 03:53")]
    assert list(cat["end"]) == [utc("2012-03-07 00:40"), utc("2012-03-09 04:18")]
    assert cat["peak_flux"].tolist() == pytest.approx([5.4e-4, 6.3e-5], rel=1e-12)


def test_study_layout_reads_peak_time_and_either_region_column(tmp_path):
    cat = read_catalog(write(tmp_path, "start_time,peak_time,goes_class,fl_lon,fl_lat,noaa_ar\n"
                                       "2012-03-07 00:02,2012-03-07 00:24,X5.4,-27,17,11429\n"
                                       "2012-03-08 00:02,,M1.0,-20,17,0\n"
                                       "2012-03-09 00:02,,M1.0,-10,17,nan\n"))
    assert cat["peak"].iloc[0] == utc("2012-03-07 00:24") and cat["peak"].iloc[1:].isna().all()
    assert list(cat["noaa_ar"]) == ["11429", "", ""]  # region 0 and nan: none assigned
    cat = read_catalog(write(tmp_path, "start_time,goes_class,fl_lon,fl_lat,ar\n2012-03-07 00:02,X5.4,-27,17,11429\n"))
    assert list(cat["noaa_ar"]) == ["11429"]
    # A format without peak and end times still gives UTC columns, all NaT.
    assert str(cat["peak"].dtype) == str(cat["end"].dtype) == "datetime64[ns, UTC]" and cat["end"].isna().all()
    assert cat["peak_flux"].iloc[0] == pytest.approx(5.4e-4, rel=1e-12)


@pytest.mark.parametrize("column", ["noaa_ar", "region", "noaa"])
def test_swpc_list_reads_its_region_column(tmp_path, column):
    cat = read_catalog(write(tmp_path, f"start,class,{column}\n2017-09-06T11:53,X9.3,2673\n2017-09-07T14:20,X1.3,\n"))
    assert list(cat["noaa_ar"]) == ["2673", ""]


def test_swpc_list_without_region_column_has_no_regions(tmp_path):
    cat = read_catalog(write(tmp_path, "start,class\n2017-09-06T11:53,X9.3\n"))
    assert list(cat["noaa_ar"]) == [""] and list(cat["pos_source"]) == ["none"]


def test_missing_start_is_an_error_but_missing_peak_and_end_are_unknown(tmp_path):
    cat = read_catalog(write(tmp_path, "start,peak,end,class\n"
                                       "2017-09-06T11:53,UNK,nan,X9.3\n"
                                       "2017-09-07T14:20,,NaT,X1.3\n"
                                       "2017-09-08T07:40,None,2017-09-08T07:58,M8.1\n"))
    assert cat["peak"].isna().all() and cat["end"].isna().tolist() == [True, True, False]
    with pytest.raises(FlareLensError, match=re.escape("line 3: cannot read start time '' (expected YYYY-MM-DD")):
        read_catalog(write(tmp_path, "start,peak,class\n2017-09-06T11:53,,X9.3\n,2017-09-07T14:30,X1.3\n"))


def test_simultaneous_flares_keep_their_file_order(tmp_path):
    # Sorted by start time; flares with the same start stay in the order the file lists them.
    rows = [(("2012-03-02 00:00" if i % 2 == 0 else "2012-03-01 00:00"), f"C{1 + i / 10:.1f}") for i in range(30)]
    cat = study(tmp_path, *(f"{start},{cls},0,0" for start, cls in rows))
    expected = [cls for start, cls in rows if start.startswith("2012-03-01")] + \
               [cls for start, cls in rows if start.startswith("2012-03-02")]
    assert list(cat["goes_class"]) == expected


def test_catalog_is_named_by_its_path(tmp_path):
    path = write(tmp_path, STUDY_HEADER + "2011-08-09 10:00,M1.0,0,0\n")
    cat = read_catalog(path)
    assert cat.attrs["name"] == str(path) and "span" not in cat.attrs
    with pytest.raises(FlareLensError, match="^" + re.escape(f"{path} covers 2011-08-09 00:00 to 2011-08-09 23:59 UTC")):
        check_covers(cat, "2011-08-09", "2011-08-10")


# ---------------------------------------------------------------------------- positions


def test_positions_reach_the_full_range_and_no_further(tmp_path):
    cat = study(tmp_path, "2012-03-07 00:00,M1.0,180,90", "2012-03-08 00:00,M1.0,-180,-90", repair=False)
    assert list(cat["lon"]) == [180, -180] and list(cat["lat"]) == [90, -90]
    with pytest.raises(FlareLensError, match=re.escape(
            "line 3: cannot read longitude '180.5' (degrees, |value| <= 180, or UNK)")):
        study(tmp_path, "2012-03-07 00:00,M1.0,10,10", "2012-03-08 00:00,M1.0,180.5,10")
    for lat in ("90.5", "95", "-100"):
        with pytest.raises(FlareLensError, match=re.escape(
                f"line 2: cannot read latitude '{lat}' (degrees, |value| <= 90, or UNK)")):
            study(tmp_path, f"2012-03-07 00:00,M1.0,10,{lat}")


def test_unknown_position_spellings_and_a_word_for_a_number(tmp_path):
    cat = study(tmp_path, *(f"2012-03-0{i + 1} 00:00,M1.0,{v},{v}" for i, v in enumerate(["NaN", "none", "NA", "unk", ""])))
    assert cat["lon"].isna().all() and cat["lat"].isna().all() and set(cat["pos_source"]) == {"none"}
    with pytest.raises(FlareLensError, match=re.escape("line 2: cannot read latitude 'S12' (degrees,")):
        study(tmp_path, "2012-03-07 00:00,M1.0,10,S12")


def test_a_position_needs_both_coordinates(tmp_path):
    cat = study(tmp_path, "2012-03-07 00:00,M1.0,10,", "2012-03-08 00:00,M1.0,,10", "2012-03-09 00:00,M1.0,5,5",
                repair=False)
    assert list(cat["pos_source"]) == ["none", "none", "catalog"]


def flares(rows, ar_dtype=None) -> pd.DataFrame:
    """A normalised-looking table from (start, lon, lat, noaa_ar) rows, as a caller may build it."""
    start, lon, lat, ar = zip(*rows)
    return pd.DataFrame({"start": pd.to_datetime(list(start), utc=True, format="mixed"), "lon": np.array(lon, dtype=float),
                         "lat": np.array(lat, dtype=float), "noaa_ar": pd.Series(list(ar), dtype=ar_dtype)})


@pytest.mark.parametrize("ar_dtype", [None, object])  # pandas' string dtype, or plain objects
def test_flares_without_a_region_number_lend_no_position(ar_dtype):
    # Only flares of the same NOAA region share a position; "", NaN and None are no region.
    out = repair_positions(flares([("2012-03-01", 10, 5, ""), ("2012-03-01 06:00", np.nan, np.nan, ""),
                                   ("2012-03-02", 20, 6, np.nan), ("2012-03-02 06:00", np.nan, np.nan, np.nan),
                                   ("2012-03-03", 30, 7, None), ("2012-03-03 06:00", np.nan, np.nan, None)], ar_dtype))
    assert list(out["pos_source"]) == ["catalog", "none"] * 3
    assert out["lat"].isna().tolist() == [False, True] * 3


def test_repair_goes_on_past_a_region_without_a_sane_flare():
    out = repair_positions(flares([("2012-03-01", np.nan, np.nan, "11111"), ("2012-03-01", 20, 70, "11111"),
                                   ("2012-03-02", 30, 12, "22222"), ("2012-03-02 06:00", np.nan, np.nan, "22222")]))
    assert list(out["pos_source"]) == ["none", "none", "catalog", "region"]
    assert out["lat"].iloc[3] == 12


@pytest.mark.parametrize("needy_day, donor_lat", [(-1.0, 10), (0.2, 10), (0.9, 10), (1.1, 11), (1.8, 11),
                                                  (2.9, 11), (3.1, 12), (3.9, 12), (5.0, 12)])
def test_repair_takes_the_sane_flare_nearest_in_time_earlier_or_later(needy_day, donor_lat):
    # Three sane flares of one region at days 0, 2 and 4 (latitudes 10, 11, 12: differential
    # rotation keeps the latitude, so it names the donor).
    t0 = pd.Timestamp("2012-03-01", tz="UTC")
    day = lambda d: t0 + pd.Timedelta(days=d)  # noqa: E731
    out = repair_positions(flares([(day(0), -40, 10, "1"), (day(2), -10, 11, "1"), (day(4), 20, 12, "1"),
                                   (day(needy_day), np.nan, np.nan, "1")]))
    assert out["pos_source"].iloc[3] == "region" and out["lat"].iloc[3] == donor_lat


def test_repair_logs_how_many_positions_it_took_and_left_unknown(caplog):
    caplog.set_level(logging.DEBUG, logger="flarelens.catalog")
    repair_positions(flares([("2012-03-01", 10, 5, "1"), ("2012-03-01 06:00", np.nan, np.nan, "1"),
                             ("2012-03-02", np.nan, np.nan, ""), ("2012-03-03", 4, 80, "2"),
                             ("2012-03-04", 7, 7, "3"), ("2012-03-05", 8, 8, "")]))
    messages = [r.getMessage() for r in caplog.records if r.name == "flarelens.catalog"]
    assert messages == ["flare positions: 1 taken from their NOAA region, 2 unknown"]  # and 3 from the catalog


def test_position_counts_counts_each_source_and_zero_for_absent_ones():
    table = pd.DataFrame({"pos_source": ["catalog", "region", "catalog"]})
    assert position_counts(table) == {"catalog": 2, "region": 1, "none": 0}
    assert position_counts(pd.DataFrame({"start": []})) == {"catalog": 0, "region": 0, "none": 0}


def test_region_spelt_as_unknown_is_no_region(tmp_path):
    cat = read_catalog(write(tmp_path, "start_time,goes_class,fl_lon,fl_lat,noaa_ar\n"
                                       "2012-03-01 00:00,M1.0,10,5,NA\n2012-03-01 06:00,M1.0,,,NA\n"
                                       "2012-03-02 00:00,M1.0,20,6,UNK\n2012-03-02 06:00,M1.0,,,UNK\n"))
    assert list(cat["noaa_ar"]) == [""] * 4 and list(cat["pos_source"]) == ["catalog", "none"] * 2


# ---------------------------------------------------------------------------- reading the file


def test_a_utf8_file_with_a_byte_order_mark_reads(tmp_path):
    # Spreadsheets save "CSV UTF-8" with a BOM before the header.
    path = tmp_path / "cat.csv"
    path.write_bytes((STUDY_HEADER + "2012-03-07 00:02,X5.4,-27,17\n").encode("utf-8-sig"))
    assert list(read_catalog(path)["goes_class"]) == ["X5.4"]


def test_a_file_that_is_not_utf8_is_refused_by_name(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_bytes((STUDY_HEADER + "2012-03-07 00:02,X5.4,-27,17\n").encode("utf-16"))
    with pytest.raises(FlareLensError, match="^" + re.escape(f"{path}: cannot read the catalog as CSV (") + ".*codec"):
        read_catalog(path)


def test_an_unclosed_quote_is_refused_as_csv(tmp_path):
    # The quote swallows the rest of the file into one field, past csv's field size limit.
    rows = "".join(f"2012-03-07 00:{i % 60:02d},M1.0,10,10\n" for i in range(6000))
    path = write(tmp_path, STUDY_HEADER + '2012-03-07 00:02,"X5.4,-27,17\n' + rows)
    with pytest.raises(FlareLensError, match="^" + re.escape(str(path)) + r", line \d+: cannot read the catalog as "
                                             r"CSV \(field larger than field limit"):
        read_catalog(path)


def test_spaces_after_the_commas_and_quoted_values(tmp_path):
    cat = study(tmp_path, '2012-03-07 00:02, "X5.4", "-27", 17', '2012-03-08 00:02, M1.0, 10, "-5"')
    assert list(cat["goes_class"]) == ["X5.4", "M1.0"] and list(cat["lon"]) == [-27, 10]


def test_a_short_row_has_unknown_trailing_fields(tmp_path):
    cat = study(tmp_path, "2012-03-07 00:02,X5.4", "2012-03-08 00:02,M1.0,10,5")
    assert np.isnan(cat["lon"].iloc[0]) and list(cat["pos_source"]) == ["none", "catalog"]


def test_one_extra_field_among_few_rows_is_reported(tmp_path):
    # As many rows with an extra field as without: that is an error, not a layout.
    with pytest.raises(FlareLensError, match=re.escape(
            "line 3: 5 fields where the header has 4 (an extra comma, or a value with a comma that needs quotes?)")):
        study(tmp_path, "2012-03-07 00:02,X5.4,-27,17", "2012-03-07 03:00,M1.0,S12,W10,17")


def test_trailing_commas_do_not_hide_a_row_with_more_fields(tmp_path):
    with pytest.raises(FlareLensError, match=re.escape("line 4: 6 fields where the header has 4")):
        study(tmp_path, "2012-03-07 00:02,X5.4,-27,17,", "2012-03-08 00:02,X1.4,-20,16,",
              "2012-03-09 00:02,M1.0,12,W10,17,")


# ---------------------------------------------------------------------------- times


def test_parse_times_on_its_own_names_rows_like_a_file_with_a_header():
    with pytest.raises(FlareLensError, match=r"^catalog, line 3: cannot read start time 'bad' "):
        parse_times(pd.Series(["2011-08-09 10:00", "bad"]))
    with pytest.raises(FlareLensError, match=r"^catalog, line 4: cannot read start time "):
        parse_times(pd.Series(["2011-08-09 10:00", "2011-08-10 10:00", None]))  # required by default
    times = parse_times(pd.Series(["2011-08-09 10:00", None, np.nan]), "peak", required=False)
    assert times.iloc[0] == utc("2011-08-09 10:00") and times.iloc[1:].isna().all()


def test_years_1900_to_2199_are_read_and_others_refused(tmp_path):
    cat = study(tmp_path, "1900-01-01 00:00,M1.0,0,0", "2199-12-31 23:59,M1.0,0,0")
    assert list(cat["start"]) == [utc("1900-01-01 00:00"), utc("2199-12-31 23:59")]
    for text in ("1899-12-31 23:59", "2200-01-01 00:00"):
        with pytest.raises(FlareLensError, match=re.escape(f"line 3: cannot read start time '{text}'")):
            study(tmp_path, "2011-01-01 00:00,M1.0,0,0", f"{text},M1.0,0,0")


@pytest.mark.parametrize("text", ["09 08 2011 10:00", "2011-08", "2011", "10:00 2011"])
def test_dates_that_are_ambiguous_or_incomplete_are_refused(tmp_path, text):
    # "09 08 2011" may be 9 August or 8 September; a month or a year alone is no time.
    with pytest.raises(FlareLensError, match=re.escape(f"line 2: cannot read start time '{text}'")):
        study(tmp_path, f"{text},M1.0,0,0")


def test_one_column_may_mix_the_accepted_spellings(tmp_path):
    cat = study(tmp_path, "2011-08-09 10:00,M1.0,0,0", "2011-08-10T10:00:00Z,M1.0,0,0", "2011/08/11 10:00,M1.0,0,0",
                "20110812T100000,M1.0,0,0", "13-Aug-2011 10:00,M1.0,0,0", "2011 Aug 14 10:00,M1.0,0,0",
                "Aug 15 2011 10:00,M1.0,0,0")
    assert list(cat["start"]) == [utc(f"2011-08-{d} 10:00") for d in range(9, 16)]


def test_year_last_dates_message_says_how_to_state_the_order(tmp_path):
    with pytest.raises(FlareLensError, match=re.escape(
            "start time '09/08/2011' may be day/month/year or month/day/year; state which with --date-order dmy "
            "or mdy (or write dates as YYYY-MM-DD)")):
        study(tmp_path, "09/08/2011,M1.0,0,0")


# ---------------------------------------------------------------------------- span and period


def test_span_of_a_catalog_without_start_times_is_refused():
    table = pd.DataFrame({"start": pd.Series([pd.NaT], dtype="datetime64[ns, UTC]")})
    with pytest.raises(FlareLensError, match=r"^the catalog holds no flare with a start time$"):
        catalog_span(table)


def test_span_is_computed_without_warnings():
    # No deprecated pandas spellings (pandas 4 drops the lower-case "d" frequency).
    table = pd.DataFrame({"start": pd.to_datetime(["2011-08-09 10:00", "2011-08-01 03:00"], utc=True)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert catalog_span(table) == (utc("2011-08-01"), utc("2011-08-09 23:59:59"))


def test_check_covers_includes_both_ends_and_names_an_unnamed_catalog():
    table = pd.DataFrame({"start": pd.to_datetime(["2011-08-09 10:00", "2011-08-01 03:00"], utc=True)})
    check_covers(table, "2011-08-01 00:00", "2011-08-09 23:59:59")  # exactly the span: inside
    check_covers(table, "2011-08-03", "2011-09-01", span=("2011-08-01", "2011-09-01"))
    message = ("the catalog covers 2011-08-01 00:00 to 2011-08-09 23:59 UTC, but the period asked for is "
               "2011-08-01 00:00 to 2011-08-10 00:00: outside the catalog every label would be negative. "
               "Choose --start/--end within it, or another catalog (--catalog-span states a catalog's span when it "
               "is longer than its first to last flare)")
    with pytest.raises(FlareLensError, match=f"^{re.escape(message)}$"):
        check_covers(table, "2011-08-01", "2011-08-10")
    with pytest.raises(FlareLensError, match=re.escape("cannot read time 'soon' (expected e.g. 2011-02-15 or ")):
        check_covers(table, "soon", "2011-08-05")


def test_parse_time_gives_utc_from_offsets_and_names_bad_values():
    stamp = parse_time("2011-02-15T03:00+02:00")
    assert stamp == utc("2011-02-15 01:00") and str(stamp.tz) == "UTC"
    assert parse_time(pd.Timestamp("2011-02-15 01:00", tz="US/Eastern")) == utc("2011-02-15 06:00")
    assert parse_time("2011-02-15 01:00") == utc("2011-02-15 01:00")
    with pytest.raises(FlareLensError, match=re.escape(
            "cannot read start 'later' (expected e.g. 2011-02-15 or 2011-02-15T01:00)")):
        parse_time("later", "start")
    with pytest.raises(FlareLensError, match=r"^cannot read end ''$"):
        parse_time("", "end")

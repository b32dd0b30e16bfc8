"""flarelens.labels: the cases mutation testing found unguarded (see docs/mutation-notes/labels.md).

Expected values come from the labelling rule in the module docstring (a flare counts for
time t when t < start < t + window; the largest decides; fold k is the k-th quarter), worked
out here with plain pandas, never copied from what the code returns.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from flarelens.catalog import read_catalog
from flarelens.errors import FlareLensError
from flarelens.labels import (
    LABEL_COLUMNS,
    LabelSummary,
    label_times,
    make_labels,
    parse_other_flares,
    read_labels,
    sample_times,
    train_val,
    window_reaches_fold,
)

T = pd.Timestamp("2012-03-07 00:00", tz="UTC")
ISO = "%Y-%m-%dT%H:%M:%SZ"
#: GOES class letter -> W/m² of multiplier 1 (the definition of the classes).
LETTER_FLUX = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}


def class_flux(goes_class: str) -> float:
    return LETTER_FLUX[goes_class[0]] * float(goes_class[1:])


def hand_table(rows) -> pd.DataFrame:
    """A catalog table built by hand (no ``pos_source``), rows (start, class, lon, lat)."""
    return pd.DataFrame({
        "start": pd.DatetimeIndex([pd.Timestamp(s, tz="UTC") for s, _, _, _ in rows]),
        "goes_class": [c for _, c, _, _ in rows],
        "peak_flux": [class_flux(c) for _, c, _, _ in rows],
        "lon": [float(lon) for _, _, lon, _ in rows],
        "lat": [float(lat) for _, _, _, lat in rows],
    })


def quarter(t: pd.Timestamp) -> int:
    return (t.month - 1) // 3 + 1


def quarter_starts(first_year=2011, last_year=2014):
    return [pd.Timestamp(f"{y}-{m:02d}-01", tz="UTC") for y in range(first_year, last_year + 1) for m in (1, 4, 7, 10)]


def reaches_by_hand(t: pd.Timestamp, window: pd.Timedelta) -> int:
    """The quarter a window (t, t + window) reaches into: one that begins strictly inside it."""
    inside = [b for b in quarter_starts() if t < b < t + window]
    return quarter(inside[-1]) if inside else 0


@contextmanager
def no_warnings():
    """Turn every warning (pandas deprecations included) into an error inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------------------- label_times


def test_label_times_names_the_window_in_its_error():
    # label_times is public; a bad window must be called a window, not a "duration".
    cat = hand_table([("2012-03-07 05:00", "M1.0", 0, 0)])
    with pytest.raises(FlareLensError, match=r"cannot read window 'soon' \(expected e\.g\. 1h"):
        label_times([T], cat, window="soon")


def test_an_empty_catalog_labels_every_time_negative_with_empty_fields():
    # No flare at all: every row is negative, with no class, no position, no source, no start.
    cat = hand_table([("2012-03-07 05:00", "M1.0", 0, 0)]).iloc[:0]
    out = label_times([T, T + pd.Timedelta("1h")], cat)
    assert list(out.columns) == LABEL_COLUMNS
    assert out["target"].tolist() == [0, 0] and out["peak_flux"].tolist() == [0.0, 0.0]
    for column in ("goes_class", "fl_pos_source", "fl_start", "other_flares"):
        assert out[column].tolist() == ["", ""], column
    assert out["fl_lon"].isna().all() and out["fl_lat"].isna().all()


def test_a_table_built_by_hand_gets_its_position_source_from_its_positions():
    # Without a pos_source column a flare with both coordinates is "catalog", one without is
    # "none"; a time whose window holds no flare has an empty source (docstring of label_times).
    cat = hand_table([("2012-03-07 05:00", "M1.0", 10, -20), ("2012-03-09 05:00", "C2.0", np.nan, np.nan)])
    out = label_times([T, T + pd.Timedelta("2D"), T + pd.Timedelta("5D")], cat)
    assert out["fl_pos_source"].tolist() == ["catalog", "none", ""]
    assert out["goes_class"].tolist() == ["M1.0", "C2.0", ""]
    assert (out["fl_lon"].iloc[0], out["fl_lat"].iloc[0]) == (10, -20)
    assert out["fl_lat"].iloc[1:].isna().all()


def test_simultaneous_equal_flares_keep_the_order_of_an_unsorted_table():
    # Twenty flares of equal flux, listed out of time order, ten at 01:00 and ten at 02:00.
    # The earliest start decides; of several at that start the one listed first (as
    # read_catalog keeps a file's order), and the others follow by start, then listing order.
    rows = [("2012-03-07 02:00" if i % 2 == 0 else "2012-03-07 01:00", "M1.0", i, 0) for i in range(20)]
    row = label_times([T], hand_table(rows)).iloc[0]
    assert (row["fl_start"], row["fl_lon"]) == ("2012-03-07T01:00:00Z", 1)
    others = parse_other_flares(row["other_flares"])
    assert [f["lon"] for f in others] == list(range(3, 20, 2)) + list(range(0, 20, 2))


def test_other_flares_round_trip_with_their_latitudes(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("start_time,goes_class,fl_lon,fl_lat\n"
                    "2012-03-07 01:00,X1.0,5,6\n2012-03-07 02:00,M3.0,-40,-12.5\n2012-03-07 03:00,C1.0,,\n")
    row = label_times([T], read_catalog(path)).iloc[0]
    others = parse_other_flares(row["other_flares"])
    assert [f["goes_class"] for f in others] == ["M3.0", "C1.0"]
    assert (others[0]["lon"], others[0]["lat"]) == (-40, -12.5)
    assert np.isnan(others[1]["lon"]) and np.isnan(others[1]["lat"])  # no position: empty, read as NaN
    assert others[0]["start"] == pd.Timestamp("2012-03-07 02:00", tz="UTC")


# ---------------------------------------------------------------------------- make_labels


FLARES = [  # start, class, lon, lat ("" = position unknown)
    ("2012-04-01 05:00", "M2.0", 10, 20),    # positive for the last rows of March: fold 1, reaching fold 2
    ("2012-05-01 00:30", "C5.0", -30, 5),    # below the threshold
    ("2012-07-15 10:00", "X1.0", "", ""),    # no position, no region
    ("2012-10-01 03:00", "M1.0", 40, -10),   # positive for 30 Sep 06:00 and 12:00 (fold 3, reaching 4)
]
START, END = "2012-03-31 12:00", "2012-09-30 12:00"


@pytest.fixture(scope="module")
def hand_catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "cat.csv"
    path.write_text("start_time,goes_class,fl_lon,fl_lat\n" + "".join(f"{s},{c},{lo},{la}\n" for s, c, lo, la in FLARES))
    return path


def expected_rows(window=pd.Timedelta("24h")) -> pd.DataFrame:
    """Target, fold and reached quarter of every 6-hourly time, worked out flare by flare."""
    rows = []
    for t in pd.date_range(START, END, freq="6h", tz="UTC"):
        flux = [class_flux(c) for s, c, _, _ in FLARES if t < pd.Timestamp(s, tz="UTC") < t + window]
        rows.append({"timestamp": t.strftime(ISO), "target": int(max(flux, default=0) >= 1e-5),
                     "fold": quarter(t), "reaches": reaches_by_hand(t, window)})
    return pd.DataFrame(rows)


def per_fold_by_hand(rows: pd.DataFrame) -> dict:
    return {
        "positives": [int(((rows["fold"] == k) & (rows["target"] == 1)).sum()) for k in (1, 2, 3, 4)],
        "negatives": [int(((rows["fold"] == k) & (rows["target"] == 0)).sum()) for k in (1, 2, 3, 4)],
    }


def test_per_fold_counts_and_leaking_rows_match_a_count_by_hand(hand_catalog):
    labels, summary = make_labels(hand_catalog, start=START, end=END, cadence="6h",
                                  catalog_span=("2012-01-01", "2012-12-31"))
    rows = expected_rows()
    assert labels["timestamp"].tolist() == rows["timestamp"].tolist()
    assert labels["target"].tolist() == rows["target"].tolist()
    pf = summary.per_fold
    assert pf.index.tolist() == [1, 2, 3, 4] and pf.index.name == "fold"
    assert {c: pf[c].tolist() for c in ("positives", "negatives")} == per_fold_by_hand(rows)
    # Fold 1 rows of 31 March at 12 and 18 h reach April; 30 June at 06, 12, 18 h reach
    # July; 30 September at 06 and 12 h reach October. So [0, 2, 3, 2].
    assert pf["leaking_train_rows"].tolist() == [int((rows["reaches"] == k).sum()) for k in (1, 2, 3, 4)] == [0, 2, 3, 2]
    # No --images: nothing dropped, and the summary says nothing about dropping.
    assert summary.dropped_missing_images == 0 and summary.dropped_gap == 0
    assert "dropped" not in summary.format()


def test_gap_recounts_positives_and_negatives_per_fold(hand_catalog):
    labels, summary = make_labels(hand_catalog, start=START, end=END, cadence="6h", gap=True,
                                  catalog_span=("2012-01-01", "2012-12-31"))
    rows = expected_rows()
    kept = rows[rows["reaches"] == 0]
    assert labels["timestamp"].tolist() == kept["timestamp"].tolist()
    assert summary.dropped_gap == len(rows) - len(kept) == 7
    counts = per_fold_by_hand(kept)
    # The positives of 31 March and 30 September are gone with their rows.
    assert counts["positives"][0] == 0 and per_fold_by_hand(rows)["positives"][0] == 2
    assert {c: summary.per_fold[c].tolist() for c in ("positives", "negatives")} == counts
    assert list(summary.per_fold.columns) == ["positives", "negatives", "leaking_train_rows"]


def test_summary_table_and_position_counts_are_printed(hand_catalog):
    _, summary = make_labels(hand_catalog, start=START, end=END, cadence="6h",
                             catalog_span=("2012-01-01", "2012-12-31"))
    lines = summary.format().splitlines()
    header = lines.index("fold  positives  negatives  train rows whose window reaches into this fold")
    rows = expected_rows()
    counts = per_fold_by_hand(rows)
    for k in (1, 2, 3, 4):
        assert lines[header + k].split() == [str(k), str(counts["positives"][k - 1]), str(counts["negatives"][k - 1]),
                                             str(int((rows["reaches"] == k).sum()))]
    # The windows run from 31 March 12:00 to 1 October 12:00: all four flares start inside.
    # Three have positions, one has none and no region to borrow from; three are >= M1.0.
    assert ("positions of the 4 flares of the labelled windows: 3 from the catalog, "
            "0 repaired from their NOAA region's other flares, 1 unknown") in lines
    assert ("positions of the 3 of them >= M1.0: 2 from the catalog, "
            "0 repaired from their NOAA region's other flares, 1 unknown") in lines


def test_a_hand_made_summary_counts_missing_position_sources_as_zero():
    # LabelSummary is public; a positions dict without some sources prints 0 for them.
    per_fold = pd.DataFrame({"positives": [1, 0, 0, 0], "negatives": [3, 0, 0, 0], "leaking_train_rows": [0] * 4},
                            index=pd.Index([1, 2, 3, 4], name="fold"))
    text = LabelSummary(4, per_fold, positions={"region": 2}, positions_above={"catalog": 1, "none": 5},
                        threshold="M1.0").format()
    assert ("positions of the 2 flares of the labelled windows: 0 from the catalog, "
            "2 repaired from their NOAA region's other flares, 0 unknown") in text.splitlines()
    assert ("positions of the 6 of them >= M1.0: 1 from the catalog, "
            "0 repaired from their NOAA region's other flares, 5 unknown") in text.splitlines()
    assert text.splitlines()[0] == "4 rows labelled"


def test_make_labels_errors_name_the_bad_option(tmp_path, hand_catalog):
    with pytest.raises(FlareLensError, match=r"cannot read start 'soon' \(expected e\.g\. 2011-02-15"):
        make_labels(start="soon", end="2012-03-02")
    with pytest.raises(FlareLensError, match=r"cannot read end 'later'"):
        make_labels(start="2012-03-01", end="later")
    missing = tmp_path / "nowhere"
    with pytest.raises(FlareLensError, match=rf"^--images {missing}: no such directory$"):
        make_labels(hand_catalog, start="2012-04-01", end="2012-04-01 02:00", images=missing)


# ---------------------------------------------------------------------------- sample_times


def test_sample_times_default_is_hourly_and_errors_name_start_and_end():
    with no_warnings():
        times = sample_times("2012-03-01 00:00", "2012-03-01 03:00")
    assert list(times) == [pd.Timestamp(f"2012-03-01 0{h}:00", tz="UTC") for h in range(4)]
    with pytest.raises(FlareLensError, match=r"^cannot read start 'soon' \(expected"):
        sample_times("soon", "2012-03-02")
    with pytest.raises(FlareLensError, match=r"^cannot read end 'later' \(expected"):
        sample_times("2012-03-01", "later")


# ---------------------------------------------------------------------------- window_reaches_fold


def test_window_reaches_fold_default_is_24h_without_warnings():
    # The default works without pandas deprecation warnings ("H" and "NS" will be removed).
    times = pd.date_range("2012-03-30 12:00", "2012-04-01 00:00", freq="1h", tz="UTC")
    with no_warnings():
        got = window_reaches_fold(times.strftime(ISO))
    assert got.tolist() == [reaches_by_hand(t, pd.Timedelta("24h")) for t in times]
    assert got.dtype.kind == "i"  # fold numbers are integers
    assert got.tolist().count(2) == 23  # 31 March 01:00 .. 23:00


def test_window_reaches_fold_reads_offsets_as_utc_and_its_last_instant_decides():
    # 23:30 at -02:00 on 31 March is 01:30 UTC on 1 April: already quarter 2, reaching nothing.
    assert window_reaches_fold(["2012-03-31T23:30:00-02:00"]).tolist() == [0]
    # 21:30 at -02:00 is 23:30 UTC on 31 March: quarter 1, and its window reaches April.
    assert window_reaches_fold(["2012-03-31T21:30:00-02:00"]).tolist() == [2]
    # A window that ends exactly at the quarter's start does not reach it; one nanosecond more does.
    day = pd.Timedelta("24h")
    assert window_reaches_fold(["2012-03-31T00:00:00Z"], day).tolist() == [0]
    assert window_reaches_fold(["2012-03-31T00:00:00Z"], day + pd.Timedelta(1, "ns")).tolist() == [2]


def test_window_reaches_fold_names_the_window_in_its_error():
    with pytest.raises(FlareLensError, match=r"^cannot read window 'soon' \(expected e\.g\. 1h"):
        window_reaches_fold(["2012-03-31T00:00:00Z"], "soon")
    with pytest.raises(FlareLensError, match=r"^window must be positive, got '-1h'$"):
        window_reaches_fold(["2012-03-31T00:00:00Z"], "-1h")


# ---------------------------------------------------------------------------- train_val


@pytest.fixture(scope="module")
def year_of_hours():
    times = pd.date_range("2012-01-01", "2012-12-31 23:00", freq="1h", tz="UTC")
    return pd.DataFrame({"timestamp": times.strftime(ISO), "fold": [quarter(t) for t in times]}), times


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_train_val_accepts_every_fold_and_gap_uses_its_own_length(year_of_hours, k):
    labels, times = year_of_hours
    months = times.month.to_numpy()
    train, val = train_val(labels, k)
    assert (val["fold"] == k).all() and len(val) == ((months - 1) // 3 + 1 == k).sum()
    purged, val2 = train_val(labels, k, gap="48h")
    assert val2.equals(val)
    assert not (purged["fold"] == k).any()  # the gap never puts validation rows into training
    dropped = set(train["timestamp"]) - set(purged["timestamp"])
    # The 47 hours before quarter k starts have a 48 h window reaching into it (for k = 1 the
    # last hours of December, reaching January 2013).
    begins = pd.Timestamp(f"{2012 + (k == 1)}-{3 * k - 2:02d}-01", tz="UTC")
    assert dropped == {(begins - pd.Timedelta(h, "h")).strftime(ISO) for h in range(1, 48)}


@pytest.mark.parametrize("k", [0, 5, "2"])
def test_train_val_refuses_other_folds(year_of_hours, k):
    with pytest.raises(FlareLensError, match=rf"^fold must be 1, 2, 3 or 4, got {k!r}$"):
        train_val(year_of_hours[0], k)


# ---------------------------------------------------------------------------- read_labels


def test_hand_made_labels_keep_text_columns_as_text_and_get_their_folds(tmp_path):
    # Daily labels written by hand: ISO 8601 basic dates and numbered image files look like
    # numbers to pandas, but they are text. Without a fold column the quarter is computed.
    path = tmp_path / "labels.csv"
    path.write_text("timestamp,file,target,fl_lon,fl_lat,fl_start\n"
                    "20120307,0001,1,10,-20,20120307\n"
                    "20120515,0002,0,,,\n"
                    "20120820,0003,0,,,\n"
                    "20121125,0004,1,-5,,20121125\n")
    labels = read_labels(path)
    assert labels["timestamp"].tolist() == ["20120307", "20120515", "20120820", "20121125"]
    assert labels["file"].tolist() == ["0001", "0002", "0003", "0004"]
    assert labels["fl_start"].tolist() == ["20120307", "", "", "20121125"]
    assert labels["fold"].tolist() == [1, 2, 3, 4] and labels["fold"].dtype.kind == "i"
    assert labels["target"].tolist() == [1, 0, 0, 1] and labels["target"].dtype.kind == "i"
    # Empty positions are unknown (NaN), not text.
    assert labels["fl_lon"].dtype.kind == "f" and labels["fl_lat"].dtype.kind == "f"
    assert labels["fl_lon"].isna().tolist() == [False, True, True, False]
    assert labels["fl_lat"].isna().tolist() == [False, True, True, True]


def test_read_labels_takes_offsets_naive_times_and_dates_as_utc(tmp_path):
    # ISO 8601 in its usual spellings, mixed in one file; folds are UTC quarters.
    path = tmp_path / "labels.csv"
    path.write_text("timestamp,file,target\n"
                    "2012-03-31T23:30:00-02:00,a.jpg,1\n"   # 1 April 01:30 UTC
                    "2012-06-30T23:00:00Z,b.jpg,0\n"
                    "2012-09-30 22:00,c.jpg,0\n"            # naive = UTC
                    "2012-12-31,d.jpg,1\n")
    labels = read_labels(path)
    assert labels["fold"].tolist() == [2, 2, 3, 4]


def test_read_labels_accepts_folds_two_and_four_and_refuses_five(tmp_path):
    path = tmp_path / "labels.csv"
    body = "timestamp,file,target,fold\n2012-05-01T00:00:00Z,a.jpg,0,2\n2012-11-01T00:00:00Z,b.jpg,1,4\n"
    path.write_text(body)
    assert read_labels(path)["fold"].tolist() == [2, 4]
    path.write_text(body + "2012-12-01T00:00:00Z,c.jpg,0,5\n")
    with pytest.raises(FlareLensError, match=r", line 4: fold must be 1, 2, 3 or 4, got '5'$"):
        read_labels(path)


@pytest.mark.parametrize("column, value, message", [
    ("target", "yes", "line 3: target must be 0 or 1, got 'yes'"),
    ("fold", "spring", "line 3: fold must be 1, 2, 3 or 4, got 'spring'"),
    ("timestamp", "soon", "line 3: cannot read timestamp 'soon' (expected ISO 8601 UTC, e.g. 2011-02-15T01:00:00Z)"),
])
def test_read_labels_names_a_word_where_a_number_or_time_belongs(tmp_path, column, value, message):
    row = {"timestamp": "2012-03-07T01:00:00Z", "file": "b.jpg", "target": "0", "fold": "1", column: value}
    path = tmp_path / "labels.csv"
    path.write_text("timestamp,file,target,fold\n2012-03-07T00:00:00Z,a.jpg,1,1\n" + ",".join(row.values()) + "\n")
    with pytest.raises(FlareLensError) as info:
        read_labels(path)
    assert str(info.value) == f"{path}, {message}"


def test_read_labels_errors_for_files_it_cannot_use(tmp_path):
    path = tmp_path / "labels.csv"
    with pytest.raises(FlareLensError, match=r"labels.csv: no such labels file \(make one with `flarelens label`\)$"):
        read_labels(path)
    with pytest.raises(FlareLensError, match=rf"^{tmp_path}: is a directory, not a labels file$"):
        read_labels(tmp_path)
    path.write_text("")
    with pytest.raises(FlareLensError) as info:
        read_labels(path)
    assert str(info.value) == f"{path}: cannot read labels (No columns to parse from file)"
    path.write_text("timestamp,fold\n2012-03-07T00:00:00Z,1\n")
    with pytest.raises(FlareLensError) as info:
        read_labels(path)
    assert str(info.value) == f"{path}: missing column(s) file, target"


def test_a_blank_line_before_the_header_does_not_shift_the_reported_line(tmp_path):
    # pandas skips the blank first line and reads the header from line 2; the bad target is
    # on line 4 of the file.
    path = tmp_path / "labels.csv"
    path.write_text("\ntimestamp,file,target\n2012-03-07T00:00:00Z,a.jpg,1\n2012-03-07T01:00:00Z,b.jpg,2\n")
    with pytest.raises(FlareLensError, match=r", line 4: target must be 0 or 1, got '2'$"):
        read_labels(path)

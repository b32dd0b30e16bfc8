import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from flarelens.catalog import read_catalog
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.images import image_relpath
from flarelens.labels import (
    LABEL_COLUMNS,
    fold_of,
    label_times,
    make_labels,
    parse_other_flares,
    read_labels,
    train_val,
    window_reaches_fold,
)

T = pd.Timestamp("2012-03-07 00:00", tz="UTC")


def write_catalog(tmp_path, rows):
    path = tmp_path / "cat.csv"
    lines = ["start_time,goes_class,fl_lon,fl_lat"] + [f"{s},{c},{lon},{lat}" for s, c, lon, lat in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "offset, inside",
    [("0s", False), ("1min", True), ("23h59min", True), ("23h59min59s", True), ("24h", False), ("-1min", False)],
)
def test_window_edges(tmp_path, offset, inside):
    start = T + pd.Timedelta(offset)
    cat = read_catalog(write_catalog(tmp_path, [(f"{start:%Y-%m-%d %H:%M:%S}", "M1.0", 10, 20)]))
    row = label_times([T], cat).iloc[0]
    assert row["target"] == int(inside)
    assert row["goes_class"] == ("M1.0" if inside else "")
    if inside:
        assert (row["fl_lon"], row["fl_lat"]) == (10, 20)
        assert row["fl_start"] == f"{start:%Y-%m-%dT%H:%M:%SZ}"


def test_largest_flare_decides_by_flux(tmp_path):
    cat = read_catalog(write_catalog(tmp_path, [
        ("2012-03-07 01:00", "X9.9", 1, 1),
        ("2012-03-07 02:00", "X10.0", 2, 2),
        ("2012-03-07 03:00", "C5.0", 3, 3),
        ("2012-03-07 04:00", "M9.9", UNK := "UNK", UNK),
    ]))
    row = label_times([T], cat).iloc[0]
    assert row["goes_class"] == "X10.0" and row["peak_flux"] == pytest.approx(1e-3)
    assert (row["fl_lon"], row["fl_lat"]) == (2, 2)
    others = parse_other_flares(row["other_flares"])
    assert [f["goes_class"] for f in others] == ["X9.9", "C5.0", "M9.9"]
    assert others[0]["lon"] == 1 and np.isnan(others[2]["lon"])
    assert others[1]["start"] == pd.Timestamp("2012-03-07 03:00", tz="UTC")


def test_thresholds(tmp_path):
    cat = read_catalog(write_catalog(tmp_path, [("2012-03-07 05:00", "C3.0", 0, 0), ("2012-03-09 05:00", "M4.9", 0, 0)]))
    times = [T, T + pd.Timedelta("2D")]
    assert list(label_times(times, cat, threshold="M1.0")["target"]) == [0, 1]
    assert list(label_times(times, cat, threshold="C1.0")["target"]) == [1, 1]
    assert list(label_times(times, cat, threshold="M5.0")["target"]) == [0, 0]
    assert list(label_times(times, cat, threshold="C3.0")["target"]) == [1, 1]  # >= threshold


def test_window_length_option(tmp_path):
    cat = read_catalog(write_catalog(tmp_path, [("2012-03-07 13:00", "M2.0", 0, 0)]))
    assert label_times([T], cat, window="12h")["target"].iloc[0] == 0
    assert label_times([T], cat, window="48h")["target"].iloc[0] == 1


def test_vectorised_matches_brute_force():
    cat = read_catalog()
    times = pd.date_range("2011-02-01", "2011-04-01", freq="1h", tz="UTC")
    fast = label_times(times, cat)
    starts, flux = cat["start"], cat["peak_flux"]
    for i in range(0, len(times), 7):
        t = times[i]
        inside = flux[(starts > t) & (starts < t + pd.Timedelta("24h"))]
        expected = inside.max() if len(inside) else 0.0
        assert fast["peak_flux"].iloc[i] == expected
        assert fast["target"].iloc[i] == int(expected >= 1e-5)


def test_folds_are_quarters():
    times = pd.date_range("2010-12-01", "2018-12-31 23:00", freq="1h", tz="UTC")
    folds = fold_of(times)
    months = times.month.to_numpy()
    for k in (1, 2, 3, 4):
        assert set(months[folds == k]) == {3 * k - 2, 3 * k - 1, 3 * k}


@pytest.fixture(scope="module")
def default_labels():
    return make_labels()


def test_default_labels_of_the_bundled_catalog(default_labels):
    labels, summary = default_labels
    assert list(labels.columns) == LABEL_COLUMNS
    assert len(labels) == summary.rows == 70872  # every hour of 2010-12-01 .. 2018-12-31 23:00
    assert labels["timestamp"].iloc[0] == "2010-12-01T00:00:00Z"
    assert labels["file"].iloc[0] == "2010/12/01/HMI.m2010.12.01_00.00.00.jpg"
    # The X9.3 flare of 2017-09-06 11:53 makes the preceding 24 hours positive.
    row = labels[labels["timestamp"] == "2017-09-06T00:00:00Z"].iloc[0]
    assert (row["target"], row["goes_class"]) == (1, "X9.3")
    pos = summary.per_fold["positives"]
    assert pos.sum() == labels["target"].sum() > 0
    assert summary.imbalance == pytest.approx((labels["target"] == 0).sum() / labels["target"].sum())


def test_train_val_and_gap():
    times = pd.date_range("2012-01-01", "2012-12-31 23:00", freq="1h", tz="UTC")
    labels = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "fold": fold_of(times)})
    train, val = train_val(labels, 2)
    assert set(val["fold"]) == {2} and set(train["fold"]) == {1, 3, 4}
    assert len(train) + len(val) == len(labels)
    purged, val2 = train_val(labels, 2, gap="24h")
    assert len(val2) == len(val)
    dropped = sorted(set(train["timestamp"]) - set(purged["timestamp"]))
    # The 23 training hours before April 1st have windows reaching into quarter 2.
    assert dropped == [f"2012-03-31T{h:02d}:00:00Z" for h in range(1, 24)]
    assert (window_reaches_fold(labels["timestamp"]) != 0).sum() == 23 * 4  # Apr 1, Jul 1, Oct 1 and Jan 1 2013
    with pytest.raises(FlareLensError):
        train_val(labels, 5)


def test_images_filter(tmp_path):
    root = tmp_path / "imgs"
    times = pd.date_range("2012-03-07", periods=5, freq="1h", tz="UTC")
    for t, ext in zip(times[[0, 2, 3]], [".jpg", ".png", ".jpg"]):
        path = root / image_relpath(t, ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    labels, summary = make_labels(start=times[0], end=times[-1], images=root)
    assert list(labels["timestamp"]) == [f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in times[[0, 2, 3]]]
    assert labels["file"].iloc[1].endswith("HMI.m2012.03.07_02.00.00.png")
    assert summary.dropped_missing_images == 2
    assert "2 times dropped" in summary.format()


def test_cli_writes_labels_and_summary(tmp_path, capsys):
    out = tmp_path / "labels.csv"
    assert main(["label", "--start", "2012-03-01", "--end", "2012-03-10 23:00", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "240 rows labelled" in text and "imbalance" in text
    labels = read_labels(out)
    assert len(labels) == 240 and list(labels.columns) == LABEL_COLUMNS
    assert labels["target"].sum() > 0  # 2012-03-05..07 had X flares


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--start", "2012-03-10", "--end", "2012-03-01"], "before start"),
        (["--window", "0h"], "window must be positive"),
        (["--window=-3h"], "window must be positive"),
        (["--cadence", "soon"], "cannot read cadence"),
        (["--threshold", "Q9"], "threshold"),
        (["--catalog", "MISSING.csv"], "no such catalog"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, args, fragment):
    out = tmp_path / "labels.csv"
    out.write_text("precious\n")
    code = main(["label", "--start", "2012-03-01", "--end", "2012-03-02", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert fragment in err and len(err.splitlines()) == 1
    assert out.read_text() == "precious\n"  # the old output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]  # no temporary left


def test_cli_bad_catalog_rows_exit_nonzero(tmp_path):
    cat = tmp_path / "cat.csv"
    cat.write_text("start_time,goes_class,fl_lon,fl_lat\n2012-03-01 05:00,M1.0,0,0\n2012-03-01 06:00,Y2.0,0,0\n")
    result = subprocess.run(
        [sys.executable, "-m", "flarelens", "label", "--catalog", str(cat), "--out", str(tmp_path / "l.csv")],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "line 3" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "l.csv").exists()


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    out = tmp_path / "labels.csv"
    assert main(["label", "--start", "2012-03-01", "--end", "2012-03-01 05:00", "--out", str(out)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


# ---------------------------------------------------------------------------- ties, --gap, positions, span


def test_equal_flux_ties_go_to_the_earlier_flare(tmp_path):
    # Two and three equal flares in one window exercise both halves of the range-maximum
    # table (its blocks and the final combination of two overlapping blocks).
    for n in (2, 3, 5):
        rows = [(f"2012-03-07 0{k + 1}:00", "M2.0", 10 * k, -k) for k in range(n)]
        cat = read_catalog(write_catalog(tmp_path, rows))
        row = label_times([T], cat).iloc[0]
        assert row["fl_start"] == "2012-03-07T01:00:00Z", n
        assert (row["fl_lon"], row["fl_lat"]) == (0, 0)
        assert [f["start"].hour for f in parse_other_flares(row["other_flares"])] == list(range(2, n + 1))


def test_ties_match_brute_force_on_many_equal_flares(tmp_path):
    rng = np.random.default_rng(3)
    starts = pd.Timestamp("2012-03-01", tz="UTC") + pd.to_timedelta(np.sort(rng.choice(20 * 24 * 60, 300, replace=False)), "min")
    classes = rng.choice(["C1.0", "M1.0", "M1.0", "X1.0"], len(starts), p=[0.3, 0.3, 0.3, 0.1])
    rows = [(f"{s:%Y-%m-%d %H:%M}", c, 0, 0) for s, c in zip(starts, classes)]
    cat = read_catalog(write_catalog(tmp_path, rows))
    times = pd.date_range("2012-03-01", "2012-03-20", freq="37min", tz="UTC")
    labels = label_times(times, cat)
    flux = np.array([{"C": 1e-6, "M": 1e-5, "X": 1e-4}[c[0]] for c in classes])
    for t, row in zip(times, labels.itertuples()):
        inside = np.flatnonzero((starts > t) & (starts < t + pd.Timedelta("24h")))
        if not len(inside):
            assert row.fl_start == ""
            continue
        first_largest = inside[np.flatnonzero(flux[inside] == flux[inside].max())[0]]
        assert row.fl_start == f"{starts[first_largest]:%Y-%m-%dT%H:%M:%SZ}"


def test_make_labels_gap_drops_the_rows_it_reports():
    start, end = "2012-03-30 00:00", "2012-04-02 23:00"
    plain, plain_summary = make_labels(start=start, end=end)
    purged, summary = make_labels(start=start, end=end, gap=True)
    times = pd.to_datetime(plain["timestamp"], utc=True)
    boundary = pd.Timestamp("2012-04-01", tz="UTC")
    # Independently of our code: a 24 h window (t, t + 24 h) reaches into April when t < Apr 1 < t + 24 h.
    reaching = set(plain.loc[(times < boundary) & (times + pd.Timedelta("24h") > boundary), "timestamp"])
    assert len(reaching) == 23
    assert set(plain["timestamp"]) - set(purged["timestamp"]) == reaching
    assert summary.dropped_gap == len(reaching) == len(plain) - len(purged) == len(plain) - summary.rows
    assert plain_summary.dropped_gap == 0
    assert summary.per_fold["positives"].sum() + summary.per_fold["negatives"].sum() == len(purged)
    assert summary.per_fold["positives"].sum() == purged["target"].sum()
    assert f"{len(reaching)} rows dropped by --gap" in summary.format()


def test_labels_carry_the_position_source():
    labels, summary = make_labels(start="2014-10-28 00:00", end="2014-10-28 05:00")
    rows = labels.set_index("timestamp")
    # From 03:00 the M6.6 flare (listed at S84E15) decides; its position is AR 12192's.
    m66 = rows.loc["2014-10-28T03:00:00Z"]
    assert (m66["goes_class"], m66["fl_start"], m66["fl_pos_source"]) == ("M6.6", "2014-10-28T03:23:00Z", "region")
    assert -20 <= m66["fl_lat"] <= -8 and m66["fl_lon"] > 0
    after = rows.loc["2014-10-28T04:00:00Z"]  # the M1.6 at 13:54, S16W74
    assert (after["goes_class"], after["fl_pos_source"], after["fl_lat"]) == ("M1.6", "catalog", -16)
    assert set(labels["fl_pos_source"]) <= {"catalog", "region", "none", ""}


def test_label_prints_repaired_and_unknown_positions(tmp_path, capsys):
    from flarelens.catalog import bundled_catalog_path

    start, end = pd.Timestamp("2012-08-15", tz="UTC"), pd.Timestamp("2012-09-10 23:00", tz="UTC")
    out = tmp_path / "labels.csv"
    assert main(["label", "--start", str(start), "--end", str(end), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # Expected counts from the raw CSV with pandas alone.
    raw = pd.read_csv(bundled_catalog_path())
    raw["ar"] = raw["noaa_ar"].astype(str).str.strip()
    raw["start"] = pd.to_datetime(raw["event_starttime"], utc=True)
    sane = raw["hgs_lat"].notna() & raw["hgs_lon"].notna() & (raw["hgs_lat"].abs() <= 60)
    donors = set(raw.loc[sane & ~raw["ar"].isin(["", "nan"]), "ar"])
    period = raw[(raw["start"] > start) & (raw["start"] < end + pd.Timedelta("24h"))]
    ok = sane[period.index]
    repaired = ~ok & period["ar"].isin(donors)
    unknown = ~ok & ~repaired
    assert repaired.sum() > 0 and unknown.sum() > 0  # AR 11548's flares have none; others do
    assert (f"positions of the {len(period)} flares of the labelled windows: {ok.sum()} from the catalog, "
            f"{repaired.sum()} repaired from their NOAA region's other flares, {unknown.sum()} unknown") in text
    labels = read_labels(out)
    assert set(labels["fl_pos_source"]) <= {"catalog", "region", "none", ""}
    assert (labels["fl_lat"].dropna().abs() <= 60).all()


def test_no_labelled_flare_has_an_impossible_latitude(default_labels):
    labels, _ = default_labels
    assert (labels["fl_lat"].dropna().abs() <= 60).all()
    others = [f for cell in labels["other_flares"] for f in parse_other_flares(cell)]
    assert len(others) > 1000 and all(not (abs(f["lat"]) > 60) for f in others)
    known = labels["fl_pos_source"].isin(["catalog", "region"])
    assert labels.loc[known, ["fl_lon", "fl_lat"]].notna().all().all()
    assert labels.loc[labels["fl_pos_source"] == "none", "fl_lat"].isna().all()
    assert (labels["fl_pos_source"] == "").equals(labels["goes_class"] == "")


@pytest.mark.parametrize("args, fragment", [
    (["--start", "2020-01-01", "--end", "2020-03-01"], "the bundled catalog covers 2010-01-01 00:00 to 2018-12-31 23:59"),
    (["--start", "2018-11-01", "--end", "2019-03-01"], "the bundled catalog covers"),
])
def test_label_refuses_a_period_outside_the_catalog(tmp_path, capsys, args, fragment):
    out = tmp_path / "labels.csv"
    assert main(["label", *args, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_label_date_order_and_catalog_span_options(tmp_path, capsys):
    cat = tmp_path / "cat.csv"
    cat.write_text("start_time,goes_class,fl_lon,fl_lat\n09/08/2011 10:00,M1.0,0,0\n13/08/2011 10:00,X1.0,0,0\n")
    out = tmp_path / "labels.csv"
    base = ["label", "--catalog", str(cat), "--start", "2011-08-09 00:00", "--end", "2011-08-13 00:00", "--out", str(out)]
    assert main(base) == 1
    err = capsys.readouterr().err.strip()
    assert "--date-order" in err and "line 2" in err and len(err.splitlines()) == 1
    assert main([*base, "--date-order", "dmy"]) == 0
    labels = read_labels(out).set_index("timestamp")
    assert labels.loc["2011-08-09T00:00:00Z", "goes_class"] == "M1.0"
    assert labels.loc["2011-08-12T12:00:00Z", "goes_class"] == "X1.0"
    # The catalog's flares span 9-13 August; labelling to the 20th needs its span stated.
    longer = [*base[:-4], "--end", "2011-08-20 00:00", "--out", str(out), "--date-order", "dmy"]
    assert main(longer) == 1
    assert "covers 2011-08-09 00:00 to 2011-08-13 23:59" in capsys.readouterr().err
    assert main([*longer, "--catalog-span", "2011-08-01", "2011-08-31"]) == 0


def test_simulate_refuses_a_period_outside_the_catalog(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--start", "2020-01-01", "--end", "2020-01-01T01:00", "--size", "16", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "the bundled catalog covers 2010-01-01 00:00 to 2018-12-31 23:59" in err
    assert len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("edit, fragment", [
    (lambda rows: rows.__setitem__(4, rows[4].replace(",1,", ",2,", 1)), "line 5: target must be 0 or 1, got '2'"),
    (lambda rows: rows.__setitem__(4, rows[4][:-1] + "7"), "line 5: fold must be 1, 2, 3 or 4, got '7'"),
    (lambda rows: rows.__setitem__(4, "yesterday" + rows[4][20:]), "line 5: cannot read timestamp 'yesterday'"),
])
def test_read_labels_names_the_file_line(tmp_path, edit, fragment):
    out = tmp_path / "labels.csv"
    main(["label", "--start", "2012-03-06", "--end", "2012-03-06 05:00", "--out", str(out)])
    rows = out.read_text().splitlines()
    rows.insert(2, "")  # a blank line: pandas skips it, the message must not
    edit(rows)
    out.write_text("\n".join(rows) + "\n")
    with pytest.raises(FlareLensError) as info:
        read_labels(out)
    assert fragment in str(info.value) and len(str(info.value).splitlines()) == 1

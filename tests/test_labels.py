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


def test_default_labels_of_the_bundled_catalog():
    labels, summary = make_labels()
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

"""flarelens.predictions: one owner of predictions.csv — reading ours and the study's formats,
provenance (model_fold, role), writing and checking."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from flarelens import predictions
from flarelens.errors import FlareLensError
from flarelens.predictions import (
    FLARELENS, STUDY, STUDY_CLASS, as_frames, detect_format, normalise, read_predictions, write_predictions,
)
from test_evaluate import OURS, STUDY_FOLD, STUDY_X_CLASS, write


# ------------------------------------------------------------------ reading


def test_read_our_predictions(tmp_path):
    frame = read_predictions(write(tmp_path, "pred.csv", OURS))
    assert frame.attrs["format"] == FLARELENS
    assert list(frame.columns[:10]) == ["timestamp", "time", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fl_start", "fold"]
    assert "peak_flux" in frame.columns  # other label columns are carried through
    assert frame["flare_prob"].tolist() == [0.9, 0.3, 0.5, 0.6, 0.1, 0.7]
    assert frame["target"].tolist() == [1, 1, 1, 0, 0, 1]
    assert frame["goes_class"].tolist() == ["X2.2", "M1.0", "M1.0", "C1.0", "", "M3.0"]
    assert frame["fl_lon"].iloc[1] == 70.0 and math.isnan(frame["fl_lon"].iloc[3])
    assert frame["fold"].tolist() == [1] * 6
    assert frame["time"].iloc[2] == pd.Timestamp("2011-02-15 02:00", tz="UTC")


def test_read_study_fold_file_with_path_and_time_stamps(tmp_path):
    frame = read_predictions(write(tmp_path, "fold1_res.csv", STUDY_FOLD))
    assert frame.attrs["format"] == STUDY
    assert frame["time"].iloc[0] == pd.Timestamp("2011-01-01 00:00", tz="UTC")
    assert frame["time"].iloc[6] == pd.Timestamp("2011-01-01 06:00", tz="UTC")
    assert frame["file"].iloc[0].endswith("HMI.m2011.01.01_00.00.00.jpg") and frame["file"].iloc[6] == ""
    assert frame["target"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert frame["goes_class"].eq("").all() and frame["fl_lon"].isna().all() and frame["fold"].isna().all()


def test_read_study_per_class_file(tmp_path):
    frame = read_predictions(write(tmp_path, "x_class.csv", STUDY_X_CLASS))
    assert frame.attrs["format"] == STUDY_CLASS
    assert frame["fl_lon"].iloc[0] == pytest.approx(15.115929105638052) and frame["fl_lat"].iloc[0] == -21
    assert frame["fl_lon"].iloc[1] == -82 and frame["fl_lat"].iloc[1] == -12
    assert frame["fl_lon"].isna().iloc[2] and frame["fl_lat"].isna().iloc[2]
    assert frame["goes_class"].tolist() == ["X2.2", "X4.9", ""]  # NF = no flare
    assert frame["target"].isna().all()
    assert "flare_start" in frame.columns
    # an optional target column is read
    with_target = STUDY_X_CLASS.replace("flare_start\n", "flare_start,target\n").replace(":00\n", ":00,1\n").replace("unk,unk\n", "unk,unk,0\n")
    frame = read_predictions(write(tmp_path, "combined.csv", with_target))
    assert frame["target"].tolist() == [1, 1, 0]


def test_detect_format_by_columns():
    assert detect_format(["timestamp", "flare_prob", "target"]) == STUDY
    assert detect_format(["timestamp", "file", "flare_prob", "target", "fold"]) == FLARELENS
    assert detect_format(["timestamp", "flare_prob", "goes_class", "fl_location"]) == STUDY_CLASS
    for cols in (["timestamp", "prob", "target"], ["timestamp", "flare_prob"], []):
        with pytest.raises(FlareLensError, match="unknown prediction file format"):
            detect_format(cols)


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,flare_prob,target\na,0.2,0\nb,abc,1\n", r"bad\.csv, line 3 \(data row 2\): flare_prob 'abc'"),
        ("timestamp,flare_prob,target\na,0.2,0\nb,,1\n", r"line 3 .*flare_prob ''"),
        ("timestamp,flare_prob,target\na,1.7,0\n", r"line 2 .*flare_prob '1.7' is not a probability"),
        ("timestamp,flare_prob,target\na,nan,0\n", r"line 2 .*flare_prob 'nan'"),
        ("timestamp,flare_prob,target\na,0.2,0\nb,0.3,2\n", r"line 3 .*target '2' is not 0 or 1"),
        ("timestamp,prob,label\na,0.2,0\n", r"bad\.csv: unknown prediction file format \(columns: label, prob, timestamp\)"),
        ("", r"bad\.csv: empty file"),
        ("timestamp,flare_prob,goes_class,fl_location\na,0.2,X1.0,15 -20\n", r"line 2 .*fl_location '15 -20'"),
        ("timestamp,flare_prob,goes_class,fl_location\na,0.2,Q1.0,unk\n", r"line 2 .*goes_class 'Q1.0' is not a GOES class"),
        ("timestamp,file,flare_prob,target,fl_lon\na,f,0.2,0,10\n", r"only one of fl_lon, fl_lat"),
        ("timestamp,file,flare_prob,target,fl_lon,fl_lat\na,f,0.2,0,10,-95\n", r"line 2 .*fl_lat '-95'"),
    ],
)
def test_bad_prediction_files_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(FlareLensError, match=message):
        read_predictions(path)


def test_missing_file(tmp_path):
    with pytest.raises(FlareLensError, match="no such prediction file"):
        read_predictions(tmp_path / "nope.csv")


# ------------------------------------------------------------------ nonsense and provenance


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,flare_prob,target\n", r"has a header but no rows"),
        ("timestamp,file,flare_prob,target,fold\na,f,0.2,0,5\n", r"line 2 .*fold '5' is not a fold number"),
        ("timestamp,file,flare_prob,target,fold\na,f,0.2,0,1.5\n", r"fold '1.5'"),
        ("timestamp,file,flare_prob,target,fold,model_fold\na,f,0.2,0,1,0\n", r"model_fold '0'"),
        ("timestamp,file,flare_prob,target,fold,role\na,f,0.2,0,1,test\n", r"role 'test' is not one of"),
        ("timestamp,flare_prob,target\na,inf,0\n", r"flare_prob 'inf' is not a probability"),
        ("timestamp,file,flare_prob,flare_prob_calibrated,target\na,f,0.2,nan,0\n", r"flare_prob_calibrated 'nan'"),
    ],
)
def test_nonsense_is_refused_in_one_line(tmp_path, text, message):
    with pytest.raises(FlareLensError, match=message) as info:
        read_predictions(write(tmp_path, "bad.csv", text))
    assert "\n" not in str(info.value)


ROLES = """timestamp,file,flare_prob,target,fold,model_fold,role
2011-02-15T00:00:00Z,a.jpg,0.9,1,1,1,heldout
2011-05-15T00:00:00Z,b.jpg,0.2,0,2,1,train
2011-06-15T00:00:00Z,c.jpg,0.3,0,2,1,inner
"""


def test_rows_not_held_out_are_refused_unless_asked(tmp_path):
    path = write(tmp_path, "pred.csv", ROLES)
    with pytest.raises(FlareLensError, match=r"2 of 3 rows were not held out .*1 inner, 1 train.*fold 1.*--include-training-rows"):
        read_predictions(path)
    frame = read_predictions(path, rows="any")
    assert frame.attrs["contaminated"] is True and frame["role"].tolist() == ["heldout", "train", "inner"]
    held = write(tmp_path, "held.csv", ROLES.splitlines()[0] + "\n" + ROLES.splitlines()[1] + "\n")
    assert read_predictions(held).attrs["contaminated"] is False
    with pytest.raises(FlareLensError, match="not inner-validation-block rows"):
        read_predictions(path, rows="inner")
    inner = write(tmp_path, "inner.csv", ROLES.splitlines()[0] + "\n" + ROLES.splitlines()[3] + "\n")
    assert read_predictions(inner, rows="inner")["role"].tolist() == ["inner"]


def test_roles_follow_from_the_model_fold_when_not_written(tmp_path):
    text = "timestamp,file,flare_prob,target,fold,model_fold\n2011-02-15T00:00:00Z,a,0.9,1,1,1\n2011-05-15T00:00:00Z,b,0.2,0,2,1\n"
    path = write(tmp_path, "old.csv", text)
    with pytest.raises(FlareLensError, match="1 of 2 rows were not held out"):
        read_predictions(path)
    assert read_predictions(path, rows="any")["role"].tolist() == ["heldout", "train"]
    # the study's files have no provenance: they are taken as held out
    assert read_predictions(write(tmp_path, "fold1_res.csv", STUDY_FOLD))["role"].eq("").all()


def test_write_then_read_round_trip_with_sidecar_and_calibrated_column(tmp_path):
    frame = pd.DataFrame({
        "timestamp": ["2011-02-15T00:00:00Z", "2011-02-15T01:00:00Z"], "file": ["a.jpg", "b.jpg"],
        "target": [1, 0], "goes_class": ["X2.2", ""], "fl_lon": [15.0, np.nan], "fl_lat": [-21.0, np.nan],
        "fl_start": ["2011-02-15T01:44:00Z", ""], "fold": [1, 1], "peak_flux": [2.2e-4, 0.0],
        "model_fold": [1, 1], "role": ["heldout", "heldout"],
        "flare_prob_calibrated": [0.8, 0.1], "flare_prob": [0.9, 0.2],
    })
    path = write_predictions(frame, tmp_path / "predictions.csv", {"checkpoint": "best.pt", "train_base_rate": 0.2})
    header = path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["timestamp", "file", "flare_prob", "flare_prob_calibrated"]
    assert header[-2:] == ["model_fold", "role"]
    assert json.loads((tmp_path / "predictions.meta.json").read_text())["train_base_rate"] == 0.2
    back = read_predictions(path)
    assert back.attrs["meta"]["checkpoint"] == "best.pt"
    assert back["flare_prob_calibrated"].tolist() == [0.8, 0.1]
    assert back["fl_start"].tolist() == ["2011-02-15T01:44:00Z", ""]
    # A table in memory is normalised exactly as the file it would be written to.
    mem = normalise(frame)
    pd.testing.assert_frame_equal(mem[list(back.columns)].drop(columns=["peak_flux"]), back.drop(columns=["peak_flux"]),
                                  check_dtype=False)
    assert mem["time"].iloc[1] == pd.Timestamp("2011-02-15 01:00", tz="UTC")


def test_nothing_non_finite_is_written(tmp_path):
    frame = pd.DataFrame({"timestamp": ["t"], "file": ["f"], "flare_prob": [float("nan")], "target": [0]})
    with pytest.raises(FlareLensError, match="not finite"):
        write_predictions(frame, tmp_path / "p.csv")
    with pytest.raises(FlareLensError, match="no predictions"):
        write_predictions(frame.iloc[:0], tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_study_class_flare_start_and_times_for_explain(tmp_path):
    frame = read_predictions(write(tmp_path, "x_class.csv", STUDY_X_CLASS))
    assert frame["fl_start"].tolist() == ["2011-02-15 01:44:00", "2014-02-25 00:39:00", ""]
    assert predictions.require_times(frame) is frame
    bad = normalise(pd.DataFrame({"timestamp": ["2011-01-01T00:00Z", "yesterday"], "flare_prob": [0.1, 0.2],
                                  "target": [0, 1]}), "mine.csv")
    with pytest.raises(FlareLensError, match=r"mine\.csv, line 3 \(data row 2\): cannot read a time"):
        predictions.require_times(bad)
    assert len(as_frames([bad, bad])) == 2

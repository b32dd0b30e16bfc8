"""Reading prediction files (ours and the original study's) and ``flarelens evaluate``."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.evaluate import (
    FLARELENS, STUDY, STUDY_CLASS, detect_format, evaluate_files, format_evaluation, read_predictions,
)

# Our predictions.csv: TP (0.9, 1), FN (0.3, 1), TP (0.5, 1: the threshold counts as positive),
# FP (0.6, 0), TN (0.1, 0), TP (0.7, 1) -> TP 3, FP 1, TN 1, FN 1.
OURS = """timestamp,file,flare_prob,target,goes_class,peak_flux,fl_lon,fl_lat,fold
2011-02-15T00:00:00Z,2011/02/15/HMI.m2011.02.15_00.00.00.jpg,0.9,1,X2.2,2.2e-4,15.1,-21,1
2011-02-15T01:00:00Z,2011/02/15/HMI.m2011.02.15_01.00.00.jpg,0.3,1,M1.0,1e-5,70,-20,1
2011-02-15T02:00:00Z,2011/02/15/HMI.m2011.02.15_02.00.00.jpg,0.5,1,m1,1e-5,70.5,-20,1
2011-02-15T03:00:00Z,2011/02/15/HMI.m2011.02.15_03.00.00.jpg,0.6,0,C1.0,1e-6,,,1
2011-02-15T04:00:00Z,2011/02/15/HMI.m2011.02.15_04.00.00.jpg,0.1,0,,0,,,1
2011-02-15T05:00:00Z,2011/02/15/HMI.m2011.02.15_05.00.00.jpg,0.7,1,M3.0,3e-5,,,1
"""

# The study's fold file: timestamp holds an absolute image path (or, in other releases, a time).
# TP (0.8, 1), FN (0.2, 1), FN (0.4999, 1), FP (0.55, 0), TN x3 -> TP 1, FP 1, TN 3, FN 2.
STUDY_FOLD = """timestamp,flare_prob,target
/scratch/u/hmi_jpgs_512/2011/01/01/HMI.m2011.01.01_00.00.00.jpg,0.8,1
/scratch/u/hmi_jpgs_512/2011/01/01/HMI.m2011.01.01_01.00.00.jpg,0.2,1
/scratch/u/hmi_jpgs_512/2011/01/01/HMI.m2011.01.01_02.00.00.jpg,0.4999,1
/scratch/u/hmi_jpgs_512/2011/01/01/HMI.m2011.01.01_03.00.00.jpg,0.55,0
/scratch/u/hmi_jpgs_512/2011/01/01/HMI.m2011.01.01_04.00.00.jpg,0.026611294597387314,0
2011-01-01 05:00:00,0.02867593616247177,0
2011-01-01 06:00:00,0.0321769043803215,0
"""

STUDY_X_CLASS = """timestamp,flare_prob,goes_class,fl_location,flare_start
2011/02/15/HMI.m2011.02.15_00.00.00.jpg,0.7600009441375732,X2.2,"(15.115929105638052, -21)",2011-02-15 01:44:00
2014/02/24/HMI.m2014.02.24_01.00.00.jpg,0.4731437265872955,X4.9,"(-82, -12)",2014-02-25 00:39:00
2013/05/12/HMI.m2013.05.12_02.00.00.jpg,0.4,NF,unk,unk
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ evaluate


def test_evaluate_files_ours_and_studys(tmp_path):
    ours, study = write(tmp_path, "pred.csv", OURS), write(tmp_path, "fold1_res.csv", STUDY_FOLD)
    result = evaluate_files([ours, study])
    a, b = result["files"]
    assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (3, 1, 1, 1)
    assert a["tss"] == pytest.approx(0.25) and a["hss"] == pytest.approx(0.25)
    assert (b["tp"], b["fp"], b["tn"], b["fn"]) == (1, 1, 3, 2)
    # TSS = 1/3 - 1/4; HSS = 2(1·3 - 2·1) / (3·5 + 2·4)
    assert b["tss"] == pytest.approx(1 / 3 - 1 / 4) and b["hss"] == pytest.approx(2 / 23)
    assert result["mean"]["tss"] == pytest.approx((0.25 + 1 / 12) / 2)
    assert result["std"]["tss"] == pytest.approx(abs(0.25 - 1 / 12) / 2)  # population std of two values
    assert result["std"]["hss"] == pytest.approx(abs(0.25 - 2 / 23) / 2)
    assert result["std_kind"] == "population"
    sample = evaluate_files([ours, study], ddof=1)
    assert sample["std"]["tss"] == pytest.approx(abs(0.25 - 1 / 12) / math.sqrt(2)) and sample["std_kind"] == "sample"


def test_evaluate_threshold_moves_counts(tmp_path):
    ours = write(tmp_path, "pred.csv", OURS)
    f = evaluate_files([ours], threshold=0.65)["files"][0]
    assert (f["tp"], f["fp"], f["tn"], f["fn"]) == (2, 0, 2, 2)
    with pytest.raises(FlareLensError, match="not a probability"):
        evaluate_files([ours], threshold=1.5)


def test_evaluate_rejects_per_class_file(tmp_path):
    with pytest.raises(FlareLensError, match=r"x_class\.csv: has no target column"):
        evaluate_files([write(tmp_path, "x_class.csv", STUDY_X_CLASS)])


def test_format_evaluation_table(tmp_path):
    result = evaluate_files([write(tmp_path, "pred.csv", OURS), write(tmp_path, "fold1_res.csv", STUDY_FOLD)])
    text = format_evaluation(result)
    lines = text.splitlines()
    assert lines[0].split() == ["file", "TP", "FP", "TN", "FN", "TSS", "HSS"]
    assert lines[2].split()[1:] == ["3", "1", "1", "1", "0.2500", "0.2500"]
    assert lines[-2].split() == ["mean", f"{result['mean']['tss']:.4f}", f"{result['mean']['hss']:.4f}"]
    assert lines[-1].startswith("std (population)")


# ------------------------------------------------------------------ CLI


def test_cli_evaluate_json_shape(tmp_path, capsys):
    ours, study = write(tmp_path, "pred.csv", OURS), write(tmp_path, "fold1_res.csv", STUDY_FOLD)
    assert main(["evaluate", str(ours), str(study), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"files", "mean", "std", "std_kind"}
    assert [set(f) for f in out["files"]] == [{"path", "tp", "fp", "tn", "fn", "tss", "hss"}] * 2
    assert [f["path"] for f in out["files"]] == [str(ours), str(study)]
    assert set(out["mean"]) == set(out["std"]) == {"tss", "hss"}
    assert out == evaluate_files([ours, study])


def test_cli_evaluate_table_and_threshold(tmp_path, capsys):
    ours = write(tmp_path, "pred.csv", OURS)
    assert main(["evaluate", str(ours), "--threshold", "0.65", "--std", "sample"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(str(ours)))
    assert row.split()[1:5] == ["2", "0", "2", "2"]
    assert "std (sample)" in out


@pytest.mark.parametrize(
    "text, extra, message",
    [
        ("timestamp,flare_prob,target\na,0.2,0\nb,abc,1\n", [], "line 3"),
        ("timestamp,flare_prob,goes_class,fl_location\na,0.2,X1.0,unk\n", [], "no target column"),
        ("timestamp,flare_prob,target\na,0.2,0\n", ["--threshold", "2"], "threshold"),
        (None, [], "no such prediction file"),
    ],
)
def test_cli_evaluate_bad_input_one_line_exit_1(tmp_path, capsys, text, extra, message):
    path = tmp_path / "p.csv"
    if text is not None:
        path.write_text(text)
    assert main(["evaluate", str(path), *extra]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("flarelens evaluate: error:") and message in err


def test_study_sized_file_is_read_quickly(tmp_path):
    # A fold of the study has ~16,000 hourly rows; reading and scoring stays well under a second or so.
    rng = np.random.default_rng(0)
    n = 16000
    times = pd.date_range("2011-01-01", periods=n, freq="h")
    frame = pd.DataFrame({
        "timestamp": [f"/scratch/x/{t:%Y/%m/%d}/HMI.m{t:%Y.%m.%d_%H.%M.%S}.jpg" for t in times],
        "flare_prob": rng.random(n), "target": (rng.random(n) < 0.15).astype(int),
    })
    path = tmp_path / "fold.csv"
    frame.to_csv(path, index=False)
    f = evaluate_files([path])["files"][0]
    y, p = frame["target"].to_numpy(), frame["flare_prob"].to_numpy()
    assert f["tp"] == int(((p >= 0.5) & (y == 1)).sum()) and f["tn"] == int(((p < 0.5) & (y == 0)).sum())

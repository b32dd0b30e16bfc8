"""Reading prediction files (ours and the original study's) and ``flarelens evaluate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from flarelens import metrics
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.evaluate import evaluate_files, format_evaluation
from flarelens.predictions import write_predictions

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

    def no_nan(constant):
        raise AssertionError(f"{constant} in the JSON: undefined scores must be null")

    out = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    assert {"files", "mean", "std", "std_kind"} <= set(out)  # the keys of before, kept
    assert {"pooled", "baselines", "bootstrap", "threshold", "contaminated", "warnings"} <= set(out)
    new = {"n", "positives", "pod", "far", "brier", "bss", "auc", "ci", "roc", "threshold_curve", "reliability",
           "climatology", "inner_threshold", "calibrated", "model_fold", "contaminated", "warnings"}
    assert [set(f) for f in out["files"]] == [{"path", "tp", "fp", "tn", "fn", "tss", "hss"} | new] * 2
    assert set(out["pooled"]) == {"path", "tp", "fp", "tn", "fn", "tss", "hss"} | new
    for name in ("persistence", "climatology"):
        group = out["baselines"][name]
        assert {"files", "mean", "std", "pooled"} <= set(group)
        assert all(new - {"training"} <= set(f) for f in group["files"])
    assert set(out["baselines"]["persistence"]["files"][0]["difference"]) == {"tss", "hss", "bss", "auc", "ci"}
    assert set(out["files"][0]["ci"]) == {"tss", "hss", "bss", "auc"}
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


# ------------------------------------------------------------------ probabilistic skill, baselines, intervals

# The study's VGG16 fold counts as printed by its result notebook (TP, FP, TN, FN); fold k = quarter k.
STUDY_COUNTS = {1: (1777, 2319, 10135, 557), 2: (1237, 3278, 10577, 375), 3: (1335, 2581, 11727, 1029),
                4: (2073, 3373, 10659, 617)}


def study_fold_file(tmp_path, fold: int, scale: int = 1):
    """A file in the study's fold format giving its printed confusion matrix (divided by
    ``scale``): hourly images of quarter ``fold`` of 2010-2017 (inside the bundled catalog),
    outcomes shuffled over them."""
    tp, fp, tn, fn = (n // scale for n in STUDY_COUNTS[fold])
    times = []
    for year in range(2010, 2018):
        start = pd.Timestamp(year=year, month=3 * fold - 2, day=5 if year == 2010 else 1, tz="UTC")
        times.append(pd.date_range(start, start + pd.DateOffset(months=3) - pd.Timedelta("1h"), freq="h"))
    times = pd.DatetimeIndex(np.concatenate([t.to_numpy() for t in times]))[: tp + fp + tn + fn]
    rng = np.random.default_rng(fold)
    prob = np.concatenate([rng.uniform(0.5, 1, tp), rng.uniform(0.5, 1, fp), rng.uniform(0, 0.5, tn), rng.uniform(0, 0.5, fn)])
    target = np.concatenate([np.ones(tp), np.zeros(fp), np.zeros(tn), np.ones(fn)]).astype(int)
    order = rng.permutation(len(prob))
    frame = pd.DataFrame({
        "timestamp": [f"/scratch/hmi_jpgs_512/{t:%Y/%m/%d}/HMI.m{t:%Y.%m.%d_%H.%M.%S}.jpg" for t in times],
        "flare_prob": prob[order], "target": target[order],
    })
    path = tmp_path / f"fold{fold}_res.csv"
    frame.to_csv(path, index=False)
    return path


def test_study_fold_files_give_the_published_scores(tmp_path, capsys):
    paths = [study_fold_file(tmp_path, k) for k in (1, 2, 3, 4)]
    assert main(["evaluate", *map(str, paths), "--resamples", "0", "--no-baselines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mean = next(line for line in lines if line.startswith("mean"))
    tss = [tp / (tp + fn) - fp / (fp + tn) for tp, fp, tn, fn in STUDY_COUNTS.values()]
    hss = [2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)) for tp, fp, tn, fn in STUDY_COUNTS.values()]
    # the study's published 0.51 and 0.35, unchanged
    assert mean.split()[1:] == [f"{np.mean(tss):.4f}", f"{np.mean(hss):.4f}"] and round(np.mean(tss), 2) == 0.51


def test_study_fold_files_get_intervals_and_persistence_beside(tmp_path, capsys):
    # An eighth of each fold (the first quarters of 2010): the full files take ~15 s here.
    paths = [study_fold_file(tmp_path, k, scale=8) for k in (1, 2, 3, 4)]
    assert main(["evaluate", *map(str, paths), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    for path in paths:
        block = out.split(f"{path}: ")[1]
        model_row = next(line for line in block.splitlines() if line.strip().startswith("model "))
        assert model_row.count("[") == 4  # TSS, HSS, BSS, AUC each with its interval
        assert any(line.strip().startswith("persistence") and line.count("[") == 4 for line in block.splitlines())
        assert any(line.strip().startswith("model - persistence") for line in block.splitlines())
    assert f"pooled: {sum(n // 8 for counts in STUDY_COUNTS.values() for n in counts)} instances" in out

    result = evaluate_files(paths, resamples=100)
    persistence = result["baselines"]["persistence"]
    for f, p in zip(result["files"], persistence["files"]):
        assert p["training"]["source"] == "other files"  # the other three quarters
        assert p["n"] == f["n"] and f["climatology"]["source"] == "scored file"
        assert p["difference"]["tss"] == pytest.approx(f["tss"] - p["tss"])
        low, high = f["ci"]["tss"]
        assert low <= f["tss"] <= high
    tp, fp, tn, fn = (n // 8 for n in STUDY_COUNTS[1])
    assert result["files"][0]["tss"] == pytest.approx(tp / (tp + fn) - fp / (fp + tn), rel=1e-12)


def _run_dir(tmp_path, scored_prob, inner_prob, base_rate=0.25):
    """A run directory with held-out predictions, inner-block predictions and their sidecars."""
    run = tmp_path / "fold1"
    run.mkdir()
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0])
    for name, prob, role in (("predictions.csv", scored_prob, "heldout"), ("inner_predictions.csv", inner_prob, "inner")):
        month = 2 if role == "heldout" else 5
        frame = pd.DataFrame({
            "timestamp": [f"2011-{month:02d}-{10 + i:02d}T00:00:00Z" for i in range(len(y))],
            "file": [f"f{i}.jpg" for i in range(len(y))], "flare_prob": prob, "target": y,
            "fold": 1 if role == "heldout" else 2, "model_fold": 1, "role": role,
        })
        write_predictions(frame, run / name, {"checkpoint": "best.pt", "model_fold": 1, "train_base_rate": base_rate})
    return run


def test_threshold_is_chosen_on_the_inner_block_and_applied_to_the_held_out_fold(tmp_path):
    #              flares at 0, 1, 5
    scored = [0.35, 0.45, 0.40, 0.10, 0.05, 0.80, 0.20, 0.30]  # best TSS on itself: 0.35
    inner = [0.90, 0.70, 0.65, 0.10, 0.05, 0.75, 0.20, 0.30]   # best TSS on the inner block: 0.66-0.70 -> ties
    run = _run_dir(tmp_path, scored, inner)
    result = evaluate_files([run / "predictions.csv"], resamples=0, baselines=False)
    chosen = result["files"][0]["inner_threshold"]
    y = [1, 1, 0, 0, 0, 1, 0, 0]
    assert chosen["threshold"] == metrics.best_threshold(y, inner)
    assert chosen["threshold"] != metrics.best_threshold(y, scored)  # never chosen on the scored fold
    c = metrics.confusion(y, scored, chosen["threshold"])
    assert (chosen["tp"], chosen["fp"], chosen["tn"], chosen["fn"], chosen["tss"]) == (c.tp, c.fp, c.tn, c.fn, c.tss)
    assert chosen["source"] == str(run / "inner_predictions.csv")
    # the run's training base rate is the BSS reference
    assert result["files"][0]["climatology"] == {"rate": 0.25, "source": "run"}
    brier = np.mean((np.array(scored) - y) ** 2)
    assert result["files"][0]["bss"] == pytest.approx(1 - brier / np.mean((0.25 - np.array(y)) ** 2))
    # inner-block predictions are not scored as if held out
    with pytest.raises(FlareLensError, match="not held out"):
        evaluate_files([run / "inner_predictions.csv"], resamples=0)


def test_file_without_flares_is_said_so(tmp_path, capsys):
    path = write(tmp_path, "quiet.csv", "timestamp,flare_prob,target\n2011-03-01T00:00:00Z,0.7,0\n2011-03-01T01:00:00Z,0.1,0\n")
    result = evaluate_files([path], resamples=0, baselines=False)
    assert any("no flaring instance" in w for w in result["warnings"])
    assert result["files"][0]["auc"] is None
    assert main(["evaluate", str(path), "--resamples", "0", "--no-baselines"]) == 0
    assert "warning: " in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [(["--threshold", "nan"], "threshold"), (["--threshold", "1"], "threshold"),
                                            (["--threshold", "0"], "threshold"), (["--resamples", "-1"], "resamples")])
def test_cli_evaluate_nonsense_settings(tmp_path, capsys, extra, message):
    path = write(tmp_path, "pred.csv", OURS)
    assert main(["evaluate", str(path), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_header_only_file_is_refused_not_counted_as_zero(tmp_path, capsys):
    ours = write(tmp_path, "pred.csv", OURS)
    empty = write(tmp_path, "empty.csv", "timestamp,flare_prob,target\n")
    assert main(["evaluate", str(ours), str(empty)]) == 1
    assert "empty.csv: has a header but no rows" in capsys.readouterr().err

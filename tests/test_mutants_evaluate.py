"""flarelens.evaluate: the cases mutation testing found unguarded (see docs/mutation.md).

Calibrated probabilities and their inner-block threshold, the pooled inner-block counts,
persistence trained from the run's labels or from the other files (never the scored file),
the baselines' error and catalog name, contaminated rows, files without times, a one-row
file, the model fold from the sidecar, a checkpoint mismatch, ``evaluate_frame`` and the
skill table's rows. Small synthetic files in 2009 with a hand-made catalog (the bundled one
starts in 2010, so a test that silently used it would fail).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from flarelens import evaluate, metrics
from flarelens.catalog import read_catalog
from flarelens.errors import FlareLensError
from flarelens.evaluate import evaluate_files, format_skill
from flarelens.predictions import as_frames, read_predictions, write_predictions

# M1.5 on 5 Jan and X1.0 on 10 Jul are the only flares >= M1.0. Span: 2009-01-05 00:00 to
# 2009-10-01 00:00 (last start + 24 h).
CATALOG = """start,peak,end,class
2009-01-05 00:00,2009-01-05 00:10,2009-01-05 00:20,M1.5
2009-02-01 12:00,2009-02-01 12:10,2009-02-01 12:20,C3.0
2009-07-10 00:00,2009-07-10 00:10,2009-07-10 00:20,X1.0
2009-09-30 00:00,2009-09-30 00:10,2009-09-30 00:20,B5.0
"""

# Held-out fold 1 (Q1) and fold 3 (Q3) of 2009. Persistence (a flare >= M1.0 in the 24 h up
# to t) is "yes" for the first two instances of each file and "no" for the others.
TIMES = {
    1: ["2009-01-05T06:00:00Z", "2009-01-05T18:00:00Z", "2009-01-06T06:00:00Z", "2009-01-10T00:00:00Z",
        "2009-02-01T18:00:00Z", "2009-02-15T00:00:00Z", "2009-03-01T00:00:00Z", "2009-03-20T00:00:00Z"],
    3: ["2009-07-10T06:00:00Z", "2009-07-10T20:00:00Z", "2009-07-11T12:00:00Z", "2009-07-20T00:00:00Z",
        "2009-08-01T00:00:00Z", "2009-08-15T00:00:00Z", "2009-09-01T00:00:00Z", "2009-09-20T00:00:00Z"],
}
STATE = [True, True, False, False, False, False, False, False]
Y = {1: [1, 1, 0, 0, 1, 0, 0, 0], 3: [1, 0, 1, 0, 0, 0, 1, 0]}
PROB = {1: [0.9, 0.6, 0.3, 0.2, 0.4, 0.7, 0.1, 0.05], 3: [0.8, 0.55, 0.35, 0.2, 0.65, 0.1, 0.45, 0.15]}
CAL = {1: [0.7, 0.45, 0.2, 0.1, 0.55, 0.3, 0.05, 0.02], 3: [0.6, 0.52, 0.6, 0.1, 0.3, 0.05, 0.25, 0.1]}
# Inner-validation blocks (other quarters), different per model so the pooled counts differ.
INNER_Y = {1: [1, 1, 0, 0, 0, 1, 0, 0], 3: [0, 1, 1, 0, 1, 0, 0, 0]}
INNER_PROB = {1: [0.9, 0.7, 0.65, 0.1, 0.05, 0.75, 0.2, 0.3], 3: [0.2, 0.6, 0.35, 0.3, 0.5, 0.1, 0.4, 0.05]}
INNER_CAL = {1: [0.8, 0.4, 0.5, 0.1, 0.05, 0.6, 0.2, 0.3], 3: [0.3, 0.7, 0.45, 0.2, 0.55, 0.6, 0.1, 0.05]}


@pytest.fixture()
def catalog(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(CATALOG)
    return read_catalog(path)


def _table(times, prob, target, **columns):
    n = len(times)
    frame = pd.DataFrame({"timestamp": times, "file": [f"f{i}.jpg" for i in range(n)], "flare_prob": prob,
                          "target": target})
    for name, value in columns.items():
        frame[name] = value
    return frame


def _run(tmp_path, fold, checkpoint=None, with_inner=True, calibrated=True, base_rate=0.25, **meta):
    """A run directory of model ``fold``: predictions.csv (held out) and inner_predictions.csv."""
    run = tmp_path / f"fold{fold}"
    run.mkdir()
    meta = {"checkpoint": checkpoint or f"fold{fold}/best.pt", "model_fold": fold, "train_base_rate": base_rate, **meta}
    extra = {"flare_prob_calibrated": CAL[fold]} if calibrated else {}
    write_predictions(_table(TIMES[fold], PROB[fold], Y[fold], fold=fold, model_fold=fold, role="heldout", **extra),
                      run / "predictions.csv", meta)
    if with_inner:
        inner_times = [f"2009-{fold + 3:02d}-{10 + i:02d}T00:00:00Z" for i in range(8)]
        extra = {"flare_prob_calibrated": INNER_CAL[fold]} if calibrated else {}
        write_predictions(_table(inner_times, INNER_PROB[fold], INNER_Y[fold], fold=fold % 4 + 1, model_fold=fold,
                                 role="inner", **extra), run / "inner_predictions.csv", meta)
    return run


def _counts(y, p, t):
    """TP, FP, TN, FN with ``p >= t`` as the yes forecast (the threshold counts as yes)."""
    y, yes = np.asarray(y) == 1, np.asarray(p) >= t
    return int((y & yes).sum()), int((~y & yes).sum()), int((~y & ~yes).sum()), int((y & ~yes).sum())


def _tss_hss(tp, fp, tn, fn):
    tss = tp / (tp + fn) - fp / (fp + tn)
    hss = 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    return tss, hss


# ------------------------------------------------------------------ calibrated, inner threshold, pooled


def test_calibrated_scores_and_inner_thresholds_per_file_and_pooled(tmp_path, catalog):
    runs = [_run(tmp_path, 1), _run(tmp_path, 3)]
    result = evaluate_files([r / "predictions.csv" for r in runs], catalog=catalog, resamples=0)
    pooled_model, pooled_cal = np.zeros(4, int), np.zeros(4, int)
    for fold, run, entry in zip((1, 3), runs, result["files"]):
        # each file's calibrated column is scored at 0.5, not the raw one and not another file's
        cal = entry["calibrated"]
        assert (cal["tp"], cal["fp"], cal["tn"], cal["fn"]) == _counts(Y[fold], CAL[fold], 0.5)
        assert cal["brier"] == pytest.approx(np.mean((np.array(CAL[fold]) - Y[fold]) ** 2))
        assert cal["ci"] is None  # no resamples: no intervals, for the calibrated model too
        # thresholds chosen on the inner block, raw and calibrated each on its own column
        for chosen, inner_p, scored_p, pooled in ((entry["inner_threshold"], INNER_PROB, PROB, pooled_model),
                                                  (cal["inner_threshold"], INNER_CAL, CAL, pooled_cal)):
            t = metrics.best_threshold(INNER_Y[fold], inner_p[fold])
            counts = _counts(Y[fold], scored_p[fold], t)
            assert chosen["threshold"] == t and chosen["source"] == str(run / "inner_predictions.csv")
            assert (chosen["tp"], chosen["fp"], chosen["tn"], chosen["fn"]) == counts
            assert (chosen["tss"], chosen["hss"]) == pytest.approx(_tss_hss(*counts))
            pooled += counts
    assert result["files"][0]["calibrated"]["inner_threshold"]["threshold"] != result["files"][0]["inner_threshold"]["threshold"]
    # pooled: the counts of each file at its own threshold, summed over all files
    for chosen, counts in ((result["pooled"]["inner_threshold"], pooled_model),
                           (result["pooled"]["calibrated"]["inner_threshold"], pooled_cal)):
        assert chosen["threshold"] is None and chosen["source"] == "per file"
        assert [chosen[k] for k in ("tp", "fp", "tn", "fn")] == counts.tolist()
        assert (chosen["tss"], chosen["hss"]) == pytest.approx(_tss_hss(*counts))
    assert result["pooled"]["calibrated"]["tp"] == sum(_counts(Y[k], CAL[k], 0.5)[0] for k in (1, 3))
    assert result["pooled"]["climatology"] == {"rate": None, "source": "per file"}
    assert result["files"][0]["climatology"] == {"rate": 0.25, "source": "run"}


def test_skill_table_shows_calibrated_rows_and_inner_thresholds(tmp_path, catalog):
    runs = [_run(tmp_path, 1), _run(tmp_path, 3)]
    result = evaluate_files([r / "predictions.csv" for r in runs], catalog=catalog, resamples=0)
    text = format_skill(result)
    lines = text.splitlines()
    head = next(line for line in lines if line.strip().startswith("forecast"))
    assert head.split() == ["forecast", "TSS", "HSS", "BSS", "AUC", "Brier"]
    assert sum(line.strip().startswith("model calibrated") for line in lines) == 3  # two files and pooled
    assert "intervals" not in lines[0]  # no resamples: no interval header
    f = result["files"][0]
    c = f["inner_threshold"]
    assert (f"  inner-block threshold: TSS {c['tss']:.4f}, HSS {c['hss']:.4f} "
            f"(threshold {c['threshold']:g} chosen on {runs[0] / 'inner_predictions.csv'})") in lines
    c = f["calibrated"]["inner_threshold"]
    assert (f"  inner-block threshold (calibrated): TSS {c['tss']:.4f}, HSS {c['hss']:.4f} "
            f"(threshold {c['threshold']:g} chosen on {runs[0] / 'inner_predictions.csv'})") in lines
    p = result["pooled"]["inner_threshold"]
    assert f"  inner-block threshold: TSS {p['tss']:.4f}, HSS {p['hss']:.4f} (each file's inner-block threshold)" in lines
    # model - persistence: the differences of the scores, signed, without intervals
    for entry, pers in zip(result["files"], result["baselines"]["persistence"]["files"]):
        block = text.split(f"{entry['path']}: ")[1]
        row = next(line for line in block.splitlines() if line.strip().startswith("model - persistence"))
        expected = [f"{entry[s] - pers[s]:+.4f}" for s in ("tss", "hss", "bss", "auc")]
        assert row.split() == ["model", "-", "persistence", *expected]
    assert "persistence: a flare >= M1.0 started in the 24h up to t (table)" in text


# ------------------------------------------------------------------ baselines


def test_persistence_trains_on_the_other_files_and_uses_the_given_catalog(tmp_path, catalog):
    runs = [_run(tmp_path, 1, with_inner=False), _run(tmp_path, 3, with_inner=False)]
    result = evaluate_files([r / "predictions.csv" for r in runs], catalog=catalog, resamples=0)
    assert result["baselines"]["catalog"] == "table" and result["baselines"]["window"] == "24h"
    for fold, other, entry in zip((1, 3), (3, 1), result["baselines"]["persistence"]["files"]):
        # trained on the other file (other quarter), whose first two instances follow a big flare
        y_other = np.array(Y[other])
        assert entry["training"] == {"source": "other files", "n": 8, "rate_yes": y_other[:2].mean(),
                                     "rate_no": y_other[2:].mean()}
        assert (entry["tp"], entry["fp"], entry["tn"], entry["fn"]) == _counts(Y[fold], STATE, True)
        assert entry["brier"] == pytest.approx(np.mean((np.where(STATE, y_other[:2].mean(), y_other[2:].mean()) - Y[fold]) ** 2))
    # climatology: the run's training base rate for every instance
    clim = result["baselines"]["climatology"]["files"][0]
    assert clim["brier"] == pytest.approx(np.mean((0.25 - np.array(Y[1])) ** 2)) and clim["bss"] == pytest.approx(0.0)


def test_persistence_trains_on_the_runs_labels_by_their_fold_column(tmp_path, catalog):
    # labels.csv of the run (named in the sidecar): rows of folds other than the model's and
    # inside the catalog's span train persistence. Its fold column decides, even where it is
    # not the quarter (row 1: a Q1 time in fold 2); times with mixed UTC offsets are read as UTC.
    labels = tmp_path / "labels.csv"
    pd.DataFrame({
        "timestamp": ["2009-01-05T12:00:00+02:00", "2009-07-10T12:00:00Z", "2009-07-12T00:00:00Z",
                      "2009-08-01T12:00:00Z", "2009-08-02T00:00:00Z",
                      "2009-01-06T00:00:00Z", "2009-03-01T00:00:00Z", "2008-06-01T00:00:00Z"],
        "file": [f"l{i}.jpg" for i in range(8)],
        "target": [1, 1, 0, 0, 1, 0, 1, 1],
        "fold": [2, 3, 3, 3, 3, 1, 1, 2],
    }).to_csv(labels, index=False)
    run = _run(tmp_path, 1, with_inner=False, calibrated=False, labels=str(labels))
    frame = read_predictions(run / "predictions.csv")
    forecasts, info = evaluate.baseline_forecasts([frame], [np.full(8, 0.25)], catalog)
    # in state yes: rows 0, 1 (both flared); no: rows 2, 3, 4 (one flared)
    assert info == [{"source": "run", "n": 5, "rate_yes": 1.0, "rate_no": pytest.approx(1 / 3)}]
    assert forecasts["persistence"][0].prob.tolist() == pytest.approx(np.where(STATE, 1.0, 1 / 3))
    assert forecasts["persistence"][0].yes.tolist() == STATE
    # the same labels given as a table
    _, info = evaluate.baseline_forecasts([frame], [np.full(8, 0.25)], catalog, labels=pd.read_csv(labels))
    assert info[0]["source"] == "run" and info[0]["n"] == 5


def test_scored_file_never_trains_its_own_persistence(tmp_path, catalog):
    # A custom split: file A's fold 1 holds a Q2 time. Its own rows must not train its
    # persistence, although that time lies outside its fold's quarters.
    a = _table(["2009-01-05T06:00:00Z", "2009-04-02T00:00:00Z"], [0.6, 0.2], [1, 0], fold=1)
    b = _table(TIMES[3][:4], PROB[3][:4], Y[3][:4], fold=3)
    frames = [as_frames(t)[0] for t in (a, b)]
    _, info = evaluate.baseline_forecasts(frames, [np.full(2, 0.5), np.full(4, 0.5)], catalog)
    assert [i["source"] for i in info] == ["other files", "other files"]
    assert info[0]["n"] == 4 and info[1]["n"] == 2


def test_one_instance_file_gets_the_climatological_rate(tmp_path, catalog):
    path = tmp_path / "one.csv"
    path.write_text("timestamp,flare_prob,target\n2009-01-05T06:00:00Z,0.8,1\n")
    result = evaluate_files([path], catalog=catalog, resamples=0)
    clim = result["baselines"]["climatology"]["files"][0]
    # no run: the reference is the file's own rate, 1.0; climatology forecasts it
    assert result["files"][0]["climatology"] == {"rate": 1.0, "source": "scored file"}
    assert clim["brier"] == 0.0 and clim["n"] == 1


def test_baselines_that_cannot_be_made_are_reported_not_raised(tmp_path, catalog):
    # Instances after the catalog's span: no persistence, but the model is still scored with intervals.
    path = tmp_path / "late.csv"
    path.write_text("timestamp,flare_prob,target\n2009-11-01T00:00:00Z,0.8,1\n2009-11-02T00:00:00Z,0.3,0\n"
                    "2009-11-03T00:00:00Z,0.6,0\n2009-11-04T00:00:00Z,0.1,1\n")
    result = evaluate_files([path], catalog=catalog, resamples=20, seed=3)
    message = ("the catalog covers 2009-01-05 00:00 to 2009-10-01 00:00 but the instances run from "
               "2009-11-01 00:00 to 2009-11-04 00:00; give a catalog covering them (--catalog)")
    assert result["baselines"] == {"error": message}
    assert f"baselines: {message}" in result["warnings"]
    assert result["files"][0]["ci"]["tss"] is not None
    lines = format_skill(result).splitlines()
    assert lines[0] == "95 % intervals: block bootstrap over 1-day blocks, 20 resamples, seed 3"
    assert f"baselines not computed: {message}" in lines
    assert not any(line.strip().startswith("persistence") for line in lines)


def test_bundled_catalog_is_named(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text("timestamp,flare_prob,target\n2011-02-15T00:00:00Z,0.8,1\n2011-02-15T01:00:00Z,0.3,0\n")
    result = evaluate_files([path], resamples=0)
    assert result["baselines"]["catalog"] == "bundled GOES SC24"


# ------------------------------------------------------------------ rows, names, times, warnings


def test_training_rows_are_scored_only_when_asked_and_marked(tmp_path, caplog):
    path = tmp_path / "predictions.csv"
    write_predictions(_table(TIMES[1], PROB[1], Y[1], fold=1, model_fold=1,
                             role=["heldout"] * 6 + ["train"] * 2), path)
    with pytest.raises(FlareLensError, match="2 of 8 rows were not held out"):
        evaluate_files([path], resamples=0, baselines=False)
    with caplog.at_level(logging.WARNING, logger="flarelens.evaluate"):
        result = evaluate_files([path], resamples=0, baselines=False, include_training_rows=True)
    note = f"{path}: CONTAMINATED: rows that were not held out from the model are scored"
    assert result["files"][0]["contaminated"] is True and result["contaminated"] is True
    assert result["files"][0]["n"] == 8 and note in result["warnings"]
    assert note in [r.getMessage() for r in caplog.records if r.name == "flarelens.evaluate"]


def test_tables_are_named_by_their_path():
    table = _table(TIMES[1], PROB[1], Y[1])
    table.attrs["path"] = "my_fold1.csv"
    result = evaluate_files([table], resamples=0, baselines=False)
    assert result["files"][0]["path"] == "my_fold1.csv"
    assert result["files"][0]["contaminated"] is False


def test_instances_without_time_get_no_intervals_and_say_why(tmp_path):
    path = tmp_path / "fold1_res.csv"
    path.write_text("timestamp,flare_prob,target\nimg_a.jpg,0.8,1\nimg_b.jpg,0.3,0\n2011-01-01 05:00:00,0.6,0\n")
    result = evaluate_files([path], resamples=20, baselines=False)
    assert result["files"][0]["ci"] is None and result["pooled"]["ci"] is None
    assert "intervals: some instances have no time, so days cannot be resampled; no intervals" in result["warnings"]
    assert (result["files"][0]["tp"], result["files"][0]["fp"]) == (1, 1)


# ------------------------------------------------------------------ the model that scored a file


def test_model_fold_from_the_sidecar_when_the_file_has_none():
    for fold in (1, 2, 3, 4):
        frame = pd.DataFrame({"model_fold": pd.array([pd.NA, pd.NA], dtype="Int64")})
        frame.attrs["meta"] = {"model_fold": fold}
        assert evaluate.model_fold_of(frame) == fold
    frame = pd.DataFrame({"x": [1]})
    frame.attrs["meta"] = {"model_fold": 5}
    assert evaluate.model_fold_of(frame) is None


def test_inner_block_given_as_a_path_string(tmp_path):
    run = _run(tmp_path, 1)
    elsewhere = tmp_path / "scored"
    elsewhere.mkdir()
    scored = elsewhere / "predictions.csv"
    scored.write_bytes((run / "predictions.csv").read_bytes())
    result = evaluate_files([scored], inner=str(run / "inner_predictions.csv"), resamples=0, baselines=False)
    chosen = result["files"][0]["inner_threshold"]
    assert chosen["source"] == str(run / "inner_predictions.csv")
    assert chosen["threshold"] == metrics.best_threshold(INNER_Y[1], INNER_PROB[1])


def test_inner_block_of_another_checkpoint_is_refused(tmp_path):
    run = _run(tmp_path, 1, checkpoint="a.pt")
    other = _run(tmp_path, 3, checkpoint="b.pt")
    # same fold recorded, different checkpoint: refused, naming both
    meta = {"checkpoint": "b.pt", "model_fold": 1, "train_base_rate": 0.25}
    write_predictions(read_predictions(other / "inner_predictions.csv", rows="inner").drop(columns=["model_fold"])
                      .assign(model_fold=1), other / "inner_predictions.csv", meta)
    with pytest.raises(FlareLensError, match=r"inner-block predictions of another model \(fold 1, b\.pt\) than .*"
                                             r"predictions\.csv \(fold 1, a\.pt\); predict both with the same checkpoint"):
        evaluate_files([run / "predictions.csv"], inner=other / "inner_predictions.csv", resamples=0, baselines=False)


# ------------------------------------------------------------------ evaluate_frame


def test_evaluate_frame_counts_at_the_given_threshold(tmp_path):
    frame = read_predictions(_run(tmp_path, 1, with_inner=False) / "predictions.csv")
    for t in (0.5, 0.65, 0.05):
        c = evaluate.evaluate_frame(frame, t)
        assert (c.tp, c.fp, c.tn, c.fn) == _counts(Y[1], PROB[1], t)
    study_class = tmp_path / "X_class.csv"
    study_class.write_text("timestamp,flare_prob,goes_class,fl_location,flare_start\n"
                           "2011/02/15/HMI.m2011.02.15_00.00.00.jpg,0.76,X2.2,\"(15, -21)\",2011-02-15 01:44:00\n")
    with pytest.raises(FlareLensError, match=r"X_class\.csv: has no target column \(study-class format\); skill "
                                             r"scores need targets"):
        evaluate.evaluate_frame(read_predictions(study_class))

"""flarelens calibrate: a monotone map fitted on the inner block, written beside flare_prob, scored by evaluate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flarelens import calibrate, metrics
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.evaluate import evaluate_files
from flarelens.predictions import CALIBRATED, read_predictions, write_predictions


def test_isotonic_fit_by_hand():
    # Pool-adjacent-violators: (0.1, 0), (0.2, 1), (0.3, 0), (0.4, 1) -> 0, 0.5, 0.5, 1
    cal = calibrate.fit([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4])
    assert cal["x"] == [0.1, 0.2, 0.3, 0.4] and cal["y"] == pytest.approx([0, 0.5, 0.5, 1])
    # equal probabilities get one value (the mean of their targets), and the map is applied linearly, clipped
    cal = calibrate.fit([0, 1, 1, 1], [0.2, 0.2, 0.6, 0.6])
    assert cal["y"] == pytest.approx([0.5, 1.0])
    assert calibrate.apply(cal, [0.0, 0.2, 0.4, 0.9]).tolist() == pytest.approx([0.5, 0.5, 0.75, 1.0])
    # a violation pooled by instance count: three flares at 0.2, one non-flare at 0.6 -> 3/4 for both
    assert calibrate.fit([1, 1, 1, 0], [0.2, 0.2, 0.2, 0.6])["y"] == pytest.approx([0.75, 0.75])


def test_temperature_scaling_is_monotone_and_improves_an_overconfident_model():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(float)
    logit = (y - 0.5) * 1.0 + rng.normal(0, 1, y.size)
    p = 1 / (1 + np.exp(-4 * logit))  # four times too confident
    cal = calibrate.fit(y, p, "temperature")
    assert cal["temperature"] == pytest.approx(4, rel=0.25)
    q = calibrate.apply(cal, p)
    assert np.all(np.diff(q[np.argsort(p)]) >= 0)
    assert metrics.counts(y, q).score("brier") < metrics.counts(y, p).score("brier")


def test_one_class_inner_block_is_refused():
    with pytest.raises(FlareLensError, match="one class"):
        calibrate.fit([0, 0, 0], [0.1, 0.5, 0.9])


def _write(path, prob, role, month):
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0])
    frame = pd.DataFrame({
        "timestamp": [f"2011-{month:02d}-{10 + i:02d}T00:00:00Z" for i in range(10)],
        "file": [f"f{i}.jpg" for i in range(10)], "flare_prob": prob, "target": y,
        "fold": 1 if role == "heldout" else 2, "model_fold": 1, "role": role,
    })
    write_predictions(frame, path, {"checkpoint": "best.pt", "model_fold": 1, "train_base_rate": 0.3})


def test_cli_calibrates_a_run_and_evaluate_scores_both(tmp_path, capsys):
    run = tmp_path / "fold1"
    inner_p = [0.9, 0.8, 0.7, 0.95, 0.6, 0.85, 0.9, 0.75, 0.8, 0.65]  # flags everything: overconfident
    held_p = [0.92, 0.7, 0.8, 0.88, 0.6, 0.9, 0.97, 0.66, 0.7, 0.61]
    _write(run / "inner_predictions.csv", inner_p, "inner", 5)
    _write(run / "predictions.csv", held_p, "heldout", 2)
    before = (run / "predictions.csv").read_text().splitlines()
    assert main(["calibrate", str(run)]) == 0
    assert "isotonic calibration fitted on 10 inner-block instances" in capsys.readouterr().out
    held = read_predictions(run / "predictions.csv")
    cal = json.loads((run / "predictions.meta.json").read_text())["calibration"]
    assert cal["fitted_on"] == str(run / "inner_predictions.csv") and cal["method"] == "isotonic"
    # fitted on the inner block alone: the same map as fitting it by hand there
    want = calibrate.apply(calibrate.fit([1, 0, 0, 1, 0, 0, 1, 0, 0, 0], inner_p), held_p)
    assert held[CALIBRATED].tolist() == pytest.approx(want.tolist())
    after = (run / "predictions.csv").read_text().splitlines()
    assert after[0].split(",")[:4] == ["timestamp", "file", "flare_prob", "flare_prob_calibrated"]
    assert [line.split(",")[2] for line in after] == [line.split(",")[2] for line in before]  # flare_prob untouched
    assert sorted(p.name for p in run.iterdir()) == [
        "inner_predictions.csv", "inner_predictions.meta.json", "predictions.csv", "predictions.meta.json"]

    result = evaluate_files([run / "predictions.csv"], resamples=20, baselines=False)
    f = result["files"][0]
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0])
    assert f["calibrated"]["brier"] == pytest.approx(np.mean((want - y) ** 2))
    assert f["brier"] == pytest.approx(np.mean((np.array(held_p) - y) ** 2))
    assert set(f["calibrated"]["reliability"]) == {"bin_low", "bin_high", "count", "mean_prob", "observed"}
    assert f["calibrated"]["ci"] is not None and f["calibrated"]["inner_threshold"] is not None
    assert main(["evaluate", str(run / "predictions.csv"), "--resamples", "20", "--no-baselines"]) == 0
    assert "model calibrated" in capsys.readouterr().out


def test_calibrate_refuses_held_out_rows_as_the_inner_block_and_other_models(tmp_path, capsys):
    run = tmp_path / "fold1"
    _write(run / "predictions.csv", [0.5] * 10, "heldout", 2)
    _write(run / "inner_predictions.csv", [0.5] * 10, "heldout", 5)  # wrong rows
    assert main(["calibrate", str(run)]) == 1
    assert "not inner-validation-block rows" in capsys.readouterr().err
    _write(run / "inner_predictions.csv", list(np.linspace(0.1, 0.9, 10)), "inner", 5)
    other = tmp_path / "other.csv"
    _write(other, [0.5] * 10, "heldout", 2)
    meta = json.loads((tmp_path / "other.meta.json").read_text())
    meta["checkpoint"] = "fold2/best.pt"
    (tmp_path / "other.meta.json").write_text(json.dumps(meta))
    before = (run / "inner_predictions.csv").read_text()
    assert main(["calibrate", "--inner", str(run / "inner_predictions.csv"), str(other)]) == 1
    assert "another model" in capsys.readouterr().err
    assert (run / "inner_predictions.csv").read_text() == before  # nothing rewritten

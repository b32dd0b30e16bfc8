import json

import pytest

from flarelens import log
from flarelens.cli import main
from flarelens.demo import DemoConfig, run_demo
from flarelens.errors import FlareLensError

# A small demo: a year of 64² images once a day, two folds of one short epoch, four explained images.
SMALL = DemoConfig(cadence="24h", image_size=64, epochs=1, folds=(1, 2), explain_limit=4)


def test_demo_runs_every_step_then_resumes_without_redoing_them(tmp_path, capsys):
    log.setup()  # the steps are logged, as the CLI shows them
    out = tmp_path / "demo"
    report = run_demo(out, SMALL, progress=False)
    text = capsys.readouterr().err
    steps = ("simulate", "label", "train", "predict", "calibrate", "train", "predict", "calibrate",
             "evaluate", "locations", "explain", "report")
    for n, step in enumerate(steps, 1):
        assert f"[{n}/12] {step}:" in text
    assert report == out / "report.html" and report.is_file()
    for path in ("images/regions.csv", "labels.csv", "fold1/best.pt", "fold1/history.csv", "fold1/predictions.csv",
                 "fold1/inner_predictions.csv", "fold1/config.json",
                 "fold2/best.pt", "fold2/predictions.csv",
                 "evaluation.json", "locations/locations.json", "locations/recall_map.png",
                 "explain/scores.csv", "explain/summary.json", "explain/comparison.png"):
        assert (out / path).is_file(), path
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert len(evaluation["files"]) == 2 and set(evaluation["mean"]) == {"tss", "hss"}
    # honest by construction: scored rows are the held-out quarter only, the model was
    # chosen on its inner block, and persistence is scored on the same instances
    import pandas as pd

    for k in (1, 2):
        pred = pd.read_csv(out / f"fold{k}" / "predictions.csv")
        assert set(pred["role"]) == {"heldout"} and set(pred["fold"]) == {k}
        assert "flare_prob_calibrated" in pred.columns
        inner = pd.read_csv(out / f"fold{k}" / "inner_predictions.csv")
        assert set(inner["role"]) == {"inner"} and k not in set(inner["fold"])
        config = json.loads((out / f"fold{k}" / "config.json").read_text())
        assert config["select"] == "best" and config["inner"] > 0  # best inner_tss
    persistence = evaluation["baselines"]["persistence"]["files"]
    assert [p["n"] for p in persistence] == [f["n"] for f in evaluation["files"]]
    page = report.read_text()
    assert f'<tr class="model"><th>model</th><td>{evaluation["pooled"]["tss"]:.2f} ' in page and "comparison" in page

    checkpoint = (out / "fold1" / "best.pt").stat().st_mtime_ns
    images = sorted(p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg"))
    run_demo(out, SMALL, progress=False)
    text = capsys.readouterr().err
    for step in ("simulate", "label", "train", "predict", "calibrate"):
        assert f"{step}:" in text
        assert text.split(f"{step}:")[1].splitlines()[0].endswith("(already done, skipped)")
    assert (out / "fold1" / "best.pt").stat().st_mtime_ns == checkpoint
    assert sorted(p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg")) == images

    # Other settings in the same directory would mix stale steps: refused, nothing touched.
    with pytest.raises(FlareLensError, match="other settings"):
        run_demo(out, DemoConfig(cadence="24h", image_size=64, epochs=2, folds=(1, 2), explain_limit=4), progress=False)
    assert (out / "fold1" / "best.pt").stat().st_mtime_ns == checkpoint


def test_demo_cli_rejects_bad_folds(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--folds", "1,7"]) == 1
    assert "--folds" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_refuses_bad_settings_before_any_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--epochs", "0"]) == 1
    assert "epochs" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    # the corrected command is then accepted (nothing invalid was recorded)
    assert not (tmp_path / "d" / "demo.json").exists()


def test_explained_instances_are_half_central_half_limb_spread_in_time(tmp_path):
    import pandas as pd

    from flarelens.demo import spread_instances

    times = pd.date_range("2012-01-01", periods=40, freq="12h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    lon = [10.0 if i % 4 else 80.0 for i in range(40)]  # 30 central, 10 near-limb
    cls = ["M1.0" if i % 5 else "C2.0" for i in range(40)]
    path = tmp_path / "p.csv"
    pd.DataFrame({"timestamp": times, "fl_lon": lon, "goes_class": cls}).to_csv(path, index=False)
    picked = spread_instances(path, 8)
    assert (picked["goes_class"].str[0] == "M").all() and list(picked["timestamp"]) == sorted(picked["timestamp"])
    assert (picked["fl_lon"].abs() > 70).sum() == 4 and (picked["fl_lon"].abs() <= 70).sum() == 4
    central = picked[picked["fl_lon"].abs() <= 70]["timestamp"]
    assert central.iloc[0] < "2012-01-05" and central.iloc[-1] > "2012-01-15"  # spread, not the first four

import json

import pytest

from flarelens.cli import main
from flarelens.demo import DemoConfig, run_demo
from flarelens.errors import FlareLensError

# A small demo: a year of 64² images once a day, two folds of one short epoch, four explained images.
SMALL = DemoConfig(cadence="24h", image_size=64, epochs=1, folds=(1, 2), explain_limit=4)


def test_demo_runs_every_step_then_resumes_without_redoing_them(tmp_path, capsys):
    out = tmp_path / "demo"
    report = run_demo(out, SMALL, progress=False)
    text = capsys.readouterr().out
    steps = ("simulate", "label", "train", "predict", "train", "predict", "evaluate", "locations", "explain", "report")
    for n, step in enumerate(steps, 1):
        assert f"[{n}/10] {step}:" in text
    assert report == out / "report.html" and report.is_file()
    for path in ("images/regions.csv", "labels.csv", "fold1/best.pt", "fold1/history.csv", "fold1/predictions.csv",
                 "fold2/best.pt", "fold2/predictions.csv",
                 "evaluation.json", "locations/locations.json", "locations/recall_map.png",
                 "explain/scores.csv", "explain/summary.json", "explain/comparison.png"):
        assert (out / path).is_file(), path
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert len(evaluation["files"]) == 2 and set(evaluation["mean"]) == {"tss", "hss"}
    page = report.read_text()
    assert f'<tr class="model"><th>model</th><td>{evaluation["pooled"]["tss"]:.2f} ' in page and "comparison" in page

    checkpoint = (out / "fold1" / "best.pt").stat().st_mtime_ns
    images = sorted(p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg"))
    run_demo(out, SMALL, progress=False)
    text = capsys.readouterr().out
    for step in ("simulate", "label", "train", "predict"):
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

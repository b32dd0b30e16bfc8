"""The explain run: selection, output files, ground truth, resume, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from flarelens import geometry
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.explain.instances import Selection, background_rows, load_predictions, select_instances
from flarelens.predictions import normalise as normalise_predictions
from flarelens.explain.methods import METHODS
from flarelens.explain.run import ExplainSettings, explain_instances
from flarelens.explain.summary import SCORE_COLUMNS
from flarelens.explain.truth import read_regions
from explain_data import FILE_SIZE, MODEL_SIZE, StrongFieldNet, predictions_of, write_flare_dataset

@pytest.fixture
def flare_set(tmp_path):
    root = tmp_path / "images"
    labels, regions, truth = write_flare_dataset(root)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    regions.to_csv(root / "regions.csv", index=False)
    torch.manual_seed(0)
    model = StrongFieldNet().eval()
    predictions_of(model, labels, root).to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path, root, model, truth


def _settings(**kw):
    base = dict(background_k=2, n_steps=16, batch_size=2, internal_batch_size=32, comparison_rows=3)
    base.update(kw)
    return ExplainSettings(**base)


def test_selection_filters():
    pred = pd.DataFrame({
        "timestamp": ["2011-01-01T00:00:00Z", "2011-02-01T00:00:00Z", "2011-03-01T00:00:00Z",
                      "2011-04-01T00:00:00Z", "2011-05-01T00:00:00Z", "2011-06-01T00:00:00Z"],
        "file": list("abcdef"),
        "flare_prob": [0.9, 0.1, 0.8, 0.2, 0.7, 0.6],
        "target": [1, 1, 1, 0, 0, 1],
        "goes_class": ["X1.2", "M2.0", "M5.0", "C3.0", "", "X9.3"],
        "fl_lon": [10.0, -80.0, 71.0, 5.0, np.nan, np.nan],
        "fl_lat": [0.0, 5.0, 5.0, 0.0, np.nan, np.nan],
    })
    sel = lambda **kw: list(select_instances(pred, Selection(**kw))["file"])  # noqa: E731
    assert sel() == list("abcdef")
    assert sel(classes=["X"]) == ["a", "f"]
    assert sel(classes=["m", "none"]) == ["b", "c", "e"]
    assert sel(outcomes=["TP"]) == ["a", "c", "f"]
    assert sel(outcomes=["FN", "fp"]) == ["b", "e"]
    assert sel(outcomes=["TP"], threshold=0.85) == ["a"]
    assert sel(start="2011-02-01", end="2011-04-01") == ["b", "c", "d"]
    assert sel(position="central") == ["a", "d"]
    assert sel(position="limb") == ["b", "c"]
    assert sel(classes=["X", "M"], outcomes=["TP", "FN"], position="limb") == ["b", "c"]
    assert sel(limit=2) == ["a", "b"]
    frame = select_instances(pred, Selection())
    assert list(frame["outcome"]) == ["TP", "FN", "TP", "TN", "FP", "TP"]
    # A bare table (the four required columns) gets empty label columns.
    bare = normalise_predictions(pred[["timestamp", "file", "flare_prob", "target"]])
    assert list(select_instances(bare, Selection(outcomes=["TP"]))["position"]) == ["unknown"] * 3
    with pytest.raises(FlareLensError, match="flare_prob"):
        normalise_predictions(pred[["timestamp", "file", "target"]])
    with pytest.raises(FlareLensError, match="unknown flare class"):
        sel(classes=["Q"])
    with pytest.raises(FlareLensError, match="unknown outcome"):
        sel(outcomes=["YES"])


def test_run_writes_maps_figures_and_scores_and_localises(flare_set):
    tmp, root, model, truth = flare_set
    pred, _ = load_predictions(tmp / "pred.csv")
    frame = select_instances(pred, Selection())
    bg = background_rows(pd.read_csv(tmp / "labels.csv"), fold=None)
    out = tmp / "out"
    result = explain_instances(model, frame, root, out, _settings(), image_size=MODEL_SIZE, background=bg,
                               regions=read_regions(root / "regions.csv"), progress=False)
    assert result.computed == len(frame) and result.skipped == 0

    # Files: one npz per instance, one overlay per instance and method, the comparison, the tables.
    stems = [f"HMI.m{t:%Y.%m.%d_%H.%M.%S}" for t in frame["time"]]
    for stem in stems:
        with np.load(out / "maps" / f"{stem}.npz") as z:
            for m in METHODS:
                assert z[f"map_{m}"].shape == (MODEL_SIZE, MODEL_SIZE)
                assert z[f"deletion_{m}"].shape == (11,)
            assert z["image"].dtype == np.uint8 and z["image"].shape == (MODEL_SIZE, MODEL_SIZE)
        for m in METHODS:
            png = out / "overlays" / f"{stem}_{m}.png"
            assert png.stat().st_size > 1000
            with Image.open(png) as im:
                assert im.size[0] > 200
    with Image.open(out / "comparison.png") as im:
        pixels = np.asarray(im.convert("L"))
    # comparison_rows=3: three bands of panels, each with the black sky around a disk
    for band in np.array_split(pixels, 3, axis=0):
        assert (band < 10).mean() > 0.05

    table = pd.read_csv(out / "scores.csv")
    assert list(table.columns) == SCORE_COLUMNS
    assert len(table) == len(frame) * len(METHODS)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == set(METHODS)

    # The flare is marked where it was at the image time (rotated back from its start).
    for _, row in frame[frame["target"] == 1].iterrows():
        stem = f"HMI.m{row['time']:%Y.%m.%d_%H.%M.%S}"
        lon, lat = truth[row["timestamp"]]
        with np.load(out / "maps" / f"{stem}.npz") as z:
            np.testing.assert_allclose(z["flare_xy"], geometry.hg_to_pixel(lon, lat, row["time"], MODEL_SIZE), atol=0.05)
            # Ground truth scaled from the 64 px file to the 32 px model input.
            x64, y64 = geometry.hg_to_pixel(lon, lat, row["time"], FILE_SIZE)
            np.testing.assert_allclose(z["truth_xyr"], [(x64 + 0.5) / 2 - 0.5, (y64 + 0.5) / 2 - 0.5, 2.5], atol=1e-6)

    # A model that looks at strong field localises the flares far above a random map.
    flaring = table[table["target"] == 1]
    for m in ("guided-gradcam", "ig", "deepshap"):
        rows = flaring[flaring["method"] == m]
        assert rows["mass"].notna().all() and rows["gt_mass"].notna().all()
        assert rows["mass"].mean() > 3 * rows["area"].mean(), m
        assert rows["gt_mass"].mean() > 3 * rows["gt_area"].mean(), m
        # The bipole is drawn a fixed pixel distance either side of the flare: near the limb
        # that is many heliographic degrees, so only central flares must hit.
        assert (rows.loc[rows["position"] == "central", "hit"] == 1.0).all(), m
        assert (rows["deletion_auc"] < rows["deletion_auc_random"]).all(), m
    # Instances without a flare position have no localisation score.
    assert table.loc[table["target"] == 0, "mass"].isna().all()
    ig = summary["methods"]["ig"]
    assert ig["flaring"]["n"] == (frame["target"] == 1).sum() == ig["flaring"]["n_located"]
    assert ig["flaring central"]["n"] + ig["flaring limb"]["n"] == ig["flaring"]["n"]
    assert ig["flaring"]["mass_over_random"] > 3 and ig["flaring"]["gt_mass"] > 3 * ig["flaring"]["gt_mass_random"]


def test_resume_skips_done_instances_and_refuses_other_settings(flare_set):
    tmp, root, model, _ = flare_set
    frame = select_instances(load_predictions(tmp / "pred.csv")[0], Selection(limit=4))
    out = tmp / "out"
    kw = dict(image_size=MODEL_SIZE, progress=False)
    settings = _settings(methods=("ig", "guided-gradcam"), overlays=False, comparison_rows=0)
    first = explain_instances(model, frame, root, out, settings, **kw)
    assert first.computed == 4
    npz = sorted((out / "maps").glob("*.npz"))
    mtimes = {p: p.stat().st_mtime_ns for p in npz}
    before = pd.read_csv(out / "scores.csv")

    again = explain_instances(model, frame, root, out, settings, **kw)
    assert (again.computed, again.skipped) == (0, 4)
    assert {p: p.stat().st_mtime_ns for p in npz} == mtimes
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), before)

    npz[1].unlink()
    partly = explain_instances(model, frame, root, out, settings, **kw)
    assert partly.computed == 1 and npz[1].is_file()

    # Scores at another radius need no new maps.
    wider = explain_instances(model, frame, root, out, _settings(methods=("ig",), overlays=False, comparison_rows=0,
                                                                 radius_deg=20.0, image_radius=0.3), **kw)
    assert wider.computed == 0
    ig_before = before[before["method"] == "ig"]
    for col in ("helio_area", "image_area", "area"):
        assert (wider.scores[col].dropna().to_numpy() > ig_before[col].dropna().to_numpy()).all(), col

    with pytest.raises(FlareLensError, match="n_steps"):
        explain_instances(model, frame, root, out, _settings(methods=("ig",), n_steps=8, overlays=False), **kw)
    redone = explain_instances(model, frame, root, out, _settings(methods=("ig",), n_steps=8, overlays=False,
                                                                  comparison_rows=0), overwrite=True, **kw)
    assert redone.computed == 4


def _checkpoint(path, size=MODEL_SIZE, fold=1):
    from flarelens.checkpoint import save_checkpoint
    from flarelens.models import build_model

    torch.manual_seed(0)
    model = build_model("simplecnn", image_size=size)
    save_checkpoint(path, model=model, epoch=1, history=[],
                    config={"model": "simplecnn", "image_size": size, "fold": fold, "seed": 0})


def test_cli_explains_a_checkpoint(flare_set, capsys):
    tmp, root, _, _ = flare_set
    _checkpoint(tmp / "best.pt", fold=2)
    out = tmp / "cli-out"
    # Fold 2 (April-June): one M flare and two quiet images of the eight.
    args = ["explain", "--checkpoint", str(tmp / "best.pt"), "--predictions", str(tmp / "pred.csv"),
            "--images", str(root), "--out", str(out), "--labels", str(tmp / "labels.csv"), "--background", "2",
            "--steps", "8", "--start", "2014-04-01", "--end", "2014-06-30", "--no-overlays", "--comparison-rows", "2",
            "--device", "cpu"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "3 of 8 predictions selected" in captured.err
    assert "guided-gradcam" in captured.out and "3 explained" in captured.out
    table = pd.read_csv(out / "scores.csv")
    assert len(table) == 3 * len(METHODS) and set(table["flare_class"]) == {"M", "none"}
    assert table.loc[table["target"] == 1, "gt_area"].notna().all()  # regions.csv found beside the images
    assert (table["training_data"] == 0).all()
    assert json.loads((out / "summary.json").read_text())["training_data"] is False
    assert (out / "comparison.png").is_file() and not (out / "overlays").exists()
    assert main(args) == 0
    assert "0 explained, 3 already done" in capsys.readouterr().out


def test_cli_reports_bad_input_in_one_line(flare_set, capsys):
    tmp, root, _, _ = flare_set
    _checkpoint(tmp / "best.pt")
    bad = tmp / "bad.csv"
    pd.DataFrame({"timestamp": ["2014-03-01T00:00:00Z"], "file": ["x.png"]}).to_csv(bad, index=False)
    base = ["explain", "--checkpoint", str(tmp / "best.pt"), "--images", str(root), "--out", str(tmp / "o")]
    assert main(base + ["--predictions", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "flare_prob" in err and err.count("\n") == 1
    assert main(base + ["--predictions", str(tmp / "pred.csv"), "--methods", "ig", "--layer", "nope",
                        "--end", "2014-03-31"]) == 1
    assert "nope" in capsys.readouterr().err
    missing = pd.read_csv(tmp / "pred.csv")
    missing.loc[0, "file"] = "2099/01/01/HMI.m2099.01.01_00.00.00.png"
    missing.loc[0, "timestamp"] = "2099-01-01T00:00:00Z"
    missing.to_csv(tmp / "missing.csv", index=False)
    assert main(base + ["--predictions", str(tmp / "missing.csv"), "--methods", "ig", "--start", "2099-01-01"]) == 1
    assert "not found" in capsys.readouterr().err

"""The explain run: selection, output files, ground truth, resume, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from flarelens import geometry
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.explain.instances import (
    Selection, background_rows, normalise_predictions, read_predictions, select_instances,
)
from flarelens.explain.methods import METHODS, NEUTRAL
from flarelens.explain.run import ExplainSettings, explain_instances
from flarelens.explain.summary import SCORE_COLUMNS
from flarelens.explain.truth import read_regions
from flarelens.images import image_relpath

FILE_SIZE = 64  # images on disk
MODEL_SIZE = 32  # what the model sees


class StrongFieldNet(nn.Module):
    """Flare logit grows with the area of strong positive field (the sky, 0, reads as
    strong negative field, so it is left out): a model that should look at active
    regions. 3x3 convs, ReLUs, global pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            w = torch.zeros(2, 1, 3, 3)
            w[0, 0] = 1 / 9
            w[1, 0, 1, 1] = 1.0
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(torch.tensor([-NEUTRAL - 0.15, -NEUTRAL - 0.3]))
            self.conv2.weight.copy_(torch.tensor([[1.0, 0.5], [0.5, 1.0]])[:, :, None, None])
            self.conv2.bias.zero_()
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [2000.0, 2000.0]]))
            self.head.bias.copy_(torch.tensor([0.0, -2.0]))

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu(self.conv(x))))
        return self.head(torch.flatten(self.pool(x), 1))


def write_flare_dataset(root, n=8, seed=0):
    """Images whose only strong field is a bipole where the labelled flare will be.

    Flaring rows (every other) carry the flare at a known (lon, lat) at the image time;
    the labels give the catalog-style position at the flare start 6 h later, as a real
    label would. Returns (labels frame, regions frame, positions at image time).
    """
    rng = np.random.default_rng(seed)
    times = pd.date_range("2014-03-01", periods=n, freq="37D", tz="UTC")
    yy, xx = np.mgrid[0:FILE_SIZE, 0:FILE_SIZE]
    rows, regions, truth = [], [], {}
    for i, t in enumerate(times):
        disk = geometry.disk_mask(t, FILE_SIZE)
        field = 128 + rng.normal(0, 4, (FILE_SIZE, FILE_SIZE))
        flaring = i % 2 == 0
        lon, lat = [(-40.0, 15.0), (20.0, -25.0), (76.0, 10.0)][i // 2 % 3]
        x, y = geometry.hg_to_pixel(lon, lat, t, FILE_SIZE)
        if flaring:
            for sign, dx in ((1, -2.5), (-1, 2.5)):
                field += sign * 200 * np.exp(-((xx - x - dx) ** 2 + (yy - y) ** 2) / (2 * 2.2**2))
        pixels = np.where(disk, np.clip(field, 0, 255), 0).round().astype(np.uint8)
        rel = image_relpath(t, ".png")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / rel)
        start = t + pd.Timedelta(hours=6)
        lon_at_start = float(geometry.rotate(lon, lat, t, start)) if flaring else np.nan
        rows.append({
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "file": rel, "target": int(flaring),
            "goes_class": "M3.1" if flaring else "", "peak_flux": 3.1e-5 if flaring else 0.0,
            "fl_lon": lon_at_start, "fl_lat": lat if flaring else np.nan,
            "fl_start": start.strftime("%Y-%m-%dT%H:%M:%SZ") if flaring else "", "other_flares": "",
            "fold": int(t.quarter),
        })
        if flaring:
            truth[rows[-1]["timestamp"]] = (lon, lat)
        regions.append({
            "timestamp": rows[-1]["timestamp"], "file": rel, "region_id": i, "noaa_ar": 0, "lon": lon, "lat": lat,
            "x": x, "y": y, "radius_px": 5.0, "mu": 0.5, "max_class_24h": "M3.1" if flaring else "",
            "max_flux_24h": 3.1e-5 if flaring else 0.0,
        })
    return pd.DataFrame(rows), pd.DataFrame(regions), truth


@pytest.fixture
def flare_set(tmp_path):
    root = tmp_path / "images"
    labels, regions, truth = write_flare_dataset(root)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    regions.to_csv(root / "regions.csv", index=False)
    torch.manual_seed(0)
    model = StrongFieldNet().eval()
    with torch.no_grad():
        from flarelens.data import read_image, resize_image

        x = torch.stack([resize_image(read_image(root / f), MODEL_SIZE) for f in labels["file"]]).float() / 255
        probs = torch.softmax(model(x), dim=1)[:, 1].numpy()
    pred = labels.copy()
    pred.insert(2, "flare_prob", probs)
    pred.to_csv(tmp_path / "pred.csv", index=False)
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
    pred = read_predictions(tmp / "pred.csv")
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
    frame = select_instances(read_predictions(tmp / "pred.csv"), Selection(limit=4))
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

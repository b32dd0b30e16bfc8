"""flarelens predict: the predictions contract for labelled sets, and probabilities of image files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from flarelens import images
from flarelens.checkpoint import load_model
from flarelens.cli import main
from flarelens.folds import row_roles
from flarelens.predict import PREDICTION_COLUMNS, predict_files, predict_labels
from flarelens.train import train
from conftest import write_toy_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(image root, labels, labels.csv, checkpoint) of a small model trained on the toy set."""
    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "images"
    labels = write_toy_dataset(root)
    labels_path = tmp / "labels.csv"
    labels.to_csv(labels_path, index=False)
    train(labels=str(labels_path), images=str(root), fold=1, model="simplecnn", image_size=48, epochs=3,
          batch_size=8, optimizer="adam", lr=1e-3, out=str(tmp / "run"), progress=False, threads=1, inner=0.5,
          select="last")
    return root, labels, labels_path, tmp / "run" / "best.pt"


def _reference_prob(checkpoint, path) -> float:
    """The model's flare probability computed step by step, independently of flarelens.data."""
    model, config = load_model(checkpoint)
    size = config["image_size"]
    pixels = Image.fromarray(images.load(path)).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(pixels).astype(np.float32) / 255)[None, None]
    with torch.no_grad():
        return float(torch.softmax(model(x), dim=1)[0, 1])


def test_predict_labels_writes_the_contract_for_a_fold(trained):
    root, labels, labels_path, checkpoint = trained
    pred = predict_labels(checkpoint, labels_path, root, fold=1, progress=False)
    fold1 = labels[labels["fold"] == 1].reset_index(drop=True)
    assert list(pred.columns[: len(PREDICTION_COLUMNS)]) == PREDICTION_COLUMNS
    assert {"peak_flux", "fl_start", "other_flares"} <= set(pred.columns)  # other label columns carried through
    assert pred["timestamp"].tolist() == fold1["timestamp"].tolist()
    assert pred["target"].tolist() == fold1["target"].tolist()
    assert (pred["fold"] == 1).all()
    assert pred["flare_prob"].between(0, 1).all()
    for i in (0, len(pred) - 1):
        assert pred["flare_prob"][i] == pytest.approx(_reference_prob(checkpoint, root / pred["file"][i]), abs=1e-5)
    everything = predict_labels(checkpoint, labels_path, root, progress=False, rows="all")
    assert len(everything) == len(labels)
    # the roles of the run's split (its fold and inner block), as train made them
    assert everything["role"].tolist() == row_roles(labels, 1, inner=0.5).tolist()
    assert set(everything["role"]) == {"heldout", "inner", "train"} and (everything["model_fold"] == 1).all()
    inner = predict_labels(checkpoint, labels_path, root, progress=False, rows="inner")
    assert inner["timestamp"].tolist() == everything["timestamp"][everything["role"] == "inner"].tolist()
    held = predict_labels(checkpoint, labels_path, root, progress=False)  # default: the held-out fold
    assert held["timestamp"].tolist() == pred["timestamp"].tolist() and (held["role"] == "heldout").all()


def test_validation_scores_in_history_are_those_of_the_predictions(trained):
    from flarelens.checkpoint import load_checkpoint
    from flarelens.metrics import confusion

    root, _, labels_path, checkpoint = trained
    state = load_checkpoint(checkpoint)
    row = state["history"][state["epoch"] - 1]
    pred = predict_labels(checkpoint, labels_path, root, fold=state["config"]["fold"], progress=False)
    scores = confusion(pred["target"], pred["flare_prob"])
    # TSS is undefined (nan in history.csv) on a fold without flaring rows.
    assert scores.hss == row["val_hss"]
    assert scores.tss == row["val_tss"] if pred["target"].any() else np.isnan(row["val_tss"])
    # The class-weighted validation loss, recomputed from the probabilities.
    labels = pd.read_csv(labels_path)
    train_targets = labels.loc[(row_roles(labels, 1, inner=0.5) == "train").to_numpy(), "target"]  # rows trained on
    fl_weight = 1.5 * 2 * (train_targets == 0).sum() / (4 * (train_targets == 1).sum())
    w = np.where(pred["target"] == 1, fl_weight, 1.0)
    nll = -np.log(np.where(pred["target"] == 1, pred["flare_prob"], 1 - pred["flare_prob"]))
    assert float((w * nll).sum() / w.sum()) == pytest.approx(row["val_loss"], rel=1e-4)


def test_predict_cli_writes_predictions_csv_atomically(trained, tmp_path, capsys):
    root, labels, labels_path, checkpoint = trained
    out = tmp_path / "pred" / "predictions.csv"
    assert main(["predict", "--checkpoint", str(checkpoint), "--labels", str(labels_path), "--images", str(root),
                 "--fold", "1", "--out", str(out), "--batch-size", "5"]) == 0
    assert "predictions" in capsys.readouterr().out
    written = pd.read_csv(out)
    assert len(written) == int((labels["fold"] == 1).sum())
    assert list(written.columns[:8]) == PREDICTION_COLUMNS
    # no temporary files left; the sidecar says where the predictions came from
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv", "predictions.meta.json"]
    meta = json.loads((out.parent / "predictions.meta.json").read_text())
    assert meta["checkpoint"] == str(checkpoint) and meta["model_fold"] == 1 and meta["rows"] == "fold 1"
    train_rows = labels[(row_roles(labels, 1, inner=0.5) == "train").to_numpy()]
    assert meta["train_base_rate"] == pytest.approx(train_rows["target"].mean())
    assert (written["role"] == "heldout").all() and (written["model_fold"] == 1).all()
    assert list(written.columns[-2:]) == ["model_fold", "role"]


def test_predict_files_of_any_size_and_format(trained, tmp_path, capsys):
    root, labels, _, checkpoint = trained
    source = root / labels["file"][0]
    png = tmp_path / "HMI.m2011.01.01_00.00.00.png"
    big = Image.open(source).resize((96, 96), Image.BILINEAR)
    big.save(png)
    jpg = tmp_path / "frame.jpg"
    Image.open(source).save(jpg, quality=95)
    frame = predict_files(checkpoint, [png, jpg], progress=False)
    assert frame["file"].tolist() == [str(png), str(jpg)]
    assert frame["flare_prob"][0] == pytest.approx(_reference_prob(checkpoint, png), abs=1e-5)
    assert frame["flare_prob"][1] == pytest.approx(_reference_prob(checkpoint, jpg), abs=1e-5)

    assert main(["predict", "--checkpoint", str(checkpoint), str(png), str(jpg)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert float(lines[0].split()[0]) == pytest.approx(frame["flare_prob"][0], abs=1e-4) and lines[0].endswith(str(png))


def test_predict_files_reads_fits(trained, tmp_path):
    from astropy.io import fits

    _, _, _, checkpoint = trained
    yy, xx = np.mgrid[0:48, 0:48]
    gauss = np.where((xx - 23.5) ** 2 + (yy - 23.5) ** 2 < 20**2, 30.0 * np.sin(xx / 3.0), np.nan).astype(np.float32)
    path = tmp_path / "hmi.fits"
    fits.PrimaryHDU(gauss).writeto(path)
    frame = predict_files(checkpoint, [path], progress=False)
    assert frame["flare_prob"][0] == pytest.approx(_reference_prob(checkpoint, path), abs=1e-5)


def test_predict_errors(trained, tmp_path, capsys):
    root, _, labels_path, checkpoint = trained
    assert main(["predict", "--checkpoint", str(tmp_path / "none.pt"), str(labels_path)]) == 1
    assert "no such" in capsys.readouterr().err
    not_ckpt = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, not_ckpt)
    assert main(["predict", "--checkpoint", str(not_ckpt), "--labels", str(labels_path), "--images", str(root)]) == 1
    assert "not a flarelens checkpoint" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "missing.png")]) == 1
    assert "missing.png" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), "--labels", str(labels_path)]) == 1
    assert "--images" in capsys.readouterr().err


def test_predicting_training_rows_warns_marks_and_evaluate_refuses(trained, tmp_path, capsys, caplog):
    root, labels, labels_path, checkpoint = trained
    out = tmp_path / "fold3.csv"
    with caplog.at_level("WARNING", logger="flarelens"):
        assert main(["predict", "--checkpoint", str(checkpoint), "--labels", str(labels_path), "--images", str(root),
                     "--fold", "3", "--out", str(out)]) == 0
    assert "NOT held out" in caplog.text and "trained for fold 1" in caplog.text
    assert "NOT held out" in capsys.readouterr().out
    written = pd.read_csv(out)
    assert (written["role"] != "heldout").all() and (written["model_fold"] == 1).all()
    # evaluate refuses the training rows in one line ...
    assert main(["evaluate", str(out), "--resamples", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not held out" in err and "--include-training-rows" in err
    # ... and scores them only when asked, labelled as contaminated
    assert main(["evaluate", str(out), "--resamples", "0", "--no-baselines", "--include-training-rows", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["contaminated"] is True and result["files"][0]["contaminated"] is True
    assert main(["evaluate", str(out), "--resamples", "0", "--no-baselines", "--include-training-rows"]) == 0
    assert "CONTAMINATED" in capsys.readouterr().out


def test_a_diverged_model_is_refused_and_nothing_written(trained, tmp_path, capsys):
    from flarelens.checkpoint import load_checkpoint, save_checkpoint

    root, labels, labels_path, checkpoint = trained
    state = load_checkpoint(checkpoint)
    model, config = load_model(checkpoint)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    broken = tmp_path / "nan.pt"
    save_checkpoint(broken, model=model, epoch=state["epoch"], config=config, history=state["history"])
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(broken), "--labels", str(labels_path), "--images", str(root),
                 "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "non-finite" in captured.err and "\n" not in captured.err.strip() and not out.exists()
    image = root / labels["file"][0]
    assert main(["predict", "--checkpoint", str(broken), str(image)]) == 1
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "non-finite" in captured.err


def test_rows_inner_writes_the_inner_block_for_calibration(trained, tmp_path, capsys, monkeypatch):
    root, labels, labels_path, checkpoint = trained
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--checkpoint", str(checkpoint), "--labels", str(labels_path), "--images", str(root),
                 "--rows", "inner"]) == 0
    assert "inner_predictions.csv" in capsys.readouterr().out
    # written beside the checkpoint (the run directory), not into the working directory
    assert not (tmp_path / "inner_predictions.csv").exists()
    written = pd.read_csv(checkpoint.parent / "inner_predictions.csv")
    assert (written["role"] == "inner").all() and len(written) == int((row_roles(labels, 1, inner=0.5) == "inner").sum())
    assert json.loads((checkpoint.parent / "inner_predictions.meta.json").read_text())["rows"] == "inner"

"""explain refuses what would give a wrong result: training rows, an empty selection,
non-finite maps, damaged files, nonsense settings — each with one line and exit 1."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from explain_data import MODEL_SIZE, StrongFieldNet, predictions_of, write_flare_dataset
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.explain import render
from flarelens.explain.instances import Selection, select_instances
from flarelens.explain.run import ExplainSettings, explain_instances


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "images"
    labels, regions, _ = write_flare_dataset(root)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    regions.to_csv(root / "regions.csv", index=False)
    torch.manual_seed(0)
    predictions_of(StrongFieldNet().eval(), labels, root).to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path, root, labels


def _checkpoint(path, fold):
    from flarelens.checkpoint import save_checkpoint
    from flarelens.models import build_model

    torch.manual_seed(0)
    model = build_model("simplecnn", image_size=MODEL_SIZE)
    save_checkpoint(path, model=model, epoch=1, history=[],
                    config={"model": "simplecnn", "image_size": MODEL_SIZE, "fold": fold, "seed": 0})


def _base(tmp, root, fold=3, out="o"):
    _checkpoint(tmp / f"fold{fold}.pt", fold)
    return ["explain", "--checkpoint", str(tmp / f"fold{fold}.pt"), "--predictions", str(tmp / "pred.csv"),
            "--images", str(root), "--out", str(tmp / out), "--methods", "ig", "--steps", "4", "--no-deletion",
            "--comparison-rows", "0", "--device", "cpu"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- training rows


def test_explain_refuses_another_folds_rows_naming_the_fold(data, capsys):
    tmp, root, labels = data
    # The fold-3 model trained on folds 1, 2 and 4: the March image (fold 1) is a training row.
    args = _base(tmp, root, fold=3) + ["--end", "2014-03-31"]
    assert main(args) == 1
    err = _one_line_error(capsys)
    assert "fold-3 model" in err and "fold 1" in err and "--allow-training-rows" in err
    assert not (tmp / "o" / "maps").exists()  # nothing written

    # Its own fold's rows are explained.
    assert main(_base(tmp, root, fold=3, out="own") + ["--start", "2014-07-01", "--end", "2014-09-30"]) == 0
    table = pd.read_csv(tmp / "own" / "scores.csv")
    assert len(table) == (labels["fold"] == 3).sum() and (table["training_data"] == 0).all()


def test_allowed_training_rows_are_marked_in_every_output(data, capsys, monkeypatch):
    tmp, root, labels = data
    titles = []
    original = render.overlay_figure

    def spy(panel, method):
        titles.append(panel.title)
        return original(panel, method)

    monkeypatch.setattr(render, "overlay_figure", spy)
    args = _base(tmp, root, fold=3) + ["--end", "2014-09-30", "--allow-training-rows", "--comparison-rows", "2"]
    assert main(args) == 0
    out = tmp / "o"
    table = pd.read_csv(out / "scores.csv")
    expected = (labels.loc[pd.to_datetime(labels["timestamp"]) <= pd.Timestamp("2014-09-30", tz="UTC"), "fold"]
                != 3).to_numpy()
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(table["training_data"].to_numpy(), expected.astype(int))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training_data"] is True and summary["training_rows"] == expected.sum()
    assert summary["methods"]["ig"]["all"]["n_training"] == expected.sum()
    assert "TRAINING DATA" in capsys.readouterr().out
    # One overlay per instance: exactly the training rows say so in their title.
    assert [("TRAINING DATA" in t) for t in titles] == list(expected)


# --------------------------------------------------------------------------- nothing selected


@pytest.mark.parametrize("extra, words", [
    (["--limit", "0"], "--limit 0"),
    (["--class", "X"], "none of the 8 predictions"),
    (["--start", "2014-06-01", "--end", "2014-05-01"], "is after --end"),
])
def test_nothing_selected_is_one_line(data, capsys, extra, words):
    tmp, root, _ = data
    assert main(_base(tmp, root) + extra) == 1
    err = _one_line_error(capsys)
    assert "nothing selected" in err and words in err


def test_an_empty_frame_is_refused_by_the_library_too(data):
    tmp, root, _ = data
    frame = select_instances(pd.read_csv(tmp / "pred.csv"), Selection(classes=["X"]))
    with pytest.raises(FlareLensError, match="nothing selected"):
        explain_instances(StrongFieldNet(), frame, root, tmp / "o", ExplainSettings(methods=("ig",)),
                          image_size=MODEL_SIZE)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("extra, words", [
    (["--radius", "-5"], "--radius must be a positive number"),
    (["--image-radius", "0"], "--image-radius must be a positive number"),
    (["--radius", "nan"], "--radius must be a positive number"),
    (["--threshold", "1.5"], "--threshold"),
    (["--comparison-rows", "-1"], "--comparison-rows"),
])
def test_nonsense_settings_are_one_line(data, capsys, extra, words):
    tmp, root, _ = data
    assert main(_base(tmp, root) + extra) == 1
    assert words in _one_line_error(capsys)


# --------------------------------------------------------------------------- non-finite maps


class SqrtNet(nn.Module):
    """A finite flare probability whose input gradient is not: ``where(u > 0, sqrt(u), 0)``
    sends a zero gradient into sqrt where u < 0, and 0 * d sqrt(u)/du is NaN there."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Linear(1, 2)

    def forward(self, x):
        u = self.conv(x) - 0.5
        return self.head(torch.where(u > 0, torch.sqrt(u), torch.zeros_like(u)).mean(dim=(2, 3)))


class NaNNet(StrongFieldNet):
    """A diverged model: NaN weights in its head."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.head.bias.fill_(float("nan"))


@pytest.mark.parametrize("model, words", [(SqrtNet(), "map holds non-finite"), (NaNNet(), "non-finite flare probability")])
def test_non_finite_maps_are_refused_and_never_written(data, model, words):
    tmp, root, _ = data
    frame = select_instances(pd.read_csv(tmp / "pred.csv"), Selection(limit=2))
    settings = ExplainSettings(methods=("ig",), n_steps=4, deletion=False, overlays=False, comparison_rows=0)
    with pytest.raises(FlareLensError, match=words):
        explain_instances(model.eval(), frame, root, tmp / "o", settings, image_size=MODEL_SIZE, progress=False)
    assert not list((tmp / "o" / "maps").glob("*.npz"))
    assert not (tmp / "o" / "scores.csv").exists()


# --------------------------------------------------------------------------- damaged files


def _run(tmp, root, **kw):
    frame = select_instances(pd.read_csv(tmp / "pred.csv"), Selection(limit=2))
    settings = ExplainSettings(methods=("ig",), n_steps=4, deletion=False, overlays=False, comparison_rows=0)
    return explain_instances(StrongFieldNet(), frame, root, tmp / "o", settings, image_size=MODEL_SIZE,
                             progress=False, **kw)


def test_a_damaged_map_file_is_one_line(data):
    tmp, root, _ = data
    _run(tmp, root)
    path = sorted((tmp / "o" / "maps").glob("*.npz"))[0]
    raw = bytearray(path.read_bytes())
    # Overwrite the middle of the first member's compressed data: the zip directory (at the
    # end) still lists every array, so the file looks complete until an array is read.
    raw[60:400] = bytes(340)
    path.write_bytes(bytes(raw))
    with pytest.raises(FlareLensError, match="damaged map file") as err:
        _run(tmp, root)
    assert str(path) in str(err.value) and "\n" not in str(err.value)

    # A map holding NaN (written by something else) is refused, not scored.
    with np.load(sorted((tmp / "o" / "maps").glob("*.npz"))[1]) as z:
        arrays = dict(z)
    arrays["map_ig"][0, 0] = np.nan
    np.savez_compressed(path, **arrays)
    with pytest.raises(FlareLensError, match="non-finite"):
        _run(tmp, root)


def test_a_damaged_settings_file_is_one_line_and_overwrite_redoes_the_maps(data):
    tmp, root, _ = data
    _run(tmp, root)
    (tmp / "o" / "settings.json").write_text("{not json")
    with pytest.raises(FlareLensError, match="damaged settings file") as err:
        _run(tmp, root)
    assert "--overwrite" in str(err.value)
    assert _run(tmp, root, overwrite=True).computed == 2
    assert json.loads((tmp / "o" / "settings.json").read_text())["n_steps"] == 4

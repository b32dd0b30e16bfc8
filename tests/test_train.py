"""flarelens.train: learning, honest selection, the study's recipe and formulas, resumption, failures.

Expected values come from the formulas of issue 10 and docs/design.md, computed here from
the labels, never from flarelens's own functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import write_toy_dataset

from flarelens.checkpoint import load_checkpoint, load_model
from flarelens.cli import main
from flarelens.data import MagnetogramDataset
from flarelens.errors import FlareLensError
from flarelens.folds import roles_from_config
from flarelens.rundir import RunDir, read_config
from flarelens.train import HISTORY_COLUMNS, RECIPES, TrainConfig, initial_model, make_config, train


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """(image root, labels, labels.csv) of 183 toy 32² images every 2 days over 2011: every
    training quarter has rows in its inner block, flaring ones included."""
    base = tmp_path_factory.mktemp("dense")
    labels = write_toy_dataset(base / "images", n=183, size=32, cadence="2D")
    path = base / "labels.csv"
    labels.to_csv(path, index=False)
    return base / "images", labels, path


def _config(root, labels_path, out, **kw) -> dict:
    base = dict(labels=str(labels_path), images=str(root), fold=1, model="simplecnn", image_size=32, epochs=3,
                batch_size=16, optimizer="adam", lr=1e-3, out=str(out), progress=False, threads=1)
    base.update(kw)
    return base


def _instances(targets) -> int:
    """Instances per epoch of the study's augmentation: flaring rows x4, non-flaring x2."""
    targets = np.asarray(targets)
    return int(4 * (targets == 1).sum() + 2 * (targets == 0).sum())


def _study_weight(targets) -> float:
    targets = np.asarray(targets)
    n_fl, n_nf = (targets == 1).sum(), (targets == 0).sum()
    return 1.5 * (2 * n_nf) / (4 * n_fl)


# --------------------------------------------------------------------------- the run and its files


def test_train_selects_on_the_inner_block_and_never_on_the_held_out_fold(dense, tmp_path):
    root, labels, labels_path = dense
    out = tmp_path / "run"
    history = train(_config(root, labels_path, out, epochs=4, window="5D"))

    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), history, check_dtype=False)
    assert history["val_tss"].max() >= 0.5  # flaring toy images carry one strong bipole: it learns
    assert history[["inner_loss", "inner_tss", "inner_hss"]].notna().all().all()

    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "last.pt")
    first_argmax = int(history["epoch"][history["inner_tss"].idxmax()])
    assert best["epoch"] == first_argmax == last["best"]["epoch"] and last["epoch"] == 4
    assert best["best"]["inner_tss"] == pytest.approx(history["inner_tss"].max())

    # The rows the run trained on, as predict/explain will compute them from config.json.
    config = json.loads((out / "config.json").read_text())
    assert read_config(out) == config and read_config(out / "best.pt") == config
    assert best["config"] == config
    roles = roles_from_config(labels, config)
    assert config["rows"] == {r: int((roles == r).sum()) for r in ("train", "inner", "heldout", "purged")}
    assert config["rows"]["purged"] > 0 and config["rows"]["inner"] > 0
    times = pd.to_datetime(labels["timestamp"], utc=True).dt.tz_localize(None)
    t_train, t_inner = times[roles == "train"].to_numpy(), times[roles == "inner"].to_numpy()
    assert np.abs(t_train[:, None] - t_inner[None, :]).min() >= np.timedelta64(5, "D")
    heldout = labels["fold"] == 1
    assert ((roles == "heldout") == heldout).all() and not (roles[~heldout] == "heldout").any()
    trained = labels[roles == "train"]
    assert (trained["fold"] != 1).all() and (labels[roles == "inner"]["fold"] != 1).all()
    assert config["train_base_rate"] == pytest.approx(trained["target"].mean())
    assert config["select"] == "best" and config["inner"] == 0.1 and config["window"] == "5D"

    log = (out / "train.log").read_text()
    assert f"-> {_instances(trained['target'])} augmented instances" in log  # the loader saw exactly these rows
    assert f"class weights NF 1.000 FL {_study_weight(trained['target']):.3f}" in log
    assert sum(" epoch " in line and "/4 " in line for line in log.splitlines()) == 4

    model, _ = load_model(out / "best.pt")
    for key, value in best["model"].items():
        assert torch.equal(model.state_dict()[key], value)
    assert not list(out.glob(".*part*"))


def test_the_held_out_fold_never_chooses_the_epoch(dense, tmp_path):
    """Held-out targets inverted: the better the model, the worse its held-out TSS. Selection on
    the held-out fold would keep an early epoch; selection on the inner block a late one."""
    root, labels, _ = dense
    inverted = labels.copy()
    inverted.loc[inverted["fold"] == 1, "target"] = 1 - inverted.loc[inverted["fold"] == 1, "target"]
    path = tmp_path / "labels.csv"
    inverted.to_csv(path, index=False)
    out = tmp_path / "run"
    history = train(_config(root, path, out, epochs=4))
    inner_best = int(history["epoch"][history["inner_tss"].idxmax()])
    assert inner_best != int(history["epoch"][history["val_tss"].idxmax()])  # the test can tell them apart
    assert load_checkpoint(out / "best.pt")["epoch"] == inner_best


def test_gap_really_drops_the_rows_whose_window_reaches_the_held_out_quarter(dense, tmp_path):
    root, labels, _ = dense
    # The same images at daily 13:00 times (a window from 13:00 crosses midnight into the next day).
    times = pd.date_range("2011-01-01 13:00", periods=len(labels), freq="1D", tz="UTC")
    relabelled = labels.assign(timestamp=times.strftime("%Y-%m-%dT%H:%M:%SZ"), fold=(times.month - 1) // 3 + 1)
    path = tmp_path / "labels.csv"
    relabelled.to_csv(path, index=False)
    fold, gap = 2, pd.Timedelta("72h")
    reach = times + gap - pd.Timedelta(1, "ns")
    dropped = (relabelled["fold"].to_numpy() != fold) & ((reach.month - 1) // 3 + 1 == fold)
    assert dropped.sum() == 3  # 29, 30 and 31 March reach into April
    kept = relabelled[(relabelled["fold"] != fold) & ~dropped]

    out = tmp_path / "run"
    train(_config(root, path, out, fold=fold, epochs=1, inner=0, select="last", gap="72h"))
    config = read_config(out)
    assert config["rows"] == {"train": len(kept), "inner": 0, "heldout": int((relabelled["fold"] == fold).sum()),
                              "purged": 3}
    assert f"-> {_instances(kept['target'])} augmented instances" in (out / "train.log").read_text()
    assert config["train_base_rate"] == pytest.approx(kept["target"].mean())


def test_defaults_and_the_study_recipe_are_pinned():
    d = TrainConfig()
    # Issue 10: the study's optimisation as the default, selection on the inner block.
    assert (d.model, d.batch_size, d.lr, d.weight_decay, d.optimizer, d.momentum) == ("vgg16", 64, 1e-4, 1e-3, "sgd", 0.0)
    assert (d.schedule, d.step_size, d.factor, d.epochs) == ("step", 5, 0.5, 50)
    assert (d.augment, d.class_weight, d.threshold, d.gap) == ("study", "study", 0.5, None)
    assert (d.inner, d.window, d.select, d.recipe, d.pretrained, d.weights) == (0.1, "24h", "best", None, False, None)
    assert (d.fold, d.seed, d.image_size, d.init, d.amp) == (1, 0, 512, "kaiming-normal", "auto")
    # The recipe: VGG16 from ImageNet, batch 64, plain SGD 1e-4 / 1e-3, fp32, 50 epochs, all rows, the last epoch.
    study = make_config({"recipe": "study"})
    assert (study.model, study.pretrained, study.batch_size, study.optimizer, study.lr, study.weight_decay,
            study.momentum) == ("vgg16", True, 64, "sgd", 1e-4, 1e-3, 0.0)
    assert (study.schedule, study.step_size, study.factor, study.augment, study.class_weight) == ("step", 5, 0.5, "study", "study")
    assert (study.amp, study.epochs, study.inner, study.gap, study.select, study.recipe) == ("off", 50, 0.0, None, "last", "study")
    assert study.image_size == 512 and set(RECIPES) == {"study"}
    from flarelens.data import MAX_ROTATION_DEG

    assert MAX_ROTATION_DEG == 5.0
    # The command line adds nothing of its own: no options give TrainConfig's defaults.
    from flarelens.cli import build_parser
    from flarelens.cli.train import settings

    args = build_parser("train").parse_args(["train", "--labels", "l.csv", "--images", "i", "--out", "o"])
    assert make_config(settings(args)) == TrainConfig(labels="l.csv", images="i", out="o")
    args = build_parser("train").parse_args(["train", "--labels", "l", "--images", "i", "--out", "o", "--recipe", "study",
                                             "--epochs", "3", "--lr", "0.01"])
    cfg = make_config(settings(args))
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.select) == (3, 0.01, 64, "last")  # explicit options win


def test_study_recipe_learning_rates_and_class_weights_follow_the_formulas(toy_dataset, tmp_path):
    root, labels, labels_path = toy_dataset
    out = tmp_path / "study"
    # The recipe with a small network and images (explicit options override it).
    assert main(["train", "--recipe", "study", "--labels", str(labels_path), "--images", str(root), "--model", "simplecnn",
                 "--image-size", "32", "--epochs", "6", "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    history = pd.read_csv(out / "history.csv")
    # Epoch e (1-based) trains at 1e-4 * 0.5 ** (e // 5): four epochs at 1e-4, then 5e-5.
    assert history["lr"].tolist() == pytest.approx([1e-4 * 0.5 ** (e // 5) for e in range(1, 7)], rel=1e-12)
    assert history["lr"].tolist()[3:5] == pytest.approx([1e-4, 5e-5])
    # All rows of the other three quarters (no inner block), the last epoch kept.
    trained = labels[labels["fold"] != 1]
    log = (out / "train.log").read_text()
    assert f"class weights NF 1.000 FL {_study_weight(trained['target']):.3f}" in log
    assert "recipe study (changed: epochs, image_size, model, pretrained)" in log
    assert history["inner_loss"].isna().all()
    config = read_config(out)
    assert config["recipe"] == "study" and config["rows"]["train"] == len(trained) and config["rows"]["inner"] == 0
    assert config["class_weights"] == pytest.approx([1.0, _study_weight(trained["target"])])
    assert load_checkpoint(out / "best.pt")["epoch"] == 6 and load_checkpoint(out / "best.pt")["config"]["recipe"] == "study"
    assert config["amp"] == "off" and config["select"] == "last"


def test_study_recipe_offline_without_weights_says_how_to_get_them(toy_dataset, tmp_path, monkeypatch, capsys):
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(503, "no network here")

        do_CONNECT = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root, _, labels_path = toy_dataset
    try:
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(var, f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
        code = main(["train", "--recipe", "study", "--labels", str(labels_path), "--images", str(root), "--image-size", "32",
                     "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "ImageNet weights of vgg16" in err and "--weights FILE" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_study_recipe_loads_a_local_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(3)
    features = torchvision.models.vgg16().features
    path = tmp_path / "vgg16_imagenet.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    cfg = make_config({"recipe": "study", "weights": str(path), "image_size": 32})
    assert cfg.weights == str(path) and not cfg.pretrained and cfg.model == "vgg16"
    model = initial_model(cfg)
    assert torch.equal(model.features[0].weight, features[0].weight)
    assert torch.equal(model.features[28].bias, features[28].bias)
    from flarelens.train import recipe_overrides

    assert recipe_overrides(cfg) == ["image_size", "weights"]


# --------------------------------------------------------------------------- formulas


def test_class_weight_schemes_on_a_made_up_label_set():
    from flarelens.weighting import class_weights

    targets = np.array([1] * 7 + [0] * 30)
    assert class_weights(targets, "study").tolist() == pytest.approx([1.0, 1.5 * (2 * 30) / (4 * 7)])
    # balanced: n / (2 n_class) over the instances shown (FL x4 = 28, NF x2 = 60 with augmentation).
    assert class_weights(targets, "balanced", "study").tolist() == pytest.approx([88 / (2 * 60), 88 / (2 * 28)])
    assert class_weights(targets, "balanced", "none").tolist() == pytest.approx([37 / (2 * 30), 37 / (2 * 7)])
    assert class_weights(targets, "none").tolist() == [1.0, 1.0]
    with pytest.raises(FlareLensError, match="flaring"):
        class_weights(np.zeros(5), "study")


@pytest.mark.parametrize("scheme,augment", [("study", "study"), ("balanced", "study"), ("balanced", "none"), ("none", "none")])
def test_every_weighting_and_augmentation_trains_and_logs_its_weights(toy_dataset, tmp_path, scheme, augment):
    root, labels, labels_path = toy_dataset
    out = tmp_path / "run"
    train(_config(root, labels_path, out, epochs=1, inner=0, select="last", class_weight=scheme, augment=augment,
                  schedule="none"))
    t = labels.loc[labels["fold"] != 1, "target"].to_numpy()
    fl, nf = int(t.sum()), int((t == 0).sum())
    shown_fl, shown_nf = (4 * fl, 2 * nf) if augment == "study" else (fl, nf)
    expected = {
        "study": (1.0, 1.5 * 2 * nf / (4 * fl)),
        "balanced": ((shown_fl + shown_nf) / (2 * shown_nf), (shown_fl + shown_nf) / (2 * shown_fl)),
        "none": (1.0, 1.0),
    }[scheme]
    log = (out / "train.log").read_text()
    assert f"class weights NF {expected[0]:.3f} FL {expected[1]:.3f}" in log
    assert f"-> {shown_fl + shown_nf} augmented instances" in log
    assert read_config(out)["class_weights"] == pytest.approx(list(expected))


def test_the_loss_is_class_weighted_in_training_and_validation(toy_dataset, tmp_path):
    """One SGD step over one batch holding every training row: the step and the losses must be
    those of the class-weighted mean cross-entropy with the study's weights (every fold of the
    toy set has flaring rows, so the weight of FL is not 1)."""
    root, labels, labels_path = toy_dataset
    out = tmp_path / "run"
    lr = 0.5
    cfg = make_config(_config(root, labels_path, out, epochs=1, batch_size=64, optimizer="sgd", lr=lr, weight_decay=0.0,
                              augment="none", inner=0, select="last", amp="off", schedule="none"))
    history = train(cfg)
    rows = labels[labels["fold"] != 1]
    w = torch.tensor([1.0, _study_weight(rows["target"])])
    assert w[1] != 1.0

    def weighted_loss(model, frame):
        ds = MagnetogramDataset(frame, root, 32, augment="none", cache=False)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor(frame["target"].to_numpy())
        per = F.cross_entropy(model(x), y, reduction="none")
        return (w[y] * per).sum() / w[y].sum()

    model = initial_model(cfg)
    loss = weighted_loss(model, rows)
    assert history["train_loss"][0] == pytest.approx(loss.detach().item(), rel=1e-5)
    loss.backward()
    with torch.no_grad():
        expected = {k: p - lr * p.grad for k, p in model.named_parameters()}
    trained = load_checkpoint(out / "last.pt")["model"]
    for key, value in expected.items():
        assert torch.allclose(trained[key], value, atol=1e-5, rtol=1e-4), key
    after, _ = load_model(out / "last.pt")
    with torch.no_grad():
        val = weighted_loss(after, labels[labels["fold"] == 1])
    assert history["val_loss"][0] == pytest.approx(float(val), rel=1e-5)


def test_plateau_schedule_watches_the_inner_loss(dense, tmp_path):
    root, _, labels_path = dense
    factor = 0.5
    history = train(_config(root, labels_path, tmp_path / "run", epochs=6, schedule="plateau", patience=0, factor=factor,
                            lr=3e-3, select="last"))

    def lrs(losses):
        # torch's ReduceLROnPlateau (mode min, relative threshold 1e-4, patience 0): the rate
        # is multiplied by FACTOR after every epoch that does not improve on the best so far.
        out, lr, best = [], 3e-3, math.inf
        for loss in losses:
            out.append(lr)
            if loss < best * (1 - 1e-4):
                best = loss
            else:
                lr *= factor
        return out

    expected = lrs(history["inner_loss"])
    assert history["lr"].tolist() == pytest.approx(expected)
    # The test can tell: the training or the held-out loss would have given other rates.
    assert lrs(history["train_loss"]) != pytest.approx(expected) or lrs(history["val_loss"]) != pytest.approx(expected)
    assert lrs(history["val_loss"]) != pytest.approx(expected)


def test_plateau_quantity_is_inner_else_training_loss_never_held_out():
    from flarelens.train import plateau_quantity

    assert plateau_quantity({"inner_loss": 0.3, "train_loss": 0.2, "val_loss": 0.1}) == 0.3
    assert plateau_quantity({"inner_loss": math.nan, "train_loss": 0.2, "val_loss": 0.1}) == 0.2


# --------------------------------------------------------------------------- resumption


def test_a_resumed_run_remembers_its_best_epoch(dense, tmp_path):
    """A learning rate too small to change any forecast: every epoch has the same inner TSS, so
    the first epoch stays the selected one; a resume that forgot it would take epoch 3."""
    root, _, labels_path = dense
    out = tmp_path / "run"
    kw = dict(optimizer="sgd", lr=1e-12, weight_decay=0.0, augment="none")
    train(_config(root, labels_path, out, epochs=2, **kw))
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    history = train(_config(root, labels_path, out, epochs=4, resume=True, **kw))
    assert history["inner_tss"].nunique() == 1 and len(history) == 4
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    assert load_checkpoint(out / "last.pt")["best"]["epoch"] == 1


# A model with dropout, so that resuming must restore the random generator too.
_SCRIPT = """
import sys
from torch import nn
from flarelens.models import FlareNet, register

@register("test-dropout", min_size=16)
def _model():
    return FlareNet(nn.Identity(),
                    nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()),
                    nn.AdaptiveMaxPool2d(1), nn.Sequential(nn.Dropout(0.5), nn.Linear(16, 2)))

from flarelens.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _train_cmd(script, root, labels_path, out, epochs, resume=False):
    cmd = [sys.executable, str(script), "train", "--labels", str(labels_path), "--images", str(root),
           "--model", "test-dropout", "--image-size", "32", "--epochs", str(epochs), "--batch-size", "8",
           "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--step-size", "3", "--schedule", "plateau",
           "--patience", "1", "--out", str(out), "--no-progress"]
    return cmd + (["--resume"] if resume else [])


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_resume_after_sigterm_and_sigkill_ends_with_the_same_weights(dense, tmp_path):
    root, _, labels_path = dense
    script = tmp_path / "flarelens_with_test_model.py"
    script.write_text(_SCRIPT)
    epochs = 8

    full = tmp_path / "full"
    subprocess.run(_train_cmd(script, root, labels_path, full, epochs), check=True, env=_env(), capture_output=True)

    # SIGTERM (SLURM preemption) as soon as the first epoch is saved: exit 143, one line, no debris.
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(script, root, labels_path, cut, epochs), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(cut / "last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "flarelens train: terminated (SIGTERM)" and "Traceback" not in err
    assert not list(cut.glob(".*part*"))
    termed_at = load_checkpoint(cut / "last.pt")["epoch"]
    assert 1 <= termed_at < epochs and len(pd.read_csv(cut / "history.csv")) == termed_at

    # Resume, then SIGKILL (no chance to clean up) once it has saved another epoch.
    proc = subprocess.Popen(_train_cmd(script, root, labels_path, cut, epochs, resume=True), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cut / "history.csv").is_file() or len(pd.read_csv(cut / "history.csv")) <= termed_at:
        assert proc.poll() is None and time.monotonic() < deadline, "the resumed run ended before its next epoch"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(cut / "last.pt")["epoch"]
    assert termed_at <= killed_at < epochs, "the run was not interrupted"

    # The dead run's lock does not hold the directory.
    subprocess.run(_train_cmd(script, root, labels_path, cut, epochs, resume=True), check=True, env=_env(),
                   capture_output=True)
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    assert b["epoch"] == epochs
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["inner_loss"] for r in a["history"]] == [r["inner_loss"] for r in b["history"]]
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
    assert a["scheduler"] == b["scheduler"] and a["best"] == b["best"]
    assert load_checkpoint(full / "best.pt")["epoch"] == load_checkpoint(cut / "best.pt")["epoch"]
    assert len(pd.read_csv(cut / "history.csv")) == epochs
    assert f"resumed from {cut / 'last.pt'} after epoch {killed_at}" in (cut / "train.log").read_text()
    assert not list(cut.glob(".*part*"))


# --------------------------------------------------------------------------- failures


def test_a_second_training_into_the_same_directory_is_refused_while_the_first_runs(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    out = tmp_path / "run"
    config = _config(root, labels_path, out, epochs=1, inner=0, select="last")
    stale = out / ".last.abc123.part.pt"
    with RunDir(out).lock():  # what a running training holds
        stale.write_bytes(b"left by a SIGKILLed save")
        with pytest.raises(FlareLensError, match=r"being trained by pid \d+"):
            train(config)
        assert not (out / "last.pt").exists()
    train(config)  # released: the next one runs, and removes the stale temporary
    assert (out / "last.pt").is_file() and not stale.exists()


class _NanAfter(torch.nn.Module):
    """Finite logits for the first ``ok`` training batches, then NaN (a run that diverges)."""

    def __init__(self, ok):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.head = torch.nn.Linear(4, 2)
        self.ok = ok
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        z = self.head(torch.relu(self.conv(x)).amax(dim=(2, 3)))
        return z * float("nan") if self.training and self.calls > self.ok else z


def test_a_diverging_run_stops_with_an_error_and_keeps_the_last_good_checkpoint(toy_dataset, tmp_path):
    from flarelens.models import MODELS, FlareNet, register

    root, labels, labels_path = toy_dataset
    n_batches = math.ceil(_instances(labels.loc[labels["fold"] != 1, "target"]) / 16)

    @register("test-nan", min_size=8)
    def _nan():
        net = _NanAfter(ok=n_batches)
        return FlareNet(torch.nn.Identity(), net, torch.nn.Identity(), torch.nn.Identity())

    out = tmp_path / "run"
    try:
        with pytest.raises(FlareLensError, match=r"epoch 2: training diverged .*last.pt keeps epoch 1.*--lr"):
            train(_config(root, labels_path, out, model="test-nan", epochs=3, inner=0, select="last", optimizer="sgd"))
    finally:
        del MODELS["test-nan"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and load_checkpoint(out / "best.pt")["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert len(pd.read_csv(out / "history.csv")) == 1
    # recorded where the report looks, so the page warns about the run
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["status"] == "diverged" and recorded["diverged_epoch"] == 2


def test_a_huge_learning_rate_fails_at_once_without_a_checkpoint(toy_dataset, tmp_path, capsys):
    root, _, labels_path = toy_dataset
    out = tmp_path / "run"
    code = main(["--quiet", "train", "--labels", str(labels_path), "--images", str(root), "--model", "simplecnn",
                 "--image-size", "32", "--epochs", "2", "--lr", "1e12", "--inner", "0", "--select", "last", "--out", str(out), "--no-progress",
                 "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "diverged" in err and "no checkpoint was written" in err
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def test_a_full_disk_during_a_checkpoint_save_says_so(toy_dataset, tmp_path, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    root, _, labels_path = toy_dataset
    out = tmp_path / "run"
    config = _config(root, labels_path, out, epochs=1, inner=0, select="last")
    train(config)
    before = (out / "last.pt").read_bytes()
    real_save = torch.save

    def save_to_a_full_disk(obj, f, *args, **kwargs):  # what writing a checkpoint meets on a full disk
        with open("/dev/full", "wb") as full:
            real_save(obj, full, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_to_a_full_disk)
    with pytest.raises(FlareLensError, match=f"no space left on {out}"):
        train(config, epochs=2, resume=True)
    assert (out / "last.pt").read_bytes() == before  # the last good checkpoint is untouched
    assert not list(out.glob(".*part*"))


def test_a_held_out_fold_without_flares_warns_and_reports_no_tss(toy_dataset, tmp_path, caplog):
    root, labels, _ = toy_dataset
    quiet = labels.copy()
    quiet.loc[quiet["fold"] == 1, "target"] = 0
    path = tmp_path / "labels.csv"
    quiet.to_csv(path, index=False)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="flarelens"):
        history = train(_config(root, path, out, epochs=1, inner=0, select="last"))
    assert history["val_tss"].isna().all()  # undefined, not a silent -1 or 0
    assert any("held-out fold 1" in r.getMessage() and "no flaring row" in r.getMessage() for r in caplog.records)
    assert "no flaring row" in (out / "train.log").read_text()


def test_cli_refuses_to_overwrite_a_run_or_resume_with_other_settings(toy_dataset, tmp_path, capsys):
    root, labels, labels_path = toy_dataset
    args = ["train", "--labels", str(labels_path), "--images", str(root), "--model", "simplecnn",
            "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-progress",
            "--threads", "1", "--inner", "0", "--select", "last"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume", "--lr", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "--lr 0.0001 (now 0.5)" in err and err.count("\n") == 1
    assert main(args + ["--resume", "--epochs", "2"]) == 0
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 2


def test_cli_errors_are_one_line(toy_dataset, tmp_path, capsys):
    root, labels, labels_path = toy_dataset
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    base = ["train", "--images", str(root), "--model", "simplecnn", "--image-size", "32", "--epochs", "1",
            "--no-progress", "--threads", "1", "--labels", str(labels_path)]
    cases = [
        (["--labels", str(tmp_path / "nope.csv")], "nope.csv"),
        (["--batch-size", "0"], "--batch-size"),
        (["--amp", "fp16", "--device", "cpu"], "fp16"),
        (["--device", "gpu0"], "--device gpu0"),
        (["--workers", "-1"], "--workers"),
        (["--momentum", "-0.5"], "--momentum"),
        (["--weight-decay=-1e-3"], "--weight-decay"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--threads", "0"], "--threads"),
        (["--patience", "-1"], "--patience"),
        (["--threshold", "1.5"], "--threshold"),
        (["--factor", "1"], "--factor"),
        (["--inner", "1"], "--inner"),
        (["--inner", "0"], "--select last"),
        (["--window", "soon"], "window"),
        (["--gap=-2h"], "gap"),
        (["--optimizer", "adam", "--momentum", "0.9"], "--momentum"),
        (["--pretrained", "--weights", str(a_file)], "not both"),
    ]
    only_q1 = tmp_path / "q1.csv"
    labels[labels["fold"] == 1].to_csv(only_q1, index=False)
    cases.append((["--labels", str(only_q1)], "no training rows"))
    for i, (extra, needle) in enumerate(cases):
        assert main(base + ["--out", str(tmp_path / f"r{i}")] + extra) == 1, extra
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, (extra, err)
    # An output path that is a file, or lies under one.
    for out in (a_file, a_file / "run"):
        assert main(base + ["--out", str(out), "--inner", "0", "--select", "last"]) == 1
        err = capsys.readouterr().err
        assert str(a_file) in err and err.count("\n") == 1, err


def test_library_accepts_a_config_object_and_overrides(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    config = TrainConfig(**_config(root, labels_path, tmp_path / "a", epochs=1, augment="none", class_weight="none",
                                   inner=0, select="last"))
    history = train(config, schedule="plateau", out=str(tmp_path / "b"))
    assert len(history) == 1 and (tmp_path / "b" / "last.pt").is_file() and not (tmp_path / "a").exists()
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["config"]["schedule"] == "plateau" and ckpt["config"]["augment"] == "none"
    assert "-> 32 augmented instances" in (tmp_path / "b" / "train.log").read_text()  # 32 rows, unaugmented
    with pytest.raises(FlareLensError, match="unknown training setting"):
        train({"labels": "x", "learning_rate": 1})
    assert dataclasses.asdict(make_config({"recipe": "study", "epochs": 2}))["epochs"] == 2


def test_dataloader_workers_change_nothing(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train(_config(root, labels_path, out, epochs=2, amp="off", workers=workers, cache="off", inner=0, select="last"))
        runs[workers] = load_checkpoint(out / "last.pt")["model"]
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[2][key]), key


def test_amp_resolution():
    from flarelens.train import cpu_has_bf16, resolve_amp

    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) == "off"
    assert resolve_amp("bf16", cpu) == "bf16"
    assert resolve_amp("auto", cpu) == ("bf16" if cpu_has_bf16() else "off")
    with pytest.raises(FlareLensError, match="fp16 needs a GPU"):
        resolve_amp("fp16", cpu)


@pytest.mark.parametrize("caps, expected", [({"avx512_bf16": True}, True), ({"amx_bf16": 1}, True),
                                            ({"avx512_bf16": False, "avx2": True}, False), ({}, False), (None, False)])
def test_cpu_has_bf16_reads_the_cpu_capabilities(monkeypatch, caps, expected):
    from flarelens.train import cpu_has_bf16

    def capabilities():
        if caps is None:
            raise RuntimeError("no capability query on this platform")
        return caps

    monkeypatch.setattr(torch.cpu, "get_capabilities", capabilities)
    assert cpu_has_bf16() is expected


def test_bf16_and_fp32_training_agree_roughly(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    kw = dict(epochs=1, inner=0, select="last")
    h32 = train(_config(root, labels_path, tmp_path / "fp32", amp="off", **kw))
    h16 = train(_config(root, labels_path, tmp_path / "bf16", amp="bf16", **kw))
    assert h16["train_loss"][0] == pytest.approx(h32["train_loss"][0], rel=0.05)
    assert h16["val_loss"][0] == pytest.approx(h32["val_loss"][0], rel=0.05)

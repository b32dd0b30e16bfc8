"""flarelens.train: learning, history and checkpoints, exact resumption after a kill, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from flarelens.checkpoint import load_checkpoint, load_model
from flarelens.cli import main
from flarelens.train import HISTORY_COLUMNS, TrainConfig, train


def _config(root, labels_path, out, **kw) -> dict:
    base = dict(labels=str(labels_path), images=str(root), fold=1, model="simplecnn", image_size=64, epochs=6,
                batch_size=8, optimizer="adam", lr=1e-3, out=str(out), progress=False, threads=1)
    base.update(kw)
    return base


def test_train_learns_the_toy_set_and_writes_history_log_and_checkpoints(toy_dataset, tmp_path):
    root, labels, labels_path = toy_dataset
    out = tmp_path / "run"
    history = train(_config(root, labels_path, out, epochs=8))

    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == list(range(1, 9))
    # Flaring toy images carry one strong bipole: the model finds it.
    assert history["val_tss"].max() >= 0.5
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert (history["train_time_s"] > 0).all() and (history["train_images_per_s"] > 0).all()
    assert history["lr"].tolist() == [1e-3] * 5 + [5e-4] * 3  # halved after every 5 epochs

    on_disk = pd.read_csv(out / "history.csv")
    pd.testing.assert_frame_equal(on_disk, history, check_dtype=False)
    log = (out / "train.log").read_text()
    assert sum(" epoch " in line and "/8 " in line for line in log.splitlines()) == 8
    assert "class weights NF 1.000 FL 1.500" in log  # 8 FL, 24 NF training rows: 2*24/(4*8)

    last = torch.load(out / "last.pt", weights_only=True)  # no arbitrary unpickling needed
    best = torch.load(out / "best.pt", weights_only=True)
    for ckpt in (last, best):
        assert {"model", "optimizer", "scheduler", "epoch", "config", "history", "best", "rng"} <= set(ckpt)
        json.dumps(ckpt["config"])
        json.dumps(ckpt["history"])
        assert {"model": "simplecnn", "image_size": 64, "fold": 1, "seed": 0}.items() <= ckpt["config"].items()
        assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
        assert len(ckpt["history"]) == ckpt["epoch"]
    assert last["epoch"] == 8
    best_epoch = int(history["epoch"][history["val_tss"].idxmax()])  # first epoch reaching the maximum
    assert best["epoch"] == best_epoch == last["best"]["epoch"]
    assert best["best"]["val_tss"] == pytest.approx(history["val_tss"].max())

    model, config = load_model(out / "best.pt")
    assert not model.training and config["model"] == "simplecnn"
    for key, value in best["model"].items():
        assert torch.equal(model.state_dict()[key], value)


def test_library_accepts_a_config_object_and_overrides(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    config = TrainConfig(**_config(root, labels_path, tmp_path / "a", epochs=1, augment="none", class_weight="none"))
    history = train(config, schedule="plateau", out=str(tmp_path / "b"))
    assert len(history) == 1 and (tmp_path / "b" / "last.pt").is_file() and not (tmp_path / "a").exists()
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["config"]["schedule"] == "plateau" and ckpt["config"]["augment"] == "none"
    # One pass over the 32 training rows, unaugmented.
    assert "-> 32 augmented instances" in (tmp_path / "b" / "train.log").read_text()


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
           "--model", "test-dropout", "--image-size", "96", "--epochs", str(epochs), "--batch-size", "8",
           "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--step-size", "3",
           "--out", str(out), "--no-progress"]
    return cmd + (["--resume"] if resume else [])


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def test_resume_after_a_kill_ends_with_the_same_weights(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    script = tmp_path / "flarelens_with_test_model.py"
    script.write_text(_SCRIPT)
    epochs = 8

    full = tmp_path / "full"
    subprocess.run(_train_cmd(script, root, labels_path, full, epochs), check=True, env=_env(), capture_output=True)

    # Kill a second run (SIGKILL: no chance to clean up) as soon as its first epoch is saved.
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(script, root, labels_path, cut, epochs), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cut / "last.pt").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(cut / "last.pt")["epoch"]
    assert 1 <= killed_at < epochs, "the run was not interrupted"
    assert len(pd.read_csv(cut / "history.csv")) == killed_at

    subprocess.run(_train_cmd(script, root, labels_path, cut, epochs, resume=True), check=True, env=_env(),
                   capture_output=True)
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    assert b["epoch"] == epochs
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
    assert a["scheduler"] == b["scheduler"]
    assert len(pd.read_csv(cut / "history.csv")) == epochs
    assert f"resumed from {cut / 'last.pt'} after epoch {killed_at}" in (cut / "train.log").read_text()

    # Continuing a finished run for more epochs is a resume with a larger --epochs.
    subprocess.run(_train_cmd(script, root, labels_path, cut, epochs + 1, resume=True), check=True, env=_env(),
                   capture_output=True)
    assert load_checkpoint(cut / "last.pt")["epoch"] == epochs + 1


def test_cli_refuses_to_overwrite_a_run_or_resume_with_other_settings(toy_dataset, tmp_path, capsys):
    root, labels, labels_path = toy_dataset
    args = ["train", "--labels", str(labels_path), "--images", str(root), "--model", "simplecnn",
            "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-progress",
            "--threads", "1"]
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
    base = ["train", "--images", str(root), "--model", "simplecnn", "--image-size", "32", "--epochs", "1",
            "--no-progress", "--threads", "1"]
    cases = [
        (["--labels", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "a")], "nope.csv"),
        (["--labels", str(labels_path), "--out", str(tmp_path / "b"), "--batch-size", "0"], "--batch-size"),
        (["--labels", str(labels_path), "--out", str(tmp_path / "c"), "--amp", "fp16", "--device", "cpu"], "fp16"),
    ]
    only_q1 = tmp_path / "q1.csv"
    labels[labels["fold"] == 1].to_csv(only_q1, index=False)
    cases.append((["--labels", str(only_q1), "--out", str(tmp_path / "d")], "no training rows"))
    for extra, needle in cases:
        assert main(base + extra) == 1
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


def test_dataloader_workers_change_nothing(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train(_config(root, labels_path, out, epochs=2, amp="off", workers=workers, cache="off"))
        runs[workers] = load_checkpoint(out / "last.pt")["model"]
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[2][key]), key


def test_amp_resolution():
    from flarelens.train import cpu_has_bf16, resolve_amp

    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) == "off"
    assert resolve_amp("bf16", cpu) == "bf16"
    assert resolve_amp("auto", cpu) == ("bf16" if cpu_has_bf16() else "off")



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
    h32 = train(_config(root, labels_path, tmp_path / "fp32", epochs=1, amp="off"))
    h16 = train(_config(root, labels_path, tmp_path / "bf16", epochs=1, amp="bf16"))
    assert h16["train_loss"][0] == pytest.approx(h32["train_loss"][0], rel=0.05)
    assert h16["val_loss"][0] == pytest.approx(h32["val_loss"][0], rel=0.05)
    assert Path(tmp_path / "bf16" / "best.pt").is_file()

"""flarelens.rundir: a run directory's files, its configuration without loading checkpoints, the lock."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest
from torch import nn

from flarelens.checkpoint import save_checkpoint
from flarelens.errors import FlareLensError
from flarelens.rundir import RunDir, read_config


def _checkpoint(path, config):
    save_checkpoint(path, model=nn.Linear(2, 2), epoch=1, config=config, history=[])


def test_config_json_is_read_without_touching_the_checkpoints(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.write_config({"model": "vgg16", "fold": 2, "inner": 0.1})
    # A checkpoint that cannot be read: read_config must not need it.
    run.best.write_bytes(b"not a checkpoint")
    assert read_config(run.path) == {"model": "vgg16", "fold": 2, "inner": 0.1}
    assert read_config(run.best) == read_config(run.path)  # a run's checkpoint: the config.json beside it
    assert run.read_config() == read_config(run.path)
    assert json.loads(run.config.read_text())["fold"] == 2


def test_old_runs_fall_back_to_the_checkpoint_configuration(tmp_path):
    run = RunDir(tmp_path / "old").create()
    _checkpoint(run.last, {"model": "simplecnn", "fold": 3})
    assert read_config(run.path) == {"model": "simplecnn", "fold": 3}
    elsewhere = tmp_path / "copied.pt"
    _checkpoint(elsewhere, {"model": "alexnet", "fold": 1})
    assert read_config(elsewhere)["model"] == "alexnet"
    assert read_config(RunDir(tmp_path / "empty").create().path) == {}


def test_damaged_inputs_are_one_line(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.config.write_text("{not json")
    with pytest.raises(FlareLensError, match="config.json: cannot read the run configuration"):
        read_config(run.path)
    run.config.write_text("[1, 2]")
    with pytest.raises(FlareLensError, match="not a run configuration"):
        read_config(run.path)
    run.history.write_bytes(b"\xff\xfe\x00garbage\n\x00")
    with pytest.raises(FlareLensError, match="history.csv"):
        run.read_history()
    with pytest.raises(FlareLensError, match="no such run directory or checkpoint"):
        read_config(tmp_path / "missing.pt")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FlareLensError, match="is a file"):
        RunDir(a_file).create()


def _hold_lock_then_die(path, ready):
    with RunDir(path).lock():
        ready.set()
        signal.pause()


def test_the_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    path = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock_then_die, args=(path, ready))
    proc.start()
    try:
        assert ready.wait(60)
        with pytest.raises(FlareLensError, match=f"being trained by pid {proc.pid}"):
            with RunDir(path).lock():
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up: the kernel drops the lock
        proc.join()
    stale = path / ".last.xyz.part.pt"
    stale.write_bytes(b"half a checkpoint")
    with RunDir(path).lock():
        assert not stale.exists()  # an interrupted write's temporary, removed under the lock

"""flarelens.distributed: devices, and DDP under torchrun (two CPU processes, gloo) training like one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from flarelens import distributed
from flarelens.checkpoint import load_checkpoint
from flarelens.errors import FlareLensError


def test_device_strings_are_checked_with_one_clear_line():
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert distributed.check_device(good) == good
    for bad in ("gpu0", "gpu", "cuda0", "cuda:", "cuda:-1", "CPU", "", "cpu:0:1"):
        with pytest.raises(FlareLensError, match="not a device; use auto, cpu, cuda"):
            distributed.check_device(bad)
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    assert distributed.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FlareLensError, match="no CUDA GPU is visible"):
            distributed.resolve_device("cuda:0")


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group("cpu") as procs:
        assert (procs.rank, procs.world, procs.main) == (0, 1, True)
        values = torch.tensor([1.0, 2.0])
        assert distributed.all_reduce(values, procs).tolist() == [1.0, 2.0]
        assert distributed.agree(True, procs) and not distributed.agree(False, procs)
        assert distributed.gather_object({"a": 1}, procs) is None
        distributed.barrier(procs)


def _run(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# Without augmentation. With the study's, the two runs part after a few steps although every
# global batch holds the same augmented images (test below) and each process computes its
# gradient exactly: DDP sums the two halves in another order than one process sums eight, a
# parameter difference of ~3e-6, and at a near-tie of a max pool or ReLU that flips where the
# gradient goes (measured 2026-11-26: a 2.9e-6 difference changed one batch's gradient by 6.5 %).
# Weights equal over epochs are then luck, not a property to test.
@pytest.mark.parametrize("augment", ["none"])
def test_two_gloo_processes_give_the_metrics_of_one(toy_dataset, tmp_path, augment):
    root, labels, _ = toy_dataset
    # An odd number of validation rows: shards of 8 and 7, so padding would show as a duplicate.
    labels = labels.drop(index=labels.index[labels["fold"] == 1][0])
    assert (labels["fold"] == 1).sum() % 2 == 1
    labels_path = tmp_path / "labels.csv"
    labels.to_csv(labels_path, index=False)

    # No batch norm or dropout (simplecnn), fp32: 2 ranks x 4 images average to the gradient of 1 x 8.
    args = ["train", "--labels", str(labels_path), "--images", str(root), "--model", "simplecnn",
            "--image-size", "64", "--epochs", "4", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3",
            "--amp", "off", "--no-progress", "--inner", "0", "--select", "last", "--augment", augment]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "flarelens", *args, "--out", str(one)], env)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "flarelens", *args, "--out", str(two)], env)

    h1, h2 = pd.read_csv(one / "history.csv"), pd.read_csv(two / "history.csv")
    assert len(h1) == len(h2) == 4
    assert h1["val_tss"].tolist() == h2["val_tss"].tolist()
    assert h1["val_hss"].tolist() == h2["val_hss"].tolist()
    assert h1["val_tss"].max() > 0  # the comparison is between models that predict something
    for col in ("val_loss", "train_loss"):
        assert h2[col].tolist() == pytest.approx(h1[col].tolist(), rel=1e-3)

    c1, c2 = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    for key in c1["model"]:
        assert torch.allclose(c1["model"][key], c2["model"][key], atol=1e-3), key
    # Rank 0 alone wrote the run: one line per epoch, and the generator state of each rank.
    log = (two / "train.log").read_text()
    assert sum(line.split(" ", 2)[2].startswith("epoch ") for line in log.splitlines()) == 4
    assert len(c2["rng_ranks"]) == 2 and not torch.equal(c2["rng_ranks"][0]["torch"], c2["rng_ranks"][1]["torch"])
    assert sorted(p.name for p in two.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt", "train.lock", "train.log"]


def test_two_ranks_see_the_global_batches_of_one_with_the_study_augmentation(toy_dataset):
    # What DDP's equivalence rests on with augmentation: rank 0 and rank 1 (train's sampler,
    # half the batch each) together hold, batch by batch, the very images and targets one
    # process trains on — the choices depend on the item, never on the rank.
    from torch.utils.data import DataLoader, DistributedSampler

    from flarelens.data import MagnetogramDataset, finish_batch

    root, labels, _ = toy_dataset
    rows = labels[labels["fold"] != 1].reset_index(drop=True)

    def batches(world, rank, epoch):
        ds = MagnetogramDataset(rows, root, 64, augment="study", seed=3, as_uint8=True)
        ds.set_epoch(epoch)
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        return [finish_batch(ds, b) for b in DataLoader(ds, batch_size=8 // world, sampler=sampler)]

    def content(x, y):
        return sorted((int(t), img.numpy().tobytes()) for img, t in zip(x, y))

    for epoch in (0, 1):
        one, r0, r1 = batches(1, 0, epoch), batches(2, 0, epoch), batches(2, 1, epoch)
        assert len(one) == len(r0) == len(r1) > 1
        seen = 0
        for (x, y), (x0, y0), (x1, y1) in zip(one, r0, r1):
            assert content(x, y) == content(torch.cat([x0, x1]), torch.cat([y0, y1]))
            seen += len(x)
        assert seen == len(rows) + (rows["target"] == 1).sum() * 2 + len(rows)  # 4 per FL row, 2 per NF row
    assert content(*one[0]) != content(*batches(1, 0, 0)[0])  # epochs differ: the test sees the shuffle


def test_global_batch_must_split_evenly(toy_dataset, tmp_path):
    root, _, labels_path = toy_dataset
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "flarelens",
         "train", "--labels", str(labels_path), "--images", str(root), "--model", "simplecnn", "--image-size", "32",
         "--epochs", "1", "--batch-size", "7", "--out", str(tmp_path / "r"), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "--batch-size 7 must be a multiple of the number of processes (2)" in proc.stderr

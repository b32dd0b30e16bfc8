"""flarelens pack: one memory-mapped uint8 array of the labelled images, resumable, refused when stale;
training batches from it equal those from the image folder."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from flarelens import data as data_module
from flarelens.cli import main
from flarelens.data import ROTATE, MagnetogramDataset, load_image
from flarelens.errors import FlareLensError
from flarelens.pack import build_pack, done_path, index_path, open_pack

SIZE = 32


@pytest.fixture
def packed(toy_dataset, tmp_path):
    root, labels, labels_csv = toy_dataset
    out = tmp_path / "images-32.npy"
    summary = build_pack(labels_csv, root, out, size=SIZE, workers=1, progress=False)
    return root, labels, labels_csv, out, summary


def test_pack_holds_the_training_pixels_and_an_index(packed):
    root, labels, _, out, summary = packed
    assert (summary.images, summary.written, summary.already) == (len(labels), len(labels), 0)
    pack = open_pack(out)
    assert pack.images.shape == (len(labels), SIZE, SIZE) and pack.images.dtype == np.uint8
    assert isinstance(pack.images, np.memmap)
    index = json.loads(index_path(out).read_text())
    assert index["complete"] and index["size"] == SIZE
    assert index["files"] == list(labels["file"]) and index["timestamps"] == list(labels["timestamp"])
    for i in (0, 7, len(labels) - 1):
        source = root / labels["file"][i]
        assert np.array_equal(pack.images[i], load_image(source, SIZE)[0].numpy())
        assert index["source_bytes"][i] == source.stat().st_size
        assert index["source_mtime_ns"][i] == source.stat().st_mtime_ns
        assert index["source_px"][i] == 64
    assert not done_path(out).exists()


def test_a_pack_built_by_worker_processes_is_the_same(packed, tmp_path):
    root, _, labels_csv, out, _ = packed
    other = tmp_path / "parallel.npy"
    build_pack(labels_csv, root, other, size=SIZE, workers=2, progress=False)
    assert np.array_equal(np.load(other), np.load(out))


def loader_batches(dataset, epoch, workers=0, batch_size=8):
    """The batches train.py's loader gives for ``epoch``: a DistributedSampler over the augmented index."""
    dataset.set_epoch(epoch)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=5)
    sampler.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    return [dataset.finish_batch(batch) for batch in loader], list(sampler)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_from_the_pack_equal_those_from_the_folder(packed, workers):
    root, labels, _, out, _ = packed
    folder = MagnetogramDataset(labels, root, SIZE, augment="study", seed=5, cache=False, as_uint8=True)
    # The pack path augments whole batches (as on a GPU), the folder path each item in the loader.
    pack = MagnetogramDataset(labels, out, SIZE, augment="study", seed=5, as_uint8=True, batch_augment=True)
    assert pack.batch_mode and not folder.batch_mode
    for epoch in (0, 1):
        from_folder, order = loader_batches(folder, epoch)
        from_pack, pack_order = loader_batches(pack, epoch, workers)
        assert order == pack_order
        assert [folder.augmentation(i) for i in order] == [pack.augmentation(i) for i in order]
        assert len(from_pack) == len(from_folder) == -(-len(folder) // 8)
        for (xf, yf), (xp, yp) in zip(from_folder, from_pack):
            assert xf.dtype == xp.dtype == torch.uint8
            assert torch.equal(xf, xp) and torch.equal(yf, yp)
    rotated = [i for i in order if folder.augmentation(i)[1] == ROTATE]
    assert rotated  # the comparison covered rotations, not only flips


def test_pack_rows_held_on_the_device_give_the_same_batches(packed):
    root, labels, _, out, _ = packed
    folder = MagnetogramDataset(labels, root, SIZE, augment="study", seed=2, cache=False)
    held = MagnetogramDataset(labels, out, SIZE, augment="study", seed=2, cache="device", device="cpu")
    assert held.batch_mode
    x, _ = held.finish_batch(next(iter(DataLoader(held, batch_size=6))))
    assert x.dtype == torch.float32  # as_uint8=False: scaled like the folder's items
    for epoch in (0, 3):
        a, _ = loader_batches(folder, epoch)
        b, _ = loader_batches(held, epoch)
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_validation_items_from_the_pack_equal_the_folder_items(packed):
    root, labels, _, out, _ = packed
    val = labels[labels["fold"] == 2]
    folder = MagnetogramDataset(val, root, SIZE, augment="none", cache=False)
    pack = MagnetogramDataset(val, out, None, augment="none")
    assert pack.image_size == SIZE and len(pack) == len(val)
    for i in range(len(val)):
        assert torch.equal(folder[i][0], pack[i][0]) and folder[i][1] == pack[i][1]


def test_a_half_built_pack_resumes(toy_dataset, tmp_path, monkeypatch):
    root, labels, labels_csv = toy_dataset
    out = tmp_path / "p.npy"
    real = data_module.load_image
    calls = {"n": 0}

    def interrupted(path, size, with_source_size=False):
        calls["n"] += 1
        if calls["n"] > 40:  # Ctrl-C while the second chunk of 32 is being decoded
            raise KeyboardInterrupt
        return real(path, size, with_source_size)

    monkeypatch.setattr(data_module, "load_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_pack(labels_csv, root, out, size=SIZE, workers=1, progress=False)
    done = np.load(done_path(out))
    assert (done > 0).sum() == 32 and not json.loads(index_path(out).read_text())["complete"]
    with pytest.raises(FlareLensError, match="unfinished"):
        MagnetogramDataset(labels, out, SIZE)

    calls["n"] = -10**6  # no more interruptions; count the images decoded by the second run
    summary = build_pack(labels_csv, root, out, size=SIZE, workers=1, progress=False)
    assert (summary.written, summary.already) == (len(labels) - 32, 32)
    assert calls["n"] == -10**6 + len(labels) - 32
    fresh = tmp_path / "fresh.npy"
    monkeypatch.setattr(data_module, "load_image", real)
    build_pack(labels_csv, root, fresh, size=SIZE, workers=1, progress=False)
    assert np.array_equal(np.load(out), np.load(fresh))
    assert json.loads(index_path(out).read_text()) == json.loads(index_path(fresh).read_text()) | {
        "images_root": json.loads(index_path(out).read_text())["images_root"]}
    assert open_pack(out).images.shape[0] == len(labels)


def test_a_stale_pack_is_refused_with_one_line(packed, tmp_path, capsys):
    root, labels, _, out, _ = packed
    more = pd.concat([labels, labels.iloc[[3]].assign(file="2019/01/01/HMI.m2019.01.01_00.00.00.png")])
    with pytest.raises(FlareLensError, match=r"stale: 1 labelled image.*row 50.*HMI\.m2019") as err:
        MagnetogramDataset(more, out, SIZE)
    assert "\n" not in str(err.value)
    with pytest.raises(FlareLensError, match="32x32 px images but 64 px"):
        MagnetogramDataset(labels, out, 64)
    # A source image rewritten after packing (the folder still exists here).
    changed = root / labels["file"][5]
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(changed)
    with pytest.raises(FlareLensError, match=r"stale: 1 of its source images.*changed"):
        MagnetogramDataset(labels, out, SIZE)
    # The command line says it in one line, exit status 1, no traceback.
    labels_csv = tmp_path / "more.csv"
    more.to_csv(labels_csv, index=False)
    rc = main(["train", "--labels", str(labels_csv), "--images", str(out), "--model", "simplecnn", "--image-size",
               str(SIZE), "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and "stale" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # Packing again repacks only the changed image; the pack is then usable again.
    summary = build_pack(tmp_path / "labels.csv", root, out, size=SIZE, workers=1, progress=False)
    assert (summary.written, summary.changed) == (1, 1)
    assert (open_pack(out).images[5] == load_image(changed, SIZE)[0].numpy()).all()
    assert MagnetogramDataset(labels, out, SIZE)[5][0].mul(255).round().eq(7).any()


def test_pack_refuses_other_labels_sizes_and_missing_images(packed, tmp_path, capsys):
    root, labels, labels_csv, out, _ = packed
    rc = main(["pack", "--labels", str(labels_csv), "--images", str(root), "--size", "64", "--out", str(out),
               "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "another size" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert open_pack(out).size == SIZE  # untouched
    rc = main(["pack", "--labels", str(labels_csv), "--images", str(root), "--size", "64", "--out", str(out),
               "--workers", "1", "--no-progress", "--overwrite"])
    assert rc == 0 and open_pack(out).size == 64
    foreign = tmp_path / "foreign.npy"
    np.save(foreign, np.zeros(3))
    with pytest.raises(FlareLensError, match="not a flarelens pack"):
        build_pack(labels_csv, root, foreign, size=SIZE, workers=1, progress=False)
    assert np.array_equal(np.load(foreign), np.zeros(3))
    (root / labels["file"][9]).unlink()
    with pytest.raises(FlareLensError, match=r"HMI\.m.*not found.*row 11"):
        build_pack(labels_csv, root, tmp_path / "other.npy", size=SIZE, workers=1, progress=False)


def test_training_from_the_pack_equals_training_from_the_folder(toy_dataset, tmp_path):
    from flarelens.train import train

    root, labels, labels_csv = toy_dataset
    out = tmp_path / "p.npy"
    build_pack(labels_csv, root, out, size=SIZE, workers=1, progress=False)
    common = dict(labels=str(labels_csv), fold=1, model="simplecnn", image_size=SIZE, epochs=1, batch_size=16,
                  device="cpu", workers=0, threads=1, progress=False, seed=4, inner=0, select="last")
    from_folder = train(images=str(root), out=str(tmp_path / "a"), cache="off", **common)
    from_pack = train(images=str(out), out=str(tmp_path / "b"), **common)
    for col in ("train_loss", "val_loss", "val_tss"):
        assert from_folder[col].tolist() == from_pack[col].tolist()
    assert os.path.getsize(tmp_path / "a" / "best.pt") > 0


def test_datasets_reach_spawned_workers_without_their_pixels(packed):
    """A loader worker started by "spawn" gets the dataset pickled: it must map the pack
    itself (not receive a copy of it) and, with rows held on the device, hand out row numbers."""
    import pickle

    from torch.utils.data import default_collate

    _, labels, _, out, _ = packed
    for kwargs in ({"batch_augment": True}, {"cache": "device", "device": "cpu"}):
        ds = MagnetogramDataset(labels, out, SIZE, augment="study", seed=1, **kwargs)
        blob = pickle.dumps(ds)
        assert len(blob) < len(labels) * SIZE * SIZE  # the pixels alone would be this much
        copy = pickle.loads(blob)
        items = [copy[i] for i in range(10)]
        assert [type(v) for v in items[0]] == [type(v) for v in ds[0]]
        x, y = ds.finish_batch(default_collate(items))
        x0, y0 = ds.finish_batch(default_collate([ds[i] for i in range(10)]))
        assert torch.equal(x, x0) and torch.equal(y, y0)

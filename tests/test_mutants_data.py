"""Tests added after mutation testing of flarelens.data (issue 14).

Each test checks a behaviour a surviving mutant broke without any test noticing: the
user-facing error messages, the pack-backed dataset (also with its rows in "device"
memory, run here on the CPU and on torch's data-less "meta" device), batch mode and
``finish_batch``, empty datasets and the automatic cache. Expected values come from the
documented rules (the study's augmentation scheme, the docstrings), not from the code's
current output. Explained survivors: docs/mutation-notes/data.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import write_toy_dataset
from flarelens import data as data_module
from flarelens.data import (
    HFLIP,
    ORIGINAL,
    ROTATE,
    VFLIP,
    MagnetogramDataset,
    augment_batch,
    expanded_index,
    finish_batch,
    load_image,
)
from flarelens.errors import FlareLensError
from flarelens.pack import build_pack

SIZE = 16


@pytest.fixture
def small(tmp_path):
    """(image root, labels) of 6 toy 16² images: rows 0 and 3 flaring."""
    root = tmp_path / "images"
    labels = write_toy_dataset(root, n=6, size=SIZE, cadence="30D")
    return root, labels


@pytest.fixture
def packed(small, tmp_path):
    """(image root, labels, pack path) with every image packed at SIZE px."""
    root, labels = small
    out = tmp_path / "images-16.npy"
    build_pack(labels, root, out, size=SIZE, workers=1, progress=False)
    return root, labels, out


def pixels(root, labels, row):
    """The uint8 pixels of labels row ``row`` read straight from its PNG file."""
    return torch.from_numpy(np.array(Image.open(root / labels["file"][row])))[None]


# --- user-facing messages -------------------------------------------------------------

def test_augment_batch_names_the_counts_that_do_not_match():
    """A caller passing codes for the wrong batch must learn how many of each it gave."""
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="3 images but 2 codes and 3 angles"):
        augment_batch(images, [0, 1], [0.0, 0.0, 0.0])


def test_unknown_augment_scheme_lists_the_choices():
    """The message is the user's only guide to the valid --augment values."""
    with pytest.raises(FlareLensError, match=r"augment must be one of study, none, got 'flips'"):
        expanded_index([0, 1], "flips")


def test_non_square_message_says_to_crop_or_pad(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((10, 14), np.uint8)).save(path)
    with pytest.raises(FlareLensError, match=r"14x10 px image; .* does not squash it \(crop or pad it to a square first\)"):
        load_image(path, 8)


def test_mixed_sizes_message_gives_both_sides(small):
    """The message names the two sides in px (H, W), not the channel count."""
    root, labels = small
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / labels["file"][2])
    with pytest.raises(FlareLensError, match=r"image is \(10, 10\) px but .* is \(16, 16\); pass --image-size"):
        MagnetogramDataset(labels, root, image_size=None, cache=True)


# --- augmentation choices -------------------------------------------------------------

def test_only_rotations_carry_an_angle(small):
    """Flips and originals have angle 0: batch mode hands the angle on with the item."""
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, augment="study", seed=3, cache=False)
    seen = set()
    for i in range(len(ds)):
        _, code, angle = ds.augmentation(i)
        seen.add(code)
        if code == ROTATE:
            assert -5.0 <= angle <= 5.0 and angle != 0.0
        else:
            assert angle == 0.0
    assert {ORIGINAL, HFLIP, VFLIP, ROTATE} <= seen


# --- directory datasets: cache, paths, empty sets ---------------------------------------

def test_auto_cache_holds_small_datasets_in_memory(small):
    """cache="auto" (the default) decodes small sets once: items survive the files' removal."""
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, augment="none")
    expected = pixels(root, labels, 4)
    for f in labels["file"]:
        (root / f).unlink()
    image, target = ds[4]
    assert torch.equal(image, expected.float() / 255) and target == labels["target"][4]


def test_auto_cache_only_up_to_its_byte_limit(small, monkeypatch):
    """cache="auto" caches when the decoded images take at most AUTO_CACHE_BYTES, and never
    without an image size (the files' sizes are then unknown): past the limit each item is
    read from its file, so a removed file is reported with its labels row's time."""
    root, labels = small
    need = len(labels) * SIZE * SIZE
    monkeypatch.setattr(data_module, "AUTO_CACHE_BYTES", need)
    at_limit = MagnetogramDataset(labels, root, SIZE)
    no_size = MagnetogramDataset(labels, root, None)
    monkeypatch.setattr(data_module, "AUTO_CACHE_BYTES", need - 1)
    past_limit = MagnetogramDataset(labels, root, SIZE)
    (root / labels["file"][2]).unlink()
    assert at_limit[2][0].shape == (1, SIZE, SIZE)
    when = labels["timestamp"][2]
    for ds in (past_limit, no_size):
        with pytest.raises(FlareLensError, match=f"image file not found \\(labels row of {when}, file"):
            ds[2]


def test_path_of_a_row_is_under_the_image_root(small):
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, cache=False)
    assert ds.path(2) == root / labels["file"][2]


def test_empty_dataset_loads_no_rows(small):
    """An empty labels table (e.g. a fold with no rows) gives an empty dataset, not a crash."""
    root, labels = small
    ds = MagnetogramDataset(labels.iloc[:0], root, SIZE, cache=True)
    assert len(ds) == 0 and ds.cached
    empty = ds.load_rows([])
    assert empty.ndim == 4 and empty.shape[:2] == (0, 1) and empty.dtype == torch.uint8
    with pytest.raises(IndexError):
        ds.load_row(0)  # there is no row 0


def test_load_rows_of_nothing_is_an_empty_batch(small):
    """Asking a non-empty dataset for no rows gives an empty 4-d uint8 batch."""
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, cache=False)
    empty = ds.load_rows([])
    assert empty.ndim == 4 and empty.shape[:2] == (0, 1) and empty.dtype == torch.uint8


class BarSpy:
    """Stands in for flarelens.progress.bar: records its arguments, draws nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, iterable=None, **kwargs):
        self.calls.append(kwargs)
        return list(iterable)


def test_loading_bar_counts_the_images_and_honours_progress(small, monkeypatch):
    """The bar the user sees counts the n - 1 images decoded in threads (the first is read
    before), disappears when done, and is not drawn when progress=False was asked."""
    import flarelens.progress

    root, labels = small
    for progress in (False, True):
        spy = BarSpy()
        monkeypatch.setattr(flarelens.progress, "bar", spy)
        MagnetogramDataset(labels, root, SIZE, cache=True, progress=progress)
        (kwargs,) = spy.calls
        assert kwargs["progress"] is progress
        assert kwargs["total"] == len(labels) - 1
        assert kwargs["leave"] is False and kwargs["desc"] == "loading images"


# --- batch mode and finish_batch --------------------------------------------------------

def test_batch_augment_true_defers_augmentation_to_finish_batch(small):
    """With batch_augment=True items are (uint8 image, target, code, angle) and
    finish_batch gives the same float images as the per-item path."""
    root, labels = small
    item_ds = MagnetogramDataset(labels, root, SIZE, augment="study", seed=5, cache=False)
    batch_ds = MagnetogramDataset(labels, root, SIZE, augment="study", seed=5, cache=False, batch_augment=True,
                                  device="cpu")
    assert batch_ds.batch_mode and not item_ds.batch_mode
    indices = list(range(len(batch_ds)))
    items = batch_ds.__getitems__(indices)
    assert all(len(item) == 4 and item[0].dtype == torch.uint8 for item in items)
    batch = torch.utils.data.default_collate(items)
    x, y = finish_batch(batch_ds, batch)
    expected = torch.stack([item_ds[i][0] for i in indices])
    assert x.dtype == torch.float32 and torch.equal(x, expected)
    assert torch.equal(y, torch.as_tensor(batch_ds.targets[batch_ds.index[:, 0]]))


def test_batch_augment_false_gives_plain_items(small):
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, augment="none", cache=False, batch_augment=False)
    assert not ds.batch_mode and len(ds[0]) == 2


def test_a_cuda_device_turns_on_batch_augmentation_by_default(small):
    """Naming a CUDA device (no GPU is touched for a directory dataset) moves the
    augmentation to the batch, where the GPU does it."""
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, augment="study", cache=False, device="cuda")
    assert ds.batch_augment and ds.batch_mode and len(ds[0]) == 4
    ds = MagnetogramDataset(labels, root, SIZE, augment="study", cache=False, device="cuda", batch_augment=False)
    assert not ds.batch_mode and len(ds[0]) == 2


def test_finish_batch_moves_batches_to_the_device_and_keeps_uint8_on_request(small):
    """On the data-less meta device: images and targets both end up on ``device``."""
    root, labels = small
    for as_uint8 in (False, True):
        ds = MagnetogramDataset(labels, root, SIZE, augment="study", cache=False, device="meta", batch_augment=True,
                                as_uint8=as_uint8)
        batch = torch.utils.data.default_collate(ds.__getitems__(list(range(8))))
        x, y = ds.finish_batch(batch)
        assert x.device.type == "meta" and y.device.type == "meta"
        assert x.shape == (8, 1, SIZE, SIZE)
        assert x.dtype == (torch.uint8 if as_uint8 else torch.float32)


def test_finish_batch_of_plain_items_and_of_other_datasets(small):
    root, labels = small
    ds = MagnetogramDataset(labels, root, SIZE, augment="none", cache=False, as_uint8=True)
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    x, y = finish_batch(ds, batch)
    assert torch.equal(x, torch.stack([pixels(root, labels, r) for r in range(3)]))
    assert y.tolist() == labels["target"][:3].tolist()
    other = [(torch.ones(1, 2, 2), 1), (torch.zeros(1, 2, 2), 0)]
    x, y = finish_batch(other, torch.utils.data.default_collate(other))
    assert torch.equal(x, torch.stack([t for t, _ in other])) and y.tolist() == [1, 0]


# --- packs ----------------------------------------------------------------------------

def test_pack_dataset_gives_the_files_pixels(packed):
    root, labels, out = packed
    ds = MagnetogramDataset(labels, out, SIZE, augment="none", as_uint8=True)
    assert ds.pack is not None and ds.cached and ds.path(3) == out
    for row in range(len(labels)):
        assert torch.equal(ds[row][0], pixels(root, labels, row))


def test_pack_of_another_size_is_refused(packed):
    _, labels, out = packed
    with pytest.raises(FlareLensError, match="holds 16x16 px images but 8 px were asked"):
        MagnetogramDataset(labels, out, 8)


def test_pack_cache_true_copies_the_rows_into_memory(packed):
    """cache=True decodes the pack into RAM once; cache=False reads the file per item."""
    root, labels, out = packed
    cached = MagnetogramDataset(labels, out, SIZE, cache=True, as_uint8=True)
    mapped = MagnetogramDataset(labels, out, SIZE, cache=False, as_uint8=True)
    expected = pixels(root, labels, 1)
    arr = np.load(out, mmap_mode="r+")
    arr[:] = 7  # the pack file changes after the datasets were made
    arr.flush()
    del arr
    assert torch.equal(cached[1][0], expected)
    assert torch.equal(mapped[1][0], torch.full_like(expected, 7))


def test_pack_rows_held_on_the_device_are_gathered_and_augmented_in_finish_batch(packed):
    """cache="device" keeps only the labels' pack rows on ``device``; items are then row
    numbers and finish_batch gathers and augments them like the per-item path."""
    root, labels, out = packed
    # a subset, out of order and with a repeat: the device copy's rows differ from the pack's
    subset = labels.iloc[[4, 1, 3, 1, 0]].reset_index(drop=True)
    ds = MagnetogramDataset(subset, out, SIZE, augment="study", seed=2, cache="device")
    ref = MagnetogramDataset(subset, root, SIZE, augment="study", seed=2, cache=False)
    assert ds.batch_mode and ds.cached
    indices = list(range(len(ds)))
    items = ds.__getitems__(indices)
    assert all(isinstance(item[0], int) for item in items)
    # the row numbers index the device copy: the same file gives the same row
    device_row = {}
    for i, item in zip(indices, items):
        device_row.setdefault(subset["file"][ds.index[i, 0]], set()).add(item[0])
    assert all(len(v) == 1 for v in device_row.values()) and len(device_row) == 4
    assert len(set().union(*device_row.values())) == 4
    x, y = ds.finish_batch(torch.utils.data.default_collate(items))
    assert torch.equal(x, torch.stack([ref[i][0] for i in indices]))
    assert torch.equal(y, torch.as_tensor(ref.targets[ref.index[:, 0]]))


def test_pack_rows_go_to_the_named_device(packed):
    """On the meta device (shapes and devices only): the copy and the batches live there."""
    _, labels, out = packed
    ds = MagnetogramDataset(labels, out, SIZE, augment="study", cache="device", device="meta")
    batch = torch.utils.data.default_collate(ds.__getitems__(list(range(8))))
    x, y = ds.finish_batch(batch)
    assert x.device.type == "meta" and x.shape == (8, 1, SIZE, SIZE) and x.dtype == torch.float32
    assert y.device.type == "meta"


def test_device_copy_bar_honours_progress(packed, monkeypatch):
    import flarelens.progress

    _, labels, out = packed
    for progress in (False, True):
        spy = BarSpy()
        monkeypatch.setattr(flarelens.progress, "bar", spy)
        MagnetogramDataset(labels, out, SIZE, cache="device", progress=progress)
        (kwargs,) = spy.calls
        assert kwargs["progress"] is progress and kwargs["desc"] == "images to GPU" and kwargs["leave"] is False


def test_pack_on_cuda_without_cache_stays_in_the_loader(packed):
    """cache=False on a CUDA device: the pack is read per item (no GPU copy); the
    augmentation still moves to the batch. Needs no GPU: nothing is put on it."""
    root, labels, out = packed
    ds = MagnetogramDataset(labels, out, SIZE, augment="study", cache=False, device="cuda")
    image, target, code, angle = ds[0]
    assert torch.equal(image, pixels(root, labels, 0))


def test_device_cache_auto_takes_at_most_a_quarter_of_free_memory(packed, monkeypatch):
    """cache="auto" on CUDA: the rows go to the GPU when they take <= 1/4 of its free memory."""
    _, labels, out = packed
    ds = MagnetogramDataset(labels, out, SIZE, cache=False)
    ds.device = torch.device("cuda")
    need = len(labels) * SIZE * SIZE
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * need, 8 * need))
    assert ds._device_cache_wanted("auto")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * need - 4, 8 * need))
    assert not ds._device_cache_wanted("auto")
    assert ds._device_cache_wanted(True) and ds._device_cache_wanted("on")
    assert not ds._device_cache_wanted(False)


def test_load_row_of_a_device_held_pack_is_that_rows_image(packed):
    """load_row(k) is documented as the image of labels row k, also with cache="device"."""
    root, labels, out = packed
    subset = labels.iloc[[4, 1, 3, 1, 0]].reset_index(drop=True)  # e.g. one fold of a pack of all labels
    ds = MagnetogramDataset(subset, out, SIZE, cache="device")
    for k in range(len(subset)):
        assert torch.equal(ds.load_row(k), pixels(root, subset, k))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_augmentation_on_cuda_gives_the_cpu_pixels(packed):
    """On a GPU the batch path (device-held pack rows, augment_batch, rotate_nearest) must
    give the very pixels of the CPU path, with codes and angles given on either device."""
    _, labels, out = packed
    cpu = MagnetogramDataset(labels, out, SIZE, augment="study", seed=4, cache="device")
    gpu = MagnetogramDataset(labels, out, SIZE, augment="study", seed=4, cache="device", device="cuda")
    indices = list(range(len(cpu)))
    x_cpu, y_cpu = cpu.finish_batch(torch.utils.data.default_collate(cpu.__getitems__(indices)))
    x_gpu, y_gpu = gpu.finish_batch(torch.utils.data.default_collate(gpu.__getitems__(indices)))
    assert x_gpu.device.type == "cuda" and y_gpu.device.type == "cuda"
    assert torch.equal(x_gpu.cpu(), x_cpu) and torch.equal(y_gpu.cpu(), y_cpu)
    images = cpu.load_rows(range(len(labels)))
    codes = torch.tensor([ORIGINAL, HFLIP, VFLIP, ROTATE, ROTATE, HFLIP])
    angles = torch.tensor([0.0, 0.0, 0.0, 4.5, -3.2, 0.0], dtype=torch.float64)
    expected = augment_batch(images, codes, angles)
    assert torch.equal(augment_batch(images.cuda(), codes.cuda(), angles.cuda()).cpu(), expected)

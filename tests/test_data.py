"""flarelens.data: decoding, scaling, resizing, the study's augmentation scheme (per item and
per batch), class weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from flarelens import images
from flarelens.data import (
    HFLIP, MAX_ROTATION_DEG, ORIGINAL, RANDOM_CHOICE, ROTATE, VFLIP, MagnetogramDataset, augment_batch, augment_image,
    expanded_index, load_image, read_image, rotate_nearest,
)
from flarelens.errors import FlareLensError


def test_read_image_is_images_load_as_a_tensor(toy_dataset, tmp_path):
    root, labels, _ = toy_dataset
    png = root / labels["file"][0]
    decoded = read_image(png)
    assert decoded.dtype == torch.uint8 and decoded.shape == (1, 64, 64)
    assert np.array_equal(decoded[0].numpy(), images.load(png))
    jpg = tmp_path / "a.jpg"
    Image.open(png).save(jpg, quality=90)
    assert np.array_equal(read_image(jpg)[0].numpy(), images.load(jpg))


def test_read_image_rejects_16_bit_png_like_images_load(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(path)
    with pytest.raises(FlareLensError, match="deep.png"):
        read_image(path)


def test_items_are_scaled_to_unit_range_with_targets(toy_dataset):
    root, labels, _ = toy_dataset
    ds = MagnetogramDataset(labels, root, image_size=64, augment="none", cache=False)
    assert len(ds) == len(labels)
    for i in (0, 1, 5):
        image, target = ds[i]
        assert image.dtype == torch.float32 and image.shape == (1, 64, 64)
        expected = torch.from_numpy(images.load(root / labels["file"][i]).copy()).float() / 255
        assert torch.equal(image[0], expected)
        assert target == labels["target"][i]
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_resizes_when_the_file_size_differs(toy_dataset):
    root, labels, _ = toy_dataset
    small = MagnetogramDataset(labels, root, image_size=32, augment="none", cache=False)
    image, _ = small[0]
    assert image.shape == (1, 32, 32)
    # Antialiased bilinear: the same pixels as PIL's reducing resize (no aliasing).
    pil = Image.open(root / labels["file"][0]).resize((32, 32), Image.BILINEAR)
    assert torch.equal(image[0], torch.from_numpy(np.asarray(pil).copy()).float() / 255)


def test_expanded_index_follows_the_study_scheme():
    targets = np.array([1, 0, 0, 1, 0])
    index = expanded_index(targets, "study")
    assert len(index) == 4 * 2 + 2 * 3
    for row in (0, 3):
        assert sorted(index[index[:, 0] == row, 1]) == [ORIGINAL, HFLIP, VFLIP, ROTATE]
    for row in (1, 2, 4):
        assert sorted(index[index[:, 0] == row, 1]) == [ORIGINAL, RANDOM_CHOICE]
    plain = expanded_index(targets, "none")
    assert plain[:, 0].tolist() == [0, 1, 2, 3, 4] and set(plain[:, 1]) == {ORIGINAL}
    with pytest.raises(FlareLensError):
        expanded_index(targets, "heavy")


def torchvision_rotation(image_u8, angle_deg):
    """The study's rotation: torchvision's rotate with its default (nearest) interpolation, 0 fill."""
    from torchvision.transforms.v2 import functional as F

    return F.rotate(image_u8, angle_deg, interpolation=F.InterpolationMode.NEAREST, fill=0)


def assert_is_torchvision_rotation(actual, image_u8, angle_deg):
    """``actual`` (C, H, W) is torchvision's nearest rotation of ``image_u8`` by ``angle_deg``
    (degrees, counter-clockwise), except where the exact source position of a pixel lies
    within 1e-3 px of a rounding tie (float rounding may then pick either neighbour)."""
    expected = torchvision_rotation(image_u8, angle_deg)
    differ = (actual != expected).any(dim=0).numpy()
    if not differ.any():
        return
    h, w = differ.shape
    a = np.radians(angle_deg)
    y, x = np.mgrid[0:h, 0:w]
    x, y = x + 0.5 - w / 2, y + 0.5 - h / 2
    col = x * np.cos(a) - y * np.sin(a) + (w - 1) / 2
    row = x * np.sin(a) + y * np.cos(a) + (h - 1) / 2
    near_tie = (np.abs(col - np.floor(col) - 0.5) < 1e-3) | (np.abs(row - np.floor(row) - 0.5) < 1e-3)
    assert near_tie[differ].all(), f"{int((differ & ~near_tie).sum())} pixels differ from torchvision at {angle_deg}°"
    assert differ.mean() < 1e-3


def test_augmented_items_are_the_flips_and_small_rotations_of_the_original(toy_dataset):
    root, labels, _ = toy_dataset
    ds = MagnetogramDataset(labels, root, image_size=64, augment="study", seed=3, cache=True)
    n_fl, n_nf = int(labels["target"].sum()), int((labels["target"] == 0).sum())
    assert len(ds) == 4 * n_fl + 2 * n_nf
    seen, angles = set(), []
    for i in range(len(ds)):
        row, code, angle = ds.augmentation(i)
        image, target = ds[i]
        assert target == labels["target"][row]
        original = ds.load_row(row)
        if code == ORIGINAL:
            expected = original
        elif code == HFLIP:
            expected = original.flip(-1)
        elif code == VFLIP:
            expected = original.flip(-2)
        else:
            assert code == ROTATE and 0 < abs(angle) <= MAX_ROTATION_DEG
            angles.append(angle)
            assert_is_torchvision_rotation((image * 255).round().to(torch.uint8), original, angle)
            expected = augment_image(original, ROTATE, angle)
        assert torch.equal(image, expected.float() / 255)
        if ds.index[i][1] == RANDOM_CHOICE:
            seen.add(code)
            assert code in (HFLIP, VFLIP, ROTATE)
    assert seen == {HFLIP, VFLIP, ROTATE}  # the random choice uses all three over 32 NF draws
    # Angles in degrees spread over +-5 (drawn in radians they would stay within +-0.09).
    assert max(angles) > 2.5 and min(angles) < -2.5


def test_rotation_is_torchvisions_nearest_rotation_in_degrees():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (7, 1, 96, 96), dtype=np.uint8))
    angles = [5.0, -5.0, 3.3, -0.7, 30.0, 90.0, -135.0]
    rotated = rotate_nearest(images, angles)
    for b, angle in enumerate(angles):
        assert_is_torchvision_rotation(rotated[b], images[b], angle)
    # Counter-clockwise: the top-right corner of a 90° rotation is the bottom-right of the original.
    assert rotated[5, 0, 0, -1] == images[5, 0, -1, -1]
    # A pixel's distance from the centre is kept: the corner moves by radius * angle (in radians).
    marker = torch.zeros(1, 1, 101, 101, dtype=torch.uint8)
    marker[0, 0, 50, 95] = 255  # 45 px right of the centre pixel
    y, x = np.argwhere(rotate_nearest(marker, [5.0])[0, 0].numpy() == 255)[0]
    assert (y, x) == (50 - round(45 * np.sin(np.radians(5))), 50 + round(45 * np.cos(np.radians(5))))


def test_batch_augmentation_gives_the_item_path_images():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (12, 1, 48, 48), dtype=np.uint8))
    codes = torch.tensor([ORIGINAL, HFLIP, VFLIP, ROTATE] * 3)
    angles = torch.tensor(rng.uniform(-5, 5, 12)) * (codes == ROTATE)
    batch = augment_batch(images, codes, angles)
    for b in range(12):
        assert torch.equal(batch[b], augment_image(images[b], int(codes[b]), float(angles[b]))), b
    # The batch path neither changes its input nor depends on the batch's order.
    perm = torch.from_numpy(rng.permutation(12))
    assert torch.equal(augment_batch(images[perm], codes[perm], angles[perm]), batch[perm])
    with pytest.raises(ValueError, match="code"):
        augment_batch(images[:1], torch.tensor([RANDOM_CHOICE]), torch.zeros(1))


def test_non_square_images_are_refused_not_squashed(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(path)
    with pytest.raises(FlareLensError, match="wide.png.*square"):
        load_image(path, 32)


def test_augmentation_is_a_function_of_seed_epoch_and_position(toy_dataset):
    root, labels, _ = toy_dataset
    a = MagnetogramDataset(labels, root, image_size=64, augment="study", seed=7, cache=False)
    b = MagnetogramDataset(labels, root, image_size=64, augment="study", seed=7, cache=True)
    order = list(range(len(a)))
    first = [a.augmentation(i) for i in order]
    # Another process drawing the items in another order sees the same augmentations.
    assert [b.augmentation(i) for i in reversed(order)][::-1] == first
    for i in (0, 10, len(a) - 1):
        assert torch.equal(a[i][0], b[i][0])
    a.set_epoch(1)
    second = [a.augmentation(i) for i in order]
    assert second != first
    assert [a.augmentation(i)[0] for i in order] == [r for r, _, _ in first]  # same rows each epoch
    other_seed = MagnetogramDataset(labels, root, image_size=64, augment="study", seed=8, cache=False)
    assert [other_seed.augmentation(i) for i in order] != first


def test_missing_image_names_the_file_and_row(toy_dataset):
    root, labels, _ = toy_dataset
    (root / labels["file"][2]).unlink()
    ds = MagnetogramDataset(labels, root, image_size=64, augment="none", cache=False)
    with pytest.raises(FlareLensError, match=r"HMI\.m.*row of " + labels["timestamp"][2]):
        ds[2]
    with pytest.raises(FlareLensError, match="not found"):
        MagnetogramDataset(labels, root, image_size=64, augment="none", cache=True)


def test_mixed_sizes_need_image_size(toy_dataset):
    root, labels, _ = toy_dataset
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / labels["file"][1])
    with pytest.raises(FlareLensError, match="--image-size"):
        MagnetogramDataset(labels, root, image_size=None, augment="none", cache=True)
    ds = MagnetogramDataset(labels, root, image_size=64, augment="none", cache=True)
    assert ds[1][0].shape == (1, 64, 64)


def test_uint8_items_for_the_device(toy_dataset):
    root, labels, _ = toy_dataset
    ds = MagnetogramDataset(pd.DataFrame(labels), root, image_size=64, augment="none", as_uint8=True)
    image, _ = ds[0]
    assert image.dtype == torch.uint8
    assert torch.equal(image.float() / 255, MagnetogramDataset(labels, root, 64)[0][0])

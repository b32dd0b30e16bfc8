"""Localisation and faithfulness scores on hand-made maps, regions and models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flarelens import geometry
from flarelens.explain import scores
from flarelens.explain.methods import NEUTRAL

TIME = "2014-06-10T12:00:00Z"


def test_great_circle_distances():
    """The neighbourhoods use geometry's great-circle distance (the one in the package)."""
    gc = geometry.great_circle
    assert gc(0, 0, 90, 0) == pytest.approx(90)
    assert gc(0, 0, 0, 10) == pytest.approx(10)
    assert gc(30, 60, 210, 60) == pytest.approx(60)  # over the pole
    assert gc(-179.5, 0, 179.5, 0) == pytest.approx(1)  # across the date line
    assert gc(12.3, -20, 12.3, -20) == pytest.approx(0, abs=1e-9)
    assert np.isnan(gc(np.nan, 0, 0, 0))


@pytest.fixture
def disk_and_region():
    """A real 64 px disk with a flare region within 10 degrees of S20W30 at TIME."""
    lon, lat, _ = geometry.disk_grid(TIME, 64)
    disk = np.isfinite(lon)
    region = scores.region_within_deg(lon, lat, 30.0, -20.0, 10.0)
    return disk, region


def test_region_is_on_the_disk_around_the_flare_pixel(disk_and_region):
    disk, region = disk_and_region
    assert region.any() and not (region & ~disk).any()
    x, y = geometry.hg_to_pixel(30.0, -20.0, TIME, 64)
    assert region[int(round(y)), int(round(x))]
    # A 10-degree cap seen from Earth covers a few per cent of the disk.
    assert 0.005 < scores.area_fraction(region, disk) < 0.05


def test_map_concentrated_on_the_flare_scores_one(disk_and_region):
    disk, region = disk_and_region
    attr = np.where(region, 1.0, 0.0)
    attr[~disk] = 50.0  # mass off the disk is ignored
    loc = scores.localisation(attr, region, disk)
    assert loc["mass"] == 1.0 and loc["hit"] == 1.0
    # Negative attribution elsewhere does not dilute the positive mass.
    attr2 = np.where(region, 1.0, -3.0)
    assert scores.mass_fraction(attr2, region, disk) == 1.0


def test_uniform_map_scores_the_area_fraction(disk_and_region):
    disk, region = disk_and_region
    area = scores.area_fraction(region, disk)
    assert area == pytest.approx(region.sum() / disk.sum())
    uniform = np.ones(disk.shape)
    assert scores.mass_fraction(uniform, region, disk) == pytest.approx(area)
    assert scores.pointing_hit(uniform, region, disk) == 0.0  # a tie everywhere is no hit
    rand = scores.random_map_scores(region, disk, n=200, seed=1)
    assert rand["mass"] == pytest.approx(area, abs=0.01)
    assert rand["hit"] == pytest.approx(area, abs=0.05)


def test_pointing_game_and_empty_maps(disk_and_region):
    disk, region = disk_and_region
    attr = np.zeros(disk.shape)
    ys, xs = np.nonzero(region)
    attr[ys[0], xs[0]] = 2.0
    outside = np.argwhere(disk & ~region)[0]
    assert scores.pointing_hit(attr, region, disk) == 1.0
    attr[tuple(outside)] = 3.0
    assert scores.pointing_hit(attr, region, disk) == 0.0
    assert np.isnan(scores.mass_fraction(-np.ones(disk.shape), region, disk))
    assert np.isnan(scores.pointing_hit(attr, region, np.zeros_like(disk)))


def test_circle_mask_uses_pixel_centres():
    m = scores.circle_mask((10, 12), x=3.0, y=4.0, radius_px=1.0)
    assert m.sum() == 5 and m[4, 3] and m[4, 4] and m[3, 3] and not m[3, 4]


def test_instance_categories():
    np.testing.assert_array_equal(scores.position_class([0, 70, -70.5, np.nan]), ["central", "central", "limb", "unknown"])
    np.testing.assert_array_equal(scores.flare_class(["X2.2", " m1.0", "", None, "C3.4", np.nan]),
                                  ["X", "M", "none", "none", "C", "none"])
    np.testing.assert_array_equal(scores.outcome([0.9, 0.2, 0.5, 0.49], [1, 1, 0, 0]), ["TP", "FN", "FP", "TN"])


class PatchModel(nn.Module):
    """Flare logit = 40 x (mean field in a patch - zero field): deleting the patch kills the flare."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))

    def forward(self, x):
        s = ((x[:, 0] - NEUTRAL) * self.mask).sum(dim=(1, 2)) / self.mask.sum() * 40
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_deletion_curve_of_the_right_map_drops_faster_than_random():
    size = 40
    yy, xx = np.mgrid[0:size, 0:size]
    disk = (xx - 19.5) ** 2 + (yy - 19.5) ** 2 <= 18**2
    patch = (xx - 14) ** 2 + (yy - 16) ** 2 <= 9
    image = torch.where(torch.from_numpy(disk), torch.tensor(NEUTRAL), torch.tensor(0.0))
    image = torch.where(torch.from_numpy(patch), torch.tensor(1.0), image)[None, None].float()
    model = PatchModel(patch).eval()

    def prob(batch):
        with torch.no_grad():
            return torch.softmax(model(batch), dim=1)[:, 1].numpy()

    good = patch.astype(float)[None]
    curve = scores.deletion_curves(prob, image, good, disk[None])[0]
    assert curve[0] == pytest.approx(prob(image)[0])
    assert curve[0] > 0.99
    n_patch, n_disk = patch.sum(), disk.sum()
    first_full = int(np.ceil(n_patch / n_disk / 0.05))  # first step deleting the whole patch
    assert np.allclose(curve[first_full:], 0.5)
    rand = scores.deletion_curves(prob, image, None, disk[None], rngs=[np.random.default_rng(0)])[0]
    assert scores.curve_auc(scores.DELETION_FRACTIONS, curve) < scores.curve_auc(scores.DELETION_FRACTIONS, rand) - 0.1
    # The deletion order never touches the sky.
    deleted = scores.deleted_images(image[0], scores.deletion_order(good[0], disk), [0.5])[0, 0].numpy()
    assert np.all(deleted[~disk] == 0)
    assert (deleted[disk] == np.float32(NEUTRAL)).sum() >= round(0.5 * n_disk)


def test_auc_is_the_mean_probability():
    f = scores.DELETION_FRACTIONS
    assert scores.curve_auc(f, np.full(len(f), 0.3)) == pytest.approx(0.3)
    assert scores.curve_auc(f, 1 - 2 * f) == pytest.approx(0.5)

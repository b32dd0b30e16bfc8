"""flarelens.explain scores and attributions: the cases mutation testing found unguarded
(see docs/mutation.md and docs/mutation-notes/explain.md).

Small synthetic maps, regions and models whose answers follow from the documented rule or
from a hand computation: empty disks without warnings, small and non-finite maps, the
closed rim of a region, ties in the deletion order, custom deletion fractions, and the
Attributor's settings (IG steps and chunks, the attributed output, the disk it is given,
float64 inputs, a model without parameters, a model with functional ReLUs) and its errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explain_data import AwkwardNet
from flarelens.errors import FlareLensError
from flarelens.explain import scores
from flarelens.explain.attributions import NEUTRAL, Attributor, ig_baseline

# --------------------------------------------------------------------------- localisation


def _square_disk(size=6):
    """A 'disk' of the inner 4 x 4 pixels of a 6 x 6 image, and a 2 x 2 region in it."""
    disk = np.zeros((size, size), bool)
    disk[1:5, 1:5] = True
    region = np.zeros_like(disk)
    region[1:3, 1:3] = True
    return disk, region


def test_empty_disk_scores_are_nan_without_a_warning():
    # An image with no on-disk pixel has no area, mass or maximum: NaN, and no numpy
    # "invalid value" warning for every such image of a run.
    disk = np.zeros((4, 4), bool)
    region = np.ones((4, 4), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(scores.area_fraction(region, disk))
        loc = scores.localisation(np.ones((4, 4)), region, disk)
    assert all(np.isnan(v) for v in loc.values())


def test_map_without_positive_mass_is_nan_without_a_warning():
    # Grad-CAM maps are ReLU'd and can be zero everywhere: no mass to share out.
    disk, region = _square_disk()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(scores.mass_fraction(np.zeros(disk.shape), region, disk))


def test_mass_share_does_not_depend_on_the_maps_units():
    # IG maps in logit units often hold far less than 1 in total: the share is a ratio,
    # so 1e-3 times a map gives the same share (here 3 of 4 units inside the region).
    disk, region = _square_disk()
    attr = np.zeros(disk.shape)
    attr[1, 1], attr[2, 2], attr[4, 4] = 2.0, 1.0, 1.0
    assert scores.mass_fraction(attr, region, disk) == pytest.approx(0.75)
    assert scores.mass_fraction(1e-3 * attr, region, disk) == pytest.approx(0.75)
    assert scores.mass_fraction(1.0 / 8 * attr, region, disk) == pytest.approx(0.75)  # total exactly 0.5


def test_localisation_mass_is_the_share_inside_the_region():
    disk, region = _square_disk()
    attr = np.zeros(disk.shape)
    attr[1, 1], attr[4, 4] = 3.0, 1.0  # 3 of 4 units inside; the maximum inside
    loc = scores.localisation(attr, region, disk)
    assert loc == {"mass": pytest.approx(0.75), "hit": 1.0, "area": pytest.approx(4 / 16)}


def test_infinite_attribution_gives_no_share():
    # An overflowed map has no meaningful share: NaN, not 0 for a region without the inf.
    disk, region = _square_disk()
    attr = np.ones(disk.shape)
    attr[4, 4] = np.inf
    assert np.isnan(scores.mass_fraction(attr, region, disk))


def test_region_within_deg_includes_its_rim():
    # "Within r degrees" is a closed cap: along a meridian the distance is exactly the
    # latitude difference, so the pixel 10 degrees away is inside a 10-degree region.
    lon = np.zeros((1, 4))
    lat = np.array([[0.0, 10.0, 10.5, np.nan]])
    np.testing.assert_array_equal(scores.region_within_deg(lon, lat, 0.0, 0.0, 10.0), [[True, True, False, False]])


def test_circle_mask_has_the_images_shape_and_a_radius_of_two():
    # Lattice points with dx^2 + dy^2 <= 4: the centre, 4 at distance 1, 4 at sqrt 2, 4 at 2.
    m = scores.circle_mask((5, 9), x=6.0, y=2.0, radius_px=2.0)
    assert m.shape == (5, 9)
    assert m.sum() == 13
    assert m[2, 4] and m[0, 6] and m[4, 6] and m[2, 8] and not m[0, 5]


def test_random_map_scores_are_reproducible_by_default():
    # A Monte-Carlo check reported in a run must give the same number when rerun.
    disk, region = _square_disk()
    first = scores.random_map_scores(region, disk, n=20)
    assert scores.random_map_scores(region, disk, n=20) == first


def test_position_class_reads_an_object_column_with_missing_longitudes():
    # A table built with None for an unknown position has an object column.
    lon = pd.Series([10.0, None, -80.0], dtype=object)
    np.testing.assert_array_equal(scores.position_class(lon), ["central", "unknown", "limb"])


# --------------------------------------------------------------------------- faithfulness


def test_deletion_order_breaks_ties_in_raster_order():
    # Grad-CAM maps hold many equal values (zeros): ties are deleted in raster order, so the
    # deletion curve is the same on every machine and numpy version.
    disk = np.zeros((12, 12), bool)
    disk[1:11, 1:11] = True  # 100 on-disk pixels
    attr = np.zeros(disk.shape)
    attr[5:8, 2:9] = 1.0  # 21 tied maxima
    order = scores.deletion_order(attr, disk)
    flat_disk = np.flatnonzero(disk)
    top = np.flatnonzero((attr > 0).ravel())
    rest = np.array([i for i in flat_disk if i not in set(top)])
    np.testing.assert_array_equal(order, np.concatenate([top, rest]))
    np.testing.assert_array_equal(scores.deletion_order(np.ones(disk.shape), disk), flat_disk)


def test_deletion_curves_follow_the_fractions_given():
    # prob_fn = share of the on-disk pixels at zero field: after deleting the first k % of
    # 20 on-disk pixels it reads exactly k %.
    disk = np.zeros((6, 6), bool)
    disk[1:5, 1:6] = True  # 20 pixels
    image = torch.where(torch.from_numpy(disk), torch.tensor(1.0), torch.tensor(0.0))[None].float()
    mask = torch.from_numpy(disk)

    def prob(batch):
        return (batch[:, 0][:, mask] == np.float32(NEUTRAL)).float().mean(dim=1).numpy()

    maps = np.arange(36, dtype=float).reshape(1, 6, 6)
    fractions = [0.0, 0.25, 0.5]
    curves = scores.deletion_curves(prob, image[None], maps, disk[None], fractions=fractions)
    assert curves.shape == (1, 3)
    np.testing.assert_allclose(curves[0], fractions)


def test_auc_is_normalised_by_the_fraction_range_given():
    # Probabilities 0.2, 0.4, 0.6 at fractions 0.1, 0.3, 0.5: the mean along the curve is 0.4.
    f = [0.1, 0.3, 0.5]
    probs = np.array([[0.2, 0.4, 0.6], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(scores.curve_auc(f, probs), [0.4, 0.5])


# --------------------------------------------------------------------------- the Attributor

CALLS: list[int] = []  # batch sizes of the forward passes of CountingNet (module level: copies share it)


class CountingNet(nn.Module):
    """A tiny conv net that records the batch size of every forward pass."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        CALLS.append(x.shape[0])
        return self.head(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def _counting(seed=0):
    torch.manual_seed(seed)
    return CountingNet().eval()


def _images(n, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


def _forwards(attributor, x):
    """Batch sizes of the forward passes of one ``attribute`` call (model prepared first)."""
    attributor.attribute(x[:1])
    CALLS.clear()
    attributor.attribute(x)
    return list(CALLS)


def test_ig_takes_n_steps_in_chunks_of_internal_batch_size():
    # 4 steps of one image in forward passes of at most 3 samples, then one pass each for
    # the input and the baseline (the convergence delta).
    calls = _forwards(Attributor(_counting(), ["ig"], n_steps=4, internal_batch_size=3), _images(1))
    assert max(calls) <= 3
    assert sum(calls) == 4 + 2


def test_smallest_allowed_steps_and_batch_size_run():
    # 2 steps (both ends of the path) and one sample per forward pass are allowed.
    calls = _forwards(Attributor(_counting(), ["ig"], n_steps=2, internal_batch_size=1), _images(1))
    assert calls[:2] == [1, 1] and sum(calls) == 2 + 2  # the steps, then the delta's two ends


def test_ig_defaults_are_50_steps_and_at_most_64_samples_a_pass():
    # README: "Integrated Gradients ... 50 steps"; the CLI's --internal-batch-size is 64.
    calls = _forwards(Attributor(_counting(), ["ig"]), _images(5))
    assert sum(calls) == 5 * 50 + 2 * 5
    assert max(calls) <= 64


@pytest.mark.parametrize("n_steps, internal_batch_size", [(1, 64), (0, 1), (50, 0)])
def test_too_few_steps_or_an_empty_batch_are_refused(n_steps, internal_batch_size):
    with pytest.raises(FlareLensError, match=r"^n_steps must be >= 2 and internal_batch_size >= 1$"):
        Attributor(_counting(), ["ig"], n_steps=n_steps, internal_batch_size=internal_batch_size)


def test_bad_settings_name_the_choices():
    model = _counting()
    with pytest.raises(FlareLensError, match=r"^unknown method\(s\) lime, shap: choose from guided-gradcam, deepshap, ig"):
        Attributor(model, ["ig", "lime", "shap"])
    with pytest.raises(FlareLensError, match=r"^unknown IG baseline 'white': choose one of physical, gray$"):
        Attributor(model, ["ig"], ig_baseline="white")
    with pytest.raises(FlareLensError, match=r"^unknown attribution output 'odds': choose one of logit, probability$"):
        Attributor(model, ["ig"], output="odds")
    for background in (None, _images(1)):
        with pytest.raises(FlareLensError, match=r"^Deep SHAP needs a background of at least 2 non-flaring images "
                                                 r"\(--background K\)$"):
            Attributor(model, ["deepshap"], background=background)


def test_ig_starts_from_the_disk_it_is_given():
    # With the disk given (here every pixel), the physical baseline is zero field there,
    # not on the disk guessed from the image (its nonzero pixels). captum's delta is
    # sum(map) - (f(x) - f(baseline)), so sum(map) - delta names the baseline used.
    model = _counting(seed=3)
    x = _images(2, size=10)
    x[:, :, :2] = 0.0  # two rows of sky: the image-derived disk leaves them out
    disk = torch.ones(2, 10, 10, dtype=torch.bool)
    res = Attributor(model, ["ig"], n_steps=8).attribute(x, disk)["ig"]
    with torch.no_grad():
        given = model(x)[:, 1] - model(ig_baseline(x, "physical", disk))[:, 1]
        guessed = model(x)[:, 1] - model(ig_baseline(x, "physical"))[:, 1]
    assert torch.all((given - guessed).abs() > 1e-3)
    np.testing.assert_allclose(res.maps.sum(axis=(1, 2)) - res.delta, given.numpy(), rtol=1e-4, atol=1e-6)


def test_float64_images_and_background_give_the_float32_maps():
    # torch.from_numpy of a user's array is float64: it is converted, not fed to a float32 model.
    model = _counting(seed=4)
    x, background = _images(2, seed=5), _images(3, seed=6)
    a32 = Attributor(model, ["ig", "deepshap"], background=background, n_steps=4)
    a64 = Attributor(model, ["ig", "deepshap"], background=background.double(), n_steps=4)
    ref, got = a32.attribute(x), a64.attribute(x.double())
    for method in ("ig", "deepshap"):
        np.testing.assert_allclose(got[method].maps, ref[method].maps, rtol=1e-6, atol=1e-9, err_msg=method)


def test_deepshap_of_the_probability_adds_up_to_the_probability_difference():
    # output="probability" must reach Deep SHAP's own model copy too. captum's delta is
    # sum(map) - (f(x) - mean f(background)) for the attributed f, so sum(map) - delta is
    # that difference: of the softmax probability here, not of the logit.
    model = _counting(seed=7)
    x, background = _images(2, seed=8), _images(3, seed=9)
    res = Attributor(model, ["deepshap"], background=background, output="probability").attribute(x)["deepshap"]
    with torch.no_grad():
        p_x = torch.softmax(model(x), dim=1)[:, 1]
        p_bg = torch.softmax(model(background), dim=1)[:, 1].mean()
        l_x, l_bg = model(x)[:, 1], model(background)[:, 1].mean()
    expected, logit_diff = (p_x - p_bg).numpy(), (l_x - l_bg).numpy()
    assert np.all(np.abs(expected - logit_diff) > 10 * np.abs(expected) * 1e-3)
    np.testing.assert_allclose(res.maps.sum(axis=(1, 2)) - res.delta, expected, rtol=1e-3, atol=1e-7)


class FixedRule(nn.Module):
    """A model without parameters: flare logit = 40 x mean positive field (x - zero field)."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        s = 40 * torch.flatten(self.pool(self.act(x - NEUTRAL)), 1)[:, 0]
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_a_model_without_parameters_is_explained():
    # f is linear in max(x - zero field, 0) along the physical baseline's path, so IG's map is
    # exactly 40 / (H W) x max(x - zero field, 0) on the disk (and 0 in the sky, kept as it is).
    size = 8
    x = _images(2, size=size, seed=10)
    disk = torch.zeros(2, size, size, dtype=torch.bool)
    disk[:, 1:7, 1:7] = True
    x = torch.where(disk[:, None], x, torch.zeros(()))
    attributor = Attributor(FixedRule(), ["ig"], layer="act", n_steps=4, example=x[:1])
    res = attributor.attribute(x, disk)["ig"]
    expected = 40 / size**2 * torch.clamp(x[:, 0] - NEUTRAL, min=0)
    np.testing.assert_allclose(res.maps, expected.numpy(), rtol=1e-5, atol=1e-7)
    mean_pos = torch.clamp(x[:, 0] - NEUTRAL, min=0).mean(dim=(1, 2))
    np.testing.assert_allclose(attributor.flare_probability(x), torch.sigmoid(40 * mean_pos).numpy(), rtol=1e-6)


class ModuleNet(nn.Module):
    """AwkwardNet with a ReLU module of its own at every use: the same function."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.r1(self.conv1(x))
        x = self.r2(self.conv2(x))
        x = self.r3(F.avg_pool2d(x, 2) - 0.1)
        return self.head(x.mean(dim=(2, 3)))


def test_guided_gradcam_treats_functional_relus_like_relu_modules():
    # Guided Backprop hooks ReLU modules only: the model copy Grad-CAM uses must have its
    # functional ReLUs rewritten, so both spellings of one network give the same map.
    torch.manual_seed(3)
    functional = AwkwardNet().eval()
    modules = ModuleNet().eval()
    modules.load_state_dict(functional.state_dict())
    x = _images(2, size=16, seed=11)
    got = Attributor(functional, ["guided-gradcam"], layer="conv2").attribute(x)["guided-gradcam"].maps
    ref = Attributor(modules, ["guided-gradcam"], layer="conv2").attribute(x)["guided-gradcam"].maps
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())

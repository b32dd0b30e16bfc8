"""Attribution maps through captum: shapes, completeness, model preparation, batching."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from explain_data import AwkwardNet
from flarelens.errors import FlareLensError
from flarelens.explain.attributions import (
    METHODS, NEUTRAL, Attributor, audit_model, ig_baseline, prepare_model,
)

SIZE = 32


class TinyNet(nn.Module):
    """(B, 1, H, W) in [0, 1] -> logits (B, 2), built the way torchvision builds VGG:
    in-place ReLUs in a Sequential, max pooling, adaptive average pooling, a linear head."""

    def __init__(self, pool: str = "max"):
        super().__init__()
        down = {"max": nn.MaxPool2d(2), "overlap": nn.MaxPool2d(3, stride=2), "avg": nn.AvgPool2d(2)}[pool]
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(inplace=True), down,
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(32, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _model(cls=TinyNet, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**kw).eval()


def _disk_images(n=3, size=SIZE, seed=1):
    """Full-disk-like inputs: gray disk with bipoles, off-disk 0, one clipped-to-0 spot inside."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    disk = (xx - c) ** 2 + (yy - c) ** 2 <= (0.45 * size) ** 2
    out = []
    for i in range(n):
        field = torch.full((size, size), NEUTRAL) + 0.05 * torch.randn(size, size, generator=g)
        x0, y0 = 8 + 4 * i, 12 + 2 * i
        field += 0.4 * torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 6.0)
        field -= 0.4 * torch.exp(-((xx - x0 - 4) ** 2 + (yy - y0) ** 2) / 6.0)
        field = field.clamp(0, 1)
        field[int(c), int(c)] = 0.0  # a strong negative pixel inside the disk (clipped to 0)
        out.append(torch.where(disk, field, torch.zeros(())))
    return torch.stack(out)[:, None], disk


def _flare_out(model, x, output="logit"):
    with torch.no_grad():
        out = model(x)
        if output == "probability":
            out = torch.softmax(out, dim=1)
    return out[:, 1]


def test_maps_are_finite_non_constant_and_input_shaped():
    model = _model()
    x, _ = _disk_images(3)
    background = _disk_images(4, seed=7)[0]
    attributor = Attributor(model, METHODS, background=background, n_steps=20, internal_batch_size=32)
    results = attributor.attribute(x)
    assert set(results) == set(METHODS)
    for method, res in results.items():
        assert res.maps.shape == (3, SIZE, SIZE), method
        assert res.maps.dtype == np.float32
        assert np.isfinite(res.maps).all(), method
        for b in range(3):
            assert res.maps[b].std() > 0, f"{method}: constant map for instance {b}"
        assert res.delta.shape == (3,)
    assert np.isnan(results["guided-gradcam"].delta).all()  # Guided Grad-CAM has no completeness property
    assert np.isfinite(results["ig"].delta).all() and np.isfinite(results["deepshap"].delta).all()


@pytest.mark.parametrize("output", ["logit", "probability"])
@pytest.mark.parametrize("baseline", ["physical", "gray"])
def test_integrated_gradients_completeness(output, baseline):
    """sum(IG) = f(x) - f(baseline) for the attributed flare output (logit or probability).

    Tolerance: 1 % of |f(x) - f(baseline)| + 1e-5 with 50 Gauss-Legendre steps on a
    piecewise-linear network; the recorded convergence delta is that same difference.
    """
    model = _model()
    x, disk = _disk_images(3)
    attributor = Attributor(model, ["ig"], n_steps=50, internal_batch_size=64, output=output, ig_baseline=baseline)
    res = attributor.attribute(x, disk.expand(3, -1, -1))["ig"]
    base = ig_baseline(x, baseline, disk.expand(3, -1, -1))
    expected = (_flare_out(model, x, output) - _flare_out(model, base, output)).numpy()
    total = res.maps.sum(axis=(1, 2))
    assert np.all(np.abs(expected) > 1e-4), "test inputs must move the output"
    np.testing.assert_allclose(total, expected, rtol=0.01, atol=1e-5)
    np.testing.assert_allclose(res.delta, total - expected, atol=1e-5)


def test_deepshap_sums_to_output_difference_after_rewriting_an_awkward_model():
    """DeepLift's summation-to-delta holds once functional and reused ReLUs are made modules."""
    model = _model(AwkwardNet)
    x, _ = _disk_images(2)
    background = _disk_images(3, seed=5)[0]
    before = audit_model(model, x[:1])
    assert before.functional == ["relu"] and before.reused_modules
    prepared = prepare_model(model, x[:1])
    after = audit_model(prepared, x[:1])
    assert after.deeplift_exact, after

    attributor = Attributor(model, ["deepshap"], background=background, layer="conv2", example=x[:1])
    res = attributor.attribute(x)["deepshap"]
    expected = (_flare_out(model, x) - _flare_out(model, background).mean()).numpy()
    np.testing.assert_allclose(res.maps.sum(axis=(1, 2)), expected, rtol=1e-3, atol=1e-6)
    assert np.all(np.abs(res.delta) < 1e-5)


@pytest.mark.parametrize("pool", ["max", "overlap", "avg"])
def test_deepshap_is_exact_on_vgg_and_alexnet_like_pooling(pool):
    """ReLU straight into a max pool (VGG) and overlapping 3x3 stride-2 pools (AlexNet):
    captum alone loses part of the output difference there (its ReLU hook reads the
    gradient before the pool's multipliers replace it; max_unpool2d drops overlapping
    windows); the prepared model and the summed max-pool rule keep it exact."""
    model = _model(pool=pool)
    x, _ = _disk_images(2)
    background = _disk_images(4, seed=3)[0]
    res = Attributor(model, ["deepshap"], background=background).attribute(x)["deepshap"]
    expected = (_flare_out(model, x) - _flare_out(model, background).mean()).numpy()
    np.testing.assert_allclose(res.maps.sum(axis=(1, 2)), expected, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(res.delta, 0, atol=1e-5)


class GlobalMaxNet(nn.Module):
    """Average-pooled convolutions and a global adaptive max pool, like flarelens' simplecnn."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                                      nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def test_adaptive_max_pool_becomes_max_pool_for_each_input_size():
    """DeepLift has no rule for adaptive max pooling; fixed per input size it is exact."""
    model = _model(GlobalMaxNet, seed=2)
    attributor = Attributor(model, ["deepshap", "ig"], background=_disk_images(3, seed=8)[0], n_steps=8)
    for size in (SIZE, 48):
        x, _ = _disk_images(2, size=size)
        background = _disk_images(3, size=size, seed=8)[0]
        attributor.background = background
        res = attributor.attribute(x)
        assert res["ig"].maps.shape == (2, size, size)
        expected = (_flare_out(model, x) - _flare_out(model, background).mean()).numpy()
        np.testing.assert_allclose(res["deepshap"].maps.sum(axis=(1, 2)), expected, rtol=1e-3, atol=1e-6)
    assert isinstance(model.pool, nn.AdaptiveMaxPool2d)  # only the copies were changed


def test_the_callers_model_is_left_as_it_was():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, _ = _disk_images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # preparing a VGG-like model needs no fallback
        Attributor(model, METHODS, background=_disk_images(2, seed=4)[0], n_steps=8).attribute(x)
    assert model.features[1].inplace and model.classifier[1].inplace
    assert all(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert not model._forward_hooks and not model.features[1]._forward_hooks


def test_batched_maps_equal_one_image_at_a_time():
    model = _model()
    x, disk = _disk_images(4)
    disks = disk.expand(4, -1, -1)
    background = _disk_images(3, seed=9)[0]
    # internal_batch_size 5 forces Deep SHAP chunks and IG step chunks to cross instance boundaries
    attributor = Attributor(model, METHODS, background=background, n_steps=10, internal_batch_size=5)
    batched = attributor.attribute(x, disks)
    for b in range(4):
        single = attributor.attribute(x[b:b + 1], disks[b:b + 1])
        for method in METHODS:
            np.testing.assert_allclose(batched[method].maps[b], single[method].maps[0], rtol=1e-4, atol=1e-7,
                                       err_msg=method)


def test_physical_baseline_is_zero_field_on_the_disk_and_keeps_the_sky():
    x, disk = _disk_images(2)
    base = ig_baseline(x, "physical")  # disk derived from the image: the 0-valued pixel inside is on the disk
    assert torch.all(base[:, 0][:, disk] == NEUTRAL)
    assert torch.all(base[:, 0][:, ~disk] == 0)
    given = ig_baseline(x, "physical", disk.expand(2, -1, -1))
    assert torch.equal(base, given)
    assert torch.all(ig_baseline(x, "gray") == 0.5)


def test_bad_arguments_are_reported():
    model = _model()
    with pytest.raises(FlareLensError, match="features.3"):
        Attributor(model, ["guided-gradcam"], layer="features.9")
    with pytest.raises(FlareLensError, match="unknown method"):
        Attributor(model, ["lime"])
    with pytest.raises(FlareLensError, match="background"):
        Attributor(model, ["deepshap"])
    with pytest.raises(FlareLensError, match="shape"):
        Attributor(model, ["ig"]).attribute(torch.zeros(2, 3, SIZE, SIZE))


def test_a_new_method_is_one_registered_class(tmp_path):
    """Adding a method is one entry in the registry: the Attributor, the map files and the
    scores pick it up with no other change."""
    from explain_data import MODEL_SIZE, StrongFieldNet, predictions_of, write_flare_dataset
    from flarelens.explain.instances import Selection, select_instances
    from flarelens.explain.methods import REGISTRY, AttributionMethod, MethodResult, register
    from flarelens.explain.run import ExplainSettings, explain_instances

    @register
    class InputTimesGradient(AttributionMethod):
        name = "input-x-gradient"
        title = "Input x Gradient"

        def __init__(self, models, config):
            super().__init__(models, config)
            from captum.attr import InputXGradient

            self.captum = InputXGradient(models.plain)

        def attribute(self, x, disk):
            attr = self.captum.attribute(x.clone().requires_grad_(), target=1)
            return MethodResult(attr.detach().sum(dim=1).numpy(), np.full(len(x), np.nan, dtype=np.float32))

    try:
        model = _model()
        x, _ = _disk_images(2)
        res = Attributor(model, ["input-x-gradient", "ig"], n_steps=8).attribute(x)
        xg = x.clone().requires_grad_()
        model(xg)[:, 1].sum().backward()
        np.testing.assert_allclose(res["input-x-gradient"].maps, (xg.grad * x)[:, 0].numpy(), rtol=1e-5, atol=1e-7)

        root = tmp_path / "images"
        labels, _, _ = write_flare_dataset(root, n=2)
        net = StrongFieldNet().eval()
        frame = select_instances(predictions_of(net, labels, root), Selection())
        result = explain_instances(net, frame, root, tmp_path / "out",
                                   ExplainSettings(methods=("input-x-gradient",), overlays=False, comparison_rows=1),
                                   image_size=MODEL_SIZE, progress=False)
        assert set(result.scores["method"]) == {"input-x-gradient"}
        assert "input-x-gradient" in result.summary["methods"]
        with np.load(next((tmp_path / "out" / "maps").glob("*.npz"))) as z:
            assert z["map_input-x-gradient"].shape == (MODEL_SIZE, MODEL_SIZE)
    finally:
        REGISTRY.pop("input-x-gradient", None)

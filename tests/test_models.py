"""flarelens.models: the registry, the study's architectures, initialisation, backbone weights, Grad-CAM layer."""

from __future__ import annotations

import http.server
import math
import threading

import pytest
import torch
import torchvision
from torch import nn

from flarelens.errors import FlareLensError
from flarelens.models import MODELS, build_model, gradcam_layer, register


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return build_model("vgg16", image_size=32)


@pytest.mark.parametrize("name,size", [("alexnet", 64), ("resnet18", 32), ("simplecnn", 32)])
def test_models_map_grayscale_batches_to_two_logits(name, size):
    model = build_model(name, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, size, size))
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    # Another image size works too (adaptive pooling), which the registry's minimum allows.
    with torch.no_grad():
        assert model(torch.rand(1, 1, size + 32, size + 32)).shape == (1, 2)


def test_vgg16_is_the_studys_architecture(vgg):
    tv = torchvision.models.vgg16()
    assert [type(m) for m in vgg.features] == [type(m) for m in tv.features]
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and convs[0].in_channels == 3 and convs[-1].out_channels == 512
    assert isinstance(vgg.pool, nn.AdaptiveAvgPool2d) and vgg.pool.output_size == (7, 7)
    linears = [m for m in vgg.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(25088, 4096), (4096, 4096), (4096, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in vgg.classifier) == 2
    assert sum(isinstance(m, nn.Dropout) for m in vgg.classifier) == 2
    # The grayscale image is repeated to three channels.
    x = torch.rand(2, 1, 32, 32)
    rgb = vgg.stem(x)
    assert rgb.shape == (2, 3, 32, 32) and torch.equal(rgb[:, 0], rgb[:, 2]) and torch.equal(rgb[:, 1], x[:, 0])
    vgg.eval()
    with torch.no_grad():
        assert vgg(x).shape == (2, 2)


def test_alexnet_architecture():
    model = build_model("alexnet", image_size=64)
    assert isinstance(model.stem[0], nn.Conv2d) and isinstance(model.stem[1], nn.ReLU)
    conv = model.stem[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (1, 3, (3, 3))
    assert [type(m) for m in model.features] == [type(m) for m in torchvision.models.alexnet().features]
    assert model.pool.output_size == (6, 6)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(9216, 4096), (4096, 4096), (4096, 2)]


@pytest.mark.parametrize("init,std,uniform", [
    ("kaiming-normal", math.sqrt(2 / 9216), False),
    ("kaiming-uniform", math.sqrt(2 / 9216), True),
    ("xavier-normal", math.sqrt(2 / (9216 + 4096)), False),
    ("xavier-uniform", math.sqrt(2 / (9216 + 4096)), True),
])
def test_classifier_initialisation(init, std, uniform):
    torch.manual_seed(0)
    layer = build_model("alexnet", image_size=64, init=init).classifier[1]
    w = layer.weight.detach()
    assert float(w.std()) == pytest.approx(std, rel=0.01)
    bound = std * math.sqrt(3)
    if uniform:
        assert float(w.abs().max()) <= bound * 1.0001
    else:
        assert float(w.abs().max()) > bound * 1.5  # normal tails reach far past the uniform bound
    assert torch.count_nonzero(layer.bias) == 0


def test_weights_file_loads_a_torchvision_backbone(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    model = build_model("resnet18", image_size=32, weights=path)
    assert torch.equal(model.features.conv1.weight, tv.conv1.weight)
    assert torch.equal(model.features.layer4[1].bn2.running_var, tv.layer4[1].bn2.running_var)
    assert model.classifier[0].weight.shape == (2, 512)  # the ImageNet head is not used

    alex = torchvision.models.alexnet()
    path = tmp_path / "alexnet_features.pth"
    torch.save({k: v for k, v in alex.state_dict().items() if k.startswith("features.")}, path)
    model = build_model("alexnet", image_size=64, weights=path)
    assert torch.equal(model.features[10].weight, alex.features[10].weight)

    with pytest.raises(FlareLensError, match="not a backbone"):
        build_model("simplecnn", image_size=32, weights=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(FlareLensError, match="garbage.pth"):
        build_model("alexnet", image_size=64, weights=garbage)
    with pytest.raises(FlareLensError, match="no such file"):
        build_model("alexnet", image_size=64, weights=tmp_path / "missing.pth")


def test_pretrained_without_network_says_what_to_do(tmp_path, monkeypatch):
    # A real download attempt through a proxy on 127.0.0.1 that answers every request with 503.
    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(503, "no network here")

        do_CONNECT = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(var, proxy)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
        with pytest.raises(FlareLensError, match="--weights FILE"):
            build_model("resnet18", image_size=32, pretrained=True)
    finally:
        server.shutdown()
    with pytest.raises(FlareLensError, match="no ImageNet weights"):
        build_model("simplecnn", image_size=32, pretrained=True)


def test_gradcam_layer_is_the_last_backbone_convolution(vgg):
    layer = gradcam_layer(vgg)
    assert layer is [m for m in vgg.features if isinstance(m, nn.Conv2d)][-1]
    for name, size in (("alexnet", 64), ("resnet18", 32), ("simplecnn", 32)):
        model = build_model(name, image_size=size)
        layer = gradcam_layer(model)
        seen = []
        handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        model.eval()(torch.rand(1, 1, size, size))
        handle.remove()
        assert len(seen) == 1 and seen[0][1] == layer.out_channels


def test_registry_rejects_unknown_names_and_small_images():
    with pytest.raises(FlareLensError, match="unknown model"):
        build_model("lenet")
    with pytest.raises(FlareLensError, match="at least 63"):
        build_model("alexnet", image_size=32)
    with pytest.raises(FlareLensError, match="init"):
        build_model("simplecnn", image_size=32, init="zeros")


def test_registering_a_backbone_is_one_function():
    from flarelens.models import FlareNet

    @register("test-tiny", min_size=8)
    def tiny() -> FlareNet:
        """A one-convolution test model."""
        return FlareNet(nn.Identity(), nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), nn.AdaptiveMaxPool2d(1),
                        nn.Sequential(nn.Linear(4, 2)))

    try:
        model = build_model("test-tiny", image_size=8)
        assert model(torch.rand(2, 1, 8, 8)).shape == (2, 2)
        assert gradcam_layer(model) is model.features[0]
        assert MODELS["test-tiny"].description == "A one-convolution test model."
    finally:
        del MODELS["test-tiny"]

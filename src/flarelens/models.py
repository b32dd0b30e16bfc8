"""The model registry: full-disk flare classifiers on torchvision backbones.

Every model takes a batch of magnetograms (B, 1, H, W), float in [0, 1], and returns
logits (B, 2); class 1 is "a flare >= the threshold in the window" (softmax for the
probability). They share one layout, :class:`FlareNet`::

    stem (1 -> 3 channels) -> features (the backbone's convolutions) -> pool -> classifier

so checkpoints, Grad-CAM (:func:`gradcam_layer`) and backbone weights work the same way
for all. Adding a backbone is one registry entry: a function decorated with
:func:`register` returning a :class:`FlareNet`.

* ``vgg16`` — the study's model: torchvision VGG16 convolutions, 7x7 adaptive average
  pool, classifier 25088-4096-4096-2 with ReLU and dropout; the grayscale image repeated
  to 3 channels.
* ``alexnet`` — a lighter ImageNet backbone (not in the study's code): a 1->3 channel 3x3
  convolution with ReLU, torchvision AlexNet convolutions, 6x6 pool, classifier
  9216-4096-4096-2.
* ``resnet18`` — torchvision ResNet-18 (batch norm), global pool, linear 512-2: a
  mid-sized backbone for CPU experiments.
* ``simplecnn`` — four 3x3 conv blocks (16-32-64-128 channels, no normalisation, no
  dropout), global max pool, linear 128-2: seconds per epoch on a CPU at 64-128 px, for
  demos and tests. The max pool answers "is there a strong region anywhere on the disk",
  which it learns in a few epochs where an average over the disk dilutes it.

Linear layers of the classifier (and the 1->3 stem convolution) are initialised with
``init`` (kaiming-normal by default, as in the study); backbone convolutions keep
torchvision's initialisation unless ImageNet (``pretrained=True``) or local
(``weights=FILE``) backbone weights are loaded.

ReLUs are not in-place, so attribution hooks (Grad-CAM, guided backpropagation) see the
activations as computed.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from flarelens.errors import FlareLensError

INITS = ("kaiming-normal", "kaiming-uniform", "xavier-normal", "xavier-uniform")
DEFAULT_INIT = "kaiming-normal"


class GrayToRGB(nn.Module):
    """Repeat a 1-channel image to the 3 channels an ImageNet backbone expects."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class FlareNet(nn.Module):
    """stem -> features -> pool -> flatten -> classifier; input (B, 1, H, W) in [0, 1], output logits (B, 2)."""

    def __init__(self, stem: nn.Module, features: nn.Module, pool: nn.Module, classifier: nn.Module):
        super().__init__()
        self.stem = stem
        self.features = features
        self.pool = pool
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, ImageNet weights and smallest usable image side."""

    name: str
    build: Callable[[], FlareNet]
    imagenet_weights: str | None  # torchvision weights enum member, e.g. "VGG16_Weights.IMAGENET1K_V1"
    min_size: int
    description: str


#: name -> ModelEntry, filled by :func:`register`.
MODELS: dict[str, ModelEntry] = {}


def register(name: str, imagenet_weights: str | None = None, min_size: int = 32):
    """Decorator registering ``fn() -> FlareNet`` as model ``name``."""

    def wrap(fn: Callable[[], FlareNet]) -> Callable[[], FlareNet]:
        doc = (fn.__doc__ or "").strip().splitlines()
        MODELS[name] = ModelEntry(name, fn, imagenet_weights, min_size, doc[0] if doc else "")
        return fn

    return wrap


def _no_inplace(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return module


@register("vgg16", imagenet_weights="VGG16_Weights.IMAGENET1K_V1", min_size=32)
def vgg16() -> FlareNet:
    """VGG16 convolutions, 7x7 pool, 25088-4096-4096-2 with ReLU and dropout (the study's model)."""
    from torchvision.models import vgg16 as tv_vgg16

    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 2),
    )
    return FlareNet(GrayToRGB(), _no_inplace(tv_vgg16().features), nn.AdaptiveAvgPool2d((7, 7)), classifier)


@register("alexnet", imagenet_weights="AlexNet_Weights.IMAGENET1K_V1", min_size=63)
def alexnet() -> FlareNet:
    """1->3 conv + ReLU, AlexNet convolutions, 6x6 pool, 9216-4096-4096-2 with dropout (a lighter ImageNet backbone)."""
    from torchvision.models import alexnet as tv_alexnet

    stem = nn.Sequential(nn.Conv2d(1, 3, kernel_size=3, padding=1), nn.ReLU())
    classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 2),
    )
    return FlareNet(stem, _no_inplace(tv_alexnet().features), nn.AdaptiveAvgPool2d((6, 6)), classifier)


@register("resnet18", imagenet_weights="ResNet18_Weights.IMAGENET1K_V1", min_size=32)
def resnet18() -> FlareNet:
    """ResNet-18 (batch norm), global average pool, 512-2."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18()
    # Named like torchvision's modules so its state dicts load into `features` unchanged.
    features = nn.Sequential(OrderedDict(
        (name, getattr(net, name)) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    ))
    return FlareNet(GrayToRGB(), _no_inplace(features), nn.AdaptiveAvgPool2d(1), nn.Sequential(nn.Linear(512, 2)))


@register("simplecnn", imagenet_weights=None, min_size=16)
def simplecnn() -> FlareNet:
    """Four 3x3 conv blocks (16-32-64-128), global max pool, 128-2: fast on a CPU."""
    layers: list[nn.Module] = []
    channels = [1, 16, 32, 64, 128]
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
        if i < len(channels) - 2:
            layers.append(nn.MaxPool2d(2))
    features = nn.Sequential(*layers)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return FlareNet(nn.Identity(), features, nn.AdaptiveMaxPool2d(1), nn.Sequential(nn.Linear(128, 2)))


def init_layers(module: nn.Module, init: str = DEFAULT_INIT) -> None:
    """Initialise the Linear and Conv2d layers of ``module`` with ``init``; biases to 0."""
    if init not in INITS:
        raise FlareLensError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if init == "kaiming-normal":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif init == "kaiming-uniform":
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            elif init == "xavier-normal":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def model_names() -> list[str]:
    """Names of the registered models."""
    return sorted(MODELS)


def build_model(
    name: str,
    image_size: int = 512,
    init: str = DEFAULT_INIT,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
) -> FlareNet:
    """A fresh model ``name`` for (B, 1, image_size, image_size) inputs in [0, 1] -> logits (B, 2).

    ``init`` initialises the classifier and the stem (kaiming-normal, kaiming-uniform,
    xavier-normal, xavier-uniform). Backbone weights: ``weights`` — a local file holding a
    state dict of the torchvision backbone (e.g. ``torch.save(torchvision.models.vgg16(
    weights="IMAGENET1K_V1").state_dict(), FILE)``; only the convolutional part is used);
    ``pretrained=True`` — torchvision's ImageNet weights (downloaded once into the torch
    hub cache: needs the network the first time).
    """
    entry = MODELS.get(name)
    if entry is None:
        raise FlareLensError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    if image_size < entry.min_size:
        raise FlareLensError(f"model {name} needs images of at least {entry.min_size} px, got --image-size {image_size}")
    if init not in INITS:
        raise FlareLensError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    model = entry.build()
    init_layers(model.classifier, init)
    if name != "simplecnn":
        init_layers(model.stem, init)
    if weights is not None:
        load_backbone(model, _read_state_dict(weights), source=str(weights))
    elif pretrained:
        load_backbone(model, imagenet_state_dict(name), source=f"torchvision {entry.imagenet_weights}")
    return model


def imagenet_state_dict(name: str) -> dict:
    """torchvision's ImageNet state dict of model ``name``'s backbone (downloads it once)."""
    entry = MODELS[name]
    if entry.imagenet_weights is None:
        raise FlareLensError(f"model {name} has no ImageNet weights; drop --pretrained")
    from torchvision.models import get_weight

    weights = get_weight(entry.imagenet_weights)
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, SSL errors, timeouts...
        raise FlareLensError(
            f"cannot download the ImageNet weights of {name} from {weights.url} ({exc.__class__.__name__}: {exc}); "
            "without network, download that file on a machine with one and pass it with --weights FILE "
            "(or place it in the torch hub cache, ~/.cache/torch/hub/checkpoints/)"
        ) from None


def _read_state_dict(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FlareLensError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle errors, truncated files...
        raise FlareLensError(f"--weights {path}: cannot read a state dict ({exc}); save one with torch.save(model.state_dict(), FILE)") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a flarelens checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FlareLensError(f"--weights {path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def load_backbone(model: FlareNet, state: dict, source: str = "weights") -> None:
    """Load the backbone (``model.features``) from a torchvision-style state dict.

    Keys ``features.<k>`` (VGG, AlexNet, a flarelens model) or ``<k>`` (ResNet) are
    matched to ``model.features``; the rest (the ImageNet classifier) is ignored. Every
    backbone parameter must be present with the right shape.
    """
    target = model.features.state_dict()
    mapped = {}
    for key, value in state.items():
        short = key[len("features."):] if key.startswith("features.") else key
        if short in target:
            mapped[short] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise FlareLensError(
            f"{source}: not a backbone of this model: {len(missing)} parameter(s) missing, e.g. {', '.join(missing[:3])}"
        )
    bad = [k for k, v in mapped.items() if tuple(v.shape) != tuple(target[k].shape)]
    if bad:
        k = bad[0]
        raise FlareLensError(f"{source}: parameter {k} has shape {tuple(mapped[k].shape)}, the model needs {tuple(target[k].shape)}")
    model.features.load_state_dict(mapped)


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The last convolution of the backbone: the layer Grad-CAM attributes to.

    Accepts a :class:`FlareNet` or one wrapped by DDP / ``torch.compile``.
    """
    model = unwrap(model)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise FlareLensError(f"{type(model).__name__} has no convolution in its backbone")
    return convs[-1]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model

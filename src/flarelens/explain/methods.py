"""The attribution methods, as a registry: adding a method is one registered class.

Each method is a subclass of :class:`AttributionMethod` decorated with :func:`register`. It
names itself (``name``, ``title``), says what it needs (``needs_background``: a Deep SHAP
style reference set; ``needs_deeplift_model``: the model copy whose hooked non-linearities
are separated, see :func:`flarelens.explain.prepare.prepare_model`) and turns a batch of
images into maps of the flare class (:meth:`AttributionMethod.attribute`). The
:class:`~flarelens.explain.attributions.Attributor` builds the registered methods a run
asks for and calls them in turn; nothing else knows which methods exist.

The three methods of the study: Guided Grad-CAM on the backbone's last convolution, Deep
SHAP (captum's DeepLiftShap, with the exact max-pool rule) against non-flaring training
images, Integrated Gradients from a physical or the study's gray baseline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from flarelens.errors import FlareLensError

#: Class index of "flare" in the model's output.
FLARE = 1

#: Pixel value of zero field in the 8-bit magnetograms, as a model input in [0, 1].
NEUTRAL = 128.0 / 255.0

#: Integrated Gradients baselines: zero field on the disk with the off-disk sky kept
#: (physical), or the study's flat 0.5 gray everywhere (gray).
IG_BASELINES = ("physical", "gray")


@dataclass
class MethodResult:
    """Maps (B, H, W) float32 and the per-instance convergence delta (NaN when not defined)."""

    maps: np.ndarray
    delta: np.ndarray


@dataclass
class MethodConfig:
    """Settings shared by the methods of one :class:`~flarelens.explain.attributions.Attributor`.

    Read at every call, so a changed ``background`` takes effect at once.
    """

    background: torch.Tensor | None = None  # (K, 1, H, W) reference images
    ig_baseline: str = "physical"
    n_steps: int = 50
    internal_batch_size: int = 64


@dataclass
class PreparedModels:
    """The prepared copies of one model for one input size."""

    plain: nn.Module  # FlareOutput-wrapped copy (see prepare_model, separate=False)
    deeplift: nn.Module | None  # copy with separated hooks, when a method needs it
    layer: nn.Module  # the Grad-CAM layer inside ``plain``


class AttributionMethod:
    """One attribution method of the flare class; subclasses are registered with :func:`register`."""

    name: ClassVar[str]
    title: ClassVar[str]
    needs_background: ClassVar[bool] = False
    needs_deeplift_model: ClassVar[bool] = False

    def __init__(self, models: PreparedModels, config: MethodConfig):
        self.models = models
        self.config = config

    def attribute(self, x: torch.Tensor, disk: torch.Tensor | None) -> MethodResult:
        """Maps for (B, 1, H, W) images in [0, 1] on the model's device; ``disk`` (B, H, W) bool or None."""
        raise NotImplementedError


#: name -> method class, in registration order (the order the study shows them).
REGISTRY: dict[str, type[AttributionMethod]] = {}


def register(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator adding an :class:`AttributionMethod` to :data:`REGISTRY` under ``cls.name``."""
    if cls.name in REGISTRY:
        raise ValueError(f"attribution method {cls.name!r} is already registered")
    REGISTRY[cls.name] = cls
    return cls


def method_class(name: str) -> type[AttributionMethod]:
    """The registered class of method ``name`` (a clear error for an unknown one)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise FlareLensError(f"unknown method(s) {name}: choose from {', '.join(REGISTRY)}") from None


def needs_background(methods) -> bool:
    """Whether any of ``methods`` needs reference images (Deep SHAP's background)."""
    return any(method_class(m).needs_background for m in methods)


def method_title(name: str) -> str:
    """Human name of a method (its name when not registered)."""
    cls = REGISTRY.get(name)
    return cls.title if cls is not None else name


# --------------------------------------------------------------------------- baselines


def disk_mask_from_image(images: torch.Tensor) -> torch.Tensor:
    """On-disk pixels of (B, 1, H, W) images in [0, 1] when the geometry is not known.

    Off-disk pixels are exactly 0; strong negative polarity clipped to 0 inside the disk
    is recovered by filling holes.
    """
    from scipy.ndimage import binary_fill_holes

    arr = images.detach().cpu().numpy()[:, 0] > 0.5 / 255
    filled = np.stack([binary_fill_holes(a) for a in arr])
    return torch.from_numpy(filled)


def ig_baseline(images: torch.Tensor, kind: str = "physical", disk: torch.Tensor | None = None) -> torch.Tensor:
    """Integrated Gradients baseline for (B, 1, H, W) images in [0, 1].

    ``physical``: zero field (128/255) on the disk, off-disk pixels unchanged;
    ``disk`` is a (B, H, W) boolean on-disk mask (from the geometry; derived from the
    image when None). ``gray``: the study's flat 0.5 everywhere.
    """
    if kind == "gray":
        return torch.full_like(images, 0.5)
    if kind != "physical":
        raise FlareLensError(f"unknown IG baseline {kind!r}: choose one of {', '.join(IG_BASELINES)}")
    if disk is None:
        disk = disk_mask_from_image(images)
    disk = disk.to(images.device).reshape(images.shape[0], 1, *images.shape[2:])
    return torch.where(disk, torch.full_like(images, NEUTRAL), images)


# --------------------------------------------------------------------------- the study's three methods


@register
class GuidedGradCam(AttributionMethod):
    """Guided Grad-CAM on the Grad-CAM layer, upsampled bilinearly; no convergence delta."""

    name = "guided-gradcam"
    title = "Guided Grad-CAM"

    def __init__(self, models, config):
        super().__init__(models, config)
        from captum.attr import GuidedGradCam as CaptumGuidedGradCam

        self.captum = CaptumGuidedGradCam(models.plain, models.layer)

    def attribute(self, x, disk):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Setting backward hooks on ReLU.*")
            attr = self.captum.attribute(x.clone().requires_grad_(), target=FLARE, interpolate_mode="bilinear")
        maps = attr.detach().sum(dim=1).cpu().numpy().astype(np.float32)
        return MethodResult(maps, np.full(len(x), np.nan, dtype=np.float32))


@register
class DeepShap(AttributionMethod):
    """captum's DeepLiftShap against the background, with the exact max-pool rule."""

    name = "deepshap"
    title = "Deep SHAP"
    needs_background = True
    needs_deeplift_model = True

    def __init__(self, models, config):
        super().__init__(models, config)
        from flarelens.explain.prepare import exact_deep_lift_shap

        self.captum = exact_deep_lift_shap(models.deeplift)

    def attribute(self, x, disk):
        background = self.config.background
        k = len(background)
        # DeepLiftShap pairs each input with every reference: B*K samples (x2 with the
        # references), so chunk the instances to keep a forward pass within the budget.
        chunk = max(1, self.config.internal_batch_size // k)
        maps, deltas = [], []
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk].clone().requires_grad_()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
                attr, delta = self.captum.attribute(xb, baselines=background, target=FLARE,
                                                    return_convergence_delta=True)
            maps.append(attr.detach().sum(dim=1).cpu())
            # captum returns one delta per (input, reference) pair, inputs outermost; the
            # averaged attribution's delta is the mean over references.
            deltas.append(delta.detach().reshape(len(xb), k).mean(dim=1).cpu())
        return MethodResult(torch.cat(maps).numpy().astype(np.float32), torch.cat(deltas).numpy().astype(np.float32))


@register
class IntegratedGradients(AttributionMethod):
    """captum's IntegratedGradients from :func:`ig_baseline`, ``n_steps`` Gauss-Legendre steps."""

    name = "ig"
    title = "Integrated Gradients"

    def __init__(self, models, config):
        super().__init__(models, config)
        from captum.attr import IntegratedGradients as CaptumIntegratedGradients

        self.captum = CaptumIntegratedGradients(models.plain)

    def attribute(self, x, disk):
        base = ig_baseline(x, self.config.ig_baseline, disk)
        attr, delta = self.captum.attribute(
            x.clone().requires_grad_(), baselines=base, target=FLARE, n_steps=self.config.n_steps,
            internal_batch_size=self.config.internal_batch_size, return_convergence_delta=True,
        )
        return MethodResult(attr.detach().sum(dim=1).cpu().numpy().astype(np.float32),
                            delta.detach().cpu().numpy().astype(np.float32))


#: The registered method names (the study's three), in the order the study shows them.
METHODS = tuple(REGISTRY)

"""Attribution maps of the flare class for batches of images, through the method registry.

:class:`Attributor` prepares the model once per input size
(:func:`flarelens.explain.prepare.prepare_model`), builds the registered methods a run asks
for (:mod:`flarelens.explain.methods`) and calls each on a batch of images per captum call.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from flarelens.errors import FlareLensError
from flarelens.explain.methods import (
    FLARE, IG_BASELINES, METHODS, NEUTRAL, REGISTRY, MethodConfig, MethodResult, PreparedModels, ig_baseline,
    method_class,
)
from flarelens.explain.prepare import (
    OUTPUTS, audit_model, find_layer, last_conv_name, module_name, prepare_model, prepared_layer,
)

__all__ = [
    "Attributor", "MethodResult", "METHODS", "NEUTRAL", "IG_BASELINES", "OUTPUTS", "ig_baseline",
    "prepare_model", "audit_model", "find_layer", "last_conv_name", "module_name",
]


class Attributor:
    """The registered attribution methods of the flare class (by default the study's three), batched.

    Parameters
    ----------
    model:
        ``(B, 1, H, W)`` in [0, 1] -> logits ``(B, 2)``; left unmodified (a prepared copy
        is used, see :func:`prepare_model`).
    methods:
        Names from :data:`flarelens.explain.methods.REGISTRY`.
    layer:
        Name of the Grad-CAM layer in ``model`` (``model.named_modules()``); default the
        last ``Conv2d``.
    background:
        (K, 1, H, W) Deep SHAP background (non-flaring training images); required for
        methods that need one (``deepshap``).
    ig_baseline:
        ``physical`` (zero field on the disk, off-disk kept) or ``gray`` (flat 0.5).
    n_steps, internal_batch_size:
        IG integration steps; the most samples per forward pass in IG and Deep SHAP
        (which runs input and reference together, so 2x that).
    output:
        ``logit`` or ``probability`` of the flare class (see :mod:`flarelens.explain.prepare`).
    """

    def __init__(
        self,
        model: nn.Module,
        methods=METHODS,
        layer: str | None = None,
        background: torch.Tensor | None = None,
        ig_baseline: str = "physical",
        n_steps: int = 50,
        internal_batch_size: int = 64,
        output: str = "logit",
        device: str | torch.device = "cpu",
        example: torch.Tensor | None = None,
    ):
        unknown = [m for m in methods if m not in REGISTRY]
        if unknown:
            raise FlareLensError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(REGISTRY)}")
        if ig_baseline not in IG_BASELINES:
            raise FlareLensError(f"unknown IG baseline {ig_baseline!r}: choose one of {', '.join(IG_BASELINES)}")
        if output not in OUTPUTS:
            raise FlareLensError(f"unknown attribution output {output!r}: choose one of {', '.join(OUTPUTS)}")
        if n_steps < 2 or internal_batch_size < 1:
            raise FlareLensError("n_steps must be >= 2 and internal_batch_size >= 1")
        self.methods = tuple(methods)
        self.device = torch.device(device)
        self.layer_name = layer or last_conv_name(model)
        find_layer(model, self.layer_name)  # fail early with the list of layers
        self.output = output
        self.config = MethodConfig(ig_baseline=ig_baseline, n_steps=int(n_steps),
                                   internal_batch_size=int(internal_batch_size))
        needing = [method_class(m) for m in self.methods if method_class(m).needs_background]
        if needing:
            if background is None or len(background) < 2:
                # captum's DeepLiftShap averages over a distribution of references.
                raise FlareLensError(f"{needing[0].title} needs a background of at least 2 non-flaring images "
                                     "(--background K)")
            self.config.background = background.to(self.device, torch.float32)
        self._source = model
        # Prepared copies per input size: adaptive pools may be fixed for one size.
        self._prepared: dict[tuple[int, int], tuple[nn.Module, dict]] = {}
        if example is not None:
            self._for_size(tuple(example.shape[-2:]))

    @property
    def background(self) -> torch.Tensor | None:
        """The reference images of the methods that need them (settable)."""
        return self.config.background

    @background.setter
    def background(self, value: torch.Tensor | None) -> None:
        self.config.background = value

    @property
    def internal_batch_size(self) -> int:
        return self.config.internal_batch_size

    def _for_size(self, hw: tuple[int, int]) -> tuple[nn.Module, dict]:
        """(prepared model, {method: built method}) for H x W inputs.

        Methods that need it get a copy of their own with the hooked modules separated by
        copies (see :func:`prepare_model`); the others skip that memory traffic.
        """
        if hw not in self._prepared:
            param = next(self._source.parameters(), None)
            example = torch.full((1, 1, *hw), NEUTRAL, dtype=param.dtype if param is not None else torch.float32,
                                 device=param.device if param is not None else "cpu")
            plain = prepare_model(self._source, example, self.output, separate=False).to(self.device)
            deeplift = None
            if any(method_class(m).needs_deeplift_model for m in self.methods):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the same model audit as the plain copy's
                    deeplift = prepare_model(self._source, example, self.output).to(self.device)
            models = PreparedModels(plain, deeplift, prepared_layer(plain.model, self.layer_name))
            built = {m: method_class(m)(models, self.config) for m in self.methods}
            self._prepared[hw] = (plain, built)
        return self._prepared[hw]

    @torch.no_grad()
    def flare_probability(self, images: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Softmax probability of the flare class for (N, 1, H, W) images, in chunks."""
        batch_size = batch_size or self.internal_batch_size
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        model = self._for_size(tuple(images.shape[-2:]))[0].model
        out = []
        for i in range(0, len(images), batch_size):
            logits = model(images[i:i + batch_size].to(self.device, torch.float32))
            out.append(torch.softmax(logits.float(), dim=1)[:, FLARE].cpu())
        return torch.cat(out).numpy()

    def attribute(self, images: torch.Tensor, disk: torch.Tensor | None = None) -> dict[str, MethodResult]:
        """Attribution maps of the flare class for a batch of (B, 1, H, W) images in [0, 1].

        ``disk`` (B, H, W) bool gives the on-disk pixels for the physical IG baseline.
        Returns ``{method: MethodResult}`` with maps (B, H, W).
        """
        if images.ndim != 4 or images.shape[1] != 1:
            raise FlareLensError(f"expected images of shape (B, 1, H, W), got {tuple(images.shape)}")
        _, built = self._for_size(tuple(images.shape[-2:]))
        x = images.to(self.device, torch.float32)
        return {name: built[name].attribute(x, disk) for name in self.methods}

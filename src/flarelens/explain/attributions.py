"""Attribution maps of the flare class through captum: Guided Grad-CAM, Deep SHAP, IG.

The three methods of the study, computed for a batch of images per captum call. Every
model is accepted that maps ``(B, 1, H, W)`` float images in [0, 1] (the 8-bit
magnetogram / 255: 0 G = 128/255, off-disk 0) to logits ``(B, 2)``, class 1 = flare.

What is attributed (``output``):

- ``"logit"`` (default, as the study did with captum): the model's class-1 output, the
  flare logit, before the softmax.
- ``"probability"``: the softmax probability of the flare class (an ``nn.Softmax`` module
  appended, which DeepLift's rules support).

Captum's hooks work on modules, so the model is prepared first (:func:`prepare_model`):
a deep copy in eval mode whose in-place activations are made out-of-place and whose every
ReLU is a module of its own, used once; functional non-linearities (``F.relu``,
``F.max_pool2d``, ...) are rewritten into modules with ``torch.fx``. Without that,
DeepLift silently falls back to plain gradients for functional calls (its
summation-to-delta property breaks) and raises on a module used twice, and Guided
Backprop skips functional ReLUs. The caller's model is never modified.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from flarelens.errors import FlareLensError

#: Method names, in the order the study shows them.
METHODS = ("guided-gradcam", "deepshap", "ig")

#: Pixel value of zero field in the 8-bit magnetograms, as a model input in [0, 1].
NEUTRAL = 128.0 / 255.0

#: Integrated Gradients baselines: zero field on the disk with the off-disk sky kept
#: (physical), or the study's flat 0.5 gray everywhere (gray).
IG_BASELINES = ("physical", "gray")

OUTPUTS = ("logit", "probability")

FLARE = 1  # class index of "flare" in the model's output

# Non-linear functions whose DeepLift rule captum applies only to the matching module type.
_FUNCTIONAL_NONLINEAR = {
    F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu",
    torch.Tensor.relu: "relu", torch.Tensor.relu_: "relu",
    F.max_pool2d: "max_pool2d", torch.max_pool2d: "max_pool2d",
    F.max_pool2d_with_indices: "max_pool2d",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid",
    torch.tanh: "tanh", F.tanh: "tanh", torch.Tensor.tanh: "tanh",
    F.softmax: "softmax", torch.softmax: "softmax", torch.Tensor.softmax: "softmax",
    F.elu: "elu", F.leaky_relu: "leaky_relu", F.softplus: "softplus",
    F.gelu: "gelu", F.silu: "silu", F.hardtanh: "hardtanh", F.relu6: "relu6",
    F.adaptive_max_pool2d: "adaptive_max_pool2d",
}

# Module types captum's DeepLift has a rule for (captum.attr._core.deep_lift.SUPPORTED_NON_LINEAR).
_DEEPLIFT_MODULES = (
    nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Softmax,
)


class FlareOutput(nn.Module):
    """The model with its output made the quantity to attribute: logits or probabilities.

    Both keep the shape (B, 2) so that ``target=1`` always means the flare class.
    """

    def __init__(self, model: nn.Module, output: str = "logit"):
        super().__init__()
        if output not in OUTPUTS:
            raise FlareLensError(f"unknown attribution output {output!r}: choose one of {', '.join(OUTPUTS)}")
        self.model = model
        self.output = output
        self.softmax = nn.Softmax(dim=1) if output == "probability" else None

    def forward(self, x):
        out = self.model(x)
        return self.softmax(out) if self.softmax is not None else out


# --------------------------------------------------------------------------- model preparation


@dataclass
class ModelAudit:
    """What one forward pass showed about the model's use of non-linearities."""

    reused_modules: list[str] = field(default_factory=list)  # supported modules called more than once
    functional: list[str] = field(default_factory=list)  # non-linear functions called outside modules
    unsupported_modules: list[str] = field(default_factory=list)  # non-linear modules DeepLift has no rule for

    @property
    def deeplift_exact(self) -> bool:
        return not (self.reused_modules or self.functional or self.unsupported_modules)


_UNSUPPORTED_MODULES = (nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardtanh, nn.ReLU6, nn.Mish,
                        nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.PReLU)


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self, depth: list[int], found: list[str]):
        super().__init__()
        self.depth, self.found = depth, found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _FUNCTIONAL_NONLINEAR.get(func)
        if name is not None and self.depth[0] == 0:
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def audit_model(model: nn.Module, example: torch.Tensor) -> ModelAudit:
    """Run one forward pass of ``example`` and list what would break DeepLift's rules.

    Reports supported non-linear modules called more than once, non-linear functions
    called outside any module (``F.relu`` in a ``forward``), and non-linear module types
    captum's DeepLift has no rule for (treated as plain gradients).
    """
    audit = ModelAudit()
    names = {m: n for n, m in model.named_modules(remove_duplicate=False)}
    calls: dict[nn.Module, int] = {}
    depth = [0]
    handles = []

    def pre(module, inputs):
        calls[module] = calls.get(module, 0) + 1
        depth[0] += 1

    def post(module, inputs, output):
        depth[0] -= 1

    for module in model.modules():
        if isinstance(module, _DEEPLIFT_MODULES):
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        elif isinstance(module, _UNSUPPORTED_MODULES):
            audit.unsupported_modules.append(f"{names.get(module, '?')} ({type(module).__name__})")
    found: list[str] = []
    try:
        with torch.no_grad(), _FunctionRecorder(depth, found):
            model(example)
    finally:
        for h in handles:
            h.remove()
    audit.reused_modules = [f"{names.get(m, '?')} ({type(m).__name__}, {n} calls)" for m, n in calls.items() if n > 1]
    audit.functional = sorted(set(found))
    return audit


def _fresh_activations(module: nn.Module) -> None:
    """Give every registration of a ReLU its own out-of-place instance; other in-place flags off."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.ReLU(inplace=False))
        else:
            if hasattr(child, "inplace") and isinstance(getattr(child, "inplace"), bool):
                child.inplace = False
            _fresh_activations(child)


def _fx_rewrite(model: nn.Module) -> nn.Module:
    """Rewrite functional non-linearities into modules and give each module call its own copy.

    Uses ``torch.fx`` symbolic tracing; models fx cannot trace are returned unchanged.
    """
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "cannot rewrite"
        warnings.warn(f"torch.fx cannot trace the model ({exc}); DeepLift attributions may not be exact")
        return model
    graph = gm.graph
    seen: set[str] = set()
    counter = 0

    def add(module: nn.Module) -> str:
        nonlocal counter
        counter += 1
        name = f"_explain_nl{counter}"
        gm.add_submodule(name, module)
        return name

    for node in list(graph.nodes):
        replacement = None
        if node.op == "call_function" or node.op == "call_method":
            target = node.target
            key = getattr(torch.Tensor, target, None) if node.op == "call_method" else target
            kind = _FUNCTIONAL_NONLINEAR.get(key)
            if kind == "relu":
                replacement = nn.ReLU()
            elif kind == "sigmoid":
                replacement = nn.Sigmoid()
            elif kind == "tanh":
                replacement = nn.Tanh()
            elif kind == "max_pool2d" and node.op == "call_function":
                replacement = _maxpool_from_call(node)
            if replacement is not None:
                with graph.inserting_before(node):
                    new = graph.call_module(add(replacement), (node.args[0],))
                node.replace_all_uses_with(new)
                graph.erase_node(node)
        elif node.op == "call_module":
            sub = gm.get_submodule(node.target)
            if isinstance(sub, _DEEPLIFT_MODULES):
                if node.target in seen:
                    fresh = copy.deepcopy(sub)
                    if hasattr(fresh, "inplace"):
                        fresh.inplace = False
                    node.target = add(fresh)
                seen.add(node.target)
    graph.lint()
    gm.recompile()
    return gm


def _maxpool_from_call(node) -> nn.Module | None:
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
    values = dict(zip(names, node.args))
    values.update(node.kwargs)
    if values.get("return_indices"):
        return None
    if any(isinstance(v, torch.fx.Node) for k, v in values.items() if k != "input"):
        return None
    values.pop("input", None)
    values.pop("return_indices", None)
    if values.get("stride") in (None, []):
        values.pop("stride", None)
    return nn.MaxPool2d(**values)


def prepare_model(model: nn.Module, example: torch.Tensor | None = None, output: str = "logit") -> nn.Module:
    """A copy of ``model`` that captum's DeepLift and Guided Backprop handle exactly.

    Deep-copies the model (the caller's stays as it is), puts it in eval mode, turns off
    parameter gradients, replaces each registered ``nn.ReLU`` by a fresh out-of-place one
    and clears other ``inplace`` flags. When ``example`` (a (1, 1, H, W) input) is given,
    one forward pass is audited; functional non-linearities or modules called twice are
    then rewritten with ``torch.fx``, and what still cannot be handled is warned about.
    The returned module wraps the model in :class:`FlareOutput` (``output``).
    """
    prepared = copy.deepcopy(model).eval()
    for p in prepared.parameters():
        p.requires_grad_(False)
    _fresh_activations(prepared)
    if example is not None:
        audit = audit_model(prepared, example)
        if audit.functional or audit.reused_modules:
            prepared = _fx_rewrite(prepared)
            audit = audit_model(prepared, example)
        if not audit.deeplift_exact:
            problems = audit.functional + audit.reused_modules + audit.unsupported_modules
            warnings.warn(
                "DeepLift/Guided Backprop cannot apply their rules to: " + ", ".join(problems)
                + "; those act as plain gradients (see the convergence delta)"
            )
    return FlareOutput(prepared, output).eval()


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` called ``name`` (as in ``model.named_modules()``)."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise FlareLensError(
            f"the model has no layer {name!r}; its convolutional layers are: {', '.join(convs[-5:]) or 'none'}"
        ) from None


def last_conv_name(model: nn.Module) -> str:
    """Name of the last ``nn.Conv2d`` registered in ``model`` (the Grad-CAM layer by default)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise FlareLensError("the model has no Conv2d layer for Grad-CAM; pass the layer name (--layer)")
    return names[-1]


def module_name(model: nn.Module, layer: nn.Module) -> str:
    """The name under which ``layer`` is registered in ``model``."""
    for name, module in model.named_modules():
        if module is layer:
            return name
    raise FlareLensError(f"layer {type(layer).__name__} is not part of the model")


# --------------------------------------------------------------------------- baselines and masks


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


# --------------------------------------------------------------------------- the attributor


@dataclass
class MethodResult:
    """Maps (B, H, W) float32 and the per-instance convergence delta (NaN when not defined)."""

    maps: np.ndarray
    delta: np.ndarray


class Attributor:
    """Guided Grad-CAM, Deep SHAP and Integrated Gradients of the flare class, batched.

    Parameters
    ----------
    model:
        ``(B, 1, H, W)`` in [0, 1] -> logits ``(B, 2)``; left unmodified (a prepared copy
        is used, see :func:`prepare_model`).
    methods:
        Any of :data:`METHODS`.
    layer:
        Name of the Grad-CAM layer in ``model`` (``model.named_modules()``); default the
        last ``Conv2d``.
    background:
        (K, 1, H, W) Deep SHAP background (non-flaring training images); required for
        ``deepshap``.
    ig_baseline:
        ``physical`` (zero field on the disk, off-disk kept) or ``gray`` (flat 0.5).
    n_steps, internal_batch_size:
        IG integration steps; the most samples per forward pass in IG and Deep SHAP
        (which runs input and reference together, so 2x that).
    output:
        ``logit`` or ``probability`` of the flare class, see the module docstring.
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
        from captum.attr import DeepLiftShap, GuidedGradCam, IntegratedGradients

        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise FlareLensError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
        if ig_baseline not in IG_BASELINES:
            raise FlareLensError(f"unknown IG baseline {ig_baseline!r}: choose one of {', '.join(IG_BASELINES)}")
        if n_steps < 2 or internal_batch_size < 1:
            raise FlareLensError("n_steps must be >= 2 and internal_batch_size >= 1")
        self.methods = tuple(methods)
        self.device = torch.device(device)
        self.layer_name = layer or last_conv_name(model)
        find_layer(model, self.layer_name)  # fail early with the list of layers
        if example is None:
            param = next(model.parameters(), None)
            example = torch.full((1, 1, 32, 32), NEUTRAL, dtype=param.dtype if param is not None else torch.float32)
        self.model = prepare_model(model, example, output).to(self.device)
        self.ig_baseline = ig_baseline
        self.n_steps = int(n_steps)
        self.internal_batch_size = int(internal_batch_size)
        self.output = output
        if "deepshap" in self.methods:
            if background is None or len(background) < 2:
                # captum's DeepLiftShap averages over a distribution of references.
                raise FlareLensError("Deep SHAP needs a background of at least 2 non-flaring images (--background K)")
            self.background = background.to(self.device, torch.float32)
        else:
            self.background = None
        # The layer is looked up in the prepared copy; fx rewriting keeps module names.
        layer_module = _layer_in_prepared(self.model.model, self.layer_name)
        self._ggc = GuidedGradCam(self.model, layer_module)
        self._dls = DeepLiftShap(self.model)
        self._ig = IntegratedGradients(self.model)

    @torch.no_grad()
    def flare_probability(self, images: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Softmax probability of the flare class for (N, 1, H, W) images, in chunks."""
        batch_size = batch_size or self.internal_batch_size
        out = []
        for i in range(0, len(images), batch_size):
            logits = self.model.model(images[i:i + batch_size].to(self.device, torch.float32))
            out.append(torch.softmax(logits.float(), dim=1)[:, FLARE].cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)

    def attribute(self, images: torch.Tensor, disk: torch.Tensor | None = None) -> dict[str, MethodResult]:
        """Attribution maps of the flare class for a batch of (B, 1, H, W) images in [0, 1].

        ``disk`` (B, H, W) bool gives the on-disk pixels for the physical IG baseline.
        Returns ``{method: MethodResult}`` with maps (B, H, W).
        """
        if images.ndim != 4 or images.shape[1] != 1:
            raise FlareLensError(f"expected images of shape (B, 1, H, W), got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        results = {}
        for method in self.methods:
            if method == "guided-gradcam":
                results[method] = self._guided_gradcam(x)
            elif method == "deepshap":
                results[method] = self._deepshap(x)
            else:
                results[method] = self._integrated_gradients(x, disk)
        return results

    def _guided_gradcam(self, x):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Setting backward hooks on ReLU.*")
            attr = self._ggc.attribute(x.clone().requires_grad_(), target=FLARE, interpolate_mode="bilinear")
        maps = attr.detach().sum(dim=1).cpu().numpy().astype(np.float32)
        return MethodResult(maps, np.full(len(x), np.nan, dtype=np.float32))

    def _deepshap(self, x):
        k = len(self.background)
        # DeepLiftShap pairs each input with every reference: B*K samples (x2 with the
        # references), so chunk the instances to keep a forward pass within the budget.
        chunk = max(1, self.internal_batch_size // k)
        maps, deltas = [], []
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk].clone().requires_grad_()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
                attr, delta = self._dls.attribute(xb, baselines=self.background, target=FLARE,
                                                  return_convergence_delta=True)
            maps.append(attr.detach().sum(dim=1).cpu())
            # captum returns one delta per (input, reference) pair, inputs outermost; the
            # averaged attribution's delta is the mean over references.
            deltas.append(delta.detach().reshape(len(xb), k).mean(dim=1).cpu())
        return MethodResult(torch.cat(maps).numpy().astype(np.float32), torch.cat(deltas).numpy().astype(np.float32))

    def _integrated_gradients(self, x, disk):
        base = ig_baseline(x, self.ig_baseline, disk)
        attr, delta = self._ig.attribute(
            x.clone().requires_grad_(), baselines=base, target=FLARE, n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size, return_convergence_delta=True,
        )
        return MethodResult(attr.detach().sum(dim=1).cpu().numpy().astype(np.float32),
                            delta.detach().cpu().numpy().astype(np.float32))


def _layer_in_prepared(prepared: nn.Module, name: str) -> nn.Module:
    try:
        return prepared.get_submodule(name)
    except AttributeError:
        raise FlareLensError(f"layer {name!r} was lost when preparing the model for attribution") from None

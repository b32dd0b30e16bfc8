"""Preparing a model for captum, so that DeepLift (Deep SHAP) and Guided Backprop are exact.

Every model is accepted that maps ``(B, 1, H, W)`` float images in [0, 1] (the 8-bit
magnetogram / 255: 0 G = 128/255, off-disk 0) to logits ``(B, 2)``, class 1 = flare.
What is attributed (``output``, :class:`FlareOutput`):

- ``"logit"`` (default, as the study did with captum): the model's class-1 output, the
  flare logit, before the softmax.
- ``"probability"``: the softmax probability of the flare class (an ``nn.Softmax`` module
  appended, which DeepLift's rules support).

Captum's hooks work on modules, so the model is prepared first (:func:`prepare_model`):
a deep copy in eval mode whose in-place activations are made out-of-place and whose every
ReLU is a module of its own, used once; functional non-linearities (``F.relu``,
``F.max_pool2d``, ...) are rewritten into modules with ``torch.fx``; adaptive max pools
become plain max pools for the input size. Without that, DeepLift silently falls back to
plain gradients for functional calls and unsupported modules (its summation-to-delta
property breaks) and raises on a module used twice, and Guided Backprop skips functional
ReLUs. The caller's model is never modified.

Two more things break captum's Deep SHAP on the study's networks, and are handled here:
a ReLU feeding a max pool directly (VGG, AlexNet) shares one tensor between the two
modules' hooks, and the ReLU then reads the plain gradient instead of the pool's
multipliers (:func:`_separate_hooked_modules` puts a copy between them); and captum's
max-pool rule drops contributions of overlapping windows (AlexNet's 3x3 stride-2 pools;
:func:`maxpool2d_multipliers` sums them, :func:`exact_deep_lift_shap` uses it). With both,
Deep SHAP's convergence delta is at float precision on VGG16, AlexNet, ResNet-18 and
simplecnn.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from flarelens.errors import FlareLensError

OUTPUTS = ("logit", "probability")


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
        if isinstance(module, _DEEPLIFT_MODULES + _UNSUPPORTED_MODULES):
            # Functions called inside these modules are the modules' own work, not functional calls.
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        if isinstance(module, _UNSUPPORTED_MODULES):
            audit.unsupported_modules.append(f"{names.get(module, '?')} ({type(module).__name__})")
    found: list[str] = []
    try:
        with torch.no_grad(), _FunctionRecorder(depth, found):
            model(example)
    finally:
        for h in handles:
            h.remove()
    audit.reused_modules = [f"{names.get(m, '?')} ({type(m).__name__}, {n} calls)" for m, n in calls.items()
                            if n > 1 and isinstance(m, _DEEPLIFT_MODULES)]
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


def _fix_adaptive_max_pools(model: nn.Module, example: torch.Tensor) -> bool:
    """Replace ``nn.AdaptiveMaxPool2d`` by the equal ``nn.MaxPool2d`` for ``example``'s size.

    DeepLift has a rule for max pooling but not for its adaptive form; when the input
    size divides evenly (a global max pool always does) the two compute the same thing
    for that input size. Returns whether anything was replaced.
    """
    shapes: dict[nn.Module, set] = {}
    handles = [
        m.register_forward_pre_hook(lambda mod, inp: shapes.setdefault(mod, set()).add(tuple(inp[0].shape[-2:])))
        for m in model.modules() if isinstance(m, nn.AdaptiveMaxPool2d)
    ]
    if not handles:
        return False
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    replaced = False
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.AdaptiveMaxPool2d) or len(shapes.get(child, ())) != 1 or child.return_indices:
                continue
            (h, w), = shapes[child]
            size = child.output_size if isinstance(child.output_size, tuple) else (child.output_size,) * 2
            oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
            if h % oh or w % ow:
                continue
            setattr(parent, name, nn.MaxPool2d((h // oh, w // ow)))
            replaced = True
    return replaced


class _Copy(nn.Module):
    """A copy of its input: a tensor of its own between two hooked non-linearities."""

    def forward(self, x):
        return x.clone()


def _separate_hooked_modules(model: nn.Module) -> None:
    """Put a copy in front of every module DeepLift hooks (ReLU, max pool, ...).

    captum hooks a module's output tensor to read the gradient arriving there, and the
    next module's input tensor to replace that gradient with its DeepLift multipliers.
    When a ReLU feeds a max pool directly (VGG, AlexNet, ResNet's stem) both hooks sit on
    the same tensor and the ReLU's runs first, so it reads the plain gradient instead of
    the pool's multipliers and the summation-to-delta property is lost. With a copy in
    between, each module's hooks have a tensor of their own. The copy changes no value.
    """
    for parent in list(model.modules()):
        if isinstance(parent, _Guarded):
            continue
        for name, child in list(parent.named_children()):
            if type(child) in _DEEPLIFT_MODULES:
                setattr(parent, name, _Guarded(child))


class _Guarded(nn.Sequential):
    """``_Copy`` then the wrapped non-linearity (a container, which captum does not hook)."""

    def __init__(self, module: nn.Module):
        super().__init__(_Copy(), module)


def _fx_rewrite(model: nn.Module) -> nn.Module:
    """Rewrite functional non-linearities into modules and give each module call its own copy.

    Uses ``torch.fx`` symbolic tracing; models fx cannot trace are returned unchanged.
    """
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - data-dependent control flow somewhere in the model
        # Modules without children (a gray-to-RGB step branching on the channel count, say)
        # are kept whole; what fx then cannot see are their own internals.
        try:
            tracer = _LeafTracer()
            gm = torch.fx.GraphModule(model, tracer.trace(model))
        except Exception as exc:  # noqa: BLE001
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


class _LeafTracer(torch.fx.Tracer):
    """An fx tracer that keeps every module without children whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or not any(True for _ in m.children())


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


def prepare_model(model: nn.Module, example: torch.Tensor | None = None, output: str = "logit",
                  separate: bool = True) -> nn.Module:
    """A copy of ``model`` that captum's DeepLift and Guided Backprop handle exactly.

    Deep-copies the model (the caller's stays as it is), puts it in eval mode, turns off
    parameter gradients, replaces each registered ``nn.ReLU`` by a fresh out-of-place one
    and clears other ``inplace`` flags, and (``separate``, needed by DeepLift only) gives
    every hooked non-linearity an input tensor of its own (see
    :func:`_separate_hooked_modules`). When ``example`` (a (1, 1, H, W) input) is given,
    one forward pass is audited; functional non-linearities or modules called twice are
    then rewritten with ``torch.fx``, adaptive max pools become plain max pools for that
    input size (the copy then serves inputs of that size only), and what still cannot be
    handled is warned about. The returned module wraps the model in :class:`FlareOutput` (``output``).
    """
    prepared = copy.deepcopy(model).eval()
    for p in prepared.parameters():
        p.requires_grad_(False)
    _fresh_activations(prepared)
    if example is not None:
        _fix_adaptive_max_pools(prepared, example)
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
    if separate:
        _separate_hooked_modules(prepared)
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


# --------------------------------------------------------------------------- DeepLift's max-pool rule


def maxpool2d_multipliers(module: nn.MaxPool2d, inputs, outputs, grad_input, grad_output, eps: float):
    """DeepLift multipliers of a 2-D max pool, for overlapping windows too.

    ``inputs``/``outputs`` hold the inputs then the references (captum's layout). Each
    window's output difference is split, as in captum, between the argmax of the input
    and the argmax of the reference; contributions of windows sharing an argmax pixel are
    summed (captum's ``max_unpool2d`` keeps only one of them, which loses part of the
    difference in AlexNet's 3x3 stride-2 pools). Where the input difference vanishes the
    plain gradient of each instance is kept.
    """
    with torch.no_grad():
        x, ref = inputs.chunk(2)
        out, out_ref = outputs.chunk(2)
        delta_in = torch.cat(2 * [x - ref])
        top = torch.max(out, out_ref)
        delta_out = torch.cat([top - out_ref, out - top])
        _, index = F.max_pool2d(inputs, module.kernel_size, module.stride, module.padding, module.dilation,
                                module.ceil_mode, return_indices=True)
        n, c, h, w = inputs.shape
        contrib = torch.zeros(n, c, h * w, dtype=grad_output.dtype, device=grad_output.device)
        contrib.scatter_add_(2, index.flatten(2), (grad_output * delta_out).flatten(2))
        first, second = contrib.chunk(2)
        contrib = torch.cat(2 * [first + second]).view(n, c, h, w)
        small = delta_in.abs() < eps
        safe = torch.where(small, torch.ones_like(delta_in), delta_in)
    return torch.where(small, grad_input, contrib / safe)


def exact_deep_lift_shap(model: nn.Module):
    """captum's DeepLiftShap on ``model`` with :func:`maxpool2d_multipliers` for ``nn.MaxPool2d``."""
    from captum.attr import DeepLiftShap

    class _DeepLiftShap(DeepLiftShap):
        def _backward_hook(self, module, grad_input, grad_output):
            if type(module) is nn.MaxPool2d and self.satisfies_attribute_criteria(module):
                multipliers = maxpool2d_multipliers(module, module.input, module.output, grad_input,
                                                     grad_output, self.eps)
                del module.input
                del module.output
                return multipliers
            return super()._backward_hook(module, grad_input, grad_output)

    return _DeepLiftShap(model)

def prepared_layer(prepared: nn.Module, name: str) -> nn.Module:
    """The layer ``name`` of the original model inside its prepared copy (fx rewriting keeps module names)."""
    try:
        return prepared.get_submodule(name)
    except AttributeError:
        raise FlareLensError(f"layer {name!r} was lost when preparing the model for attribution") from None

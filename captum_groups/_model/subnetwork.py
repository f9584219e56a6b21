"""The part of a model between two layers, as a module of its own (via torch.fx).

Edge weights between two layers need only the layers in between once the
lower layer's activations are known. ``subnetwork`` traces the model with
``torch.fx`` and keeps the operations that lead from the lower layer's output
to the upper layer's output. The submodules are shared with the model, not
copied.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from ..groups import Layer, layer_name, resolve_layer


def user_altered(module: nn.Module) -> bool:
    """Whether the user changed what ``module`` computes: forward hooks, forward pre-hooks or
    parametrizations. Such a module is never replaced by a copy (batch norm folding) and is
    traced as one call, so that what the user put on it runs."""
    return bool(
        module._forward_hooks or module._forward_pre_hooks or parametrize.is_parametrized(module)
    )


class _KeepLayers(fx.Tracer):
    """Traces into containers, but keeps the two chosen layers, and every module the user
    hooked or parametrized, as single calls."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (
            qualified_name in self.names
            or user_altered(module)
            or super().is_leaf_module(module, qualified_name)
        )


_GIVE_SUBNETWORK = (
    "the part of the model between two layers is cut out with torch.fx; where it cannot be, "
    "find_core_neurons and LayerGroupInteraction take it given by hand (subnetwork=, a "
    "callable mapping the lower layer's output to the upper layer's)"
)


def _call_node(
    graph: fx.Graph, name: str, parameter: str, model: nn.Module, tracer: _KeepLayers
) -> fx.Node:
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
    if len(calls) == 1:
        return calls[0]
    if calls:
        raise ValueError(
            f"{parameter} {name!r} is called {len(calls)} times in the traced model; the part "
            f"between two layers needs each of them called exactly once"
        )
    parts = name.split(".")
    for end in range(1, len(parts)):
        outer = ".".join(parts[:end])
        if outer in tracer.names:
            raise ValueError(
                f"{parameter} {name!r} is inside the other layer {outer!r}, so the part between "
                f"them is not a piece of the model's forward pass; choose layers that do not "
                f"contain each other, or {_GIVE_SUBNETWORK}"
            )
        module = model.get_submodule(outer)
        if fx.Tracer.is_leaf_module(tracer, module, outer):
            raise ValueError(
                f"{parameter} {name!r} is inside {outer!r} ({type(module).__name__}), a torch.nn "
                f"module that torch.fx keeps as one call, so {name!r} never appears on its own "
                f"in the traced model; {_GIVE_SUBNETWORK}"
            )
    raise ValueError(
        f"{parameter} {name!r} is never called as a module in the traced model (it may be "
        f"called inside code that torch.fx does not trace into); {_GIVE_SUBNETWORK}"
    )


def _between(lower: fx.Node, upper: fx.Node) -> set[fx.Node]:
    """Nodes the upper node depends on, walking back from it and stopping at the lower node."""
    seen: set[fx.Node] = set()
    stack = [upper]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node is not lower:
            stack.extend(node.all_input_nodes)
    return seen


def subnetwork(
    model: nn.Module, lower_layer: Layer, upper_layer: Layer | None = None
) -> fx.GraphModule:
    """The operations from ``lower_layer``'s output to ``upper_layer``'s output, as a module.

    Parameters
    ----------
    model : nn.Module
        A model that ``torch.fx.symbolic_trace`` can trace.
    lower_layer, upper_layer : nn.Module or str
        The two layers; everything the upper layer computes must come from the
        lower layer's output (and constants): no connection may bypass it.
        Without ``upper_layer`` the subnetwork ends at the model's output.

    Returns
    -------
    torch.fx.GraphModule
        Called with the lower layer's output, it returns the upper layer's
        output. It shares the model's submodules, under the same names.

    Examples
    --------
    >>> import torch
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> between = subnetwork(model, "0", "2")
    >>> hidden = model[0](torch.ones(4, 2))
    >>> torch.equal(between(hidden), model(torch.ones(4, 2)))
    True
    """
    lower = layer_name(model, resolve_layer(model, lower_layer, "lower_layer"))
    upper = (
        None
        if upper_layer is None
        else layer_name(model, resolve_layer(model, upper_layer, "upper_layer"))
    )
    tracer = _KeepLayers({lower, upper} - {None})
    try:
        traced = fx.GraphModule(model, tracer.trace(model))
    except Exception as error:  # fx raises many kinds of errors on untraceable code
        raise ValueError(
            f"torch.fx could not trace {type(model).__name__} ({error}); {_GIVE_SUBNETWORK}"
        ) from error
    lower_node = _call_node(traced.graph, lower, "lower_layer", model, tracer)
    if upper is None:
        (upper_node,) = [n.args[0] for n in traced.graph.nodes if n.op == "output"]
        upper = "the output"
        if not isinstance(upper_node, fx.Node):
            raise ValueError("the model must return one tensor to end a subnetwork at its output")
    else:
        upper_node = _call_node(traced.graph, upper, "upper_layer", model, tracer)
    needed = _between(lower_node, upper_node)
    if lower_node not in needed:
        raise ValueError(f"upper_layer {upper!r} does not depend on lower_layer {lower!r}")
    skipped = sorted(n.name for n in needed if n.op == "placeholder")
    if skipped:
        raise ValueError(
            f"the part between {lower!r} and {upper!r} also reads the model input "
            f"{skipped[0]!r} by a path that skips {lower!r}; edge weights from given "
            f"activations need every path to the upper layer to pass through the lower layer"
        )
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {lower_node: graph.placeholder("lower")}
    for node in traced.graph.nodes:
        if node in needed and node is not lower_node:
            env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[upper_node])
    return fx.GraphModule(traced, graph, class_name="Subnetwork")


class Affine(nn.Module):
    """An eval-mode batch norm as the per-channel affine map it computes."""

    def __init__(self, norm: _BatchNorm) -> None:
        super().__init__()
        # (x - mean) / sqrt(var + eps) * weight + bias  =  x * scale + shift
        with torch.no_grad():
            scale = torch.rsqrt(norm.running_var + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight
            shift = -norm.running_mean * scale
            if norm.bias is not None:
                shift = shift + norm.bias
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        view = (-1,) + (1,) * (x.ndim - 2)
        return torch.addcmul(self.shift.view(view), x, self.scale.view(view))


def _foldable(module: nn.Module) -> bool:
    return (
        isinstance(module, _BatchNorm)
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
        and not user_altered(module)
    )


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """The module with its eval-mode batch norms computed as plain affine maps.

    An eval-mode batch norm is the per-channel affine map ``x * scale + shift``,
    but its backward kernel on the CPU costs as much as a convolution's.
    Containers are re-traced with ``torch.fx`` and each eval-mode batch norm
    inside is replaced by its affine map, which computes the same function (to
    float rounding, about 1e-7 relative) with an elementwise backward. Batch
    norms in training mode or without running statistics, and containers that
    fx cannot trace, are kept as they are. ``module`` itself is not changed:
    the result shares its other submodules.

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU()).eval()
    >>> folded = fold_batchnorm(model)
    >>> x = torch.randn(3, 1, 4, 4)
    >>> torch.allclose(folded(x), model(x), atol=1e-6), type(model[1]).__name__
    (True, 'BatchNorm2d')
    """
    if _foldable(module):
        return Affine(module)
    if not any(_foldable(m) for m in module.modules()):
        return module
    try:
        traced = fx.symbolic_trace(module)
    except Exception:  # fx raises many kinds of errors on untraceable code
        return module
    # each call of a submodule is pointed at its folded copy (added under a new name); the
    # user's module tree is never changed, the traced copy shares its other submodules
    for index, node in enumerate(traced.graph.nodes):
        if node.op != "call_module":
            continue
        inner = traced.get_submodule(node.target)
        folded = fold_batchnorm(inner)
        if folded is not inner:
            name = f"_folded_{index}"
            traced.add_submodule(name, folded)
            node.target = name
    traced.graph.eliminate_dead_code()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced

"""The affine first part of a subnetwork, split off so integration paths share it.

Integrated gradients evaluate the part of the network between two layers at
points ``alpha * x`` along a path. Its first operations are usually affine in
``x`` (a convolution, an eval-mode batch norm, the identity of a residual
branch), up to the first nonlinearity. For an affine map ``A``, ``A(alpha x)
= c + alpha (A(x) - c)`` with ``c = A(0)``, and its backward pass is the same
linear map at every point. So the affine prefix needs to run forward and
backward once per input instead of once per integration step: the steps
start at its end (the *frontier*), and the summed gradients at the frontier
go back through it once.

:func:`split_affine_prefix` traces a module with ``torch.fx`` down to its
leaf operations and cuts it at that frontier. Operations it does not know to
be affine end the prefix; a graph that reads the shape of its input is not
split (the steps change the batch size).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..._model.subnetwork import Affine, user_altered

__all__ = ["AffineSplit", "split_affine_prefix", "trace_to_leaves"]

_AFFINE_MODULES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.Identity,
    nn.Flatten,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    Affine,
)
"""Modules that compute an affine map of their one input (given as ``x``)."""

_SHAPE_OPS = {"size", "dim", "shape", "ndim", "numel"}

_RESHAPES = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.mean,
    torch.sum,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    operator.getitem,
}
"""Functions linear in their first argument (with the others constant)."""

_RESHAPE_METHODS = {
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "contiguous",
    "mean",
    "sum",
    "squeeze",
    "unsqueeze",
}


class _LeafTracer(fx.Tracer):
    """Traces into every container; torch.nn's own modules, :class:`Affine` and the modules the
    user hooked or parametrized (so that what the user put on them runs) stay calls."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (
            isinstance(module, Affine)
            or user_altered(module)
            or super().is_leaf_module(module, qualified_name)
        )


def trace_to_leaves(module: object) -> fx.GraphModule | None:
    """``module`` traced down to torch.nn's own modules (and :class:`Affine`), or None when it
    is not an nn.Module or fx cannot trace it."""
    if not isinstance(module, nn.Module):
        return None
    try:
        return fx.GraphModule(module, _LeafTracer().trace(module))
    except Exception:  # fx raises many kinds of errors on untraceable code
        return None


@dataclass
class AffineSplit:
    """A module cut into its affine prefix and the rest.

    Attributes
    ----------
    prefix : fx.GraphModule
        ``x -> tuple of frontier tensors`` (affine in ``x``).
    rest : fx.GraphModule
        ``*frontier tensors -> (output,)``; ``rest(*prefix(x))[0]`` equals the module.
    """

    prefix: fx.GraphModule
    rest: fx.GraphModule


def _is_affine(node: fx.Node, module: fx.GraphModule, dependent: set[fx.Node]) -> bool:
    """Whether ``node`` is affine in the input, given which of its inputs depend on it."""
    inputs = [n for n in node.all_input_nodes if n in dependent]
    if node.op == "call_module":
        leaf = module.get_submodule(str(node.target))
        padded = getattr(leaf, "padding_mode", "zeros") == "zeros"
        affine = isinstance(leaf, _AFFINE_MODULES) and not user_altered(leaf)
        return affine and padded and len(inputs) == 1
    if node.op == "call_method":
        if node.target in _RESHAPE_METHODS:
            return node.args[0] in dependent and len(inputs) == 1
        if node.target in ("add", "sub"):
            return True
        return node.target in ("mul", "div") and len(inputs) == 1 and node.args[0] in dependent
    if node.op != "call_function":
        return False
    if node.target in (operator.add, operator.sub, torch.add, torch.sub, torch.cat):
        return True
    if node.target in (operator.mul, torch.mul):
        return len(inputs) == 1
    if node.target in (operator.truediv, torch.div):
        return len(inputs) == 1 and node.args[0] in dependent
    if node.target is torch.addcmul:
        return len(inputs) == 1 and node.args[1] in dependent
    if node.target in (F.linear, F.conv1d, F.conv2d, F.conv3d):
        return len(inputs) == 1 and node.args[0] in dependent
    return node.target in _RESHAPES and len(inputs) == 1 and node.args[0] in dependent


def _copy(nodes: list[fx.Node], inputs: dict[fx.Node, str], outputs: list[fx.Node]) -> fx.Graph:
    graph = fx.Graph()
    env = {node: graph.placeholder(name) for node, name in inputs.items()}
    for node in nodes:
        if node not in env:
            env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[n] for n in outputs))
    return graph


def split_affine_prefix(module: nn.Module) -> AffineSplit | None:
    """Cut ``module`` (one tensor in, one out) after its affine first part, or None.

    None when fx cannot trace it, when it reads its input's shape, or when
    nothing at its start is affine.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(), nn.Conv2d(3, 1, 1))
    >>> split = split_affine_prefix(net)
    >>> x = torch.randn(4, 2, 5, 5)
    >>> torch.allclose(split.rest(*split.prefix(x))[0], net(x))
    True
    """
    traced = trace_to_leaves(module)
    if traced is None:
        return None
    nodes = list(traced.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    dependent, affine = {inputs[0]}, {inputs[0]}
    for node in nodes:
        if node.op in ("placeholder", "output") or not any(
            n in dependent for n in node.all_input_nodes
        ):
            continue
        if str(node.target) in _SHAPE_OPS:
            return None
        dependent.add(node)
        if _is_affine(node, traced, dependent) and all(
            n in affine for n in node.all_input_nodes if n in dependent
        ):
            affine.add(node)
    (output,) = [n for n in nodes if n.op == "output"]
    result = output.args[0]
    if not isinstance(result, fx.Node):
        return None
    frontier = [
        n for n in nodes if n in affine and (n is result or any(u not in affine for u in n.users))
    ]
    if frontier == [inputs[0]]:
        return None
    needed_prefix = [n for n in nodes if n in affine or (n not in dependent and n.op != "output")]
    prefix = fx.GraphModule(traced, _copy(needed_prefix, {inputs[0]: "x"}, frontier))
    rest_nodes = [n for n in nodes if n.op not in ("placeholder", "output") and n not in affine]
    names = {n: f"frontier_{i}" for i, n in enumerate(frontier)}
    rest = fx.GraphModule(traced, _copy(rest_nodes, names, [result]))
    for part in (prefix, rest):
        part.graph.eliminate_dead_code()
        part.recompile()
    return AffineSplit(prefix, rest)

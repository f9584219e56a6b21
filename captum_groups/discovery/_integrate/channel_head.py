"""The channel-wise end of a subnetwork, evaluated for each row's own target channels only.

A core-neuron target reads a few channels of the upper layer (one, for a
neuron). Typical upper layers end with a channel-mixing operation (a 1x1
convolution or a linear map) followed by channel-wise ones (batch norm,
ReLU, a residual addition). Computing every output channel there, and
back-propagating through all of them, is wasted work when each row needs
one. :func:`split_channel_head` cuts a traced module into a *body*, shared by
all targets, and a *head*: the last mixing operations and the channel-wise
ones after them. :meth:`ChannelHead.__call__` evaluates the head on the
body's outputs for given channels per row: the mixing with only those
channels' weights (a few dot products per row), an affine map with only
their scale and shift, the residual branch read at those channels. Wider
kernels are left in the body: one row's channel would need a convolution
of its own.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..._model.subnetwork import Affine, user_altered

__all__ = ["ChannelHead", "split_channel_head"]

_ELEMENTWISE: dict[object, Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu,
    torch.relu: torch.relu,
    F.relu: torch.relu,
}
_ADDITIONS = {operator.add: torch.add, torch.add: torch.add, operator.sub: torch.sub}


def _kind(node: fx.Node, module: fx.GraphModule) -> str | None:
    """How a node is evaluated in the head: "mix", "affine", "elementwise", "add", or None."""
    if node.op == "call_module":
        leaf = module.get_submodule(str(node.target))
        if user_altered(leaf):
            return None  # what the user put on it must run on the full output
        if isinstance(leaf, nn.Conv2d) and leaf.kernel_size == (1, 1) and leaf.groups == 1:
            return "mix" if leaf.padding in ((0, 0), "valid") else None
        if isinstance(leaf, nn.Linear):
            return "mix"
        if isinstance(leaf, Affine):
            return "affine"
        if type(leaf) in _ELEMENTWISE:
            return "elementwise"
        return None
    if node.op == "call_function" and node.target in _ELEMENTWISE and len(node.args) == 1:
        return "elementwise"
    if node.op == "call_function" and node.target in _ADDITIONS and not node.kwargs:
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        return "add" if len(tensors) == 2 and len(node.args) == 2 else None
    return None


@dataclass
class ChannelHead:
    """A traced module split into a shared body and a per-row channel head.

    Attributes
    ----------
    body : fx.GraphModule
        The module's inputs -> the tensors the head reads (full channels).
    nodes : list of fx.Node
        The head's operations, in order, from the original graph.
    inputs : list of fx.Node
        The nodes whose full values the body returns, in its output order.
    module : fx.GraphModule
        The traced module the nodes belong to.
    output : fx.Node
        The head's last node (the module's output).
    """

    body: fx.GraphModule
    nodes: list[fx.Node]
    inputs: list[fx.Node]
    module: fx.GraphModule
    output: fx.Node

    def __call__(self, boundary: tuple[Tensor, ...], channels: Tensor) -> Tensor:
        """The module's output at ``channels`` (rows, L) of each row: (rows, L, ...)."""
        values: dict[fx.Node, Tensor] = {}

        # Every value here is (rows, L, ...): row r's channels channels[r] only. A node
        # the body computed in full is read at those channels by a gather.
        def read(node: fx.Node) -> Tensor:
            if node in values:
                return values[node]
            full = boundary[self.inputs.index(node)]
            index = channels.view(*channels.shape, *[1] * (full.ndim - 2))
            values[node] = full.gather(1, index.expand(*channels.shape, *full.shape[2:]))
            return values[node]

        for node in self.nodes:
            kind = _kind(node, self.module)
            if kind == "mix":
                # a mixing reads all input channels (the body's full output) and makes L
                leaf = self.module.get_submodule(str(node.target))
                values[node] = _mix(leaf, boundary[self.inputs.index(node.args[0])], channels)
            elif kind == "affine":
                # a folded batch norm: each channel's own scale and shift
                leaf = self.module.get_submodule(str(node.target))
                view = (*channels.shape, *[1] * (read(node.args[0]).ndim - 2))
                scale, shift = leaf.scale[channels].view(view), leaf.shift[channels].view(view)
                values[node] = torch.addcmul(shift, read(node.args[0]), scale)
            elif kind == "elementwise":
                values[node] = torch.relu(read(node.args[0]))
            else:
                # a residual addition: both branches at the same channels
                first, second = node.args
                values[node] = _ADDITIONS[node.target](read(first), read(second))
        return values[self.output]


def _mix(leaf: nn.Module, inputs: Tensor, channels: Tensor) -> Tensor:
    """A 1x1 convolution or linear map computing only ``channels`` (rows, L) of each row."""
    # the weight rows of each row's channels: (rows, L, C_in) for a linear map
    weight = leaf.weight[channels]
    bias = None if leaf.bias is None else leaf.bias[channels]
    if isinstance(leaf, nn.Linear):
        out = torch.einsum("rlc,rc->rl", weight, inputs)
        return out if bias is None else out + bias
    # a 1x1 convolution without padding is a per-position linear map on the strided grid
    strided = inputs[..., :: leaf.stride[0], :: leaf.stride[1]]
    out = torch.einsum("rlc,rchw->rlhw", weight[..., 0, 0], strided)
    return out if bias is None else out + bias[..., None, None]


def split_channel_head(module: fx.GraphModule) -> ChannelHead | None:
    """Split a traced module (its output (N, C, ...) with channels on axis 1) before its last
    channel-mixing operations, or None when its end is not a mixing plus channel-wise tail.

    Examples
    --------
    >>> net = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 1)))
    >>> head = split_channel_head(net)
    >>> x, channels = torch.randn(2, 3, 6, 6), torch.tensor([[4], [1]])
    >>> out = head(head.body(x), channels)  # channel 4 of row 0, channel 1 of row 1
    >>> torch.allclose(out[:, 0], net(x)[[0, 1], [4, 1]], atol=1e-6)
    True
    """
    nodes = list(module.graph.nodes)
    (output,) = [n for n in nodes if n.op == "output"]
    result = output.args[0]
    if isinstance(result, tuple) and len(result) == 1:
        result = result[0]
    if not isinstance(result, fx.Node):
        return None
    # Walk back from the output through channel-wise nodes, stopping after the mixing
    # ones: what they read becomes the body's outputs. A node also used outside the
    # head must be computed in full, so it ends the head there.
    head: list[fx.Node] = []
    inputs: list[fx.Node] = []
    frontier = [result]
    while frontier:
        node = frontier.pop()
        if node in head:
            continue
        kind = _kind(node, module)
        if kind is None or any(u not in head and u is not output for u in node.users):
            if node is result:
                return None
            if node not in inputs:
                inputs.append(node)
            continue
        head.append(node)
        if kind == "mix":
            if node.args[0] not in inputs:
                inputs.append(node.args[0])
        else:
            frontier.extend(a for a in node.args if isinstance(a, fx.Node))
    if not any(_kind(n, module) == "mix" for n in head):
        return None
    # the body: the graph without the head, returning the head's inputs in full
    ordered = [n for n in nodes if n in head]
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        if node.op == "output" or node in head:
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[n] for n in inputs))
    body = fx.GraphModule(module, graph)
    body.graph.eliminate_dead_code()
    body.recompile()
    return ChannelHead(body, ordered, inputs, module, result)

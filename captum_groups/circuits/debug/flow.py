"""What each group carries on one image: conductance, and the target's change split along
the circuit's edges (:class:`~captum_groups.attr.LayerGroupInteraction` per edge)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ...attr import LayerGroupConductance, LayerGroupInteraction
from .._ids import TARGET
from ..graph import Circuit

__all__ = ["conductances", "edge_fractions", "propagate"]


def conductances(
    circuit: Circuit,
    model: nn.Module,
    image: Tensor,
    baseline: Tensor,
    n_steps: int,
    versus: int | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Conductance of the target (and of the margin over ``versus``) through every node."""
    targets = [circuit.target] if versus is None else [circuit.target, versus]
    inputs = image[None].expand(len(targets), *image.shape)
    conductance: dict[str, float] = {}
    margin: dict[str, float] = {}
    for layer in circuit.layers:
        nodes = circuit.node_ids(layer)
        if not nodes:
            continue
        values = LayerGroupConductance(model, layer).attribute(
            inputs,
            [circuit.nodes[n] for n in nodes],
            baselines=baseline[None].expand_as(inputs),
            target=targets[0] if versus is None else targets,
            n_steps=n_steps,
        )
        conductance.update(zip(nodes, values[0].tolist(), strict=True))
        if versus is not None:
            margin.update(zip(nodes, (values[0] - values[1]).tolist(), strict=True))
    return conductance, margin


def edge_fractions(
    circuit: Circuit,
    model: nn.Module,
    image: Tensor,
    baseline: Tensor,
    n_steps: int,
    captured: Mapping[str, Tensor],
) -> dict[tuple[str, str], float]:
    """For each edge between two groups: the lower group's share of the upper group's change
    on this image (its conductance of the upper group, over the upper group's change)."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for lower, upper in circuit.edges:
        if upper != TARGET:
            key = (circuit.nodes[lower].layer, circuit.nodes[upper].layer)
            pairs.setdefault(key, []).append((lower, upper))
    fractions: dict[tuple[str, str], float] = {}
    for (lower_layer, upper_layer), edges in pairs.items():
        lowers = sorted({e[0] for e in edges}, key=list(circuit.nodes).index)
        uppers = sorted({e[1] for e in edges}, key=list(circuit.nodes).index)
        weights = LayerGroupInteraction(model, lower_layer, upper_layer).attribute(
            image[None],
            [circuit.nodes[n] for n in uppers],
            [circuit.nodes[n] for n in lowers],
            baselines=baseline[None],
            n_steps=n_steps,
        )[0]
        upper_output = captured[upper_layer]
        for lower, upper in edges:
            value = circuit.nodes[upper](upper_output[[0, -1]])
            change = float(value[0] - value[1])
            flow = float(weights[uppers.index(upper), lowers.index(lower)])
            fractions[(lower, upper)] = flow / change if abs(change) > 1e-12 else 0.0
    return fractions


def propagate(
    circuit: Circuit,
    into_target: Mapping[str, float],
    fractions: Mapping[tuple[str, str], float],
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Split a quantity carried into the target down the circuit's edges, top-down."""
    node_values = {node: 0.0 for node in circuit.nodes}
    edge_values: dict[tuple[str, str], float] = {}
    for layer in reversed(circuit.layers):
        for node in circuit.node_ids(layer):
            for upper in circuit.out_edges(node):
                if upper == TARGET:
                    carried = into_target[node]
                else:
                    carried = node_values[upper] * fractions[(node, upper)]
                edge_values[(node, upper)] = carried
                node_values[node] += carried
    return node_values, edge_values

"""A circuit file's fields read back and checked beyond its schema (what JSON cannot say: an
edge from a lower layer to an upper one, one typical activation per member neuron, exemplars
with whole crop boxes), each refusal naming its field."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._validation.checks import ParameterError
from ..groups import NeuronGroup
from ._ids import TARGET
from .settings import CircuitSettings

Exemplar = tuple[int, tuple[int, int, int, int]]
"""An exemplar: (data-set index, crop box (top, left, height, width))."""

_DETAIL_KEYS = ("score", "labeler", "evidence")
"""What a node's label details may hold."""


def _checked_details(
    node: str, details: Mapping[str, Any], nodes: Mapping[str, NeuronGroup]
) -> dict[str, Any]:
    """A node's label details as plain JSON values, after checking them."""
    if node not in nodes:
        raise ValueError(f"label_details names an unknown node {node!r}")
    if not isinstance(details, Mapping) or set(details) - set(_DETAIL_KEYS):
        raise ValueError(
            f"label_details[{node!r}] must be a mapping with keys among {_DETAIL_KEYS}, "
            f"got {details!r}"
        )
    score = details.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)
    ):
        raise ValueError(f"label_details[{node!r}]['score'] must be a finite number, got {score!r}")
    labeler = details.get("labeler")
    if labeler is not None and not isinstance(labeler, str):
        raise ValueError(f"label_details[{node!r}]['labeler'] must be a string, got {labeler!r}")
    try:
        return json.loads(json.dumps(dict(details), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"label_details[{node!r}] must hold JSON values (numbers, strings, lists, dicts): "
            f"{error}"
        ) from None


def _edges_from_list(edges: list) -> dict[tuple[str, str], float]:
    """Edges [lower, upper, weight] (shapes checked by the schema), each listed once."""
    found: dict[tuple[str, str], float] = {}
    for position, (lower, upper, weight) in enumerate(edges):
        if (lower, upper) in found:
            raise ParameterError(
                f"circuit JSON.edges[{position}]",
                f"circuit JSON field 'edges' lists the edge {(lower, upper)} twice "
                f"(edges[{position}] repeats it); an edge has one weight",
            )
        found[(lower, upper)] = weight
    return found


def _check_exemplar(node: str, index: object, box: object) -> Exemplar:
    field = f"exemplars[{node!r}]"
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"{field} holds the example index {index!r}; indices are ints >= 0")
    values = tuple(box) if isinstance(box, (tuple, list)) else ()
    if (
        len(values) != 4
        or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
        or min(values) < 0
        or min(values[2:]) < 1
    ):
        raise ValueError(
            f"{field} holds the crop box {box!r}; a box is 4 ints (top, left, height, width), "
            f"non-negative, with height and width >= 1"
        )
    return index, values  # type: ignore[return-value]


def _checked_cores(
    layer: str, cores: object, layers: tuple[str, ...]
) -> dict[str, tuple[int, ...]]:
    """One layer's core neurons: upper unit -> ranked neuron indices (ints >= 0)."""
    if layer not in layers:
        raise ValueError(f"core_neurons names {layer!r}, which is not a circuit layer")
    if not isinstance(cores, Mapping) or not all(
        isinstance(ranked, (list, tuple))
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ranked)
        for ranked in cores.values()
    ):
        raise ValueError(
            f"core_neurons[{layer!r}] must map upper units to lists of neuron indices "
            f"(ints >= 0), got {cores!r}"
        )
    return {str(unit): tuple(int(i) for i in ranked) for unit, ranked in cores.items()}


def _settings_from_json(settings: object) -> CircuitSettings | None:
    if settings is None:
        return None
    try:
        return CircuitSettings.from_dict(settings)  # type: ignore[arg-type]
    except ParameterError as error:
        raise ValueError(f"circuit JSON field {error.parameter!r}: {error}") from None


def _checked_nodes(nodes: Mapping[str, NeuronGroup], layers: tuple[str, ...]) -> dict:
    """Node id -> group, each id a string other than the target's, each group of a layer."""
    checked = dict(nodes)
    if TARGET in checked:
        raise ValueError(f"{TARGET!r} is reserved for the target node")
    for node, group in checked.items():
        if not isinstance(node, str) or not isinstance(group, NeuronGroup):
            raise TypeError(f"nodes must map str ids to NeuronGroups, got {node!r}: {group!r}")
        if group.layer not in layers:
            raise ValueError(f"node {node!r} belongs to {group.layer!r}, not a circuit layer")
    return checked


def _checked_typical(
    node: str, values: Sequence[float], nodes: Mapping[str, NeuronGroup]
) -> tuple[float, ...]:
    """A node's typical activations: one value per member neuron."""
    if node not in nodes:
        raise ValueError(f"typical_activations names an unknown node {node!r}")
    if len(values) != len(nodes[node]):
        raise ValueError(
            f"typical_activations[{node!r}] needs one value per member neuron "
            f"({len(nodes[node])}), got {len(values)}"
        )
    return tuple(float(v) for v in values)

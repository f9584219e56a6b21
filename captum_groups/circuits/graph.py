"""Circuit: groups of neurons across layers, with signed edges toward a target.

A circuit explains a target (a class logit, or a group of a late layer)
through groups of neurons in lower layers, as in NeurFlow (Cao et al., ICLR
2025). Nodes are :class:`NeuronGroup` objects, one node id each; edges carry
signed weights from a lower node to an upper node; the target is the top
node. A circuit is a plain data structure: it can be queried, pruned,
exported to ``networkx`` and to JSON (and loaded back exactly), and drawn.
JSON is validated on load: a missing or malformed field is reported by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from types import MappingProxyType
from typing import Any

import networkx as nx
from matplotlib.figure import Figure
from torch import nn

from .._validation.checks import ParameterError
from .._validation.deprecation import renamed_keywords
from .._validation.schemas import CIRCUIT, check, read_json
from ..groups import GroupSet, NeuronGroup, resolve_layer
from ._ids import NEXT_TOKEN, TARGET
from ._json import (
    Exemplar,
    _check_exemplar,
    _checked_cores,
    _checked_details,
    _checked_nodes,
    _checked_typical,
    _edges_from_list,
    _settings_from_json,
)
from .plot import plot_circuit
from .settings import CircuitSettings

__all__ = ["Circuit", "TARGET"]


FORMAT = "captum-groups circuit"
"""The ``format`` field of a circuit's JSON."""

VERSION = 1
"""The JSON version this package writes and reads."""


class Circuit:
    """Groups across layers with signed edges from lower to upper groups.

    Parameters
    ----------
    target : int, NeuronGroup or "next_token"
        What the circuit explains: a class index, a group of a later layer, or (a
        language model's circuit) each position's next token.
    layers : sequence of str
        The circuit's layers in forward order (lowest first).
    nodes : mapping of str to NeuronGroup
        Node id -> group; every group's layer is one of ``layers``.
    edges : mapping of (str, str) to float
        ``(lower id, upper id) -> weight``; the upper id may be ``TARGET``.
    exemplars : mapping of str to list of (int, (top, left, height, width)), optional
        Data-set index and crop box of each node's top exemplars.
    params : mapping, optional
        How the circuit was built (JSON-serialisable values).
    core_neurons : mapping of str to mapping of str to list of int, optional
        Neuron-level structure: for each circuit layer, each upper unit's core
        neurons in that layer, most important first. Upper units are
        ``TARGET`` or a neuron index of the next layer up, as a string
        (``{"layer4.1": {"1234": [5, 77, ...]}}``).
    typical_activations : mapping of str to list of float, optional
        For each node, each member neuron's mean activation (spatial mean)
        over the node's top exemplars: how strongly a typical instance of the
        node's concept drives it (NeurFlow's reference for image debugging).
    label_details : mapping of str to mapping, optional
        For labelled nodes, how the label was found: ``{"score": float,
        "labeler": str, "evidence": {...}}`` with JSON values (written by
        :func:`captum_groups.labeling.label_groups`; see :meth:`relabel`).
    settings : CircuitSettings, optional
        The settings the circuit was built with (:func:`build_circuit` records
        them; the report reuses their integration steps and seed).

    A circuit is an immutable value: its mappings are read-only views, and
    :meth:`replace`, :meth:`relabel`, :meth:`prune` and :meth:`subcircuit`
    return changed copies.

    Examples
    --------
    >>> a = NeuronGroup("conv2", [0, 1], name="a")
    >>> b = NeuronGroup("conv3", [4], name="b")
    >>> edges = {("a", "b"): 0.7, ("b", "target"): 1.2}
    >>> circuit = Circuit(3, ["conv2", "conv3"], {"a": a, "b": b}, edges)
    >>> circuit.groups("conv3")
    GroupSet(layer='conv3', groups=[[4]])
    >>> circuit.top_paths(1, "conv2")
    [(['target', 'b', 'a'], 0.84)]
    >>> Circuit.from_json(circuit.to_json()) == circuit
    True
    """

    def __init__(
        self,
        target: int | NeuronGroup | str,
        layers: Sequence[str],
        nodes: Mapping[str, NeuronGroup],
        edges: Mapping[tuple[str, str], float],
        exemplars: Mapping[str, Sequence[Exemplar]] | None = None,
        params: Mapping[str, Any] | None = None,
        core_neurons: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
        typical_activations: Mapping[str, Sequence[float]] | None = None,
        label_details: Mapping[str, Mapping[str, Any]] | None = None,
        settings: CircuitSettings | None = None,
    ) -> None:
        if target != NEXT_TOKEN and (
            isinstance(target, bool) or not isinstance(target, (int, NeuronGroup))
        ):
            raise TypeError(
                f"target must be a class index, a NeuronGroup or {NEXT_TOKEN!r}, got {target!r}"
            )
        if isinstance(target, int) and target < 0:
            raise ValueError(f"target must be a class index >= 0, got {target}")
        if isinstance(layers, str) or not all(isinstance(layer, str) for layer in layers):
            raise TypeError(f"layers must be a sequence of dotted layer names, got {layers!r}")
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must name at least one layer")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat, got {layers}")
        if settings is not None and not isinstance(settings, CircuitSettings):
            raise TypeError(f"settings must be a CircuitSettings, got {type(settings).__name__}")
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping, got {type(params).__name__}")
        self._set(target=target, layers=layers, settings=settings, params=dict(params or {}))
        self._set(nodes=_checked_nodes(nodes, layers))
        self._set(
            edges={
                (lower, upper): self._checked_edge(lower, upper, w)
                for (lower, upper), w in edges.items()
            }
        )
        checked_exemplars: dict[str, list[Exemplar]] = {}
        for node, items in (exemplars or {}).items():
            if node not in self._nodes:
                raise ValueError(f"exemplars names an unknown node {node!r}")
            checked_exemplars[node] = [_check_exemplar(node, i, box) for i, box in items]
        self._set(
            exemplars=checked_exemplars,
            core_neurons={
                layer: _checked_cores(layer, cores, layers)
                for layer, cores in (core_neurons or {}).items()
            },
            typical_activations={
                node: _checked_typical(node, values, self._nodes)
                for node, values in (typical_activations or {}).items()
            },
            label_details={
                node: _checked_details(node, details, self._nodes)
                for node, details in (label_details or {}).items()
            },
        )

    _FIELDS = (
        "target",
        "layers",
        "nodes",
        "edges",
        "exemplars",
        "params",
        "core_neurons",
        "typical_activations",
        "label_details",
        "settings",
    )
    """The constructor's parameters, each kept as an attribute of the same name."""

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, f"_{name}", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"a Circuit is immutable; make a changed copy with circuit.replace({name}=...)"
        )

    @property
    def target(self) -> int | NeuronGroup | str:
        """What the circuit explains: a class index, a group of a later layer, or
        ``"next_token"``."""
        return self._target

    @property
    def layers(self) -> tuple[str, ...]:
        """The circuit's layers in forward order (lowest first)."""
        return self._layers

    @property
    def nodes(self) -> Mapping[str, NeuronGroup]:
        """Node id -> group (read-only)."""
        return MappingProxyType(self._nodes)

    @property
    def edges(self) -> Mapping[tuple[str, str], float]:
        """``(lower id, upper id) -> weight`` (read-only)."""
        return MappingProxyType(self._edges)

    @property
    def exemplars(self) -> Mapping[str, list[Exemplar]]:
        """Node id -> its stored exemplars, (data-set index, crop box) (read-only)."""
        return MappingProxyType(self._exemplars)

    @property
    def params(self) -> Mapping[str, Any]:
        """How the circuit was built: procedure, images, model, settings (read-only)."""
        return MappingProxyType(self._params)

    @property
    def core_neurons(self) -> Mapping[str, dict[str, tuple[int, ...]]]:
        """Layer -> upper unit -> ranked core neurons (read-only)."""
        return MappingProxyType(self._core_neurons)

    @property
    def typical_activations(self) -> Mapping[str, tuple[float, ...]]:
        """Node id -> each member neuron's typical activation (read-only)."""
        return MappingProxyType(self._typical_activations)

    @property
    def label_details(self) -> Mapping[str, dict[str, Any]]:
        """Node id -> how its label was found (read-only)."""
        return MappingProxyType(self._label_details)

    @property
    def settings(self) -> CircuitSettings | None:
        """The settings the circuit was built with (None for a circuit made by hand)."""
        return self._settings

    @property
    def through_stream(self) -> bool:
        """Whether this is a transformer's circuit through the residual stream
        (:func:`~captum_groups.circuits.build_stream_circuit`), not NeurFlow's.

        Examples
        --------
        >>> Circuit(0, ["fc"], {}, {}, params={"procedure": "EAP-IG"}).through_stream
        True
        """
        return self._params.get("procedure") == "EAP-IG"

    def stream_edges(self) -> list[tuple[str, str]]:
        """The edges through the residual stream of a circuit through the stream: all but
        those from a head's query, key and value inputs (``hook_q/k/v`` nodes) into it.

        Examples
        --------
        >>> q = NeuronGroup("blocks.0.attn.hook_q", [0], dim=2)
        >>> head = NeuronGroup("blocks.0.attn.hook_z", [0], dim=2)
        >>> circuit = Circuit(0, [q.layer, head.layer], {"a0.h0.q": q, "a0.h0": head},
        ...                   {("a0.h0.q", "a0.h0"): 0.5, ("a0.h0", "target"): 1.0})
        >>> circuit.stream_edges()
        [('a0.h0', 'target')]
        """
        inputs = (".attn.hook_q", ".attn.hook_k", ".attn.hook_v")
        return [
            (lower, upper)
            for lower, upper in self.edges
            if not str(self.nodes[lower].layer).endswith(inputs)
        ]

    def check_neurflow(self, caller: str) -> None:
        """Refuse, by ``circuit``, a circuit through the stream where only NeurFlow's
        circuits of crops and groups apply.

        Examples
        --------
        >>> Circuit(0, ["fc"], {}, {}, params={"procedure": "EAP-IG"}).check_neurflow(
        ...     "debug_image")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        captum_groups.ParameterError: debug_image reads NeurFlow's circuits ...
        """
        if self.through_stream:
            raise ParameterError(
                "circuit",
                f"{caller} reads NeurFlow's circuits (groups of layers that cut the network, "
                f"their exemplar crops); this circuit runs through the residual stream: "
                f"evaluate it with faithfulness_curve and report it with write_stream_report",
            )

    def replace(self, **changes: Any) -> Circuit:
        """A copy with some fields changed (checked as a new circuit); the rest is shared.

        Examples
        --------
        >>> circuit = Circuit(0, ["fc"], {"a": NeuronGroup("fc", [1])}, {("a", "target"): 1.0})
        >>> circuit.replace(edges={("a", "target"): 0.5}).edges[("a", "target")]
        0.5
        """
        unknown = sorted(set(changes) - set(self._FIELDS))
        if unknown:
            raise TypeError(f"Circuit has no field(s) {unknown}; its fields are {self._FIELDS}")
        fields = {name: getattr(self, f"_{name}") for name in self._FIELDS}
        return Circuit(**{**fields, **changes})

    def _checked_edge(self, lower: str, upper: str, weight: object) -> float:
        """An edge's weight, after checking that it joins known nodes upward."""
        for end in (lower, upper):
            if end != TARGET and end not in self.nodes:
                raise ValueError(f"edge ({lower!r}, {upper!r}) names an unknown node {end!r}")
        if lower == TARGET:
            raise ValueError("the target is the top node; no edge leaves it")
        if upper != TARGET and self._level(upper) <= self._level(lower):
            raise ValueError(f"edge ({lower!r}, {upper!r}) must go from a lower to an upper layer")
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise TypeError(f"edge ({lower!r}, {upper!r}) has a non-numeric weight {weight!r}")
        if not math.isfinite(weight):
            raise ValueError(f"edge ({lower!r}, {upper!r}) has a non-finite weight")
        return float(weight)

    def check_model(self, model: nn.Module) -> None:
        """Raise a clear error unless every circuit layer (and a target group's layer) is a
        submodule of ``model``: a circuit is tied to the model it was built on.

        Examples
        --------
        >>> circuit = Circuit(0, ["1"], {"a": NeuronGroup("1", [0])}, {("a", "target"): 1.0})
        >>> circuit.check_model(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> circuit.check_model(nn.Sequential(nn.Linear(2, 2)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        captum_groups.ParameterError: circuit.layers='1' is not a submodule of Sequential; ...
        """
        for layer in self.layers:
            resolve_layer(model, layer, "circuit.layers")
        if isinstance(self.target, NeuronGroup):
            self.target.resolve(model)

    def _level(self, node: str) -> int:
        return len(self.layers) if node == TARGET else self.layers.index(self.nodes[node].layer)

    def __repr__(self) -> str:
        per_layer = ", ".join(f"{layer}: {len(self.node_ids(layer))}" for layer in self.layers)
        return (
            f"Circuit(target={self.target!r}, groups per layer {{{per_layer}}}, "
            f"{len(self.edges)} edges)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Circuit):
            return NotImplemented
        return (
            self.target == other.target
            and self.layers == other.layers
            and self.nodes == other.nodes
            and self.edges == other.edges
            and self.exemplars == other.exemplars
            and self.params == other.params
            and self.core_neurons == other.core_neurons
            and self.typical_activations == other.typical_activations
            and self.label_details == other.label_details
            and self.settings == other.settings
        )

    __hash__ = None  # type: ignore[assignment]

    def groups(self, layer: str) -> GroupSet:
        """The groups of one layer, in node order."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in the circuit; its layers are {self.layers}")
        members = [g for g in self.nodes.values() if g.layer == layer]
        if not members:
            raise ValueError(f"the circuit keeps no group of layer {layer!r}")
        return GroupSet(members)

    def node_ids(self, layer: str) -> list[str]:
        """Ids of the nodes of one layer."""
        return [node for node, group in self.nodes.items() if group.layer == layer]

    def in_edges(self, node: str) -> dict[str, float]:
        """Lower node id -> weight of every edge into ``node``."""
        return {lower: w for (lower, upper), w in self.edges.items() if upper == node}

    def out_edges(self, node: str) -> dict[str, float]:
        """Upper node id -> weight of every edge out of ``node``."""
        return {upper: w for (lower, upper), w in self.edges.items() if lower == node}

    @renamed_keywords(k="n")
    def top_paths(self, n: int, layer: str, start: str = TARGET) -> list[tuple[list[str], float]]:
        """The n strongest paths from ``start`` down to a layer.

        A path's strength is the product of its edge weights (signed); paths
        are ranked by its absolute value. Returns (node ids from the top, strength).
        (``n`` was called ``k``, a name that now means exemplar crops only.)
        """
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in the circuit")
        paths: list[tuple[list[str], float]] = []

        def walk(node: str, path: list[str], strength: float) -> None:
            if node != TARGET and self.nodes[node].layer == layer:
                paths.append((path, strength))
                return
            for lower, weight in self.in_edges(node).items():
                walk(lower, [*path, lower], strength * weight)

        walk(start, [start], 1.0)
        paths.sort(key=lambda item: -abs(item[1]))
        return [(path, round(strength, 12)) for path, strength in paths[:n]]

    def subcircuit(self, node: str) -> Circuit:
        """The part of the circuit under ``node``: it, and everything feeding it."""
        keep, frontier = {node}, [node]
        while frontier:
            for lower in self.in_edges(frontier.pop()):
                if lower not in keep:
                    keep.add(lower)
                    frontier.append(lower)
        return self._restricted(keep, {e: w for e, w in self.edges.items() if set(e) <= keep})

    @renamed_keywords(top_k="n")
    def prune(self, min_weight: float | None = None, n: int | None = None) -> Circuit:
        """Keep edges with ``|weight| >= min_weight`` and at most ``n`` in-edges per node
        (``top_k``, its former name, still works with a FutureWarning).

        Nodes no longer connected to the target are dropped.
        """
        kept = {e: w for e, w in self.edges.items() if min_weight is None or abs(w) >= min_weight}
        if n is not None:
            if n < 1:
                raise ValueError(f"n must be at least 1, got {n}")
            strongest: dict[tuple[str, str], float] = {}
            for upper in {u for _, u in kept}:
                incoming = sorted(
                    ((e, w) for e, w in kept.items() if e[1] == upper),
                    key=lambda item: -abs(item[1]),
                )
                strongest.update(incoming[:n])
            kept = strongest
        connected, frontier = {TARGET}, [TARGET]
        while frontier:
            upper = frontier.pop()
            for lower, up in kept:
                if up == upper and lower not in connected:
                    connected.add(lower)
                    frontier.append(lower)
        return self._restricted(connected, {e: w for e, w in kept.items() if set(e) <= connected})

    def _restricted(self, keep: Iterable[str], edges: Mapping[tuple[str, str], float]) -> Circuit:
        keep = set(keep)
        return self.replace(
            nodes={n: g for n, g in self.nodes.items() if n in keep},
            edges=dict(edges),
            exemplars={n: e for n, e in self.exemplars.items() if n in keep},
            typical_activations={n: a for n, a in self.typical_activations.items() if n in keep},
            label_details={n: d for n, d in self.label_details.items() if n in keep},
        )

    def relabel(
        self,
        labels: Mapping[str, str | None],
        details: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Circuit:
        """A copy whose nodes carry new labels (groups are immutable, so they are replaced).

        Parameters
        ----------
        labels : mapping of str to str or None
            Node id -> label (None removes a label). Other nodes keep theirs.
        details : mapping of str to mapping, optional
            Node id -> ``{"score", "labeler", "evidence"}`` (JSON values) for
            the relabelled nodes; a relabelled node without details loses its
            old ones.

        Examples
        --------
        >>> circuit = Circuit(0, ["fc"], {"a": NeuronGroup("fc", [1], name="a")}, {})
        >>> labelled = circuit.relabel({"a": "loops"}, {"a": {"score": 0.9}})
        >>> labelled.nodes["a"].label, labelled.label_details["a"]["score"]
        ('loops', 0.9)
        >>> Circuit.from_json(labelled.to_json()) == labelled
        True
        """
        for node in labels:
            if node not in self.nodes:
                raise ValueError(f"labels names an unknown node {node!r}")
        for node in details or {}:
            if node not in labels:
                raise ValueError(f"details names node {node!r}, which labels does not relabel")
        kept = {n: d for n, d in self.label_details.items() if n not in labels}
        return self.replace(
            nodes={
                n: g.replace(label=labels[n]) if n in labels else g for n, g in self.nodes.items()
            },
            label_details={**kept, **(details or {})},
        )

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph``: nodes carry layer, indices, weights, name, label and
        label score; edges (lower -> upper) carry ``weight``."""
        graph = nx.DiGraph(
            target=self.target if isinstance(self.target, (int, str)) else repr(self.target)
        )
        graph.add_node(TARGET, layer="target", level=len(self.layers))
        for node, group in self.nodes.items():
            graph.add_node(
                node,
                layer=group.layer,
                level=self.layers.index(group.layer),
                indices=list(group.indices),
                weights=None if group.weights is None else list(group.weights),
                name=group.name,
                label=group.label,
                label_score=self.label_details.get(node, {}).get("score"),
            )
        for (lower, upper), weight in self.edges.items():
            graph.add_edge(lower, upper, weight=weight)
        return graph

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`to_json`)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target.to_dict()
            if isinstance(self.target, NeuronGroup)
            else self.target,
            "layers": list(self.layers),
            "nodes": {node: group.to_dict() for node, group in self.nodes.items()},
            "edges": [[lower, upper, weight] for (lower, upper), weight in self.edges.items()],
            "exemplars": {
                node: [[i, list(box)] for i, box in items] for node, items in self.exemplars.items()
            },
            "params": dict(self.params),
            "settings": self.settings.to_dict() if self.settings is not None else None,
            "core_neurons": {
                layer: {unit: list(ranked) for unit, ranked in cores.items()}
                for layer, cores in self.core_neurons.items()
            },
            "typical_activations": {
                node: list(values) for node, values in self.typical_activations.items()
            },
            "label_details": dict(self.label_details),
        }

    def to_json(self, indent: int | None = 1) -> str:
        """The circuit as JSON text; :meth:`from_json` loads it back exactly (no pickle)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Circuit:
        """Rebuild a circuit from :meth:`to_dict`'s output, validating every field.

        The data must match the declared schema (``CIRCUIT``):
        a missing field, a field of the wrong type, an unknown ``version``, a
        negative target, a crop box that is not 4 ints, a label that is not
        text raise a :class:`~captum_groups.ParameterError` naming the field's
        JSON path; then the circuit's own checks (exemplars of an unknown node,
        an edge listed twice or going down) name what is wrong.
        """
        check(data, CIRCUIT, "circuit JSON")
        target = data["target"]
        try:
            return cls(
                NeuronGroup.from_dict(target) if isinstance(target, Mapping) else target,
                data["layers"],
                {node: NeuronGroup.from_dict(group) for node, group in data["nodes"].items()},
                _edges_from_list(data["edges"]),
                {
                    node: [(index, tuple(box)) for index, box in items]
                    for node, items in data.get("exemplars", {}).items()
                },
                data.get("params"),
                data.get("core_neurons"),
                data.get("typical_activations"),
                data.get("label_details"),
                _settings_from_json(data.get("settings")),
            )
        except ParameterError:
            raise
        except (TypeError, ValueError) as error:
            raise ParameterError("circuit JSON", f"circuit JSON: {error}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Circuit:
        """Load a circuit saved with :meth:`to_json`: read strictly (a repeated key, a NaN,
        too deep a nesting refused), then validated as in :meth:`from_dict`."""
        return cls.from_dict(read_json(text, "circuit JSON"))

    def plot(self, data: Any = None, **kwargs: Any) -> Figure:
        """Draw the circuit and return the figure (see :func:`plot_circuit`)."""
        return plot_circuit(self, data=data, **kwargs)

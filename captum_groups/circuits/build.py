"""build_circuit: NeurFlow's hierarchical circuit of neuron groups, top-down from a target.

The procedure of Cao et al. (ICLR 2025), as in the authors' reference code:

1. The data are the images the model predicts as the target class, cut into
   multi-scale crops (sides 1, 1/2, 1/4 of the image, stride half a side).
2. The target's exemplars are its top-k crops. Integrated gradients (zero
   baseline) from the target to the next lower layer rank that layer's
   neurons by mean |attribution|; the top ``tau`` are the target's core
   neurons, and their union is the layer's critical set.
3. Each critical neuron's own top-k crops are split into sub-concepts, and
   the layer's sub-concepts are clustered into groups (ConceptClustering,
   or any grouping estimator). Then the critical neurons become the targets
   for the layer below.
4. The edge from a lower group D to an upper node U is the sum, over U's
   neurons n and D's neurons m, of n's signed importance for m, L1-normalised
   over the lower critical set (NeurFlow sums normalised weights).

How it is computed (see :mod:`._passes`): one pass over the data selects the
images and keeps, per crop, each circuit layer's neuron means (the
*summaries*: exemplar ranking and grouping need nothing more). Then each
layer, top-down, takes one more pass that recomputes the lower layer's full
activations on its exemplar crops only, and integrates gradients on the part
of the network between the two layers (:class:`~captum_groups.discovery.core.CoreScores`:
one forward path per crop, shared by all targets that use the crop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from sklearn.base import clone
from torch import Tensor, nn
from tqdm import tqdm

from .._model.capture import model_of
from .._model.guards import guarded_call
from .._model.subnetwork import subnetwork
from .._validation.checks import ParameterError
from ..data import Data
from ..discovery.clustering import ConceptClustering
from ..discovery.core import CoreScores
from ..discovery.overlap import TopKOverlap
from ..groups import GroupSet, Layer, NeuronGroup
from ._ids import TARGET
from ._passes import (
    CropActivations,
    ImageReader,
    Selection,
    TargetKey,
    model_device_dtype,
)
from .graph import Circuit
from .requests import (
    _check_targets,
    _layer_names,
    check_precision,
)
from .routing import ClassRouting, check_routing
from .settings import CircuitSettings
from .summary import _SummaryPass

__all__ = ["build_circuit", "build_circuits"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class _Frontier:
    """What a layer is scored for: the upper units the layer above handed down.

    Attributes
    ----------
    units : tuple
        The upper units: the target at the top, then the critical neurons of
        the layer above, each a one-neuron NeuronGroup.
    unit_ids : tuple of str
        Each unit's id in ``core_neurons``: ``TARGET``, or the neuron index.
    top_crops : Tensor
        (units, k) indices of each unit's top-k crops (into the selection's crops).
    members : mapping of str to tuple of int
        Upper node id -> the rows of ``units`` it holds (its member neurons).
    """

    units: tuple[TargetKey, ...]
    unit_ids: tuple[str, ...]
    top_crops: Tensor
    members: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class _LayerResult:
    """What one layer adds to one circuit: its core neurons, groups, edges and exemplars."""

    layer: str
    core_neurons: Mapping[str, list[int]]
    nodes: Mapping[str, NeuronGroup]
    edges: Mapping[tuple[str, str], float]
    exemplars: Mapping[str, list]
    typical_activations: Mapping[str, list[float]]


@dataclass(frozen=True, eq=False)
class _State:
    """One circuit between two layers of the fold: the layers done, the frontier below them."""

    target: TargetKey
    selection: Selection
    frontier: _Frontier
    done: tuple[_LayerResult, ...] = ()


def _start(target: TargetKey, selection: Selection, k: int) -> _State:
    """The fold's start: the target is the one upper unit; its exemplars are its top-k crops."""
    if k > selection.n_crops:
        raise ParameterError(
            "k", f"k={k} is larger than the {selection.n_crops} crops of target {target!r}'s images"
        )
    top_crops = selection.target_values[target].topk(k).indices[None]
    return _State(target, selection, _Frontier((target,), (TARGET,), top_crops, {TARGET: (0,)}))


def _crop_owners(frontier: _Frontier) -> dict[int, list[int]]:
    """Crop index -> the units whose top-k crops include it (a crop integrates once for all)."""
    owners: dict[int, list[int]] = {}
    for unit, crops in enumerate(frontier.top_crops.tolist()):
        for crop in crops:
            owners.setdefault(crop, []).append(unit)
    return owners


def _score_layer(
    model: nn.Module,
    reader: ImageReader,
    states: list[_State],
    layer: str,
    upper: str | None,
    settings: CircuitSettings,
) -> list[tuple[Tensor, Tensor]]:
    """One pass: each circuit's lower activations on its units' top crops, integrated.

    Returns, per circuit, (units, C) mean ``|IG|`` and mean signed IG of the layer's neurons.
    """
    between = subnetwork(model, layer, upper)
    lower = model.get_submodule(layer)
    scorers, recompute, owners = [], [], []
    for state in states:
        scorers.append(
            CoreScores(
                between,
                state.frontier.units,
                settings.n_steps,
                settings.method,
                settings.internal_batch_size,
            )
        )
        owners.append(_crop_owners(state.frontier))
        recompute.append(
            CropActivations(model, lower, state.selection, sorted(owners[-1]), settings.batch_size)
        )
    images = sorted({i for r in recompute for i in r.images})

    def integrate(index: int, groups: list[tuple[Tensor, Tensor]]) -> None:
        for crop_ids, activations in groups:
            scorers[index].add(activations, [owners[index][int(c)] for c in crop_ids])

    # the images holding top crops, read once for every circuit
    for ids, batch in reader.read(images, f"integrating {layer}"):
        for index, crops in enumerate(recompute):
            integrate(index, crops.push(ids, batch))
    for index, crops in enumerate(recompute):
        integrate(index, crops.flush())
    results = []
    for scorer in scorers:
        scores, signed = scorer.result()
        results.append((scores.cpu(), signed.cpu()))
    return results


def _adaptive_sizes(
    model: nn.Module,
    reader: ImageReader,
    state: _State,
    layer: str,
    upper: str | None,
    ranked: Tensor,
    settings: CircuitSettings,
) -> list[int]:
    """One pass over all of a circuit's crops: NeurFlow's optimal tau per unit."""
    frontier = state.frontier
    k = [frontier.top_crops.shape[1]] * len(frontier.units)
    overlap = TopKOverlap(subnetwork(model, layer, upper), frontier.units, ranked, k)
    every = range(state.selection.n_crops)
    pool = CropActivations(
        model, model.get_submodule(layer), state.selection, every, settings.batch_size
    )
    for ids, batch in reader.read(pool.images, f"adaptive tau {layer}"):
        for _, activations in pool.push(ids, batch):
            overlap.add(activations)
    for _, activations in pool.flush():
        overlap.add(activations)
    return overlap.sizes(settings.tolerance)


def _group_layer(
    layer: str,
    critical: list[int],
    summaries: Tensor,
    describe: Tensor,
    top_crops: Tensor,
    settings: CircuitSettings,
) -> GroupSet:
    """Group the critical neurons (NeurFlow concepts, or the user's estimator).

    ``describe`` holds the neuron means NeurFlow describes crops by (the
    layer below's; the layer's own for the lowest layer); ``top_crops`` each
    critical neuron's top-k crops. A user's estimator is fitted on the
    critical neurons' means over all crops.
    """
    grouping, n_groups = settings.grouping, settings.groups_for(layer)
    if grouping is None or isinstance(grouping, ConceptClustering):
        estimator = ConceptClustering(layer) if grouping is None else clone(grouping)
        params: dict[str, Any] = {"layer": layer, "neurons": critical}
        if n_groups is not None:
            params["n_groups"] = n_groups
        found = estimator.set_params(**params).fit(describe[top_crops].numpy()).groups_
        return GroupSet(g.replace(name=f"{layer}:{i}") for i, g in enumerate(found))
    estimator = clone(grouping)
    params = {"layer": layer}
    if n_groups is not None and "n_groups" in estimator.get_params():
        params["n_groups"] = n_groups
    if "random_state" in estimator.get_params() and estimator.get_params()["random_state"] is None:
        params["random_state"] = settings.random_state
    found = estimator.set_params(**params).fit(summaries[:, critical].numpy()).groups_
    groups = GroupSet(
        NeuronGroup(layer, [critical[i] for i in g.indices], g.weights, name=f"{layer}:{n}")
        for n, g in enumerate(found)
    )
    if any(g.reduction != "mean" or g.dim not in (None, 1) for g in groups):
        raise ParameterError(
            "grouping",
            "grouping must give groups with the mean reduction over channel axis 1; circuits "
            "rank exemplars by neuron means",
        )
    return groups


def _connect(
    state: _State,
    layer: str,
    critical: list[int],
    signed: Tensor,
    groups: GroupSet,
    thumbnails: int,
    k: int,
) -> tuple[dict, dict, dict, dict]:
    """Nodes, edges to the upper nodes, stored exemplars and typical activations of a layer.

    An edge from a lower group D to an upper node U sums, over U's member
    units and D's neurons, the signed importance of each neuron for each unit,
    L1-normalised per unit over the critical set (NeurFlow sums normalised
    weights).
    """
    summaries = state.selection.summaries[layer]
    chosen = signed[:, critical]
    normalised = chosen / chosen.abs().sum(1, keepdim=True).clamp_min(1e-12)
    column = {n: i for i, n in enumerate(critical)}
    nodes, edges, exemplars, typical = {}, {}, {}, {}
    for group in groups:
        node = str(group.name)
        nodes[node] = group
        columns = [column[m] for m in group.indices]
        for upper, members in state.frontier.members.items():
            edges[(node, upper)] = float(normalised[list(members)][:, columns].sum())
        # the group's top-k crops by its weighted value; their mean is the typical instance
        weights = torch.tensor(group.weights or [1.0] * len(group), dtype=summaries.dtype)
        means = summaries[:, list(group.indices)]
        top = (means @ weights).topk(min(k, len(means))).indices
        typical[node] = means[top].mean(0).tolist()
        exemplars[node] = [state.selection.crop_ref(int(c)) for c in top[:thumbnails]]
    return nodes, edges, exemplars, typical


def _layer_step(
    state: _State,
    layer: str,
    cores: list[list[int]],
    signed: Tensor,
    describe: Tensor,
    settings: CircuitSettings,
) -> _State:
    """One circuit's step of the fold: group the critical set, connect it, hand it down."""
    summaries = state.selection.summaries[layer]
    # the critical set, and each critical neuron's own top-k crops
    critical = sorted({n for core in cores for n in core})
    top_crops = summaries[:, critical].topk(settings.k, dim=0).indices.T
    groups = _group_layer(layer, critical, summaries, describe, top_crops, settings)
    nodes, edges, exemplars, typical = _connect(
        state, layer, critical, signed, groups, settings.thumbnails, settings.k
    )
    result = _LayerResult(
        layer,
        dict(zip(state.frontier.unit_ids, cores, strict=True)),
        nodes,
        edges,
        exemplars,
        typical,
    )
    # the layer's critical neurons become the upper units of the layer below
    column = {n: i for i, n in enumerate(critical)}
    frontier = _Frontier(
        tuple(NeuronGroup(layer, [n]) for n in critical),
        tuple(str(n) for n in critical),
        top_crops,
        {str(g.name): tuple(column[m] for m in g.indices) for g in groups},
    )
    return replace(state, frontier=frontier, done=(*state.done, result))


def _build_layer(
    model: nn.Module,
    reader: ImageReader,
    states: list[_State],
    layers: list[str],
    position: int,
    settings: CircuitSettings,
) -> list[_State]:
    """One layer of every circuit: score, rank, then each circuit's step of the fold."""
    layer = layers[position]
    below = layers[position - 1] if position > 0 else layer
    uppers = [
        layers[position + 1]
        if position + 1 < len(layers)
        else (None if isinstance(s.target, int) else str(s.target.layer))
        for s in states
    ]
    # score the layer's neurons for every upper unit, one data pass per upper layer
    scored: dict[int, tuple[Tensor, Tensor]] = {}
    for upper in dict.fromkeys(uppers):
        sharing = [i for i, u in enumerate(uppers) if u == upper]
        results = _score_layer(model, reader, [states[i] for i in sharing], layer, upper, settings)
        scored.update(zip(sharing, results, strict=True))
    stepped = []
    for index, state in enumerate(states):
        scores, signed = scored[index]
        # each unit's core neurons: its top tau (NeurFlow's optimal tau when adaptive)
        ranked = scores.argsort(dim=1, descending=True, stable=True)[:, : settings.tau]
        cores = ranked.tolist()
        if settings.adaptive:
            sizes = _adaptive_sizes(model, reader, state, layer, uppers[index], ranked, settings)
            cores = [ranked[i, :size].tolist() for i, size in enumerate(sizes)]
        describe = state.selection.summaries[below]
        stepped.append(_layer_step(state, layer, cores, signed, describe, settings))
    return stepped


def _params(settings: CircuitSettings, model: nn.Module, selection: Selection) -> dict[str, Any]:
    """How the circuit was built (JSON-serialisable)."""
    n_groups, grouping = settings.n_groups, settings.grouping
    return {
        "procedure": "NeurFlow (Cao et al., ICLR 2025)",
        "tau": settings.tau,
        "k": settings.k,
        "n_groups": dict(n_groups) if isinstance(n_groups, Mapping) else n_groups,
        "grouping": type(grouping).__name__ if grouping is not None else "ConceptClustering",
        "scales": list(settings.scales),
        "n_steps": settings.n_steps,
        "method": settings.method,
        "adaptive": settings.adaptive,
        "tolerance": settings.tolerance,
        "predicted_only": settings.predicted_only,
        "random_state": settings.random_state,
        "images": len(selection.image_ids),
        "model": type(model_of(model)).__name__,
    }


def _as_circuit(
    state: _State, layers: list[str], settings: CircuitSettings, model: nn.Module
) -> Circuit:
    """The fold's end: the layers' results, merged into one circuit."""
    merged: dict[str, dict] = {
        "core_neurons": {},
        "nodes": {},
        "edges": {},
        "exemplars": {},
        "typical_activations": {},
    }
    for result in state.done:
        merged["core_neurons"][result.layer] = result.core_neurons
        for name in ("nodes", "edges", "exemplars", "typical_activations"):
            merged[name].update(getattr(result, name))
    return Circuit(
        state.target,
        layers,
        params=_params(settings, model, state.selection),
        settings=settings,
        **merged,
    )


def _build_all(
    model: nn.Module,
    data: Data,
    names: list[str],
    targets: list[TargetKey],
    settings: CircuitSettings,
    progress: bool,
    routing: ClassRouting | None,
) -> list[Circuit]:
    """Summarise, then fold every circuit over the layers, top-down."""
    device, dtype = model_device_dtype(model)
    check_precision(model)
    reader = ImageReader(data, device, dtype, settings.batch_size, progress)
    start = time.perf_counter()
    # Pass 1 reads the data once for every target: each layer's per-crop neuron summaries
    # and the targets' own exemplars. The layers are then built top-down, because a
    # layer's core neurons are those that matter to the groups of the layer above it.
    selections = _SummaryPass(model, reader, names, targets, settings, routing).run()
    seconds = time.perf_counter() - start
    logger.info(
        "summaries: %d targets, %.2f s",
        len(targets),
        seconds,
        extra={"layer": "summaries", "seconds": seconds},
    )
    for name, summary in next(iter(selections.values())).summaries.items():
        if name in names and settings.tau > summary.shape[1]:
            raise ParameterError(
                "tau",
                f"tau={settings.tau} is larger than layer {name!r} ({summary.shape[1]} neurons)",
            )
    states = [_start(t, selections[t], settings.k) for t in targets]
    # the top layer first: each step turns the current upper units (the target, then the
    # groups just found) into the groups of the layer below and the edges between them
    for position in tqdm(
        range(len(names) - 1, -1, -1), desc="circuit layers", disable=not progress
    ):
        started = time.perf_counter()
        states = _build_layer(model, reader, states, names, position, settings)
        seconds = time.perf_counter() - started
        logger.info(
            "layer %s: %.2f s",
            names[position],
            seconds,
            extra={"layer": names[position], "seconds": seconds},
        )
    return [_as_circuit(state, names, settings, model) for state in states]


def _runnable(settings: CircuitSettings) -> None:
    """Refuse settings that describe a circuit but cannot build one."""
    if isinstance(settings.grouping, Mapping):
        raise ParameterError(
            "grouping",
            f"grouping is the record of an estimator read from a circuit's JSON "
            f"({settings.grouping['estimator']}), which this package does not rebuild; pass "
            f"the estimator itself, e.g. settings.replace(grouping=MyEstimator(...))",
        )


def build_circuits(
    model: nn.Module,
    layers: Sequence[Layer],
    targets: Sequence[int | NeuronGroup],
    data: Data,
    *,
    settings: CircuitSettings | None = None,
    progress: bool = True,
    routing: ClassRouting | None = None,
    **options: Any,
) -> dict[int | NeuronGroup, Circuit]:
    """The circuits of several targets, sharing every pass over the data.

    Each circuit equals :func:`build_circuit` for its target alone (the same
    computations on the same crops); the data are read once per pass for all
    of them. Parameters are those of :func:`build_circuit`, with ``targets``
    a list of class indices or NeuronGroups.

    Returns
    -------
    dict
        Target -> its Circuit, in the order given.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> circuits = build_circuits(model, ["relu3"], [3, 5], x, tau=4, k=20, n_groups=2,
    ...                           n_steps=8, progress=False)
    >>> sorted(circuits), circuits[5].target
    ([3, 5], 5)
    """
    settings = CircuitSettings.merged(settings, options, "build_circuits")
    _runnable(settings)
    routing = check_routing(routing, targets)
    names = _layer_names(model, layers)
    checked = _check_targets(model, targets, names)
    with guarded_call(model, "build_circuit", needs_grad=True):
        circuits = _build_all(model, data, names, checked, settings, progress, routing)
    return dict(zip(targets, circuits, strict=True))


def build_circuit(
    model: nn.Module,
    layers: Sequence[Layer],
    target: int | NeuronGroup,
    data: Data,
    *,
    settings: CircuitSettings | None = None,
    progress: bool = True,
    routing: ClassRouting | None = None,
    **options: Any,
) -> Circuit:
    """Build NeurFlow's circuit of neuron groups for a target, top-down.

    Parameters
    ----------
    model : nn.Module
        The model (torch.fx-traceable between the circuit layers).
    layers : sequence of str or nn.Module
        Circuit layers in forward order, lowest first, as dotted names or
        modules, e.g. ``["layer3.1", "layer4.0", "layer4.1"]``. Their
        outputs are (N, C, ...) with channels on axis 1.
    target : int or NeuronGroup
        A class index, or a group of a layer after all circuit layers.
    data : Tensor, Dataset, DataLoader or list of batches
        Images (N, C, H, W) of one size: a tensor, or a Dataset / DataLoader
        (``shuffle=False``) yielding images, ``(x, y)`` tuples or dicts (the
        package's one batch rule, :mod:`captum_groups.data`). It is read
        once per pass: one pass to summarise, one per layer (two with
        ``adaptive``). Exemplars refer to images by their position in it.
    settings : CircuitSettings, optional
        How to build it (NeurFlow's procedure with the defaults of
        :class:`~captum_groups.CircuitSettings`).
    progress : bool
        Show progress bars over the layers and the images of each pass.
    routing : ClassRouting, optional
        Each image's predicted class, from :func:`~captum_groups.circuits.route_classes`
        (possibly merged from shards): a class target then reads only its own
        images, without predicting again. The circuit is the same as without it.
    **options
        Any field of :class:`~captum_groups.CircuitSettings` (``tau``, ``k``,
        ``n_groups``, ``grouping``, ``scales``, ``n_steps``, ``method``,
        ``adaptive``, ``tolerance``, ``predicted_only``, ``thumbnails``,
        ``random_state``, ``batch_size``, ``internal_batch_size``), applied
        over ``settings``: ``build_circuit(..., tau=4)`` is
        ``build_circuit(..., settings=CircuitSettings(tau=4))``.

    Returns
    -------
    Circuit
        The circuit; ``circuit.settings`` records the settings.

    Notes
    -----
    Memory. Per crop only each circuit layer's neuron means are kept:
    ``images x crops per image x sum of the layers' channels`` numbers
    (59 crops per image with NeurFlow's scales; resnet50's layer4.0-4.2 at
    4 bytes: 1.4 MB per image), written in place as the crops come (where
    ``data`` says how many images it holds and a layer's summaries fit in
    1 GiB; otherwise in blocks joined at the end, one layer at a time). On
    top of that, whatever the number of images: one batch of
    ``batch_size`` images as read, one forward pass of ``batch_size``
    crops, and one integration pass of ``internal_batch_size`` rows
    through the layers between two circuit layers, kept for as many
    backward passes as targets share a crop.

    The per-layer time is logged (logger ``captum_groups``, level INFO).

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=6, k=20, n_groups=3,
    ...                         n_steps=16, progress=False)
    >>> circuit.layers
    ('relu2', 'relu3')
    >>> path, strength = circuit.top_paths(1, "relu2")[0]
    >>> path[0], circuit.nodes[path[-1]].layer
    ('target', 'relu2')
    >>> circuit.settings.tau
    6
    """
    settings = CircuitSettings.merged(settings, options, "build_circuit")
    circuits = build_circuits(model, layers, [target], data, settings=settings, progress=progress)
    return circuits[target]

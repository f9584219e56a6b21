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

Activations of every circuit layer are computed once for all crops and
reused. Each layer's integrated gradients run in one batched call for all of
its targets, on the part of the network above the lower layer only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from sklearn.base import clone
from torch import Tensor, nn
from tqdm import tqdm

from .._hooks import LayerCapture, model_of, preserve_buffers, record
from .._subnetwork import subnetwork
from ..discovery.clustering import ConceptClustering
from ..discovery.core import core_scores, optimal_tau
from ..discovery.crops import NEURFLOW_SCALES, crop_and_resize, crop_boxes
from ..groups import GroupSet, NeuronGroup, layer_name, resolve_layer
from ._ids import TARGET
from .graph import Circuit

__all__ = ["build_circuit"]


def _forward_order(model: nn.Module, layers: Sequence[str], probe: Tensor) -> Tensor:
    """Check that each layer runs once and that they run in the order given; the model's output."""
    order: list[str] = []
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: order.append(name)
        )
        for name in layers
    ]
    try:
        with torch.no_grad(), preserve_buffers(model):
            output = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    for name in layers:
        if order.count(name) != 1:
            raise ValueError(
                f"layer {name!r} runs {order.count(name)} times in a forward pass; "
                f"circuit layers must run exactly once"
            )
    if order != list(layers):
        raise ValueError(
            f"layers must be given in forward order (lowest first); they run as {order}"
        )
    return output


def _cached_activations(
    model: nn.Module, layers: Sequence[str], crops: Tensor, batch_size: int
) -> tuple[dict[str, Tensor], Tensor]:
    """Every circuit layer's output on every crop, and the model output: one pass per batch."""
    stored: dict[str, list[Tensor]] = {name: [] for name in layers}
    outputs = []
    for start in range(0, len(crops), batch_size):
        captures = [LayerCapture(model.get_submodule(name)) for name in layers]
        outputs.append(record(model, crops[start : start + batch_size], captures))
        for name, capture in zip(layers, captures, strict=True):
            stored[name].append(capture.output[0])
    return {name: torch.cat(parts) for name, parts in stored.items()}, torch.cat(outputs)


def _neuron_means(activations: Tensor) -> Tensor:
    return activations.flatten(2).mean(2) if activations.ndim > 2 else activations


def _groups_of_layer(
    layer: str,
    critical: list[int],
    activations: dict[str, Tensor],
    below: str | None,
    exemplar_rows: Tensor,
    grouping: Any,
    n_groups: int | None,
    random_state: int | None,
) -> GroupSet:
    """Group the critical neurons of a layer (NeurFlow concepts, or the user's estimator)."""
    if isinstance(grouping, ConceptClustering) or grouping is None:
        describe = _neuron_means(activations[below if below is not None else layer])
        vectors = describe[exemplar_rows].numpy()  # (critical, k, D)
        estimator = ConceptClustering(layer) if grouping is None else clone(grouping)
        params: dict[str, Any] = {"layer": layer, "neurons": critical}
        if n_groups is not None:
            params["n_groups"] = n_groups
        found = estimator.set_params(**params).fit(vectors).groups_
        return GroupSet(g.replace(name=f"{layer}:{i}") for i, g in enumerate(found))
    estimator = clone(grouping)
    params = {"layer": layer}
    if n_groups is not None and "n_groups" in estimator.get_params():
        params["n_groups"] = n_groups
    if "random_state" in estimator.get_params() and estimator.get_params()["random_state"] is None:
        params["random_state"] = random_state
    found = estimator.set_params(**params).fit(activations[layer][:, critical].numpy()).groups_
    return GroupSet(
        NeuronGroup(layer, [critical[i] for i in g.indices], g.weights, name=f"{layer}:{n}")
        for n, g in enumerate(found)
    )


def build_circuit(
    model: nn.Module,
    layers: Sequence[str],
    target: int | NeuronGroup,
    data: Tensor,
    tau: int = 16,
    k: int = 50,
    n_groups: int | Mapping[str, int] | None = None,
    grouping: Any = None,
    scales: Sequence[float] = NEURFLOW_SCALES,
    n_steps: int = 50,
    adaptive: bool = False,
    tolerance: float = 0.05,
    predicted_only: bool = True,
    thumbnails: int = 5,
    random_state: int | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> Circuit:
    """Build NeurFlow's circuit of neuron groups for a target, top-down.

    Parameters
    ----------
    model : nn.Module
        The model (torch.fx-traceable between the circuit layers).
    layers : sequence of str
        Dotted layer names in forward order, lowest first, e.g.
        ``["layer3.1", "layer4.0", "layer4.1"]``.
    target : int or NeuronGroup
        A class index, or a group of a layer after all circuit layers.
    data : Tensor
        Images (N, C, H, W).
    tau : int
        Core neurons per target (NeurFlow: 16; the most in adaptive mode).
    k : int
        Exemplar crops per neuron (NeurFlow: 50).
    n_groups : int, mapping of layer to int, or None
        Groups per layer; chosen by silhouette score if None.
    grouping : estimator, optional
        How to group a layer's critical neurons: a ConceptClustering
        (default, NeurFlow), or another estimator with ``layer`` and
        ``groups_`` (e.g. CoactivationClustering), which is fitted on the
        critical neurons' activations over the crops.
    scales : sequence of float
        Crop sides as fractions of the image side.
    n_steps : int
        Integration steps (NeurFlow: 50).
    adaptive : bool
        NeurFlow's optimal tau per target.
    tolerance : float
        Acceptable error range of the adaptive rule.
    predicted_only : bool
        For a class target, keep only the images the model predicts as that class.
    thumbnails : int
        Exemplars stored per group (data-set index and crop box).
    random_state : int, optional
        Seed for grouping estimators that take one.
    batch_size : int
        Crops per forward pass.
    progress : bool
        Show a progress bar per layer.

    Returns
    -------
    Circuit

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
    """
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    for name in layers:
        resolve_layer(model, name, "layers")
    if not isinstance(data, Tensor) or data.ndim != 4:
        raise ValueError("data must be images shaped (N, C, H, W)")
    n_classes = _forward_order(model, layers, data[:1]).shape[1]
    images, image_ids = data, torch.arange(len(data))
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < n_classes:
            raise ValueError(f"target class {target} is out of range for {n_classes} outputs")
        if predicted_only:
            with torch.no_grad(), preserve_buffers(model):
                predictions = torch.cat(
                    [
                        model(data[s : s + batch_size]).argmax(1)
                        for s in range(0, len(data), batch_size)
                    ]
                )
            image_ids = (predictions == target).nonzero()[:, 0]
            if len(image_ids) == 0:
                raise ValueError(f"the model predicts class {target} for none of the images")
            images = data[image_ids]
    elif isinstance(target, NeuronGroup):
        top = resolve_layer(model, target.layer, "target")
        if layer_name(model, top) in layers:
            raise ValueError("a target group must belong to a layer above all circuit layers")
    else:
        raise TypeError(f"target must be a class index or a NeuronGroup, got {target!r}")

    boxes = crop_boxes(*images.shape[-2:], scales)
    crops = crop_and_resize(images, boxes)
    if k > len(crops):
        raise ValueError(f"k={k} is larger than the {len(crops)} crops of the data")
    cached_layers = layers + (
        [layer_name(model, target.layer)] if isinstance(target, NeuronGroup) else []
    )
    activations, outputs = _cached_activations(model, cached_layers, crops, batch_size)
    for name in layers:
        if not 1 <= tau <= activations[name].shape[1]:
            raise ValueError(
                f"tau={tau} is larger than layer {name!r} ({activations[name].shape[1]} neurons)"
            )
    if isinstance(target, int):
        target_values = outputs[:, target]
    else:
        target_values = target(activations[layer_name(model, target.layer)])

    def crop_ref(row: int) -> tuple[int, tuple[int, ...]]:
        image, box = divmod(row, len(boxes))
        return int(image_ids[image]), tuple(boxes[box].tolist())

    nodes: dict[str, NeuronGroup] = {}
    edges: dict[tuple[str, str], float] = {}
    exemplars: dict[str, list] = {}
    core_neurons: dict[str, dict[str, list[int]]] = {}
    typical: dict[str, list[float]] = {}
    upper_targets: list[int | NeuronGroup] = [target]
    upper_rows = [target_values.topk(k).indices]
    upper_members = {TARGET: [0]}  # upper node id -> positions in upper_targets
    upper_layer: str | None = None if isinstance(target, int) else layer_name(model, target.layer)
    for position in tqdm(
        range(len(layers) - 1, -1, -1), desc="circuit layers", disable=not progress
    ):
        layer = layers[position]
        between = subnetwork(model, layer, upper_layer)
        lower = activations[layer]
        owners = torch.cat([torch.full((len(r),), t) for t, r in enumerate(upper_rows)])
        with preserve_buffers(model):
            scores, signed = core_scores(
                between, upper_targets, lower[torch.cat(upper_rows)], owners, n_steps
            )
        ranked = scores.argsort(dim=1, descending=True, stable=True)[:, :tau]
        if adaptive:
            sizes = [
                optimal_tau(between, t, lower, ranked[i], len(upper_rows[i]), tolerance)
                for i, t in enumerate(upper_targets)
            ]
            cores = [ranked[i, :size].tolist() for i, size in enumerate(sizes)]
        else:
            cores = ranked.tolist()
        critical = sorted({n for core in cores for n in core})
        core_neurons[layer] = {
            TARGET if isinstance(t, int) or t is target else str(t.indices[0]): core
            for t, core in zip(upper_targets, cores, strict=True)
        }
        neuron_means = _neuron_means(lower)
        exemplar_rows = neuron_means[:, critical].topk(k, dim=0).indices.T  # (critical, k)
        below = layers[position - 1] if position > 0 else None
        per_layer = n_groups.get(layer) if isinstance(n_groups, Mapping) else n_groups
        groups = _groups_of_layer(
            layer, critical, activations, below, exemplar_rows, grouping, per_layer, random_state
        )
        normalised = signed[:, critical] / signed[:, critical].abs().sum(1, keepdim=True).clamp_min(
            1e-12
        )
        column = {n: i for i, n in enumerate(critical)}
        for group in groups:
            node = group.name
            nodes[node] = group
            columns = [column[m] for m in group.indices]
            for upper, members in upper_members.items():
                edges[(node, upper)] = float(normalised[members][:, columns].sum())
            values = group(lower)
            top = values.topk(min(k, len(values))).indices
            typical[node] = neuron_means[top][:, list(group.indices)].mean(0).tolist()
            exemplars[node] = [crop_ref(int(r)) for r in top[:thumbnails]]
        upper_targets = [NeuronGroup(layer, [n]) for n in critical]
        upper_rows = list(exemplar_rows)
        upper_members = {g.name: [column[m] for m in g.indices] for g in groups}
        upper_layer = layer
    params = {
        "procedure": "NeurFlow (Cao et al., ICLR 2025)",
        "tau": tau,
        "k": k,
        "n_groups": dict(n_groups) if isinstance(n_groups, Mapping) else n_groups,
        "grouping": type(grouping).__name__ if grouping is not None else "ConceptClustering",
        "scales": list(scales),
        "n_steps": n_steps,
        "adaptive": adaptive,
        "tolerance": tolerance,
        "predicted_only": predicted_only,
        "images": len(images),
        "model": type(model_of(model)).__name__,
    }
    return Circuit(target, layers, nodes, edges, exemplars, params, core_neurons, typical)

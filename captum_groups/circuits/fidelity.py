"""Fidelity of circuits and groups: NeurFlow's evaluation protocol, reusable.

- :func:`masking_fidelity`: the score (class accuracy, or the target's mean
  value) with the circuit's neurons ablated (``mode="mask"``) or with only
  them kept (``mode="retain"``), one layer at a time and all layers at once,
  against the same number of random neurons of the same layers (many draws,
  with a 95% confidence interval).
- :func:`sufficiency`: the score with only the circuit kept at every layer.
- :func:`edge_fidelity`: for random subsets of a node's lower neurons, the
  Pearson correlation between their summed importance and the change of the
  node's value when they are ablated. It should be strongly negative.

Every result is a small object holding the numbers and a ``plot()``.
``data`` are read by the package's one data rule (a tensor, Dataset,
DataLoader or list of batches; see :mod:`captum_groups.data`). The model is
used as it is (a model in training mode gets a warning; its buffers are
restored), and a circuit whose layers are not in the model is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor, nn

from .._model.capture import layer_outputs, model_outputs, run_to_layer
from .._model.guards import guarded_call, preserve_buffers
from .._model.subnetwork import subnetwork
from .._validation.checks import check_positive_int
from .._validation.deprecation import renamed_keywords
from ..ablation import ablate, retain
from ..data import Data, iter_batches
from ..discovery.core import core_scores
from ..groups import NeuronGroup
from ._ids import TARGET
from ._masked_runs import MaskedRuns, Run
from .fidelity_results import EdgeFidelityResult, FidelityReport, FidelityResult
from .graph import Circuit

__all__ = [
    "EdgeFidelityResult",
    "FidelityReport",
    "FidelityResult",
    "edge_fidelity",
    "masking_curves",
    "masking_fidelity",
    "sufficiency",
]


def _check_call(model: nn.Module, circuit: Circuit, labels: Tensor | None) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a Circuit, got {type(circuit).__name__}")
    circuit.check_model(model)
    if labels is not None and not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor of class indices, got {type(labels).__name__}")


def _first_example(data: Data) -> Tensor:
    for batch in iter_batches(data, 1, "data"):
        if len(batch):
            return batch[:1]
    raise ValueError("data is empty; give at least one example")


def _plain_outputs(model: nn.Module, circuit: Circuit, data: Data, batch_size: int) -> Tensor:
    """Per-example outputs of the model as it is (with whatever hooks are on): the predicted
    class, or the target group's value."""
    if isinstance(circuit.target, int):
        return model_outputs(model, data, batch_size, "data").argmax(1)
    outputs = layer_outputs(model, data, circuit.target.resolve(model), batch_size, "data")
    return circuit.target(outputs)


def _circuit_neurons(circuit: Circuit, layer: str) -> list[int]:
    return sorted({i for node in circuit.node_ids(layer) for i in circuit.nodes[node].indices})


@renamed_keywords(inputs="data", n_random="n_draws")
def masking_fidelity(
    model: nn.Module,
    circuit: Circuit,
    data: Data,
    labels: Tensor | None = None,
    mode: str = "mask",
    per_layer: bool = True,
    n_draws: int = 30,
    random_state: int | None = None,
    batch_size: int = 256,
) -> FidelityReport:
    """The circuit's neurons masked (or retained) against as many random neurons.

    Parameters
    ----------
    model : nn.Module
        The model.
    circuit : Circuit
        The circuit (or any set of groups wrapped in one); its layers must
        be layers of ``model``.
    data : Tensor, Dataset, DataLoader or list of batches
        Evaluation examples, e.g. the images of the target class.
    labels : Tensor, optional
        True labels for the accuracy, one per example in the order of
        ``data``; by default the circuit's target class.
    mode : {"mask", "retain"}
        Ablate the circuit's neurons, or keep only them (in their layers).
    per_layer : bool
        Also report each layer on its own, besides all layers at once.
    n_draws : int
        Random draws of as many neurons per layer (formerly ``n_random``).
    random_state : int, optional
        Seed of the draws.
    batch_size : int
        Inputs per forward pass.

    Returns
    -------
    FidelityReport
        One result per layer (if ``per_layer``) and one for ``"all layers"``.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> report = masking_fidelity(model, circuit, x[y == 3], n_draws=3, random_state=0)
    >>> [(r.scope, r.mode) for r in report.results][-1], report.results[-1].random.shape
    (('all layers', 'mask'), (3,))
    """
    if mode not in ("mask", "retain"):
        raise ValueError(f"mode must be 'mask' or 'retain', got {mode!r}")
    check_positive_int(n_draws, "n_draws")
    check_positive_int(batch_size, "batch_size")
    _check_call(model, circuit, labels)
    caller = "masking_fidelity" if mode == "mask" else "sufficiency"
    with guarded_call(model, caller):
        reports = _masking_curves(
            model, [circuit], data, (mode,), per_layer, n_draws, random_state, batch_size, labels
        )
    return reports[(mode, 0)]


def _plan(
    circuit: Circuit,
    sizes: dict[str, tuple[list[int], int]],
    per_layer: bool,
    n_draws: int,
    keep: bool,
    random_state: int | None,
) -> list[tuple[str, Run, list[Run]]]:
    """Each scope's circuit run and random runs, drawn in the order the plain loop draws them."""
    rng = np.random.default_rng(random_state)
    scopes = [(layer, [layer]) for layer in sizes] if per_layer else []
    scopes.append(("all layers", list(sizes)))
    plan = []
    for name, layers in scopes:
        own = Run(tuple((layer, tuple(sizes[layer][0])) for layer in layers), keep)
        draws = [
            Run(
                tuple(
                    (layer, tuple(rng.choice(sizes[layer][1], len(sizes[layer][0]), replace=False)))
                    for layer in layers
                ),
                keep,
            )
            for _ in range(n_draws)
        ]
        plan.append((name, own, draws))
    return plan


def _score_of(outputs: Tensor, circuit: Circuit, labels: Tensor | None) -> float:
    """Accuracy (for a class target, against ``labels`` or the class), else the mean value."""
    if not isinstance(circuit.target, int):
        return float(outputs.mean())
    if labels is None:
        return float((outputs == circuit.target).float().mean())
    if labels.shape != outputs.shape:
        raise ValueError(
            f"labels must hold one class per example of data ({len(outputs)}), got shape "
            f"{tuple(labels.shape)}"
        )
    return float((outputs == labels.to(outputs.device)).float().mean())


def _sizes(model: nn.Module, circuit: Circuit, first: Tensor) -> dict[str, tuple[list[int], int]]:
    """Each circuit layer with neurons in the circuit: (those neurons, the layer's width)."""
    sizes = {}
    with torch.no_grad(), preserve_buffers(model):
        for layer in circuit.layers:
            neurons = _circuit_neurons(circuit, layer)
            if neurons:
                width = run_to_layer(model, first, model.get_submodule(layer))[0].shape[1]
                sizes[layer] = (neurons, width)
    return sizes


def masking_curves(
    model: nn.Module,
    circuits: Sequence[Circuit],
    data: Data,
    modes: Sequence[str] = ("mask", "retain"),
    per_layer: bool = True,
    n_draws: int = 30,
    random_state: int | None = None,
    batch_size: int = 256,
    labels: Tensor | None = None,
) -> dict[tuple[str, int], FidelityReport]:
    """:func:`masking_fidelity` of several circuits of one model and target (e.g. one
    circuit pruned to nested sizes: the points of a fidelity curve), in every mode, from one
    pass over the data. A run that several of them share (the same neurons masked, as a
    layer that pruning leaves alone) is computed once.

    Returns
    -------
    dict of (mode, circuit position) to FidelityReport
        Each the report ``masking_fidelity(model, circuits[i], data, mode=mode, ...)`` gives.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> reports = masking_curves(model, [circuit], x[y == 3], modes=("mask",), per_layer=False,
    ...                          n_draws=2, random_state=0)
    >>> [r.scope for r in reports["mask", 0].results]
    ['all layers']
    """
    for mode in modes:
        if mode not in ("mask", "retain"):
            raise ValueError(f"modes must be 'mask' or 'retain', got {mode!r}")
    check_positive_int(n_draws, "n_draws")
    check_positive_int(batch_size, "batch_size")
    for circuit in circuits:
        _check_call(model, circuit, labels)
    with guarded_call(model, "masking_curves"):
        return _masking_curves(
            model, circuits, data, modes, per_layer, n_draws, random_state, batch_size, labels
        )


def _masking_curves(
    model: nn.Module,
    circuits: Sequence[Circuit],
    data: Data,
    modes: Sequence[str],
    per_layer: bool,
    n_draws: int,
    random_state: int | None,
    batch_size: int,
    labels: Tensor | None,
) -> dict[tuple[str, int], FidelityReport]:
    first = _first_example(data)
    plans = {}
    for index, circuit in enumerate(circuits):
        sizes = _sizes(model, circuit, first)
        for mode in modes:
            keep = mode == "retain"
            plans[(mode, index)] = _plan(circuit, sizes, per_layer, n_draws, keep, random_state)
    runs = [Run()] + list(
        dict.fromkeys(
            run for plan in plans.values() for _, own, draws in plan for run in (own, *draws)
        )
    )
    outputs = dict(zip(runs, _run_all(model, circuits[-1], data, runs, batch_size), strict=True))
    baseline = _score_of(outputs[Run()], circuits[-1], labels)
    reports = {}
    for (mode, index), plan in plans.items():
        results = []
        for name, own, draws in plan:
            scores = [_score_of(outputs[run], circuits[index], labels) for run in (own, *draws)]
            count = sum(len(neurons) for _, neurons in own.masks)
            results.append(
                FidelityResult(mode, name, count, baseline, scores[0], np.array(scores[1:]))
            )
        reports[(mode, index)] = FidelityReport(results)
    return reports


def _run_all(
    model: nn.Module, circuit: Circuit, data: Data, runs: list[Run], batch_size: int
) -> list[Tensor]:
    """Every run's outputs: from cached activations, or (for a model fx cannot cut into
    stages) one full forward pass per run with the masks as hooks."""
    cached = MaskedRuns(model, circuit, batch_size)
    if cached.can_run(runs):
        return cached.outputs(data, runs)
    found = []
    for run in runs:
        switch = retain if run.keep else ablate
        groups = [NeuronGroup(layer, list(neurons)) for layer, neurons in run.masks]
        with switch(model, groups) if groups else nullcontext():
            found.append(_plain_outputs(model, circuit, data, batch_size))
    return found


@renamed_keywords(inputs="data", n_random="n_draws")
def sufficiency(
    model: nn.Module,
    circuit: Circuit,
    data: Data,
    labels: Tensor | None = None,
    n_draws: int = 30,
    random_state: int | None = None,
    batch_size: int = 256,
) -> FidelityResult:
    """The score with only the circuit kept at every layer at once (against random neurons).

    The parameters are those of :func:`masking_fidelity`.

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> kept = sufficiency(model, circuit, x[y == 3], n_draws=3, random_state=0)
    >>> kept.mode, kept.scope, kept.n_neurons == sum(len(g) for g in circuit.nodes.values())
    ('retain', 'all layers', True)
    """
    report = masking_fidelity(
        model, circuit, data, labels, "retain", False, n_draws, random_state, batch_size
    )
    return report["all layers"]


@renamed_keywords(inputs="data")
def edge_fidelity(
    model: nn.Module,
    circuit: Circuit,
    data: Data,
    node: str = TARGET,
    sizes: Sequence[int] = (1, 2, 5, 10),
    n_draws: int = 20,
    n_steps: int = 32,
    random_state: int | None = None,
) -> EdgeFidelityResult:
    """NeurFlow's fidelity of edge weights for one node.

    Each neuron of the layer below ``node`` gets an importance: the mean over
    ``data`` of the integrated gradients (zero baseline) from the node's
    value to the neuron, as the circuit's edges use. For random subsets of
    these neurons (``n_draws`` per size), the summed importance is compared
    with the change of the node's mean value when the subset is ablated.

    Parameters
    ----------
    model : nn.Module
        The model.
    circuit : Circuit
        The circuit; its layers must be layers of ``model``.
    data : Tensor, Dataset, DataLoader or list of batches
        Examples to evaluate on, e.g. the node's exemplars or the class images.
    node : str
        An upper node id (``TARGET`` by default); its lower layer is the
        circuit layer below it.
    sizes : sequence of int
        Subset sizes (NeurFlow: 1, 5, 10, 20, 50).
    n_draws : int
        Random subsets per size.
    n_steps : int
        Integration steps.
    random_state : int, optional
        Seed of the draws.

    Returns
    -------
    EdgeFidelityResult

    Examples
    --------
    >>> from captum_groups import build_circuit
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=4, k=10, n_groups=2,
    ...                         scales=(1.0,), n_steps=8, progress=False)
    >>> found = edge_fidelity(model, circuit, x[y == 3][:20], sizes=(1, 2), n_draws=4,
    ...                       n_steps=8, random_state=0)
    >>> found.node, found.importance.shape, -1 <= found.pearson <= 1
    ('target', (8,), True)
    """
    _check_call(model, circuit, None)
    check_positive_int(n_draws, "n_draws")
    check_positive_int(n_steps, "n_steps")
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) for s in sizes):
        raise ValueError(f"sizes must be a non-empty sequence of ints, got {sizes!r}")
    if node == TARGET:
        lower_layer, upper_value = circuit.layers[-1], circuit.target
        upper_layer = None if isinstance(circuit.target, int) else circuit.target.layer
    else:
        if node not in circuit.nodes:
            raise ValueError(f"node {node!r} is not in the circuit")
        upper_value = circuit.nodes[node]
        position = circuit.layers.index(upper_value.layer)
        if position == 0:
            raise ValueError(f"node {node!r} is in the lowest circuit layer; it has no lower layer")
        lower_layer, upper_layer = circuit.layers[position - 1], upper_value.layer
    with guarded_call(model, "edge_fidelity", needs_grad=True):
        return _edge_fidelity(
            model,
            data,
            node,
            lower_layer,
            upper_layer,
            upper_value,
            sizes,
            n_draws,
            n_steps,
            random_state,
        )


def _node_values(
    between: nn.Module,
    upper_value: int | NeuronGroup,
    activations: Tensor,
    subsets: Sequence[Sequence[int]],
) -> list[float]:
    """The upper node's mean value with each subset of lower neurons zeroed, from the cached
    lower activations (one pass of the part between the layers per subset)."""
    found = []
    for subset in subsets:
        masked = activations.clone()
        masked[:, list(subset)] = 0
        output = between(masked)
        values = output[:, upper_value] if isinstance(upper_value, int) else upper_value(output)
        found.append(float(values.mean()))
    return found


def _edge_fidelity(
    model: nn.Module,
    data: Data,
    node: str,
    lower_layer: str,
    upper_layer: str | None,
    upper_value: int | NeuronGroup,
    sizes: Sequence[int],
    n_draws: int,
    n_steps: int,
    random_state: int | None,
) -> EdgeFidelityResult:
    lower = model.get_submodule(lower_layer)
    between = subnetwork(model, lower_layer, upper_layer)
    activations = layer_outputs(model, data, lower, parameter="data")
    with torch.no_grad():
        owners = torch.zeros(len(activations), dtype=torch.long)
        _, signed = core_scores(between, [upper_value], activations, owners, n_steps)

        before = _node_values(between, upper_value, activations, [[]])[0]
        importance = signed[0]
        rng = np.random.default_rng(random_state)
        n_neurons = activations.shape[1]
        for size in sizes:
            if not 1 <= size <= n_neurons:
                raise ValueError(
                    f"sizes must lie between 1 and the {n_neurons} neurons of layer "
                    f"{lower_layer!r}, got {size}"
                )
        drawn_sizes = [size for size in sizes for _ in range(n_draws)]
        subsets = [rng.choice(n_neurons, size, replace=False) for size in drawn_sizes]
        summed = [float(importance[subset].sum()) for subset in subsets]
        changes = [v - before for v in _node_values(between, upper_value, activations, subsets)]
    importance_array, change_array = np.array(summed), np.array(changes)
    pearson = float(np.corrcoef(importance_array, change_array)[0, 1])
    return EdgeFidelityResult(node, np.array(drawn_sizes), importance_array, change_array, pearson)

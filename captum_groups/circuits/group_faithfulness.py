"""Faithfulness by patching for NeurFlow's circuits: the same curve as a circuit through the
stream's (:func:`~captum_groups.circuits.faithfulness_curve`), grown group by group.

The circuit's layers cut the network, so keeping a circuit means keeping its groups'
neurons and giving every other neuron of its layers the value it has on the corrupted
input (activation patching, Meng et al. 2022, of everything outside the circuit); its
faithfulness is the fraction of the clean - corrupted difference of the target's logit
(above the mean logit) that it keeps. Groups are added by the summed ``|weight|`` of their
edges; random circuits keep as many random neurons of each layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._model.capture import layer_activations
from .._validation.checks import ParameterError
from ..groups import NeuronGroup
from ..patching import patch
from .fidelity_results import FaithfulnessCurve
from .graph import Circuit

__all__ = ["checked_sizes", "group_curve"]


def checked_sizes(sizes: Sequence[int] | None, most: int) -> list[int]:
    """The sizes of a curve: numbers from 0 to ``most`` (by default 1 to ``most``).

    Examples
    --------
    >>> checked_sizes(None, 3), checked_sizes([2], 3)
    ([1, 2, 3], [2])
    """
    chosen = list(range(1, most + 1)) if sizes is None else [int(s) for s in sizes]
    if not chosen or min(chosen) < 0 or max(chosen) > most:
        raise ParameterError("sizes", f"sizes must be numbers from 0 to {most}, got {chosen}")
    return chosen


def _units(model: nn.Module, circuit: Circuit, probe: Tensor) -> dict[str, int]:
    """How many neurons each circuit layer has (one probe of the model)."""
    counts = {}
    for layer in circuit.layers:
        output = layer_activations(model, layer, probe[:1])
        group = next(g for g in circuit.nodes.values() if g.layer == layer)
        counts[layer] = output.shape[group.channel_axis(output.ndim)]
    return counts


def _run(model: nn.Module, kept: dict[str, set[int]], units: dict[str, int],
         clean: Tensor, corrupted: Tensor, axes: dict[str, int | None]) -> Tensor:  # fmt: skip
    """The model on ``clean`` with every neuron of the circuit layers outside ``kept``
    taking its value on ``corrupted``."""
    others = [
        NeuronGroup(
            layer, sorted(set(range(units[layer])) - kept.get(layer, set())), dim=axes[layer]
        )  # fmt: skip
        for layer in units
        if len(kept.get(layer, ())) < units[layer]
    ]
    with torch.no_grad():
        if not others:
            return model(clean)
        with patch(model, others, source=corrupted):
            return model(clean)


def group_curve(
    model: nn.Module,
    circuit: Circuit,
    clean: Tensor,
    corrupted: Tensor,
    metric: Callable[[Tensor], Tensor],
    sizes: Sequence[int] | None,
    n_random: int,
    generator: torch.Generator,
) -> FaithfulnessCurve:
    """:func:`~captum_groups.circuits.faithfulness_curve` of a NeurFlow circuit."""
    if not circuit.nodes:
        raise ParameterError("circuit", "the circuit has no group to keep")
    strength = {n: sum(abs(w) for (u, _), w in circuit.edges.items() if u == n)
                for n in circuit.nodes}  # fmt: skip
    ranked = sorted(circuit.nodes, key=lambda n: -strength[n])
    chosen = checked_sizes(sizes, len(ranked))
    units = _units(model, circuit, clean)
    axes = {g.layer: g.dim for g in circuit.nodes.values()}
    # every neuron kept is the clean model; none kept, the corrupted one (the layers cut it)
    high = metric(_run(model, {k: set(range(v)) for k, v in units.items()}, units, clean,
                       corrupted, axes)[None]).item()  # fmt: skip
    low = metric(_run(model, {}, units, clean, corrupted, axes)[None]).item()
    if abs(high - low) < 1e-12:
        raise ParameterError("corrupted", "the corrupted input leaves the metric unchanged")
    values, draws = [], np.zeros((len(chosen), n_random))
    for row, size in enumerate(chosen):
        kept: dict[str, set[int]] = {}
        for node in ranked[:size]:
            kept.setdefault(circuit.nodes[node].layer, set()).update(circuit.nodes[node].indices)
        value = metric(_run(model, kept, units, clean, corrupted, axes)[None]).item()
        values.append((value - low) / (high - low))
        for draw in range(n_random):
            sample = {layer: set(torch.randperm(units[layer], generator=generator)[: len(k)]
                                 .tolist()) for layer, k in kept.items()}  # fmt: skip
            value = metric(_run(model, sample, units, clean, corrupted, axes)[None]).item()
            draws[row, draw] = (value - low) / (high - low)
    return FaithfulnessCurve(tuple(chosen), len(ranked), tuple(values), draws, unit="groups")

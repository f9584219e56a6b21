"""Faithfulness of a circuit through the residual stream, as the circuit grows.

The measure of ACDC and EAP-IG (Conmy et al. 2023; Hanna, Pezzelle and Belinkov
2024): every edge outside the circuit is patched from the corrupted input, and the
circuit's faithfulness is the fraction of the clean - corrupted difference of the
metric it keeps, ``(m(circuit) - m(corrupted)) / (m(clean) - m(corrupted))``. The
curve adds edges by the absolute value of their scores, strongest first, and sets
each size against random circuits of as many edges (their mean, with a bootstrap
95% interval, as :class:`~captum_groups.circuits.FidelityResult` gives NeurFlow's
fidelity).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._model.guards import guarded_call
from .._validation.checks import SEED, Count, ParameterError
from .edge_scores import metric_of, recovered
from .fidelity_results import FaithfulnessCurve
from .graph import Circuit
from .group_faithfulness import checked_sizes, group_curve
from .stream import StreamGraph

__all__ = ["FaithfulnessCurve", "faithfulness_curve", "stream_graph_of"]


def stream_graph_of(model: nn.Module, circuit: Circuit, probe: Tensor) -> StreamGraph:
    """The stream graph a circuit's nodes were scored on (its groups of heads and MLP
    neurons), refused by name for a circuit that is not one through the stream."""
    if not circuit.through_stream:
        raise ParameterError(
            "circuit",
            "faithfulness by patching edges needs a circuit through the residual "
            "stream (build_stream_circuit); this one was built another way",  # fmt: skip
        )
    groups = [g for g in circuit.nodes.values()
              if str(g.layer).endswith((".attn.hook_z", ".mlp.hook_post"))]  # fmt: skip
    per_pass = circuit.settings.batch_size if circuit.settings is not None else 256
    graph = StreamGraph(model, probe, groups, per_pass)
    known = {n.id for n in graph.nodes} | set(graph.receivers)
    missing = [node for node in circuit.nodes if node not in known]
    if missing:
        raise ParameterError("circuit", f"circuit nodes {missing} are not nodes of the model")
    return graph


def faithfulness_curve(
    model: nn.Module,
    circuit: Circuit,
    clean: Tensor,
    corrupted: Tensor,
    positions: Tensor | None = None,
    sizes: Sequence[int] | None = None,
    n_random: int = 20,
    random_state: int | None = None,
) -> FaithfulnessCurve:
    """Faithfulness of a circuit as its strongest parts are added, against random circuits
    of the same sizes: everything outside it patched from the corrupted input.

    A circuit through the stream grows edge by edge (by ``|weight|``); every edge outside
    it carries its corrupted value (Conmy et al. 2023; Hanna et al. 2024). A NeurFlow
    circuit grows group by group (by the summed ``|weight|`` of their edges); every neuron
    of its layers outside the kept groups takes its value on the corrupted input, and
    random circuits keep as many random neurons of each layer: the same figure for both
    kinds.

    Parameters
    ----------
    model : nn.Module
        The model the circuit was built on.
    circuit : Circuit
        From :func:`build_stream_circuit` or :func:`build_circuit`.
    clean, corrupted : Tensor
        Inputs and their corrupted counterparts (:func:`stream_inputs` makes the ones a
        circuit through the stream was built on).
    positions : Tensor, optional
        Where a model with outputs per position is read (see :func:`metric_of`).
    sizes : sequence of int, optional
        Numbers of edges through the stream (groups) to keep; by default 1 to all (a
        head's edges from its inputs are always kept: they are not patched).
    n_random : int
        Random circuits per size.
    random_state : int, optional
        Seed of the random circuits.

    Examples
    --------
    >>> from captum_groups import build_stream_circuit
    >>> from captum_groups.induction import tiny_gpt, induction_prompts
    >>> model, (clean, corrupted, copyable) = tiny_gpt(), induction_prompts(16)
    >>> circuit = build_stream_circuit(model, clean, "next_token", corrupted, positions=copyable,
    ...                                progress=False)
    >>> curve = faithfulness_curve(model, circuit, clean, corrupted, positions=copyable,
    ...                            sizes=[60, 110], n_random=3)
    >>> curve.recovered[0] > max(curve.random_mean[0], 0.5), round(curve.recovered[-1], 3)
    (True, 1.0)
    """
    SEED.check(random_state, "random_state")
    Count(1).check(n_random, "n_random")
    if (
        not isinstance(clean, Tensor)
        or not isinstance(corrupted, Tensor)
        or (clean.shape != corrupted.shape)
    ):
        raise ParameterError(
            "corrupted",
            "clean and corrupted must be tensors of one shape, one corrupted "
            "input per example",  # fmt: skip
        )
    generator = torch.Generator().manual_seed(random_state or 0)
    metric = metric_of(circuit.target, clean, positions)  # type: ignore[arg-type]
    with guarded_call(model, "faithfulness_curve"):
        if not circuit.through_stream:
            return group_curve(model, circuit, clean, corrupted, metric, sizes, n_random,
                               generator)  # fmt: skip
        graph = stream_graph_of(model, circuit, clean)
        # the edges through the stream (not a head's inputs into it), strongest first
        ranked = sorted(circuit.stream_edges(), key=lambda e: -abs(circuit.edges[e]))
        index = [graph.edge_index[edge] for edge in ranked]
        sizes = checked_sizes(sizes, len(ranked))
        keep = torch.zeros(len(sizes) * (1 + n_random), len(graph.edges))
        for row, size in enumerate(sizes):
            keep[row, index[:size]] = 1
            for draw in range(n_random):
                chosen = torch.randperm(len(graph.edges), generator=generator)[:size]
                keep[len(sizes) + row * n_random + draw, chosen] = 1
        values = recovered(graph, clean, graph.reference(corrupted), metric, keep).numpy()
    return FaithfulnessCurve(
        tuple(sizes),
        len(graph.edges),
        tuple(float(v) for v in values[: len(sizes)]),
        values[len(sizes) :].reshape(len(sizes), n_random).astype(float),
    )

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

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._model.guards import guarded_call
from .._validation.checks import SEED, ParameterError
from .edge_scores import metric_of, recovered
from .fidelity_results import mean_interval
from .graph import Circuit
from .stream import StreamGraph

__all__ = ["FaithfulnessCurve", "faithfulness_curve", "stream_graph_of"]


@dataclasses.dataclass(frozen=True)
class FaithfulnessCurve:
    """The fraction of the clean - corrupted metric difference that the circuit's
    strongest edges keep, at each size, and that random circuits of the size keep.

    Attributes
    ----------
    sizes : tuple of int
        Edges kept at each point.
    total_edges : int
        Edges of the whole graph.
    recovered : tuple of float
        The circuit's faithfulness at each size (1: the clean model, 0: the corrupted).
    random : ndarray
        (sizes, draws): the faithfulness of random circuits of each size.

    Examples
    --------
    >>> curve = FaithfulnessCurve((1, 2), 10, (0.4, 0.9), np.array([[0.0, 0.1], [0.1, 0.2]]))
    >>> curve.smallest(0.8), curve.random_mean
    (2, (0.05, 0.15))
    """

    sizes: tuple[int, ...]
    total_edges: int
    recovered: tuple[float, ...]
    random: np.ndarray = dataclasses.field(repr=False)

    @property
    def fractions(self) -> tuple[float, ...]:
        """Each size as a fraction of all edges."""
        return tuple(size / self.total_edges for size in self.sizes)

    @property
    def random_mean(self) -> tuple[float, ...]:
        """The random circuits' mean faithfulness at each size."""
        return tuple(round(float(row.mean()), 12) for row in self.random)

    @property
    def random_ci(self) -> tuple[tuple[float, float], ...]:
        """95% bootstrap interval of the random mean at each size."""
        return tuple(mean_interval(row) for row in self.random)

    def smallest(self, level: float = 0.8) -> int | None:
        """The fewest edges whose circuit keeps at least ``level`` (None: no size does)."""
        reached = (s for s, r in zip(self.sizes, self.recovered, strict=True) if r >= level)
        return next(reached, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: sizes, fractions, faithfulness, random mean and interval."""
        return {
            "sizes": list(self.sizes),
            "total_edges": self.total_edges,
            "recovered": list(self.recovered),
            "random_mean": list(self.random_mean),
            "random_ci": [list(ci) for ci in self.random_ci],
            "draws": int(self.random.shape[1]),
        }

    def plot(self, title: str | None = None) -> Figure:
        """The circuit's curve over the share of edges, and the random circuits' band."""
        figure = Figure(figsize=(5.5, 3.6))
        axes = figure.subplots()
        shares = 100 * np.array(self.fractions)
        low, high = np.array(self.random_ci).T
        axes.plot(shares, self.recovered, "o-", color="#1f5fa8", label="circuit (strongest edges)")
        axes.plot(shares, self.random_mean, "s--", color="#888888", label="random circuits")
        axes.fill_between(shares, low, high, color="#bbbbbb", alpha=0.5, label="random 95% CI")
        axes.axhline(1.0, color="#444444", linewidth=0.8)
        axes.axhline(0.0, color="#444444", linewidth=0.8)
        axes.set_xlabel("edges kept (% of all)")
        axes.set_ylabel("logit difference recovered")
        axes.set_title(title or "faithfulness: edges outside the circuit patched")
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        return figure


def stream_graph_of(model: nn.Module, circuit: Circuit, probe: Tensor) -> StreamGraph:
    """The stream graph a circuit's nodes were scored on (its groups of heads and MLP
    neurons), refused by name for a circuit that is not one through the stream."""
    if circuit.params.get("procedure") != "EAP-IG":
        raise ParameterError(
            "circuit",
            "faithfulness by patching edges needs a circuit through the residual "
            "stream (build_stream_circuit); this one was built another way",  # fmt: skip
        )
    groups = [g for g in circuit.nodes.values()
              if str(g.layer).endswith((".attn.hook_z", ".mlp.hook_post"))]  # fmt: skip
    graph = StreamGraph(model, probe, groups)
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
    """Faithfulness of a circuit through the stream as its strongest edges are added,
    against random circuits of the same sizes.

    Parameters
    ----------
    model : nn.Module
        The model the circuit was built on.
    circuit : Circuit
        Built by :func:`build_stream_circuit` (its edges ranked by ``|weight|``).
    clean, corrupted : Tensor
        Inputs and their corrupted counterparts, as for the build.
    positions : Tensor, optional
        Where a model with outputs per position is read (see :func:`metric_of`).
    sizes : sequence of int, optional
        Numbers of edges through the stream to keep; by default 1 to all of the
        circuit's (a head's edges from its inputs are always kept: they are not
        patched).
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
    with guarded_call(model, "faithfulness_curve"):
        graph = stream_graph_of(model, circuit, clean)
        # the edges through the stream (not a head's inputs into it), strongest first
        stream = [edge for edge in circuit.edges if edge in graph.edge_index]
        ranked = sorted(stream, key=lambda e: -abs(circuit.edges[e]))
        index = [graph.edge_index[edge] for edge in ranked]
        sizes = list(range(1, len(ranked) + 1)) if sizes is None else [int(s) for s in sizes]
        if not sizes or min(sizes) < 0 or max(sizes) > len(ranked):
            raise ParameterError(
                "sizes", f"sizes must be numbers of edges from 0 to {len(ranked)}, got {sizes}"
            )
        generator = torch.Generator().manual_seed(random_state or 0)
        keep = torch.zeros(len(sizes) * (1 + n_random), len(graph.edges))
        for row, size in enumerate(sizes):
            keep[row, index[:size]] = 1
            for draw in range(n_random):
                chosen = torch.randperm(len(graph.edges), generator=generator)[:size]
                keep[len(sizes) + row * n_random + draw, chosen] = 1
        target = circuit.target
        metric = metric_of(target, clean, positions)  # type: ignore[arg-type]
        values = recovered(graph, clean, graph.reference(corrupted), metric, keep).numpy()
    return FaithfulnessCurve(
        tuple(sizes),
        len(graph.edges),
        tuple(float(v) for v in values[: len(sizes)]),
        values[len(sizes) :].reshape(len(sizes), n_random).astype(float),
    )

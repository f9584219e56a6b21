"""Circuits of neuron groups: the graph, how it is built, how faithful it is, its drawing.

- :class:`Circuit` (``graph``): groups across layers with signed edges toward a
  target; queries, pruning, networkx and JSON export.
- :func:`build_circuit`, :func:`build_circuits` (``build``): NeurFlow's top-down
  procedure, streamed over the data, for one or several targets.
- :func:`masking_fidelity`, :func:`sufficiency`, :func:`edge_fidelity`
  (``fidelity``): NeurFlow's evaluation protocol.
- :func:`plot_circuit` (``plot``): a layered drawing.
"""

from ._ids import TARGET
from .build import build_circuit, build_circuits
from .fidelity import (
    EdgeFidelityResult,
    FidelityReport,
    FidelityResult,
    edge_fidelity,
    masking_fidelity,
    sufficiency,
)
from .graph import Circuit
from .plot import plot_circuit

__all__ = [
    "TARGET",
    "Circuit",
    "EdgeFidelityResult",
    "FidelityReport",
    "FidelityResult",
    "build_circuit",
    "build_circuits",
    "edge_fidelity",
    "masking_fidelity",
    "plot_circuit",
    "sufficiency",
]

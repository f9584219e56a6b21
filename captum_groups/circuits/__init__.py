"""Circuits of neuron groups: the graph, how it is built, how faithful it is, its drawing.

- :class:`Circuit` (``graph``): groups across layers with signed edges toward a
  target; queries, pruning, networkx and JSON export.
- :func:`build_circuit`, :func:`build_circuits` (``build``): NeurFlow's top-down
  procedure, streamed over the data, for one or several targets, as set by
  :class:`CircuitSettings` (``settings``).
- :func:`masking_fidelity`, :func:`sufficiency`, :func:`edge_fidelity`
  (``fidelity``): NeurFlow's evaluation protocol.
- :func:`plot_circuit` (``plot``): a layered drawing.
- :func:`debug_image`, :func:`compare_classes` (``debug``): NeurFlow's image
  debugging: which groups one image expresses, where, and what they carry.
"""

from ._ids import TARGET
from .build import build_circuit, build_circuits
from .debug import (
    ClassComparison,
    GroupDebug,
    ImageDebug,
    compare_classes,
    debug_image,
    expression_score,
    typical_activations,
)
from .fidelity import (
    EdgeFidelityResult,
    FidelityReport,
    FidelityResult,
    edge_fidelity,
    masking_curves,
    masking_fidelity,
    sufficiency,
)
from .graph import Circuit
from .group_files import read_groups
from .plot import plot_circuit
from .routing import ClassRouting, route_classes
from .settings import DEFAULT_STEPS, CircuitSettings

__all__ = [
    "DEFAULT_STEPS",
    "TARGET",
    "Circuit",
    "CircuitSettings",
    "ClassRouting",
    "ClassComparison",
    "EdgeFidelityResult",
    "FidelityReport",
    "FidelityResult",
    "GroupDebug",
    "ImageDebug",
    "build_circuit",
    "build_circuits",
    "compare_classes",
    "debug_image",
    "edge_fidelity",
    "expression_score",
    "masking_curves",
    "masking_fidelity",
    "plot_circuit",
    "read_groups",
    "route_classes",
    "sufficiency",
    "typical_activations",
]

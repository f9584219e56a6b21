"""Circuits of neuron groups: the graph, how it is built, how faithful it is, its drawing.

- :class:`Circuit` (``graph``): groups across layers with signed edges toward a
  target; queries, pruning, networkx and JSON export.
- :func:`build_circuit`, :func:`build_circuits` (``build``): NeurFlow's top-down
  procedure, streamed over the data, for one or several targets, as set by
  :class:`CircuitSettings` (``settings``).
- :func:`masking_fidelity`, :func:`sufficiency`, :func:`edge_fidelity`
  (``fidelity``): NeurFlow's evaluation protocol.
- :func:`build_stream_circuit` (``stream_build``): a transformer's circuit of heads and
  MLP groups, edges through the residual stream scored by EAP-IG (``stream``,
  ``edge_scores``); :func:`faithfulness_curve` (``faithfulness``): edges outside it
  patched from a corrupted input, against random circuits.
- :func:`plot_circuit` (``plot``): a layered drawing.
- :func:`debug_image`, :func:`compare_classes` (``debug``): NeurFlow's image
  debugging: which groups one image expresses, where, and what they carry.
"""

from ._ids import EAP_PATHS, NEXT_TOKEN, TARGET
from .build import build_circuit, build_circuits
from .corruption import corrupt
from .debug import (
    ClassComparison,
    GroupDebug,
    ImageDebug,
    compare_classes,
    debug_image,
    expression_score,
    typical_activations,
)
from .edge_scores import eap_scores, exact_scores, metric_of
from .faithfulness import FaithfulnessCurve, faithfulness_curve
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
from .stream import CorruptedRun, StreamGraph
from .stream_build import build_stream_circuit, stream_inputs
from .stream_groups import mlp_groups

__all__ = [
    "DEFAULT_STEPS",
    "EAP_PATHS",
    "NEXT_TOKEN",
    "TARGET",
    "Circuit",
    "CircuitSettings",
    "ClassRouting",
    "ClassComparison",
    "CorruptedRun",
    "EdgeFidelityResult",
    "FaithfulnessCurve",
    "FidelityReport",
    "FidelityResult",
    "GroupDebug",
    "ImageDebug",
    "StreamGraph",
    "build_circuit",
    "build_circuits",
    "build_stream_circuit",
    "compare_classes",
    "corrupt",
    "debug_image",
    "eap_scores",
    "edge_fidelity",
    "exact_scores",
    "faithfulness_curve",
    "expression_score",
    "masking_curves",
    "masking_fidelity",
    "metric_of",
    "mlp_groups",
    "plot_circuit",
    "read_groups",
    "route_classes",
    "stream_inputs",
    "sufficiency",
    "typical_activations",
]

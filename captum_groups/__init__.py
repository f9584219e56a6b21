"""captum-groups: attribution, discovery and visualization for groups of neurons.

The public API is re-exported here; the attribution classes live in
:mod:`captum_groups.attr`, ablation in :mod:`captum_groups.ablation`, circuits
(graph, building, fidelity, drawing, image debugging) in
:mod:`captum_groups.circuits`, concept labels in :mod:`captum_groups.labeling`,
and the embedded data and model in :mod:`captum_groups.datasets`.
"""

from ._model.capture import layer_activations
from ._validation.checks import ParameterError
from ._validation.deprecation import warn_deprecated
from .ablation import ablate, retain
from .attr import (
    FORMER_NAMES,
    GroupConductance,
    GroupDeconvolution,
    GroupDeepLift,
    GroupDeepLiftShap,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupGuidedBackprop,
    GroupIntegratedGradients,
    LayerGroupAblation,
    LayerGroupConductance,
    LayerGroupGradientXActivation,
    LayerGroupInteraction,
)
from .circuits import (
    Circuit,
    CircuitSettings,
    build_circuit,
    build_circuits,
    build_stream_circuit,
    compare_classes,
    debug_image,
    edge_fidelity,
    faithfulness_curve,
    masking_fidelity,
    sufficiency,
)
from .groups import GroupSet, NeuronGroup
from .labeling import label_groups
from .patching import patch
from .regularize import BEANRegularizer, find_assemblies

__version__ = "0.2.0"

__all__ = [
    "BEANRegularizer",
    "Circuit",
    "CircuitSettings",
    "GroupConductance",
    "GroupDeconvolution",
    "GroupDeepLift",
    "GroupDeepLiftShap",
    "GroupFeatureAblation",
    "GroupGradient",
    "GroupGradientShap",
    "GroupGuidedBackprop",
    "GroupIntegratedGradients",
    "GroupSet",
    "LayerGroupAblation",
    "LayerGroupConductance",
    "LayerGroupGradientXActivation",
    "LayerGroupInteraction",
    "NeuronGroup",
    "ParameterError",
    "ablate",
    "build_circuit",
    "build_circuits",
    "build_stream_circuit",
    "compare_classes",
    "debug_image",
    "edge_fidelity",
    "faithfulness_curve",
    "find_assemblies",
    "label_groups",
    "layer_activations",
    "masking_fidelity",
    "patch",
    "retain",
    "sufficiency",
]


def __getattr__(name: str) -> object:
    """A former class name (``captum_groups.attr.FORMER_NAMES``): the class, with a
    FutureWarning."""
    if name in FORMER_NAMES:
        warn_deprecated(f"captum_groups.{name}", f"use {FORMER_NAMES[name]} (the same class)")
        return globals()[FORMER_NAMES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

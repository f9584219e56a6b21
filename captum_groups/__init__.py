"""captum-groups: attribution, discovery and visualization for groups of neurons.

The public API is re-exported here; the attribution classes live in
:mod:`captum_groups.attr` and the embedded data and model in
:mod:`captum_groups.datasets`.
"""

from .attr import (
    GroupConductance,
    GroupDeconvolution,
    GroupDeepLift,
    GroupDeepLiftShap,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupGuidedBackprop,
    GroupIntegratedGradients,
)
from .groups import GroupSet, NeuronGroup

__version__ = "0.1.0"

__all__ = [
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
    "NeuronGroup",
]

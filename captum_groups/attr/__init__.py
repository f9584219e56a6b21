"""Captum-compatible attribution classes whose unit is a neuron group.

Each class is the group counterpart of a Captum ``Neuron*`` class: the same
constructor, the same ``attribute`` keywords, ``group`` in place of
``neuron_selector`` (any Captum selector still works), and a leading group
axis on the result when several groups are asked for at once.
"""

from .conductance import GroupConductance
from .deep_lift import GroupDeepLift, GroupDeepLiftShap
from .feature_ablation import GroupFeatureAblation
from .gradient import GroupGradient
from .gradient_shap import GroupGradientShap
from .guided_backprop_deconvnet import GroupDeconvolution, GroupGuidedBackprop
from .integrated_gradients import GroupIntegratedGradients

__all__ = [
    "GroupConductance",
    "GroupDeepLift",
    "GroupDeepLiftShap",
    "GroupDeconvolution",
    "GroupFeatureAblation",
    "GroupGradient",
    "GroupGradientShap",
    "GroupGuidedBackprop",
    "GroupIntegratedGradients",
]

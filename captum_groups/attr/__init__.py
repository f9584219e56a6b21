"""Captum-compatible attribution classes whose unit is a neuron group.

Attribution *from* a group to the inputs: each ``Group*`` class is the group
counterpart of a Captum ``Neuron*`` class, with the same constructor, the same
``attribute`` keywords, ``group`` in place of ``neuron_selector`` (any Captum
selector still works), and a group axis after the batch axis, (N, G, ...),
when several groups are asked for at once (so NoiseTunnel and other wrappers
that assume the batch axis first keep working).

Attribution *to* the groups of a layer, results shaped (N, G):
``LayerGroupConductance`` and ``LayerGroupGradientXActivation`` (a Captum
target or a group of a later layer), ``GroupAblation`` (the causal check), and
``GroupInteraction`` (edge weights between the groups of two layers).
"""

from .conductance import GroupConductance
from .deep_lift import GroupDeepLift, GroupDeepLiftShap
from .feature_ablation import GroupFeatureAblation
from .gradient import GroupGradient
from .gradient_shap import GroupGradientShap
from .group_ablation import GroupAblation
from .guided_backprop_deconvnet import GroupDeconvolution, GroupGuidedBackprop
from .integrated_gradients import GroupIntegratedGradients
from .interaction import GroupInteraction
from .layer_conductance import LayerGroupConductance
from .layer_gradient_x_activation import LayerGroupGradientXActivation

__all__ = [
    "GroupAblation",
    "GroupConductance",
    "GroupDeepLift",
    "GroupDeepLiftShap",
    "GroupDeconvolution",
    "GroupFeatureAblation",
    "GroupGradient",
    "GroupGradientShap",
    "GroupGuidedBackprop",
    "GroupIntegratedGradients",
    "GroupInteraction",
    "LayerGroupConductance",
    "LayerGroupGradientXActivation",
]

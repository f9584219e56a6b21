"""Captum-compatible attribution classes whose unit is a neuron group.

Attribution *from* a group to the inputs: each ``Group*`` class is the group
counterpart of a Captum ``Neuron*`` class, with the same constructor, the same
``attribute`` keywords, ``group`` in place of ``neuron_selector`` (any Captum
selector still works), and a group axis after the batch axis, (N, G, ...),
when several groups are asked for at once. With the batch axis first,
Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work with several
groups too, and ``result[:, g]`` is group ``g``'s attribution.

Attribution *to* the groups of a layer, results shaped (N, G), the
``LayerGroup*`` family: ``LayerGroupConductance`` and
``LayerGroupGradientXActivation`` (a Captum target or a group of a later
layer), ``LayerGroupAblation`` (the causal check), and
``LayerGroupInteraction`` (edge weights between the groups of two layers).
``GroupAblation`` and ``GroupInteraction``, the last two's former names,
still import for one release, with a FutureWarning (``FORMER_NAMES``).

A new method is one short class: derive from :class:`GroupAttribution`
and Captum's own bases, name the Captum algorithm it replays, and pass
``attribute``'s arguments to ``_replay`` (README, "How the attribution
classes are built"; ``tests/attr/test_extending.py``).
"""

from .._validation.deprecation import warn_deprecated
from ._base import GroupArg, GroupAttribution, keeps_model
from .conductance import GroupConductance
from .deep_lift import GroupDeepLift, GroupDeepLiftShap
from .feature_ablation import GroupFeatureAblation
from .gradient import GroupGradient
from .gradient_shap import GroupGradientShap
from .guided_backprop_deconvnet import GroupDeconvolution, GroupGuidedBackprop
from .integrated_gradients import GroupIntegratedGradients
from .layer_ablation import LayerGroupAblation
from .layer_conductance import LayerGroupConductance
from .layer_gradient_x_activation import LayerGroupGradientXActivation
from .layer_interaction import LayerGroupInteraction

FORMER_NAMES = {"GroupAblation": "LayerGroupAblation", "GroupInteraction": "LayerGroupInteraction"}
"""Former class names, still importable for one release with a FutureWarning (the same
classes under their one name)."""


def __getattr__(name: str) -> object:
    """A former class name (``FORMER_NAMES``): the class, with a FutureWarning."""
    if name in FORMER_NAMES:
        warn_deprecated(f"{__name__}.{name}", f"use {FORMER_NAMES[name]} (the same class)")
        return globals()[FORMER_NAMES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GroupArg",
    "GroupAttribution",
    "GroupConductance",
    "GroupDeepLift",
    "GroupDeepLiftShap",
    "GroupDeconvolution",
    "GroupFeatureAblation",
    "GroupGradient",
    "GroupGradientShap",
    "GroupGuidedBackprop",
    "GroupIntegratedGradients",
    "LayerGroupAblation",
    "LayerGroupConductance",
    "LayerGroupGradientXActivation",
    "LayerGroupInteraction",
    "keeps_model",
]

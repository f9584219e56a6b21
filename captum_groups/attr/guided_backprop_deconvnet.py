"""GroupGuidedBackprop and GroupDeconvolution: modified-ReLU backprop of a group."""

from __future__ import annotations

from typing import Any

from captum.attr import Deconvolution, GradientAttribution, GuidedBackprop, NeuronAttribution
from captum.log import log_usage
from torch import nn

from .._model.captum import TensorOrTupleOfTensorsGeneric
from ..groups import Layer
from ._base import GroupArg, GroupAttribution, keeps_model


class _ModifiedReluBackprop(GroupAttribution, NeuronAttribution, GradientAttribution):
    """Backpropagation through ReLUs that Captum's hooks modify (the model's ReLU modules)."""

    def __init__(self, model: nn.Module, layer: Layer, device_ids: list[int] | None = None) -> None:
        super().__init__(model, layer, device_ids)

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Attributions of the group(s) by modified-ReLU backpropagation."""
        return self._replay(
            inputs, group, additional_forward_args, attribute_to_neuron_input, group_batch_size
        )


class GroupGuidedBackprop(_ModifiedReluBackprop, captum_class=GuidedBackprop):
    """Guided backpropagation of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronGuidedBackprop`: only
    positive gradients pass back through the model's ReLU modules. Several
    groups give results shaped (N, G, ...).

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> GroupGuidedBackprop(model, "conv3").attribute(x[:2], NeuronGroup("conv3", [1, 2])).shape
    torch.Size([2, 1, 8, 8])
    """


class GroupDeconvolution(_ModifiedReluBackprop, captum_class=Deconvolution):
    """Deconvolution (Zeiler and Fergus) of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronDeconvolution`:
    gradients pass back through the model's ReLU modules as if through a ReLU
    of the gradient. Several groups give results shaped (N, G, ...).

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> groups = [NeuronGroup("conv3", [1, 2]), NeuronGroup("conv3", [5])]
    >>> GroupDeconvolution(model, "conv3").attribute(x[:2], groups).shape  # (N, G, C, H, W)
    torch.Size([2, 2, 1, 8, 8])
    """

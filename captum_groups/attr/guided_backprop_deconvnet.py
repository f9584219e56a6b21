"""GroupGuidedBackprop and GroupDeconvolution: modified-ReLU backprop of a group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum._utils.typing import TensorOrTupleOfTensorsGeneric
from captum.attr import Deconvolution, GradientAttribution, GuidedBackprop, NeuronAttribution
from captum.log import log_usage
from torch import nn

from ..groups import Layer
from ._base import GroupArg, _GroupAttributionMixin, keeps_model


class _ModifiedReluGroupAttribution(NeuronAttribution, GradientAttribution, _GroupAttributionMixin):
    _algorithm: type[GuidedBackprop] | type[Deconvolution]

    def __init__(self, model: nn.Module, layer: Layer, device_ids: list[int] | None = None) -> None:
        module = self._resolve(model, layer)
        NeuronAttribution.__init__(self, model, module, device_ids)
        GradientAttribution.__init__(self, model)

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
        """Attributions of the group(s) by modified-ReLU backpropagation.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        additional_forward_args : optional
            Extra arguments for the model.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        group_batch_size : int, optional
            Groups per shared pass; bounds memory (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input
        )

        def algorithm(gradient_func: Callable[..., Any]) -> Any:
            method = self._algorithm(self.forward_func)
            method.gradient_func = gradient_func
            return method.attribute.__wrapped__(method, inputs, None, additional_forward_args)

        return self._run_with_gradient_func(
            algorithm, selectors, several, attribute_to_neuron_input, group_batch_size
        )


class GroupGuidedBackprop(_ModifiedReluGroupAttribution):
    """Guided backpropagation of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronGuidedBackprop`: only
    positive gradients pass back through ReLUs.

    Several groups at once (a sequence or a :class:`~captum_groups.GroupSet`)
    add a group axis after the batch axis: the result is shaped (N, G, ...)
    and ``result[:, g]`` is group ``g``'s attribution. With the batch axis
    first, Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work
    with several groups too.

    Parameters
    ----------
    model : nn.Module
        The model (its ReLU modules are hooked for the call).
    layer : nn.Module or str
        The layer of the groups (module or dotted name).
    device_ids : list of int, optional
        Accepted for signature compatibility with Captum.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> GroupGuidedBackprop(model, "conv3").attribute(x[:2], NeuronGroup("conv3", [1, 2])).shape
    torch.Size([2, 1, 8, 8])
    """

    _algorithm = GuidedBackprop


class GroupDeconvolution(_ModifiedReluGroupAttribution):
    """Deconvolution (Zeiler and Fergus) of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronDeconvolution`:
    gradients pass back through ReLUs as if through a ReLU of the gradient.

    Several groups at once (a sequence or a :class:`~captum_groups.GroupSet`)
    add a group axis after the batch axis: the result is shaped (N, G, ...)
    and ``result[:, g]`` is group ``g``'s attribution. With the batch axis
    first, Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work
    with several groups too.

    Parameters
    ----------
    model : nn.Module
        The model (its ReLU modules are hooked for the call).
    layer : nn.Module or str
        The layer of the groups (module or dotted name).
    device_ids : list of int, optional
        Accepted for signature compatibility with Captum.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> GroupDeconvolution(model, "conv3").attribute(x[:2], NeuronGroup("conv3", [1, 2])).shape
    torch.Size([2, 1, 8, 8])
    """

    _algorithm = Deconvolution

"""GroupDeepLift and GroupDeepLiftShap: DeepLIFT attributions of a neuron group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum._utils.typing import BaselineType, TensorOrTupleOfTensorsGeneric
from captum.attr import DeepLift, DeepLiftShap, GradientAttribution, NeuronAttribution
from captum.log import log_usage
from torch import Tensor, nn

from .._hooks import drop_new_attributes
from ..groups import Layer
from ._base import GroupArg, _GroupAttributionMixin, keeps_model

_DEEPLIFT_ATTRIBUTES = ("input", "output", "input_ref")


class GroupDeepLift(NeuronAttribution, GradientAttribution, _GroupAttributionMixin):
    """DeepLIFT (rescale rule) attribution of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronDeepLift`. DeepLIFT's
    multipliers are linear in the quantity being explained, so a group's
    attribution is the weighted sum of its neurons' attributions; all groups
    share one forward pass up to the layer and one vmapped backward pass
    (DeepLIFT's hooks allow one backward pass per forward pass).

    Several groups at once (a sequence or a :class:`~captum_groups.GroupSet`)
    add a group axis after the batch axis: the result is shaped (N, G, ...)
    and ``result[:, g]`` is group ``g``'s attribution. With the batch axis
    first, Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work
    with several groups too.

    Parameters
    ----------
    model : nn.Module
        The model (DeepLIFT needs its modules).
    layer : nn.Module or str
        The layer of the groups (module or dotted name).
    multiply_by_inputs : bool
        Multiply by ``inputs - baselines``, as in Captum.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> dl = GroupDeepLift(model, "relu3")
    >>> dl.attribute(x[:2], NeuronGroup("relu3", [3, 7, 9])).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, model: nn.Module, layer: Layer, multiply_by_inputs: bool = True) -> None:
        module = self._resolve(model, layer)
        NeuronAttribution.__init__(self, model, module)
        GradientAttribution.__init__(self, model)
        self._multiply_by_inputs = multiply_by_inputs

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        baselines: BaselineType = None,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        custom_attribution_func: Callable[..., tuple[Tensor, ...]] | None = None,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """DeepLIFT attributions of the group(s).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        baselines : scalar, Tensor or tuple, optional
            Reference inputs (zeros by default).
        additional_forward_args : optional
            Extra arguments for the model.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        custom_attribution_func : callable, optional
            Combines multipliers, inputs and baselines, as in Captum.
        group_batch_size : int, optional
            Groups per shared pass; bounds memory (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )

        def algorithm(gradient_func: Callable[..., Any]) -> Any:
            dl = DeepLift(self.forward_func, self.multiplies_by_inputs)
            dl.gradient_func = gradient_func
            with drop_new_attributes(self.forward_func, _DEEPLIFT_ATTRIBUTES):
                return dl.attribute.__wrapped__(
                    dl,
                    inputs,
                    baselines,
                    additional_forward_args=additional_forward_args,
                    custom_attribution_func=custom_attribution_func,
                )

        return self._run_with_gradient_func(
            algorithm,
            selectors,
            several,
            attribute_to_neuron_input,
            group_batch_size,
            vectorize=True,
        )

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


class GroupDeepLiftShap(NeuronAttribution, GradientAttribution, _GroupAttributionMixin):
    """DeepLIFT SHAP attribution of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronDeepLiftShap`: DeepLIFT
    averaged over a distribution of baselines.

    Several groups at once (a sequence or a :class:`~captum_groups.GroupSet`)
    add a group axis after the batch axis: the result is shaped (N, G, ...)
    and ``result[:, g]`` is group ``g``'s attribution. With the batch axis
    first, Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work
    with several groups too.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module or str
        The layer of the groups (module or dotted name).
    multiply_by_inputs : bool
        Multiply by ``inputs - baselines``, as in Captum.

    Examples
    --------
    >>> import torch
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> dls = GroupDeepLiftShap(model, "fc1")
    >>> dls.attribute(x[:2], NeuronGroup("fc1", [0, 4]), torch.rand(3, 1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, model: nn.Module, layer: Layer, multiply_by_inputs: bool = True) -> None:
        module = self._resolve(model, layer)
        NeuronAttribution.__init__(self, model, module)
        GradientAttribution.__init__(self, model)
        self._multiply_by_inputs = multiply_by_inputs

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        baselines: TensorOrTupleOfTensorsGeneric | Callable[..., TensorOrTupleOfTensorsGeneric],
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        custom_attribution_func: Callable[..., tuple[Tensor, ...]] | None = None,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """DeepLIFT SHAP attributions of the group(s).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        baselines : Tensor, tuple or callable
            A distribution of reference inputs (at least two), as in Captum.
        additional_forward_args : optional
            Extra arguments for the model.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        custom_attribution_func : callable, optional
            Combines multipliers, inputs and baselines, as in Captum.
        group_batch_size : int, optional
            Groups per shared pass; bounds memory (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )

        def algorithm(gradient_func: Callable[..., Any]) -> Any:
            dl = DeepLiftShap(self.forward_func, self.multiplies_by_inputs)
            dl.gradient_func = gradient_func
            with drop_new_attributes(self.forward_func, _DEEPLIFT_ATTRIBUTES):
                return dl.attribute.__wrapped__(
                    dl,
                    inputs,
                    baselines,
                    additional_forward_args=additional_forward_args,
                    custom_attribution_func=custom_attribution_func,
                )

        return self._run_with_gradient_func(
            algorithm,
            selectors,
            several,
            attribute_to_neuron_input,
            group_batch_size,
            vectorize=True,
        )

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

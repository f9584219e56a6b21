"""GroupDeepLift and GroupDeepLiftShap: DeepLIFT attributions of a neuron group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum.attr import DeepLift, DeepLiftShap, GradientAttribution, NeuronAttribution
from captum.log import log_usage
from torch import Tensor, nn

from .._model.captum import BaselineType, TensorOrTupleOfTensorsGeneric
from ..groups import Layer
from ._base import GroupArg, _MultipliesByInputs, keeps_model


class _DeepLiftFamily(_MultipliesByInputs, NeuronAttribution, GradientAttribution):
    """DeepLIFT's multipliers are linear in the quantity explained, so a group's attribution
    is the weighted sum of its neurons'. DeepLIFT's hooks allow one backward pass per
    forward pass, so all groups of a chunk share one vmapped backward pass."""

    _vectorize = True
    _leaves_attributes = ("input", "output", "input_ref")

    def __init__(self, model: nn.Module, layer: Layer, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, layer, multiply_by_inputs=multiply_by_inputs)


class GroupDeepLift(_DeepLiftFamily, captum_class=DeepLift):
    """DeepLIFT (rescale rule) attribution of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronDeepLift`. All groups
    share one forward pass up to the layer and one vmapped backward pass;
    several groups give results shaped (N, G, ...).
    """

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
        """DeepLIFT attributions of the group(s) against ``baselines``.

        Examples
        --------
        >>> from captum_groups import NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> x, _ = load_digits("test")
        >>> dl = GroupDeepLift(digits_cnn(), "relu3")
        >>> dl.attribute(x[:2], NeuronGroup("relu3", [3, 7, 9])).shape
        torch.Size([2, 1, 8, 8])
        """
        return self._replay(
            inputs,
            group,
            additional_forward_args,
            attribute_to_neuron_input,
            group_batch_size,
            baselines=baselines,
            custom_attribution_func=custom_attribution_func,
        )


class GroupDeepLiftShap(_DeepLiftFamily, captum_class=DeepLiftShap):
    """DeepLIFT SHAP attribution of a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronDeepLiftShap`: DeepLIFT
    averaged over a distribution of baselines. Several groups give results
    shaped (N, G, ...).
    """

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
        """DeepLIFT SHAP attributions: DeepLIFT averaged over a distribution of baselines.

        Parameters
        ----------
        baselines : Tensor, tuple or callable
            A distribution of reference inputs (at least two), as in Captum.

        Examples
        --------
        >>> import torch
        >>> from captum_groups import NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, _) = digits_cnn(), load_digits("test")
        >>> references = torch.rand(3, 1, 8, 8)  # a distribution of baselines
        >>> dls = GroupDeepLiftShap(model, "fc1")
        >>> dls.attribute(x[:2], NeuronGroup("fc1", [0, 4]), references).shape
        torch.Size([2, 1, 8, 8])
        """
        return self._replay(
            inputs,
            group,
            additional_forward_args,
            attribute_to_neuron_input,
            group_batch_size,
            baselines=baselines,
            custom_attribution_func=custom_attribution_func,
        )

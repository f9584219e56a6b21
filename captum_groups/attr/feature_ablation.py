"""GroupFeatureAblation: how ablating input features changes a neuron group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum._utils.typing import BaselineType, TensorOrTupleOfTensorsGeneric
from captum.attr import FeatureAblation, NeuronAttribution, PerturbationAttribution
from captum.log import log_usage

from .._checks import check_positive_int
from ..groups import Layer
from ._base import GroupArg, _GroupAttributionMixin, keeps_model


class GroupFeatureAblation(NeuronAttribution, PerturbationAttribution, _GroupAttributionMixin):
    """Feature ablation for a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronFeatureAblation`: each
    input feature (or feature-mask segment) is replaced by its baseline and
    the change of the group's value is its attribution. Each perturbed batch
    runs the model once, up to the layer, for all groups together.

    Several groups at once (a sequence or a :class:`~captum_groups.GroupSet`)
    add a group axis after the batch axis: the result is shaped (N, G, ...)
    and ``result[:, g]`` is group ``g``'s attribution. With the batch axis
    first, Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work
    with several groups too.

    Parameters
    ----------
    forward_func : callable
        The model.
    layer : nn.Module or str
        The layer of the groups (module or dotted name).
    device_ids : list of int, optional
        Accepted for signature compatibility with Captum.

    Examples
    --------
    >>> import torch
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> mask = torch.arange(4).repeat_interleave(2).repeat(8, 1)[None, None]  # 4 column bands
    >>> fa = GroupFeatureAblation(model, "conv3")
    >>> fa.attribute(x[:2], NeuronGroup("conv3", [0, 1]), feature_mask=mask).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: Layer,
        device_ids: list[int] | None = None,
    ) -> None:
        module = self._resolve(forward_func, layer)
        NeuronAttribution.__init__(self, forward_func, module, device_ids)
        PerturbationAttribution.__init__(self, forward_func)

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        baselines: BaselineType = None,
        additional_forward_args: Any = None,
        feature_mask: TensorOrTupleOfTensorsGeneric | None = None,
        attribute_to_neuron_input: bool = False,
        perturbations_per_eval: int = 1,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Ablation attributions of the group(s).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        baselines : scalar, Tensor or tuple, optional
            Values that ablated features take (zero by default).
        additional_forward_args : optional
            Extra arguments for ``forward_func``.
        feature_mask : Tensor or tuple, optional
            Features with the same mask value are ablated together.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        perturbations_per_eval : int
            Perturbations evaluated per forward pass, as in Captum.
        group_batch_size : int, optional
            Groups per shared pass (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        check_positive_int(perturbations_per_eval, "perturbations_per_eval")
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )

        def algorithm(forward_func: Callable[..., Any]) -> Any:
            ablator = FeatureAblation(forward_func)
            return ablator.attribute.__wrapped__(
                ablator,
                inputs,
                baselines=baselines,
                additional_forward_args=additional_forward_args,
                feature_mask=feature_mask,
                perturbations_per_eval=perturbations_per_eval,
            )

        return self._run_with_forward_func(
            algorithm, selectors, several, attribute_to_neuron_input, group_batch_size
        )

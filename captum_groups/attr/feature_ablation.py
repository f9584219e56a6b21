"""GroupFeatureAblation: how ablating input features changes a neuron group."""

from __future__ import annotations

from typing import Any

from captum.attr import FeatureAblation, NeuronAttribution, PerturbationAttribution
from captum.log import log_usage

from .._model.captum import BaselineType, TensorOrTupleOfTensorsGeneric
from .._validation.checks import check_positive_int
from ._base import GroupArg, GroupAttribution, keeps_model


class GroupFeatureAblation(
    GroupAttribution, NeuronAttribution, PerturbationAttribution, captum_class=FeatureAblation
):
    """Feature ablation for a neuron group's value.

    The group counterpart of :class:`captum.attr.NeuronFeatureAblation`: each
    input feature (or feature-mask segment) is replaced by its baseline and
    the change of the group's value is its attribution. Each perturbed batch
    runs the model once, up to the layer, for all groups together. Several
    groups give results shaped (N, G, ...).
    """

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
        baselines : scalar, Tensor or tuple, optional
            Values that ablated features take (zero by default).
        feature_mask : Tensor or tuple, optional
            Features with the same mask value are ablated together.
        perturbations_per_eval : int
            Perturbations evaluated per forward pass, as in Captum.

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
        check_positive_int(perturbations_per_eval, "perturbations_per_eval")
        return self._replay(
            inputs,
            group,
            additional_forward_args,
            attribute_to_neuron_input,
            group_batch_size,
            baselines=baselines,
            feature_mask=feature_mask,
            perturbations_per_eval=perturbations_per_eval,
        )

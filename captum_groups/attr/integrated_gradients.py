"""GroupIntegratedGradients: integrated gradients of a neuron group."""

from __future__ import annotations

from typing import Any

from captum.attr import GradientAttribution, IntegratedGradients, NeuronAttribution
from captum.log import log_usage

from .._model.captum import BaselineType, TensorOrTupleOfTensorsGeneric
from .._validation.checks import check_integration
from ._base import GroupArg, _MultipliesByInputs, keeps_model


class GroupIntegratedGradients(
    _MultipliesByInputs, NeuronAttribution, GradientAttribution, captum_class=IntegratedGradients
):
    """Integrated gradients of a neuron group's value with respect to the inputs.

    The group counterpart of :class:`captum.attr.NeuronIntegratedGradients`
    (same constructor and keywords, ``group`` in place of
    ``neuron_selector``). Attributions satisfy completeness: per example they
    sum to ``group(x) - group(baseline)`` up to integration error. Several
    groups share each forward pass up to the layer (nothing above it runs)
    and give results shaped (N, G, ...).
    """

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        baselines: BaselineType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        attribute_to_neuron_input: bool = False,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Integrated gradients of the group(s), from ``baselines`` to ``inputs``.

        Examples
        --------
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> from captum_groups import GroupSet
        >>> model, (x, _) = digits_cnn(), load_digits("test")
        >>> groups = GroupSet.from_labels("conv3", [i % 4 for i in range(64)])
        >>> ig = GroupIntegratedGradients(model, "conv3")
        >>> ig.attribute(x[:2], groups, n_steps=16).shape  # (N, G, C, H, W)
        torch.Size([2, 4, 1, 8, 8])
        """
        check_integration(n_steps, method, internal_batch_size)
        return self._replay(
            inputs,
            group,
            additional_forward_args,
            attribute_to_neuron_input,
            group_batch_size,
            baselines=baselines,
            n_steps=n_steps,
            method=method,
            internal_batch_size=internal_batch_size,
        )

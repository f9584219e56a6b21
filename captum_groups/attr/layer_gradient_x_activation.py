"""LayerGroupGradientXActivation: gradient times activation, summed over each group."""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor

from .._model.captum import _format_tensor_into_tuples
from ..groups import GroupsLike
from ._base import _MultipliesByInputs, keeps_model
from ._layer import _LayerGroupAttribution
from ._target import LayerTarget, Target


class LayerGroupGradientXActivation(
    _LayerGroupAttribution, _MultipliesByInputs, LayerAttribution, GradientAttribution
):
    """Gradient x activation of a target, summed over each group of a layer: (N, G).

    The group counterpart of :class:`captum.attr.LayerGradientXActivation`:
    the first-order (linear) estimate of each group's contribution to the
    target, as in Building Blocks of Interpretability (Olah et al., 2018).
    Each group sums its elements' attributions weighted by membership. One
    forward and one backward pass serve all groups. The target is a Captum
    ``target`` or a :class:`~captum_groups.NeuronGroup` of a later layer.

    Parameters
    ----------
    multiply_by_inputs : bool
        Multiply the gradient by the activation (True, Captum's default).
    """

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        groups: GroupsLike,
        target: Target = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict[str, Any] | None = None,
    ) -> Tensor:
        """Gradient x activation per group.

        Returns
        -------
        Tensor
            (N, G) attributions, or (N,) for a single group.

        Examples
        --------
        >>> import numpy as np
        >>> from captum_groups import GroupSet
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, y) = digits_cnn(), load_digits("test")
        >>> groups = GroupSet.from_labels("fc1", np.arange(32) // 8)
        >>> LayerGroupGradientXActivation(model, "fc1").attribute(x[:3], groups, target=y[:3]).shape
        torch.Size([3, 4])
        """
        group_list, several = self._layer_groups(groups)
        inputs_tuple = self._check_inputs(inputs, None)
        spec = LayerTarget(self.forward_func, target, self.layer)
        probe = self._check_layer(
            inputs_tuple,
            additional_forward_args,
            attribute_to_layer_input,
            group_list,
            spec.later_layers(),
        )
        with self._recording(attribute_to_layer_input, require_grad=True) as lower:
            values = spec.evaluate(
                _format_tensor_into_tuples(inputs), additional_forward_args, 1, lower
            )
            captured = lower.output
            (grads,) = torch.autograd.grad(
                torch.unbind(values), captured[:1], **(grad_kwargs or {})
            )
        per_element = grads * captured[0].detach() if self.multiplies_by_inputs else grads
        result = self._aggregate(per_element, self._membership(probe, group_list))
        return self._squeeze(result.detach(), several)

"""GroupConductance: the flow of attribution through a neuron group."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from captum.attr import GradientAttribution, NeuronAttribution
from captum.log import log_usage
from torch import Tensor

from .._model.captum import (
    BaselineType,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _expand_target,
    _format_output,
    _is_tuple,
    _reshape_and_sum,
)
from .._validation.checks import check_integration
from ._base import GroupArg, _MultipliesByInputs, keeps_model
from ._engine import (
    Integral,
    PathPoints,
    Selector,
    batched_vjp,
    flow_weights,
    split_per_group,
)


class GroupConductance(_MultipliesByInputs, NeuronAttribution, GradientAttribution):
    r"""Conductance of each input feature through a neuron group, for a target.

    The conductance of input :math:`x_i` through hidden element :math:`e`
    (Dhamdhere et al. 2018, Captum's :class:`~captum.attr.NeuronConductance`)
    is :math:`(x_i - x'_i) \int_0^1 \frac{\partial F}{\partial y_e}
    \frac{\partial y_e}{\partial x_i} d\alpha`. Conductance is a flow, so
    through a group it is the weighted sum of its neurons' conductances, a
    neuron's conductance being the sum over its positions (only the chosen
    position for a position reduction; see :meth:`~captum_groups.NeuronGroup.membership`).
    Conductances through the groups of a partition add up to the conductance
    through the whole layer. Captum refuses aggregating selectors here; this
    class computes the aggregate exactly. A single element (a group with a
    position reduction) gives Captum's result; other Captum selectors are
    weighted by their derivative, as Captum does.

    All groups share each full forward pass and the backward pass from the
    target to the layer; the passes from the layer to the inputs run batched.
    Several groups give results shaped (N, G, ...).
    """

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        internal_batch_size: int | None = None,
        attribute_to_neuron_input: bool = False,
        grad_kwargs: dict[str, Any] | None = None,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Conductance through the group(s).

        Parameters
        ----------
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute through. Several groups add a group axis after the batch axis.
        baselines : scalar, Tensor or tuple, optional
            Integration start point (zeros by default).
        target : int, tuple, Tensor or list, optional
            The output to explain, as Captum's ``target``.
        grad_kwargs : dict, optional
            Passed to ``torch.autograd.grad`` for the target's gradient.

        Examples
        --------
        >>> from captum_groups import NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, y) = digits_cnn(), load_digits("test")
        >>> cond = GroupConductance(model, "conv3")
        >>> cond.attribute(x[:2], NeuronGroup("conv3", [4, 8]), target=y[:2], n_steps=20).shape
        torch.Size([2, 1, 8, 8])
        """
        check_integration(n_steps, method, internal_batch_size)
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )
        integral = Integral(
            inputs, baselines, additional_forward_args, n_steps, method, internal_batch_size
        )
        use_input, results = attribute_to_neuron_input, []
        for chunk in self._chunks(selectors, group_batch_size):
            step = partial(self._conductance, integral, chunk, target, use_input, grad_kwargs)
            attributions = split_per_group(integral.over(step))
            results.extend(_format_output(_is_tuple(inputs), a) for a in attributions)
        return self._assemble(results, several)

    def _conductance(
        self,
        integral: Integral,
        selectors: Sequence[Selector],
        target: TargetType,
        use_input: bool,
        grad_kwargs: dict[str, Any] | None,
        points: PathPoints,
    ) -> tuple[Tensor, ...]:
        """Conductance through a chunk of groups over one batch of path points: (G, N, ...)."""
        scaled, n_points, num_examples = points.inputs, points.n_points, integral.num_examples
        with self._recording(use_input) as capture:
            # One full forward pass over all points, recording the layer on the way.
            target_rows = _expand_target(target, n_points)
            output = capture.run(
                self.forward_func, scaled, points.additional_forward_args, target_rows
            )
            captured = capture.output
            if output.numel() != output.shape[0]:
                raise ValueError(
                    "target must select one output per example for conductance; the model "
                    f"output selected by target has shape {tuple(output.shape)}"
                )
            # dF/dy: the target's gradient at the layer, shared by all groups.
            target_grads = torch.autograd.grad(
                torch.unbind(output), captured, retain_graph=True, **(grad_kwargs or {})
            )
            # Each group keeps dF/dy on its own elements (its membership weights).
            cotangents = tuple(
                c * g.unsqueeze(0)
                for c, g in zip(flow_weights(captured, selectors), target_grads, strict=True)
            )
            # Back from the layer to the inputs, one pass per group: sum_e dF/dy_e dy_e/dx.
            input_grads = batched_vjp(captured, scaled, cotangents)
        n_groups = len(selectors)
        weights = torch.tensor(points.step_sizes, dtype=scaled[0].dtype, device=scaled[0].device)
        attributions = []
        for grad, inp, base in zip(input_grads, integral.inputs, integral.baselines, strict=True):
            # The integral: each step's gradient times its quadrature weight, summed over steps.
            per_step = grad.reshape(n_groups, n_points, -1) * weights.view(1, n_points, 1)
            total = torch.stack(
                [
                    _reshape_and_sum(per_step[g], n_points, num_examples, tuple(inp.shape[1:]))
                    for g in range(n_groups)
                ]
            )
            # Times (x - x') for global attribution, as Captum's NeuronConductance.
            attributions.append(total * (inp - base) if self.multiplies_by_inputs else total)
        return tuple(attributions)

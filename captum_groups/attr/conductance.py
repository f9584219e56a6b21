"""GroupConductance: the flow of attribution through a neuron group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from captum.attr import GradientAttribution, NeuronAttribution
from captum.log import log_usage
from torch import Tensor

from .._captum import (
    BaselineType,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _expand_target,
    _format_input_baseline,
    _format_output,
    _is_tuple,
    _reshape_and_sum,
    _validate_input,
)
from .._checks import check_integration
from .._hooks import LayerCapture, frozen_parameters, model_of
from ._base import GroupArg, _MultipliesByInputs, keeps_model
from ._engine import (
    Selector,
    batched_vjp,
    flow_weights,
    path_alphas,
    scaled_path,
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
    position for a position reduction; see :meth:`NeuronGroup.membership`).
    Conductances through the groups of a partition add up to the conductance
    through the whole layer. Captum refuses aggregating selectors here; this
    class computes the aggregate exactly. A single element (a group with a
    position reduction) gives Captum's result; other Captum selectors are
    weighted by their derivative, as Captum does.

    All groups share each full forward pass and the backward pass from the
    target to the layer; the passes from the layer to the inputs run batched.
    Several groups give results shaped (N, G, ...).

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> cond = GroupConductance(model, "conv3")
    >>> cond.attribute(x[:2], NeuronGroup("conv3", [4, 8]), target=y[:2], n_steps=20).shape
    torch.Size([2, 1, 8, 8])
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

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        check_integration(n_steps, method, internal_batch_size)
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )
        is_tuple = _is_tuple(inputs)
        formatted_inputs, formatted_baselines = _format_input_baseline(inputs, baselines)
        _validate_input(formatted_inputs, formatted_baselines, n_steps, method)
        num_examples = formatted_inputs[0].shape[0]
        results: list[Any] = []
        for chunk in self._chunks(selectors, group_batch_size):
            kwargs = dict(
                inputs=formatted_inputs,
                selectors=chunk,
                baselines=formatted_baselines,
                target=target,
                additional_forward_args=additional_forward_args,
                method=method,
                attribute_to_neuron_input=attribute_to_neuron_input,
                grad_kwargs=grad_kwargs,
            )
            attrs = self._integrate(
                num_examples, n_steps, internal_batch_size, endpoint=False, **kwargs
            )
            results.extend(_format_output(is_tuple, a) for a in split_per_group(attrs))
        return self._assemble(results, several)

    def _attribute(
        self,
        inputs: tuple[Tensor, ...],
        selectors: Sequence[Selector],
        baselines: tuple[Tensor | int | float, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        attribute_to_neuron_input: bool = False,
        step_sizes_and_alphas: tuple[list[float], list[float]] | None = None,
        grad_kwargs: dict[str, Any] | None = None,
    ) -> tuple[Tensor, ...]:
        """Conductance of a chunk of groups over some integration steps: (G, N, ...)."""
        num_examples = inputs[0].shape[0]
        # The points of the straight path from the baselines to the inputs, stacked step-major.
        step_sizes, alphas = path_alphas(method, n_steps, step_sizes_and_alphas)
        scaled, extra = scaled_path(inputs, baselines, alphas, additional_forward_args)
        model = model_of(self.forward_func, self.layer)
        with (
            torch.enable_grad(),
            frozen_parameters(model),
            LayerCapture(self.layer, attribute_to_neuron_input) as capture,
        ):
            # One full forward pass over all points, recording the layer on the way.
            output = capture.run(self.forward_func, scaled, extra, _expand_target(target, n_steps))
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
        weights = torch.tensor(step_sizes, dtype=scaled[0].dtype, device=scaled[0].device)
        attributions = []
        for grad, inp, base in zip(input_grads, inputs, baselines, strict=True):
            # The integral: each step's gradient times its quadrature weight, summed over steps.
            per_step = grad.reshape(n_groups, n_steps, -1) * weights.view(1, n_steps, 1)
            total = torch.stack(
                [
                    _reshape_and_sum(per_step[g], n_steps, num_examples, tuple(inp.shape[1:]))
                    for g in range(n_groups)
                ]
            )
            # Times (x - x') for global attribution, as Captum's NeuronConductance.
            attributions.append(total * (inp - base) if self.multiplies_by_inputs else total)
        return tuple(attributions)

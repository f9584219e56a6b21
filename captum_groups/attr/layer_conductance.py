"""LayerGroupConductance: how much of a target flows through each group of a layer."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from functools import partial
from typing import Any

import torch
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor, nn

from .._model.captum import BaselineType
from .._model.capture import LayerCapture
from .._model.guards import guarded_call
from .._validation.checks import check_integration
from ..groups import GroupsLike
from ._base import keeps_model
from ._engine import Integral, PathPoints, layer_conductance
from ._layer import _LayerGroupAttribution
from ._target import LayerTarget, Target


class LayerGroupConductance(_LayerGroupAttribution, LayerAttribution, GradientAttribution):
    r"""Conductance of a target through each group of a layer, shaped (N, G).

    Captum's :class:`~captum.attr.LayerConductance` gives, for each element
    :math:`e` of a layer, :math:`\sum_s (y_e(\alpha_{s+1}) - y_e(\alpha_s))
    \, \partial F / \partial y_e(\alpha_s)` along the straight path from
    the baselines to the inputs. Conductance is a flow, so a group's share is
    the sum over its elements, weighted by group membership
    (:meth:`~captum_groups.NeuronGroup.membership`). All groups cost one integrated pass,
    not one per group. When the groups partition the layer, their
    conductances add up to ``F(inputs) - F(baselines)`` (completeness), and
    ``return_convergence_delta`` reports the gap.

    The target ``F`` is a Captum ``target`` on the model output, or a
    :class:`~captum_groups.NeuronGroup` of a later layer (hidden-to-hidden attribution, which
    Captum lacks); then the forward pass stops at that layer.
    """

    _multiply_by_inputs = True  # as Captum's LayerConductance: always global

    def has_convergence_delta(self) -> bool:
        return True

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        groups: GroupsLike,
        baselines: BaselineType = None,
        target: Target = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict[str, Any] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Conductance through each group.

        Parameters
        ----------
        baselines : scalar, Tensor or tuple, optional
            Start of the integration path (zeros by default).
        return_convergence_delta : bool
            Also return, per example, the sum over groups minus
            ``F(inputs) - F(baselines)``.

        Returns
        -------
        Tensor, or (Tensor, Tensor)
            (N, G) conductances ((N,) for a single group), and the delta.

        Examples
        --------
        >>> import numpy as np
        >>> from captum_groups import GroupSet, NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, y) = digits_cnn(), load_digits("test")
        >>> groups = GroupSet.from_labels("conv2", np.arange(32) % 4)
        >>> lgc = LayerGroupConductance(model, "conv2")
        >>> attr, delta = lgc.attribute(x[:5], groups, target=y[:5], return_convergence_delta=True)
        >>> attr.shape, delta.shape
        (torch.Size([5, 4]), torch.Size([5]))
        >>> hidden = lgc.attribute(x[:5], groups, target=NeuronGroup("relu3", [0, 1]))
        >>> hidden.shape
        torch.Size([5, 4])
        """
        check_integration(n_steps, method, internal_batch_size)
        group_list, several = self._layer_groups(groups)
        inputs_tuple = self._check_inputs(inputs, baselines)
        spec = LayerTarget(self.forward_func, target, self.layer)
        probe = self._check_layer(
            inputs_tuple,
            additional_forward_args,
            attribute_to_layer_input,
            group_list,
            spec.later_layers(),
        )
        membership = self._membership(probe, group_list)
        integral = Integral(
            inputs, baselines, additional_forward_args, n_steps, method, internal_batch_size
        )
        step = partial(self._conductance, integral, spec, attribute_to_layer_input, grad_kwargs)
        per_element = integral.over(step, endpoint=True)
        result = self._squeeze(self._aggregate(per_element, membership).detach(), several)
        if not return_convergence_delta:
            return result
        with torch.no_grad():
            gap = spec.evaluate(integral.inputs, additional_forward_args) - spec.evaluate(
                tuple(
                    b.expand_as(i) if isinstance(b, Tensor) else torch.full_like(i, float(b))
                    for i, b in zip(integral.inputs, integral.baselines, strict=True)
                ),
                additional_forward_args,
            )
        total = result.sum(-1) if several else result
        return result, total - gap

    def _conductance(
        self,
        integral: Integral,
        target: LayerTarget,
        use_input: bool,
        grad_kwargs: dict[str, Any] | None,
        points: PathPoints,
    ) -> Tensor:
        """Per-element conductance over one batch of path points, (N, *layer_shape)."""
        with self._recording(use_input) as lower:
            # One forward pass over all points (stopping at a target group's layer).
            values = target.evaluate(
                points.inputs, points.additional_forward_args, points.n_points, lower
            )
            captured = lower.output
            # dF/dy at every point, for every element of the layer.
            (layer_grads,) = torch.autograd.grad(
                torch.unbind(values), captured[:1], **(grad_kwargs or {})
            )
        # sum over steps of (y(a_{s+1}) - y(a_s)) * dF/dy(a_s), per element.
        return layer_conductance(captured[0].detach(), layer_grads, integral.num_examples)


def conductances(
    model: nn.Module,
    groups: Mapping[str, GroupsLike],
    inputs: Tensor,
    target: Target = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> dict[str, Tensor]:
    """:class:`LayerGroupConductance` of the groups of several layers, from one integrated pass.

    Each layer's conductance needs the target's gradient at the layer on the
    path points; one forward pass records every layer and one backward pass
    gives all their gradients, so several layers cost about one. The numbers
    are those of one ``LayerGroupConductance(model, layer).attribute(inputs,
    groups[layer], target=target, ...)`` call per layer, bit for bit (the same
    forward and backward operations, on the same batches of path points).

    Returns
    -------
    dict of str to Tensor
        Layer -> (N, G) conductances of its groups.

    Examples
    --------
    >>> import numpy as np
    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, y) = digits_cnn(), load_digits("test")
    >>> groups = {"relu2": GroupSet.from_labels("relu2", np.arange(32) % 2),
    ...           "relu3": GroupSet.from_labels("relu3", np.arange(64) % 4)}
    >>> both = conductances(model, groups, x[:3], target=3, n_steps=8)
    >>> alone = LayerGroupConductance(model, "relu2").attribute(x[:3], groups["relu2"], target=3,
    ...                                                         n_steps=8)
    >>> bool(torch.equal(both["relu2"], alone)), both["relu3"].shape
    (True, torch.Size([3, 4]))
    """
    check_integration(n_steps, method, internal_batch_size)
    names = list(groups)
    methods = {name: LayerGroupConductance(model, name) for name in names}
    members, spec = [], None
    with guarded_call(model, "conductances", needs_grad=True):
        for name in names:
            attribution = methods[name]
            group_list, _ = attribution._layer_groups(groups[name])
            spec = LayerTarget(model, target, attribution.layer)
            inputs_tuple = attribution._check_inputs(inputs)
            probe = attribution._check_layer(
                inputs_tuple, None, False, group_list, spec.later_layers()
            )
            members.append(attribution._membership(probe, group_list))
        integral = Integral(inputs, None, None, n_steps, method, internal_batch_size)
        layers = [methods[name].layer for name in names]
        step = partial(_conductance_of_layers, model, integral, spec, layers)
        per_element = integral.over(step, endpoint=True)
    return {
        name: LayerGroupConductance._aggregate(values, membership).detach()
        for name, values, membership in zip(names, per_element, members, strict=True)
    }


def _conductance_of_layers(
    model: nn.Module,
    integral: Integral,
    target: LayerTarget,
    layers: list[nn.Module],
    points: PathPoints,
) -> tuple[Tensor, ...]:
    """Per-element conductance of every layer over one batch of path points.

    Only the gradients at the layers are needed, not at the inputs: the points go
    forward without autograd's bookkeeping up to the first layer, whose output starts
    the graph (the same values; the backward pass stops there)."""
    inputs = tuple(point.detach() for point in points.inputs)
    with torch.enable_grad(), ExitStack() as stack:
        captures = [
            stack.enter_context(LayerCapture(layer, require_grad=True, model=model))
            for layer in layers
        ]
        values = target.evaluate(inputs, points.additional_forward_args, points.n_points)
        outputs = [capture.output[0] for capture in captures]
        # dF/dy at every point, for every element of every layer, in one backward pass
        grads = torch.autograd.grad(torch.unbind(values), outputs)
    return tuple(
        layer_conductance(output.detach(), grad, integral.num_examples)
        for output, grad in zip(outputs, grads, strict=True)
    )

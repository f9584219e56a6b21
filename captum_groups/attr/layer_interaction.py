"""LayerGroupInteraction: signed edge weights between the groups of two layers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor
from tqdm import tqdm

from .._model.captum import BaselineType
from .._model.capture import LayerCapture, model_of
from .._model.subnetwork import subnetwork as extract_subnetwork
from .._validation.checks import ParameterError, check_integration, check_positive_int
from ..data import iter_batches
from ..groups import GroupsLike, Layer, NeuronGroup, as_group_list, common_call, resolve_layer
from ._base import inside_noise_tunnel, keeps_model
from ._engine import (
    Integral,
    PathPoints,
    batched_vjp,
    chunks,
    layer_conductance,
    selector_cotangents,
)
from ._layer import _LayerGroupAttribution
from .integrated_gradients import GroupIntegratedGradients


class LayerGroupInteraction(_LayerGroupAttribution, LayerAttribution, GradientAttribution):
    r"""Edge weights between the groups of a lower and an upper layer.

    The weight of the edge from lower group :math:`D` to upper group :math:`U`
    is the conductance of :math:`U`'s value through :math:`D`: Captum's
    :class:`~captum.attr.LayerConductance` of the lower layer with the upper
    group as the target, summed over :math:`D`'s elements (weighted by
    membership). Weights are signed. For a partition of the lower layer they
    add up, per upper group, to ``U(inputs) - U(baselines)`` when every path
    to the upper layer passes through the lower one. This is the group-level
    importance that NeurFlow (Cao et al., ICLR 2025) sums into edges between
    neuron groups, and it answers Captum's missing hidden-to-hidden
    attribution (Captum issue #829).

    All upper groups are computed together: one forward pass per
    integration batch, stopped at the upper layer, then one backward pass per
    upper group that runs only between the two layers. The plain Captum way
    is one full forward and backward pass per upper group.

    :meth:`attribute_from_activations` starts from the lower layer's
    activations instead (given, or cached from an earlier pass) and runs only
    the part of the network between the two layers. This is NeurFlow's
    integrated gradients from zero activations.

    ``GroupInteraction`` is its former name (importable, with a FutureWarning).

    Parameters
    ----------
    lower_layer, upper_layer : nn.Module or str
        The two layers (modules or dotted names); the upper one runs later.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        lower_layer: Layer,
        upper_layer: Layer,
        device_ids: list[int] | None = None,
    ) -> None:
        super().__init__(forward_func, lower_layer, device_ids)
        self.upper_layer = resolve_layer(forward_func, upper_layer, "upper_layer")
        if self.upper_layer is self.layer:
            raise ValueError("upper_layer and lower_layer are the same module; give two layers")

    _multiply_by_inputs = True  # conductance: always global

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...] | Iterable[Any],
        upper_groups: GroupsLike,
        lower_groups: GroupsLike,
        baselines: BaselineType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        group_batch_size: int | None = None,
        average: bool = False,
        attribute_to_layer_input: bool = False,
        progress: bool = True,
    ) -> Tensor:
        """Edge weights from every lower group to every upper group.

        Parameters
        ----------
        inputs : Tensor, tuple of Tensor, or data
            Model inputs, batch first; or data read by the package's one
            rule (a Dataset, a DataLoader or a list of batches; batches that
            are tensors, ``(x, y)`` tuples or dicts, see
            :mod:`captum_groups.data`), which implies ``average=True``.
        upper_groups : NeuronGroup, GroupSet or list of NeuronGroup
            Groups of the upper layer (the targets).
        lower_groups : NeuronGroup, GroupSet or list of NeuronGroup
            Groups of the lower layer (the sources).
        group_batch_size : int, optional
            Upper groups whose gradients are held at once; bounds memory.
        average : bool
            Average the matrix over the examples. The result then has no
            batch axis, so it cannot be wrapped by NoiseTunnel (refused);
            wrap the per-example result and average it afterwards.
        attribute_to_layer_input : bool
            Use the lower layer's input instead of its output.
        progress : bool
            Show a progress bar when ``inputs`` is a data loader.

        Returns
        -------
        Tensor
            (N, G_upper, G_lower), or (G_upper, G_lower) when averaged.

        Examples
        --------
        >>> import numpy as np
        >>> from captum_groups import GroupSet
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, x = digits_cnn(), load_digits("test")[0]
        >>> lower = GroupSet.from_labels("relu2", np.arange(32) % 4)
        >>> upper = GroupSet.from_labels("relu3", np.arange(64) % 3)
        >>> edges = LayerGroupInteraction(model, "relu2", "relu3")
        >>> edges.attribute(x[:6], upper, lower, n_steps=20).shape
        torch.Size([6, 3, 4])
        >>> edges.attribute(x[:6], upper, lower, n_steps=20, average=True).shape
        torch.Size([3, 4])
        """
        if not isinstance(inputs, (Tensor, tuple)):
            return self._average_over(
                inputs,
                upper_groups,
                lower_groups,
                progress,
                baselines=baselines,
                additional_forward_args=additional_forward_args,
                n_steps=n_steps,
                method=method,
                internal_batch_size=internal_batch_size,
                group_batch_size=group_batch_size,
                attribute_to_layer_input=attribute_to_layer_input,
            )
        check_integration(n_steps, method, internal_batch_size)
        check_positive_int(group_batch_size, "group_batch_size", optional=True)
        if average and inside_noise_tunnel():
            raise ValueError(
                "average=True gives one (G_upper, G_lower) matrix without a batch axis, which "
                "NoiseTunnel cannot split into its noisy samples; wrap the per-example result "
                "(average=False) and average it afterwards"
            )
        lower_list, _ = self._layer_groups(lower_groups, "lower_groups")
        upper_list, _ = self._upper_groups(upper_groups)
        inputs_tuple = self._check_inputs(inputs, baselines)
        probe = self._check_layer(
            inputs_tuple,
            additional_forward_args,
            attribute_to_layer_input,
            lower_list,
            [(self.upper_layer, upper_list)],
        )
        integral = Integral(
            inputs, baselines, additional_forward_args, n_steps, method, internal_batch_size
        )
        membership = self._membership(probe, lower_list)
        use_input = attribute_to_layer_input
        step = partial(self._edges, integral, upper_list, membership, use_input, group_batch_size)
        edges = integral.over(step, endpoint=True)
        edges = edges.detach()
        return edges.mean(0) if average else edges

    @keeps_model
    def attribute_from_activations(
        self,
        lower_activations: Tensor,
        upper_groups: GroupsLike,
        lower_groups: GroupsLike,
        baselines: Tensor | float | None = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        group_batch_size: int | None = None,
        average: bool = False,
        subnetwork: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        r"""Edge weights from given (or cached) lower-layer activations: NeurFlow's procedure.

        Integrated gradients of each upper group with respect to the lower
        layer's activations, from ``baselines`` (zero activations by default,
        as in NeurFlow) to ``lower_activations``, summed over each lower
        group: :math:`\sum_{e \in D} (a_e - a'_e) \int_0^1 \partial U /
        \partial a_e \, d\alpha`. Only the part of the network between the two
        layers runs. It is extracted with ``torch.fx``, or given as
        ``subnetwork``. Per upper group the weights add up to
        ``U(a) - U(a')`` over a partition of the lower layer.

        Parameters
        ----------
        lower_activations : Tensor
            The lower layer's output for N examples.
        upper_groups, lower_groups : NeuronGroup, GroupSet or list of NeuronGroup
            Groups of the upper and the lower layer.
        baselines : Tensor or float, optional
            Baseline activations (zero by default).
        group_batch_size : int, optional
            Upper groups per shared pass.
        average : bool
            Average the matrix over the examples.
        subnetwork : callable, optional
            Maps the lower layer's output to the upper layer's output by
            calling the model's modules (for models torch.fx cannot trace).

        Returns
        -------
        Tensor
            As :meth:`attribute` returns: (N, G_upper, G_lower), or (G_upper,
            G_lower) when averaged.

        Examples
        --------
        >>> from captum_groups import GroupSet, NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, _) = digits_cnn(), load_digits("test")
        >>> lower = GroupSet.from_labels("relu2", [channel % 4 for channel in range(32)])
        >>> upper = [NeuronGroup("relu3", [0, 1, 2]), NeuronGroup("relu3", [3, 9])]
        >>> activations = model.relu2(model.conv2(model.relu1(model.conv1(x[:6]))))
        >>> edges = LayerGroupInteraction(model, "relu2", "relu3")
        >>> edges.attribute_from_activations(activations, upper, lower).shape
        torch.Size([6, 2, 4])
        """
        if not isinstance(lower_activations, Tensor):
            raise TypeError("lower_activations must be a tensor (the lower layer's output)")
        upper_list, _ = self._upper_groups(upper_groups)
        lower_list, _ = self._layer_groups(lower_groups, "lower_groups")
        if any(group.call is not None for group in upper_list + lower_list):
            raise ParameterError(
                "call",
                "attribute_from_activations runs the part of the model between the two layers "
                "as a traced subnetwork, which has no runs to choose from; use attribute() for "
                "groups that name a call",
            )
        for group in lower_list:
            group.validate_output(lower_activations)
        model = model_of(self.forward_func, self.layer)
        if subnetwork is None:
            if model is None:
                raise TypeError("forward_func must be an nn.Module to extract the subnetwork")
            subnetwork = extract_subnetwork(model, self.layer, self.upper_layer)
        upper_by_module = [g.replace(layer=self.upper_layer) for g in upper_list]
        attributions = GroupIntegratedGradients(subnetwork, self.upper_layer).attribute(
            lower_activations.detach(),
            upper_by_module,
            baselines=baselines,
            n_steps=n_steps,
            method=method,
            internal_batch_size=internal_batch_size,
            group_batch_size=group_batch_size,
        )
        membership = torch.stack([g.membership(lower_activations) for g in lower_list])
        edges = self._aggregate(attributions, membership)
        return edges.mean(0) if average else edges

    def _upper_groups(self, groups: GroupsLike) -> tuple[list[NeuronGroup], bool]:
        items = as_group_list(groups, "upper_groups")
        model = model_of(self.forward_func, self.layer)
        for group in items:
            if group.resolve(model) is not self.upper_layer:
                raise ValueError(
                    f"upper group {group!r} does not belong to upper_layer; all upper groups "
                    f"must belong to one layer"
                )
        common_call(items)
        return items, not isinstance(groups, NeuronGroup)

    def _average_over(
        self,
        data: Iterable[Any],
        upper_groups: GroupsLike,
        lower_groups: GroupsLike,
        progress: bool,
        **kwargs: Any,
    ) -> Tensor:
        total: Tensor | None = None
        count = 0
        batches = iter_batches(data, parameter="inputs")
        for inputs in tqdm(batches, desc="group interaction", disable=not progress, leave=False):
            edges = self.attribute(inputs, upper_groups, lower_groups, **kwargs)
            total = edges.sum(0) if total is None else total + edges.sum(0)
            count += edges.shape[0]
        if total is None:
            raise ValueError("inputs is an empty data loader")
        return total / count

    def _edges(
        self,
        integral: Integral,
        upper_groups: list[NeuronGroup],
        membership: Tensor,
        use_input: bool,
        group_batch_size: int | None,
        points: PathPoints,
    ) -> Tensor:
        """Edges (N, G_upper, G_lower) over one batch of path points."""
        model = model_of(self.forward_func, self.layer)
        with (
            self._recording(use_input) as lower,
            LayerCapture(
                self.upper_layer,
                stop=True,
                after=lower,
                model=model,
                call=upper_groups[0].call,
            ) as upper,
        ):
            # One forward pass over all points, stopped at the upper layer.
            lower.run(self.forward_func, points.inputs, points.additional_forward_args)
            lower_out, upper_out = lower.output[:1], upper.output
            # d(upper group)/d(upper output): what each upper group sends back.
            cotangents = selector_cotangents(upper_out, upper_groups)
            edges = []
            for chunk in chunks(range(len(upper_groups)), group_batch_size):
                chunk_cotangents = tuple(c[chunk.start : chunk.stop] for c in cotangents)
                last = chunk.stop == len(upper_groups)
                # dU/dy at the lower layer, one backward pass per upper group, between layers.
                (grads,) = batched_vjp(
                    upper_out, lower_out, chunk_cotangents, retain_graph=not last
                )
                # Per lower element: sum over steps of (y(a_{s+1}) - y(a_s)) * dU/dy(a_s).
                activations = lower_out[0].detach()
                per_element = torch.stack(
                    [layer_conductance(activations, g, integral.num_examples) for g in grads]
                )
                # Summed over each lower group's elements: (G_chunk, N, G_lower).
                edges.append(self._aggregate(per_element, membership))
        return torch.cat(edges).transpose(0, 1)

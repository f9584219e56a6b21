"""LayerGroupAblation: how much a target drops when each group of a layer is switched off."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from captum.attr import LayerAttribution, PerturbationAttribution
from captum.log import log_usage
from torch import Tensor, nn

from .._model.captum import _expand_additional_forward_args, _format_additional_forward_args
from .._model.capture import on_this_thread
from ..ablation import (
    Value,
    channel_axis,
    check_value,
    element_mask,
    fill_value,
    mean_activations,
)
from ..groups import GroupsLike, NeuronGroup, layer_name
from ._base import keeps_model
from ._layer import _LayerGroupAttribution
from ._target import LayerTarget, Target


class LayerGroupAblation(_LayerGroupAttribution, LayerAttribution, PerturbationAttribution):
    """Change of a target when each group of a layer is ablated, shaped (N, G).

    For every group, ``F(x) - F(x with the group ablated)``: positive when the
    group raises the target (Captum's feature-ablation sign convention). This
    is the causal counterpart of :class:`LayerGroupConductance`: for a model
    that is linear above the layer and a replacement value equal to the
    baseline's activation, the two agree exactly. All groups of a chunk are
    ablated in one forward pass over a stacked batch.

    ``GroupAblation`` is its former name (importable, with a FutureWarning).
    """

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        groups: GroupsLike,
        target: Target = None,
        additional_forward_args: Any = None,
        value: Value = "zero",
        data: Tensor | Iterable[Any] | None = None,
        group_batch_size: int | None = None,
    ) -> Tensor:
        """Target drop per ablated group.

        Parameters
        ----------
        groups : NeuronGroup, GroupSet or list of NeuronGroup
            Groups of the layer; each is ablated on its own.
        target : int, tuple, Tensor, list or NeuronGroup, optional
            A Captum target on the model output, or a group of a layer that
            runs after this one (an earlier layer is refused: ablating this
            layer could not change it).
        value : {"zero", "mean", "position_mean"}, float or Tensor
            What ablated neurons output, as in :func:`captum_groups.ablate`.
        data : Tensor, Dataset, DataLoader or list of batches, optional
            Examples for ``value="mean"`` or ``"position_mean"`` (read by the package's one
            data rule).

        Returns
        -------
        Tensor
            (N, G), or (N,) for a single group.

        Examples
        --------
        >>> from captum_groups import GroupSet
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, y) = digits_cnn(), load_digits("test")
        >>> groups = GroupSet.from_labels("relu3", [channel // 8 for channel in range(64)])
        >>> LayerGroupAblation(model, "relu3").attribute(x[:4], groups, target=y[:4]).shape
        torch.Size([4, 8])
        """
        group_list, several = self._layer_groups(groups)
        inputs_tuple = self._check_inputs(inputs, None)
        spec = LayerTarget(self.forward_func, target, self.layer)
        self._check_layer(
            inputs_tuple, additional_forward_args, False, group_list, spec.later_layers()
        )
        check_value(value, data)
        if isinstance(value, str) and value in ("mean", "position_mean"):
            model = self.forward_func
            if not isinstance(model, nn.Module):
                raise TypeError("value='mean' needs forward_func to be an nn.Module")
            per_position = value == "position_mean"
            mean = mean_activations(model, {self.layer: group_list}, data, per_position)[self.layer]
        else:
            mean = None
        extra = _format_additional_forward_args(additional_forward_args)
        with torch.no_grad():
            original = spec.evaluate(inputs_tuple, extra)
            drops = []
            for chunk in self._chunks(group_list, group_batch_size):
                ablated = self._ablated_values(inputs_tuple, extra, spec, list(chunk), value, mean)
                drops.append(original.unsqueeze(0) - ablated)
        result = torch.cat(drops).T
        return self._squeeze(result, several)

    def _ablated_values(
        self,
        inputs: tuple[Tensor, ...],
        extra: Any,
        spec: LayerTarget,
        chunk: list[NeuronGroup],
        value: Value,
        mean: Tensor | None,
    ) -> Tensor:
        """Target values with each group of ``chunk`` ablated in its own copy: (K, N)."""
        copies, num_examples = len(chunk), inputs[0].shape[0]
        call, runs = chunk[0].call, [0]

        def hook(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
            runs[0] += 1
            if call is not None and runs[0] - 1 != call:
                return None
            axis = channel_axis(chunk, output, module)
            # each copy's own group, at the elements it selects (as ablate does)
            masks = torch.stack([element_mask([g], output) for g in chunk])
            mask = masks.unsqueeze(1).to(output.dtype)
            fill = fill_value(value, mean, output, axis, layer_name(self.forward_func, module))
            stacked = output.view(copies, num_examples, *output.shape[1:])
            return (stacked * (1 - mask) + fill.unsqueeze(0) * mask).flatten(0, 1)

        stacked_inputs = tuple(torch.cat([t] * copies) for t in inputs)
        stacked_extra = _expand_additional_forward_args(extra, copies) if extra else None
        handle = self.layer.register_forward_hook(on_this_thread(hook))
        try:
            values = spec.evaluate(stacked_inputs, stacked_extra, copies)
        finally:
            handle.remove()
        return values.view(copies, num_examples)

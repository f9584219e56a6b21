"""GroupGradient: the gradient of a neuron group with respect to the inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum._utils.gradient import apply_gradient_requirements, undo_gradient_requirements
from captum._utils.typing import TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, NeuronAttribution
from captum.log import log_usage

from ..groups import Layer
from ._base import GroupArg, _GroupAttributionMixin, keeps_model
from ._engine import group_input_gradients, split_per_group


class GroupGradient(NeuronAttribution, GradientAttribution, _GroupAttributionMixin):
    """Gradient of a neuron group's value with respect to the inputs.

    The group counterpart of :class:`captum.attr.NeuronGradient`, with the
    same constructor and keywords, and ``group`` in place of
    ``neuron_selector``. Any Captum ``neuron_selector`` is accepted too.
    Several groups share one forward pass up to the layer and one batched
    backward pass.

    Several groups at once (a sequence or a :class:`~captum_groups.GroupSet`)
    add a group axis after the batch axis: the result is shaped (N, G, ...)
    and ``result[:, g]`` is group ``g``'s attribution. With the batch axis
    first, Captum's wrappers such as :class:`~captum.attr.NoiseTunnel` work
    with several groups too.

    Parameters
    ----------
    forward_func : callable
        The model (or any function running it).
    layer : nn.Module or str
        The layer whose neurons the groups select; a dotted name is looked up
        in ``forward_func``.
    device_ids : list of int, optional
        Accepted for signature compatibility with Captum.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> attr = GroupGradient(model, "conv2").attribute(x[:4], NeuronGroup("conv2", [0, 5]))
    >>> attr.shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: Layer,
        device_ids: list[int] | None = None,
    ) -> None:
        module = self._resolve(forward_func, layer)
        NeuronAttribution.__init__(self, forward_func, module, device_ids)
        GradientAttribution.__init__(self, forward_func)

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        group: GroupArg,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """Gradients of the group(s) with respect to ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        additional_forward_args : optional
            Extra arguments for ``forward_func``, as in Captum.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        group_batch_size : int, optional
            Groups per forward/backward pass; bounds memory (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input
        )
        is_tuple = _is_tuple(inputs)
        inputs_tuple = _format_tensor_into_tuples(inputs)
        gradient_mask = apply_gradient_requirements(inputs_tuple)
        try:
            results = []
            for chunk in self._chunks(selectors, group_batch_size):
                grads = group_input_gradients(
                    self.forward_func,
                    inputs_tuple,
                    self.layer,
                    chunk,
                    additional_forward_args,
                    attribute_to_neuron_input,
                )
                results.extend(_format_output(is_tuple, g) for g in split_per_group(grads))
        finally:
            undo_gradient_requirements(inputs_tuple, gradient_mask)
        return self._assemble(results, several)

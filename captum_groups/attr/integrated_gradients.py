"""GroupIntegratedGradients: integrated gradients of a neuron group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum._utils.typing import BaselineType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, IntegratedGradients, NeuronAttribution
from captum.log import log_usage

from .._checks import check_method, check_positive_int
from ..groups import Layer
from ._base import GroupArg, _GroupAttributionMixin, keeps_model


class GroupIntegratedGradients(NeuronAttribution, GradientAttribution, _GroupAttributionMixin):
    """Integrated gradients of a neuron group's value with respect to the inputs.

    The group counterpart of :class:`captum.attr.NeuronIntegratedGradients`
    (same constructor and keywords, ``group`` in place of
    ``neuron_selector``). Attributions satisfy completeness: per example they
    sum to ``group(x) - group(baseline)`` up to integration error. Several
    groups share each forward pass up to the layer (nothing above it runs)
    and one batched backward pass per integration batch.

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
    multiply_by_inputs : bool
        Multiply by ``inputs - baselines`` (global attribution), as in Captum.

    Examples
    --------
    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> groups = GroupSet.from_labels("conv3", [i % 4 for i in range(64)])
    >>> ig = GroupIntegratedGradients(model, "conv3")
    >>> ig.attribute(x[:2], groups, n_steps=16).shape  # (N, G, C, H, W)
    torch.Size([2, 4, 1, 8, 8])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: Layer,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        module = self._resolve(forward_func, layer)
        NeuronAttribution.__init__(self, forward_func, module, device_ids)
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = multiply_by_inputs

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
        """Integrated gradients of the group(s).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        baselines : scalar, Tensor or tuple, optional
            Integration start point (zeros by default), as in Captum.
        additional_forward_args : optional
            Extra arguments for ``forward_func``.
        n_steps : int
            Integration steps.
        method : str
            Captum's approximation method (``"gausslegendre"``, ``"riemann_*"``).
        internal_batch_size : int, optional
            Examples x steps evaluated per forward pass, as in Captum.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        group_batch_size : int, optional
            Groups per shared pass; bounds memory (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        check_positive_int(n_steps, "n_steps")
        check_method(method)
        check_positive_int(internal_batch_size, "internal_batch_size", optional=True)
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )

        def algorithm(gradient_func: Callable[..., Any]) -> Any:
            ig = IntegratedGradients(self.forward_func, self.multiplies_by_inputs)
            ig.gradient_func = gradient_func
            return ig.attribute.__wrapped__(
                ig,
                inputs,
                baselines,
                additional_forward_args=additional_forward_args,
                n_steps=n_steps,
                method=method,
                internal_batch_size=internal_batch_size,
            )

        return self._run_with_gradient_func(
            algorithm, selectors, several, attribute_to_neuron_input, group_batch_size
        )

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

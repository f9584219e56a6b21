"""GroupGradientShap: GradientSHAP of a neuron group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum._utils.typing import TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, GradientShap, NeuronAttribution
from captum.log import log_usage

from .._checks import check_finite, check_positive_int
from ..groups import Layer
from ._base import GroupArg, _GroupAttributionMixin, keeps_model


class GroupGradientShap(NeuronAttribution, GradientAttribution, _GroupAttributionMixin):
    """GradientSHAP of a neuron group's value with respect to the inputs.

    The group counterpart of :class:`captum.attr.NeuronGradientShap`. The
    random baselines, noise and interpolation points are drawn once per call
    and shared by all groups, exactly as one Captum call per group with the
    same seed would draw them.

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
        Multiply by ``inputs - baselines``, as in Captum.

    Examples
    --------
    >>> import torch
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> gs = GroupGradientShap(model, "fc1")
    >>> gs.attribute(x[:3], NeuronGroup("fc1", [1, 2]), torch.zeros(5, 1, 8, 8)).shape
    torch.Size([3, 1, 8, 8])
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
        baselines: TensorOrTupleOfTensorsGeneric | Callable[..., TensorOrTupleOfTensorsGeneric],
        n_samples: int = 5,
        stdevs: float = 0.0,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        group_batch_size: int | None = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        """GradientSHAP of the group(s).

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs, batch first.
        group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
            What to attribute. Several groups add a group axis after the batch axis.
        baselines : Tensor, tuple or callable
            The baseline distribution to sample from, as in Captum.
        n_samples : int
            Random samples per input.
        stdevs : float
            Standard deviation of the Gaussian noise added to each sample.
        additional_forward_args : optional
            Extra arguments for ``forward_func``.
        attribute_to_neuron_input : bool
            Select the groups from the layer's input instead of its output.
        group_batch_size : int, optional
            Groups per shared pass; bounds memory (all at once if None).

        Returns
        -------
        Tensor or tuple of Tensor
            Shaped like ``inputs``; (N, G, *inputs.shape[1:]) for several groups.
        """
        check_positive_int(n_samples, "n_samples")
        check_finite(stdevs, "stdevs")
        selectors, several = self._prepare(
            inputs, group, additional_forward_args, attribute_to_neuron_input, baselines
        )

        def algorithm(gradient_func: Callable[..., Any]) -> Any:
            gs = GradientShap(self.forward_func, self.multiplies_by_inputs)
            gs.gradient_func = gradient_func
            return gs.attribute.__wrapped__(
                gs,
                inputs,
                baselines,
                n_samples=n_samples,
                stdevs=stdevs,
                additional_forward_args=additional_forward_args,
            )

        return self._run_with_gradient_func(
            algorithm, selectors, several, attribute_to_neuron_input, group_batch_size
        )

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

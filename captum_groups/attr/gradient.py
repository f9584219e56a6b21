"""GroupGradient: the gradient of a neuron group with respect to the inputs."""

from __future__ import annotations

from typing import Any

from captum.attr import GradientAttribution, NeuronAttribution, Saliency
from captum.log import log_usage

from .._model.captum import TensorOrTupleOfTensorsGeneric
from ._base import GroupArg, GroupAttribution, keeps_model


class GroupGradient(
    GroupAttribution, NeuronAttribution, GradientAttribution, captum_class=Saliency
):
    """Gradient of a neuron group's value with respect to the inputs.

    The group counterpart of :class:`captum.attr.NeuronGradient`, with the
    same constructor and keywords, and ``group`` in place of
    ``neuron_selector``. Any Captum ``neuron_selector`` is accepted too.
    Several groups share one forward pass up to the layer and give results
    shaped (N, G, ...), so ``result[:, g]`` is group ``g``'s.
    """

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

        Examples
        --------
        >>> from captum_groups import NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, _) = digits_cnn(), load_digits("test")
        >>> attr = GroupGradient(model, "conv2").attribute(x[:4], NeuronGroup("conv2", [0, 5]))
        >>> attr.shape
        torch.Size([4, 1, 8, 8])
        """
        # Saliency without abs: the plain gradient
        return self._replay(
            inputs,
            group,
            additional_forward_args,
            attribute_to_neuron_input,
            group_batch_size,
            abs=False,
        )

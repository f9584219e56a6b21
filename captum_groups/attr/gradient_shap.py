"""GroupGradientShap: GradientSHAP of a neuron group.

This file is the pattern for a new method that reuses a Captum algorithm:
name the algorithm in ``_captum_class``, give ``attribute`` Captum's
signature with ``group`` in place of ``neuron_selector``, describe what is
the method's own, and hand everything to ``_replay``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum.attr import GradientAttribution, GradientShap, NeuronAttribution
from captum.log import log_usage

from .._model.captum import TensorOrTupleOfTensorsGeneric
from .._validation.checks import check_finite, check_positive_int
from ._base import GroupArg, _MultipliesByInputs, keeps_model


class GroupGradientShap(
    _MultipliesByInputs, NeuronAttribution, GradientAttribution, captum_class=GradientShap
):
    """GradientSHAP of a neuron group's value with respect to the inputs.

    The group counterpart of :class:`captum.attr.NeuronGradientShap`. The
    random baselines, noise and interpolation points are drawn once per call
    and shared by all groups, exactly as one Captum call per group with the
    same seed would draw them. Several groups give results shaped (N, G, ...).
    """

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
        baselines : Tensor, tuple or callable
            The baseline distribution to sample from, as in Captum.
        n_samples : int
            Random samples per input.
        stdevs : float
            Standard deviation of the Gaussian noise added to each sample.

        Examples
        --------
        >>> from captum_groups import NeuronGroup
        >>> from captum_groups.datasets import digits_cnn, load_digits
        >>> model, (x, _) = digits_cnn(), load_digits("test")
        >>> gs = GroupGradientShap(model, "fc1")
        >>> references = x[10:15]  # other digits as the baseline distribution
        >>> gs.attribute(x[:3], NeuronGroup("fc1", [1, 2]), references).shape
        torch.Size([3, 1, 8, 8])
        """
        check_positive_int(n_samples, "n_samples")
        check_finite(stdevs, "stdevs")
        return self._replay(
            inputs,
            group,
            additional_forward_args,
            attribute_to_neuron_input,
            group_batch_size,
            baselines=baselines,
            n_samples=n_samples,
            stdevs=stdevs,
        )

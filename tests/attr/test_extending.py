"""A tenth attribution method is one short class: this file writes one and checks it against
Captum. (The class below is the whole of what a new file under ``attr/`` would hold.)"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import GradientAttribution, InputXGradient, NeuronAttribution, NeuronGradient
from captum.log import log_usage

from captum_groups import (
    GroupConductance,
    GroupDeconvolution,
    GroupDeepLift,
    GroupDeepLiftShap,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupGuidedBackprop,
    GroupIntegratedGradients,
    GroupSet,
    NeuronGroup,
)
from captum_groups.attr import GroupArg, GroupAttribution, keeps_model


class GroupInputXGradient(
    GroupAttribution, NeuronAttribution, GradientAttribution, captum_class=InputXGradient
):
    """Input x gradient of a neuron group's value (Captum's ``InputXGradient`` per group)."""

    @log_usage()
    @keeps_model
    def attribute(
        self,
        inputs: torch.Tensor,
        group: GroupArg,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        group_batch_size: int | None = None,
    ) -> torch.Tensor:
        """Input x gradient of the group(s)."""
        return self._replay(
            inputs, group, additional_forward_args, attribute_to_neuron_input, group_batch_size
        )


def test_a_tenth_method_is_one_short_class_and_matches_captum(digits_model64, digits_test):
    x = digits_test[0][:4].double()
    groups = GroupSet.from_labels("relu3", torch.arange(64) % 3)
    ours = GroupInputXGradient(digits_model64, "relu3").attribute(x, groups)
    assert ours.shape == (4, 3, 1, 8, 8)
    for g, group in enumerate(groups):
        gradient = NeuronGradient(digits_model64, digits_model64.relu3).attribute(x, group)
        torch.testing.assert_close(ours[:, g], x * gradient)
    lines = inspect.getsource(GroupInputXGradient).splitlines()
    assert len(lines) < 20


def test_the_new_method_gets_the_shared_documentation():
    doc = GroupInputXGradient.attribute.__doc__
    for parameter in ("inputs", "group", "additional_forward_args", "group_batch_size"):
        assert f"\n{parameter} : " in doc
    assert "Returns\n-------" in doc
    assert "forward_func : callable" in GroupInputXGradient.__doc__


def test_the_new_method_keeps_the_model_and_works_inside_noise_tunnel(digits_model, digits_test):
    from captum.attr import NoiseTunnel

    x = digits_test[0][:2]
    group = NeuronGroup("relu3", [1, 2])
    torch.manual_seed(0)
    tunnel = NoiseTunnel(GroupInputXGradient(digits_model, "relu3"))
    smoothed = tunnel.attribute(x, nt_samples=3, stdevs=0.1, group=group)
    assert smoothed.shape == x.shape and not digits_model.relu3._forward_hooks


REFERENCES = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))

NINE = {
    # class: (positional arguments after group, the same as keywords)
    GroupGradient: ((), {}),
    GroupIntegratedGradients: ((None, None, 8), {"n_steps": 8}),
    GroupConductance: ((None, 3, None, 8), {"target": 3, "n_steps": 8}),
    GroupDeepLift: ((None,), {"baselines": None}),
    GroupDeepLiftShap: ((REFERENCES,), {"baselines": REFERENCES}),
    GroupGradientShap: ((REFERENCES, 3), {"baselines": REFERENCES, "n_samples": 3}),
    GroupGuidedBackprop: ((), {}),
    GroupDeconvolution: ((), {}),
    GroupFeatureAblation: ((0.0,), {"baselines": 0.0}),
}


def seed() -> None:
    """Seed the draws of a random method (Captum's GradientShap samples baselines with NumPy)."""
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (Captum draws from the global NumPy generator)


@pytest.mark.parametrize("parent", list(NINE), ids=lambda cls: cls.__name__)
def test_a_user_subclass_that_overrides_attribute_gives_the_parents_result(
    parent, digits_model, digits_test
):
    """As one subclasses Captum's NeuronGradient: override ``attribute``, call ``super()``."""

    class Scaled(parent):
        def attribute(self, inputs, group, *args, scale=1.0, **kwargs):
            return scale * super().attribute(inputs, group, *args, **kwargs)

    x, group = digits_test[0][:3], NeuronGroup("relu3", [1, 4, 9])
    positional, keywords = NINE[parent]
    seed()
    expected = parent(digits_model, "relu3").attribute(x, group, **keywords)
    for args, kwargs in ((positional, {}), ((), keywords)):
        seed()
        mine = Scaled(digits_model, "relu3").attribute(x, group, *args, scale=2.0, **kwargs)
        torch.testing.assert_close(mine, 2.0 * expected)
    assert not digits_model.relu3._forward_hooks

"""A tenth attribution method is one short class: this file writes one and checks it against
Captum. (The class below is the whole of what a new file under ``attr/`` would hold.)"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from captum.attr import GradientAttribution, InputXGradient, NeuronAttribution, NeuronGradient
from captum.log import log_usage

from captum_groups import GroupSet, NeuronGroup
from captum_groups._captum import TensorOrTupleOfTensorsGeneric
from captum_groups.attr._base import GroupArg, _GroupAttribution, keeps_model


class GroupInputXGradient(
    _GroupAttribution, NeuronAttribution, GradientAttribution, captum_class=InputXGradient
):
    """Input x gradient of a neuron group's value (Captum's ``InputXGradient`` per group)."""

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
        """Input x gradient of the group(s)."""
        return self._replay(locals())


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

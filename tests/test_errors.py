"""Bad input gets a clear error that names the parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_groups import GroupSet, NeuronGroup
from captum_groups.attr import GroupConductance, GroupGradient, GroupIntegratedGradients

from .conftest import assert_same_state, model_state


@pytest.fixture
def x(digits_test):
    return digits_test[0][:2]


def test_unknown_layer_name(digits_model):
    with pytest.raises(ValueError, match=r"layer='conv9' is not a submodule.*conv1"):
        GroupGradient(digits_model, "conv9")


def test_layer_name_needs_a_module_forward():
    with pytest.raises(TypeError, match="layer='fc' is a name"):
        GroupGradient(lambda x: x, "fc")


def test_index_out_of_range(digits_model, x):
    with pytest.raises(ValueError, match="indices out of range.*16 neurons"):
        GroupGradient(digits_model, "conv1").attribute(x, NeuronGroup("conv1", [3, 16]))


def test_captum_index_out_of_range(digits_model, x):
    with pytest.raises(ValueError, match="group index .* out of range"):
        GroupGradient(digits_model, "conv1").attribute(x, (16, 0, 0))


def test_empty_group():
    with pytest.raises(ValueError, match="indices must name at least one neuron"):
        NeuronGroup("conv1", [])


def test_empty_group_sequence(digits_model, x):
    with pytest.raises(ValueError, match="group is an empty sequence"):
        GroupGradient(digits_model, "conv1").attribute(x, [])


def test_duplicate_indices():
    with pytest.raises(ValueError, match=r"indices must not repeat.*\[2\]"):
        NeuronGroup("conv1", [1, 2, 2])


def test_negative_indices():
    with pytest.raises(ValueError, match="indices must be non-negative"):
        NeuronGroup("conv1", [-1])


def test_weights_of_wrong_length():
    with pytest.raises(ValueError, match="weights must have one entry per index: got 1"):
        NeuronGroup("conv1", [0, 1], weights=[1.0])


def test_non_finite_weights():
    with pytest.raises(ValueError, match="weights must be finite"):
        NeuronGroup("conv1", [0], weights=[float("nan")])


def test_bad_reduction_and_dim():
    with pytest.raises(ValueError, match="reduction must be one of"):
        NeuronGroup("conv1", [0], reduction="median")
    with pytest.raises(ValueError, match="dim must be a non-zero integer"):
        NeuronGroup("conv1", [0], dim=0)


def test_position_that_does_not_fit(digits_model, x):
    with pytest.raises(ValueError, match="reduction position"):
        GroupGradient(digits_model, "conv3").attribute(
            x, NeuronGroup("conv3", [0], reduction=(5, 0))
        )


def test_groups_of_different_layers_in_one_call(digits_model, x):
    groups = [NeuronGroup("conv2", [0]), NeuronGroup("conv3", [0])]
    with pytest.raises(ValueError, match="belongs to layer 'conv3'.*attribution is for layer"):
        GroupGradient(digits_model, "conv2").attribute(x, groups)


def test_group_set_rejects_mixed_layers():
    with pytest.raises(ValueError, match="groups must all belong to one layer"):
        GroupSet([NeuronGroup("conv2", [0]), NeuronGroup("conv3", [0])])


def test_group_of_wrong_type(digits_model, x):
    with pytest.raises(TypeError, match="group must be a NeuronGroup"):
        GroupGradient(digits_model, "conv2").attribute(x, "conv2")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(bad, digits_model, x):
    x = x.clone()
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="inputs contain NaN or infinite"):
        GroupGradient(digits_model, "conv2").attribute(x, NeuronGroup("conv2", [0]))


def test_non_finite_baselines(digits_model, x):
    with pytest.raises(ValueError, match="baselines contain NaN"):
        GroupIntegratedGradients(digits_model, "conv2").attribute(
            x, NeuronGroup("conv2", [0]), baselines=torch.full_like(x, float("nan"))
        )


def test_model_and_inputs_on_different_devices(digits_model, x):
    model = digits_model.to("meta")
    with pytest.raises(
        ValueError, match="inputs are on cpu but the model's parameters are on meta"
    ):
        GroupGradient(model, "conv2").attribute(x, NeuronGroup("conv2", [0]))


def test_layer_that_runs_twice(resnet18):
    """torchvision's BasicBlock calls its ReLU twice: ambiguous, so refuse clearly."""
    before = model_state(resnet18)
    with pytest.raises(ValueError, match="runs 2 times in one forward pass"):
        GroupGradient(resnet18, "layer1.0.relu").attribute(
            torch.randn(1, 3, 32, 32), NeuronGroup("layer1.0.relu", [0])
        )
    assert_same_state(before, model_state(resnet18))


def test_layer_not_in_forward_pass(x):
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(64, 3)
            self.unused = nn.Linear(3, 3)

        def forward(self, inputs):
            return self.used(inputs.flatten(1))

    with pytest.raises(ValueError, match="did not run"):
        GroupGradient(WithUnused(), "unused").attribute(x, NeuronGroup("unused", [0]))


def test_bad_group_batch_size(digits_model, x):
    with pytest.raises(ValueError, match="group_batch_size must be a positive int"):
        GroupGradient(digits_model, "conv2").attribute(
            x, [NeuronGroup("conv2", [0])], group_batch_size=0
        )


def test_conductance_target_must_select_one_output(digits_model, x):
    with pytest.raises(ValueError, match="target must select one output per example"):
        GroupConductance(digits_model, "conv2").attribute(x, NeuronGroup("conv2", [0]), n_steps=2)


def test_data_parallel_is_refused(digits_model):
    with pytest.raises(ValueError, match="forward_func is an nn.DataParallel"):
        GroupGradient(nn.DataParallel(digits_model), "module.conv2")

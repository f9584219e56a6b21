"""Properties of group attributions that hold independently of any implementation."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from captum.attr import (
    GradientAttribution,
    NeuronAttribution,
    NeuronIntegratedGradients,
    NoiseTunnel,
    PerturbationAttribution,
)
from captum.attr import visualization as viz
from torch import nn

import captum_groups
from captum_groups import GroupSet, NeuronGroup
from captum_groups.attr import (
    GroupConductance,
    GroupFeatureAblation,
    GroupGradient,
    GroupIntegratedGradients,
)

from .._helpers import NEURON_CLASSES, captured_output


def _layer_value(model, layer, x, group):
    with torch.no_grad():
        return group(captured_output(model, layer, x))


def test_integrated_gradients_complete_on_digits(digits_model, digits_test):
    """Attributions sum to group(x) - group(baseline) for every group of a partition."""
    x = digits_test[0][:4]
    groups = GroupSet.from_labels("conv2", np.arange(32) % 5)
    attrs = GroupIntegratedGradients(digits_model, "conv2").attribute(x, groups, n_steps=300)
    for g, group in enumerate(groups):
        expected = _layer_value(digits_model, "conv2", x, group) - _layer_value(
            digits_model, "conv2", torch.zeros_like(x), group
        )
        total = attrs[:, g].flatten(1).sum(1)
        torch.testing.assert_close(total, expected, rtol=5e-3, atol=5e-3)


def test_integrated_gradients_complete_on_resnet18(resnet18):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    group = NeuronGroup("layer3.1", [0, 10, 20, 30], weights=[1, 2, -1, 0.5])
    attrs = GroupIntegratedGradients(resnet18, "layer3.1").attribute(x, group, n_steps=200)
    expected = _layer_value(resnet18, "layer3.1", x, group) - _layer_value(
        resnet18, "layer3.1", torch.zeros_like(x), group
    )
    torch.testing.assert_close(attrs.flatten(1).sum(1), expected, rtol=2e-2, atol=2e-2)


def test_conductance_through_a_partition_sums_to_target_difference(digits_model64, digits_test):
    """Conductance through all groups of a partition of a layer = F(x) - F(baseline)."""
    x = digits_test[0][:3].double()
    groups = GroupSet.from_labels("relu3", np.arange(64) % 3)
    target = 4
    attrs = GroupConductance(digits_model64, "relu3").attribute(
        x, groups, target=target, n_steps=400
    )
    with torch.no_grad():
        expected = digits_model64(x)[:, target] - digits_model64(torch.zeros_like(x))[:, target]
    torch.testing.assert_close(attrs.sum(1).flatten(1).sum(1), expected, rtol=5e-3, atol=5e-3)


def test_analytic_gradient_on_a_hand_built_network():
    """y = W x; group = 2*y0 - y2 has gradient 2*W[0] - W[2]."""
    layer = nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(12.0).reshape(4, 3))
    model = nn.Sequential(layer, nn.Linear(4, 1))
    x = torch.randn(5, 3)
    group = NeuronGroup("0", [0, 2], weights=[2.0, -1.0])
    grad = GroupGradient(model, "0").attribute(x, group)
    expected = (2 * layer.weight[0] - layer.weight[2]).detach().expand(5, 3)
    torch.testing.assert_close(grad, expected)


def test_feature_ablation_on_a_hand_built_network():
    """For a linear layer, ablating input i changes the group by -w_group . W[:, i] x_i."""
    layer = nn.Linear(3, 2, bias=True)
    model = nn.Sequential(layer, nn.ReLU())
    x = torch.tensor([[1.0, -2.0, 0.5]])
    group = NeuronGroup("0", [0, 1], weights=[1.0, 3.0])
    attr = GroupFeatureAblation(model, "0").attribute(x, group)
    direction = layer.weight[0] + 3 * layer.weight[1]
    torch.testing.assert_close(attr, (direction * x).detach())


def test_noise_tunnel_wraps_a_group_class(digits_model, digits_test):
    x = digits_test[0][:2]
    group = NeuronGroup("conv3", [0, 3, 5])
    torch.manual_seed(0)
    ours = NoiseTunnel(GroupIntegratedGradients(digits_model, "conv3")).attribute(
        x, nt_type="smoothgrad", nt_samples=3, stdevs=0.1, group=group, n_steps=8
    )
    torch.manual_seed(0)
    ref = NoiseTunnel(NeuronIntegratedGradients(digits_model, digits_model.conv3)).attribute(
        x, nt_type="smoothgrad", nt_samples=3, stdevs=0.1, neuron_selector=group, n_steps=8
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_visualize_image_attr_draws_a_group_attribution(digits_model, digits_test):
    x = digits_test[0][:1]
    attr = GroupIntegratedGradients(digits_model, "conv2").attribute(
        x, NeuronGroup("conv2", [1, 2]), n_steps=8
    )
    figure, axis = viz.visualize_image_attr(
        attr[0].permute(1, 2, 0).numpy(),
        x[0].permute(1, 2, 0).numpy(),
        method="blended_heat_map",
        sign="all",
        use_pyplot=False,
    )
    assert figure is not None and axis is not None
    matplotlib.pyplot.close(figure)


def test_classes_are_captum_attributions(digits_model):
    for name in NEURON_CLASSES:
        cls = getattr(captum_groups.attr, name)
        instance = cls(digits_model, "conv1")
        assert isinstance(instance, NeuronAttribution)
        family = PerturbationAttribution if "Ablation" in name else GradientAttribution
        assert isinstance(instance, family)
        assert instance.layer is digits_model.conv1


def test_tuple_inputs_and_additional_forward_args():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(2, 4)
            self.act = nn.Tanh()

        def forward(self, x1, x2, scale):
            return self.act(self.a(x1) + scale * self.b(x2))

    model = TwoInputs()
    x1, x2 = torch.randn(4, 3), torch.randn(4, 2)
    groups = [NeuronGroup("act", [0, 1]), NeuronGroup("act", [3])]
    ours = GroupIntegratedGradients(model, "act").attribute(
        (x1, x2), groups, additional_forward_args=(2.0,), n_steps=10
    )
    assert isinstance(ours, tuple) and ours[0].shape == (4, 2, 3) and ours[1].shape == (4, 2, 2)
    for g, group in enumerate(groups):
        ref = NeuronIntegratedGradients(model, model.act).attribute(
            (x1, x2), group, additional_forward_args=(2.0,), n_steps=10
        )
        torch.testing.assert_close(ours[0][:, g], ref[0])
        torch.testing.assert_close(ours[1][:, g], ref[1])


def test_sequence_outputs_with_channel_last_dim():
    model = nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 2))
    x = torch.randn(3, 7, 5)
    group = NeuronGroup("1", [0, 4], dim=-1, reduction="mean")
    ours = GroupIntegratedGradients(model, "1").attribute(x, group, n_steps=12)
    ref = NeuronIntegratedGradients(model, model[1]).attribute(x, group, n_steps=12)
    torch.testing.assert_close(ours, ref)
    assert group(torch.ones(3, 7, 6)).tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_inputs(dtype, digits_test):
    model = captum_groups.datasets.digits_cnn().to(dtype)
    x = digits_test[0][:2].to(dtype)
    attr = GroupGradient(model, "conv1").attribute(x, NeuronGroup("conv1", [0]))
    assert attr.dtype == dtype


def test_attributions_are_detached(digits_model, digits_test):
    attr = captum_groups.attr.GroupDeepLift(digits_model, "conv2").attribute(
        digits_test[0][:2], NeuronGroup("conv2", [0, 1])
    )
    assert not attr.requires_grad and attr.grad_fn is None

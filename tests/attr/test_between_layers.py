"""Attribution to the groups of a layer, edges between layers, and ablation.

Independent truths: values worked out by hand on a small network with known
weights, Captum's own LayerConductance / LayerGradientXActivation (with a
callable forward for hidden targets), and completeness.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerConductance, LayerGradientXActivation
from torch import nn

from captum_groups import GroupSet, NeuronGroup, ablate, retain
from captum_groups.attr import (
    LayerGroupAblation,
    LayerGroupConductance,
    LayerGroupGradientXActivation,
    LayerGroupInteraction,
)

from .._helpers import assert_same_state, captured_output, model_state, value_of


class HandBuilt(nn.Module):
    """x (3) -> lin1 (4, ReLU) -> lin2 (2): known weights, linear above the ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(3, 4)
        self.relu = nn.ReLU()
        self.lin2 = nn.Linear(4, 2)
        with torch.no_grad():
            self.lin1.weight.copy_(
                torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
            )
            self.lin1.bias.copy_(torch.tensor([0.5, 0.0, -1.0, 0.25]))
            self.lin2.weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.5], [0.0, 3.0, -1.0, 1.0]]))
            self.lin2.bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, x):
        return self.lin2(self.relu(self.lin1(x)))


@pytest.fixture
def hand():
    return HandBuilt().double().eval()


X = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]], dtype=torch.float64)
LOWER = GroupSet([NeuronGroup("relu", [0, 1]), NeuronGroup("relu", [2, 3])])
UPPER = GroupSet([NeuronGroup("lin2", [0]), NeuronGroup("lin2", [1])])


def _by_hand():
    """Relu activations at x and at the zero baseline, worked out from the weights."""
    # example 0: lin1 = [1.5, 4, 2, 1.25] -> relu [1.5, 4, 2, 1.25]
    # example 1: lin1 = [1.0, -2, -1.5, -1.75] -> relu [1, 0, 0, 0]
    at_x = torch.tensor([[1.5, 4.0, 2.0, 1.25], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    at_zero = torch.tensor([0.5, 0.0, 0.0, 0.25], dtype=torch.float64)  # relu(b1)
    w2 = torch.tensor([[1.0, -1.0, 2.0, 0.5], [0.0, 3.0, -1.0, 1.0]], dtype=torch.float64)
    return at_x, at_zero, w2


def test_edges_and_conductance_equal_hand_values(hand):
    at_x, at_zero, w2 = _by_hand()
    # Above the ReLU the network is linear: conductance of element j for output u
    # is w2[u, j] * (relu_j(x) - relu_j(0)), exactly.
    per_element = w2[None] * (at_x - at_zero)[:, None]  # (N, 2 outputs, 4 units)
    expected_edges = torch.stack([per_element[..., :2].sum(-1), per_element[..., 2:].sum(-1)], -1)
    # riemann_trapezoid integrates from exactly 0 to 1 (Gauss-Legendre nodes are interior)
    exact = {"n_steps": 8, "method": "riemann_trapezoid"}
    edges = LayerGroupInteraction(hand, "relu", "lin2").attribute(X, UPPER, LOWER, **exact)
    torch.testing.assert_close(edges, expected_edges)
    cond = LayerGroupConductance(hand, "relu").attribute(X, LOWER, target=1, **exact)
    torch.testing.assert_close(cond, expected_edges[:, 1])
    # spot check one number by hand: example 0, output 0, group {0, 1}:
    # 1 * (1.5 - 0.5) + (-1) * (4 - 0) = -3
    assert edges[0, 0, 0].item() == pytest.approx(-3.0)


def test_gradient_x_activation_equals_hand_values(hand):
    at_x, _, w2 = _by_hand()
    gxa = LayerGroupGradientXActivation(hand, "relu").attribute(X, LOWER, target=0)
    expected = torch.stack([(w2[0] * at_x)[:, :2].sum(1), (w2[0] * at_x)[:, 2:].sum(1)], 1)
    torch.testing.assert_close(gxa, expected)
    # example 0, group {2, 3}: 2 * 2 + 0.5 * 1.25 = 4.625
    assert gxa[0, 1].item() == pytest.approx(4.625)


def test_ablation_equals_conductance_when_linear_above(hand):
    """Replacing a group by its baseline activation changes the target by its conductance."""
    _, at_zero, _ = _by_hand()
    for target in (0, 1, NeuronGroup("lin2", [0, 1], weights=[1.0, -2.0])):
        cond = LayerGroupConductance(hand, "relu").attribute(
            X, LOWER, target=target, n_steps=8, method="riemann_trapezoid"
        )
        drop = LayerGroupAblation(hand, "relu").attribute(X, LOWER, target=target, value=at_zero)
        torch.testing.assert_close(drop, cond)


def test_layer_conductance_equals_captum_summed_per_group(digits_model64, digits_test):
    x, y = digits_test[0][:4].double(), digits_test[1][:4]
    groups = GroupSet.from_labels("conv2", np.arange(32) % 5)
    ours, delta = LayerGroupConductance(digits_model64, "conv2").attribute(
        x, groups, target=y, n_steps=16, return_convergence_delta=True
    )
    ref, ref_delta = LayerConductance(digits_model64, digits_model64.conv2).attribute(
        x, target=y, n_steps=16, return_convergence_delta=True
    )
    expected = torch.stack([ref[:, list(g.indices)].sum((1, 2, 3)) for g in groups], 1)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(delta, ref_delta)
    chunked = LayerGroupConductance(digits_model64, "conv2").attribute(
        x, groups, target=y, n_steps=16, internal_batch_size=20
    )
    torch.testing.assert_close(chunked, expected)


def test_gradient_x_activation_equals_captum_summed_per_group(digits_model64, digits_test):
    x, y = digits_test[0][:4].double(), digits_test[1][:4]
    groups = [NeuronGroup("conv3", [0, 5, 9]), NeuronGroup("conv3", [1], reduction=(2, 3))]
    ours = LayerGroupGradientXActivation(digits_model64, "conv3").attribute(x, groups, target=y)
    ref = LayerGradientXActivation(digits_model64, digits_model64.conv3).attribute(x, target=y)
    expected = torch.stack([ref[:, [0, 5, 9]].sum((1, 2, 3)), ref[:, 1, 2, 3]], 1)
    torch.testing.assert_close(ours, expected)


def test_completeness_over_a_partition_on_digits(digits_model64, digits_test):
    x, y = digits_test[0][:5].double(), digits_test[1][:5]
    groups = GroupSet.from_labels("relu3", np.arange(64) % 6)
    attr, delta = LayerGroupConductance(digits_model64, "relu3").attribute(
        x, groups, target=y, n_steps=300, return_convergence_delta=True
    )
    with torch.no_grad():
        logits, baseline_logits = digits_model64(x), digits_model64(torch.zeros_like(x))
        gap = (logits - baseline_logits).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(attr.sum(1), gap, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(delta, attr.sum(1) - gap)


def test_completeness_and_hidden_targets_on_resnet18(resnet18):
    """Hidden-to-hidden through residual connections: layer2 groups -> a layer3.1 group."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lower = GroupSet.from_labels("layer2", np.arange(128) % 8)
    target = NeuronGroup("layer3.1", [3, 30, 77], weights=[1.0, -0.5, 2.0])
    attr, delta = LayerGroupConductance(resnet18, "layer2").attribute(
        x, lower, target=target, n_steps=100, return_convergence_delta=True
    )
    forward = value_of(resnet18, "layer3.1", target)
    gap = forward(x) - forward(torch.zeros_like(x))
    torch.testing.assert_close(attr.sum(1), gap.detach(), rtol=3e-2, atol=3e-2)
    assert delta.abs().max() <= 3e-2 * gap.abs().max() + 3e-2
    ref = LayerConductance(forward, resnet18.layer2).attribute(x, n_steps=100)
    expected = torch.stack([ref[:, list(g.indices)].sum((1, 2, 3)) for g in lower], 1)
    torch.testing.assert_close(attr, expected, rtol=1e-4, atol=1e-5)
    logits = LayerGroupConductance(resnet18, "layer2").attribute(
        x, lower, target=7, n_steps=100, return_convergence_delta=True
    )[1]
    with torch.no_grad():
        logit_gap = resnet18(x)[:, 7] - resnet18(torch.zeros_like(x))[:, 7]
    assert logits.abs().max() <= 3e-2 * logit_gap.abs().max() + 3e-2


def test_group_interaction_equals_captum_per_upper_group(resnet18):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    lower = GroupSet.from_labels("layer1", np.arange(64) % 4)
    upper = GroupSet.from_labels("layer2.1", np.arange(128) % 3)
    edges = LayerGroupInteraction(resnet18, "layer1", "layer2.1").attribute(
        x, upper, lower, n_steps=10
    )
    for u, group in enumerate(upper):
        ref = LayerConductance(value_of(resnet18, "layer2.1", group), resnet18.layer1).attribute(
            x, n_steps=10
        )
        expected = torch.stack([ref[:, list(g.indices)].sum((1, 2, 3)) for g in lower], 1)
        torch.testing.assert_close(edges[:, u], expected, rtol=1e-4, atol=1e-5)


def test_group_interaction_batched_equals_looped(digits_model64, digits_test):
    x = digits_test[0][:4].double()
    lower = GroupSet.from_labels("relu2", np.arange(32) % 4)
    upper = GroupSet.from_labels("relu3", np.arange(64) % 5)
    interaction = LayerGroupInteraction(digits_model64, "relu2", "relu3")
    batched = interaction.attribute(x, upper, lower, n_steps=12)
    looped = torch.stack([interaction.attribute(x, g, lower, n_steps=12)[:, 0] for g in upper], 1)
    chunked = interaction.attribute(
        x, upper, lower, n_steps=12, group_batch_size=2, internal_batch_size=20
    )
    torch.testing.assert_close(batched, looped)
    torch.testing.assert_close(chunked, looped)


def test_group_interaction_averages_over_a_data_loader(digits_model, digits_test):
    x = digits_test[0][:10]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, digits_test[1][:10]), batch_size=4
    )
    lower = GroupSet.from_labels("relu2", np.arange(32) % 4)
    upper = GroupSet.from_labels("relu3", np.arange(64) % 3)
    interaction = LayerGroupInteraction(digits_model, "relu2", "relu3")
    averaged = interaction.attribute(loader, upper, lower, n_steps=8, progress=False)
    expected = interaction.attribute(x, upper, lower, n_steps=8).mean(0)
    torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-6)


def test_group_ablation_batched_equals_looped_equals_ablate(digits_model64, digits_test):
    x, y = digits_test[0][:4].double(), digits_test[1][:4]
    groups = GroupSet.from_labels("relu3", np.arange(64) % 6)
    ablation = LayerGroupAblation(digits_model64, "relu3")
    batched = ablation.attribute(x, groups, target=y)
    chunked = ablation.attribute(x, groups, target=y, group_batch_size=4)
    with torch.no_grad():
        original = digits_model64(x).gather(1, y[:, None])[:, 0]
        looped = []
        for group in groups:
            with ablate(digits_model64, group):
                looped.append(original - digits_model64(x).gather(1, y[:, None])[:, 0])
    torch.testing.assert_close(batched, torch.stack(looped, 1))
    torch.testing.assert_close(chunked, batched)


def test_ablate_and_retain_by_hand(hand):
    at_x, _, w2 = _by_hand()
    before = model_state(hand)
    with torch.no_grad():
        with ablate(hand, LOWER[0]):
            out = hand(X)
        torch.testing.assert_close(
            out, (at_x * torch.tensor([0, 0, 1.0, 1])) @ w2.T + hand.lin2.bias
        )
        with retain(hand, LOWER[0]):
            kept = hand(X)
        torch.testing.assert_close(
            kept, (at_x * torch.tensor([1, 1, 0, 0.0])) @ w2.T + hand.lin2.bias
        )
        with ablate(hand, LOWER[1], value=torch.tensor([9.0, 9.0, 2.0, 3.0])):
            filled = hand(X)
        expected = at_x.clone()
        expected[:, 2:] = torch.tensor([2.0, 3.0])
        torch.testing.assert_close(filled, expected @ w2.T + hand.lin2.bias)
    assert_same_state(before, model_state(hand))


def test_mean_ablation_uses_the_data(hand):
    data = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        means = hand.relu(hand.lin1(data)).mean(0)
        with ablate(hand, LOWER[0], value="mean", data=[(data[:20], None), (data[20:], None)]):
            out = hand(X)
        acts = hand.relu(hand.lin1(X))
        acts[:, :2] = means[:2]
        torch.testing.assert_close(out, hand.lin2(acts))


def test_ablation_over_several_layers_and_gradients_flow(digits_model, digits_test):
    x = digits_test[0][:3].clone().requires_grad_()
    groups = [NeuronGroup("relu2", [0, 1]), NeuronGroup("relu3", list(range(32)))]
    with ablate(digits_model, groups):
        out = digits_model(x)
        out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad(), ablate(digits_model, groups):
        relu3 = captured_output(digits_model, "relu3", x)
    assert relu3[:, :32].abs().max() == 0


def test_model_restored_after_an_error_inside_ablate(digits_model, digits_test):
    before = model_state(digits_model)
    with pytest.raises(RuntimeError, match="inside"):
        with ablate(digits_model, NeuronGroup("conv2", [0])):
            digits_model(digits_test[0][:2])
            raise RuntimeError("inside the block")
    assert_same_state(before, model_state(digits_model))


@pytest.mark.parametrize("kind", ["conductance", "gxa", "interaction", "ablation"])
def test_layer_classes_leave_the_model_untouched(kind, digits_model, digits_test):
    x, y = digits_test[0][:2], digits_test[1][:2]
    digits_model.fc1.weight.requires_grad_(False)
    before = model_state(digits_model)
    groups = GroupSet.from_labels("relu2", np.arange(32) % 3)
    if kind == "conductance":
        LayerGroupConductance(digits_model, "relu2").attribute(x, groups, target=y, n_steps=4)
    elif kind == "gxa":
        LayerGroupGradientXActivation(digits_model, "relu2").attribute(x, groups, target=y)
    elif kind == "interaction":
        upper = GroupSet.from_labels("fc1", np.arange(32) % 2)
        LayerGroupInteraction(digits_model, "relu2", "fc1").attribute(x, upper, groups, n_steps=4)
    else:
        LayerGroupAblation(digits_model, "relu2").attribute(
            x, groups, target=y, value="mean", data=x
        )
    assert_same_state(before, model_state(digits_model))
    assert not x.requires_grad


def test_target_group_in_an_earlier_layer(digits_model, digits_test):
    x = digits_test[0][:2]
    before = model_state(digits_model)
    with pytest.raises(
        ValueError, match="runs before layer.*must belong to a layer that runs after"
    ):
        LayerGroupConductance(digits_model, "conv3").attribute(
            x, NeuronGroup("conv3", [0]), target=NeuronGroup("conv1", [0]), n_steps=2
        )
    with pytest.raises(ValueError, match="runs before layer"):
        LayerGroupInteraction(digits_model, "conv3", "conv1").attribute(
            x, NeuronGroup("conv1", [0]), NeuronGroup("conv3", [0]), n_steps=2
        )
    with pytest.raises(ValueError, match="belongs to the attributed layer itself"):
        LayerGroupConductance(digits_model, "conv3").attribute(
            x, NeuronGroup("conv3", [0]), target=NeuronGroup("conv3", [1])
        )
    assert_same_state(before, model_state(digits_model))


def test_bad_input_for_layer_classes(digits_model, digits_test):
    x = digits_test[0][:2]
    with pytest.raises(ValueError, match="value='mean' needs data"):
        ablate(digits_model, NeuronGroup("conv2", [0]), value="mean")
    with pytest.raises(ValueError, match="value='mean' needs data"):
        LayerGroupAblation(digits_model, "conv2").attribute(
            x, NeuronGroup("conv2", [0]), value="mean"
        )
    with pytest.raises(
        ValueError, match="value has 3 entries; a tensor value needs one per neuron"
    ):
        with ablate(digits_model, NeuronGroup("conv2", [0]), value=torch.zeros(3)):
            digits_model(x)
    with pytest.raises(ValueError, match="value must be 'zero', 'mean'"):
        ablate(digits_model, NeuronGroup("conv2", [0]), value="median")
    with pytest.raises(ValueError, match="indices out of range"):
        LayerGroupConductance(digits_model, "conv2").attribute(x, NeuronGroup("conv2", [40]))
    with pytest.raises(ValueError, match="indices out of range"):
        with ablate(digits_model, NeuronGroup("conv2", [40])):
            digits_model(x)
    with pytest.raises(ValueError, match="does not belong to upper_layer"):
        LayerGroupInteraction(digits_model, "conv2", "conv3").attribute(
            x, NeuronGroup("fc1", [0]), NeuronGroup("conv2", [0])
        )
    with pytest.raises(ValueError, match="same module"):
        LayerGroupInteraction(digits_model, "conv2", "conv2")
    with pytest.raises(ValueError, match="empty data loader"):
        LayerGroupInteraction(digits_model, "conv2", "conv3").attribute(
            iter([]), NeuronGroup("conv3", [0]), NeuronGroup("conv2", [0])
        )
    with pytest.raises(ValueError, match="belongs to layer 'conv3'"):
        LayerGroupAblation(digits_model, "conv2").attribute(x, [NeuronGroup("conv3", [0])])
    with pytest.raises(ValueError, match="target must select one output per example"):
        LayerGroupGradientXActivation(digits_model, "conv2").attribute(x, NeuronGroup("conv2", [0]))


def _ig_per_lower_group(forward, activations, lower, n_steps):
    from captum.attr import IntegratedGradients

    attributions = IntegratedGradients(forward).attribute(activations, n_steps=n_steps)
    return torch.stack([attributions[:, list(g.indices)].flatten(1).sum(1) for g in lower], 1)


def test_edges_from_activations_run_only_the_part_between(digits_model64, digits_test):
    model = digits_model64
    x = digits_test[0][:4].double()
    with torch.no_grad():
        activations = model.relu2(model.conv2(model.relu1(model.conv1(x))))
    lower = GroupSet.from_labels("relu2", np.arange(32) % 4)
    upper = GroupSet.from_labels("relu3", np.arange(64) % 3)
    calls = []
    handle = model.conv1.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        edges = LayerGroupInteraction(model, "relu2", "relu3").attribute_from_activations(
            activations, upper, lower, n_steps=40
        )
    finally:
        handle.remove()
    assert not calls, "layers below the lower layer must not run"
    for u, group in enumerate(upper):
        expected = _ig_per_lower_group(
            lambda a, group=group: group(model.relu3(model.conv3(model.pool(a)))),
            activations,
            lower,
            40,
        )
        torch.testing.assert_close(edges[:, u], expected)
        with torch.no_grad():
            gap = group(model.relu3(model.conv3(model.pool(activations)))) - group(
                model.relu3(model.conv3(model.pool(torch.zeros_like(activations))))
            )
        torch.testing.assert_close(edges[:, u].sum(1), gap, rtol=1e-2, atol=1e-2)


def test_edges_from_activations_on_resnet18(resnet18):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        layer2 = captured_output(resnet18, "layer2", x)
    lower = GroupSet.from_labels("layer2", np.arange(128) % 8)
    upper = GroupSet.from_labels("layer3", np.arange(256) % 4)
    edges = LayerGroupInteraction(resnet18, "layer2", "layer3").attribute_from_activations(
        layer2, upper, lower, n_steps=16, average=True
    )
    for u, group in enumerate(upper):
        expected = _ig_per_lower_group(
            lambda a, group=group: group(resnet18.layer3(a)), layer2, lower, 16
        ).mean(0)
        torch.testing.assert_close(edges[u], expected, rtol=1e-4, atol=1e-5)


def test_subnetwork_bypass_and_untraceable_models(resnet18):
    from captum_groups._model.subnetwork import subnetwork

    with pytest.raises(ValueError, match="reads the model input 'x' by a path that skips"):
        subnetwork(resnet18, "layer2.1.conv2", "layer3.0")

    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                h = h * 2
            return self.b(h)

    model = Branching()
    activations = torch.randn(5, 4)
    interaction = LayerGroupInteraction(model, "a", "b")
    with pytest.raises(ValueError, match="torch.fx could not trace"):
        interaction.attribute_from_activations(
            activations, NeuronGroup("b", [0]), NeuronGroup("a", [0, 1])
        )
    edges = interaction.attribute_from_activations(
        activations,
        NeuronGroup("b", [0]),
        [NeuronGroup("a", [0, 1]), NeuronGroup("a", [2, 3])],
        subnetwork=model.b,
        n_steps=4,
    )
    expected = model.b.weight[0].detach() * activations
    torch.testing.assert_close(
        edges[:, 0], torch.stack([expected[:, :2].sum(1), expected[:, 2:].sum(1)], 1)
    )

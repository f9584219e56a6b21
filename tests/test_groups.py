"""NeuronGroup and GroupSet against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_groups import GroupSet, NeuronGroup
from captum_groups._model.captum import _verify_select_neuron


@pytest.fixture
def conv_out():
    return torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)


def test_reductions_by_hand(conv_out):
    # example 0: channel 0 = [0, 1, 2, 3], channel 2 = [8, 9, 10, 11]
    assert NeuronGroup("c", [0, 2])(conv_out)[0].item() == pytest.approx(1.5 + 9.5)
    assert NeuronGroup("c", [0, 2], reduction="sum")(conv_out)[0].item() == 6 + 38
    assert NeuronGroup("c", [0, 2], reduction="max")(conv_out)[0].item() == 3 + 11
    assert NeuronGroup("c", [0, 2], reduction=(1, 0))(conv_out)[0].item() == 2 + 10
    weighted = NeuronGroup("c", [0, 2], weights=[2.0, -1.0])(conv_out)
    assert weighted.tolist() == [2 * 1.5 - 9.5, 2 * 13.5 - 21.5]


def test_position_group_equals_captum_index_selection(conv_out):
    group = NeuronGroup("c", [1], reduction=(0, 1))
    torch.testing.assert_close(group(conv_out), _verify_select_neuron((conv_out,), (1, 0, 1)))


def test_linear_and_sequence_outputs():
    linear = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert NeuronGroup("fc", [0, 2])(linear).tolist() == [4.0, 10.0]
    sequence = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # (N, T, F)
    # feature 1 over time for example 0: 1, 5, 9 -> mean 5
    assert NeuronGroup("seq", [1], dim=-1)(sequence)[0].item() == 5.0
    assert NeuronGroup("seq", [1], dim=2, reduction=(2,))(sequence)[0].item() == 9.0


def test_gradient_flows_through_group():
    out = torch.randn(3, 4, 5, 5, requires_grad=True)
    NeuronGroup("c", [1, 3], weights=[1.0, 2.0])(out).sum().backward()
    expected = torch.zeros(4)
    expected[1], expected[3] = 1 / 25, 2 / 25
    torch.testing.assert_close(out.grad[0, :, 2, 2], expected)


def test_immutable_hashable_and_equal():
    a = NeuronGroup("conv", np.array([3, 1]), name="a")
    b = NeuronGroup("conv", torch.tensor([3, 1]), name="a")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.indices == (3, 1) and isinstance(a.indices[0], int)
    with pytest.raises(AttributeError, match="immutable"):
        a.indices = (1,)
    assert a != a.replace(name="b")
    module = nn.Linear(2, 2)
    assert NeuronGroup(module, [0]) == NeuronGroup(module, [0])
    assert NeuronGroup(module, [0]) != NeuronGroup(nn.Linear(2, 2), [0])


def test_readable_repr():
    group = NeuronGroup("layer3.1", [0, 5], weights=[1.0, 0.25], name="g0", reduction="max")
    assert repr(group) == (
        "NeuronGroup('layer3.1', [0, 5], weights=[1.0, 0.25], name='g0', reduction='max')"
    )
    assert repr(NeuronGroup(nn.ReLU(), [1])) == "NeuronGroup('<ReLU>', [1])"


def test_group_set_from_labels_partitions():
    groups = GroupSet.from_labels("conv", [2, 0, 2, -1, 0], label="x")
    assert [g.indices for g in groups] == [(1, 4), (0, 2)]
    assert [g.name for g in groups] == ["g0", "g1"] and groups[0].label == "x"
    assert isinstance(groups[0:1], GroupSet) and len(groups[0:1]) == 1
    assert groups == GroupSet(list(groups)) and hash(groups) == hash(GroupSet(list(groups)))
    assert repr(groups) == "GroupSet(layer='conv', groups=[[1, 4], [0, 2]])"
    with pytest.raises(AttributeError):
        groups.extra = 1


def test_resolve_layer_by_name():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
    assert NeuronGroup("1.1", [0]).resolve(model) is model[1][1]


def _takers_of_groups():
    """Every public call with a ``groups`` parameter, as groups -> call."""
    from captum_groups import ablate, label_groups, layer_activations, retain
    from captum_groups.attr import (
        LayerGroupAblation,
        LayerGroupConductance,
        LayerGroupGradientXActivation,
        LayerGroupInteraction,
    )
    from captum_groups.datasets import digits_cnn, load_digits
    from captum_groups.discovery import ExemplarMiner, mine_exemplars
    from captum_groups.labeling import EnrichmentLabeler
    from captum_groups.viz import plot_group_exemplars, render_groups

    model, (x, y) = digits_cnn(), load_digits("test")
    x = x[:8]
    upper = [NeuronGroup("relu3", [0, 1])]
    lower = [NeuronGroup("relu2", [0, 1])]
    found = mine_exemplars(model, "relu2", x, k=2, groups=lower, progress=False).groups
    assert layer_activations(model, "relu2", x).shape[0] == 8
    return {
        "ablate": lambda g: ablate(model, g).__enter__(),
        "retain": lambda g: retain(model, g).__enter__(),
        "LayerGroupConductance": lambda g: LayerGroupConductance(model, "relu2").attribute(x, g),
        "LayerGroupGradientXActivation": lambda g: LayerGroupGradientXActivation(
            model, "relu2"
        ).attribute(x, g),
        "LayerGroupAblation": lambda g: LayerGroupAblation(model, "relu2").attribute(x, g),
        "LayerGroupInteraction-lower": lambda g: LayerGroupInteraction(
            model, "relu2", "relu3"
        ).attribute(x, upper, g),
        "LayerGroupInteraction-upper": lambda g: LayerGroupInteraction(
            model, "relu2", "relu3"
        ).attribute(x, g, lower),
        "ExemplarMiner": lambda g: ExemplarMiner(model, "relu2", k=2, groups=g),
        "mine_exemplars": lambda g: mine_exemplars(model, "relu2", x, k=2, groups=g),
        "render_groups": lambda g: render_groups(model, g, size=8, steps=1),
        "plot_group_exemplars": lambda g: plot_group_exemplars(found, x, g),
        "label_groups": lambda g: label_groups(g, EnrichmentLabeler(y[:8]), model, x, k=2),
    }


@pytest.mark.parametrize(
    ("mistake", "error"),
    [
        ("a name", TypeError),
        ("a group and a number", TypeError),
        ("nothing", ValueError),
    ],
)
def test_the_same_mistake_with_groups_raises_the_same_type_everywhere(mistake, error):
    value = {
        "a name": "relu2",
        "a group and a number": [NeuronGroup("relu2", [0]), 3],
        "nothing": [],
    }[mistake]
    for name, call in _takers_of_groups().items():
        with pytest.raises(error, match="groups") as raised:
            call(value)
        assert type(raised.value) is error, name

"""Group attributions against Captum's own Neuron* classes on the same models.

The independent truth is Captum: a single-neuron group must give what Captum
gives for the equivalent index selector; a multi-neuron group what Captum
gives for the same group passed as a callable selector (Captum runs its own
full forward/backward per call); conductance through a group the weighted sum
of Captum's per-element conductances.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from captum.attr import (
    NeuronConductance,
    NeuronDeconvolution,
    NeuronDeepLift,
    NeuronDeepLiftShap,
    NeuronFeatureAblation,
    NeuronGradient,
    NeuronGradientShap,
    NeuronGuidedBackprop,
    NeuronIntegratedGradients,
)

from captum_groups import GroupSet, NeuronGroup
from captum_groups.attr import (
    GroupConductance,
    GroupDeconvolution,
    GroupDeepLift,
    GroupDeepLiftShap,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupGuidedBackprop,
    GroupIntegratedGradients,
)

warnings.filterwarnings("ignore", category=UserWarning)


def _block_mask(shape: tuple[int, ...], block: int) -> torch.Tensor:
    _, c, h, w = shape
    rows = torch.arange(h) // block
    cols = torch.arange(w) // block
    mask = rows[:, None] * (w // block) + cols[None, :]
    return mask.expand(1, c, h, w).clone()


def _kwargs(name: str, x: torch.Tensor) -> dict:
    generator = torch.Generator().manual_seed(1)
    distribution = torch.rand((3, *x.shape[1:]), generator=generator, dtype=x.dtype) * 0.2
    return {
        "gradient": {},
        "ig": {"n_steps": 6},
        "conductance": {"n_steps": 6, "target": 3},
        "deeplift": {"baselines": distribution[:1].expand_as(x).clone()},
        "deepliftshap": {"baselines": distribution},
        "gradientshap": {"baselines": distribution, "n_samples": 3, "stdevs": 0.05},
        "guided": {},
        "deconv": {},
        "ablation": {"feature_mask": _block_mask(tuple(x.shape), x.shape[-1] // 4)},
    }[name]


METHODS = {
    "gradient": (GroupGradient, NeuronGradient),
    "ig": (GroupIntegratedGradients, NeuronIntegratedGradients),
    "conductance": (GroupConductance, NeuronConductance),
    "deeplift": (GroupDeepLift, NeuronDeepLift),
    "deepliftshap": (GroupDeepLiftShap, NeuronDeepLiftShap),
    "gradientshap": (GroupGradientShap, NeuronGradientShap),
    "guided": (GroupGuidedBackprop, NeuronGuidedBackprop),
    "deconv": (GroupDeconvolution, NeuronDeconvolution),
    "ablation": (GroupFeatureAblation, NeuronFeatureAblation),
}
NOT_CONDUCTANCE = [m for m in METHODS if m != "conductance"]


def _seed() -> None:
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 (Captum samples from the global generator)
    random.seed(123)


def _ours(name, model, layer, x, group, **extra):
    _seed()
    return METHODS[name][0](model, layer).attribute(x, group, **_kwargs(name, x), **extra)


def _captum(name, model, layer, x, selector):
    _seed()
    module = model.get_submodule(layer)
    return METHODS[name][1](model, module).attribute(x, selector, **_kwargs(name, x))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


@pytest.fixture
def digits_x(digits_test):
    return digits_test[0][:3].double()


@pytest.mark.parametrize("name", list(METHODS))
def test_single_conv_neuron_equals_captum_index_selector(name, digits_model64, digits_x):
    group = NeuronGroup("conv3", [5], reduction=(1, 2))
    ours = _ours(name, digits_model64, "conv3", digits_x, group)
    _close(ours, _captum(name, digits_model64, "conv3", digits_x, (5, 1, 2)))


@pytest.mark.parametrize("name", list(METHODS))
def test_single_linear_unit_equals_captum_index_selector(name, digits_model64, digits_x):
    ours = _ours(name, digits_model64, "fc1", digits_x, NeuronGroup("fc1", [7]))
    _close(ours, _captum(name, digits_model64, "fc1", digits_x, 7))


@pytest.mark.parametrize("name", list(METHODS))
def test_single_neuron_on_resnet18_equals_captum(name, resnet18_distinct):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).double()
    group = NeuronGroup("layer3", [17], reduction=(1, 0))
    ours = _ours(name, resnet18_distinct, "layer3", x, group)
    _close(ours, _captum(name, resnet18_distinct, "layer3", x, (17, 1, 0)))


@pytest.mark.parametrize("name", NOT_CONDUCTANCE)
def test_weighted_group_equals_captum_callable_selector(name, digits_model64, digits_x):
    group = NeuronGroup("conv2", [1, 4, 7], weights=[1.0, -0.5, 2.0])
    ours = _ours(name, digits_model64, "conv2", digits_x, group)
    _close(ours, _captum(name, digits_model64, "conv2", digits_x, group))


@pytest.mark.parametrize("name", NOT_CONDUCTANCE)
def test_group_on_resnet18_equals_captum_callable_selector(name, resnet18_distinct):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()
    group = NeuronGroup("layer2", [3, 40, 99, 100], reduction="max")
    ours = _ours(name, resnet18_distinct, "layer2", x, group)
    _close(ours, _captum(name, resnet18_distinct, "layer2", x, group))


def test_group_conductance_is_weighted_sum_of_neuron_conductances(digits_model64, digits_x):
    """A flow: sum over the group's neurons and all their positions of Captum's conductance."""
    group = NeuronGroup("conv3", [2, 9], weights=[1.5, -1.0])
    ours = _ours("conductance", digits_model64, "conv3", digits_x, group)
    reference = torch.zeros_like(ours)
    for index, weight in zip(group.indices, group.weights, strict=True):
        for h in range(4):
            for w in range(4):
                per_element = _captum(
                    "conductance", digits_model64, "conv3", digits_x, (index, h, w)
                )
                reference += weight * per_element
    _close(ours, reference)


def test_group_conductance_on_resnet18_is_sum_over_members(resnet18_distinct):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)).double()
    group = NeuronGroup("layer3", [1, 8, 60], reduction=(0, 1))
    ours = _ours("conductance", resnet18_distinct, "layer3", x, group)
    reference = sum(
        _captum("conductance", resnet18_distinct, "layer3", x, (c, 0, 1)) for c in group.indices
    )
    _close(ours, reference)


@pytest.mark.parametrize("name", list(METHODS))
def test_several_groups_equal_one_call_per_group(name, digits_model64, digits_x):
    groups = GroupSet(
        [
            NeuronGroup("conv2", [0, 1, 2]),
            NeuronGroup("conv2", [5], weights=[-2.0], reduction="sum"),
            NeuronGroup("conv2", [3, 9, 30, 31], reduction="max"),
        ]
    )
    looped = torch.stack([_ours(name, digits_model64, "conv2", digits_x, g) for g in groups], 1)
    batched = _ours(name, digits_model64, "conv2", digits_x, groups)
    chunked = _ours(name, digits_model64, "conv2", digits_x, list(groups), group_batch_size=2)
    assert batched.shape == (len(digits_x), 3, *digits_x.shape[1:])  # (N, G, ...)
    _close(batched, looped)
    _close(chunked, looped)


def test_stock_resnet18_integrated_gradients_equal_captum(resnet18):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    group = NeuronGroup("layer3", list(range(0, 256, 32)))
    ours = GroupIntegratedGradients(resnet18, "layer3").attribute(x, group, n_steps=8)
    ref = NeuronIntegratedGradients(resnet18, resnet18.layer3).attribute(x, group, n_steps=8)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_deeplift_fails_like_captum_on_a_reused_relu(resnet18):
    """torchvision's BasicBlock calls one ReLU twice; DeepLIFT is undefined there, as in Captum."""
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="used more than once"):
        NeuronDeepLift(resnet18, resnet18.layer2).attribute(x, (0, 0, 0))
    with pytest.raises(RuntimeError, match="used more than once"):
        GroupDeepLift(resnet18, "layer2").attribute(x, NeuronGroup("layer2", [0]))


@pytest.mark.parametrize(
    ("layer", "selector"),
    [
        ("fc1", 3),
        ("conv3", (4, slice(0, 2), 1)),
        ("conv3", lambda out: out[:, 2:5].sum((1, 2, 3))),
    ],
)
def test_captum_selectors_pass_through(layer, selector, digits_model64, digits_x):
    """int, tuple-with-slice and callable selectors behave exactly as in Captum."""
    ours = GroupIntegratedGradients(digits_model64, layer).attribute(digits_x, selector, n_steps=5)
    module = digits_model64.get_submodule(layer)
    ref = NeuronIntegratedGradients(digits_model64, module).attribute(digits_x, selector, n_steps=5)
    _close(ours, ref)


def test_layer_input_groups_equal_captum(digits_model64, digits_x):
    group = NeuronGroup("fc2", [3, 30])
    _seed()
    ours = GroupIntegratedGradients(digits_model64, "fc2").attribute(
        digits_x, group, n_steps=5, attribute_to_neuron_input=True
    )
    ref = NeuronIntegratedGradients(digits_model64, digits_model64.fc2).attribute(
        digits_x, group, n_steps=5, attribute_to_neuron_input=True
    )
    _close(ours, ref)

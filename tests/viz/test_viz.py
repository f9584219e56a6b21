"""Feature visualization of groups through Lucent, and montages."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from lucent.optvis import objectives, render
from lucent.optvis.param import spatial as lucent_spatial

from captum_groups import Circuit, GroupSet, NeuronGroup
from captum_groups.discovery import mine_exemplars
from captum_groups.viz import (
    group_objective,
    plot_group_exemplars,
    render_circuit,
    render_groups,
)

from .._helpers import assert_same_state, captured_output, model_state

matplotlib.use("Agg")


def _hooked(model, x):
    """Lucent's own hook function on the model, after one forward pass; hooks removed after."""
    before = {m: set(m._forward_hooks) for m in model.modules()}
    hook = render.hook_model(model, lambda: x)
    model(x)
    for module in model.modules():
        for key in set(module._forward_hooks) - before[module]:
            del module._forward_hooks[key]
    return hook


def test_group_objective_equals_weighted_lucent_channels(digits_model, digits_test):
    x = digits_test[0][:3]
    hook = _hooked(digits_model, x)
    group = NeuronGroup("conv2", [1, 4, 9], weights=[1.0, -0.5, 2.0])
    ours = group_objective(group)(hook)
    lucent = sum(
        w * objectives.channel("conv2", c)(hook)
        for c, w in zip(group.indices, group.weights, strict=True)
    )
    torch.testing.assert_close(ours, lucent)
    unweighted = NeuronGroup("conv2", [3, 5])
    torch.testing.assert_close(
        group_objective(unweighted, batch=1)(hook),
        objectives.channel("conv2", 3, batch=1)(hook)
        + objectives.channel("conv2", 5, batch=1)(hook),
    )


def test_direction_objective_equals_lucent_direction(digits_model, digits_test):
    x = digits_test[0][:2]
    hook = _hooked(digits_model, x)
    group = NeuronGroup("relu3", [0, 7, 20], weights=[0.5, 1.5, 0.25])
    dense = torch.zeros(64)
    dense[[0, 7, 20]] = torch.tensor([0.5, 1.5, 0.25])
    torch.testing.assert_close(
        group_objective(group, kind="direction")(hook), objectives.direction("relu3", dense)(hook)
    )
    composed = group_objective(group) - 0.5 * group_objective(group, kind="direction")
    assert isinstance(composed, objectives.Objective)
    diverse = group_objective(group) + objectives.diversity("relu3")
    assert torch.isfinite(diverse(hook))


def _group_value(model, images, group):
    with torch.no_grad():
        return group(
            captured_output(
                model, group.resolve(model), torch.as_tensor(images).permute(0, 3, 1, 2)
            )
        )


def test_rendering_raises_the_group_well_above_start_and_random(digits_model):
    group = NeuronGroup("relu3", [5, 12, 40])
    control = NeuronGroup("relu3", [7])
    before = model_state(digits_model)
    rendered = render_groups(digits_model, [group, control], size=16, steps=48)
    start = render_groups(digits_model, [group, control], size=16, steps=1)
    assert_same_state(before, model_state(digits_model))
    own = float(_group_value(digits_model, rendered, group)[0])
    on_start = float(_group_value(digits_model, start, group)[0])
    on_control_image = float(_group_value(digits_model, rendered, group)[1])
    # seen here: own 8.0, start 0.6, on the image rendered for the control 3.5
    assert own > 3 * on_start
    assert own > 1.5 * on_control_image
    assert rendered.shape == (2, 16, 16, 1) and 0 <= rendered.min() and rendered.max() <= 1
    again = render_groups(digits_model, [group, control], size=16, steps=48)
    assert (again == rendered).all(), "the same seed gives the same images"


def test_hooks_mode_and_device_restored_also_on_error(digits_model):
    digits_model.train()
    before = model_state(digits_model)
    device_before = lucent_spatial.device

    def broken(image):
        raise ValueError("transform failed")

    with pytest.raises(ValueError, match="transform failed"):
        render_groups(digits_model, NeuronGroup("relu2", [0]), size=8, steps=3, transforms=[broken])
    assert_same_state(before, model_state(digits_model))
    assert lucent_spatial.device == device_before
    render_groups(digits_model, NeuronGroup("relu2", [0]), size=8, steps=2)
    assert_same_state(before, model_state(digits_model))
    assert all(p.grad is None for p in digits_model.parameters())


def test_bad_input(digits_model):
    with pytest.raises(ValueError, match="'conv9' is not a submodule"):
        render_groups(digits_model, NeuronGroup("conv9", [0]), size=8, steps=1)
    with pytest.raises(ValueError, match="size=1 is too small"):
        render_groups(digits_model, NeuronGroup("relu3", [0]), size=1, steps=1)
    with pytest.raises(ValueError, match="indices out of range"):
        render_groups(digits_model, NeuronGroup("relu3", [99]), size=8, steps=1)
    with pytest.raises(ValueError, match="kind must be"):
        group_objective(NeuronGroup("relu3", [0]), kind="max")


def test_render_circuit_draws_every_node(digits_model):
    nodes = {
        "a": NeuronGroup("relu2", [0, 1], name="a"),
        "b": NeuronGroup("relu3", [2], name="b"),
        "c": NeuronGroup("relu3", [3, 4], name="c"),
    }
    circuit = Circuit(
        1, ["relu2", "relu3"], nodes, {("a", "b"): 1.0, ("b", "target"): 1.0, ("c", "target"): 0.5}
    )
    images = render_circuit(digits_model, circuit, size=8, steps=2)
    assert set(images) == {"a", "b", "c"} and images["c"].shape == (8, 8, 1)


def test_exemplar_montage_with_attribution_overlay(digits_model, digits_test, tmp_path):
    x = digits_test[0]
    groups = GroupSet.from_labels("relu3", [i % 3 for i in range(64)])
    found = mine_exemplars(digits_model, "relu3", x, k=5, groups=groups, progress=False)
    figure = plot_group_exemplars(
        found.groups, x, groups, n=5, model=digits_model, attribution="deeplift"
    )
    figure.savefig(tmp_path / "montage.png")
    assert len(figure.axes) == 15 and (tmp_path / "montage.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match="need the model"):
        plot_group_exemplars(found.groups, x, groups, attribution="gradient")
    with pytest.raises(ValueError, match="rows but 2 groups"):
        plot_group_exemplars(found.groups, x, groups[:2])

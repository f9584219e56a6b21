"""Every public call leaves the model exactly as it found it, also when it raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import captum_groups.attr as cga
from captum_groups import GroupSet

from .conftest import NEURON_CLASSES, assert_same_state, make_resnet18, model_state


def _call(cls_name, model, layer, x, group):
    cls = getattr(cga, cls_name)
    kwargs = {
        "GroupIntegratedGradients": {"n_steps": 4},
        "GroupConductance": {"n_steps": 4, "target": 1},
        "GroupDeepLiftShap": {"baselines": torch.zeros(2, *x.shape[1:])},
        "GroupGradientShap": {"baselines": torch.zeros(2, *x.shape[1:])},
    }.get(cls_name, {})
    return cls(model, layer).attribute(x, group, **kwargs)


@pytest.mark.parametrize("cls_name", NEURON_CLASSES)
def test_model_and_inputs_unchanged(cls_name, digits_model, digits_test):
    x = digits_test[0][:2].clone()
    x_before = x.clone()
    digits_model.conv1.weight.requires_grad_(False)
    before = model_state(digits_model)
    groups = GroupSet.from_labels("relu2", np.arange(32) % 3)
    _call(cls_name, digits_model, "relu2", x, groups)
    assert_same_state(before, model_state(digits_model))
    assert torch.equal(x, x_before) and not x.requires_grad


@pytest.mark.parametrize("cls_name", NEURON_CLASSES)
def test_model_unchanged_after_an_error_inside_the_call(cls_name, digits_model, digits_test):
    def failing_selector(output):
        raise RuntimeError("selector failed")

    before = model_state(digits_model)
    with pytest.raises(RuntimeError, match="selector failed"):
        _call(cls_name, digits_model, "conv2", digits_test[0][:2], [failing_selector])
    assert_same_state(before, model_state(digits_model))


def test_training_mode_batchnorm_statistics_untouched_by_checks():
    """The layer check runs the model once; in training mode it must not move BN statistics."""
    model = make_resnet18().train()
    before = model_state(model)
    x = torch.randn(2, 3, 32, 32)
    cga.GroupGradient(model, "layer2")._check_layer((x,), None, False, [])
    assert_same_state(before, model_state(model))

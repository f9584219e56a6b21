"""The parts of Captum the package relies on, checked against the installed Captum.

``captum_groups._model.captum`` is the one module that imports Captum's private names; each is
checked here for what the package uses it for, with expectations worked out by hand. The
public behaviour the replay engine relies on (``log_usage`` keeps ``__wrapped__``, each
algorithm computes through its ``gradient_func`` or ``forward_func``) is checked too.
pyproject.toml allows the Captum releases these tests pass on.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    GradientShap,
    GuidedBackprop,
    IntegratedGradients,
    Saliency,
)
from torch import nn

from captum_groups._model import captum as _captum

WHERE = {
    "_expand_additional_forward_args": "captum._utils.common",
    "_expand_target": "captum._utils.common",
    "_format_additional_forward_args": "captum._utils.common",
    "_format_output": "captum._utils.common",
    "_format_tensor_into_tuples": "captum._utils.common",
    "_is_tuple": "captum._utils.common",
    "_run_forward": "captum._utils.common",
    "_verify_select_neuron": "captum._utils.common",
    "BaselineType": "captum._utils.typing",
    "TargetType": "captum._utils.typing",
    "TensorOrTupleOfTensorsGeneric": "captum._utils.typing",
    "SUPPORTED_METHODS": "captum.attr._utils.approximation_methods",
    "approximation_parameters": "captum.attr._utils.approximation_methods",
    "_batch_attribution": "captum.attr._utils.batching",
    "_format_input_baseline": "captum.attr._utils.common",
    "_reshape_and_sum": "captum.attr._utils.common",
    "_validate_input": "captum.attr._utils.common",
}


def test_every_private_name_comes_from_where_the_package_expects_it():
    assert set(_captum.__all__) == set(WHERE)
    for name, module in WHERE.items():
        assert getattr(_captum, name) is getattr(importlib.import_module(module), name)


def test_input_formatting():
    x, y = torch.ones(2, 3), torch.zeros(2, 1)
    assert _captum._format_tensor_into_tuples(x)[0] is x
    assert _captum._format_tensor_into_tuples((x, y)) == (x, y)
    assert _captum._format_tensor_into_tuples(None) is None
    assert _captum._is_tuple((x,)) and not _captum._is_tuple(x)
    assert _captum._format_output(False, (x,)) is x
    assert _captum._format_output(True, (x,)) == (x,)
    assert _captum._format_additional_forward_args(x)[0] is x
    assert _captum._format_additional_forward_args(None) is None
    inputs, baselines = _captum._format_input_baseline(x, None)
    assert inputs[0] is x and baselines == (0,)
    inputs, baselines = _captum._format_input_baseline((x, y), (1.5, y))
    assert baselines == (1.5, y)


def test_expansion_for_integration_steps():
    # the package stacks integration steps step-major: copy 0 of the batch, then copy 1 ...
    assert _captum._expand_target(3, 4) == 3
    targets = _captum._expand_target(torch.tensor([1, 2]), 3)
    assert targets.tolist() == [1, 2, 1, 2, 1, 2]
    assert _captum._expand_target([1, 2], 2) == [1, 2, 1, 2]
    extra = torch.arange(4.0).reshape(2, 2)
    (expanded, scalar) = _captum._expand_additional_forward_args((extra, 7), 3)
    assert torch.equal(expanded, torch.cat([extra] * 3)) and scalar == 7


def test_forward_runner_and_neuron_selection():
    model = nn.Linear(3, 4)
    x = torch.randn(5, 3)
    torch.testing.assert_close(_captum._run_forward(model, x, target=2), model(x)[:, 2])
    targets = torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(
        _captum._run_forward(model, x, target=targets), model(x)[torch.arange(5), targets]
    )
    doubled = _captum._run_forward(lambda a, b: model(a) * b, x, None, 2.0)
    torch.testing.assert_close(doubled, model(x) * 2)
    out = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(_captum._verify_select_neuron((out,), (1, 2)), out[:, 1, 2])
    torch.testing.assert_close(_captum._verify_select_neuron((out,), 2), out[:, 2])
    total = _captum._verify_select_neuron((out,), lambda value: value.sum((1, 2)))
    torch.testing.assert_close(total, out.sum((1, 2)))


def test_quadratures_are_the_rules_the_package_reproduces():
    assert set(_captum.SUPPORTED_METHODS) >= {
        "gausslegendre",
        "riemann_left",
        "riemann_right",
        "riemann_middle",
        "riemann_trapezoid",
    }
    n = 64

    def rule(method):
        step_sizes_func, alphas_func = _captum.approximation_parameters(method)
        return np.array(step_sizes_func(n)), np.array(alphas_func(n))

    steps, alphas = rule("gausslegendre")
    nodes, weights = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(alphas, (nodes + 1) / 2, atol=1e-12)
    np.testing.assert_allclose(steps, weights / 2, atol=1e-12)
    np.testing.assert_allclose((steps * 3 * alphas**2).sum(), 1.0)  # exact on polynomials
    steps, alphas = rule("riemann_left")
    np.testing.assert_allclose(alphas, np.arange(n) / n)
    np.testing.assert_allclose(steps, np.full(n, 1 / n))
    steps, alphas = rule("riemann_trapezoid")
    np.testing.assert_allclose(alphas, np.linspace(0, 1, n), atol=1e-7)
    # Captum's trapezoid weights: half a step at both ends (they sum to (n - 1) / n)
    np.testing.assert_allclose(steps, [1 / (2 * n)] + [1 / n] * (n - 2) + [1 / (2 * n)])


def test_sum_over_steps():
    per_step = torch.arange(2 * 3 * 4.0).reshape(2 * 3, 4)  # 2 steps x 3 examples, step-major
    summed = _captum._reshape_and_sum(per_step, 2, 3, (4,))
    torch.testing.assert_close(summed, per_step[:3] + per_step[3:])


def test_input_validation_refuses_what_captum_refuses():
    x = torch.ones(2, 3)
    _captum._validate_input((x,), (torch.zeros(2, 3),), 4, "gausslegendre")
    with pytest.raises(AssertionError):
        _captum._validate_input((x,), (torch.zeros(2, 3), torch.zeros(2, 3)), 4, "gausslegendre")
    with pytest.raises(AssertionError):
        _captum._validate_input((x,), (0,), 4, "simpson")


class _Integrand:
    """A quadrature of a * x over the path, the way the package's ``Integral`` is batched."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def _attribute(self, method, n_steps, step_sizes_and_alphas=None):
        if step_sizes_and_alphas is None:
            step_sizes_func, alphas_func = _captum.approximation_parameters(method)
            step_sizes_and_alphas = step_sizes_func(n_steps), alphas_func(n_steps)
        steps, alphas = step_sizes_and_alphas
        assert len(steps) == len(alphas)
        return sum(s * a * self.x for s, a in zip(steps, alphas, strict=True))


def test_step_batching_sums_the_same_integral():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    integrand = _Integrand(x)
    whole = integrand._attribute("gausslegendre", 20)
    batched = _captum._batch_attribution(integrand, 2, 6, 20, method="gausslegendre")
    torch.testing.assert_close(batched, whole)
    torch.testing.assert_close(whole, x / 2)  # int_0^1 a x da


def test_type_aliases_exist():
    for name in ("BaselineType", "TargetType", "TensorOrTupleOfTensorsGeneric"):
        assert getattr(_captum, name) is not None


ALGORITHMS = {
    IntegratedGradients: {"n_steps": 4},
    GradientShap: {"baselines": torch.zeros(3, 4)},
    DeepLift: {},
    DeepLiftShap: {"baselines": torch.zeros(3, 4)},
    GuidedBackprop: {},
    Deconvolution: {},
    Saliency: {"abs": False},
}


@pytest.mark.parametrize("algorithm", list(ALGORITHMS), ids=lambda a: a.__name__)
def test_gradient_algorithms_compute_through_their_gradient_func(algorithm):
    """The replay engine swaps ``gradient_func`` and calls ``attribute.__wrapped__``."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    x = torch.rand(2, 4)
    method = algorithm(model)
    calls = []

    def gradient_func(forward_fn, inputs, target_ind=None, additional_forward_args=None):
        calls.append(len(inputs))
        return tuple(torch.full_like(t, 2.0) for t in inputs)

    method.gradient_func = gradient_func
    assert hasattr(method.attribute, "__wrapped__")  # Captum's log_usage keeps it
    result = method.attribute.__wrapped__(method, x, **ALGORITHMS[algorithm])
    assert calls
    assert torch.isfinite(result).all()
    if algorithm in (Saliency, GuidedBackprop, Deconvolution):
        torch.testing.assert_close(result, torch.full_like(x, 2.0))
    if algorithm is IntegratedGradients:
        torch.testing.assert_close(result, 2.0 * x)  # the gradient times (x - 0)


def test_feature_ablation_computes_through_its_forward_func():
    values = []

    def forward_func(inputs):
        values.append(inputs.clone())
        return inputs.sum(1)

    ablation = FeatureAblation(forward_func)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    result = ablation.attribute.__wrapped__(ablation, x)
    torch.testing.assert_close(result, x)  # removing feature i lowers the sum by x_i
    assert len(values) == 1 + x.shape[1]

"""BEAN against a brute-force implementation of the paper's formula (the N x N x B version)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from captum_groups.regularize import BEANRegularizer, find_assemblies

from ._helpers import assert_same_state, model_state


def brute_force(h: torch.Tensor, weight: torch.Tensor, alpha: float, gamma: float, order: int):
    """The reference code's way: an explicit (B, N, N) tensor of squared differences."""
    if h.ndim > 2:
        h = h.flatten(2).mean(2)
    w_hat = torch.abs(torch.tanh(gamma * weight.t()))
    shared = w_hat @ w_hat.t()
    if order == 2:
        shared = shared**2
    differences = (h[:, :, None] - h[:, None, :]) ** 2  # (B, N, N)
    return alpha * torch.mean(shared * differences.mean(0))


def _linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)), torch.randn(7, 5)


def _conv():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.Flatten())
    return model, torch.randn(6, 2, 7, 7)


def _kernel_norms(conv: nn.Conv2d) -> torch.Tensor:
    out_channels, in_channels = conv.weight.shape[:2]
    return torch.stack(
        [
            torch.stack([conv.weight[o, i].pow(2).sum().sqrt() for i in range(in_channels)])
            for o in range(out_channels)
        ]
    )


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_loss_and_gradients_equal_brute_force(kind, order):
    model, x = _linear() if kind == "linear" else _conv()
    alpha, gamma = 3.0, 0.7
    with BEANRegularizer(model, "1", alpha=alpha, gamma=gamma, order=order) as bean:
        model(x)
        ours = bean()
        ours_grads = torch.autograd.grad(ours, list(model.parameters()), allow_unused=True)
    h = model[1](model[0](x))
    weight = model[2].weight if kind == "linear" else _kernel_norms(model[2])
    reference = brute_force(h, weight, alpha, gamma, order)
    reference_grads = torch.autograd.grad(reference, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(ours, reference)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        if b is None:
            assert a is None or a.abs().max() == 0
        else:
            torch.testing.assert_close(a, b)
    assert ours.item() > 0


def test_several_layers_add_up(digits_model, digits_test):
    x = digits_test[0][:16]
    with BEANRegularizer(digits_model, ["relu3", "relu4"], alpha=2.0) as both:
        digits_model(x)
        total = both()
    parts = []
    for layer in ["relu3", "relu4"]:
        with BEANRegularizer(digits_model, layer, alpha=2.0) as one:
            digits_model(x)
            parts.append(one())
    torch.testing.assert_close(total, parts[0] + parts[1])
    assert [type(n).__name__ for n in both.next_layers] == ["Linear", "Linear"]
    assert both.next_layers[0] is digits_model.fc1


def test_hooks_removed_after_close_and_on_error(digits_model, digits_test):
    before = model_state(digits_model)
    with pytest.raises(RuntimeError, match="inside"):
        with BEANRegularizer(digits_model, ["relu2", "relu3"]) as bean:
            digits_model(digits_test[0][:4])
            bean().backward()
            raise RuntimeError("inside the training step")
    digits_model.zero_grad(set_to_none=True)
    after = model_state(digits_model)
    assert before["hooks"] == after["hooks"]
    bean = BEANRegularizer(digits_model, "relu3")
    bean.close()
    assert_same_state(before, model_state(digits_model))


def test_bad_input():
    model, x = _linear()
    with pytest.raises(ValueError, match="has no weight layer after it"):
        BEANRegularizer(model, "2")
    with pytest.raises(ValueError, match="alpha must be a number >= 0"):
        BEANRegularizer(model, "1", alpha=-1)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        BEANRegularizer(model, "1", order=3)
    with pytest.raises(RuntimeError, match="no forward pass"):
        BEANRegularizer(model, "1")()
    wrong = BEANRegularizer(model, "1", next_layers=["0"])
    model(x)
    with pytest.raises(ValueError, match="takes 5 inputs but the layer has 6 neurons"):
        wrong()
    wrong.close()


class PlantedAssemblies(nn.Module):
    """8 hidden units in two assemblies (0-3 and 4-7): each driven by one input factor and
    projecting to its own output."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(2, 8)
        self.relu = nn.ReLU()
        self.out = nn.Linear(8, 2)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4))
            self.hidden.weight.add_(
                0.05 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
            )
            self.hidden.bias.zero_()
            self.out.weight.copy_(torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4]))

    def forward(self, x):
        return self.out(self.relu(self.hidden(x)))


def test_find_assemblies_recovers_planted_assemblies():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=generator)
    labels = (x[:, 1] > x[:, 0]).long()
    found = find_assemblies(PlantedAssemblies(), "relu", (x, labels))
    assignment = np.zeros(8, dtype=int)
    for g, group in enumerate(found.groups):
        assignment[list(group.indices)] = g
    assert adjusted_rand_score([0] * 4 + [1] * 4, assignment) == 1.0
    assert sorted(found.preferred_class.tolist()) == [0, 1]
    assert (found.selectivity > 0.2).all()
    assert found.modularity > 0.3

"""Helpers shared by the tests (as ``captum/testing/helpers``): independent ways to read a
model, small planted models, and the model-state snapshot every public call must keep.

The tests check the package against these, never against its own output: a layer's
output here is read by a hand-written hook, not by the package's capture machinery.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

NEURON_CLASSES = [
    "GroupConductance",
    "GroupDeconvolution",
    "GroupDeepLift",
    "GroupDeepLiftShap",
    "GroupFeatureAblation",
    "GroupGradient",
    "GroupGradientShap",
    "GroupGuidedBackprop",
    "GroupIntegratedGradients",
]
"""The attribution-from-a-group classes, the counterparts of Captum's Neuron* classes."""


def captured_output(model: nn.Module, layer: str | nn.Module, *inputs: Any) -> Tensor:
    """What ``layer`` outputs when ``model(*inputs)`` runs, read by a plain forward hook
    (removed afterwards). Gradients flow when grad mode is on."""
    module = model.get_submodule(layer) if isinstance(layer, str) else layer
    captured: dict[str, Tensor] = {}
    handle = module.register_forward_hook(lambda m, args, output: captured.update(o=output))
    try:
        model(*inputs)
    finally:
        handle.remove()
    return captured["o"]


def value_of(model: nn.Module, layer: str, group: Callable[[Tensor], Tensor]) -> Callable:
    """The value of a hidden group as a function of the model's input (a forward function
    for Captum's classes)."""

    def forward(x: Tensor) -> Tensor:
        return group(captured_output(model, layer, x))

    return forward


def _basic_block_forward(self: nn.Module, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu_out(out + identity)


def make_resnet18(distinct_relus: bool = False, seed: int = 0) -> nn.Module:
    """torchvision resnet18 (no weights), in eval mode.

    With ``distinct_relus`` every BasicBlock calls two separate, non-inplace
    ReLU modules, which DeepLIFT needs (torchvision reuses one ReLU per block).
    """
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    if distinct_relus:
        for module in list(model.modules()):
            if isinstance(module, torchvision.models.resnet.BasicBlock):
                module.relu = nn.ReLU()
                module.relu_out = nn.ReLU()
                module.forward = types.MethodType(_basic_block_forward, module)
        model.relu = nn.ReLU()
    return model.eval()


_PLAIN = (bool, int, float, str, type(None), tuple)


def model_state(model: nn.Module) -> dict:
    """Everything a public call must leave unchanged.

    Hooks of every kind (forward, forward-pre, backward, backward-pre, also
    those with kwargs or always called), train/eval flags, requires_grad
    flags, parameter values and their ``.grad``, buffers, and each module's
    attributes (the names in ``vars``, and the values of plain ones).
    """
    hook_dicts = (
        "_forward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_backward_hooks",
        "_backward_pre_hooks",
    )
    return {
        "hooks": {
            name: tuple(tuple(getattr(m, d, {})) for d in hook_dicts)
            for name, m in model.named_modules()
        },
        "attributes": {
            name: {k: v if isinstance(v, _PLAIN) else type(v) for k, v in vars(m).items()}
            for name, m in model.named_modules()
        },
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "parameters": {name: p.detach().clone() for name, p in model.named_parameters()},
        "grads": {
            name: None if p.grad is None else p.grad.detach().clone()
            for name, p in model.named_parameters()
        },
        "buffers": {name: b.detach().clone() for name, b in model.named_buffers()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    for key in ("hooks", "attributes", "training", "requires_grad"):
        assert before[key] == after[key], key
    for key in ("parameters", "grads", "buffers"):
        assert before[key].keys() == after[key].keys()
        for name, value in before[key].items():
            if value is None:
                assert after[key][name] is None, f"{key} {name} appeared"
            else:
                assert torch.equal(value, after[key][name]), f"{key} {name} changed"


A0, A1 = (0, 1, 2), (3, 4, 5)  # layer a: read factor 0 / factor 1
B0, B1 = (0, 1, 2), (3, 4, 5)  # layer b: read A0 / A1; class 0 = 2 B0 + B1


class PlantedCircuit(nn.Module):
    """Planted circuit of class 0: B0 <- A0 <- factor 0 (weight 2) and B1 <- A1 <- factor 1
    (weight 1), 1x1 convolutions, so a group fires exactly where its factor is. Distractors
    a 6-11 (factors 2, 3) feed b 6-7, which alone feed class 1; class 2 is a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(4, 12, 1)
        self.relu_a = nn.ReLU()
        self.conv_b = nn.Conv2d(12, 8, 1)
        self.relu_b = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            wa = torch.zeros(12, 4)
            for factor, units in enumerate([A0, A1, range(6, 9), range(9, 12)]):
                wa[list(units), factor] = 1 + torch.rand(len(units), generator=generator)
            wb = torch.zeros(8, 12)
            wb[0:3, 0:3] = 0.5 + torch.rand(3, 3, generator=generator)
            wb[3:6, 3:6] = 0.5 + torch.rand(3, 3, generator=generator)
            wb[6:8, 6:12] = 0.5 + torch.rand(2, 6, generator=generator)
            for conv, weight in ((self.conv_a, wa), (self.conv_b, wb)):
                conv.weight.copy_(weight[:, :, None, None])
                conv.bias.zero_()
            self.fc.weight.zero_()
            self.fc.weight[0, list(B0)] = 2.0
            self.fc.weight[0, list(B1)] = 1.0
            self.fc.weight[1, 6:8] = 1.5
            self.fc.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))

    def forward(self, x):
        x = self.relu_b(self.conv_b(self.relu_a(self.conv_a(x))))
        return self.fc(self.gap(x).flatten(1))


def planted_images(n: int = 120) -> torch.Tensor:
    """Four sparse factor maps (8x8): blobs where each factor is present."""
    generator = torch.Generator().manual_seed(1)
    images = torch.zeros(n, 4, 8, 8)
    for i in range(n):
        for factor in range(4):
            if torch.rand(1, generator=generator) < 0.4:
                top, left = torch.randint(0, 5, (2,), generator=generator).tolist()
                images[i, factor, top : top + 4, left : left + 4] = 0.5 + torch.rand(
                    1, generator=generator
                )
    return images

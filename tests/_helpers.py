"""Helpers shared by the tests (as ``captum/testing/helpers``): independent ways to read a
model, small planted models, and the model-state snapshot every public call must keep.

The tests check the package against these, never against its own output: a layer's
output here is read by a hand-written hook, not by the package's capture machinery.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
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


def plain_masking_fidelity(
    model: nn.Module,
    circuit: Any,
    images: Tensor,
    mode: str = "mask",
    per_layer: bool = True,
    n_draws: int = 30,
    random_state: int | None = None,
) -> list[tuple[str, float, float, list[float]]]:
    """NeurFlow's masking fidelity the plain way (the package's implementation before the
    report's fidelity ran on cached activations): one full forward pass of every image per
    run, the masks as :func:`captum_groups.ablate` hooks. Returns (scope, intact score,
    circuit score, random scores) per scope; scores are accuracies for a class target, the
    target group's mean value otherwise."""
    from captum_groups import NeuronGroup, ablate, retain

    switch = ablate if mode == "mask" else retain
    rng = np.random.default_rng(random_state)

    def score() -> float:
        with torch.no_grad():
            if isinstance(circuit.target, int):
                return float((model(images).argmax(1) == circuit.target).float().mean())
            return float(
                circuit.target(captured_output(model, circuit.target.layer, images)).mean()
            )

    intact, sizes = score(), {}
    for layer in circuit.layers:
        neurons = sorted({i for n in circuit.node_ids(layer) for i in circuit.nodes[n].indices})
        if neurons:
            sizes[layer] = (neurons, captured_output(model, layer, images[:1]).shape[1])
    scopes = [(layer, [layer]) for layer in sizes] if per_layer else []
    scopes.append(("all layers", list(sizes)))
    found = []
    for name, layers in scopes:
        with switch(model, [NeuronGroup(layer, sizes[layer][0]) for layer in layers]):
            own = score()
        drawn = []
        for _ in range(n_draws):
            chosen = [
                NeuronGroup(layer, rng.choice(sizes[layer][1], len(sizes[layer][0]), replace=False))
                for layer in layers
            ]
            with switch(model, chosen):
                drawn.append(score())
        found.append((name, intact, own, drawn))
    return found


def plain_edge_changes(
    between: Callable[[Tensor], Tensor],
    upper_value: Any,
    activations: Tensor,
    subsets: list[Any],
) -> list[float]:
    """The change of an upper node's mean value with each subset of lower neurons zeroed, one
    forward pass per subset (the edge-weight fidelity before its draws were batched)."""

    def value(acts: Tensor) -> float:
        with torch.no_grad():
            output = between(acts)
        values = output[:, upper_value] if isinstance(upper_value, int) else upper_value(output)
        return float(values.mean())

    before, changes = value(activations), []
    for subset in subsets:
        masked = activations.clone()
        masked[:, subset] = 0
        changes.append(value(masked) - before)
    return changes

"""Shortcuts of the integration of core scores: the affine first part of a subnetwork split off,
the channel-wise end computed per row at its target channels; both equal the plain integral."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from captum_groups import NeuronGroup
from captum_groups._model.subnetwork import fold_batchnorm, subnetwork
from captum_groups.discovery import CoreScores
from captum_groups.discovery._integrate.affine_prefix import split_affine_prefix


def _resnet_block(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A torchvision resnet18 with non-trivial batch-norm statistics, and the part between
    layer2.1 and layer3.0 (a block with a downsampling branch), batch norms folded."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model, fold_batchnorm(subnetwork(model, "layer2.1", "layer3.0"))


def test_the_prefix_ends_at_the_first_nonlinearity():
    _, between = _resnet_block()
    split = split_affine_prefix(between)
    assert split is not None
    calls = [str(n.target) for n in split.prefix.graph.nodes if n.op == "call_module"]
    assert calls[0] == "layer3.0.conv1" and "layer3.0.downsample.0" in calls
    assert not any("relu" in c or "conv2" in c for c in calls)
    x = torch.rand(3, 128, 8, 8)
    torch.testing.assert_close(split.rest(*split.prefix(x))[0], between(x), rtol=0, atol=0)
    # affine: prefix(a x) = c + a (prefix(x) - c)
    start = split.prefix(torch.zeros(1, 128, 8, 8))
    for scaled, end, c in zip(split.prefix(0.3 * x), split.prefix(x), start, strict=True):
        torch.testing.assert_close(scaled, c + 0.3 * (end - c), rtol=1e-5, atol=1e-5)


def test_nothing_is_split_without_an_affine_start_or_when_the_shape_is_read():
    assert split_affine_prefix(nn.Sequential(nn.ReLU(), nn.Linear(3, 2))) is None

    class ReadsShape(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return torch.relu(self.fc(x.view(x.size(0), -1)))

    assert split_affine_prefix(ReadsShape()) is None
    fully_affine = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    split = split_affine_prefix(fully_affine)
    x = torch.rand(2, 5, 3, 3)
    torch.testing.assert_close(split.rest(*split.prefix(x))[0], fully_affine(x))


def test_scores_through_the_split_equal_scores_through_the_whole_subnetwork():
    _, between = _resnet_block()
    torch.manual_seed(1)
    x = torch.rand(12, 128, 8, 8)
    targets = [NeuronGroup("layer3.0", [c]) for c in (3, 50, 200)] + [
        NeuronGroup("layer3.0", [1, 7], [1.0, -0.5])
    ]
    owners = [[i % 4, (i + 1) % 4] if i % 3 else [i % 4] for i in range(12)]
    results = []
    for split in (True, False):
        scorer = CoreScores(between, targets, n_steps=16, split_prefix=split)
        scorer.add(x, owners)
        results.append(scorer.result())
    for with_split, without in zip(*results, strict=True):
        torch.testing.assert_close(with_split, without, rtol=1e-4, atol=1e-7)


class _Block(nn.Module):
    """A residual block ending in a 1x1 convolution, a batch norm, the addition and a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
        self.relu_a = nn.ReLU()
        self.conv_b = nn.Conv2d(8, 8, 1)
        self.norm = nn.BatchNorm2d(8)
        self.relu_out = nn.ReLU()

    def forward(self, x):
        return self.relu_out(self.norm(self.conv_b(self.relu_a(self.conv_a(x)))) + x)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_relu = nn.ReLU()
        self.block = _Block()

    def forward(self, x):
        return self.block(self.stem_relu(self.stem(x)))


def test_the_channel_head_gives_each_row_its_own_channels_only():
    """The block's 1x1 convolution, batch norm, residual addition and ReLU are computed at each
    row's target channels; every reduction kind agrees with the plain integral."""
    torch.manual_seed(0)
    model = _Net().eval()
    with torch.no_grad():
        model.block.norm.running_mean.uniform_(-0.3, 0.3)
        model.block.norm.running_var.uniform_(0.5, 1.5)
    between = subnetwork(model, "stem_relu", "block")
    targets = [
        NeuronGroup("block", [5]),
        NeuronGroup("block", [1, 3, 6], [1.0, -2.0, 0.5]),
        NeuronGroup("block", [7, 0], reduction="max"),
        NeuronGroup("block", [2], reduction=(1, 0)),
    ]
    x = torch.rand(10, 8, 4, 4)
    owners = [[i % 4, (i + 2) % 4] for i in range(10)]
    shortcut = CoreScores(between, targets, n_steps=12)
    assert shortcut.split is not None and shortcut.head is not None
    assert [str(n.target) for n in shortcut.head.nodes][0] == "block.conv_b"
    plain = CoreScores(between, targets, n_steps=12, split_prefix=False)
    assert plain.split is None and plain.head is None
    for scorer in (shortcut, plain):
        scorer.add(x, owners)
    for fast, slow in zip(shortcut.result(), plain.result(), strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-8)

"""Shared fixtures: small models, small data, and a model-state snapshot."""

from __future__ import annotations

import contextlib
import io
import types
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

from captum_groups.cli import main
from captum_groups.datasets import digits_cnn, load_digits

warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")

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


@pytest.fixture(scope="session")
def digits_test() -> tuple[Tensor, Tensor]:
    return load_digits("test")


@pytest.fixture
def digits_model() -> nn.Module:
    return digits_cnn()


@pytest.fixture
def digits_model64() -> nn.Module:
    """The digits CNN in float64, so parity checks can be tight."""
    return digits_cnn().double()


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


@pytest.fixture
def resnet18() -> nn.Module:
    return make_resnet18()


@pytest.fixture
def resnet18_distinct() -> nn.Module:
    return make_resnet18(distinct_relus=True).double()


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


DIGITS_REPORT_OPTIONS = ["--render-steps", "16", "--fidelity-draws", "5", "--quiet"]
"""Lighter report settings than the command's defaults, to keep the suite fast."""


@pytest.fixture(scope="session")
def digits_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The default command on the digits CNN (digit 3): its output folder and what it printed."""
    out = tmp_path_factory.mktemp("digits-report") / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["circuit", "--target", "3", "--out", str(out), *DIGITS_REPORT_OPTIONS]) == 0
    return out, printed.getvalue()

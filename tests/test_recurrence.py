"""Modules that run several times in one forward pass, attributed at one run (``call=t``).

The independent truth is Captum on a hand-written probe: the test's own
forward hook passes run ``t`` of the module through an identity module, and
Captum's classes attribute to that identity module, by its output, with the
group as a callable selector. A recurrent toy model (one cell unrolled over
three steps) and torchvision's resnet18, whose ``layer1.0.relu`` runs twice
in each BasicBlock.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from captum.attr import (
    LayerConductance,
    LayerFeatureAblation,
    LayerGradientXActivation,
    NeuronConductance,
    NeuronDeconvolution,
    NeuronFeatureAblation,
    NeuronGradient,
    NeuronGradientShap,
    NeuronGuidedBackprop,
    NeuronIntegratedGradients,
)
from torch import nn

from captum_groups import (
    GroupSet,
    NeuronGroup,
    ParameterError,
    ablate,
    layer_activations,
)
from captum_groups.attr import (
    GroupConductance,
    GroupDeconvolution,
    GroupDeepLift,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupGuidedBackprop,
    GroupIntegratedGradients,
    LayerGroupAblation,
    LayerGroupConductance,
    LayerGroupGradientXActivation,
)
from captum_groups.discovery import mine_exemplars

STEPS = 3


class TinyRecurrent(nn.Module):
    """h_t = tanh(W_in x_t + W_h h_{t-1}); the class scores read h after the last step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp, self.cell, self.act = nn.Linear(4, 6), nn.Linear(6, 6), nn.Tanh()
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], 6)
        for t in range(x.shape[1]):
            h = self.act(self.inp(x[:, t]) + self.cell(h))
        return self.out(h)


class RunProbe(nn.Module):
    """The model, with run ``call`` of ``module`` passed through the identity ``probe``."""

    def __init__(self, model: nn.Module, module: nn.Module, call: int, head=None) -> None:
        super().__init__()
        self.model, self.probe, self.call = model, nn.Identity(), call
        self.module, self.head = module, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runs, seen = [0], {}

        def hook(module, args, output):
            runs[0] += 1
            if runs[0] - 1 == self.call:
                seen["probe"] = self.probe(output)
                return seen["probe"]
            seen[runs[0] - 1] = output
            return output

        handle = self.module.register_forward_hook(hook)
        try:
            out = self.model(x)
        finally:
            handle.remove()
        return out if self.head is None else self.head(seen)


def _seed() -> None:
    torch.manual_seed(7)
    np.random.seed(7)  # noqa: NPY002 (Captum samples from the global generator)
    random.seed(7)


@pytest.fixture
def rnn() -> TinyRecurrent:
    return TinyRecurrent().double().eval()


@pytest.fixture
def sequences() -> torch.Tensor:
    return torch.randn(5, STEPS, 4, generator=torch.Generator().manual_seed(3)).double()


NEURON_METHODS = {
    "ig": (GroupIntegratedGradients, NeuronIntegratedGradients, {"n_steps": 8}),
    "gradient": (GroupGradient, NeuronGradient, {}),
    "conductance": (GroupConductance, NeuronConductance, {"n_steps": 8, "target": 1}),
    "ablation": (GroupFeatureAblation, NeuronFeatureAblation, {}),
    "guided": (GroupGuidedBackprop, NeuronGuidedBackprop, {}),
    "deconv": (GroupDeconvolution, NeuronDeconvolution, {}),
    "gradientshap": (
        GroupGradientShap,
        NeuronGradientShap,
        {"baselines": torch.zeros(2, STEPS, 4).double(), "n_samples": 4, "stdevs": 0.1},
    ),
}


@pytest.mark.parametrize("call", range(STEPS))
@pytest.mark.parametrize("name", list(NEURON_METHODS))
def test_each_run_of_a_recurrent_cell_equals_captum_on_that_run(name, call, rnn, sequences):
    ours_class, captum_class, kwargs = NEURON_METHODS[name]
    group = NeuronGroup("act", [0, 4], weights=[1.0, -0.5], call=call)
    if name == "conductance":  # Captum's conductance with a callable is exact for one neuron
        group = NeuronGroup("act", [4], call=call)
    _seed()
    ours = ours_class(rnn, "act").attribute(sequences, group, **kwargs)
    probe = RunProbe(rnn, rnn.act, call)
    _seed()
    truth = captum_class(probe, probe.probe).attribute(sequences, group, **kwargs)
    torch.testing.assert_close(ours, truth, rtol=1e-7, atol=1e-10)
    assert not any(m._forward_hooks for m in rnn.modules())


def test_deeplift_refuses_a_nonlinearity_that_runs_twice_as_captum_does(rnn, sequences):
    """DeepLIFT's rules keep one input per nonlinearity: Captum refuses reused ones, and so
    do the group classes that replay it, leaving the model clean."""
    with pytest.raises(RuntimeError, match="used more than once"):
        GroupDeepLift(rnn, "act").attribute(sequences, NeuronGroup("act", [0], call=1))
    assert not any(
        m._forward_hooks or m._backward_hooks or vars(m).get("input") for m in rnn.modules()
    )


def test_runs_differ_so_the_call_matters(rnn, sequences):
    ig = GroupIntegratedGradients(rnn, "act")
    runs = [ig.attribute(sequences, NeuronGroup("act", [2], call=t), n_steps=4) for t in (0, 2)]
    # run 0 reads the first step only; run 2 reads all three
    assert runs[0][:, 1:].abs().max() == 0
    assert runs[1][:, 1:].abs().max() > 0


@pytest.mark.parametrize("call", range(STEPS))
def test_layer_group_classes_at_one_run_equal_captum_layer_classes(call, rnn, sequences):
    groups = GroupSet.from_labels("act", [0, 1, 0, 2, 1, 2], call=call)
    probe = RunProbe(rnn, rnn.act, call)
    membership = torch.stack([g.membership(torch.zeros(1, 6)) for g in groups]).double()
    conductance = LayerGroupConductance(rnn, "act").attribute(
        sequences, groups, target=2, n_steps=8
    )
    truth = LayerConductance(probe, probe.probe).attribute(sequences, target=2, n_steps=8)
    torch.testing.assert_close(conductance, truth @ membership.T)
    gxa = LayerGroupGradientXActivation(rnn, "act").attribute(sequences, groups, target=0)
    truth = LayerGradientXActivation(probe, probe.probe).attribute(sequences, target=0)
    torch.testing.assert_close(gxa, truth @ membership.T)
    drops = LayerGroupAblation(rnn, "act").attribute(sequences, groups, target=1)
    mask = torch.tensor([[0, 1, 0, 2, 1, 2]])
    truth = LayerFeatureAblation(probe, probe.probe).attribute(
        sequences, target=1, layer_mask=mask, layer_baselines=0.0
    )
    torch.testing.assert_close(drops, truth[:, [0, 1, 3]])


def test_a_later_run_of_the_same_cell_as_target(rnn, sequences):
    """Step 0's groups explain a group of step 2: the cell's state over time."""
    lower = GroupSet.from_labels("act", [0, 0, 1, 1, 2, 2], call=0)
    upper = NeuronGroup("act", [3], call=2)
    ours = LayerGroupConductance(rnn, "act").attribute(sequences, lower, target=upper, n_steps=8)
    probe = RunProbe(rnn, rnn.act, 0, head=lambda seen: upper(seen[2]))
    truth = LayerConductance(probe, probe.probe).attribute(sequences, n_steps=8)
    membership = torch.stack([g.membership(torch.zeros(1, 6)) for g in lower]).double()
    torch.testing.assert_close(ours, truth @ membership.T)
    with pytest.raises(ValueError, match="later run"):
        LayerGroupConductance(rnn, "act").attribute(
            sequences, lower, target=NeuronGroup("act", [3], call=0)
        )


@pytest.mark.parametrize("call", [0, 1])
def test_resnet18_basic_block_relu_runs_equal_captum(call, resnet18):
    model = resnet18.double()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()
    group = NeuronGroup("layer1.0.relu", [3, 9, 40], call=call)
    ours = GroupIntegratedGradients(model, "layer1.0.relu").attribute(x, group, n_steps=4)
    relu = model.get_submodule("layer1.0.relu")
    probe = RunProbe(model, relu, call)
    truth = NeuronIntegratedGradients(probe, probe.probe).attribute(x, group, n_steps=4)
    torch.testing.assert_close(ours, truth, rtol=1e-7, atol=1e-10)


def test_a_module_run_several_times_without_call_is_refused_with_its_calls(resnet18, rnn):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ParameterError, match=r"runs 2 times.*calls 0 and 1.*call=t") as caught:
        GroupGradient(resnet18, "layer1.0.relu").attribute(x, NeuronGroup("layer1.0.relu", [0]))
    assert caught.value.parameter == "call"
    with pytest.raises(ParameterError, match=r"call=2 names no run.*calls 0 and 1"):
        GroupGradient(resnet18, "layer1.0.relu").attribute(
            x, NeuronGroup("layer1.0.relu", [0], call=2)
        )
    with pytest.raises(ParameterError, match=r"runs 3 times.*calls 0, 1 and 2"):
        layer_activations(rnn, "act", torch.randn(2, STEPS, 4).double())
    with pytest.raises(ParameterError, match="different runs"):
        GroupGradient(rnn, "act").attribute(
            torch.randn(2, STEPS, 4).double(),
            [NeuronGroup("act", [0], call=0), NeuronGroup("act", [0], call=1)],
        )
    with pytest.raises(ParameterError, match="same run"):
        GroupSet([NeuronGroup("act", [0], call=0), NeuronGroup("act", [1])])
    with pytest.raises(ParameterError, match="call must be"):
        NeuronGroup("act", [0], call=-1)


def test_ablation_at_one_run_equals_a_hand_written_hook(rnn, sequences):
    def zero_at_run_one(module, args, output, runs=[0]):  # noqa: B006 (a per-test counter)
        runs[0] = runs[0] + 1 if runs[0] < STEPS else 1
        return output * torch.tensor([1, 0, 1, 1, 1, 0]).double() if runs[0] == 2 else output

    handle = rnn.act.register_forward_hook(zero_at_run_one)
    truth = rnn(sequences)
    handle.remove()
    with ablate(rnn, NeuronGroup("act", [1, 5], call=1)):
        ours = rnn(sequences)
    torch.testing.assert_close(ours, truth)
    assert not torch.allclose(ours, rnn(sequences))
    with pytest.raises(ValueError, match=r"'act' \(call=7\) never ran"):
        with ablate(rnn, NeuronGroup("act", [1], call=7)):
            rnn(sequences)


def test_mining_and_activations_read_one_run(rnn, sequences):
    data = torch.randn(40, STEPS, 4, generator=torch.Generator().manual_seed(5)).double()
    outputs = {}
    handle = rnn.act.register_forward_hook(lambda m, a, out: outputs.setdefault(len(outputs), out))
    with torch.no_grad():
        rnn(data)
    handle.remove()
    torch.testing.assert_close(layer_activations(rnn, "act", data, call=1), outputs[1])
    group = NeuronGroup("act", [2, 3], call=1)
    found = mine_exemplars(rnn, "act", data, k=5, groups=[group], progress=False, batch_size=16)
    truth = torch.topk(group(outputs[1]), 5).indices
    assert found.groups.indices[0].tolist() == truth.tolist()
    assert found.neurons.indices[4].tolist() == torch.topk(outputs[1][:, 4], 5).indices.tolist()
